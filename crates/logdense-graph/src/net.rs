//! Network shapes: blocks, transitions and heads, as a graph of feature tensors.
//!
//! A [`NetSpec`] describes a network in the paper's terms; [`NetSpec::build`] turns it into a
//! [`NetGraph`], a topologically ordered list of nodes where each node concatenates its
//! inputs and applies one operation. The same graph drives the cost model ([`crate::cost`]),
//! the distance analysis ([`crate::distance`]) and, in the `logdense` crate, the burn network,
//! so a network is described exactly once.

use crate::error::SpecError;
use crate::pattern::{floor_log2, Pattern};
use serde::{Deserialize, Serialize};

/// Index of a node in [`NetGraph::nodes`].
pub type NodeId = usize;

/// How a network connects its layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Arch {
    /// Log-DenseNet V1 (independent transitions) driven by any pattern over global indices.
    V1 {
        /// The connection pattern over global layer indices.
        pattern: Pattern,
    },
    /// Log-DenseNet V2: LOG inside blocks, block compression between blocks.
    V2,
    /// DenseNet-BC: dense blocks, transitions compress the whole stack by `compression`.
    DenseNetBc {
        /// Fraction of the stack's channels a transition keeps (the paper's theta: 0.5).
        compression: f64,
    },
    /// FC-Log-DenseNet: LOG over global indices plus the first block's last layer, per-layer
    /// down transitions in the first half and per-layer up transitions in the second.
    FcLog,
    /// FC-DenseNet (Tiramisu, Jegou et al. 2017).
    FcDenseNet,
}

/// The first convolution, producing `x_0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stem {
    /// Output channels of `x_0` (the paper: `2g`).
    pub width: usize,
    /// Side of the square convolution kernel, in pixels.
    pub kernel: usize,
    /// Stride of the convolution, in pixels.
    pub stride: usize,
    /// BN-ReLU and a 3x3 stride-2 max pool after the convolution (the ImageNet stem).
    pub max_pool: bool,
}

impl Stem {
    /// The CIFAR stem: 3x3 convolution, stride 1.
    pub fn cifar(width: usize) -> Self {
        Stem {
            width,
            kernel: 3,
            stride: 1,
            max_pool: false,
        }
    }
    /// The ImageNet stem: 7x7 stride-2 convolution, BN-ReLU, 3x3 stride-2 max pool.
    pub fn imagenet(width: usize) -> Self {
        Stem {
            width,
            kernel: 7,
            stride: 2,
            max_pool: true,
        }
    }
}

