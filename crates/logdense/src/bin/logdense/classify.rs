//! `train` (any task), and `eval` and `predict` of image classification.

use crate::run_flags::RunFlags;
use crate::usage;
use anyhow::{Context, Result};
use clap::Args;
use logdense::graph::TaskKind;
use logdense::training::run::{Run, Summary, Trained};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub run: RunFlags,
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
    train_task(&a.run, TaskKind::Classify)
}

/// Trains the configured run; `task` is the command's task, for a config that names none.
pub(crate) fn train_task(flags: &RunFlags, task: TaskKind) -> Result<()> {
    let device = crate::open_device(&flags.device)?;
    let (cfg, dir, resume) = flags.start(task)?;
    eprintln!("run directory: {}", dir.display());
    let run = Run {
        dir,
        cfg,
        device,
        progress: true,
        stop_after: None,
        overwrite: flags.overwrite,
    };
    let (_, s) = run.train(resume)?;
    println!("{}", final_line(&s));
    Ok(())
}

/// The last line a training prints: the task's final metrics, epochs and seconds.
fn final_line(s: &Summary) -> String {
    let m = &s.metrics;
    let metrics = match (m.test_accuracy, m.mean_iou) {
        (Some(acc), _) => format!(
            "test_accuracy={acc:.4} test_error={:.2}%",
            100.0 * (1.0 - acc)
        ),
        (None, Some(iou)) => format!(
            "mean_iou={iou:.4} global_accuracy={:.4}",
            m.global_accuracy.unwrap_or_default()
        ),
        (None, None) => String::new(),
    };
    format!(
        "final: {metrics} epochs={} wall_s={:.0}",
        s.epochs, s.wall_s
    )
}

pub(crate) fn eval_cmd(a: EvalArgs) -> Result<()> {
    let device = crate::open_device(&a.device)?;
    let mut t = Trained::load(&a.run, &device)?;
    if t.cfg.task != TaskKind::Classify {
        return Err(usage(format!(
            "--run: {} is a segmentation run; evaluate it with `logdense segment eval`",
            a.run.display()
        )));
    }
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
    let (loss, acc) = logdense::training::classify::evaluate(&t.model, loader)?;
    println!(
        "eval: images={n} test_loss={loss:.4} test_accuracy={acc:.4} test_error={:.2}%",
        100.0 * (1.0 - acc)
    );
    Ok(())
}

pub(crate) fn predict_cmd(a: PredictArgs) -> Result<()> {
    use burn::prelude::*;
    let device = crate::open_device(&a.device)?;
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
