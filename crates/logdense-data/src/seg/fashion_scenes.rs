//! `fashion-scenes`: a real-data stand-in for CamVid that fits this machine. Real
//! Fashion-MNIST garments are composed onto textured RGB canvases and labelled per pixel, and
//! the result is written in the SegNet layout so that [`load_camvid`](super::load_camvid)
//! reads it unchanged (11 classes: the 10 garments + Background; void = 11 on a 1-px band at
//! garment boundaries, as CamVid leaves object boundaries void).
//!
//! Per image (all randomness from `item_rng(seed, split, index)`, so output is deterministic
//! and independent of threading): a background of a smooth two-colour gradient plus
//! low-amplitude stripes and noise; 1..=4 garments, each bilinearly scaled from 28 px by
//! 0.8x..2.5x, placed at a random position (later ones occlude earlier ones), tinted with a
//! random colour that contrasts with the background and shaded by the garment's intensity.
//! A pixel is labelled with the garment's class where the scaled intensity is at least
//! [`LABEL_THRESHOLD`]; the garment is drawn fully opaque there and faded out over the
//! intensities just below it (anti-aliased edge, which falls into the void band).

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use rand::rngs::StdRng;
use rand::Rng;

use crate::augment::{item_rng, resize, Chw};
use crate::error::DataError;
use crate::idx::{load_fashion_mnist, FASHION_MNIST_CLASSES};
use crate::seg::camvid::{hue_color, ClassesFile, SegSplit};
use crate::set::{ImageSet, Split};

/// The canvas size used unless told otherwise.
pub const DEFAULT_SIZE: usize = 96;
/// Label of pixels no garment covers.
pub const BACKGROUND: u8 = 10;
/// Label of the boundary band (= the class count, as CamVid's void).
pub const VOID: u8 = 11;
/// A garment pixel is labelled where its scaled Fashion-MNIST intensity is at least this.
pub const LABEL_THRESHOLD: u8 = 24;

/// What to generate; [`generate`] is the common case.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScenesConfig {
    /// Canvas side in pixels (at least 16).
    pub size: usize,
    /// Number of training scenes to write (`train/`, `trainannot/`).
    pub n_train: usize,
    /// Number of validation scenes to write (`val/`, `valannot/`).
    pub n_val: usize,
    /// Number of test scenes to write (`test/`, `testannot/`).
    pub n_test: usize,
    /// Seed of every random choice; the same seed writes the same images.
    pub seed: u64,
    /// Garments per image are drawn uniformly from 1..=max_garments.
    pub max_garments: usize,
}

/// How many images of each split were written, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenesWritten {
    /// The data set root the split folders and `classes.json` were written into.
    pub dir: PathBuf,
    /// Side of every image in pixels.
    pub size: usize,
    /// Number of training scenes written.
    pub train: usize,
    /// Number of validation scenes written.
    pub val: usize,
    /// Number of test scenes written.
    pub test: usize,
}

/// Writes `n_train` training, `n_test` validation and `n_test` test scenes of `size x size`
/// into `out_dir` (SegNet layout + `classes.json`); see [`generate_with`].
pub fn generate(
    out_dir: &Path,
    size: usize,
    n_train: usize,
    n_test: usize,
    seed: u64,
    fashion_dir: &Path,
) -> Result<ScenesWritten, DataError> {
    let cfg = ScenesConfig {
        size,
        n_train,
        n_val: n_test,
        n_test,
        seed,
        max_garments: 4,
    };
    generate_with(out_dir, &cfg, fashion_dir)
}

/// The 11 class names (Fashion-MNIST's 10, then "Background") and their colours.
pub fn classes_file() -> ClassesFile {
    let mut names: Vec<String> = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.push("Background".into());
    let mut palette: Vec<[u8; 3]> = (0..10).map(|i| hue_color(i, 10)).collect();
    palette.push([48, 48, 48]);
    ClassesFile {
        names,
        palette: Some(palette),
        void: Some([255, 255, 255]),
    }
}

