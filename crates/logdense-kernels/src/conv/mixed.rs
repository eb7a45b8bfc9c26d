//! The fused layer with bf16 operands and f32 accumulation ([`Precision::Bf16`]): the same
//! tiles, bands and BN-ReLU as the f32 path, with every GEMM on [`Tiles`] (AMX where it runs).
//!
//! The layouts are chosen so that no tap needs a copy of its own:
//! - the forward's band (and the backward's output-gradient band) is stored as bf16 *pairs of
//!   channels*, `[channel pairs][positions]` of `u32`: a tile of `B` is 16 channel pairs at 16
//!   consecutive positions, so every tap reads the same band at its own offset;
//! - the weight gradient sums over positions, so there the band is plain bf16 rows
//!   `[channels][positions]` (an `A` tile is 16 channels at 32 consecutive positions, again at
//!   any tap's offset) and the output gradient is packed as pairs of positions.
//!
//! Weights are packed once per call, per tap, rows padded to 16 and pairs to 16 with zeros; the
//! bands' padding pairs and rows are zero from allocation and never written.

use super::{for_tiles_with, Act, Affine, Bands, DisjointRows, Geometry, Gradients};
use crate::bf16::{bytes, round_to_bf16, Tiles, TILE};

/// Output columns per tile step (two 16-column accumulators).
const STEP: usize = 2 * TILE;

/// `x` rounded up to a multiple of `m`.
fn up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Two values as one bf16 pair (the first in the low half).
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(round_to_bf16(lo)) | (u32::from(round_to_bf16(hi)) << 16)
}

/// Per-tap weights as the tile step's `A`: `[taps][rows padded to 16][pairs of k padded to
/// 16]`, `value(row, k, tap)` rounded to bf16.
fn pack_taps(
    rows: usize,
    k: usize,
    taps: usize,
    value: impl Fn(usize, usize, usize) -> f32,
) -> Vec<u32> {
    let (rp, pairs) = (up(rows, TILE), up(k.div_ceil(2), TILE));
    let mut packed = vec![0u32; taps * rp * pairs];
    for t in 0..taps {
        for r in 0..rows {
            for p in 0..k.div_ceil(2) {
                let hi = if 2 * p + 1 < k {
                    value(r, 2 * p + 1, t)
                } else {
                    0.0
                };
                packed[(t * rp + r) * pairs + p] = pair(value(r, 2 * p, t), hi);
            }
        }
    }
    packed
}

/// Whether the CPU converts to bf16 itself (AVX512-BF16 with AVX512BW). Elsewhere bf16 runs
/// only in tests, on the emulated tiles, with the conversions in plain Rust.
#[cfg(target_arch = "x86_64")]
fn cvt() -> bool {
    crate::bf16::avx512_bf16() && std::arch::is_x86_feature_detected!("avx512bw")
}

/// `act(x)` of 16 values from `src[i..]`, rectified or not.
///
/// # Safety
///
/// The CPU must support AVX512F; `i + 16 <= src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn act16(src: &[f32], i: usize, act: Act) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    debug_assert!(i + 16 <= src.len());
    let y = _mm512_fmadd_ps(
        _mm512_loadu_ps(src.as_ptr().add(i)),
        _mm512_set1_ps(act.k),
        _mm512_set1_ps(act.b),
    );
    if act.relu {
        _mm512_max_ps(y, _mm512_setzero_ps())
    } else {
        y
    }
}

/// [`pair_row`] with the CPU's conversion (`vcvtne2ps2bf16`: 32 roundings to nearest even in
/// one instruction; like all of AVX512-BF16 it flushes subnormals to zero) and one word
/// shuffle to interleave the two rows.
///
/// # Safety
///
/// The CPU must support AVX512F, AVX512BW and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn pair_row_cvt(dst: &mut [u32], lo: &[f32], lo_act: Act, hi: Option<(&[f32], Act)>) {
    use std::arch::x86_64::*;
    let n = dst
        .len()
        .min(lo.len())
        .min(hi.map_or(usize::MAX, |(h, _)| h.len()));
    let whole = n / 16 * 16;
    // Word 2i of the result is word i of the conversion (lo[i]), word 2i + 1 is word 16 + i
    // (hi[i]).
    let order: [u16; 32] = std::array::from_fn(|w| (w / 2 + 16 * (w % 2)) as u16);
    let order = _mm512_loadu_si512(order.as_ptr().cast());
    for i in (0..whole).step_by(16) {
        let l = act16(lo, i, lo_act);
        let h = match hi {
            Some((hi, hi_act)) => act16(hi, i, hi_act),
            None => _mm512_setzero_ps(),
        };
        let words: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(h, l));
        _mm512_storeu_si512(
            dst.as_mut_ptr().add(i).cast(),
            _mm512_permutexvar_epi16(order, words),
        );
    }
    pair_row_plain(
        &mut dst[whole..n],
        &lo[whole..n],
        lo_act,
        hi.map(|(h, a)| (&h[whole..n], a)),
    );
}

