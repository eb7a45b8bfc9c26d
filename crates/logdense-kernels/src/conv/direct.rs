//! The f32 products of the fused layer as a direct convolution over the band, with AVX-512:
//! `out = sum over taps t of A_t * band[shift_t]`, every tap read in place at its offset.
//!
//! A register block is [`MR`] output rows by up to [`NR`] vectors of 16 positions; it stays in
//! registers for the whole sum over taps and channels, so the block is written once, the band
//! is never copied or packed (unlike a per-tap GEMM, which packs the band nine times and
//! reads and writes its output nine times), and only the weights are packed, once per call.

use super::Geometry;

/// Output rows per register block.
pub(super) const MR: usize = 4;
/// The most 16-position vectors per register block (`MR * NR` accumulators of the 32 registers).
#[cfg(target_arch = "x86_64")]
const NR: usize = 6;
/// Positions per vector.
const LANES: usize = 16;

/// Whether this CPU runs the direct kernels.
fn cpu_runs() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a call of the fused layer with these f32 kernels uses the direct ones (else
/// `gemm`'s): where the CPU runs them, unless `gemm`'s were asked for (to compare the paths).
pub(super) fn chosen(f32: super::F32Kernels) -> bool {
    cpu_runs() && f32 != super::F32Kernels::Gemm
}

/// `x` rounded up to a multiple of `m`.
fn up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// The columns the blocks of an `n`-column product compute (and read past `n`): `n` rounded up
/// to whole vectors.
pub(super) fn padded(n: usize) -> usize {
    up(n, LANES)
}

/// The length of [`pack`]'s result: whole register blocks of rows.
pub(super) fn packed_len(rows: usize, k: usize, taps: usize) -> usize {
    rows.div_ceil(MR) * taps * k * MR
}

/// Per-tap operands as the kernel's `A`: `[row blocks][taps][k][MR]`, `value(row, k, tap)`,
/// rows past `rows` zero.
pub(super) fn pack(
    rows: usize,
    k: usize,
    taps: usize,
    value: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let mut packed = vec![0f32; packed_len(rows, k, taps)];
    for r in 0..rows {
        let (block, lane) = (r / MR, r % MR);
        for t in 0..taps {
            for c in 0..k {
                packed[((block * taps + t) * k + c) * MR + lane] = value(r, c, t);
            }
        }
    }
    packed
}

/// The forward filters: `(f, c, t) -> W[f, c, t]`, filter `f`'s tap `t` on channel `c`.
pub(super) fn forward_taps<'w>(
    geo: &Geometry,
    weight: &'w [f32],
) -> impl Fn(usize, usize, usize) -> f32 + 'w {
    let (channels, taps) = (geo.in_channels(), geo.taps());
    move |f, c, t| weight[(f * channels + c) * taps + t]
}

/// The input gradient's filters: `(c, f, t) -> W[f, c, flipped t]`, a convolution of the output
/// gradient to the input channels (its band is read at +t where the forward read at -t).
pub(super) fn backward_taps<'w>(
    geo: &Geometry,
    weight: &'w [f32],
) -> impl Fn(usize, usize, usize) -> f32 + 'w {
    let (channels, taps) = (geo.in_channels(), geo.taps());
    move |c, f, t| weight[(f * channels + c) * taps + taps - 1 - t]
}

/// The packed forward weights: `A_t[f][c] = W[f, c, t]`.
pub(super) fn pack_forward(geo: &Geometry, weight: &[f32]) -> Vec<f32> {
    pack(
        geo.out_channels,
        geo.in_channels(),
        geo.taps(),
        forward_taps(geo, weight),
    )
}

/// The packed input-gradient weights: `A_t[c][f] = W[f, c, flipped t]`.
pub(super) fn pack_backward(geo: &Geometry, weight: &[f32]) -> Vec<f32> {
    pack(
        geo.in_channels(),
        geo.out_channels,
        geo.taps(),
        backward_taps(geo, weight),
    )
}

/// `out (rows x n, row stride ldo) = sum over taps t of A_t (rows x k) * band[shift_t]`, `a`
/// packed by [`pack`], the band `k` rows at row stride `stride`. Computes whole vectors: `out`
/// holds `rows` rows of [`padded`]`(n)` columns, and the band is read up to that many columns
/// past each shift.
///
/// Panics if a slice is too short for that, or if the CPU lacks AVX-512 (callers check
/// [`chosen`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_taps(
    rows: usize,
    n: usize,
    k: usize,
    a: &[f32],
    band: &[f32],
    stride: usize,
    shifts: &[usize],
    out: &mut [f32],
    ldo: usize,
) {
    let np = padded(n);
    let taps = shifts.len();
    assert!(cpu_runs(), "the direct kernels need AVX-512");
    assert!(a.len() >= packed_len(rows, k, taps), "packed A too short");
    let last_read = shifts
        .iter()
        .max()
        .map_or(0, |s| (k.max(1) - 1) * stride + s + np);
    assert!(
        n == 0 || k == 0 || last_read <= band.len(),
        "band too short"
    );
    assert!(
        rows == 0 || (rows - 1) * ldo + np <= out.len(),
        "out too short"
    );
    assert!(ldo >= np, "out's row stride is shorter than a row");
    #[cfg(target_arch = "x86_64")]
    {
        // The block kernels write every value read back from this (hoisted: zeroing it per
        // block was a measurable share of the call).
        let mut acc = [0f32; MR * NR * LANES];
        conv_blocks(rows, k, a, band, stride, shifts, (out, ldo), np, &mut acc);
    }
}

