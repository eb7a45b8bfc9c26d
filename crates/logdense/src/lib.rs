#![warn(missing_docs)]
//! # logdense
//!
//! Log-DenseNet and its family of sparse-skip networks on burn, in the design's layers:
//! [`model`] (layers, fused kernels, the network that executes [`logdense_graph`]'s graphs,
//! presets), [`datasets`] (the data-set registry over [`logdense_data`]), [`training`] (one
//! task config, the engine, runs, checkpoints, reports) and [`experiments`] (the paper's grids,
//! benchmarks, the device check); [`interop`] takes models in and out (ONNX, safetensors,
//! PyTorch and torchvision state dicts).

pub mod datasets;
pub mod device;
pub mod error;
pub mod experiments;
pub mod fuzzing;
pub mod interop;
pub mod model;
pub mod training;

pub use logdense_data as data;
pub use logdense_graph as graph;
pub use model::network::{NetOptions, SparseDenseNet};

/// Runs `work` on a thread of rayon's global pool, the one burn's flex backend, gemm and our
/// fused kernels split their work over. The CLI runs every command through it, and a program
/// that trains through this library should too. Called from the main thread, every parallel
/// op would hand its work to the pool's threads (one per core) and block, and between ops
/// those threads spin and yield beside the main thread: three busy threads on two cores. On a
/// pool thread the caller works on its own ops' parts instead (the figures:
/// docs/2026-11-performance-history.md, "The caller on the compute pool"). The CLI's
/// `--no-compute-pool` skips it, for comparisons.
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // The pool's threads get the main thread's 8 MiB stack (rayon's default is 2 MiB), so that
    // nothing that ran on the main thread runs out of stack on a pool thread. In the CLI this is
    // the pool's first use; should it already exist, it is used as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    rayon::scope(|_| work())
}

#[cfg(test)]
mod tests {
    use super::on_compute_pool;

    #[test]
    fn work_runs_on_a_thread_of_the_compute_pool() {
        // Outside the pool, rayon reports no worker index; inside, the caller is a worker, and
        // parallel work it starts still runs (and sums) correctly from there.
        assert_eq!(rayon::current_thread_index(), None);
        let (index, sum) = on_compute_pool(|| {
            use rayon::prelude::*;
            let sum: u64 = (1..=1000u64).into_par_iter().sum();
            (rayon::current_thread_index(), sum)
        });
        assert!(index.is_some(), "the work ran outside rayon's pool");
        assert_eq!(sum, 500_500);
    }
}
