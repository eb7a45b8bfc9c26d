//! Fig. 5a: LogLog's mean inputs per layer over depth (CSV and PNG), an analysis that trains
//! nothing.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// Fig. 5a: the mean number of inputs per layer of LogLog-DenseNet at depth `L`, plain
/// (`lglg_conn(0, L)`, at least one input) and augmented with LOG inputs up to four.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fig5aRow {
    /// The depth `L`: layers in the block.
    pub layers: usize,
    /// Mean inputs per layer of plain LogLog (at least one input).
    pub plain: f64,
    /// Mean inputs per layer of LogLog augmented with LOG inputs up to four.
    pub augmented: f64,
}

/// Fig. 5a's curve at the given depths.
pub fn fig5a(depths: &[usize]) -> Vec<Fig5aRow> {
    use logdense_graph::pattern::{mean_inputs, Pattern};
    depths
        .iter()
        .map(|&l| Fig5aRow {
            layers: l,
            plain: mean_inputs(&Pattern::LogLog { min_inputs: 1 }.input_sets(l)),
            augmented: mean_inputs(&Pattern::LogLog { min_inputs: 4 }.input_sets(l)),
        })
        .collect()
}

/// The depths Fig. 5a spans, L in (10, 2000): 10, 20, 30, ..., 100, then 50 more log-spaced.
pub fn fig5a_depths() -> Vec<usize> {
    let mut depths: Vec<usize> = (1..=10).map(|k| 10 * k).collect();
    let (lo, hi) = (100f64.ln(), 2000f64.ln());
    for k in 1..=50 {
        depths.push((lo + (hi - lo) * k as f64 / 50.0).exp().round() as usize);
    }
    depths.dedup();
    depths
}

/// Writes Fig. 5a (`fig5a.csv`, `fig5a.png`) into `dir` and returns its rows.
pub fn write_fig5a(dir: &Path) -> Result<Vec<Fig5aRow>> {
    use crate::training::report::{plot_error_bars, XySeries};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rows = fig5a(&fig5a_depths());
    let mut csv = String::from("layers,plain_mean_inputs,augmented_mean_inputs\n");
    for r in &rows {
        csv += &format!("{},{:.4},{:.4}\n", r.layers, r.plain, r.augmented);
    }
    crate::training::report::write_atomic(&dir.join("fig5a.csv"), csv.as_bytes())?;
    let series = |label: &str, f: fn(&Fig5aRow) -> f64| XySeries {
        label: label.into(),
        points: rows.iter().map(|r| (r.layers as f64, f(r), 0.0)).collect(),
    };
    plot_error_bars(
        &dir.join("fig5a.png"),
        "Fig. 5a: mean inputs per layer of LogLog-DenseNet",
        "layers L",
        "mean inputs per layer",
        &[
            series("lglg_conn(0, L) (min inputs 1)", |r| r.plain),
            series("augmented with LOG inputs (min inputs 4)", |r| r.augmented),
        ],
    )?;
    Ok(rows)
}
