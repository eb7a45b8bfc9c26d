//! The paper's experiments as plans of ordinary training runs (`logdense reproduce`).
//!
//! An experiment is a grid of networks (pattern, n, g) times seeds. Each run is a normal
//! classification run in its own directory under `OUT/EXPERIMENT/`, so a killed `reproduce`
//! picks up where it stopped (finished runs are skipped, interrupted ones resumed), and a grid
//! spreads over machines with `--shard K/N` (the K-th of N disjoint slices of the run list).
//! [`report`] merges whatever has finished, from any number of machines, into `runs.csv` and
//! `table.md`.

use crate::config::{ClassSchedule, TrainConfig};
use crate::train::Run;
use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use logdense_graph::{distance, TransitionHops};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The experiments that train networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Experiment {
    /// Table 1: LOG (V1), NEAREST and EVENLY-SPACED at LOG's budget, and V2.
    Table1,
    /// Table 2: NEAREST-HALF, EVENLY-SPACED-HALF, NEAREST-HALF-AND-LOG and DenseNet.
    Table2,
    /// Fig. 8: LogLog-DenseNet (hub multiplier 1 and 3) against LOG and DenseNet.
    Fig8,
}

impl std::str::FromStr for Experiment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table1" => Ok(Experiment::Table1),
            "table2" => Ok(Experiment::Table2),
            "fig8" => Ok(Experiment::Fig8),
            other => Err(format!(
                "unknown experiment '{other}' (table1, table2, fig8)"
            )),
        }
    }
}

impl Experiment {
    pub fn name(self) -> &'static str {
        match self {
            Experiment::Table1 => "table1",
            Experiment::Table2 => "table2",
            Experiment::Fig8 => "fig8",
        }
    }

    /// The grid: `(label as the paper names the column, preset family prefix, n, g)`, and for
    /// LogLog the hub multiplier. `quick` is a small grid on which the patterns' backpropagation
    /// distances still differ materially (NEAREST's MBD is twice LOG's at n = 24).
    pub fn grid(self, quick: bool) -> Vec<Cell> {
        let sizes: Vec<(usize, usize)> = match (self, quick) {
            (_, true) => vec![(24, 8)],
            (Experiment::Table2, false) => logdense_graph::paper::TABLE2
                .iter()
                .map(|(ng, ..)| *ng)
                .collect(),
            (_, false) => logdense_graph::paper::TABLE1
                .iter()
                .map(|(ng, ..)| *ng)
                .collect(),
        };
        let columns: &[(&str, &str, usize)] = match self {
            Experiment::Table1 => &[
                ("LD", "ld-v1", 1),
                ("N", "nearest", 1),
                ("E", "evenly", 1),
                ("LD2", "ld-v2", 1),
            ],
            // The networks as the authors built them (bottleneck layers; their N+LD; DenseNet
            // without compression): these reproduce Table 2's cost columns.
            Experiment::Table2 => &[
                ("N", "t2-nearest-half", 1),
                ("E", "t2-evenly-half", 1),
                ("N+LD", "t2-nhl", 1),
                ("D", "t2-dense", 1),
            ],
            Experiment::Fig8 => &[
                ("LogLog", "loglog", 1),
                ("LogLog hub x3", "loglog", 3),
                ("LD", "ld-v1", 1),
                ("D", "dense", 1),
            ],
        };
        sizes
            .iter()
            .flat_map(|&(n, g)| {
                columns.iter().map(move |&(label, family, hub)| Cell {
                    label: label.to_string(),
                    preset: format!("{family}-{n}-{g}"),
                    n,
                    g,
                    hub_multiplier: hub,
                })
            })
            .collect()
    }
}

/// One network of a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub label: String,
    pub preset: String,
    pub n: usize,
    pub g: usize,
    pub hub_multiplier: usize,
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    /// `fashion-mnist` (default), `mnist`, `cifar10`, `cifar100`, `svhn`.
    pub dataset: String,
    pub data: Option<PathBuf>,
    pub seeds: usize,
    /// Epochs per run (default: 4 with `quick`, else the paper's: 250, 60 for SVHN).
    pub epochs: Option<usize>,
    /// Train on a seeded subset of this many images (default: 10000 with `quick`).
    pub subset: Option<usize>,
    /// Evaluate on a seeded subset of the test set (default: all of it).
    pub test_subset: Option<usize>,
    pub out: PathBuf,
}

