//! The transitions' resampling loops on `f32` slices: the 2x2 average pool of a down
//! transition, and the stride-2 overlap-add (col2im) that turns a 1x1 convolution to `9 x cout`
//! channels into a 3x3 stride-2 transposed convolution, each forward and backward.
//!
//! FC networks run one transition per carried layer (an FC-Log-DenseNet at 64 x 64 has over
//! 80), each on a small tensor. General pooling and transposed-convolution kernels cost more
//! there than the arithmetic; these loops, plus the fused BN-ReLU-1x1 convolution of
//! [`crate::conv`], do the same work in one pass each. Planes run in parallel.

use rayon::prelude::*;

/// A 2x2 stride-2 average pool or a stride-2 3x3 overlap-add, with the shapes it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// `[n, c, h, w] -> [n, c, h / 2, w / 2]` (odd last rows/columns dropped, as burn's pool).
    AvgPool2,
    /// `[n, 9 c, h, w] -> [n, c, 2h, 2w]`: channel `(kh * 3 + kw) * c + o` of the input is tap
    /// `(kh, kw)` of output channel `o`, added at `(2y + kh - 1, 2x + kw - 1)`. With weights
    /// `W[i, o, kh, kw]` permuted to `[(kh, kw, o), i]` in the 1x1 convolution before it, this
    /// is burn's (and PyTorch's) transposed convolution with kernel 3, stride 2, padding 1 and
    /// output padding 1.
    OverlapAdd3x3S2,
}

impl Resample {
    /// The output shape for an input of shape `dims`.
    ///
    /// Panics for an overlap-add whose input channels are not a multiple of 9.
    pub fn output_dims(self, [n, c, h, w]: [usize; 4]) -> [usize; 4] {
        match self {
            Resample::AvgPool2 => [n, c, h / 2, w / 2],
            Resample::OverlapAdd3x3S2 => {
                assert_eq!(
                    c % 9,
                    0,
                    "overlap-add input channels must be 9 x out channels"
                );
                [n, c / 9, 2 * h, 2 * w]
            }
        }
    }

    /// The forward loop: `x` of shape `dims` into a new output of shape
    /// [`Self::output_dims`].
    pub fn forward(self, x: &[f32], dims: [usize; 4]) -> Vec<f32> {
        match self {
            Resample::AvgPool2 => avg_pool2(x, dims),
            Resample::OverlapAdd3x3S2 => overlap_add_3x3s2(x, dims),
        }
    }

    /// The backward loop: the input gradient (shape `dims`) from the output gradient `g`.
    pub fn backward(self, g: &[f32], dims: [usize; 4]) -> Vec<f32> {
        match self {
            Resample::AvgPool2 => avg_pool2_backward(g, dims),
            Resample::OverlapAdd3x3S2 => overlap_add_3x3s2_backward(g, dims),
        }
    }
}

/// Panics unless `len` elements hold a tensor of shape `dims`.
fn check_len(len: usize, dims: [usize; 4], what: &str) {
    assert_eq!(len, dims.iter().product::<usize>(), "{what} shape");
}

/// The 2x2 stride-2 average pool of `x` (`[n, c, h, w]`): `[n, c, h / 2, w / 2]`.
pub fn avg_pool2(x: &[f32], dims: [usize; 4]) -> Vec<f32> {
    check_len(x.len(), dims, "input");
    let [_, _, h, w] = dims;
    let [n, c, oh, ow] = Resample::AvgPool2.output_dims(dims);
    let mut out = vec![0f32; n * c * oh * ow];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, plane)| {
            for y in 0..oh {
                let (r0, r1) = (&plane[2 * y * w..], &plane[(2 * y + 1) * w..]);
                for (xo, v) in o[y * ow..(y + 1) * ow].iter_mut().enumerate() {
                    let s = r0[2 * xo] + r0[2 * xo + 1] + r1[2 * xo] + r1[2 * xo + 1];
                    *v = 0.25 * s;
                }
            }
        });
    out
}

/// The input gradient of [`avg_pool2`] (input shape `dims`) from its output gradient `g`.
pub fn avg_pool2_backward(g: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let [n, c, h, w] = dims;
    let out_dims = Resample::AvgPool2.output_dims(dims);
    check_len(g.len(), out_dims, "output gradient");
    let [_, _, oh, ow] = out_dims;
    let mut grad = vec![0f32; n * c * h * w];
    if g.is_empty() {
        return grad;
    }
    grad.par_chunks_mut(h * w)
        .zip(g.par_chunks(oh * ow))
        .for_each(|(gi, go)| {
            for y in 0..oh {
                for xo in 0..ow {
                    let v = 0.25 * go[y * ow + xo];
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        gi[(2 * y + dy) * w + 2 * xo + dx] = v;
                    }
                }
            }
        });
    grad
}

/// The stride-2 3x3 overlap-add of `x` (`[n, 9 c, h, w]`): `[n, c, 2h, 2w]`, see
/// [`Resample::OverlapAdd3x3S2`].
pub fn overlap_add_3x3s2(x: &[f32], dims: [usize; 4]) -> Vec<f32> {
    check_len(x.len(), dims, "input");
    let [_, c, h, w] = dims;
    let [n, oc, oh, ow] = Resample::OverlapAdd3x3S2.output_dims(dims);
    let mut out = vec![0f32; n * oc * oh * ow];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane, o)| {
            let (b, co) = (plane / oc, plane % oc);
            for tap in 0..9 {
                let (kh, kw) = (tap / 3, tap % 3);
                let src = &x[((b * c) + tap * oc + co) * h * w..][..h * w];
                // Tap 0 of a row or column lands at -1 for the first input pixel.
                let (y0, x0) = (usize::from(kh == 0), usize::from(kw == 0));
                for y in y0..h {
                    let row = &src[y * w..(y + 1) * w];
                    let orow = &mut o[(2 * y + kh - 1) * ow..][..ow];
                    for xi in x0..w {
                        orow[2 * xi + kw - 1] += row[xi];
                    }
                }
            }
        });
    out
}

/// The input gradient of [`overlap_add_3x3s2`] (input shape `dims`) from its output gradient
/// `g`: a gather, every input element reads the one output element it was added to.
pub fn overlap_add_3x3s2_backward(g: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let [n, c, h, w] = dims;
    let out_dims = Resample::OverlapAdd3x3S2.output_dims(dims);
    check_len(g.len(), out_dims, "output gradient");
    let [_, oc, oh, ow] = out_dims;
    let mut grad = vec![0f32; n * c * h * w];
    if grad.is_empty() {
        return grad;
    }
    grad.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(plane, gi)| {
            let (b, ch) = (plane / c, plane % c);
            let (tap, co) = (ch / oc, ch % oc);
            let (kh, kw) = (tap / 3, tap % 3);
            let go = &g[(b * oc + co) * oh * ow..][..oh * ow];
            let (y0, x0) = (usize::from(kh == 0), usize::from(kw == 0));
            for y in y0..h {
                let grow = &go[(2 * y + kh - 1) * ow..][..ow];
                for xi in x0..w {
                    gi[y * w + xi] = grow[2 * xi + kw - 1];
                }
            }
        });
    grad
}
