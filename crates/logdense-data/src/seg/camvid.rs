//! CamVid in the SegNet layout (`train/`, `trainannot/`, `val/`, `valannot/`, `test/`,
//! `testannot/`): RGB images, and label PNGs of the same file name whose 8-bit grey values are
//! class ids (11 = void). Any data set written in this layout loads too; an optional
//! `classes.json` in the root names its classes and colours (the `fashion-scenes` generator
//! writes one).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{read_file, DataError};
use crate::folder::decode_rgb;
use crate::seg::set::SegSet;

/// CamVid's 11 classes in label order (void = 11 follows them).
pub const CAMVID_CLASSES: [&str; 11] = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Sidewalk",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
];

/// The standard CamVid colours of the 11 classes, in label order.
pub const CAMVID_PALETTE: [[u8; 3]; 11] = [
    [128, 128, 128],
    [128, 0, 0],
    [192, 192, 128],
    [128, 64, 128],
    [60, 40, 222],
    [128, 128, 0],
    [192, 128, 128],
    [64, 64, 128],
    [64, 0, 128],
    [64, 64, 0],
    [0, 128, 192],
];

/// CamVid's colour for void.
pub const CAMVID_VOID_COLOR: [u8; 3] = [0, 0, 0];

const CAMVID_HINT: &str = "CamVid cannot be downloaded here. Pass --data DIR pointing at \
CamVid in the SegNet layout: DIR/train/*.png with label PNGs of the same names in \
DIR/trainannot/ (grey values = class ids, 11 = void), likewise val/valannot and test/testannot; \
or generate a stand-in with the fashion-scenes generator.";

/// Which part of a segmentation data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegSplit {
    /// The training images (`train/`, `trainannot/`).
    Train,
    /// The validation images (`val/`, `valannot/`).
    Val,
    /// The test images (`test/`, `testannot/`).
    Test,
}

impl SegSplit {
    /// The image folder and label folder names of the split (`"train"`, `"trainannot"`, ...).
    pub fn dirs(self) -> (&'static str, &'static str) {
        match self {
            SegSplit::Train => ("train", "trainannot"),
            SegSplit::Val => ("val", "valannot"),
            SegSplit::Test => ("test", "testannot"),
        }
    }
}

/// The optional `classes.json` of a data set root: class names in label order, optionally
/// their RGB colours (one per class) and void's colour. Void's id is always `names.len()`.
///
/// `{"names": ["Sky", ...], "palette": [[128, 128, 128], ...], "void": [0, 0, 0]}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassesFile {
    /// Class names in label order (index = class id); 1 to 254 of them.
    pub names: Vec<String>,
    /// RGB colour of each class, one per name; evenly spread hues when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<Vec<[u8; 3]>>,
    /// RGB colour of void; black when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub void: Option<[u8; 3]>,
}

impl ClassesFile {
    /// File name looked for in a data set root.
    pub const FILE_NAME: &'static str = "classes.json";

    /// CamVid's names and colours.
    pub fn camvid() -> Self {
        ClassesFile {
            names: CAMVID_CLASSES.iter().map(|s| s.to_string()).collect(),
            palette: Some(CAMVID_PALETTE.to_vec()),
            void: Some(CAMVID_VOID_COLOR),
        }
    }

    /// Reads and validates a classes file.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let bytes = read_file(path, "No such file.")?;
        let file: ClassesFile = serde_json::from_slice(&bytes)
            .map_err(|e| DataError::format(path, format!("bad classes.json: {e}")))?;
        file.validate().map_err(|d| DataError::format(path, d))?;
        Ok(file)
    }

    /// Writes it as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string_pretty(self).expect("ClassesFile serialises");
        std::fs::write(path, text + "\n").map_err(|e| DataError::io(path, e))
    }

    fn validate(&self) -> Result<(), String> {
        let n = self.names.len();
        if n == 0 || n >= 255 {
            return Err(format!(
                "{n} class names (need 1..=254: id {n} is void, 255 is read as void)"
            ));
        }
        match &self.palette {
            Some(p) if p.len() != n => Err(format!("{} palette colours for {n} names", p.len())),
            _ => Ok(()),
        }
    }

    /// `names.len() + 1` colours: the given ones (else evenly spread hues) and void's (else
    /// black).
    pub fn full_palette(&self) -> Vec<[u8; 3]> {
        let n = self.names.len();
        let mut p = self
            .palette
            .clone()
            .unwrap_or_else(|| (0..n).map(|i| hue_color(i, n)).collect());
        p.push(self.void.unwrap_or(CAMVID_VOID_COLOR));
        p
    }
}

