//! Semantic segmentation: FC-Log-DenseNet / FC-DenseNet training on data in the SegNet layout
//! (CamVid, or the generated fashion-scenes), evaluation from one confusion matrix over the
//! whole set, and Fig. 2-style prediction pictures.
//!
//! Training follows Jegou et al. as the paper does: RMSprop, learning rate decayed by a factor
//! each epoch, random crops with flips, then a fine-tuning stage on full images with its own
//! rate and batch size. Every head is trained (deep supervision): auxiliary heads compare with
//! the label map subsampled to their scale (nearest neighbour, which SPEC.md allows).

use crate::checkpoint::TrainState;
use crate::engine::{self, BatchLoss, Engine, EpochStats, Progress, Schedule, Stage, Task};
use crate::error::invalid;
use crate::report::{self, Panel};
use crate::SparseDenseNet;
use anyhow::{bail, Context, Result};
use burn::data::dataloader::DataLoader;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use logdense_data::seg::{
    load_camvid, subsample_labels, ClassWeights, ConfusionMatrix, SegBatch, SegBatcher,
    SegEpochShare, SegInMemory, SegItem, SegSplit,
};
use logdense_graph::NetSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SEG_CONFIG_FILE: &str = "segment.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegConfig {
    pub seed: u64,
    pub model: SegModelConfig,
    pub data: SegDataConfig,
    pub optim: SegOptimConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegModelConfig {
    /// A segmentation preset of the registry (`logdense presets`).
    pub preset: String,
    pub growth: Option<usize>,
    pub blocks: Option<Vec<usize>>,
    /// One growth rate per block, in place of `growth` (e.g. wider low-resolution blocks).
    pub block_growth: Option<Vec<usize>>,
    pub stem_width: Option<usize>,
    /// Stride of the stem convolution: 2 runs every block at half the image's resolution and
    /// upsamples the final logits bilinearly (4x fewer FLOPs).
    pub stem_stride: Option<usize>,
    pub deep_supervision: Option<bool>,
    /// Auxiliary heads only where the maps are at least this many times smaller than the
    /// input (see [`NetSpec::aux_min_stride`]).
    pub aux_min_stride: Option<usize>,
    pub dropout: f64,
    /// Run the layers through the fused CPU kernels where they apply (see the classification
    /// config's `model.fused`).
    pub fused: bool,
    /// The fused kernels' precision: `f32`, or `bf16` (mixed precision: bf16 operands with f32
    /// sums in the fused convolutions; weights, optimiser state and batch-norm statistics stay
    /// f32). bf16 needs AMX or AVX512-BF16; elsewhere f32 runs and a message says so.
    /// `summary.json` reports the precision that ran.
    pub precision: crate::fused::Precision,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegDataConfig {
    /// A directory in the SegNet layout (`train/`, `trainannot/`, `test/`, `testannot/`, ...).
    pub dir: PathBuf,
    /// The split evaluated after each epoch: `val` or `test`.
    pub eval_split: SegSplit,
    /// Random crop `[height, width]` of the first stage (none: full images).
    pub crop: Option<[usize; 2]>,
    pub flip: bool,
    pub class_weights: ClassWeights,
    pub train_subset: Option<usize>,
    /// Images per crop-stage epoch, when the training set is larger than one epoch should
    /// read: each epoch reads the next `epoch_images` of a seeded order of the whole set
    /// ([`SegEpochShare`]), so a set of many distinct scenes is read once before any repeats,
    /// with an evaluation, a checkpoint and a budget check every `epoch_images` images.
    pub epoch_images: Option<usize>,
    pub eval_subset: Option<usize>,
    pub workers: usize,
}

/// The update rule: Jegou et al.'s RMSprop, or Adam (first-moment momentum, which converges
/// in fewer epochs when the wall-clock budget is short).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegOptimizer {
    Rmsprop,
    Adam,
}

/// How the crop stage's learning rate moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// `lr * lr_decay^(epoch - 1)`, Jegou et al.'s schedule.
    Exponential,
    /// Half a cosine from `lr` to 0 over the crop stage's iterations: a budgeted run ends
    /// annealed instead of stopping at a high rate.
    Cosine,
    /// Half a cosine from `lr` to 0 over the wall-clock budget `max_train_s` (budgeted
    /// training): the rate follows the time spent, and the crop stage trains until the budget
    /// is spent, stopping part-way through an epoch, instead of leaving unused the time an
    /// epoch that would not fit leaves over. `epochs` is then an upper bound.
    BudgetCosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegOptimConfig {
    pub optimizer: SegOptimizer,
    /// Epochs on random crops.
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    /// Multiplies the rate after every epoch (Jegou et al.: 0.995); the exponential schedule
    /// and the fine-tune stage use it.
    pub lr_decay: f64,
    pub weight_decay: f64,
    /// Then epochs on full images.
    pub finetune_epochs: usize,
    pub finetune_batch_size: usize,
    pub finetune_lr: f64,
    /// Wall-clock budget in seconds of training, counted across resumed runs: no epoch starts
    /// that the last epoch's duration says would end past it (with `BudgetCosine`, training
    /// stops at the first step past it).
    pub max_train_s: Option<f64>,
    /// Progressive resizing: the first `low_res_epochs` crop-stage epochs train on crops
    /// shrunk by `low_res_factor` (about `factor^2` times cheaper each), the rest at full size.
    pub low_res_epochs: usize,
    pub low_res_factor: usize,
}

