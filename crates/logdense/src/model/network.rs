//! One network type for every architecture: [`SparseDenseNet`] executes a
//! [`logdense_graph::NetGraph`] node by node, so Log-DenseNet V1/V2, DenseNet-BC,
//! LogLog-DenseNet, FC-Log-DenseNet and FC-DenseNet differ only in their graph.
//!
//! [`NetOptions`] chooses, per model, whether the layers run through the fused kernels
//! ([`crate::model::fused`]); [`SparseDenseNet::fused_active`] says whether they actually do.

use crate::model::fused;
use crate::model::layers::{DenseLayer, DownTransition, Head, StemConv, UpTransition};
use crate::model::tensor_ops::cat_channels;
use burn::module::Module;
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::DType;
use logdense_graph::{NetGraph, NetSpec, Op, Pool};

/// Re-exported from [`crate::model::tensor_ops`], where they live.
pub use crate::model::tensor_ops::{fit_spatial, upsample_logits};

/// The module computing one graph node (the image input has none). Variants differ in size,
/// but a network holds one per node in a `Vec`, so boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum NodeModule {
    /// The stem convolution that computes `x_0` from the image.
    Stem(StemConv),
    /// A feature layer of a dense block.
    Layer(DenseLayer),
    /// A transition that halves the resolution.
    Down(DownTransition),
    /// A transition that doubles the resolution (FC up path).
    Up(UpTransition),
    /// The prediction head (classifier or segmenter).
    Head(Head),
}

/// A sparse-dense convolutional network built from a graph.
#[derive(Module, Debug)]
pub struct SparseDenseNet {
    /// `modules[k]` computes graph node `k + 1` (node 0 is the image).
    pub modules: Vec<NodeModule>,
    /// The graph the network executes: each node's op and the earlier nodes it reads.
    #[module(skip)]
    pub graph: NetGraph,
    /// How the layers run: the fused path and its kernels (the options it was built with).
    #[module(skip)]
    pub fused: fused::Fused,
}

/// How [`SparseDenseNet::new_with`] builds a network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetOptions {
    /// Dropout rate after every feature-layer convolution and transition convolution.
    pub dropout: f64,
    /// Whether the layers run through the fused kernels ([`crate::model::fused`]) where they apply:
    /// on the flex CPU device in f32. Elsewhere the plain burn path runs whatever this says;
    /// [`SparseDenseNet::fused_active`] reports which one a model takes. The choice is not
    /// part of the weights: checkpoints are the same either way.
    pub fused: bool,
    /// The fused kernels' precision (bf16 where the CPU runs it, else f32 with a message).
    pub precision: fused::Precision,
    /// The fused kernels' f32 product family: direct (the default), winograd or gemm.
    pub f32_kernels: fused::F32Kernels,
}

impl Default for NetOptions {
    /// No dropout, fused kernels on, in f32 on the direct kernels.
    fn default() -> Self {
        NetOptions {
            dropout: 0.0,
            fused: true,
            precision: fused::Precision::F32,
            f32_kernels: fused::F32Kernels::Direct,
        }
    }
}

impl SparseDenseNet {
    /// Builds the modules of `spec` on `device`; `dropout` applies after every feature-layer
    /// convolution and transition convolution. The fused kernels are on (see
    /// [`Self::new_with`]).
    pub fn new(
        spec: &NetSpec,
        dropout: f64,
        device: &Device,
    ) -> Result<Self, logdense_graph::SpecError> {
        Self::new_with(
            spec,
            &NetOptions {
                dropout,
                ..NetOptions::default()
            },
            device,
        )
    }

    /// Builds the modules of `spec` on `device` with `options`.
    pub fn new_with(
        spec: &NetSpec,
        options: &NetOptions,
        device: &Device,
    ) -> Result<Self, logdense_graph::SpecError> {
        let NetOptions {
            dropout,
            fused,
            precision,
            f32_kernels,
        } = *options;
        let fused = fused::Fused {
            on: fused,
            kernels: fused::Kernels {
                precision: if fused {
                    fused::effective_precision(precision)
                } else {
                    precision
                },
                f32: f32_kernels,
            },
        };
        let graph = spec.build()?;
        let segment = graph.task == logdense_graph::TaskKind::Segment;
        let modules = graph
            .nodes
            .iter()
            .skip(1)
            .map(|node| match node.op {
                Op::Input => unreachable!("only node 0 is the input"),
                Op::Stem {
                    kernel,
                    stride,
                    max_pool,
                } => NodeModule::Stem(StemConv::new(
                    node.in_channels,
                    node.channels,
                    kernel,
                    stride,
                    max_pool,
                    device,
                )),
                Op::Layer { bottleneck, .. } => NodeModule::Layer(DenseLayer::new(
                    node.in_channels,
                    node.channels,
                    bottleneck,
                    dropout,
                    fused,
                    device,
                )),
                Op::Down { pool } => NodeModule::Down(DownTransition::new(
                    node.in_channels,
                    node.channels,
                    pool == Pool::Max,
                    dropout,
                    fused,
                    device,
                )),
                Op::Up { pre_activation, .. } => NodeModule::Up(UpTransition::new(
                    node.in_channels,
                    node.channels,
                    pre_activation,
                    fused,
                    device,
                )),
                Op::Head { .. } => NodeModule::Head(Head::new(
                    node.in_channels,
                    node.channels,
                    segment,
                    fused,
                    device,
                )),
            })
            .collect();
        Ok(SparseDenseNet {
            modules,
            graph,
            fused,
        })
    }

