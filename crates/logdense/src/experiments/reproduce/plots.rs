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
    plot_panels(&root.join("curves.png"), &panels)
}
