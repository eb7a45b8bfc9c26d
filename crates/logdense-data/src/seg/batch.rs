//! Segmentation items, joint image/label augmentation and batching into burn tensors.
//!
//! Augmentation is geometric only (random crop, horizontal flip), applied with the same window
//! and the same flip to an image and its label map, so they stay aligned pixel for pixel. As
//! for classification, item `i`'s randomness comes only from `item_rng(seed, epoch, i)`.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoader;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;

use crate::augment::{crop, hflip, item_rng, resize_window, Chw};
use crate::seg::set::SegSet;

/// One RGB image (CHW) and its class-id map, with its index in the data set it came from.
#[derive(Clone, PartialEq)]
pub struct SegItem {
    /// Position in the underlying data set (not in a shuffled order): seeds augmentation.
    pub index: usize,
    /// `3 x height x width` RGB bytes.
    pub image: Vec<u8>,
    /// `height x width` class ids (void = the set's class count).
    pub label: Vec<u8>,
    /// Image and label-map height in pixels.
    pub height: usize,
    /// Image and label-map width in pixels.
    pub width: usize,
}

// Debug without the pixels: data loaders require Debug, and a 500 KB dump helps nobody.
impl std::fmt::Debug for SegItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegItem")
            .field("index", &self.index)
            .field("size", &(self.height, self.width))
            .finish_non_exhaustive()
    }
}

/// A shared, cheaply clonable [`Dataset`] over an in-memory [`SegSet`].
#[derive(Debug, Clone)]
pub struct SegInMemory {
    /// The shared images and label maps the items are read from.
    pub set: Arc<SegSet>,
}

impl SegInMemory {
    /// Wraps `set` in an [`Arc`] so that clones of the data set share the pixels.
    pub fn new(set: SegSet) -> Self {
        SegInMemory { set: Arc::new(set) }
    }
}

impl From<Arc<SegSet>> for SegInMemory {
    fn from(set: Arc<SegSet>) -> Self {
        SegInMemory { set }
    }
}

impl Dataset<SegItem> for SegInMemory {
    /// Panics if `index >= len()` (the trait's convention).
    fn get(&self, index: usize) -> Result<SegItem, DatasetError> {
        Ok(SegItem {
            index,
            image: self.set.image(index).to_vec(),
            label: self.set.label(index).to_vec(),
            height: self.set.height,
            width: self.set.width,
        })
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}

/// Epoch `epoch`'s share of a set too large to read whole every epoch: `len` items of a
/// seeded permutation of `set`, starting where the previous epoch's share ended and wrapping
/// around. Consecutive epochs read disjoint slices, so every item is read once before any is
/// read twice, and epoch `e`'s share depends only on (`seed`, `e`, `len`): a resumed run
/// reads what an uninterrupted one would.
#[derive(Debug, Clone)]
pub struct SegEpochShare {
    set: SegInMemory,
    order: Arc<Vec<usize>>,
    start: usize,
    len: usize,
}

impl SegEpochShare {
    /// `len` is capped at the set's size; `epoch` counts from 1.
    pub fn new(set: SegInMemory, seed: u64, epoch: usize, len: usize) -> Self {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let n = set.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let len = len.min(n);
        let start = if n == 0 {
            0
        } else {
            (epoch.saturating_sub(1) * len) % n
        };
        SegEpochShare {
            set,
            order: Arc::new(order),
            start,
            len,
        }
    }

    /// Underlying indices of this share, in share order.
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).map(|i| self.source(i))
    }

    /// The underlying index of the share's item `i`.
    fn source(&self, i: usize) -> usize {
        self.order[(self.start + i) % self.order.len()]
    }
}

