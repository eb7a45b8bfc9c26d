//! Memory: the process's peak resident set, the cost model's estimate of a training step's
//! memory, and the sweep of LOG against DENSE V1 at growing depth.

use super::*;
use crate::model::presets;
use anyhow::Result;
use logdense_graph::NetSpec;
use serde::{Deserialize, Serialize};

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), in bytes.
/// `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM").map(|k| k * 1024)
}

/// Current resident set size (`VmRSS`), in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS").map(|k| k * 1024)
}

/// Resets the peak to the current resident size (Linux >= 4.0, `5` into
/// `/proc/self/clear_refs`); returns whether it worked. Memory freed by earlier work but kept
/// by the allocator still counts, so this does not replace a fresh process.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Training memory the cost model predicts for `spec` at `batch`, in bytes: the naive
/// activation memory (what autograd keeps, per image) times the batch, plus weights,
/// gradients and momentum (3 x 4 bytes per parameter). Used to skip runs that cannot fit.
pub fn estimated_train_bytes(spec: &NetSpec, batch: usize) -> Result<u64> {
    let c = spec
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .cost()
        .total;
    Ok(c.activation_bytes
        .saturating_mul(batch as u64)
        .saturating_add(c.params.saturating_mul(12)))
}

pub use crate::training::resources::available_memory_bytes;

/// The memory sweep: V1 LOG (`ld-v1-N-G`) against DenseNet (`dense-N-G`, the V1 dense
/// pattern) trained at one batch size, each preset measured on its own (see [`memory_sweep`]).
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Depths `n` (layers per block) to sweep; each runs as `ld-v1-N-G` and `dense-N-G`.
    pub ns: Vec<usize>,
    /// Growth rate `G` of every swept network.
    pub growth: usize,
    /// Images per training step.
    pub batch: usize,
    /// Timed steps per preset.
    pub steps: usize,
    /// Skip a preset whose [`estimated_train_bytes`] exceeds this; `None`: 3/4 of
    /// `MemAvailable` at the start of the sweep.
    pub max_bytes: Option<u64>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            ns: SWEEP_NS.to_vec(),
            growth: SWEEP_GROWTH,
            batch: SWEEP_BATCH,
            steps: 2,
            max_bytes: None,
        }
    }
}

/// One row of the memory sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRow {
    /// The preset's name (`ld-v1-N-G` or `dense-N-G`).
    pub preset: String,
    /// `ld-v1` or `dense`.
    pub family: String,
    /// Layers per block.
    pub n: usize,
    /// Growth rate.
    pub growth: usize,
    /// Images per training step.
    pub batch: usize,
    /// [`estimated_train_bytes`].
    pub estimated_bytes: u64,
    /// The isolated run, when it ran and succeeded.
    pub result: Option<BenchResult>,
    /// Why there is no result (too large for this machine, or the child failed).
    pub skipped: Option<String>,
}

/// Runs the memory sweep (see [`SweepOptions`]): `measure(preset, batch, steps)` benchmarks
/// one preset on its own, so that its peak memory is its own (the CLI runs each in a child
/// process). Presets that cannot fit are skipped with a reason rather than run out of memory,
/// and a failed measurement is recorded, not fatal.
pub fn memory_sweep(
    opts: &SweepOptions,
    mut measure: impl FnMut(&str, usize, usize) -> Result<BenchResult>,
) -> Result<Vec<SweepRow>> {
    let limit = opts
        .max_bytes
        .or_else(|| available_memory_bytes().map(|a| a / 4 * 3))
        .unwrap_or(u64::MAX);
    let mut rows = Vec::new();
    for &n in &opts.ns {
        for family in ["ld-v1", "dense"] {
            let preset = format!("{family}-{n}-{}", opts.growth);
            let spec = presets::preset(&preset).map_err(anyhow::Error::msg)?;
            let estimated_bytes = estimated_train_bytes(&spec, opts.batch)?;
            let (result, skipped) = if estimated_bytes > limit {
                (
                    None,
                    Some(format!(
                        "needs about {:.1} GiB (cost model), limit {:.1} GiB",
                        gib(estimated_bytes),
                        gib(limit)
                    )),
                )
            } else {
                match measure(&preset, opts.batch, opts.steps) {
                    Ok(r) => (Some(r), None),
                    Err(e) => (None, Some(format!("{e:#}"))),
                }
            };
            rows.push(SweepRow {
                preset,
                family: family.to_string(),
                n,
                growth: opts.growth,
                batch: opts.batch,
                estimated_bytes,
                result,
                skipped,
            });
        }
    }
    Ok(rows)
}
