//! The flags of the training commands (`train`, `segment train`), declared once: each sets a
//! field of [`TaskConfig`] over the `--config` file (or the resumed run's configuration).

use crate::usage;
use anyhow::Result;
use clap::Args;
use logdense::graph::TaskKind;
use logdense::training::config::{LrSchedule, OptimizerKind, TaskConfig};
use std::path::PathBuf;

/// The kernel switches `train`, `segment train` and `bench` share.
#[derive(Args)]
pub(crate) struct KernelFlags {
    /// Run every layer on plain burn ops instead of the fused path (`model.fused = false`;
    /// the fused path is the CPU kernels on the CPU, the recomputing layer on a GPU): the
    /// reference the tests hold the fused path to; more memory, and on the CPU slower.
    #[arg(long)]
    pub no_fused: bool,
    /// The fused kernels' precision, f32 or bf16 (`model.precision`): bf16 operands with f32
    /// sums where the CPU has AMX or AVX512-BF16, else f32 with a message.
    #[arg(long)]
    pub precision: Option<logdense::model::fused::Precision>,
    /// The fused kernels' f32 products, to compare the paths (`model.f32_kernels`): direct
    /// (the default), winograd or gemm. Without the flag, the environment variable
    /// LOGDENSE_F32_KERNELS is read.
    #[arg(long)]
    pub f32_kernels: Option<logdense::model::fused::F32Kernels>,
    /// Train with burn's gradient checkpointing (`model.gradient_checkpointing`): some
    /// memory-bound ops (concatenation, batch norm, ReLU) are recomputed in the backward pass
    /// instead of kept. A partial memory saver for the plain-ops path (26-32 % less on a GPU
    /// allocator); the fused path (CPU kernels, or the recomputing layer on a GPU) keeps
    /// only the layers' outputs anyway.
    #[arg(long)]
    pub checkpointing: bool,
}

impl KernelFlags {
    /// `--f32-kernels`, else `LOGDENSE_F32_KERNELS` (the binary's own reading of the
    /// environment; the library takes the choice as an option), else none.
    pub fn f32_kernels(&self) -> anyhow::Result<Option<logdense::model::fused::F32Kernels>> {
        if let Some(k) = self.f32_kernels {
            return Ok(Some(k));
        }
        match std::env::var("LOGDENSE_F32_KERNELS") {
            Ok(v) => v
                .parse()
                .map(Some)
                .map_err(|e: String| crate::usage(format!("LOGDENSE_F32_KERNELS: {e}"))),
            Err(_) => Ok(None),
        }
    }

    /// The flags again, as a child `logdense` process takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.no_fused {
            args.push("--no-fused".into());
        }
        if let Some(p) = self.precision {
            args.extend(["--precision".into(), p.name().into()]);
        }
        if let Some(k) = self.f32_kernels {
            args.extend(["--f32-kernels".into(), k.name().into()]);
        }
        if self.checkpointing {
            args.push("--checkpointing".into());
        }
        args
    }
}

#[derive(Args)]
pub(crate) struct RunFlags {
    /// TOML configuration (see README); the other flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory (default: under runs/, named after the preset).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["config", "preset", "out", "overwrite"])]
    pub resume: Option<PathBuf>,
    /// Replace the run the --out directory already holds (without it, such a directory is
    /// refused unless resumed).
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, help = crate::preset_help())]
    pub preset: Option<String>,
    #[arg(long, help = crate::dataset_help())]
    pub dataset: Option<String>,
    /// Connection pattern of a V1 preset (`model.pattern`; `logdense graph --help` lists them).
    #[arg(long, conflicts_with = "pattern_file")]
    pub pattern: Option<String>,
    /// A pattern file from `logdense design --out` replacing a V1 preset's pattern
    /// (`model.pattern_file`).
    #[arg(long)]
    pub pattern_file: Option<PathBuf>,
    /// Data directory (`data.dir`; default: the data set's, e.g.
    /// /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Epochs of the main stage (`optim.epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Epochs on whole images after a main stage on crops (`optim.finetune_epochs`).
    #[arg(long)]
    pub finetune_epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// sgd, rmsprop or adam (`optim.optimizer`).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// step (x gamma at the milestones), cosine (to 0), exponential (x lr_decay per epoch) or
    /// constant, over the main stage's epochs (`optim.lr_schedule`).
    #[arg(long)]
    pub lr_schedule: Option<String>,
    /// A wall-clock training budget in minutes (`optim.max_train_s`; none by default): each
    /// stage stops at the first step past its share and the schedule follows whichever ends
    /// first, its epochs or its share. The run then depends on the machine's speed.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Train on a seeded subset of this many training images.
    #[arg(long)]
    pub train_subset: Option<usize>,
    /// Evaluate on a seeded subset of this many images.
    #[arg(long, alias = "test-subset")]
    pub eval_subset: Option<usize>,
    /// Images per main-stage epoch: each epoch reads the next share of a larger training set.
    #[arg(long)]
    pub epoch_images: Option<usize>,
    /// Random square crop side of the main stage (`data.crop`; segmentation).
    #[arg(long)]
    pub crop: Option<usize>,
    /// computed (median frequency), classic (SegNet's CamVid values) or none
    /// (`data.class_weights`; segmentation).
    #[arg(long)]
    pub class_weights: Option<String>,
    /// Loader worker threads (`data.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub kernels: KernelFlags,
    /// cpu (burn flex) or vulkan (with the vulkan feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// A kebab-case value of a config enum, or a usage error naming the flag and the choices.