impl Default for SegConfig {
    fn default() -> Self {
        SegConfig {
            seed: 1,
            model: SegModelConfig::default(),
            data: SegDataConfig::default(),
            optim: SegOptimConfig::default(),
        }
    }
}

impl Default for SegModelConfig {
    fn default() -> Self {
        SegModelConfig {
            preset: "fc-ld-small".into(),
            growth: None,
            blocks: None,
            block_growth: None,
            stem_width: None,
            stem_stride: None,
            deep_supervision: None,
            aux_min_stride: None,
            dropout: 0.0,
            fused: true,
            precision: crate::fused::Precision::F32,
        }
    }
}

impl Default for SegDataConfig {
    fn default() -> Self {
        SegDataConfig {
            dir: PathBuf::from("data/fashion-scenes"),
            eval_split: SegSplit::Test,
            crop: Some([64, 64]),
            flip: true,
            class_weights: ClassWeights::Computed,
            train_subset: None,
            epoch_images: None,
            eval_subset: None,
            workers: 2,
        }
    }
}

impl Default for SegOptimConfig {
    fn default() -> Self {
        SegOptimConfig {
            optimizer: SegOptimizer::Rmsprop,
            epochs: 10,
            batch_size: 8,
            lr: 1e-3,
            lr_schedule: LrSchedule::Exponential,
            lr_decay: 0.995,
            weight_decay: 1e-4,
            finetune_epochs: 2,
            finetune_batch_size: 4,
            finetune_lr: 5e-4,
            max_train_s: None,
            low_res_epochs: 0,
            low_res_factor: 2,
        }
    }
}

/// The spec of a segmentation preset (an error lists the segmentation presets otherwise).
pub fn seg_preset(name: &str) -> Result<NetSpec> {
    crate::presets::preset_for(name, logdense_graph::Task::Segment)
        .map_err(|e| anyhow::anyhow!("model.preset (--preset): {e}"))
}

impl SegConfig {
    /// Reads a TOML file; errors name the file and the offending field.
    pub fn load(path: &Path) -> Result<Self> {
        crate::config::load_toml(path, Self::validate)
    }

    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        use crate::config::{check_weight_decay_and_budget, MAX_BATCH, MAX_EPOCHS, MAX_WORKERS};
        if o.epochs + o.finetune_epochs == 0 {
            bail!("optim.epochs + optim.finetune_epochs (--epochs, --finetune-epochs) must be at least 1");
        }
        if o.epochs > MAX_EPOCHS || o.finetune_epochs > MAX_EPOCHS {
            bail!("optim.epochs and optim.finetune_epochs must be at most {MAX_EPOCHS}");
        }
        if o.batch_size == 0 || o.finetune_batch_size == 0 {
            bail!("optim.batch_size and optim.finetune_batch_size must be at least 1");
        }
        if o.batch_size.max(o.finetune_batch_size) > MAX_BATCH {
            bail!("optim.batch_size and optim.finetune_batch_size must be at most {MAX_BATCH}");
        }
        if !(o.lr.is_finite()
            && o.finetune_lr.is_finite()
            && o.lr > 0.0
            && o.finetune_lr > 0.0
            && o.lr_decay > 0.0
            && o.lr_decay <= 1.0)
        {
            bail!("optim.lr and optim.finetune_lr must be positive and optim.lr_decay in (0, 1]");
        }
        check_weight_decay_and_budget(o.weight_decay, o.max_train_s)?;
        if !(0.0..1.0).contains(&self.model.dropout) {
            bail!(
                "model.dropout must lie in [0, 1), got {}",
                self.model.dropout
            );
        }
        if let Some([h, w]) = self.data.crop {
            if h == 0 || w == 0 || h.max(w) > logdense_graph::MAX_SIDE {
                bail!(
                    "data.crop (--crop) must lie in 1..={} pixels",
                    logdense_graph::MAX_SIDE
                );
            }
        }
        if self.data.workers > MAX_WORKERS {
            bail!("data.workers (--workers) must be at most {MAX_WORKERS}");
        }
        if self.data.train_subset == Some(0) || self.data.eval_subset == Some(0) {
            bail!("data.train_subset and data.eval_subset must be at least 1");
        }
        if self.data.epoch_images == Some(0) {
            bail!("data.epoch_images must be at least 1");
        }
        if o.lr_schedule == LrSchedule::BudgetCosine
            && !o.max_train_s.is_some_and(|b| b.is_finite() && b > 0.0)
        {
            bail!("optim.lr_schedule = \"budget-cosine\" needs a positive optim.max_train_s (--max-minutes)");
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
        seg_preset(&self.model.preset)?;
        Ok(())
    }

