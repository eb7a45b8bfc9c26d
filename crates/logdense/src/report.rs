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
    write_json_atomic(&dir.join("metrics.json"), rows)?;
    plot_curves(&dir.join("curves.png"), rows)
}

/// Writes via a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    if let Err(e) = std::fs::write(&tmp, bytes) {
        // A partial temporary file (a full disk) is not left behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Writes `value` as pretty-printed JSON, atomically (metrics and run summaries).
pub fn write_json_atomic<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value)?)
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

/// One chart: a title, a y-axis label and named series of (epoch, value) points.
pub struct Panel<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
}

/// Training loss (left) and test error in % (right) per epoch.
pub fn plot_curves(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let epoch = |r: &EpochMetrics| r.epoch as f64;
    let loss = Panel {
        title: "loss",
        y_label: "cross-entropy",
        series: vec![
            (
                "train",
                rows.iter().map(|r| (epoch(r), r.train_loss)).collect(),
            ),
            (
                "test",
                rows.iter().map(|r| (epoch(r), r.test_loss)).collect(),
            ),
        ],
    };
    let error = Panel {
        title: "test error (%)",
        y_label: "%",
        series: vec![(
            "test",
            rows.iter()
                .map(|r| (epoch(r), 100.0 * (1.0 - r.test_accuracy)))
                .collect(),
        )],
    };
    plot_panels(path, &[loss, error])
}

/// Draws panels side by side into a PNG (atomically: temporary file, then rename).
pub fn plot_panels(path: &Path, panels: &[Panel]) -> Result<()> {
    register_font();
    const COLORS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];
    let tmp = path.with_extension("tmp.png");
    {
        let width = 500 * panels.len().max(1) as u32;
        let root = BitMapBackend::new(&tmp, (width, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            let points = panel.series.iter().flat_map(|(_, p)| p.iter());
            let max_x = points.clone().map(|p| p.0).fold(1.0, f64::max);
            let max_y = points
                .map(|p| p.1)
                .filter(|y| y.is_finite())
                .fold(1e-3, f64::max)
                * 1.08;
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(panel.y_label)
                .draw()?;
            for (k, (label, pts)) in panel.series.iter().enumerate() {
                let color = COLORS[k % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(pts.clone(), &color))?
                    .label(*label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))
}