fn parse_choice<T: serde::de::DeserializeOwned>(
    flag: &str,
    value: &str,
    choices: &str,
) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.into()))
        .map_err(|_| usage(format!("--{flag}: unknown value '{value}' ({choices})")))
}

impl RunFlags {
    /// The configuration, run directory and whether to resume: the resumed run's own
    /// configuration, or the `--config` file (or the defaults of `task`) with the flags over
    /// it, in `--out` (default `runs/PRESET`, `runs/segment-PRESET` for segmentation).
    pub(crate) fn start(&self, task: TaskKind) -> Result<(TaskConfig, PathBuf, bool)> {
        let (cfg, dir, resume) = if let Some(dir) = &self.resume {
            let cfg = logdense::training::run::load_run_config(dir)
                .map_err(|e| usage(format!("--resume: {e:#}")))?;
            (cfg, dir.clone(), true)
        } else {
            let cfg = match (&self.config, &self.preset) {
                (Some(p), _) => TaskConfig::load(p, task)?,
                // A preset alone picks its task's defaults.
                (None, Some(p)) => TaskConfig::defaults(
                    logdense::model::presets::lookup(p).map_or(task, |entry| entry.task),
                ),
                (None, None) => TaskConfig::defaults(task),
            };
            (cfg, PathBuf::new(), false)
        };
        let cfg = self.apply(cfg)?;
        let dir = match (resume, &self.out) {
            (true, _) => dir,
            (false, Some(out)) => out.clone(),
            (false, None) => PathBuf::from("runs").join(match cfg.task {
                TaskKind::Classify => cfg.model.preset.clone(),
                TaskKind::Segment => format!("segment-{}", cfg.model.preset),
            }),
        };
        Ok((cfg, dir, resume))
    }

    /// The flags over `cfg`, then its checks (a bad value is a usage error).
    fn apply(&self, mut cfg: TaskConfig) -> Result<TaskConfig> {
        if let Some(p) = &self.preset {
            cfg.model.preset = p.clone();
        }
        if let Some(d) = &self.dataset {
            cfg.data.dataset = d.clone();
        }
        if let Some(p) = &self.pattern {
            cfg.model.pattern = Some(p.clone());
            cfg.model.pattern_file = None;
        }
        if let Some(p) = &self.pattern_file {
            cfg.model.pattern_file = Some(p.clone());
            cfg.model.pattern = None;
        }
        if let Some(d) = &self.data {
            cfg.data.dir = Some(d.clone());
        }
        cfg.seed = self.seed.unwrap_or(cfg.seed);
        let o = &mut cfg.optim;
        o.epochs = self.epochs.unwrap_or(o.epochs);
        o.finetune_epochs = self.finetune_epochs.unwrap_or(o.finetune_epochs);
        o.batch_size = self.batch_size.unwrap_or(o.batch_size);
        o.lr = self.lr.unwrap_or(o.lr);
        if let Some(v) = &self.optimizer {
            o.optimizer = parse_choice::<OptimizerKind>("optimizer", v, "sgd, rmsprop, adam")?;
        }
        if let Some(v) = &self.lr_schedule {
            o.lr_schedule = parse_choice::<LrSchedule>(
                "lr-schedule",
                v,
                "step, cosine, exponential, constant",
            )?;
        }
        if let Some(m) = self.max_minutes {
            o.max_train_s = Some(m * 60.0);
        }
        cfg.model.dropout = self.dropout.unwrap_or(cfg.model.dropout);
        if self.kernels.no_fused {
            cfg.model.fused = false;
        }
        cfg.model.precision = self.kernels.precision.unwrap_or(cfg.model.precision);
        if let Some(k) = self.kernels.f32_kernels()? {
            cfg.model.f32_kernels = k;
        }
        if self.kernels.checkpointing {
            cfg.model.gradient_checkpointing = true;
        }
        let d = &mut cfg.data;
        d.train_subset = self.train_subset.or(d.train_subset);
        d.eval_subset = self.eval_subset.or(d.eval_subset);
        d.epoch_images = self.epoch_images.or(d.epoch_images);
        if let Some(c) = self.crop {
            d.crop = Some([c, c]);
        }
        if let Some(w) = &self.class_weights {
            d.class_weights = parse_choice("class-weights", w, "computed, classic, none")?;
        }
        d.workers = self.workers.unwrap_or(d.workers);
        cfg.normalize();
        cfg.validate().map_err(|e| usage(format!("{e:#}")))?;
        Ok(cfg)
    }
}
