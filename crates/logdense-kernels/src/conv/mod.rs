//! The fused dense-layer kernels on plain `f32` slices: BN-ReLU-conv over a *list* of NCHW
//! inputs, forward and backward, with no concatenated copy, no stored BN or ReLU output and no
//! transposed convolution.
//!
//! Work is split into tiles of whole image rows: a band of rows of one image, or several small
//! images stacked. A tile's inputs are normalised and rectified once into a zero-padded band
//! buffer `[channels, rows + halos, width + 2 pad]`; in that buffer every kernel tap is a plain
//! offset (output positions in padded-width coordinates; the pad columns and halo rows are
//! computed and dropped). The input gradient is itself a convolution of the output gradient
//! with the flipped, transposed weights, so it is tiled the same way and needs no col2im
//! scatter: tiles are independent and run in parallel.
//!
//! The products run, by CPU and precision:
//! - f32 with AVX-512: direct kernels (module `direct`) whose register blocks read the band in
//!   place at each tap's offset and stay in registers over all taps and channels;
//! - f32 elsewhere: one `gemm` product per tap on the band at the tap's offset (the input
//!   gradient on an im2col copy of the output gradient's band);
//! - bf16 ([`Precision::Bf16`]): AMX tiles or `vdpbf16ps` (module `mixed`).
//!
//! The parts: `choice` (which kernels run, in which precision), `stats` (batch statistics and
//! the batch norm's backward), `bands` (the tiles and their band fills), `relu` (the ReLU
//! backward), `buffers` (output buffers and the parallel loop over tiles) and `matmul` (the
//! bounds-checked `gemm` product); this module ties them into the forward and backward passes.

use std::mem::MaybeUninit;

#[macro_use]
mod choice;
mod bands;
mod buffers;
mod direct;
mod matmul;
mod mixed;
mod relu;
mod stats;
mod winograd;

use bands::{prefetch, tap_shifts, Bands, Tile, BAND_SLACK};
use buffers::{
    assume_written, for_tiles, for_tiles_with, unwritten, unwritten_input_gradients, write_row,
    written, DisjointRows,
};
use matmul::matmul;
use relu::relu_tile;
use stats::bn_backward;

pub(crate) use bands::Act;
pub use choice::{
    f32_kernels, with_direct_f32, with_gemm_f32, with_winograd_f32, F32Kernels, Kernels, Precision,
};
pub use stats::batch_stats;

/// Shapes of one fused call: `inputs[j]` is `[batch, channels[j], height, width]`, the
/// convolution has `out_channels` filters of `kernel x kernel` (stride 1, "same" padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Height of every input and of the output, in pixels.
    pub height: usize,
    /// Width of every input and of the output, in pixels.
    pub width: usize,
    /// Channels of each input, in concatenation order.
    pub channels: Vec<usize>,
    /// Filters of the convolution: the output's channels.
    pub out_channels: usize,
    /// The (square, odd) kernel size.
    pub kernel: usize,
}

impl Geometry {
    /// Channels of the (never formed) concatenation: the convolution's input channels.
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
}

/// Panics unless there is one input per entry of `geo.channels`, each of its shape.
fn check_inputs(geo: &Geometry, inputs: &[&[f32]]) {
    assert!(geo.kernel % 2 == 1, "the kernel size must be odd");
    assert_eq!(inputs.len(), geo.channels.len(), "one slice per input");
    for (x, &c) in inputs.iter().zip(&geo.channels) {
        assert_eq!(x.len(), geo.batch * c * geo.pixels(), "input shape");
    }
}

/// The batch-norm affine `scale * x + shift` per channel, from the statistics it normalises with.
#[derive(Debug, Clone)]
pub struct Affine {
    /// `gamma / sqrt(var + epsilon)`.
    pub scale: Vec<f32>,
    /// `beta - mean * scale`.
    pub shift: Vec<f32>,
    /// The mean the batch norm normalises with, kept for the backward pass.
    pub mean: Vec<f32>,
    /// `1 / sqrt(var + epsilon)`.
    pub inv_std: Vec<f32>,
}

