//! Classification: the task the engine trains for image classifiers (SGD with Nesterov
//! momentum and step decay or a cosine over the epochs or the wall-clock budget, deep
//! supervision, the final-head-only epochs), its loss, evaluation and metrics.

use crate::checkpoint::{load_trained, TrainState};
use crate::config::{ClassSchedule, TrainConfig};
use crate::datasets::{load_data, ClassData, Items};
use crate::engine::{self, BatchLoss, Engine, EpochStats, Schedule, Stage, Task};
use crate::error::invalid;
use crate::report::{self, EpochMetrics};
use crate::SparseDenseNet;
use anyhow::{Context, Result};
use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use logdense_data::{ClassBatch, ClassBatcher};
use logdense_graph::NetSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const CONFIG_FILE: &str = "config.toml";

/// The network spec with the data's input shape and class count.
pub fn spec_for_data(cfg: &TrainConfig, data: &ClassData) -> Result<NetSpec> {
    let mut spec = cfg.net_spec()?;
    spec.input = data.input;
    spec.classes = data.class_names.len();
    spec.build()
        .map_err(|e| invalid(format!("model does not fit the data: {e}")))?;
    Ok(spec)
}

/// Mean cross-entropy of logits `[N, C]` against labels `[N]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .mean()
        .neg()
}

