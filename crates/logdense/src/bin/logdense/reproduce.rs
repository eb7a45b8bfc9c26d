//! `reproduce`: the paper's experiments as plans of ordinary training runs.

use crate::usage;
use anyhow::Result;
use clap::Args;
use logdense::experiments::reproduce::{self, Experiment, Options};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ReproduceArgs {
    /// table1, table2, fig3 or fig8 (training); fig5a or costs (analysis, seconds: LogLog's
    /// inputs per layer, into --out; the paper's cost columns beside ours); report (merge the
    /// finished runs under --out into runs.csv, table.md and plots); or status (each run under
    /// --out: done, running, interrupted or missing).
    experiment: String,
    /// A small grid for a CPU (n = 24, g = 4, on which NEAREST's MBD is twice LOG's; 7500
    /// training images, 2 epochs and the final-only one, 5000 test images) instead of the
    /// paper's grid and schedule.
    #[arg(long)]
    quick: bool,
    /// Between --quick and the paper's grid: the quick grid's networks on the full training
    /// and test sets for 6 epochs (the paper's step schedule) and the final-head-only one.
    #[arg(long, conflicts_with = "quick")]
    medium: bool,
    #[arg(long, default_value = "fashion-mnist", help = crate::dataset_help())]
    dataset: String,
    /// Data directory (default: the data set's own).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Seeds per network.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Epochs per run (default: 2 with --quick, the paper's otherwise).
    #[arg(long)]
    epochs: Option<usize>,
    /// Train on a seeded subset of this many images.
    #[arg(long)]
    subset: Option<usize>,
    /// Evaluate on a seeded subset of the test set.
    #[arg(long)]
    test_subset: Option<usize>,
    /// Loader worker threads per run (0: batches on the training thread, bit-exact reruns).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the runs go (OUT/EXPERIMENT/RUN).
    #[arg(long, default_value = "runs/reproduce")]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run only the K-th of N disjoint slices of the run list (for a cluster's job array), or
    /// `slurm`: K and N from the Slurm array task's SLURM_ARRAY_TASK_ID, _MIN and _COUNT.
    #[arg(long)]
    shard: Option<String>,
    /// Print the plan (a line per run, its directory and estimated cost) and stop.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: time one training step and one inference pass of every network of the
    /// plan on this machine and print the node-hours the plan needs, and its wall time on 1,
    /// 16 and 64 such nodes.
    #[arg(long, requires = "dry_run")]
    measure: bool,
    /// Write sbatch scripts for a Slurm job array (OUT/EXPERIMENT/slurm/): task i trains
    /// shard i+1 of the plan, and a report job that depends on the array (afterany) merges
    /// the results. --out must be a directory every node shares.
    #[arg(long)]
    slurm: bool,
    /// With --slurm: array tasks (default: one per run, at most 64).
    #[arg(long, requires = "slurm")]
    array_size: Option<usize>,
    /// With --slurm: an extra #SBATCH option (repeatable), e.g. --sbatch-arg=--partition=cpu
    /// or --sbatch-arg=--time=2-00:00:00.
    #[arg(long, requires = "slurm", allow_hyphen_values = true)]
    sbatch_arg: Vec<String>,
    /// With --slurm: submit the array and its report job with sbatch.
    #[arg(long, requires = "slurm")]
    submit: bool,
}

