//! Which kernels run: the f32 kernels (direct, Winograd or `gemm`'s, per thread or by
//! environment variable), the process-wide precision, and the mixed-precision tile step.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// The f32 kernels of [`forward`] and [`backward`]. Where the CPU lacks AVX-512 only `gemm`'s
/// run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum F32Kernels {
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
pub(super) fn f32_kernel_choice() -> F32Kernels {
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
            $kernel(|| crate::bf16::Amx::new().expect("AMX runs here"), $($arg),+)
        } else if crate::bf16::avx512_bf16() {
            $kernel(crate::bf16::Avx512Bf16::default, $($arg),+)
        } else {
            $kernel(crate::bf16::Emulated::default, $($arg),+)
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
