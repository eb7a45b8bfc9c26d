//! `data fashion-scenes` and `segment train|eval|predict`: semantic segmentation.

use crate::run_flags::RunFlags;
use crate::usage;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum DataCommand {
    /// Compose Fashion-MNIST garments into segmentation scenes, written in the SegNet/CamVid layout.
    FashionScenes(ScenesArgs),
}

#[derive(Args)]
pub(crate) struct ScenesArgs {
    #[arg(long)]
    out: PathBuf,
    /// Canvas side in pixels.
    #[arg(long, default_value_t = 96)]
    size: usize,
    /// Training scenes.
    #[arg(long, default_value_t = 2000)]
    train: usize,
    /// Test scenes (and as many validation scenes).
    #[arg(long, default_value_t = 500)]
    test: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fashion-MNIST directory.
    #[arg(long, default_value = logdense::data::FASHION_MNIST_DIR)]
    fashion: PathBuf,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub(crate) enum SegmentCommand {
    /// Train a segmentation network (default: fc-ld-small on data/fashion-scenes).
    Train(SegTrainArgs),
    /// Per-class IoU, mean IoU and global accuracy of a run on its evaluation split.
    Eval(SegEvalArgs),
    /// Write Fig. 2's picture: input, ground truth, every head's prediction, side by side.
    Predict(SegPredictArgs),
}

#[derive(Args)]
pub(crate) struct SegTrainArgs {
    #[command(flatten)]
    run: RunFlags,
}

#[derive(Args)]
pub(crate) struct SegEvalArgs {
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    data: Option<PathBuf>,
    /// val or test (default: the run's evaluation split).
    #[arg(long)]
    split: Option<String>,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Test-time augmentation: average the logits of each image and its mirror image.
    #[arg(long)]
    flip_tta: bool,
}

#[derive(Args)]
pub(crate) struct SegPredictArgs {
    #[arg(long)]
    run: PathBuf,
    /// An RGB image; if it lies in a SegNet-layout folder (e.g. test/0001.png), its label
    /// (testannot/0001.png) is shown as ground truth.
    image: PathBuf,
    /// A label PNG to show as ground truth.
    #[arg(long)]
    label: Option<PathBuf>,
    #[arg(long, default_value = "prediction.png")]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn scenes_cmd(a: ScenesArgs) -> Result<()> {
    if a.size < 32 {
        return Err(usage("--size must be at least 32"));
    }
    let t0 = std::time::Instant::now();
    let written = logdense::data::fashion_scenes::generate(
        &a.out, a.size, a.train, a.test, a.seed, &a.fashion,
    )?;
    println!(
        "fashion-scenes: {written:?} in {} ({:.1} s)",
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn parse_split(s: &str) -> Result<logdense::data::seg::SegSplit> {
    use logdense::data::seg::SegSplit;
    match s {
        "train" => Ok(SegSplit::Train),
        "val" => Ok(SegSplit::Val),
        "test" => Ok(SegSplit::Test),
        other => Err(usage(format!(
            "--split: unknown split '{other}' (train, val, test)"
        ))),
    }
}

pub(crate) fn seg_train_cmd(a: SegTrainArgs) -> Result<()> {
    crate::classify::train_task(&a.run, logdense::graph::TaskKind::Segment)
}

/// A segmentation run's configuration, model and state, and the directory of its data.
fn load_seg_run(
    run: &std::path::Path,
    device: &burn::prelude::Device,
) -> Result<(
    logdense::training::config::TaskConfig,
    logdense::training::run::Trained,
    PathBuf,
)> {
    let t = logdense::training::run::Trained::load(run, device)?;
    if t.cfg.task != logdense::graph::TaskKind::Segment {
        return Err(usage(format!(
            "--run: {} is a classification run; evaluate it with `logdense eval`",
            run.display()
        )));
    }
    let dir = t.cfg.dataset()?.dir(t.cfg.data.dir.as_deref())?;
    Ok((t.cfg.clone(), t, dir))
}

pub(crate) fn seg_eval_cmd(a: SegEvalArgs) -> Result<()> {
    use logdense::data::seg::{load_camvid, SegBatcher, SegInMemory};
    let device = crate::open_device(&a.device)?;
    let (cfg, t, data_dir) = load_seg_run(&a.run, &device)?;
    let (model, state) = (t.model, t.state);
    let dir = a.data.unwrap_or(data_dir);
    let split = match &a.split {
        Some(s) => parse_split(s)?,
        None => cfg.data.eval_split,
    };
    let set = load_camvid(&dir, split)?;
    if set.class_names != state.class_names {
        return Err(usage(format!(
            "--data {}: its classes {:?} are not the run's {:?}",
            dir.display(),
            set.class_names,
            state.class_names
        )));
    }
    let n = set.len();
    let classes = set.classes;
    let names = set.class_names.clone();
    let loader = logdense::data::seg::seg_loader_on(
        SegInMemory::new(set),
        SegBatcher::eval(state.mean.clone(), state.std.clone()),
        8,
        None,
        cfg.data.workers,
        &device,
    );
    let cm = logdense::training::segment::evaluate_with(&model, loader, classes, a.flip_tta)?;
    let tta = if a.flip_tta { " tta=flip" } else { "" };
    println!("eval: images={n} split={split:?}{tta}");
    for (name, iou) in names.iter().zip(cm.per_class_iou()) {
        match iou {
            Some(v) => println!("  {name:<14} IoU {:.4}", v),
            None => println!("  {name:<14} IoU -"),
        }
    }
    println!(
        "mean_iou={:.4} global_accuracy={:.4}",
        cm.mean_iou(),
        cm.global_accuracy()
    );
    println!("confusion (% of each true class's pixels; rows: truth, columns: prediction):");
    print!("{}", confusion_table(&cm, &names));
    Ok(())
}

/// The confusion matrix as text, each row normalised to percent of that class's pixels:
/// shows which classes a model mistakes for which (mean IoU alone does not).
fn confusion_table(cm: &logdense::data::seg::ConfusionMatrix, names: &[String]) -> String {
    let k = cm.classes;
    let short = |i: usize| -> String {
        names
            .get(i)
            .map(|n| n.chars().take(5).collect())
            .unwrap_or_else(|| i.to_string())
    };
    let mut out = format!("{:<14}", "");
    for p in 0..k {
        out += &format!("{:>6}", short(p));
    }
    out.push('\n');
    for t in 0..k {
        let row: u64 = (0..k).map(|p| cm.get(t, p)).sum();
        let name = names.get(t).cloned().unwrap_or_else(|| t.to_string());
        out += &format!("{name:<14}");
        for p in 0..k {
            let pct = 100.0 * cm.get(t, p) as f64 / row.max(1) as f64;
            out += &format!("{pct:>6.1}");
        }
        out.push('\n');
    }
    out
}

pub(crate) fn seg_predict_cmd(a: SegPredictArgs) -> Result<()> {
    let device = crate::open_device(&a.device)?;
    let (_, t, data_dir) = load_seg_run(&a.run, &device)?;
    let (model, state) = (t.model, t.state);
    let img = image::open(&a.image)
        .with_context(|| format!("cannot read image {}", a.image.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    // The network must accept the image's size (its pooling halves it once per block).
    let spec = logdense::graph::NetSpec {
        input: [3, h, w],
        ..state.spec.clone()
    };
    spec.build().map_err(|e| {
        usage(format!(
            "{}: a {w}x{h} image does not fit the run's network: {e}",
            a.image.display()
        ))
    })?;
    let mut chw = vec![0u8; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            chw[c * h * w + y as usize * w + x as usize] = p.0[c];
        }
    }
    // The ground truth: --label, or the SegNet-layout sibling folder (test/ -> testannot/).
    let label_path = a.label.clone().or_else(|| {
        let parent = a.image.parent()?;
        let annot = parent.with_file_name(format!("{}annot", parent.file_name()?.to_str()?));
        let p = annot.join(a.image.file_name()?);
        p.exists().then_some(p)
    });
    let classes = state.class_names.len();
    let truth = match &label_path {
        Some(p) => {
            let (labels, lh, lw) = logdense::data::seg::camvid::decode_label(p, classes)?;
            if (lh, lw) != (h, w) {
                return Err(usage(format!(
                    "--label: {} is {lw}x{lh}, the image is {w}x{h}",
                    p.display()
                )));
            }
            Some(labels)
        }
        None => None,
    };
    let palette = logdense::training::segment::palette_of(&data_dir);
    let strip = logdense::training::segment::prediction_strip(
        &model,
        &state,
        &palette,
        &chw,
        truth.as_deref(),
        (h, w),
        &device,
    );
    strip
        .save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "wrote {} (input{}, {} head prediction(s), final last)",
        a.out.display(),
        if truth.is_some() {
            ", ground truth"
        } else {
            ""
        },
        model.graph.heads().len()
    );
    Ok(())
}
