//! `train`, `eval`, `predict`: image classification.

use crate::run_flags::{RunFlags, RunKind};
use crate::usage;
use anyhow::{Context, Result};
use clap::Args;
use logdense::config::{ClassSchedule, TrainConfig};
use logdense::train::{self, Run, Trained};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    run: RunFlags,
    #[arg(long, help = crate::preset_help(logdense::graph::Task::Classify, "fashion"))]
    preset: Option<String>,
    /// Data directory (default: /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    data: Option<PathBuf>,
    /// fashion-mnist, mnist, cifar10, cifar100, svhn, folder.
    #[arg(long)]
    dataset: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    dropout: Option<f64>,
    /// Train on a seeded subset of this many training images.
    #[arg(long)]
    train_subset: Option<usize>,
    #[arg(long)]
    test_subset: Option<usize>,
    /// Wall-clock training budget in minutes (default 7.5 with `budget-cosine`): the rate
    /// anneals over it and training stops at the first step past it; with the other schedules
    /// no epoch starts that would end past it.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// step (the paper's: x0.1 after 1/2 and 3/4 of the epochs), cosine (over the epochs) or
    /// budget-cosine (over the wall-clock budget; the default).
    #[arg(long, value_parser = ["step", "cosine", "budget-cosine"])]
    lr_schedule: Option<String>,
    /// Run every layer on plain burn ops instead of the fused CPU kernels (`model.fused`).
    #[arg(long)]
    no_fused: bool,
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
pub(crate) struct PredictArgs {
    #[arg(long)]
    run: PathBuf,
    image: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn train_cmd(a: TrainArgs) -> Result<()> {
    let device =
        logdense::device::device_from_name(&a.run.device).map_err(|e| usage(e.to_string()))?;
    let (cfg, dir, resume) = a.run.start(
        a.preset.as_ref(),
        RunKind {
            config_file: train::CONFIG_FILE,
            what: "a run directory",
            load: TrainConfig::load,
            preset: |c| &mut c.model.preset,
            default_dir: |c| PathBuf::from("runs").join(&c.model.preset),
        },
    )?;
    let cfg = apply_overrides(cfg, &a)?;
    finish_training(
        Run {
            dir,
            cfg,
            device,
            progress: true,
            stop_after: None,
            overwrite: a.run.overwrite,
        },
        resume,
    )
}

/// The command-line flags over the configuration file (or the resumed run's configuration).
fn apply_overrides(mut cfg: TrainConfig, a: &TrainArgs) -> Result<TrainConfig> {
    if let Some(d) = &a.data {
        cfg.data.dir = Some(d.clone());
    }
    if let Some(d) = &a.dataset {
        cfg.data.dataset = d.clone();
    }
    cfg.optim.epochs = a.epochs.unwrap_or(cfg.optim.epochs);
    cfg.optim.batch_size = a.batch_size.unwrap_or(cfg.optim.batch_size);
    cfg.optim.lr = a.lr.unwrap_or(cfg.optim.lr);
    cfg.seed = a.run.seed.unwrap_or(cfg.seed);
    cfg.model.precision = a.run.precision.unwrap_or(cfg.model.precision);
    cfg.model.dropout = a.dropout.unwrap_or(cfg.model.dropout);
    cfg.data.train_subset = a.train_subset.or(cfg.data.train_subset);
    cfg.data.test_subset = a.test_subset.or(cfg.data.test_subset);
    cfg.data.workers = a.run.workers.unwrap_or(cfg.data.workers);
    if let Some(m) = a.max_minutes {
        cfg.optim.max_train_s = Some(m * 60.0);
    }
    if a.no_fused {
        cfg.model.fused = false;
    }
    if let Some(s) = &a.lr_schedule {
        cfg.optim.lr_schedule = match s.as_str() {
            "step" => ClassSchedule::Step,
            "cosine" => ClassSchedule::Cosine,
            _ => ClassSchedule::BudgetCosine,
        };
    }
    cfg.validate().map_err(|e| usage(format!("{e:#}")))?;
    Ok(cfg)
}

fn finish_training(run: Run, resume: bool) -> Result<()> {
    eprintln!("run directory: {}", run.dir.display());
    let (_, s) = run.train(resume)?;
    println!(
        "final: test_accuracy={:.4} test_error={:.2}% epochs={} wall_s={:.0}",
        s.test_accuracy,
        100.0 * (1.0 - s.test_accuracy),
        s.epochs,
        s.wall_s
    );
    Ok(())
}

pub(crate) fn eval_cmd(a: EvalArgs) -> Result<()> {
    let device = logdense::device::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let mut t = Trained::load(&a.run, &device)?;
    if let Some(d) = a.data {
        t.cfg.data.dir = Some(d);
    }
    let data = logdense::datasets::load_data(&t.cfg)?;
    if data.class_names != t.state.class_names || data.input != t.state.spec.input {
        return Err(usage(format!(
            "--data: its test set ({} classes, images {:?}) is not what the run was trained on \
             ({} classes, images {:?})",
            data.class_names.len(),
            data.input,
            t.state.class_names.len(),
            t.state.spec.input
        )));
    }
    let n = data.test.len();
    let batcher = logdense::data::ClassBatcher::eval(
        t.state.mean.clone(),
        t.state.std.clone(),
        t.cfg.data.augment.clone(),
    );
    let loader =
        logdense::data::loader_on(data.test, batcher, 256, None, t.cfg.data.workers, &device);
    let (loss, acc) = train::evaluate(&t.model, loader)?;
    println!(
        "eval: images={n} test_loss={loss:.4} test_accuracy={acc:.4} test_error={:.2}%",
        100.0 * (1.0 - acc)
    );
    Ok(())
}

pub(crate) fn predict_cmd(a: PredictArgs) -> Result<()> {
    use burn::prelude::*;
    let device = logdense::device::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let t = Trained::load(&a.run, &device)?;
    let [c, h, w] = t.state.spec.input;
    let img = image::open(&a.image)
        .with_context(|| format!("cannot read image {}", a.image.display()))?;
    let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    let pixels: Vec<u8> = if c == 1 {
        img.to_luma8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    let mut data = vec![0f32; c * h * w];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let v = pixels[(y * w + x) * c + ch] as f32 / 255.0;
                data[ch * h * w + y * w + x] = (v - t.state.mean[ch]) / t.state.std[ch];
            }
        }
    }
    let input = Tensor::<4>::from_data(TensorData::new(data, [1, c, h, w]), &device);
    let logits = t.model.forward(input);
    let classes = logits.dims()[1];
    let probs: Vec<f32> = burn::tensor::activation::softmax(logits.reshape([1, classes]), 1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by(|&x, &y| probs[y].total_cmp(&probs[x]));
    println!("{}:", a.image.display());
    for &k in order.iter().take(5) {
        println!(
            "  {:>6.2}%  {}",
            100.0 * probs[k],
            t.state
                .class_names
                .get(k)
                .map(String::as_str)
                .unwrap_or("?")
        );
    }
    Ok(())
}
