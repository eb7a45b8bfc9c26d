//! The building blocks every network node is made of, in pre-activation order (BN-ReLU-conv,
//! as DenseNet and the paper use). Each maps to one [`logdense_graph::Op`].
//!
//! The layers that can run through the [`fused`] kernels carry a [`fused::Fused`] (the
//! network's options: the flag and the kernels): on, they take the fused path wherever it
//! applies (see [`fused`]), on the kernels it names; off,
//! plain burn operations.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

use crate::model::fused;
use crate::model::tensor_ops::fit_spatial;

/// Re-exported from [`crate::model::tensor_ops`], where it lives.
pub use crate::model::tensor_ops::cat_channels;

/// He (fan-in) normal initialisation, as DenseNet's reference code uses for convolutions.
fn he_normal() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

/// A `kernel x kernel` convolution with "same" padding (`kernel / 2` on every side) and He
/// initialisation: every convolution the networks build (the fused op's tests use it too).
pub fn conv(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            kernel / 2,
            kernel / 2,
            kernel / 2,
            kernel / 2,
        ))
        .with_bias(bias)
        .with_initializer(he_normal())
        .init(device)
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

fn bn_relu(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    relu(bn.forward(x))
}

/// `x_0`: a k x k convolution, and for the ImageNet stem BN-ReLU and a 3x3 stride-2 max pool.
#[derive(Module, Debug)]
pub struct StemConv {
    /// The stem's `kernel x kernel` convolution from the image to the first feature width.
    pub conv: Conv2d,
    /// The BN before the ReLU and max pool (ImageNet stem only; `None`: the conv alone).
    pub bn: Option<BatchNorm>,
}

impl StemConv {
    /// Builds a stem from `cin` image channels to `width`; `max_pool` adds BN-ReLU-max pool.
    pub fn new(
        cin: usize,
        width: usize,
        kernel: usize,
        stride: usize,
        max_pool: bool,
        device: &Device,
    ) -> Self {
        StemConv {
            conv: conv(cin, width, kernel, stride, false, device),
            bn: max_pool.then(|| bn(width, device)),
        }
    }

    /// Runs the stem on the image batch `[N, C, H, W]`, returning `x_0`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        match &self.bn {
            Some(bn) => max_pool2d(
                bn_relu(bn, y),
                MaxPoolOptions::new([3, 3])
                    .with_stride([2, 2])
                    .with_padding([1, 1]),
            ),
            None => y,
        }
    }
}

/// The optional 1x1 bottleneck of a feature layer: 1x1conv(width)-BN(-ReLU follows).
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// The 1x1 convolution from the layer's concatenated input to the bottleneck width.
    pub conv: Conv2d,
    /// The BN over the bottleneck's output, before the ReLU and the 3x3 convolution.
    pub bn: BatchNorm,
}

/// A feature layer `f_i`: BN-ReLU-[1x1conv-BN-ReLU]-3x3conv-dropout over its concatenated inputs.
#[derive(Module, Debug)]
pub struct DenseLayer {
    /// The BN over the layer's concatenated inputs.
    pub bn: BatchNorm,
    /// The 1x1 bottleneck between the input BN-ReLU and the 3x3 conv (`None`: no bottleneck).
    pub bottleneck: Option<Bottleneck>,
    /// The 3x3 convolution producing the layer's `growth` new channels.
    pub conv: Conv2d,
    /// The dropout after the 3x3 convolution.
    pub dropout: Dropout,
    /// Whether the BN-ReLU-convs take the fused path where it applies (not a parameter: no
    /// record entry).
    #[module(skip)]
    pub fused: fused::Fused,
}

impl DenseLayer {
    /// Builds a layer from `cin` input channels to `growth`, with a 1x1 bottleneck of the
    /// given width if any and `dropout` as the rate after the 3x3 conv.
    pub fn new(
        cin: usize,
        growth: usize,
        bottleneck: Option<usize>,
        dropout: f64,
        fused: fused::Fused,
        device: &Device,
    ) -> Self {
        let (bottleneck, conv_in) = match bottleneck {
            Some(w) => (
                Some(Bottleneck {
                    conv: conv(cin, w, 1, 1, false, device),
                    bn: bn(w, device),
                }),
                w,
            ),
            None => (None, cin),
        };
        DenseLayer {
            bn: bn(cin, device),
            bottleneck,
            conv: conv(conv_in, growth, 3, 1, false, device),
            dropout: DropoutConfig::new(dropout).init(),
            fused,
        }
    }

    /// Runs the layer on its inputs, which it reads as one channel-wise concatenation (the
    /// fused operation never forms it).
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Tensor<4> {
        let y = match &self.bottleneck {
            Some(b) => {
                let narrow = fused::bn_relu_conv(inputs, &self.bn, &b.conv, self.fused);
                fused::bn_relu_conv(vec![narrow], &b.bn, &self.conv, self.fused)
            }
            None => fused::bn_relu_conv(inputs, &self.bn, &self.conv, self.fused),
        };
        self.dropout.forward(y)
    }
}

