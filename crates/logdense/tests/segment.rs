//! Segmentation end to end on generated fashion-scenes (real Fashion-MNIST garments).

use burn::prelude::*;
use logdense::graph::TaskKind;
use logdense::training::config::TaskConfig;
use logdense::training::run::Run;
use std::path::PathBuf;

/// burn's random generator is global to the process: tests that train must not interleave,
/// or one test's per-epoch reseeding would change another's weights and dropout masks.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logdense-seg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh fashion-scenes set of 32 x 32 canvases in a temporary directory.
fn scenes(name: &str, train: usize, test: usize, seed: u64) -> PathBuf {
    let fashion = std::path::Path::new(logdense::data::FASHION_MNIST_DIR);
    assert!(
        fashion.exists(),
        "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist"
    );
    let data = temp(name);
    logdense::data::fashion_scenes::generate(&data, 32, train, test, seed, fashion).unwrap();
    data
}

#[test]
fn fc_log_densenet_learns_fashion_scenes_and_draws_fig2() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = scenes("data", 480, 60, 7);
    let mut cfg = TaskConfig::defaults(TaskKind::Segment);
    cfg.data.dir = Some(data.clone());
    cfg.data.crop = Some([32, 32]);
    cfg.data.workers = 0;
    cfg.data.class_weights = logdense::data::seg::ClassWeights::None;
    cfg.model.growth = Some(8);
    cfg.model.blocks = Some(vec![2, 2, 2, 2, 2]);
    cfg.optim.epochs = 5;
    cfg.optim.finetune_epochs = 1;
    cfg.optim.lr = 3e-3;
    cfg.optim.finetune_lr = 1e-3;
    let dir = temp("run");
    let (model, summary) = Run {
        dir: dir.clone(),
        cfg,
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    }
    .train(false)
    .unwrap();
    let (mean_iou, global_accuracy) = (
        summary.metrics.mean_iou.unwrap(),
        summary.metrics.global_accuracy.unwrap(),
    );
    let rows: Vec<logdense::training::segment::SegEpochMetrics> =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[5].stage, "finetune");
    assert!(
        rows[3].train_loss < rows[0].train_loss,
        "loss did not fall: {rows:?}"
    );
    // A network that learned anything beats always predicting the most frequent class.
    let test_set =
        logdense::data::seg::load_camvid(&data, logdense::data::seg::SegSplit::Test).unwrap();
    let counts = test_set.class_pixel_counts();
    let majority = *counts.iter().max().unwrap() as f64 / counts.iter().sum::<u64>() as f64;
    assert!(
        global_accuracy > majority + 0.05,
        "global accuracy {global_accuracy} vs majority-class baseline {majority}"
    );
    assert!(mean_iou > 0.0 && mean_iou <= 1.0);
    for f in [
        "metrics.csv",
        "curves.png",
        "config.toml",
        "checkpoint.ldck",
        "summary.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // eval from the run directory reproduces the last epoch's numbers.
    let trained = logdense::training::run::Trained::load(&dir, &Device::flex()).unwrap();
    assert_eq!(trained.cfg.task, TaskKind::Segment);
    let (loaded, state) = (trained.model, trained.state);
    let test =
        logdense::data::seg::load_camvid(&data, logdense::data::seg::SegSplit::Test).unwrap();
    let classes = test.classes;
    let loader = logdense::data::seg::seg_loader_on(
        logdense::data::seg::SegInMemory::new(test.clone()),
        logdense::data::seg::SegBatcher::eval(state.mean.clone(), state.std.clone()),
        8,
        None,
        0,
        &Device::flex(),
    );
    let cm = logdense::training::segment::evaluate(&loaded, loader, classes).unwrap();
    assert!((cm.mean_iou() - mean_iou).abs() < 1e-9);
    // Fig. 2 strip: input, truth, one panel per head (4 auxiliary + final), 4 px gaps.
    let heads = model.graph.heads().len();
    assert_eq!(heads, 5);
    let strip = logdense::training::segment::prediction_strip(
        &loaded,
        &state,
        &test.palette,
        test.image(0),
        Some(test.label(0)),
        (32, 32),
        &Device::flex(),
    );
    assert_eq!(
        (strip.width(), strip.height()),
        ((2 + heads as u32) * 36 - 4, 32)
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn a_budget_trains_until_it_is_spent_and_a_resume_adds_nothing() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = scenes("budget-data", 96, 16, 3);
    let mut cfg = TaskConfig::from_toml(
        "[model]
growth = 4
blocks = [1, 1, 1]
aux_min_stride = 2
[data]
crop = [32, 32]
workers = 0
class_weights = \"none\"
[optim]
epochs = 100000
finetune_epochs = 0
batch_size = 8
lr = 3e-3
lr_schedule = \"cosine\"
max_train_s = 2.0",
        TaskKind::Segment,
    )
    .unwrap();
    cfg.data.dir = Some(data.clone());
    let dir = temp("budget-run");
    let run = Run {
        dir: dir.clone(),
        cfg,
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    };
    let (model, summary) = run.train(false).unwrap();
    // Heads at 32, 16 and 32 pixels: only the 16-pixel auxiliary head and the final one stay.
    assert_eq!(model.graph.heads().len(), 2);
    let read_rows = || -> Vec<logdense::training::segment::SegEpochMetrics> {
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
    };
    let rows = read_rows();
    // The budget, not the epoch bound, ended the run, after the first step past it (the last
    // epoch's evaluation comes after that).
    assert!(
        rows.len() >= 3,
        "too few epochs to see the rate fall: {rows:?}"
    );
    assert_eq!(summary.epochs, rows.len());
    assert!(summary.wall_s >= 2.0, "stopped early: {} s", summary.wall_s);
    assert!(summary.depends_on_clock && summary.max_train_s == Some(2.0));
    assert!(
        summary.wall_s < 2.0 + 10.0,
        "ran on past the budget: {} s",
        summary.wall_s
    );
    // The rate follows the time spent: each epoch ends lower than the one before.
    assert!(rows.windows(2).all(|w| w[1].lr < w[0].lr), "{rows:?}");
    assert!(rows[0].lr <= 3e-3 && rows.last().unwrap().lr > 0.0);
    // The budget counts across resumed runs: resuming trains nothing more.
    let (_, resumed) = run.train(true).unwrap();
    assert_eq!(read_rows().len(), rows.len());
    // The same model and data: the same mean IoU, up to the last bits of a sum whose order
    // the thread pool decides.
    let (before, after) = (
        summary.metrics.mean_iou.unwrap(),
        resumed.metrics.mean_iou.unwrap(),
    );
    assert!((after - before).abs() < 1e-12, "{after} against {before}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
}

/// A segmentation run directory of the earlier shape (its config in `segment.toml`, with
/// `data.flip` and no task) resumes, and ends where an uninterrupted run does.
#[test]
fn a_segmentation_run_of_the_earlier_shape_resumes() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let data = scenes("legacy-data", 64, 16, 5);
    let text = format!(
        "[model]\ngrowth = 4\nblocks = [1, 1, 1]\n[data]\ndir = {:?}\ncrop = [32, 32]\n\
         flip = false\nclass_weights = \"none\"\nworkers = 0\n[optim]\noptimizer = \"rmsprop\"\n\
         epochs = 2\nfinetune_epochs = 0\nbatch_size = 8\nlr = 3e-3\n\
         lr_schedule = \"exponential\"\n",
        data.display().to_string()
    );
    let cfg = TaskConfig::from_toml(&text, TaskKind::Segment).unwrap();
    assert!(!cfg.data.augment.flip);
    let run = |dir: &PathBuf, cfg: TaskConfig, stop_after, resume| {
        Run {
            dir: dir.clone(),
            cfg,
            device: Device::flex(),
            progress: false,
            stop_after,
            overwrite: false,
        }
        .train(resume)
        .unwrap()
    };
    let straight = temp("legacy-straight");
    run(&straight, cfg.clone(), None, false);
    let legacy = temp("legacy-resumed");
    run(&legacy, cfg, Some(1), false);
    // The directory as the earlier release left it: the config in segment.toml.
    std::fs::remove_file(legacy.join("config.toml")).unwrap();
    std::fs::write(legacy.join("segment.toml"), &text).unwrap();
    let loaded = logdense::training::run::load_run_config(&legacy).unwrap();
    assert_eq!(loaded.task, TaskKind::Segment);
    let (_, summary) = run(&legacy, loaded, None, true);
    assert_eq!(summary.epochs, 2);
    let rows = |dir: &PathBuf| -> Vec<(f64, f64)> {
        let rows: Vec<logdense::training::segment::SegEpochMetrics> =
            serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
        rows.iter().map(|r| (r.lr, r.mean_iou)).collect()
    };
    assert_eq!(rows(&straight), rows(&legacy));
    for dir in [&straight, &legacy, &data] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
