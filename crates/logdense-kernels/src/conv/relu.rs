//! The ReLU backward of a tile: the output gradient through the ReLU mask (read from the band,
//! in either precision) into the input gradients, with the sums the batch-norm backward needs.

use std::mem::MaybeUninit;

use super::*;

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
pub(super) fn relu_tile<A: Activation>(
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
pub(super) trait Activation: Copy {
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
