//! ImageNet-style class folders: `root/<class>/<image>.{jpg,jpeg,png}`, classes in sorted
//! folder-name order. Small trees load into an [`ImageSet`]; large ones (ImageNet) are read
//! lazily by [`ImageFolder`], which decodes in `get` so only a batch is in memory at a time.

use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};

use crate::augment::{center_crop, fit_cover, resize_shorter, Chw};
use crate::error::DataError;
use crate::item::ImageItem;
use crate::set::ImageSet;

const FOLDER_HINT: &str = "Pass --data DIR pointing at a folder with one subfolder of \
.jpg/.jpeg/.png images per class (e.g. ImageNet's train/ or val/ arranged by synset).";

/// Whether a path names a JPEG or PNG file (by extension, any case).
pub(crate) fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        v.push(entry.path());
    }
    v.sort();
    Ok(v)
}

/// Class names and (image path, label) pairs of a class-folder tree.
pub type FolderListing = (Vec<String>, Vec<(PathBuf, usize)>);

/// Lists `root`'s class folders (sorted names) and their image files (sorted paths, label =
/// class position). Non-image files are ignored; a class folder may be empty.
pub fn scan_image_folder(root: &Path) -> Result<FolderListing, DataError> {
    if !root.is_dir() {
        return Err(DataError::missing(root, FOLDER_HINT));
    }
    let mut names = Vec::new();
    let mut items = Vec::new();
    for class_dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let label = names.len();
        names.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for f in sorted_entries(&class_dir)? {
            if f.is_file() && is_image(&f) {
                items.push((f, label));
            }
        }
    }
    if names.is_empty() {
        return Err(DataError::format(
            root,
            format!("no class subfolders. {FOLDER_HINT}"),
        ));
    }
    if names.len() > usize::from(u16::MAX) {
        return Err(DataError::unsupported(
            root,
            format!("{} classes (max {})", names.len(), u16::MAX),
        ));
    }
    Ok((names, items))
}

/// The decoder limits of every image loader: at most 2^16 pixels a side and 1 GiB decoded
/// (a 16384x16384 RGBA image), so a few bytes of header claiming 100000x100000 pixels are
/// refused before anything is allocated.
pub fn image_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(1 << 16);
    limits.max_image_height = Some(1 << 16);
    limits.max_alloc = Some(1 << 30);
    limits
}

/// Decodes the bytes of an image file (JPEG or PNG, guessed from the content) within `limits`;
/// `path` is only used in errors.
pub fn decode_image(
    path: &Path,
    bytes: &[u8],
    limits: &image::Limits,
) -> Result<image::DynamicImage, DataError> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    reader.limits(limits.clone());
    reader.decode().map_err(|source| DataError::Image {
        path: path.to_path_buf(),
        source,
    })
}

/// Decodes an image file (format from its content) into RGB CHW bytes.
pub fn decode_rgb(path: &Path) -> Result<(Vec<u8>, Chw), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb_bytes(path, &bytes, &image_limits())
}

/// Decodes the bytes of an image file (format from its content, within `limits`) into RGB
/// CHW bytes; `path` is only used in errors.
pub fn decode_rgb_bytes(
    path: &Path,
    bytes: &[u8],
    limits: &image::Limits,
) -> Result<(Vec<u8>, Chw), DataError> {
    let img = decode_image(path, bytes, limits)?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(DataError::format(path, "image has no pixels"));
    }
    let hwc = img.into_raw();
    let mut chw = vec![0u8; hwc.len()];
    let plane = h * w;
    for (p, px) in hwc.chunks_exact(3).enumerate() {
        chw[p] = px[0];
        chw[plane + p] = px[1];
        chw[2 * plane + p] = px[2];
    }
    Ok((chw, Chw::new(3, h, w)))
}

/// Loads a whole class-folder tree into memory as RGB. With `size = Some((height, width))`
/// each image is scaled (aspect kept) to cover that size and centre-cropped; with `None` all
/// images must already have the first image's size.
pub fn load_image_folder(root: &Path, size: Option<(u32, u32)>) -> Result<ImageSet, DataError> {
    let (class_names, items) = scan_image_folder(root)?;
    let mut pixels = Vec::new();
    let mut labels = Vec::with_capacity(items.len());
    let mut shape: Option<Chw> = size.map(|(h, w)| Chw::new(3, h as usize, w as usize));
    for (path, label) in &items {
        let (px, s) = decode_rgb(path)?;
        let px = match shape {
            Some(t) if size.is_some() => fit_cover(&px, s, t.height, t.width),
            Some(t) if t != s => {
                return Err(DataError::format(
                    path,
                    format!(
                        "image is {}x{} but the first image is {}x{}; pass a size to resize",
                        s.height, s.width, t.height, t.width
                    ),
                ))
            }
            _ => px,
        };
        shape.get_or_insert(s);
        pixels.extend_from_slice(&px);
        labels.push(*label as u16);
    }
    let shape = shape.unwrap_or(Chw::new(3, 1, 1));
    let set = ImageSet {
        channels: 3,
        height: shape.height,
        width: shape.width,
        classes: class_names.len(),
        class_names,
        pixels,
        labels,
    };
    set.check().map_err(|e| DataError::format(root, e))?;
    Ok(set)
}

/// A lazily decoded class-folder data set (ImageNet does not fit in memory).
///
/// `get` decodes the file, then (if set) resizes the shorter side to `resize` and
/// centre-crops to `crop x crop`. Leave `crop` unset for training with a random-resized crop
/// in the batcher; e.g. `resize: Some(256), crop: None` for training, `Some(256), Some(224)`
/// for evaluation.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The folder holding one subfolder per class.
    pub root: PathBuf,
    /// Class folder names in sorted order (index = label).
    pub class_names: Vec<String>,
    /// Every image file with its label, sorted by class and then by path.
    pub items: Vec<(PathBuf, usize)>,
    /// Target length in pixels of the shorter side after decoding; `None` keeps the size.
    pub resize: Option<u32>,
    /// Side in pixels of the square centre crop taken after resizing; `None` takes no crop.
    pub crop: Option<u32>,
}

