//! The transitions' resampling ([`Resample`], whose loops live in `logdense_kernels`) as
//! single autodiff steps on the `flex` backend: the 2x2 average pool of a down transition, and
//! the stride-2 overlap-add (col2im) that turns a 1x1 convolution to `9 x cout` channels into a
//! 3x3 stride-2 transposed convolution.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::backend::TensorMetadata;
use logdense_kernels::Resample;

use super::count;
use super::op::{contiguous, tensor, values, TrackedTensor};
use super::tracking::{self, Strategy};

/// The forward on a `Flex` tensor.
pub(super) fn apply(kind: Resample, x: &FlexTensor) -> FlexTensor {
    let dims = x.shape().dims::<4>();
    count(|runs| runs.resample_forward += 1);
    tensor(kind.forward(&values(x), dims), kind.output_dims(dims))
}

/// The forward on an `Autodiff<Flex>` tensor, registering [`ResampleBackward`].
pub(super) fn apply_tracked(kind: Resample, x: TrackedTensor, strategy: Strategy) -> TrackedTensor {
    let node = x.node();
    let dims = x.primitive().shape().dims::<4>();
    let out = apply(kind, &contiguous(x.primitive().clone()));
    tracking::register(ResampleBackward, [node], (kind, dims), out, strategy)
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
            count(|runs| runs.resample_backward += 1);
            let grad = kind.backward(&values(&out_grad), dims);
            grads.register::<Flex>(node.id, tensor(grad, dims));
        }
    }
}
