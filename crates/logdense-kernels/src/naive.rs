//! Textbook reference implementations, in plain loops with `f64` arithmetic, of what the fast
//! kernels compute: concatenation, batch normalisation, ReLU, direct "same" convolution, and
//! their composition with its gradients written out from the chain rule; the 2x2 window
//! average; the transposed convolution and, through it, the stride-2 overlap-add.
//!
//! They are slow on purpose (no tiling, no GEMM, no parallelism) and serve as the definitions
//! the tests hold [`crate::conv`] and [`crate::resample`] to. All tensors are NCHW, row-major.

use crate::conv::Geometry;

/// `[n, c, h, w]` as a flat index function.
fn at([_, c, h, w]: [usize; 4], b: usize, ch: usize, y: usize, x: usize) -> usize {
    ((b * c + ch) * h + y) * w + x
}

/// The channel-wise concatenation of `inputs` (`inputs[j]` is `[batch, channels[j], pixels]`).
pub fn concat(inputs: &[&[f64]], channels: &[usize], batch: usize, pixels: usize) -> Vec<f64> {
    let total: usize = channels.iter().sum();
    let mut out = vec![0.0; batch * total * pixels];
    for b in 0..batch {
        let mut c = 0;
        for (x, &cj) in inputs.iter().zip(channels) {
            for cl in 0..cj {
                for p in 0..pixels {
                    out[(b * total + c) * pixels + p] = x[(b * cj + cl) * pixels + p];
                }
                c += 1;
            }
        }
    }
    out
}

/// The inverse of [`concat()`]: the channel groups of `x` (`[batch, sum of channels, pixels]`).
pub fn split(x: &[f64], channels: &[usize], batch: usize, pixels: usize) -> Vec<Vec<f64>> {
    let total: usize = channels.iter().sum();
    let mut first = 0;
    channels
        .iter()
        .map(|&cj| {
            let mut part = vec![0.0; batch * cj * pixels];
            for b in 0..batch {
                for cl in 0..cj {
                    for p in 0..pixels {
                        part[(b * cj + cl) * pixels + p] = x[(b * total + first + cl) * pixels + p];
                    }
                }
            }
            first += cj;
            part
        })
        .collect()
}

/// Per-channel mean and biased variance over batch and space of `x` (`[n, c, h, w]`).
pub fn batch_stats(x: &[f64], dims: [usize; 4]) -> (Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = dims;
    let count = (n * h * w) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        for b in 0..n {
            for y in 0..h {
                for xx in 0..w {
                    mean[ch] += x[at(dims, b, ch, y, xx)];
                }
            }
        }
        mean[ch] /= count;
        for b in 0..n {
            for y in 0..h {
                for xx in 0..w {
                    let d = x[at(dims, b, ch, y, xx)] - mean[ch];
                    var[ch] += d * d;
                }
            }
        }
        var[ch] /= count;
    }
    (mean, var)
}

/// `gamma * (x - mean) / sqrt(var + epsilon) + beta` per channel of `x` (`[n, c, h, w]`).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &[f64],
    dims: [usize; 4],
    mean: &[f64],
    var: &[f64],
    gamma: &[f64],
    beta: &[f64],
    epsilon: f64,
) -> Vec<f64> {
    let [_, c, h, w] = dims;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / (h * w)) % c;
            gamma[ch] * (v - mean[ch]) / (var[ch] + epsilon).sqrt() + beta[ch]
        })
        .collect()
}

/// `max(x, 0)` elementwise.
pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

/// The direct convolution of `x` (`[n, c, h, w]`) with `weight` (`[out_channels, c, k, k]`, odd
/// `k`), stride 1, zero "same" padding `k / 2`, no bias: `[n, out_channels, h, w]`.
pub fn conv2d_same(x: &[f64], dims: [usize; 4], weight: &[f64], out_channels: usize) -> Vec<f64> {
    let [n, c, h, w] = dims;
    let k = ((weight.len() / (out_channels * c)) as f64).sqrt().round() as usize;
    assert_eq!(weight.len(), out_channels * c * k * k, "weight shape");
    let pad = k / 2;
    let out_dims = [n, out_channels, h, w];
    let mut out = vec![0.0; n * out_channels * h * w];
    for b in 0..n {
        for f in 0..out_channels {
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = 0.0;
                    for ch in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (sy, sx) = (y + ky, xx + kx);
                                if sy < pad || sx < pad || sy - pad >= h || sx - pad >= w {
                                    continue;
                                }
                                acc += weight[((f * c + ch) * k + ky) * k + kx]
                                    * x[at(dims, b, ch, sy - pad, sx - pad)];
                            }
                        }
                    }
                    out[at(out_dims, b, f, y, xx)] = acc;
                }
            }
        }
    }
    out
}

