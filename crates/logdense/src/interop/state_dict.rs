//! The network's tensors under PyTorch's names and layouts: one table ([`entries`]) that both
//! directions read, so export and import can never disagree on a name.
//!
//! Two naming schemes:
//! - [`Naming::Reference`]: `bench/pytorch_reference.py`'s `SparseDenseNet` (`mods.{k}.bn.weight`,
//!   `k` = graph node - 1), for every network logdense builds;
//! - [`Naming::Torchvision`]: torchvision's `DenseNet` (`features.denseblock1.denselayer1.norm1.weight`),
//!   for the DenseNet-BC networks with an ImageNet stem that torchvision's class builds.
//!
//! Layouts: convolution and transposed-convolution weights are the same in burn and PyTorch;
//! a linear weight is `[in, out]` in burn and `[out, in]` in PyTorch; a batch norm's gamma and
//! beta are PyTorch's `weight` and `bias`. Where a scheme concatenates a node's inputs in
//! another order than ours (torchvision's final norm reads the last block oldest first, our
//! head reads the last layer first), the per-channel tensors are permuted on the way.

use crate::model::network::NodeModule;
use crate::SparseDenseNet;
use burn::module::Param;
use burn::nn::BatchNorm;
use burn::prelude::*;
use logdense_graph::{Arch, NetGraph, Op, TaskKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Whose module names the state dict uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `bench/pytorch_reference.py`'s modules: any network.
    Reference,
    /// torchvision's `DenseNet` class: DenseNet-BC with an ImageNet stem and no auxiliary heads.
    Torchvision,
}

impl Naming {
    /// The scheme's name as the CLI and errors spell it.
    pub fn name(self) -> &'static str {
        match self {
            Naming::Reference => "logdense (bench/pytorch_reference.py)",
            Naming::Torchvision => "torchvision DenseNet",
        }
    }
}

/// The batch-norm tensors, in PyTorch's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnPart {
    /// gamma.
    Weight,
    /// beta.
    Bias,
    /// The running mean (a buffer).
    RunningMean,
    /// The running variance (a buffer).
    RunningVar,
}

/// Which of a node module's batch norms or convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The module's main one (the stem's, a layer's input BN and 3x3 conv, a transition's,
    /// the head's BN and segmentation conv).
    Main,
    /// A bottleneck layer's 1x1 convolution and the BN after it.
    Bottleneck,
}

/// One tensor of a node module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A batch norm's tensor.
    Bn(Site, BnPart),
    /// A convolution's weight (`bias: false`) or bias.
    Conv(Site, bool),
    /// The up transition's transposed-convolution weight.
    Deconv,
    /// The classifier's weight (`bias: false`, transposed in PyTorch) or bias.
    Linear(bool),
}

/// One named tensor of the state dict.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The PyTorch name.
    pub name: String,
    /// Index into [`SparseDenseNet::modules`].
    pub module: usize,
    /// Which tensor of that module.
    pub slot: Slot,
    /// Channel order: PyTorch's channel `j` is ours `perm[j]` (per-channel BN tensors, and
    /// the classifier weight's input axis). `None`: the same order.
    pub perm: Option<Arc<Vec<usize>>>,
}

/// A tensor as a state dict holds it: shape (PyTorch layout) and f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Extents, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// Why a state dict does not fit a network.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateDictError {
    /// Keys the network needs that the file lacks, and keys the file has that it does not need.
    #[error("{}", describe_keys(.missing, .unexpected, .total))]
    Keys {
        /// Needed names absent from the file.
        missing: Vec<String>,
        /// Names in the file that the network has no tensor for.
        unexpected: Vec<String>,
        /// How many tensors the network has.
        total: usize,
    },
    /// A tensor with the right name and the wrong shape.
    #[error("key {name}: shape {found:?} in the file, the network needs {expected:?}")]
    Shape {
        /// The PyTorch name.
        name: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape the network's tensor has (PyTorch layout).
        expected: Vec<usize>,
    },
    /// The naming scheme does not apply to this network.
    #[error("{0}")]
    Scheme(String),
}