/// One run of the plan: its network, seed, directory and estimated cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    pub experiment: String,
    #[serde(flatten)]
    pub cell: Cell,
    pub seed: u64,
    pub dir: PathBuf,
    pub params: u64,
    /// Forward GFLOPs per image at the data's input size.
    pub gflops: f64,
    pub mbd: u32,
    pub connections: usize,
    pub epochs: usize,
    /// Training images per epoch.
    pub images: usize,
    /// Estimated training work: 3 x forward FLOPs x images x epochs.
    pub train_flops: f64,
}

/// The data's input shape, classes and training-set size, by name.
fn data_shape(dataset: &str) -> Result<([usize; 3], usize, usize)> {
    Ok(match dataset {
        "fashion-mnist" | "mnist" => ([1, 28, 28], 10, 60_000),
        "cifar10" => ([3, 32, 32], 10, 50_000),
        "cifar100" => ([3, 32, 32], 100, 50_000),
        "svhn" => ([3, 32, 32], 10, 73_257),
        other => bail!(
            "--dataset: unknown data set '{other}' (fashion-mnist, mnist, cifar10, cifar100, svhn)"
        ),
    })
}

/// The runs of `experiment`, in order: every cell of its grid for seed 1, then seed 2, ...
pub fn plan(experiment: Experiment, opts: &Options) -> Result<Vec<PlannedRun>> {
    if opts.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let (input, classes, train_images) = data_shape(&opts.dataset)?;
    let images = opts
        .subset
        .or(opts.quick.then_some(10_000))
        .unwrap_or(train_images)
        .min(train_images);
    let epochs = opts
        .epochs
        .unwrap_or(match (opts.quick, opts.dataset.as_str()) {
            (true, _) => 4,
            (false, "svhn") => 60,
            (false, _) => 250,
        });
    let cells = experiment.grid(opts.quick);
    let mut runs = Vec::new();
    for seed in 1..=opts.seeds as u64 {
        for cell in &cells {
            let mut spec = crate::presets::preset(&cell.preset).map_err(anyhow::Error::msg)?;
            spec.input = input;
            spec.classes = classes;
            spec.hub_multiplier = cell.hub_multiplier;
            let graph = spec
                .build()
                .with_context(|| format!("{} on {}", cell.preset, opts.dataset))?;
            let cost = graph.cost().total;
            let mbd = distance::GraphDistances::new(&graph, TransitionHops::Counted)
                .summary()?
                .mbd;
            let name = format!(
                "{}-n{}-g{}-s{seed}",
                cell.label.to_lowercase().replace(['+', ' '], "-"),
                cell.n,
                cell.g
            );
            runs.push(PlannedRun {
                experiment: experiment.name().into(),
                cell: cell.clone(),
                seed,
                dir: opts.out.join(experiment.name()).join(name),
                params: cost.params,
                gflops: cost.gflops(),
                mbd,
                connections: graph.connections(),
                epochs,
                images,
                train_flops: 3.0 * cost.flops as f64 * images as f64 * epochs as f64,
            });
        }
    }
    Ok(runs)
}

/// The `k`-th (from 1) of `n` disjoint slices of `runs`: every run lands in exactly one.
pub fn shard(runs: Vec<PlannedRun>, k: usize, n: usize) -> Result<Vec<PlannedRun>> {
    if n == 0 || k == 0 || k > n {
        bail!("--shard K/N needs 1 <= K <= N, got {k}/{n}");
    }
    Ok(runs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % n == k - 1)
        .map(|(_, r)| r)
        .collect())
}

/// Parses `K/N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (k, n) = s.split_once('/').context("--shard takes K/N, e.g. 2/8")?;
    Ok((
        k.trim().parse().context("--shard: K is not a number")?,
        n.trim().parse().context("--shard: N is not a number")?,
    ))
}

