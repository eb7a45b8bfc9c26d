//! One error type for every loader. Each variant carries the file (or directory) it is about,
//! because "bad magic number" without a path is useless when a data directory holds 8 files.

use std::path::{Path, PathBuf};

/// What went wrong while reading a data set, always naming the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data set (directory or one of its files) is not there; `hint` says how to get it.
    #[error("{}: not found. {hint}", path.display())]
    Missing {
        /// The directory or file that does not exist.
        path: PathBuf,
        /// How to obtain the data set (download address, expected layout).
        hint: String,
    },
    /// The file does not start with the magic number of its format.
    #[error("{}: bad magic number {found:#010x} (expected {expected:#010x}, {what})", path.display())]
    BadMagic {
        /// The file with the wrong magic number.
        path: PathBuf,
        /// The magic number read from the file.
        found: u32,
        /// The magic number the format requires.
        expected: u32,
        /// Which magic number was checked (format and field), for the message.
        what: &'static str,
    },
    /// The file ends before the data its header (or record size) promises.
    #[error("{}: truncated file: {detail}", path.display())]
    Truncated {
        /// The file that ends too early.
        path: PathBuf,
        /// How many bytes there are and how many were needed.
        detail: String,
    },
    /// A label is not below the number of classes.
    #[error("{}: label {label} of item {item} is out of range (expected {expected})", path.display())]
    LabelOutOfRange {
        /// The file holding the bad label.
        path: PathBuf,
        /// 0-based index of the item whose label is bad.
        item: usize,
        /// The label value found (`i64::MIN` for a non-finite SVHN label).
        label: i64,
        /// The range of valid labels, in words (e.g. `0..10`).
        expected: String,
    },
    /// The images file and the labels file disagree on how many items there are.
    #[error("{} has {images} images but {} has {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of images in the images file.
        images: usize,
        /// Number of labels in the labels file.
        labels: usize,
    },
    /// Valid for its container but not something this crate reads (e.g. a complex or sparse
    /// MAT variable, MAT v7.3/HDF5).
    #[error("{}: unsupported: {detail}", path.display())]
    Unsupported {
        /// The file using the unsupported feature.
        path: PathBuf,
        /// Which feature is not supported.
        detail: String,
    },
    /// Any other malformed content (bad gzip stream, inconsistent dimensions, ...).
    #[error("{}: malformed: {detail}", path.display())]
    Format {
        /// The malformed file or directory.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// An image file that the `image` crate could not decode.
    #[error("{}: cannot decode image: {source}", path.display())]
    Image {
        /// The image file that failed to decode.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
}

impl DataError {
    /// The file or directory the error is about (the images file for a count mismatch).
    pub fn path(&self) -> &Path {
        match self {
            DataError::Io { path, .. }
            | DataError::Missing { path, .. }
            | DataError::BadMagic { path, .. }
            | DataError::Truncated { path, .. }
            | DataError::LabelOutOfRange { path, .. }
            | DataError::Unsupported { path, .. }
            | DataError::Format { path, .. }
            | DataError::Image { path, .. } => path,
            DataError::CountMismatch { images_path, .. } => images_path,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn truncated(path: &Path, detail: impl Into<String>) -> Self {
        DataError::Truncated {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn format(path: &Path, detail: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(path: &Path, detail: impl Into<String>) -> Self {
        DataError::Unsupported {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn missing(path: &Path, hint: impl Into<String>) -> Self {
        DataError::Missing {
            path: path.to_path_buf(),
            hint: hint.into(),
        }
    }
}

/// Reads a whole file, mapping a missing file to [`DataError::Missing`] with `hint`.
pub(crate) fn read_file(path: &Path, hint: &str) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DataError::missing(path, hint)
        } else {
            DataError::io(path, e)
        }
    })
}