/// A saturated colour of hue `i / n` (a default palette for data sets that give none).
pub(crate) fn hue_color(i: usize, n: usize) -> [u8; 3] {
    let h = 6.0 * i as f32 / n.max(1) as f32;
    let x = 1.0 - ((h % 2.0) - 1.0).abs();
    let (r, g, b) = match h as usize {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    let q = |v: f32| (40.0 + 200.0 * v).round() as u8;
    [q(r), q(g), q(b)]
}

/// Image files of `dir` (not hidden), sorted by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let p = entry.path();
        if !entry.file_name().to_string_lossy().starts_with('.')
            && p.is_file()
            && crate::folder::is_image(&p)
        {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// Decodes a label PNG into class ids: `0..classes` stay, `classes` and 255 become void
/// (`classes`; 255 is the common "ignore" value of other data sets' label maps), anything else
/// is an error naming the file. The file must be 8-bit grey (grey+alpha, or RGB(A) with equal
/// channels, are accepted as the same values).
pub fn decode_label(path: &Path, classes: usize) -> Result<(Vec<u8>, usize, usize), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_label_bytes(path, &bytes, classes, &crate::folder::image_limits())
}

/// [`decode_label`] on the bytes of a label file, decoded within `limits`; `path` is only used
/// in errors.
pub fn decode_label_bytes(
    path: &Path,
    bytes: &[u8],
    classes: usize,
    limits: &image::Limits,
) -> Result<(Vec<u8>, usize, usize), DataError> {
    use image::DynamicImage as D;
    if classes >= 255 {
        // Class ids are bytes, and 255 is void: at most 254 classes and the void id 254.
        return Err(DataError::unsupported(
            path,
            format!("{classes} classes: label PNGs hold at most 254 (ids are bytes, 255 is void)"),
        ));
    }
    let img = crate::folder::decode_image(path, bytes, limits)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let grey = |raw: &[u8], ch: usize| -> Result<Vec<u8>, DataError> {
        let mut out = Vec::with_capacity(h * w);
        for (p, px) in raw.chunks_exact(ch).enumerate() {
            if ch >= 3 && (px[0] != px[1] || px[0] != px[2]) {
                return Err(DataError::format(
                    path,
                    format!(
                        "pixel (row {}, col {}) is colour ({}, {}, {}): label PNGs must hold \
                         class ids as grey values",
                        p / w,
                        p % w,
                        px[0],
                        px[1],
                        px[2]
                    ),
                ));
            }
            out.push(px[0]);
        }
        Ok(out)
    };
    let mut ids = match &img {
        D::ImageLuma8(b) => b.as_raw().clone(),
        D::ImageLumaA8(b) => grey(b.as_raw(), 2)?,
        D::ImageRgb8(b) => grey(b.as_raw(), 3)?,
        D::ImageRgba8(b) => grey(b.as_raw(), 4)?,
        other => {
            return Err(DataError::unsupported(
                path,
                format!(
                    "label PNG is {:?}; expected 8-bit grey class ids",
                    other.color()
                ),
            ))
        }
    };
    let void = classes as u8;
    for (p, v) in ids.iter_mut().enumerate() {
        if usize::from(*v) > classes {
            if *v != 255 {
                return Err(DataError::format(
                    path,
                    format!(
                        "pixel (row {}, col {}) has class id {}; expected 0..={classes} \
                         ({classes} = void) or 255 (void)",
                        p / w,
                        p % w,
                        *v
                    ),
                ));
            }
            *v = void;
        }
    }
    Ok((ids, h, w))
}

/// The label file of image `img` in `ann_dir`: the same file name, or for a JPEG image the
/// same stem with `.png`.
fn label_path(img: &Path, ann_dir: &Path) -> PathBuf {
    let same = ann_dir.join(img.file_name().unwrap_or_default());
    if same.exists() {
        return same;
    }
    let png = same.with_extension("png");
    if png.exists() {
        png
    } else {
        same
    }
}

/// Loads one split of a SegNet-layout data set (CamVid: 11 classes, void = 11).
///
/// Images `DIR/<split>/*.{png,jpg,jpeg}` (sorted by name) pair with labels
/// `DIR/<split>annot/<same name>`; class names and colours come from `DIR/classes.json` when
/// present, else CamVid's. Every image must have the first one's size and its label the
/// image's. Errors name the file: a missing folder or label file, an undecodable PNG, a size
/// mismatch, a class id above void other than 255.
pub fn load_camvid(dir: &Path, split: SegSplit) -> Result<SegSet, DataError> {
    if !dir.is_dir() {
        return Err(DataError::missing(dir, CAMVID_HINT));
    }
    let classes_path = dir.join(ClassesFile::FILE_NAME);
    let classes_file = if classes_path.is_file() {
        ClassesFile::read(&classes_path)?
    } else {
        ClassesFile::camvid()
    };
    let classes = classes_file.names.len();
    let (img_name, ann_name) = split.dirs();
    let (img_dir, ann_dir) = (dir.join(img_name), dir.join(ann_name));
    for d in [&img_dir, &ann_dir] {
        if !d.is_dir() {
            return Err(DataError::missing(d, CAMVID_HINT));
        }
    }
    let files = list_images(&img_dir)?;
    if files.is_empty() {
        return Err(DataError::format(
            &img_dir,
            "no .png/.jpg images in the folder",
        ));
    }
    let mut size: Option<(usize, usize)> = None;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for img_path in &files {
        let lab_path = label_path(img_path, &ann_dir);
        if !lab_path.is_file() {
            return Err(DataError::missing(
                &lab_path,
                format!(
                    "Image {} has no label file of the same name in {}/.",
                    img_path.display(),
                    ann_name
                ),
            ));
        }
        let (px, s) = decode_rgb(img_path)?;
        let (h, w) = (s.height, s.width);
        match size {
            None => {
                size = Some((h, w));
                images.reserve(files.len() * px.len());
                labels.reserve(files.len() * h * w);
            }
            Some((h0, w0)) if (h0, w0) != (h, w) => {
                return Err(DataError::format(
                    img_path,
                    format!("image is {h}x{w} but the split's first image is {h0}x{w0}"),
                ))
            }
            _ => {}
        }
        let (ids, lh, lw) = decode_label(&lab_path, classes)?;
        if (lh, lw) != (h, w) {
            return Err(DataError::format(
                &lab_path,
                format!(
                    "label is {lh}x{lw} but its image {} is {h}x{w}",
                    img_path.display()
                ),
            ));
        }
        images.extend_from_slice(&px);
        labels.extend_from_slice(&ids);
    }
    let (height, width) = size.unwrap_or((0, 0));
    let set = SegSet {
        height,
        width,
        classes,
        palette: classes_file.full_palette(),
        class_names: classes_file.names,
        images,
        labels,
    };
    set.check().map_err(|d| DataError::format(dir, d))?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seg::testpng;
    use crate::testutil::TempDir;

    const H: usize = 12;
    const W: usize = 16;

    fn image(seed: u8) -> Vec<u8> {
        (0..3 * H * W)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect()
    }

    /// Class ids 0..=10 cycling, with a void (11) pixel and a 255 pixel.
    fn label(shift: usize) -> Vec<u8> {
        let mut l: Vec<u8> = (0..H * W).map(|p| ((p + shift) % 11) as u8).collect();
        l[3] = 11;
        l[H * W - 1] = 255;
        l
    }

    fn tiny_tree() -> TempDir {
        let dir = TempDir::new("camvid");
        dir.write("train/0001TP_a.png", &testpng::rgb(&image(1), H, W));
        dir.write("train/0001TP_b.png", &testpng::rgb(&image(2), H, W));
        dir.write("train/notes.txt", b"not an image");
        dir.write("trainannot/0001TP_a.png", &testpng::grey(&label(0), H, W));
        dir.write("trainannot/0001TP_b.png", &testpng::grey(&label(5), H, W));
        dir
    }

    #[test]
    fn round_trip_with_void_and_255() {
        let dir = tiny_tree();
        let set = load_camvid(dir.path(), SegSplit::Train).unwrap();
        assert_eq!(
            (set.len(), set.height, set.width, set.classes),
            (2, H, W, 11)
        );
        assert_eq!(set.class_names[6], "SignSymbol");
        assert_eq!(set.palette.len(), 12);
        assert_eq!(set.palette[4], [60, 40, 222]);
        assert_eq!(set.image(0), image(1).as_slice());
        assert_eq!(set.image(1), image(2).as_slice());
        let mut want = label(5);
        want[H * W - 1] = 11;
        assert_eq!(set.label(1), want.as_slice());
        assert_eq!(set.label(0)[3], 11);
        assert_eq!(set.void(), 11);
        let counts = set.class_pixel_counts();
        assert_eq!(counts.iter().sum::<u64>(), 2 * (H * W - 2) as u64);
        // Other splits are missing: the error names the folder.
        let err = load_camvid(dir.path(), SegSplit::Val).unwrap_err();
        assert!(err.path().ends_with("val"), "{err}");
        assert!(matches!(err, DataError::Missing { .. }));
    }

    #[test]
    fn classes_json_names_other_data_sets() {
        let dir = TempDir::new("camvid-json");
        let lab: Vec<u8> = (0..H * W).map(|p| (p % 4) as u8).collect();
        dir.write("test/x.png", &testpng::rgb(&image(0), H, W));
        dir.write("testannot/x.png", &testpng::grey(&lab, H, W));
        dir.write(
            "classes.json",
            br#"{"names": ["a", "b", "c"], "palette": [[1,2,3],[4,5,6],[7,8,9]]}"#,
        );
        let set = load_camvid(dir.path(), SegSplit::Test).unwrap();
        assert_eq!(set.classes, 3);
        assert_eq!(set.class_names, vec!["a", "b", "c"]);
        assert_eq!(
            set.palette,
            vec![[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 0, 0]]
        );
        // 3 is void for 3 classes.
        assert_eq!(set.label(0)[3], 3);
        // 4 is beyond void for 3 classes.
        let lab: Vec<u8> = (0..H * W).map(|p| (p % 5) as u8).collect();
        let bad = dir.write("testannot/x.png", &testpng::grey(&lab, H, W));
        let err = load_camvid(dir.path(), SegSplit::Test).unwrap_err();
        assert_eq!(err.path(), bad);
        let p = dir.write(
            "classes.json",
            br#"{"names": ["a"], "palette": [[1,2,3],[4,5,6]]}"#,
        );
        let err = load_camvid(dir.path(), SegSplit::Test).unwrap_err();
        assert_eq!(err.path(), p, "{err}");
    }

    #[test]
    fn errors_name_the_file() {
        // Missing label file.
        let dir = tiny_tree();
        let gone = dir.path().join("trainannot/0001TP_b.png");
        std::fs::remove_file(&gone).unwrap();
        let err = load_camvid(dir.path(), SegSplit::Train).unwrap_err();
        assert_eq!(err.path(), gone, "{err}");
        assert!(err.to_string().contains("0001TP_b.png"));

        // Label of another size than its image.
        let dir = tiny_tree();
        let p = dir.write(
            "trainannot/0001TP_b.png",
            &testpng::grey(&[0; H * (W - 1)], H, W - 1),
        );
        let err = load_camvid(dir.path(), SegSplit::Train).unwrap_err();
        assert_eq!(err.path(), p, "{err}");
        assert!(err.to_string().contains("12x15"), "{err}");

        // An image of another size than the first.
        let dir = tiny_tree();
        let p = dir.write(
            "train/0001TP_b.png",
            &testpng::rgb(&vec![0; 3 * H * (W + 2)], H, W + 2),
        );
        let err = load_camvid(dir.path(), SegSplit::Train).unwrap_err();
        assert_eq!(err.path(), p, "{err}");

        // Class id 40.
        let dir = tiny_tree();
        let mut l = label(0);
        l[20] = 40;
        let p = dir.write("trainannot/0001TP_a.png", &testpng::grey(&l, H, W));
        let err = load_camvid(dir.path(), SegSplit::Train).unwrap_err();
        assert_eq!(err.path(), p, "{err}");
        assert!(err.to_string().contains("class id 40"), "{err}");

        // Unreadable PNG.
        let dir = tiny_tree();
        let p = dir.write("train/0001TP_a.png", b"\x89PNG\r\n\x1a\nnot really");
        let err = load_camvid(dir.path(), SegSplit::Train).unwrap_err();
        assert_eq!(err.path(), p, "{err}");
        assert!(matches!(err, DataError::Image { .. }), "{err}");

        // A colour-coded label map.
        let dir = tiny_tree();
        let mut hwc = vec![0u8; 3 * H * W];
        hwc[0] = 128;
        let p = dir.write("trainannot/0001TP_a.png", &testpng::rgb_hwc(&hwc, H, W));
        let err = load_camvid(dir.path(), SegSplit::Train).unwrap_err();
        assert_eq!(err.path(), p, "{err}");
        assert!(err.to_string().contains("grey"), "{err}");

        // No data set at all.
        let err = load_camvid(Path::new("/nonexistent/camvid"), SegSplit::Train).unwrap_err();
        assert!(err.to_string().contains("SegNet layout"), "{err}");
    }
}
