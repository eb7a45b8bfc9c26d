#![warn(missing_docs)]
//! # logdense-kernels
//!
//! The CPU kernels behind `logdense`'s fused layers, on plain `f32` slices in NCHW order, with
//! no tensor library:
//!
//! - [`conv`]: a dense layer's BN-ReLU-conv over a *list* of inputs (the channel-wise
//!   concatenation the layer reads is never formed), forward and backward, with batch
//!   statistics or given ones, on row-band tiles in parallel, with direct AVX-512 kernels
//!   (`gemm`'s kernels on CPUs without AVX-512);
//! - [`resample`]: the transitions' 2x2 average pool and the stride-2 3x3 overlap-add that
//!   turns a 1x1 convolution into a 3x3 stride-2 transposed convolution, forward and backward;
//! - [`bf16`]: bfloat16 rounding, matrix products with bf16 operands and f32 accumulation
//!   (AMX tiles, `vdpbf16ps` on AVX512-BF16, a portable loop elsewhere) and the tile step
//!   ([`bf16::Tiles`]) the mixed-precision fused layer ([`conv::Precision::Bf16`]) is written in;
//! - [`naive`]: textbook reference implementations of the same operations (concatenate, batch
//!   norm, ReLU, direct convolution, window average, transposed convolution) in plain loops
//!   with `f64` arithmetic, which the tests hold the fast kernels to.
//!
//! Why a crate of its own: a sparse-dense network spends most of its time in these loops, and
//! they are easier to test exhaustively, benchmark and reason about without the autodiff
//! machinery around them. `logdense` wraps them as burn operations with handwritten backward
//! steps. The crate's `unsafe` is confined to [`conv`] (a bounds-checked call of `gemm`'s
//! matrix product on raw pointers, the direct kernels' AVX-512 register blocks on
//! bounds-checked bands, an output buffer that parallel tiles write disjoint rows of, outputs
//! and input gradients allocated unwritten because every element is written once), [`bf16`]
//! (AMX tiles through inline assembly on bounds-checked operands, the AVX512-BF16
//! micro-kernel) and the AVX-512 copies of the elementwise loops, each called only where the
//! CPU has the instructions; each states its contract in a `# Safety` section.

/// Whether the CPU runs the AVX-512 versions of the elementwise loops (the crate is built for
/// baseline x86-64; these loops vectorise 16 lanes wide when compiled for AVX-512).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512bw")
}

/// Runs the elementwise loop `$plain(args)` compiled for AVX-512 where the CPU has it: defines
/// `$name` (the dispatch) and its AVX-512 copy.
macro_rules! avx512_copy {
    ($(#[$doc:meta])* fn $name:ident / $fast:ident = $plain:ident ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if $crate::avx512() {
                // SAFETY: the CPU has AVX512F and AVX512BW (checked just above).
                return unsafe { $fast($($arg),*) };
            }
            $plain($($arg),*)
        }

        /// The AVX-512 copy of the loop.
        ///
        /// # Safety
        ///
        /// The CPU must support AVX512F and AVX512BW.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fast($($arg: $ty),*) $(-> $ret)? {
            $plain($($arg),*)
        }
    };
}

pub mod bf16;
pub mod conv;
pub mod naive;
pub mod resample;

pub use conv::{Affine, Geometry, Gradients};
pub use resample::Resample;