impl Affine {
    /// The affine of `gamma * (x - mean) / sqrt(var + epsilon) + beta`, per channel.
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

/// `out[b, g] = sum over c, ky, kx of weight[g, c, ky, kx] * relu(affine(x))[b, c, shifted]`.
/// `weight` is `[out_channels, in_channels, kernel, kernel]`; `out` is `[batch, out_channels, H, W]`.
///
/// Panics if a slice's length does not match `geo`.
///
/// # Safety
///
/// Safe to call. Tiles run in parallel and write their output rows through
/// `DisjointRows::row`: every output row (image, channel, y) belongs to exactly one tile,
/// so no two threads ever hold overlapping rows.
pub fn forward(
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [f32],
) {
    forward_with(Kernels::ambient(), geo, inputs, affine, weight, out)
}

/// [`forward`] on the given kernels.
pub fn forward_with(
    kernels: Kernels,
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [f32],
) {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the forward only writes initialised
    // values through this view, so `out` stays initialised.
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    forward_unwritten(kernels, geo, inputs, affine, weight, out)
}

/// [`forward_with`] into a new buffer, with no pass to zero it first: every element is written
/// once.
pub fn forward_new(
    kernels: Kernels,
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
) -> Vec<f32> {
    let mut out = unwritten(geo.batch * geo.out_channels * geo.pixels());
    forward_unwritten(kernels, geo, inputs, affine, weight, &mut out);
    // SAFETY: the forward wrote every element of the output.
    unsafe { assume_written(out) }
}

/// [`forward_with`] into a buffer that may be unwritten: every element of `out` is written.
fn forward_unwritten(
    kernels: Kernels,
    geo: &Geometry,
    inputs: &[&[f32]],
    affine: &Affine,
    weight: &[f32],
    out: &mut [MaybeUninit<f32>],
) {
    let (g, patch, hw, w) = (geo.out_channels, geo.patch(), geo.pixels(), geo.width);
    let (channels, kernel) = (geo.in_channels(), geo.kernel);
    assert_eq!(weight.len(), g * patch, "weight shape");
    assert_eq!(out.len(), geo.batch * g * hw, "output shape");
    check_inputs(geo, inputs);
    assert_eq!(affine.scale.len(), channels, "affine shape");
    if kernels.precision == Precision::Bf16 {
        return with_tiles!(mixed::forward, geo, inputs, affine, weight, out);
    }
    let bands = Bands::new(geo);
    let ldr = direct::padded(bands.max_plane);
    let winograd = winograd::applies(&bands, kernels.f32)
        .then(|| winograd::pack(g, channels, direct::forward_taps(geo, weight)));
    let direct = (direct::chosen(kernels.f32) && winograd.is_none())
        .then(|| direct::pack_forward(geo, weight));
    let shifts = tap_shifts(kernel, bands.wp);
    let out = DisjointRows::new(out);
    let act = |c| Act::layer(affine, c);
    for_tiles(
        &bands,
        || {
            (
                vec![0f32; channels * bands.max_plane + BAND_SLACK],
                vec![0f32; g * ldr],
                winograd::Scratch::default(),
            )
        },
        |(band, result, scratch), tile| {
            let (n, plane) = (bands.columns(tile), bands.plane(tile));
            bands.fill(geo, tile, inputs, &geo.channels, band, act);
            match (&winograd, &direct) {
                (Some(packed), _) => winograd::conv(
                    g,
                    channels,
                    packed,
                    (&bands, tile),
                    band,
                    plane,
                    scratch,
                    result,
                    ldr,
                ),
                (None, Some(packed)) => {
                    direct::conv_taps(g, n, channels, packed, band, plane, &shifts, result, ldr)
                }
                // One GEMM per tap, reading the band at the tap's offset: out += W_tap * band_tap.
                (None, None) => {
                    for (tap, &shift) in shifts.iter().enumerate() {
                        matmul(
                            g,
                            n,
                            channels,
                            (&mut result[..], ldr, 1),
                            tap > 0,
                            (&weight[tap..], patch, kernel * kernel),
                            (&band[shift..], plane, 1),
                        );
                    }
                }
            }
            bands.rows(tile, |seg, y, at| {
                for f in 0..g {
                    // SAFETY: row y of image seg.image is computed by this tile only, and the
                    // slice is dropped at the end of the iteration.
                    let dst = unsafe { out.row((seg.image * g + f) * hw + y * w, w) };
                    write_row(dst, &result[f * ldr + at..][..w]);
                }
            });
        },
    );
}

/// Gradients of [`forward`] with respect to each input, gamma, beta and the weight.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// `inputs[j]`: the gradient of input `j`, shaped like it.
    pub inputs: Vec<Vec<f32>>,
    /// Gradient of the batch norm's scale, one per input channel.
    pub gamma: Vec<f32>,
    /// Gradient of the batch norm's shift, one per input channel.
    pub beta: Vec<f32>,
    /// Gradient of the weight, `[out_channels, in_channels, kernel, kernel]`.
    pub weight: Vec<f32>,
}

