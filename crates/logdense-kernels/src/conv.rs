//! The fused dense-layer kernels on plain `f32` slices: BN-ReLU-conv over a *list* of NCHW
//! inputs, forward and backward, with no concatenated copy, no stored BN or ReLU output and no
//! transposed convolution.
//!
//! Work is split into tiles of whole image rows: a band of rows of one image, or several small
//! images stacked. A tile's inputs are normalised and rectified once into a zero-padded band
//! buffer `[channels, rows + halos, width + 2 pad]`; in that buffer every kernel tap is a plain
//! offset (output positions in padded-width coordinates; the pad columns and halo rows are
//! computed and dropped). The input gradient is itself a convolution of the output gradient
//! with the flipped, transposed weights, so it is tiled the same way and needs no col2im
//! scatter: tiles are independent and run in parallel.
//!
//! The products run, by CPU and precision:
//! - f32 with AVX-512: direct kernels (module `direct`) whose register blocks read the band in
//!   place at each tap's offset and stay in registers over all taps and channels;
//! - f32 elsewhere: one `gemm` product per tap on the band at the tap's offset (the input
//!   gradient on an im2col copy of the output gradient's band);
//! - bf16 ([`Precision::Bf16`]): AMX tiles or `vdpbf16ps` (module `mixed`).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::bf16::{Amx, Avx512Bf16, Emulated};

mod direct;
mod mixed;
mod winograd;

/// The f32 kernels of [`forward`] and [`backward`]. Where the CPU lacks AVX-512 only `gemm`'s
/// run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F32Kernels {
    /// The direct register blocks for every product (the default).
    Direct,
    /// Winograd F(2x2, 3x3) for the 3x3 products where the shapes allow, the direct register
    /// blocks for the rest. Opt-in: on the layers of the presets it ran no faster than the
    /// direct blocks (writing the transformed inputs costs what the products save; see
    /// [`winograd`]).
    Winograd,
    /// `gemm`'s matrix kernels.
    Gemm,
}

thread_local! {
    /// Set by [`with_gemm_f32`], [`with_direct_f32`] and [`with_winograd_f32`]: this thread's
    /// f32 kernels.
    static F32_OVERRIDE: std::cell::Cell<Option<F32Kernels>> = const { std::cell::Cell::new(None) };
}

/// The f32 kernels asked for: this thread's override, else the environment variable
/// `LOGDENSE_F32_KERNELS` (`winograd` or `gemm`, to compare the paths), else the direct ones.
fn f32_kernel_choice() -> F32Kernels {
    static BY_ENV: std::sync::OnceLock<F32Kernels> = std::sync::OnceLock::new();
    F32_OVERRIDE.with(|o| o.get()).unwrap_or_else(|| {
        *BY_ENV.get_or_init(|| match std::env::var("LOGDENSE_F32_KERNELS").as_deref() {
            Ok("gemm") => F32Kernels::Gemm,
            Ok("winograd") => F32Kernels::Winograd,
            _ => F32Kernels::Direct,
        })
    })
}

/// Runs `f` with this thread's f32 kernels set to `kernels`.
fn with_f32_kernels<R>(kernels: F32Kernels, f: impl FnOnce() -> R) -> R {
    let before = F32_OVERRIDE.with(|o| o.replace(Some(kernels)));
    let result = f();
    F32_OVERRIDE.with(|o| o.set(before));
    result
}

/// Runs `f` with this thread's f32 calls of [`forward`] and [`backward`] on `gemm`'s kernels,
/// even where the CPU runs the direct AVX-512 ones: the path other CPUs take, for tests.
#[doc(hidden)]
pub fn with_gemm_f32<R>(f: impl FnOnce() -> R) -> R {
    with_f32_kernels(F32Kernels::Gemm, f)
}

/// Runs `f` with this thread's f32 calls of [`forward`] and [`backward`] on the direct kernels
/// alone (no Winograd products), for tests.
#[doc(hidden)]
pub fn with_direct_f32<R>(f: impl FnOnce() -> R) -> R {
    with_f32_kernels(F32Kernels::Direct, f)
}

/// Runs `f` with this thread's f32 calls of [`forward`] and [`backward`] on the Winograd
/// products where they apply (see [`f32_kernels`]), for tests and comparisons.
#[doc(hidden)]
pub fn with_winograd_f32<R>(f: impl FnOnce() -> R) -> R {
    with_f32_kernels(F32Kernels::Winograd, f)
}

/// Calls a mixed-precision kernel (`mixed::forward` or `mixed::backward`, whose first argument
/// makes each thread's tile step) with the fastest tile step this CPU runs: AMX, then
/// AVX512-BF16, then the emulated one.
macro_rules! with_tiles {
    ($kernel:path, $($arg:expr),+) => {
        if crate::bf16::amx() {
            $kernel(|| Amx::new().expect("AMX runs here"), $($arg),+)
        } else if crate::bf16::avx512_bf16() {
            $kernel(Avx512Bf16::default, $($arg),+)
        } else {
            $kernel(Emulated::default, $($arg),+)
        }
    };
}

/// The operands' precision in the fused layer's products (the networks' `model.precision`
/// option: one type from the kernels up to the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 operands (the direct AVX-512 kernels, or `gemm`'s).
    #[default]
    F32,
    /// bf16 operands with f32 accumulation: on AMX tiles where the CPU has them, else with
    /// AVX512-BF16's `vdpbf16ps`, else in plain Rust (correct, but slow).
    /// Batch-norm statistics, the ReLU mask and every sum stay in f32.
    Bf16,
}

impl Precision {
    /// Its name in configs, flags and reports: `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision '{other}' (f32 or bf16)")),
        }
    }
}

static BF16: AtomicBool = AtomicBool::new(false);

/// Sets the precision [`forward`] and [`backward`] compute in, for the whole process (as
/// PyTorch's `set_float32_matmul_precision` does).
pub fn set_precision(precision: Precision) {
    BF16.store(precision == Precision::Bf16, Ordering::Relaxed);
}

/// The precision [`forward`] and [`backward`] compute in (f32 unless [`set_precision`] said).
pub fn precision() -> Precision {
    if BF16.load(Ordering::Relaxed) {
        Precision::Bf16
    } else {
        Precision::F32
    }
}

/// Which kernels this thread's f32 calls of [`forward`] and [`backward`] run: `"direct"` (the
/// AVX-512 register blocks), `"winograd"` (opt-in with `LOGDENSE_F32_KERNELS=winograd`:
/// Winograd F(2x2, 3x3) for the 3x3 products of even-sized maps, the register blocks for the
/// rest) or `"gemm"` (`gemm`'s matrix kernels, where the CPU lacks AVX-512 or
/// `LOGDENSE_F32_KERNELS=gemm`).
pub fn f32_kernels() -> &'static str {
    match (direct::chosen(), f32_kernel_choice()) {
        (false, _) => "gemm",
        (true, F32Kernels::Winograd) => "winograd",
        (true, _) => "direct",
    }
}

/// Output pixels per tile (about): large enough for full micro-kernel panels, small enough that
/// the im2col tile of a wide layer stays in cache.
const TILE: usize = 512;

