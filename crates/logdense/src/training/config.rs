//! One configuration shape for every task: a TOML file (every field optional), overridden by
//! CLI flags.
//!
//! Classification and segmentation share the model, data, optimiser, schedule and budget
//! options; the task picks the defaults ([`TaskConfig::defaults`]) and the stages built from
//! them ([`TaskConfig::stages`]). A file without `task` takes its preset's task, or the
//! command's.
//!
//! ```toml
//! task = "classify"           # or "segment"
//! seed = 1
//! [model]
//! preset = "fashion"
//! [data]
//! dataset = "fashion-mnist"   # `logdense datasets` lists the registry
//! [optim]
//! optimizer = "sgd"           # sgd, rmsprop or adam, for any task
//! epochs = 2
//! lr_schedule = "cosine"      # a function of the step: one seed gives one result
//! # max_train_s = 450.0       # a wall-clock budget: stops early and anneals over whichever
//! #                           # ends first (the run then depends on the clock)
//! ```

use anyhow::{bail, Context, Result};
use logdense_data::seg::{ClassWeights, SegSplit};
use logdense_data::Augment;
use logdense_graph::{NetSpec, Pattern, TaskKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file a run directory keeps its configuration in.
pub const CONFIG_FILE: &str = "config.toml";
/// Where segmentation runs kept their configuration before the task configs were one shape:
/// such run directories still load and resume.
pub const LEGACY_SEG_CONFIG_FILE: &str = "segment.toml";

/// A training run's configuration, for any task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// What the run learns: `classify` or `segment`.
    pub task: TaskKind,
    /// Seeds the weights, data order, augmentation and dropout.
    pub seed: u64,
    /// The network.
    pub model: ModelConfig,
    /// The data and how it is read.
    pub data: DataConfig,
    /// The optimiser, schedule, budget and stages.
    pub optim: OptimConfig,
}

/// The network: a preset of the run's task, optionally changed field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A preset of the registry (`logdense presets`).
    pub preset: String,
    /// Dropout rate after each convolution, in [0, 1).
    pub dropout: f64,
    /// Run the layers through the fused CPU kernels where they apply (`--no-fused`: plain
    /// burn ops, the reference the tests hold the kernels to). `summary.json` reports whether
    /// they ran.
    pub fused: bool,
    /// The fused kernels' precision: `f32`, or `bf16` (mixed precision: bf16 operands with f32
    /// sums in the fused convolutions; weights, optimiser state and batch-norm statistics stay
    /// f32). bf16 needs AMX or AVX512-BF16; elsewhere f32 runs and a message says so.
    /// `summary.json` reports the precision that ran.
    #[serde(with = "crate::model::fused::precision_serde")]
    pub precision: crate::model::fused::Precision,
    /// The fused kernels' f32 product family: `direct` (the default), `winograd` (Winograd
    /// F(2x2, 3x3) for the 3x3 products of even-sized maps; measured no faster) or `gemm`
    /// (`gemm`'s matrix kernels, the path of CPUs without AVX-512), to compare the paths.
    #[serde(with = "crate::model::fused::f32_kernels_serde")]
    pub f32_kernels: crate::model::fused::F32Kernels,
    /// Train with burn's gradient checkpointing, which recomputes some of a layer's
    /// memory-bound ops in the backward pass (see `training::engine::autodiff_device`): a
    /// partial memory saver for the plain-ops path (`fused = false`); the fused paths (the CPU
    /// kernels, the recomputing GPU layer) keep only the layers' outputs anyway. Not part of
    /// the weights.
    pub gradient_checkpointing: bool,
    /// The growth rate `g`: channels each feature layer adds.
    pub growth: Option<usize>,
    /// Feature layers per block.
    pub blocks: Option<Vec<usize>>,
    /// One growth rate per block, in place of `growth` (e.g. wider low-resolution blocks).
    pub block_growth: Option<Vec<usize>>,
    /// The connection pattern of a V1 preset (`logdense graph --help` lists them).
    pub pattern: Option<String>,
    /// A pattern file (`logdense design --out`) whose input sets replace a V1 preset's
    /// pattern; its layers must be the network's.
    pub pattern_file: Option<PathBuf>,
    /// Bottleneck layers (BN-ReLU-1x1 conv to 4g before the 3x3 conv).
    pub bottleneck: Option<bool>,
    /// Auxiliary classifiers at block ends (half of the loss, SPEC).
    pub deep_supervision: Option<bool>,
    /// Channels of the initial convolution `x_0`.
    pub stem_width: Option<usize>,
    /// Stride of the stem convolution: 2 runs every block at half the image's resolution (a
    /// segmentation network upsamples its final logits bilinearly).
    pub stem_stride: Option<usize>,
    /// LogLog's hub multiplier (Appendix A).
    pub hub_multiplier: Option<usize>,
    /// Auxiliary heads only where the maps are at least this many times smaller than the
    /// input (see [`NetSpec::aux_min_stride`]).
    pub aux_min_stride: Option<usize>,
}

