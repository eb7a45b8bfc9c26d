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
                let (r0, r1) = (&plane[2 * y * w..][..w], &plane[(2 * y + 1) * w..][..w]);
                pool_row(&mut o[y * ow..(y + 1) * ow], r0, r1);
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
            // An odd last row or column gets no gradient (the buffer's zeros).
            for y in 0..oh {
                let go = &go[y * ow..][..ow];
                for dy in 0..2 {
                    spread_row(&mut gi[(2 * y + dy) * w..][..2 * ow], go);
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
            // Tap (kh, kw) adds input (y, x) at output (2y + kh - 1, 2x + kw - 1): tap 0 of a
            // row or column lands at -1 for the first input pixel and is dropped.
            let src = |kh: usize, kw: usize, y: usize| {
                &x[((b * c) + (3 * kh + kw) * oc + co) * h * w + y * w..][..w]
            };
            for kh in 0..3 {
                for y in usize::from(kh == 0)..h {
                    let orow = &mut o[(2 * y + kh - 1) * ow..][..ow];
                    overlap_add_row(orow, src(kh, 0, y), src(kh, 1, y), src(kh, 2, y));
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
            // With kh = 0 row 0 gets no gradient (the buffer's zeros).
            for y in usize::from(kh == 0)..h {
                let grow = &go[(2 * y + kh - 1) * ow..][..ow];
                gather_row(&mut gi[y * w..][..w], grow, kw);
            }
        });
    grad
}

avx512_copy! {
    /// `out[x] = (r0[2x] + r0[2x + 1] + r1[2x] + r1[2x + 1]) / 4`.
    fn pool_row / pool_row_avx512 = pool_row_plain(out: &mut [f32], r0: &[f32], r1: &[f32])
}

#[inline(always)]
fn pool_row_plain(out: &mut [f32], r0: &[f32], r1: &[f32]) {
    for ((v, a), b) in out
        .iter_mut()
        .zip(r0.chunks_exact(2))
        .zip(r1.chunks_exact(2))
    {
        *v = 0.25 * ((a[0] + a[1]) + (b[0] + b[1]));
    }
}

avx512_copy! {
    /// `row[2x] = row[2x + 1] = go[x] / 4`.
    fn spread_row / spread_row_avx512 = spread_row_plain(row: &mut [f32], go: &[f32])
}

#[inline(always)]
fn spread_row_plain(row: &mut [f32], go: &[f32]) {
    for (pair, &v) in row.chunks_exact_mut(2).zip(go) {
        pair[0] = 0.25 * v;
        pair[1] = 0.25 * v;
    }
}

avx512_copy! {
    /// One output row of the overlap-add from its three taps' input rows `k0`, `k1`, `k2`
    /// (kw = 0, 1, 2): `out[2x] += k1[x]`, `out[2x + 1] += k2[x] + k0[x + 1]`.
    fn overlap_add_row / overlap_add_row_avx512 = overlap_add_row_plain(
        out: &mut [f32],
        k0: &[f32],
        k1: &[f32],
        k2: &[f32],
    )
}

#[inline(always)]
fn overlap_add_row_plain(out: &mut [f32], k0: &[f32], k1: &[f32], k2: &[f32]) {
    let w = k1.len();
    // Every pair but the last has all three taps; the last one's odd element lacks k0[w].
    let pairs = out
        .chunks_exact_mut(2)
        .zip(k1)
        .zip(k2)
        .zip(k0.iter().skip(1));
    for (((pair, &a), &b), &c) in pairs {
        pair[0] += a;
        pair[1] += b + c;
    }
    if w > 0 {
        out[2 * w - 2] += k1[w - 1];
        out[2 * w - 1] += k2[w - 1];
    }
}

avx512_copy! {
    /// `gi[x] = grow[2x + kw - 1]`, for x from 1 when kw = 0 (`gi[0]` is then 0).
    fn gather_row / gather_row_avx512 = gather_row_plain(gi: &mut [f32], grow: &[f32], kw: usize)
}

#[inline(always)]
fn gather_row_plain(gi: &mut [f32], grow: &[f32], kw: usize) {
    match kw {
        0 => {
            gi[0] = 0.0;
            for (v, pair) in gi[1..].iter_mut().zip(grow.chunks_exact(2)) {
                *v = pair[1];
            }
        }
        1 => {
            for (v, pair) in gi.iter_mut().zip(grow.chunks_exact(2)) {
                *v = pair[0];
            }
        }
        _ => {
            for (v, pair) in gi.iter_mut().zip(grow.chunks_exact(2)) {
                *v = pair[1];
            }
        }
    }
}