/// Shapes of one fused call: `inputs[j]` is `[batch, channels[j], height, width]`, the
/// convolution has `out_channels` filters of `kernel x kernel` (stride 1, "same" padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Height of every input and of the output, in pixels.
    pub height: usize,
    /// Width of every input and of the output, in pixels.
    pub width: usize,
    /// Channels of each input, in concatenation order.
    pub channels: Vec<usize>,
    /// Filters of the convolution: the output's channels.
    pub out_channels: usize,
    /// The (square, odd) kernel size.
    pub kernel: usize,
}

impl Geometry {
    /// Channels of the (never formed) concatenation: the convolution's input channels.
    pub fn in_channels(&self) -> usize {
        self.channels.iter().sum()
    }
    fn pixels(&self) -> usize {
        self.height * self.width
    }
    fn columns(&self) -> usize {
        self.batch * self.pixels()
    }
    fn taps(&self) -> usize {
        self.kernel * self.kernel
    }
    /// Rows of the im2col matrix of the inputs (= the weight's columns).
    fn patch(&self) -> usize {
        self.in_channels() * self.taps()
    }
}

/// Panics unless there is one input per entry of `geo.channels`, each of its shape.
fn check_inputs(geo: &Geometry, inputs: &[&[f32]]) {
    assert!(geo.kernel % 2 == 1, "the kernel size must be odd");
    assert_eq!(inputs.len(), geo.channels.len(), "one slice per input");
    for (x, &c) in inputs.iter().zip(&geo.channels) {
        assert_eq!(x.len(), geo.batch * c * geo.pixels(), "input shape");
    }
}

