//! The training engine: one loop under every task.
//!
//! A run is a list of [`Stage`]s (classification: the main schedule, then the final-head-only
//! epoch; segmentation: random crops, then full-image fine-tuning), each a number of epochs with
//! its batch size, base rate, [`Schedule`] and head weighting. The engine owns everything that
//! does not depend on the task: the seeded epoch loop, the progress bar, the training step
//! ([`train_step`]: forward over the heads, weighted loss, divergence check, backward,
//! optimiser update), the wall-clock budget, evaluation after every epoch, the atomic
//! checkpoint, the metric reports and resume. A [`Task`] supplies what does: its data loader,
//! its per-head loss, its evaluation and its report row. `bench` times [`train_step`] with the
//! task's own loss and optimiser, so it measures the step training takes.

use crate::training::checkpoint::CHECKPOINT_FILE;
use crate::training::checkpoint::{load_checkpoint, save_checkpoint, TrainState};
use crate::training::report;
use crate::SparseDenseNet;
use anyhow::{bail, Context, Result};
use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, RmsPropConfig, SgdConfig};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The update rule of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// SGD with momentum (dampening 0), optionally Nesterov: the paper's classification rule.
    Sgd {
        /// The momentum factor (dampening 0).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// RMSprop as Jegou et al. used it (Lasagne/Keras): squared-gradient average 0.9,
    /// epsilon 1e-6, no momentum. The segmentation rule.
    Rmsprop,
    /// Adam with burn's defaults.
    Adam,
}

/// An optimiser: its rule and its (L2) weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Optimizer {
    /// The update rule and its parameters.
    pub rule: Rule,
    /// L2 weight decay added to the gradients (0: none).
    pub weight_decay: f64,
}

impl Optimizer {
    /// burn's optimiser for this rule.
    pub fn build(&self) -> ModuleOptimizer {
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.rule {
            Rule::Sgd { momentum, nesterov } => SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum,
                    dampening: 0.0,
                    nesterov,
                }))
                .with_weight_decay(decay)
                .init(),
            Rule::Rmsprop => RmsPropConfig::new()
                .with_alpha(0.9)
                .with_momentum(0.0)
                .with_epsilon(1e-6)
                .with_weight_decay(decay)
                .init(),
            Rule::Adam => AdamConfig::new().with_weight_decay(decay).init(),
        }
    }
}

/// How a stage's learning rate moves from its base rate, as a function of how far the stage
/// has got ([`Progress::fraction_done`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiplied by `gamma` after each fraction in `milestones` of the stage (the paper's
    /// classification schedule: 0.1 after 1/2 and 3/4).
    Step {
        /// Fractions of the stage, in [0, 1].
        milestones: Vec<f64>,
        /// The factor at each milestone.
        gamma: f64,
    },
    /// Multiplied by `decay` after every epoch (Jegou et al.'s 0.995).
    Exponential {
        /// The factor per epoch.
        decay: f64,
    },
    /// Half a cosine from the base rate to 0 over the stage.
    Cosine,
}

/// Where in a stage a step falls, for the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Epochs of the stage finished before this one.
    pub stage_epoch: usize,
    /// Step within the epoch, from 0.
    pub step: usize,
    /// Steps per epoch of the stage.
    pub steps: usize,
    /// Epochs of the stage.
    pub stage_epochs: usize,
    /// Seconds of training of the run so far (across resumes).
    pub spent_s: f64,
    /// The stage's share of a wall-clock budget: `[start, end)` in run seconds.
    pub budget: Option<(f64, f64)>,
}

impl Progress {
    /// How far the stage has got, in [0, 1]: the fraction of its iterations done, or under a
    /// budget the larger of that and the fraction of its share of the budget spent, so that a
    /// schedule runs its course over whichever ends first. Without a budget it is a function
    /// of the step alone, and one seed gives one result on any machine.
    pub fn fraction_done(&self) -> f64 {
        let total = (self.steps * self.stage_epochs).max(1) as f64;
        let iterations = ((self.stage_epoch * self.steps + self.step) as f64 / total).min(1.0);
        let time = self.budget.map_or(0.0, |(start, end)| {
            ((self.spent_s - start) / (end - start).max(1e-9)).clamp(0.0, 1.0)
        });
        iterations.max(time)
    }
}

