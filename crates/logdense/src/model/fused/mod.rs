//! The fused, concat-free dense-layer operation: BN-ReLU-conv over a list of inputs.
//!
//! A sparse-dense layer reads a handful of earlier feature maps. Plain burn concatenates them,
//! normalises, rectifies and convolves, keeping every intermediate for the backward pass and
//! running the input gradient as a transposed convolution. The fused operation
//! ([`bn_relu_conv`]) packs the normalised, rectified inputs straight into GEMM tiles, keeps only
//! the inputs themselves (which the network holds anyway) for the backward pass, and computes
//! every gradient with GEMMs. The kernels are `logdense_kernels`' (plain loops and GEMMs on
//! `f32` slices); this module wraps them as burn operations, with and without autodiff.
//!
//! The FC networks' per-layer transitions go through it too: an up transition's BN-ReLU-3x3
//! stride-2 transposed convolution is the fused BN-ReLU-1x1 convolution followed by one
//! overlap-add step ([`bn_relu_deconv`]), and a down transition's 2x2 average pool is one step
//! ([`avg_pool2`]); see [`Resample`]. A classification head's BN-ReLU-average-linear is the
//! fused BN-ReLU-1x1 convolution to the classes followed by the average
//! ([`bn_relu_pool_linear`]).
//!
//! # When the fused path runs
//!
//! Every function takes a [`Fused`]: the model's options (`NetOptions` in
//! [`crate::model::network`]: the flag, the precision and the f32 kernels, carried by each
//! layer and passed with every kernel call; `true`/`false` stand for on in f32 and off). With
//! the flag on, the fused path runs where it applies, in `f32`, for the shapes
//! [`conv_backend`] and [`deconv_supported`] accept, on one of two backends
//! ([`FusedBackend`]):
//! - on the `flex` CPU device, the CPU kernels: nothing concatenated, normalised or rectified
//!   is ever stored;
//! - on a cubecl device (a GPU through wgpu or Vulkan), the recomputing layer of the
//!   `recompute` module: burn's own ops, keeping only each layer's inputs and statistics for
//!   the backward pass and recomputing one layer's concatenation, BN and ReLU there, so that
//!   memory grows with the layers' outputs as on the CPU. Layers and heads take it; the FC
//!   networks' transitions run on plain ops on a GPU.
//!
//! Everywhere else (flag off, another device, another dtype, other shapes) the plain burn path
//! runs instead ([`reference_bn_relu_conv`], [`reference_bn_relu_deconv`], burn's
//! `avg_pool2d`), silently and with the same result; tests hold them equal. Both backends run
//! under burn's gradient checkpointing too. `SparseDenseNet::fused_backend` reports which
//! path a model's layers take, and [`kernel_runs`] counts the fused steps that actually ran.

#[cfg(all(any(feature = "wgpu", feature = "vulkan"), not(feature = "fusion")))]
mod cube_kernels;
mod op;
mod recompute;
mod resample;
mod tracking;

use std::cell::Cell;

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, Flex};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d};
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{DType, TensorData};

use crate::model::tensor_ops::cat_channels;
use burn::backend::tensor::FloatTensor;
use tracking::{Routed, Strategy, TrackedOf};

pub use logdense_kernels::Resample;
pub use tracking::MAX_INPUTS;

/// How many times each fused kernel ran on one thread (see [`kernel_runs`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelRuns {
    /// Fused BN-ReLU-conv forwards (layers, transitions, heads, and the first
    /// half of a fused up transition).
    pub conv_forward: u64,
    /// Their backward steps.
    pub conv_backward: u64,
    /// Average-pool and overlap-add forwards.
    pub resample_forward: u64,
    /// Their backward steps.
    pub resample_backward: u64,
    /// Forwards of the recomputing layer from the backend's own ops (GPU devices).
    pub recompute_forward: u64,
    /// Their backward steps.
    pub recompute_backward: u64,
    /// The recomputing layer's CubeCL kernel launches (packing the activation, the inputs'
    /// gradients) on burn's unfused cubecl backend.
    pub cube_kernels: u64,
}

thread_local! {
    static RUNS: Cell<KernelRuns> = const {
        Cell::new(KernelRuns {
            conv_forward: 0,
            conv_backward: 0,
            resample_forward: 0,
            resample_backward: 0,
            recompute_forward: 0,
            recompute_backward: 0,
            cube_kernels: 0,
        })
    };
}