/// Per-channel mean and biased variance over batch and space, accumulated in f64.
pub fn batch_stats(geo: &Geometry, inputs: &[&[f32]]) -> (Vec<f32>, Vec<f32>) {
    check_inputs(geo, inputs);
    let hw = geo.pixels();
    let count = geo.columns() as f64;
    let planes: Vec<(usize, usize)> = geo
        .channels
        .iter()
        .enumerate()
        .flat_map(|(j, &c)| (0..c).map(move |cl| (j, cl)))
        .collect();
    planes
        .par_iter()
        .map(|&(j, cl)| {
            let c = geo.channels[j];
            let (mut sum, mut sq) = (0f64, 0f64);
            for b in 0..geo.batch {
                let plane = &inputs[j][(b * c + cl) * hw..][..hw];
                if let Some(next) =
                    inputs[j].get(((b + 1) * c + cl) * hw..((b + 1) * c + cl + 1) * hw)
                {
                    prefetch(next);
                }
                let (s, q) = plane_sums(plane);
                sum += s as f64;
                sq += q as f64;
            }
            let mean = sum / count;
            ((mean) as f32, (sq / count - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

/// The batch-norm affine `scale * x + shift` per channel, from the statistics it normalises with.
#[derive(Debug, Clone)]
pub struct Affine {
    /// `gamma / sqrt(var + epsilon)`.
    pub scale: Vec<f32>,
    /// `beta - mean * scale`.
    pub shift: Vec<f32>,
    /// The mean the batch norm normalises with, kept for the backward pass.
    pub mean: Vec<f32>,
    /// `1 / sqrt(var + epsilon)`.
    pub inv_std: Vec<f32>,
}

impl Affine {
    /// The affine of `gamma * (x - mean) / sqrt(var + epsilon) + beta`, per channel.
    pub fn new(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], epsilon: f64) -> Self {
        let inv_std: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
            .collect();
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, r)| g * r).collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Affine {
            scale,
            shift,
            mean: mean.to_vec(),
            inv_std,
        }
    }
}

/// Rows `y0..y0 + rows` of one image inside a tile, at padded row `offset` of its band buffer.
#[derive(Debug, Clone)]
struct ImageRows {
    image: usize,
    y0: usize,
    rows: usize,
    offset: usize,
}

/// A tile: segments stacked in one band buffer of `padded_rows` rows (each segment carries
/// `pad` halo rows above and below).
#[derive(Debug, Clone)]
struct Tile {
    segments: Vec<ImageRows>,
    padded_rows: usize,
}

/// Band geometry shared by all tiles of a call.
struct Bands {
    pad: usize,
    /// Padded width.
    wp: usize,
    tiles: Vec<Tile>,
    /// The largest tile's band buffer, in elements per channel (with the read-past slack).
    max_plane: usize,
}

impl Bands {
    fn new(geo: &Geometry) -> Self {
        let pad = geo.kernel / 2;
        let wp = geo.width + 2 * pad;
        let mut tiles = Vec::new();
        let mut push = |segments: Vec<ImageRows>| {
            let padded_rows = segments.iter().map(|s| s.rows + 2 * pad).sum();
            tiles.push(Tile {
                segments,
                padded_rows,
            });
        };
        if geo.pixels() >= TILE {
            let band = (TILE / geo.width).clamp(1, geo.height);
            // Row pairs, for the Winograd products' 2 x 2 output blocks, where the height is even.
            let band = if geo.height.is_multiple_of(2) {
                (band & !1).max(2)
            } else {
                band
            };
            for image in 0..geo.batch {
                for y0 in (0..geo.height).step_by(band) {
                    let rows = band.min(geo.height - y0);
                    push(vec![ImageRows {
                        image,
                        y0,
                        rows,
                        offset: 0,
                    }]);
                }
            }
        } else {
            // Small maps stack whole images; a batch too small to fill one tile per thread is
            // split further, so that every thread gets work (an 8 x 8 map at batch 8 is one
            // 512-pixel tile otherwise).
            let threads = rayon::current_num_threads().max(1);
            let target = TILE.min(geo.columns().div_ceil(threads));
            let per_tile = (target / geo.pixels()).max(1);
            for first in (0..geo.batch).step_by(per_tile) {
                let segments = (first..(first + per_tile).min(geo.batch))
                    .enumerate()
                    .map(|(i, image)| ImageRows {
                        image,
                        y0: 0,
                        rows: geo.height,
                        offset: i * (geo.height + 2 * pad),
                    })
                    .collect();
                push(segments);
            }
        }
        let max_rows = tiles.iter().map(|t| t.padded_rows).max().unwrap_or(0);
        Bands {
            pad,
            wp,
            tiles,
            max_plane: max_rows * wp + 2 * pad,
        }
    }

    /// The image width (the padded width less the padding).
    fn width(&self) -> usize {
        self.wp - 2 * self.pad
    }

    /// Output columns of a tile (padded-width coordinates, halo rows included).
    fn columns(&self, tile: &Tile) -> usize {
        (tile.padded_rows - 2 * self.pad) * self.wp
    }

    fn plane(&self, tile: &Tile) -> usize {
        tile.padded_rows * self.wp + 2 * self.pad
    }

    /// Fills `band` (`[channels, plane]`) with `act(channel)` of the sources' rows the
    /// tile reads, zero outside the image.
    fn fill(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [f32],
        act: impl Fn(usize) -> Act,
    ) {
        #[cfg(target_arch = "x86_64")]
        if crate::avx512() {
            // SAFETY: the CPU has AVX512F and AVX512BW (checked just above).
            return unsafe { self.fill_avx512(geo, tile, sources, channels, band, act) };
        }
        self.fill_rows(geo, tile, sources, channels, band, act)
    }

    /// [`Bands::fill`] compiled for AVX-512 as one function, the row loop with the rows'
    /// arithmetic inlined (a call per row cost more than the row on 8- and 16-wide maps).
    ///
    /// # Safety
    ///
    /// The CPU must support AVX512F and AVX512BW.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fill_avx512(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [f32],
        act: impl Fn(usize) -> Act,
    ) {
        self.fill_rows(geo, tile, sources, channels, band, act)
    }

    /// The body of [`Bands::fill`], inlined into each of its two compilations.
    #[inline(always)]
    fn fill_rows(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [f32],
        act: impl Fn(usize) -> Act,
    ) {
        let plane = self.plane(tile);
        self.fill_with(
            geo,
            tile,
            sources,
            channels,
            band,
            plane,
            0.0,
            |c, src, dst| act_row(dst, src, act(c)),
        );
    }

    /// The band of `channels` rows at row stride `stride` (each the tile's plane): `put(channel,
    /// source row, destination row)` writes each image row the tile reads, and everything
    /// outside the image (pad columns, halo rows past the border, the plane's tail) is `zero`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn fill_with<T: Copy>(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        band: &mut [T],
        stride: usize,
        zero: T,
        put: impl Fn(usize, &[f32], &mut [T]),
    ) {
        let mut c = 0;
        for (j, &cj) in channels.iter().enumerate() {
            for cl in 0..cj {
                // The next channel's rows start loading while this one is filled.
                self.prefetch_next(geo, tile, sources, channels, (j, cl));
                self.fill_plane(geo, tile, &mut band[c * stride..], zero, |image, y, dst| {
                    put(
                        c,
                        &sources[j][(image * cj + cl) * geo.pixels() + y * geo.width..]
                            [..geo.width],
                        dst,
                    )
                });
                c += 1;
            }
        }
    }

    /// Asks the CPU to start loading the rows of one source channel that a tile reads
    /// (`plane(image)`: where that image's plane starts in `source`), so that those loads
    /// overlap the work on the channel before. The planes of 32 x 32 maps are one page each,
    /// where the hardware's prefetchers stop, and each channel's rows are only a few lines.
    #[inline(always)]
    fn prefetch(
        &self,
        geo: &Geometry,
        tile: &Tile,
        source: &[f32],
        plane: impl Fn(usize) -> usize,
    ) {
        for seg in &tile.segments {
            let first = seg.y0.saturating_sub(self.pad);
            let end = (seg.y0 + seg.rows + self.pad).min(geo.height);
            prefetch(&source[plane(seg.image) + first * geo.width..][..(end - first) * geo.width]);
        }
    }

    /// [`Bands::prefetch`] of the channel after channel `cl` of source `j` (in concatenation
    /// order; `channels` are the sources' channel counts), where there is one.
    #[inline(always)]
    fn prefetch_next(
        &self,
        geo: &Geometry,
        tile: &Tile,
        sources: &[&[f32]],
        channels: &[usize],
        (j, cl): (usize, usize),
    ) {
        let (nj, ncl) = if cl + 1 < channels[j] {
            (j, cl + 1)
        } else {
            (j + 1, 0)
        };
        if let (Some(&ncj), Some(next)) = (channels.get(nj), sources.get(nj)) {
            self.prefetch(geo, tile, next, |image| (image * ncj + ncl) * geo.pixels());
        }
    }

    /// One plane of a band at the start of `dst`: `put(image, y, destination row)` writes the
    /// `width` values of each image row the tile reads; the rest of the plane is `zero`.
    #[inline(always)]
    fn fill_plane<T: Copy>(
        &self,
        geo: &Geometry,
        tile: &Tile,
        dst: &mut [T],
        zero: T,
        mut put: impl FnMut(usize, usize, &mut [T]),
    ) {
        let (h, w, pad, wp) = (geo.height, geo.width, self.pad, self.wp);
        let dst_plane = &mut dst[..self.plane(tile)];
        dst_plane[tile.padded_rows * wp..].fill(zero);
        for seg in &tile.segments {
            for t in 0..seg.rows + 2 * pad {
                let row = &mut dst_plane[(seg.offset + t) * wp..][..wp];
                let y = (seg.y0 + t) as isize - pad as isize;
                if y < 0 || y >= h as isize {
                    row.fill(zero);
                    continue;
                }
                match pad {
                    // Single stores for the 1x1 and 3x3 kernels: a `memset` call per padding
                    // column cost more than the store.
                    0 => {}
                    1 => {
                        row[0] = zero;
                        row[w + 1] = zero;
                    }
                    _ => {
                        row[..pad].fill(zero);
                        row[pad + w..].fill(zero);
                    }
                }
                put(seg.image, y as usize, &mut row[pad..pad + w]);
            }
        }
    }

    /// The im2col matrix (`channels * taps` rows of `columns` values) of a filled band: each
    /// row is one contiguous copy at the tap's offset.
    fn im2col(&self, tile: &Tile, band: &[f32], channels: usize, kernel: usize, col: &mut [f32]) {
        let (n, plane) = (self.columns(tile), self.plane(tile));
        for c in 0..channels {
            for ky in 0..kernel {
                for kx in 0..kernel {
                    let row = (c * kernel + ky) * kernel + kx;
                    col[row * n..][..n]
                        .copy_from_slice(&band[c * plane + ky * self.wp + kx..][..n]);
                }
            }
        }
    }

    /// Calls `visit(segment, output row within the image, tile column of the row's first pixel)`
    /// for every real output row of a tile.
    fn rows(&self, tile: &Tile, mut visit: impl FnMut(&ImageRows, usize, usize)) {
        for seg in &tile.segments {
            for i in 0..seg.rows {
                visit(seg, seg.y0 + i, (seg.offset + i) * self.wp);
            }
        }
    }
}

/// A strided matrix view: the slice it starts at, its row stride and its column stride.
type View<'a, T> = (T, usize, usize);

