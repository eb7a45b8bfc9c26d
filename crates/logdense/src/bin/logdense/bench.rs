//! `bench`: training and inference throughput and peak memory.

use crate::usage;
use anyhow::Result;
use clap::Args;
use logdense::train;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Presets to time (repeatable; default: ld-v1-12-16, ld-v1-32-24, densenet-bc-100-12, fc-ld-103).
    #[arg(long)]
    preset: Vec<String>,
    /// Batch size (default: 64 for classification, 1 for the 224x224 FC networks).
    #[arg(long)]
    batch: Option<usize>,
    /// Input height = width instead of each preset's own (e.g. 64 for fc-ld-scenes as trained)
    #[arg(long)]
    input: Option<usize>,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Peak-memory sweep instead: V1 LOG and dense V1 with g = 24 at n = 12, 52, 100, 200
    /// (batch 16), each preset in its own process.
    #[arg(long)]
    memory_sweep: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) fn bench_cmd(a: BenchArgs) -> Result<()> {
    use logdense::bench::{run_and_print, sweep_and_print, BenchOptions, SweepOptions};
    if a.steps == 0 {
        return Err(usage("--steps must be at least 1"));
    }
    if a.memory_sweep {
        let opts = SweepOptions {
            steps: a.steps.min(3),
            ..SweepOptions::default()
        };
        sweep_and_print(&opts, a.json)?;
        return Ok(());
    }
    let device = train::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let mut opts = BenchOptions {
        warmup: a.warmup,
        steps: a.steps,
        device,
        ..BenchOptions::default()
    };
    if !a.preset.is_empty() {
        for p in &a.preset {
            logdense::presets::preset(p).map_err(|e| usage(format!("--preset: {e}")))?;
        }
        opts.presets = a.preset.clone();
    }
    opts.batch = a.batch.unwrap_or(0);
    if a.input == Some(0) {
        return Err(usage("--input must be at least 1 pixel"));
    }
    opts.input = a.input;
    run_and_print(&opts, a.json)?;
    Ok(())
}