/// The register blocks of [`conv_taps`] (its checks done), through `acc`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn conv_blocks(
    rows: usize,
    k: usize,
    a: &[f32],
    band: &[f32],
    stride: usize,
    shifts: &[usize],
    (out, ldo): (&mut [f32], usize),
    np: usize,
    acc: &mut [f32; MR * NR * LANES],
) {
    let taps = shifts.len();
    for j0 in (0..np).step_by(NR * LANES) {
        let vectors = ((np - j0) / LANES).min(NR);
        for block in 0..rows.div_ceil(MR) {
            let live = (rows - block * MR).min(MR);
            let at = (block * taps) * k * MR;
            // SAFETY: `conv_taps`' asserts keep every read of `a` (this block's taps), of the
            // band (rows < k at shifts <= the largest, columns < np) inside their slices, and
            // the CPU has AVX-512 (asserted there).
            unsafe {
                match vectors {
                    6 => block_avx512::<6>(k, shifts, &a[at..], band, stride, j0, acc),
                    5 => block_avx512::<5>(k, shifts, &a[at..], band, stride, j0, acc),
                    4 => block_avx512::<4>(k, shifts, &a[at..], band, stride, j0, acc),
                    3 => block_avx512::<3>(k, shifts, &a[at..], band, stride, j0, acc),
                    2 => block_avx512::<2>(k, shifts, &a[at..], band, stride, j0, acc),
                    _ => block_avx512::<1>(k, shifts, &a[at..], band, stride, j0, acc),
                }
            }
            let width = vectors * LANES;
            for r in 0..live {
                let row = block * MR + r;
                out[row * ldo + j0..][..width].copy_from_slice(&acc[r * NR * LANES..][..width]);
            }
        }
    }
}

/// One register block: `acc[r][0..V*16] = sum over taps and channels c of a[t][c][r] *
/// band[c * stride + shift_t + j0..][..V*16]`.
///
/// # Safety
///
/// The CPU must support AVX512F; `a` must hold `shifts.len() * k * MR` values and `band` every
/// value read (`(k - 1) * stride + max shift + j0 + V * 16`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512<const V: usize>(
    k: usize,
    shifts: &[usize],
    a: &[f32],
    band: &[f32],
    stride: usize,
    j0: usize,
    acc: &mut [f32; MR * NR * LANES],
) {
    use std::arch::x86_64::*;
    let mut sums = [[_mm512_setzero_ps(); V]; MR];
    let (a, band) = (a.as_ptr(), band.as_ptr());
    for (t, &shift) in shifts.iter().enumerate() {
        let weights = a.add(t * k * MR);
        for c in 0..k {
            let row = band.add(c * stride + shift + j0);
            let mut b = [_mm512_setzero_ps(); V];
            for (v, b) in b.iter_mut().enumerate() {
                *b = _mm512_loadu_ps(row.add(v * LANES));
            }
            let w = weights.add(c * MR);
            for (r, sums) in sums.iter_mut().enumerate() {
                let wr = _mm512_set1_ps(*w.add(r));
                for (sum, &b) in sums.iter_mut().zip(&b) {
                    *sum = _mm512_fmadd_ps(wr, b, *sum);
                }
            }
        }
    }
    for (r, sums) in sums.iter().enumerate() {
        for (v, &sum) in sums.iter().enumerate() {
            _mm512_storeu_ps(acc.as_mut_ptr().add((r * NR + v) * LANES), sum);
        }
    }
}

/// Accumulator values of the largest weight-gradient register block (24 vectors).
#[cfg(target_arch = "x86_64")]
const BLOCK_SUMS: usize = 24 * LANES;

/// Channels per weight-gradient register block, by taps per kernel row (the block is
/// `kernel x channels` accumulators of 16 output channels each).
#[cfg(target_arch = "x86_64")]
fn weight_block(kernel: usize) -> (usize, usize) {
    match kernel {
        1 => (1, 16),
        3 => (3, 8),
        5 => (5, 4),
        // Wider kernels: one tap at a time.
        _ => (1, 8),
    }
}

