//! Which kernels run: [`Kernels`], the choice a network passes with every call (its
//! precision and its f32 kernel family), the test hooks that set a thread's f32 kernels for
//! the calls that pass none, and the mixed-precision tile step.

use super::*;

/// The kernels of one call of the fused layer: a network option that travels with the model
/// (two models with different choices run side by side in one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kernels {
    /// The operands' precision in the products.
    pub precision: Precision,
    /// The f32 products' kernel family.
    pub f32: F32Kernels,
}

impl Kernels {
    /// The kernels of the calls that pass none ([`forward`], [`backward`], [`forward_new`]):
    /// f32, on this thread's f32 kernels ([`with_gemm_f32`] and its siblings) or the direct
    /// ones.
    pub fn ambient() -> Self {
        Kernels {
            precision: Precision::F32,
            f32: f32_kernel_choice(),
        }
    }

    /// The f32 kernels that run a call with this choice on this CPU: `"direct"`, `"winograd"`
    /// (the 3x3 products of even-sized maps; the direct blocks for the rest) or `"gemm"`
    /// (where asked, or where the CPU lacks AVX-512).
    pub fn f32_name(self) -> &'static str {
        match (direct::chosen(self.f32), self.f32) {
            (false, _) => "gemm",
            (true, F32Kernels::Winograd) => "winograd",
            (true, _) => "direct",
        }
    }
}

/// The f32 kernels of [`forward`] and [`backward`]. Where the CPU lacks AVX-512 only `gemm`'s
/// run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum F32Kernels {
    /// The direct register blocks for every product (the default).
    #[default]
    Direct,
    /// Winograd F(2x2, 3x3) for the 3x3 products where the shapes allow, the direct register
    /// blocks for the rest. Opt-in: on the layers of the presets it ran no faster than the
    /// direct blocks (writing the transformed inputs costs what the products save; see
    /// [`winograd`]).
    Winograd,
    /// `gemm`'s matrix kernels.
    Gemm,
}

impl F32Kernels {
    /// Its name in options and flags: `direct`, `winograd` or `gemm`.
    pub fn name(self) -> &'static str {
        match self {
            F32Kernels::Direct => "direct",
            F32Kernels::Winograd => "winograd",
            F32Kernels::Gemm => "gemm",
        }
    }
}

impl std::str::FromStr for F32Kernels {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(F32Kernels::Direct),
            "winograd" => Ok(F32Kernels::Winograd),
            "gemm" => Ok(F32Kernels::Gemm),
            other => Err(format!(
                "unknown f32 kernels '{other}' (direct, winograd or gemm)"
            )),
        }
    }
}

thread_local! {
    /// Set by [`with_gemm_f32`], [`with_direct_f32`] and [`with_winograd_f32`]: this thread's
    /// f32 kernels.
    static F32_OVERRIDE: std::cell::Cell<Option<F32Kernels>> = const { std::cell::Cell::new(None) };
}

/// The f32 kernels of the calls that pass none: this thread's override, else the direct ones.
fn f32_kernel_choice() -> F32Kernels {
    F32_OVERRIDE.with(|o| o.get()).unwrap_or_default()
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

/// Which f32 kernels this thread's calls that pass no [`Kernels`] run (see
/// [`Kernels::f32_name`]).
pub fn f32_kernels() -> &'static str {
    Kernels::ambient().f32_name()
}