/// [`round_row`] with the CPU's conversion (`vcvtneps2bf16`).
///
/// # Safety
///
/// The CPU must support AVX512F, AVX512BW and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn round_row_cvt(dst: &mut [u16], src: &[f32], act: Act) {
    use std::arch::x86_64::*;
    let n = dst.len().min(src.len());
    let whole = n / 16 * 16;
    for i in (0..whole).step_by(16) {
        let words: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(act16(src, i, act)));
        _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), words);
    }
    round_row_plain(&mut dst[whole..n], &src[whole..n], act);
}

/// [`pair_row`] in plain Rust (the tails of rows, and CPUs without AVX512-BF16).
fn pair_row_plain(dst: &mut [u32], lo: &[f32], lo_act: Act, hi: Option<(&[f32], Act)>) {
    match hi {
        Some((hi, hi_act)) => {
            for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(hi) {
                *d = pair(lo_act.apply(l), hi_act.apply(h));
            }
        }
        None => {
            for (d, &l) in dst.iter_mut().zip(lo) {
                *d = u32::from(round_to_bf16(lo_act.apply(l)));
            }
        }
    }
}

/// `dst[i] = bf16(act(src[i]))`.
fn round_row(dst: &mut [u16], src: &[f32], act: Act) {
    #[cfg(target_arch = "x86_64")]
    if cvt() {
        // SAFETY: the CPU has AVX512F, AVX512BW and AVX512-BF16 (checked just above).
        return unsafe { round_row_cvt(dst, src, act) };
    }
    round_row_plain(dst, src, act)
}

/// A plain bf16 band (`[channels][plane]` at row stride `stride`) with `act(channel)` applied:
/// the sources' rows the tile reads, zero outside the image.
fn fill_rounded(args: FillArgs<'_, u16>, act: impl Fn(usize) -> Act) {
    #[cfg(target_arch = "x86_64")]
    if cvt() {
        // SAFETY: the CPU has AVX512F, AVX512BW and AVX512-BF16 (checked just above).
        return unsafe { fill_rounded_cvt(args, act) };
    }
    fill_rounded_with(args, act, round_row_plain)
}

/// [`fill_rounded`] with the CPU's conversion, compiled as one function with the row loop.
///
/// # Safety
///
/// The CPU must support AVX512F, AVX512BW and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn fill_rounded_cvt(args: FillArgs<'_, u16>, act: impl Fn(usize) -> Act) {
    fill_rounded_with(args, act, |dst, src, act| {
        // SAFETY: this function's caller guarantees the CPU's features.
        unsafe { round_row_cvt(dst, src, act) }
    })
}

/// The body of [`fill_rounded`], with `round_row` the row conversion.
#[inline(always)]
fn fill_rounded_with(
    (bands, geo, tile, sources, channels, band, stride): FillArgs<'_, u16>,
    act: impl Fn(usize) -> Act,
    round_row: impl Fn(&mut [u16], &[f32], Act),
) {
    bands.fill_with(
        geo,
        tile,
        sources,
        channels,
        band,
        stride,
        0,
        |c, src, dst| round_row(dst, src, act(c)),
    );
}

/// [`round_row`] in plain Rust (the tails of rows, and CPUs without AVX512-BF16).
fn round_row_plain(dst: &mut [u16], src: &[f32], act: Act) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d = round_to_bf16(act.apply(v));
    }
}

