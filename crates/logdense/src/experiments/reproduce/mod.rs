//! The paper's experiments as plans of ordinary training runs (`logdense reproduce`).
//!
//! An experiment is a grid of networks (pattern, n, g) times seeds. Each run is a normal
//! classification run in its own directory under `OUT/EXPERIMENT/`, so a killed `reproduce`
//! picks up where it stopped (finished runs are skipped, interrupted ones resumed), and a grid
//! spreads over machines with `--shard K/N` (the K-th of N disjoint slices of the run list).
//! [`report`] merges whatever has finished, from any number of machines, into `runs.csv` and
//! `table.md`.
//!
//! [`grid`](Experiment::grid) names an experiment's networks, [`planning`] turns them into
//! runs, [`runner`] trains them, [`merge`] and [`plots`] report them, and [`fig5a`] is an
//! analysis beside them.

mod cluster;
mod fig5a;
mod merge;
mod planning;
mod plots;
mod runner;

pub use cluster::*;
pub use fig5a::*;
pub use merge::*;
pub use planning::*;
use plots::plot;
pub use runner::*;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The experiments that train networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Experiment {
    /// Table 1: LOG (V1), NEAREST and EVENLY-SPACED at LOG's budget, and V2.
    Table1,
    /// Table 2: NEAREST-HALF, EVENLY-SPACED-HALF, NEAREST-HALF-AND-LOG and DenseNet.
    Table2,
    /// Fig. 3 (with Fig. 6-7): error against GFLOPs and parameters for V1, V2 and DenseNet-BC
    /// at growing depth.
    Fig3,
    /// Fig. 8: LogLog-DenseNet (hub multiplier 1 and 3) against LOG and DenseNet.
    Fig8,
    /// Beyond the paper: a pattern designed for the least MBD at LOG's per-layer budget
    /// ([`designed_sets`]) against LOG, NEAREST and EVENLY-SPACED at the same budget.
    Designed,
    /// Beyond the paper: LOG, NEAREST and the designed pattern at growing depth, to see
    /// whether LOG's lead grows as MBD's `1 + log L` against `L / log L` says it should.
    Depth,
}

impl std::str::FromStr for Experiment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table1" => Ok(Experiment::Table1),
            "table2" => Ok(Experiment::Table2),
            "fig3" => Ok(Experiment::Fig3),
            "fig8" => Ok(Experiment::Fig8),
            "designed" => Ok(Experiment::Designed),
            "depth" => Ok(Experiment::Depth),
            other => Err(format!(
                "unknown experiment '{other}' (table1, table2, fig3, fig8, designed, depth)"
            )),
        }
    }
}

impl Experiment {
    /// Every experiment that trains, in the paper's order.
    pub const ALL: [Experiment; 6] = [
        Experiment::Table1,
        Experiment::Table2,
        Experiment::Fig3,
        Experiment::Fig8,
        Experiment::Designed,
        Experiment::Depth,
    ];