    /// The network for images of `height x width` with `classes` classes.
    pub fn net_spec(&self, classes: usize, height: usize, width: usize) -> Result<NetSpec> {
        let m = &self.model;
        let mut spec = seg_preset(&m.preset)?;
        if let Some(g) = m.growth {
            spec.growth = g;
        }
        if let Some(b) = &m.blocks {
            spec.blocks = b.clone();
        }
        if let Some(g) = &m.block_growth {
            spec.block_growth = g.clone();
        }
        if let Some(w) = m.stem_width {
            spec.stem.width = w;
        }
        if let Some(s) = m.stem_stride {
            spec.stem.stride = s;
        }
        if let Some(d) = m.deep_supervision {
            spec.deep_supervision = d;
        }
        if let Some(s) = m.aux_min_stride {
            spec.aux_min_stride = s;
        }
        spec.classes = classes;
        spec.input = [3, height, width];
        spec.build()
            .map_err(|e| invalid(format!("model does not fit the data: {e}")))?;
        Ok(spec)
    }
}

/// Per-pixel cross-entropy of logits `[N, C, H, W]` against labels `[N, H, W]`, weighted per
/// class by `weights` (`C + 1` entries, the last, for void, is 0 so void pixels are ignored),
/// normalised by the total weight (as PyTorch's weighted mean).
pub fn seg_loss(logits: Tensor<4>, labels: Tensor<3, Int>, weights: &Tensor<1>) -> Tensor<1> {
    let [n, c, h, w] = logits.dims();
    let logp = log_softmax(logits, 1);
    // Void (= c) is clamped to a real class for the gather; its weight 0 removes it.
    let safe = labels.clone().clamp_max(c as i64 - 1);
    let picked = logp
        .gather(1, safe.reshape([n, 1, h, w]))
        .reshape([n * h * w]);
    let pixel_weights = weights.clone().select(0, labels.reshape([n * h * w]));
    let total = pixel_weights.clone().sum().clamp_min(1e-8);
    (picked * pixel_weights).sum().neg() / total
}

/// One evaluated epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegEpochMetrics {
    pub epoch: usize,
    pub stage: String,
    pub lr: f64,
    pub train_loss: f64,
    pub mean_iou: f64,
    pub global_accuracy: f64,
    pub per_class_iou: Vec<Option<f64>>,
    pub images_per_s: f64,
    pub epoch_s: f64,
}

/// Evaluation from one confusion matrix over the whole set.
pub fn evaluate(
    model: &SparseDenseNet,
    loader: Arc<dyn DataLoader<SegBatch>>,
    classes: usize,
) -> Result<ConfusionMatrix> {
    evaluate_with(model, loader, classes, false)
}

/// The final logits of `images`; with `flip_tta`, plus those of the mirrored images mirrored
/// back (so the prediction for a mirrored image is exactly the mirrored prediction).
pub fn predict_logits(model: &SparseDenseNet, images: Tensor<4>, flip_tta: bool) -> Tensor<4> {
    if flip_tta {
        let mirrored = model.forward(images.clone().flip([3])).flip([3]);
        model.forward(images) + mirrored
    } else {
        model.forward(images)
    }
}

/// [`evaluate`], optionally with flip test-time augmentation: the logits of each image and of
/// its mirror image (mirrored back) are summed before the argmax.
pub fn evaluate_with(
    model: &SparseDenseNet,
    loader: Arc<dyn DataLoader<SegBatch>>,
    classes: usize,
    flip_tta: bool,
) -> Result<ConfusionMatrix> {
    let mut cm = ConfusionMatrix::new(classes);
    for batch in loader.iter() {
        let batch = batch.map_err(|e| anyhow::anyhow!("{e}"))?;
        let logits = predict_logits(model, batch.images, flip_tta);
        let [n, _, h, w] = logits.dims();
        let pred = logits.argmax(1).reshape([n, h, w]);
        cm.add_tensors(pred, batch.labels, classes as u8);
    }
    Ok(cm)
}

/// A segmentation run directory.
pub struct SegRun {
    pub dir: PathBuf,
    pub cfg: SegConfig,
    pub device: Device,
    pub progress: bool,
    /// Replace a run the directory already holds (otherwise it is refused unless resumed).
    pub overwrite: bool,
}

impl SegConfig {
    /// The optimiser of this configuration.
    pub fn optimizer(&self) -> engine::Optimizer {
        engine::Optimizer {
            rule: match self.optim.optimizer {
                SegOptimizer::Rmsprop => engine::Rule::Rmsprop,
                SegOptimizer::Adam => engine::Rule::Adam,
            },
            weight_decay: self.optim.weight_decay,
        }
    }
}