/// A band of bf16 pairs of channels at row stride `stride` (`[channel pairs][plane]`), with
/// `act(channel)` applied: the sources' rows the tile reads, zero outside the image.
#[allow(clippy::too_many_arguments)]
fn fill_pairs(
    bands: &Bands,
    geo: &Geometry,
    tile: &super::Tile,
    sources: &[&[f32]],
    channels: &[usize],
    band: &mut [u32],
    stride: usize,
    act: impl Fn(usize) -> Act,
) {
    let args = (bands, geo, tile, sources, channels, band, stride);
    #[cfg(target_arch = "x86_64")]
    if cvt() {
        // SAFETY: the CPU has AVX512F, AVX512BW and AVX512-BF16 (checked just above).
        return unsafe { fill_pairs_cvt(args, act) };
    }
    fill_pairs_with(args, act, pair_row_plain)
}

/// [`fill_pairs`] with the CPU's conversions, compiled as one function with the row loop (a
/// call per row cost more than the row on 8- and 16-wide maps).
///
/// # Safety
///
/// The CPU must support AVX512F, AVX512BW and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn fill_pairs_cvt(args: FillArgs<'_, u32>, act: impl Fn(usize) -> Act) {
    fill_pairs_with(args, act, |dst, lo, lo_act, hi| {
        // SAFETY: this function's caller guarantees the CPU's features.
        unsafe { pair_row_cvt(dst, lo, lo_act, hi) }
    })
}

/// A band fill's arguments: the bands, the call's geometry, the tile, the sources and their
/// channel counts, the band and its row stride.
type FillArgs<'a, T> = (
    &'a Bands,
    &'a Geometry,
    &'a super::Tile,
    &'a [&'a [f32]],
    &'a [usize],
    &'a mut [T],
    usize,
);

/// The body of [`fill_pairs`], with `pair_row` the row conversion.
#[inline(always)]
fn fill_pairs_with(
    (bands, geo, tile, sources, channels, band, stride): FillArgs<'_, u32>,
    act: impl Fn(usize) -> Act,
    pair_row: impl Fn(&mut [u32], &[f32], Act, Option<(&[f32], Act)>),
) {
    let (hw, w) = (geo.pixels(), geo.width);
    // (source, channel within it, its channel count) of every channel of the concatenation.
    let table: Vec<(usize, usize, usize)> = channels
        .iter()
        .enumerate()
        .flat_map(|(j, &cj)| (0..cj).map(move |cl| (j, cl, cj)))
        .collect();
    let row = |c: usize, image: usize, y: usize| {
        let (j, cl, cj) = table[c];
        &sources[j][(image * cj + cl) * hw + y * w..][..w]
    };
    for p in 0..table.len().div_ceil(2) {
        let (lo, hi) = (2 * p, 2 * p + 1);
        // The next pair's rows start loading while this pair is filled.
        for &(j, cl, cj) in table.iter().skip(hi + 1).take(2) {
            bands.prefetch(geo, tile, sources[j], |image| (image * cj + cl) * hw);
        }
        bands.fill_plane(geo, tile, &mut band[p * stride..], 0u32, |image, y, dst| {
            let high = (hi < table.len()).then(|| (row(hi, image, y), act(hi)));
            pair_row(dst, row(lo, image, y), act(lo), high);
        });
    }
}

/// `out (rows x n, row stride ldo) = sum over taps t of A_t (rows x k) * B[shift_t]`, where
/// `a` is [`pack_taps`]' layout with `pairs` pairs per row and `b` a band of bf16 pairs at row
/// stride `stride`, read at each tap's `shift`. Computes whole 16 x 32 blocks: `out` must hold
/// `rows` padded to 16 rows of `n` padded to 32 columns, and `b` the blocks' reads.
#[allow(clippy::too_many_arguments)]
fn conv_taps<T: Tiles>(
    tiles: &mut T,
    rows: usize,
    n: usize,
    pairs: usize,
    a: &[u32],
    b: &[u32],
    stride: usize,
    shifts: &[usize],
    out: &mut [f32],
    ldo: usize,
) {
    let rp = up(rows, TILE);
    let (a, b) = (bytes(a), bytes(b));
    for i0 in (0..rp).step_by(TILE) {
        for j0 in (0..n).step_by(STEP) {
            tiles.zero();
            for (t, &shift) in shifts.iter().enumerate() {
                for p0 in (0..pairs).step_by(TILE) {
                    let a_at = ((t * rp + i0) * pairs + p0) * 4;
                    let b_at = (p0 * stride + shift + j0) * 4;
                    tiles.dot(a, a_at, pairs * 4, b, b_at, stride * 4, true);
                }
            }
            tiles.store(0, out, i0 * ldo + j0, ldo);
            tiles.store(1, out, i0 * ldo + j0 + TILE, ldo);
        }
    }
}

