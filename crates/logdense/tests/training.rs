//! Training on the real Fashion-MNIST (installed by `.ci/run` / the README's set-up):
//! a CI-sized run that must learn, and exact resume.

use burn::data::dataset::Dataset;
use burn::prelude::*;
use logdense::training::checkpoint::{Checkpoint, CHECKPOINT_FILE};
use logdense::training::config::{LrSchedule, TaskConfig};
use logdense::training::run::{Run, Trained};
use std::path::PathBuf;

/// burn's random generator is global to the process: tests that train must not interleave,
/// or one test's per-epoch reseeding would change another's dropout masks.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require_fashion_mnist() {
    let dir = std::path::Path::new(logdense::data::FASHION_MNIST_DIR);
    assert!(
        dir.join("t10k-images-idx3-ubyte.gz").exists() || dir.join("t10k-images-idx3-ubyte").exists(),
        "Fashion-MNIST is missing from {}: install it with `apt-get install dataset-fashion-mnist` (the README's set-up and .ci/run do)",
        dir.display()
    );
}

fn temp_run(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logdense-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn small_config(train: usize, test: usize, epochs: usize) -> TaskConfig {
    let mut cfg = TaskConfig::default();
    cfg.data.train_subset = Some(train);
    cfg.data.eval_subset = Some(test);
    cfg.data.workers = 0;
    cfg.optim.epochs = epochs;
    cfg.optim.final_only_epochs = 0;
    // The paper's step schedule over a fixed number of epochs.
    cfg.optim.lr_schedule = LrSchedule::Step;
    cfg
}

fn accuracy(s: &logdense::training::run::Summary) -> f64 {
    s.metrics.test_accuracy.expect("a classification summary")
}

/// Test accuracy of a run directory's saved model on its test set, evaluated afresh in batches
/// of `batch`, and the number of test images.
fn fresh_evaluation(run: &std::path::Path, batch: usize) -> (f64, usize) {
    let t = Trained::load(run, &Device::flex()).unwrap();
    let data = logdense::datasets::load_data(&t.cfg).unwrap();
    let images = data.test.len();
    let batcher = logdense::data::ClassBatcher::eval(
        t.state.mean.clone(),
        t.state.std.clone(),
        t.cfg.data.augment.clone(),
    );
    let loader = logdense::data::loader_on(data.test, batcher, batch, None, 0, &Device::flex());
    let (_, acc) = logdense::training::classify::evaluate(&t.model, loader).unwrap();
    (acc, images)
}

#[test]
fn ci_sized_training_learns_fashion_mnist() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    require_fashion_mnist();
    let dir = temp_run("ci");
    let cfg = small_config(5000, 1000, 3);
    let run = Run {
        dir: dir.clone(),
        cfg,
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    };
    let (_, summary) = run.train(false).unwrap();
    let rows: Vec<logdense::training::report::EpochMetrics> =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[2].train_loss < rows[0].train_loss,
        "training loss did not fall: {rows:?}"
    );
    assert!(
        accuracy(&summary) >= 0.70,
        "test accuracy {:.3} < 0.70",
        accuracy(&summary)
    );
    assert!(!summary.depends_on_clock && summary.max_train_s.is_none());
    for f in [
        "metrics.csv",
        "curves.png",
        "config.toml",
        CHECKPOINT_FILE,
        "summary.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // eval from the run directory reproduces the last epoch's test accuracy.
    let (acc, images) = fresh_evaluation(&dir, 100);
    assert_eq!(images, 1000);
    assert!(
        (acc - accuracy(&summary)).abs() < 1e-9,
        "eval {acc} vs training {}",
        accuracy(&summary)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The default configuration (its optimiser, cosine schedule and final-head-only epoch; a
/// smaller network and subsets so that it runs in seconds) gives the same weights on every run
/// and after a resume: its schedule is a function of the step, not of the clock.
#[test]
fn the_default_config_gives_the_same_weights_on_every_run_and_after_a_resume() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    require_fashion_mnist();
    let mut cfg = TaskConfig::default();
    cfg.data.train_subset = Some(640);
    cfg.data.eval_subset = Some(200);
    cfg.data.workers = 0;
    cfg.model.blocks = Some(vec![2, 2, 2]);
    cfg.model.growth = Some(8);
    cfg.model.dropout = 0.1;
    assert_eq!(cfg.optim.lr_schedule, LrSchedule::Cosine);
    assert_eq!(cfg.optim.max_train_s, None);
    let straight = temp_run("straight");
    let again = temp_run("again");
    for dir in [&straight, &again] {
        Run {
            dir: dir.clone(),
            cfg: cfg.clone(),
            device: Device::flex(),
            progress: false,
            stop_after: None,
            overwrite: false,
        }
        .train(false)
        .unwrap();
    }
    let resumed = temp_run("resumed");
    Run {
        dir: resumed.clone(),
        cfg: cfg.clone(),
        device: Device::flex(),
        progress: false,
        stop_after: Some(1),
        overwrite: false,
    }
    .train(false)
    .unwrap();
    assert_eq!(
        Checkpoint::load(&resumed.join(CHECKPOINT_FILE))
            .unwrap()
            .state
            .epochs_done,
        1
    );
    Run {
        dir: resumed.clone(),
        cfg,
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    }
    .train(true)
    .unwrap();
    let a = Checkpoint::load(&straight.join(CHECKPOINT_FILE)).unwrap();
    let b = Checkpoint::load(&resumed.join(CHECKPOINT_FILE)).unwrap();
    // Two main epochs, then the final-head-only epoch.
    assert_eq!(a.state.epochs_done, 3);
    assert_eq!(
        (a.state.epochs_done, a.state.iteration),
        (b.state.epochs_done, b.state.iteration)
    );
    // Parameter ids differ between runs, so compare the weights themselves. Momentum lost on
    // resume would change the third epoch's updates, so this also checks the optimiser state.
    let weights = |dir: &PathBuf| {
        Trained::load(dir, &Device::flex())
            .unwrap()
            .model
            .flat_weights()
    };
    let metrics = |dir: &PathBuf| -> Vec<(f64, f64)> {
        let rows: Vec<logdense::training::report::EpochMetrics> =
            serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
        rows.iter().map(|r| (r.lr, r.test_accuracy)).collect()
    };
    let wa = weights(&straight);
    for other in [&again, &resumed] {
        let wb = weights(other);
        assert_eq!(wa.len(), wb.len());
        let max_diff = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_diff <= 1e-6,
            "{}: weights differ by up to {max_diff}",
            other.display()
        );
        assert_eq!(metrics(&straight), metrics(other), "{}", other.display());
    }
    // The cosine ran its course over the main stage: its last epoch ends near 0.
    let rates = metrics(&straight);
    assert!(rates[1].0 < 0.01 && rates[1].0 < rates[0].0, "{rates:?}");
    for dir in [&straight, &again, &resumed] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn missing_data_gives_an_install_hint() {
    let mut cfg = small_config(10, 10, 1);
    cfg.data.dir = Some(PathBuf::from("/nonexistent/fashion"));
    let e = Run {
        dir: temp_run("missing"),
        cfg,
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    }
    .train(false)
    .err()
    .unwrap();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("/nonexistent/fashion")
            && msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
}

/// ImageNet-style class folders of differently sized PNG and JPEG files, decoded lazily.
#[test]
fn trains_from_imagenet_style_class_folders() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let root = temp_run("folders");
    for (split, per_class) in [("train", 12), ("val", 4)] {
        for (c, class) in ["cat", "dog"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for k in 0..per_class {
                // Class 0 is dark on the left, class 1 on the right; sizes vary per file.
                let (w, h) = (40 + 3 * k as u32, 36 + 2 * k as u32);
                let img = image::RgbImage::from_fn(w, h, |x, _| {
                    let left = x < w / 2;
                    let v = if left == (c == 0) { 30 } else { 220 };
                    image::Rgb([v, v, (k * 10) as u8])
                });
                let ext = if k % 2 == 0 { "png" } else { "jpg" };
                img.save(dir.join(format!("{k}.{ext}"))).unwrap();
            }
        }
    }
    let mut cfg = small_config(1000, 1000, 1);
    cfg.data.dataset = "folder".into();
    cfg.data.dir = Some(root.clone());
    cfg.data.augment = logdense::data::Augment {
        random_resized_crop: Some(32),
        flip: false,
        ..logdense::data::Augment::none()
    };
    cfg.model.preset = "ld-v1-2-4".into();
    let run = temp_run("folders-run");
    let (model, summary) = Run {
        dir: run.clone(),
        cfg,
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    }
    .train(false)
    .unwrap();
    assert_eq!(model.graph.spec.input, [3, 32, 32]);
    assert_eq!(model.graph.spec.classes, 2);
    assert_eq!(summary.epochs, 1);
    // The run's own evaluation equals a fresh one of the saved model on the decoded val/ images.
    let (acc, images) = fresh_evaluation(&run, 3);
    assert_eq!(images, 8);
    assert!(
        (acc - accuracy(&summary)).abs() < 1e-9,
        "eval {acc} vs training {}",
        accuracy(&summary)
    );
    assert_eq!(
        (acc * 8.0).round(),
        acc * 8.0,
        "a fraction of the 8 val images"
    );
    let state = Checkpoint::load(&run.join(CHECKPOINT_FILE)).unwrap().state;
    assert_eq!(
        state.class_names,
        vec!["cat".to_string(), "dog".to_string()]
    );
    assert_eq!(state.mean.len(), 3);
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&run).unwrap();
}