/// Everything that fixes a network's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    /// How the layers are connected and transitioned.
    pub arch: Arch,
    /// Feature layers per block (the paper's `n` for every block of a CIFAR network).
    pub blocks: Vec<usize>,
    /// Growth rate `g`: channels of every feature layer.
    pub growth: usize,
    /// `BN-ReLU-1x1conv(4g)-BN-ReLU-3x3conv(g)` layers instead of `BN-ReLU-3x3conv(g)`.
    pub bottleneck: bool,
    /// The first convolution, producing `x_0`.
    pub stem: Stem,
    /// Input channels, height, width.
    pub input: [usize; 3],
    /// Number of classes the heads predict.
    pub classes: usize,
    /// Auxiliary predictions at the end of every block but the last.
    pub deep_supervision: bool,
    /// Growth multiplier of LOGLOG hub layers (Appendix C.4); 1 elsewhere.
    pub hub_multiplier: usize,
    /// Per-block growth rates overriding `growth` (one per block; empty: `growth` everywhere).
    /// Per-layer architectures only (V1, FC-Log-DenseNet): lets the low-resolution blocks,
    /// where a segmenter recognises objects and FLOPs are cheap, be wider. A transition
    /// into block `b` narrows a wider layer to `block_growth[b]` channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_growth: Vec<usize>,
    /// With deep supervision, auxiliary heads only at blocks whose maps are at least this
    /// many times smaller than the input (0 or 1: every block). A segmenter's full-resolution
    /// heads are its dearest and its least informed (they see one or two layers); 4 keeps
    /// the heads from a quarter of the input's size down.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub aux_min_stride: usize,
    /// V1 only: input sets over global indices (`sets[i]` for layers `0..=L`) that replace
    /// the pattern's, such as a designed pattern read from a file ([`crate::PatternFile`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_sets: Option<Vec<Vec<usize>>>,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// What a node computes. Every node first concatenates its inputs along channels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// The image.
    Input,
    /// `x_0`: see [`Stem`].
    Stem {
        /// Side of the square convolution kernel, in pixels.
        kernel: usize,
        /// Stride of the convolution, in pixels.
        stride: usize,
        /// BN-ReLU and a 3x3 stride-2 max pool follow the convolution.
        max_pool: bool,
    },
    /// A feature layer `x_index`: BN-ReLU-3x3conv, or with `bottleneck: Some(w)`
    /// BN-ReLU-1x1conv(w)-BN-ReLU-3x3conv.
    Layer {
        /// Global index `i` of the layer (1 to `L`).
        index: usize,
        /// Width of the bottleneck's 1x1 convolution (`4g`), or `None` without a bottleneck.
        bottleneck: Option<usize>,
    },
    /// BN-ReLU-1x1conv followed by a 2x2 stride-2 pool: V1 per-layer transitions, V2
    /// compression, DenseNet-BC and Tiramisu transitions.
    Down {
        /// The pool after the convolution.
        pool: Pool,
    },
    /// A 3x3 stride-2 transposed convolution doubling the resolution; `pre_activation`
    /// puts BN-ReLU before it (FC-Log-DenseNet); Tiramisu's has none. The output is cropped
    /// or padded to the runtime size of node `like` (a layer of the down path at the same
    /// scale), so odd sizes and inputs other than the built one work.
    Up {
        /// BN-ReLU runs before the transposed convolution.
        pre_activation: bool,
        /// The node whose runtime spatial size the output is cropped or padded to.
        like: NodeId,
    },
    /// A prediction: BN-ReLU-global average pool-Linear (classification) or
    /// BN-ReLU-1x1conv (segmentation, at the node's resolution).
    Head {
        /// Classification or segmentation.
        task: TaskKind,
        /// The network's final prediction, as opposed to a deep-supervision auxiliary one.
        is_final: bool,
    },
}

/// The 2x2 stride-2 pool of a down transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// Average pool (Log-DenseNet and DenseNet-BC transitions).
    Avg,
    /// Max pool (Tiramisu's transitions down).
    Max,
}

/// What the network predicts, which fixes the form of its heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One label per image, from globally pooled features.
    Classify,
    /// One label per pixel.
    Segment,
}

/// One tensor of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The operation applied to the concatenated inputs.
    pub op: Op,
    /// Nodes concatenated, in this order, to form the input.
    pub inputs: Vec<NodeId>,
    /// Channels of the concatenated input (the sum of the inputs' channels).
    pub in_channels: usize,
    /// Channels of the output.
    pub channels: usize,
    /// Spatial size (height, width) of the input.
    pub in_size: (usize, usize),
    /// Spatial size (height, width) of the output.
    pub size: (usize, usize),
    /// The block whose cost this node counts towards (a transition counts towards the block
    /// after it, the stem towards block 0).
    pub block: usize,
    /// The feature layer this tensor is a version of (layers and per-layer transitions).
    pub layer: Option<usize>,
}

/// Per-block facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Global index of the block's first feature layer.
    pub first_layer: usize,
    /// Global index of the block's last feature layer (inclusive).
    pub last_layer: usize,
    /// Spatial size (height, width) of the block's feature maps.
    pub size: (usize, usize),
}

/// A network as a graph of tensors in execution order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetGraph {
    /// The description the graph was built from.
    pub spec: NetSpec,
    /// Every tensor, in execution order (each node's inputs come before it); node 0 is the image.
    pub nodes: Vec<Node>,
    /// `layer_nodes[i]` is the node that first computes `x_i` (`x_0` is the stem).
    pub layer_nodes: Vec<NodeId>,
    /// Layer range and resolution of every block, in order.
    pub blocks: Vec<BlockInfo>,
    /// What the network predicts (follows from `spec.arch`).
    pub task: TaskKind,
}

impl NetSpec {
    /// Log-DenseNet V1 on CIFAR-sized input with `nblock` blocks of `n` layers.
    pub fn v1(pattern: Pattern, n: usize, growth: usize, nblock: usize) -> Self {
        NetSpec {
            arch: Arch::V1 { pattern },
            blocks: vec![n; nblock],
            growth,
            bottleneck: false,
            stem: Stem::cifar(2 * growth),
            input: [3, 32, 32],
            classes: 10,
            deep_supervision: true,
            hub_multiplier: 1,
            block_growth: Vec::new(),
            aux_min_stride: 0,
            custom_sets: None,
        }
    }

