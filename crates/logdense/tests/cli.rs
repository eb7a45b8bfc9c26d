//! Hostile but fair input to the `logdense` binary: every case gets a clear one-line error
//! that names the option, field or file, and exit code 2 (bad input) or 1 (a failure such as
//! a corrupt file), never a panic (101), an abort (134) or an allocation that exhausts memory.

use std::path::{Path, PathBuf};
use std::process::Command;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logdense-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary; returns its exit code and standard error.
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logdense"))
        .args(args)
        .output()
        .expect("the logdense binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

/// Asserts exit code `code` and an error line that contains `needle`.
fn refused(args: &[&str], code: i32, needle: &str) {
    let (got, stderr) = run(args);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert_eq!(got, code, "{args:?} exited {got}:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| panic!("{args:?}: no error line in:\n{stderr}"));
    assert!(line.contains(needle), "{args:?}: {line:?} lacks {needle:?}");
}

#[test]
fn sizes_that_cannot_be_built_or_counted_are_refused_at_once() {
    refused(
        &["cost", "--preset", "ld-v1-2000-16", "--pattern", "dense"],
        2,
        "connections",
    );
    refused(
        &[
            "cost",
            "--preset",
            "ld-v1-12-16",
            "--classes",
            "18446744073709551615",
        ],
        2,
        "classes",
    );
    refused(
        &["cost", "--preset", "ld-v1-12-16", "--input", "4000000000"],
        2,
        "input",
    );
    refused(&["cost", "--preset", "ld-v1-12-16000000000"], 2, "(g)");
    refused(&["cost", "--preset", "ld-v1-0-16"], 2, "--preset");
    refused(
        &["cost", "--preset", "ld-v1-1000-100000", "--input", "65536"],
        2,
        "overflow",
    );
    refused(&["graph", "--layers", "100000000"], 2, "--layers");
    refused(
        &[
            "bench",
            "--preset",
            "ld-v1-2-4",
            "--steps",
            "18446744073709551615",
        ],
        2,
        "--steps",
    );
    refused(
        &["bench", "--preset", "ld-v1-2-4", "--batch", "0"],
        2,
        "--batch",
    );
    refused(
        &[
            "bench",
            "--preset",
            "ld-v1-2-4",
            "--batch",
            "100000000",
            "--steps",
            "1",
        ],
        2,
        "--batch",
    );
}

#[test]
fn bad_options_and_config_fields_exit_2_naming_them() {
    let dir = temp("config");
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    refused(
        &["train", "--batch-size", "1000000000", "--out", out],
        2,
        "batch_size",
    );
    refused(
        &["train", "--max-minutes", "nan", "--out", out],
        2,
        "max_train_s",
    );
    refused(&["train", "--lr", "0", "--out", out], 2, "optim.lr");
    // A segmentation preset makes a segmentation run, which names its missing data.
    refused(
        &["train", "--preset", "fc-ld-103", "--out", out],
        2,
        "data/fashion-scenes does not exist",
    );
    refused(
        &["train", "--dataset", "imagenet-21k", "--out", out],
        2,
        "data.dataset (--dataset): unknown data set",
    );
    refused(
        &["train", "--lr-schedule", "budget", "--out", out],
        2,
        "--lr-schedule: unknown value 'budget'",
    );
    refused(
        &["train", "--optimizer", "lion", "--out", out],
        2,
        "--optimizer",
    );
    for (text, needle) in [
        (
            "task = \"classify\"\n[model]\npreset = \"fc-ld-103\"\n",
            "segmentation preset",
        ),
        (
            "[data]\ndataset = \"camvid\"\n",
            "'camvid' is a segmentation data set",
        ),
        ("[optim]\nmomentum = -5.0\n", "optim.momentum"),
        ("[optim]\nweight_decay = -1e-4\n", "optim.weight_decay"),
        (
            "[optim]\ngamma = -0.1\nlr_schedule = \"step\"\n",
            "optim.gamma",
        ),
        ("[optim]\nepochz = 3\n", "epochz"),
        (
            "[data]\naugment = { random_resized_crop = 0 }\n",
            "random_resized_crop",
        ),
        ("[data]\naugment = { blur_sigma = -2.0 }\n", "blur_sigma"),
        ("[data]\nworkers = 100000\n", "data.workers"),
        ("[model]\ndropout = 1.5\n", "model.dropout"),
    ] {
        let file = dir.join("bad.toml");
        std::fs::write(&file, text).unwrap();
        refused(
            &["train", "--config", file.to_str().unwrap(), "--out", out],
            2,
            needle,
        );
        assert!(
            run(&["train", "--config", file.to_str().unwrap(), "--out", out])
                .1
                .contains("bad.toml"),
            "the error names the file"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes an IDX image file of `n` images of `side x side` and its label file.
fn write_idx(dir: &Path, prefix: &str, n: u32, side: u32) {
    let mut images = vec![0, 0, 8, 3];
    for v in [n, side, side] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend((0..n * side * side).map(|k| (k % 251) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend((0..n).map(|k| (k % 10) as u8));
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

#[test]
fn data_a_run_cannot_use_is_refused_naming_the_directory() {
    let dir = temp("data");
    let out = dir.join("run");
    let args = |data: &Path| {
        vec![
            "train".to_string(),
            "--dataset".into(),
            "mnist".into(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    // An empty test split.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    write_idx(&empty, "train", 8, 28);
    write_idx(&empty, "t10k", 0, 28);
    let a = args(&empty);
    refused(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        2,
        "holds no images",
    );
    // A test split of another image size.
    let sizes = dir.join("sizes");
    std::fs::create_dir_all(&sizes).unwrap();
    write_idx(&sizes, "train", 8, 28);
    write_idx(&sizes, "t10k", 4, 14);
    let a = args(&sizes);
    refused(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        2,
        "test images are",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_finished_run_is_kept_and_a_corrupt_checkpoint_is_named() {
    let dir = temp("run");
    let run_dir = dir.join("run");
    let out = run_dir.to_str().unwrap();
    let train = [
        "train",
        "--train-subset",
        "128",
        "--test-subset",
        "64",
        "--epochs",
        "1",
        "--lr-schedule",
        "step",
        "--workers",
        "0",
        "--out",
        out,
    ];
    let (code, stderr) = run(&train);
    assert_eq!(code, 0, "{stderr}");
    // Training into the finished run again is refused, and the run is untouched.
    let before = std::fs::read(run_dir.join("checkpoint.ldck")).unwrap();
    refused(&train, 2, "already holds a run");
    assert_eq!(
        std::fs::read(run_dir.join("checkpoint.ldck")).unwrap(),
        before
    );
    // 64 flipped bytes in the middle of the checkpoint: eval names the file and the checksum.
    let mut bad = before.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid - 32..mid + 32] {
        *b = !*b;
    }
    std::fs::write(run_dir.join("checkpoint.ldck"), &bad).unwrap();
    refused(&["eval", "--run", out], 1, "checksum mismatch");
    refused(&["train", "--resume", out], 1, "checkpoint.ldck");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cluster_options_that_cannot_work_exit_2_naming_them() {
    let dir = temp("cluster");
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let grid = ["reproduce", "table1", "--quick", "--out", out];
    fn with<'a>(grid: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [grid, extra].concat()
    }
    refused(
        &with(&grid, &["--slurm", "--array-size", "0"]),
        2,
        "--array-size must be at least 1",
    );
    refused(
        &with(&grid, &["--slurm", "--array-size", "13"]),
        2,
        "the plan has 12 runs",
    );
    refused(
        &with(&grid, &["--slurm", "--shard", "1/2"]),
        2,
        "exclude each other",
    );
    // Outside a job array, --shard slurm has nothing to read.
    let out_of_array = Command::new(env!("CARGO_BIN_EXE_logdense"))
        .args(with(&grid, &["--shard", "slurm"]))
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_MIN")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out_of_array.stderr);
    assert_eq!(out_of_array.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("SLURM_ARRAY_TASK_ID is not set"),
        "{stderr}"
    );
    // An output directory that cannot be made (under a file).
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("out");
    let under_file = under_file.to_str().unwrap();
    refused(
        &[
            "reproduce",
            "table1",
            "--quick",
            "--out",
            under_file,
            "--slurm",
        ],
        2,
        "--out",
    );
    refused(
        &[
            "reproduce",
            "table1",
            "--quick",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--out",
            under_file,
        ],
        2,
        "--out",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two processes given the same shard (as two array tasks given one shard would be): one
/// trains the run, the other is refused with one error line and exit code 2, and the run is
/// trained once.
#[test]
fn two_processes_racing_for_one_run_train_it_once() {
    let dir = temp("race");
    let out = dir.join("out");
    let args = [
        "reproduce",
        "table1",
        "--quick",
        "--seeds",
        "1",
        "--subset",
        "1200",
        "--test-subset",
        "200",
        "--epochs",
        "2",
        "--workers",
        "0",
        "--shard",
        "1/4",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = Command::new(env!("CARGO_BIN_EXE_logdense"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let run = out.join("table1/ld-n24-g4-s1");
    let started = std::time::Instant::now();
    while !logdense::training::engine::lock_is_held(&run) {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first process never took the run's lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    refused(&args, 2, "in use by another training");
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), 3, "2 epochs and the final-head-only one, once");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A designed pattern as a file: `design --out` writes it, `graph`, `cost` and `train` take it
/// with `--pattern-file`, and a broken or mismatched file is refused naming the file and the
/// layer, with exit code 2.
#[test]
fn pattern_files_are_written_used_and_checked() {
    let dir = temp("pattern");
    let file = dir.join("designed.json");
    let f = file.to_str().unwrap();
    // ld-v1-6-8: 3 blocks of 6 layers, 18 over global indices.
    let (code, stderr) = run(&[
        "design",
        "--layers",
        "18",
        "--max-inputs",
        "5",
        "--log-budget",
        "--out",
        f,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    let parsed = logdense::graph::PatternFile::parse(&text, f).unwrap();
    assert_eq!(parsed.design.budget, "log");
    for args in [
        vec!["graph", "--pattern-file", f],
        vec!["cost", "--preset", "ld-v1-6-8", "--pattern-file", f],
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
    let out = dir.join("run");
    let (code, stderr) = run(&[
        "train",
        "--preset",
        "ld-v1-6-8",
        "--pattern-file",
        f,
        "--train-subset",
        "128",
        "--eval-subset",
        "64",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let ck =
        logdense::training::checkpoint::Checkpoint::load(&out.join("checkpoint.ldck")).unwrap();
    assert_eq!(
        ck.state.spec.custom_sets.as_ref(),
        Some(&parsed.design.sets)
    );
    // The wrong number of layers for the network.
    refused(
        &["cost", "--preset", "ld-v1-12-16", "--pattern-file", f],
        2,
        "connects 18 layers, the network has 36",
    );
    // A layer that reads a later one.
    let mut broken = parsed.clone();
    broken.design.sets[5] = vec![4, 7];
    let bad = dir.join("bad.json");
    std::fs::write(&bad, broken.to_json()).unwrap();
    let b = bad.to_str().unwrap();
    for args in [
        vec!["graph", "--pattern-file", b],
        vec!["cost", "--preset", "ld-v1-6-8", "--pattern-file", b],
        vec![
            "train",
            "--preset",
            "ld-v1-6-8",
            "--pattern-file",
            b,
            "--out",
            out.to_str().unwrap(),
        ],
    ] {
        refused(&args, 2, "layer 5 reads layer 7");
        assert!(
            run(&args).1.contains("bad.json"),
            "{args:?}: names the file"
        );
    }
    std::fs::write(&bad, b"{\"format\": ").unwrap();
    refused(&["graph", "--pattern-file", b], 2, "bad.json");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_and_import_round_trip_and_refuse_bad_files_leaving_nothing() {
    let dir = temp("interop");
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (code, stderr) = run(&[
        "export",
        "--preset",
        "ld-v1-3-4",
        "--onnx",
        &p("m.onnx"),
        "--safetensors",
        &p("w.safetensors"),
        "--sample",
        &p("s.safetensors"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for f in ["m.onnx", "w.safetensors", "s.safetensors"] {
        assert!(dir.join(f).metadata().unwrap().len() > 1000, "{f}");
    }
    // The export's own metadata names the network: no --preset needed.
    let (code, stderr) = run(&[
        "import",
        "--safetensors",
        &p("w.safetensors"),
        "--out",
        &p("run"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Its logits on the sample's input are the sample's.
    let (code, stderr) = run(&[
        "export",
        "--run",
        &p("run"),
        "--sample",
        &p("again.safetensors"),
        "--sample-input",
        &p("s.safetensors"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let logits = |f: &str| {
        logdense::interop::files::read_state_dict(&dir.join(f))
            .unwrap()
            .tensors["logits"]
            .clone()
    };
    assert_eq!(logits("again.safetensors"), logits("s.safetensors"));

    std::fs::write(dir.join("notes.txt"), "not a model").unwrap();
    let w = std::fs::read(dir.join("w.safetensors")).unwrap();
    std::fs::write(dir.join("cut.safetensors"), &w[..w.len() / 3]).unwrap();
    refused(
        &[
            "import",
            "--pytorch",
            &p("notes.txt"),
            "--preset",
            "ld-v1-3-4",
            "--out",
            &p("r1"),
        ],
        2,
        "notes.txt: neither a safetensors file nor a PyTorch",
    );
    refused(
        &[
            "import",
            "--safetensors",
            &p("cut.safetensors"),
            "--out",
            &p("r2"),
        ],
        2,
        "cut.safetensors: not a valid safetensors file",
    );
    refused(
        &[
            "import",
            "--safetensors",
            &p("w.safetensors"),
            "--preset",
            "ld-v1-4-4",
            "--out",
            &p("r3"),
        ],
        2,
        "mods.",
    );
    refused(
        &[
            "import",
            "--pytorch",
            &p("w.safetensors"),
            "--preset",
            "densenet-121",
            "--out",
            &p("r4"),
        ],
        2,
        "missing: mods.0.bn.weight",
    );
    refused(
        &[
            "import",
            "--safetensors",
            &p("w.safetensors"),
            "--out",
            &p("run"),
        ],
        2,
        "already exists",
    );
    refused(
        &[
            "export",
            "--preset",
            "ld-v1-3-4",
            "--onnx",
            &format!("{}/x.onnx", p("notes.txt")),
        ],
        2,
        "--onnx: cannot write",
    );
    refused(
        &["export", "--preset", "ld-v1-3-4"],
        2,
        "--onnx, --safetensors or --sample",
    );
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &left {
        assert!(
            !name.starts_with('r') || name == "run",
            "a refused import left {name}"
        );
        assert!(!name.contains("tmp"), "a temporary file was left: {name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
