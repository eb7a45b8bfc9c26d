//! CIFAR-10 / CIFAR-100 "binary version" files: fixed-size records of label byte(s) followed by
//! 3072 bytes (1024 red, 1024 green, 1024 blue, each 32x32 row-major) — already CHW.

use std::path::{Path, PathBuf};

use crate::error::{read_file, DataError};
use crate::set::{ImageSet, Split};

const PIXELS: usize = 3 * 32 * 32;

/// CIFAR-10 class names (used when `batches.meta.txt` is absent).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 fine class names (used when `fine_label_names.txt` is absent).
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

const CIFAR10_HINT: &str = "CIFAR-10 cannot be downloaded here: get the binary version \
(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), extract it and pass \
--data DIR (the cifar-10-batches-bin folder or its parent).";

const CIFAR100_HINT: &str = "CIFAR-100 cannot be downloaded here: get the binary version \
(cifar-100-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html), extract it and pass \
--data DIR (the cifar-100-binary folder or its parent).";

/// `dir`, or `dir/sub` when that is where the extracted archive put the files.
fn resolve_dir(dir: &Path, sub: &str, hint: &str) -> Result<PathBuf, DataError> {
    let nested = dir.join(sub);
    if nested.is_dir() {
        Ok(nested)
    } else if dir.is_dir() {
        Ok(dir.to_path_buf())
    } else {
        Err(DataError::missing(dir, hint))
    }
}

/// The record layout of a CIFAR binary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarLayout {
    /// CIFAR-10: one label byte (0..10) per record.
    Cifar10,
    /// CIFAR-100: a coarse label byte (0..20), then the fine label byte (0..100) kept.
    Cifar100,
}

impl CifarLayout {
    /// Leading label bytes per record.
    pub fn label_bytes(self) -> usize {
        match self {
            CifarLayout::Cifar10 => 1,
            CifarLayout::Cifar100 => 2,
        }
    }

    /// The classes of the label kept.
    pub fn classes(self) -> usize {
        match self {
            CifarLayout::Cifar10 => 10,
            CifarLayout::Cifar100 => 100,
        }
    }

    /// Bytes per record (labels and 3x32x32 pixels).
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + PIXELS
    }
}

/// Parses the bytes of one CIFAR binary file, appending its images (CHW, 3072 bytes each) to
/// `pixels` and its labels to `labels`; `path` is only used in errors. Every label byte is
/// checked; on error, what was appended before the bad record stays.
pub fn parse_cifar_batch(
    path: &Path,
    bytes: &[u8],
    layout: CifarLayout,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<(), DataError> {
    let (label_bytes, classes) = (layout.label_bytes(), layout.classes());
    let label_at = label_bytes - 1;
    let record = layout.record_bytes();
    if !bytes.len().is_multiple_of(record) {
        return Err(DataError::truncated(
            path,
            format!(
                "{} bytes is not a multiple of the {record}-byte record ({} whole records + {} bytes)",
                bytes.len(),
                bytes.len() / record,
                bytes.len() % record
            ),
        ));
    }
    pixels.reserve(bytes.len() / record * PIXELS);
    labels.reserve(bytes.len() / record);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        // Every label byte is checked (CIFAR-100's coarse byte must be < 20).
        let l = rec[label_at];
        if usize::from(l) >= classes {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                item: i,
                label: i64::from(l),
                expected: format!("0..{classes}"),
            });
        }
        if label_bytes == 2 && rec[0] >= 20 {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                item: i,
                label: i64::from(rec[0]),
                expected: "coarse label 0..20".into(),
            });
        }
        labels.push(u16::from(l));
        pixels.extend_from_slice(&rec[label_bytes..]);
    }
    Ok(())
}

