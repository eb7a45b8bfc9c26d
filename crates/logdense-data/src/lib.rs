#![warn(missing_docs)]
//! Image-classification data for logdense: loaders for the real file formats (MNIST IDX,
//! CIFAR binary, SVHN format-2 MAT v5, class folders of JPEG/PNG), seeded augmentation, and
//! batching into burn tensors. [`seg`] does the same for semantic segmentation (CamVid in the
//! SegNet layout, the `fashion-scenes` generator, mIoU).
//!
//! Every loader returns an [`ImageSet`] (or, for large folders, the lazy [`ImageFolder`]) and a
//! [`DataError`] naming the offending file when the input is wrong; none panics on bad input.

pub mod augment;
pub mod batch;
pub mod cifar;
pub mod error;
pub mod folder;
pub mod fuzzing;
pub mod idx;
pub mod item;
pub mod mat5;
pub mod seg;
pub mod set;
pub mod svhn;

#[cfg(test)]
mod testutil;

pub use augment::{item_rng, item_seed, Augment, Chw};
pub use batch::{loader, loader_on, ClassBatch, ClassBatcher};
pub use cifar::{load_cifar10, load_cifar100};
pub use error::DataError;
pub use folder::{load_image_folder, ImageFolder};
pub use idx::{load_fashion_mnist, load_idx_pair, load_mnist, FASHION_MNIST_DIR};
pub use item::{ImageItem, InMemory};
pub use seg::fashion_scenes;
pub use seg::{
    load_camvid, seg_loader, seg_loader_on, ClassWeights, ConfusionMatrix, SegBatch, SegBatcher,
    SegInMemory, SegItem, SegSet, SegSplit, CAMVID_CLASSIC_WEIGHTS,
};
pub use set::{ImageSet, Split};
pub use svhn::{load_svhn, load_svhn_mat};
