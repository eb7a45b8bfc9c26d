//! The fused layer on any backend, the memory-lean path of GPU devices (burn's cubecl backend),
//! and of any backend the CPU kernels do not cover.
//!
//! The forward computes BN's batch statistics input by input, forms the layer's normalised,
//! rectified input (its *activation*) through a [`Packing`], convolves it with burn's
//! convolution and drops it. The backward step keeps only the inputs (which the network holds
//! anyway), the parameters and the statistics; it forms this one layer's activation again,
//! runs burn's convolution gradients on it, and gets BN's and ReLU's gradients from per-channel
//! sums and one affine map per input. A network trained this way holds its layers' outputs for
//! the backward pass, O(L) feature maps, where plain autodiff holds every layer's concatenated,
//! normalised and rectified input, O(L^2) for a DenseNet; one layer's transient buffers are
//! freed before the next step runs. The cost is forming each activation twice, memory-bound
//! work beside the convolution's.
//!
//! The [`Packing`] is burn's ops ([`BurnOps`]: a concatenation and elementwise ops, which
//! burn's fusion fuses where it is on) or, on the unfused cubecl backend, two CubeCL kernels
//! that read the inputs in place (`cube_kernels`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Scalar, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, Slice};

use super::count;
use super::tracking::{self, Strategy, TrackedOf};

/// A layer's parameters and statistics as primitives of `B`: BN's `gamma` and `beta`, the
/// convolution's `weight` `[out, in, k, k]` (odd k, stride 1, "same" padding), and the mean and
/// variance to normalise with (`batch_stats`: the batch's, computed by the forward; otherwise
/// these running averages).
#[derive(Debug, Clone)]
pub struct Params<B: Backend> {
    /// BN scale, `[in]`.
    pub gamma: FloatTensor<B>,
    /// BN shift, `[in]`.
    pub beta: FloatTensor<B>,
    /// The convolution's weight.
    pub weight: FloatTensor<B>,
    /// The running mean, `[in]` (ignored with `batch_stats`).
    pub mean: FloatTensor<B>,
    /// The running variance, `[in]` (ignored with `batch_stats`).
    pub var: FloatTensor<B>,
    /// Normalise with the batch's statistics.
    pub batch_stats: bool,
    /// BN's epsilon.
    pub epsilon: f64,
}

/// What the forward returns: the output and the statistics it normalised with.
pub struct Output<T, B: Backend> {
    /// `conv(relu(bn(cat(inputs))))`.
    pub output: T,
    /// The mean used, `[in]`.
    pub mean: FloatTensor<B>,
    /// The (biased) variance used, `[in]`.
    pub var: FloatTensor<B>,
}

/// How the recomputing layer forms its normalised, rectified input and its inputs' gradients:
/// burn's own ops ([`BurnOps`], any backend) or CubeCL kernels (`CubeKernels`, burn's unfused
/// cubecl backend). Everything else (statistics, convolution, reductions) is burn's.
pub trait Packing<B: Backend>: Send + Sync + std::fmt::Debug + 'static {
    /// `relu(x * scale + shift)` of the inputs side by side on the channel axis,
    /// `[N, C, H, W]`, with `scale` and `shift` per channel of the whole, `[C]`.
    fn pack(
        inputs: &[FloatTensor<B>],
        scale: &FloatTensor<B>,
        shift: &FloatTensor<B>,
    ) -> FloatTensor<B>;
    /// Each input's gradient, `k1 * grad + k2 * x + k3` over its channels of `grad`
    /// (`[N, C, H, W]`), with per-channel coefficients `[C]`.
    fn input_grads(
        grad: &FloatTensor<B>,
        inputs: &[FloatTensor<B>],
        k: [&FloatTensor<B>; 3],
    ) -> Vec<FloatTensor<B>>;
}

/// [`Packing`] from burn's ops: a concatenation, then elementwise ops; slices of the gradient.
#[derive(Debug, Clone, Copy)]
pub struct BurnOps;

impl<B: Backend> Packing<B> for BurnOps {
    fn pack(
        inputs: &[FloatTensor<B>],
        scale: &FloatTensor<B>,
        shift: &FloatTensor<B>,
    ) -> FloatTensor<B> {
        let x = concatenate::<B>(inputs);
        let y = B::float_add(
            B::float_mul(x, per_channel::<B>(scale.clone())),
            per_channel::<B>(shift.clone()),
        );
        B::relu(y)
    }

    fn input_grads(
        grad: &FloatTensor<B>,
        inputs: &[FloatTensor<B>],
        [k1, k2, k3]: [&FloatTensor<B>; 3],
    ) -> Vec<FloatTensor<B>> {
        channel_ranges::<B>(inputs)
            .zip(inputs)
            .map(|(range, x)| {
                let part = |k: &FloatTensor<B>| per_channel::<B>(vector_slice::<B>(k, &range));
                B::float_add(
                    B::float_add(
                        B::float_mul(channel_slice::<B>(grad, &range), part(k1)),
                        B::float_mul(x.clone(), part(k2)),
                    ),
                    part(k3),
                )
            })
            .collect()
    }
}

