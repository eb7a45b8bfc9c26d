//! `export` (ONNX, safetensors, a sample to check them with) and `import` (safetensors or
//! PyTorch state dicts into a run directory).

use crate::usage;
use anyhow::Result;
use burn::prelude::*;
use clap::Args;
use logdense::error::invalid;
use logdense::interop::{self, DataInfo};
use logdense::training::report::write_atomic;
use logdense::training::run::Trained;
use logdense::SparseDenseNet;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// A run directory (classification or segmentation) whose last checkpoint to export.
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    run: Option<PathBuf>,
    /// A preset with fresh weights instead of a run (`logdense presets` lists them).
    #[arg(long)]
    preset: Option<String>,
    /// The seed of a preset's fresh weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write an ONNX model (opset 17, dynamic batch axis, inference mode, final head).
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Write the state dict as safetensors, with the names and layouts of
    /// bench/pytorch_reference.py's modules and the graph in its metadata.
    #[arg(long)]
    safetensors: Option<PathBuf>,
    /// Write a sample to check an export with: a safetensors file holding `input` and our
    /// `logits` on it (bench/onnx_check.py reads it).
    #[arg(long)]
    sample: Option<PathBuf>,
    /// The sample's input: the tensor `input` of this safetensors file (default: a seeded
    /// standard-normal batch).
    #[arg(long, requires = "sample")]
    sample_input: Option<PathBuf>,
    /// Images in the generated sample input.
    #[arg(long, default_value_t = 2)]
    sample_batch: usize,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// A safetensors state dict (a logdense export, or PyTorch names).
    #[arg(long, conflicts_with = "pytorch", required_unless_present = "pytorch")]
    safetensors: Option<PathBuf>,
    /// A PyTorch `.pt`/`.pth` state dict (`torch.save(model.state_dict(), F)`), with the names
    /// of bench/pytorch_reference.py's modules or of torchvision's DenseNet.
    #[arg(long)]
    pytorch: Option<PathBuf>,
    /// The network the weights are for (default: the one a logdense export's metadata names).
    #[arg(long)]
    preset: Option<String>,
    /// The run directory to create (it must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

/// Writes `bytes` to `path` atomically; a directory that cannot be written is bad input
/// (exit code 2), named with the option.
fn write_output(option: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes).map_err(|e| invalid(format!("{option}: {e:#}")))?;
    println!("wrote {} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

pub(crate) fn export_cmd(a: ExportArgs) -> Result<()> {
    if a.onnx.is_none() && a.safetensors.is_none() && a.sample.is_none() {
        return Err(usage(
            "export: name at least one output: --onnx, --safetensors or --sample",
        ));
    }
    let device = Device::flex();
    let (net, preset, config, data): (SparseDenseNet, String, _, _) = match (&a.run, &a.preset) {
        (Some(dir), _) => {
            let t = Trained::load(dir, &device).map_err(|e| invalid(format!("--run: {e:#}")))?;
            let data = DataInfo {
                mean: t.state.mean.clone(),
                std: t.state.std.clone(),
                class_names: t.state.class_names.clone(),
            };
            (t.model, t.cfg.model.preset.clone(), Some(t.cfg), Some(data))
        }
        (None, Some(p)) => {
            let spec =
                logdense::model::presets::preset(p).map_err(|e| usage(format!("--preset: {e}")))?;
            device.seed(a.seed);
            (
                SparseDenseNet::new(&spec, 0.0, &device)?,
                p.clone(),
                None,
                None,
            )
        }
        (None, None) => unreachable!("clap requires --run or --preset"),
    };
    if let Some(path) = &a.safetensors {
        let bytes =
            interop::safetensors_export(&net, Some(&preset), config.as_ref(), data.as_ref())?;
        write_output("--safetensors", path, &bytes)?;
    }
    if let Some(path) = &a.onnx {
        let bytes = interop::onnx::export_onnx(&net, Some(&preset))?;
        write_output("--onnx", path, &bytes)?;
    }
    if let Some(path) = &a.sample {
        let spec = &net.graph.spec;
        let input = match &a.sample_input {
            Some(p) => interop::read_input(p, spec, &device)
                .map_err(|e| invalid(format!("--sample-input: {e:#}")))?,
            None => {
                device.seed(a.seed);
                let [c, h, w] = spec.input;
                Tensor::<4>::random(
                    [a.sample_batch.max(1), c, h, w],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    &device,
                )
            }
        };
        let bytes = interop::sample_bytes(&net, input)?;
        write_output("--sample", path, &bytes)?;
    }
    Ok(())
}

pub(crate) fn import_cmd(a: ImportArgs) -> Result<()> {
    let (option, path) = match (&a.safetensors, &a.pytorch) {
        (Some(p), _) => ("--safetensors", p),
        (None, Some(p)) => ("--pytorch", p),
        (None, None) => unreachable!("clap requires --safetensors or --pytorch"),
    };
    let device = Device::flex();
    let import = interop::import_file(path, a.preset.as_deref(), &device)
        .map_err(|e| invalid(format!("{option}: {e:#}")))?;
    interop::write_run(&import, &a.out)?;
    println!(
        "imported {} tensors ({} names) from {} into {}: {} parameters; eval, predict and train --resume read it",
        import.tensors,
        import.naming.name(),
        path.display(),
        a.out.display(),
        import.model.trainable_params()
    );
    Ok(())
}
