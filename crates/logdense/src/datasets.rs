//! The classification data-set registry: each `data.dataset` name and its loader, with the
//! statistics and shapes the network and the normalisation need.

use crate::config::TrainConfig;
use crate::error::invalid;
use anyhow::{bail, Result};
use burn::data::dataset::Dataset;
use logdense_data::{
    load_cifar10, load_cifar100, load_fashion_mnist, load_mnist, load_svhn, ImageItem, ImageSet,
    InMemory, Split,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An item source for the loaders: in memory, or decoded lazily from image files.
pub type Items = Arc<dyn Dataset<ImageItem>>;

/// A classification data set ready for training: both splits and what the network and the
/// normalisation need to know about them.
pub struct ClassData {
    pub train: Items,
    pub test: Items,
    /// Channels, height and width of the images the network sees (after the eval transform).
    pub input: [usize; 3],
    pub class_names: Vec<String>,
    /// Per-channel statistics of the training images, in [0, 1] units.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Images whose statistics are estimated for lazily decoded (ImageNet-style) data sets.
pub const STATS_SAMPLE: usize = 512;

/// Loads the configured train and test sets.
pub fn load_data(cfg: &TrainConfig) -> Result<ClassData> {
    let d = &cfg.data;
    let dir = d
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(logdense_data::FASHION_MNIST_DIR));
    if d.dataset == "folder" {
        return load_folders(cfg, &dir);
    }
    let load = |split: Split| -> Result<ImageSet> {
        Ok(match d.dataset.as_str() {
            "fashion-mnist" => load_fashion_mnist(&dir, split)?,
            "mnist" => load_mnist(&dir, split)?,
            "cifar10" => load_cifar10(&dir, split)?,
            "cifar100" => load_cifar100(&dir, split)?,
            "svhn" => load_svhn(&dir, split)?,
            other => bail!("data.dataset: unknown data set '{other}' (fashion-mnist, mnist, cifar10, cifar100, svhn, folder)"),
        })
    };
    let mut train = load(Split::Train)?;
    let mut test = load(Split::Test)?;
    if let Some(n) = d.train_subset {
        train = train.subset(n, cfg.seed);
    }
    if let Some(n) = d.test_subset {
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
fn load_folders(cfg: &TrainConfig, dir: &Path) -> Result<ClassData> {
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
    let test = subset(test, cfg.data.test_subset, cfg.seed ^ 0x5eed);
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
