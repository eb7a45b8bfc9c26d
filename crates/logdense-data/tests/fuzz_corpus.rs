//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, see fuzz/README.md) through the same
//! entry points the fuzz targets call: no input may panic, every file named `ok-*` must parse
//! and every `bad-*` one must be refused. The seeds are written by this file, and each
//! committed seed must hold exactly the bytes generated here for its name:
//! `FUZZ_WRITE_SEEDS=1 cargo test -p logdense-data --test fuzz_corpus` rewrites them (other
//! corpus files, e.g. inputs that once crashed a target, are kept).

use std::io::Write;
use std::path::Path;

use image::{ExtendedColorType, ImageEncoder};
use logdense_data::fuzzing;
use logdense_data::mat5::writer::{Values, Var, Writer};
use logdense_data::DataError;

/// Writes the seeds when FUZZ_WRITE_SEEDS is set; checks that each committed seed holds the
/// bytes generated here; then replays every file of the target's corpus, requiring `ok-*`
/// files to parse and `bad-*` files to be refused.
fn replay(target: &str, seeds: Vec<(&str, Vec<u8>)>, run: fn(&[u8]) -> Result<(), DataError>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let replayed = logdense_data::fuzzing::replay_corpus(&root, target, &seeds, run);
    println!("{target}: {replayed} inputs replayed");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: u32, rows: u32, cols: u32, px: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [2051, n, rows, cols] {
        b.extend_from_slice(&u32::to_be_bytes(v));
    }
    b.extend_from_slice(px);
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [2049, labels.len() as u32] {
        b.extend_from_slice(&u32::to_be_bytes(v));
    }
    b.extend_from_slice(labels);
    b
}

#[test]
fn idx() {
    let px: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 37) as u8).collect();
    let images = idx_images(2, 3, 4, &px);
    let labels = idx_labels(&[3, 9, 0]);
    let mut short = images.clone();
    short.pop();
    let seeds = vec![
        ("ok-images", images.clone()),
        ("ok-labels", labels.clone()),
        ("ok-images.gz", gz(&images)),
        ("ok-labels.gz", gz(&labels)),
        ("bad-truncated", short),
        ("bad-magic", idx_images(1, 1, 1, &[0])[4..].to_vec()),
        (
            "bad-huge-dims",
            idx_images(u32::MAX, u32::MAX, u32::MAX, &[1, 2, 3]),
        ),
        // 2 MiB of zeros in 2 KB of gzip: over the fuzz entry point's inflate limit.
        ("bad-gzip-over-limit", gz(&idx_labels(&vec![0; 2 << 20]))),
        ("bad-gzip-broken", gz(&images)[..20].to_vec()),
    ];
    replay("idx", seeds, fuzzing::idx);
}

fn cifar_records(labels: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, l) in labels.iter().enumerate() {
        b.extend_from_slice(l);
        b.extend((0..3072).map(|i| (i as u8).wrapping_mul(5).wrapping_add(k as u8)));
    }
    b
}

#[test]
fn cifar() {
    let with = |pick: u8, body: Vec<u8>| [vec![pick], body].concat();
    let seeds = vec![
        ("ok-cifar10", with(0, cifar_records(&[&[7]]))),
        ("ok-cifar100", with(1, cifar_records(&[&[19, 99]]))),
        ("ok-empty", vec![0]),
        ("bad-label", with(0, cifar_records(&[&[10]]))),
        ("bad-coarse", with(1, cifar_records(&[&[20, 5]]))),
        (
            "bad-truncated",
            with(0, cifar_records(&[&[1]])[..3000].to_vec()),
        ),
    ];
    replay("cifar", seeds, fuzzing::cifar);
}

/// A MAT variable: name, MATLAB class (6 double, 9 uint8), dims and values.
fn var<'a>(name: &'a str, class: u8, dims: &'a [usize], values: Values<'a>) -> Var<'a> {
    Var {
        name,
        class,
        dims,
        values,
    }
}