impl Dataset<SegItem> for SegEpochShare {
    /// The item keeps its index in the underlying set (it seeds the augmentation).
    fn get(&self, index: usize) -> Result<SegItem, DatasetError> {
        self.set.get(self.source(index))
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// The `ch x cw` window at (`top`, `left`) of an `h x w` image (3 channels) and of its label.
/// Panics if the window does not fit.
#[allow(clippy::too_many_arguments)]
pub fn seg_crop(
    image: &[u8],
    label: &[u8],
    h: usize,
    w: usize,
    top: usize,
    left: usize,
    ch: usize,
    cw: usize,
) -> (Vec<u8>, Vec<u8>) {
    (
        crop(image, Chw::new(3, h, w), top, left, ch, cw),
        crop(label, Chw::new(1, h, w), top, left, ch, cw),
    )
}

/// Mirrors an `h x w` image (3 channels) and its label left-right.
pub fn seg_hflip(image: &[u8], label: &[u8], h: usize, w: usize) -> (Vec<u8>, Vec<u8>) {
    (
        hflip(image, Chw::new(3, h, w)),
        hflip(label, Chw::new(1, h, w)),
    )
}

/// A segmentation batch: `images` (N, 3, H, W) normalised floats, `labels` (N, H, W) class ids
/// with void = the set's class count (the loss must ignore that value).
#[derive(Debug, Clone)]
pub struct SegBatch {
    /// The images, shape (N, 3, H, W), each channel normalised with the batcher's mean and std.
    pub images: Tensor<4>,
    /// The class id of each pixel, shape (N, H, W); void pixels hold the class count.
    pub labels: Tensor<3, Int>,
}

/// Augments (when `train`) and normalises [`SegItem`]s into a [`SegBatch`].
///
/// Training: a random `crop` window (clamped to the image size, so a 224x224 crop of a 96x96
/// image is the whole image), then a left-right flip with probability 1/2 when `flip`; both
/// drawn from `item_rng(seed, epoch, item.index)`. Evaluation (`train = false`) uses the full
/// images unchanged. Build a new loader per epoch with [`SegBatcher::at_epoch`].
#[derive(Debug, Clone, PartialEq)]
pub struct SegBatcher {
    /// Per-channel mean in [0, 1] units (or one value for all channels).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation in [0, 1] units (or one value for all channels).
    pub std: Vec<f32>,
    /// Random crop size (height, width) for training.
    pub crop: Option<(usize, usize)>,
    /// Random horizontal flip for training.
    pub flip: bool,
    /// Run seed; with `epoch` and the item's index it seeds each item's crop and flip.
    pub seed: u64,
    /// Current epoch, so that each epoch draws different crops and flips.
    pub epoch: usize,
    /// Random augmentation when true; full images unchanged when false.
    pub train: bool,
    /// Training images are shrunk by this factor after cropping and flipping (2x2 box average;
    /// labels take each cell's centre pixel): 1 keeps them. Progressive resizing trains the
    /// first epochs on cheaper, smaller images.
    pub downscale: usize,
}

impl SegBatcher {
    /// A training batcher at epoch 0.
    pub fn train(
        mean: Vec<f32>,
        std: Vec<f32>,
        crop: Option<(usize, usize)>,
        flip: bool,
        seed: u64,
    ) -> Self {
        SegBatcher {
            mean,
            std,
            crop,
            flip,
            seed,
            epoch: 0,
            train: true,
            downscale: 1,
        }
    }

    /// An evaluation batcher: full images, no randomness.
    pub fn eval(mean: Vec<f32>, std: Vec<f32>) -> Self {
        SegBatcher {
            mean,
            std,
            crop: None,
            flip: false,
            seed: 0,
            epoch: 0,
            train: false,
            downscale: 1,
        }
    }

    /// The same batcher for another epoch.
    pub fn at_epoch(&self, epoch: usize) -> Self {
        SegBatcher {
            epoch,
            ..self.clone()
        }
    }

    /// The same batcher shrinking training images by `factor` (see [`Self::downscale`]).
    pub fn with_downscale(&self, factor: usize) -> Self {
        SegBatcher {
            downscale: factor.max(1),
            ..self.clone()
        }
    }

    /// The (augmented when training) image and label of one item, and their height and width.
    pub fn prepare(&self, item: &SegItem) -> (Vec<u8>, Vec<u8>, usize, usize) {
        let (mut h, mut w) = (item.height, item.width);
        let (mut img, mut lab) = (item.image.clone(), item.label.clone());
        if !self.train {
            return (img, lab, h, w);
        }
        let mut rng = item_rng(self.seed, self.epoch, item.index);
        if let Some((ch, cw)) = self.crop {
            let (ch, cw) = (ch.clamp(1, h), cw.clamp(1, w));
            if (ch, cw) != (h, w) {
                let top = rng.random_range(0..=h - ch);
                let left = rng.random_range(0..=w - cw);
                (img, lab) = seg_crop(&img, &lab, h, w, top, left, ch, cw);
                (h, w) = (ch, cw);
            }
        }
        if self.flip && rng.random_bool(0.5) {
            (img, lab) = seg_hflip(&img, &lab, h, w);
        }
        let f = self.downscale;
        if f > 1 && h >= f && w >= f {
            let (sh, sw) = (h / f, w / f);
            // Half-pixel bilinear at an integer factor 2 is the 2x2 box average.
            img = resize_window(&img, Chw::new(3, h, w), 0, 0, sh * f, sw * f, sh, sw);
            if (sh * f, sw * f) != (h, w) {
                lab = crop(&lab, Chw::new(1, h, w), 0, 0, sh * f, sw * f);
            }
            lab = subsample_labels(&lab, 1, (sh * f, sw * f), (sh, sw));
            (h, w) = (sh, sw);
        }
        (img, lab, h, w)
    }
}

impl Batcher<SegItem, SegBatch> for SegBatcher {
    /// Panics if items end up with different sizes or `mean`/`std` have neither 1 nor 3
    /// values: both are setup errors.
    fn batch(&self, items: Vec<SegItem>, device: &Device) -> SegBatch {
        let scale = crate::batch::normalisation(&self.mean, &self.std, 3, "SegBatcher");
        let mut size: Option<(usize, usize)> = None;
        let mut data: Vec<f32> = Vec::new();
        let mut labels: Vec<i64> = Vec::new();
        for item in &items {
            let (img, lab, h, w) = self.prepare(item);
            match size {
                None => {
                    size = Some((h, w));
                    data.reserve(items.len() * 3 * h * w);
                    labels.reserve(items.len() * h * w);
                }
                Some(first) => assert_eq!(
                    first,
                    (h, w),
                    "SegBatcher: item {} is {h}x{w} after transforms but the batch's first is {}x{}",
                    item.index,
                    first.0,
                    first.1
                ),
            }
            crate::batch::push_normalised(&mut data, &img, h * w, &scale);
            labels.extend(lab.iter().map(|&l| i64::from(l)));
        }
        let (h, w) = size.unwrap_or((0, 0));
        let n = items.len();
        SegBatch {
            images: Tensor::from_data(TensorData::new(data, [n, 3, h, w]), device),
            labels: Tensor::from_data(TensorData::new(labels, [n, h, w]), device),
        }
    }
}

/// Nearest-neighbour subsampling of label maps `[N, H, W]` (row-major `labels`) to `h x w`,
/// sampling the centre of each cell: the auxiliary heads' targets, and shrunk training crops.
pub fn subsample_labels<T: Copy>(
    labels: &[T],
    n: usize,
    (hh, ww): (usize, usize),
    (h, w): (usize, usize),
) -> Vec<T> {
    let mut out = Vec::with_capacity(n * h * w);
    for b in 0..n {
        for y in 0..h {
            let sy = ((2 * y + 1) * hh / (2 * h)).min(hh - 1);
            for x in 0..w {
                let sx = ((2 * x + 1) * ww / (2 * w)).min(ww - 1);
                out.push(labels[(b * hh + sy) * ww + sx]);
            }
        }
    }
    out
}

/// A burn data loader over `set` on the default device; see [`seg_loader_on`].
pub fn seg_loader<D>(
    set: D,
    batcher: SegBatcher,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    workers: usize,
) -> Arc<dyn DataLoader<SegBatch>>
where
    D: Dataset<SegItem> + 'static,
{
    seg_loader_on(
        set,
        batcher,
        batch_size,
        shuffle_seed,
        workers,
        &Device::default(),
    )
}

/// A burn data loader over `set` whose batches are created on `device`, shuffled (when
/// `shuffle_seed` is given) by a hash of (`shuffle_seed`, `batcher.epoch`), exactly as the
/// classification [`crate::loader_on`].
pub fn seg_loader_on<D>(
    set: D,
    batcher: SegBatcher,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    workers: usize,
    device: &Device,
) -> Arc<dyn DataLoader<SegBatch>>
where
    D: Dataset<SegItem> + 'static,
{
    let epoch = batcher.epoch;
    crate::batch::seeded_loader(
        set,
        batcher,
        epoch,
        batch_size,
        shuffle_seed,
        workers,
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: usize = 10;
    const W: usize = 12;

    /// `n` images whose pixels encode their label and position: R = 20 * label,
    /// G = 20 * column, B = 20 * row; label(y, x) = (3y + x + i) % 11, with void (11) on the
    /// diagonal of item 0.
    fn encoded(n: usize) -> SegSet {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let lab: Vec<u8> = (0..H * W)
                .map(|p| {
                    let (y, x) = (p / W, p % W);
                    if i == 0 && y == x {
                        11
                    } else {
                        ((3 * y + x + i) % 11) as u8
                    }
                })
                .collect();
            images.extend(lab.iter().map(|&l| 20 * l));
            images.extend((0..H * W).map(|p| 20 * (p % W) as u8));
            images.extend((0..H * W).map(|p| 20 * (p / W) as u8));
            labels.extend(lab);
        }
        SegSet {
            height: H,
            width: W,
            classes: 11,
            class_names: (0..11).map(|c| c.to_string()).collect(),
            palette: vec![[0; 3]; 12],
            images,
            labels,
        }
    }

    fn ints(t: &Tensor<3, Int>) -> Vec<i64> {
        t.to_data().convert::<i64>().try_to_vec::<i64>().unwrap()
    }

    fn bytes(t: &Tensor<4>) -> Vec<u8> {
        // mean 0, std 1: value = p / 255.
        t.to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect()
    }

    #[test]
    fn crop_and_flip_keep_image_and_label_aligned() {
        let set = encoded(6);
        set.check().unwrap();
        let ds = SegInMemory::new(set);
        let items: Vec<SegItem> = (0..6).map(|i| ds.get(i).unwrap()).collect();
        let t = SegBatcher::train(vec![0.0], vec![1.0], Some((5, 7)), true, 3);
        let (mut flips, mut offsets) = (0, std::collections::HashSet::new());
        for epoch in 0..4 {
            let b = t.at_epoch(epoch).batch(items.clone(), &Device::default());
            assert_eq!(b.images.dims(), [6, 3, 5, 7]);
            assert_eq!(b.labels.dims(), [6, 5, 7]);
            let (px, lab) = (bytes(&b.images), ints(&b.labels));
            for i in 0..6 {
                let img = &px[i * 105..(i + 1) * 105];
                let l = &lab[i * 35..(i + 1) * 35];
                for p in 0..35 {
                    assert_eq!(i64::from(img[p] / 20), l[p], "item {i} pixel {p}");
                }
                // Columns step by +-1 along a row (flip or not), rows by +1.
                let col = |p: usize| i64::from(img[35 + p] / 20);
                let row = |p: usize| i64::from(img[70 + p] / 20);
                let step = col(1) - col(0);
                assert!(step == 1 || step == -1);
                for y in 0..5 {
                    for x in 0..7 {
                        assert_eq!(col(y * 7 + x), col(0) + step * x as i64);
                        assert_eq!(row(y * 7 + x), row(0) + y as i64);
                    }
                }
                flips += usize::from(step == -1);
                offsets.insert((row(0), col(0)));
            }
        }
        assert!(flips > 0 && flips < 24, "{flips} flips of 24");
        assert!(offsets.len() > 5, "{offsets:?}");
        // Per-item seeding: an item's result does not depend on its batch or position.
        assert_eq!(t.prepare(&items[2]), t.prepare(&items[2]));
        assert_ne!(t.prepare(&items[2]), t.at_epoch(1).prepare(&items[2]));
        // A crop larger than the image is the whole image.
        let big = SegBatcher::train(vec![0.0], vec![1.0], Some((100, 100)), false, 1);
        let (img, lab, h, w) = big.prepare(&items[1]);
        assert_eq!((h, w), (H, W));
        assert_eq!((img, lab), (items[1].image.clone(), items[1].label.clone()));
    }

    #[test]
    fn downscaled_training_images_average_2x2_cells_and_labels_take_their_centres() {
        let ds = SegInMemory::new(encoded(2));
        let item = ds.get(1).unwrap();
        let t = SegBatcher::train(vec![0.0], vec![1.0], None, false, 1).with_downscale(2);
        let (img, lab, h, w) = t.prepare(&item);
        assert_eq!((h, w), (H / 2, W / 2));
        let plane = h * w;
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                assert_eq!(
                    lab[p],
                    item.label[(2 * y + 1) * W + 2 * x + 1],
                    "label ({y},{x})"
                );
                // G encodes the column, B the row: a 2x2 cell averages to 20 * (2x + 0.5).
                assert_eq!(img[plane + p], (40 * x + 10) as u8, "column of ({y},{x})");
                assert_eq!(img[2 * plane + p], (40 * y + 10) as u8, "row of ({y},{x})");
            }
        }
        // An odd crop (9 x 11) drops its last row and column: the same crop unshrunk gives
        // the labels at the cell centres.
        let odd = SegBatcher::train(vec![0.0], vec![1.0], Some((9, 11)), false, 4);
        let (_, full, _, _) = odd.prepare(&item);
        let (_, shrunk, sh, sw) = odd.with_downscale(2).prepare(&item);
        assert_eq!((sh, sw), (4, 5));
        for (p, &label) in shrunk.iter().enumerate() {
            let (y, x) = (p / sw, p % sw);
            assert_eq!(
                label,
                full[(2 * y + 1) * 11 + 2 * x + 1],
                "odd crop ({y},{x})"
            );
        }
        // Evaluation never shrinks; factor 1 is the identity.
        let e = SegBatcher::eval(vec![0.0], vec![1.0]).with_downscale(2);
        assert_eq!(e.prepare(&item).2, H);
        let same = SegBatcher::train(vec![0.0], vec![1.0], None, false, 1).with_downscale(1);
        assert_eq!(same.prepare(&item).0, item.image);
    }

