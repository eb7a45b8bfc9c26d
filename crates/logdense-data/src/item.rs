//! One image as burn's data loader sees it, and the in-memory [`Dataset`] view of an
//! [`ImageSet`]. Items carry their index in the data set so augmentation can be seeded by it.

use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};

use crate::augment::Chw;
use crate::set::ImageSet;

/// One CHW u8 image with its label and its index in the data set it came from.
#[derive(Clone, PartialEq)]
pub struct ImageItem {
    /// Position in the underlying data set (not in a shuffled order): seeds augmentation.
    pub index: usize,
    /// Class label, below the data set's number of classes.
    pub label: usize,
    /// Channels of the image (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// The image bytes, CHW row-major, `channels * height * width` of them.
    pub pixels: Vec<u8>,
}

impl ImageItem {
    /// The image's shape, as the augmentation functions take it.
    pub fn shape(&self) -> Chw {
        Chw::new(self.channels, self.height, self.width)
    }
}

// Debug without the pixels: data loaders require Debug, and a 150 KB dump helps nobody.
impl std::fmt::Debug for ImageItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageItem")
            .field("index", &self.index)
            .field("label", &self.label)
            .field("shape", &(self.channels, self.height, self.width))
            .finish_non_exhaustive()
    }
}

/// A shared, cheaply clonable [`Dataset`] over an in-memory [`ImageSet`].
#[derive(Debug, Clone)]
pub struct InMemory {
    /// The shared images and labels the items are read from.
    pub set: Arc<ImageSet>,
}

impl InMemory {
    /// Wraps `set` in an [`Arc`] so that clones of the data set share the images.
    pub fn new(set: ImageSet) -> Self {
        InMemory { set: Arc::new(set) }
    }
}

impl From<Arc<ImageSet>> for InMemory {
    fn from(set: Arc<ImageSet>) -> Self {
        InMemory { set }
    }
}

impl Dataset<ImageItem> for InMemory {
    /// Panics if `index >= len()` (the trait's convention).
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        Ok(ImageItem {
            index,
            label: self.set.label(index),
            channels: self.set.channels,
            height: self.set.height,
            width: self.set.width,
            pixels: self.set.image(index).to_vec(),
        })
    }

    fn len(&self) -> usize {
        self.set.len()
    }
}
