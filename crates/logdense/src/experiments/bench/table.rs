//! The benchmark's tables, and the JSON `logdense bench --json` prints read back.

use super::*;
use anyhow::{Context, Result};

/// Parses what `logdense bench --json` prints: a list of results (or one result object).
pub fn parse_results(text: &str) -> Result<Vec<BenchResult>> {
    let text = text.trim();
    // Tolerate lines printed before the JSON (the JSON starts at the first line that opens it).
    let start = text
        .lines()
        .scan(0usize, |offset, line| {
            let here = *offset;
            *offset += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, l)| l.trim_start().starts_with('[') || l.trim_start().starts_with('{'))
        .map(|(o, _)| o)
        .context("no JSON in the benchmark's output")?;
    let json = &text[start..];
    if json.trim_start().starts_with('{') {
        Ok(vec![
            serde_json::from_str(json).context("bad benchmark JSON")?
        ])
    } else {
        serde_json::from_str(json).context("bad benchmark JSON")
    }
}

pub(super) fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

pub(super) fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| {
        format!("{:.0}", b as f64 / (1u64 << 20) as f64)
    })
}

/// The human-readable table of results.
pub fn format_table(results: &[BenchResult]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<20} {:>5} {:>11} {:>8} {:>9} {:>10} {:>9} {:>9} {:>10} {:>9} {:>8} {:>6}\n",
        "preset",
        "batch",
        "input",
        "params M",
        "GFLOP/img",
        "train ms",
        "train i/s",
        "train GF/s",
        "infer ms",
        "infer i/s",
        "peak MiB",
        "fused"
    ));
    for r in results {
        let [c, h, w] = r.input;
        s.push_str(&format!(
            "{:<20} {:>5} {:>11} {:>8.3} {:>9.3} {:>10.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>8} {:>6}\n",
            r.preset,
            r.batch,
            format!("{c}x{h}x{w}"),
            r.params as f64 / 1e6,
            r.gflops_per_image,
            r.train_step_ms_median,
            r.train_img_per_s,
            r.train_gflop_per_s,
            r.infer_ms_median,
            r.infer_img_per_s,
            mib(r.device_peak_bytes.or(r.peak_rss_bytes)),
            match r.fused {
                Some(true) if r.precision.as_deref() == Some("bf16") => "bf16",
                Some(true) => r.f32_kernels.as_deref().unwrap_or("yes"),
                Some(false) => "no",
                None => "-",
            }
        ));
    }
    let on_device = results.iter().any(|r| r.device_peak_bytes.is_some());
    if on_device {
        s.push_str(&format!(
            "{:<20} {:>12} {:>16} {:>14} {:>13}\n",
            "preset", "1st step s", "compiled 1st", "compiled/step", "checkpointing"
        ));
        for r in results {
            s.push_str(&format!(
                "{:<20} {:>12} {:>16} {:>14} {:>13}\n",
                r.preset,
                r.first_step_ms
                    .map_or("-".into(), |ms| format!("{:.1}", ms / 1e3)),
                r.compilations_first_step
                    .map_or("-".into(), |n| n.to_string()),
                r.compilations_per_step
                    .map_or("-".into(), |n| format!("{n:.1}")),
                match r.checkpointing {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                }
            ));
        }
    }
    if let Some(r) = results.first() {
        s.push_str(&format!(
            "median of {} steps after {} warm-up; {} threads; training GFLOP/s count 3x the forward FLOPs; peak = {}\n",
            r.steps,
            r.warmup,
            r.threads,
            if on_device {
                "the device allocator's reserved bytes at their highest after a training step"
            } else {
                "process VmHWM"
            }
        ));
    }
    s
}

/// Prints [`format_table`] to standard output.
pub fn print_table(results: &[BenchResult]) {
    print!("{}", format_table(results));
}

/// The memory sweep as a table: peak RSS of LOG and DenseNet side by side per `n`.
pub fn format_sweep(rows: &[SweepRow]) -> String {
    let mut s = format!(
        "{:<16} {:>5} {:>13} {:>10} {:>11}  note\n",
        "preset", "batch", "estimate MiB", "peak MiB", "train i/s"
    );
    for r in rows {
        let peak = r
            .result
            .as_ref()
            .and_then(|x| x.device_peak_bytes.or(x.peak_rss_bytes));
        let ips = r
            .result
            .as_ref()
            .map_or("-".into(), |x| format!("{:.1}", x.train_img_per_s));
        s.push_str(&format!(
            "{:<16} {:>5} {:>13} {:>10} {:>11}  {}\n",
            r.preset,
            r.batch,
            mib(Some(r.estimated_bytes)),
            mib(peak),
            ips,
            r.skipped.as_deref().unwrap_or("")
        ));
    }
    s
}

/// Prints [`format_sweep`] to standard output.
pub fn print_sweep(rows: &[SweepRow]) {
    print!("{}", format_sweep(rows));
}