    /// Log-DenseNet V2 on CIFAR-sized input.
    pub fn v2(n: usize, growth: usize, nblock: usize) -> Self {
        NetSpec {
            arch: Arch::V2,
            ..Self::v1(Pattern::Log, n, growth, nblock)
        }
    }

    /// DenseNet-BC (bottleneck, compression 0.5, no deep supervision).
    pub fn densenet_bc(n: usize, growth: usize, nblock: usize) -> Self {
        NetSpec {
            arch: Arch::DenseNetBc { compression: 0.5 },
            bottleneck: true,
            deep_supervision: false,
            ..Self::v1(Pattern::Dense, n, growth, nblock)
        }
    }

    /// DenseNet "without block compression", Table 2's D: bottleneck layers, and transitions
    /// `BN-ReLU-1x1conv-avgpool` over the whole stack that keep its width (compression 1).
    /// This is the authors' `DenseNet` class (`anytime_models/models/anytime_network.py`)
    /// with its default `--reduction_ratio 1.0`; it reproduces Table 2's D GFLOPS within 1 %
    /// (tests/paper_readings.rs). No deep supervision, like [`NetSpec::densenet_bc`].
    pub fn densenet_uncompressed(n: usize, growth: usize, nblock: usize) -> Self {
        NetSpec {
            arch: Arch::DenseNetBc { compression: 1.0 },
            ..Self::densenet_bc(n, growth, nblock)
        }
    }

    /// FC-Log-DenseNet-103: blocks 4,5,7,10,12,15,12,10,7,5,4, g = 24, an initial convolution
    /// of `stem_width` channels (the authors' script: 72), 11 CamVid classes, 224x224.
    pub fn fc_log_densenet_103(stem_width: usize) -> Self {
        NetSpec {
            arch: Arch::FcLog,
            blocks: vec![4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4],
            growth: 24,
            bottleneck: false,
            stem: Stem::cifar(stem_width),
            input: [3, 224, 224],
            classes: 11,
            deep_supervision: true,
            hub_multiplier: 1,
            block_growth: Vec::new(),
            aux_min_stride: 0,
            custom_sets: None,
        }
    }

    /// FC-DenseNet (Tiramisu) with the given blocks and growth, initial width 48.
    pub fn fc_densenet(blocks: Vec<usize>, growth: usize) -> Self {
        NetSpec {
            arch: Arch::FcDenseNet,
            blocks,
            growth,
            bottleneck: false,
            stem: Stem::cifar(48),
            input: [3, 224, 224],
            classes: 11,
            deep_supervision: false,
            hub_multiplier: 1,
            block_growth: Vec::new(),
            aux_min_stride: 0,
            custom_sets: None,
        }
    }

    /// FC-DenseNet56 (4 layers per block, g = 12), 67 (5, g = 16) or 103 (g = 16).
    pub fn tiramisu(depth: usize) -> Option<Self> {
        match depth {
            56 => Some(Self::fc_densenet(vec![4; 11], 12)),
            67 => Some(Self::fc_densenet(vec![5; 11], 16)),
            103 => Some(Self::fc_densenet(
                vec![4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4],
                16,
            )),
            _ => None,
        }
    }

    /// Total number of feature layers `L`.
    pub fn num_layers(&self) -> usize {
        self.blocks.iter().sum()
    }

