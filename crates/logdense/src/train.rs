//! Classification training: SGD with Nesterov momentum and step decay, deep supervision, the
//! final-only epoch, per-epoch evaluation, metrics, plots and atomic checkpoints.

use crate::checkpoint::{Checkpoint, TrainState};
use crate::config::TrainConfig;
use crate::report::{self, EpochMetrics};
use crate::SparseDenseNet;
use anyhow::{bail, Context, Result};
use burn::data::dataloader::DataLoader;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use logdense_data::{
    load_cifar10, load_cifar100, load_fashion_mnist, load_mnist, load_svhn, ClassBatch,
    ClassBatcher, ImageItem, ImageSet, InMemory, Split,
};
use logdense_graph::NetSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const CHECKPOINT_FILE: &str = "checkpoint.ldck";
pub const CONFIG_FILE: &str = "config.toml";

/// The compute device: burn's `flex` CPU backend, or Vulkan with the `vulkan` feature.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "vulkan")]
        "vulkan" | "gpu" => vulkan_device(),
        other => bail!(
            "--device: unknown device '{other}' (cpu{})",
            if cfg!(feature = "vulkan") {
                ", vulkan"
            } else {
                "; build with --features vulkan for GPUs"
            }
        ),
    }
}

/// The default Vulkan adapter, probed with one tiny tensor: without an adapter burn panics in
/// its device thread, and a user should get an error that says what is missing instead.
#[cfg(feature = "vulkan")]
fn vulkan_device() -> Result<Device> {
    let device = Device::vulkan(burn::tensor::DeviceKind::default());
    let probe = device.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let usable = std::panic::catch_unwind(move || {
        Tensor::<1>::zeros([1], &probe).into_data();
    })
    .is_ok();
    std::panic::set_hook(hook);
    if !usable {
        bail!(
            "--device vulkan: no usable Vulkan adapter (a GPU driver with Vulkan support and the \
             Vulkan loader, libvulkan1, are needed)"
        );
    }
    Ok(device)
}

/// An item source for the loaders: in memory, or decoded lazily from image files.
pub type Items = Arc<dyn Dataset<ImageItem>>;

/// A classification data set ready for training: both splits and what the network and the
/// normalisation need to know about them.
pub struct ClassData {
    pub train: Items,
    pub test: Items,
    /// Channels, height and width of the images the network sees (after the eval transform).
    pub input: [usize; 3],
    pub class_names: Vec<String>,
    /// Per-channel statistics of the training images, in [0, 1] units.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Images whose statistics are estimated for lazily decoded (ImageNet-style) data sets.
pub const STATS_SAMPLE: usize = 512;

/// Loads the configured train and test sets.
pub fn load_data(cfg: &TrainConfig) -> Result<ClassData> {
    let d = &cfg.data;
    let dir = d
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(logdense_data::FASHION_MNIST_DIR));
    if d.dataset == "folder" {
        return load_folders(cfg, &dir);
    }
    let load = |split: Split| -> Result<ImageSet> {
        Ok(match d.dataset.as_str() {
            "fashion-mnist" => load_fashion_mnist(&dir, split)?,
            "mnist" => load_mnist(&dir, split)?,
            "cifar10" => load_cifar10(&dir, split)?,
            "cifar100" => load_cifar100(&dir, split)?,
            "svhn" => load_svhn(&dir, split)?,
            other => bail!("data.dataset: unknown data set '{other}' (fashion-mnist, mnist, cifar10, cifar100, svhn, folder)"),
        })
    };
    let mut train = load(Split::Train)?;
    let mut test = load(Split::Test)?;
    if let Some(n) = d.train_subset {
        train = train.subset(n, cfg.seed);
    }
    if let Some(n) = d.test_subset {
        test = test.subset(n, cfg.seed ^ 0x5eed);
    }
    let (mean, std) = train.channel_mean_std();
    let first = test.image(0).to_vec();
    let (_, shape) = d.augment.apply_eval(
        &first,
        logdense_data::Chw::new(test.channels, test.height, test.width),
    );
    Ok(ClassData {
        input: [shape.channels, shape.height, shape.width],
        class_names: train.class_names.clone(),
        train: Arc::new(InMemory::new(train)),
        test: Arc::new(InMemory::new(test)),
        mean,
        std,
    })
}