/// The data: a data set of the registry ([`crate::datasets::DATASETS`]) and how it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// A name of the data-set registry (`logdense datasets`), of the run's task.
    pub dataset: String,
    /// Where its files are (the registry's default directory when omitted).
    pub dir: Option<PathBuf>,
    /// Train on a seeded subset of this many training images.
    pub train_subset: Option<usize>,
    /// Evaluate on a seeded subset of this many images (`test_subset` in earlier configs).
    #[serde(alias = "test_subset")]
    pub eval_subset: Option<usize>,
    /// Images per main-stage epoch, when the training set is larger than one epoch should
    /// read: each epoch reads the next `epoch_images` of a seeded order of the whole set, so
    /// every image is read once before any repeats (segmentation).
    pub epoch_images: Option<usize>,
    /// Training augmentation (and the eval transform of class folders).
    pub augment: Augment,
    /// Random crop `[height, width]` of the main stage (segmentation; none: whole images).
    pub crop: Option<[usize; 2]>,
    /// The split evaluated after each epoch: `val` or `test` (classification sets have test).
    pub eval_split: SegSplit,
    /// Per-class loss weights (segmentation): `computed` (median frequency), `classic`
    /// (SegNet's CamVid values) or `none`.
    pub class_weights: ClassWeights,
    /// Loader worker threads (0: batch on the training thread).
    pub workers: usize,
    /// Earlier segmentation configs' random flip; read into `augment.flip`.
    #[serde(skip_serializing)]
    pub flip: Option<bool>,
}

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum (`optim.momentum`, dampening 0, `optim.nesterov`): the paper's
    /// classification rule.
    Sgd,
    /// RMSprop as Jegou et al. used it: the paper's segmentation rule.
    Rmsprop,
    /// Adam with burn's defaults.
    Adam,
}

/// How the main stage's learning rate moves, as a function of how far the stage has got: the
/// fraction of its iterations done, or with a budget ([`OptimConfig::max_train_s`]) the
/// larger of that and the fraction of its time spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// `optim.gamma` at each fraction in `optim.milestones` (the paper's classification
    /// schedule: x0.1 after 1/2 and 3/4).
    Step,
    /// Half a cosine from `optim.lr` to 0.
    Cosine,
    /// `optim.lr_decay` after every epoch (Jegou et al.'s 0.995).
    Exponential,
    /// `optim.lr` throughout.
    Constant,
    /// Earlier configs' cosine over the wall-clock budget: read as `cosine` with the budget
    /// `max_train_s` (450 s when the file gave none).
    BudgetCosine,
}