/// The one past the last element a `rows x cols` matrix with strides `(rs, cs)` addresses
/// (0 when it is empty).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, each matrix given as a slice it starts at
/// with its (row stride, column stride), on the calling thread.
///
/// Panics if a matrix reaches past the end of its slice.
///
/// # Safety
///
/// Safe to call. Inside, `gemm::gemm` is called on raw pointers; its contract is that each of
/// the three pointers addresses a valid strided matrix of the given shape for the duration of
/// the call and that `dst` does not overlap `lhs` or `rhs`. The asserts check that every
/// addressed element lies inside its slice, and `dst` is a `&mut` borrow, which cannot alias
/// the shared borrows `lhs` and `rhs`.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: View<&mut [f32]>,
    accumulate: bool,
    lhs: View<&[f32]>,
    rhs: View<&[f32]>,
) {
    assert!(
        extent(m, n, dst.1, dst.2) <= dst.0.len(),
        "matmul: dst out of bounds"
    );
    assert!(
        extent(m, k, lhs.1, lhs.2) <= lhs.0.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        extent(k, n, rhs.1, rhs.2) <= rhs.0.len(),
        "matmul: rhs out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every addressed element inside its slice, and the borrows
    // keep `dst` apart from `lhs` and `rhs` (see the doc comment).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.0.as_mut_ptr(),
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0.as_ptr(),
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// An output buffer that parallel tiles write into, each tile its own rows: a `&mut [T]`
/// split at run time instead of at compile time.
struct DisjointRows<'a, T = f32> {
    ptr: *mut T,
    len: usize,
    _buffer: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: `DisjointRows` is a `&mut [T]` that threads share; the only access is through
// `DisjointRows::row`, whose contract makes concurrent accesses disjoint.
unsafe impl<T: Send> Send for DisjointRows<'_, T> {}
unsafe impl<T: Send> Sync for DisjointRows<'_, T> {}

impl<'a, T> DisjointRows<'a, T> {
    fn new(buffer: &'a mut [T]) -> Self {
        DisjointRows {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: std::marker::PhantomData,
        }
    }

    /// The elements `start..start + len` of the buffer, for writing.
    ///
    /// Panics if the range reaches past the end of the buffer.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no other call may hand out a range overlapping it (from
    /// any thread). The kernels uphold this by giving every output row (image, channel, y) to
    /// exactly one tile and dropping each slice before the next is taken.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "row out of bounds");
        // SAFETY: in bounds (checked), the buffer is mutably borrowed for 'a, and the caller
        // guarantees that no overlapping slice is alive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// The input gradients' buffers, not yet written: the ReLU backward writes every element
/// (each input row belongs to exactly one tile, and the tiles cover every row), so zeroing
/// them first would only cost a pass over the largest buffers of the step.
fn unwritten_input_gradients(geo: &Geometry) -> Vec<Vec<MaybeUninit<f32>>> {
    geo.channels
        .iter()
        .map(|&c| unwritten(geo.batch * c * geo.pixels()))
        .collect()
}

/// A buffer of `len` values, allocated and not written.
fn unwritten(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation, and the capacity is `len`.
    unsafe { v.set_len(len) };
    v
}

/// The input gradients once every element is written.
///
/// # Safety
///
/// Every element of every buffer must have been written.
unsafe fn written(buffers: Vec<Vec<MaybeUninit<f32>>>) -> Vec<Vec<f32>> {
    buffers
        .into_iter()
        // SAFETY: the caller guarantees every element is written.
        .map(|v| unsafe { assume_written(v) })
        .collect()
}

/// A buffer once every element is written.
///
/// # Safety
///
/// Every element must have been written.
unsafe fn assume_written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: MaybeUninit<f32> has f32's layout, the allocation is handed over whole
    // (pointer, length, capacity), and the caller guarantees every element is written.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// `dst = src`, writing an output row (one `memcpy`).
fn write_row(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    dst.write_copy_of_slice(src);
}

/// Splits the tiles into one contiguous share per thread and runs `each` on every tile of a
/// share with that share's state, returning each share's state.
fn for_tiles<S: Send>(
    bands: &Bands,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut S, &Tile) + Sync,
) -> Vec<S> {
    for_tiles_with(bands, || (), init, |_, state, tile| each(state, tile))
}

/// [`for_tiles`] with a second, thread-bound state per share (`local`, made and dropped on the
/// thread that runs the share: AMX tiles), which is not returned.
fn for_tiles_with<L, S: Send>(
    bands: &Bands,
    local: impl Fn() -> L + Sync,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut L, &mut S, &Tile) + Sync,
) -> Vec<S> {
    let tiles = bands.tiles.len();
    let shares = rayon::current_num_threads().clamp(1, tiles.max(1));
    (0..shares)
        .into_par_iter()
        .map(|s| {
            let mut thread_state = local();
            let mut state = init();
            for tile in &bands.tiles[(s * tiles / shares)..((s + 1) * tiles / shares)] {
                each(&mut thread_state, &mut state, tile);
            }
            state
        })
        .collect()
}

/// `out[b, g] = sum over c, ky, kx of weight[g, c, ky, kx] * relu(affine(x))[b, c, shifted]`.
/// `weight` is `[out_channels, in_channels, kernel, kernel]`; `out` is `[batch, out_channels, H, W]`.
///
/// Panics if a slice's length does not match `geo`.
///
/// # Safety
///
/// Safe to call. Tiles run in parallel and write their output rows through
/// `DisjointRows::row`: every output row (image, channel, y) belongs to exactly one tile,
/// so no two threads ever hold overlapping rows.
pub fn forward(
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [f32],
) {
    forward_with(precision(), geo, inputs, affine, weight, out)
}

/// [`forward`] in the given precision.
pub fn forward_with(
    precision: Precision,
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [f32],
) {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the forward only writes initialised
    // values through this view, so `out` stays initialised.
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    forward_unwritten(precision, geo, inputs, affine, weight, out)
}

/// [`forward`] into a new buffer, in the process's precision, with no pass to zero it first:
/// every element is written once.
pub fn forward_new(geo: &Geometry, inputs: &[&[f32]], affine: &Affine, weight: &[f32]) -> Vec<f32> {
    let mut out = unwritten(geo.batch * geo.out_channels * geo.pixels());
    forward_unwritten(precision(), geo, inputs, affine, weight, &mut out);
    // SAFETY: the forward wrote every element of the output.
    unsafe { assume_written(out) }
}

/// [`forward_with`] into a buffer that may be unwritten: every element of `out` is written.
fn forward_unwritten(
    precision: Precision,
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [MaybeUninit<f32>],
) {
    let (g, patch, hw, w) = (geo.out_channels, geo.patch(), geo.pixels(), geo.width);
    let (channels, kernel) = (geo.in_channels(), geo.kernel);
    assert_eq!(weight.len(), g * patch, "weight shape");
    assert_eq!(out.len(), geo.batch * g * hw, "output shape");
    check_inputs(geo, inputs);
    assert_eq!(affine.scale.len(), channels, "affine shape");
    if precision == Precision::Bf16 {
        return with_tiles!(mixed::forward, geo, inputs, affine, weight, out);
    }
    let bands = Bands::new(geo);
    let ldr = direct::padded(bands.max_plane);
    let winograd = winograd::applies(&bands)
        .then(|| winograd::pack(g, channels, direct::forward_taps(geo, weight)));
    let direct =
        (direct::chosen() && winograd.is_none()).then(|| direct::pack_forward(geo, weight));
    let shifts = tap_shifts(kernel, bands.wp);
    let out = DisjointRows::new(out);
    let act = |c| Act::layer(affine, c);
    for_tiles(
        &bands,
        || {
            (
                vec![0f32; channels * bands.max_plane + BAND_SLACK],
                vec![0f32; g * ldr],
                winograd::Scratch::default(),
            )
        },
        |(band, result, scratch), tile| {
            let (n, plane) = (bands.columns(tile), bands.plane(tile));
            bands.fill(geo, tile, inputs, &geo.channels, band, act);
            match (&winograd, &direct) {
                (Some(packed), _) => winograd::conv(
                    g,
                    channels,
                    packed,
                    (&bands, tile),
                    band,
                    plane,
                    scratch,
                    result,
                    ldr,
                ),
                (None, Some(packed)) => {
                    direct::conv_taps(g, n, channels, packed, band, plane, &shifts, result, ldr)
                }
                // One GEMM per tap, reading the band at the tap's offset: out += W_tap * band_tap.
                (None, None) => {
                    for (tap, &shift) in shifts.iter().enumerate() {
                        matmul(
                            g,
                            n,
                            channels,
                            (&mut result[..], ldr, 1),
                            tap > 0,
                            (&weight[tap..], patch, kernel * kernel),
                            (&band[shift..], plane, 1),
                        );
                    }
                }
            }
            bands.rows(tile, |seg, y, at| {
                for f in 0..g {
                    // SAFETY: row y of image seg.image is computed by this tile only, and the
                    // slice is dropped at the end of the iteration.
                    let dst = unsafe { out.row((seg.image * g + f) * hw + y * w, w) };
                    write_row(dst, &result[f * ldr + at..][..w]);
                }
            });
        },
    );
}

/// The offsets of a `kernel x kernel` filter's taps in a band of padded width `wp`.
fn tap_shifts(kernel: usize, wp: usize) -> Vec<usize> {
    (0..kernel * kernel)
        .map(|t| (t / kernel) * wp + t % kernel)
        .collect()
}

/// Values past a band's last plane that the direct kernels read (their last vector of a row
/// reaches up to 15 columns past it), allocated so that every read stays in the buffer.
const BAND_SLACK: usize = 16;

/// Asks the CPU to start loading `values` into its caches, a hint that never faults: for
/// reads that jump between channel planes, where the hardware's prefetchers stop (at page
/// ends: a 32 x 32 plane is one page).
#[inline(always)]
fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..values.len()).step_by(16) {
        // SAFETY: a prefetch only hints the cache and never faults; the address is in `values`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                values.as_ptr().add(at).cast(),
            )
        };
    }
}

