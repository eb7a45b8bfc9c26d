//! Matrix products with bfloat16 operands and f32 accumulation, the building block of a
//! mixed-precision fused layer: `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)` where both
//! operands are rounded to bf16 (round to nearest, ties to even) and every product and sum is
//! carried in f32.
//!
//! On a CPU with AVX512-BF16 (Intel Cooper Lake and Sapphire Rapids on, AMD Zen 4 on) the
//! micro-kernel is `vdpbf16ps`, which multiplies two pairs of bf16 and adds both products to an
//! f32 lane: twice the multiply-adds per instruction of an f32 FMA. Elsewhere a portable loop
//! computes the same rounded-operand product. [`avx512_bf16`] says which one runs.
//!
//! Layout: `rhs` is packed as pairs along `k` (`[k / 2][n][2]`, so one 512-bit load holds 16
//! columns' pairs) and `lhs` as one 32-bit pair per row and pair of `k`, broadcast to all lanes.
//! An odd `k` is padded with a zero.

/// `x` rounded to bfloat16 (the upper 16 bits of an f32), to nearest with ties to even; NaN
/// stays NaN (quiet), infinities stay infinite.
pub fn round_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let lsb = (bits >> 16) & 1;
    (bits.wrapping_add(0x7fff + lsb) >> 16) as u16
}

/// The f32 a bfloat16 stands for (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Whether this CPU runs the AVX512-BF16 micro-kernel (checked once, at run time).
pub fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bf16")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Columns per micro-tile: four 512-bit vectors of 16 f32 lanes.
const NR: usize = 64;
/// Rows per micro-tile: 4 x 4 accumulators of the 32 vector registers.
const MR: usize = 4;

/// A right operand packed once for many products (a layer's band, filled in bf16 directly).
pub struct PackedRhs {
    k: usize,
    n: usize,
    np: usize,
    data: Vec<u16>,
}

impl PackedRhs {
    /// Packs `rhs` (k x n, strides `(rs, cs)`).
    pub fn new(k: usize, n: usize, rhs: &[f32], rs: usize, cs: usize) -> Self {
        let (data, np) = pack_rhs(k, n, rhs, rs, cs);
        PackedRhs { k, n, np, data }
    }
}

/// A left operand packed once for many products (a layer's weights, once per step).
pub struct PackedLhs {
    m: usize,
    k: usize,
    data: Vec<u32>,
}

impl PackedLhs {
    /// Packs `lhs` (m x k, strides `(rs, cs)`).
    pub fn new(m: usize, k: usize, lhs: &[f32], rs: usize, cs: usize) -> Self {
        PackedLhs {
            m,
            k,
            data: pack_lhs(m, k, lhs, rs, cs),
        }
    }
}

/// `rhs` (k x n, strides `(rs, cs)`) as bf16 pairs along k in panels of [`NR`] columns,
/// `[n_padded / NR][k.div_ceil(2)][NR][2]` (a panel is contiguous, so a micro-tile streams
/// through it), with `n` padded to a multiple of `NR` by zeros.
fn pack_rhs(k: usize, n: usize, rhs: &[f32], rs: usize, cs: usize) -> (Vec<u16>, usize) {
    let np = n.div_ceil(NR) * NR;
    let pairs = k.div_ceil(2);
    let mut packed = vec![0u16; pairs * np * 2];
    for kk in 0..k {
        let (p, half) = (kk / 2, kk % 2);
        for j in 0..n {
            let (panel, jj) = (j / NR, j % NR);
            packed[(panel * pairs + p) * NR * 2 + 2 * jj + half] =
                round_to_bf16(rhs[kk * rs + j * cs]);
        }
    }
    (packed, np)
}

/// `lhs` (m x k, strides `(rs, cs)`) as one u32 per row and pair of k (low half: the even k),
/// `[m][k.div_ceil(2)]`.
fn pack_lhs(m: usize, k: usize, lhs: &[f32], rs: usize, cs: usize) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut packed = vec![0u32; m * pairs];
    for i in 0..m {
        for p in 0..pairs {
            let lo = u32::from(round_to_bf16(lhs[i * rs + 2 * p * cs]));
            let hi = if 2 * p + 1 < k {
                u32::from(round_to_bf16(lhs[i * rs + (2 * p + 1) * cs]))
            } else {
                0
            };
            packed[i * pairs + p] = lo | (hi << 16);
        }
    }
    packed
}

/// `dst (m x n, row stride ldd) = [dst +] lhs (m x k) * rhs (k x n)` with bf16 operands and f32
/// accumulation; `lhs` and `rhs` are given as slices with their (row stride, column stride).
///
/// Panics if a matrix reaches past the end of its slice.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    ldd: usize,
    accumulate: bool,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ldd + n <= dst.len(),
        "bf16 matmul: dst out of bounds"
    );
    if k > 0 {
        assert!(
            (m - 1) * lhs.1 + (k - 1) * lhs.2 < lhs.0.len(),
            "bf16 matmul: lhs out of bounds"
        );
        assert!(
            (k - 1) * rhs.1 + (n - 1) * rhs.2 < rhs.0.len(),
            "bf16 matmul: rhs out of bounds"
        );
    }
    matmul_packed(
        dst,
        ldd,
        accumulate,
        &PackedLhs::new(m, k, lhs.0, lhs.1, lhs.2),
        &PackedRhs::new(k, n, rhs.0, rhs.1, rhs.2),
    );
}

