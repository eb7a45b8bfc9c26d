//! Classification: the task the engine trains image classifiers with (deep supervision and the
//! final-head-only epoch come from the shared stages), its loss, evaluation and metrics.

use crate::datasets::{load_data, Items};
use crate::error::invalid;
use crate::training::config::TaskConfig;
use crate::training::engine::{self, BatchLoss, EpochStats, Stage, Task};
use crate::training::report::{self, EpochMetrics};
use crate::training::run::{FinalMetrics, Prepared};
use crate::SparseDenseNet;
use anyhow::Result;
use burn::data::dataloader::DataLoader;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use logdense_data::{ClassBatch, ClassBatcher};
use std::path::Path;
use std::sync::Arc;

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

    fn final_metrics(&self, row: &EpochMetrics) -> FinalMetrics {
        FinalMetrics {
            test_accuracy: Some(row.test_accuracy),
            ..FinalMetrics::default()
        }
    }
}

/// Loads the data of a classification config and sets up its task.
pub fn prepare(cfg: &TaskConfig, device: &Device) -> Result<Prepared<Classify>> {
    let data = load_data(cfg)?;
    let mut spec = cfg.net_spec()?;
    spec.input = data.input;
    spec.classes = data.class_names.len();
    let graph = spec
        .build()
        .map_err(|e| invalid(format!("model does not fit the data: {e}")))?;
    let task = Classify {
        stages: cfg.stages(graph.heads().len()),
        train: data.train,
        test: data.test,
        batcher: ClassBatcher::train(
            data.mean.clone(),
            data.std.clone(),
            cfg.data.augment.clone(),
            cfg.seed,
        ),
        eval_batcher: ClassBatcher::eval(
            data.mean.clone(),
            data.std.clone(),
            cfg.data.augment.clone(),
        ),
        seed: cfg.seed,
        workers: cfg.data.workers,
        device: device.clone(),
    };
    Ok(Prepared {
        fits: vec![(
            spec.clone(),
            cfg.optim.batch_size,
            "optim.batch_size (--batch-size)",
        )],
        spec,
        mean: data.mean,
        std: data.std,
        class_names: data.class_names,
        task,
    })
}