/// Lanes of the ReLU backward's partial sums: 8, so that the rows of 8-pixel-wide maps
/// vectorise too.
const RELU_LANES: usize = 8;

/// Partial sums of the gradient and of the gradient times the normalised input, in lanes.
type ReluSums = [[f32; RELU_LANES]; 2];

/// Through the ReLU for every channel of a tile, in either precision: `dst = dy` where the
/// activation (the band) is positive, else 0, parked in the
/// input gradients; adds each channel's sums of that gradient and of it times the normalised
/// input to `sum_dy` and `sum_dy_xhat` (the batch-norm backward needs them). Channel `c`'s
/// band plane starts at `c * band_stride`, its `dy` row at `c * dy_stride`.
#[allow(clippy::too_many_arguments)]
fn relu_tile<A: Activation>(
    bands: &Bands,
    geo: &Geometry,
    tile: &Tile,
    inputs: &[&[f32]],
    grad_rows: &[DisjointRows<MaybeUninit<f32>>],
    affine: &Affine,
    band: (&[A], usize),
    dy: (&[f32], usize),
    sum_dy: &mut [f64],
    sum_dy_xhat: &mut [f64],
) {
    let args = (bands, geo, tile, inputs, grad_rows, affine, band, dy);
    #[cfg(target_arch = "x86_64")]
    if crate::avx512() {
        // SAFETY: the CPU has AVX512F and AVX512BW (checked just above).
        return unsafe { relu_tile_avx512(args, sum_dy, sum_dy_xhat) };
    }
    relu_tile_rows(
        args,
        sum_dy,
        sum_dy_xhat,
        |dst, x, a, dy, mean, inv_std, sums: &mut ReluSums| {
            relu_row_plain(dst, x, a, |v| v.positive(), dy, mean, inv_std, sums)
        },
        |sums| [sums[0].iter().sum(), sums[1].iter().sum()],
    )
}

/// The operands of [`relu_tile`] but its sums.
type ReluArgs<'a, A> = (
    &'a Bands,
    &'a Geometry,
    &'a Tile,
    &'a [&'a [f32]],
    &'a [DisjointRows<'a, MaybeUninit<f32>>],
    &'a Affine,
    (&'a [A], usize),
    (&'a [f32], usize),
);

/// [`relu_tile`] compiled for AVX-512 as one function, the rows' arithmetic inlined and each
/// channel's sums kept in vectors across its rows (a call and two horizontal sums per row cost
/// as much as a 32-wide row).
///
/// # Safety
///
/// The CPU must support AVX512F and AVX512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn relu_tile_avx512<A: Activation>(
    args: ReluArgs<'_, A>,
    sum_dy: &mut [f64],
    sum_dy_xhat: &mut [f64],
) {
    use std::arch::x86_64::*;
    relu_tile_rows(
        args,
        sum_dy,
        sum_dy_xhat,
        // SAFETY: this function runs only where the CPU has AVX512F and AVX512BW.
        |dst, x, a, dy, mean, inv_std, sums: &mut [__m512; 2]| unsafe {
            relu_row_avx512(dst, x, a, dy, mean, inv_std, sums)
        },
        |sums| [_mm512_reduce_add_ps(sums[0]), _mm512_reduce_add_ps(sums[1])],
    )
}

/// The body of [`relu_tile`], inlined into each of its two compilations: `row` passes one
/// row through the ReLU and adds to a channel's sums (`S`, zero at the channel's start),
/// `total` adds those up.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn relu_tile_rows<A: Activation, S: ZeroSums>(
    (bands, geo, tile, inputs, grad_rows, affine, (band, band_stride), (dy, dy_stride)): ReluArgs<
        '_,
        A,
    >,
    sum_dy: &mut [f64],
    sum_dy_xhat: &mut [f64],
    row: impl Fn(&mut [MaybeUninit<f32>], &[f32], &[A], &[f32], f32, f32, &mut S),
    total: impl Fn(&S) -> [f32; 2],
) {
    let (hw, w, centre) = (geo.pixels(), geo.width, bands.pad * bands.wp + bands.pad);
    let mut c = 0;
    for (j, &cj) in geo.channels.iter().enumerate() {
        for cl in 0..cj {
            // The next channel's inputs start loading while this one is worked on.
            bands.prefetch_next(geo, tile, inputs, &geo.channels, (j, cl));
            let mut sums = S::zero();
            let (mean, inv_std) = (affine.mean[c], affine.inv_std[c]);
            bands.rows(tile, |seg, y, at| {
                let index = (seg.image * cj + cl) * hw + y * w;
                let x = &inputs[j][index..][..w];
                let activated = &band[c * band_stride + at + centre..][..w];
                // SAFETY: row y of image seg.image is computed by this tile only, and the slice
                // is dropped at the end of the iteration.
                let dst = unsafe { grad_rows[j].row(index, w) };
                let dy = &dy[c * dy_stride + at..][..w];
                row(dst, x, activated, dy, mean, inv_std, &mut sums);
            });
            let [d, dx] = total(&sums);
            sum_dy[c] += d as f64;
            sum_dy_xhat[c] += dx as f64;
            c += 1;
        }
    }
}

