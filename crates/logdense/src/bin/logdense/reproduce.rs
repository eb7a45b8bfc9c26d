//! `reproduce`: the paper's experiments as plans of ordinary training runs.

use crate::usage;
use anyhow::Result;
use clap::Args;
use logdense::experiments::reproduce::{self, Experiment, Options};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ReproduceArgs {
    /// table1, table2, fig3 or fig8 (training); fig5a or costs (analysis, seconds: LogLog's
    /// inputs per layer, into --out; the paper's cost columns beside ours); or report (merge the
    /// finished runs under --out into runs.csv, table.md and plots).
    experiment: String,
    /// A small grid for a CPU (n = 24, g = 4, on which NEAREST's MBD is twice LOG's; 7500
    /// training images, 2 epochs and the final-only one, 5000 test images) instead of the
    /// paper's grid and schedule.
    #[arg(long)]
    quick: bool,
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
    /// Where the runs go (OUT/EXPERIMENT/RUN).
    #[arg(long, default_value = "runs/reproduce")]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run only the K-th of N disjoint slices of the run list (for a cluster's job array).
    #[arg(long)]
    shard: Option<String>,
    /// Print the plan (a line per run, its directory and estimated cost) and stop.
    #[arg(long)]
    dry_run: bool,
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
        .map_err(|e: String| usage(format!("{e}, or fig5a, costs, report")))?;
    let opts = Options {
        quick: a.quick,
        dataset: a.dataset.clone(),
        data: a.data.clone(),
        seeds: a.seeds,
        epochs: a.epochs,
        subset: a.subset,
        test_subset: a.test_subset,
        out: a.out.clone(),
    };
    let mut runs = reproduce::plan(experiment, &opts).map_err(|e| usage(format!("{e:#}")))?;
    if let Some(s) = &a.shard {
        let (k, n) = reproduce::parse_shard(s).map_err(|e| usage(format!("{e:#}")))?;
        runs = reproduce::shard(runs, k, n).map_err(|e| usage(format!("{e:#}")))?;
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
        return Ok(());
    }
    let device = logdense::device::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
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