    /// The experiment's name on the command line and its directory under the output.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::Table1 => "table1",
            Experiment::Table2 => "table2",
            Experiment::Fig3 => "fig3",
            Experiment::Fig8 => "fig8",
            Experiment::Designed => "designed",
            Experiment::Depth => "depth",
        }
    }

    /// The number of the paper's table this experiment fills in, if it is one.
    pub fn paper_table(self) -> Option<u8> {
        match self {
            Experiment::Table1 => Some(1),
            Experiment::Table2 => Some(2),
            _ => None,
        }
    }

    /// The comparisons the paper draws from this experiment: `(better, worse, claim)`, where
    /// the claim is that column `better` has the lower error than column `worse` at the same
    /// (n, g).
    pub fn claims(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            Experiment::Table1 => &[
                (
                    "LD",
                    "N",
                    "LOG beats NEAREST at the same budget (MBD 1 + log L against L / log L)",
                ),
                ("LD", "E", "LOG beats EVENLY-SPACED at the same budget"),
                (
                    "LD2",
                    "LD",
                    "V2 beats V1 (about n_block / 2 times the connections)",
                ),
            ],
            Experiment::Table2 => &[
                (
                    "E",
                    "N",
                    "EVENLY-SPACED-HALF beats NEAREST-HALF (MBD 2 against log L)",
                ),
                (
                    "N+LD",
                    "N",
                    "log L extra connections (N+LD) greatly improve NEAREST-HALF",
                ),
                ("D", "N+LD", "DenseNet (twice the cost) beats N+LD"),
            ],
            Experiment::Fig3 => &[],
            Experiment::Fig8 => &[
                (
                    "LD",
                    "LogLog",
                    "LOG beats LogLog, despite LogLog's smaller MBD",
                ),
                ("D", "LogLog", "DenseNet beats LogLog"),
                ("LogLog hub x3", "LogLog", "a hub multiplier of 3 beats 1"),
            ],
            Experiment::Designed => &[
                (
                    "Designed",
                    "LD",
                    "the pattern designed for the least MBD at LOG's budget beats LOG",
                ),
                ("Designed", "N", "the designed pattern beats NEAREST"),
                ("LD", "N", "LOG beats NEAREST at the same budget"),
                ("LD", "E", "LOG beats EVENLY-SPACED at the same budget"),
            ],
            Experiment::Depth => &[
                ("LD", "N", "LOG beats NEAREST at this depth"),
                (
                    "Designed",
                    "LD",
                    "the designed pattern beats LOG at this depth",
                ),
            ],
        }
    }

    /// The grid: `(label as the paper names the column, preset family prefix, n, g)`, and for
    /// LogLog the hub multiplier. `quick` is a small grid on which the patterns' backpropagation
    /// distances still differ materially (NEAREST's MBD is twice LOG's at n = 24) and which a
    /// 2-core CPU trains in minutes per run (g = 4).
    pub fn grid(self, quick: bool) -> Vec<Cell> {
        if self == Experiment::Fig3 {
            return fig3_grid(quick);
        }
        let sizes: Vec<(usize, usize)> = match (self, quick) {
            (Experiment::Depth, true) => DEPTHS.iter().map(|&n| (n, QUICK_SIZE.1)).collect(),
            (Experiment::Depth, false) => DEPTHS.iter().map(|&n| (n, 12)).collect(),
            (_, true) => vec![QUICK_SIZE],
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
                ("E", "evenly-spaced", 1),
                ("LD2", "ld-v2", 1),
            ],
            // "Designed" is the V1 network of ld-v1 with the designed input sets.
            Experiment::Designed => &[
                ("LD", "ld-v1", 1),
                ("Designed", "ld-v1", 1),
                ("N", "nearest", 1),
                ("E", "evenly-spaced", 1),
            ],
            Experiment::Depth => &[
                ("LD", "ld-v1", 1),
                ("N", "nearest", 1),
                ("Designed", "ld-v1", 1),
            ],
            // The networks as the authors built them (bottleneck layers; their N+LD; DenseNet
            // without compression): these reproduce Table 2's cost columns.
            Experiment::Table2 => &[
                ("N", "t2-nearest-half", 1),
                ("E", "t2-evenly-spaced-half", 1),
                ("N+LD", "t2-nearest-half-and-log", 1),
                ("D", "t2-dense", 1),
            ],
            Experiment::Fig3 => unreachable!("fig3 has its own grid"),
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
                    designed: label == "Designed",
                })
            })
            .collect()
    }
}

/// Fig. 3's networks at growing depth: V1 and V2 with g = 32 and n = 12, 22, ..., 82, and
/// DenseNet-BC (depth 6n + 4, compression 0.5) with g = 32 and n = 12, 22, 32, 42, as Sec. 4.3
/// lists them; `quick`: n = 8, 16, 24 at g = 4 for all three.
fn fig3_grid(quick: bool) -> Vec<Cell> {
    let (g, ld_depths, dense_depths): (usize, Vec<usize>, Vec<usize>) = if quick {
        (4, vec![8, 16, 24], vec![8, 16, 24])
    } else {
        (32, (12..=82).step_by(10).collect(), vec![12, 22, 32, 42])
    };
    let mut cells = Vec::new();
    for &n in &ld_depths {
        for (label, family) in [("LD", "ld-v1"), ("LD2", "ld-v2")] {
            cells.push(Cell {
                label: label.into(),
                preset: format!("{family}-{n}-{g}"),
                n,
                g,
                hub_multiplier: 1,
                designed: false,
            });
        }
    }
    for &n in &dense_depths {
        cells.push(Cell {
            label: "DenseNet-BC".into(),
            preset: format!("densenet-bc-{}-{g}", 6 * n + 4),
            n,
            g,
            hub_multiplier: 1,
            designed: false,
        });
    }
    cells
}

