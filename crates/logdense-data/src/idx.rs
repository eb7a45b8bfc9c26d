//! MNIST / Fashion-MNIST IDX files (LeCun's format): a big-endian header — magic 2051 with
//! (count, rows, cols) for images, 2049 with (count) for labels — then one byte per pixel/label.
//! Files may be gzipped, as distributed; gzip is detected by its 0x1f8b magic, not the name.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{read_file, DataError};
use crate::set::{ImageSet, Split};

const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;

/// Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Where the Debian package `dataset-fashion-mnist` installs the four files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

const FASHION_HINT: &str = "Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` \
(files land in /usr/share/datasets/fashion-mnist) or pass --data DIR pointing at a directory \
with train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz) \
and t10k-labels-idx1-ubyte(.gz).";

const MNIST_HINT: &str = "Pass --data DIR pointing at a directory with the MNIST IDX files \
train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz) and \
t10k-labels-idx1-ubyte(.gz).";

/// The most bytes a gzipped file may inflate to: far above the largest IDX file (Fashion-MNIST's
/// training images, 47 MB), far below what a few KB of gzip can claim (deflate reaches ~1000:1).
pub const MAX_GUNZIPPED: usize = 1 << 30;

/// Reads a file and gunzips it when it starts with the gzip magic 0x1f 0x8b.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = read_file(path, "No such file.")?;
    match maybe_gunzip(path, &raw, MAX_GUNZIPPED)? {
        Cow::Borrowed(_) => Ok(raw),
        Cow::Owned(out) => Ok(out),
    }
}

/// `bytes` gunzipped when they start with the gzip magic 0x1f 0x8b (all members of a
/// multi-member stream), else `bytes` themselves. An inflated size over `max_out` is an error,
/// found before more than `max_out + 1` bytes are inflated; `path` is only used in errors.
pub fn maybe_gunzip<'a>(
    path: &Path,
    bytes: &'a [u8],
    max_out: usize,
) -> Result<Cow<'a, [u8]>, DataError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take((max_out as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("bad gzip stream: {e}")))?;
    if out.len() > max_out {
        return Err(DataError::unsupported(
            path,
            format!("gzip stream inflates to more than {max_out} bytes"),
        ));
    }
    Ok(Cow::Owned(out))
}

fn be_u32(path: &Path, bytes: &[u8], at: usize) -> Result<u32, DataError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| {
            DataError::truncated(
                path,
                format!("{} bytes, header needs {}", bytes.len(), at + 4),
            )
        })
}

fn check_magic(
    path: &Path,
    bytes: &[u8],
    expected: u32,
    what: &'static str,
) -> Result<(), DataError> {
    let found = be_u32(path, bytes, 0)?;
    if found != expected {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected,
            what,
        });
    }
    Ok(())
}

fn body<'a>(
    path: &Path,
    bytes: &'a [u8],
    header: usize,
    dims: &[u32],
) -> Result<&'a [u8], DataError> {
    let need = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| DataError::format(path, format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have < need {
        return Err(DataError::truncated(
            path,
            format!("header {dims:?} promises {need} data bytes, file has {have}"),
        ));
    }
    if have > need {
        return Err(DataError::format(
            path,
            format!(
                "{} trailing bytes after the {need} data bytes of {dims:?}",
                have - need
            ),
        ));
    }
    Ok(&bytes[header..])
}

/// Parses an IDX images file (magic 2051): returns (count, rows, cols, pixels).
pub fn parse_idx_images(
    path: &Path,
    bytes: &[u8],
) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    check_magic(
        path,
        bytes,
        IMAGES_MAGIC,
        "IDX unsigned-byte images, 3 dimensions",
    )?;
    let n = be_u32(path, bytes, 4)?;
    let rows = be_u32(path, bytes, 8)?;
    let cols = be_u32(path, bytes, 12)?;
    let data = body(path, bytes, 16, &[n, rows, cols])?;
    Ok((n as usize, rows as usize, cols as usize, data.to_vec()))
}

/// Parses an IDX labels file (magic 2049): returns the labels, one byte each.
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    check_magic(
        path,
        bytes,
        LABELS_MAGIC,
        "IDX unsigned-byte labels, 1 dimension",
    )?;
    let n = be_u32(path, bytes, 4)?;
    Ok(body(path, bytes, 8, &[n])?.to_vec())
}