/// The classification config of a planned run.
pub fn run_config(run: &PlannedRun, opts: &Options) -> TrainConfig {
    let mut cfg = TrainConfig {
        seed: run.seed,
        ..TrainConfig::default()
    };
    cfg.model.preset = run.cell.preset.clone();
    cfg.model.hub_multiplier = Some(run.cell.hub_multiplier);
    cfg.data.dataset = opts.dataset.clone();
    cfg.data.dir = opts.data.clone();
    cfg.data.train_subset = Some(run.images);
    cfg.data.test_subset = opts.test_subset;
    cfg.data.augment = match opts.dataset.as_str() {
        "cifar10" | "cifar100" => logdense_data::Augment::cifar(),
        _ => cfg.data.augment,
    };
    // The paper's schedule (Sec. 4): x0.1 after 1/2 and 3/4 of the iterations.
    cfg.optim.lr_schedule = ClassSchedule::Step;
    cfg.optim.max_train_s = None;
    cfg.optim.epochs = run.epochs;
    cfg
}

/// File in each run directory naming its place in the plan.
pub const PLAN_FILE: &str = "plan.json";

/// Trains every run not yet finished: a run whose directory holds `summary.json` is skipped,
/// one holding a checkpoint is resumed. Returns how many runs were trained.
pub fn execute(
    runs: &[PlannedRun],
    opts: &Options,
    device: &Device,
    progress: bool,
) -> Result<usize> {
    let mut trained = 0;
    for (k, run) in runs.iter().enumerate() {
        if run.dir.join("summary.json").exists() {
            if progress {
                eprintln!(
                    "[{}/{}] {}: finished, skipped",
                    k + 1,
                    runs.len(),
                    run.dir.display()
                );
            }
            continue;
        }
        let resume = run.dir.join(crate::checkpoint::CHECKPOINT_FILE).exists();
        if progress {
            eprintln!(
                "[{}/{}] {} ({}, n = {}, g = {}, seed {}){}",
                k + 1,
                runs.len(),
                run.dir.display(),
                run.cell.label,
                run.cell.n,
                run.cell.g,
                run.seed,
                if resume { ", resumed" } else { "" }
            );
        }
        std::fs::create_dir_all(&run.dir)
            .with_context(|| format!("cannot create {}", run.dir.display()))?;
        crate::report::write_json_atomic(&run.dir.join(PLAN_FILE), run)?;
        Run {
            dir: run.dir.clone(),
            cfg: run_config(run, opts),
            device: device.clone(),
            progress,
            stop_after: None,
            overwrite: false,
        }
        .train(resume)?;
        trained += 1;
    }
    Ok(trained)
}

/// One finished run, as `runs.csv` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub label: String,
    pub preset: String,
    pub n: usize,
    pub g: usize,
    pub seed: u64,
    pub params: u64,
    pub gflops: f64,
    pub mbd: u32,
    pub connections: usize,
    pub final_test_error: f64,
    pub best_test_error: f64,
    pub epochs: usize,
    pub wall_s: f64,
}

