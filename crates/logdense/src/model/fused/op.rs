//! The fused layer on burn's tensors: a forward on the `Flex` backend's primitives, and on
//! `Autodiff<Flex>` a handwritten backward step over all the layer's inputs and parameters.
//!
//! burn's `#[backend_extension]` macro does not route `Vec` tensor arguments, and a layer takes
//! a list of inputs, so the routing is done here by hand with `Tensor::try_into_primitive`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::TensorMetadata;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Shape, TensorData};

use logdense_kernels::conv::{self as kernel, Affine, Geometry};

use super::count;
use super::tracking::{self, Strategy};

/// An `Autodiff<Flex>` float tensor.
pub type TrackedTensor = FloatTensor<Autodiff<Flex>>;

/// A tensor's values in row-major order: borrowed when it is contiguous, copied otherwise.
pub(super) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// A new contiguous f32 tensor that takes over `values`.
pub(super) fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// The tensor itself when contiguous (an O(1) clone of its storage), else a contiguous copy, so
/// that the saved inputs are read in place by the backward step.
pub(super) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The geometry of a call, checked: same batch and size for every input, a square odd kernel
/// whose input channels are the inputs' sum.
fn geometry(inputs: &[FlexTensor], weight: &FlexTensor) -> Geometry {
    let dims = |t: &FlexTensor| t.shape().dims::<4>();
    let [batch, _, height, width] = dims(&inputs[0]);
    let channels: Vec<usize> = inputs
        .iter()
        .map(|t| {
            let [b, c, h, w] = dims(t);
            assert_eq!(
                (b, h, w),
                (batch, height, width),
                "fused layer inputs differ in batch or size"
            );
            c
        })
        .collect();
    let [out_channels, cin, kh, kw] = dims(weight);
    assert!(
        kh == kw && kh % 2 == 1,
        "fused layer needs a square odd kernel"
    );
    assert_eq!(cin, channels.iter().sum::<usize>(), "weight input channels");
    for t in inputs.iter().chain([weight]) {
        assert_eq!(t.dtype(), DType::F32, "the fused layer computes in f32");
    }
    Geometry {
        batch,
        height,
        width,
        channels,
        out_channels,
        kernel: kh,
    }
}

/// The forward on concrete tensors: returns the output and the statistics used.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    inputs: &[FlexTensor],
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    var: &FlexTensor,
    weight: &FlexTensor,
    batch_stats: bool,
    epsilon: f64,
    kernels: kernel::Kernels,
) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let geo = geometry(inputs, weight);
    count(|runs| runs.conv_forward += 1);
    let slices: Vec<_> = inputs.iter().map(values).collect();
    let refs: Vec<&[f32]> = slices.iter().map(|s| s.as_ref()).collect();
    let (mean, var) = if batch_stats {
        kernel::batch_stats(&geo, &refs)
    } else {
        (values(mean).into_owned(), values(var).into_owned())
    };
    let affine = Affine::new(&values(gamma), &values(beta), &mean, &var, epsilon);
    let out = kernel::forward_new(kernels, &geo, &refs, &affine, &values(weight));
    let shape = [geo.batch, geo.out_channels, geo.height, geo.width];
    (tensor(out, shape), mean, var)
}

/// What the backward step keeps: the inputs (shared, not copied), the parameters and the
/// statistics. No concatenation, BN output or ReLU output is stored.
#[derive(Debug, Clone)]
struct SavedLayer {
    inputs: Vec<FlexTensor>,
    gamma: FlexTensor,
    beta: FlexTensor,
    weight: FlexTensor,
    mean: Vec<f32>,
    var: Vec<f32>,
    batch_stats: bool,
    epsilon: f64,
    /// The kernels the forward ran on: the backward runs on the same.
    kernels: kernel::Kernels,
}

/// The backward step; its parents are the `N - 3` inputs, then gamma, beta and the weight.
#[derive(Debug)]
struct FusedLayerBackward<const N: usize>;

/// [`FusedLayerBackward`] for every parent count.
struct FusedLayerSteps;

impl tracking::LayerStep<Flex> for FusedLayerSteps {
    type State = SavedLayer;
    type Step<const N: usize> = FusedLayerBackward<N>;

    fn step<const N: usize>() -> FusedLayerBackward<N> {
        FusedLayerBackward
    }
}

impl<const N: usize> Backward<Flex, N> for FusedLayerBackward<N> {
    type State = SavedLayer;

    fn backward(self, ops: Ops<SavedLayer, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let out_grad = contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let geo = geometry(&s.inputs, &s.weight);
        count(|runs| runs.conv_backward += 1);
        let slices: Vec<_> = s.inputs.iter().map(values).collect();
        let refs: Vec<&[f32]> = slices.iter().map(|v| v.as_ref()).collect();
        let gamma = values(&s.gamma);
        let affine = Affine::new(&gamma, &values(&s.beta), &s.mean, &s.var, s.epsilon);
        let g = kernel::backward_with(
            s.kernels,
            &geo,
            &refs,
            &gamma,
            &affine,
            s.batch_stats,
            &values(&s.weight),
            &values(&out_grad),
        );
        let k = s.inputs.len();
        let c = geo.in_channels();
        let [gamma_grad, beta_grad, weight_grad] = [g.gamma, g.beta, g.weight];
        let mut grads_in_order: Vec<Option<FlexTensor>> = g
            .inputs
            .into_iter()
            .zip(&geo.channels)
            .map(|(v, &cj)| Some(tensor(v, [geo.batch, cj, geo.height, geo.width])))
            .collect();
        grads_in_order.push(Some(tensor(gamma_grad, [c])));
        grads_in_order.push(Some(tensor(beta_grad, [c])));
        grads_in_order.push(Some(tensor(
            weight_grad,
            [geo.out_channels, c, geo.kernel, geo.kernel],
        )));
        debug_assert_eq!(grads_in_order.len(), k + 3);
        for (parent, grad) in ops.parents.into_iter().zip(grads_in_order) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// The forward on `Autodiff<Flex>`: computes on the inner primitives and registers
/// [`FusedLayerBackward`] with the inputs, gamma, beta and the weight as parents. Returns the
/// output and the statistics used.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_tracked(
    inputs: Vec<TrackedTensor>,
    gamma: TrackedTensor,
    beta: TrackedTensor,
    mean: &FlexTensor,
    var: &FlexTensor,
    weight: TrackedTensor,
    batch_stats: bool,
    epsilon: f64,
    kernels: kernel::Kernels,
    strategy: Strategy,
) -> (TrackedTensor, Vec<f32>, Vec<f32>) {
    let parents = tracking::layer_parents(&inputs, [&gamma, &beta, &weight]);
    let primitives: Vec<FlexTensor> = inputs
        .iter()
        .map(|t| contiguous(t.primitive().clone()))
        .collect();
    let (gamma, beta, weight) = (
        gamma.primitive().clone(),
        beta.primitive().clone(),
        weight.primitive().clone(),
    );
    let (out, mean, var) = forward(
        &primitives,
        &gamma,
        &beta,
        mean,
        var,
        &weight,
        batch_stats,
        epsilon,
        kernels,
    );
    let saved = SavedLayer {
        inputs: primitives,
        gamma,
        beta,
        weight,
        mean: mean.clone(),
        var: var.clone(),
        batch_stats,
        epsilon,
        kernels,
    };
    (
        tracking::register_layer::<Flex, FusedLayerSteps>(parents, saved, out, strategy),
        mean,
        var,
    )
}
