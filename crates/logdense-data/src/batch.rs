//! Turning [`ImageItem`]s into burn tensors: augmentation (seeded per item), normalisation
//! with training-set statistics, and a data loader whose shuffling is reproducible.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::augment::{item_rng, item_seed, Augment, Chw};
use crate::item::ImageItem;

/// A batch for classification: `images` (N, C, H, W) normalised floats, `targets` (N) labels.
#[derive(Debug, Clone)]
pub struct ClassBatch {
    /// The images, shape (N, C, H, W), each channel normalised with the batcher's mean and std.
    pub images: Tensor<4>,
    /// The class label of each image, shape (N).
    pub targets: Tensor<1, Int>,
}

/// Augments (when `train`) and normalises items into a [`ClassBatch`].
///
/// Item `i`'s augmentation draws only from `item_rng(seed, epoch, i.index)`, so a batch's
/// content never depends on the worker thread. The loader keeps the batcher for its lifetime:
/// build a new loader per epoch with [`ClassBatcher::at_epoch`] to change the augmentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassBatcher {
    /// Per-channel mean in [0, 1] units (or one value for all channels).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation in [0, 1] units (or one value for all channels).
    pub std: Vec<f32>,
    /// The augmentation (train) and resize / centre-crop (eval) settings.
    pub augment: Augment,
    /// Run seed; with `epoch` and the item's index it seeds each item's augmentation.
    pub seed: u64,
    /// Current epoch (0-based), so that each epoch draws different augmentations.
    pub epoch: usize,
    /// Random augmentation when true; only the deterministic eval transform when false.
    pub train: bool,
}

impl ClassBatcher {
    /// A training batcher at epoch 0.
    pub fn train(mean: Vec<f32>, std: Vec<f32>, augment: Augment, seed: u64) -> Self {
        ClassBatcher {
            mean,
            std,
            augment,
            seed,
            epoch: 0,
            train: true,
        }
    }

    /// An evaluation batcher (deterministic: `augment`'s resize / centre crop only).
    pub fn eval(mean: Vec<f32>, std: Vec<f32>, augment: Augment) -> Self {
        ClassBatcher {
            mean,
            std,
            augment,
            seed: 0,
            epoch: 0,
            train: false,
        }
    }

    /// The same batcher for another epoch.
    pub fn at_epoch(&self, epoch: usize) -> Self {
        ClassBatcher {
            epoch,
            ..self.clone()
        }
    }

    /// The augmented (train) or eval-transformed bytes of one item, and their shape.
    pub fn prepare(&self, item: &ImageItem) -> (Vec<u8>, Chw) {
        if self.train {
            let mut rng = item_rng(self.seed, self.epoch, item.index);
            self.augment
                .apply_train(&item.pixels, item.shape(), &mut rng)
        } else {
            self.augment.apply_eval(&item.pixels, item.shape())
        }
    }
}

impl Batcher<ImageItem, ClassBatch> for ClassBatcher {
    /// Panics if items end up with different shapes (configure a crop for folders of mixed
    /// sizes) or `mean`/`std` do not match the channel count: both are setup errors.
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ClassBatch {
        let mut shape: Option<Chw> = None;
        let mut data: Vec<f32> = Vec::new();
        let mut targets: Vec<i64> = Vec::with_capacity(items.len());
        let mut scale: Vec<(f32, f32)> = Vec::new();
        for item in &items {
            let (px, s) = self.prepare(item);
            match shape {
                None => {
                    shape = Some(s);
                    data.reserve(s.len() * items.len());
                    scale = normalisation(&self.mean, &self.std, s.channels, "ClassBatcher");
                }
                Some(first) => assert_eq!(
                    first, s,
                    "ClassBatcher: item {} is {s:?} after transforms but the batch's first is {first:?}",
                    item.index
                ),
            }
            push_normalised(&mut data, &px, s.height * s.width, &scale);
            targets.push(item.label as i64);
        }
        let s = shape.unwrap_or(Chw::new(0, 0, 0));
        let n = items.len();
        ClassBatch {
            images: Tensor::from_data(
                TensorData::new(data, [n, s.channels, s.height, s.width]),
                device,
            ),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
        }
    }
}