/// A channel's partial sums in [`relu_tile_rows`], starting from zero.
trait ZeroSums {
    fn zero() -> Self;
}

impl ZeroSums for ReluSums {
    fn zero() -> Self {
        [[0.0; RELU_LANES]; 2]
    }
}

#[cfg(target_arch = "x86_64")]
impl ZeroSums for [std::arch::x86_64::__m512; 2] {
    fn zero() -> Self {
        // SAFETY: a zero vector needs no CPU feature beyond the baseline's (it is `vxorps`,
        // and the type is only ever used where the CPU has AVX-512).
        unsafe { std::mem::zeroed() }
    }
}

/// A band value whose sign the ReLU backward reads: f32 (the f32 path's band) or bf16 bits
/// (the mixed-precision band).
trait Activation: Copy {
    fn positive(self) -> bool;
    /// The lanes of the 16 values at `ptr` that are positive, of those in `lanes`.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX512F and AVX512BW; the values of `lanes` must be readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn positive16(ptr: *const Self, lanes: u16) -> u16;
}

impl Activation for f32 {
    fn positive(self) -> bool {
        self > 0.0
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn positive16(ptr: *const f32, lanes: u16) -> u16 {
        use std::arch::x86_64::*;
        let v = _mm512_maskz_loadu_ps(lanes, ptr);
        _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(lanes, v, _mm512_setzero_ps())
    }
}

impl Activation for u16 {
    fn positive(self) -> bool {
        crate::bf16::bf16_to_f32(self) > 0.0
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn positive16(ptr: *const u16, lanes: u16) -> u16 {
        use std::arch::x86_64::*;
        let words = _mm256_maskz_loadu_epi16(lanes, ptr.cast());
        let v = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(words)));
        _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(lanes, v, _mm512_setzero_ps())
    }
}

/// One row through the ReLU (see [`relu_tile`]) with AVX-512, 16 lanes a step, the row's tail
/// under a lane mask; its sums added to `sums`.
///
/// # Safety
///
/// The CPU must support AVX512F and AVX512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn relu_row_avx512<A: Activation>(
    dst: &mut [MaybeUninit<f32>],
    x: &[f32],
    activated: &[A],
    dy: &[f32],
    mean: f32,
    inv_std: f32,
    sums: &mut [std::arch::x86_64::__m512; 2],
) {
    use std::arch::x86_64::*;
    let n = dst.len().min(x.len()).min(activated.len()).min(dy.len());
    let (mean, inv_std) = (_mm512_set1_ps(mean), _mm512_set1_ps(inv_std));
    let [mut sd, mut sdx] = *sums;
    for i in (0..n).step_by(16) {
        // Every lane below n - i (all 16 but in the tail); loads and stores stay inside it.
        let lanes = if n - i >= 16 {
            u16::MAX
        } else {
            (1u16 << (n - i)) - 1
        };
        let positive = A::positive16(activated.as_ptr().add(i), lanes);
        let g = _mm512_maskz_loadu_ps(positive, dy.as_ptr().add(i));
        _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i).cast(), lanes, g);
        let xhat = _mm512_mul_ps(
            _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, x.as_ptr().add(i)), mean),
            inv_std,
        );
        sd = _mm512_add_ps(sd, g);
        sdx = _mm512_fmadd_ps(g, xhat, sdx);
    }
    *sums = [sd, sdx];
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn relu_row_plain<A: Copy>(
    dst: &mut [MaybeUninit<f32>],
    x: &[f32],
    activated: &[A],
    positive: impl Fn(A) -> bool,
    dy: &[f32],
    mean: f32,
    inv_std: f32,
    sums: &mut ReluSums,
) {
    // One pass (writing the row and reading it back would stall on store forwarding), with
    // the sums in lanes so that it vectorises.
    let n = dst.len().min(x.len()).min(activated.len()).min(dy.len());
    let (dst, x, activated, dy) = (&mut dst[..n], &x[..n], &activated[..n], &dy[..n]);
    // Local copies of the sums (through the reference the loop would not vectorise).
    let [mut sd, mut sdx] = *sums;
    let whole = n / RELU_LANES * RELU_LANES;
    let chunks = dst[..whole]
        .chunks_exact_mut(RELU_LANES)
        .zip(x.chunks_exact(RELU_LANES))
        .zip(
            activated
                .chunks_exact(RELU_LANES)
                .zip(dy.chunks_exact(RELU_LANES)),
        );
    for ((d, x), (a, dy)) in chunks {
        for l in 0..RELU_LANES {
            let g = if positive(a[l]) { dy[l] } else { 0.0 };
            d[l].write(g);
            sd[l] += g;
            sdx[l] += g * (x[l] - mean) * inv_std;
        }
    }
    for i in whole..n {
        let g = if positive(activated[i]) { dy[i] } else { 0.0 };
        dst[i].write(g);
        sd[0] += g;
        sdx[0] += g * (x[i] - mean) * inv_std;
    }
    *sums = [sd, sdx];
}

avx512_copy! {
    /// The sum and the sum of squares of a plane.
    fn plane_sums / plane_sums_avx512 = plane_sums_plain(plane: &[f32]) -> (f32, f32)
}

#[inline(always)]
fn plane_sums_plain(plane: &[f32]) -> (f32, f32) {
    lane_sums(plane, |v| [v, v * v])
}

/// `dst[i] = act(src[i])`.
#[inline(always)]
fn act_row(dst: &mut [f32], src: &[f32], act: Act) {
    if act.relu {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = (act.k * v + act.b).max(0.0);
        }
    } else {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = act.k * v + act.b;
        }
    }
}

avx512_copy! {
    /// One plane through the batch norm's backward: `dst` holds the gradient at its output and
    /// becomes the gradient at its input (`centred`: with the batch statistics' dependence).
    fn bn_plane / bn_plane_avx512 = bn_plane_plain(
        dst: &mut [f32],
        x: &[f32],
        k: f32,
        centred: Option<[f32; 4]>,
    )
}

/// `centred` is `[mean of dy, mean of dy * xhat, mean, 1 / std]`.
#[inline(always)]
fn bn_plane_plain(dst: &mut [f32], x: &[f32], k: f32, centred: Option<[f32; 4]>) {
    match centred {
        Some([mean_dy, mean_dy_xhat, mean, inv_std]) => {
            for (d, &v) in dst.iter_mut().zip(x) {
                *d = k * (*d - mean_dy - (v - mean) * inv_std * mean_dy_xhat);
            }
        }
        None => dst.iter_mut().for_each(|d| *d *= k),
    }
}

/// `y = k * x + b`, rectified or not: a band row's values (BN-ReLU for a layer's inputs, the
/// identity for an output gradient).
#[derive(Clone, Copy)]
pub(crate) struct Act {
    pub k: f32,
    pub b: f32,
    pub relu: bool,
}