impl SegOptimConfig {
    /// The run's stages: random crops (the first `low_res_epochs` on shrunk crops), then
    /// full-image fine-tuning at its own rate, decayed per epoch.
    pub fn stages(&self) -> Vec<Stage> {
        let budgeted = self.lr_schedule == LrSchedule::BudgetCosine;
        vec![
            Stage {
                name: "crops",
                epochs: self.epochs,
                batch_size: self.batch_size,
                lr: self.lr,
                schedule: match self.lr_schedule {
                    LrSchedule::Exponential => Schedule::Exponential {
                        decay: self.lr_decay,
                    },
                    LrSchedule::Cosine => Schedule::Cosine,
                    LrSchedule::BudgetCosine => Schedule::BudgetCosine,
                },
                final_head_only: false,
                budget: self.max_train_s.filter(|_| budgeted).map(|b| (0.0, b)),
            },
            Stage {
                name: "finetune",
                epochs: self.finetune_epochs,
                batch_size: self.finetune_batch_size,
                lr: self.finetune_lr,
                schedule: Schedule::Exponential {
                    decay: self.lr_decay,
                },
                final_head_only: false,
                budget: None,
            },
        ]
    }

    /// The rate at `epoch` (from 1, crop stage then fine-tune stage), `step` of `steps`
    /// iterations into it, `spent_s` seconds of training into the run.
    pub fn lr_at(&self, epoch: usize, step: usize, steps: usize, spent_s: f64) -> f64 {
        let stages = self.stages();
        let (stage, stage_epoch) = if epoch > self.epochs {
            (&stages[1], epoch - self.epochs - 1)
        } else {
            (&stages[0], epoch - 1)
        };
        stage.schedule.lr(
            stage.lr,
            Progress {
                stage_epoch,
                step,
                steps,
                stage_epochs: stage.epochs,
                spent_s,
                budget: stage.budget,
            },
        )
    }
}

/// The per-batch targets of segmentation: the label map and its values on the host (for the
/// auxiliary heads' subsampled maps).
pub struct SegTargets {
    labels: Tensor<3, Int>,
    values: Vec<i64>,
}

/// The segmentation loss of a batch: the head-weighted, class-weighted per-pixel
/// cross-entropy of every head's logits against the label map, subsampled (nearest
/// neighbour) to the head's scale. `class_weights` has `classes + 1` entries, void last (0).
pub fn segment_loss(
    outputs: Vec<Tensor<4>>,
    labels: &Tensor<3, Int>,
    label_values: &[i64],
    class_weights: &Tensor<1>,
    weights: &[f64],
) -> Tensor<1> {
    let [n, hh, ww] = labels.dims();
    let device = labels.device();
    engine::weighted_loss(outputs, weights, |_, out| {
        let [_, _, h, w] = out.dims();
        let labels = if (h, w) == (hh, ww) {
            labels.clone()
        } else {
            let sub = subsample_labels(label_values, n, (hh, ww), (h, w));
            Tensor::<3, Int>::from_data(TensorData::new(sub, [n, h, w]), &device)
        };
        seg_loss(out, labels, class_weights)
    })
    .expect("the final head has weight")
}

/// The host copy of a label map's values.
pub fn label_values(labels: &Tensor<3, Int>) -> Vec<i64> {
    labels
        .clone()
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("integer labels")
}

/// Semantic segmentation as the engine trains it.
pub struct Segment {
    cfg: SegConfig,
    stages: Vec<Stage>,
    train: SegInMemory,
    eval: SegInMemory,
    crop: (usize, usize),
    classes: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
    class_weights: Tensor<1>,
    /// The plain device evaluation runs on.
    device: Device,
}

impl Segment {
    fn low_res(&self, stage: usize, stage_epoch: usize) -> bool {
        stage == 0 && stage_epoch < self.cfg.optim.low_res_epochs
    }
}

impl Task for Segment {
    type Batch = SegBatch;
    type Targets = SegTargets;
    type Eval = ConfusionMatrix;
    type Row = SegEpochMetrics;

    fn stages(&self) -> &[Stage] {
        &self.stages
    }

