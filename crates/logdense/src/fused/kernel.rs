//! The fused dense-layer kernels on plain `f32` slices: BN-ReLU-conv over a *list* of NCHW
//! inputs, forward and backward, with no concatenated copy, no stored BN or ReLU output and no
//! transposed convolution.
//!
//! Every convolution is a GEMM over a tile of output pixels (columns of the `B x H x W` pixel
//! grid, possibly spanning images). The tile's im2col matrix is packed straight from the
//! inputs, applying the batch-norm affine and the ReLU while packing, and handed to `gemm`'s
//! AVX-512 kernels. The input gradient is itself a convolution of the output gradient with the
//! transposed weights, so it is tiled the same way and never needs a col2im scatter: tiles are
//! independent and run in parallel.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Output pixels per GEMM tile: large enough for full micro-kernel panels, small enough that the
/// packed im2col tile of a wide layer stays in L2/L3.
const TILE: usize = 256;

/// Shapes of one fused call: `inputs[j]` is `[batch, channels[j], height, width]`, the
/// convolution has `out_channels` filters of `kernel x kernel` (stride 1, "same" padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: Vec<usize>,
    pub out_channels: usize,
    pub kernel: usize,
}

impl Geometry {
    pub fn in_channels(&self) -> usize {
        self.channels.iter().sum()
    }
    fn pixels(&self) -> usize {
        self.height * self.width
    }
    fn columns(&self) -> usize {
        self.batch * self.pixels()
    }
    fn taps(&self) -> usize {
        self.kernel * self.kernel
    }
    /// Rows of the im2col matrix of the inputs (= the weight's columns).
    fn patch(&self) -> usize {
        self.in_channels() * self.taps()
    }
    /// The same convolution seen from the output gradient: one "input" of `out_channels`.
    fn of_output(&self) -> Geometry {
        Geometry {
            channels: vec![self.out_channels],
            out_channels: self.in_channels(),
            ..self.clone()
        }
    }
}

/// Per-channel mean and biased variance over batch and space, accumulated in f64.
pub fn batch_stats(geo: &Geometry, inputs: &[&[f32]]) -> (Vec<f32>, Vec<f32>) {
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
                let (s, q) = plane
                    .iter()
                    .fold((0f32, 0f32), |(s, q), &v| (s + v, q + v * v));
                sum += s as f64;
                sq += q as f64;
            }
            let mean = sum / count;
            ((mean) as f32, (sq / count - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

/// The batch-norm affine `scale * x + shift` per channel, from the statistics it normalises with.
#[derive(Debug, Clone)]
pub struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

impl Affine {
    pub fn new(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], epsilon: f64) -> Self {
        let inv_std: Vec<f32> = var
            .iter()
            .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
            .collect();
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, r)| g * r).collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Affine {
            scale,
            shift,
            mean: mean.to_vec(),
            inv_std,
        }
    }
}

/// A run of tile columns inside one image row: tile offset, image, row, first column, length.
struct RowRun {
    offset: usize,
    image: usize,
    y: usize,
    x: usize,
    len: usize,
}

fn row_runs(geo: &Geometry, start: usize, n: usize) -> impl Iterator<Item = RowRun> + '_ {
    let (hw, w) = (geo.pixels(), geo.width);
    let mut q = start;
    std::iter::from_fn(move || {
        if q >= start + n {
            return None;
        }
        let (image, pix) = (q / hw, q % hw);
        let (y, x) = (pix / w, pix % w);
        let len = (w - x).min(start + n - q);
        let run = RowRun {
            offset: q - start,
            image,
            y,
            x,
            len,
        };
        q += len;
        Some(run)
    })
}

/// A run of tile columns inside one image: tile offset, image, first pixel, length.
fn image_runs(
    hw: usize,
    start: usize,
    n: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut q = start;
    std::iter::from_fn(move || {
        if q >= start + n {
            return None;
        }
        let (image, pix) = (q / hw, q % hw);
        let len = (hw - pix).min(start + n - q);
        let run = (q - start, image, pix, len);
        q += len;
        Some(run)
    })
}