fn first_few(keys: &[String]) -> String {
    let shown: Vec<&str> = keys.iter().take(4).map(String::as_str).collect();
    match keys.len() > shown.len() {
        true => format!(
            "{} (and {} more)",
            shown.join(", "),
            keys.len() - shown.len()
        ),
        false => shown.join(", "),
    }
}

fn describe_keys(missing: &[String], unexpected: &[String], total: &usize) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "{} of the network's {total} tensors missing: {}",
            missing.len(),
            first_few(missing)
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "{} keys the network does not have: {}",
            unexpected.len(),
            first_few(unexpected)
        ));
    }
    format!(
        "the state dict is for another network: {}",
        parts.join("; ")
    )
}

/// A key of torchvision's published ImageNet DenseNet files under the name the current class
/// uses: those files say `denselayer1.norm.1.weight` where the class says `norm1.weight`
/// (torchvision renames them on load, with the same rule).
pub fn current_torchvision_key(name: &str) -> String {
    if !name.contains("denselayer") {
        return name.to_string();
    }
    let mut out = name.to_string();
    for (old, new) in [
        (".norm.1.", ".norm1."),
        (".norm.2.", ".norm2."),
        (".conv.1.", ".conv1."),
        (".conv.2.", ".conv2."),
    ] {
        out = out.replace(old, new);
    }
    out
}

/// Whether a key is PyTorch bookkeeping with no counterpart in our modules (a batch norm's
/// `num_batches_tracked`): written on export so `load_state_dict(strict=True)` accepts the
/// file, ignored on import.
pub fn is_bookkeeping(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}

/// One entry of the table.
fn entry(
    name: impl Into<String>,
    module: usize,
    slot: Slot,
    perm: &Option<Arc<Vec<usize>>>,
) -> Entry {
    Entry {
        name: name.into(),
        module,
        slot,
        perm: perm.clone(),
    }
}

fn bn_entries(
    out: &mut Vec<Entry>,
    prefix: &str,
    module: usize,
    site: Site,
    perm: &Option<Arc<Vec<usize>>>,
) {
    for (part, suffix) in [
        (BnPart::Weight, "weight"),
        (BnPart::Bias, "bias"),
        (BnPart::RunningMean, "running_mean"),
        (BnPart::RunningVar, "running_var"),
    ] {
        out.push(entry(
            format!("{prefix}.{suffix}"),
            module,
            Slot::Bn(site, part),
            perm,
        ));
    }
}

/// Our channel index of each channel when the node's inputs are concatenated in increasing
/// node order (as torchvision does), or `None` when that is already our order.
fn oldest_first_perm(graph: &NetGraph, node: usize) -> Option<Arc<Vec<usize>>> {
    let inputs = &graph.nodes[node].inputs;
    let mut offsets = Vec::with_capacity(inputs.len());
    let mut at = 0;
    for &i in inputs {
        offsets.push(at);
        at += graph.nodes[i].channels;
    }
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&k| inputs[k]);
    if order.iter().enumerate().all(|(a, &b)| a == b) {
        return None;
    }
    let perm = order
        .iter()
        .flat_map(|&k| offsets[k]..offsets[k] + graph.nodes[inputs[k]].channels)
        .collect();
    Some(Arc::new(perm))
}

/// Whether torchvision's `DenseNet` class builds this network: DenseNet-BC (compression 0.5)
/// with an ImageNet stem (7x7 stride-2 conv, BN-ReLU, max pool), bottleneck layers of width
/// 4g, average-pool transitions and one classification head.
pub fn torchvision_compatible(graph: &NetGraph) -> Result<(), String> {
    let spec = &graph.spec;
    let mut why = Vec::new();
    if spec.arch != (Arch::DenseNetBc { compression: 0.5 }) {
        why.push("it is not a DenseNet-BC with compression 0.5");
    }
    if !(spec.stem.kernel == 7 && spec.stem.stride == 2 && spec.stem.max_pool) {
        why.push("its stem is not the ImageNet one (7x7 stride-2 conv, BN-ReLU, max pool)");
    }
    if !spec.bottleneck {
        why.push("its layers have no bottleneck");
    }
    if spec.deep_supervision || graph.task != TaskKind::Classify {
        why.push("it is not a classifier with a single head");
    }
    match why.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "torchvision's DenseNet names do not apply to this network: {}",
            why.join("; ")
        )),
    }
}

