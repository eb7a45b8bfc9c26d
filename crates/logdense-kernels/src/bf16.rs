//! Matrix products with bfloat16 operands and f32 accumulation, the building block of a
//! mixed-precision fused layer: `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)` where both
//! operands are rounded to bf16 (round to nearest, ties to even) and every product and sum is
//! carried in f32.
//!
//! The micro-kernel is chosen at run time ([`kernel`]):
//! - **AMX** (Intel Sapphire Rapids on): `tdpbf16ps` multiplies a 16 x 32 bf16 tile by a
//!   32 x 16 one into a 16 x 16 f32 tile, 16 times the work of an AVX-512 instruction. Rust has
//!   no stable AMX intrinsics, so the tiles are driven through inline assembly, after asking
//!   Linux for the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`).
//! - **AVX512-BF16** (Cooper Lake, Zen 4 on): `vdpbf16ps` multiplies two pairs of bf16 and adds
//!   both products to an f32 lane.
//! - Elsewhere a portable loop computes the same rounded-operand product.
//!
//! Layout, shared by the three: `rhs` as pairs along `k` in panels of 64 columns (`NR`)
//! (`[n / NR][k / 2][NR][2]`: one 512-bit load holds 16 columns' pairs, and an AMX tile's rows
//! are 16 columns' pairs at the panel's row stride), `lhs` as one 32-bit pair per row and pair
//! of `k`. Pairs are padded with zeros to a multiple of 16 and rows of `lhs` to a multiple of
//! 16, the tiles' sizes.

/// `x` rounded to bfloat16 (the upper 16 bits of an f32), to nearest with ties to even; NaN
/// stays NaN (quiet), infinities stay infinite.
pub fn round_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((bits >> 16) as u16) | 0x0040;
    // A select, not a branch, so that loops of roundings vectorise.
    if x.is_nan() {
        quiet_nan
    } else {
        rounded
    }
}

/// The f32 a bfloat16 stands for (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// The micro-kernels, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AMX tiles (`tdpbf16ps`).
    Amx,
    /// AVX512-BF16 (`vdpbf16ps`).
    Avx512Bf16,
    /// Plain Rust.
    Portable,
}

/// The fastest micro-kernel this CPU and operating system run (checked once).
pub fn kernel() -> Kernel {
    if amx() {
        Kernel::Amx
    } else if avx512_bf16() {
        Kernel::Avx512Bf16
    } else {
        Kernel::Portable
    }
}

/// Whether AMX with bf16 runs here: the CPU reports AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX
/// bits 24 and 22) and Linux grants this process the tile data state. Checked once.
pub fn amx() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            // CPUID leaf 7 is read only where leaf 0 says it exists.
            let leaf7 = std::arch::x86_64::__cpuid(0).eax >= 7
                && std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 24 | 1 << 22)
                    == (1 << 24 | 1 << 22);
            leaf7 && request_tile_state()
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Asks Linux for permission to use AMX tile data in this process
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); true when granted.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with these arguments only changes which extended
    // states this process may use; it reads and writes no memory of ours. The syscall
    // instruction clobbers rcx and r11, which are declared.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
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
/// An AMX tile's rows (and pairs of `k` per tile): pairs and rows of `lhs` are padded to it.
pub const TILE: usize = 16;

/// A right operand packed once for many products (a layer's band, filled in bf16 directly).
pub struct PackedRhs {
    k: usize,
    n: usize,
    np: usize,
    /// Pairs of `k`, padded to a multiple of [`TILE`].
    pairs: usize,
    data: Vec<u16>,
}