/// The backward pass of [`forward`]. With `batch_stats` the affine came from this batch's
/// statistics, so the input gradient includes their dependence on the input (training-mode BN);
/// otherwise the statistics are constants (running averages). `affine` is the one [`forward`]
/// ran with (built from `gamma`), `out_grad` the gradient of the loss with respect to its output.
///
/// Panics if a slice's length does not match `geo`.
///
/// # Safety
///
/// Safe to call. Tiles run in parallel and write their rows of the input gradients through
/// `DisjointRows::row`: every input row (image, channel, y) belongs to exactly one tile, so
/// no two threads ever hold overlapping rows.
pub fn backward(
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    weight: &[f32],
    out_grad: &[f32],
) -> Gradients {
    backward_with(
        Kernels::ambient(),
        geo,
        inputs,
        gamma,
        affine,
        batch_stats,
        weight,
        out_grad,
    )
}

/// [`backward`] on the given kernels.
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    kernels: Kernels,
    geo: &Geometry,
    inputs: &[&[f32]],
    gamma: &[f32],
    affine: &Affine,
    batch_stats: bool,
    weight: &[f32],
    out_grad: &[f32],
) -> Gradients {
    let (g, patch, hw, taps) = (geo.out_channels, geo.patch(), geo.pixels(), geo.taps());
    let (channels, kernel) = (geo.in_channels(), geo.kernel);
    check_inputs(geo, inputs);
    assert_eq!(gamma.len(), channels, "gamma shape");
    assert_eq!(affine.scale.len(), channels, "affine shape");
    assert_eq!(weight.len(), g * patch, "weight shape");
    assert_eq!(out_grad.len(), geo.batch * g * hw, "output gradient shape");
    if kernels.precision == Precision::Bf16 {
        return with_tiles!(
            mixed::backward,
            geo,
            inputs,
            gamma,
            affine,
            batch_stats,
            weight,
            out_grad
        );
    }
    // W' [c, (g, ky, kx)] = W[g, c, k-1-ky, k-1-kx]: the weights seen from the output
    // gradient, whose band reads dOut at +ky where the convolution read its input at -ky.
    // The direct kernels take them packed per tap instead.
    let direct = direct::chosen(kernels.f32).then(|| direct::pack_backward(geo, weight));
    let weight_t = match direct {
        Some(_) => Vec::new(),
        None => {
            let flipped = direct::backward_taps(geo, weight);
            let mut weight_t = vec![0f32; channels * g * taps];
            for f in 0..g {
                for c in 0..channels {
                    for t in 0..taps {
                        weight_t[c * g * taps + f * taps + t] = flipped(c, f, t);
                    }
                }
            }
            weight_t
        }
    };
    let mut unwritten = unwritten_input_gradients(geo);
    let grad_rows: Vec<_> = unwritten.iter_mut().map(|v| DisjointRows::new(v)).collect();
    let bands = Bands::new(geo);
    let (pad, wp) = (bands.pad, bands.wp);
    let ldr = direct::padded(bands.max_plane);
    let shifts = tap_shifts(kernel, wp);
    // The input gradient as a 3x3 convolution of the output gradient, in Winograd products
    // where they apply.
    let winograd = winograd::applies(&bands, kernels.f32)
        .then(|| winograd::pack(channels, g, direct::backward_taps(geo, weight)));
    let act = |c| Act::layer(affine, c);
    // The direct kernels' weight gradient: 16 output channels per vector, [taps][channels][gp].
    let gp = g.div_ceil(16) * 16;

    struct Share {
        band: Vec<f32>,
        out_band: Vec<f32>,
        out_col: Vec<f32>,
        dout_t: Vec<f32>,
        dy: Vec<f32>,
        weight: Vec<f32>,
        sum_dy: Vec<f64>,
        sum_dy_xhat: Vec<f64>,
        winograd: winograd::Scratch,
    }
    let shares = for_tiles(
        &bands,
        || Share {
            band: match direct {
                Some(_) => vec![0f32; direct::weight_rows(channels) * bands.max_plane + BAND_SLACK],
                None => vec![0f32; channels * bands.max_plane],
            },
            out_band: vec![0f32; g * bands.max_plane + BAND_SLACK],
            out_col: match direct {
                Some(_) => Vec::new(),
                None => vec![0f32; g * taps * bands.max_plane],
            },
            dout_t: match direct {
                Some(_) => vec![0f32; bands.max_plane * gp],
                None => Vec::new(),
            },
            dy: vec![0f32; channels * ldr],
            weight: match direct {
                Some(_) => vec![0f32; taps * channels * gp],
                None => vec![0f32; g * patch],
            },
            sum_dy: vec![0f64; channels],
            sum_dy_xhat: vec![0f64; channels],
            winograd: winograd::Scratch::default(),
        },
        |s, tile| {
            let (n, plane) = (bands.columns(tile), bands.plane(tile));
            bands.fill(geo, tile, inputs, &geo.channels, &mut s.band, act);
            bands.fill(geo, tile, &[out_grad], &[g], &mut s.out_band, |_| {
                Act::IDENTITY
            });
            match (&winograd, &direct) {
                (Some(packed), _) => winograd::conv(
                    channels,
                    g,
                    packed,
                    (&bands, tile),
                    &s.out_band,
                    plane,
                    &mut s.winograd,
                    &mut s.dy,
                    ldr,
                ),
                // dY (channels x n) = sum over taps of W'_t (channels x g) * dOut[shift_t].
                (None, Some(packed)) => direct::conv_taps(
                    channels,
                    n,
                    g,
                    packed,
                    &s.out_band,
                    plane,
                    &shifts,
                    &mut s.dy,
                    ldr,
                ),
                // dY (channels x n) = W' (channels x g*taps) * im2col(dOut) (g*taps x n).
                (None, None) => {
                    bands.im2col(tile, &s.out_band, g, kernel, &mut s.out_col);
                    matmul(
                        channels,
                        n,
                        g * taps,
                        (&mut s.dy[..], ldr, 1),
                        false,
                        (&weight_t[..], g * taps, 1),
                        (&s.out_col[..], n, 1),
                    );
                }
            }
            // dW (g x patch) += dOut (g x n) * col^T (n x patch), with dOut read from its band
            // at the centre tap once the halo rows (other rows' values) are zeroed.
            for seg in &tile.segments {
                for f in 0..g {
                    let p = &mut s.out_band[f * plane..][..plane];
                    p[seg.offset * wp..][..pad * wp].fill(0.0);
                    p[(seg.offset + pad + seg.rows) * wp..][..pad * wp].fill(0.0);
                }
            }
            let centre = pad * wp + pad;
            match &direct {
                // dW_tap ([channels][gp]) += band_tap (channels x n) * dOut^T (n x gp), with
                // dOut transposed (its padding columns stay zero).
                Some(_) => {
                    // Row by row of the result, so that each row of gp values is written whole.
                    let rows: Vec<&[f32]> = (0..g)
                        .map(|f| &s.out_band[f * plane + centre..][..n])
                        .collect();
                    for (p, dst) in s.dout_t.chunks_exact_mut(gp).take(n).enumerate() {
                        for (d, row) in dst.iter_mut().zip(&rows) {
                            *d = row[p];
                        }
                    }
                    direct::weight_taps(
                        channels,
                        gp,
                        n,
                        kernel,
                        wp,
                        &s.band,
                        plane,
                        &s.dout_t,
                        &mut s.weight,
                    );
                }
                // dW_tap (g x channels) += dOut (g x n) * band_tap^T (n x channels).
                None => {
                    for (tap, &shift) in shifts.iter().enumerate() {
                        matmul(
                            g,
                            channels,
                            n,
                            (&mut s.weight[tap..], patch, taps),
                            true,
                            (&s.out_band[centre..], plane, 1),
                            (&s.band[shift..], 1, plane),
                        );
                    }
                }
            }
            // Through the ReLU (its output is in the band); gather the BN sums; park the
            // pre-ReLU gradient in the input gradients.
            relu_tile(
                &bands,
                geo,
                tile,
                inputs,
                &grad_rows,
                affine,
                (&s.band, plane),
                (&s.dy, ldr),
                &mut s.sum_dy,
                &mut s.sum_dy_xhat,
            );
        },
    );
    drop(grad_rows);
    let mut grad_weight = vec![0f32; g * patch];
    for s in &shares {
        match direct {
            Some(_) => add_tap_major(&mut grad_weight, &s.weight, geo, channels, gp),
            None => grad_weight
                .iter_mut()
                .zip(&s.weight)
                .for_each(|(a, b)| *a += b),
        }
    }
    let sums = shares.iter().map(|s| (&s.sum_dy[..], &s.sum_dy_xhat[..]));
    let args = (geo, inputs, gamma, affine, batch_stats);
    // SAFETY: the ReLU backward ran on every tile, so it wrote every input gradient element.
    unsafe { finish_backward(args, unwritten, grad_weight, sums) }
}