/// The statistics a batch norm normalises with.
#[derive(Debug, Clone, Copy)]
pub enum Stats<'a> {
    /// The batch's own (training mode): they depend on the input, and so do their gradients.
    Batch,
    /// Given constants, such as running averages (inference mode).
    Given {
        /// Mean per channel.
        mean: &'a [f64],
        /// Variance per channel.
        var: &'a [f64],
    },
}

/// The parameters of a BN-ReLU-conv layer.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// Batch norm scale, one per input channel.
    pub gamma: &'a [f64],
    /// Batch norm shift, one per input channel.
    pub beta: &'a [f64],
    /// The statistics the batch norm normalises with.
    pub stats: Stats<'a>,
    /// Added to the variance before its square root.
    pub epsilon: f64,
    /// `[out_channels, in_channels, k, k]`.
    pub weight: &'a [f64],
}

/// Everything the layer's forward computes on the way, for [`bn_relu_conv_backward`].
struct Trace {
    dims: [usize; 4],
    xhat: Vec<f64>,
    pre_relu: Vec<f64>,
    activated: Vec<f64>,
    inv_std: Vec<f64>,
    out: Vec<f64>,
}

fn trace(geo: &Geometry, inputs: &[&[f64]], layer: &Layer) -> Trace {
    let dims = [geo.batch, geo.in_channels(), geo.height, geo.width];
    let x = concat(inputs, &geo.channels, geo.batch, geo.height * geo.width);
    let (mean, var) = match layer.stats {
        Stats::Batch => batch_stats(&x, dims),
        Stats::Given { mean, var } => (mean.to_vec(), var.to_vec()),
    };
    let c = dims[1];
    let xhat = batch_norm(
        &x,
        dims,
        &mean,
        &var,
        &vec![1.0; c],
        &vec![0.0; c],
        layer.epsilon,
    );
    let pre_relu = batch_norm(
        &x,
        dims,
        &mean,
        &var,
        layer.gamma,
        layer.beta,
        layer.epsilon,
    );
    let activated = relu(&pre_relu);
    let out = conv2d_same(&activated, dims, layer.weight, geo.out_channels);
    let inv_std = var
        .iter()
        .map(|v| 1.0 / (v + layer.epsilon).sqrt())
        .collect();
    Trace {
        dims,
        xhat,
        pre_relu,
        activated,
        inv_std,
        out,
    }
}

/// `conv(relu(bn(concat(inputs))))` for inputs shaped as `geo` says.
pub fn bn_relu_conv(geo: &Geometry, inputs: &[&[f64]], layer: &Layer) -> Vec<f64> {
    trace(geo, inputs, layer).out
}

/// Gradients of [`bn_relu_conv`] with respect to each input, gamma, beta and the weight.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// `inputs[j]`: the gradient of input `j`, shaped like it.
    pub inputs: Vec<Vec<f64>>,
    /// Gradient of [`Layer::gamma`].
    pub gamma: Vec<f64>,
    /// Gradient of [`Layer::beta`].
    pub beta: Vec<f64>,
    /// Gradient of [`Layer::weight`], shaped like it.
    pub weight: Vec<f64>,
}