pub(crate) fn reproduce_cmd(a: ReproduceArgs) -> Result<()> {
    if a.experiment == "costs" {
        return crate::analysis::paper_table();
    }
    if a.experiment == "fig5a" {
        let dir = a.out.join("fig5a");
        let rows = reproduce::write_fig5a(&dir)?;
        let (lo, hi) = logdense::graph::paper::FIG5A_PLAIN_RANGE;
        let (glo, ghi) = logdense::graph::paper::FIG5A_AUGMENTATION_GAIN;
        println!("Fig. 5a: mean inputs per layer of LogLog-DenseNet (paper: {lo} to {hi} plain, +{glo} to +{ghi} augmented, L in (10, 2000))");
        println!(
            "{:>6} {:>8} {:>10} {:>6}",
            "L", "plain", "augmented", "gain"
        );
        // Every depth up to 100, then every fifth of the log-spaced ones (the CSV has them all).
        for (_, r) in rows
            .iter()
            .enumerate()
            .filter(|(k, _)| *k < 10 || (k - 10) % 5 == 4)
        {
            println!(
                "{:>6} {:>8.3} {:>10.3} {:>+6.3}",
                r.layers,
                r.plain,
                r.augmented,
                r.augmented - r.plain
            );
        }
        let range = |f: fn(&reproduce::Fig5aRow) -> f64| {
            rows.iter()
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                })
        };
        let (plo, phi) = range(|r| r.plain);
        let (gmin, gmax) = range(|r| r.augmented - r.plain);
        println!(
            "ours over {} depths: plain {plo:.2} to {phi:.2}, gain +{gmin:.2} to +{gmax:.2}",
            rows.len()
        );
        println!(
            "-> {}, {}",
            dir.join("fig5a.csv").display(),
            dir.join("fig5a.png").display()
        );
        return Ok(());
    }
    if a.experiment == "status" {
        return status_cmd(&a);
    }
    if a.experiment == "report" {
        let mut any = false;
        for e in Experiment::ALL {
            if !a.out.join(e.name()).is_dir() {
                continue;
            }
            let rows = reproduce::report(&a.out, e)?;
            any = true;
            println!(
                "{}: {} finished runs -> {}",
                e.name(),
                rows.len(),
                a.out.join(e.name()).join("table.md").display()
            );
        }
        if !any {
            return Err(usage(format!(
                "--out: {} holds no experiment",
                a.out.display()
            )));
        }
        return Ok(());
    }
    let experiment: Experiment = a
        .experiment
        .parse()
        .map_err(|e: String| usage(format!("{e}, or fig5a, costs, report, status")))?;
    let opts = Options {
        quick: a.quick,
        medium: a.medium,
        dataset: a.dataset.clone(),
        data: a.data.clone(),
        seeds: a.seeds,
        epochs: a.epochs,
        subset: a.subset,
        test_subset: a.test_subset,
        workers: a.workers,
        out: a.out.clone(),
    };
    let mut runs = reproduce::plan(experiment, &opts).map_err(|e| usage(format!("{e:#}")))?;
    if a.slurm {
        return slurm_cmd(&a, experiment, &opts, &runs);
    }
    let grid = runs.clone();
    if let Some(s) = &a.shard {
        let (k, n) = if s == "slurm" {
            let var = |name: &str| std::env::var(name).ok();
            reproduce::slurm_shard(
                var("SLURM_ARRAY_TASK_ID").as_deref(),
                var("SLURM_ARRAY_TASK_MIN").as_deref(),
                var("SLURM_ARRAY_TASK_COUNT").as_deref(),
            )
            .map_err(|e| usage(format!("{e:#}")))?
        } else {
            reproduce::parse_shard(s).map_err(|e| usage(format!("{e:#}")))?
        };
        runs = reproduce::shard(runs, k, n).map_err(|e| usage(format!("{e:#}")))?;
        eprintln!(
            "shard {k}/{n}: {} of the plan's {} runs",
            runs.len(),
            grid.len()
        );
    }
    if a.dry_run {
        let mut total = 0.0;
        for r in &runs {
            total += r.total_flops();
            println!(
                "{:<14} n={:<3} g={:<3} seed={} mbd={:<3} connections={:<5} {:.3} GFLOPs/image  {:.2e} FLOPs  {}{}",
                r.cell.label,
                r.cell.n,
                r.cell.g,
                r.seed,
                r.mbd,
                r.connections,
                r.gflops,
                r.total_flops(),
                r.dir.display(),
                if r.dir.join("summary.json").exists() { "  (finished)" } else { "" }
            );
        }
        if let Some(r) = runs.first() {
            println!(
                "{} runs, {:.2e} FLOPs in all: training (3 x forward) on {} images for {} epochs{}, \
                 and an evaluation on {} test images after each",
                runs.len(),
                total,
                r.images,
                r.epochs,
                if r.final_only_epochs > 0 {
                    format!(" and {} final-head-only", r.final_only_epochs)
                } else {
                    String::new()
                },
                r.test_images
            );
        }
        if a.measure {
            let device = crate::open_device(&a.device)?;
            measure_plan(&runs, device)?;
        }
        return Ok(());
    }
    let device = crate::open_device(&a.device)?;
    reproduce::write_grid(&a.out, experiment, &grid).map_err(|e| usage(format!("{e:#}")))?;
    let trained = reproduce::execute(&runs, &opts, &device, true)?;
    let rows = reproduce::report(&a.out, experiment)?;
    println!(
        "{}: trained {trained} runs; {} finished in {} -> {}",
        experiment.name(),
        rows.len(),
        a.out.display(),
        a.out.join(experiment.name()).join("table.md").display()
    );
    Ok(())
}

/// The plan's options as `reproduce` arguments, for the array's tasks to rebuild the same plan.
fn plan_args(a: &ReproduceArgs) -> Vec<String> {
    let mut args = Vec::new();
    if a.quick {
        args.push("--quick".to_string());
    }
    if a.medium {
        args.push("--medium".to_string());
    }
    args.extend(["--dataset".into(), a.dataset.clone()]);
    if let Some(d) = &a.data {
        args.extend(["--data".into(), d.display().to_string()]);
    }
    args.extend(["--seeds".into(), a.seeds.to_string()]);
    for (flag, value) in [
        ("--epochs", a.epochs),
        ("--subset", a.subset),
        ("--test-subset", a.test_subset),
    ] {
        if let Some(v) = value {
            args.extend([flag.to_string(), v.to_string()]);
        }
    }
    args.extend(["--workers".into(), a.workers.to_string()]);
    args.extend(["--device".into(), a.device.clone()]);
    args
}

