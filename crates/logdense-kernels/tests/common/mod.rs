//! Helpers shared by the kernel tests.
#![allow(dead_code)]

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts `|fast - exact| <= tol * max(1, max |exact|)` elementwise, naming the worst element.
pub fn assert_close(fast: &[f32], exact: &[f64], tol: f64, what: &str) {
    assert_eq!(fast.len(), exact.len(), "{what}: lengths differ");
    let scale = exact.iter().fold(1f64, |m, v| m.max(v.abs()));
    let (worst, at) = fast
        .iter()
        .zip(exact)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .enumerate()
        .fold(
            (0f64, 0),
            |(m, i), (j, d)| if d > m { (d, j) } else { (m, i) },
        );
    assert!(
        worst <= tol * scale,
        "{what}: element {at} is {} where {} is exact (error {worst}, scale {scale})",
        fast[at],
        exact[at]
    );
}
