//! Throughput of the fused BN-ReLU-conv layer alone, forward and backward, on the shapes of
//! ld-v1-12-16's 3x3 layers at batch 64, in each of the f32 paths (the direct AVX-512
//! kernels, the opt-in Winograd products, `gemm`'s kernels) and in bf16.
//!
//!     cargo run --release -p logdense-kernels --example fused_layer [-- REPEATS]
//!
//! All threads of rayon's pool. Prints the fastest call's milliseconds and GFLOP/s of the convolution
//! (2 * outputs * in_channels * 9 multiply-adds per pass; the backward counts two passes).

use logdense_kernels::conv::{
    backward_with, batch_stats, forward_with, with_gemm_f32, with_winograd_f32, Affine, Geometry,
    Kernels, Precision,
};
use std::time::Instant;

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!(
        "{:>10} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "size", "channels", "path", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s"
    );
    for &(size, channels) in &[(32, 48), (32, 112), (16, 64), (16, 128), (8, 96), (8, 160)] {
        let geo = Geometry {
            batch: 64,
            height: size,
            width: size,
            channels: vec![16; channels / 16],
            out_channels: 16,
            kernel: 3,
        };
        let per_input = geo.batch * 16 * size * size;
        let inputs: Vec<Vec<f32>> = (0..channels / 16)
            .map(|j| {
                (0..per_input)
                    .map(|i| ((i * 7 + j * 3) % 23) as f32 / 11.0 - 1.0)
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let weight: Vec<f32> = (0..16 * channels * 9)
            .map(|i| ((i * 5) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let gamma = vec![1f32; channels];
        let beta = vec![0.1f32; channels];
        let (mean, var) = batch_stats(&geo, &refs);
        let affine = Affine::new(&gamma, &beta, &mean, &var, 1e-5);
        let mut out = vec![0f32; geo.batch * 16 * size * size];
        let out_grad: Vec<f32> = (0..out.len())
            .map(|i| ((i * 3) % 19) as f32 / 19.0 - 0.5)
            .collect();
        let flops = 2.0 * (out.len() * channels * 9) as f64;
        let paths = [
            ("direct", Precision::F32),
            ("wino", Precision::F32),
            ("gemm", Precision::F32),
            ("bf16", Precision::Bf16),
        ];
        for (name, precision) in paths {
            // The fastest of the repeats: this shared machine's noise only ever adds time.
            let mut run = || {
                let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
                for _ in 0..repeats {
                    let t = Instant::now();
                    let kernels = Kernels {
                        precision,
                        ..Kernels::ambient()
                    };
                    forward_with(kernels, &geo, &refs, &affine, &weight, &mut out);
                    fwd = fwd.min(t.elapsed().as_secs_f64());
                    let t = Instant::now();
                    let g = backward_with(
                        kernels, &geo, &refs, &gamma, &affine, true, &weight, &out_grad,
                    );
                    bwd = bwd.min(t.elapsed().as_secs_f64());
                    std::hint::black_box(g);
                }
                (fwd, bwd)
            };
            let (fwd, bwd) = match name {
                "wino" => with_winograd_f32(run),
                "gemm" => with_gemm_f32(run),
                _ => run(),
            };
            println!(
                "{:>10} {:>8} {:>6} {:>10.2} {:>10.1} {:>10.2} {:>10.1}",
                format!("{size}x{size}"),
                channels,
                name,
                fwd * 1e3,
                flops / fwd / 1e9,
                bwd * 1e3,
                2.0 * flops / bwd / 1e9
            );
        }
    }
}