impl Schedule {
    /// The rate at `p` for base rate `lr`.
    pub fn lr(&self, lr: f64, p: Progress) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Step { milestones, gamma } => {
                let done = p.fraction_done();
                let drops = milestones.iter().filter(|&&m| done >= m).count();
                lr * gamma.powi(drops as i32)
            }
            Schedule::Exponential { decay } => lr * decay.powi(p.stage_epoch as i32),
            Schedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * p.fraction_done()).cos()),
        }
    }
}

/// A part of a run with its own batch size, rate and head weighting.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Its name in metrics and messages (`main`, `final-only`, `crops`, `finetune`).
    pub name: &'static str,
    /// Epochs of the stage (an upper bound under a budget).
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// The stage's base learning rate.
    pub lr: f64,
    /// How the rate moves from the base rate over the stage.
    pub schedule: Schedule,
    /// Optimise the final prediction alone (the paper's epoch after deep supervision).
    pub final_head_only: bool,
    /// Train on whole images (segmentation's fine-tuning), not the task's random crops.
    pub whole_images: bool,
    /// The stage's share of the wall-clock budget, `[start, end)` in seconds of training: the
    /// stage stops at the first step past `end` (part-way through an epoch; its epoch count is
    /// then an upper bound), and its schedule follows the share where it ends first.
    pub budget: Option<(f64, f64)>,
}

/// Loss weights of the heads (SPEC: half on the final prediction, half spread evenly over the
/// auxiliary ones; all on the final one in the final-only phase or without auxiliaries).
pub fn head_weights(heads: usize, final_only: bool) -> Vec<f64> {
    if heads <= 1 || final_only {
        let mut w = vec![0.0; heads];
        if let Some(last) = w.last_mut() {
            *last = 1.0;
        }
        return w;
    }
    let mut w = vec![0.5 / (heads - 1) as f64; heads];
    w[heads - 1] = 0.5;
    w
}

/// Sum of `weight x loss` over the heads whose weight is positive (`None` if there is none);
/// `loss_of` is only called for those heads, with the head's index.
pub fn weighted_loss<T>(
    outputs: impl IntoIterator<Item = T>,
    weights: &[f64],
    mut loss_of: impl FnMut(usize, T) -> Tensor<1>,
) -> Option<Tensor<1>> {
    outputs
        .into_iter()
        .zip(weights.iter().copied())
        .enumerate()
        .filter(|(_, (_, w))| *w > 0.0)
        .map(|(k, (out, w))| loss_of(k, out).mul_scalar(w))
        .reduce(|a, b| a + b)
}

