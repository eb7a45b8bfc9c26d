//! Throughput of the bf16 matrix product (packing included) against `gemm`'s f32 one, on the
//! shapes of a fused 3x3 layer's per-tap product: out (g x pixels) += W (g x C) * band (C x pixels).
//!
//!     cargo run --release -p logdense-kernels --example bf16_matmul [-- REPEATS]
//!
//! One thread (the layer runs one product per tile and thread). Prints GFLOP/s (2 m n k per
//! product) of f32, of bf16 with both operands packed on every call, and of bf16 on operands
//! packed once (as a layer would: weights once per step, the band filled in bf16), with the
//! ratios to f32.

use logdense_kernels::bf16;
use std::time::Instant;

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    println!(
        "micro-kernel: {:?} (AMX: {}, AVX512-BF16: {})",
        bf16::kernel(),
        bf16::amx(),
        bf16::avx512_bf16()
    );
    println!(
        "{:>4} {:>5} {:>6} {:>12} {:>12} {:>6}",
        "m", "k", "n", "f32 GFLOP/s", "bf16 GFLOP/s", "ratio"
    );
    for &(m, k, n) in &[
        (16, 64, 1024),
        (16, 256, 1024),
        (32, 512, 1024),
        (128, 512, 1024),
    ] {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5) % 11) as f32 / 11.0 - 0.5)
            .collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64 * repeats as f64;
        let t = Instant::now();
        for _ in 0..repeats {
            // SAFETY: a, b and c are m x k, k x n and m x n row-major, and c is separate.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        }
        let f32_rate = flops / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for _ in 0..repeats {
            bf16::matmul(m, n, k, &mut c, n, false, (&a, k, 1), (&b, n, 1));
        }
        let bf16_rate = flops / t.elapsed().as_secs_f64() / 1e9;
        let (pa, pb) = (
            bf16::PackedLhs::new(m, k, &a, k, 1),
            bf16::PackedRhs::new(k, n, &b, n, 1),
        );
        let t = Instant::now();
        for _ in 0..repeats {
            bf16::matmul_packed(&mut c, n, false, &pa, &pb);
        }
        let packed_rate = flops / t.elapsed().as_secs_f64() / 1e9;
        println!(
            "{m:>4} {k:>5} {n:>6} {f32_rate:>12.1} {bf16_rate:>12.1} {:>6.2} {packed_rate:>14.1} {:>6.2}",
            bf16_rate / f32_rate,
            packed_rate / f32_rate
        );
    }
}
