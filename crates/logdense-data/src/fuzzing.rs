//! Byte-level entry points for the fuzz targets (`fuzz/`, run with `cargo fuzz`) and for the
//! stable test that replays their corpus (`tests/fuzz_corpus.rs`). Each feeds arbitrary bytes
//! to one real parser, exactly as the loaders call it, and returns the parser's verdict; none
//! may panic, and none allocates more than a small multiple of its input (the decompressing
//! ones: of their [`DECODE_LIMIT`]).

use std::path::Path;

use crate::cifar::{parse_cifar_batch, CifarLayout};
use crate::error::DataError;
use crate::folder::decode_rgb_bytes;
use crate::idx::{maybe_gunzip, parse_idx_images, parse_idx_labels};
use crate::mat5::parse_mat5_limited;
use crate::seg::camvid::decode_label_bytes;
use crate::svhn::svhn_from_mat;

/// The name errors carry.
const PATH: &str = "fuzz-input";

/// What the decompressing parsers may inflate or decode to here (1 MiB), in place of the
/// loaders' limits (1 GiB and more), so that a fuzz run's memory check stays tight.
pub const DECODE_LIMIT: usize = 1 << 20;

/// An IDX file, raw or gzipped: parsed as images (magic 2051) or labels (2049).
pub fn idx(data: &[u8]) -> Result<(), DataError> {
    let path = Path::new(PATH);
    let raw = maybe_gunzip(path, data, DECODE_LIMIT)?;
    if raw.get(..4) == Some(&[0, 0, 8, 1]) {
        parse_idx_labels(path, &raw).map(drop)
    } else {
        parse_idx_images(path, &raw).map(drop)
    }
}

/// A CIFAR binary file: the first byte picks the layout (even: CIFAR-10, odd: CIFAR-100),
/// the rest is the file.
pub fn cifar(data: &[u8]) -> Result<(), DataError> {
    let Some((&pick, file)) = data.split_first() else {
        return Ok(());
    };
    let layout = if pick % 2 == 0 {
        CifarLayout::Cifar10
    } else {
        CifarLayout::Cifar100
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    parse_cifar_batch(Path::new(PATH), file, layout, &mut pixels, &mut labels)
}

/// A MAT v5 file, then (if it parsed) read as an SVHN format-2 file. Ok when both succeed.
pub fn svhn_mat(data: &[u8]) -> Result<(), DataError> {
    let path = Path::new(PATH);
    let mat = parse_mat5_limited(path, data, DECODE_LIMIT)?;
    svhn_from_mat(path, &mat).map(drop)
}

/// Image limits of the fuzz entry points: 4096 pixels a side, [`DECODE_LIMIT`] bytes decoded.
pub fn image_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(4096);
    limits.max_image_height = Some(4096);
    limits.max_alloc = Some(DECODE_LIMIT as u64);
    limits
}

/// An image file of a class folder (JPEG or PNG), decoded to RGB CHW.
pub fn folder_image(data: &[u8]) -> Result<(), DataError> {
    decode_rgb_bytes(Path::new(PATH), data, &image_limits()).map(drop)
}

/// A CamVid label PNG (11 classes, 11 and 255 void).
pub fn camvid_label(data: &[u8]) -> Result<(), DataError> {
    decode_label_bytes(Path::new(PATH), data, 11, &image_limits()).map(drop)
}

/// Replays a fuzz target's corpus, `fuzz/corpus/TARGET/` under the repository root `root`,
/// through `run` (the stable tests of both crates do). First every seed of `seeds` must be on
/// disk with exactly the bytes given for it (the seeds a test generates are the committed ones,
/// not merely files of the same names); then every file of the folder is replayed: no input may
/// panic, a file named `ok-*` must parse and a `bad-*` one must be refused (other files, e.g.
/// inputs that once crashed a target, need only not panic). Every seed's name must start with
/// `ok-` or `bad-`. With `FUZZ_WRITE_SEEDS` set in the environment the seeds are (re)written
/// first. Returns how many inputs were replayed. Panics with the file's name when one fails: it
/// is a test helper.
pub fn replay_corpus<E: std::fmt::Display>(
    root: &Path,
    target: &str,
    seeds: &[(&str, Vec<u8>)],
    run: impl Fn(&[u8]) -> Result<(), E>,
) -> usize {
    let dir = root.join("fuzz/corpus").join(target);
    for (k, (name, _)) in seeds.iter().enumerate() {
        assert!(
            name.starts_with("ok-") || name.starts_with("bad-"),
            "seed {name} of {target}: a seed's name starts with ok- or bad-"
        );
        assert!(
            seeds[..k].iter().all(|(other, _)| other != name),
            "seed {name} of {target} is defined twice"
        );
    }
    if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).expect("the corpus folder can be created");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).expect("a seed can be written");
        }
    }
    for (name, bytes) in seeds {
        let path = dir.join(name);
        let on_disk = match std::fs::read(&path) {
            Ok(on_disk) => on_disk,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{}: seed {name} is missing; rerun this test with FUZZ_WRITE_SEEDS=1 to write \
                 the seeds, and commit them",
                path.display()
            ),
            Err(e) => panic!("{}: {e}", path.display()),
        };
        if on_disk != *bytes {
            let at = on_disk
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(on_disk.len().min(bytes.len()));
            panic!(
                "{}: the committed seed differs from the bytes this test generates for {name} \
                 ({} bytes on disk, {} generated, first difference at byte {at}); rerun this \
                 test with FUZZ_WRITE_SEEDS=1 to rewrite the seeds, and commit them",
                path.display(),
                on_disk.len(),
                bytes.len()
            );
        }
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        let result = run(&bytes);
        if name.starts_with("ok-") {
            if let Err(e) = result {
                panic!("{}: {e}", f.display());
            }
        } else if name.starts_with("bad-") {
            assert!(result.is_err(), "{} parsed", f.display());
        }
    }
    files.len()
}