/// The fused kernels that have run on the calling thread so far (a forward counts on the thread
/// that called it, a backward step on the thread that ran `backward()`). The difference of two
/// readings tells whether a call took the fused path or the plain one; it costs one
/// thread-local increment per kernel call.
pub fn kernel_runs() -> KernelRuns {
    RUNS.with(Cell::get)
}

/// Counts a kernel run on this thread.
fn count(update: impl FnOnce(&mut KernelRuns)) {
    RUNS.with(|runs| {
        let mut r = runs.get();
        update(&mut r);
        runs.set(r);
    });
}

pub use logdense_kernels::conv::{F32Kernels, Kernels, Precision};

/// The precision a model computed in: `requested` where the fused CPU kernels ran, f32
/// elsewhere (the plain path, the recomputing GPU layer).
pub fn precision_of_model(requested: Precision, cpu_kernels_active: bool) -> Precision {
    if cpu_kernels_active {
        requested
    } else {
        Precision::F32
    }
}

/// `model.f32_kernels` in configs: [`F32Kernels`]' name (`"direct"`, `"winograd"`, `"gemm"`).
pub mod f32_kernels_serde {
    use super::F32Kernels;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the kernels' name.
    pub fn serialize<S: Serializer>(k: &F32Kernels, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.name())
    }

    /// Reads a kernel family's name; an unknown one names the choices.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<F32Kernels, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// `model.precision` in configs: [`Precision`]'s name (`"f32"` or `"bf16"`).
pub mod precision_serde {
    use super::Precision;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the precision's name.
    pub fn serialize<S: Serializer>(p: &Precision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.name())
    }

    /// Reads a precision's name; an unknown one names the choices.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The precision the fused kernels will run a `requested` precision in on this CPU: bf16
/// where it has AMX tiles (Intel Sapphire Rapids on) or AVX512-BF16 (Cooper Lake, AMD Zen 4
/// on); elsewhere f32, with a one-line message (bf16 would be emulated there, far slower than
/// f32).
pub fn effective_precision(requested: Precision) -> Precision {
    use logdense_kernels::bf16::Kernel;
    match requested {
        // The same choice the kernels make for their tile step: AMX, else AVX512-BF16.
        Precision::Bf16 if logdense_kernels::bf16::kernel() != Kernel::Portable => Precision::Bf16,
        Precision::Bf16 => {
            eprintln!(
                "precision bf16: this CPU has neither AMX bf16 tiles nor AVX512-BF16; \
                 the fused kernels run in f32"
            );
            Precision::F32
        }
        Precision::F32 => Precision::F32,
    }
}

/// How a layer runs: through the fused kernels where they apply, and on which
/// ([`Kernels`]: precision and f32 kernel family), or on plain burn ops. The network's option
/// (`NetOptions` in [`crate::model::network`]), carried by each of its layers: two models with
/// different choices run side by side in one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fused {
    /// Take the fused path where it applies (off: plain burn ops everywhere).
    pub on: bool,
    /// The kernels of the fused path.
    pub kernels: Kernels,
}

impl From<bool> for Fused {
    /// On (in f32, on the direct kernels or the calling thread's choice) or off.
    fn from(on: bool) -> Self {
        Fused {
            on,
            kernels: Kernels::ambient(),
        }
    }
}

/// Whether `device` is the `flex` CPU device (with or without autodiff).
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Whether `device` is one of burn's cubecl devices (a GPU through wgpu or Vulkan, with or
/// without autodiff).
pub fn is_cube(device: &Device) -> bool {
    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    {
        matches!(
            device.clone().without_autodiff().as_dispatch(),
            DispatchDevice::Cube(_)
        )
    }
    #[cfg(not(any(feature = "wgpu", feature = "vulkan")))]
    {
        let _ = device;
        false
    }
}

/// Where a call's fused path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedBackend {
    /// The CPU kernels (`logdense_kernels`), on the flex device: nothing concatenated, only
    /// the inputs kept.
    CpuKernels,
    /// The recomputing layer from the backend's own ops, on a cubecl (GPU) device: one layer's
    /// concatenation formed at a time and dropped, only the inputs kept.
    Recompute,
}