/// The gradients of [`bn_relu_conv`] for the output gradient `out_grad`, by the chain rule
/// through each step: the convolution (a direct scatter for the input, a correlation for the
/// weight), the ReLU's mask, the batch norm (through the batch statistics too, with
/// [`Stats::Batch`]) and the concatenation.
pub fn bn_relu_conv_backward(
    geo: &Geometry,
    inputs: &[&[f64]],
    layer: &Layer,
    out_grad: &[f64],
) -> Gradients {
    let t = trace(geo, inputs, layer);
    let dims = t.dims;
    let [n, c, h, w] = dims;
    let (g, k) = (geo.out_channels, geo.kernel);
    let pad = k / 2;
    let out_dims = [n, g, h, w];
    assert_eq!(out_grad.len(), n * g * h * w, "output gradient shape");
    // Through the convolution: out[b, f, y, x] += W[f, ch, ky, kx] * a[b, ch, y + ky - pad, ...].
    let mut grad_weight = vec![0.0; layer.weight.len()];
    let mut grad_activated = vec![0.0; t.activated.len()];
    for b in 0..n {
        for f in 0..g {
            for y in 0..h {
                for xx in 0..w {
                    let d = out_grad[at(out_dims, b, f, y, xx)];
                    for ch in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (sy, sx) = (y + ky, xx + kx);
                                if sy < pad || sx < pad || sy - pad >= h || sx - pad >= w {
                                    continue;
                                }
                                let src = at(dims, b, ch, sy - pad, sx - pad);
                                let wi = ((f * c + ch) * k + ky) * k + kx;
                                grad_weight[wi] += d * t.activated[src];
                                grad_activated[src] += d * layer.weight[wi];
                            }
                        }
                    }
                }
            }
        }
    }
    // Through the ReLU.
    let grad_pre: Vec<f64> = grad_activated
        .iter()
        .zip(&t.pre_relu)
        .map(|(&d, &v)| if v > 0.0 { d } else { 0.0 })
        .collect();
    // Through the batch norm's affine.
    let mut grad_gamma = vec![0.0; c];
    let mut grad_beta = vec![0.0; c];
    for (i, (&d, &xh)) in grad_pre.iter().zip(&t.xhat).enumerate() {
        let ch = (i / (h * w)) % c;
        grad_gamma[ch] += d * xh;
        grad_beta[ch] += d;
    }
    // Through the normalisation: dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat *
    // xhat)) with batch statistics, dx = inv_std * dxhat with given ones.
    let count = (n * h * w) as f64;
    let grad_x: Vec<f64> = grad_pre
        .iter()
        .zip(&t.xhat)
        .enumerate()
        .map(|(i, (&d, &xh))| {
            let ch = (i / (h * w)) % c;
            let dxhat = d * layer.gamma[ch];
            match layer.stats {
                Stats::Batch => {
                    let mean_dxhat = layer.gamma[ch] * grad_beta[ch] / count;
                    let mean_dxhat_xhat = layer.gamma[ch] * grad_gamma[ch] / count;
                    t.inv_std[ch] * (dxhat - mean_dxhat - xh * mean_dxhat_xhat)
                }
                Stats::Given { .. } => t.inv_std[ch] * dxhat,
            }
        })
        .collect();
    Gradients {
        inputs: split(&grad_x, &geo.channels, n, h * w),
        gamma: grad_gamma,
        beta: grad_beta,
        weight: grad_weight,
    }
}

/// The 2x2 stride-2 average pool of `x` (`[n, c, h, w]`): every output is the mean of its
/// window; an odd last row or column is in no window.
pub fn avg_pool2(x: &[f64], dims: [usize; 4]) -> Vec<f64> {
    let [n, c, h, w] = dims;
    let out_dims = [n, c, h / 2, w / 2];
    let mut out = vec![0.0; out_dims.iter().product()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h / 2 {
                for xx in 0..w / 2 {
                    let mut sum = 0.0;
                    for dy in 0..2 {
                        for dx in 0..2 {
                            sum += x[at(dims, b, ch, 2 * y + dy, 2 * xx + dx)];
                        }
                    }
                    out[at(out_dims, b, ch, y, xx)] = sum / 4.0;
                }
            }
        }
    }
    out
}

/// The input gradient of [`avg_pool2`]: each output's gradient spread evenly over its window.
pub fn avg_pool2_backward(g: &[f64], dims: [usize; 4]) -> Vec<f64> {
    let [n, c, h, w] = dims;
    let out_dims = [n, c, h / 2, w / 2];
    let mut grad = vec![0.0; dims.iter().product()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h / 2 {
                for xx in 0..w / 2 {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            grad[at(dims, b, ch, 2 * y + dy, 2 * xx + dx)] +=
                                g[at(out_dims, b, ch, y, xx)] / 4.0;
                        }
                    }
                }
            }
        }
    }
    grad
}

