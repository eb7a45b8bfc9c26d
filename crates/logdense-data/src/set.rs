//! The in-memory data set every small-image loader produces: one flat `Vec<u8>` of CHW images
//! (compact: Fashion-MNIST train is 47 MB, CIFAR 150 MB) plus one label per image.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// Which part of a data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training images.
    Train,
    /// The held-out test images.
    Test,
}

/// Images of one size with their class labels, all in memory.
///
/// `pixels` holds `len()` images one after the other, each `channels x height x width`
/// (CHW, row-major), bytes 0..=255.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Channels per image (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes; every label is below it.
    pub classes: usize,
    /// Human-readable name of each class (index = label); `classes` entries.
    pub class_names: Vec<String>,
    /// All images back to back, CHW row-major, `len() * image_size()` bytes.
    pub pixels: Vec<u8>,
    /// Class label of each image, in the same order as the images.
    pub labels: Vec<u16>,
}

impl ImageSet {
    /// Bytes per image (`channels * height * width`).
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The CHW bytes of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_size();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> usize {
        usize::from(self.labels[i])
    }

    /// Checks that pixels, labels, classes and names agree; loaders call it before returning.
    pub fn check(&self) -> Result<(), String> {
        let n = self.image_size();
        if n == 0 {
            return Err(format!(
                "empty image shape {}x{}x{}",
                self.channels, self.height, self.width
            ));
        }
        if self.pixels.len() != n * self.labels.len() {
            return Err(format!(
                "{} pixel bytes for {} images of {} bytes",
                self.pixels.len(),
                self.labels.len(),
                n
            ));
        }
        if self.class_names.len() != self.classes {
            return Err(format!(
                "{} class names for {} classes",
                self.class_names.len(),
                self.classes
            ));
        }
        if let Some((i, l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= self.classes)
        {
            return Err(format!(
                "label {l} of image {i} >= {} classes",
                self.classes
            ));
        }
        Ok(())
    }

    /// Images per class (index = label).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            }
        }
        counts
    }

    /// Copies the images at `indices` (in that order) into a new set.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_size());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
            class_names: self.class_names.clone(),
            pixels,
            labels,
        }
    }

    /// A seeded uniformly random subset of `min(n, len)` images, drawn without replacement and
    /// kept in their original order (so `subset(len, s)` is the whole set). Not stratified.
    pub fn subset(&self, n: usize, seed: u64) -> ImageSet {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = n.min(self.len());
        let mut idx = rand::seq::index::sample(&mut rng, self.len(), n).into_vec();
        idx.sort_unstable();
        self.select(&idx)
    }

    /// Splits into (rest, held-out) where held-out is a seeded random `min(n, len)` images
    /// (e.g. a validation set cut from the training set). Both keep the original order.
    pub fn split(&self, n: usize, seed: u64) -> (ImageSet, ImageSet) {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = n.min(self.len());
        let mut held = vec![false; self.len()];
        for i in rand::seq::index::sample(&mut rng, self.len(), n) {
            held[i] = true;
        }
        let (out, keep): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| held[i]);
        (self.select(&keep), self.select(&out))
    }

    /// Per-channel mean and standard deviation over all pixels of all images, in [0, 1] units
    /// (pixel / 255), for normalising with training-set statistics. Zero std becomes 1.
    pub fn channel_mean_std(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut sum = vec![0f64; self.channels];
        let mut sum_sq = vec![0f64; self.channels];
        for img in self.pixels.chunks_exact(self.image_size().max(1)) {
            for (c, px) in img.chunks_exact(plane.max(1)).enumerate() {
                // Integer sums per plane are exact and much faster than per-pixel f64 adds.
                let s: u64 = px.iter().map(|&p| u64::from(p)).sum();
                let s2: u64 = px.iter().map(|&p| u64::from(p) * u64::from(p)).sum();
                sum[c] += s as f64;
                sum_sq[c] += s2 as f64;
            }
        }
        let count = (self.len() * plane) as f64;
        let mut mean = Vec::with_capacity(self.channels);
        let mut std = Vec::with_capacity(self.channels);
        for c in 0..self.channels {
            if count == 0.0 {
                mean.push(0.0);
                std.push(1.0);
                continue;
            }
            let m = sum[c] / count / 255.0;
            let var = (sum_sq[c] / count / (255.0 * 255.0) - m * m).max(0.0);
            let s = var.sqrt();
            mean.push(m as f32);
            std.push(if s > 0.0 { s as f32 } else { 1.0 });
        }
        (mean, std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> ImageSet {
        // 6 images 2x1x2, image i filled with value 10*i, label i % 3.
        let mut pixels = Vec::new();
        for i in 0..6u8 {
            pixels.extend_from_slice(&[10 * i; 4]);
        }
        ImageSet {
            channels: 2,
            height: 1,
            width: 2,
            classes: 3,
            class_names: vec!["a".into(), "b".into(), "c".into()],
            pixels,
            labels: (0..6).map(|i| i % 3).collect(),
        }
    }

    #[test]
    fn subset_is_seeded_ordered_and_consistent() {
        let s = toy();
        s.check().unwrap();
        let a = s.subset(3, 7);
        assert_eq!(a, s.subset(3, 7));
        assert_eq!(a.len(), 3);
        a.check().unwrap();
        for i in 0..a.len() {
            let v = a.image(i)[0];
            assert_eq!(a.label(i), usize::from(v / 10) % 3);
        }
        assert_eq!(s.subset(100, 1), s);
        let (rest, held) = s.split(2, 3);
        assert_eq!((rest.len(), held.len()), (4, 2));
        assert_eq!(rest.class_counts().iter().sum::<usize>(), 4);
    }

    #[test]
    fn mean_std_per_channel() {
        let mut s = toy();
        // Channel 0 all 0, channel 1 all 255 in every image.
        for i in 0..6 {
            s.pixels[i * 4..i * 4 + 2].fill(0);
            s.pixels[i * 4 + 2..i * 4 + 4].fill(255);
        }
        let (m, sd) = s.channel_mean_std();
        assert_eq!(m, vec![0.0, 1.0]);
        assert_eq!(sd, vec![1.0, 1.0]);
        let s = toy();
        let (m, sd) = s.channel_mean_std();
        let vals: Vec<f64> = (0..6).map(|i| f64::from(10 * i) / 255.0).collect();
        let mu = vals.iter().sum::<f64>() / 6.0;
        let var = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 6.0;
        assert!((f64::from(m[0]) - mu).abs() < 1e-6);
        assert!((f64::from(sd[1]) - var.sqrt()).abs() < 1e-5);
    }
}