impl Act {
    pub(crate) fn layer(affine: &Affine, c: usize) -> Self {
        Act {
            k: affine.scale[c],
            b: affine.shift[c],
            relu: true,
        }
    }

    pub(crate) const IDENTITY: Act = Act {
        k: 1.0,
        b: 0.0,
        relu: false,
    };

    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        let y = self.k * x + self.b;
        if self.relu {
            y.max(0.0)
        } else {
            y
        }
    }
}

/// Lanes of partial sums, so that a sum over a row vectorises (a single f32 accumulator
/// would fix the order of the additions and keep the loop scalar).
const LANES: usize = 16;

/// The sums over `values` of the two quantities `f(value)` gives.
#[inline(always)]
fn lane_sums(values: &[f32], f: impl Fn(f32) -> [f32; 2]) -> (f32, f32) {
    let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            let [p, q] = f(chunk[l]);
            a[l] += p;
            b[l] += q;
        }
    }
    for &v in rest {
        let [p, q] = f(v);
        a[0] += p;
        b[0] += q;
    }
    (a.iter().sum(), b.iter().sum())
}

/// Through the batch norm, plane by plane: `grad_inputs` holds the gradient at the BN output
/// and becomes the gradient at its input (with the batch statistics' dependence on the input
/// when `batch_stats`), from the per-channel sums of [`relu_tile`].
#[allow(clippy::too_many_arguments)]
fn bn_backward(
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    grad_inputs: &mut [Vec<f32>],
    sum_dy: &[f64],
    sum_dy_xhat: &[f64],
) {
    let hw = geo.pixels();
    let count = geo.columns() as f32;
    let mut offset = 0;
    for (j, grad) in grad_inputs.iter_mut().enumerate() {
        let cj = geo.channels[j];
        let first = offset;
        grad.par_chunks_mut(hw)
            .enumerate()
            .with_min_len((4096 / hw).max(1))
            .for_each(|(plane, dst)| {
                let c = first + plane % cj;
                let x = &inputs[j][plane * hw..][..hw];
                if let Some(next) = inputs[j].get((plane + 1) * hw..(plane + 2) * hw) {
                    prefetch(next);
                }
                let k = gamma[c] * affine.inv_std[c];
                let centred = batch_stats.then(|| {
                    [
                        sum_dy[c] as f32 / count,
                        sum_dy_xhat[c] as f32 / count,
                        affine.mean[c],
                        affine.inv_std[c],
                    ]
                });
                bn_plane(dst, x, k, centred);
            });
        offset += cj;
    }
}

/// Gradients of [`forward`] with respect to each input, gamma, beta and the weight.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// `inputs[j]`: the gradient of input `j`, shaped like it.
    pub inputs: Vec<Vec<f32>>,
    /// Gradient of the batch norm's scale, one per input channel.
    pub gamma: Vec<f32>,
    /// Gradient of the batch norm's shift, one per input channel.
    pub beta: Vec<f32>,
    /// Gradient of the weight, `[out_channels, in_channels, kernel, kernel]`.
    pub weight: Vec<f32>,
}

/// The backward pass of [`forward`]. With `batch_stats` the affine came from this batch's
/// statistics, so the input gradient includes their dependence on the input (training-mode BN);
/// otherwise the statistics are constants (running averages). `affine` is the one [`forward`]
/// ran with (built from `gamma`), `out_grad` the gradient of the loss with respect to its output.
///
/// Panics if a slice's length does not match `geo`.
///
/// # Safety
///
/// Safe to call. Tiles run in parallel and write their rows of the input gradients through
/// `DisjointRows::row`: every input row (image, channel, y) belongs to exactly one tile, so
/// no two threads ever hold overlapping rows.
pub fn backward(
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    weight: &[f32],
    out_grad: &[f32],
) -> Gradients {
    backward_with(
        precision(),
        geo,
        inputs,
        gamma,
        affine,
        batch_stats,
        weight,
        out_grad,
    )
}