/// One training step: forward over every head, the task's loss of the head outputs, a check
/// that it is finite, backward and the optimiser's update at rate `lr`. Returns the updated
/// model and the loss value.
pub fn train_step(
    model: SparseDenseNet,
    optim: &mut ModuleOptimizer,
    lr: f64,
    images: Tensor<4>,
    loss_of: impl FnOnce(Vec<Tensor<4>>) -> Tensor<1>,
) -> Result<(SparseDenseNet, f64)> {
    let outputs = model.forward_heads(images);
    let loss = loss_of(outputs);
    let value = loss.clone().detach().into_scalar::<f32>() as f64;
    if !value.is_finite() {
        bail!("training diverged (loss {value}); lower --lr");
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    Ok((optim.step(lr, model, grads), value))
}

/// Seeds the backend generator for one epoch: everything random in an epoch (dropout, here;
/// data order and augmentation derive from the same pair) is a function of (seed, epoch), so a
/// resumed run replays it exactly.
pub fn seed_epoch(device: &Device, seed: u64, epoch: usize) {
    device.seed(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
}

/// A progress bar for one epoch of `batches` batches: loss, accuracy or throughput go in its
/// message; indicatif hides it when stderr is not a terminal.
pub fn epoch_bar(batches: usize, prefix: String) -> ProgressBar {
    let bar = ProgressBar::new(batches as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

/// What the engine measured of one training epoch, for the task's report row.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// The run's epoch number (from 1, over all stages).
    pub epoch: usize,
    /// Index of the stage in [`Task::stages`].
    pub stage: usize,
    /// Epochs of the stage finished before this one.
    pub stage_epoch: usize,
    /// The rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss per image.
    pub train_loss: f64,
    /// The task's per-image counter summed over the epoch (e.g. correct predictions).
    pub train_hits: usize,
    /// Images trained on.
    pub images: usize,
    /// Training images per second of the epoch (evaluation excluded).
    pub images_per_s: f64,
    /// Training and evaluation.
    pub epoch_s: f64,
}

/// The loss of one batch, and what the task counts of it (e.g. correct predictions).
pub struct BatchLoss {
    /// The weighted loss, a scalar tensor to differentiate.
    pub loss: Tensor<1>,
    /// What the task counts per batch (correct predictions; 0 for segmentation).
    pub hits: usize,
}

/// What a task supplies to the engine.
pub trait Task {
    /// A batch from the task's loader.
    type Batch: Send + 'static;
    /// What evaluation yields.
    type Eval;
    /// One row of the run's metrics (one per epoch).
    type Row: Clone + Serialize + DeserializeOwned;

    /// The run's stages, in order.
    fn stages(&self) -> &[Stage];
    /// Stage label for an epoch (a stage may vary its data per epoch, e.g. shrunk crops).
    fn epoch_label(&self, stage: usize, _stage_epoch: usize) -> &'static str {
        self.stages()[stage].name
    }
    /// The training loader of an epoch (seeded by the run's seed and `epoch`).
    fn loader(
        &self,
        stage: usize,
        stage_epoch: usize,
        epoch: usize,
        device: &Device,
    ) -> Arc<dyn DataLoader<Self::Batch>>;
    /// Splits a batch into its images and its targets.
    fn split(&self, batch: Self::Batch) -> (Tensor<4>, Self::Targets);
    /// Per-batch targets, passed from [`Task::split`] to [`Task::loss`].
    type Targets;
    /// The weighted loss of the head outputs against the targets.
    fn loss(&self, outputs: Vec<Tensor<4>>, targets: &Self::Targets, weights: &[f64]) -> BatchLoss;
    /// Images in a batch's targets.
    fn batch_len(&self, targets: &Self::Targets) -> usize;
    /// Evaluates the model (in inference mode).
    fn evaluate(&self, model: &SparseDenseNet) -> Result<Self::Eval>;
    /// The metrics row of a finished epoch.
    fn row(&self, stats: &EpochStats, eval: Self::Eval) -> Self::Row;
    /// The epoch a row belongs to (resume keeps the rows of finished epochs).
    fn row_epoch(row: &Self::Row) -> usize;
    /// The one-line summary printed after an epoch.
    fn epoch_line(&self, row: &Self::Row) -> String;
    /// The progress bar's message after a step.
    fn bar_message(&self, mean_loss: f64, hits: usize, images: usize, ips: f64, lr: f64) -> String;
    /// Writes the metric files of `rows` into the run directory.
    fn write_reports(&self, dir: &Path, rows: &[Self::Row]) -> Result<()>;
    /// The metrics of the last epoch's row that the run's summary reports.
    fn final_metrics(&self, row: &Self::Row) -> crate::training::run::FinalMetrics;
}

/// The autodiff copy of `device` that training steps run on. With `checkpointing`, burn's
/// gradient checkpointing: it recomputes some memory-bound operations of the plain-ops
/// layers (concatenation, batch norm, ReLU) in the backward pass instead of keeping their
/// outputs. On cubecl's allocator that measured 26-32 % less memory for V1 LOG and DENSE, but
/// DENSE still grows quadratically with depth: burn keeps tensors the size of each layer's
/// concatenated input, which the fused paths (CPU kernels, the recomputing GPU layer) never
/// keep (BENCHMARKS.md).
pub fn autodiff_device(device: &Device, checkpointing: bool) -> Device {
    let ad = device.clone().autodiff();
    if checkpointing {
        ad.gradient_checkpointing()
    } else {
        ad
    }
}

/// A run of a task in a directory.
pub struct Engine<'a> {
    /// The run directory (checkpoint, metrics, summary).
    pub dir: &'a Path,
    /// The plain device (autodiff is enabled on a copy for training).
    pub device: &'a Device,
    /// The run's seed, reseeded per epoch ([`seed_epoch`]).
    pub seed: u64,
    /// The optimiser, rebuilt from its state on resume.
    pub optimizer: Optimizer,
    /// Show a progress bar and a line per epoch.
    pub progress: bool,
    /// Stop after this many epochs in total, as a crash would (for resume tests).
    pub stop_after: Option<usize>,
    /// Train with gradient checkpointing ([`autodiff_device`]).
    pub checkpointing: bool,
}

impl Engine<'_> {
    /// Trains `model` through the task's stages from `state` (fresh, or loaded from the run
    /// directory's checkpoint when `resume`), writing a checkpoint and the reports after every
    /// epoch. Returns the model, the final state and all metric rows.
    pub fn run<T: Task>(
        &self,
        task: &T,
        mut model: SparseDenseNet,
        mut state: TrainState,
        resume: bool,
    ) -> Result<(SparseDenseNet, TrainState, Vec<T::Row>)> {
        let ad = autodiff_device(self.device, self.checkpointing);
        let mut optim = self.optimizer.build();
        let mut rows: Vec<T::Row> = Vec::new();
        if resume {
            let classes_now = state.class_names.clone();
            let metrics;
            (model, optim, state, metrics) =
                load_checkpoint(&self.dir.join(CHECKPOINT_FILE), model, optim)?;
            rows = if metrics.is_empty() {
                // A checkpoint of the first format: the rows come from metrics.json.
                saved_rows(self.dir, state.epochs_done, T::row_epoch)?
            } else {
                serde_json::from_slice(&metrics).context("the checkpoint's metric rows")?
            };
            if state.class_names != classes_now {
                return Err(crate::error::invalid(format!(
                    "--resume: the data's classes {classes_now:?} are not the run's {:?}",
                    state.class_names
                )));
            }
            // The metric files follow the checkpoint, whatever a kill left of them.
            if !rows.is_empty() {
                task.write_reports(self.dir, &rows)?;
            }
        }
        let stages = task.stages();
        let heads = model.graph.heads().len();
        let run_start = Instant::now();
        let wall_before = state.wall_s;
        // Seconds of training so far, across resumed runs: the budget counts them all.
        let spent = || wall_before + run_start.elapsed().as_secs_f64();
        // Under a budget the epoch counts are upper bounds, not a total to show.
        let total_epochs = match stages.iter().any(|s| s.budget.is_some()) {
            true => String::new(),
            false => format!("/{}", stages.iter().map(|s| s.epochs).sum::<usize>()),
        };
        if resume && (state.stage, state.stage_epoch) == (0, 0) {
            // A checkpoint that does not record its stage: its epochs ran stage after stage.
            state.stage_epoch = state.epochs_done;
        }
        while state.stage < stages.len() {
            let (si, se) = (state.stage, state.stage_epoch);
            let stage = &stages[si];
            if se >= stage.epochs {
                state.stage += 1;
                state.stage_epoch = se - stage.epochs;
                continue;
            }
            let epoch = state.epochs_done + 1;
            let mid_epoch_end = stage.budget.map(|(_, end)| end);
            let epoch_start_s = spent();
            if let Some(end) = mid_epoch_end {
                if epoch_start_s >= end {
                    // This stage's share of the budget is spent: on to the next stage.
                    state.stage += 1;
                    state.stage_epoch = 0;
                    continue;
                }
            }
            let weights = head_weights(heads, stage.final_head_only);
            seed_epoch(&ad, self.seed, epoch);
            let loader = task.loader(si, se, epoch, &ad);
            let steps = loader.num_items().div_ceil(stage.batch_size);
            let label = task.epoch_label(si, se);
            let bar = self.progress.then(|| {
                epoch_bar(
                    steps,
                    format!(
                        "epoch {epoch}{total_epochs}{}",
                        if stages.len() > 1 {
                            format!(" ({label})")
                        } else {
                            String::new()
                        }
                    ),
                )
            });
            let t0 = Instant::now();
            let (mut loss_sum, mut hits, mut seen) = (0.0, 0usize, 0usize);
            let mut lr = stage.lr;
            let mut stopped = false;
            for (step, batch) in loader.iter().enumerate() {
                let spent_s = spent();
                if mid_epoch_end.is_some_and(|end| spent_s >= end) {
                    stopped = true;
                    break;
                }
                let batch = batch.map_err(|e| anyhow::anyhow!("{e}"))?;
                lr = stage.schedule.lr(
                    stage.lr,
                    Progress {
                        stage_epoch: se,
                        step,
                        steps,
                        stage_epochs: stage.epochs,
                        spent_s,
                        budget: stage.budget,
                    },
                );
                let (images, targets) = task.split(batch);
                let n = task.batch_len(&targets);
                let mut batch_hits = 0;
                let (next, value) = train_step(model, &mut optim, lr, images, |outputs| {
                    let l = task.loss(outputs, &targets, &weights);
                    batch_hits = l.hits;
                    l.loss
                })
                .with_context(|| format!("epoch {epoch}, iteration {}", state.iteration))?;
                model = next;
                state.iteration += 1;
                loss_sum += value * n as f64;
                hits += batch_hits;
                seen += n;
                if let Some(bar) = &bar {
                    let ips = seen as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                    bar.set_message(task.bar_message(loss_sum / seen as f64, hits, seen, ips, lr));
                    bar.inc(1);
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let train_s = t0.elapsed().as_secs_f64();
            if stopped && seen == 0 {
                state.stage += 1;
                state.stage_epoch = 0;
                continue;
            }
            let eval = task.evaluate(&model.valid())?;
            state.epochs_done = epoch;
            state.stage_epoch += 1;
            if stopped {
                state.stage += 1;
                state.stage_epoch = 0;
            }
            state.wall_s = spent();
            let stats = EpochStats {
                epoch,
                stage: si,
                stage_epoch: se,
                lr,
                train_loss: loss_sum / seen.max(1) as f64,
                train_hits: hits,
                images: seen,
                images_per_s: seen as f64 / train_s.max(1e-9),
                epoch_s: t0.elapsed().as_secs_f64(),
            };
            let row = task.row(&stats, eval);
            if self.progress {
                eprintln!(
                    "epoch {epoch}{total_epochs} ({label}): {}",
                    task.epoch_line(&row)
                );
                if stopped {
                    eprintln!(
                        "the {label} stage's budget (to {:.0} s) was spent {seen} images into epoch {epoch}",
                        mid_epoch_end.unwrap_or_default()
                    );
                }
            }
            rows.push(row);
            // Weights and metrics of the epoch are committed together by the checkpoint's
            // rename; the metric files are derived from it.
            let metrics = serde_json::to_vec(&rows).context("the metric rows")?;
            save_checkpoint(self.dir, &model, &optim, &state, metrics)?;
            task.write_reports(self.dir, &rows)?;
            if self.stop_after.is_some_and(|k| epoch >= k) {
                break;
            }
        }
        Ok((model, state, rows))
    }
}

/// The per-epoch metrics a run directory already holds, up to `epochs_done` (for resume).
pub fn saved_rows<T: DeserializeOwned>(
    dir: &Path,
    epochs_done: usize,
    epoch_of: impl Fn(&T) -> usize,
) -> Result<Vec<T>> {
    let metrics = dir.join("metrics.json");
    if !metrics.exists() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<T> = serde_json::from_slice(&std::fs::read(&metrics)?)
        .with_context(|| format!("bad {}", metrics.display()))?;
    rows.retain(|r| epoch_of(r) <= epochs_done);
    Ok(rows)
}

/// A run directory held by this process while it trains: the lock is released when this is
/// dropped, or when the process ends however it ends.
pub struct RunLock {
    _file: std::fs::File,
}

/// A finished run's summary: its presence marks the run finished.
pub const SUMMARY_FILE: &str = "summary.json";
/// The lock a training holds on its run directory.
pub const LOCK_FILE: &str = "run.lock";

/// The files a run writes, removed by `--overwrite`.
const RUN_FILES: [&str; 7] = [
    CHECKPOINT_FILE,
    "checkpoint.tmp",
    "metrics.csv",
    "metrics.json",
    "curves.png",
    SUMMARY_FILE,
    "summary.tmp",
];

/// Opens `dir` for a training run: creates it and takes its lock (`run.lock`), refusing a
/// directory another training holds. A directory that already holds a run (a checkpoint or
/// metrics) is refused unless `resume` (continue it) or `overwrite` (replace it: its
/// checkpoint and metric files are removed first); `resume` needs a checkpoint.
pub fn open_run_dir(dir: &Path, resume: bool, overwrite: bool) -> Result<RunLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    let lock_path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if !try_lock(&file) {
        let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
        return Err(crate::error::invalid(format!(
            "run directory {} is in use by another training (process {}); wait for it, or \
             choose another --out",
            dir.display(),
            holder.trim()
        )));
    }
    {
        use std::io::{Seek, Write};
        let mut f = &file;
        let _ = f.set_len(0);
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = write!(f, "{}", std::process::id());
    }
    // A temporary checkpoint is what a process killed mid-write left: never a whole one.
    let _ = std::fs::remove_file(dir.join("checkpoint.tmp"));
    let holds_run = ["metrics.json", CHECKPOINT_FILE]
        .iter()
        .any(|f| dir.join(f).exists());
    if resume {
        if !dir.join(CHECKPOINT_FILE).exists() {
            return Err(crate::error::invalid(format!(
                "--resume: {} holds no checkpoint to continue from",
                dir.display()
            )));
        }
    } else if holds_run {
        if !overwrite {
            return Err(crate::error::invalid(format!(
                "run directory {} already holds a run; continue it with --resume {}, replace it \
                 with --overwrite, or choose another --out",
                dir.display(),
                dir.display()
            )));
        }
        for f in RUN_FILES {
            match std::fs::remove_file(dir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("--overwrite: cannot remove {}", dir.join(f).display())
                    })
                }
            }
        }
    }
    Ok(RunLock { _file: file })
}