impl ImageFolder {
    /// Scans `root` (no image is decoded yet).
    pub fn new(root: &Path, resize: Option<u32>, crop: Option<u32>) -> Result<Self, DataError> {
        let (class_names, items) = scan_image_folder(root)?;
        Ok(ImageFolder {
            root: root.to_path_buf(),
            class_names,
            items,
            resize,
            crop,
        })
    }

    /// Number of classes (class folders, empty ones included).
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Decodes and transforms item `index`; an unreadable image is an error naming the file.
    /// Panics if `index >= len()`.
    pub fn load(&self, index: usize) -> Result<ImageItem, DataError> {
        let (path, label) = &self.items[index];
        let (mut px, mut s) = decode_rgb(path)?;
        if let Some(size) = self.resize {
            (px, s) = resize_shorter(&px, s, size as usize);
        }
        if let Some(c) = self.crop {
            px = center_crop(&px, s, c as usize, c as usize);
            s = Chw::new(s.channels, c as usize, c as usize);
        }
        Ok(ImageItem {
            index,
            label: *label,
            channels: s.channels,
            height: s.height,
            width: s.width,
            pixels: px,
        })
    }
}

impl Dataset<ImageItem> for ImageFolder {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        self.load(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use image::{ImageFormat, Rgb, RgbImage};

    fn write_img(dir: &TempDir, name: &str, w: u32, h: u32, fmt: ImageFormat, colour: [u8; 3]) {
        let img = RgbImage::from_fn(w, h, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb(colour)
            } else {
                Rgb([colour[0] / 2, colour[1] / 2, colour[2] / 2])
            }
        });
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img.save_with_format(&p, fmt).unwrap();
    }

    fn tree() -> TempDir {
        let dir = TempDir::new("folder");
        write_img(&dir, "cat/b.png", 8, 6, ImageFormat::Png, [200, 10, 10]);
        write_img(&dir, "cat/a.PNG", 8, 6, ImageFormat::Png, [10, 200, 10]);
        write_img(&dir, "dog/x.jpg", 8, 6, ImageFormat::Jpeg, [10, 10, 200]);
        write_img(&dir, "ant/y.jpeg", 8, 6, ImageFormat::Jpeg, [90, 90, 90]);
        dir.write("dog/notes.txt", b"not an image");
        dir.write("README", b"ignored");
        dir
    }

    #[test]
    fn folder_round_trip_png_exact_jpeg_close() {
        let dir = tree();
        let set = load_image_folder(dir.path(), None).unwrap();
        assert_eq!(set.class_names, vec!["ant", "cat", "dog"]);
        assert_eq!(set.labels, vec![0, 1, 1, 2]);
        assert_eq!((set.channels, set.height, set.width), (3, 6, 8));
        // cat/a.PNG: green checkerboard, exact (PNG is lossless); CHW planes.
        let a = set.image(1);
        assert_eq!((a[0], a[1], a[48], a[49], a[96]), (10, 5, 200, 100, 10));
        // JPEG: lossy but close to blue in the blue plane's average.
        let x = set.image(3);
        let blue: f64 = x[96..].iter().map(|&v| f64::from(v)).sum::<f64>() / 48.0;
        assert!((blue - 150.0).abs() < 25.0, "{blue}");
        let resized = load_image_folder(dir.path(), Some((4, 4))).unwrap();
        assert_eq!(
            (resized.height, resized.width, resized.pixels.len()),
            (4, 4, 4 * 48)
        );
    }

    #[test]
    fn lazy_folder_matches_and_transforms() {
        let dir = tree();
        let lazy = ImageFolder::new(dir.path(), None, None).unwrap();
        let eager = load_image_folder(dir.path(), None).unwrap();
        assert_eq!(lazy.len(), 4);
        for i in 0..4 {
            let it = lazy.get(i).unwrap();
            assert_eq!((it.index, it.label), (i, eager.label(i)));
            assert_eq!(it.pixels, eager.image(i));
        }
        let t = ImageFolder::new(dir.path(), Some(4), Some(3)).unwrap();
        let it = t.get(2).unwrap();
        assert_eq!(
            (it.channels, it.height, it.width, it.pixels.len()),
            (3, 3, 3, 27)
        );
    }

    #[test]
    fn bad_image_and_missing_root_are_errors_naming_the_path() {
        let dir = tree();
        dir.write("cat/c.jpg", b"\xff\xd8 definitely not a jpeg");
        let e = load_image_folder(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("c.jpg"), "{e}");
        let lazy = ImageFolder::new(dir.path(), None, None).unwrap();
        let i = lazy
            .items
            .iter()
            .position(|(p, _)| p.ends_with("c.jpg"))
            .unwrap();
        let e = lazy.get(i).unwrap_err();
        assert!(e.to_string().contains("c.jpg"), "{e}");
        let e = load_image_folder(&dir.path().join("nope"), None).unwrap_err();
        assert!(
            matches!(e, DataError::Missing { .. }) && e.to_string().contains("nope"),
            "{e}"
        );
        write_img(&dir, "cat/d.png", 5, 5, ImageFormat::Png, [1, 2, 3]);
        std::fs::remove_file(dir.path().join("cat/c.jpg")).unwrap();
        let e = load_image_folder(dir.path(), None).unwrap_err();
        assert!(
            e.to_string().contains("d.png") && e.to_string().contains("5x5"),
            "{e}"
        );
    }
}