/// Loads an IDX images/labels pair (each raw or gzipped) as a 1-channel set with `classes`
/// classes named "0", "1", ...; every label must be below `classes`.
pub fn load_idx_pair(
    images_path: &Path,
    labels_path: &Path,
    classes: usize,
) -> Result<ImageSet, DataError> {
    let (n, rows, cols, pixels) = parse_idx_images(images_path, &read_maybe_gz(images_path)?)?;
    let labels = parse_idx_labels(labels_path, &read_maybe_gz(labels_path)?)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            labels_path: labels_path.to_path_buf(),
            images: n,
            labels: labels.len(),
        });
    }
    if let Some((item, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            item,
            label: i64::from(l),
            expected: format!("0..{classes}"),
        });
    }
    let set = ImageSet {
        channels: 1,
        height: rows,
        width: cols,
        classes,
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        pixels,
        labels: labels.into_iter().map(u16::from).collect(),
    };
    set.check().map_err(|e| DataError::format(images_path, e))?;
    Ok(set)
}

/// `dir/<stem>.gz` if present, else `dir/<stem>`, else a Missing error with `hint`.
fn find_idx(dir: &Path, stem: &str, hint: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let raw = dir.join(stem);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(DataError::missing(
        &gz,
        format!("(nor {}). {hint}", raw.display()),
    ))
}

fn load_idx_dir(dir: &Path, split: Split, hint: &str) -> Result<ImageSet, DataError> {
    if !dir.is_dir() {
        return Err(DataError::missing(dir, hint));
    }
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"), hint)?;
    let labels = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"), hint)?;
    load_idx_pair(&images, &labels, 10)
}

/// Loads a Fashion-MNIST split (60 000 train / 10 000 test, 1x28x28) from `dir`, e.g.
/// [`FASHION_MNIST_DIR`]; errors say how to install the data when it is missing.
pub fn load_fashion_mnist(dir: &Path, split: Split) -> Result<ImageSet, DataError> {
    let mut set = load_idx_dir(dir, split, FASHION_HINT)?;
    set.class_names = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(set)
}