/// The optimiser, the schedule, the budget and the stages after the main one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// The update rule.
    pub optimizer: OptimizerKind,
    /// Epochs of the main stage.
    pub epochs: usize,
    /// Images per step of the main stage.
    pub batch_size: usize,
    /// The main stage's base learning rate.
    pub lr: f64,
    /// SGD's momentum.
    pub momentum: f64,
    /// SGD's Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay of the optimiser.
    pub weight_decay: f64,
    /// How the main stage's rate moves.
    pub lr_schedule: LrSchedule,
    /// `step`: fractions of the main stage after which the rate is multiplied by `gamma`.
    pub milestones: Vec<f64>,
    /// `step`: the factor at each milestone.
    pub gamma: f64,
    /// `exponential` and the fine-tuning stage: the rate's factor per epoch.
    pub lr_decay: f64,
    /// A wall-clock budget of training in seconds, counted across resumed runs
    /// (`--max-minutes`); none by default. With it, a stage stops at the first step past its
    /// share of the budget (part-way through an epoch, so the epoch counts are upper bounds)
    /// and the schedule follows whichever ends first, its epochs or its share; the run then
    /// depends on the machine's speed, and `summary.json` says so.
    pub max_train_s: Option<f64>,
    /// Epochs optimising the final prediction alone after the main stage, for networks with
    /// auxiliary heads (SPEC: one).
    pub final_only_epochs: usize,
    /// With a budget: the final-head-only stage's share of it.
    pub final_only_share: f64,
    /// Epochs on whole images after a main stage on random crops (segmentation).
    pub finetune_epochs: usize,
    /// Images per step of the fine-tuning stage.
    pub finetune_batch_size: usize,
    /// The fine-tuning stage's base rate.
    pub finetune_lr: f64,
    /// Progressive resizing: the first `low_res_epochs` main-stage epochs train on crops
    /// shrunk by `low_res_factor` (about `factor^2` times cheaper each).
    pub low_res_epochs: usize,
    /// How much the low-resolution epochs shrink the crops (2: half the side).
    pub low_res_factor: usize,
}

/// The budget earlier configs' `budget-cosine` meant when they gave none.
pub const LEGACY_BUDGET_S: f64 = 450.0;
/// The largest batch size a configuration may ask for (the memory check refuses smaller ones
/// that do not fit).
pub const MAX_BATCH: usize = 1 << 20;
/// The most epochs of a stage.
pub const MAX_EPOCHS: usize = 1_000_000;
/// The most loader worker threads.
pub const MAX_WORKERS: usize = 256;

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig::defaults(TaskKind::Classify)
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        TaskConfig::default().model
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        TaskConfig::default().data
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        TaskConfig::default().optim
    }
}

impl TaskConfig {
    /// Every default of a task: classification trains the `fashion` preset on Fashion-MNIST
    /// with SGD and a cosine over 2 epochs, then the final-head-only epoch; segmentation
    /// trains `fc-ld-small` on `data/fashion-scenes` with RMSprop on 64 x 64 crops, then
    /// fine-tunes on whole images (Jegou et al.'s recipe).
    pub fn defaults(task: TaskKind) -> Self {
        let classify = task == TaskKind::Classify;
        TaskConfig {
            task,
            seed: 1,
            model: ModelConfig {
                preset: match task {
                    TaskKind::Classify => crate::model::presets::DEFAULT_PRESET,
                    TaskKind::Segment => crate::model::presets::DEFAULT_SEG_PRESET,
                }
                .into(),
                dropout: 0.0,
                fused: true,
                precision: crate::model::fused::Precision::F32,
                f32_kernels: crate::model::fused::F32Kernels::Direct,
                gradient_checkpointing: false,
                growth: None,
                blocks: None,
                block_growth: None,
                pattern: None,
                pattern_file: None,
                bottleneck: None,
                deep_supervision: None,
                stem_width: None,
                stem_stride: None,
                hub_multiplier: None,
                aux_min_stride: None,
            },
            data: DataConfig {
                dataset: crate::datasets::default_dataset(task).name.into(),
                dir: None,
                train_subset: None,
                eval_subset: None,
                epoch_images: None,
                augment: Augment {
                    flip: true,
                    ..Augment::none()
                },
                crop: (!classify).then_some([64, 64]),
                eval_split: SegSplit::Test,
                class_weights: ClassWeights::Computed,
                workers: 2,
                flip: None,
            },
            optim: OptimConfig {
                optimizer: if classify {
                    OptimizerKind::Sgd
                } else {
                    OptimizerKind::Rmsprop
                },
                epochs: if classify { 2 } else { 10 },
                batch_size: if classify { 64 } else { 8 },
                lr: if classify { 0.1 } else { 1e-3 },
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4,
                lr_schedule: if classify {
                    LrSchedule::Cosine
                } else {
                    LrSchedule::Exponential
                },
                milestones: vec![0.5, 0.75],
                gamma: 0.1,
                lr_decay: 0.995,
                max_train_s: None,
                final_only_epochs: usize::from(classify),
                final_only_share: 0.2,
                finetune_epochs: if classify { 0 } else { 2 },
                finetune_batch_size: 4,
                finetune_lr: 5e-4,
                low_res_epochs: 0,
                low_res_factor: 2,
            },
        }
    }