/// Generates the data set described by `cfg` into `out_dir` from the Fashion-MNIST IDX files
/// in `fashion_dir`.
///
/// Garment sources never cross splits: test scenes use Fashion-MNIST's test garments; train
/// and val scenes use its training garments, the last sixth of which is held out for val (so
/// validation garments are unseen in training). Files are `<split>/NNNNNN.png` (RGB) and
/// `<split>annot/NNNNNN.png` (8-bit grey class ids); earlier files of that name pattern in the
/// six folders are removed first, so a smaller regeneration leaves no stale images. Other
/// files are left alone.
pub fn generate_with(
    out_dir: &Path,
    cfg: &ScenesConfig,
    fashion_dir: &Path,
) -> Result<ScenesWritten, DataError> {
    if cfg.size < 16 || cfg.size > 4096 {
        return Err(DataError::format(
            out_dir,
            format!("fashion-scenes size {} (need 16..=4096)", cfg.size),
        ));
    }
    let max_garments = cfg.max_garments.max(1);
    std::fs::create_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;
    let train_garments = if cfg.n_train + cfg.n_val > 0 {
        Some(load_fashion_mnist(fashion_dir, Split::Train)?)
    } else {
        None
    };
    let test_garments = if cfg.n_test > 0 {
        Some(load_fashion_mnist(fashion_dir, Split::Test)?)
    } else {
        None
    };
    let jobs = [
        (SegSplit::Train, cfg.n_train, &train_garments, Pool::Head),
        (SegSplit::Val, cfg.n_val, &train_garments, Pool::Tail),
        (SegSplit::Test, cfg.n_test, &test_garments, Pool::All),
    ];
    for (split_no, (split, n, garments, pool)) in jobs.into_iter().enumerate() {
        let (img_name, ann_name) = split.dirs();
        let (img_dir, ann_dir) = (out_dir.join(img_name), out_dir.join(ann_name));
        for d in [&img_dir, &ann_dir] {
            std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
            remove_generated(d)?;
        }
        let Some(garments) = garments.as_ref().filter(|_| n > 0) else {
            continue;
        };
        let pool = pool.range(garments.len());
        let ctx = Ctx {
            garments,
            pool,
            size: cfg.size,
            max_garments,
            seed: cfg.seed,
            split: split_no,
        };
        let threads = std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1)
            .clamp(1, 16)
            .min(n);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (ctx, img_dir, ann_dir) = (&ctx, &img_dir, &ann_dir);
                    s.spawn(move || -> Result<(), DataError> {
                        for i in (t..n).step_by(threads) {
                            let (rgb, label) = ctx.scene(i);
                            let name = format!("{i:06}.png");
                            write_png(
                                &img_dir.join(&name),
                                &rgb,
                                ctx.size,
                                ExtendedColorType::Rgb8,
                            )?;
                            write_png(
                                &ann_dir.join(&name),
                                &label,
                                ctx.size,
                                ExtendedColorType::L8,
                            )?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("fashion-scenes worker panicked"))
                .collect::<Result<Vec<()>, DataError>>()
        })?;
    }
    classes_file().write(&out_dir.join(ClassesFile::FILE_NAME))?;
    Ok(ScenesWritten {
        dir: out_dir.to_path_buf(),
        size: cfg.size,
        train: cfg.n_train,
        val: cfg.n_val,
        test: cfg.n_test,
    })
}

/// Which garments of a Fashion-MNIST split a scene split draws from.
#[derive(Clone, Copy)]
enum Pool {
    All,
    /// The first five sixths (train scenes).
    Head,
    /// The last sixth (val scenes).
    Tail,
}

impl Pool {
    fn range(self, n: usize) -> std::ops::Range<usize> {
        let cut = n - n / 6;
        match self {
            _ if n < 2 => 0..n,
            Pool::All => 0..n,
            Pool::Head => 0..cut,
            Pool::Tail => cut..n,
        }
    }
}

struct Ctx<'a> {
    garments: &'a ImageSet,
    pool: std::ops::Range<usize>,
    size: usize,
    max_garments: usize,
    seed: u64,
    split: usize,
}

impl Ctx<'_> {
    /// Scene `i`: HWC RGB bytes and the label map. Redraws (from the same stream) in the rare
    /// case that the result lacks a visible garment or visible background.
    fn scene(&self, i: usize) -> (Vec<u8>, Vec<u8>) {
        let mut rng = item_rng(self.seed, self.split, i);
        loop {
            let (rgb, label) = self.draw(&mut rng);
            let has_bg = label.contains(&BACKGROUND);
            let has_garment = label.iter().any(|&l| l < BACKGROUND);
            if has_bg && has_garment {
                return (rgb, label);
            }
        }
    }

    fn draw(&self, rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
        let s = self.size;
        let mut rgb = background(s, rng);
        let mut label = vec![BACKGROUND; s * s];
        // Draw order of the garment owning each pixel (0 = background): decides which side of
        // a boundary becomes void.
        let mut z = vec![0u8; s * s];
        let bg_mean = mean_color(&rgb);
        let k = rng.random_range(1..=self.max_garments);
        for g in 0..k {
            let idx = rng.random_range(self.pool.clone());
            let class = self.garments.label(idx) as u8;
            let src = self.garments.image(idx);
            let (gh, gw) = (self.garments.height, self.garments.width);
            let scale: f32 = rng.random_range(0.8..=2.5);
            let side_h = ((gh as f32 * scale).round() as usize).clamp(4, s);
            let side_w = ((gw as f32 * scale).round() as usize).clamp(4, s);
            let garment = resize(src, Chw::new(1, gh, gw), side_h, side_w);
            let top = rng.random_range(0..=s - side_h);
            let left = rng.random_range(0..=s - side_w);
            let tint = contrasting_tint(bg_mean, rng);
            let t = f32::from(LABEL_THRESHOLD);
            for y in 0..side_h {
                for x in 0..side_w {
                    let v = garment[y * side_w + x];
                    let alpha = ((f32::from(v) - t / 2.0) / (t / 2.0)).clamp(0.0, 1.0);
                    if alpha == 0.0 {
                        continue;
                    }
                    let p = (top + y) * s + left + x;
                    let shade = 0.35 + 0.65 * f32::from(v) / 255.0;
                    for c in 0..3 {
                        let fg = f32::from(tint[c]) * shade;
                        let old = f32::from(rgb[3 * p + c]);
                        rgb[3 * p + c] = (old + (fg - old) * alpha).round().clamp(0.0, 255.0) as u8;
                    }
                    if v >= LABEL_THRESHOLD {
                        label[p] = class;
                        z[p] = g as u8 + 1;
                    }
                }
            }
        }
        void_band(&mut label, &z, s);
        (rgb, label)
    }
}