/// Loads an MNIST split from `dir` (same file names as Fashion-MNIST; classes "0".."9").
pub fn load_mnist(dir: &Path, split: Split) -> Result<ImageSet, DataError> {
    load_idx_dir(dir, split, MNIST_HINT)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::io::Write;

    pub(crate) fn idx_images(n: u32, rows: u32, cols: u32, px: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IMAGES_MAGIC, n, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(px);
        b
    }

    pub(crate) fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [LABELS_MAGIC, labels.len() as u32] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(labels);
        b
    }

    pub(crate) fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn sample() -> (Vec<u8>, Vec<u8>) {
        let px: Vec<u8> = (0..5 * 3 * 4).map(|i| (i * 7 % 256) as u8).collect();
        (px, vec![0, 9, 3, 3, 1])
    }

    #[test]
    fn round_trip_raw_and_gz() {
        let dir = TempDir::new("idx");
        let (px, labels) = sample();
        for gzip in [false, true] {
            let (mut im, mut lb) = (idx_images(5, 3, 4, &px), idx_labels(&labels));
            if gzip {
                im = gz(&im);
                lb = gz(&lb);
            }
            let ip = dir.write(&format!("im{gzip}"), &im);
            let lp = dir.write(&format!("lb{gzip}"), &lb);
            let set = load_idx_pair(&ip, &lp, 10).unwrap();
            assert_eq!(
                (set.len(), set.channels, set.height, set.width),
                (5, 1, 3, 4)
            );
            assert_eq!(set.pixels, px);
            assert_eq!(set.labels, vec![0, 9, 3, 3, 1]);
            assert_eq!(set.image(1), &px[12..24]);
        }
    }

    #[test]
    fn fashion_dir_layout_gz_or_raw() {
        let dir = TempDir::new("fmnist");
        let (px, labels) = sample();
        dir.write("t10k-images-idx3-ubyte.gz", &gz(&idx_images(5, 3, 4, &px)));
        dir.write("t10k-labels-idx1-ubyte", &idx_labels(&labels));
        let set = load_fashion_mnist(dir.path(), Split::Test).unwrap();
        assert_eq!(set.class_names[9], "Ankle boot");
        assert_eq!(set.len(), 5);
        let err = load_fashion_mnist(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
        assert!(
            err.contains("apt-get install dataset-fashion-mnist"),
            "{err}"
        );
    }

    #[test]
    fn missing_directory_says_how_to_install() {
        let err =
            load_fashion_mnist(Path::new("/nonexistent/fmnist-dir"), Split::Train).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/fmnist-dir"), "{msg}");
        assert!(
            msg.contains("apt-get install dataset-fashion-mnist"),
            "{msg}"
        );
        assert!(msg.contains("--data DIR"), "{msg}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = TempDir::new("idx-err");
        let (px, labels) = sample();
        let good_im = dir.write("good-im", &idx_images(5, 3, 4, &px));
        let good_lb = dir.write("good-lb", &idx_labels(&labels));

        // Wrong magic: a labels file given as images.
        let e = load_idx_pair(&good_lb, &good_lb, 10).unwrap_err();
        assert!(matches!(e, DataError::BadMagic { found: 2049, .. }), "{e}");
        assert!(e.to_string().contains("good-lb") && e.to_string().contains("magic"));

        // Truncated pixels (also gzipped, also truncated header).
        let mut short = idx_images(5, 3, 4, &px);
        short.truncate(short.len() - 1);
        let p = dir.write("short-im.gz", &gz(&short));
        let e = load_idx_pair(&p, &good_lb, 10).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { .. }) && e.to_string().contains("short-im.gz"),
            "{e}"
        );
        let p = dir.write("tiny", &[0, 0, 8]);
        let e = load_idx_pair(&p, &good_lb, 10).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { .. }) && e.to_string().contains("tiny"),
            "{e}"
        );

        // Broken gzip stream.
        let mut bad = gz(&idx_images(5, 3, 4, &px));
        bad.truncate(bad.len() / 2);
        let p = dir.write("broken.gz", &bad);
        let e = load_idx_pair(&p, &good_lb, 10).unwrap_err();
        assert!(e.to_string().contains("broken.gz"), "{e}");

        // Label out of range.
        let e = load_idx_pair(&good_im, &good_lb, 9).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    item: 1,
                    label: 9,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("good-lb"), "{e}");

        // Count mismatch.
        let p = dir.write("four-lb", &idx_labels(&labels[..4]));
        let e = load_idx_pair(&good_im, &p, 10).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::CountMismatch {
                    images: 5,
                    labels: 4,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("good-im") && e.to_string().contains("four-lb"),
            "{e}"
        );

        // Missing file.
        let e = load_idx_pair(&dir.path().join("nope"), &good_lb, 10).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    /// The real Fashion-MNIST test split. The data is required (CI installs it, as
    /// `crates/logdense/tests/training.rs` requires too): without it this test fails, naming
    /// the folder and the package.
    #[test]
    fn real_fashion_mnist_test_split() {
        let dir = Path::new(FASHION_MNIST_DIR);
        assert!(
            dir.join("t10k-images-idx3-ubyte.gz").is_file()
                || dir.join("t10k-images-idx3-ubyte").is_file(),
            "Fashion-MNIST is missing from {FASHION_MNIST_DIR}: install it with \
             `apt-get install dataset-fashion-mnist` (the README's set-up and .ci/run do)"
        );
        let set = load_fashion_mnist(dir, Split::Test).unwrap();
        assert_eq!(set.len(), 10_000);
        assert_eq!((set.channels, set.height, set.width), (1, 28, 28));
        assert!(set.labels.iter().all(|&l| l < 10));
        assert_eq!(set.class_counts(), vec![1000; 10]);
        let (m, s) = set.channel_mean_std();
        // Fashion-MNIST's well-known statistics are about 0.286 / 0.353.
        assert!(
            (m[0] - 0.286).abs() < 0.01 && (s[0] - 0.353).abs() < 0.01,
            "{m:?} {s:?}"
        );
    }
}