    fn epoch_label(&self, stage: usize, stage_epoch: usize) -> &'static str {
        if self.low_res(stage, stage_epoch) {
            "low-res crops"
        } else {
            self.stages[stage].name
        }
    }

    fn epoch_cost(&self, stage: usize, stage_epoch: usize) -> f64 {
        if self.low_res(stage, stage_epoch) {
            let f = self.cfg.optim.low_res_factor as f64;
            1.0 / (f * f)
        } else {
            1.0
        }
    }

    fn loader(
        &self,
        stage: usize,
        stage_epoch: usize,
        epoch: usize,
        device: &Device,
    ) -> Arc<dyn DataLoader<SegBatch>> {
        let cfg = &self.cfg;
        let finetune = stage == 1;
        let batcher = SegBatcher::train(
            self.mean.clone(),
            self.std.clone(),
            (!finetune).then_some(self.crop),
            cfg.data.flip,
            cfg.seed,
        )
        .at_epoch(epoch)
        .with_downscale(if self.low_res(stage, stage_epoch) {
            cfg.optim.low_res_factor
        } else {
            1
        });
        // A crop-stage epoch reads its share of the set when `epoch_images` is set.
        let epoch_set: Arc<dyn Dataset<SegItem>> = match cfg.data.epoch_images.filter(|_| !finetune)
        {
            Some(k) => Arc::new(SegEpochShare::new(self.train.clone(), cfg.seed, epoch, k)),
            None => Arc::new(self.train.clone()),
        };
        logdense_data::seg::seg_loader_on(
            epoch_set,
            batcher,
            self.stages[stage].batch_size,
            Some(cfg.seed),
            cfg.data.workers,
            device,
        )
    }

    fn split(&self, batch: SegBatch) -> (Tensor<4>, SegTargets) {
        let values = label_values(&batch.labels);
        (
            batch.images,
            SegTargets {
                labels: batch.labels,
                values,
            },
        )
    }

    fn batch_len(&self, t: &SegTargets) -> usize {
        t.labels.dims()[0]
    }

    fn loss(&self, outputs: Vec<Tensor<4>>, t: &SegTargets, weights: &[f64]) -> BatchLoss {
        BatchLoss {
            loss: segment_loss(outputs, &t.labels, &t.values, &self.class_weights, weights),
            hits: 0,
        }
    }

    fn evaluate(&self, model: &SparseDenseNet) -> Result<ConfusionMatrix> {
        let loader = logdense_data::seg::seg_loader_on(
            Arc::new(self.eval.clone()),
            SegBatcher::eval(self.mean.clone(), self.std.clone()),
            8,
            None,
            self.cfg.data.workers,
            &self.device,
        );
        evaluate(model, loader, self.classes)
    }

    fn row(&self, s: &EpochStats, cm: ConfusionMatrix) -> SegEpochMetrics {
        SegEpochMetrics {
            epoch: s.epoch,
            stage: self.epoch_label(s.stage, s.stage_epoch).into(),
            lr: s.lr,
            train_loss: s.train_loss,
            mean_iou: cm.mean_iou(),
            global_accuracy: cm.global_accuracy(),
            per_class_iou: cm.per_class_iou(),
            images_per_s: s.images_per_s,
            epoch_s: s.epoch_s,
        }
    }

    fn row_epoch(row: &SegEpochMetrics) -> usize {
        row.epoch
    }

    fn epoch_line(&self, r: &SegEpochMetrics) -> String {
        format!(
            "train loss {:.4} | {} mIoU {:.4} global acc {:.2}% | {:.1} img/s, {:.1} s",
            r.train_loss,
            match self.cfg.data.eval_split {
                SegSplit::Val => "val",
                _ => "test",
            },
            r.mean_iou,
            100.0 * r.global_accuracy,
            r.images_per_s,
            r.epoch_s
        )
    }

    fn bar_message(&self, loss: f64, _: usize, _: usize, ips: f64, lr: f64) -> String {
        format!("loss {loss:.4} {ips:.1} img/s lr {lr:.3e}")
    }

    fn write_reports(&self, dir: &Path, rows: &[SegEpochMetrics]) -> Result<()> {
        write_reports(dir, rows)
    }
}

/// What a finished segmentation run reports.
#[derive(Debug, Clone, Serialize)]
pub struct SegSummary {
    pub mean_iou: f64,
    pub global_accuracy: f64,
    pub per_class_iou: Vec<Option<f64>>,
    pub epochs: usize,
    pub wall_s: f64,
    pub params: usize,
    /// Whether the fused CPU kernels ran the layers.
    pub fused: bool,
    /// The fused kernels' precision that ran (`f32` or `bf16`).
    pub precision: &'static str,
}