/// A burn data loader over `set` on the default device; see [`loader_on`].
pub fn loader<D>(
    set: D,
    batcher: ClassBatcher,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    workers: usize,
) -> Arc<dyn DataLoader<ClassBatch>>
where
    D: Dataset<ImageItem> + 'static,
{
    loader_on(
        set,
        batcher,
        batch_size,
        shuffle_seed,
        workers,
        &Device::default(),
    )
}

/// A burn data loader over `set` whose batches are created on `device`.
///
/// Shuffling (when `shuffle_seed` is given) is seeded by a hash of (`shuffle_seed`,
/// `batcher.epoch`), so a loader built per epoch gets a new, reproducible order each epoch
/// (iterating one loader again also reshuffles, deterministically). With `workers > 0` each
/// worker batches a fixed slice of the shuffled order; batch contents are reproducible but
/// batches may arrive in a different order between runs. `workers = 0` is fully ordered.
pub fn loader_on<D>(
    set: D,
    batcher: ClassBatcher,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    workers: usize,
    device: &Device,
) -> Arc<dyn DataLoader<ClassBatch>>
where
    D: Dataset<ImageItem> + 'static,
{
    let epoch = batcher.epoch;
    seeded_loader(
        set,
        batcher,
        epoch,
        batch_size,
        shuffle_seed,
        workers,
        device,
    )
}

/// Per-channel `(a, b)` such that `p * a + b = (p / 255 - mean) / std` for a byte `p`; `mean`
/// and `std` hold one value per channel or one for all. Panics (naming `batcher`) otherwise:
/// a setup error.
pub(crate) fn normalisation(
    mean: &[f32],
    std: &[f32],
    channels: usize,
    batcher: &str,
) -> Vec<(f32, f32)> {
    let stat = |v: &[f32], c: usize, what: &str| match v {
        [x] => *x,
        _ => *v.get(c).unwrap_or_else(|| {
            panic!(
                "{batcher}: {what} has {} values for {channels} channels",
                v.len()
            )
        }),
    };
    (0..channels)
        .map(|c| {
            let (m, sd) = (stat(mean, c, "mean"), stat(std, c, "std"));
            (1.0 / (255.0 * sd), -m / sd)
        })
        .collect()
}

/// Appends the channel planes of `pixels` (CHW bytes, `plane` pixels each), normalised by
/// [`normalisation`]'s `scale`, to `data`.
pub(crate) fn push_normalised(
    data: &mut Vec<f32>,
    pixels: &[u8],
    plane: usize,
    scale: &[(f32, f32)],
) {
    for (chunk, &(a, b)) in pixels.chunks_exact(plane.max(1)).zip(scale) {
        data.extend(chunk.iter().map(|&p| f32::from(p) * a + b));
    }
}

