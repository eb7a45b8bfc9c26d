//! Models in and out: ONNX export ([`onnx`]), safetensors state dicts with PyTorch's names in
//! both directions, PyTorch `.pt`/`.pth` state dicts in ([`files`]), under the names of our
//! PyTorch reference or of torchvision's DenseNet ([`state_dict`]), and run directories made
//! from imported weights, which `eval`, `predict` and `train --resume` accept.

pub mod files;
pub mod onnx;
pub mod state_dict;

use crate::error::invalid;
use crate::training::checkpoint::{save_checkpoint, TrainState};
use crate::training::config::{TaskConfig, CONFIG_FILE};
use crate::training::report::write_atomic;
use crate::SparseDenseNet;
use anyhow::{Context, Result};
use burn::prelude::*;
use files::{Stored, META_DATA, META_GRAPH, META_PRESET};
use logdense_graph::{NetGraph, NetSpec};
use serde::{Deserialize, Serialize};
use state_dict::{Naming, Slot};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key holding the run's configuration (TOML), when the export came from a run.
pub const META_CONFIG: &str = "logdense_config";

/// What a run knows about its data beyond the weights: the normalisation and class names
/// (the metadata's `logdense_data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Per-channel mean subtracted from pixels in [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the pixels are divided by.
    pub std: Vec<f32>,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

/// ImageNet's normalisation, which torchvision's pretrained DenseNets expect.
pub fn imagenet_data(classes: usize) -> DataInfo {
    DataInfo {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
        class_names: (0..classes).map(|c| c.to_string()).collect(),
    }
}

