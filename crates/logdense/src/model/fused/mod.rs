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
//! the flag on, the fused kernels run where they apply: on the `flex` CPU backend, in `f32`, for the shapes [`conv_supported`] and
//! [`deconv_supported`] accept. Everywhere else (flag off, another device, another dtype, other
//! shapes) the plain burn path runs instead ([`reference_bn_relu_conv`],
//! [`reference_bn_relu_deconv`], burn's `avg_pool2d`), silently and with the same result; tests
//! hold the two equal. `SparseDenseNet::fused_active` reports whether a model's layers take
//! the fused path, and [`kernel_runs`] counts the fused kernels that actually ran.

mod op;
mod resample;

use std::cell::Cell;

use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchDevice, Flex};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d};
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{DType, TensorData};

use crate::model::tensor_ops::cat_channels;

pub use logdense_kernels::Resample;
pub use op::MAX_INPUTS;

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
}

thread_local! {
    static RUNS: Cell<KernelRuns> = const {
        Cell::new(KernelRuns {
            conv_forward: 0,
            conv_backward: 0,
            resample_forward: 0,
            resample_backward: 0,
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

/// The precision the fused kernels computed a model in: `requested` where they ran, f32 where
/// the model took the plain path (`fused` off, another device).
pub fn precision_of_model(requested: Precision, fused_active: bool) -> Precision {
    if fused_active {
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

/// Whether the fused kernels can run on these tensors: f32, all on the flex device (a tensor
/// elsewhere goes to the plain ops, which report a device mismatch as burn does).
pub fn on_flex_f32(inputs: &[Tensor<4>]) -> bool {
    inputs.iter().all(flex_f32)
}

/// Whether `t` is f32 on the flex device.
fn flex_f32<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && is_flex(&t.device())
}

/// Whether the fused kernels can run this convolution: a square odd kernel with "same"
/// padding, stride 1, no dilation or groups, its weight and every input f32 on the flex device.
pub fn conv_supported(inputs: &[Tensor<4>], conv: &Conv2d) -> bool {
    let [k, kw] = conv.kernel_size;
    let same_padding = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r] == [k / 2; 4],
        PaddingConfig2d::Same => true,
        PaddingConfig2d::Valid => k == 1,
    };
    on_flex_f32(inputs)
        && flex_f32(&conv.weight)
        && k == kw
        && k % 2 == 1
        && same_padding
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
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
    if !(fused.on && conv_supported(&inputs, conv)) {
        return reference_bn_relu_conv(inputs, bn, conv);
    }
    let out = fused_bn_relu_conv(inputs, bn, conv.weight.val(), fused.kernels);
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
    let weight = linear.weight.val();
    let fused = fused.into();
    if !(fused.on && on_flex_f32(&inputs) && flex_f32(&weight)) {
        return reference_bn_relu_pool_linear(inputs, bn, linear);
    }
    // burn's Linear keeps its weight as [in, out]; the 1x1 convolution takes [out, in, 1, 1].
    let [cin, classes] = weight.dims();
    let per_pixel = fused_bn_relu_conv(
        inputs,
        bn,
        weight.transpose().reshape([classes, cin, 1, 1]),
        fused.kernels,
    );
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

/// The fused call with an explicit weight `[out, in, k, k]` (odd k, stride 1, same padding);
/// callers have checked [`on_flex_f32`].
fn fused_bn_relu_conv(
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
    let training = device.is_autodiff() && bn.training.is_enabled();
    let (mean, var) = (bn.running_mean.value(), bn.running_var.value());
    let (out, mean, var) = if device.is_autodiff() {
        let stat = |t: Tensor<1>| tracked(t).into_primitive();
        let (out, mean, var) = op::forward_tracked(
            inputs.into_iter().map(tracked).collect(),
            tracked(bn.gamma.val()),
            tracked(bn.beta.val()),
            &stat(mean),
            &stat(var),
            tracked(weight),
            training,
            bn.epsilon,
            kernels,
        );
        (Tensor::from_primitive::<Autodiff<Flex>>(out), mean, var)
    } else {
        let (out, mean, var) = op::forward(
            &inputs.into_iter().map(plain).collect::<Vec<_>>(),
            &plain(bn.gamma.val()),
            &plain(bn.beta.val()),
            &plain(mean),
            &plain(var),
            &plain(weight),
            false,
            bn.epsilon,
            kernels,
        );
        (Tensor::from_primitive::<Flex>(out), mean, var)
    };
    if training {
        let stat = |v: Vec<f32>| {
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), &device)
        };
        let m = bn.momentum;
        let running_mean = bn.running_mean.value_sync().to_device(&device);
        let running_var = bn.running_var.value_sync().to_device(&device);
        bn.running_mean.update(
            running_mean
                .mul_scalar(1.0 - m)
                .add(stat(mean).mul_scalar(m))
                .detach(),
        );
        bn.running_var.update(
            running_var
                .mul_scalar(1.0 - m)
                .add(stat(var).mul_scalar(m))
                .detach(),
        );
    }
    out
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
        fused_bn_relu_conv(vec![x], bn, weight, fused.kernels),
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
    if x.device().is_autodiff() {
        Tensor::from_primitive::<Autodiff<Flex>>(resample::apply_tracked(kind, tracked(x)))
    } else {
        Tensor::from_primitive::<Flex>(resample::apply(kind, &plain(x)))
    }
}

/// A float tensor's `Autodiff<Flex>` primitive ([`conv_supported`] checked the device).
fn tracked<const D: usize>(t: Tensor<D>) -> op::TrackedTensor {
    t.try_into_primitive::<Autodiff<Flex>>()
        .expect("an autodiff flex tensor")
}

/// A float tensor's `Flex` primitive ([`conv_supported`] checked the device).
fn plain<const D: usize>(t: Tensor<D>) -> FlexTensor {
    t.try_into_primitive::<Flex>().expect("a flex tensor")
}

/// The same computation with plain burn operations: concatenate, normalise, rectify, convolve.
pub fn reference_bn_relu_conv(inputs: Vec<Tensor<4>>, bn: &BatchNorm, conv: &Conv2d) -> Tensor<4> {
    conv.forward(relu(bn.forward(cat_channels(inputs))))
}