/// `reproduce EXPERIMENT --slurm`: writes (and with --submit submits) the job array and its
/// report job.
fn slurm_cmd(
    a: &ReproduceArgs,
    experiment: Experiment,
    opts: &Options,
    runs: &[reproduce::PlannedRun],
) -> Result<()> {
    if a.shard.is_some() {
        return Err(usage(
            "--slurm and --shard exclude each other: the array's tasks take the shards",
        ));
    }
    let array_size = a.array_size.unwrap_or(runs.len().min(64));
    reproduce::check_array_size(array_size, runs.len()).map_err(|e| usage(format!("{e:#}")))?;
    let batch = logdense::training::config::TaskConfig::default()
        .optim
        .batch_size;
    let resources = reproduce::task_resources(runs, batch)?;
    // The nodes run the same executable: its absolute path, which must be on shared storage.
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| anyhow::anyhow!("cannot find the logdense executable: {e}"))?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| usage(format!("--out: cannot create {}: {e}", opts.out.display())))?;
    let out = opts
        .out
        .canonicalize()
        .map_err(|e| usage(format!("--out: {}: {e}", opts.out.display())))?;
    let job = reproduce::SlurmJob {
        experiment: experiment.name().into(),
        array_size,
        sbatch_args: a.sbatch_arg.clone(),
        exe,
        plan_args: plan_args(a),
        out: out.clone(),
        resources,
    };
    let (array, report) = job.write().map_err(|e| usage(format!("{e:#}")))?;
    reproduce::write_grid(&out, experiment, runs).map_err(|e| usage(format!("{e:#}")))?;
    println!(
        "{}: {} runs in {array_size} array tasks of {} CPUs and {} MiB each",
        experiment.name(),
        runs.len(),
        resources.cpus,
        resources.mem_mib
    );
    println!("wrote {} and {}", array.display(), report.display());
    if !a.submit {
        println!("submit with:");
        println!("  J=$(sbatch --parsable {})", array.display());
        println!("  sbatch --dependency=afterany:$J {}", report.display());
        return Ok(());
    }
    let array_job = sbatch(&[array.display().to_string()])?;
    let report_job = sbatch(&[
        format!("--dependency=afterany:{array_job}"),
        report.display().to_string(),
    ])?;
    println!("submitted: array_job={array_job} report_job={report_job}");
    Ok(())
}

/// Runs `sbatch --parsable ARGS` and returns the job id it prints.
fn sbatch(args: &[String]) -> Result<String> {
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .output()
        .map_err(|e| {
            anyhow::anyhow!("--submit: cannot run sbatch (is Slurm's client installed?): {e}")
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "--submit: sbatch {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() {
        anyhow::bail!("--submit: sbatch printed no job id");
    }
    Ok(id)
}

/// `reproduce status --out DIR`: each run of every plan under DIR, and the counts.
fn status_cmd(a: &ReproduceArgs) -> Result<()> {
    let rows = reproduce::status(&a.out).map_err(|e| usage(format!("{e:#}")))?;
    let mut counts = std::collections::BTreeMap::new();
    for r in &rows {
        println!(
            "{:<12} {:<8} {}",
            r.state.name(),
            r.experiment,
            r.dir.display()
        );
        *counts.entry(r.state.name()).or_insert(0usize) += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{} runs: {}", rows.len(), summary.join(", "));
    Ok(())
}

/// `--dry-run --measure`: times every distinct network of the plan here (one warm-up and one
/// timed training step at the runs' batch, and an inference pass) and prints what the plan
/// costs in node-hours and wall time.
fn measure_plan(runs: &[reproduce::PlannedRun], device: burn::prelude::Device) -> Result<()> {
    use logdense::experiments::bench::{run_spec, BenchOptions};
    let batch = logdense::training::config::TaskConfig::default()
        .optim
        .batch_size;
    let opts = BenchOptions {
        batch,
        warmup: 1,
        steps: 1,
        device,
        ..BenchOptions::default()
    };
    let mut measured: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    let time = reproduce::plan_time(runs, |run| {
        let key = format!("{}-h{}", run.cell.preset, run.cell.hub_multiplier);
        if let Some(&speed) = measured.get(&key) {
            return Ok(speed);
        }
        let r = run_spec(&key, &run.spec()?, &opts)?;
        eprintln!(
            "measured {key}: {:.1} training, {:.1} inference images/s",
            r.train_img_per_s, r.infer_img_per_s
        );
        measured.insert(key, (r.train_img_per_s, r.infer_img_per_s));
        Ok((r.train_img_per_s, r.infer_img_per_s))
    })?;
    println!(
        "at the measured speeds ({} threads): {:.1} node-hours; wall time {:.1} h on 1 node, \
         {:.1} h on 16, {:.1} h on 64 (one run at a time per node)",
        logdense::experiments::bench::threads(),
        time.node_hours(),
        time.wall_hours(1),
        time.wall_hours(16),
        time.wall_hours(64)
    );
    Ok(())
}