/// The convolution's options: stride 1, "same" padding for the weight's odd kernel.
fn conv_options<B: Backend>(weight: &FloatTensor<B>) -> ConvOptions<2> {
    let k = weight.shape()[2];
    ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1)
}

/// The inputs side by side on the channel axis (the input itself when there is one).
fn concatenate<B: Backend>(inputs: &[FloatTensor<B>]) -> FloatTensor<B> {
    match inputs {
        [one] => one.clone(),
        many => B::float_cat(many.to_vec(), 1),
    }
}

/// Vectors `[C_j]` end to end, `[C]`.
fn concatenate_vectors<B: Backend>(parts: Vec<FloatTensor<B>>) -> FloatTensor<B> {
    match parts.len() {
        1 => parts.into_iter().next().expect("one part"),
        _ => B::float_cat(parts, 0),
    }
}

/// Each input's channels within the concatenation.
pub(super) fn channel_ranges<B: Backend>(
    inputs: &[FloatTensor<B>],
) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    inputs.iter().scan(0, |offset, x| {
        let c = x.shape()[1];
        *offset += c;
        Some(*offset - c..*offset)
    })
}

/// Channels `range` of `[N, C, H, W]` (a view where the backend has them).
fn channel_slice<B: Backend>(t: &FloatTensor<B>, range: &std::ops::Range<usize>) -> FloatTensor<B> {
    let channels = Slice::new(range.start as isize, Some(range.end as isize), 1);
    B::float_slice(
        t.clone(),
        &[Slice::full(), channels, Slice::full(), Slice::full()],
    )
}

/// Entries `range` of a vector.
fn vector_slice<B: Backend>(v: &FloatTensor<B>, range: &std::ops::Range<usize>) -> FloatTensor<B> {
    B::float_slice(
        v.clone(),
        &[Slice::new(
            range.start as isize,
            Some(range.end as isize),
            1,
        )],
    )
}

/// Reshapes a `[C]` vector to `[1, C, 1, 1]`.
fn per_channel<B: Backend>(v: FloatTensor<B>) -> FloatTensor<B> {
    let c = v.shape()[0];
    B::float_reshape(v, Shape::new([1, c, 1, 1]))
}

/// Sums `[N, C, H, W]` over all axes but the channels: `[C]`.
fn channel_sums<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let [_, c, h, w] = t.shape().dims::<4>();
    let images = B::float_reshape(B::float_sum_dim(t, 0), Shape::new([c, h * w]));
    B::float_reshape(B::float_sum_dim(images, 1), Shape::new([c]))
}

/// The batch mean and biased variance of each channel of the inputs, `[C]` each, computed
/// input by input (the inputs are never concatenated for them).
fn batch_stats<B: Backend>(inputs: &[FloatTensor<B>]) -> (FloatTensor<B>, FloatTensor<B>) {
    let (means, vars) = inputs
        .iter()
        .map(|x| {
            let [n, _, h, w] = x.shape().dims::<4>();
            let count = Scalar::Float((n * h * w) as f64);
            let mean = B::float_div_scalar(channel_sums::<B>(x.clone()), count);
            let centred = B::float_sub(x.clone(), per_channel::<B>(mean.clone()));
            let var = B::float_div_scalar(
                channel_sums::<B>(B::float_mul(centred.clone(), centred)),
                count,
            );
            (mean, var)
        })
        .unzip();
    (
        concatenate_vectors::<B>(means),
        concatenate_vectors::<B>(vars),
    )
}

/// BN's per-channel affine map from its statistics: `(scale, shift, inv_std)` with
/// `bn(x) = x * scale + shift`.
fn affine<B: Backend>(p: &Params<B>) -> [FloatTensor<B>; 3] {
    let inv_std = B::float_recip(B::float_sqrt(B::float_add_scalar(
        p.var.clone(),
        Scalar::Float(p.epsilon),
    )));
    let scale = B::float_mul(p.gamma.clone(), inv_std.clone());
    let shift = B::float_sub(p.beta.clone(), B::float_mul(p.mean.clone(), scale.clone()));
    [scale, shift, inv_std]
}

/// The forward on plain primitives.
pub fn forward<B: Backend, P: Packing<B>>(
    inputs: &[FloatTensor<B>],
    p: &Params<B>,
) -> Output<FloatTensor<B>, B> {
    count(|runs| runs.recompute_forward += 1);
    let (mean, var) = if p.batch_stats {
        batch_stats::<B>(inputs)
    } else {
        (p.mean.clone(), p.var.clone())
    };
    let p = Params {
        mean: mean.clone(),
        var: var.clone(),
        ..p.clone()
    };
    let [scale, shift, _] = affine::<B>(&p);
    let activation = P::pack(inputs, &scale, &shift);
    let output = B::conv2d(
        activation,
        p.weight.clone(),
        None,
        conv_options::<B>(&p.weight),
    );
    Output { output, mean, var }
}

/// What the backward step keeps: the inputs (shared with the network, not copied), the
/// parameters and the statistics the forward used.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    inputs: Vec<FloatTensor<B>>,
    params: Params<B>,
}

