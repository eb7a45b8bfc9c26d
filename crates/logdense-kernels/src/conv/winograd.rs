//! Winograd F(2x2, 3x3) for the fused layer's f32 3x3 products, with AVX-512: each 2 x 2
//! block of outputs comes from its 4 x 4 input patch with 16 products per channel and filter
//! where the direct convolution takes 36, so the multiplications fall by 2.25x.
//!
//! For every 2 x 2 output block ("tile") of a band: `V = B^T d B` per channel (the input
//! transform of the 4 x 4 patch `d`), then for each of the 16 transform positions `xi` one
//! product `M_xi = U_xi V_xi` over the channels (`U = G g G^T`, the transformed filters, packed
//! once per call), run by the direct kernels' register blocks as a one-tap product, and
//! finally `Y = A^T M A` per filter (the output transform) into the band's output positions.
//! Lanes run over the tiles of one row pair, 16 at a time; the transforms are additions only.
//!
//! It applies to 3x3 kernels on bands whose segments have an even number of rows, of an even
//! width ([`applies`]); the direct kernels take every other shape.
//!
//! It is opt-in (`F32Kernels::Winograd`, the CLI's `--f32-kernels winograd`) because on the presets' layers it runs no
//! faster than the direct kernels: with 16 to 24 filters, the products shrink to about the
//! cost of writing `V`, which is 4 times the band (16 values per 2 x 2 outputs and channel) and
//! goes to L2. With its stores sent to one place (wrong results, for timing) the input
//! transform fell from about 29 % to 5 % of a single-thread forward. Paying off needs the
//! transform fused into the products, so that `V` never leaves the registers.

use super::direct;
use super::{Bands, Tile};

/// Transform positions of a 4 x 4 patch.
const POSITIONS: usize = 16;
/// Tiles per vector.
const LANES: usize = 16;

/// `G` of F(2x2, 3x3): `U = G g G^T` turns a 3x3 filter into its 4 x 4 transform.
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// Whether the Winograd products run a call on these bands: a 3x3 kernel (padding 1), an even
/// width and every segment an even number of rows, on a CPU that runs the direct kernels, where
/// the call's f32 kernels are Winograd's.
pub(super) fn applies(bands: &Bands, f32: super::F32Kernels) -> bool {
    bands.pad == 1
        && bands.width().is_multiple_of(2)
        && direct::chosen(f32)
        && f32 == super::F32Kernels::Winograd
        && bands
            .tiles
            .iter()
            .all(|t| t.segments.iter().all(|s| s.rows % 2 == 0))
}

/// The 16 transformed filters packed as the direct kernels' one-tap operands, one after
/// another: `U_xi[r][c] = (G w(r, c) G^T)[xi]`, where `w(r, c, tap)` is output row `r`'s 3x3
/// filter on channel `c` (tap = ky * 3 + kx).
pub(super) fn pack(rows: usize, k: usize, w: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let mut transformed = vec![[0f32; POSITIONS]; rows * k];
    for r in 0..rows {
        for c in 0..k {
            // G g (4 x 3), then (G g) G^T (4 x 4).
            let gg: [[f32; 3]; 4] = std::array::from_fn(|i| {
                std::array::from_fn(|x| (0..3).map(|y| G[i][y] * w(r, c, y * 3 + x)).sum())
            });
            for i in 0..4 {
                for (j, gj) in G.iter().enumerate() {
                    transformed[r * k + c][i * 4 + j] = (0..3).map(|x| gg[i][x] * gj[x]).sum();
                }
            }
        }
    }
    (0..POSITIONS)
        .flat_map(|xi| direct::pack(rows, k, 1, |r, c, _| transformed[r * k + c][xi]))
        .collect()
}

/// Per-thread buffers of [`conv`]: the transformed inputs and products.
#[derive(Default)]
pub(super) struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
}

/// The tiles of a band tile: the band offset of each row pair's first padded row, and the
/// tiles per row pair (`width / 2`).
fn row_pairs(bands: &Bands, tile: &Tile) -> Vec<usize> {
    tile.segments
        .iter()
        .flat_map(|s| {
            (0..s.rows)
                .step_by(2)
                .map(move |y| (s.offset + y) * bands.wp)
        })
        .collect()
}