impl FusedBackend {
    /// Where the fused path of a device runs, if it has one.
    pub fn of(device: &Device) -> Option<Self> {
        if is_flex(device) {
            Some(FusedBackend::CpuKernels)
        } else if is_cube(device) {
            Some(FusedBackend::Recompute)
        } else {
            None
        }
    }
}

/// Where the fused path can run on these tensors: all f32 on one device that has a fused path
/// (a tensor elsewhere goes to the plain ops, which report a device mismatch as burn does).
fn fused_backend_of(inputs: &[Tensor<4>], weight: &Tensor<4>) -> Option<FusedBackend> {
    let device = weight.device();
    let backend = FusedBackend::of(&device)?;
    let same = |t: &Tensor<4>| t.dtype() == DType::F32 && t.device() == device;
    (same(weight) && inputs.iter().all(same)).then_some(backend)
}

/// Whether the fused kernels can run on these tensors: f32, all on the flex device (a tensor
/// elsewhere goes to the plain ops, which report a device mismatch as burn does).
pub fn on_flex_f32(inputs: &[Tensor<4>]) -> bool {
    inputs.iter().all(flex_f32)
}

/// Whether `t` is f32 on the flex device.
fn flex_f32<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && is_flex(&t.device())
}

/// Whether the fused path can run this convolution, and where: a square odd kernel with
/// "same" padding, stride 1, no dilation or groups, its weight and every input f32 on one
/// device with a fused path ([`FusedBackend`]).
pub fn conv_backend(inputs: &[Tensor<4>], conv: &Conv2d) -> Option<FusedBackend> {
    let [k, kw] = conv.kernel_size;
    let same_padding = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r] == [k / 2; 4],
        PaddingConfig2d::Same => true,
        PaddingConfig2d::Valid => k == 1,
    };
    let geometry = k == kw
        && k % 2 == 1
        && same_padding
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1;
    if geometry {
        fused_backend_of(inputs, &conv.weight.val())
    } else {
        None
    }
}

/// Whether the fused CPU kernels can run this convolution ([`conv_backend`] on the flex
/// device).
pub fn conv_supported(inputs: &[Tensor<4>], conv: &Conv2d) -> bool {
    conv_backend(inputs, conv) == Some(FusedBackend::CpuKernels)
}

/// `conv(relu(bn(cat(inputs, 1))))`: with `fused` on and where [`conv_supported`], through the
/// fused kernels (a convolution's bias is added after the fused part), otherwise through
/// [`reference_bn_relu_conv`]. In training (autodiff device, BN training flag on) BN normalises
/// with batch statistics and updates its running averages exactly as [`BatchNorm::forward`]
/// does.
pub fn bn_relu_conv(
    inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    conv: &Conv2d,
    fused: impl Into<Fused>,
) -> Tensor<4> {
    assert!(!inputs.is_empty(), "a layer needs at least one input");
    let fused = fused.into();
    let Some(backend) = conv_backend(&inputs, conv).filter(|_| fused.on) else {
        return reference_bn_relu_conv(inputs, bn, conv);
    };
    let out = fused_bn_relu_conv(backend, inputs, bn, conv.weight.val(), fused.kernels);
    add_bias(out, conv)
}

/// `out` plus the convolution's bias, where it has one (the fused paths convolve without it).
fn add_bias(out: Tensor<4>, conv: &Conv2d) -> Tensor<4> {
    match &conv.bias {
        Some(bias) => {
            let c = bias.dims()[0];
            out + bias.val().reshape([1, c, 1, 1])
        }
        None => out,
    }
}