    /// The task follows from the architecture.
    pub fn task(&self) -> TaskKind {
        match self.arch {
            Arch::FcLog | Arch::FcDenseNet => TaskKind::Segment,
            _ => TaskKind::Classify,
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        let bad = |field: &'static str, message: String| Err(SpecError::Invalid { field, message });
        if self.blocks.is_empty() {
            return bad("blocks", "a network needs at least one block".into());
        }
        // Sizes are bounded before anything is allocated, so that a huge request is refused at
        // once instead of exhausting memory (the cost arithmetic is checked as well).
        let layers = self
            .blocks
            .iter()
            .try_fold(0usize, |a, &n| a.checked_add(n))
            .filter(|&l| l <= MAX_LAYERS);
        let Some(layers) = layers else {
            return bad(
                "n",
                format!(
                    "at most {MAX_LAYERS} layers in all, got blocks {:?}",
                    self.blocks
                ),
            );
        };
        let pattern = match self.arch {
            Arch::V1 { pattern } => pattern,
            _ => Pattern::Log,
        };
        let connections = pattern.connection_bound(layers);
        if connections > MAX_CONNECTIONS {
            return bad(
                "n",
                format!(
                    "{layers} layers of pattern {pattern} make up to {connections} connections, \
                     above the limit of {MAX_CONNECTIONS}; use fewer layers"
                ),
            );
        }
        for (field, value) in [
            ("g", self.growth),
            ("stem-width", self.stem.width),
            ("classes", self.classes),
            ("hub-multiplier", self.hub_multiplier),
        ]
        .into_iter()
        .chain(self.block_growth.iter().map(|&g| ("block_growth", g)))
        {
            if value > MAX_CHANNELS {
                return bad(field, format!("at most {MAX_CHANNELS}, got {value}"));
            }
        }
        if self.input[0] > MAX_CHANNELS || self.input[1].max(self.input[2]) > MAX_SIDE {
            return bad(
                "input",
                format!(
                    "at most {MAX_CHANNELS} channels and {MAX_SIDE} pixels a side, got {:?}",
                    self.input
                ),
            );
        }
        if self.stem.kernel > MAX_SIDE || self.stem.stride > MAX_SIDE {
            return bad("stem", format!("kernel and stride at most {MAX_SIDE}"));
        }
        if let Some(b) = self.blocks.iter().position(|&n| n == 0) {
            return bad(
                "n",
                format!("block {b} has 0 layers; every block needs at least 1"),
            );
        }
        if self.growth == 0 {
            return bad("g", "the growth rate must be at least 1".into());
        }
        if !self.block_growth.is_empty() {
            if !matches!(self.arch, Arch::V1 { .. } | Arch::FcLog) {
                return bad(
                    "block_growth",
                    "per-block growth rates need a per-layer architecture (V1 or FC-Log-DenseNet)"
                        .into(),
                );
            }
            if self.block_growth.len() != self.blocks.len() {
                return bad(
                    "block_growth",
                    format!(
                        "{} growth rates for {} blocks; give one per block",
                        self.block_growth.len(),
                        self.blocks.len()
                    ),
                );
            }
            if let Some(b) = self.block_growth.iter().position(|&g| g == 0) {
                return bad(
                    "block_growth",
                    format!("block {b} has growth 0; every growth rate must be at least 1"),
                );
            }
        }
        if self.stem.width == 0 || self.stem.kernel == 0 || self.stem.stride == 0 {
            return bad(
                "stem",
                "the stem width, kernel and stride must be at least 1".into(),
            );
        }
        if self.input.contains(&0) {
            return bad(
                "input",
                "input channels, height and width must be at least 1".into(),
            );
        }
        if self.classes == 0 {
            return bad("classes", "there must be at least 1 class".into());
        }
        if self.hub_multiplier == 0 {
            return bad(
                "hub-multiplier",
                "the hub multiplier must be at least 1".into(),
            );
        }
        if let Arch::DenseNetBc { compression } = self.arch {
            if !(compression > 0.0 && compression <= 1.0) {
                return bad(
                    "compression",
                    format!("must lie in (0, 1], got {compression}"),
                );
            }
        }
        if let Some(sets) = &self.custom_sets {
            if !matches!(self.arch, Arch::V1 { .. }) {
                return bad(
                    "pattern-file",
                    "input sets from a file apply to V1 networks only".into(),
                );
            }
            crate::pattern_file::check_sets(sets, self.num_layers()).map_err(|message| {
                SpecError::Invalid {
                    field: "pattern-file",
                    message,
                }
            })?;
        }
        if matches!(self.arch, Arch::FcLog | Arch::FcDenseNet)
            && self.blocks.len().is_multiple_of(2)
        {
            return bad(
                "blocks",
                format!(
                    "an FC network needs an odd number of blocks (down, bottleneck, up), got {}",
                    self.blocks.len()
                ),
            );
        }
        Ok(())
    }

    /// Builds the tensor graph, checking the spec (sizes, and that its cost can be counted
    /// in 64 bits).
    pub fn build(&self) -> Result<NetGraph, SpecError> {
        self.validate()?;
        let mut b = Builder::new(self.clone())?;
        match self.arch {
            Arch::V1 { .. } if self.custom_sets.is_some() => {
                let sets = self.custom_sets.clone().expect("checked");
                b.per_layer_network(sets, Vec::new(), false)?
            }
            Arch::V1 { pattern } => b.per_layer_network(
                pattern.input_sets(self.num_layers()),
                pattern.hub_layers(self.num_layers()),
                false,
            )?,
            Arch::FcLog => {
                let mut sets = Pattern::Log.input_sets(self.num_layers());
                let first_block_end = self.blocks[0];
                for (i, set) in sets.iter_mut().enumerate().skip(first_block_end + 1) {
                    if let Err(pos) = set.binary_search(&first_block_end) {
                        set.insert(pos, first_block_end);
                    }
                    debug_assert!(i > first_block_end);
                }
                b.per_layer_network(sets, Vec::new(), true)?
            }
            Arch::V2 => b.v2()?,
            Arch::DenseNetBc { compression } => b.densenet_bc(compression)?,
            Arch::FcDenseNet => b.tiramisu()?,
        }
        let graph = b.finish();
        graph.try_cost().ok_or_else(|| SpecError::Invalid {
            field: "n",
            message: "the network's FLOPs, parameters or activation bytes overflow 64 bits; \
                      use a smaller network or input"
                .into(),
        })?;
        Ok(graph)
    }
}

/// The most feature layers a network may have.
pub const MAX_LAYERS: usize = 20_000;
/// The most connections (inputs summed over layers) a network may have: the input sets are
/// built in memory.
pub const MAX_CONNECTIONS: u128 = 5_000_000;
/// The most channels of any width option (growth, stem, classes, input channels).
pub const MAX_CHANNELS: usize = 1 << 20;
/// The longest side of an input image (and of a stem's kernel or stride).
pub const MAX_SIDE: usize = 1 << 16;

/// Incremental graph construction shared by all architectures.
struct Builder {
    spec: NetSpec,
    nodes: Vec<Node>,
    layer_nodes: Vec<NodeId>,
    blocks: Vec<BlockInfo>,
    /// Current spatial size.
    size: (usize, usize),
    /// Sizes of the down path, to return to on the way up (FC networks).
    size_stack: Vec<((usize, usize), NodeId)>,
    /// `inputs_of_layer[i]`: the nodes layer `i` reads (for heads: "x_i and x_i's inputs").
    inputs_of_layer: Vec<Vec<NodeId>>,
}

impl Builder {
    fn new(spec: NetSpec) -> Result<Self, SpecError> {
        let [c, h, w] = spec.input;
        let mut b = Builder {
            nodes: vec![],
            layer_nodes: vec![],
            blocks: vec![],
            size: (h, w),
            size_stack: vec![],
            inputs_of_layer: vec![],
            spec,
        };
        b.nodes.push(Node {
            op: Op::Input,
            inputs: vec![],
            in_channels: c,
            channels: c,
            in_size: (h, w),
            size: (h, w),
            block: 0,
            layer: None,
        });
        let stem = b.spec.stem;
        let conv =
            |x: usize| (x + 2 * (stem.kernel / 2)).saturating_sub(stem.kernel) / stem.stride + 1;
        let mut out = (conv(h), conv(w));
        if stem.max_pool {
            // 3x3 stride-2 max pool with padding 1.
            out = ((out.0 - 1) / 2 + 1, (out.1 - 1) / 2 + 1);
        }
        if h < stem.kernel / 2 + 1 || w < stem.kernel / 2 + 1 {
            return Err(SpecError::Invalid {
                field: "input",
                message: format!(
                    "{h}x{w} is smaller than the {}x{} stem",
                    stem.kernel, stem.kernel
                ),
            });
        }
        let id = b.push(
            Op::Stem {
                kernel: stem.kernel,
                stride: stem.stride,
                max_pool: stem.max_pool,
            },
            vec![0],
            stem.width,
            out,
            0,
            Some(0),
        );
        b.size = out;
        b.layer_nodes.push(id);
        b.inputs_of_layer.push(vec![]);
        Ok(b)
    }

