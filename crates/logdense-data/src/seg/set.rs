//! The in-memory segmentation set: RGB images and per-pixel class-id maps of one size, both as
//! flat `Vec<u8>` (CamVid train is 367 x 360 x 480: 190 MB of images, 63 MB of labels), plus
//! the class statistics that segmentation training needs (median-frequency class weights).

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// SegNet's median-frequency weights for CamVid's 11 classes (Sky, Building, Pole, Road,
/// Sidewalk, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist), as quoted by the paper's
/// setup (SPEC "FC-Log-DenseNet 103").
pub const CAMVID_CLASSIC_WEIGHTS: [f32; 11] = [
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
];

/// RGB images with a class id per pixel, all `height x width`, in memory.
///
/// `images` holds `len()` images, each `3 x height x width` (CHW, RGB, row-major); `labels`
/// holds one `height x width` map per image with values `0..classes`, or `classes` for void
/// (ignored pixels). `palette` has `classes + 1` colours: one per class, then void's.
#[derive(Debug, Clone, PartialEq)]
pub struct SegSet {
    /// Image and label-map height in pixels.
    pub height: usize,
    /// Image and label-map width in pixels.
    pub width: usize,
    /// Number of real classes; the label value `classes` is void.
    pub classes: usize,
    /// Name of each real class (index = class id); `classes` entries, void not included.
    pub class_names: Vec<String>,
    /// `classes + 1` RGB colours (the last is void's), for visualising label maps.
    pub palette: Vec<[u8; 3]>,
    /// All images back to back, CHW RGB row-major, `len() * image_size()` bytes.
    pub images: Vec<u8>,
    /// All class-id maps back to back, row-major, `len() * plane()` bytes.
    pub labels: Vec<u8>,
}

impl SegSet {
    /// Pixels per image plane (`height * width`).
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Bytes per image (`3 * height * width`).
    pub fn image_size(&self) -> usize {
        3 * self.plane()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len() / self.plane().max(1)
    }

    /// Whether the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label value that marks void (ignored) pixels: `classes`.
    pub fn void(&self) -> u8 {
        self.classes as u8
    }

