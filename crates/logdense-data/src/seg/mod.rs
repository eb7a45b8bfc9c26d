//! Semantic segmentation data: an in-memory set of RGB images with per-pixel class ids
//! ([`SegSet`]), the SegNet-layout CamVid loader, the `fashion-scenes` generator (real
//! Fashion-MNIST garments composed into scenes, written in the same layout), joint
//! image/label augmentation and burn batching, and confusion-matrix metrics (mIoU).
//!
//! Label convention everywhere: class ids `0..classes`, and the value `classes` (11 for CamVid)
//! is void: ignored by losses, class statistics and metrics.

pub mod batch;
pub mod camvid;
pub mod fashion_scenes;
pub mod metrics;
pub mod set;

pub use batch::{
    seg_crop, seg_hflip, seg_loader, seg_loader_on, subsample_labels, SegBatch, SegBatcher,
    SegEpochShare, SegInMemory, SegItem,
};
pub use camvid::{
    load_camvid, ClassesFile, SegSplit, CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_VOID_COLOR,
};
pub use metrics::ConfusionMatrix;
pub use set::{ClassWeights, SegSet, CAMVID_CLASSIC_WEIGHTS};

/// PNG encoders for tests that write real label/image files.
#[cfg(test)]
pub(crate) mod testpng {
    use image::{ExtendedColorType, ImageEncoder};

    fn encode(data: &[u8], h: usize, w: usize, color: ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(data, w as u32, h as u32, color)
            .unwrap();
        out
    }

    /// PNG of a CHW RGB image.
    pub(crate) fn rgb(chw: &[u8], h: usize, w: usize) -> Vec<u8> {
        let n = h * w;
        let hwc: Vec<u8> = (0..n)
            .flat_map(|p| [chw[p], chw[n + p], chw[2 * n + p]])
            .collect();
        encode(&hwc, h, w, ExtendedColorType::Rgb8)
    }

    /// 8-bit grey PNG.
    pub(crate) fn grey(v: &[u8], h: usize, w: usize) -> Vec<u8> {
        encode(v, h, w, ExtendedColorType::L8)
    }

    /// PNG of an HWC RGB buffer.
    pub(crate) fn rgb_hwc(hwc: &[u8], h: usize, w: usize) -> Vec<u8> {
        encode(hwc, h, w, ExtendedColorType::Rgb8)
    }
}