/// Whether another process (or another open of the file) holds `dir`'s run lock, that is,
/// trains in it now: probed by taking the lock and letting it go at once.
pub fn lock_is_held(dir: &Path) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
    {
        Ok(file) => !try_lock(&file),
        Err(_) => false,
    }
}

/// An exclusive, non-blocking lock on `file` (`flock`); where there is no `flock`, no lock.
fn try_lock(file: &std::fs::File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor this function borrows for the call; the lock
        // lives as long as the descriptor.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        true
    }
}

/// Writes the run's final summary (atomically) as `summary.json`.
pub fn write_summary<S: Serialize>(dir: &Path, summary: &S) -> Result<()> {
    report::write_json_atomic(&dir.join(SUMMARY_FILE), summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stage_epoch: usize, step: usize, spent_s: f64) -> Progress {
        Progress {
            stage_epoch,
            step,
            steps: 10,
            stage_epochs: 4,
            spent_s,
            budget: Some((100.0, 900.0)),
        }
    }

    #[test]
    fn schedules() {
        let step = Schedule::Step {
            milestones: vec![0.5, 0.75],
            gamma: 0.1,
        };
        assert_eq!(step.lr(0.1, at(0, 0, 0.0)), 0.1);
        assert!((step.lr(0.1, at(1, 9, 0.0)) - 0.1).abs() < 1e-15);
        assert!((step.lr(0.1, at(2, 0, 0.0)) - 0.01).abs() < 1e-15);
        assert!((step.lr(0.1, at(3, 0, 0.0)) - 0.001).abs() < 1e-15);
        let exp = Schedule::Exponential { decay: 0.5 };
        assert_eq!(exp.lr(2e-3, at(0, 7, 0.0)), 2e-3);
        assert_eq!(exp.lr(2e-3, at(2, 0, 0.0)), 5e-4);
        assert_eq!(Schedule::Cosine.lr(2e-3, at(0, 0, 0.0)), 2e-3);
        assert!((Schedule::Cosine.lr(2e-3, at(2, 0, 0.0)) - 1e-3).abs() < 1e-12);
        assert!(Schedule::Cosine.lr(2e-3, at(3, 9, 0.0)) < 2e-3 * 0.01);
        assert!(
            Schedule::Cosine.lr(2e-3, at(1, 5, 0.0)) < Schedule::Cosine.lr(2e-3, at(1, 4, 0.0))
        );
        // Under a budget the cosine follows whichever ends first: the iterations, or the
        // seconds spent within the stage's share [100, 900).
        let b = Schedule::Cosine;
        assert_eq!(b.lr(2e-3, at(0, 0, 100.0)), 2e-3);
        assert_eq!(
            b.lr(2e-3, at(0, 0, 50.0)),
            2e-3,
            "before its share: the base rate"
        );
        assert!(
            (b.lr(2e-3, at(0, 0, 500.0)) - 1e-3).abs() < 1e-12,
            "half of the share spent at the first step: half the rate"
        );
        assert!(
            (b.lr(2e-3, at(2, 0, 110.0)) - 1e-3).abs() < 1e-12,
            "half of the iterations done early in the share: half the rate"
        );
        assert!((b.lr(2e-3, at(0, 0, 300.0)) - 1e-3 * (1.0 + 0.5f64.sqrt())).abs() < 1e-12);
        assert_eq!(b.lr(2e-3, at(0, 0, 900.0)), 0.0);
        assert_eq!(b.lr(2e-3, at(0, 0, 950.0)), 0.0, "past the share: still 0");
        // Without a budget the seconds do not count: the rate is a function of the step.
        let unbudgeted = Progress {
            budget: None,
            ..at(1, 3, 0.0)
        };
        let later = Progress {
            spent_s: 1e6,
            ..unbudgeted
        };
        assert_eq!(b.lr(2e-3, unbudgeted), b.lr(2e-3, later));
        assert_eq!(Schedule::Constant.lr(0.3, at(3, 9, 1e6)), 0.3);
    }

    #[test]
    fn run_directories_are_locked_and_never_clobbered() {
        let dir = std::env::temp_dir().join(format!("logdense-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lock = open_run_dir(&dir, false, false).unwrap();
        // A second training into the same directory is refused while the first holds it.
        let e = open_run_dir(&dir, false, false).err().unwrap();
        assert!(crate::error::is_invalid_input(&e));
        assert!(e.to_string().contains("in use by another training"), "{e}");
        drop(lock);
        // A finished run is refused without --resume or --overwrite.
        std::fs::write(dir.join(CHECKPOINT_FILE), b"x").unwrap();
        std::fs::write(dir.join("metrics.csv"), b"x").unwrap();
        let e = open_run_dir(&dir, false, false).err().unwrap().to_string();
        assert!(
            e.contains("already holds a run") && e.contains("--overwrite"),
            "{e}"
        );
        assert!(
            dir.join(CHECKPOINT_FILE).exists(),
            "a refused start removed nothing"
        );
        drop(open_run_dir(&dir, true, false).unwrap());
        drop(open_run_dir(&dir, false, true).unwrap());
        assert!(!dir.join(CHECKPOINT_FILE).exists() && !dir.join("metrics.csv").exists());
        let e = open_run_dir(&dir, true, false).err().unwrap().to_string();
        assert!(e.contains("holds no checkpoint"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn head_weights_follow_the_spec() {
        assert_eq!(head_weights(3, false), vec![0.25, 0.25, 0.5]);
        assert_eq!(head_weights(3, true), vec![0.0, 0.0, 1.0]);
        assert_eq!(head_weights(1, false), vec![1.0]);
        let w = head_weights(5, false);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
