//! `bench`: training and inference throughput and peak memory.

use crate::usage;
use anyhow::Result;
use burn::prelude::Device;
use clap::Args;

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
    #[command(flatten)]
    kernels: crate::run_flags::KernelFlags,
    /// Peak-memory sweep instead: V1 LOG and dense V1 with g = 24 at n = 12, 52, 100, 200
    /// (batch 16), each preset in its own process.
    #[arg(long)]
    memory_sweep: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) fn bench_cmd(a: BenchArgs) -> Result<()> {
    use logdense::bench::{run_and_print, sweep_and_print, BenchOptions, SweepOptions};
    const MAX_STEPS: usize = 1_000_000;
    if a.steps == 0 || a.steps > MAX_STEPS || a.warmup > MAX_STEPS {
        return Err(usage(format!(
            "--steps must lie in 1..={MAX_STEPS} and --warmup in 0..={MAX_STEPS}"
        )));
    }
    if a.batch == Some(0) {
        return Err(usage(
            "--batch must be at least 1 (omit it for each preset's default)",
        ));
    }
    if a.memory_sweep {
        let opts = SweepOptions {
            steps: a.steps.min(3),
            ..SweepOptions::default()
        };
        sweep_and_print(&opts, a.json)?;
        return Ok(());
    }
    let device = logdense::device::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let mut opts = BenchOptions {
        warmup: a.warmup,
        steps: a.steps,
        device,
        fused: !a.kernels.no_fused,
        precision: a.kernels.precision.unwrap_or_default(),
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

#[derive(Args)]
pub(crate) struct CheckDeviceArgs {
    /// The device to check against the CPU: vulkan (with the vulkan feature), or cpu (which
    /// only checks the comparison itself).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Presets to compare (repeatable; default: ld-v1-12-16, ld-v2-12-16, densenet-bc-40-12,
    /// and fc-ld-scenes and fc-densenet-56 at 64x64; segmentation presets run at 64x64).
    #[arg(long)]
    preset: Vec<String>,
    #[arg(long)]
    json: bool,
}

/// Runs each preset on the CPU and on `--device` with the same weights and batch; fails if any
/// head or input gradient differs by more than the tolerance.
pub(crate) fn check_device_cmd(a: CheckDeviceArgs) -> Result<()> {
    use logdense::parity::{case_spec, compare_devices, DEFAULT_CASES, TOLERANCE};
    let device = logdense::device::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let cases: Vec<(String, usize, usize)> = if a.preset.is_empty() {
        DEFAULT_CASES
            .iter()
            .map(|&(p, side, batch)| (p.to_string(), side, batch))
            .collect()
    } else {
        a.preset.iter().map(|p| (p.clone(), 64, 2)).collect()
    };
    // Every preset is checked before the first (slow) comparison starts.
    let cases = cases
        .into_iter()
        .map(|(name, side, batch)| {
            let spec = case_spec(&name, side).map_err(|e| usage(format!("--preset: {e}")))?;
            Ok((name, spec, batch))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for (name, spec, batch) in cases {
        let agreement = compare_devices(&name, &spec, batch, &Device::flex(), &device, 0.0)?;
        if !a.json {
            println!(
                "{:<20} heads {:.2e}  input gradient {:.2e}  {}",
                agreement.preset,
                agreement.heads_rel_error,
                agreement.input_grad_rel_error,
                if agreement.within(TOLERANCE) {
                    "ok"
                } else {
                    "DIFFERS"
                }
            );
        }
        results.push(agreement);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    let bad: Vec<&str> = results
        .iter()
        .filter(|r| !r.within(TOLERANCE))
        .map(|r| r.preset.as_str())
        .collect();
    anyhow::ensure!(
        bad.is_empty(),
        "{} differs from the CPU beyond {TOLERANCE:e} (relative): {}",
        a.device,
        bad.join(", ")
    );
    Ok(())
}