/// Reads one file and appends its records (see [`parse_cifar_batch`]).
fn read_records(
    path: &Path,
    layout: CifarLayout,
    hint: &str,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<(), DataError> {
    let bytes = read_file(path, hint)?;
    parse_cifar_batch(path, &bytes, layout, pixels, labels)
}

/// Class names from a text file with one name per line (blank lines ignored), if it exists;
/// it must list exactly `classes` names.
fn names_file(path: &Path, defaults: &[&str]) -> Result<Vec<String>, DataError> {
    if !path.is_file() {
        return Ok(defaults.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != defaults.len() {
        return Err(DataError::format(
            path,
            format!("{} class names, expected {}", names.len(), defaults.len()),
        ));
    }
    Ok(names)
}

fn finish(dir: &Path, set: ImageSet) -> Result<ImageSet, DataError> {
    set.check().map_err(|e| DataError::format(dir, e))?;
    Ok(set)
}

/// Loads CIFAR-10 (binary version): `data_batch_1.bin`..`data_batch_5.bin` for train,
/// `test_batch.bin` for test, names from `batches.meta.txt` when present. 3x32x32, 10 classes.
pub fn load_cifar10(dir: &Path, split: Split) -> Result<ImageSet, DataError> {
    let dir = resolve_dir(dir, "cifar-10-batches-bin", CIFAR10_HINT)?;
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        read_records(
            &dir.join(f),
            CifarLayout::Cifar10,
            CIFAR10_HINT,
            &mut pixels,
            &mut labels,
        )?;
    }
    let class_names = names_file(&dir.join("batches.meta.txt"), &CIFAR10_CLASSES)?;
    finish(
        &dir,
        ImageSet {
            channels: 3,
            height: 32,
            width: 32,
            classes: 10,
            class_names,
            pixels,
            labels,
        },
    )
}

/// Loads CIFAR-100 (binary version): `train.bin` / `test.bin`, records of (coarse, fine, 3072
/// pixels); returns the 100 fine labels, names from `fine_label_names.txt` when present.
pub fn load_cifar100(dir: &Path, split: Split) -> Result<ImageSet, DataError> {
    let dir = resolve_dir(dir, "cifar-100-binary", CIFAR100_HINT)?;
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    read_records(
        &dir.join(file),
        CifarLayout::Cifar100,
        CIFAR100_HINT,
        &mut pixels,
        &mut labels,
    )?;
    let class_names = names_file(&dir.join("fine_label_names.txt"), &CIFAR100_CLASSES)?;
    finish(
        &dir,
        ImageSet {
            channels: 3,
            height: 32,
            width: 32,
            classes: 100,
            class_names,
            pixels,
            labels,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn image(seed: u8) -> Vec<u8> {
        (0..PIXELS)
            .map(|i| (i as u8).wrapping_mul(3).wrapping_add(seed))
            .collect()
    }

    fn records(labels: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, l) in labels.iter().enumerate() {
            b.extend_from_slice(l);
            b.extend_from_slice(&image(k as u8));
        }
        b
    }

    #[test]
    fn cifar10_round_trip() {
        let dir = TempDir::new("c10");
        for i in 1..=5u8 {
            dir.write(
                &format!("cifar-10-batches-bin/data_batch_{i}.bin"),
                &records(&[&[i], &[9]]),
            );
        }
        dir.write("cifar-10-batches-bin/test_batch.bin", &records(&[&[3]]));
        let train = load_cifar10(dir.path(), Split::Train).unwrap();
        assert_eq!(train.len(), 10);
        assert_eq!(train.labels, vec![1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
        assert_eq!(train.image(3), image(1).as_slice());
        assert_eq!(train.class_names[0], "airplane");
        let meta: String = (0..10).map(|i| format!("name{i}\n")).collect();
        dir.write(
            "cifar-10-batches-bin/batches.meta.txt",
            format!("{meta}\n").as_bytes(),
        );
        let test = load_cifar10(&dir.path().join("cifar-10-batches-bin"), Split::Test).unwrap();
        assert_eq!((test.len(), test.label(0)), (1, 3));
        assert_eq!(test.class_names[7], "name7");
        assert_eq!(test.image(0), image(0).as_slice());
    }

    #[test]
    fn cifar100_round_trip() {
        assert_eq!(CIFAR100_CLASSES.len(), 100);
        let dir = TempDir::new("c100");
        dir.write("train.bin", &records(&[&[19, 99], &[0, 42], &[5, 0]]));
        let set = load_cifar100(dir.path(), Split::Train).unwrap();
        assert_eq!(set.labels, vec![99, 42, 0]);
        assert_eq!((set.classes, set.channels, set.height), (100, 3, 32));
        assert_eq!(set.image(2), image(2).as_slice());
        assert_eq!(set.class_names[99], "worm");
    }

    #[test]
    fn cifar_errors_name_the_file() {
        let dir = TempDir::new("c-err");
        let mut b = records(&[&[1], &[2]]);
        b.pop();
        dir.write("test_batch.bin", &b);
        let e = load_cifar10(dir.path(), Split::Test).unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("test_batch.bin"), "{e}");

        dir.write("test_batch.bin", &records(&[&[1], &[10]]));
        let e = load_cifar10(dir.path(), Split::Test).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    item: 1,
                    label: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("test_batch.bin"), "{e}");

        dir.write("test.bin", &records(&[&[20, 1]]));
        let e = load_cifar100(dir.path(), Split::Test).unwrap_err();
        assert!(
            e.to_string().contains("test.bin") && e.to_string().contains("coarse"),
            "{e}"
        );

        let e = load_cifar10(dir.path(), Split::Train).unwrap_err();
        assert!(matches!(e, DataError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");

        let e = load_cifar100(Path::new("/nonexistent/c100"), Split::Train).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/c100") && e.to_string().contains("--data"),
            "{e}"
        );
    }
}