    fn channels_of(&self, ids: &[NodeId]) -> usize {
        ids.iter().map(|&i| self.nodes[i].channels).sum()
    }

    fn push(
        &mut self,
        op: Op,
        inputs: Vec<NodeId>,
        channels: usize,
        size: (usize, usize),
        block: usize,
        layer: Option<usize>,
    ) -> NodeId {
        let in_channels = self.channels_of(&inputs);
        let in_size = inputs.first().map(|&i| self.nodes[i].size).unwrap_or(size);
        self.nodes.push(Node {
            op,
            inputs,
            in_channels,
            channels,
            in_size,
            size,
            block,
            layer,
        });
        self.nodes.len() - 1
    }

    fn layer(&mut self, index: usize, inputs: Vec<NodeId>, width: usize, block: usize) -> NodeId {
        let bottleneck = self.spec.bottleneck.then_some(4 * self.spec.growth);
        let id = self.push(
            Op::Layer { index, bottleneck },
            inputs.clone(),
            width,
            self.size,
            block,
            Some(index),
        );
        debug_assert_eq!(self.layer_nodes.len(), index);
        self.layer_nodes.push(id);
        self.inputs_of_layer.push(inputs);
        id
    }

    fn start_block(&mut self, first_layer: usize, n: usize) {
        self.blocks.push(BlockInfo {
            first_layer,
            last_layer: first_layer + n - 1,
            size: self.size,
        });
    }