/// Merges every finished run of `experiment` under `out` (from any number of machines) into
/// `runs.csv` and `table.md` in `out/EXPERIMENT/`. Returns the rows.
pub fn report(out: &Path, experiment: Experiment) -> Result<Vec<RunRow>> {
    let root = out.join(experiment.name());
    let mut rows = Vec::new();
    let entries = std::fs::read_dir(&root).with_context(|| {
        format!(
            "--out: {} holds no runs of {}",
            root.display(),
            experiment.name()
        )
    })?;
    for entry in entries {
        let dir = entry?.path();
        if !dir.join("summary.json").exists() {
            continue;
        }
        let plan: PlannedRun = serde_json::from_slice(&std::fs::read(dir.join(PLAN_FILE))?)
            .with_context(|| format!("bad {}", dir.join(PLAN_FILE).display()))?;
        let metrics: Vec<crate::report::EpochMetrics> =
            serde_json::from_slice(&std::fs::read(dir.join("metrics.json"))?)
                .with_context(|| format!("bad {}", dir.join("metrics.json").display()))?;
        let last = metrics
            .last()
            .context("a finished run without metric rows")?;
        let best = metrics.iter().map(|r| r.test_accuracy).fold(0.0, f64::max);
        rows.push(RunRow {
            label: plan.cell.label.clone(),
            preset: plan.cell.preset.clone(),
            n: plan.cell.n,
            g: plan.cell.g,
            seed: plan.seed,
            params: plan.params,
            gflops: plan.gflops,
            mbd: plan.mbd,
            connections: plan.connections,
            final_test_error: 100.0 * (1.0 - last.test_accuracy),
            best_test_error: 100.0 * (1.0 - best),
            epochs: last.epoch,
            wall_s: metrics.iter().map(|r| r.epoch_s).sum(),
        });
    }
    rows.sort_by(|a, b| (a.n, a.g, &a.label, a.seed).cmp(&(b.n, b.g, &b.label, b.seed)));
    let mut csv = String::from("label,preset,n,g,seed,params,gflops,mbd,connections,final_test_error,best_test_error,epochs,wall_s\n");
    for r in &rows {
        csv += &format!(
            "{},{},{},{},{},{},{:.4},{},{},{:.2},{:.2},{},{:.0}\n",
            r.label,
            r.preset,
            r.n,
            r.g,
            r.seed,
            r.params,
            r.gflops,
            r.mbd,
            r.connections,
            r.final_test_error,
            r.best_test_error,
            r.epochs,
            r.wall_s
        );
    }
    crate::report::write_atomic(&root.join("runs.csv"), csv.as_bytes())?;
    crate::report::write_atomic(
        &root.join("table.md"),
        table_md(experiment, &rows).as_bytes(),
    )?;
    Ok(rows)
}

/// Mean and sample standard deviation.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n.max(1.0);
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The paper's GFLOPs for a cell of a table, where it prints one.
fn paper_gflops(experiment: Experiment, label: &str, n: usize, g: usize) -> Option<f64> {
    use logdense_graph::paper::{TABLE1, TABLE2};
    match experiment {
        Experiment::Table1 => TABLE1
            .iter()
            .find(|(ng, ..)| *ng == (n, g))
            .map(|&(_, ld, ld2)| if label == "LD2" { ld2 } else { ld }),
        Experiment::Table2 => {
            TABLE2
                .iter()
                .find(|(ng, ..)| *ng == (n, g))
                .and_then(|&(_, ne, nld, d)| match label {
                    "N" | "E" => Some(ne),
                    "N+LD" => Some(nld),
                    "D" => Some(d),
                    _ => None,
                })
        }
        Experiment::Fig8 => None,
    }
}