/// Number of correct top-1 predictions.
pub fn correct(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> usize {
    let [n, _] = logits.dims();
    let pred = logits.clone().argmax(1).reshape([n]);
    pred.equal(targets.clone()).int().sum().into_scalar::<i64>() as usize
}

fn flatten(head: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = head.dims();
    head.reshape([n, c])
}

/// The classification loss of a batch: the head-weighted cross-entropy of every head's logits
/// (`[N, C, 1, 1]`) against `targets`, and the final head's correct predictions.
pub fn classify_loss(
    outputs: Vec<Tensor<4>>,
    targets: &Tensor<1, Int>,
    weights: &[f64],
) -> BatchLoss {
    let logits: Vec<Tensor<2>> = outputs.into_iter().map(flatten).collect();
    let hits = logits
        .last()
        .map_or(0, |l| correct(&l.clone().detach(), targets));
    let loss = engine::weighted_loss(logits, weights, |_, l| cross_entropy(l, targets.clone()))
        .expect("the final head has weight");
    BatchLoss { loss, hits }
}

/// Test loss and accuracy of the final prediction.
pub fn evaluate(
    model: &SparseDenseNet,
    loader: Arc<dyn DataLoader<ClassBatch>>,
) -> Result<(f64, f64)> {
    let (mut loss, mut right, mut seen) = (0.0, 0, 0);
    for batch in loader.iter() {
        let batch = batch.map_err(|e| anyhow::anyhow!("{e}"))?;
        let n = batch.targets.dims()[0];
        let logits = flatten(model.forward(batch.images));
        right += correct(&logits, &batch.targets);
        loss += cross_entropy(logits, batch.targets).into_scalar::<f32>() as f64 * n as f64;
        seen += n;
    }
    Ok((loss / seen.max(1) as f64, right as f64 / seen.max(1) as f64))
}

impl TrainConfig {
    /// The optimiser of this configuration.
    pub fn optimizer(&self) -> engine::Optimizer {
        let o = &self.optim;
        engine::Optimizer {
            rule: engine::Rule::Sgd {
                momentum: o.momentum,
                nesterov: o.nesterov,
            },
            weight_decay: o.weight_decay,
        }
    }

    /// The stages of a run over `heads` heads: the main schedule, then (with auxiliary heads)
    /// the final-head-only epochs at the rate the step schedule ends at (`lr x gamma` per
    /// milestone). With a wall-clock budget and `budget-cosine`, the main stage anneals over
    /// the budget less the final-only share, and the final-only stage takes that share.
    pub fn stages(&self, heads: usize) -> Vec<Stage> {
        let o = &self.optim;
        let final_only_epochs = if heads > 1 { o.final_only_epochs } else { 0 };
        let budget = o
            .budget_s()
            .filter(|_| o.lr_schedule == ClassSchedule::BudgetCosine);
        let final_share = if final_only_epochs > 0 {
            o.final_only_share
        } else {
            0.0
        };
        let split = budget.map(|b| b * (1.0 - final_share));
        let mut stages = vec![Stage {
            name: "main",
            epochs: o.epochs,
            batch_size: o.batch_size,
            lr: o.lr,
            schedule: match o.lr_schedule {
                ClassSchedule::Step => Schedule::Step {
                    milestones: o.milestones.clone(),
                    gamma: o.gamma,
                },
                ClassSchedule::Cosine => Schedule::Cosine,
                ClassSchedule::BudgetCosine => Schedule::BudgetCosine,
            },
            final_head_only: false,
            budget: split.map(|end| (0.0, end)),
        }];
        if final_only_epochs > 0 {
            let drops = o.milestones.iter().filter(|&&m| m < 1.0).count();
            stages.push(Stage {
                name: "final-only",
                epochs: final_only_epochs,
                batch_size: o.batch_size,
                lr: o.lr * o.gamma.powi(drops as i32),
                schedule: Schedule::Constant,
                final_head_only: true,
                budget: budget.zip(split).map(|(end, start)| (start, end)),
            });
        }
        stages
    }
}

/// Image classification as the engine trains it.
pub struct Classify {
    stages: Vec<Stage>,
    train: Items,
    test: Items,
    batcher: ClassBatcher,
    eval_batcher: ClassBatcher,
    seed: u64,
    workers: usize,
    /// The plain device evaluation runs on.
    device: Device,
}

impl Task for Classify {
    type Batch = ClassBatch;
    type Targets = Tensor<1, Int>;
    type Eval = (f64, f64);
    type Row = EpochMetrics;

    fn stages(&self) -> &[Stage] {
        &self.stages
    }

    fn loader(
        &self,
        stage: usize,
        _: usize,
        epoch: usize,
        device: &Device,
    ) -> Arc<dyn DataLoader<ClassBatch>> {
        logdense_data::loader_on(
            self.train.clone(),
            self.batcher.at_epoch(epoch),
            self.stages[stage].batch_size,
            Some(self.seed),
            self.workers,
            device,
        )
    }

    fn split(&self, batch: ClassBatch) -> (Tensor<4>, Tensor<1, Int>) {
        (batch.images, batch.targets)
    }

    fn batch_len(&self, targets: &Tensor<1, Int>) -> usize {
        targets.dims()[0]
    }

    fn loss(
        &self,
        outputs: Vec<Tensor<4>>,
        targets: &Tensor<1, Int>,
        weights: &[f64],
    ) -> BatchLoss {
        classify_loss(outputs, targets, weights)
    }

    fn evaluate(&self, model: &SparseDenseNet) -> Result<(f64, f64)> {
        let loader = logdense_data::loader_on(
            self.test.clone(),
            self.eval_batcher.clone(),
            256,
            None,
            self.workers,
            &self.device,
        );
        evaluate(model, loader)
    }

    fn row(&self, s: &EpochStats, (test_loss, test_accuracy): (f64, f64)) -> EpochMetrics {
        EpochMetrics {
            epoch: s.epoch,
            lr: s.lr,
            final_only: self.stages[s.stage].final_head_only,
            train_loss: s.train_loss,
            train_accuracy: s.train_hits as f64 / s.images.max(1) as f64,
            test_loss,
            test_accuracy,
            images_per_s: s.images_per_s,
            epoch_s: s.epoch_s,
        }
    }

    fn row_epoch(row: &EpochMetrics) -> usize {
        row.epoch
    }

    fn epoch_line(&self, r: &EpochMetrics) -> String {
        format!(
            "train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.0} img/s, {:.1} s",
            r.train_loss,
            100.0 * r.train_accuracy,
            r.test_loss,
            100.0 * r.test_accuracy,
            r.images_per_s,
            r.epoch_s
        )
    }

    fn bar_message(&self, loss: f64, hits: usize, images: usize, ips: f64, lr: f64) -> String {
        format!(
            "loss {loss:.4} acc {:.2}% {ips:.0} img/s lr {lr:.3e}",
            100.0 * hits as f64 / images.max(1) as f64
        )
    }

    fn write_reports(&self, dir: &Path, rows: &[EpochMetrics]) -> Result<()> {
        report::write_all(dir, rows)
    }
}

/// A training run in a directory.
pub struct Run {
    pub dir: PathBuf,
    pub cfg: TrainConfig,
    pub device: Device,
    /// Show a progress bar (off in tests).
    pub progress: bool,
    /// Stop after this many epochs in total, as a crash would (for resume tests).
    pub stop_after: Option<usize>,
    /// Replace a run the directory already holds (otherwise it is refused unless resumed).
    pub overwrite: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub test_accuracy: f64,
    pub epochs: usize,
    pub wall_s: f64,
    pub params: usize,
    /// Whether the fused CPU kernels ran the layers.
    pub fused: bool,
    /// The fused kernels' precision that ran (`f32` or `bf16`).
    pub precision: &'static str,
}

impl Run {
    /// Trains from scratch, or continues from the run directory's checkpoint if `resume`.
    pub fn train(&self, resume: bool) -> Result<(SparseDenseNet, Summary)> {
        let cfg = &self.cfg;
        cfg.validate().map_err(|e| invalid(format!("{e:#}")))?;
        let _lock = engine::open_run_dir(&self.dir, resume, self.overwrite)?;
        let data = load_data(cfg)?;
        let spec = spec_for_data(cfg, &data)?;
        crate::resources::check_training_fits(
            &spec,
            cfg.optim.batch_size,
            "optim.batch_size (--batch-size)",
        )?;
        let ad = self.device.clone().autodiff();
        ad.seed(cfg.seed);
        let model = SparseDenseNet::new_with(&spec, &cfg.net_options(), &ad)?;
        let precision = crate::fused::set_precision(cfg.model.precision);
        let state = TrainState::fresh(
            spec.clone(),
            cfg.seed,
            data.mean.clone(),
            data.std.clone(),
            data.class_names.clone(),
        );
        report::write_atomic(&self.dir.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
        let task = Classify {
            stages: cfg.stages(model.graph.heads().len()),
            train: data.train,
            test: data.test,
            batcher: ClassBatcher::train(
                data.mean.clone(),
                data.std.clone(),
                cfg.data.augment.clone(),
                cfg.seed,
            ),
            eval_batcher: ClassBatcher::eval(data.mean, data.std, cfg.data.augment.clone()),
            seed: cfg.seed,
            workers: cfg.data.workers,
            device: self.device.clone(),
        };
        let engine = Engine {
            dir: &self.dir,
            device: &self.device,
            seed: cfg.seed,
            optimizer: cfg.optimizer(),
            max_train_s: cfg.optim.budget_s(),
            progress: self.progress,
            stop_after: self.stop_after,
        };
        let (model, state, rows) = engine.run(&task, model, state, resume)?;
        let summary = Summary {
            test_accuracy: rows.last().map(|r| r.test_accuracy).unwrap_or(0.0),
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

/// A trained model loaded from a run directory, for eval and predict.
pub struct Trained {
    pub cfg: TrainConfig,
    pub model: SparseDenseNet,
    pub state: TrainState,
}

impl Trained {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = TrainConfig::load(&dir.join(CONFIG_FILE))
            .with_context(|| format!("{} is not a logdense run directory", dir.display()))?;
        let (model, state) = load_trained(dir, device)?;
        Ok(Trained { cfg, model, state })
    }
}