impl SegRun {
    pub fn train(&self, resume: bool) -> Result<(SparseDenseNet, SegSummary)> {
        let cfg = &self.cfg;
        cfg.validate().map_err(|e| invalid(format!("{e:#}")))?;
        let _lock = engine::open_run_dir(&self.dir, resume, self.overwrite)?;
        let mut train_set = load_camvid(&cfg.data.dir, SegSplit::Train)?;
        let mut eval_set = load_camvid(&cfg.data.dir, cfg.data.eval_split)?;
        if let Some(n) = cfg.data.train_subset {
            train_set = train_set.subset(n, cfg.seed);
        }
        if let Some(n) = cfg.data.eval_subset {
            eval_set = eval_set.subset(n, cfg.seed ^ 0x5eed);
        }
        let classes = train_set.classes;
        let weights = cfg
            .data
            .class_weights
            .resolve(&train_set)
            .map_err(|e| anyhow::anyhow!("data.class_weights: {e}"))?;
        let crop = cfg
            .data
            .crop
            .map(|[h, w]| (h.min(train_set.height), w.min(train_set.width)))
            .unwrap_or((train_set.height, train_set.width));
        // One network serves both stages: it is fully convolutional; its spec records the crop size.
        let spec = cfg.net_spec(classes, crop.0, crop.1)?;
        cfg.net_spec(classes, eval_set.height, eval_set.width)
            .context("evaluation images")?;
        if cfg.optim.low_res_epochs > 0 {
            let f = cfg.optim.low_res_factor;
            cfg.net_spec(classes, crop.0 / f, crop.1 / f)
                .context("optim.low_res_factor: the shrunk crops")?;
        }
        crate::resources::check_training_fits(
            &spec,
            cfg.optim.batch_size,
            "optim.batch_size (--batch-size)",
        )?;
        if cfg.optim.finetune_epochs > 0 {
            let full = cfg.net_spec(classes, train_set.height, train_set.width)?;
            crate::resources::check_training_fits(
                &full,
                cfg.optim.finetune_batch_size,
                "optim.finetune_batch_size",
            )?;
        }
        let ad = self.device.clone().autodiff();
        ad.seed(cfg.seed);
        let options = crate::network::NetOptions {
            dropout: cfg.model.dropout,
            fused: cfg.model.fused,
        };
        let model = SparseDenseNet::new_with(&spec, &options, &ad)?;
        let precision = crate::fused::set_precision(cfg.model.precision);
        let (mean, std) = train_set.channel_mean_std();
        let state = TrainState::fresh(
            spec.clone(),
            cfg.seed,
            mean.clone(),
            std.clone(),
            train_set.class_names.clone(),
        );
        report::write_atomic(
            &self.dir.join(SEG_CONFIG_FILE),
            toml::to_string_pretty(cfg)?.as_bytes(),
        )?;
        let mut class_weights = weights.unwrap_or_else(|| vec![1.0; classes]);
        class_weights.push(0.0);
        let task = Segment {
            cfg: cfg.clone(),
            stages: cfg.optim.stages(),
            train: SegInMemory::new(train_set),
            eval: SegInMemory::new(eval_set),
            crop,
            classes,
            mean,
            std,
            class_weights: Tensor::<1>::from_data(
                TensorData::new(class_weights, [classes + 1]),
                &ad,
            ),
            device: self.device.clone(),
        };
        let engine = Engine {
            dir: &self.dir,
            device: &self.device,
            seed: cfg.seed,
            optimizer: cfg.optimizer(),
            max_train_s: cfg.optim.max_train_s,
            progress: self.progress,
            stop_after: None,
        };
        let (model, state, rows) = engine.run(&task, model, state, resume)?;
        let last = rows.last().context("no epoch was trained")?;
        let summary = SegSummary {
            mean_iou: last.mean_iou,
            global_accuracy: last.global_accuracy,
            per_class_iou: last.per_class_iou.clone(),
            epochs: state.epochs_done,
            wall_s: state.wall_s,
            params: model.trainable_params(),
            fused: model.valid().fused_active(),
            precision: precision.of_model(model.valid().fused_active()).name(),
        };
        engine::write_summary(&self.dir, &summary)?;
        Ok((model, summary))
    }
}

fn write_reports(dir: &Path, rows: &[SegEpochMetrics]) -> Result<()> {
    let mut csv =
        String::from("epoch,stage,lr,train_loss,mean_iou,global_accuracy,images_per_s,epoch_s\n");
    for r in rows {
        csv += &format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.2},{:.2}\n",
            r.epoch,
            r.stage,
            r.lr,
            r.train_loss,
            r.mean_iou,
            r.global_accuracy,
            r.images_per_s,
            r.epoch_s
        );
    }
    report::write_atomic(&dir.join("metrics.csv"), csv.as_bytes())?;
    report::write_json_atomic(&dir.join("metrics.json"), rows)?;
    let x = |r: &SegEpochMetrics| r.epoch as f64;
    report::plot_panels(
        &dir.join("curves.png"),
        &[
            Panel {
                title: "training loss",
                y_label: "weighted cross-entropy",
                series: vec![("train", rows.iter().map(|r| (x(r), r.train_loss)).collect())],
            },
            Panel {
                title: "evaluation",
                y_label: "fraction",
                series: vec![
                    (
                        "mean IoU",
                        rows.iter().map(|r| (x(r), r.mean_iou)).collect(),
                    ),
                    (
                        "global accuracy",
                        rows.iter().map(|r| (x(r), r.global_accuracy)).collect(),
                    ),
                ],
            },
        ],
    )
}

/// Reads the run's config and model.
pub fn load_run(dir: &Path, device: &Device) -> Result<(SegConfig, SparseDenseNet, TrainState)> {
    let cfg = SegConfig::load(&dir.join(SEG_CONFIG_FILE))
        .with_context(|| format!("{} is not a segmentation run directory", dir.display()))?;
    let (model, state) = crate::checkpoint::load_trained(dir, device)?;
    Ok((cfg, model, state))
}

/// Normalised `[1, 3, H, W]` tensor of an RGB CHW image.
pub fn image_tensor(
    chw: &[u8],
    h: usize,
    w: usize,
    mean: &[f32],
    std: &[f32],
    device: &Device,
) -> Tensor<4> {
    let plane = h * w;
    let data: Vec<f32> = chw
        .iter()
        .enumerate()
        .map(|(k, &v)| (v as f32 / 255.0 - mean[k / plane]) / std[k / plane])
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 3, h, w]), device)
}

