//! A training run in a directory, for any task: the set-up every task shares (checks, the run
//! directory's lock, the memory check, the network, the precision, the saved config), the
//! engine's loop, and the summary; and a trained run loaded back for eval and predict.

use crate::error::invalid;
use crate::training::checkpoint::{load_trained, TrainState};
use crate::training::config::{TaskConfig, CONFIG_FILE, LEGACY_SEG_CONFIG_FILE};
use crate::training::engine::{self, Engine, Task};
use crate::training::report;
use crate::SparseDenseNet;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::prelude::*;
use logdense_graph::{NetSpec, TaskKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A training run: a configuration, a directory and a device.
pub struct Run {
    /// The run directory (created if missing).
    pub dir: PathBuf,
    /// The configuration the run trains.
    pub cfg: TaskConfig,
    /// The plain device (autodiff is enabled on a copy for training).
    pub device: Device,
    /// Show a progress bar and a line per epoch (off in tests).
    pub progress: bool,
    /// Stop after this many epochs in total, as a crash would (for resume tests).
    pub stop_after: Option<usize>,
    /// Replace a run the directory already holds (otherwise it is refused unless resumed).
    pub overwrite: bool,
}

/// What a task's set-up hands to the shared part of a run.
pub struct Prepared<T> {
    /// The task the engine trains.
    pub task: T,
    /// The network, with the data's input shape and classes.
    pub spec: NetSpec,
    /// Networks and batch sizes that must fit in memory, with the field that sets the batch.
    pub fits: Vec<(NetSpec, usize, &'static str)>,
    /// Normalisation statistics of the training images, and the class names.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training images.
    pub std: Vec<f32>,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

/// The task's metrics of the last epoch (the fields of the other task are absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Classification: fraction of the evaluated split predicted correctly.
    pub test_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Segmentation: mean IoU over the classes present, void left out.
    pub mean_iou: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Segmentation: fraction of labelled pixels predicted correctly.
    pub global_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Segmentation: IoU per class (`None` where a class never occurs).
    pub per_class_iou: Option<Vec<Option<f64>>>,
}

/// What a finished run reports (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The task the run trained.
    pub task: TaskKind,
    #[serde(flatten)]
    /// The task's metrics of the last epoch.
    pub metrics: FinalMetrics,
    /// Epochs trained, over all stages and resumes.
    pub epochs: usize,
    /// Seconds of training, summed over resumes.
    pub wall_s: f64,
    /// Trainable parameters of the network.
    pub params: usize,
    /// Whether the fused CPU kernels ran the layers.
    pub fused: bool,
    /// The fused kernels' precision that ran (`f32` or `bf16`).
    pub precision: String,
    /// The wall-clock budget, if the config set one.
    pub max_train_s: Option<f64>,
    /// Whether the result depended on the machine's speed: with a budget, where the stages
    /// stopped and how the rate moved followed the clock; without one, one config and seed
    /// give the same weights on every run and after any resume (with `data.workers = 0`).
    pub depends_on_clock: bool,
}

impl Run {
    /// Trains from scratch, or continues from the run directory's checkpoint if `resume`.
    pub fn train(&self, resume: bool) -> Result<(SparseDenseNet, Summary)> {
        let cfg = &self.cfg;
        cfg.validate().map_err(|e| invalid(format!("{e:#}")))?;
        let _lock = engine::open_run_dir(&self.dir, resume, self.overwrite)?;
        match cfg.task {
            TaskKind::Classify => self.run(
                crate::training::classify::prepare(cfg, &self.device)?,
                resume,
            ),
            TaskKind::Segment => self.run(
                crate::training::segment::prepare(cfg, &self.device)?,
                resume,
            ),
        }
    }

    fn run<T: Task>(&self, p: Prepared<T>, resume: bool) -> Result<(SparseDenseNet, Summary)> {
        let cfg = &self.cfg;
        for (spec, batch, field) in &p.fits {
            crate::training::resources::check_training_fits(spec, *batch, field)?;
        }
        let ad = engine::autodiff_device(&self.device, cfg.model.gradient_checkpointing);
        ad.seed(cfg.seed);
        let model = SparseDenseNet::new_with(&p.spec, &cfg.net_options(), &ad)?;
        let state = TrainState::fresh(p.spec, cfg.seed, p.mean, p.std, p.class_names);
        report::write_atomic(&self.dir.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
        let engine = Engine {
            dir: &self.dir,
            device: &self.device,
            seed: cfg.seed,
            optimizer: cfg.optimizer(),
            progress: self.progress,
            stop_after: self.stop_after,
            checkpointing: cfg.model.gradient_checkpointing,
        };
        let (model, state, rows) = engine.run(&p.task, model, state, resume)?;
        let last = rows.last().context("no epoch was trained")?;
        let fused = model.valid().fused_active();
        let summary = Summary {
            task: cfg.task,
            metrics: p.task.final_metrics(last),
            epochs: state.epochs_done,
            wall_s: state.wall_s,
            params: model.trainable_params(),
            fused,
            precision: crate::model::fused::precision_of_model(
                model.fused.kernels.precision,
                model.valid().cpu_kernels_active(),
            )
            .name()
            .into(),
            max_train_s: cfg.optim.max_train_s,
            depends_on_clock: cfg.optim.max_train_s.is_some(),
        };
        engine::write_summary(&self.dir, &summary)?;
        Ok((model, summary))
    }
}

/// The configuration a run directory holds: `config.toml`, or the `segment.toml` of a
/// segmentation run written before the task configs were one shape.
pub fn load_run_config(dir: &Path) -> Result<TaskConfig> {
    let (file, task) = match dir.join(CONFIG_FILE).exists() {
        true => (CONFIG_FILE, TaskKind::Classify),
        false if dir.join(LEGACY_SEG_CONFIG_FILE).exists() => {
            (LEGACY_SEG_CONFIG_FILE, TaskKind::Segment)
        }
        false => (CONFIG_FILE, TaskKind::Classify),
    };
    TaskConfig::load(&dir.join(file), task)
        .with_context(|| format!("{} is not a logdense run directory", dir.display()))
}

/// A trained model loaded from a run directory, for eval and predict.
pub struct Trained {
    /// The run's configuration.
    pub cfg: TaskConfig,
    /// The model of the last checkpoint, on the device it was loaded to.
    pub model: SparseDenseNet,
    /// The training state of the last checkpoint (spec, statistics, classes).
    pub state: TrainState,
}

impl Trained {
    /// The run's configuration and its last checkpoint's model, on `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = load_run_config(dir)?;
        let (model, state) = load_trained(dir, device)?;
        Ok(Trained { cfg, model, state })
    }
}
