//! Data augmentation as pure functions on u8 CHW images. Randomness comes only from an RNG
//! seeded by (seed, epoch, item index) — [`item_rng`] — so an epoch's augmented data is the same
//! whichever worker thread batches an item, and a run can be reproduced from its seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The shape of one CHW image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chw {
    /// Number of channels (planes).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl Chw {
    /// The shape `channels x height x width`.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Chw {
            channels,
            height,
            width,
        }
    }

    /// Bytes of one image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the shape has no pixels (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_hw(self, height: usize, width: usize) -> Self {
        Chw {
            height,
            width,
            ..self
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-mixed 64-bit seed from (seed, epoch, index).
pub fn item_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    let h = splitmix64(seed);
    let h = splitmix64(h ^ epoch as u64);
    splitmix64(h ^ (index as u64).rotate_left(32))
}

/// The RNG for augmenting item `index` in `epoch` of a run seeded with `seed`.
pub fn item_rng(seed: u64, epoch: usize, index: usize) -> StdRng {
    StdRng::seed_from_u64(item_seed(seed, epoch, index))
}

/// Mirrors each row (left-right).
pub fn hflip(src: &[u8], s: Chw) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    for row in src.chunks_exact(s.width.max(1)) {
        out.extend(row.iter().rev());
    }
    out
}

/// Copies the `h x w` window at (`top`, `left`). Panics if it does not fit in the image.
pub fn crop(src: &[u8], s: Chw, top: usize, left: usize, h: usize, w: usize) -> Vec<u8> {
    assert!(
        top + h <= s.height && left + w <= s.width,
        "crop {h}x{w} at ({top},{left}) outside {}x{}",
        s.height,
        s.width
    );
    let mut out = Vec::with_capacity(s.channels * h * w);
    for plane in src.chunks_exact(s.height * s.width) {
        for r in top..top + h {
            out.extend_from_slice(&plane[r * s.width + left..r * s.width + left + w]);
        }
    }
    out
}

/// Zero-pads by `pad` on every side and crops back to the original size at (`top`, `left`) of
/// the padded image (each in `0..=2*pad`): a shift with zero fill, without building the
/// padded image.
pub fn pad_crop(src: &[u8], s: Chw, pad: usize, top: usize, left: usize) -> Vec<u8> {
    let (h, w) = (s.height, s.width);
    let mut out = vec![0u8; src.len()];
    for (plane, dst) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(h * w)) {
        for r in 0..h {
            // Source row of output row r is r + top - pad.
            let Some(sr) = (r + top).checked_sub(pad).filter(|&sr| sr < h) else {
                continue;
            };
            for c in 0..w {
                if let Some(sc) = (c + left).checked_sub(pad).filter(|&sc| sc < w) {
                    dst[r * w + c] = plane[sr * w + sc];
                }
            }
        }
    }
    out
}

/// Per-output-coordinate source indices and weight of the second one (half-pixel centres,
/// clamped to the window `start..start+len`).
fn taps(start: usize, len: usize, out: usize) -> Vec<(usize, usize, f32)> {
    let scale = len as f32 / out as f32;
    (0..out)
        .map(|o| {
            let x = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
            let x0 = x.floor() as usize;
            let x1 = (x0 + 1).min(len - 1);
            (start + x0, start + x1, x - x0 as f32)
        })
        .collect()
}