/// BN-ReLU-1x1conv-[dropout]-2x2 pool: a transition down (per layer, compression, or whole stack).
#[derive(Module, Debug)]
pub struct DownTransition {
    /// The BN over the transition's concatenated inputs.
    pub bn: BatchNorm,
    /// The 1x1 convolution to the transition's output width.
    pub conv: Conv2d,
    /// The dropout after the 1x1 convolution.
    pub dropout: Dropout,
    /// Whether the 2x2 pool is a max pool (else an average pool).
    pub max_pool: bool,
    /// Whether the BN-ReLU-conv and the average pool take the fused path where it applies.
    #[module(skip)]
    pub fused: fused::Fused,
}

impl DownTransition {
    /// Builds a transition from `cin` channels to `cout`, halving the resolution with a 2x2
    /// max pool or average pool; `dropout` is the rate after the 1x1 conv.
    pub fn new(
        cin: usize,
        cout: usize,
        max_pool: bool,
        dropout: f64,
        fused: fused::Fused,
        device: &Device,
    ) -> Self {
        DownTransition {
            bn: bn(cin, device),
            conv: conv(cin, cout, 1, 1, false, device),
            dropout: DropoutConfig::new(dropout).init(),
            max_pool,
            fused,
        }
    }

    /// `inputs` are the channel groups the transition reads, concatenated by the fused op.
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Tensor<4> {
        let y = self.dropout.forward(fused::bn_relu_conv(
            inputs, &self.bn, &self.conv, self.fused,
        ));
        if self.max_pool {
            max_pool2d(y, MaxPoolOptions::new([2, 2]))
        } else {
            fused::avg_pool2(y, self.fused)
        }
    }
}

/// [BN-ReLU-]3x3 stride-2 transposed convolution: doubles the resolution (FC up path).
#[derive(Module, Debug)]
pub struct UpTransition {
    /// The BN before the ReLU and the deconvolution (`None`: the deconvolution alone).
    pub bn: Option<BatchNorm>,
    /// The 3x3 stride-2 transposed convolution to the output width.
    pub deconv: ConvTranspose2d,
    /// Whether the BN-ReLU-deconv takes the fused path where it applies (only with `bn`).
    #[module(skip)]
    pub fused: fused::Fused,
}

impl UpTransition {
    /// Builds an up transition from `cin` channels to `cout`; `pre_activation` adds BN-ReLU.
    pub fn new(
        cin: usize,
        cout: usize,
        pre_activation: bool,
        fused: fused::Fused,
        device: &Device,
    ) -> Self {
        let deconv = ConvTranspose2dConfig::new([cin, cout], [3, 3])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_padding_out([1, 1])
            .with_bias(false)
            .with_initializer(he_normal())
            .init(device);
        UpTransition {
            bn: pre_activation.then(|| bn(cin, device)),
            deconv,
            fused,
        }
    }

    /// Upsamples to exactly `size` (cropping the extra row/column an odd size leaves).
    pub fn forward(&self, x: Tensor<4>, size: (usize, usize)) -> Tensor<4> {
        let y = match &self.bn {
            Some(bn) => fused::bn_relu_deconv(x, bn, &self.deconv, self.fused),
            None => self.deconv.forward(x),
        };
        let [_, _, h, w] = y.dims();
        if (h, w) == size {
            y
        } else {
            fit_spatial(y, size)
        }
    }
}

/// A prediction head: BN-ReLU then global-average-pool + Linear (classification) or a 1x1
/// convolution at full resolution (segmentation). Output `[N, classes, H, W]` (H = W = 1 for
/// classification).
#[derive(Module, Debug)]
pub struct Head {
    /// The BN over the head's concatenated inputs.
    pub bn: BatchNorm,
    /// The classifier after global average pooling (classification heads only).
    pub linear: Option<Linear>,
    /// The 1x1 convolution with bias to per-pixel class scores (segmentation heads only).
    pub conv: Option<Conv2d>,
    /// Whether the BN-ReLU and the classifier or segmentation conv take the fused path where
    /// it applies.
    #[module(skip)]
    pub fused: fused::Fused,
}

impl Head {
    /// Builds a head from `cin` channels to `classes`: a 1x1 conv if `segment`, else a linear.
    pub fn new(
        cin: usize,
        classes: usize,
        segment: bool,
        fused: fused::Fused,
        device: &Device,
    ) -> Self {
        Head {
            bn: bn(cin, device),
            linear: (!segment).then(|| LinearConfig::new(cin, classes).init(device)),
            conv: segment.then(|| conv(cin, classes, 1, 1, true, device)),
            fused,
        }
    }

    /// `inputs` are the channel groups the head reads (a segmentation head never
    /// concatenates them: the fused op reads them in place).
    pub fn forward(&self, inputs: Vec<Tensor<4>>) -> Tensor<4> {
        match (&self.linear, &self.conv) {
            (Some(linear), _) => {
                let logits = fused::bn_relu_pool_linear(inputs, &self.bn, linear, self.fused);
                let [n, classes] = logits.dims();
                logits.reshape([n, classes, 1, 1])
            }
            (None, Some(conv)) => fused::bn_relu_conv(inputs, &self.bn, conv, self.fused),
            (None, None) => unreachable!("a head is either a classifier or a segmenter"),
        }
    }
}