/// `dst (m x n, row stride ldd) = [dst +] lhs * rhs` on packed operands.
///
/// Panics if the operands' inner dimensions differ or `dst` is too short.
pub fn matmul_packed(
    dst: &mut [f32],
    ldd: usize,
    accumulate: bool,
    lhs: &PackedLhs,
    rhs: &PackedRhs,
) {
    assert_eq!(lhs.k, rhs.k, "bf16 matmul: inner dimensions differ");
    let (m, n, k, np) = (lhs.m, rhs.n, lhs.k, rhs.np);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ldd + n <= dst.len(),
        "bf16 matmul: dst out of bounds"
    );
    let (a, b) = (&lhs.data, &rhs.data);
    let pairs = k.div_ceil(2);
    let mut tile = [[0f32; NR]; MR];
    // Panel by panel of rhs (it stays in cache while every row block of lhs passes over it).
    for j0 in (0..np).step_by(NR) {
        let cols = NR.min(n - j0);
        let panel = &b[j0 / NR * pairs * NR * 2..][..pairs * NR * 2];
        for i0 in (0..m).step_by(MR) {
            let rows = MR.min(m - i0);
            let a_rows: [&[u32]; MR] =
                std::array::from_fn(|r| &a[(i0 + r.min(rows - 1)) * pairs..][..pairs]);
            #[cfg(target_arch = "x86_64")]
            {
                if avx512_bf16() {
                    // SAFETY: the CPU has AVX512F and AVX512-BF16 (checked above), and the
                    // panel holds `pairs` pairs of `NR` columns, all that the kernel reads.
                    unsafe { tile_avx512_bf16(&a_rows, panel, pairs, &mut tile) };
                } else {
                    tile_portable(&a_rows, panel, pairs, &mut tile);
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            tile_portable(&a_rows, panel, pairs, &mut tile);
            for (r, tile_row) in tile.iter().enumerate().take(rows) {
                let out = &mut dst[(i0 + r) * ldd + j0..][..cols];
                if accumulate {
                    for (o, t) in out.iter_mut().zip(tile_row) {
                        *o += t;
                    }
                } else {
                    out.copy_from_slice(&tile_row[..cols]);
                }
            }
        }
    }
}

/// One MR x NR tile of products, in plain Rust: the reference the SIMD kernel must match.
fn tile_portable(a_rows: &[&[u32]; MR], panel: &[u16], pairs: usize, tile: &mut [[f32; NR]; MR]) {
    for (r, row) in tile.iter_mut().enumerate() {
        row.fill(0.0);
        for p in 0..pairs {
            let pair = a_rows[r][p];
            let (a0, a1) = (bf16_to_f32(pair as u16), bf16_to_f32((pair >> 16) as u16));
            let bp = &panel[p * NR * 2..][..NR * 2];
            for (j, acc) in row.iter_mut().enumerate() {
                *acc += a0 * bf16_to_f32(bp[2 * j]) + a1 * bf16_to_f32(bp[2 * j + 1]);
            }
        }
    }
}

/// One MR x NR tile with `vdpbf16ps`: 16 accumulators (4 rows x 4 vectors of 16 columns).
///
/// # Safety
///
/// The CPU must support AVX512F and AVX512-BF16. (`panel` holding `pairs * NR * 2` entries is
/// checked.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_avx512_bf16(
    a_rows: &[&[u32]; MR],
    panel: &[u16],
    pairs: usize,
    tile: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    assert!(pairs * NR * 2 <= panel.len());
    assert!(a_rows.iter().all(|row| row.len() >= pairs));
    let mut acc = [[_mm512_setzero_ps(); NR / 16]; MR];
    for p in 0..pairs {
        let bp = panel.as_ptr().add(p * NR * 2);
        // In bounds by the assert above; unaligned loads. (A loop, not a closure: closures do
        // not inherit the function's target features.)
        let mut bv = [std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); NR / 16];
        for (v, slot) in bv.iter_mut().enumerate() {
            *slot = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                bp.add(32 * v) as *const _
            ));
        }
        for (acc_row, a_row) in acc.iter_mut().zip(a_rows) {
            let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(a_row[p] as i32));
            for (a, b) in acc_row.iter_mut().zip(&bv) {
                *a = _mm512_dpbf16_ps(*a, av, *b);
            }
        }
    }
    for (tile_row, acc_row) in tile.iter_mut().zip(&acc) {
        for (v, a) in acc_row.iter().enumerate() {
            _mm512_storeu_ps(tile_row.as_mut_ptr().add(16 * v), *a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(round_to_bf16(1.0), 0x3f80);
        assert_eq!(round_to_bf16(-2.0), 0xc000);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to the even one, 1.
        assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties to even, 1 + 2^-6.
        assert_eq!(round_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        // Just above the halfway point rounds up.
        assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)), 0x3f81);
        assert!(bf16_to_f32(round_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(round_to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(
            bf16_to_f32(round_to_bf16(f32::NEG_INFINITY)),
            f32::NEG_INFINITY
        );
        // Every bf16 round-trips.
        for h in (0..=u16::MAX).filter(|&h| !bf16_to_f32(h).is_nan()) {
            assert_eq!(round_to_bf16(bf16_to_f32(h)), h);
        }
    }

    /// Deterministic values in about [-1, 1].
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    fn reference(
        m: usize,
        n: usize,
        k: usize,
        lhs: (&[f32], usize, usize),
        rhs: (&[f32], usize, usize),
        round: bool,
    ) -> Vec<f64> {
        let r = |x: f32| {
            if round {
                f64::from(bf16_to_f32(round_to_bf16(x)))
            } else {
                f64::from(x)
            }
        };
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|kk| r(lhs.0[i * lhs.1 + kk * lhs.2]) * r(rhs.0[kk * rhs.1 + j * rhs.2]))
                    .sum();
            }
        }
        out
    }

    #[test]
    fn the_product_is_exact_on_the_rounded_operands_up_to_f32_sums() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 15, 7),
            (4, 64, 64),
            (5, 65, 2),
            (16, 200, 33),
            (7, 130, 300),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            // lhs row-major, rhs column-major (the strided case).
            let bt: Vec<f32> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
            let mut dst = vec![0f32; m * n];
            matmul(m, n, k, &mut dst, n, false, (&a, k, 1), (&bt, 1, k));
            let exact = reference(m, n, k, (&a, k, 1), (&bt, 1, k), true);
            let plain = reference(m, n, k, (&a, k, 1), (&bt, 1, k), false);
            for ((got, want), unrounded) in dst.iter().zip(&exact).zip(&plain) {
                // f32 accumulation of k products of magnitude <= 1.
                let tol = 1e-6 * k as f64;
                assert!(
                    (f64::from(*got) - want).abs() <= tol,
                    "({m}, {n}, {k}): {got} against {want}"
                );
                // bf16 operands: relative error 2^-8 each, so at most about 2 * 2^-8 * k.
                assert!(
                    (f64::from(*got) - unrounded).abs() <= 2.0 * k as f64 / 256.0,
                    "({m}, {n}, {k}): {got} against the f32 product {unrounded}"
                );
            }
        }
    }

    #[test]
    fn accumulating_adds_to_dst_and_leaves_the_rest_of_its_rows_alone() {
        let (m, n, k, ldd) = (6, 70, 9, 75);
        let a = values(m * k, 3);
        let b = values(k * n, 4);
        let mut dst = vec![0.5f32; m * ldd];
        matmul(m, n, k, &mut dst, ldd, true, (&a, k, 1), (&b, n, 1));
        let exact = reference(m, n, k, (&a, k, 1), (&b, n, 1), true);
        for i in 0..m {
            for j in 0..ldd {
                let got = f64::from(dst[i * ldd + j]);
                if j < n {
                    assert!((got - 0.5 - exact[i * n + j]).abs() < 1e-5, "{i}, {j}");
                } else {
                    assert_eq!(got, 0.5, "column {j} past n was written");
                }
            }
        }
    }

    #[test]
    fn the_simd_kernel_matches_the_portable_one() {
        if !avx512_bf16() {
            eprintln!("no AVX512-BF16 on this CPU: the portable kernel is the only one");
            return;
        }
        let (pairs, np) = (37, 2 * NR);
        let a = values(MR * pairs * 2, 5);
        let b = values(pairs * 2 * np, 6);
        let a_packed = pack_lhs(MR, 2 * pairs, &a, 2 * pairs, 1);
        let (b_packed, padded) = pack_rhs(2 * pairs, np, &b, np, 1);
        assert_eq!(padded, np);
        let a_rows: [&[u32]; MR] = std::array::from_fn(|r| &a_packed[r * pairs..][..pairs]);
        let (mut simd, mut portable) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
        for panel in b_packed.chunks(pairs * NR * 2) {
            // SAFETY: this CPU has the features (checked above).
            unsafe { tile_avx512_bf16(&a_rows, panel, pairs, &mut simd) };
            tile_portable(&a_rows, panel, pairs, &mut portable);
            for r in 0..MR {
                for j in 0..NR {
                    let (s, p) = (simd[r][j], portable[r][j]);
                    assert!(
                        (s - p).abs() <= 1e-5 * (1.0 + p.abs()),
                        "{r}, {j}: {s} against {p}"
                    );
                }
            }
        }
    }
}