/// ImageNet-style class folders `DIR/train/CLASS/*` and `DIR/val/CLASS/*`, decoded lazily (the
/// data set need not fit in memory). The augmentation must bring images to one size
/// (`random_resized_crop`, or `resize` + `center_crop`); statistics come from a seeded sample
/// of [`STATS_SAMPLE`] training images after the eval transform.
fn load_folders(cfg: &TrainConfig, dir: &Path) -> Result<ClassData> {
    let train = logdense_data::ImageFolder::new(&dir.join("train"), None, None)?;
    let test = logdense_data::ImageFolder::new(&dir.join("val"), None, None)?;
    if train.class_names != test.class_names {
        bail!(
            "{}: train/ and val/ hold different class folders",
            dir.display()
        );
    }
    if train.items.is_empty() || test.items.is_empty() {
        bail!("{}: train/ or val/ holds no images", dir.display());
    }
    let a = &cfg.data.augment;
    if a.random_resized_crop.is_none() && a.center_crop.is_none() {
        bail!("data.augment: class-folder images differ in size; set random_resized_crop (e.g. 224) or resize + center_crop");
    }
    let subset = |f: logdense_data::ImageFolder,
                  n: Option<usize>,
                  seed: u64|
     -> logdense_data::ImageFolder {
        match n {
            Some(n) if n < f.items.len() => {
                let mut rng = logdense_data::item_rng(seed, 0, usize::MAX);
                let mut idx: Vec<usize> = (0..f.items.len()).collect();
                rand::seq::SliceRandom::shuffle(idx.as_mut_slice(), &mut rng);
                let mut keep: Vec<usize> = idx[..n].to_vec();
                keep.sort_unstable();
                let items = keep.iter().map(|&i| f.items[i].clone()).collect();
                logdense_data::ImageFolder { items, ..f }
            }
            _ => f,
        }
    };
    let train = subset(train, cfg.data.train_subset, cfg.seed);
    let test = subset(test, cfg.data.test_subset, cfg.seed ^ 0x5eed);
    // Channel statistics from a seeded sample of eval-transformed training images.
    let mut rng = logdense_data::item_rng(cfg.seed, 1, usize::MAX);
    let mut idx: Vec<usize> = (0..train.items.len()).collect();
    rand::seq::SliceRandom::shuffle(idx.as_mut_slice(), &mut rng);
    let (mut sum, mut sq, mut count) = ([0f64; 3], [0f64; 3], 0f64);
    let mut shape = None;
    for &i in idx.iter().take(STATS_SAMPLE) {
        let item = train.load(i)?;
        let (px, s) = a.apply_eval(&item.pixels, item.shape());
        let plane = s.height * s.width;
        for c in 0..s.channels.min(3) {
            for &v in &px[c * plane..(c + 1) * plane] {
                let v = v as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        count += plane as f64;
        shape = Some(s);
    }
    let s = shape.expect("at least one training image");
    let mean: Vec<f32> = (0..s.channels).map(|c| (sum[c] / count) as f32).collect();
    let std: Vec<f32> = (0..s.channels)
        .map(|c| ((sq[c] / count - (sum[c] / count).powi(2)).max(1e-12).sqrt() as f32).max(1e-3))
        .collect();
    Ok(ClassData {
        input: [s.channels, s.height, s.width],
        class_names: train.class_names.clone(),
        train: Arc::new(train),
        test: Arc::new(test),
        mean,
        std,
    })
}

/// The network spec with the data's input shape and class count.
pub fn spec_for_data(cfg: &TrainConfig, data: &ClassData) -> Result<NetSpec> {
    let mut spec = cfg.net_spec()?;
    spec.input = data.input;
    spec.classes = data.class_names.len();
    spec.build()
        .map_err(|e| anyhow::anyhow!("model does not fit the data: {e}"))?;
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
/// `loss_of` is only called for those heads.
pub fn weighted_loss<T>(
    outputs: impl IntoIterator<Item = (T, f64)>,
    mut loss_of: impl FnMut(T) -> Tensor<1>,
) -> Option<Tensor<1>> {
    outputs
        .into_iter()
        .filter(|(_, w)| *w > 0.0)
        .map(|(out, w)| loss_of(out).mul_scalar(w))
        .reduce(|a, b| a + b)
}

/// Seeds the backend generator for one epoch: everything random in an epoch (dropout, here;
/// data order and augmentation derive from the same pair) is a function of (seed, epoch), so a
/// resumed run replays it exactly.
pub fn seed_epoch(device: &Device, seed: u64, epoch: usize) {
    device.seed(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
}

/// The per-epoch metrics a run directory already holds, up to `epochs_done` (for resume).
pub fn saved_rows<T: serde::de::DeserializeOwned>(
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

/// The learning rate at an iteration of the main schedule of `total` iterations.
pub fn lr_at(cfg: &TrainConfig, iteration: usize, total: usize) -> f64 {
    let o = &cfg.optim;
    let done = iteration as f64 / total.max(1) as f64;
    let drops = o.milestones.iter().filter(|&&m| done >= m).count();
    o.lr * o.gamma.powi(drops as i32)
}

fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let o = &cfg.optim;
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: o.momentum,
            dampening: 0.0,
            nesterov: o.nesterov,
        }))
        .with_weight_decay(
            (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32)),
        )
        .init()
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

/// A training run in a directory.
pub struct Run {
    pub dir: PathBuf,
    pub cfg: TrainConfig,
    pub device: Device,
    /// Show a progress bar (off in tests).
    pub progress: bool,
    /// Stop after this many epochs in total, as a crash would (for resume tests).
    pub stop_after: Option<usize>,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub test_accuracy: f64,
    pub epochs: usize,
    pub wall_s: f64,
    pub params: usize,
}

impl Run {
    /// Trains from scratch, or continues from the run directory's checkpoint if `resume`.
    pub fn train(&self, resume: bool) -> Result<(SparseDenseNet, Summary)> {
        let cfg = &self.cfg;
        cfg.validate()?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create run directory {}", self.dir.display()))?;
        let data = load_data(cfg)?;
        let spec = spec_for_data(cfg, &data)?;
        let ad = self.device.clone().autodiff();
        ad.seed(cfg.seed);
        let mut model = SparseDenseNet::new(&spec, cfg.model.dropout, &ad)?;
        let mut optim = optimizer(cfg);
        let mut state = TrainState::fresh(
            spec.clone(),
            cfg.seed,
            data.mean.clone(),
            data.std.clone(),
            data.class_names.clone(),
        );
        let mut rows: Vec<EpochMetrics> = Vec::new();
        let ckpt_path = self.dir.join(CHECKPOINT_FILE);
        if resume {
            (model, optim, state) = load_checkpoint(&ckpt_path, model, optim)?;
            rows = saved_rows(&self.dir, state.epochs_done, |r: &EpochMetrics| r.epoch)?;
        }
        report::write_atomic(&self.dir.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;

        let (train_data, test_data) = (data.train, data.test);
        let batcher = ClassBatcher::train(
            state.mean.clone(),
            state.std.clone(),
            cfg.data.augment.clone(),
            cfg.seed,
        );
        let eval_batcher = ClassBatcher::eval(
            state.mean.clone(),
            state.std.clone(),
            cfg.data.augment.clone(),
        );
        let batches_per_epoch = train_data.len().div_ceil(cfg.optim.batch_size);
        let main_iters = batches_per_epoch * cfg.optim.epochs;
        let heads = model.graph.heads().len();
        let final_only_epochs = if heads > 1 {
            cfg.optim.final_only_epochs
        } else {
            0
        };
        let total_epochs = cfg.optim.epochs + final_only_epochs;
        let run_start = Instant::now();
        let wall_before = state.wall_s;

        for epoch in state.epochs_done + 1..=total_epochs {
            let final_only = epoch > cfg.optim.epochs;
            let weights = head_weights(heads, final_only);
            seed_epoch(&ad, cfg.seed, epoch);
            let loader = logdense_data::loader_on(
                train_data.clone(),
                batcher.at_epoch(epoch),
                cfg.optim.batch_size,
                Some(cfg.seed),
                cfg.data.workers,
                &ad,
            );
            let bar = self.bar(batches_per_epoch as u64, epoch, total_epochs);
            let t0 = Instant::now();
            let (mut loss_sum, mut right, mut seen) = (0.0, 0usize, 0usize);
            let mut lr = 0.0;
            for batch in loader.iter() {
                let batch = batch.map_err(|e| anyhow::anyhow!("{e}"))?;
                lr = lr_at(
                    cfg,
                    state.iteration.min(main_iters.saturating_sub(1)),
                    main_iters,
                );
                let n = batch.targets.dims()[0];
                let outputs = model.forward_heads(batch.images);
                let logits: Vec<Tensor<2>> = outputs.into_iter().map(flatten).collect();
                let final_logits = logits.last().expect("the final head exists").clone();
                let loss = weighted_loss(logits.into_iter().zip(weights.iter().copied()), |l| {
                    cross_entropy(l, batch.targets.clone())
                })
                .expect("at least one head has weight");
                right += correct(&final_logits.detach(), &batch.targets);
                let loss_value = loss.clone().detach().into_scalar::<f32>() as f64;
                if !loss_value.is_finite() {
                    bail!("training diverged at epoch {epoch}, iteration {} (loss {loss_value}); lower --lr", state.iteration);
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                state.iteration += 1;
                loss_sum += loss_value * n as f64;
                seen += n;
                if let Some(bar) = &bar {
                    let ips = seen as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                    bar.set_message(format!(
                        "loss {:.4} acc {:.2}% {:.0} img/s lr {lr}",
                        loss_sum / seen as f64,
                        100.0 * right as f64 / seen as f64,
                        ips
                    ));
                    bar.inc(1);
                }
            }
            let train_s = t0.elapsed().as_secs_f64();
            let eval_loader = logdense_data::loader_on(
                test_data.clone(),
                eval_batcher.clone(),
                256,
                None,
                cfg.data.workers,
                &self.device,
            );
            let (test_loss, test_acc) = evaluate(&model.valid(), eval_loader)?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let epoch_s = t0.elapsed().as_secs_f64();
            state.epochs_done = epoch;
            state.wall_s = wall_before + run_start.elapsed().as_secs_f64();
            let row = EpochMetrics {
                epoch,
                lr,
                final_only,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: right as f64 / seen.max(1) as f64,
                test_loss,
                test_accuracy: test_acc,
                images_per_s: seen as f64 / train_s.max(1e-9),
                epoch_s,
            };
            if self.progress {
                eprintln!(
                    "epoch {epoch}/{total_epochs}{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.0} img/s, {:.1} s",
                    if final_only { " (final head only)" } else { "" },
                    row.train_loss,
                    100.0 * row.train_accuracy,
                    test_loss,
                    100.0 * test_acc,
                    row.images_per_s,
                    epoch_s
                );
            }
            rows.push(row);
            save_checkpoint(&self.dir, &model, &optim, &state)?;
            report::write_all(&self.dir, &rows)?;
            if self.stop_after.is_some_and(|k| epoch >= k) {
                break;
            }
        }
        let test_accuracy = rows.last().map(|r| r.test_accuracy).unwrap_or(0.0);
        let summary = Summary {
            test_accuracy,
            epochs: state.epochs_done,
            wall_s: state.wall_s,
            params: model.trainable_params(),
        };
        report::write_json_atomic(&self.dir.join("summary.json"), &summary)?;
        Ok((model, summary))
    }

    fn bar(&self, len: u64, epoch: usize, total: usize) -> Option<ProgressBar> {
        self.progress
            .then(|| epoch_bar(len as usize, format!("epoch {epoch}/{total}")))
    }
}

/// Writes the run directory's checkpoint (atomically, see [`Checkpoint::save`]).
pub fn save_checkpoint(
    dir: &Path,
    model: &SparseDenseNet,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<()> {
    let model_bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the model: {e}"))?;
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser: {e}"))?;
    Checkpoint {
        state: state.clone(),
        model: model_bytes.to_vec(),
        optimizer: optim_bytes.to_vec(),
    }
    .save(&dir.join(CHECKPOINT_FILE))
}

/// Restores model weights, optimiser state and training state from a checkpoint file.
pub fn load_checkpoint(
    path: &Path,
    model: SparseDenseNet,
    optim: ModuleOptimizer,
) -> Result<(SparseDenseNet, ModuleOptimizer, TrainState)> {
    let ck = Checkpoint::load(path)?;
    let record = burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(ck.model))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let optim = optim
        .from_bytes(Bytes::from_bytes_vec(ck.optimizer))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((model.load_record(record), optim, ck.state))
}

/// A model and its training state loaded from a run directory's checkpoint.
pub fn load_trained(dir: &Path, device: &Device) -> Result<(SparseDenseNet, TrainState)> {
    let ckpt_path = dir.join(CHECKPOINT_FILE);
    let ck = Checkpoint::load(&ckpt_path)?;
    let model = SparseDenseNet::new(&ck.state.spec, 0.0, device)?;
    let record = burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(ck.model))
        .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt_path.display()))?;
    Ok((model.load_record(record), ck.state))
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
