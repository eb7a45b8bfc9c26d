//! Semantic segmentation: FC-Log-DenseNet / FC-DenseNet training on data in the SegNet layout
//! (CamVid, or the generated fashion-scenes), evaluation from one confusion matrix over the
//! whole set, and Fig. 2-style prediction pictures.
//!
//! Training follows Jegou et al. as the paper does: RMSprop, learning rate decayed by a factor
//! each epoch, random crops with flips, then a fine-tuning stage on full images with its own
//! rate and batch size. Every head is trained (deep supervision): auxiliary heads compare with
//! the label map subsampled to their scale (nearest neighbour, which SPEC.md allows).

use crate::error::invalid;
use crate::training::checkpoint::TrainState;
use crate::training::config::TaskConfig;
use crate::training::engine::{self, BatchLoss, EpochStats, Stage, Task};
use crate::training::report::{self, Panel};
use crate::training::run::{FinalMetrics, Prepared};
use crate::SparseDenseNet;
use anyhow::{Context, Result};
use burn::data::dataloader::DataLoader;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use logdense_data::seg::{
    load_camvid, subsample_labels, ConfusionMatrix, SegBatch, SegBatcher, SegEpochShare,
    SegInMemory, SegItem, SegSplit,
};
use logdense_graph::NetSpec;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

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
    /// The run's epoch number, from 1 over all stages.
    pub epoch: usize,
    /// The stage's label (`crops`, `low-res crops`, `finetune`, `final-only`).
    pub stage: String,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss per image.
    pub train_loss: f64,
    /// Mean IoU on the evaluated split.
    pub mean_iou: f64,
    /// Fraction of labelled pixels of the evaluated split predicted correctly.
    pub global_accuracy: f64,
    /// IoU per class (`None` where a class never occurs).
    pub per_class_iou: Vec<Option<f64>>,
    /// Training images per second.
    pub images_per_s: f64,
    /// Seconds of the epoch, training and evaluation.
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
    cfg: TaskConfig,
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

    fn loader(
        &self,
        stage: usize,
        stage_epoch: usize,
        epoch: usize,
        device: &Device,
    ) -> Arc<dyn DataLoader<SegBatch>> {
        let cfg = &self.cfg;
        let whole = self.stages[stage].whole_images;
        let batcher = SegBatcher::train(
            self.mean.clone(),
            self.std.clone(),
            (!whole).then_some(self.crop),
            cfg.data.augment.flip,
            cfg.seed,
        )
        .at_epoch(epoch)
        .with_downscale(if self.low_res(stage, stage_epoch) {
            cfg.optim.low_res_factor
        } else {
            1
        });
        // A crop-stage epoch reads its share of the set when `epoch_images` is set.
        let epoch_set: Arc<dyn Dataset<SegItem>> =
            match cfg.data.epoch_images.filter(|_| stage == 0) {
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

    fn final_metrics(&self, row: &SegEpochMetrics) -> FinalMetrics {
        FinalMetrics {
            mean_iou: Some(row.mean_iou),
            global_accuracy: Some(row.global_accuracy),
            per_class_iou: Some(row.per_class_iou.clone()),
            ..FinalMetrics::default()
        }
    }
}

/// The network of a segmentation config for images of `height x width` with `classes` classes.
pub fn net_spec_for(
    cfg: &TaskConfig,
    classes: usize,
    height: usize,
    width: usize,
) -> Result<NetSpec> {
    let mut spec = cfg.net_spec()?;
    spec.classes = classes;
    spec.input = [3, height, width];
    spec.build()
        .map_err(|e| invalid(format!("model does not fit the data: {e}")))?;
    Ok(spec)
}

/// Loads the data of a segmentation config (SegNet layout) and sets up its task.
pub fn prepare(cfg: &TaskConfig, device: &Device) -> Result<Prepared<Segment>> {
    let dir = cfg.dataset()?.dir(cfg.data.dir.as_deref())?;
    if !dir.exists() {
        return Err(invalid(format!(
            "data.dir (--data): {} does not exist (generate a data set with `logdense data fashion-scenes --out {}`, or point --data at CamVid in the SegNet layout)",
            dir.display(),
            dir.display()
        )));
    }
    let mut train_set = load_camvid(&dir, SegSplit::Train)?;
    let mut eval_set = load_camvid(&dir, cfg.data.eval_split)?;
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
    let spec = net_spec_for(cfg, classes, crop.0, crop.1)?;
    net_spec_for(cfg, classes, eval_set.height, eval_set.width).context("evaluation images")?;
    if cfg.optim.low_res_epochs > 0 {
        let f = cfg.optim.low_res_factor;
        net_spec_for(cfg, classes, crop.0 / f, crop.1 / f)
            .context("optim.low_res_factor: the shrunk crops")?;
    }
    let stages = cfg.stages(spec.build()?.heads().len());
    let mut fits = vec![(
        spec.clone(),
        cfg.optim.batch_size,
        "optim.batch_size (--batch-size)",
    )];
    if stages
        .iter()
        .any(|s| s.whole_images && s.name == "finetune")
    {
        let full = net_spec_for(cfg, classes, train_set.height, train_set.width)?;
        fits.push((
            full,
            cfg.optim.finetune_batch_size,
            "optim.finetune_batch_size",
        ));
    }
    let (mean, std) = train_set.channel_mean_std();
    let class_names = train_set.class_names.clone();
    let mut class_weights = weights.unwrap_or_else(|| vec![1.0; classes]);
    class_weights.push(0.0);
    let ad = crate::training::engine::autodiff_device(device, cfg.model.gradient_checkpointing);
    let task = Segment {
        cfg: cfg.clone(),
        stages,
        train: SegInMemory::new(train_set),
        eval: SegInMemory::new(eval_set),
        crop,
        classes,
        mean: mean.clone(),
        std: std.clone(),
        class_weights: Tensor::<1>::from_data(TensorData::new(class_weights, [classes + 1]), &ad),
        device: device.clone(),
    };
    Ok(Prepared {
        task,
        spec,
        fits,
        mean,
        std,
        class_names,
    })
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

    fn seg(text: &str) -> TaskConfig {
        TaskConfig::from_toml(text, logdense_graph::TaskKind::Segment).unwrap()
    }

    /// The rate at `epoch` (from 1, crop stage then fine-tune stage), `step` of 10 steps into
    /// it, `spent_s` seconds into the run.
    fn lr_at(cfg: &TaskConfig, epoch: usize, step: usize, spent_s: f64) -> f64 {
        let stages = cfg.stages(3);
        let (stage, stage_epoch) = if epoch > cfg.optim.epochs {
            (&stages[1], epoch - cfg.optim.epochs - 1)
        } else {
            (&stages[0], epoch - 1)
        };
        stage.schedule.lr(
            stage.lr,
            crate::training::engine::Progress {
                stage_epoch,
                step,
                steps: 10,
                stage_epochs: stage.epochs,
                spent_s,
                budget: stage.budget,
            },
        )
    }

    #[test]
    fn the_shipped_recipe_loads_and_builds() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/fashion-scenes.toml");
        let cfg = TaskConfig::load(&path, logdense_graph::TaskKind::Segment).unwrap();
        assert_eq!(cfg.task, logdense_graph::TaskKind::Segment);
        assert_eq!(cfg.optim.max_train_s, Some(870.0));
        let spec = net_spec_for(&cfg, 11, 64, 64).unwrap();
        assert_eq!(spec.blocks, vec![1, 1, 2, 4, 14, 4, 2, 1, 1]);
        assert_eq!(spec.block_growth, vec![8, 12, 16, 24, 32, 24, 16, 8, 6]);
        assert_eq!((spec.stem.width, spec.aux_min_stride), (16, 2));
        // The recipe's budget ends its cosine before its 50 epochs would.
        assert_eq!(cfg.stages(3)[0].budget, Some((0.0, 870.0)));
    }

    #[test]
    fn learning_rate_schedules() {
        let mut o = seg("[optim]\nepochs = 4\nlr = 2e-3\nlr_decay = 0.5");
        assert_eq!(lr_at(&o, 1, 7, 0.0), 2e-3);
        assert_eq!(lr_at(&o, 3, 0, 0.0), 5e-4);
        o.optim.lr_schedule = crate::training::config::LrSchedule::Cosine;
        assert_eq!(lr_at(&o, 1, 0, 0.0), 2e-3);
        assert!(
            (lr_at(&o, 3, 0, 0.0) - 1e-3).abs() < 1e-12,
            "half way: half the rate"
        );
        assert!(
            lr_at(&o, 4, 9, 0.0) < 2e-3 * 0.01,
            "annealed by the last step"
        );
        assert!(
            lr_at(&o, 2, 5, 0.0) < lr_at(&o, 2, 4, 0.0),
            "falls within an epoch"
        );
        // The fine-tune stage after the 4 crop epochs: its own rate, decayed per epoch.
        assert_eq!(lr_at(&o, 5, 3, 0.0), o.optim.finetune_lr);
        assert_eq!(lr_at(&o, 6, 0, 0.0), o.optim.finetune_lr * 0.5);
        let parsed = seg("[optim]\noptimizer = \"adam\"\nlr_schedule = \"cosine\"");
        assert_eq!(parsed.optimizer().rule, crate::training::engine::Rule::Adam);
        assert_eq!(
            parsed.optim.lr_schedule,
            crate::training::config::LrSchedule::Cosine
        );
    }

    #[test]
    fn a_budget_anneals_over_whichever_ends_first() {
        let o =
            seg("[optim]\nepochs = 50\nlr = 2e-3\nlr_schedule = \"cosine\"\nmax_train_s = 800.0");
        // Early in 50 epochs, the seconds spent out of the budget lead.
        assert_eq!(lr_at(&o, 1, 0, 0.0), 2e-3);
        assert!((lr_at(&o, 1, 0, 400.0) - 1e-3).abs() < 1e-12, "half way");
        assert!((lr_at(&o, 1, 0, 200.0) - 1e-3 * (1.0 + 0.5f64.sqrt())).abs() < 1e-12);
        assert_eq!(lr_at(&o, 9, 5, 800.0), 0.0);
        assert_eq!(lr_at(&o, 9, 5, 950.0), 0.0, "past the budget: still 0");
        // With few epochs, the iterations lead.
        let short =
            seg("[optim]\nepochs = 2\nlr = 2e-3\nlr_schedule = \"cosine\"\nmax_train_s = 800.0");
        assert!((lr_at(&short, 2, 0, 10.0) - 1e-3).abs() < 1e-12);
        // Earlier configs' budget-cosine is the cosine with its budget.
        let legacy = seg("[optim]\nlr_schedule = \"budget-cosine\"\nmax_train_s = 870.0");
        assert_eq!(
            legacy.optim.lr_schedule,
            crate::training::config::LrSchedule::Cosine
        );
        assert_eq!(legacy.optim.max_train_s, Some(870.0));
    }

    #[test]
    fn new_model_and_schedule_options_parse_and_are_checked() {
        let parsed = seg(
            "[model]\npreset = \"fc-ld-scenes\"\nstem_stride = 2\nblock_growth = [8, 8, 12, 16, 24, 16, 12, 8, 8]\n[optim]\nepochs = 5\nlow_res_epochs = 2",
        );
        let spec = net_spec_for(&parsed, 11, 64, 64).unwrap();
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
        let msg = net_spec_for(&wrong, 11, 64, 64).unwrap_err().to_string();
        assert!(msg.contains("block_growth"), "{msg}");
        let shares = seg("[data]\nepoch_images = 12500\n[optim]\nepochs = 6");
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
            ..crate::model::presets::preset("fc-ld-small").unwrap()
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