/// Fig. 2: input, ground truth (if known), every head's prediction upsampled to full size
/// (auxiliary heads in block order, the final one last), colourised and side by side.
pub fn prediction_strip(
    model: &SparseDenseNet,
    state: &TrainState,
    palette: &[[u8; 3]],
    image_chw: &[u8],
    truth: Option<&[u8]>,
    (h, w): (usize, usize),
    device: &Device,
) -> image::RgbImage {
    let heads = model.forward_heads(image_tensor(
        image_chw,
        h,
        w,
        &state.mean,
        &state.std,
        device,
    ));
    let mut panels: Vec<Vec<[u8; 3]>> = vec![(0..h * w)
        .map(|p| [image_chw[p], image_chw[h * w + p], image_chw[2 * h * w + p]])
        .collect()];
    let colour = |c: usize| palette.get(c).copied().unwrap_or([0, 0, 0]);
    if let Some(t) = truth {
        panels.push(t.iter().map(|&c| colour(c as usize)).collect());
    }
    for head in heads {
        let [_, _, hh, ww] = head.dims();
        let pred: Vec<i64> = head
            .argmax(1)
            .reshape([hh * ww])
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default();
        let up: Vec<[u8; 3]> = (0..h * w)
            .map(|p| {
                let (y, x) = (p / w, p % w);
                let (sy, sx) = ((y * hh / h).min(hh - 1), (x * ww / w).min(ww - 1));
                colour(pred.get(sy * ww + sx).copied().unwrap_or(0) as usize)
            })
            .collect();
        panels.push(up);
    }
    let gap = 4;
    let mut img = image::RgbImage::from_pixel(
        (panels.len() * (w + gap) - gap) as u32,
        h as u32,
        image::Rgb([255, 255, 255]),
    );
    for (k, panel) in panels.iter().enumerate() {
        for (p, rgb) in panel.iter().enumerate() {
            img.put_pixel(
                (k * (w + gap) + p % w) as u32,
                (p / w) as u32,
                image::Rgb(*rgb),
            );
        }
    }
    img
}