/// `acc[t] (channels x gp) += band[shift_t] (channels x n) * dout (n x gp)` for every tap:
/// `band` is plain bf16 rows at row stride `stride`, `dout` pairs of positions `[n / 2][gp]`
/// (zero past `n`), `acc` `[taps][channels padded to 16][gp]`, `gp` a multiple of 16.
#[allow(clippy::too_many_arguments)]
fn weight_taps<T: Tiles>(
    tiles: &mut T,
    channels: usize,
    gp: usize,
    n: usize,
    band: &[u16],
    stride: usize,
    dout: &[u32],
    shifts: &[usize],
    acc: &mut [f32],
) {
    let cp = up(channels, TILE);
    let (a, b) = (bytes(band), bytes(dout));
    let pairs = up(n, STEP) / 2;
    for (t, &shift) in shifts.iter().enumerate() {
        for c0 in (0..cp).step_by(TILE) {
            for f0 in (0..gp).step_by(STEP) {
                let two = f0 + TILE < gp;
                let at = (t * cp + c0) * gp + f0;
                tiles.load(0, acc, at, gp);
                if two {
                    tiles.load(1, acc, at + TILE, gp);
                }
                for q0 in (0..pairs).step_by(TILE) {
                    let a_at = (c0 * stride + shift + 2 * q0) * 2;
                    let b_at = (q0 * gp + f0) * 4;
                    tiles.dot(a, a_at, stride * 2, b, b_at, gp * 4, two);
                }
                tiles.store(0, acc, at, gp);
                if two {
                    tiles.store(1, acc, at + TILE, gp);
                }
            }
        }
    }
}

/// The band row stride shared by a call's tiles: room for the widest tile and for the last
/// block's reads past it.
fn band_stride(bands: &Bands) -> usize {
    up(bands.max_plane + STEP, STEP)
}

/// [`super::forward`] with bf16 operands, on the tiles `new_tiles` makes on each thread.
pub(super) fn forward<T: Tiles>(
    new_tiles: impl Fn() -> T + Sync,
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let (g, channels, kernel, taps) = (geo.out_channels, geo.in_channels(), geo.kernel, geo.taps());
    let (hw, w) = (geo.pixels(), geo.width);
    let bands = Bands::new(geo);
    let pairs = up(channels.div_ceil(2), TILE);
    let packed = pack_taps(g, channels, taps, |f, c, t| {
        weight[(f * channels + c) * taps + t]
    });
    let stride = band_stride(&bands);
    let ldr = stride;
    let shifts = super::tap_shifts(kernel, bands.wp);
    let out = DisjointRows::new(out);
    for_tiles_with(
        &bands,
        new_tiles,
        || {
            (
                vec![0u32; (pairs + 1) * stride],
                vec![0f32; up(g, TILE) * ldr],
            )
        },
        |tiles, (band_pairs, result), tile| {
            let n = bands.columns(tile);
            let act = |c| Act::layer(affine, c);
            fill_pairs(
                &bands,
                geo,
                tile,
                inputs,
                &geo.channels,
                band_pairs,
                stride,
                act,
            );
            conv_taps(
                tiles, g, n, pairs, &packed, band_pairs, stride, &shifts, result, ldr,
            );
            bands.rows(tile, |seg, y, at| {
                for f in 0..g {
                    // SAFETY: row y of image seg.image is computed by this tile only, and the
                    // slice is dropped at the end of the iteration.
                    let dst = unsafe { out.row((seg.image * g + f) * hw + y * w, w) };
                    super::write_row(dst, &result[f * ldr + at..][..w]);
                }
            });
        },
    );
}