    /// The CHW RGB bytes of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_size();
        &self.images[i * n..(i + 1) * n]
    }

    /// The `height x width` class-id map of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> &[u8] {
        let n = self.plane();
        &self.labels[i * n..(i + 1) * n]
    }

    /// Checks that sizes, names, palette and label values agree; loaders call it before
    /// returning.
    pub fn check(&self) -> Result<(), String> {
        if self.plane() == 0 {
            return Err(format!("empty image size {}x{}", self.height, self.width));
        }
        if self.classes == 0 || self.classes >= 255 {
            return Err(format!(
                "{} classes (need 1..=254: the value `classes` is void and 255 is reserved)",
                self.classes
            ));
        }
        if !self.labels.len().is_multiple_of(self.plane())
            || self.images.len() != 3 * self.labels.len()
        {
            return Err(format!(
                "{} image bytes and {} label bytes for images of {}x{}",
                self.images.len(),
                self.labels.len(),
                self.height,
                self.width
            ));
        }
        if self.class_names.len() != self.classes {
            return Err(format!(
                "{} class names for {} classes",
                self.class_names.len(),
                self.classes
            ));
        }
        if self.palette.len() != self.classes + 1 {
            return Err(format!(
                "{} palette colours for {} classes + void",
                self.palette.len(),
                self.classes
            ));
        }
        if let Some(p) = self.labels.iter().position(|&l| l > self.void()) {
            let n = self.plane();
            return Err(format!(
                "label value {} at pixel {} of image {} > void ({})",
                self.labels[p],
                p % n,
                p / n,
                self.void()
            ));
        }
        Ok(())
    }

    /// Pixels per class over the whole set (index = class id; void not counted).
    pub fn class_pixel_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.classes + 1];
        for &l in &self.labels {
            counts[usize::from(l).min(self.classes)] += 1;
        }
        counts.truncate(self.classes);
        counts
    }

    /// Per class, its frequency as SegNet defines it: pixels of the class divided by the
    /// (non-void) pixels of the images in which the class appears; `None` for a class that
    /// appears nowhere.
    pub fn class_frequencies(&self) -> Vec<Option<f64>> {
        let mut count = vec![0u64; self.classes];
        let mut denom = vec![0u64; self.classes];
        let mut per_image = vec![0u64; self.classes + 1];
        for lab in self.labels.chunks_exact(self.plane().max(1)) {
            per_image.fill(0);
            for &l in lab {
                per_image[usize::from(l).min(self.classes)] += 1;
            }
            let non_void: u64 = per_image[..self.classes].iter().sum();
            for c in 0..self.classes {
                if per_image[c] > 0 {
                    count[c] += per_image[c];
                    denom[c] += non_void;
                }
            }
        }
        (0..self.classes)
            .map(|c| (denom[c] > 0).then(|| count[c] as f64 / denom[c] as f64))
            .collect()
    }

    /// Median-frequency class weights (Eigen & Fergus; SegNet): `median(freq) / freq[c]` with
    /// `freq` from [`Self::class_frequencies`] (void pixels left out of both counts, so the
    /// weights do not depend on how much of an image is unlabelled). The median is over the
    /// classes that appear (the mean of the two middle values for an even count); a class
    /// absent from the set gets weight 0 (it contributes no loss anyway, and 0 keeps the
    /// vector finite).
    pub fn median_frequency_weights(&self) -> Vec<f32> {
        let freq = self.class_frequencies();
        let mut present: Vec<f64> = freq.iter().flatten().copied().collect();
        if present.is_empty() {
            return vec![0.0; self.classes];
        }
        present.sort_by(f64::total_cmp);
        let n = present.len();
        let median = if n % 2 == 1 {
            present[n / 2]
        } else {
            (present[n / 2 - 1] + present[n / 2]) / 2.0
        };
        freq.iter()
            .map(|f| f.map_or(0.0, |f| (median / f) as f32))
            .collect()
    }

    /// Per-channel (R, G, B) mean and standard deviation over all pixels of all images, in
    /// [0, 1] units (pixel / 255), for normalising with training-set statistics. Zero std
    /// becomes 1.
    pub fn channel_mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.plane().max(1);
        let mut sum = [0u64; 3];
        let mut sum_sq = [0f64; 3];
        for img in self.images.chunks_exact(3 * plane) {
            for (c, px) in img.chunks_exact(plane).enumerate() {
                // Exact integer sums per plane; a plane's squares fit u64 easily.
                sum[c] += px.iter().map(|&p| u64::from(p)).sum::<u64>();
                sum_sq[c] += px.iter().map(|&p| u64::from(p) * u64::from(p)).sum::<u64>() as f64;
            }
        }
        let count = (self.len() * self.plane()) as f64;
        let mut mean = Vec::with_capacity(3);
        let mut std = Vec::with_capacity(3);
        for c in 0..3 {
            if count == 0.0 {
                mean.push(0.0);
                std.push(1.0);
                continue;
            }
            let m = sum[c] as f64 / count / 255.0;
            let var = (sum_sq[c] / count / (255.0 * 255.0) - m * m).max(0.0);
            let s = var.sqrt();
            mean.push(m as f32);
            std.push(if s > 0.0 { s as f32 } else { 1.0 });
        }
        (mean, std)
    }

    /// Copies the images at `indices` (in that order) into a new set.
    pub fn select(&self, indices: &[usize]) -> SegSet {
        let mut images = Vec::with_capacity(indices.len() * self.image_size());
        let mut labels = Vec::with_capacity(indices.len() * self.plane());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.extend_from_slice(self.label(i));
        }
        SegSet {
            images,
            labels,
            class_names: self.class_names.clone(),
            palette: self.palette.clone(),
            ..*self
        }
    }

    /// A seeded random `min(n, len)` images, without replacement, in their original order.
    pub fn subset(&self, n: usize, seed: u64) -> SegSet {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut idx = rand::seq::index::sample(&mut rng, self.len(), n.min(self.len())).into_vec();
        idx.sort_unstable();
        self.select(&idx)
    }

    /// The label map `label` (one plane of class ids) as CHW RGB through the palette; values
    /// past void are drawn in void's colour.
    pub fn colorize(&self, label: &[u8]) -> Vec<u8> {
        let n = label.len();
        let void = self.palette.last().copied().unwrap_or([0, 0, 0]);
        let mut out = vec![0u8; 3 * n];
        for (p, &l) in label.iter().enumerate() {
            let rgb = self.palette.get(usize::from(l)).copied().unwrap_or(void);
            for c in 0..3 {
                out[c * n + p] = rgb[c];
            }
        }
        out
    }
}

/// Which class weights the segmentation loss uses (serde: `"computed"`, `"classic"`,
/// `"none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassWeights {
    /// Median-frequency weights of the training set ([`SegSet::median_frequency_weights`]).
    #[default]
    Computed,
    /// SegNet's published CamVid values ([`CAMVID_CLASSIC_WEIGHTS`]); 11 classes only.
    Classic,
    /// Unweighted loss.
    None,
}

