//! Merging finished runs into `runs.csv` and `table.md`: means and spreads over seeds, the
//! paper's figures beside ours, and whether each of the paper's claims holds.

use super::*;
use crate::training::engine::SUMMARY_FILE;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One finished run, as `runs.csv` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    /// The column label, as the paper names it ([`Cell::label`]).
    pub label: String,
    /// The preset that built the network.
    pub preset: String,
    /// The data set it trained on.
    pub dataset: String,
    /// Feature layers per block.
    pub n: usize,
    /// Growth rate.
    pub g: usize,
    /// The run's seed.
    pub seed: u64,
    /// Trainable parameters.
    pub params: u64,
    /// Forward GFLOPs per image at the data's input size (2 x multiply-accumulates).
    pub gflops: f64,
    /// Maximum backpropagation distance, transitions counted as hops.
    pub mbd: u32,
    /// Input tensors over all feature layers.
    pub connections: usize,
    /// Test error (%) after the last epoch.
    pub final_test_error: f64,
    /// Lowest test error (%) after any epoch.
    pub best_test_error: f64,
    /// Epochs trained, final-head-only ones included.
    pub epochs: usize,
    /// Training and evaluation time summed over the epochs, in seconds.
    pub wall_s: f64,
    /// Test error (%) after each epoch, for the training curves.
    #[serde(skip)]
    pub curve: Vec<f64>,
}

/// Merges every finished run of `experiment` under `out` (from any number of machines) into
/// `runs.csv`, `table.md` and the plots (`error_vs_gflops.png`, `error_vs_params.png`,
/// `error_vs_mbd.png`, `curves.png`) in `out/EXPERIMENT/`. Returns the rows.
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
        if !dir.join(SUMMARY_FILE).exists() {
            continue;
        }
        let plan: PlannedRun = serde_json::from_slice(&std::fs::read(dir.join(PLAN_FILE))?)
            .with_context(|| format!("bad {}", dir.join(PLAN_FILE).display()))?;
        let metrics: Vec<crate::training::report::EpochMetrics> =
            serde_json::from_slice(&std::fs::read(dir.join("metrics.json"))?)
                .with_context(|| format!("bad {}", dir.join("metrics.json").display()))?;
        let last = metrics
            .last()
            .context("a finished run without metric rows")?;
        let best = metrics.iter().map(|r| r.test_accuracy).fold(0.0, f64::max);
        rows.push(RunRow {
            label: plan.cell.label.clone(),
            preset: plan.cell.preset.clone(),
            dataset: plan.dataset.clone(),
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
            curve: metrics
                .iter()
                .map(|r| 100.0 * (1.0 - r.test_accuracy))
                .collect(),
        });
    }
    rows.sort_by(|a, b| (a.n, a.g, &a.label, a.seed).cmp(&(b.n, b.g, &b.label, b.seed)));
    let mut csv = String::from("label,preset,dataset,n,g,seed,params,gflops,mbd,connections,final_test_error,best_test_error,epochs,wall_s\n");
    for r in &rows {
        csv += &format!(
            "{},{},{},{},{},{},{},{:.4},{},{},{:.2},{:.2},{},{:.0}\n",
            r.label,
            r.preset,
            r.dataset,
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
    crate::training::report::write_atomic(&root.join("runs.csv"), csv.as_bytes())?;
    crate::training::report::write_atomic(
        &root.join("table.md"),
        table_md(experiment, &rows).as_bytes(),
    )?;
    if !rows.is_empty() {
        plot(&root, experiment, &rows)?;
    }
    Ok(rows)
}

/// Mean and sample standard deviation.
pub(super) fn mean_std(xs: &[f64]) -> (f64, f64) {
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
pub(super) fn paper_gflops(experiment: Experiment, label: &str, n: usize, g: usize) -> Option<f64> {
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
        _ => None,
    }
}

/// The paper's error (%) for a cell, on the same data set, where its table prints one.
pub(super) fn paper_error(
    experiment: Experiment,
    dataset: &str,
    label: &str,
    n: usize,
    g: usize,
) -> Option<f64> {
    let table = experiment.paper_table()?;
    logdense_graph::paper::table_error(table, dataset, label, n, g)
}

/// The paper's own record on a claim, over every (n, g, data set) cell of its table: the mean
/// relative increase of `worse`'s error over `better`'s (%), the cells where `better` has the
/// lower error, and the number of cells.
pub fn paper_record(
    experiment: Experiment,
    better: &str,
    worse: &str,
) -> Option<(f64, usize, usize)> {
    let table = experiment.paper_table()?;
    let pairs = logdense_graph::paper::table_error_pairs(table, better, worse)?;
    let relative = pairs.iter().map(|(b, w)| (w - b) / b).sum::<f64>() / pairs.len() as f64;
    let wins = pairs.iter().filter(|(b, w)| b < w).count();
    Some((100.0 * relative, wins, pairs.len()))
}

/// Rows grouped by (n, g), then by column label; labels in order of first appearance.
type Cells<'a> = BTreeMap<(usize, usize), BTreeMap<String, Vec<&'a RunRow>>>;

/// Labels follow the experiment's own column order (LD, N, E, LD2 for Table 1); any other
/// label comes after them.
pub(super) fn group(experiment: Experiment, rows: &[RunRow]) -> (Cells<'_>, Vec<String>) {
    let mut cells: Cells = BTreeMap::new();
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
    let order: Vec<String> = experiment
        .grid(false)
        .into_iter()
        .map(|c| c.label)
        .collect();
    labels.sort_by_key(|l| order.iter().position(|o| o == l).unwrap_or(usize::MAX));
    (cells, labels)
}

/// How one of the paper's comparisons came out at one (n, g).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The column the paper claims has the lower error.
    pub better: String,
    /// The column the paper claims has the higher error.
    pub worse: String,
    /// Feature layers per block of the compared networks.
    pub n: usize,
    /// Growth rate of the compared networks.
    pub g: usize,
    /// Mean error of `worse` minus mean error of `better` (percentage points): positive when
    /// the paper's claim holds on average.
    pub difference: f64,
    /// Mean error of `better` (%).
    pub better_error: f64,
    /// The larger of the two columns' standard deviations over seeds.
    pub spread: f64,
    /// Finished runs (seeds) of `better` and of `worse`.
    pub seeds: (usize, usize),
    /// Per seed that both columns ran: `worse`'s error minus `better`'s (the two runs of a seed
    /// share their training and test subsets).
    pub paired: Vec<(u64, f64)>,
}