/// `linear(mean over H, W of relu(bn(cat(inputs, 1))))`, the classification head, `[N,
/// classes]`. With `fused` on and everything f32 on flex, the linear map runs before the
/// average (both are linear, so they commute) as the fused BN-ReLU-1x1 convolution to
/// `classes` channels: the normalised, rectified features are never stored or concatenated,
/// and burn's batch norm with its layout copies is not run. Otherwise the plain burn ops
/// ([`reference_bn_relu_pool_linear`]).
pub fn bn_relu_pool_linear(
    inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    linear: &Linear,
    fused: impl Into<Fused>,
) -> Tensor<2> {
    assert!(!inputs.is_empty(), "a head needs at least one input");
    let fused = fused.into();
    // burn's Linear keeps its weight as [in, out]; the 1x1 convolution takes [out, in, 1, 1].
    let weight = linear.weight.val();
    let [cin, classes] = weight.dims();
    let weight = weight.transpose().reshape([classes, cin, 1, 1]);
    let Some(backend) = fused_backend_of(&inputs, &weight).filter(|_| fused.on) else {
        return reference_bn_relu_pool_linear(inputs, bn, linear);
    };
    let per_pixel = fused_bn_relu_conv(backend, inputs, bn, weight, fused.kernels);
    let [n, _, h, w] = per_pixel.dims();
    let pooled = per_pixel
        .reshape([n, classes, h * w])
        .mean_dim(2)
        .reshape([n, classes]);
    match &linear.bias {
        Some(bias) => pooled + bias.val().unsqueeze(),
        None => pooled,
    }
}

/// The plain burn path of [`bn_relu_pool_linear`]: concatenate, normalise, rectify, average,
/// then the linear map.
pub fn reference_bn_relu_pool_linear(
    inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    linear: &Linear,
) -> Tensor<2> {
    let y = relu(bn.forward(cat_channels(inputs)));
    let [n, c, _, _] = y.dims();
    linear.forward(adaptive_avg_pool2d(y, [1, 1]).reshape([n, c]))
}

/// The fused call with an explicit weight `[out, in, k, k]` (odd k, stride 1, same padding), on
/// `backend`, which the caller found for these tensors.
fn fused_bn_relu_conv(
    backend: FusedBackend,
    mut inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    weight: Tensor<4>,
    kernels: Kernels,
) -> Tensor<4> {
    if inputs.len() > MAX_INPUTS {
        // Beyond the backward step's parent limit, the oldest inputs travel as one block.
        let tail = inputs.split_off(inputs.len() - (MAX_INPUTS - 1));
        let head = cat_channels(inputs);
        inputs = std::iter::once(head).chain(tail).collect();
    }
    let device = inputs[0].device();
    let strategy = Strategy::of(&device);
    let training = strategy.is_some() && bn.training.is_enabled();
    let (out, stats) = match backend {
        FusedBackend::CpuKernels => cpu_bn_relu_conv(inputs, bn, weight, kernels, strategy),
        FusedBackend::Recompute => recompute_on_device(inputs, bn, weight, strategy),
    };
    if training {
        update_running_stats(bn, &device, stats);
    }
    out
}

/// Moves BN's running averages towards a training step's batch statistics, as
/// [`BatchNorm::forward`] does. The statistics come without autodiff: constants beside the
/// running averages, which stay on `device`.
fn update_running_stats(bn: &BatchNorm, device: &Device, [mean, var]: [Tensor<1>; 2]) {
    let m = bn.momentum;
    let update = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(device)
            .mul_scalar(1.0 - m)
            .add(batch.mul_scalar(m))
            .detach()
    };
    bn.running_mean
        .update(update(bn.running_mean.value_sync(), mean));
    bn.running_var
        .update(update(bn.running_var.value_sync(), var));
}

/// [`fused_bn_relu_conv`] on the CPU kernels, tracked under `strategy` (in training when BN's
/// flag says so); returns the output and the statistics used, the latter without autodiff.
fn cpu_bn_relu_conv(
    inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    weight: Tensor<4>,
    kernels: Kernels,
    strategy: Option<Strategy>,
) -> (Tensor<4>, [Tensor<1>; 2]) {
    let inner = inputs[0].device().without_autodiff();
    let stat = |t: Tensor<1>| plain(t.without_autodiff());
    let (mean, var) = (stat(bn.running_mean.value()), stat(bn.running_var.value()));
    let (out, mean, var) = match strategy {
        Some(strategy) => {
            let (out, mean, var) = op::forward_tracked(
                inputs.into_iter().map(|t| tracked(t, strategy)).collect(),
                tracked(bn.gamma.val(), strategy),
                tracked(bn.beta.val(), strategy),
                &mean,
                &var,
                tracked(weight, strategy),
                bn.training.is_enabled(),
                bn.epsilon,
                kernels,
                strategy,
            );
            (Flex::from_tracked(out, strategy), mean, var)
        }
        None => {
            let (out, mean, var) = op::forward(
                &inputs.into_iter().map(plain).collect::<Vec<_>>(),
                &plain(bn.gamma.val()),
                &plain(bn.beta.val()),
                &mean,
                &var,
                &plain(weight),
                false,
                bn.epsilon,
                kernels,
            );
            (Flex::from_plain(out), mean, var)
        }
    };
    let vector = |v: Vec<f32>| {
        let n = v.len();
        Tensor::<1>::from_data(TensorData::new(v, [n]), &inner)
    };
    (out, [vector(mean), vector(var)])
}