/// `out (rows x positions, row stride ldo)`: the 3x3 convolution of the band (`k` channels at
/// stride `plane`, rows of padded width `bands.wp`) by the filters `packed` by [`pack`], written
/// at the output positions of `tile`'s rows (those [`Bands::rows`] visits); other positions of
/// `out` are left as they were.
///
/// Panics if the CPU lacks AVX-512 or a slice is too short.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv(
    rows: usize,
    k: usize,
    packed: &[f32],
    (bands, tile): (&Bands, &Tile),
    band: &[f32],
    plane: usize,
    scratch: &mut Scratch,
    out: &mut [f32],
    ldo: usize,
) {
    assert!(crate::avx512(), "the Winograd kernels need AVX-512");
    let pairs = row_pairs(bands, tile);
    let width = bands.width();
    let half = width / 2;
    let tiles = pairs.len() * half;
    let tp = direct::padded(tiles);
    let per_position = direct::packed_len(rows, k, 1);
    assert!(
        packed.len() >= POSITIONS * per_position,
        "packed U too short"
    );
    // The input transform reads 4 rows of wp values from each pair's offset, 2 past the width.
    let wp = bands.wp;
    let last = pairs.last().map_or(0, |&p| p + 3 * wp + width + 2);
    assert!(
        k == 0 || (k - 1) * plane + last <= band.len(),
        "band too short"
    );
    assert!(
        rows == 0 || (rows - 1) * ldo + pairs.last().map_or(0, |&p| p + wp + width) <= out.len(),
        "out too short"
    );
    // One cache line more than a position's values between positions: at the plain stride,
    // a multiple of 4 KiB for many shapes, the 16 positions of a tile all fall in one L1 set.
    let (v_stride, m_stride) = (k * tp + LANES, rows * tp + LANES);
    scratch.v.resize(POSITIONS * v_stride, 0.0);
    scratch.m.resize(POSITIONS * m_stride, 0.0);
    #[cfg(target_arch = "x86_64")]
    {
        for c in 0..k {
            // SAFETY: the CPU has AVX-512 (asserted above); the asserts keep the band's reads
            // (4 rows of width + 2 values from each pair's offset) and the writes to `v`
            // (positions at v_stride, k rows of tp) inside their slices.
            unsafe {
                input_transform(
                    &band[c * plane..],
                    wp,
                    &pairs,
                    half,
                    &mut scratch.v,
                    c,
                    v_stride,
                    tp,
                )
            };
        }
        for xi in 0..POSITIONS {
            direct::conv_taps(
                rows,
                tiles,
                k,
                &packed[xi * per_position..],
                &scratch.v[xi * v_stride..],
                tp,
                &[0],
                &mut scratch.m[xi * m_stride..],
                tp,
            );
        }
        for r in 0..rows {
            // SAFETY: as above, for the reads of `m` and the writes of `out` (checked).
            unsafe {
                output_transform(
                    &scratch.m,
                    m_stride,
                    r * tp,
                    wp,
                    &pairs,
                    half,
                    &mut out[r * ldo..],
                )
            };
        }
    }
}