/// The backward step; its parents are the `N - 3` inputs, then gamma, beta and the weight.
#[derive(Debug)]
struct RecomputeBackward<P, const N: usize>(std::marker::PhantomData<P>);

/// [`RecomputeBackward`] for every parent count.
struct RecomputeSteps<P>(std::marker::PhantomData<P>);

impl<B: Backend, P: Packing<B>> tracking::LayerStep<B> for RecomputeSteps<P> {
    type State = Saved<B>;
    type Step<const N: usize> = RecomputeBackward<P, N>;

    fn step<const N: usize>() -> RecomputeBackward<P, N> {
        RecomputeBackward(std::marker::PhantomData)
    }
}

impl<B: Backend, P: Packing<B>, const N: usize> Backward<B, N> for RecomputeBackward<P, N> {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Saved<B>, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let out_grad = grads.consume::<B>(&ops.node);
        let Saved { inputs, params: p } = ops.state;
        count(|runs| runs.recompute_backward += 1);
        let options = conv_options::<B>(&p.weight);
        // Recompute this layer's activation from its inputs.
        let [scale, shift, inv_std] = affine::<B>(&p);
        let activation = P::pack(&inputs, &scale, &shift);
        let activation_grad = B::conv2d_x_backward(
            activation.clone(),
            p.weight.clone(),
            out_grad.clone(),
            options.clone(),
        );
        let weight_grad =
            B::conv2d_weight_backward(activation.clone(), p.weight.clone(), out_grad, options);
        // The gradient at BN's output: ReLU passes it where the activation is positive.
        let grad = B::relu_backward(activation, activation_grad);
        let beta_grad = channel_sums::<B>(grad.clone());
        // sum(grad * (x - mean)) per channel, input by input.
        let centred_sums = channel_ranges::<B>(&inputs)
            .zip(&inputs)
            .map(|(range, x)| {
                let mean = per_channel::<B>(vector_slice::<B>(&p.mean, &range));
                let centred = B::float_sub(x.clone(), mean);
                channel_sums::<B>(B::float_mul(channel_slice::<B>(&grad, &range), centred))
            })
            .collect();
        let gamma_grad = B::float_mul(concatenate_vectors::<B>(centred_sums), inv_std.clone());
        // x's gradient is k1 * grad + k2 * x + k3 per channel. With batch statistics,
        // scale * (grad - mean(grad) - xhat * mean(grad * xhat)), xhat = (x - mean) * inv_std;
        // with fixed statistics, scale * grad.
        let [n, _, h, w] = inputs[0].shape().dims::<4>();
        let count = Scalar::Float((n * h * w) as f64);
        let (k2, k3) = if p.batch_stats {
            let t = B::float_div_scalar(gamma_grad.clone(), count);
            let k2 = B::float_neg(B::float_mul(
                B::float_mul(scale.clone(), inv_std.clone()),
                t.clone(),
            ));
            let k3 = B::float_mul(
                scale.clone(),
                B::float_sub(
                    B::float_mul(B::float_mul(p.mean.clone(), inv_std), t),
                    B::float_div_scalar(beta_grad.clone(), count),
                ),
            );
            (k2, k3)
        } else {
            let zeros = B::float_mul_scalar(scale.clone(), Scalar::Float(0.0));
            (zeros.clone(), zeros)
        };
        let mut grads_in_order = P::input_grads(&grad, &inputs, [&scale, &k2, &k3]);
        grads_in_order.extend([gamma_grad, beta_grad, weight_grad]);
        for (parent, grad) in ops.parents.into_iter().zip(grads_in_order) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The forward on autodiff primitives: computes on the inner primitives and registers
/// [`RecomputeBackward`] with the inputs, gamma, beta and the weight as parents.
#[allow(clippy::too_many_arguments)]
pub fn forward_tracked<B: Backend, P: Packing<B>>(
    inputs: Vec<TrackedOf<B>>,
    gamma: TrackedOf<B>,
    beta: TrackedOf<B>,
    weight: TrackedOf<B>,
    stats: (FloatTensor<B>, FloatTensor<B>),
    batch_stats: bool,
    epsilon: f64,
    strategy: Strategy,
) -> Output<TrackedOf<B>, B> {
    let parents = tracking::layer_parents(&inputs, [&gamma, &beta, &weight]);
    let inputs: Vec<FloatTensor<B>> = inputs.iter().map(|t| t.primitive().clone()).collect();
    let params = Params {
        gamma: gamma.primitive().clone(),
        beta: beta.primitive().clone(),
        weight: weight.primitive().clone(),
        mean: stats.0,
        var: stats.1,
        batch_stats,
        epsilon,
    };
    let Output { output, mean, var } = forward::<B, P>(&inputs, &params);
    // The backward step normalises with the statistics the forward used.
    let params = Params {
        mean: mean.clone(),
        var: var.clone(),
        ..params
    };
    let output = tracking::register_layer::<B, RecomputeSteps<P>>(
        parents,
        Saved { inputs, params },
        output,
        strategy,
    );
    Output { output, mean, var }
}