/// Marks as void every pixel that has a 4-neighbour of another label drawn in front of it
/// (higher `z`): a 1-px band on the occluded side of each boundary, where the front garment's
/// anti-aliased edge blends in.
fn void_band(label: &mut [u8], z: &[u8], s: usize) {
    let orig = label.to_vec();
    for y in 0..s {
        for x in 0..s {
            let p = y * s + x;
            let mut nb = [None; 4];
            if y > 0 {
                nb[0] = Some(p - s);
            }
            if y + 1 < s {
                nb[1] = Some(p + s);
            }
            if x > 0 {
                nb[2] = Some(p - 1);
            }
            if x + 1 < s {
                nb[3] = Some(p + 1);
            }
            if nb
                .iter()
                .flatten()
                .any(|&q| orig[q] != orig[p] && z[q] > z[p])
            {
                label[p] = VOID;
            }
        }
    }
}

/// HWC RGB background: a two-colour linear gradient at a random angle, plus stripes of random
/// period, angle and small amplitude, plus uniform noise.
fn background(s: usize, rng: &mut StdRng) -> Vec<u8> {
    let c0: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..=255.0));
    let c1: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..=255.0));
    let theta: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (gc, gs) = (theta.cos(), theta.sin());
    let phi: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (sc, ss) = (phi.cos(), phi.sin());
    let period: f32 = rng.random_range(5.0..=24.0);
    let amp: f32 = rng.random_range(0.0..=14.0);
    let noise: f32 = rng.random_range(1.0..=8.0);
    let half = (s as f32 - 1.0) / 2.0;
    // Projection of the canvas onto the gradient direction spans at most +-half*(|c|+|s|).
    let span = half * (gc.abs() + gs.abs()).max(1e-3);
    let mut out = Vec::with_capacity(3 * s * s);
    for y in 0..s {
        for x in 0..s {
            let (fx, fy) = (x as f32 - half, y as f32 - half);
            let t = ((fx * gc + fy * gs) / span + 1.0) / 2.0;
            let stripe =
                amp * (std::f32::consts::TAU * (x as f32 * sc + y as f32 * ss) / period).sin();
            for c in 0..3 {
                let n = rng.random_range(-noise..=noise);
                let v = c0[c] + (c1[c] - c0[c]) * t + stripe + n;
                out.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

fn mean_color(rgb: &[u8]) -> [f32; 3] {
    let mut sum = [0u64; 3];
    for px in rgb.chunks_exact(3) {
        for c in 0..3 {
            sum[c] += u64::from(px[c]);
        }
    }
    let n = (rgb.len() / 3).max(1) as f32;
    std::array::from_fn(|c| sum[c] as f32 / n)
}

/// A random tint at least 150 (L1 over RGB) away from the background's mean colour, so a
/// garment is visible; after 20 tries, whichever was farthest.
fn contrasting_tint(bg: [f32; 3], rng: &mut StdRng) -> [u8; 3] {
    let mut best = ([255u8; 3], -1.0f32);
    for _ in 0..20 {
        let t: [u8; 3] = std::array::from_fn(|_| rng.random_range(40..=255u8));
        let d: f32 = (0..3).map(|c| (f32::from(t[c]) - bg[c]).abs()).sum();
        if d >= 150.0 {
            return t;
        }
        if d > best.1 {
            best = (t, d);
        }
    }
    best.0
}

fn write_png(
    path: &Path,
    data: &[u8],
    s: usize,
    color: ExtendedColorType,
) -> Result<(), DataError> {
    let f = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    PngEncoder::new_with_quality(
        BufWriter::new(f),
        CompressionType::Fast,
        FilterType::Adaptive,
    )
    .write_image(data, s as u32, s as u32, color)
    .map_err(|source| DataError::Image {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes files named like the generator's output (`NNNNNN.png`) from `dir`.
fn remove_generated(dir: &Path) -> Result<(), DataError> {
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let generated = name.len() == 10
            && name.ends_with(".png")
            && name[..6].bytes().all(|b| b.is_ascii_digit());
        if generated {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| DataError::io(&p, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::FASHION_MNIST_DIR;
    use crate::seg::camvid::load_camvid;
    use crate::testutil::TempDir;

    /// The real Fashion-MNIST folder. The data is required (CI installs it): without it the
    /// calling test fails, naming the folder and the package.
    fn fashion() -> &'static Path {
        let dir = Path::new(FASHION_MNIST_DIR);
        assert!(
            dir.join("train-labels-idx1-ubyte.gz").exists()
                || dir.join("train-labels-idx1-ubyte").exists(),
            "Fashion-MNIST is missing from {FASHION_MNIST_DIR}: install it with \
             `apt-get install dataset-fashion-mnist` (the README's set-up and .ci/run do)"
        );
        dir
    }

    #[test]
    fn generates_a_loadable_deterministic_set() {
        let fm = fashion();
        let out = TempDir::new("scenes");
        let t0 = std::time::Instant::now();
        let w = generate(out.path(), 64, 12, 5, 7, fm).unwrap();
        println!("12 + 5 + 5 scenes in {:?}", t0.elapsed());
        assert_eq!((w.train, w.val, w.test, w.size), (12, 5, 5, 64));
        let count = |d: &str| std::fs::read_dir(out.path().join(d)).unwrap().count();
        for (d, n) in [
            ("train", 12),
            ("trainannot", 12),
            ("val", 5),
            ("valannot", 5),
            ("test", 5),
            ("testannot", 5),
        ] {
            assert_eq!(count(d), n, "{d}");
        }
        let mut void_pixels = 0;
        for (split, n) in [
            (SegSplit::Train, 12),
            (SegSplit::Val, 5),
            (SegSplit::Test, 5),
        ] {
            let set = load_camvid(out.path(), split).unwrap();
            assert_eq!(
                (set.len(), set.height, set.width, set.classes),
                (n, 64, 64, 11)
            );
            assert_eq!(set.class_names[10], "Background");
            assert_eq!(set.class_names[9], "Ankle boot");
            assert!(set.labels.iter().all(|&l| l <= VOID));
            for i in 0..n {
                let l = set.label(i);
                assert!(l.contains(&BACKGROUND), "{split:?} {i} has no background");
                assert!(
                    l.iter().any(|&c| c < BACKGROUND),
                    "{split:?} {i} has no garment"
                );
                void_pixels += l.iter().filter(|&&c| c == VOID).count();
            }
            // Images are not blank and vary.
            let (_, sd) = set.channel_mean_std();
            assert!(sd.iter().all(|&s| s > 0.05), "{sd:?}");
        }
        assert!(void_pixels > 100, "{void_pixels} void pixels");

        // Same seed: identical files; another seed: different ones. A smaller regeneration
        // leaves no stale files.
        let again = TempDir::new("scenes2");
        generate(again.path(), 64, 12, 5, 7, fm).unwrap();
        for f in [
            "train/000003.png",
            "trainannot/000011.png",
            "test/000004.png",
            "classes.json",
        ] {
            assert_eq!(
                std::fs::read(out.path().join(f)).unwrap(),
                std::fs::read(again.path().join(f)).unwrap(),
                "{f}"
            );
        }
        generate(again.path(), 64, 3, 2, 8, fm).unwrap();
        assert_ne!(
            std::fs::read(out.path().join("train/000000.png")).unwrap(),
            std::fs::read(again.path().join("train/000000.png")).unwrap()
        );
        assert_eq!(load_camvid(again.path(), SegSplit::Train).unwrap().len(), 3);
    }

    #[test]
    fn void_band_is_one_pixel_on_the_occluded_side() {
        // 4x4: background with a 2x2 garment (class 3, drawn first) at rows 1-2, cols 1-2.
        let mut label = vec![BACKGROUND; 16];
        let mut z = vec![0u8; 16];
        for p in [5, 6, 9, 10] {
            label[p] = 3;
            z[p] = 1;
        }
        void_band(&mut label, &z, 4);
        #[rustfmt::skip]
        let want = vec![
            10, 11, 11, 10,
            11, 3, 3, 11,
            11, 3, 3, 11,
            10, 11, 11, 10,
        ];
        assert_eq!(label, want);
    }
}