    /// Reads a TOML file whose task is unknown beforehand: its `task`, else its preset's
    /// task, else `default_task`. Errors name the file and the offending field.
    pub fn load(path: &Path, default_task: TaskKind) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml(&text, default_task)
            .map_err(|e| crate::error::invalid(format!("invalid config {}: {e:#}", path.display())))
    }

    /// Parses and checks a configuration: `text`'s fields over the defaults of its task
    /// (`task`, else its preset's, else `default_task`); legacy fields are read into their
    /// current places ([`TaskConfig::normalize`]).
    pub fn from_toml(text: &str, default_task: TaskKind) -> Result<Self> {
        let mut cfg = Self::parse(text, default_task)?;
        cfg.normalize();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The parse of [`TaskConfig::from_toml`], without its checks.
    pub fn parse(text: &str, default_task: TaskKind) -> Result<Self> {
        // The structure and every value are checked against the type first, so that an error
        // gives its line and column; then the file's fields go over its task's defaults.
        let _: TaskConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!(toml_error(text, &e)))?;
        let table: toml::Table = text.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let task = Self::task_of(&table, default_task)?;
        let mut merged = toml::Value::try_from(Self::defaults(task)).context("the defaults")?;
        merge(&mut merged, toml::Value::Table(table));
        let mut cfg: TaskConfig = merged.try_into().map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.task = task;
        Ok(cfg)
    }

    /// The task of a parsed file: its `task`, else its preset's, else `default_task`.
    fn task_of(table: &toml::Table, default_task: TaskKind) -> Result<TaskKind> {
        if let Some(t) = table.get("task") {
            return toml::Value::try_into(t.clone()).map_err(|e| anyhow::anyhow!("task: {e}"));
        }
        let preset = table
            .get("model")
            .and_then(|m| m.get("preset"))
            .and_then(|p| p.as_str());
        Ok(match preset.map(crate::model::presets::lookup) {
            Some(Ok(p)) => p.task,
            _ => default_task,
        })
    }

    /// Reads legacy fields into their current places: `data.flip` into `data.augment.flip`,
    /// and `budget-cosine` into `cosine` with its budget.
    pub fn normalize(&mut self) {
        if let Some(flip) = self.data.flip.take() {
            self.data.augment.flip = flip;
        }
        if self.optim.lr_schedule == LrSchedule::BudgetCosine {
            self.optim.lr_schedule = LrSchedule::Cosine;
            self.optim.max_train_s.get_or_insert(LEGACY_BUDGET_S);
        }
    }

    /// The configuration as TOML, every field written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }

    /// The data-set registry's entry of `data.dataset`, checked against the task.
    pub fn dataset(&self) -> Result<&'static crate::datasets::DatasetInfo> {
        crate::datasets::dataset_for(&self.data.dataset, self.task)
            .map_err(|e| crate::error::invalid(format!("data.dataset (--dataset): {e}")))
    }

    /// Checks values that serde cannot; a message names the field and its flag.
    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        if o.epochs + o.finetune_epochs == 0 {
            bail!("optim.epochs (--epochs) must be at least 1");
        }
        if o.epochs > MAX_EPOCHS
            || o.final_only_epochs > MAX_EPOCHS
            || o.finetune_epochs > MAX_EPOCHS
        {
            bail!("optim.epochs (--epochs), optim.final_only_epochs and optim.finetune_epochs must be at most {MAX_EPOCHS}");
        }
        for (field, b) in [
            ("optim.batch_size (--batch-size)", o.batch_size),
            ("optim.finetune_batch_size", o.finetune_batch_size),
        ] {
            if b == 0 || b > MAX_BATCH {
                bail!("{field} must lie in 1..={MAX_BATCH}, got {b}");
            }
        }
        for (field, lr) in [
            ("optim.lr (--lr)", o.lr),
            ("optim.finetune_lr", o.finetune_lr),
        ] {
            if !(lr.is_finite() && lr > 0.0) {
                bail!("{field} must be a positive number, got {lr}");
            }
        }
        if !(o.lr_decay > 0.0 && o.lr_decay <= 1.0) {
            bail!("optim.lr_decay must lie in (0, 1], got {}", o.lr_decay);
        }
        if !(0.0..1.0).contains(&o.momentum) {
            bail!("optim.momentum must lie in [0, 1), got {}", o.momentum);
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            bail!(
                "optim.weight_decay must be a non-negative number, got {}",
                o.weight_decay
            );
        }
        if let Some(b) = o.max_train_s {
            if !(b.is_finite() && b > 0.0) {
                bail!(
                    "optim.max_train_s (--max-minutes) must be a positive number of seconds, got {b}"
                );
            }
        }
        if !(o.gamma.is_finite() && o.gamma > 0.0) {
            bail!("optim.gamma must be a positive number, got {}", o.gamma);
        }
        if !(0.0..1.0).contains(&o.final_only_share) {
            bail!(
                "optim.final_only_share must lie in [0, 1), got {}",
                o.final_only_share
            );
        }
        if o.milestones.iter().any(|m| !(0.0..=1.0).contains(m)) {
            bail!(
                "optim.milestones must be fractions in [0, 1], got {:?}",
                o.milestones
            );
        }
        if o.low_res_epochs > o.epochs {
            bail!(
                "optim.low_res_epochs ({}) must not exceed optim.epochs ({})",
                o.low_res_epochs,
                o.epochs
            );
        }
        if o.low_res_epochs > 0 && o.low_res_factor < 2 {
            bail!(
                "optim.low_res_factor must be at least 2 (got {})",
                o.low_res_factor
            );
        }
        let d = &self.data;
        if d.workers > MAX_WORKERS {
            bail!(
                "data.workers (--workers) must be at most {MAX_WORKERS}, got {}",
                d.workers
            );
        }
        if d.train_subset == Some(0) || d.eval_subset == Some(0) {
            bail!("data.train_subset and data.eval_subset (--train-subset, --eval-subset) must be at least 1");
        }
        if d.epoch_images == Some(0) {
            bail!("data.epoch_images (--epoch-images) must be at least 1");
        }
        if let Some([h, w]) = d.crop {
            if h == 0 || w == 0 || h.max(w) > logdense_graph::MAX_SIDE {
                bail!(
                    "data.crop (--crop) must lie in 1..={} pixels",
                    logdense_graph::MAX_SIDE
                );
            }
        }
        d.augment.validate().map_err(anyhow::Error::msg)?;
        if !(0.0..1.0).contains(&self.model.dropout) {
            bail!(
                "model.dropout (--dropout) must lie in [0, 1), got {}",
                self.model.dropout
            );
        }
        self.dataset()?;
        self.net_spec()?;
        Ok(())
    }

    /// How the network is built (dropout, fused kernels).
    pub fn net_options(&self) -> crate::model::network::NetOptions {
        crate::model::network::NetOptions {
            dropout: self.model.dropout,
            fused: self.model.fused,
            precision: self.model.precision,
            f32_kernels: self.model.f32_kernels,
        }
    }

    /// The network this config describes, before the data fixes its input shape and classes.
    pub fn net_spec(&self) -> Result<NetSpec> {
        let m = &self.model;
        let mut spec = crate::model::presets::preset_for(&m.preset, self.task)
            .map_err(anyhow::Error::msg)
            .context("model.preset (--preset)")?;
        if let Some(g) = m.growth {
            spec.growth = g;
        }
        if let Some(b) = &m.blocks {
            spec.blocks = b.clone();
        }
        if let Some(g) = &m.block_growth {
            spec.block_growth = g.clone();
        }
        if let Some(p) = &m.pattern {
            let pattern: Pattern = p
                .parse()
                .map_err(anyhow::Error::msg)
                .context("model.pattern")?;
            match &mut spec.arch {
                logdense_graph::Arch::V1 { pattern: old } => *old = pattern,
                other => bail!("model.pattern applies to V1 presets only, not {other:?}"),
            }
        }
        if let Some(b) = m.bottleneck {
            spec.bottleneck = b;
        }
        if let Some(path) = &m.pattern_file {
            if m.pattern.is_some() {
                bail!("model.pattern and model.pattern_file (--pattern, --pattern-file) exclude each other");
            }
            spec.custom_sets = Some(
                load_pattern_sets(path, &spec).context("model.pattern_file (--pattern-file)")?,
            );
        }
        if let Some(d) = m.deep_supervision {
            spec.deep_supervision = d;
        }
        if let Some(w) = m.stem_width {
            spec.stem.width = w;
        }
        if let Some(s) = m.stem_stride {
            spec.stem.stride = s;
        }
        if let Some(h) = m.hub_multiplier {
            spec.hub_multiplier = h;
        }
        if let Some(s) = m.aux_min_stride {
            spec.aux_min_stride = s;
        }
        spec.build().map_err(|e| anyhow::anyhow!("model: {e}"))?;
        Ok(spec)
    }

    /// The optimiser of this configuration.
    pub fn optimizer(&self) -> crate::training::engine::Optimizer {
        let o = &self.optim;
        crate::training::engine::Optimizer {
            rule: match o.optimizer {
                OptimizerKind::Sgd => crate::training::engine::Rule::Sgd {
                    momentum: o.momentum,
                    nesterov: o.nesterov,
                },
                OptimizerKind::Rmsprop => crate::training::engine::Rule::Rmsprop,
                OptimizerKind::Adam => crate::training::engine::Rule::Adam,
            },
            weight_decay: o.weight_decay,
        }
    }

    /// The run's stages over a network of `heads` heads: the main stage (random crops where
    /// `data.crop` is set), the fine-tuning stage on whole images (`finetune_epochs` after
    /// crops), then the final-head-only stage (`final_only_epochs`, with auxiliary heads), at
    /// the rate the paper's step schedule ends at (`lr x gamma` per milestone). With a budget, the final-head-only stage gets
    /// `final_only_share` of it at the end and the stages before it the rest.
    pub fn stages(&self, heads: usize) -> Vec<crate::training::engine::Stage> {
        use crate::training::engine::{Schedule, Stage};
        let o = &self.optim;
        let final_only_epochs = if heads > 1 { o.final_only_epochs } else { 0 };
        let budget = o.max_train_s;
        let final_share = if final_only_epochs > 0 {
            o.final_only_share
        } else {
            0.0
        };
        let split = budget.map(|b| b * (1.0 - final_share));
        let crops = self.data.crop.is_some();
        let mut stages = vec![Stage {
            name: if crops { "crops" } else { "main" },
            epochs: o.epochs,
            batch_size: o.batch_size,
            lr: o.lr,
            schedule: match o.lr_schedule {
                LrSchedule::Step => Schedule::Step {
                    milestones: o.milestones.clone(),
                    gamma: o.gamma,
                },
                LrSchedule::Cosine | LrSchedule::BudgetCosine => Schedule::Cosine,
                LrSchedule::Exponential => Schedule::Exponential { decay: o.lr_decay },
                LrSchedule::Constant => Schedule::Constant,
            },
            final_head_only: false,
            whole_images: !crops,
            budget: split.map(|end| (0.0, end)),
        }];
        if crops && o.finetune_epochs > 0 {
            stages.push(Stage {
                name: "finetune",
                epochs: o.finetune_epochs,
                batch_size: o.finetune_batch_size,
                lr: o.finetune_lr,
                schedule: Schedule::Exponential { decay: o.lr_decay },
                final_head_only: false,
                whole_images: true,
                budget: split.map(|end| (0.0, end)),
            });
        }
        if final_only_epochs > 0 {
            let drops = o.milestones.iter().filter(|&&m| m < 1.0).count();
            stages.push(Stage {
                name: "final-only",
                epochs: final_only_epochs,
                batch_size: o.batch_size,
                lr: o.lr * o.gamma.powi(drops as i32),
                schedule: Schedule::Constant,
                final_head_only: true,
                whole_images: true,
                budget: budget.zip(split).map(|(end, start)| (start, end)),
            });
        }
        stages
    }
}