/// The table laid out as the paper's: one row per (n, g), one column per pattern, the test
/// error as mean +- standard deviation over the seeds, with GFLOPs and MBD beside.
pub fn table_md(experiment: Experiment, rows: &[RunRow]) -> String {
    let mut cells: BTreeMap<(usize, usize), BTreeMap<String, Vec<&RunRow>>> = BTreeMap::new();
    let mut labels: Vec<String> = Vec::new();
    for r in rows {
        if !labels.contains(&r.label) {
            labels.push(r.label.clone());
        }
        cells
            .entry((r.n, r.g))
            .or_default()
            .entry(r.label.clone())
            .or_default()
            .push(r);
    }
    let mut md = format!(
        "# {}: test error (%) at the last epoch, mean +- standard deviation over seeds\n\n\
         Each cell: error (seeds), our GFLOPs per image (the paper's, where it prints one), MBD.\n\n| (n, g) |",
        experiment.name()
    );
    for l in &labels {
        md += &format!(" {l} |");
    }
    md += "\n| --- |";
    for _ in &labels {
        md += " --- |";
    }
    md += "\n";
    for ((n, g), by_label) in &cells {
        md += &format!("| ({n}, {g}) |");
        for l in &labels {
            match by_label.get(l) {
                Some(runs) => {
                    let errors: Vec<f64> = runs.iter().map(|r| r.final_test_error).collect();
                    let (m, s) = mean_std(&errors);
                    let paper = paper_gflops(experiment, l, *n, *g)
                        .map_or_else(String::new, |p| format!(" ({p:.2})"));
                    md += &format!(
                        " {m:.2} +- {s:.2} ({}), {:.3}{paper} GFLOPs, MBD {} |",
                        runs.len(),
                        runs[0].gflops,
                        runs[0].mbd
                    );
                }
                None => md += " - |",
            }
        }
        md += "\n";
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(quick: bool) -> Options {
        Options {
            quick,
            dataset: "fashion-mnist".into(),
            data: None,
            seeds: 3,
            epochs: None,
            subset: None,
            test_subset: None,
            out: PathBuf::from("/tmp/repro"),
        }
    }

    #[test]
    fn the_quick_table1_grid_separates_the_patterns_distances() {
        let runs = plan(Experiment::Table1, &opts(true)).unwrap();
        assert_eq!(runs.len(), 4 * 3);
        let mbd = |label: &str| runs.iter().find(|r| r.cell.label == label).unwrap().mbd;
        assert!(
            mbd("N") >= 2 * mbd("LD"),
            "NEAREST {} vs LOG {}",
            mbd("N"),
            mbd("LD")
        );
        // Same budget: LOG, NEAREST and EVENLY-SPACED have the same connections.
        let conn = |label: &str| {
            runs.iter()
                .find(|r| r.cell.label == label)
                .unwrap()
                .connections
        };
        assert_eq!(conn("LD"), conn("N"));
        assert_eq!(conn("LD"), conn("E"));
        // Directories are distinct and name pattern, n, g and seed.
        let mut dirs: Vec<_> = runs.iter().map(|r| r.dir.clone()).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), runs.len());
        assert!(runs[0].dir.ends_with("table1/ld-n24-g8-s1"));
    }

    #[test]
    fn the_full_grids_are_the_papers() {
        let t1 = plan(
            Experiment::Table1,
            &Options {
                seeds: 1,
                ..opts(false)
            },
        )
        .unwrap();
        assert_eq!(t1.len(), 9 * 4);
        assert!(t1.iter().all(|r| r.epochs == 250 && r.images == 60_000));
        let t2 = Experiment::Table2.grid(false);
        assert_eq!(t2.len(), 7 * 4);
        assert!(t2.iter().any(|c| c.preset == "t2-nhl-32-12"));
        // Their costs are the paper's, within the readings' distances (N+LD and D within 1 %).
        for c in &t2 {
            let spec = crate::presets::preset(&c.preset).unwrap();
            let ours = spec.build().unwrap().cost().total.gflops();
            let paper = paper_gflops(Experiment::Table2, &c.label, c.n, c.g).unwrap();
            let tolerance = if c.label == "N" || c.label == "E" {
                0.035
            } else {
                0.011
            };
            assert!(
                ((ours - paper) / paper).abs() < tolerance,
                "{}: {ours:.3} against the paper's {paper:.2}",
                c.preset
            );
        }
        let f8 = Experiment::Fig8.grid(false);
        assert!(f8
            .iter()
            .any(|c| c.preset.starts_with("loglog") && c.hub_multiplier == 3));
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_plan() {
        let runs = plan(Experiment::Table2, &opts(true)).unwrap();
        let mut seen = Vec::new();
        for k in 1..=5 {
            seen.extend(
                shard(runs.clone(), k, 5)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.dir),
            );
        }
        let mut all: Vec<_> = runs.iter().map(|r| r.dir.clone()).collect();
        all.sort();
        seen.sort();
        assert_eq!(seen, all);
        assert!(shard(runs.clone(), 0, 5).is_err() && shard(runs, 6, 5).is_err());
        assert_eq!(parse_shard("2/8").unwrap(), (2, 8));
        assert!(parse_shard("2-8").is_err());
    }

    #[test]
    fn mean_and_sample_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
    }
}