impl PackedRhs {
    /// Packs `rhs` (k x n, strides `(rs, cs)`).
    pub fn new(k: usize, n: usize, rhs: &[f32], rs: usize, cs: usize) -> Self {
        let (data, np) = pack_rhs(k, n, rhs, rs, cs);
        PackedRhs {
            k,
            n,
            np,
            pairs: padded_pairs(k),
            data,
        }
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

/// Pairs of `k`, padded with zeros to a multiple of [`TILE`].
fn padded_pairs(k: usize) -> usize {
    k.div_ceil(2).div_ceil(TILE) * TILE
}

/// `rhs` (k x n, strides `(rs, cs)`) as bf16 pairs along k in panels of [`NR`] columns,
/// `[n_padded / NR][pairs][NR][2]` (a panel is contiguous, so a micro-tile streams through it),
/// with `n` padded to a multiple of `NR` and the pairs to a multiple of [`TILE`] by zeros.
fn pack_rhs(k: usize, n: usize, rhs: &[f32], rs: usize, cs: usize) -> (Vec<u16>, usize) {
    let np = n.div_ceil(NR) * NR;
    let pairs = padded_pairs(k);
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
/// `[m_padded][pairs]`, with rows padded to a multiple of [`TILE`] and pairs as
/// [`padded_pairs`], by zeros.
fn pack_lhs(m: usize, k: usize, lhs: &[f32], rs: usize, cs: usize) -> Vec<u32> {
    let pairs = padded_pairs(k);
    let mut packed = vec![0u32; m.div_ceil(TILE) * TILE * pairs];
    for i in 0..m {
        for p in 0..k.div_ceil(2) {
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
    let (m, n, np) = (lhs.m, rhs.n, rhs.np);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ldd + n <= dst.len(),
        "bf16 matmul: dst out of bounds"
    );
    matmul_packed_with(kernel(), dst, ldd, accumulate, lhs, rhs, m, n, np);
}

/// [`matmul_packed`] with the given micro-kernel (which the CPU must run).
#[allow(clippy::too_many_arguments)]
fn matmul_packed_with(
    kernel: Kernel,
    dst: &mut [f32],
    ldd: usize,
    accumulate: bool,
    lhs: &PackedLhs,
    rhs: &PackedRhs,
    m: usize,
    n: usize,
    np: usize,
) {
    let (a, b) = (&lhs.data, &rhs.data);
    let pairs = rhs.pairs;
    let mut store = |tile_rows: &[[f32; NR]], i0: usize, j0: usize| {
        let cols = NR.min(n - j0);
        for (r, tile_row) in tile_rows.iter().enumerate().take(m.saturating_sub(i0)) {
            let out = &mut dst[(i0 + r) * ldd + j0..][..cols];
            if accumulate {
                for (o, t) in out.iter_mut().zip(tile_row) {
                    *o += t;
                }
            } else {
                out.copy_from_slice(&tile_row[..cols]);
            }
        }
    };
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Amx {
        let mut tiles = Amx::new().expect("the AMX kernel on a CPU without it");
        let mut tile = [[0f32; NR]; TILE];
        let (a, b) = (bytes(a), bytes(b));
        for j0 in (0..np).step_by(NR) {
            let panel = j0 / NR * pairs * NR * 2;
            for i0 in (0..m).step_by(TILE) {
                // For each half of the panel's columns, two 16 x 16 accumulators over every 16
                // pairs of k: A is 16 rows of lhs, B 16 pair rows of the panel.
                for half in 0..NR / 32 {
                    tiles.zero();
                    for p0 in (0..pairs).step_by(TILE) {
                        let a_at = (i0 * pairs + p0) * 4;
                        let b_at = (panel + p0 * NR * 2 + half * 32 * 2) * 2;
                        tiles.dot(a, a_at, pairs * 4, b, b_at, NR * 4, true);
                    }
                    let flat = tile.as_flattened_mut();
                    tiles.store(0, flat, half * 32, NR);
                    tiles.store(1, flat, half * 32 + TILE, NR);
                }
                store(&tile, i0, j0);
            }
        }
        return;
    }
    let mut tile = [[0f32; NR]; MR];
    // Panel by panel of rhs (it stays in cache while every row block of lhs passes over it).
    for j0 in (0..np).step_by(NR) {
        let panel = &b[j0 / NR * pairs * NR * 2..][..pairs * NR * 2];
        for i0 in (0..m).step_by(MR) {
            let a_rows: [&[u32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * pairs..][..pairs]);
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512Bf16 => {
                    assert!(avx512_bf16(), "the AVX512-BF16 kernel on a CPU without it");
                    // SAFETY: the CPU has AVX512F and AVX512-BF16 (asserted), and the panel
                    // holds `pairs` pairs of `NR` columns, all that the kernel reads.
                    unsafe { tile_avx512_bf16(&a_rows, panel, pairs, &mut tile) };
                }
                _ => tile_portable(&a_rows, panel, pairs, &mut tile),
            }
            store(&tile, i0, j0);
        }
    }
}

/// Loads the tile configuration of [`Amx`]: tiles 0-4 of 16 rows of 64 bytes (C: 16 x 16
/// f32 twice; A: 16 x 32 bf16; B: 16 pairs x 16 columns twice).
///
/// # Safety
///
/// AMX must run here ([`amx`]).
#[cfg(target_arch = "x86_64")]
unsafe fn amx_begin() {
    let mut config = [0u8; 64];
    config[0] = 1; // palette 1
    for t in 0..5 {
        config[16 + 2 * t] = 64; // bytes per row
        config[48 + t] = TILE as u8; // rows
    }
    std::arch::asm!("ldtilecfg [{0}]", in(reg) config.as_ptr(), options(nostack, readonly));
}

/// Releases the tile state.
///
/// # Safety
///
/// AMX must run here ([`amx`]).
#[cfg(target_arch = "x86_64")]
unsafe fn amx_end() {
    std::arch::asm!("tilerelease", options(nostack, nomem));
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

/// The bytes of a `u16` or `u32` buffer (the tile operations address operands in bytes).
pub(crate) fn bytes<T: Copy + Into<u64>>(values: &[T]) -> &[u8] {
    // SAFETY: u16 and u32 (the only `Into<u64>` plain integers used) have no padding and any
    // byte pattern is a valid u8; the length is the buffer's size in bytes.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

/// Two 16 x 16 f32 accumulators and the step the mixed-precision fused layer is written in:
/// `C0 += A * B0`, `C1 += A * B1`, where `A` is 16 rows of 16 bf16 pairs (64 bytes a row) and
/// each `B` 16 rows (pairs of `k`) of 16 columns' pairs. Operands are read in place at any byte
/// offset and row stride, so a layer's band serves every kernel tap at the tap's offset.
///
/// [`Amx`] runs the step on AMX tiles; [`Emulated`] computes the same in plain Rust (the
/// reference, and what tests run where AMX is absent).
pub trait Tiles {
    /// `C0 = C1 = 0`.
    fn zero(&mut self);
    /// `C[i]` from `src[offset..]`, 16 rows of 16 values at row stride `ld` (in f32).
    fn load(&mut self, i: usize, src: &[f32], offset: usize, ld: usize);
    /// `C[i]` into `dst[offset..]`, 16 rows of 16 values at row stride `ld` (in f32).
    fn store(&mut self, i: usize, dst: &mut [f32], offset: usize, ld: usize);
    /// `C0 += A * B0` and, with `two`, `C1 += A * B1` where `B1` starts 64 bytes after `B0`.
    /// `A` is at byte `a_at` of `a` with row stride `a_ld` bytes, `B0` at byte `b_at` of `b`
    /// with row stride `b_ld` bytes.
    #[allow(clippy::too_many_arguments)]
    fn dot(
        &mut self,
        a: &[u8],
        a_at: usize,
        a_ld: usize,
        b: &[u8],
        b_at: usize,
        b_ld: usize,
        two: bool,
    );
}

/// Panics unless a 16-row operand of `width` bytes at `at` with row stride `ld` lies in `len`.
fn check_operand(len: usize, at: usize, ld: usize, width: usize) {
    assert!(
        at + (TILE - 1) * ld + width <= len,
        "bf16 tile operand out of bounds"
    );
}

/// Panics unless a [`Tiles::dot`]'s operands lie in `a` and `b`: `A`, and `B0` (with `B1`
/// beside it when `two`).
fn check_dot(a: &[u8], a_at: usize, a_ld: usize, b: &[u8], b_at: usize, b_ld: usize, two: bool) {
    check_operand(a.len(), a_at, a_ld, 64);
    check_operand(b.len(), b_at, b_ld, if two { 128 } else { 64 });
}

/// The tile step on AMX: accumulators in `tmm0`, `tmm1`, `A` in `tmm2`, the `B`s in `tmm3`,
/// `tmm4`. Creating one configures the tiles of this thread; dropping it releases them. Not
/// `Send`: the tile state belongs to the thread.
pub struct Amx {
    _thread: std::marker::PhantomData<*const ()>,
}

impl Amx {
    /// The tiles of this thread, configured; `None` where AMX does not run.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if amx() {
            // SAFETY: AMX runs here (checked); the configuration is released on drop.
            unsafe { amx_begin() };
            return Some(Amx {
                _thread: std::marker::PhantomData,
            });
        }
        None
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for Amx {
    fn drop(&mut self) {
        // SAFETY: an `Amx` exists only where AMX runs and was configured by `new`.
        unsafe { amx_end() };
    }
}

#[cfg(target_arch = "x86_64")]
impl Tiles for Amx {
    fn zero(&mut self) {
        // SAFETY: the tiles are configured (an `Amx` exists on this thread).
        unsafe { std::arch::asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem)) };
    }

    fn load(&mut self, i: usize, src: &[f32], offset: usize, ld: usize) {
        check_operand(src.len() * 4, offset * 4, ld * 4, 64);
        let p = src[offset..].as_ptr();
        // SAFETY: configured tiles; the 16 rows of 64 bytes lie in `src` (checked).
        unsafe {
            if i == 0 {
                std::arch::asm!("tileloadd tmm0, [{p} + {s}]", p = in(reg) p, s = in(reg) ld * 4, options(nostack, readonly));
            } else {
                std::arch::asm!("tileloadd tmm1, [{p} + {s}]", p = in(reg) p, s = in(reg) ld * 4, options(nostack, readonly));
            }
        }
    }

    fn store(&mut self, i: usize, dst: &mut [f32], offset: usize, ld: usize) {
        check_operand(dst.len() * 4, offset * 4, ld * 4, 64);
        let p = dst[offset..].as_mut_ptr();
        // SAFETY: configured tiles; the 16 rows of 64 bytes lie in `dst` (checked), which is
        // borrowed mutably.
        unsafe {
            if i == 0 {
                std::arch::asm!("tilestored [{p} + {s}], tmm0", p = in(reg) p, s = in(reg) ld * 4, options(nostack));
            } else {
                std::arch::asm!("tilestored [{p} + {s}], tmm1", p = in(reg) p, s = in(reg) ld * 4, options(nostack));
            }
        }
    }

    fn dot(
        &mut self,
        a: &[u8],
        a_at: usize,
        a_ld: usize,
        b: &[u8],
        b_at: usize,
        b_ld: usize,
        two: bool,
    ) {
        check_dot(a, a_at, a_ld, b, b_at, b_ld, two);
        let (pa, pb) = (a[a_at..].as_ptr(), b[b_at..].as_ptr());
        // SAFETY: configured tiles; every row read lies in `a` and `b` (checked).
        unsafe {
            if two {
                std::arch::asm!(
                    "tileloadd tmm2, [{a} + {sa}]",
                    "tileloadd tmm3, [{b} + {sb}]",
                    "tileloadd tmm4, [{b2} + {sb}]",
                    "tdpbf16ps tmm0, tmm2, tmm3",
                    "tdpbf16ps tmm1, tmm2, tmm4",
                    a = in(reg) pa, b = in(reg) pb, b2 = in(reg) pb.add(64),
                    sa = in(reg) a_ld, sb = in(reg) b_ld,
                    options(nostack, readonly),
                );
            } else {
                std::arch::asm!(
                    "tileloadd tmm2, [{a} + {sa}]",
                    "tileloadd tmm3, [{b} + {sb}]",
                    "tdpbf16ps tmm0, tmm2, tmm3",
                    a = in(reg) pa, b = in(reg) pb,
                    sa = in(reg) a_ld, sb = in(reg) b_ld,
                    options(nostack, readonly),
                );
            }
        }
    }
}

/// The tile step in plain Rust: the same products of the same bf16 operands, accumulated in
/// f32 (the order within a pair may differ from AMX's in the last bit).
#[derive(Debug, Clone, Default)]
pub struct Emulated {
    acc: [[[f32; TILE]; TILE]; 2],
}

impl Tiles for Emulated {
    fn zero(&mut self) {
        self.acc = [[[0.0; TILE]; TILE]; 2];
    }

    fn load(&mut self, i: usize, src: &[f32], offset: usize, ld: usize) {
        check_operand(src.len() * 4, offset * 4, ld * 4, 64);
        for (r, row) in self.acc[i].iter_mut().enumerate() {
            row.copy_from_slice(&src[offset + r * ld..][..TILE]);
        }
    }

    fn store(&mut self, i: usize, dst: &mut [f32], offset: usize, ld: usize) {
        check_operand(dst.len() * 4, offset * 4, ld * 4, 64);
        for (r, row) in self.acc[i].iter().enumerate() {
            dst[offset + r * ld..][..TILE].copy_from_slice(row);
        }
    }

    fn dot(
        &mut self,
        a: &[u8],
        a_at: usize,
        a_ld: usize,
        b: &[u8],
        b_at: usize,
        b_ld: usize,
        two: bool,
    ) {
        check_dot(a, a_at, a_ld, b, b_at, b_ld, two);
        let half =
            |bytes: &[u8], at: usize| bf16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
        for i in 0..if two { 2 } else { 1 } {
            for (r, row) in self.acc[i].iter_mut().enumerate() {
                for p in 0..TILE {
                    let at = a_at + r * a_ld + 4 * p;
                    let (a0, a1) = (half(a, at), half(a, at + 2));
                    for (col, acc) in row.iter_mut().enumerate() {
                        let bt = b_at + 64 * i + p * b_ld + 4 * col;
                        *acc += a0 * half(b, bt) + a1 * half(b, bt + 2);
                    }
                }
            }
        }
    }
}

/// The tile step with AVX512-BF16 (`vdpbf16ps`, Cooper Lake and Zen 4 on), for CPUs without
/// AMX: the accumulators stay in memory between steps (as [`Emulated`]'s) and in 16 vector
/// registers during one.
#[derive(Debug, Clone, Default)]
pub struct Avx512Bf16(Emulated);

impl Avx512Bf16 {
    /// The step, where the CPU runs AVX512-BF16.
    pub fn new() -> Option<Self> {
        avx512_bf16().then(Avx512Bf16::default)
    }
}

impl Tiles for Avx512Bf16 {
    fn zero(&mut self) {
        self.0.zero()
    }

    fn load(&mut self, i: usize, src: &[f32], offset: usize, ld: usize) {
        self.0.load(i, src, offset, ld)
    }

    fn store(&mut self, i: usize, dst: &mut [f32], offset: usize, ld: usize) {
        self.0.store(i, dst, offset, ld)
    }

    fn dot(
        &mut self,
        a: &[u8],
        a_at: usize,
        a_ld: usize,
        b: &[u8],
        b_at: usize,
        b_ld: usize,
        two: bool,
    ) {
        check_dot(a, a_at, a_ld, b, b_at, b_ld, two);
        #[cfg(target_arch = "x86_64")]
        {
            assert!(
                avx512_bf16(),
                "the AVX512-BF16 tile step on a CPU without it"
            );
            for i in 0..if two { 2 } else { 1 } {
                // SAFETY: the CPU has AVX512F and AVX512-BF16 (asserted); every row read lies
                // in `a` and `b` (checked above).
                unsafe {
                    dot_avx512_bf16(&mut self.0.acc[i], a, a_at, a_ld, b, b_at + 64 * i, b_ld)
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.0.dot(a, a_at, a_ld, b, b_at, b_ld, two)
    }
}

/// `acc += A * B` for one 16 x 16 accumulator: per pair row of `B` (one 512-bit load), 16
/// `vdpbf16ps` against the broadcast pairs of `A`'s rows.
///
/// # Safety
///
/// The CPU must support AVX512F and AVX512-BF16; `A`'s 16 rows of 64 bytes at `a_at` (stride
/// `a_ld`) must lie in `a` and `B`'s 16 rows of 64 bytes at `b_at` (stride `b_ld`) in `b`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dot_avx512_bf16(
    acc: &mut [[f32; TILE]; TILE],
    a: &[u8],
    a_at: usize,
    a_ld: usize,
    b: &[u8],
    b_at: usize,
    b_ld: usize,
) {
    use std::arch::x86_64::*;
    let mut c: [__m512; TILE] = std::array::from_fn(|r| _mm512_loadu_ps(acc[r].as_ptr()));
    for p in 0..TILE {
        let bv: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(b.as_ptr().add(b_at + p * b_ld).cast()));
        for (r, cr) in c.iter_mut().enumerate() {
            let pair =
                std::ptr::read_unaligned(a.as_ptr().add(a_at + r * a_ld + 4 * p).cast::<i32>());
            *cr = _mm512_dpbf16_ps(
                *cr,
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair)),
                bv,
            );
        }
    }
    for (row, cr) in acc.iter_mut().zip(&c) {
        _mm512_storeu_ps(row.as_mut_ptr(), *cr);
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
    fn every_kernel_this_cpu_runs_computes_the_same_product() {
        let mut kernels = vec![Kernel::Portable];
        if avx512_bf16() {
            kernels.push(Kernel::Avx512Bf16);
        } else {
            println!("skipped: the AVX512-BF16 kernel's products (no AVX512-BF16 on this CPU)");
        }
        if amx() {
            kernels.push(Kernel::Amx);
        } else {
            println!("skipped: the AMX kernel's products (no AMX on this CPU)");
        }
        eprintln!(
            "kernels run here: {kernels:?} (the default: {:?})",
            kernel()
        );
        for &(m, n, k) in &[(1, 1, 1), (16, 64, 32), (17, 130, 75), (33, 200, 512)] {
            let a = values(m * k, 7);
            let b = values(k * n, 8);
            let (pa, pb) = (
                PackedLhs::new(m, k, &a, k, 1),
                PackedRhs::new(k, n, &b, n, 1),
            );
            let exact = reference(m, n, k, (&a, k, 1), (&b, n, 1), true);
            for &kernel in &kernels {
                let mut dst = vec![0f32; m * n];
                matmul_packed_with(kernel, &mut dst, n, false, &pa, &pb, m, n, pb.np);
                for (got, want) in dst.iter().zip(&exact) {
                    assert!(
                        (f64::from(*got) - want).abs() <= 1e-6 * k as f64,
                        "{kernel:?} ({m}, {n}, {k}): {got} against {want}"
                    );
                }
            }
        }
    }

    /// The tile steps of [`Amx`] and [`Avx512Bf16`] (where they run; elsewhere the test says
    /// which it skipped) equal [`Emulated`]'s, at unaligned offsets and strides, with one
    /// accumulator or two, loaded from and stored to memory.
    #[test]
    fn amx_tiles_equal_the_emulated_ones() {
        fn run<T: Tiles>(tiles: &mut T, a: &[u16], b: &[u16], acc: &mut [f32]) {
            let (a, b) = (bytes(a), bytes(b));
            tiles.zero();
            tiles.dot(a, 6, 100, b, 2, 132, true);
            tiles.dot(a, 70, 68, b, 10, 130, false);
            tiles.store(0, acc, 3, 40);
            tiles.store(1, acc, 19, 40);
            tiles.load(1, acc, 3, 40);
            tiles.dot(a, 0, 64, b, 0, 128, true);
            tiles.store(0, acc, 660, 40);
            tiles.store(1, acc, 676, 40);
        }
        let a: Vec<u16> = values(1200, 11).iter().map(|&v| round_to_bf16(v)).collect();
        let b: Vec<u16> = values(1200, 12).iter().map(|&v| round_to_bf16(v)).collect();
        let mut want = vec![0f32; 1400];
        run(&mut Emulated::default(), &a, &b, &mut want);
        assert!(
            want.iter().any(|&v| v.abs() > 1.0),
            "the products are not trivial"
        );
        let check = |what: &str, got: &[f32]| {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{what}: element {i}: {g} against {w}"
                );
            }
        };
        match Avx512Bf16::new() {
            Some(mut avx) => {
                let mut got = vec![0f32; 1400];
                run(&mut avx, &a, &b, &mut got);
                check("AVX512-BF16", &got);
            }
            None => println!(
                "skipped: the AVX512-BF16 tile step against the emulated one (no AVX512-BF16 \
                 on this CPU)"
            ),
        }
        match Amx::new() {
            Some(mut amx) => {
                let mut got = vec![0f32; 1400];
                run(&mut amx, &a, &b, &mut got);
                check("AMX", &got);
            }
            None => {
                println!("skipped: the AMX tile step against the emulated one (no AMX on this CPU)")
            }
        }
    }
}