/// Packs the im2col matrix (`patch x n`, row-major, rows ordered channel, ky, kx) of
/// `act(channel, value)` over the inputs for tile columns `start..start + n`; zero padding is
/// applied after `act`, as a padded convolution of the activated tensor sees it.
fn im2col(
    geo: &Geometry,
    inputs: &[&[f32]],
    start: usize,
    n: usize,
    col: &mut [f32],
    act: impl Fn(usize, f32) -> f32,
) {
    let (h, w, k) = (geo.height as isize, geo.width, geo.kernel);
    let pad = (k / 2) as isize;
    let hw = geo.pixels();
    for run in row_runs(geo, start, n) {
        let mut c = 0;
        for (j, &cj) in geo.channels.iter().enumerate() {
            for cl in 0..cj {
                let plane = &inputs[j][(run.image * cj + cl) * hw..][..hw];
                for ky in 0..k {
                    let yy = run.y as isize + ky as isize - pad;
                    for kx in 0..k {
                        let row = (c * k + ky) * k + kx;
                        let dst = &mut col[row * n + run.offset..][..run.len];
                        if yy < 0 || yy >= h {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &plane[yy as usize * w..][..w];
                        // Columns of this run whose shifted source column lies inside the row.
                        let shift = kx as isize - pad;
                        let lo = (-(run.x as isize) - shift).clamp(0, run.len as isize) as usize;
                        let hi = (w as isize - run.x as isize - shift)
                            .clamp(lo as isize, run.len as isize)
                            as usize;
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let first = (run.x as isize + lo as isize + shift) as usize;
                        for (d, &s) in dst[lo..hi].iter_mut().zip(&src[first..first + hi - lo]) {
                            *d = act(c, s);
                        }
                    }
                }
                c += 1;
            }
        }
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, all given by (row stride, column stride).
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    // SAFETY: callers pass pointers to buffers holding the addressed (m, k), (k, n) and (m, n)
    // strided matrices; `dst` does not alias `lhs` or `rhs`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// A raw pointer that tiles write through: every tile owns a disjoint set of output columns.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: used only for writes to disjoint index sets from different threads.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// Splits the tiles of `columns` into one contiguous share per thread and runs `work` on each
/// share (`work(first column, columns)` per tile through `each`), returning each share's state.
fn for_tiles<S: Send>(
    columns: usize,
    init: impl Fn() -> S + Sync,
    each: impl Fn(&mut S, usize, usize) + Sync,
) -> Vec<S> {
    let tiles = columns.div_ceil(TILE);
    let shares = rayon::current_num_threads().clamp(1, tiles.max(1));
    (0..shares)
        .into_par_iter()
        .map(|s| {
            let mut state = init();
            for t in (s * tiles / shares)..((s + 1) * tiles / shares) {
                let start = t * TILE;
                each(&mut state, start, TILE.min(columns - start));
            }
            state
        })
        .collect()
}

/// `out[b, g] = sum over c, ky, kx of weight[g, c, ky, kx] * relu(affine(x))[b, c, shifted]`.
/// `weight` is `[out_channels, in_channels, kernel, kernel]`; `out` is `[batch, out_channels, H, W]`.
pub fn forward(
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [f32],
) {
    let (g, patch, hw) = (geo.out_channels, geo.patch(), geo.pixels());
    assert_eq!(weight.len(), g * patch, "weight shape");
    assert_eq!(out.len(), geo.batch * g * hw, "output shape");
    let out_ptr = Shared(out.as_mut_ptr());
    let act = |c: usize, v: f32| (affine.scale[c] * v + affine.shift[c]).max(0.0);
    for_tiles(
        geo.columns(),
        || (vec![0f32; patch * TILE], vec![0f32; g * TILE]),
        |(col, tile), start, n| {
            im2col(geo, inputs, start, n, col, act);
            matmul(
                g,
                n,
                patch,
                (tile.as_mut_ptr(), n, 1),
                false,
                (weight.as_ptr(), patch, 1),
                (col.as_ptr(), n, 1),
            );
            let out_ptr = out_ptr;
            for (offset, image, pix, len) in image_runs(hw, start, n) {
                for f in 0..g {
                    // SAFETY: (image, f, pix..pix + len) belongs to this tile's columns only.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            out_ptr.0.add((image * g + f) * hw + pix),
                            len,
                        )
                    };
                    dst.copy_from_slice(&tile[f * n + offset..][..len]);
                }
            }
        },
    );
}

/// Gradients of [`forward`] with respect to each input, gamma, beta and the weight.
#[derive(Debug, Clone)]
pub struct Gradients {
    pub inputs: Vec<Vec<f32>>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub weight: Vec<f32>,
}

/// The backward pass of [`forward`]. With `batch_stats` the affine came from this batch's
/// statistics, so the input gradient includes their dependence on the input (training-mode BN);
/// otherwise the statistics are constants (running averages).
pub fn backward(
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    weight: &[f32],
    out_grad: &[f32],
) -> Gradients {
    let (g, patch, hw, taps) = (geo.out_channels, geo.patch(), geo.pixels(), geo.taps());
    let channels = geo.in_channels();
    let of_output = geo.of_output();
    // W' [c, (g, ky, kx)] = W[g, c, k-1-ky, k-1-kx]: the weights seen from the output
    // gradient, whose im2col reads dOut at +ky where the convolution read its input at -ky.
    let mut weight_t = vec![0f32; channels * g * taps];
    for f in 0..g {
        for c in 0..channels {
            for t in 0..taps {
                weight_t[c * g * taps + f * taps + t] =
                    weight[(f * channels + c) * taps + taps - 1 - t];
            }
        }
    }
    let mut grad_inputs: Vec<Vec<f32>> = geo
        .channels
        .iter()
        .map(|&c| vec![0f32; geo.batch * c * hw])
        .collect();
    let grad_ptrs: Vec<Shared> = grad_inputs
        .iter_mut()
        .map(|v| Shared(v.as_mut_ptr()))
        .collect();
    let centre = (geo.kernel / 2) * geo.kernel + geo.kernel / 2;
    let act = |c: usize, v: f32| (affine.scale[c] * v + affine.shift[c]).max(0.0);

    struct Share {
        col: Vec<f32>,
        out_col: Vec<f32>,
        dy: Vec<f32>,
        weight: Vec<f32>,
        sum_dy: Vec<f64>,
        sum_dy_xhat: Vec<f64>,
    }
    let shares = for_tiles(
        geo.columns(),
        || Share {
            col: vec![0f32; patch * TILE],
            out_col: vec![0f32; g * taps * TILE],
            dy: vec![0f32; channels * TILE],
            weight: vec![0f32; g * patch],
            sum_dy: vec![0f64; channels],
            sum_dy_xhat: vec![0f64; channels],
        },
        |s, start, n| {
            im2col(&of_output, &[out_grad], start, n, &mut s.out_col, |_, v| v);
            im2col(geo, inputs, start, n, &mut s.col, act);
            // dW (g x patch) += dOut (g x n) * col^T (n x patch); dOut is the centre tap.
            matmul(
                g,
                patch,
                n,
                (s.weight.as_mut_ptr(), patch, 1),
                true,
                (s.out_col[centre * n..].as_ptr(), taps * n, 1),
                (s.col.as_ptr(), 1, n),
            );
            // dY (channels x n) = W' (channels x g*taps) * im2col(dOut) (g*taps x n).
            matmul(
                channels,
                n,
                g * taps,
                (s.dy.as_mut_ptr(), n, 1),
                false,
                (weight_t.as_ptr(), g * taps, 1),
                (s.out_col.as_ptr(), n, 1),
            );
            // Through the ReLU; gather the BN sums; park dY_pre-ReLU in the input gradients.
            for (offset, image, pix, len) in image_runs(hw, start, n) {
                let mut c = 0;
                for (j, &cj) in geo.channels.iter().enumerate() {
                    for cl in 0..cj {
                        let at = (image * cj + cl) * hw + pix;
                        let x = &inputs[j][at..][..len];
                        // SAFETY: (image, cl, pix..pix + len) belongs to this tile's columns only.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(grad_ptrs[j].0.add(at), len) };
                        let (scale, shift) = (affine.scale[c], affine.shift[c]);
                        let (mean, inv_std) = (affine.mean[c], affine.inv_std[c]);
                        let (mut sd, mut sdx) = (0f32, 0f32);
                        for ((d, &v), &dy) in
                            dst.iter_mut().zip(x).zip(&s.dy[c * n + offset..][..len])
                        {
                            let g = if scale * v + shift > 0.0 { dy } else { 0.0 };
                            *d = g;
                            sd += g;
                            sdx += g * (v - mean) * inv_std;
                        }
                        s.sum_dy[c] += sd as f64;
                        s.sum_dy_xhat[c] += sdx as f64;
                        c += 1;
                    }
                }
            }
        },
    );
    let mut grad_weight = vec![0f32; g * patch];
    let mut sum_dy = vec![0f64; channels];
    let mut sum_dy_xhat = vec![0f64; channels];
    for s in &shares {
        grad_weight
            .iter_mut()
            .zip(&s.weight)
            .for_each(|(a, b)| *a += b);
        sum_dy.iter_mut().zip(&s.sum_dy).for_each(|(a, b)| *a += b);
        sum_dy_xhat
            .iter_mut()
            .zip(&s.sum_dy_xhat)
            .for_each(|(a, b)| *a += b);
    }
    // Through the batch norm, plane by plane.
    let count = geo.columns() as f32;
    let mut offset = 0;
    for (j, grad) in grad_inputs.iter_mut().enumerate() {
        let cj = geo.channels[j];
        let first = offset;
        grad.par_chunks_mut(hw)
            .enumerate()
            .for_each(|(plane, dst)| {
                let c = first + plane % cj;
                let x = &inputs[j][plane * hw..][..hw];
                let k = gamma[c] * affine.inv_std[c];
                if batch_stats {
                    let (mean_dy, mean_dy_xhat) =
                        (sum_dy[c] as f32 / count, sum_dy_xhat[c] as f32 / count);
                    let (mean, inv_std) = (affine.mean[c], affine.inv_std[c]);
                    for (d, &v) in dst.iter_mut().zip(x) {
                        *d = k * (*d - mean_dy - (v - mean) * inv_std * mean_dy_xhat);
                    }
                } else {
                    dst.iter_mut().for_each(|d| *d *= k);
                }
            });
        offset += cj;
    }
    Gradients {
        inputs: grad_inputs,
        gamma: sum_dy_xhat.iter().map(|&v| v as f32).collect(),
        beta: sum_dy.iter().map(|&v| v as f32).collect(),
        weight: grad_weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
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

    /// The textbook definition: concatenate, normalise, ReLU, direct convolution.
    fn naive_forward(
        geo: &Geometry,
        inputs: &[&[f32]],
        affine: &Affine,
        weight: &[f32],
    ) -> Vec<f32> {
        let (h, w, k, hw) = (geo.height, geo.width, geo.kernel, geo.height * geo.width);
        let c_all = geo.in_channels();
        let mut cat = vec![0f32; geo.batch * c_all * hw];
        for b in 0..geo.batch {
            let mut c = 0;
            for (j, &cj) in geo.channels.iter().enumerate() {
                for cl in 0..cj {
                    for p in 0..hw {
                        let v = inputs[j][(b * cj + cl) * hw + p];
                        cat[(b * c_all + c) * hw + p] =
                            (affine.scale[c] * v + affine.shift[c]).max(0.0);
                    }
                    c += 1;
                }
            }
        }
        let pad = (k / 2) as isize;
        let mut out = vec![0f32; geo.batch * geo.out_channels * hw];
        for b in 0..geo.batch {
            for f in 0..geo.out_channels {
                for y in 0..h {
                    for x in 0..w {
                        let mut acc = 0f32;
                        for c in 0..c_all {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let (yy, xx) = (
                                        y as isize + ky as isize - pad,
                                        x as isize + kx as isize - pad,
                                    );
                                    if yy >= 0 && yy < h as isize && xx >= 0 && xx < w as isize {
                                        acc += weight[((f * c_all + c) * k + ky) * k + kx]
                                            * cat[(b * c_all + c) * hw
                                                + yy as usize * w
                                                + xx as usize];
                                    }
                                }
                            }
                        }
                        out[(b * geo.out_channels + f) * hw + y * w + x] = acc;
                    }
                }
            }
        }
        out
    }

    fn case(
        kernel: usize,
        height: usize,
        width: usize,
    ) -> (Geometry, Vec<Vec<f32>>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let geo = Geometry {
            batch: 3,
            height,
            width,
            channels: vec![2, 3, 1],
            out_channels: 4,
            kernel,
        };
        let inputs: Vec<Vec<f32>> = geo
            .channels
            .iter()
            .enumerate()
            .map(|(j, &c)| values(geo.batch * c * height * width, 10 + j as u64))
            .collect();
        let c = geo.in_channels();
        let gamma: Vec<f32> = values(c, 3).iter().map(|v| 1.0 + 0.5 * v).collect();
        let beta = values(c, 4).iter().map(|v| 0.3 * v).collect();
        let weight = values(geo.out_channels * c * kernel * kernel, 5);
        (geo, inputs, gamma, beta, weight)
    }

    #[test]
    fn forward_matches_the_naive_definition_for_1x1_and_3x3_across_tile_boundaries() {
        // 23 x 17 x 3 images: 1173 columns, so tiles straddle rows and images.
        for kernel in [1, 3] {
            let (geo, inputs, gamma, beta, weight) = case(kernel, 23, 17);
            let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
            let (mean, var) = batch_stats(&geo, &refs);
            let affine = Affine::new(&gamma, &beta, &mean, &var, 1e-5);
            let mut out = vec![0f32; geo.batch * geo.out_channels * 23 * 17];
            forward(&geo, &refs, &affine, &weight, &mut out);
            let expected = naive_forward(&geo, &refs, &affine, &weight);
            let worst = out
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "kernel {kernel}: max error {worst}");
        }
    }

    #[test]
    fn batch_stats_are_the_per_channel_mean_and_biased_variance() {
        let (geo, inputs, ..) = case(3, 5, 4);
        let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let (mean, var) = batch_stats(&geo, &refs);
        // Channel 3 is input 1's channel 1.
        let hw = 20;
        let vals: Vec<f32> = (0..geo.batch)
            .flat_map(|b| inputs[1][(b * 3 + 1) * hw..][..hw].to_vec())
            .collect();
        let m = vals.iter().sum::<f32>() / vals.len() as f32;
        let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / vals.len() as f32;
        assert!((mean[3] - m).abs() < 1e-6 && (var[3] - v).abs() < 1e-6);
    }

    /// Loss = sum(out * probe): its gradients by central differences against `backward`.
    #[test]
    fn backward_matches_finite_differences_in_training_and_eval_mode() {
        for (kernel, batch_mode) in [(3, true), (1, true), (3, false)] {
            let (geo, inputs, gamma, beta, weight) = case(kernel, 6, 5);
            let probe = values(geo.batch * geo.out_channels * 30, 99);
            let (run_mean, run_var) = (
                values(6, 7),
                values(6, 8)
                    .iter()
                    .map(|v| 1.0 + 0.5 * v)
                    .collect::<Vec<_>>(),
            );
            let loss = |inputs: &[Vec<f32>], gamma: &[f32], beta: &[f32], weight: &[f32]| -> f64 {
                let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
                let (mean, var) = if batch_mode {
                    batch_stats(&geo, &refs)
                } else {
                    (run_mean.clone(), run_var.clone())
                };
                let affine = Affine::new(gamma, beta, &mean, &var, 1e-5);
                let mut out = vec![0f32; probe.len()];
                forward(&geo, &refs, &affine, weight, &mut out);
                out.iter()
                    .zip(&probe)
                    .map(|(a, b)| (*a as f64) * (*b as f64))
                    .sum()
            };
            let refs: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
            let (mean, var) = if batch_mode {
                batch_stats(&geo, &refs)
            } else {
                (run_mean.clone(), run_var.clone())
            };
            let affine = Affine::new(&gamma, &beta, &mean, &var, 1e-5);
            let grads = backward(&geo, &refs, &gamma, &affine, batch_mode, &weight, &probe);
            let eps = 1e-3f32;
            let check = |analytic: f32, numeric: f64, what: &str| {
                let tol = 2e-2 * (1.0 + numeric.abs());
                assert!(
                    (analytic as f64 - numeric).abs() < tol,
                    "kernel {kernel} batch {batch_mode} {what}: {analytic} vs {numeric}"
                );
            };
            for (j, idx) in [(0usize, 7usize), (1, 40), (2, 61), (1, 3)] {
                let mut plus = inputs.clone();
                plus[j][idx] += eps;
                let mut minus = inputs.clone();
                minus[j][idx] -= eps;
                let numeric = (loss(&plus, &gamma, &beta, &weight)
                    - loss(&minus, &gamma, &beta, &weight))
                    / (2.0 * eps as f64);
                check(grads.inputs[j][idx], numeric, &format!("input {j}[{idx}]"));
            }
            for c in [0usize, 4] {
                let (mut gp, mut gm) = (gamma.clone(), gamma.clone());
                gp[c] += eps;
                gm[c] -= eps;
                check(
                    grads.gamma[c],
                    (loss(&inputs, &gp, &beta, &weight) - loss(&inputs, &gm, &beta, &weight))
                        / (2.0 * eps as f64),
                    "gamma",
                );
                let (mut bp, mut bm) = (beta.clone(), beta.clone());
                bp[c] += eps;
                bm[c] -= eps;
                check(
                    grads.beta[c],
                    (loss(&inputs, &gamma, &bp, &weight) - loss(&inputs, &gamma, &bm, &weight))
                        / (2.0 * eps as f64),
                    "beta",
                );
            }
            for w in [0usize, 13, weight.len() - 1] {
                let (mut wp, mut wm) = (weight.clone(), weight.clone());
                wp[w] += eps;
                wm[w] -= eps;
                check(
                    grads.weight[w],
                    (loss(&inputs, &gamma, &beta, &wp) - loss(&inputs, &gamma, &beta, &wm))
                        / (2.0 * eps as f64),
                    "weight",
                );
            }
        }
    }
}