/// Every tensor of `graph`'s network under `naming`, in module order.
pub fn entries(graph: &NetGraph, naming: Naming) -> Result<Vec<Entry>, StateDictError> {
    if naming == Naming::Torchvision {
        torchvision_compatible(graph).map_err(StateDictError::Scheme)?;
    }
    let mut out = Vec::new();
    for (k, node) in graph.nodes.iter().enumerate().skip(1) {
        let m = k - 1;
        match naming {
            Naming::Reference => {
                let p = format!("mods.{m}");
                let conv = |out: &mut Vec<Entry>, name: &str, site: Site, bias: bool| {
                    out.push(entry(
                        format!("{p}.{name}.weight"),
                        m,
                        Slot::Conv(site, false),
                        &None,
                    ));
                    if bias {
                        out.push(entry(
                            format!("{p}.{name}.bias"),
                            m,
                            Slot::Conv(site, true),
                            &None,
                        ));
                    }
                };
                match node.op {
                    Op::Input => unreachable!("only node 0 is the input"),
                    Op::Stem { max_pool, .. } => {
                        conv(&mut out, "conv", Site::Main, false);
                        if max_pool {
                            bn_entries(&mut out, &format!("{p}.bn"), m, Site::Main, &None);
                        }
                    }
                    Op::Layer { bottleneck, .. } => {
                        bn_entries(&mut out, &format!("{p}.bn"), m, Site::Main, &None);
                        if bottleneck.is_some() {
                            conv(&mut out, "bconv", Site::Bottleneck, false);
                            bn_entries(&mut out, &format!("{p}.bbn"), m, Site::Bottleneck, &None);
                        }
                        conv(&mut out, "conv", Site::Main, false);
                    }
                    Op::Down { .. } => {
                        bn_entries(&mut out, &format!("{p}.bn"), m, Site::Main, &None);
                        conv(&mut out, "conv", Site::Main, false);
                    }
                    Op::Up { pre_activation, .. } => {
                        if pre_activation {
                            bn_entries(&mut out, &format!("{p}.bn"), m, Site::Main, &None);
                        }
                        out.push(entry(format!("{p}.deconv.weight"), m, Slot::Deconv, &None));
                    }
                    Op::Head { task, .. } => {
                        bn_entries(&mut out, &format!("{p}.bn"), m, Site::Main, &None);
                        match task {
                            TaskKind::Classify => {
                                for bias in [false, true] {
                                    let suffix = if bias { "bias" } else { "weight" };
                                    out.push(entry(
                                        format!("{p}.linear.{suffix}"),
                                        m,
                                        Slot::Linear(bias),
                                        &None,
                                    ));
                                }
                            }
                            TaskKind::Segment => conv(&mut out, "conv", Site::Main, true),
                        }
                    }
                }
            }
            Naming::Torchvision => {
                let perm = oldest_first_perm(graph, k);
                match node.op {
                    Op::Input => unreachable!("only node 0 is the input"),
                    Op::Stem { .. } => {
                        out.push(entry(
                            "features.conv0.weight",
                            m,
                            Slot::Conv(Site::Main, false),
                            &None,
                        ));
                        bn_entries(&mut out, "features.norm0", m, Site::Main, &None);
                    }
                    Op::Layer { index, .. } => {
                        let block = node.block;
                        let j = index - graph.blocks[block].first_layer + 1;
                        let p = format!("features.denseblock{}.denselayer{j}", block + 1);
                        bn_entries(&mut out, &format!("{p}.norm1"), m, Site::Main, &perm);
                        out.push(entry(
                            format!("{p}.conv1.weight"),
                            m,
                            Slot::Conv(Site::Bottleneck, false),
                            &perm,
                        ));
                        bn_entries(&mut out, &format!("{p}.norm2"), m, Site::Bottleneck, &None);
                        out.push(entry(
                            format!("{p}.conv2.weight"),
                            m,
                            Slot::Conv(Site::Main, false),
                            &None,
                        ));
                    }
                    Op::Down { .. } => {
                        // A transition counts towards the block it enters (0-based), which is
                        // torchvision's 1-based number of the block it leaves.
                        let p = format!("features.transition{}", node.block);
                        bn_entries(&mut out, &format!("{p}.norm"), m, Site::Main, &perm);
                        out.push(entry(
                            format!("{p}.conv.weight"),
                            m,
                            Slot::Conv(Site::Main, false),
                            &perm,
                        ));
                    }
                    Op::Up { .. } => {
                        return Err(StateDictError::Scheme(
                            "torchvision's DenseNet has no up transitions".into(),
                        ))
                    }
                    Op::Head { .. } => {
                        bn_entries(&mut out, "features.norm5", m, Site::Main, &perm);
                        out.push(entry("classifier.weight", m, Slot::Linear(false), &perm));
                        out.push(entry("classifier.bias", m, Slot::Linear(true), &None));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn bn_of(module: &NodeModule, site: Site) -> Option<&BatchNorm> {
    match (module, site) {
        (NodeModule::Stem(s), Site::Main) => s.bn.as_ref(),
        (NodeModule::Layer(l), Site::Main) => Some(&l.bn),
        (NodeModule::Layer(l), Site::Bottleneck) => l.bottleneck.as_ref().map(|b| &b.bn),
        (NodeModule::Down(d), Site::Main) => Some(&d.bn),
        (NodeModule::Up(u), Site::Main) => u.bn.as_ref(),
        (NodeModule::Head(h), Site::Main) => Some(&h.bn),
        _ => None,
    }
}

fn bn_of_mut(module: &mut NodeModule, site: Site) -> Option<&mut BatchNorm> {
    match (module, site) {
        (NodeModule::Stem(s), Site::Main) => s.bn.as_mut(),
        (NodeModule::Layer(l), Site::Main) => Some(&mut l.bn),
        (NodeModule::Layer(l), Site::Bottleneck) => l.bottleneck.as_mut().map(|b| &mut b.bn),
        (NodeModule::Down(d), Site::Main) => Some(&mut d.bn),
        (NodeModule::Up(u), Site::Main) => u.bn.as_mut(),
        (NodeModule::Head(h), Site::Main) => Some(&mut h.bn),
        _ => None,
    }
}

fn conv_of(module: &NodeModule, site: Site) -> Option<&burn::nn::conv::Conv2d> {
    match (module, site) {
        (NodeModule::Stem(s), Site::Main) => Some(&s.conv),
        (NodeModule::Layer(l), Site::Main) => Some(&l.conv),
        (NodeModule::Layer(l), Site::Bottleneck) => l.bottleneck.as_ref().map(|b| &b.conv),
        (NodeModule::Down(d), Site::Main) => Some(&d.conv),
        (NodeModule::Head(h), Site::Main) => h.conv.as_ref(),
        _ => None,
    }
}

fn conv_of_mut(module: &mut NodeModule, site: Site) -> Option<&mut burn::nn::conv::Conv2d> {
    match (module, site) {
        (NodeModule::Stem(s), Site::Main) => Some(&mut s.conv),
        (NodeModule::Layer(l), Site::Main) => Some(&mut l.conv),
        (NodeModule::Layer(l), Site::Bottleneck) => l.bottleneck.as_mut().map(|b| &mut b.conv),
        (NodeModule::Down(d), Site::Main) => Some(&mut d.conv),
        (NodeModule::Head(h), Site::Main) => h.conv.as_mut(),
        _ => None,
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Array {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 after convert");
    Array { shape, values }
}

const MISSING: &str = "the table names only tensors the network has";

/// Our tensor for `entry`, in our layout and channel order.
fn ours(net: &SparseDenseNet, entry: &Entry) -> Array {
    let module = &net.modules[entry.module];
    match entry.slot {
        Slot::Bn(site, part) => {
            let bn = bn_of(module, site).expect(MISSING);
            values(match part {
                BnPart::Weight => bn.gamma.val(),
                BnPart::Bias => bn.beta.val(),
                BnPart::RunningMean => bn.running_mean.value(),
                BnPart::RunningVar => bn.running_var.value(),
            })
        }
        Slot::Conv(site, bias) => {
            let conv = conv_of(module, site).expect(MISSING);
            match bias {
                false => values(conv.weight.val()),
                true => values(conv.bias.as_ref().expect(MISSING).val()),
            }
        }
        Slot::Deconv => match module {
            NodeModule::Up(u) => values(u.deconv.weight.val()),
            _ => unreachable!("{MISSING}"),
        },
        Slot::Linear(bias) => match module {
            NodeModule::Head(h) => {
                let linear = h.linear.as_ref().expect(MISSING);
                match bias {
                    false => values(linear.weight.val()),
                    true => values(linear.bias.as_ref().expect(MISSING).val()),
                }
            }
            _ => unreachable!("{MISSING}"),
        },
    }
}

/// Which way [`relayout`] converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Our layout to PyTorch's.
    ToTorch,
    /// PyTorch's layout to ours.
    FromTorch,
}

/// Converts a tensor between our layout and PyTorch's: the linear weight transposed (ours
/// `[in, out]`, PyTorch's `[out, in]`), and where the entry has a channel permutation, the
/// input channels of 1x1 convolutions and classifiers and the per-channel BN tensors permuted
/// (PyTorch's channel `j` is ours `perm[j]`). One table of (ours, PyTorch's) offsets serves
/// both directions, so they cannot disagree.
fn relayout(entry: &Entry, a: &Array, direction: Direction) -> Array {
    let perm = |j: usize| entry.perm.as_ref().map_or(j, |p| p[j]);
    // (our offset, PyTorch's offset) of each run of `run` values, and the output's shape.
    let (pairs, run, shape): (Vec<(usize, usize)>, usize, Vec<usize>) = match entry.slot {
        Slot::Linear(false) => {
            let (cin, cout) = match direction {
                Direction::ToTorch => (a.shape[0], a.shape[1]),
                Direction::FromTorch => (a.shape[1], a.shape[0]),
            };
            let pairs = (0..cout)
                .flat_map(|o| (0..cin).map(move |j| (perm(j) * cout + o, o * cin + j)))
                .collect();
            let shape = match direction {
                Direction::ToTorch => vec![cout, cin],
                Direction::FromTorch => vec![cin, cout],
            };
            (pairs, 1, shape)
        }
        Slot::Conv(_, false) if entry.perm.is_some() => {
            let (o, i) = (a.shape[0], a.shape[1]);
            let inner: usize = a.shape[2..].iter().product();
            let pairs = (0..o)
                .flat_map(|oc| {
                    (0..i).map(move |j| ((oc * i + perm(j)) * inner, (oc * i + j) * inner))
                })
                .collect();
            (pairs, inner, a.shape.clone())
        }
        Slot::Bn(..) if entry.perm.is_some() => (
            (0..a.values.len()).map(|j| (perm(j), j)).collect(),
            1,
            a.shape.clone(),
        ),
        _ => return a.clone(),
    };
    let mut values = vec![0f32; a.values.len()];
    for (ours, torch) in pairs {
        let (src, dst) = match direction {
            Direction::ToTorch => (ours, torch),
            Direction::FromTorch => (torch, ours),
        };
        values[dst..dst + run].copy_from_slice(&a.values[src..src + run]);
    }
    Array { shape, values }
}

/// The network's state dict under `naming`: every tensor with its PyTorch name, shape and
/// values, in module order.
pub fn export(
    net: &SparseDenseNet,
    naming: Naming,
) -> Result<Vec<(String, Array)>, StateDictError> {
    Ok(entries(&net.graph, naming)?
        .into_iter()
        .map(|e| {
            let a = relayout(&e, &ours(net, &e), Direction::ToTorch);
            (e.name, a)
        })
        .collect())
}

fn tensor<const D: usize>(a: Array, device: &Device) -> Tensor<D> {
    let shape: [usize; D] = a
        .shape
        .try_into()
        .expect("shapes are checked before loading");
    Tensor::from_data(TensorData::new(a.values, shape), device)
}

fn set(net: &mut SparseDenseNet, entry: &Entry, a: Array, device: &Device) {
    let module = &mut net.modules[entry.module];
    match entry.slot {
        Slot::Bn(site, part) => {
            let bn = bn_of_mut(module, site).expect(MISSING);
            let t = tensor::<1>(a, device);
            match part {
                BnPart::Weight => bn.gamma = Param::from_tensor(t),
                BnPart::Bias => bn.beta = Param::from_tensor(t),
                BnPart::RunningMean => bn.running_mean = burn::module::RunningState::new(t),
                BnPart::RunningVar => bn.running_var = burn::module::RunningState::new(t),
            }
        }
        Slot::Conv(site, bias) => {
            let conv = conv_of_mut(module, site).expect(MISSING);
            match bias {
                false => conv.weight = Param::from_tensor(tensor::<4>(a, device)),
                true => conv.bias = Some(Param::from_tensor(tensor::<1>(a, device))),
            }
        }
        Slot::Deconv => match module {
            NodeModule::Up(u) => u.deconv.weight = Param::from_tensor(tensor::<4>(a, device)),
            _ => unreachable!("{MISSING}"),
        },
        Slot::Linear(bias) => match module {
            NodeModule::Head(h) => {
                let linear = h.linear.as_mut().expect(MISSING);
                match bias {
                    false => linear.weight = Param::from_tensor(tensor::<2>(a, device)),
                    true => linear.bias = Some(Param::from_tensor(tensor::<1>(a, device))),
                }
            }
            _ => unreachable!("{MISSING}"),
        },
    }
}

/// Loads a state dict into `net` (built for the same network): every tensor the network has
/// must be present with its shape, and no other key (PyTorch's bookkeeping aside, see
/// [`is_bookkeeping`]). Nothing is changed unless everything fits.
pub fn import(
    mut net: SparseDenseNet,
    tensors: &BTreeMap<String, Array>,
    naming: Naming,
    device: &Device,
) -> Result<SparseDenseNet, StateDictError> {
    let entries = entries(&net.graph, naming)?;
    let missing: Vec<String> = entries
        .iter()
        .filter(|e| !tensors.contains_key(&e.name))
        .map(|e| e.name.clone())
        .collect();
    let known: std::collections::HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let unexpected: Vec<String> = tensors
        .keys()
        .filter(|k| !known.contains(k.as_str()) && !is_bookkeeping(k))
        .cloned()
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(StateDictError::Keys {
            missing,
            unexpected,
            total: entries.len(),
        });
    }
    let mut converted = Vec::with_capacity(entries.len());
    for e in &entries {
        let expected = relayout(e, &ours(&net, e), Direction::ToTorch).shape;
        let found = &tensors[&e.name];
        if found.shape != expected {
            return Err(StateDictError::Shape {
                name: e.name.clone(),
                found: found.shape.clone(),
                expected,
            });
        }
        converted.push(relayout(e, found, Direction::FromTorch));
    }
    for (e, a) in entries.iter().zip(converted) {
        set(&mut net, e, a, device);
    }
    Ok(net)
}