    #[test]
    fn subsampling_picks_cell_centres() {
        // 1 image 4x4 with values 0..16, down to 2x2: centres (1,1),(1,3),(3,1),(3,3) -> rows 2*y+1.
        let labels: Vec<i64> = (0..16).collect();
        assert_eq!(
            subsample_labels(&labels, 1, (4, 4), (2, 2)),
            vec![5, 7, 13, 15]
        );
    }

    #[test]
    fn eval_batches_are_full_and_normalised() {
        let ds = SegInMemory::new(encoded(3));
        let items: Vec<SegItem> = (0..3).map(|i| ds.get(i).unwrap()).collect();
        let e = SegBatcher::eval(vec![0.1, 0.2, 0.3], vec![0.5, 0.25, 2.0]);
        let b = e.batch(items.clone(), &Device::default());
        assert_eq!(b.images.dims(), [3, 3, H, W]);
        let lab = ints(&b.labels);
        assert_eq!(lab[0], 11, "void kept as the class count");
        let want: Vec<i64> = items
            .iter()
            .flat_map(|it| it.label.iter().map(|&l| i64::from(l)))
            .collect();
        assert_eq!(lab, want);
        let v = b
            .images
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        // Item 1, G channel, pixel 5 (column 5): (100/255 - 0.2) / 0.25.
        let x = v[H * W * 3 + H * W + 5];
        assert!((x - (100.0 / 255.0 - 0.2) / 0.25).abs() < 1e-5, "{x}");
    }