#[test]
fn svhn_mat() {
    let x: Vec<u8> = (0..4 * 5 * 3 * 2).map(|i| (i * 11) as u8).collect();
    let xf: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let plain = Writer {
        big_endian: false,
        compress: false,
    };
    let zipped_be = Writer {
        big_endian: true,
        compress: true,
    };
    let svhn = |m: &Writer, y: &[f64]| {
        m.file(&[
            var("X", 9, &[4, 5, 3, 2], Values::U8(&x)),
            var("y", 6, &[y.len(), 1], Values::F64(y)),
        ])
    };
    let one_image: Vec<u8> = (0..2 * 2 * 3).collect();
    let seeds = vec![
        ("ok-uint8", svhn(&plain, &[10.0, 1.0])),
        ("ok-compressed-big-endian", svhn(&zipped_be, &[3.0, 4.0])),
        (
            "ok-double-x-one-image",
            plain.file(&[
                var("y", 6, &[1, 1], Values::U8(&[5])),
                var(
                    "X",
                    6,
                    &[2, 2, 3],
                    Values::F64(&one_image.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()),
                ),
            ]),
        ),
        (
            "ok-double-x",
            plain.file(&[
                var("X", 6, &[4, 5, 3, 2], Values::F64(&xf)),
                var("y", 6, &[2, 1], Values::U8(&[1, 2])),
            ]),
        ),
        ("bad-label", svhn(&plain, &[0.0, 11.0])),
        ("bad-count", svhn(&plain, &[1.0])),
        ("bad-truncated", svhn(&plain, &[1.0, 2.0])[..200].to_vec()),
        (
            // 2 MiB of zeros compressed to 10 KB: over the fuzz entry point's inflate limit.
            "bad-inflate-over-limit",
            zipped_be.file(&[var("X", 9, &[2 << 20, 1], Values::U8(&vec![0; 2 << 20]))]),
        ),
    ];
    replay("svhn_mat", seeds, fuzzing::svhn_mat);
}

fn png(data: &[u8], w: u32, h: u32, color: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, w, h, color)
        .unwrap();
    out
}

fn jpeg(rgb: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .write_image(rgb, w, h, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A 1x1 grey PNG whose header claims `w x h` pixels (CRC fixed, so only the size is wrong).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut b = png(&[7], 1, 1, ExtendedColorType::L8);
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, ..., CRC over type + data.
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&b[12..29]);
    b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    b
}

#[test]
fn folder_image() {
    let rgb: Vec<u8> = (0..8 * 6 * 3).map(|i| (i * 13) as u8).collect();
    let grey: Vec<u8> = (0..5 * 4).map(|i| (i * 9) as u8).collect();
    let rgba16: Vec<u8> = (0..2 * 2 * 8).map(|i| (i * 31) as u8).collect();
    let seeds = vec![
        ("ok-rgb.png", png(&rgb, 8, 6, ExtendedColorType::Rgb8)),
        ("ok-grey.png", png(&grey, 5, 4, ExtendedColorType::L8)),
        (
            "ok-rgba16.png",
            png(&rgba16, 2, 2, ExtendedColorType::Rgba16),
        ),
        ("ok-rgb.jpg", jpeg(&rgb, 8, 6)),
        ("bad-100000x100000.png", png_claiming(100_000, 100_000)),
        ("bad-4000x4000.png", png_claiming(4000, 4000)),
        ("bad-truncated.jpg", jpeg(&rgb, 8, 6)[..100].to_vec()),
        ("bad-text", b"not an image".to_vec()),
    ];
    replay("folder_image", seeds, fuzzing::folder_image);
}

#[test]
fn camvid_label() {
    let mut ids: Vec<u8> = (0..4 * 4).map(|p| (p % 12) as u8).collect();
    ids[15] = 255;
    let rgb: Vec<u8> = ids.iter().flat_map(|&v| [v, v, v]).collect();
    let mut colour = rgb.clone();
    colour[4] = 200;
    let mut high = ids.clone();
    high[0] = 12;
    let seeds = vec![
        ("ok-grey.png", png(&ids, 4, 4, ExtendedColorType::L8)),
        ("ok-rgb-grey.png", png(&rgb, 4, 4, ExtendedColorType::Rgb8)),
        (
            "bad-colour.png",
            png(&colour, 4, 4, ExtendedColorType::Rgb8),
        ),
        ("bad-id-12.png", png(&high, 4, 4, ExtendedColorType::L8)),
        ("bad-100000x100000.png", png_claiming(100_000, 100_000)),
    ];
    replay("camvid_label", seeds, fuzzing::camvid_label);
}