/// Bilinearly resamples the `ch x cw` window at (`top`, `left`) to `out_h x out_w`
/// (no antialiasing: fine for the <= 4x reductions used here).
#[allow(clippy::too_many_arguments)]
pub fn resize_window(
    src: &[u8],
    s: Chw,
    top: usize,
    left: usize,
    ch: usize,
    cw: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    assert!(
        ch > 0 && cw > 0 && top + ch <= s.height && left + cw <= s.width,
        "window {ch}x{cw} at ({top},{left}) outside {}x{}",
        s.height,
        s.width
    );
    let ys = taps(top, ch, out_h);
    let xs = taps(left, cw, out_w);
    let mut out = Vec::with_capacity(s.channels * out_h * out_w);
    for plane in src.chunks_exact(s.height * s.width) {
        for &(y0, y1, fy) in &ys {
            let (r0, r1) = (&plane[y0 * s.width..], &plane[y1 * s.width..]);
            for &(x0, x1, fx) in &xs {
                let top = f32::from(r0[x0]) * (1.0 - fx) + f32::from(r0[x1]) * fx;
                let bot = f32::from(r1[x0]) * (1.0 - fx) + f32::from(r1[x1]) * fx;
                out.push((top * (1.0 - fy) + bot * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Bilinear resize of the whole image to `h x w`.
pub fn resize(src: &[u8], s: Chw, h: usize, w: usize) -> Vec<u8> {
    if (h, w) == (s.height, s.width) {
        return src.to_vec();
    }
    resize_window(src, s, 0, 0, s.height, s.width, h, w)
}

/// Resizes so that the shorter side is `size`, keeping the aspect ratio.
pub fn resize_shorter(src: &[u8], s: Chw, size: usize) -> (Vec<u8>, Chw) {
    let (h, w) = (s.height as f64, s.width as f64);
    let scale = size as f64 / h.min(w);
    let nh = ((h * scale).round() as usize).max(size);
    let nw = ((w * scale).round() as usize).max(size);
    (resize(src, s, nh, nw), s.with_hw(nh, nw))
}

/// The centred `h x w` window; an image smaller than that in either side is first scaled up
/// (keeping its aspect ratio) just enough to cover it.
pub fn center_crop(src: &[u8], s: Chw, h: usize, w: usize) -> Vec<u8> {
    if s.height < h || s.width < w {
        let scale = (h as f64 / s.height as f64).max(w as f64 / s.width as f64);
        let nh = ((s.height as f64 * scale).ceil() as usize).max(h);
        let nw = ((s.width as f64 * scale).ceil() as usize).max(w);
        let up = resize(src, s, nh, nw);
        return center_crop(&up, s.with_hw(nh, nw), h, w);
    }
    crop(src, s, (s.height - h) / 2, (s.width - w) / 2, h, w)
}

/// Scales to cover `h x w` (keeping the aspect ratio) and crops the centre: one fixed size for
/// a folder of differently sized images.
pub fn fit_cover(src: &[u8], s: Chw, h: usize, w: usize) -> Vec<u8> {
    let scale = (h as f64 / s.height as f64).max(w as f64 / s.width as f64);
    let nh = ((s.height as f64 * scale).round() as usize).max(h);
    let nw = ((s.width as f64 * scale).round() as usize).max(w);
    let scaled = resize(src, s, nh, nw);
    crop(&scaled, s.with_hw(nh, nw), (nh - h) / 2, (nw - w) / 2, h, w)
}

/// Inception-style random-resized crop (as torchvision's `RandomResizedCrop`): a window of
/// 8 %..100 % of the area with aspect ratio 3/4..4/3 (log-uniform), resized to `size x size`;
/// after 10 failed draws, the largest centred window of a valid ratio.
pub fn random_resized_crop(src: &[u8], s: Chw, size: usize, rng: &mut StdRng) -> Vec<u8> {
    let (h, w) = (s.height, s.width);
    let area = (h * w) as f64;
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(0.08..=1.0);
        let ratio = rng.random_range(lr0..=lr1).exp();
        let cw = (target * ratio).sqrt().round() as usize;
        let ch = (target / ratio).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return resize_window(src, s, top, left, ch, cw, size, size);
        }
    }
    let ratio = w as f64 / h as f64;
    let (ch, cw) = if ratio < 3.0 / 4.0 {
        (((w as f64) / (3.0 / 4.0)).round() as usize, w)
    } else if ratio > 4.0 / 3.0 {
        (h, ((h as f64) * (4.0 / 3.0)).round() as usize)
    } else {
        (h, w)
    };
    let (ch, cw) = (ch.clamp(1, h), cw.clamp(1, w));
    resize_window(src, s, (h - ch) / 2, (w - cw) / 2, ch, cw, size, size)
}

/// Gaussian blur with standard deviation `sigma` pixels: a separable kernel of radius
/// ceil(3 sigma), edges replicated (so a constant image stays constant).
pub fn gaussian_blur(src: &[u8], s: Chw, sigma: f32) -> Vec<u8> {
    if sigma <= 0.0 || s.is_empty() {
        return src.to_vec();
    }
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|x| (-((x * x) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    let (h, w) = (s.height as isize, s.width as isize);
    let mut out = Vec::with_capacity(src.len());
    let mut tmp = vec![0f32; s.height * s.width];
    for plane in src.chunks_exact(s.height * s.width) {
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (i, kv) in k.iter().enumerate() {
                    let xx = (x + i as isize - r).clamp(0, w - 1);
                    acc += kv * f32::from(plane[(y * w + xx) as usize]);
                }
                tmp[(y * w + x) as usize] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (i, kv) in k.iter().enumerate() {
                    let yy = (y + i as isize - r).clamp(0, h - 1);
                    acc += kv * tmp[(yy * w + x) as usize];
                }
                out.push(acc.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Which augmentations to apply (serde: every field optional, defaults = none).
///
/// Training order: `resize` (shorter side) → `random_resized_crop` (else `center_crop`) →
/// `pad_crop` → `flip` → `blur_sigma`. Evaluation applies only the deterministic part:
/// `resize` and `center_crop`; a `random_resized_crop` of size s without them becomes
/// "resize the shorter side to s/0.875, centre-crop s" (ImageNet's 256/224 protocol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Random horizontal flip with probability 1/2 (CIFAR, ImageNet; not for digits).
    pub flip: bool,
    /// Zero-pad by this many pixels and crop back at a random offset (CIFAR: 4).
    pub pad_crop: Option<usize>,
    /// Random-resized crop to this square size (ImageNet training: 224).
    pub random_resized_crop: Option<u32>,
    /// Resize the shorter side to this first (ImageNet evaluation: 256).
    pub resize: Option<u32>,
    /// Centre crop to this square size (ImageNet evaluation: 224).
    pub center_crop: Option<u32>,
    /// Gaussian blur with sigma drawn uniformly from [0.1, blur_sigma] per image (as
    /// torchvision's `GaussianBlur(sigma=(0.1, s))`); SVHN.
    pub blur_sigma: Option<f32>,
}

impl Augment {
    /// Checks the values serde cannot: a message naming the field (`data.augment.FIELD`).
    pub fn validate(&self) -> Result<(), String> {
        const MAX_SIDE: u32 = 1 << 16;
        for (field, v) in [
            ("random_resized_crop", self.random_resized_crop),
            ("resize", self.resize),
            ("center_crop", self.center_crop),
        ] {
            if let Some(v) = v {
                if v == 0 || v > MAX_SIDE {
                    return Err(format!(
                        "data.augment.{field} must lie in 1..={MAX_SIDE} pixels, got {v}"
                    ));
                }
            }
        }
        if let Some(p) = self.pad_crop {
            if p > MAX_SIDE as usize {
                return Err(format!(
                    "data.augment.pad_crop must be at most {MAX_SIDE} pixels, got {p}"
                ));
            }
        }
        if let Some(s) = self.blur_sigma {
            if !(s.is_finite() && (0.1..=100.0).contains(&s)) {
                return Err(format!(
                    "data.augment.blur_sigma must lie in [0.1, 100] (sigma is drawn from [0.1, blur_sigma]), got {s}"
                ));
            }
        }
        Ok(())
    }

    /// No augmentation.
    pub fn none() -> Self {
        Self::default()
    }

    /// The standard CIFAR recipe: flip + 4-pixel pad-and-crop.
    pub fn cifar() -> Self {
        Augment {
            flip: true,
            pad_crop: Some(4),
            ..Self::default()
        }
    }

    /// ImageNet: random-resized crop 224 + flip for training; 256/224 centre crop in eval.
    pub fn imagenet() -> Self {
        Augment {
            flip: true,
            random_resized_crop: Some(224),
            ..Self::default()
        }
    }

    /// Whether evaluation changes an image at all.
    pub fn has_eval_transform(&self) -> bool {
        self.resize.is_some() || self.center_crop.is_some() || self.random_resized_crop.is_some()
    }

    /// Training-time augmentation of one image; all randomness is drawn from `rng`.
    pub fn apply_train(&self, src: &[u8], s: Chw, rng: &mut StdRng) -> (Vec<u8>, Chw) {
        let (mut px, mut s) = (src.to_vec(), s);
        if let Some(size) = self.resize {
            (px, s) = resize_shorter(&px, s, size as usize);
        }
        if let Some(size) = self.random_resized_crop {
            px = random_resized_crop(&px, s, size as usize, rng);
            s = s.with_hw(size as usize, size as usize);
        } else if let Some(size) = self.center_crop {
            px = center_crop(&px, s, size as usize, size as usize);
            s = s.with_hw(size as usize, size as usize);
        }
        if let Some(pad) = self.pad_crop {
            let top = rng.random_range(0..=2 * pad);
            let left = rng.random_range(0..=2 * pad);
            px = pad_crop(&px, s, pad, top, left);
        }
        if self.flip && rng.random_bool(0.5) {
            px = hflip(&px, s);
        }
        if let Some(max) = self.blur_sigma {
            let sigma = if max > 0.1 {
                rng.random_range(0.1..=max)
            } else {
                max
            };
            px = gaussian_blur(&px, s, sigma);
        }
        (px, s)
    }

    /// Evaluation-time (deterministic) transform of one image.
    pub fn apply_eval(&self, src: &[u8], s: Chw) -> (Vec<u8>, Chw) {
        let (mut px, mut s) = (src.to_vec(), s);
        let resize = self.resize.or_else(|| {
            self.random_resized_crop
                .filter(|_| self.center_crop.is_none())
                .map(|c| (c as f32 / 0.875).round() as u32)
        });
        if let Some(size) = resize {
            (px, s) = resize_shorter(&px, s, size as usize);
        }
        if let Some(size) = self.center_crop.or(self.random_resized_crop) {
            px = center_crop(&px, s, size as usize, size as usize);
            s = s.with_hw(size as usize, size as usize);
        }
        (px, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(s: Chw, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..s.len()).map(|_| rng.random()).collect()
    }

    #[test]
    fn flip_twice_is_identity_and_flips_rows() {
        let s = Chw::new(3, 5, 7);
        let x = img(s, 1);
        let f = hflip(&x, s);
        assert_ne!(f, x);
        assert_eq!(f[0], x[6]);
        assert_eq!(hflip(&f, s), x);
    }

    #[test]
    fn pad_crop_shifts_with_zero_fill() {
        let s = Chw::new(1, 3, 3);
        let x: Vec<u8> = (1..=9).collect();
        assert_eq!(pad_crop(&x, s, 2, 2, 2), x);
        // Window starting at the padded corner: shifted down-right by 1.
        assert_eq!(pad_crop(&x, s, 1, 0, 0), vec![0, 0, 0, 0, 1, 2, 0, 4, 5]);
        assert_eq!(pad_crop(&x, s, 1, 2, 2), vec![5, 6, 0, 8, 9, 0, 0, 0, 0]);
    }

    #[test]
    fn blur_keeps_constants_and_smooths() {
        let s = Chw::new(2, 9, 11);
        let c = vec![137u8; s.len()];
        for sigma in [0.3, 1.0, 2.5] {
            assert_eq!(gaussian_blur(&c, s, sigma), c);
        }
        let mut dot = vec![0u8; s.len()];
        dot[4 * 11 + 5] = 255;
        let b = gaussian_blur(&dot, s, 1.0);
        assert!(b[4 * 11 + 5] < 255 && b[4 * 11 + 6] > 0 && b[4 * 11 + 6] == b[4 * 11 + 4]);
    }

    #[test]
    fn resize_and_crops_have_the_right_shapes() {
        let s = Chw::new(3, 40, 60);
        let x = img(s, 2);
        assert_eq!(resize(&x, s, 40, 60), x);
        let (r, rs) = resize_shorter(&x, s, 20);
        assert_eq!((rs, r.len()), (Chw::new(3, 20, 30), 3 * 20 * 30));
        assert_eq!(center_crop(&x, s, 32, 32).len(), 3 * 32 * 32);
        assert_eq!(center_crop(&x, s, 50, 50).len(), 3 * 50 * 50);
        assert_eq!(fit_cover(&x, s, 24, 24).len(), 3 * 24 * 24);
        let mut rng = item_rng(1, 2, 3);
        for _ in 0..20 {
            assert_eq!(random_resized_crop(&x, s, 16, &mut rng).len(), 3 * 16 * 16);
        }
        // A constant image stays constant under bilinear resampling.
        let c = vec![9u8; s.len()];
        assert!(random_resized_crop(&c, s, 13, &mut rng)
            .iter()
            .all(|&v| v == 9));
        // Centre crop picks the middle.
        let t = Chw::new(1, 3, 3);
        assert_eq!(center_crop(&(1..=9).collect::<Vec<u8>>(), t, 1, 1), vec![5]);
    }

    #[test]
    fn augment_is_a_function_of_seed_epoch_index() {
        let s = Chw::new(3, 32, 32);
        let x = img(s, 3);
        let a = Augment {
            blur_sigma: Some(1.5),
            random_resized_crop: Some(24),
            ..Augment::cifar()
        };
        let run = |seed, epoch, index| a.apply_train(&x, s, &mut item_rng(seed, epoch, index));
        let (p, ps) = run(7, 1, 5);
        assert_eq!(ps, Chw::new(3, 24, 24));
        assert_eq!(p.len(), ps.len());
        assert_eq!(run(7, 1, 5), (p.clone(), ps));
        assert_ne!(run(7, 2, 5).0, p);
        assert_ne!(run(7, 1, 6).0, p);
        assert_ne!(run(8, 1, 5).0, p);
        let (e, es) = a.apply_eval(&x, s);
        assert_eq!((es, e.len()), (Chw::new(3, 24, 24), 3 * 24 * 24));
        assert_eq!(Augment::none().apply_eval(&x, s), (x.clone(), s));
    }

    #[test]
    fn augment_serde_defaults() {
        let a: Augment = serde_json::from_str(r#"{"flip": true, "pad_crop": 4}"#).unwrap();
        assert_eq!(a, Augment::cifar());
        let b: Augment =
            serde_json::from_str(&serde_json::to_string(&Augment::imagenet()).unwrap()).unwrap();
        assert_eq!(b, Augment::imagenet());
        assert!(serde_json::from_str::<Augment>(r#"{"flipp": true}"#).is_err());
    }
}