/// Rows the band of a weight-gradient product must have: `channels` rounded up to whole
/// register blocks (the rows past `channels` are read, and their sums dropped).
pub(super) fn weight_rows(channels: usize) -> usize {
    up(channels, 16)
}

/// `acc[t] (channels x gp, [taps][channels][gp]) += band[shift_t] (channels x n) * dout (n x
/// gp)` for every tap of a `kernel x kernel` filter in a band of padded width `wp`: the band
/// rows at stride `stride`, `dout` the output gradient as `[n][gp]` (`gp` a multiple of 16).
///
/// Panics if a slice is too short (the band must have [`weight_rows`] rows), or if the CPU
/// lacks AVX-512 (callers check [`chosen`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_taps(
    channels: usize,
    gp: usize,
    n: usize,
    kernel: usize,
    wp: usize,
    band: &[f32],
    stride: usize,
    dout: &[f32],
    acc: &mut [f32],
) {
    let taps = kernel * kernel;
    assert!(cpu_runs(), "the direct kernels need AVX-512");
    assert_eq!(gp % LANES, 0, "gp must be a multiple of 16");
    assert!(dout.len() >= n * gp, "dout too short");
    assert!(acc.len() >= taps * channels * gp, "acc too short");
    if n == 0 || channels == 0 {
        return;
    }
    let last_read = (weight_rows(channels) - 1) * stride + (kernel - 1) * (wp + 1) + n;
    assert!(last_read <= band.len(), "band too short");
    #[cfg(target_arch = "x86_64")]
    weight_blocks(channels, gp, n, kernel, wp, band, stride, dout, acc);
}

/// The register blocks of [`weight_taps`] (its checks done).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn weight_blocks(
    channels: usize,
    gp: usize,
    n: usize,
    kernel: usize,
    wp: usize,
    band: &[f32],
    stride: usize,
    dout: &[f32],
    acc: &mut [f32],
) {
    let taps = kernel * kernel;
    let (tb, cb) = weight_block(kernel);
    let mut sums = [0f32; BLOCK_SUMS];
    for c0 in (0..channels).step_by(cb) {
        for f0 in (0..gp).step_by(LANES) {
            // One block per run of `tb` taps with consecutive shifts (a kernel row, or a tap).
            for first in (0..taps).step_by(tb) {
                let shift = (first / kernel) * wp + first % kernel;
                let base = c0 * stride + shift;
                // SAFETY: `weight_taps`' asserts keep every read inside the slices (rows up
                // to `weight_rows`, shifts up to the last tap's, positions below n; dout's n
                // rows of gp), and the CPU has AVX-512 (asserted there).
                unsafe {
                    let args = (n, &band[base..], stride, &dout[f0..], gp, &mut sums);
                    match (tb, cb) {
                        (1, 16) => weight_block_avx512::<1, 16>(args),
                        (3, 8) => weight_block_avx512::<3, 8>(args),
                        (5, 4) => weight_block_avx512::<5, 4>(args),
                        _ => weight_block_avx512::<1, 8>(args),
                    }
                }
                for t in 0..tb {
                    for j in 0..cb.min(channels - c0) {
                        let at = ((first + t) * channels + c0 + j) * gp + f0;
                        let block = &sums[(t * cb + j) * LANES..][..LANES];
                        acc[at..at + LANES]
                            .iter_mut()
                            .zip(block)
                            .for_each(|(a, s)| *a += s);
                    }
                }
            }
        }
    }
}

/// One weight-gradient block: `sums[t][j][0..16] = sum over p < n of band[j * stride + t + p]
/// * dout[p * gp..][..16]`, the band starting at the block's first channel and tap.
///
/// # Safety
///
/// The CPU must support AVX512F; `band` must hold every value read (`(CB - 1) * stride + TB - 1
/// + n`) and `dout` `n` rows of `gp` from its start (16 values each).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_block_avx512<const TB: usize, const CB: usize>(
    (n, band, stride, dout, gp, sums): (
        usize,
        &[f32],
        usize,
        &[f32],
        usize,
        &mut [f32; BLOCK_SUMS],
    ),
) {
    use std::arch::x86_64::*;
    const { assert!(TB * CB * LANES <= BLOCK_SUMS) };
    let mut acc = [[_mm512_setzero_ps(); CB]; TB];
    let rows: [*const f32; CB] = std::array::from_fn(|j| band.as_ptr().add(j * stride));
    let dout = dout.as_ptr();
    for p in 0..n {
        let d = _mm512_loadu_ps(dout.add(p * gp));
        for (t, acc) in acc.iter_mut().enumerate() {
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(_mm512_set1_ps(*rows[j].add(p + t)), d, *acc);
            }
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        for (j, &acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(sums.as_mut_ptr().add((t * CB + j) * LANES), acc);
        }
    }
}
