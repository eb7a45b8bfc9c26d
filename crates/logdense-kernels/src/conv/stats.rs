//! Batch statistics and the batch norm's backward: per-channel sums over planes, in lanes so
//! that they vectorise.

use rayon::prelude::*;

use super::*;

/// Per-channel mean and biased variance over batch and space, accumulated in f64.
pub fn batch_stats(geo: &Geometry, inputs: &[&[f32]]) -> (Vec<f32>, Vec<f32>) {
    check_inputs(geo, inputs);
    let hw = geo.pixels();
    let count = geo.columns() as f64;
    let planes: Vec<(usize, usize)> = geo
        .channels
        .iter()
        .enumerate()
        .flat_map(|(j, &c)| (0..c).map(move |cl| (j, cl)))
        .collect();
    planes
        .par_iter()
        .map(|&(j, cl)| {
            let c = geo.channels[j];
            let (mut sum, mut sq) = (0f64, 0f64);
            for b in 0..geo.batch {
                let plane = &inputs[j][(b * c + cl) * hw..][..hw];
                if let Some(next) =
                    inputs[j].get(((b + 1) * c + cl) * hw..((b + 1) * c + cl + 1) * hw)
                {
                    prefetch(next);
                }
                let (s, q) = plane_sums(plane);
                sum += s as f64;
                sq += q as f64;
            }
            let mean = sum / count;
            ((mean) as f32, (sq / count - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

avx512_copy! {
    /// The sum and the sum of squares of a plane.
    fn plane_sums / plane_sums_avx512 = plane_sums_plain(plane: &[f32]) -> (f32, f32)
}

#[inline(always)]
fn plane_sums_plain(plane: &[f32]) -> (f32, f32) {
    lane_sums(plane, |v| [v, v * v])
}

avx512_copy! {
    /// One plane through the batch norm's backward: `dst` holds the gradient at its output and
    /// becomes the gradient at its input (`centred`: with the batch statistics' dependence).
    fn bn_plane / bn_plane_avx512 = bn_plane_plain(
        dst: &mut [f32],
        x: &[f32],
        k: f32,
        centred: Option<[f32; 4]>,
    )
}

/// `centred` is `[mean of dy, mean of dy * xhat, mean, 1 / std]`.
#[inline(always)]
fn bn_plane_plain(dst: &mut [f32], x: &[f32], k: f32, centred: Option<[f32; 4]>) {
    match centred {
        Some([mean_dy, mean_dy_xhat, mean, inv_std]) => {
            for (d, &v) in dst.iter_mut().zip(x) {
                *d = k * (*d - mean_dy - (v - mean) * inv_std * mean_dy_xhat);
            }
        }
        None => dst.iter_mut().for_each(|d| *d *= k),
    }
}

/// Lanes of partial sums, so that a sum over a row vectorises (a single f32 accumulator
/// would fix the order of the additions and keep the loop scalar).
const LANES: usize = 16;

/// The sums over `values` of the two quantities `f(value)` gives.
#[inline(always)]
fn lane_sums(values: &[f32], f: impl Fn(f32) -> [f32; 2]) -> (f32, f32) {
    let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            let [p, q] = f(chunk[l]);
            a[l] += p;
            b[l] += q;
        }
    }
    for &v in rest {
        let [p, q] = f(v);
        a[0] += p;
        b[0] += q;
    }
    (a.iter().sum(), b.iter().sum())
}

/// Through the batch norm, plane by plane: `grad_inputs` holds the gradient at the BN output
/// and becomes the gradient at its input (with the batch statistics' dependence on the input
/// when `batch_stats`), from the per-channel sums of [`relu_tile`].
#[allow(clippy::too_many_arguments)]
pub(super) fn bn_backward(
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    grad_inputs: &mut [Vec<f32>],
    sum_dy: &[f64],
    sum_dy_xhat: &[f64],
) {
    let hw = geo.pixels();
    let count = geo.columns() as f32;
    let mut offset = 0;
    for (j, grad) in grad_inputs.iter_mut().enumerate() {
        let cj = geo.channels[j];
        let first = offset;
        grad.par_chunks_mut(hw)
            .enumerate()
            .with_min_len((4096 / hw).max(1))
            .for_each(|(plane, dst)| {
                let c = first + plane % cj;
                let x = &inputs[j][plane * hw..][..hw];
                if let Some(next) = inputs[j].get((plane + 1) * hw..(plane + 2) * hw) {
                    prefetch(next);
                }
                let k = gamma[c] * affine.inv_std[c];
                let centred = batch_stats.then(|| {
                    [
                        sum_dy[c] as f32 / count,
                        sum_dy_xhat[c] as f32 / count,
                        affine.mean[c],
                        affine.inv_std[c],
                    ]
                });
                bn_plane(dst, x, k, centred);
            });
        offset += cj;
    }
}