    /// The same network with the fused path switched on or off in every layer, on the given
    /// kernels (`true` and `false` keep f32 on the direct kernels), for instance after loading a
    /// checkpoint into a network built with other options.
    pub fn with_fused(mut self, fused: impl Into<fused::Fused>) -> Self {
        let fused = fused.into();
        self.fused = fused;
        for module in &mut self.modules {
            match module {
                NodeModule::Stem(_) => {}
                NodeModule::Layer(m) => m.fused = fused,
                NodeModule::Down(m) => m.fused = fused,
                NodeModule::Up(m) => m.fused = fused,
                NodeModule::Head(m) => m.fused = fused,
            }
        }
        self
    }

    /// Whether the fused option is on for some layer that has a fused path (every network
    /// has one: its feature layers or transitions), whatever the device.
    pub fn fused_requested(&self) -> bool {
        self.modules.iter().any(|module| match module {
            NodeModule::Stem(_) => false,
            NodeModule::Layer(m) => m.fused.on,
            NodeModule::Down(m) => m.fused.on,
            NodeModule::Up(m) => m.fused.on && m.bn.is_some(),
            NodeModule::Head(m) => m.fused.on,
        })
    }

    /// Where this model's fused path runs: `None` when the option is off
    /// ([`Self::fused_requested`]) or its weights are not all f32 on one device with a fused
    /// path; otherwise the CPU kernels on the flex device, or the recomputing layer on a GPU
    /// ([`fused::FusedBackend`]). Inputs on that device in f32 then take it; elsewhere the plain
    /// burn path runs.
    pub fn fused_backend(&self) -> Option<fused::FusedBackend> {
        struct AllF32On(Option<Device>, bool);
        impl burn::module::ModuleVisitor for AllF32On {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let device = param.lazy_device();
                self.1 &= param.val().dtype() == DType::F32
                    && *self.0.get_or_insert_with(|| device.clone()) == device;
            }
        }
        if !self.fused_requested() {
            return None;
        }
        let mut check = AllF32On(None, true);
        self.visit(&mut check);
        match check {
            AllF32On(Some(device), true) => fused::FusedBackend::of(&device),
            _ => None,
        }
    }

    /// Whether a fused path runs for this model ([`Self::fused_backend`]).
    pub fn fused_active(&self) -> bool {
        self.fused_backend().is_some()
    }

    /// Whether the fused CPU kernels run for this model (the only path with a bf16 mode).
    pub fn cpu_kernels_active(&self) -> bool {
        self.fused_backend() == Some(fused::FusedBackend::CpuKernels)
    }

    /// Runs the network; returns every head's output `[N, classes, H, W]` in graph order
    /// (auxiliary heads first, the final prediction last).
    pub fn forward_heads(&self, image: Tensor<4>) -> Vec<Tensor<4>> {
        self.forward_inspect(image, |_, _| {})
    }

    /// Like [`Self::forward_heads`], calling `inspect(node, output)` on every node's output.
    pub fn forward_inspect(
        &self,
        image: Tensor<4>,
        mut inspect: impl FnMut(usize, &Tensor<4>),
    ) -> Vec<Tensor<4>> {
        let last_use = self.graph.last_use();
        let mut values: Vec<Option<Tensor<4>>> = vec![None; self.graph.nodes.len()];
        values[0] = Some(image);
        let mut heads = Vec::new();
        // Runtime spatial sizes: up transitions match the down path's, whatever the input size.
        let mut sizes = vec![(0usize, 0usize); self.graph.nodes.len()];
        if let Some(image) = &values[0] {
            let [_, _, h, w] = image.dims();
            sizes[0] = (h, w);
        }
        for (k, module) in self.modules.iter().enumerate() {
            let id = k + 1;
            let node = &self.graph.nodes[id];
            let parts: Vec<Tensor<4>> = node
                .inputs
                .iter()
                .map(|&i| values[i].clone().expect("inputs are computed before use"))
                .collect();
            for &i in &node.inputs {
                if last_use[i] == id {
                    values[i] = None;
                }
            }
            // Layers, down transitions and heads read their inputs as a list (the fused op
            // never concatenates them); the stem and up transitions read one tensor.
            let y = match module {
                NodeModule::Layer(m) => m.forward(parts),
                NodeModule::Stem(m) => m.forward(cat_channels(parts)),
                NodeModule::Down(m) => m.forward(parts),
                NodeModule::Up(m) => {
                    let Op::Up { like, .. } = node.op else {
                        unreachable!("up modules compute up nodes")
                    };
                    m.forward(cat_channels(parts), sizes[like])
                }
                NodeModule::Head(m) if node.size != node.in_size => {
                    upsample_logits(m.forward(parts), sizes[0])
                }
                NodeModule::Head(m) => m.forward(parts),
            };
            let [_, _, h, w] = y.dims();
            sizes[id] = (h, w);
            inspect(id, &y);
            if matches!(node.op, Op::Head { .. }) {
                heads.push(y);
            } else {
                values[id] = Some(y);
            }
        }
        heads
    }

    /// The final prediction only.
    pub fn forward(&self, image: Tensor<4>) -> Tensor<4> {
        self.forward_heads(image)
            .pop()
            .expect("every network has a final head")
    }

    /// Every float tensor of the model (parameters and batch-norm buffers) flattened in
    /// visiting order: lets tests compare two models' weights exactly, whatever their ids.
    pub fn flat_weights(&self) -> Vec<f32> {
        struct Collect(Vec<f32>);
        impl burn::module::ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                self.0.extend(param.val().into_data().iter::<f32>());
            }
        }
        let mut c = Collect(Vec::new());
        self.visit(&mut c);
        c.0
    }

    /// Trainable parameters: burn's `num_params` also counts the batch-norm running mean and
    /// variance, which are buffers, so those are subtracted.
    pub fn trainable_params(&self) -> usize {
        let buffers = |bn: &BatchNorm| 2 * bn.gamma.dims()[0];
        let opt = |bn: &Option<BatchNorm>| bn.as_ref().map(buffers).unwrap_or(0);
        let running: usize = self
            .modules
            .iter()
            .map(|m| match m {
                NodeModule::Stem(s) => opt(&s.bn),
                NodeModule::Layer(l) => {
                    buffers(&l.bn) + l.bottleneck.as_ref().map(|b| buffers(&b.bn)).unwrap_or(0)
                }
                NodeModule::Down(d) => buffers(&d.bn),
                NodeModule::Up(u) => opt(&u.bn),
                NodeModule::Head(h) => buffers(&h.bn),
            })
            .sum();
        self.num_params() - running
    }

    /// FLOPs (2 x multiply-accumulates) counted from the built modules' weight shapes and the
    /// output shapes of a real forward pass of one image: an independent check of the cost model.
    pub fn measured_flops(&self, device: &Device) -> u64 {
        let [c, h, w] = self.graph.spec.input;
        let image = Tensor::<4>::zeros([1, c, h, w], device);
        let mut out_hw = vec![(0usize, 0usize); self.graph.nodes.len()];
        out_hw[0] = (h, w);
        self.forward_inspect(image, |id, y| {
            let [_, _, h, w] = y.dims();
            out_hw[id] = (h, w);
        });
        let conv_flops = |weight: [usize; 4], positions: usize| {
            2 * (weight.iter().product::<usize>() * positions) as u64
        };
        let mut total = 0;
        for (k, module) in self.modules.iter().enumerate() {
            let id = k + 1;
            let node = &self.graph.nodes[id];
            let input_hw = out_hw[node.inputs[0]];
            let area = |s: (usize, usize)| s.0 * s.1;
            total += match module {
                NodeModule::Stem(m) => {
                    let weight = m.conv.weight.dims();
                    let (ih, iw) = input_hw;
                    let out =
                        |x: usize| (x + 2 * (weight[2] / 2) - weight[2]) / m.conv.stride[0] + 1;
                    conv_flops(weight, out(ih) * out(iw))
                }
                NodeModule::Layer(m) => {
                    let b = m
                        .bottleneck
                        .as_ref()
                        .map(|b| conv_flops(b.conv.weight.dims(), area(input_hw)))
                        .unwrap_or(0);
                    b + conv_flops(m.conv.weight.dims(), area(out_hw[id]))
                }
                NodeModule::Down(m) => conv_flops(m.conv.weight.dims(), area(input_hw)),
                NodeModule::Up(m) => conv_flops(m.deconv.weight.dims(), area(input_hw)),
                NodeModule::Head(m) => match (&m.linear, &m.conv) {
                    (Some(l), _) => 2 * l.weight.dims().iter().product::<usize>() as u64,
                    // At the head's input resolution (a strided segmenter upsamples after).
                    (_, Some(cv)) => conv_flops(cv.weight.dims(), area(input_hw)),
                    _ => 0,
                },
            };
        }
        total
    }
}