    /// The size after a 2x2 stride-2 pool, or an error naming the block that no longer fits.
    fn halve(&mut self, after_block: usize) -> Result<(usize, usize), SpecError> {
        let (h, w) = self.size;
        if h < 2 || w < 2 {
            return Err(SpecError::Invalid {
                field: "blocks",
                message: format!(
                    "{} blocks need {} halvings of the {}x{} input, but the feature maps are {h}x{w} after block {after_block}",
                    self.spec.blocks.len(),
                    self.spec.blocks.len() - 1,
                    self.spec.input[1],
                    self.spec.input[2]
                ),
            });
        }
        let reference = *self.layer_nodes.last().expect("the stem exists");
        self.size_stack.push((self.size, reference));
        self.size = (h / 2, w / 2);
        Ok(self.size)
    }

    /// A prediction reading `x_i` and `x_i`'s inputs (the paper's rule for every head).
    fn head(&mut self, layer: usize, block: usize, is_final: bool) {
        let mut inputs = vec![self.layer_nodes[layer]];
        inputs.extend(self.inputs_of_layer[layer].iter().copied());
        let task = self.spec.task();
        // A segmenter's final prediction is at the image's resolution: where a strided stem
        // made the network work below it, the head's logits are upsampled (bilinearly) to it.
        let size = if is_final && task == TaskKind::Segment {
            (self.spec.input[1], self.spec.input[2])
        } else {
            self.size
        };
        self.push(
            Op::Head { task, is_final },
            inputs,
            self.spec.classes,
            size,
            block,
            None,
        );
    }

    fn heads_after_block(&mut self, block: usize) {
        let last = self.blocks[block].last_layer;
        let is_final = block + 1 == self.spec.blocks.len();
        let stride = self.spec.input[1] / self.size.0.max(1);
        let aux = self.spec.deep_supervision && stride >= self.spec.aux_min_stride;
        if is_final || aux {
            self.head(last, block, is_final);
        }
    }

    /// V1 and FC-Log-DenseNet: layers read explicit input sets over global indices; at every
    /// transition each layer still read later gets its own transform from its latest version.
    #[allow(clippy::needless_range_loop)] // `i` is the layer's global index, not only a position
    fn per_layer_network(
        &mut self,
        sets: Vec<Vec<usize>>,
        hubs: Vec<usize>,
        fully_convolutional: bool,
    ) -> Result<(), SpecError> {
        let blocks = self.spec.blocks.clone();
        let nblock = blocks.len();
        let downs = nblock / 2;
        // The last consumer of every layer decides whether a transition must carry it.
        let mut last_reader = vec![0usize; sets.len()];
        for (i, set) in sets.iter().enumerate() {
            for &j in set {
                last_reader[j] = last_reader[j].max(i);
            }
        }
        let mut latest: Vec<NodeId> = vec![self.layer_nodes[0]];
        let mut next = 1;
        for (b, &n) in blocks.iter().enumerate() {
            self.start_block(next, n);
            let growth = self
                .spec
                .block_growth
                .get(b)
                .copied()
                .unwrap_or(self.spec.growth);
            for i in next..next + n {
                let inputs = sets[i].iter().map(|&j| latest[j]).collect();
                let width = if hubs.binary_search(&i).is_ok() {
                    growth * self.spec.hub_multiplier
                } else {
                    growth
                };
                latest.push(self.layer(i, inputs, width, b));
            }
            next += n;
            self.heads_after_block(b);
            if b + 1 == nblock {
                break;
            }
            let up = fully_convolutional && b >= downs;
            let (size, like) = if up {
                let (size, like) = self
                    .size_stack
                    .pop()
                    .expect("FC networks go down as often as up");
                self.size = size;
                (size, like)
            } else {
                (self.halve(b)?, 0)
            };
            // With per-block growth rates a transition also narrows a layer to the growth of
            // the block it enters, so wide low-resolution layers do not carry their width
            // up to the high-resolution blocks, where a channel costs 4x more per doubling.
            let entering = self.spec.block_growth.get(b + 1).copied();
            for j in 0..next {
                if last_reader[j] >= next {
                    let from = latest[j];
                    let own = self.nodes[from].channels;
                    let channels = entering.map_or(own, |g| own.min(g));
                    let op = if up {
                        Op::Up {
                            pre_activation: true,
                            like,
                        }
                    } else {
                        Op::Down { pool: Pool::Avg }
                    };
                    latest[j] = self.push(op, vec![from], channels, size, b + 1, Some(j));
                }
            }
        }
        Ok(())
    }