/// Adds a share's weight gradient kept tap-major, `[taps][rows][gp]` (rows >= the input
/// channels, gp >= the filters, the rest padding), to `grad_weight` (`[filters][channels][taps]`,
/// the weight's layout).
fn add_tap_major(grad_weight: &mut [f32], share: &[f32], geo: &Geometry, rows: usize, gp: usize) {
    let (g, channels, taps) = (geo.out_channels, geo.in_channels(), geo.taps());
    for t in 0..taps {
        for c in 0..channels {
            for f in 0..g {
                grad_weight[(f * channels + c) * taps + t] += share[(t * rows + c) * gp + f];
            }
        }
    }
}

/// The end of a backward pass in either precision: the shares' batch-norm sums added up, the
/// input gradients (which the ReLU backward wrote) through the batch norm, and the gradients
/// returned with `grad_weight` (already summed over the shares).
///
/// # Safety
///
/// Every element of `unwritten` must have been written (by [`relu_tile`] on every tile).
unsafe fn finish_backward<'s>(
    (geo, inputs, gamma, affine, batch_stats): (&Geometry, &[&[f32]], &[f32], &Affine, bool),
    unwritten: Vec<Vec<MaybeUninit<f32>>>,
    grad_weight: Vec<f32>,
    shares: impl Iterator<Item = (&'s [f64], &'s [f64])>,
) -> Gradients {
    // SAFETY: the caller guarantees every element was written.
    let mut grad_inputs = unsafe { written(unwritten) };
    let channels = geo.in_channels();
    let (mut sum_dy, mut sum_dy_xhat) = (vec![0f64; channels], vec![0f64; channels]);
    for (dy, dy_xhat) in shares {
        sum_dy.iter_mut().zip(dy).for_each(|(a, b)| *a += b);
        sum_dy_xhat
            .iter_mut()
            .zip(dy_xhat)
            .for_each(|(a, b)| *a += b);
    }
    bn_backward(
        geo,
        inputs,
        gamma,
        affine,
        batch_stats,
        &mut grad_inputs,
        &sum_dy,
        &sum_dy_xhat,
    );
    Gradients {
        inputs: grad_inputs,
        gamma: sum_dy_xhat.iter().map(|&v| v as f32).collect(),
        beta: sum_dy.iter().map(|&v| v as f32).collect(),
        weight: grad_weight,
    }
}