/// The quick grid's (n, g): 24 layers per block, where NEAREST's MBD (16) is twice LOG's (8),
/// at growth 4, so that a 2-core CPU trains each run in a few minutes.
pub const QUICK_SIZE: (usize, usize) = (24, 4);
/// Training images per run with `--quick` (a seeded subset of the training set).
pub const QUICK_TRAIN_IMAGES: usize = 7_500;
/// Test images each epoch's evaluation uses with `--quick` (a seeded subset of the test set).
pub const QUICK_TEST_IMAGES: usize = 5_000;
/// Main epochs per run with `--quick` (the final-head-only epoch comes on top).
pub const QUICK_EPOCHS: usize = 2;
/// Epochs of a `--medium` run (then the final-head-only one): the paper's step schedule over
/// the full training set, compressed so that one table (4 columns x 3 seeds at
/// [`QUICK_SIZE`]) trains in about 4 hours on a 2-core machine.
pub const MEDIUM_EPOCHS: usize = 6;

/// One network of a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The column label, as the paper names it (`LD`, `N`, `DenseNet-BC`, ...).
    pub label: String,
    /// The preset that builds the network (e.g. `ld-v1-24-4`).
    pub preset: String,
    /// Feature layers per block.
    pub n: usize,
    /// Growth rate.
    pub g: usize,
    /// Growth multiplier of LogLog hub layers (Appendix C.4); 1 elsewhere.
    pub hub_multiplier: usize,
    /// The network reads the designed input sets ([`designed_sets`]) instead of its pattern's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub designed: bool,
}

/// Layers per block of the depth experiment (3 blocks each).
pub const DEPTHS: [usize; 3] = [12, 24, 48];

/// The designed input sets of a V1 network: over its global indices, each layer reading as
/// many layers as LOG's does (so exactly LOG's connections and per-layer limit), placed by
/// [`logdense_graph::design::design_with`] for the least MBD (exact search up to 12 layers,
/// greedy beyond, never worse than LOG). Deterministic, so every machine of a grid designs the
/// same sets.
pub fn designed_sets(spec: &logdense_graph::NetSpec) -> Result<Vec<Vec<usize>>> {
    Ok(designed_pattern(spec)?.sets)
}

/// The design behind [`designed_sets`], with how it was found.
pub fn designed_pattern(spec: &logdense_graph::NetSpec) -> Result<logdense_graph::design::Design> {
    use logdense_graph::design::{design_with, InputBudget};
    let layers = spec.num_layers();
    let max_inputs = 1 + logdense_graph::pattern::floor_log2(layers);
    Ok(design_with(layers, max_inputs, InputBudget::Log, 12)?)
}

