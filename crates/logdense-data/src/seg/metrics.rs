//! Segmentation metrics from one confusion matrix accumulated over a whole evaluation set.
//!
//! Mean IoU must come from the matrix summed over every pixel of the set, then IoU per class,
//! then the mean over classes (as CamVid results are reported). Averaging per-image IoUs gives
//! different numbers: small images/objects and classes absent from an image distort it.

use burn::tensor::{Int, Tensor};

/// Pixel counts `counts[truth * classes + pred]` over non-void pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// Number of real classes (void excluded); the matrix is `classes x classes`.
    pub classes: usize,
    /// Pixel counts, row-major with the true class as row: `classes * classes` entries.
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An all-zero matrix for `classes` classes, ready to accumulate an evaluation set.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Pixels of true class `truth` predicted as `pred`.
    pub fn get(&self, truth: usize, pred: usize) -> u64 {
        self.counts[truth * self.classes + pred]
    }

    /// Adds one image (or batch) of predictions against ground truth, pixel by pixel;
    /// pixels whose truth is `void` (or any value >= `classes`) are skipped.
    ///
    /// Panics if the lengths differ or a prediction is not a class id (a model bug).
    pub fn add<P>(&mut self, pred: &[P], truth: &[u8], void: u8)
    where
        P: Copy + TryInto<usize>,
    {
        assert_eq!(
            pred.len(),
            truth.len(),
            "ConfusionMatrix::add: {} predictions for {} labels",
            pred.len(),
            truth.len()
        );
        let k = self.classes;
        for (&p, &t) in pred.iter().zip(truth) {
            let t = usize::from(t);
            if t == usize::from(void) || t >= k {
                continue;
            }
            let p = p.try_into().ok().filter(|&p| p < k).unwrap_or_else(|| {
                panic!("ConfusionMatrix::add: a prediction is not a class id below {k}")
            });
            self.counts[t * k + p] += 1;
        }
    }

    /// [`Self::add`] for tensors of any shape: predicted class ids (e.g. an argmax over the
    /// class dimension, squeezed) and labels as a [`crate::SegBatch`] holds them.
    pub fn add_tensors<const D: usize>(
        &mut self,
        pred: Tensor<D, Int>,
        truth: Tensor<D, Int>,
        void: u8,
    ) {
        let to_vec = |t: Tensor<D, Int>| {
            t.into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("Int tensor data converts to i64")
        };
        let (p, t) = (to_vec(pred), to_vec(truth));
        let t: Vec<u8> = t.iter().map(|&v| v.clamp(0, 255) as u8).collect();
        self.add(&p, &t, void);
    }

    /// Adds another matrix's counts (e.g. from another worker). Panics if the class counts
    /// differ.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.classes, other.classes, "ConfusionMatrix::merge");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Non-void pixels counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Per class: TP / (TP + FP + FN); `None` for a class that appears neither in the truth
    /// nor in the predictions.
    pub fn per_class_iou(&self) -> Vec<Option<f64>> {
        let k = self.classes;
        (0..k)
            .map(|c| {
                let tp = self.get(c, c);
                let row: u64 = (0..k).map(|p| self.get(c, p)).sum();
                let col: u64 = (0..k).map(|t| self.get(t, c)).sum();
                let union = row + col - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over the classes with an IoU (see [`Self::per_class_iou`]); 0 for an empty
    /// matrix.
    pub fn mean_iou(&self) -> f64 {
        let ious: Vec<f64> = self.per_class_iou().into_iter().flatten().collect();
        if ious.is_empty() {
            0.0
        } else {
            ious.iter().sum::<f64>() / ious.len() as f64
        }
    }

    /// Correct pixels / non-void pixels; 0 for an empty matrix.
    pub fn global_accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let correct: u64 = (0..self.classes).map(|c| self.get(c, c)).sum();
        correct as f64 / total as f64
    }

    /// Per class recall TP / (TP + FN) (SegNet's "class average accuracy" is their mean);
    /// `None` for a class absent from the truth.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|c| {
                let row: u64 = (0..self.classes).map(|p| self.get(c, p)).sum();
                (row > 0).then(|| self.get(c, c) as f64 / row as f64)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn iou_miou_accuracy_by_hand() {
        let mut m = ConfusionMatrix::new(3);
        // void = 3; the predictions on void pixels (2 and 0) must not count; class 2 appears
        // in neither truth nor prediction elsewhere.
        let truth = [0u8, 0, 0, 1, 1, 3, 3];
        let pred = [0usize, 0, 1, 1, 0, 2, 0];
        m.add(&pred, &truth, 3);
        assert_eq!(m.total(), 5);
        assert_eq!(
            (m.get(0, 0), m.get(0, 1), m.get(1, 0), m.get(1, 1)),
            (2, 1, 1, 1)
        );
        // IoU0 = 2 / (3 + 3 - 2); IoU1 = 1 / (2 + 2 - 1); class 2 absent.
        let iou = m.per_class_iou();
        assert_eq!(iou.len(), 3);
        assert!((iou[0].unwrap() - 0.5).abs() < 1e-12);
        assert!((iou[1].unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(iou[2], None);
        assert!((m.mean_iou() - (0.5 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m.global_accuracy() - 0.6).abs() < 1e-12);
        let acc = m.per_class_accuracy();
        assert!((acc[0].unwrap() - 2.0 / 3.0).abs() < 1e-12 && acc[2].is_none());

        // u8 predictions and merging: same ratios, doubled counts.
        let mut m2 = ConfusionMatrix::new(3);
        m2.add(&pred.map(|p| p as u8), &truth, 3);
        m2.merge(&m);
        assert_eq!(m2.total(), 10);
        assert_eq!(m2.per_class_iou(), m.per_class_iou());

        // Tensors (as SegBatch labels and an argmax hold them).
        let mut m3 = ConfusionMatrix::new(3);
        let d = Device::default();
        let t = |v: &[i64]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [1, 7]), &d);
        let p64: Vec<i64> = pred.iter().map(|&p| p as i64).collect();
        let t64: Vec<i64> = truth.iter().map(|&p| i64::from(p)).collect();
        m3.add_tensors(t(&p64), t(&t64), 3);
        assert_eq!(m3, m);

        assert_eq!(ConfusionMatrix::new(4).mean_iou(), 0.0);
    }

    #[test]
    fn set_level_miou_differs_from_per_image_average() {
        // Image A: one big class-0 region predicted right, one class-1 pixel missed.
        // Image B: a single class-1 pixel predicted right.
        let (ta, pa) = ([0u8, 0, 0, 1], [0u8, 0, 0, 0]);
        let (tb, pb) = ([1u8], [1u8]);
        let mut set = ConfusionMatrix::new(2);
        set.add(&pa, &ta, 2);
        set.add(&pb, &tb, 2);
        let per_image: Vec<f64> = [(&pa[..], &ta[..]), (&pb[..], &tb[..])]
            .iter()
            .map(|(p, t)| {
                let mut m = ConfusionMatrix::new(2);
                m.add(p, t, 2);
                m.mean_iou()
            })
            .collect();
        let avg = per_image.iter().sum::<f64>() / 2.0;
        // Set: IoU0 = 3/4, IoU1 = 1/2 -> 0.625. Per image: (3/8 + 1) / 2 = 0.6875.
        assert!((set.mean_iou() - 0.625).abs() < 1e-12);
        assert!((avg - 0.6875).abs() < 1e-12);
    }
}
