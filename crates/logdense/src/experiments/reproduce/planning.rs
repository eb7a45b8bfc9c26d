//! The plan of an experiment: its runs, their directories, configs and estimated cost, and
//! the shards that spread them over machines.

use super::*;
use crate::training::config::{LrSchedule, TaskConfig};
use anyhow::{bail, Context, Result};
use logdense_graph::{distance, TransitionHops};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One run of the plan: its network, seed, directory and estimated cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// The name of the experiment it belongs to ([`Experiment::name`]).
    pub experiment: String,
    /// The data set it trains on.
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// The network of the grid it trains.
    #[serde(flatten)]
    pub cell: Cell,
    /// The run's seed: of its weights, data order and training and test subsets.
    pub seed: u64,
    /// The run's directory, `out/EXPERIMENT/RUN/`.
    pub dir: PathBuf,
    /// Trainable parameters of the network at the data's shape.
    pub params: u64,
    /// Forward GFLOPs per image at the data's input size.
    pub gflops: f64,
    /// Maximum backpropagation distance of the network, transitions counted as hops.
    pub mbd: u32,
    /// Input tensors over all feature layers ([`logdense_graph::NetGraph::connections`]).
    pub connections: usize,
    /// Main epochs (with auxiliary heads, [`final_only_epochs`](Self::final_only_epochs) more
    /// follow).
    pub epochs: usize,
    /// Final-head-only epochs after the main ones (the paper's one extra epoch; 0 without
    /// auxiliary heads).
    #[serde(default)]
    pub final_only_epochs: usize,
    /// Training images per epoch.
    pub images: usize,
    /// Test images each epoch's evaluation uses.
    #[serde(default)]
    pub test_images: usize,
    /// Estimated training work: 3 x forward FLOPs x images x all epochs.
    pub train_flops: f64,
    /// Estimated evaluation work: forward FLOPs x test images x all epochs.
    #[serde(default)]
    pub eval_flops: f64,
    /// Set when the run was not trained but copied from another experiment's identical run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<PathBuf>,
}

pub(super) fn default_dataset() -> String {
    "fashion-mnist".into()
}

impl PlannedRun {
    /// The run's network, with its data set's input shape and classes and its hub multiplier.
    pub fn spec(&self) -> Result<logdense_graph::NetSpec> {
        let (input, classes, ..) = data_shape(&self.dataset)?;
        cell_spec(&self.cell, input, classes)
    }

    /// Estimated work of the whole run, training and evaluation.
    pub fn total_flops(&self) -> f64 {
        self.train_flops + self.eval_flops
    }
}

/// The registry's image shape, classes and split sizes of a classification data set of fixed
/// shape (the plan's costs need them before any file is read).
pub(super) fn data_shape(dataset: &str) -> Result<([usize; 3], usize, usize, usize)> {
    let d = crate::datasets::dataset_for(dataset, logdense_graph::TaskKind::Classify)
        .map_err(|e| anyhow::anyhow!("--dataset: {e}"))?;
    match (d.input, d.classes, d.train_images, d.test_images) {
        (Some(input), Some(classes), Some(train), Some(test)) => Ok((input, classes, train, test)),
        _ => bail!(
            "--dataset: {} has no fixed image shape; reproduce runs on {}",
            d.name,
            crate::datasets::DATASETS
                .iter()
                .filter(|d| d.task == logdense_graph::TaskKind::Classify && d.input.is_some())
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A cell's network for images of `input` and `classes` classes: its preset with its hub
/// multiplier, and for a designed cell the designed input sets.
pub(super) fn cell_spec(
    cell: &Cell,
    input: [usize; 3],
    classes: usize,
) -> Result<logdense_graph::NetSpec> {
    let mut spec = crate::model::presets::preset(&cell.preset).map_err(anyhow::Error::msg)?;
    spec.input = input;
    spec.classes = classes;
    spec.hub_multiplier = cell.hub_multiplier;
    if cell.designed {
        spec.custom_sets = Some(designed_sets(&spec)?);
    }
    Ok(spec)
}

/// The runs of `experiment`, in order: every cell of its grid for seed 1, then seed 2, ...
pub fn plan(experiment: Experiment, opts: &Options) -> Result<Vec<PlannedRun>> {
    if opts.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let (input, classes, train_images, test_set) = data_shape(&opts.dataset)?;
    let images = opts
        .subset
        .or(opts.quick.then_some(QUICK_TRAIN_IMAGES))
        .unwrap_or(train_images)
        .min(train_images);
    let test_images = opts
        .test_subset
        .or(opts.quick.then_some(QUICK_TEST_IMAGES))
        .unwrap_or(test_set)
        .min(test_set);
    let final_only = TaskConfig::default().optim.final_only_epochs;
    let paper_epochs = crate::datasets::lookup(&opts.dataset)
        .ok()
        .and_then(|d| d.paper_epochs)
        .unwrap_or(250);
    let epochs = opts.epochs.unwrap_or(if opts.medium {
        MEDIUM_EPOCHS
    } else if opts.quick {
        QUICK_EPOCHS
    } else {
        paper_epochs
    });
    let cells = experiment.grid(opts.quick || opts.medium);
    let mut runs = Vec::new();
    for seed in 1..=opts.seeds as u64 {
        for cell in &cells {
            let spec = cell_spec(cell, input, classes)?;
            let graph = spec
                .build()
                .with_context(|| format!("{} on {}", cell.preset, opts.dataset))?;
            let cost = graph.cost().total;
            let final_only_epochs = if graph.heads().len() > 1 {
                final_only
            } else {
                0
            };
            let passes = (epochs + final_only_epochs) as f64;
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
                dataset: opts.dataset.clone(),
                cell: cell.clone(),
                seed,
                dir: opts.out.join(experiment.name()).join(name),
                params: cost.params,
                gflops: cost.gflops(),
                mbd,
                connections: graph.connections(),
                epochs,
                final_only_epochs,
                images,
                test_images,
                train_flops: 3.0 * cost.flops as f64 * images as f64 * passes,
                eval_flops: cost.flops as f64 * test_images as f64 * passes,
                reused_from: None,
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
pub fn run_config(run: &PlannedRun, opts: &Options) -> TaskConfig {
    let mut cfg = TaskConfig {
        seed: run.seed,
        ..TaskConfig::default()
    };
    cfg.model.preset = run.cell.preset.clone();
    cfg.model.hub_multiplier = Some(run.cell.hub_multiplier);
    cfg.data.dataset = opts.dataset.clone();
    cfg.data.dir = opts.data.clone();
    cfg.data.train_subset = Some(run.images);
    cfg.data.eval_subset = (run.test_images > 0).then_some(run.test_images);
    cfg.data.workers = opts.workers;
    if run.cell.designed {
        cfg.model.pattern_file = Some(designed_pattern_path(&opts.out, &run.cell));
    }
    if let Ok(Some(augment)) = crate::datasets::lookup(&opts.dataset).map(|d| d.paper_augment) {
        cfg.data.augment = augment();
    }
    // The paper's schedule (Sec. 4): x0.1 after 1/2 and 3/4 of the iterations.
    cfg.optim.lr_schedule = LrSchedule::Step;
    cfg.optim.max_train_s = None;
    cfg.optim.epochs = run.epochs;
    cfg
}