/// The wall-clock budget: the main stage anneals over its share and stops part-way through an
/// epoch, the final-head-only stage takes the rest, and training ends at the budget (plus the
/// last evaluation), however many epochs were allowed.
#[test]
fn budgeted_training_stops_at_the_budget_and_runs_both_stages() {
    let _serial = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    require_fashion_mnist();
    let dir = temp_run("budget");
    let mut cfg = small_config(20000, 500, 50);
    cfg.model.blocks = Some(vec![1, 1, 1]);
    cfg.model.growth = Some(8);
    cfg.optim.final_only_epochs = 5;
    cfg.optim.lr_schedule = LrSchedule::Cosine;
    cfg.optim.max_train_s = Some(6.0);
    cfg.optim.final_only_share = 0.25;
    let (_, summary) = Run {
        dir: dir.clone(),
        cfg: cfg.clone(),
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    }
    .train(false)
    .unwrap();
    let rows: Vec<logdense::training::report::EpochMetrics> =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    let main: Vec<_> = rows.iter().filter(|r| !r.final_only).collect();
    let last_stage: Vec<_> = rows.iter().filter(|r| r.final_only).collect();
    assert!(!main.is_empty() && !last_stage.is_empty(), "{rows:?}");
    assert!(
        rows.len() < 55,
        "the budget did not stop training: {} epochs",
        rows.len()
    );
    assert_eq!(summary.epochs, rows.len());
    assert!(
        summary.depends_on_clock,
        "a budgeted run says it followed the clock"
    );
    // The main stage's rate fell from 0.1 towards 0 over its share; the final-only stage runs
    // at the step schedule's last rate.
    assert!(main.last().unwrap().lr < 0.1, "{rows:?}");
    let final_lr = cfg.optim.lr * cfg.optim.gamma.powi(2);
    assert!(
        last_stage.iter().all(|r| (r.lr - final_lr).abs() < 1e-12),
        "{rows:?}"
    );
    // At most the budget plus one evaluation of 500 images and a checkpoint.
    assert!(summary.wall_s < 6.0 + 20.0, "wall {:.1} s", summary.wall_s);
    assert!(
        summary.wall_s >= 6.0,
        "stopped before the budget: {:.1} s",
        summary.wall_s
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
