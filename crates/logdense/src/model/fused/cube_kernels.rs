//! The recomputing layer's two memory-bound steps as CubeCL kernels on burn's unfused cubecl
//! backend (WGSL, SPIR-V or CUDA alike), in place of a concatenation and a chain of
//! elementwise ops:
//! - [`pack_kernel`] writes `relu(x * scale + shift)` of one input straight into its channels
//!   of the layer's activation: the inputs are read where they are, and neither their
//!   concatenation nor BN's output is ever formed;
//! - [`input_grad_kernel`] writes one input's gradient, `k1 * grad + k2 * x + k3` per channel,
//!   from its channels of the gradient at BN's output: no gradient of the concatenation and
//!   no slice copies.
//!
//! Both index through strides, so any layout of the inputs is read in place. One launch per
//! input; [`super::kernel_runs`]' `cube_kernels` counts them.

use burn::backend::ops::FloatTensorOps;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::tensor::{FloatDType, Shape};
use cubecl::prelude::*;
use cubecl::{calculate_cube_count_elemwise, CubeDim};

use super::count;
use super::recompute::{channel_ranges, Packing};

/// Offset of element `(image, channel, row, column)` of a 4-D tensor through its strides.
#[cube]
fn offset4(t: &Tensor<f32>, image: usize, channel: usize, row: usize, column: usize) -> usize {
    image * t.stride(0) + channel * t.stride(1) + row * t.stride(2) + column * t.stride(3)
}

/// The `(image, channel, row, column)` of element `index` of a 4-D tensor in row-major order.
#[cube]
fn position(t: &Tensor<f32>, index: usize) -> (usize, usize, usize, usize) {
    let width = t.shape(3);
    let plane = t.shape(2) * width;
    let per_image = t.shape(1) * plane;
    (
        index / per_image,
        (index % per_image) / plane,
        (index % plane) / width,
        index % width,
    )
}

/// One thread per element of `input` (`[N, C_j, H, W]`): writes
/// `relu(input * scale[c] + shift[c])` at channel `c = channel_offset + c_j` of `output`
/// (`[N, C, H, W]`).
#[cube(launch)]
fn pack_kernel(
    input: &Tensor<f32>,
    scale: &Tensor<f32>,
    shift: &Tensor<f32>,
    output: &mut Tensor<f32>,
    channel_offset: u32,
) {
    if ABSOLUTE_POS >= input.len() {
        terminate!();
    }
    let (image, channel, row, column) = position(input, ABSOLUTE_POS);
    let c = channel + channel_offset as usize;
    let value = input[offset4(input, image, channel, row, column)] * scale[c * scale.stride(0)]
        + shift[c * shift.stride(0)];
    let at = image * output.stride(0)
        + c * output.stride(1)
        + row * output.stride(2)
        + column * output.stride(3);
    output[at] = select(value > 0.0, value, 0.0);
}

/// One thread per element of `input` (`[N, C_j, H, W]`): writes its gradient
/// `k1[c] * grad[.., c, ..] + k2[c] * input + k3[c]`, `c = channel_offset + c_j`, to `output`
/// (`input`'s shape), reading `grad` (`[N, C, H, W]`) in place.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn input_grad_kernel(
    grad: &Tensor<f32>,
    input: &Tensor<f32>,
    k1: &Tensor<f32>,
    k2: &Tensor<f32>,
    k3: &Tensor<f32>,
    output: &mut Tensor<f32>,
    channel_offset: u32,
) {
    if ABSOLUTE_POS >= input.len() {
        terminate!();
    }
    let (image, channel, row, column) = position(input, ABSOLUTE_POS);
    let c = channel + channel_offset as usize;
    let g = grad[offset4(grad, image, c, row, column)];
    let x = input[offset4(input, image, channel, row, column)];
    let at = image * output.stride(0)
        + channel * output.stride(1)
        + row * output.stride(2)
        + column * output.stride(3);
    output[at] = k1[c * k1.stride(0)] * g + k2[c * k2.stride(0)] * x + k3[c * k3.stride(0)];
}

/// A new f32 tensor on `like`'s device.
fn empty(like: &CubeTensor, shape: Shape) -> CubeTensor {
    CubeBackend::float_empty(shape, &like.device, FloatDType::F32)
}

/// The launch geometry of one thread per element of `t`.
fn per_element(t: &CubeTensor) -> (CubeCount, CubeDim) {
    let elements = t.meta.num_elements();
    let cube_dim = CubeDim::new(&t.client, elements);
    (
        calculate_cube_count_elemwise(&t.client, elements, cube_dim),
        cube_dim,
    )
}

/// [`Packing`] with the two kernels above.
#[derive(Debug, Clone, Copy)]
pub struct CubeKernels;

impl Packing<CubeBackend> for CubeKernels {
    fn pack(inputs: &[CubeTensor], scale: &CubeTensor, shift: &CubeTensor) -> CubeTensor {
        let [n, _, h, w] = inputs[0].meta.shape().dims::<4>();
        let channels: usize = inputs.iter().map(|x| x.meta.shape()[1]).sum();
        let output = empty(&inputs[0], Shape::new([n, channels, h, w]));
        for (range, x) in channel_ranges::<CubeBackend>(inputs).zip(inputs) {
            let (cube_count, cube_dim) = per_element(x);
            count(|runs| runs.cube_kernels += 1);
            pack_kernel::launch(
                &x.client,
                cube_count,
                cube_dim,
                x.clone().into_tensor_arg(),
                scale.clone().into_tensor_arg(),
                shift.clone().into_tensor_arg(),
                output.clone().into_tensor_arg(),
                range.start as u32,
            );
        }
        output
    }

    fn input_grads(
        grad: &CubeTensor,
        inputs: &[CubeTensor],
        [k1, k2, k3]: [&CubeTensor; 3],
    ) -> Vec<CubeTensor> {
        channel_ranges::<CubeBackend>(inputs)
            .zip(inputs)
            .map(|(range, x)| {
                let output = empty(x, x.meta.shape().clone());
                let (cube_count, cube_dim) = per_element(x);
                count(|runs| runs.cube_kernels += 1);
                input_grad_kernel::launch(
                    &x.client,
                    cube_count,
                    cube_dim,
                    grad.clone().into_tensor_arg(),
                    x.clone().into_tensor_arg(),
                    k1.clone().into_tensor_arg(),
                    k2.clone().into_tensor_arg(),
                    k3.clone().into_tensor_arg(),
                    output.clone().into_tensor_arg(),
                    range.start as u32,
                );
                output
            })
            .collect()
    }
}