/// The loader behind [`loader_on`] and [`crate::seg::seg_loader_on`]: shuffling (when
/// `shuffle_seed` is given) seeded by a hash of (`shuffle_seed`, `epoch`).
pub(crate) fn seeded_loader<I, O, B, D>(
    set: D,
    batcher: B,
    epoch: usize,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    workers: usize,
    device: &Device,
) -> Arc<dyn DataLoader<O>>
where
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    O: Send + Clone + std::fmt::Debug + 'static,
    B: Batcher<I, O> + 'static,
    D: Dataset<I> + 'static,
{
    let mut b = DataLoaderBuilder::new(batcher)
        .batch_size(batch_size.max(1))
        .num_workers(workers)
        .set_device(device.clone());
    if let Some(seed) = shuffle_seed {
        // Index u64::MAX keeps the shuffle stream apart from every item's augmentation stream.
        b = b.shuffle(item_seed(seed, epoch, usize::MAX));
    }
    b.build(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::InMemory;
    use crate::set::ImageSet;

    /// `n` 3x4x4 images; label = index (so targets identify items), image i filled with i.
    fn numbered(n: usize) -> ImageSet {
        ImageSet {
            channels: 3,
            height: 4,
            width: 4,
            classes: n,
            class_names: (0..n).map(|i| i.to_string()).collect(),
            pixels: (0..n).flat_map(|i| vec![i as u8; 48]).collect(),
            labels: (0..n as u16).collect(),
        }
    }

    fn targets(b: &ClassBatch) -> Vec<i64> {
        b.targets
            .to_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap()
    }

    #[test]
    fn batches_are_normalised_with_the_right_shape() {
        let set = numbered(5);
        let ds = InMemory::new(set);
        let items: Vec<ImageItem> = (0..5).map(|i| ds.get(i).unwrap()).collect();
        let b = ClassBatcher::eval(vec![0.0, 0.5, 1.0], vec![1.0, 0.5, 2.0], Augment::none());
        let batch = b.batch(items.clone(), &Device::default());
        assert_eq!(batch.images.dims(), [5, 3, 4, 4]);
        assert_eq!(targets(&batch), vec![0, 1, 2, 3, 4]);
        let v = batch
            .images
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        // Item 4, channel 1, any pixel: (4/255 - 0.5) / 0.5.
        let x = v[4 * 48 + 16 + 5];
        assert!((x - (4.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6, "{x}");
        let x = v[2 * 48 + 32];
        assert!((x - (2.0 / 255.0 - 1.0) / 2.0).abs() < 1e-6, "{x}");

        // Training with crop to 3x3 changes the spatial size; seeded per item.
        let aug = Augment {
            random_resized_crop: Some(3),
            ..Augment::cifar()
        };
        let t = ClassBatcher::train(vec![0.5], vec![0.25], aug, 9);
        let b1 = t.batch(items.clone(), &Device::default());
        assert_eq!(b1.images.dims(), [5, 3, 3, 3]);
        let again = t.batch(items.iter().rev().cloned().collect(), &Device::default());
        let a = b1.images.to_data().try_to_vec::<f32>().unwrap();
        let r = again.images.to_data().try_to_vec::<f32>().unwrap();
        // Same items in reverse order: the same per-item tensors, reversed.
        assert_eq!(&a[..27], &r[4 * 27..]);
        assert_eq!(t.prepare(&items[2]), t.prepare(&items[2]));
        assert_ne!(t.prepare(&items[2]), t.at_epoch(1).prepare(&items[2]));
    }

    #[test]
    fn loader_yields_every_item_once_per_epoch() {
        let n = 37;
        let ds = InMemory::new(numbered(n));
        let batcher = ClassBatcher::train(vec![0.5], vec![0.5], Augment::cifar(), 3);
        let mut orders = Vec::new();
        for workers in [0, 2] {
            for epoch in 0..2 {
                let l = loader(ds.clone(), batcher.at_epoch(epoch), 8, Some(11), workers);
                assert_eq!(l.num_items(), n);
                let mut seen = Vec::new();
                for b in l.iter() {
                    let b = b.unwrap();
                    assert!(b.images.dims()[0] <= 8);
                    assert_eq!(b.images.dims()[1..], [3, 4, 4]);
                    seen.extend(targets(&b));
                }
                if workers == 0 {
                    orders.push(seen.clone());
                }
                seen.sort_unstable();
                assert_eq!(seen, (0..n as i64).collect::<Vec<_>>());
            }
        }
        // Reproducible order for the same seed and epoch; another epoch reshuffles.
        let l = loader(ds.clone(), batcher.at_epoch(0), 8, Some(11), 0);
        let again: Vec<i64> = l.iter().flat_map(|b| targets(&b.unwrap())).collect();
        assert_eq!(again, orders[0]);
        assert_ne!(orders[0], orders[1]);
        // No shuffle: dataset order.
        let l = loader(ds, batcher, 10, None, 0);
        let plain: Vec<i64> = l.iter().flat_map(|b| targets(&b.unwrap())).collect();
        assert_eq!(plain, (0..n as i64).collect::<Vec<_>>());
    }
}