    /// Log-DenseNet V2: LOG inputs inside the block plus the compressed features of all
    /// earlier blocks; transitions compress the finished block.
    #[allow(clippy::needless_range_loop)] // `i` is the layer's global index, not only a position
    fn v2(&mut self) -> Result<(), SpecError> {
        let blocks = self.spec.blocks.clone();
        let g = self.spec.growth;
        let total = self.spec.num_layers();
        let log_width = g * (floor_log2(total + 1) + 1);
        let log_sets = Pattern::Log.input_sets(total);
        let mut compressed: Vec<NodeId> = vec![self.layer_nodes[0]];
        let mut next = 1;
        for (b, &n) in blocks.iter().enumerate() {
            self.start_block(next, n);
            for i in next..next + n {
                let mut inputs: Vec<NodeId> = Vec::new();
                let mut reads_compressed = false;
                for &j in &log_sets[i] {
                    if j >= next {
                        inputs.push(self.layer_nodes[j]);
                    } else {
                        reads_compressed = true;
                    }
                }
                if reads_compressed {
                    inputs.splice(0..0, compressed.iter().copied());
                }
                self.layer(i, inputs, g, b);
            }
            self.heads_after_block(b);
            if b + 1 == blocks.len() {
                break;
            }
            let size = self.halve(b)?;
            let finished: Vec<NodeId> = (next..next + n).map(|i| self.layer_nodes[i]).collect();
            let older_width = self.channels_of(&compressed);
            let older = self.push(
                Op::Down { pool: Pool::Avg },
                compressed.clone(),
                older_width,
                size,
                b + 1,
                None,
            );
            let newest = self.push(
                Op::Down { pool: Pool::Avg },
                finished,
                log_width.min(n * g),
                size,
                b + 1,
                None,
            );
            compressed = vec![older, newest];
            next += n;
        }
        Ok(())
    }

    /// DenseNet-BC: every layer reads the whole stack of its block; transitions compress it.
    fn densenet_bc(&mut self, compression: f64) -> Result<(), SpecError> {
        let blocks = self.spec.blocks.clone();
        let mut stack = vec![self.layer_nodes[0]];
        let mut next = 1;
        for (b, &n) in blocks.iter().enumerate() {
            self.start_block(next, n);
            for i in next..next + n {
                let id = self.layer(i, stack.clone(), self.spec.growth, b);
                stack.push(id);
            }
            next += n;
            self.heads_after_block(b);
            if b + 1 == blocks.len() {
                break;
            }
            let size = self.halve(b)?;
            let width = ((self.channels_of(&stack) as f64) * compression)
                .floor()
                .max(1.0) as usize;
            stack = vec![self.push(
                Op::Down { pool: Pool::Avg },
                stack,
                width,
                size,
                b + 1,
                None,
            )];
        }
        Ok(())
    }