/// [`backward`] in the given precision.
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    precision: Precision,
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    weight: &[f32],
    out_grad: &[f32],
) -> Gradients {
    let (g, patch, hw, taps) = (geo.out_channels, geo.patch(), geo.pixels(), geo.taps());
    let (channels, kernel) = (geo.in_channels(), geo.kernel);
    check_inputs(geo, inputs);
    assert_eq!(gamma.len(), channels, "gamma shape");
    assert_eq!(affine.scale.len(), channels, "affine shape");
    assert_eq!(weight.len(), g * patch, "weight shape");
    assert_eq!(out_grad.len(), geo.batch * g * hw, "output gradient shape");
    if precision == Precision::Bf16 {
        return with_tiles!(
            mixed::backward,
            geo,
            inputs,
            gamma,
            affine,
            batch_stats,
            weight,
            out_grad
        );
    }
    // W' [c, (g, ky, kx)] = W[g, c, k-1-ky, k-1-kx]: the weights seen from the output
    // gradient, whose band reads dOut at +ky where the convolution read its input at -ky.
    // The direct kernels take them packed per tap instead.
    let direct = direct::chosen().then(|| direct::pack_backward(geo, weight));
    let weight_t = match direct {
        Some(_) => Vec::new(),
        None => {
            let flipped = direct::backward_taps(geo, weight);
            let mut weight_t = vec![0f32; channels * g * taps];
            for f in 0..g {
                for c in 0..channels {
                    for t in 0..taps {
                        weight_t[c * g * taps + f * taps + t] = flipped(c, f, t);
                    }
                }
            }
            weight_t
        }
    };
    let mut unwritten = unwritten_input_gradients(geo);
    let grad_rows: Vec<_> = unwritten.iter_mut().map(|v| DisjointRows::new(v)).collect();
    let bands = Bands::new(geo);
    let (pad, wp) = (bands.pad, bands.wp);
    let ldr = direct::padded(bands.max_plane);
    let shifts = tap_shifts(kernel, wp);
    // The input gradient as a 3x3 convolution of the output gradient, in Winograd products
    // where they apply.
    let winograd = winograd::applies(&bands)
        .then(|| winograd::pack(channels, g, direct::backward_taps(geo, weight)));
    let act = |c| Act::layer(affine, c);
    // The direct kernels' weight gradient: 16 output channels per vector, [taps][channels][gp].
    let gp = g.div_ceil(16) * 16;

    struct Share {
        band: Vec<f32>,
        out_band: Vec<f32>,
        out_col: Vec<f32>,
        dout_t: Vec<f32>,
        dy: Vec<f32>,
        weight: Vec<f32>,
        sum_dy: Vec<f64>,
        sum_dy_xhat: Vec<f64>,
        winograd: winograd::Scratch,
    }
    let shares = for_tiles(
        &bands,
        || Share {
            band: match direct {
                Some(_) => vec![0f32; direct::weight_rows(channels) * bands.max_plane + BAND_SLACK],
                None => vec![0f32; channels * bands.max_plane],
            },
            out_band: vec![0f32; g * bands.max_plane + BAND_SLACK],
            out_col: match direct {
                Some(_) => Vec::new(),
                None => vec![0f32; g * taps * bands.max_plane],
            },
            dout_t: match direct {
                Some(_) => vec![0f32; bands.max_plane * gp],
                None => Vec::new(),
            },
            dy: vec![0f32; channels * ldr],
            weight: match direct {
                Some(_) => vec![0f32; taps * channels * gp],
                None => vec![0f32; g * patch],
            },
            sum_dy: vec![0f64; channels],
            sum_dy_xhat: vec![0f64; channels],
            winograd: winograd::Scratch::default(),
        },
        |s, tile| {
            let (n, plane) = (bands.columns(tile), bands.plane(tile));
            bands.fill(geo, tile, inputs, &geo.channels, &mut s.band, act);
            bands.fill(geo, tile, &[out_grad], &[g], &mut s.out_band, |_| {
                Act::IDENTITY
            });
            match (&winograd, &direct) {
                (Some(packed), _) => winograd::conv(
                    channels,
                    g,
                    packed,
                    (&bands, tile),
                    &s.out_band,
                    plane,
                    &mut s.winograd,
                    &mut s.dy,
                    ldr,
                ),
                // dY (channels x n) = sum over taps of W'_t (channels x g) * dOut[shift_t].
                (None, Some(packed)) => direct::conv_taps(
                    channels,
                    n,
                    g,
                    packed,
                    &s.out_band,
                    plane,
                    &shifts,
                    &mut s.dy,
                    ldr,
                ),
                // dY (channels x n) = W' (channels x g*taps) * im2col(dOut) (g*taps x n).
                (None, None) => {
                    bands.im2col(tile, &s.out_band, g, kernel, &mut s.out_col);
                    matmul(
                        channels,
                        n,
                        g * taps,
                        (&mut s.dy[..], ldr, 1),
                        false,
                        (&weight_t[..], g * taps, 1),
                        (&s.out_col[..], n, 1),
                    );
                }
            }
            // dW (g x patch) += dOut (g x n) * col^T (n x patch), with dOut read from its band
            // at the centre tap once the halo rows (other rows' values) are zeroed.
            for seg in &tile.segments {
                for f in 0..g {
                    let p = &mut s.out_band[f * plane..][..plane];
                    p[seg.offset * wp..][..pad * wp].fill(0.0);
                    p[(seg.offset + pad + seg.rows) * wp..][..pad * wp].fill(0.0);
                }
            }
            let centre = pad * wp + pad;
            match &direct {
                // dW_tap ([channels][gp]) += band_tap (channels x n) * dOut^T (n x gp), with
                // dOut transposed (its padding columns stay zero).
                Some(_) => {
                    // Row by row of the result, so that each row of gp values is written whole.
                    let rows: Vec<&[f32]> = (0..g)
                        .map(|f| &s.out_band[f * plane + centre..][..n])
                        .collect();
                    for (p, dst) in s.dout_t.chunks_exact_mut(gp).take(n).enumerate() {
                        for (d, row) in dst.iter_mut().zip(&rows) {
                            *d = row[p];
                        }
                    }
                    direct::weight_taps(
                        channels,
                        gp,
                        n,
                        kernel,
                        wp,
                        &s.band,
                        plane,
                        &s.dout_t,
                        &mut s.weight,
                    );
                }
                // dW_tap (g x channels) += dOut (g x n) * band_tap^T (n x channels).
                None => {
                    for (tap, &shift) in shifts.iter().enumerate() {
                        matmul(
                            g,
                            channels,
                            n,
                            (&mut s.weight[tap..], patch, taps),
                            true,
                            (&s.out_band[centre..], plane, 1),
                            (&s.band[shift..], 1, plane),
                        );
                    }
                }
            }
            // Through the ReLU (its output is in the band); gather the BN sums; park the
            // pre-ReLU gradient in the input gradients.
            relu_tile(
                &bands,
                geo,
                tile,
                inputs,
                &grad_rows,
                affine,
                (&s.band, plane),
                (&s.dy, ldr),
                &mut s.sum_dy,
                &mut s.sum_dy_xhat,
            );
        },
    );
    drop(grad_rows);
    let mut grad_weight = vec![0f32; g * patch];
    for s in &shares {
        match direct {
            Some(_) => add_tap_major(&mut grad_weight, &s.weight, geo, channels, gp),
            None => grad_weight
                .iter_mut()
                .zip(&s.weight)
                .for_each(|(a, b)| *a += b),
        }
    }
    let sums = shares.iter().map(|s| (&s.sum_dy[..], &s.sum_dy_xhat[..]));
    let args = (geo, inputs, gamma, affine, batch_stats);
    // SAFETY: the ReLU backward ran on every tile, so it wrote every input gradient element.
    unsafe { finish_backward(args, unwritten, grad_weight, sums) }
}

/// Adds a share's weight gradient kept tap-major, `[taps][rows][gp]` (rows >= the input
/// channels, gp >= the filters, the rest padding), to `grad_weight` (`[filters][channels][taps]`,
/// the weight's layout).
fn add_tap_major(grad_weight: &mut [f32], share: &[f32], geo: &Geometry, rows: usize, gp: usize) {
    let (g, channels, taps) = (geo.out_channels, geo.in_channels(), geo.taps());
    for t in 0..taps {
        for c in 0..channels {
            for f in 0..g {
                grad_weight[(f * channels + c) * taps + t] += share[(t * rows + c) * gp + f];
            }
        }
    }
}

/// The end of a backward pass in either precision: the shares' batch-norm sums added up, the
/// input gradients (which the ReLU backward wrote) through the batch norm, and the gradients
/// returned with `grad_weight` (already summed over the shares).
///
/// # Safety
///
/// Every element of `unwritten` must have been written (by [`relu_tile`] on every tile).
unsafe fn finish_backward<'s>(
    (geo, inputs, gamma, affine, batch_stats): (&Geometry, &[&[f32]], &[f32], &Affine, bool),
    unwritten: Vec<Vec<MaybeUninit<f32>>>,
    grad_weight: Vec<f32>,
    shares: impl Iterator<Item = (&'s [f64], &'s [f64])>,
) -> Gradients {
    // SAFETY: the caller guarantees every element was written.
    let mut grad_inputs = unsafe { written(unwritten) };
    let channels = geo.in_channels();
    let (mut sum_dy, mut sum_dy_xhat) = (vec![0f64; channels], vec![0f64; channels]);
    for (dy, dy_xhat) in shares {
        sum_dy.iter_mut().zip(dy).for_each(|(a, b)| *a += b);
        sum_dy_xhat
            .iter_mut()
            .zip(dy_xhat)
            .for_each(|(a, b)| *a += b);
    }
    bn_backward(
        geo,
        inputs,
        gamma,
        affine,
        batch_stats,
        &mut grad_inputs,
        &sum_dy,
        &sum_dy_xhat,
    );
    Gradients {
        inputs: grad_inputs,
        gamma: sum_dy_xhat.iter().map(|&v| v as f32).collect(),
        beta: sum_dy.iter().map(|&v| v as f32).collect(),
        weight: grad_weight,
    }
}