/// Where a designed cell's pattern file goes: shared by every experiment under `out`.
pub fn designed_pattern_path(out: &std::path::Path, cell: &Cell) -> PathBuf {
    out.join("patterns")
        .join(format!("{}-designed.json", cell.preset))
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The medium profile: the quick grid's networks on the full data sets for
    /// [`MEDIUM_EPOCHS`] epochs, where differences the quick budget hides can show.
    pub medium: bool,
    /// Runs the quick grid ([`QUICK_SIZE`]) on subsets for [`QUICK_EPOCHS`] epochs.
    pub quick: bool,
    /// A classification data set of fixed shape from [`crate::datasets::DATASETS`].
    pub dataset: String,
    /// Where the data set's files are (`None`: the registry's default directory).
    pub data: Option<PathBuf>,
    /// Runs per cell, one per seed `1..=seeds`.
    pub seeds: usize,
    /// Epochs per run (default: [`QUICK_EPOCHS`] with `quick`, else the paper's: 250, 60 for
    /// SVHN).
    pub epochs: Option<usize>,
    /// Train on a seeded subset of this many images (default: [`QUICK_TRAIN_IMAGES`] with
    /// `quick`).
    pub subset: Option<usize>,
    /// Evaluate on a seeded subset of the test set (default: [`QUICK_TEST_IMAGES`] with
    /// `quick`, else all of it).
    pub test_subset: Option<usize>,
    /// Loader worker threads per run (0: batches on the training thread, bit-exact reruns).
    pub workers: usize,
    /// The output root: runs go to `out/EXPERIMENT/RUN/`, reports to `out/EXPERIMENT/`.
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(quick: bool) -> Options {
        Options {
            quick,
            medium: false,
            dataset: "fashion-mnist".into(),
            data: None,
            seeds: 3,
            epochs: None,
            subset: None,
            test_subset: None,
            workers: 2,
            out: PathBuf::from("/tmp/repro"),
        }
    }

    #[test]
    fn the_medium_profile_trains_the_quick_networks_on_the_full_data_for_longer() {
        let medium = Options {
            quick: false,
            medium: true,
            ..opts(false)
        };
        let runs = plan(Experiment::Table1, &medium).unwrap();
        let quick = plan(Experiment::Table1, &opts(true)).unwrap();
        assert_eq!(runs.len(), quick.len());
        assert!(runs.iter().all(|r| r.images == 60_000
            && r.test_images == 10_000
            && r.epochs == MEDIUM_EPOCHS
            && (r.cell.n, r.cell.g) == QUICK_SIZE));
    }

    #[test]
    fn the_designed_grid_matches_logs_budget_with_a_smaller_mbd() {
        let runs = plan(Experiment::Designed, &opts(true)).unwrap();
        assert_eq!(runs.len(), 12, "4 columns x 3 seeds");
        let by = |label: &str| {
            runs.iter()
                .find(|r| r.cell.label == label && r.seed == 1)
                .unwrap()
        };
        let (ld, designed) = (by("LD"), by("Designed"));
        assert!(designed.cell.designed && !ld.cell.designed);
        // LOG's connections and per-layer counts, a smaller MBD, FLOPs within 5 %.
        assert_eq!(designed.connections, ld.connections);
        assert!(designed.mbd < ld.mbd, "{} against {}", designed.mbd, ld.mbd);
        assert!((designed.gflops / ld.gflops - 1.0).abs() < 0.05);
        let sets = designed.spec().unwrap().custom_sets.unwrap();
        let log = ld.spec().unwrap().build().unwrap().layer_input_sets();
        assert!(sets.iter().zip(&log).all(|(d, l)| d.len() == l.len()));
        // The run's config points at the shared pattern file.
        let cfg = run_config(designed, &opts(true));
        assert_eq!(
            cfg.model.pattern_file,
            Some(PathBuf::from(
                "/tmp/repro/patterns/ld-v1-24-4-designed.json"
            ))
        );
        assert_eq!(run_config(ld, &opts(true)).model.pattern_file, None);
        // The depth grid: n = 12, 24, 48 for LOG, NEAREST and the designed pattern.
        let depth = Experiment::Depth.grid(true);
        assert_eq!(depth.len(), 9);
        assert_eq!(
            depth
                .iter()
                .map(|c| c.n)
                .collect::<std::collections::BTreeSet<_>>(),
            DEPTHS.into_iter().collect()
        );
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
        assert!(runs[0].dir.ends_with("table1/ld-n24-g4-s1"));
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
        assert!(t2
            .iter()
            .any(|c| c.preset == "t2-nearest-half-and-log-32-12"));
        // Their costs are the paper's, within the readings' distances (N+LD and D within 1 %).
        for c in &t2 {
            let spec = crate::model::presets::preset(&c.preset).unwrap();
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

    fn row(label: &str, seed: u64, error: f64) -> RunRow {
        RunRow {
            label: label.into(),
            preset: format!("{label}-24-4"),
            dataset: "cifar10".into(),
            n: 12,
            g: 16,
            seed,
            params: 1000,
            gflops: 0.3,
            mbd: 7,
            connections: 100,
            final_test_error: error,
            best_test_error: error,
            epochs: 3,
            wall_s: 1.0,
            curve: vec![50.0, 30.0, error],
        }
    }

    #[test]
    fn a_claim_holds_only_beyond_the_spread_over_seeds() {
        let rows = vec![
            // LD: 7.0 +- 1.0; N: 9.0 +- 0.5 (holds); E: 7.5 +- 0.5 (within LD's spread).
            row("LD", 1, 6.0),
            row("LD", 2, 7.0),
            row("LD", 3, 8.0),
            row("N", 1, 8.5),
            row("N", 2, 9.0),
            row("N", 3, 9.5),
            row("E", 1, 7.0),
            row("E", 2, 7.5),
            row("E", 3, 8.0),
            // LD2 is worse than LD: the claim that it is better is reversed.
            row("LD2", 1, 10.0),
            row("LD2", 2, 10.5),
            row("LD2", 3, 11.0),
        ];
        let v = verdicts(Experiment::Table1, &rows);
        let outcome = |better: &str, worse: &str| {
            let v = v
                .iter()
                .find(|v| v.better == better && v.worse == worse)
                .unwrap();
            (v.outcome(), v.difference, v.spread)
        };
        assert_eq!(outcome("LD", "N"), ("holds", 2.0, 1.0));
        assert_eq!(outcome("LD", "E").0, "within the spread");
        assert_eq!(outcome("LD2", "LD").0, "reversed");
        let one_seed: Vec<RunRow> = rows.iter().filter(|r| r.seed == 1).cloned().collect();
        let v = verdicts(Experiment::Table1, &one_seed);
        assert_eq!(v[0].outcome(), "holds on one seed (no spread)");
        assert_eq!(v[2].outcome(), "reversed on one seed (no spread)");
        let md = table_md(Experiment::Table1, &rows);
        // The columns in the paper's order.
        assert!(md.contains("| (n, g) | LD | N | E | LD2 |"), "{md}");
        // The paper's CIFAR10 errors at (12, 16) beside ours: LD 7.23, so ours is -0.23.
        assert!(
            md.contains("7.00 +- 1.00 (3), 0.300 (0.29) GFLOPs, MBD 7; paper 7.23, ours -0.23"),
            "{md}"
        );
        assert!(
            md.contains("| +2.00 | +28.6 % | 1.00 | 3, 3 | holds | +2.50, +2.00, +1.50 | +12.2 %, held in 26 of 27 |"),
            "{md}"
        );
    }

    #[test]
    fn fig3_grows_depth_for_v1_v2_and_densenet_bc() {
        let full = Experiment::Fig3.grid(false);
        let depths = |label: &str| {
            full.iter()
                .filter(|c| c.label == label)
                .map(|c| c.n)
                .collect::<Vec<_>>()
        };
        assert_eq!(depths("LD"), vec![12, 22, 32, 42, 52, 62, 72, 82]);
        assert_eq!(depths("LD2"), depths("LD"));
        assert_eq!(depths("DenseNet-BC"), vec![12, 22, 32, 42]);
        assert!(full.iter().any(|c| c.preset == "densenet-bc-76-32"));
        assert!(full.iter().all(|c| c.g == 32));
        // Every cell of both grids is a preset the registry builds.
        for c in full.iter().chain(&Experiment::Fig3.grid(true)) {
            crate::model::presets::preset(&c.preset).unwrap();
        }
        let quick = plan(Experiment::Fig3, &opts(true)).unwrap();
        assert_eq!(quick.len(), 9 * 3);
        // GFLOPs grow with depth within each column.
        for label in ["LD", "LD2", "DenseNet-BC"] {
            let g: Vec<f64> = quick
                .iter()
                .filter(|r| r.seed == 1 && r.cell.label == label)
                .map(|r| r.gflops)
                .collect();
            assert!(g.windows(2).all(|w| w[0] < w[1]), "{label}: {g:?}");
        }
    }

    #[test]
    fn fig5a_counts_loglog_inputs_with_and_without_augmentation() {
        let depths = fig5a_depths();
        assert_eq!((depths[0], *depths.last().unwrap()), (10, 2000));
        assert!(depths.windows(2).all(|w| w[0] < w[1]));
        for r in fig5a(&[10, 100, 1000]) {
            // Augmentation only adds inputs, and at most three per layer (up to four).
            assert!(
                r.augmented > r.plain && r.augmented <= r.plain + 3.0,
                "{r:?}"
            );
            // Every layer has at least one input.
            assert!(r.plain >= 1.0, "{r:?}");
        }
    }

    #[test]
    fn the_estimate_counts_the_final_only_epoch_and_the_evaluations() {
        let runs = plan(Experiment::Table1, &opts(true)).unwrap();
        let ld = &runs[0];
        assert_eq!((ld.epochs, ld.final_only_epochs), (QUICK_EPOCHS, 1));
        assert_eq!(
            (ld.images, ld.test_images),
            (QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES)
        );
        let forward = ld.gflops * 1e9;
        let passes = (QUICK_EPOCHS + 1) as f64;
        assert!((ld.train_flops / (3.0 * forward * 7500.0 * passes) - 1.0).abs() < 1e-9);
        assert!((ld.eval_flops / (forward * 5000.0 * passes) - 1.0).abs() < 1e-9);
        assert_eq!(
            run_config(ld, &opts(true)).data.eval_subset,
            Some(QUICK_TEST_IMAGES)
        );
    }

    #[test]
    fn mean_and_sample_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
    }
}