    #[test]
    fn loader_covers_every_item() {
        let ds = SegInMemory::new(encoded(7));
        let b = SegBatcher::train(vec![0.0], vec![1.0], Some((4, 4)), true, 1);
        for workers in [0, 2] {
            let l = seg_loader(ds.clone(), b.at_epoch(1), 3, Some(5), workers);
            let mut n = 0;
            for batch in l.iter() {
                let batch = batch.unwrap();
                assert_eq!(batch.images.dims()[1..], [3, 4, 4]);
                n += batch.labels.dims()[0];
            }
            assert_eq!(n, 7);
        }
    }

    #[test]
    fn epoch_shares_read_every_item_once_before_any_twice() {
        let ds = SegInMemory::new(encoded(10));
        let shares: Vec<Vec<usize>> = (1..=5)
            .map(|e| SegEpochShare::new(ds.clone(), 3, e, 4).indices().collect())
            .collect();
        // Epochs 1-2 and the first half of 3 cover 10 distinct items; then the order repeats.
        let first: Vec<usize> = shares.concat()[..10].to_vec();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(shares.concat()[10..20], first[..]);
        // A share is a function of (seed, epoch, len), and its items keep their own index.
        let again = SegEpochShare::new(ds.clone(), 3, 2, 4);
        assert_eq!(again.indices().collect::<Vec<_>>(), shares[1]);
        assert_eq!(again.len(), 4);
        assert_eq!(again.get(1).unwrap().index, shares[1][1]);
        // A share larger than the set is the whole set.
        assert_eq!(SegEpochShare::new(ds, 3, 7, 50).len(), 10);
    }
}