impl ClassWeights {
    /// The weights for training on `train` (`None` = unweighted). `Classic` on a set whose
    /// class count is not 11 is an error (those values are CamVid's).
    pub fn resolve(self, train: &SegSet) -> Result<Option<Vec<f32>>, String> {
        match self {
            ClassWeights::Computed => Ok(Some(train.median_frequency_weights())),
            ClassWeights::Classic if train.classes == CAMVID_CLASSIC_WEIGHTS.len() => {
                Ok(Some(CAMVID_CLASSIC_WEIGHTS.to_vec()))
            }
            ClassWeights::Classic => Err(format!(
                "the classic CamVid class weights are for 11 classes; this set has {}",
                train.classes
            )),
            ClassWeights::None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 2x2 label maps over 4 classes (void = 4); class 3 never appears.
    fn hand() -> SegSet {
        SegSet {
            height: 2,
            width: 2,
            classes: 4,
            class_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            palette: vec![[1, 1, 1]; 5],
            images: (0..24).collect(),
            labels: vec![0, 0, 1, 4, 1, 1, 2, 2],
        }
    }

    #[test]
    fn median_frequency_weights_by_hand() {
        let s = hand();
        s.check().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.class_pixel_counts(), vec![2, 3, 2, 0]);
        // Non-void pixels: image 0 has 3, image 1 has 4.
        // freq0 = 2/3 (image 0 only), freq1 = (1+2)/(3+4) = 3/7, freq2 = 2/4 (image 1 only).
        let f = s.class_frequencies();
        assert_eq!(f[3], None);
        let want_f = [2.0 / 3.0, 3.0 / 7.0, 0.5];
        for c in 0..3 {
            assert!((f[c].unwrap() - want_f[c]).abs() < 1e-12);
        }
        // Median of {3/7, 1/2, 2/3} = 1/2; absent class 3 gets 0.
        let w = s.median_frequency_weights();
        let want = [0.75f32, 7.0 / 6.0, 1.0, 0.0];
        for c in 0..4 {
            assert!((w[c] - want[c]).abs() < 1e-6, "{w:?}");
        }
        // Even number of present classes: mean of the two middle frequencies.
        let mut s2 = s.select(&[1]);
        s2.labels = vec![1, 1, 1, 2];
        // freq1 = 3/4, freq2 = 1/4 -> median 1/2 -> weights 2/3 and 2.
        let w = s2.median_frequency_weights();
        assert!(
            (w[1] - 2.0 / 3.0).abs() < 1e-6 && (w[2] - 2.0).abs() < 1e-6,
            "{w:?}"
        );
    }

    #[test]
    fn class_weights_resolve_and_serde() {
        let s = hand();
        assert_eq!(
            ClassWeights::Computed.resolve(&s).unwrap(),
            Some(s.median_frequency_weights())
        );
        assert_eq!(ClassWeights::None.resolve(&s).unwrap(), None);
        assert!(ClassWeights::Classic.resolve(&s).is_err());
        let mut eleven = s.clone();
        eleven.classes = 11;
        assert_eq!(
            ClassWeights::Classic.resolve(&eleven).unwrap().unwrap()[6],
            9.6446
        );
        for (v, text) in [
            (ClassWeights::Computed, "\"computed\""),
            (ClassWeights::Classic, "\"classic\""),
            (ClassWeights::None, "\"none\""),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), text);
            assert_eq!(serde_json::from_str::<ClassWeights>(text).unwrap(), v);
        }
    }

    #[test]
    fn mean_std_select_check_colorize() {
        let mut s = hand();
        // R plane 0, G plane 255, B plane {0, 255} alternating.
        for i in 0..2 {
            let img = &mut s.images[i * 12..(i + 1) * 12];
            img[..4].fill(0);
            img[4..8].fill(255);
            img[8..].copy_from_slice(&[0, 255, 0, 255]);
        }
        let (m, sd) = s.channel_mean_std();
        assert_eq!(m, vec![0.0, 1.0, 0.5]);
        assert_eq!(sd[..2], [1.0, 1.0]);
        assert!((sd[2] - 0.5).abs() < 1e-6);
        let one = s.select(&[1]);
        assert_eq!(one.label(0), s.label(1));
        assert_eq!(one.image(0), s.image(1));
        assert_eq!(s.subset(5, 1), s);
        let mut bad = s.clone();
        bad.labels[3] = 5;
        assert!(bad.check().unwrap_err().contains("label value 5"));
        s.palette[0] = [9, 8, 7];
        s.palette[4] = [0, 0, 0];
        assert_eq!(
            s.colorize(&[0, 4]),
            vec![9, 0, 8, 0, 7, 0],
            "CHW: R plane then G then B"
        );
    }
}