/// The lanes of the first `n` of 16 (all 16 for `n >= 16`).
#[cfg(target_arch = "x86_64")]
fn mask(n: usize) -> u16 {
    if n >= 16 {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// `V = B^T d B` of one channel's tiles, into `v[xi * xi_stride + c * tp + tile]`.
///
/// # Safety
///
/// The CPU must support AVX512F; `band` must hold 4 rows of `2 * half + 2` values (at row
/// stride `wp`) from each pair's offset, and `v` every position written.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn input_transform(
    band: &[f32],
    wp: usize,
    pairs: &[usize],
    half: usize,
    v: &mut [f32],
    c: usize,
    xi_stride: usize,
    tp: usize,
) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (band, v) = (band.as_ptr(), v.as_mut_ptr());
    for (q, &offset) in pairs.iter().enumerate() {
        for t0 in (0..half).step_by(LANES) {
            let lanes = (half - t0).min(LANES);
            // Columns 2 t .. 2 t + 3 of the tiles t0 .. t0 + lanes: 2 lanes + 2 values.
            let span = 2 * lanes + 2;
            let (m_lo, m_hi) = (mask(span), mask(span.saturating_sub(16)));
            let (m2_lo, m2_hi) = (mask(span - 2), mask((span - 2).saturating_sub(16)));
            let mut e = [[_mm512_setzero_ps(); 4]; 4];
            for (i, e) in e.iter_mut().enumerate() {
                let row = band.add(offset + i * wp + 2 * t0);
                let lo = _mm512_maskz_loadu_ps(m_lo, row);
                let hi = _mm512_maskz_loadu_ps(m_hi, row.add(16));
                let lo2 = _mm512_maskz_loadu_ps(m2_lo, row.add(2));
                let hi2 = _mm512_maskz_loadu_ps(m2_hi, row.add(18));
                let d0 = _mm512_permutex2var_ps(lo, even, hi);
                let d1 = _mm512_permutex2var_ps(lo, odd, hi);
                let d2 = _mm512_permutex2var_ps(lo2, even, hi2);
                let d3 = _mm512_permutex2var_ps(lo2, odd, hi2);
                // d B: along the row.
                *e = [
                    _mm512_sub_ps(d0, d2),
                    _mm512_add_ps(d1, d2),
                    _mm512_sub_ps(d2, d1),
                    _mm512_sub_ps(d1, d3),
                ];
            }
            let store = mask(lanes);
            let at = c * tp + q * half + t0;
            #[allow(clippy::needless_range_loop)] // j picks a column of every row of e
            for j in 0..4 {
                // B^T (d B): down the column.
                let col = [
                    _mm512_sub_ps(e[0][j], e[2][j]),
                    _mm512_add_ps(e[1][j], e[2][j]),
                    _mm512_sub_ps(e[2][j], e[1][j]),
                    _mm512_sub_ps(e[1][j], e[3][j]),
                ];
                for (i, value) in col.into_iter().enumerate() {
                    _mm512_mask_storeu_ps(v.add((i * 4 + j) * xi_stride + at), store, value);
                }
            }
        }
    }
}

/// `Y = A^T M A` of output row `r`'s tiles (`m[xi * xi_stride + row_at + tile]`), each 2 x 2
/// block written to `out` at its pair's offset (first row) and one padded row below.
///
/// # Safety
///
/// The CPU must support AVX512F; `m` must hold every value read, `out` two rows of `2 * half`
/// values (at row stride `wp`) from each pair's offset.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_transform(
    m: &[f32],
    xi_stride: usize,
    row_at: usize,
    wp: usize,
    pairs: &[usize],
    half: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let (m, out) = (m.as_ptr(), out.as_mut_ptr());
    for (q, &offset) in pairs.iter().enumerate() {
        for t0 in (0..half).step_by(LANES) {
            let lanes = (half - t0).min(LANES);
            let at = row_at + q * half + t0;
            let load = mask(lanes);
            let mut s = [[_mm512_setzero_ps(); 2]; 4];
            for (i, s) in s.iter_mut().enumerate() {
                let x: [__m512; 4] = std::array::from_fn(|j| {
                    _mm512_maskz_loadu_ps(load, m.add((i * 4 + j) * xi_stride + at))
                });
                // M A: along the row.
                *s = [
                    _mm512_add_ps(_mm512_add_ps(x[0], x[1]), x[2]),
                    _mm512_sub_ps(_mm512_sub_ps(x[1], x[2]), x[3]),
                ];
            }
            for dy in 0..2 {
                // A^T (M A): down the column.
                let y: [__m512; 2] = std::array::from_fn(|x| match dy {
                    0 => _mm512_add_ps(_mm512_add_ps(s[0][x], s[1][x]), s[2][x]),
                    _ => _mm512_sub_ps(_mm512_sub_ps(s[1][x], s[2][x]), s[3][x]),
                });
                // Columns 2 t and 2 t + 1 of the row, interleaved.
                let dst = out.add(offset + dy * wp + 2 * t0);
                let span = 2 * lanes;
                _mm512_mask_storeu_ps(dst, mask(span), _mm512_permutex2var_ps(y[0], low, y[1]));
                if span > 16 {
                    _mm512_mask_storeu_ps(
                        dst.add(16),
                        mask(span - 16),
                        _mm512_permutex2var_ps(y[0], high, y[1]),
                    );
                }
            }
        }
    }
}