impl Verdict {
    /// The difference relative to `better`'s mean error (%), as the paper states its own.
    pub fn relative(&self) -> f64 {
        100.0 * self.difference / self.better_error
    }

    /// "holds" when the difference exceeds the spread across seeds, "reversed" when it is
    /// below minus the spread, otherwise "within the spread". With one seed in a column there
    /// is no spread: the outcome says so, and the sign alone decides.
    pub fn outcome(&self) -> &'static str {
        if self.seeds.0.min(self.seeds.1) < 2 {
            return if self.difference > 0.0 {
                "holds on one seed (no spread)"
            } else {
                "reversed on one seed (no spread)"
            };
        }
        if self.difference > self.spread {
            "holds"
        } else if self.difference < -self.spread {
            "reversed"
        } else {
            "within the spread"
        }
    }
}

/// The paper's comparisons for `experiment`, one per (n, g) where both columns have runs.
pub fn verdicts(experiment: Experiment, rows: &[RunRow]) -> Vec<Verdict> {
    let (cells, _) = group(experiment, rows);
    let errors = |runs: &[&RunRow]| runs.iter().map(|r| r.final_test_error).collect::<Vec<_>>();
    let mut out = Vec::new();
    for &(better, worse, _) in experiment.claims() {
        for ((n, g), by_label) in &cells {
            let (Some(b), Some(w)) = (by_label.get(better), by_label.get(worse)) else {
                continue;
            };
            let (mb, sb) = mean_std(&errors(b));
            let (mw, sw) = mean_std(&errors(w));
            out.push(Verdict {
                better: better.into(),
                worse: worse.into(),
                n: *n,
                g: *g,
                difference: mw - mb,
                better_error: mb,
                spread: sb.max(sw),
                seeds: (b.len(), w.len()),
                paired: b
                    .iter()
                    .filter_map(|rb| {
                        w.iter()
                            .find(|rw| rw.seed == rb.seed)
                            .map(|rw| (rb.seed, rw.final_test_error - rb.final_test_error))
                    })
                    .collect(),
            });
        }
    }
    out
}

/// The table laid out as the paper's: one row per (n, g), one column per pattern, the test
/// error as mean +- standard deviation over the seeds, with GFLOPs and MBD beside, the paper's
/// error and our difference to it where the paper trained that network on the same data;
/// then the paper's comparisons and whether each holds here by more than the seeds' spread.
pub fn table_md(experiment: Experiment, rows: &[RunRow]) -> String {
    let (cells, labels) = group(experiment, rows);
    let dataset = rows.first().map_or("", |r| r.dataset.as_str());
    let mut md = format!(
        "# {}: test error (%) at the last epoch on {dataset}, mean +- standard deviation over seeds\n\n\
         Each cell: error (seeds), our GFLOPs per image (the paper's, where it prints one), MBD; \
         where the paper trained the same network on the same data, its error and our difference to it.\n\n| (n, g) |",
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
                    let paper_err = paper_error(experiment, dataset, l, *n, *g)
                        .map_or_else(String::new, |p| {
                            format!("; paper {p:.2}, ours {:+.2}", m - p)
                        });
                    md += &format!(
                        " {m:.2} +- {s:.2} ({}), {:.3}{paper} GFLOPs, MBD {}{paper_err} |",
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
    let verdicts = verdicts(experiment, rows);
    if !verdicts.is_empty() {
        md += "\n## The paper's comparisons\n\n\
               A claim holds when the worse column's mean error exceeds the better one's by more \
               than the larger standard deviation over seeds of the two. \"Relative\" is the \
               difference over the better column's error; the paper's column gives its own mean \
               relative difference over every (n, g, data set) of its table, and in how many of \
               those cells the claim held. \"Per seed\" lists worse - better for each seed both \
               columns ran (a seed's runs share their training and test subsets).\n\n\
               | claim | (n, g) | worse - better (points) | relative | spread | seeds | outcome | per seed | paper |\n\
               | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
        for v in &verdicts {
            let claim = experiment
                .claims()
                .iter()
                .find(|c| c.0 == v.better && c.1 == v.worse)
                .map_or("", |c| c.2);
            let paper = paper_record(experiment, &v.better, &v.worse).map_or_else(
                || "-".to_string(),
                |(rel, wins, cells)| format!("{rel:+.1} %, held in {wins} of {cells}"),
            );
            let per_seed = v
                .paired
                .iter()
                .map(|(_, d)| format!("{d:+.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            md += &format!(
                "| {claim} | ({}, {}) | {:+.2} | {:+.1} % | {:.2} | {}, {} | {} | {per_seed} | {paper} |\n",
                v.n,
                v.g,
                v.difference,
                v.relative(),
                v.spread,
                v.seeds.0,
                v.seeds.1,
                v.outcome()
            );
        }
    }
    md
}
