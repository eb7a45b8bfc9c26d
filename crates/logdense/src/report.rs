//! Per-epoch metrics: CSV and JSON files and a PNG of the learning curves.

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    /// Whether this epoch optimised the final prediction alone.
    pub final_only: bool,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub images_per_s: f64,
    pub epoch_s: f64,
}

/// Writes `metrics.csv`, `metrics.json` and `curves.png` into `dir` (each atomically).
pub fn write_all(dir: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut csv = String::from("epoch,lr,final_only,train_loss,train_accuracy,test_loss,test_accuracy,images_per_s,epoch_s\n");
    for r in rows {
        csv += &format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.6},{:.1},{:.2}\n",
            r.epoch,
            r.lr,
            r.final_only,
            r.train_loss,
            r.train_accuracy,
            r.test_loss,
            r.test_accuracy,
            r.images_per_s,
            r.epoch_s
        );
    }
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())?;
    write_atomic(&dir.join("metrics.json"), &serde_json::to_vec_pretty(rows)?)?;
    plot_curves(&dir.join("curves.png"), rows)
}

/// Writes via a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))
}

/// Registers the bundled DejaVu Sans Mono font (plotters' ab_glyph backend has no system fonts).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let font: &'static [u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
        if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
            eprintln!("warning: could not register the plot font; plots will lack text");
        }
    });
}

/// Training loss (left) and test error in % (right) per epoch.
pub fn plot_curves(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    register_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1000, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(500);
        let max_epoch = rows.iter().map(|r| r.epoch).max().unwrap_or(1).max(1) as f64;
        let max_loss = rows
            .iter()
            .map(|r| r.train_loss.max(r.test_loss))
            .fold(0.1, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(&left)
            .caption("loss", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max_epoch, 0.0..max_loss)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("cross-entropy")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.epoch as f64, r.train_loss)),
                &BLUE,
            ))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.epoch as f64, r.test_loss)),
                &RED,
            ))?
            .label("test")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
        let max_err = rows
            .iter()
            .map(|r| 100.0 * (1.0 - r.test_accuracy))
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&right)
            .caption("test error (%)", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max_epoch, 0.0..max_err)?;
        chart.configure_mesh().x_desc("epoch").y_desc("%").draw()?;
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.epoch as f64, 100.0 * (1.0 - r.test_accuracy)))
            .collect();
        chart.draw_series(LineSeries::new(points.clone(), &RED))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))
}
