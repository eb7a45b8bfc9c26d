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
    pub label: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
}

impl ImageItem {
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
    pub set: Arc<ImageSet>,
}

impl InMemory {
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