/// The transposed convolution of `x` (`[n, cin, h, w]`) with `weight` (`[cin, cout, k, k]`),
/// `stride`, `padding` and `output_padding`, as burn and PyTorch define it: input pixel `(y, x)`
/// adds `x * W[i, o, kh, kw]` at output `(y * stride - padding + kh, x * stride - padding +
/// kw)` when that lies inside the `[(h - 1) * stride - 2 padding + k + output_padding]`-sized
/// output.
pub fn conv_transpose2d(
    x: &[f64],
    dims: [usize; 4],
    weight: &[f64],
    cout: usize,
    [stride, padding, output_padding]: [usize; 3],
) -> Vec<f64> {
    let [n, cin, h, w] = dims;
    let k = ((weight.len() / (cin * cout)) as f64).sqrt().round() as usize;
    assert_eq!(weight.len(), cin * cout * k * k, "weight shape");
    let size = |s: usize| (s - 1) * stride + k + output_padding - 2 * padding;
    let out_dims = [n, cout, size(h), size(w)];
    let mut out = vec![0.0; out_dims.iter().product()];
    for b in 0..n {
        for i in 0..cin {
            for y in 0..h {
                for xx in 0..w {
                    for o in 0..cout {
                        for kh in 0..k {
                            for kw in 0..k {
                                let (oy, ox) = (y * stride + kh, xx * stride + kw);
                                if oy < padding || ox < padding {
                                    continue;
                                }
                                let (oy, ox) = (oy - padding, ox - padding);
                                if oy >= out_dims[2] || ox >= out_dims[3] {
                                    continue;
                                }
                                out[at(out_dims, b, o, oy, ox)] += x[at(dims, b, i, y, xx)]
                                    * weight[((i * cout + o) * k + kh) * k + kw];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The input gradient of [`conv_transpose2d`] (input shape `dims`) for the output gradient `g`:
/// every input pixel collects the gradient of the outputs it was added to, times the weight.
pub fn conv_transpose2d_backward(
    g: &[f64],
    dims: [usize; 4],
    weight: &[f64],
    cout: usize,
    [stride, padding, output_padding]: [usize; 3],
) -> Vec<f64> {
    let [n, cin, h, w] = dims;
    let k = ((weight.len() / (cin * cout)) as f64).sqrt().round() as usize;
    let size = |s: usize| (s - 1) * stride + k + output_padding - 2 * padding;
    let out_dims = [n, cout, size(h), size(w)];
    assert_eq!(
        g.len(),
        out_dims.iter().product::<usize>(),
        "output gradient shape"
    );
    let mut grad = vec![0.0; dims.iter().product()];
    for b in 0..n {
        for i in 0..cin {
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = 0.0;
                    for o in 0..cout {
                        for kh in 0..k {
                            for kw in 0..k {
                                let (oy, ox) = (y * stride + kh, xx * stride + kw);
                                if oy < padding || ox < padding {
                                    continue;
                                }
                                let (oy, ox) = (oy - padding, ox - padding);
                                if oy >= out_dims[2] || ox >= out_dims[3] {
                                    continue;
                                }
                                acc += g[at(out_dims, b, o, oy, ox)]
                                    * weight[((i * cout + o) * k + kh) * k + kw];
                            }
                        }
                    }
                    grad[at(dims, b, i, y, xx)] = acc;
                }
            }
        }
    }
    grad
}

/// The weight `[9 c, c, 3, 3]` that makes [`conv_transpose2d`] the overlap-add of
/// [`crate::Resample::OverlapAdd3x3S2`]: input channel `(kh * 3 + kw) * c + o` carries tap
/// `(kh, kw)` of output channel `o`, with weight 1, and nothing else.
pub fn overlap_add_weight(c: usize) -> Vec<f64> {
    let mut weight = vec![0.0; 9 * c * c * 9];
    for tap in 0..9 {
        for o in 0..c {
            let i = tap * c + o;
            weight[(i * c + o) * 9 + tap] = 1.0;
        }
    }
    weight
}

/// The stride-2 3x3 overlap-add of `x` (`[n, 9 c, h, w]`) to `[n, c, 2h, 2w]`: the transposed
/// convolution (stride 2, padding 1, output padding 1) with [`overlap_add_weight`].
pub fn overlap_add_3x3s2(x: &[f64], dims: [usize; 4]) -> Vec<f64> {
    let c = dims[1] / 9;
    conv_transpose2d(x, dims, &overlap_add_weight(c), c, [2, 1, 1])
}

/// The input gradient of [`overlap_add_3x3s2`] (input shape `dims`).
pub fn overlap_add_3x3s2_backward(g: &[f64], dims: [usize; 4]) -> Vec<f64> {
    let c = dims[1] / 9;
    conv_transpose2d_backward(g, dims, &overlap_add_weight(c), c, [2, 1, 1])
}