/// [`fused_bn_relu_conv`] through the recomputing layer on the tensors' device: burn's ops on
/// flex (where GPU devices' layer is checked), and on a cubecl device its CubeCL kernels, or
/// burn's ops under fusion (which fuses them itself, and whose tensors are not the kernels'
/// `CubeTensor`).
fn recompute_on_device(
    inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    weight: Tensor<4>,
    strategy: Option<Strategy>,
) -> (Tensor<4>, [Tensor<1>; 2]) {
    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    if is_cube(&weight.device()) {
        #[cfg(feature = "fusion")]
        type P = recompute::BurnOps;
        #[cfg(not(feature = "fusion"))]
        type P = cube_kernels::CubeKernels;
        return recompute_bn_relu_conv_on::<burn::backend::Cube, P>(inputs, bn, weight, strategy);
    }
    recompute_bn_relu_conv_on::<Flex, recompute::BurnOps>(inputs, bn, weight, strategy)
}

/// The recomputing layer on backend `B` ([`recompute`]); returns the output and the statistics
/// used, the latter without autodiff.
fn recompute_bn_relu_conv_on<B: Routed, P: recompute::Packing<B>>(
    inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    weight: Tensor<4>,
    strategy: Option<Strategy>,
) -> (Tensor<4>, [Tensor<1>; 2]) {
    fn on_b<B: Routed, const D: usize>(t: Tensor<D>) -> FloatTensor<B> {
        B::plain(t.without_autodiff()).expect("a tensor of the layer's backend")
    }
    fn tracked_on<B: Routed, const D: usize>(t: Tensor<D>, s: Strategy) -> TrackedOf<B> {
        B::tracked(t, s).expect("an autodiff tensor of the layer's backend")
    }
    let running = (
        on_b::<B, 1>(bn.running_mean.value()),
        on_b::<B, 1>(bn.running_var.value()),
    );
    let (out, mean, var) = match strategy {
        Some(strategy) => {
            let r = recompute::forward_tracked::<B, P>(
                inputs
                    .into_iter()
                    .map(|t| tracked_on::<B, 4>(t, strategy))
                    .collect(),
                tracked_on::<B, 1>(bn.gamma.val(), strategy),
                tracked_on::<B, 1>(bn.beta.val(), strategy),
                tracked_on::<B, 4>(weight, strategy),
                running,
                bn.training.is_enabled(),
                bn.epsilon,
                strategy,
            );
            (B::from_tracked(r.output, strategy), r.mean, r.var)
        }
        None => {
            let params = recompute::Params {
                gamma: on_b::<B, 1>(bn.gamma.val()),
                beta: on_b::<B, 1>(bn.beta.val()),
                weight: on_b::<B, 4>(weight),
                mean: running.0,
                var: running.1,
                batch_stats: false,
                epsilon: bn.epsilon,
            };
            let inputs: Vec<_> = inputs.into_iter().map(on_b::<B, 4>).collect();
            let r = recompute::forward::<B, P>(&inputs, &params);
            (B::from_plain(r.output), r.mean, r.var)
        }
    };
    (out, [B::from_plain(mean), B::from_plain(var)])
}

/// `conv(relu(bn(cat(inputs, 1))))` through the recomputing layer ([`FusedBackend::Recompute`])
/// on whichever backend the tensors are, the flex CPU device included, where GPU devices take
/// it: the check that it equals the plain ops runs on the CPU too. `None` where the convolution
/// or the tensors do not fit ([`conv_backend`]). Updates BN's running averages in training as
/// [`bn_relu_conv`] does.
pub fn recompute_bn_relu_conv(
    inputs: Vec<Tensor<4>>,
    bn: &BatchNorm,
    conv: &Conv2d,
) -> Option<Tensor<4>> {
    conv_backend(&inputs, conv)?;
    let out = fused_bn_relu_conv(
        FusedBackend::Recompute,
        inputs,
        bn,
        conv.weight.val(),
        Kernels::default(),
    );
    Some(add_bias(out, conv))
}

