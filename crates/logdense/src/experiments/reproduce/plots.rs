//! The plots of a merged experiment: error against GFLOPs, parameters and MBD, and the
//! training curves.

use super::*;
use anyhow::Result;
use std::path::Path;

/// The experiment's plots: error (mean +- sd over seeds) against GFLOPs, parameters and MBD,
/// one series per column, and the mean test-error curve of each column per (n, g).
pub(super) fn plot(root: &Path, experiment: Experiment, rows: &[RunRow]) -> Result<()> {
    use crate::training::report::{plot_error_bars, plot_panels, Panel, XySeries};
    let (cells, labels) = group(experiment, rows);
    let dataset = &rows[0].dataset;
    let series_by = |x: &dyn Fn(&RunRow) -> f64| -> Vec<XySeries> {
        labels
            .iter()
            .map(|l| {
                let mut points: Vec<(f64, f64, f64)> = cells
                    .values()
                    .filter_map(|by_label| by_label.get(l))
                    .map(|runs| {
                        let (m, s) =
                            mean_std(&runs.iter().map(|r| r.final_test_error).collect::<Vec<_>>());
                        (x(runs[0]), m, s)
                    })
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                XySeries {
                    label: l.clone(),
                    points,
                }
            })
            .collect()
    };
    let title = |what: &str| {
        format!(
            "{}: test error against {what} ({dataset})",
            experiment.name()
        )
    };
    plot_error_bars(
        &root.join("error_vs_gflops.png"),
        &title("GFLOPs"),
        "GFLOPs per image (forward)",
        "test error (%)",
        &series_by(&|r| r.gflops),
    )?;
    plot_error_bars(
        &root.join("error_vs_params.png"),
        &title("parameters"),
        "parameters (millions)",
        "test error (%)",
        &series_by(&|r| r.params as f64 / 1e6),
    )?;
    plot_error_bars(
        &root.join("error_vs_mbd.png"),
        &title("MBD"),
        "maximum backpropagation distance (layers)",
        "test error (%)",
        &series_by(&|r| f64::from(r.mbd)),
    )?;
    let titles: Vec<String> = cells
        .keys()
        .map(|(n, g)| format!("(n, g) = ({n}, {g}): mean test error"))
        .collect();
    let panels: Vec<Panel> = cells
        .values()
        .zip(&titles)
        .map(|(by_label, title)| Panel {
            title,
            y_label: "test error (%)",
            series: labels
                .iter()
                .filter_map(|l| by_label.get_key_value(l))
                .map(|(l, runs)| {
                    let epochs = runs.iter().map(|r| r.curve.len()).min().unwrap_or(0);
                    let mean: Vec<(f64, f64)> = (0..epochs)
                        .map(|e| {
                            let m =
                                runs.iter().map(|r| r.curve[e]).sum::<f64>() / runs.len() as f64;
                            ((e + 1) as f64, m)
                        })
                        .collect();
                    (l.as_str(), mean)
                })
                .collect(),
        })
        .collect();
    plot_panels(&root.join("curves.png"), &panels)?;
    if experiment == Experiment::Depth {
        plot_error_bars(
            &root.join("difference_vs_depth.png"),
            &format!("depth: test-error differences, seed by seed ({dataset})"),
            "layers per block (n)",
            "test-error difference (percentage points)",
            &[
                difference_series(rows, "N", "LD", "NEAREST - LOG"),
                difference_series(rows, "LD", "Designed", "LOG - designed"),
            ],
        )?;
    }
    Ok(())
}

/// Per `n`, the mean and spread over seeds of `worse`'s test error less `better`'s, each
/// seed paired with itself.
fn difference_series(
    rows: &[RunRow],
    worse: &str,
    better: &str,
    label: &str,
) -> crate::training::report::XySeries {
    let mut ns: Vec<usize> = rows.iter().map(|r| r.n).collect();
    ns.sort_unstable();
    ns.dedup();
    let points = ns
        .into_iter()
        .filter_map(|n| {
            let error = |label: &str, seed: u64| {
                rows.iter()
                    .find(|r| r.n == n && r.label == label && r.seed == seed)
                    .map(|r| r.final_test_error)
            };
            let diffs: Vec<f64> = rows
                .iter()
                .filter(|r| r.n == n && r.label == worse)
                .filter_map(|r| Some(r.final_test_error - error(better, r.seed)?))
                .collect();
            (!diffs.is_empty()).then(|| {
                let (m, s) = mean_std(&diffs);
                (n as f64, m, s)
            })
        })
        .collect();
    crate::training::report::XySeries {
        label: label.into(),
        points,
    }
}
