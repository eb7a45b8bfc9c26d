//! Kill -9 at any moment loses nothing: a training process (the `logdense` binary) is killed
//! with SIGKILL at several moments, inside a checkpoint write among them, and resumed each
//! time; it must finish with exactly the weights and metric rows of an uninterrupted run with
//! the same seed and `workers = 0`.
#![cfg(unix)]

use burn::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

const CONFIG: &str = "seed = 3
[model]
preset = \"fashion\"
blocks = [2, 2, 2]
growth = 8
dropout = 0.1
[data]
train_subset = 1280
test_subset = 200
workers = 0
[optim]
epochs = 4
lr_schedule = \"step\"
final_only_epochs = 1
";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logdense-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts `logdense train` into `dir`: resumed when it holds a checkpoint, fresh otherwise.
fn start(config: &Path, dir: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logdense"));
    if dir.join("checkpoint.ldck").exists() {
        cmd.arg("train").arg("--resume").arg(dir);
    } else {
        cmd.arg("train")
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(dir);
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the logdense binary starts")
}

fn kill(mut child: Child) {
    // SAFETY: sends SIGKILL to a child process this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
}

fn weights(dir: &Path) -> Vec<f32> {
    logdense::training::run::Trained::load(dir, &Device::flex())
        .unwrap()
        .model
        .flat_weights()
}

fn rows(dir: &Path) -> Vec<logdense::training::report::EpochMetrics> {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn killed_and_resumed_training_ends_with_the_uninterrupted_runs_tensors() {
    let require = Path::new(logdense::data::FASHION_MNIST_DIR);
    assert!(
        require.join("t10k-images-idx3-ubyte.gz").exists(),
        "Fashion-MNIST is missing: apt-get install dataset-fashion-mnist"
    );
    let config = temp("config.toml");
    std::fs::write(&config, CONFIG).unwrap();

    let straight = temp("straight");
    let t0 = Instant::now();
    let status = start(&config, &straight).wait().unwrap();
    assert!(status.success());
    let full = t0.elapsed();

    let killed = temp("killed");
    let tmp = killed.join("checkpoint.tmp");
    let mut kills_inside_a_write = 0;
    let mut kills = 0;
    // Kill inside the checkpoint writes: the moment the temporary file appears.
    for _ in 0..3 {
        // A temporary file left by the last kill is not a new write.
        let _ = std::fs::remove_file(&tmp);
        let child = start(&config, &killed);
        let until = Instant::now() + full * 2;
        while !tmp.exists() && Instant::now() < until {
            std::hint::spin_loop();
        }
        kill(child);
        kills += 1;
        if tmp.exists() {
            kills_inside_a_write += 1;
            // The previous checkpoint, if any, is whole: a kill mid-write loses nothing.
            if killed.join("checkpoint.ldck").exists() {
                logdense::training::checkpoint::Checkpoint::load(&killed.join("checkpoint.ldck"))
                    .unwrap();
            }
        }
    }
    // Kill at moments spread over an epoch's training.
    for fraction in [0.1, 0.35, 0.6] {
        let child = start(&config, &killed);
        std::thread::sleep(full.mul_f64(fraction));
        kill(child);
        kills += 1;
    }
    let status = start(&config, &killed).wait().unwrap();
    assert!(status.success(), "the last resume did not finish");
    eprintln!("{kills_inside_a_write} of 3 kills aimed at a checkpoint write landed inside one");
    assert!(
        kills_inside_a_write >= 1,
        "no kill landed inside a checkpoint write"
    );
    assert_eq!(kills, 6);

    let (a, b) = (weights(&straight), weights(&killed));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "weights differ after the kills and resumes");
    let (ra, rb) = (rows(&straight), rows(&killed));
    assert_eq!(
        rb.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "every epoch's metric row is present once"
    );
    assert_eq!(
        ra.iter()
            .map(|r| (r.train_loss, r.test_accuracy))
            .collect::<Vec<_>>(),
        rb.iter()
            .map(|r| (r.train_loss, r.test_accuracy))
            .collect::<Vec<_>>()
    );
    for dir in [&straight, &killed] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::remove_file(&config).unwrap();
}