/// The colour palette of the run's data set (CamVid's, or the one its `classes.json` names).
pub fn palette_of(dir: &Path) -> Vec<[u8; 3]> {
    let file = dir.join(logdense_data::seg::camvid::ClassesFile::FILE_NAME);
    let classes = logdense_data::seg::camvid::ClassesFile::read(&file)
        .unwrap_or_else(|_| logdense_data::seg::camvid::ClassesFile::camvid());
    classes.full_palette()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_recipe_loads_and_builds() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/fashion-scenes.toml");
        let cfg = SegConfig::load(&path).unwrap();
        assert_eq!(cfg.optim.lr_schedule, LrSchedule::BudgetCosine);
        assert_eq!(cfg.optim.max_train_s, Some(870.0));
        let spec = cfg.net_spec(11, 64, 64).unwrap();
        assert_eq!(spec.blocks, vec![1, 1, 2, 4, 14, 4, 2, 1, 1]);
        assert_eq!(spec.block_growth, vec![8, 12, 16, 24, 32, 24, 16, 8, 6]);
        assert_eq!((spec.stem.width, spec.aux_min_stride), (16, 2));
    }

    #[test]
    fn learning_rate_schedules() {
        let mut o = SegOptimConfig {
            epochs: 4,
            lr: 2e-3,
            lr_decay: 0.5,
            ..SegOptimConfig::default()
        };
        assert_eq!(o.lr_at(1, 7, 10, 0.0), 2e-3);
        assert_eq!(o.lr_at(3, 0, 10, 0.0), 5e-4);
        o.lr_schedule = LrSchedule::Cosine;
        assert_eq!(o.lr_at(1, 0, 10, 0.0), 2e-3);
        assert!(
            (o.lr_at(3, 0, 10, 0.0) - 1e-3).abs() < 1e-12,
            "half way: half the rate"
        );
        assert!(
            o.lr_at(4, 9, 10, 0.0) < 2e-3 * 0.01,
            "annealed by the last step"
        );
        assert!(
            o.lr_at(2, 5, 10, 0.0) < o.lr_at(2, 4, 10, 0.0),
            "falls within an epoch"
        );
        // The fine-tune stage after the 4 crop epochs: its own rate, decayed per epoch.
        assert_eq!(o.lr_at(5, 3, 10, 0.0), o.finetune_lr);
        assert_eq!(o.lr_at(6, 0, 10, 0.0), o.finetune_lr * 0.5);
        let parsed: SegConfig =
            toml::from_str("[optim]\noptimizer = \"adam\"\nlr_schedule = \"cosine\"").unwrap();
        assert_eq!(parsed.optim.optimizer, SegOptimizer::Adam);
        assert_eq!(parsed.optim.lr_schedule, LrSchedule::Cosine);
    }

    #[test]
    fn budget_cosine_follows_the_time_spent_and_needs_a_budget() {
        let o = SegOptimConfig {
            epochs: 50,
            lr: 2e-3,
            lr_schedule: LrSchedule::BudgetCosine,
            max_train_s: Some(800.0),
            ..SegOptimConfig::default()
        };
        // The epoch and step do not matter, only the seconds spent out of the budget.
        assert_eq!(o.lr_at(1, 0, 10, 0.0), 2e-3);
        assert_eq!(o.lr_at(1, 0, 10, 0.0), o.lr_at(7, 3, 10, 0.0));
        assert!((o.lr_at(3, 0, 10, 400.0) - 1e-3).abs() < 1e-12, "half way");
        assert!((o.lr_at(3, 0, 10, 200.0) - 1e-3 * (1.0 + 0.5f64.sqrt())).abs() < 1e-12);
        assert_eq!(o.lr_at(9, 5, 10, 800.0), 0.0);
        assert_eq!(o.lr_at(9, 5, 10, 950.0), 0.0, "past the budget: still 0");
        let parsed: SegConfig =
            toml::from_str("[optim]\nlr_schedule = \"budget-cosine\"\nmax_train_s = 870.0")
                .unwrap();
        parsed.validate().unwrap();
        let mut unbudgeted = parsed;
        unbudgeted.optim.max_train_s = None;
        let msg = unbudgeted.validate().unwrap_err().to_string();
        assert!(msg.contains("max_train_s"), "{msg}");
    }

    #[test]
    fn new_model_and_schedule_options_parse_and_are_checked() {
        let parsed: SegConfig = toml::from_str(
            "[model]\npreset = \"fc-ld-scenes\"\nstem_stride = 2\nblock_growth = [8, 8, 12, 16, 24, 16, 12, 8, 8]\n[optim]\nepochs = 5\nlow_res_epochs = 2",
        )
        .unwrap();
        parsed.validate().unwrap();
        let spec = parsed.net_spec(11, 64, 64).unwrap();
        assert_eq!((spec.stem.stride, spec.block_growth[4]), (2, 24));
        assert_eq!(parsed.optim.low_res_factor, 2);
        let mut bad = parsed.clone();
        bad.optim.low_res_epochs = 6;
        let msg = bad.validate().unwrap_err().to_string();
        assert!(msg.contains("optim.low_res_epochs"), "{msg}");
        bad.optim.low_res_epochs = 1;
        bad.optim.low_res_factor = 1;
        let msg = bad.validate().unwrap_err().to_string();
        assert!(msg.contains("optim.low_res_factor"), "{msg}");
        let mut wrong = parsed;
        wrong.model.block_growth = Some(vec![8, 8]);
        let msg = wrong.net_spec(11, 64, 64).unwrap_err().to_string();
        assert!(msg.contains("block_growth"), "{msg}");
        let shares: SegConfig = toml::from_str(
            "[data]
epoch_images = 12500
[optim]
epochs = 6",
        )
        .unwrap();
        shares.validate().unwrap();
        assert_eq!(shares.data.epoch_images, Some(12500));
        let mut none = shares;
        none.data.epoch_images = Some(0);
        let msg = none.validate().unwrap_err().to_string();
        assert!(msg.contains("data.epoch_images"), "{msg}");
    }

    #[test]
    fn flip_tta_predictions_mirror_with_the_image() {
        let device = Device::flex();
        let spec = NetSpec {
            blocks: vec![1, 1, 1],
            growth: 4,
            input: [3, 16, 16],
            ..crate::presets::preset("fc-ld-small").unwrap()
        };
        let model = SparseDenseNet::new(&spec, 0.0, &device).unwrap();
        let x = Tensor::<4>::random([2, 3, 16, 12], burn::tensor::Distribution::Default, &device);
        let with = |img: Tensor<4>, tta| predict_logits(&model, img, tta);
        let mirrored = with(x.clone().flip([3]), true);
        let expected = with(x.clone(), true).flip([3]);
        let diff = (mirrored - expected).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "TTA logits of the mirror differ by {diff}");
        // Without TTA the network itself is not mirror-symmetric.
        let plain = (with(x.clone().flip([3]), false) - with(x, false).flip([3]))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(plain > 1e-3, "{plain}");
    }

    #[test]
    fn loss_ignores_void_and_applies_weights() {
        let device = Device::flex();
        // 2 classes, 3 pixels: labels 0, 1, void (2). Logits favour class 0 everywhere.
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![2.0f32, 2.0, 2.0, 0.0, 0.0, 0.0], [1, 2, 1, 3]),
            &device,
        );
        let labels =
            Tensor::<3, Int>::from_data(TensorData::new(vec![0i64, 1, 2], [1, 1, 3]), &device);
        let w = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 3.0, 0.0], [3]), &device);
        let got = seg_loss(logits, labels, &w).into_scalar::<f32>() as f64;
        let lp0 = -(1.0 + (-2.0f64).exp()).ln();
        let lp1 = lp0 - 2.0;
        let want = -(1.0 * lp0 + 3.0 * lp1) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
