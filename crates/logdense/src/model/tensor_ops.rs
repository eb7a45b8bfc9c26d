//! Small tensor helpers the layers and the network share: channel concatenation, spatial
//! fitting and logit upsampling. This module uses nothing else of the crate, so that the
//! modules depend downward only: `tensor_ops` <- `fused` <- `layers` <- `network`.

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

/// The channel-wise concatenation of a node's inputs (the single input itself, uncopied).
pub fn cat_channels(mut parts: Vec<Tensor<4>>) -> Tensor<4> {
    if parts.len() == 1 {
        parts.pop().expect("one input")
    } else {
        Tensor::cat(parts, 1)
    }
}

/// Crops or zero-pads the spatial dimensions to `size` (keeps the top-left corner).
pub fn fit_spatial(x: Tensor<4>, size: (usize, usize)) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let x = if h > size.0 || w > size.1 {
        x.slice([0..n, 0..c, 0..h.min(size.0), 0..w.min(size.1)])
    } else {
        x
    };
    let [_, _, h, w] = x.dims();
    if h < size.0 || w < size.1 {
        x.pad((0, size.1 - w, 0, size.0 - h), 0.0)
    } else {
        x
    }
}

/// Bilinear upsampling (half-pixel centres) of a strided network's final logits to the
/// image's runtime size.
pub fn upsample_logits(logits: Tensor<4>, size: (usize, usize)) -> Tensor<4> {
    interpolate(
        logits,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([size.0, size.1]),
    )
}
