//! The transitions' resampling as single autodiff steps on the `flex` backend: the 2x2 average
//! pool of a down transition, and the stride-2 overlap-add (col2im) that turns a 1x1
//! convolution to `9 x cout` channels into a 3x3 stride-2 transposed convolution.
//!
//! FC networks run one transition per carried layer (an FC-Log-DenseNet at 64 x 64 has over
//! 80), each on a small tensor. burn's general pooling and transposed-convolution kernels, and
//! the several autodiff steps of a plain BN-ReLU, cost more there than the arithmetic: these
//! two loops, plus the fused BN-ReLU-1x1 convolution, do the same work in one step each.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::backend::TensorMetadata;
use rayon::prelude::*;

use super::op::{contiguous, tensor, values, TrackedTensor};

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

    /// The forward loop: `x` of shape `dims` into a new output.
    pub fn forward(self, x: &[f32], dims: [usize; 4]) -> Vec<f32> {
        let [n, c, h, w] = dims;
        let [_, oc, oh, ow] = self.output_dims(dims);
        let mut out = vec![0f32; n * oc * oh * ow];
        match self {
            Resample::AvgPool2 => {
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
            }
            Resample::OverlapAdd3x3S2 => {
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
            }
        }
        out
    }

    /// The backward loop: the input gradient from the output gradient `g` (input shape `dims`).
    pub fn backward(self, g: &[f32], dims: [usize; 4]) -> Vec<f32> {
        let [n, c, h, w] = dims;
        let [_, oc, oh, ow] = self.output_dims(dims);
        let mut grad = vec![0f32; n * c * h * w];
        match self {
            Resample::AvgPool2 => {
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
            }
            Resample::OverlapAdd3x3S2 => {
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
            }
        }
        grad
    }

    /// The forward on a `Flex` tensor.
    pub(super) fn apply(self, x: &FlexTensor) -> FlexTensor {
        let dims = x.shape().dims::<4>();
        tensor(self.forward(&values(x), dims), self.output_dims(dims))
    }

    /// The forward on an `Autodiff<Flex>` tensor, registering [`ResampleBackward`].
    pub(super) fn apply_tracked(self, x: TrackedTensor) -> TrackedTensor {
        let node = x.node();
        let dims = x.primitive().shape().dims::<4>();
        let out = self.apply(&contiguous(x.primitive().clone()));
        match ResampleBackward
            .prepare::<NoCheckpointing>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((self, dims), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// The backward step of a [`Resample`]; it keeps only the kind and the input shape.
#[derive(Debug)]
struct ResampleBackward;

impl Backward<Flex, 1> for ResampleBackward {
    type State = (Resample, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let out_grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (kind, dims) = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let grad = kind.backward(&values(&out_grad), dims);
            grads.register::<Flex>(node.id, tensor(grad, dims));
        }
    }
}