/// The input sets of a pattern file for `spec`'s network: the file checked (errors name it and
/// the layer) and its layers matched against the network's.
pub fn load_pattern_sets(path: &Path, spec: &NetSpec) -> Result<Vec<Vec<usize>>> {
    let file = logdense_graph::PatternFile::load(path).map_err(anyhow::Error::msg)?;
    let layers = spec.num_layers();
    if file.design.layers != layers {
        bail!(
            "pattern file {}: it connects {} layers, the network has {layers} ({} blocks of {:?})",
            path.display(),
            file.design.layers,
            spec.blocks.len(),
            spec.blocks
        );
    }
    Ok(file.design.sets)
}

/// One line for a TOML error: where (with the line's text, which names the field), then what
/// (toml's own message spans several lines with a drawing).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map_or_else(String::new, |span| {
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.len() - line_start + 1;
        let source: String = text[line_start..]
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .chars()
            .take(60)
            .collect();
        format!("line {line}, column {column} (`{source}`): ")
    });
    format!("{at}{}", e.message().trim())
}

/// Puts `over`'s values over `base`'s, table by table.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_table() && v.is_table() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Reads a TOML file of any other configuration type and checks it with `validate`; errors
/// name the file and the offending field.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<()>,
) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let cfg: T = toml::from_str(&text).map_err(|e| {
        crate::error::invalid(format!(
            "invalid config {}: {}",
            path.display(),
            toml_error(&text, &e)
        ))
    })?;
    validate(&cfg)
        .map_err(|e| crate::error::invalid(format!("invalid config {}: {e:#}", path.display())))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TaskConfig {
        TaskConfig::from_toml(text, TaskKind::Classify).unwrap()
    }

    #[test]
    fn defaults_round_trip_through_toml_for_both_tasks() {
        for task in [TaskKind::Classify, TaskKind::Segment] {
            let c = TaskConfig::defaults(task);
            c.validate().unwrap();
            assert_eq!(
                TaskConfig::from_toml(&c.to_toml(), TaskKind::Classify).unwrap(),
                c
            );
        }
    }

    #[test]
    fn the_task_comes_from_the_file_then_the_preset_then_the_command() {
        let seg = TaskKind::Segment;
        assert_eq!(parse("task = \"segment\"").task, seg);
        let by_preset = parse("[model]\npreset = \"fc-ld-scenes\"");
        assert_eq!(by_preset.task, seg);
        // Fields the file leaves out take the segmentation defaults.
        assert_eq!(by_preset.optim.optimizer, OptimizerKind::Rmsprop);
        assert_eq!(by_preset.data.crop, Some([64, 64]));
        assert_eq!(parse("seed = 3").task, TaskKind::Classify);
        assert_eq!(TaskConfig::from_toml("seed = 3", seg).unwrap().task, seg);
        // Every optimiser serves every task.
        let adam = parse("[optim]\noptimizer = \"adam\"");
        assert_eq!(adam.optimizer().rule, crate::training::engine::Rule::Adam);
        let e = TaskConfig::from_toml("task = \"segment\"\n[model]\npreset = \"fashion\"", seg)
            .unwrap_err();
        assert!(format!("{e:#}").contains("model.preset"), "{e:#}");
    }

    #[test]
    fn the_default_schedule_follows_the_steps_not_the_clock() {
        let c = TaskConfig::default();
        assert_eq!(c.optim.max_train_s, None);
        assert_eq!(c.optim.lr_schedule, LrSchedule::Cosine);
        let stages = c.stages(4);
        assert_eq!(stages.len(), 2);
        assert!(stages.iter().all(|s| s.budget.is_none()));
        assert!(stages[1].final_head_only && (stages[1].lr - 1e-3).abs() < 1e-12);
        // A budget is explicit: the final-head-only stage takes its share at the end.
        let b = parse("[optim]\nmax_train_s = 100.0");
        let stages = b.stages(4);
        assert_eq!(stages[0].budget, Some((0.0, 80.0)));
        assert_eq!(stages[1].budget, Some((80.0, 100.0)));
        // Without auxiliary heads there is no final-only stage, and the main one takes it all.
        assert_eq!(b.stages(1).len(), 1);
        assert_eq!(b.stages(1)[0].budget, Some((0.0, 100.0)));
        let mut bad = TaskConfig::default();
        bad.optim.max_train_s = Some(f64::NAN);
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_train_s"));
    }

    #[test]
    fn earlier_configs_still_load() {
        // A classification run directory's config of the earlier shape.
        let old = parse(
            "seed = 1\n[model]\npreset = \"fashion\"\n[data]\ndataset = \"fashion-mnist\"\n\
             test_subset = 50\n[optim]\nlr_schedule = \"budget-cosine\"\nfinal_only_share = 0.2",
        );
        assert_eq!(old.data.eval_subset, Some(50));
        assert_eq!(old.optim.lr_schedule, LrSchedule::Cosine);
        assert_eq!(old.optim.max_train_s, Some(LEGACY_BUDGET_S));
        // A segmentation config of the earlier shape (no task, `flip` under data).
        let seg = TaskConfig::from_toml(
            "[data]\ndir = \"d\"\nflip = false\n[optim]\noptimizer = \"rmsprop\"",
            TaskKind::Segment,
        )
        .unwrap();
        assert_eq!(seg.task, TaskKind::Segment);
        assert!(!seg.data.augment.flip);
        assert_eq!(seg.data.flip, None);
        assert!(!seg.to_toml().contains("\nflip = false\n[optim]"));
        // Renamed preset families keep their old names.
        assert_eq!(
            parse("[model]\npreset = \"nhl-4-8\"").net_spec().unwrap(),
            {
                parse("[model]\npreset = \"nearest-half-and-log-4-8\"")
                    .net_spec()
                    .unwrap()
            }
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let e = TaskConfig::from_toml("[optim]\nepochz = 3\n", TaskKind::Classify).unwrap_err();
        assert!(
            e.to_string().contains("epochz") && e.to_string().contains("line 2"),
            "{e}"
        );
        let mut c = TaskConfig::default();
        c.optim.epochs = 0;
        assert!(c.validate().unwrap_err().to_string().contains("epochs"));
        let mut c = TaskConfig::default();
        c.model.growth = Some(0);
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("--g"));
        let mut c = TaskConfig::default();
        c.data.dataset = "imagenet-21k".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("data.dataset") && e.contains("cifar10"), "{e}");
        let e =
            TaskConfig::from_toml("[data]\ndataset = \"camvid\"", TaskKind::Classify).unwrap_err();
        assert!(format!("{e:#}").contains("segmentation"), "{e:#}");
    }

    #[test]
    fn precision_reads_from_toml_and_a_bad_one_is_named() {
        let c = parse("[model]\nprecision = \"bf16\"\n");
        assert_eq!(c.model.precision, crate::model::fused::Precision::Bf16);
        assert_eq!(
            TaskConfig::default().model.precision,
            crate::model::fused::Precision::F32
        );
        let e = TaskConfig::from_toml("[model]\nprecision = \"fp8\"\n", TaskKind::Classify)
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("precision") && text.contains("bf16"),
            "{text}"
        );
    }
}