    /// FC-DenseNet (Tiramisu): dense blocks; the down path keeps each block's whole stack as a
    /// skip; the up path upsamples only the previous block's new layers and concatenates the skip.
    fn tiramisu(&mut self) -> Result<(), SpecError> {
        let blocks = self.spec.blocks.clone();
        let downs = blocks.len() / 2;
        let g = self.spec.growth;
        let mut stack = vec![self.layer_nodes[0]];
        let mut skips: Vec<Vec<NodeId>> = Vec::new();
        let mut new_layers: Vec<NodeId> = Vec::new();
        let mut next = 1;
        for (b, &n) in blocks.iter().enumerate() {
            self.start_block(next, n);
            new_layers.clear();
            for i in next..next + n {
                let id = self.layer(i, stack.clone(), g, b);
                stack.push(id);
                new_layers.push(id);
            }
            next += n;
            self.heads_after_block(b);
            if b + 1 == blocks.len() {
                break;
            }
            if b < downs {
                skips.push(stack.clone());
                let size = self.halve(b)?;
                let width = self.channels_of(&stack);
                stack = vec![self.push(
                    Op::Down { pool: Pool::Max },
                    stack,
                    width,
                    size,
                    b + 1,
                    None,
                )];
            } else {
                let (size, like) = self.size_stack.pop().expect("as many ups as downs");
                self.size = size;
                let width = self.channels_of(&new_layers);
                let up = self.push(
                    Op::Up {
                        pre_activation: false,
                        like,
                    },
                    new_layers.clone(),
                    width,
                    self.size,
                    b + 1,
                    None,
                );
                stack = skips.pop().expect("as many skips as ups");
                stack.push(up);
            }
        }
        Ok(())
    }

    fn finish(self) -> NetGraph {
        let task = self.spec.task();
        NetGraph {
            spec: self.spec,
            nodes: self.nodes,
            layer_nodes: self.layer_nodes,
            blocks: self.blocks,
            task,
        }
    }
}

impl NetGraph {
    /// Number of feature layers `L` (`x_1..x_L`; `x_0` is the stem).
    pub fn num_layers(&self) -> usize {
        self.layer_nodes.len() - 1
    }

    /// For every layer `x_0..x_L`, the original layers it reads directly: transitions are
    /// looked through, and a compressed block (V2, DenseNet-BC, Tiramisu) stands for all the
    /// layers it compresses. This is the matrix of the paper's Fig. 1.
    pub fn layer_input_sets(&self) -> Vec<Vec<usize>> {
        let mut memo: Vec<Option<Vec<usize>>> = vec![None; self.nodes.len()];
        // Which original layers a node's tensor carries.
        fn carried(g: &NetGraph, id: NodeId, memo: &mut Vec<Option<Vec<usize>>>) -> Vec<usize> {
            if let Some(v) = &memo[id] {
                return v.clone();
            }
            let node = &g.nodes[id];
            let v = match node.op {
                Op::Stem { .. } | Op::Layer { .. } => {
                    vec![node.layer.expect("layers know their index")]
                }
                Op::Input | Op::Head { .. } => vec![],
                Op::Down { .. } | Op::Up { .. } => {
                    let mut all: Vec<usize> = node
                        .inputs
                        .iter()
                        .flat_map(|&i| carried(g, i, memo))
                        .collect();
                    all.sort_unstable();
                    all.dedup();
                    all
                }
            };
            memo[id] = Some(v.clone());
            v
        }
        self.layer_nodes
            .iter()
            .map(|&id| {
                let node = &self.nodes[id];
                if matches!(node.op, Op::Stem { .. }) {
                    return vec![];
                }
                let mut all: Vec<usize> = node
                    .inputs
                    .iter()
                    .flat_map(|&i| carried(self, i, &mut memo))
                    .collect();
                all.sort_unstable();
                all.dedup();
                all
            })
            .collect()
    }

    /// Number of input tensors over all feature layers (for V1 networks: the pattern's
    /// connection count; a compressed block counts once).
    pub fn connections(&self) -> usize {
        self.layer_nodes
            .iter()
            .skip(1)
            .map(|&id| self.nodes[id].inputs.len())
            .sum()
    }

    /// The prediction nodes, auxiliary ones first and the final one last.
    pub fn heads(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].op, Op::Head { .. }))
            .collect()
    }

    /// For every node, the index of the last node that reads it (itself if none):
    /// lets an executor free tensors as soon as they are dead.
    pub fn last_use(&self) -> Vec<NodeId> {
        let mut last: Vec<NodeId> = (0..self.nodes.len()).collect();
        for (id, node) in self.nodes.iter().enumerate() {
            for &i in &node.inputs {
                last[i] = last[i].max(id);
            }
        }
        last
    }
}