/// [`super::backward`] with bf16 operands in its three products (input gradient, weight
/// gradient; the forward's recomputed band), on the tiles `new_tiles` makes on each thread.
/// The ReLU mask, BN sums and BN backward stay in f32.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Tiles>(
    new_tiles: impl Fn() -> T + Sync,
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    weight: &[f32],
    out_grad: &[f32],
) -> Gradients {
    let (g, channels, kernel, taps) = (geo.out_channels, geo.in_channels(), geo.kernel, geo.taps());
    let hw = geo.pixels();
    let (cp, gp) = (up(channels, TILE), up(g, TILE));
    // dY's A: W'_t [c][f] = W[f][c][flipped t] (the output gradient's band is read at +t
    // where the convolution read its input at -t).
    let g_pairs = up(g.div_ceil(2), TILE);
    let packed_t = pack_taps(channels, g, taps, |c, f, t| {
        weight[(f * channels + c) * taps + taps - 1 - t]
    });
    let mut unwritten = super::unwritten_input_gradients(geo);
    let grad_rows: Vec<_> = unwritten.iter_mut().map(|v| DisjointRows::new(v)).collect();
    let bands = Bands::new(geo);
    let wp = bands.wp;
    let stride = band_stride(&bands);
    let ldr = stride;
    let shifts = super::tap_shifts(kernel, wp);

    struct Share {
        band16: Vec<u16>,
        out_pairs: Vec<u32>,
        dout16: Vec<u16>,
        dout: Vec<u32>,
        dy: Vec<f32>,
        weight: Vec<f32>,
        sum_dy: Vec<f64>,
        sum_dy_xhat: Vec<f64>,
    }
    let shares = for_tiles_with(
        &bands,
        new_tiles,
        || Share {
            band16: vec![0u16; (cp + 1) * stride],
            out_pairs: vec![0u32; (g_pairs + 1) * stride],
            dout16: vec![0u16; g * stride],
            dout: vec![0u32; stride / 2 * gp],
            dy: vec![0f32; cp * ldr],
            weight: vec![0f32; taps * cp * gp],
            sum_dy: vec![0f64; channels],
            sum_dy_xhat: vec![0f64; channels],
        },
        |tiles, s, tile| {
            let n = bands.columns(tile);
            let fill = (
                &bands,
                geo,
                tile,
                inputs,
                &geo.channels[..],
                &mut s.band16[..],
                stride,
            );
            fill_rounded(fill, |c| Act::layer(affine, c));
            let identity = |_| Act::IDENTITY;
            fill_pairs(
                &bands,
                geo,
                tile,
                &[out_grad],
                &[g],
                &mut s.out_pairs,
                stride,
                identity,
            );
            // dY (channels x n) = sum over taps of W'_t (channels x g) * dOut[shift_t].
            conv_taps(
                tiles,
                channels,
                n,
                g_pairs,
                &packed_t,
                &s.out_pairs,
                stride,
                &shifts,
                &mut s.dy,
                ldr,
            );
            // dW's dOut (n x g) as pairs of positions: each output row's values at its columns,
            // zero in the pad columns and between stacked images, rounded row by row, then
            // transposed to [n / 2][gp].
            let n32 = up(n, STEP);
            for f in 0..g {
                let rows = &mut s.dout16[f * n32..][..n32];
                rows.fill(0);
                bands.rows(tile, |seg, y, at| {
                    let src = &out_grad[(seg.image * g + f) * hw + y * geo.width..][..geo.width];
                    round_row(&mut rows[at..at + geo.width], src, Act::IDENTITY);
                });
            }
            // Row by row of the result, so that each 64-byte row is written whole.
            let rows: Vec<&[u16]> = (0..g).map(|f| &s.dout16[f * n32..][..n32]).collect();
            for (q, dst) in s.dout.chunks_exact_mut(gp).take(n32 / 2).enumerate() {
                for (d, row) in dst.iter_mut().zip(&rows) {
                    *d = u32::from(row[2 * q]) | (u32::from(row[2 * q + 1]) << 16);
                }
            }
            weight_taps(
                tiles,
                channels,
                gp,
                n,
                &s.band16,
                stride,
                &s.dout,
                &shifts,
                &mut s.weight,
            );
            // Through the ReLU (its output is in the band); gather the BN sums; park the
            // pre-ReLU gradient in the input gradients.
            super::relu_tile(
                &bands,
                geo,
                tile,
                inputs,
                &grad_rows,
                affine,
                (&s.band16, stride),
                (&s.dy, ldr),
                &mut s.sum_dy,
                &mut s.sum_dy_xhat,
            );
        },
    );
    drop(grad_rows);
    let mut grad_weight = vec![0f32; g * channels * taps];
    for s in &shares {
        super::add_tap_major(&mut grad_weight, &s.weight, geo, cp, gp);
    }
    let sums = shares.iter().map(|s| (&s.sum_dy[..], &s.sum_dy_xhat[..]));
    let args = (geo, inputs, gamma, affine, batch_stats);
    // SAFETY: the ReLU backward ran on every tile, so it wrote every input gradient element.
    unsafe { super::finish_backward(args, unwritten, grad_weight, sums) }
}