/// The network's state dict as safetensors bytes, under [`Naming::Reference`] (the names and
/// layouts of `bench/pytorch_reference.py`'s modules, with every batch norm's
/// `num_batches_tracked` so that PyTorch's strict `load_state_dict` accepts it), and the graph,
/// preset, config and data in the header's metadata.
pub fn safetensors_export(
    net: &SparseDenseNet,
    preset: Option<&str>,
    config: Option<&TaskConfig>,
    data: Option<&DataInfo>,
) -> Result<Vec<u8>> {
    let entries = state_dict::entries(&net.graph, Naming::Reference)?;
    let mut tensors: Vec<(String, Stored)> = state_dict::export(net, Naming::Reference)?
        .into_iter()
        .map(|(name, a)| (name, Stored::F32(a)))
        .collect();
    for e in &entries {
        if let Slot::Bn(_, state_dict::BnPart::Weight) = e.slot {
            let prefix = e.name.trim_end_matches(".weight");
            tensors.push((
                format!("{prefix}.num_batches_tracked"),
                Stored::I64Scalar(0),
            ));
        }
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert(META_GRAPH.to_string(), serde_json::to_string(&net.graph)?);
    if let Some(p) = preset {
        meta.insert(META_PRESET.to_string(), p.to_string());
    }
    if let Some(c) = config {
        meta.insert(META_CONFIG.to_string(), c.to_toml());
    }
    if let Some(d) = data {
        meta.insert(META_DATA.to_string(), serde_json::to_string(d)?);
    }
    files::safetensors_bytes(tensors, meta).context("cannot encode the safetensors file")
}

/// A sample for checking an export elsewhere: safetensors bytes holding `input` and the
/// network's final-head `logits` on it in inference mode (what the ONNX export's output holds:
/// `[N, classes]` for a classifier, `[N, classes, H, W]` for a segmenter).
pub fn sample_bytes(net: &SparseDenseNet, input: Tensor<4>) -> Result<Vec<u8>> {
    let array = |t: Vec<usize>, v: Vec<f32>| state_dict::Array {
        shape: t,
        values: v,
    };
    let in_shape = input.dims().to_vec();
    let in_values = input
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let logits = net.forward(input);
    let [n, c, h, w] = logits.dims();
    let shape = match net.graph.task {
        logdense_graph::TaskKind::Classify => vec![n, c],
        logdense_graph::TaskKind::Segment => vec![n, c, h, w],
    };
    let values = logits
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    files::safetensors_bytes(
        vec![
            ("input".into(), Stored::F32(array(in_shape, in_values))),
            ("logits".into(), Stored::F32(array(shape, values))),
        ],
        HashMap::new(),
    )
    .context("cannot encode the sample")
}

/// Reads the tensor `input` of a safetensors file (a sample or any file holding one).
pub fn read_input(path: &Path, spec: &NetSpec, device: &Device) -> Result<Tensor<4>> {
    let file = files::read_state_dict(path)?;
    let a = file
        .tensors
        .get("input")
        .ok_or_else(|| invalid(format!("{}: no tensor named `input`", path.display())))?;
    let [c, h, w] = spec.input;
    if a.shape.len() != 4 || a.shape[1..] != [c, h, w] {
        return Err(invalid(format!(
            "{}: `input` has shape {:?}, the network reads [N, {c}, {h}, {w}]",
            path.display(),
            a.shape
        )));
    }
    let shape = [a.shape[0], c, h, w];
    Ok(Tensor::from_data(
        TensorData::new(a.values.clone(), shape),
        device,
    ))
}

/// Which naming a file's keys follow: torchvision's (`features.`/`classifier.`) or ours.
pub fn detect_naming(keys: impl IntoIterator<Item = impl AsRef<str>>) -> Naming {
    let torchvision = keys
        .into_iter()
        .any(|k| k.as_ref().starts_with("features.") || k.as_ref().starts_with("classifier."));
    match torchvision {
        true => Naming::Torchvision,
        false => Naming::Reference,
    }
}

/// What an import builds a run from.
pub struct Import {
    /// The configuration the run directory gets.
    pub config: TaskConfig,
    /// The model with the imported weights (its graph's spec is the network they are for).
    pub model: SparseDenseNet,
    /// The normalisation and class names the run directory records.
    pub data: DataInfo,
    /// The naming the file's keys followed.
    pub naming: Naming,
    /// How many tensors were loaded.
    pub tensors: usize,
}

/// Loads a state dict file into the network it is for: the file's own metadata (a logdense
/// export) or `preset` names the network; the run's config is the metadata's, else the
/// preset's task defaults.
pub fn import_file(path: &Path, preset: Option<&str>, device: &Device) -> Result<Import> {
    let mut file = files::read_state_dict(path).map_err(|e| invalid(e.to_string()))?;
    let naming = detect_naming(file.tensors.keys());
    if naming == Naming::Torchvision {
        file.tensors = std::mem::take(&mut file.tensors)
            .into_iter()
            .map(|(k, v)| (state_dict::current_torchvision_key(&k), v))
            .collect();
    }
    let meta = &file.metadata;
    let meta_config = match meta.get(META_CONFIG) {
        Some(text) => Some(
            TaskConfig::from_toml(text, logdense_graph::TaskKind::Classify)
                .with_context(|| format!("{}: metadata {META_CONFIG}", path.display()))?,
        ),
        None => None,
    };
    let (spec, preset_name) = match (preset, meta.get(META_GRAPH)) {
        (Some(p), _) => (
            crate::model::presets::preset(p).map_err(|e| invalid(format!("--preset: {e}")))?,
            p.to_string(),
        ),
        (None, Some(graph)) => {
            let graph: NetGraph = serde_json::from_str(graph)
                .map_err(|e| invalid(format!("{}: metadata {META_GRAPH}: {e}", path.display())))?;
            (graph.spec, meta.get(META_PRESET).cloned().unwrap_or_else(|| "custom".into()))
        }
        (None, None) => {
            return Err(invalid(format!(
                "{}: the file does not say which network it holds (no logdense metadata): name one with --preset",
                path.display()
            )))
        }
    };
    let task = spec.task();
    let mut config = match meta_config {
        Some(c) => c,
        None => {
            let mut c = TaskConfig::defaults(task);
            c.model.preset = preset_name.clone();
            c
        }
    };
    config.task = task;
    let model = SparseDenseNet::new_with(&spec, &config.net_options(), device)?;
    let model = state_dict::import(model, &file.tensors, naming, device)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let data = match meta.get(META_DATA) {
        Some(d) => serde_json::from_str(d)
            .map_err(|e| invalid(format!("{}: metadata {META_DATA}: {e}", path.display())))?,
        None if naming == Naming::Torchvision => imagenet_data(spec.classes),
        None => DataInfo {
            mean: vec![0.0; spec.input[0]],
            std: vec![1.0; spec.input[0]],
            class_names: (0..spec.classes).map(|c| c.to_string()).collect(),
        },
    };
    Ok(Import {
        config,
        model,
        data,
        naming,
        tensors: file.tensors.len(),
    })
}

/// Makes a run directory from an import: its config, and a checkpoint at epoch 0 holding the
/// imported weights and a fresh optimiser, which `eval`, `predict` and `train --resume` read.
/// The directory is built under a temporary name and renamed into place, so a failure leaves
/// nothing behind; an existing non-empty directory is refused.
pub fn write_run(import: &Import, dir: &Path) -> Result<()> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(invalid(format!(
            "--out: {} already exists and is not empty; choose a new directory",
            dir.display()
        )));
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.with_file_name(format!(".{name}.import-tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> Result<()> {
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        write_atomic(&tmp.join(CONFIG_FILE), import.config.to_toml().as_bytes())?;
        let state = TrainState::fresh(
            import.model.graph.spec.clone(),
            import.config.seed,
            import.data.mean.clone(),
            import.data.std.clone(),
            import.data.class_names.clone(),
        );
        let optim = import.config.optimizer().build();
        save_checkpoint(&tmp, &import.model, &optim, &state, b"[]".to_vec())?;
        if dir.exists() {
            std::fs::remove_dir(dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        std::fs::rename(&tmp, dir)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map_err(|e| invalid(format!("--out: {e:#}")))
}
