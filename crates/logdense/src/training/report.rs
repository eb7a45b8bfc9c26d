//! Per-epoch metrics: CSV and JSON files and a PNG of the learning curves.

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// The run's epoch number, from 1 over all stages.
    pub epoch: usize,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Whether this epoch optimised the final prediction alone.
    pub final_only: bool,
    /// Mean training loss per image.
    pub train_loss: f64,
    /// Fraction of training images the final head predicted correctly.
    pub train_accuracy: f64,
    /// Mean cross-entropy on the evaluated split.
    pub test_loss: f64,
    /// Fraction of the evaluated split predicted correctly.
    pub test_accuracy: f64,
    /// Training images per second.
    pub images_per_s: f64,
    /// Seconds of the epoch, training and evaluation.
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

/// Registers the bundled DejaVu Sans font, a proportional one (plotters' ab_glyph backend has
/// no system fonts).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let font: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
            eprintln!("warning: could not register the plot font; plots will lack text");
        }
    });
}

/// One chart: a title, a y-axis label and named series of (epoch, value) points.
pub struct Panel<'a> {
    /// The panel's title.
    pub title: &'a str,
    /// The y axis' label.
    pub y_label: &'a str,
    /// Named series of `(x, y)` points, one line each.
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
}

/// Training loss (left) and test error in % (right) per epoch.
pub fn plot_curves(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    let epoch = |r: &EpochMetrics| r.epoch as f64;
    let loss = Panel {
        title: "loss",
        y_label: "cross-entropy (nats)",
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
        title: "test error",
        y_label: "error (%)",
        series: vec![(
            "test",
            rows.iter()
                .map(|r| (epoch(r), 100.0 * (1.0 - r.test_accuracy)))
                .collect(),
        )],
    };
    plot_panels(path, &[loss, error])
}

/// Series colours, distinguishable in print.
const COLORS: [RGBColor; 6] = [
    BLUE,
    RED,
    RGBColor(0, 140, 0),
    MAGENTA,
    RGBColor(230, 140, 0),
    RGBColor(0, 150, 160),
];

/// Draws panels into a PNG, three to a row (atomically: temporary file, then rename).
pub fn plot_panels(path: &Path, panels: &[Panel]) -> Result<()> {
    register_font();
    let tmp = path.with_extension("tmp.png");
    {
        let columns = panels.len().clamp(1, 3);
        let rows = panels.len().max(1).div_ceil(columns);
        let (width, height) = (500 * columns as u32, 420 * rows as u32);
        let root = BitMapBackend::new(&tmp, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((rows, columns));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            let points = panel.series.iter().flat_map(|(_, p)| p.iter());
            // Epochs are whole numbers from 1: the axis spans them with half an epoch either
            // side and is labelled at integers only.
            let max_x = points.clone().map(|p| p.0).fold(1.0, f64::max).ceil();
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
                .build_cartesian_2d(0.5..max_x + 0.5, 0.0..max_y)?;
            let epochs = max_x as usize;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(panel.y_label)
                .x_labels(epochs.min(20) + 1)
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-6 && *x >= 1.0 {
                        format!("{}", x.round() as i64)
                    } else {
                        String::new()
                    }
                })
                .draw()?;
            for (k, (label, pts)) in panel.series.iter().enumerate() {
                let color = COLORS[k % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(pts.clone(), &color))?
                    .label(*label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            draw_legend(&mut chart)?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))
}

/// The series' legend, boxed, in the chart's top right corner.
fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

/// An axis label: whole numbers without a decimal point, others with at most three decimals.
fn short_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// A named series of points `(x, mean, standard deviation)`.
pub struct XySeries {
    /// The series' name in the legend.
    pub label: String,
    /// Points `(x, mean, standard deviation)`.
    pub points: Vec<(f64, f64, f64)>,
}

/// One chart of series against a continuous x: each point at its mean, with a vertical bar of
/// plus and minus one standard deviation where that is positive, joined in order of x.
pub fn plot_error_bars(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[XySeries],
) -> Result<()> {
    register_font();
    let points = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (mut y0, mut y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1 - p.2), hi.max(p.1 + p.2))
    });
    if !(x0.is_finite() && x1.is_finite() && y0.is_finite() && y1.is_finite()) {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    // A margin of a tenth of the range (or of the value, for a single point) on each side.
    let pad = |lo: f64, hi: f64| {
        let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
        (lo - 0.1 * span, hi + 0.1 * span)
    };
    // Errors never go below 0, so their axis starts there; differences may.
    let negative = y0 < 0.0;
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let y0 = if negative { y0 } else { y0.max(0.0) };
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (760, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|v| short_number(*v))
            .y_label_formatter(&|v| short_number(*v))
            .draw()?;
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                s.points
                    .iter()
                    .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
            )?;
            chart.draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|p| {
                ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, color.stroke_width(2), 10)
            }))?;
        }
        draw_legend(&mut chart)?;
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))
}

/// Fig. 1's picture of a connection pattern: row `i` marks the layers layer `i` reads (from
/// `sets[i]`), with layer indices on both axes, block boundaries as lines and `title` above.
pub fn plot_connection_matrix(
    path: &Path,
    sets: &[Vec<usize>],
    block_len: Option<usize>,
    title: &str,
) -> Result<()> {
    register_font();
    let n = sets.len().max(1);
    let tmp = path.with_extension("tmp.png");
    {
        let side = (n as u32 * 14).clamp(360, 900);
        let root = BitMapBackend::new(&tmp, (side + 90, side + 110)).into_drawing_area();
        root.fill(&WHITE)?;
        let last = n as f64 - 0.5;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(-0.5..last, last..-0.5)?;
        let ticks = n.min(25);
        let whole = |v: &f64| {
            if (v - v.round()).abs() < 1e-6 && *v >= 0.0 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("input layer j (x_0 is the initial convolution)")
            .y_desc("layer i")
            .x_labels(ticks)
            .y_labels(ticks)
            .x_label_formatter(&whole)
            .y_label_formatter(&whole)
            .draw()?;
        chart.draw_series(sets.iter().enumerate().flat_map(|(i, set)| {
            set.iter().map(move |&j| {
                let (x, y) = (j as f64, i as f64);
                Rectangle::new([(x - 0.45, y - 0.45), (x + 0.45, y + 0.45)], BLACK.filled())
            })
        }))?;
        // The diagonal: a layer's own position, for orientation.
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, -0.5), (last, last)],
            BLACK.mix(0.2),
        )))?;
        if let Some(len) = block_len.filter(|&l| l > 0 && l < n) {
            let red = RED.mix(0.7);
            let mut at = len as f64 + 0.5;
            while at < last {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(at, -0.5), (at, last)],
                    red.stroke_width(2),
                )))?;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(-0.5, at), (last, at)],
                    red.stroke_width(2),
                )))?;
                at += len as f64;
            }
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_matrix_marks_each_input_of_each_layer() {
        let dir = std::env::temp_dir().join(format!("logdense-fig1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fig1.png");
        let sets = logdense_graph::Pattern::Log.input_sets(24);
        plot_connection_matrix(&path, &sets, Some(12), "log: L = 24").unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert!(img.width() >= 360 && img.height() >= 360);
        // Dark cells, red block boundaries and white background are all there.
        let px: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(px.iter().any(|p| p[0] < 40 && p[1] < 40 && p[2] < 40));
        assert!(px.iter().any(|p| p[0] > 200 && p[1] < 120 && p[2] < 120));
        assert!(px.iter().filter(|p| **p == [255, 255, 255]).count() > px.len() / 2);
        assert!(!dir.join("fig1.tmp.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