/// A 2x2 stride-2 average pool: with `fused` on and `x` f32 on flex, one fused step (see
/// [`Resample`]); otherwise burn's pool.
pub fn avg_pool2(x: Tensor<4>, fused: impl Into<Fused>) -> Tensor<4> {
    if fused.into().on && on_flex_f32(std::slice::from_ref(&x)) {
        resample(x, Resample::AvgPool2)
    } else {
        avg_pool2d(x, AvgPoolOptions::new([2, 2]))
    }
}

/// Whether the fused path of [`bn_relu_deconv`] can run this transposed convolution: kernel
/// 3, stride 2, padding 1, output padding 1, no dilation, groups or bias, its weight and `x`
/// f32 on the flex device.
pub fn deconv_supported(x: &Tensor<4>, deconv: &ConvTranspose2d) -> bool {
    deconv.kernel_size == [3, 3]
        && deconv.stride == [2, 2]
        && deconv.padding == [1, 1]
        && deconv.padding_out == [1, 1]
        && deconv.dilation == [1, 1]
        && deconv.groups == 1
        && deconv.bias.is_none()
        && flex_f32(&deconv.weight)
        && on_flex_f32(std::slice::from_ref(x))
}

/// `deconv(relu(bn(x)))` for a 3x3 stride-2 transposed convolution (padding 1, output padding
/// 1, no bias): with `fused` on and where [`deconv_supported`], the fused BN-ReLU-1x1
/// convolution to `9 x cout` channels followed by the stride-2 overlap-add; otherwise
/// [`reference_bn_relu_deconv`].
pub fn bn_relu_deconv(
    x: Tensor<4>,
    bn: &BatchNorm,
    deconv: &ConvTranspose2d,
    fused: impl Into<Fused>,
) -> Tensor<4> {
    let fused = fused.into();
    if !(fused.on && deconv_supported(&x, deconv)) {
        return reference_bn_relu_deconv(x, bn, deconv);
    }
    let [cin, cout, _, _] = deconv.weight.dims();
    // W[i, o, kh, kw] -> [(kh, kw, o), i, 1, 1]: tap-major output channels, as the overlap-add reads.
    let weight = deconv
        .weight
        .val()
        .permute([2, 3, 1, 0])
        .reshape([9 * cout, cin, 1, 1]);
    resample(
        fused_bn_relu_conv(FusedBackend::CpuKernels, vec![x], bn, weight, fused.kernels),
        Resample::OverlapAdd3x3S2,
    )
}

/// The plain burn path of [`bn_relu_deconv`].
pub fn reference_bn_relu_deconv(
    x: Tensor<4>,
    bn: &BatchNorm,
    deconv: &ConvTranspose2d,
) -> Tensor<4> {
    deconv.forward(relu(bn.forward(x)))
}

/// A [`Resample`] of a flex f32 tensor, tracked when the tensor is.
fn resample(x: Tensor<4>, kind: Resample) -> Tensor<4> {
    match Strategy::of(&x.device()) {
        Some(strategy) => Flex::from_tracked(
            resample::apply_tracked(kind, tracked(x, strategy), strategy),
            strategy,
        ),
        None => Flex::from_plain(resample::apply(kind, &plain(x))),
    }
}

/// A float tensor's `Autodiff<Flex>` primitive under `strategy` (the caller checked the device).
fn tracked<const D: usize>(t: Tensor<D>, strategy: Strategy) -> op::TrackedTensor {
    Flex::tracked(t, strategy).expect("an autodiff flex tensor")
}

/// A float tensor's `Flex` primitive (the caller checked the device).
fn plain<const D: usize>(t: Tensor<D>) -> FlexTensor {
    Flex::plain(t).expect("a flex tensor")
}

/// The same computation with plain burn operations: concatenate, normalise, rectify, convolve.
pub fn reference_bn_relu_conv(inputs: Vec<Tensor<4>>, bn: &BatchNorm, conv: &Conv2d) -> Tensor<4> {
    conv.forward(relu(bn.forward(cat_channels(inputs))))
}
