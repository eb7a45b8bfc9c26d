//! `bench`: training and inference throughput and peak memory.

use crate::usage;
use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use clap::Args;
use logdense::experiments::bench::{parse_results, BenchResult};
use std::path::Path;
use std::process::Command;

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
    /// (batch 16), each preset in its own process (on a GPU device the allocator's peak).
    #[arg(long)]
    memory_sweep: bool,
    /// The sweep's depths n (repeatable; default 12, 52, 100, 200).
    #[arg(long = "sweep-n", requires = "memory_sweep")]
    sweep_n: Vec<usize>,
    #[arg(long)]
    json: bool,
}

pub(crate) fn bench_cmd(a: BenchArgs) -> Result<()> {
    use logdense::experiments::bench::{
        memory_sweep, print_sweep, run_and_print, BenchOptions, SweepOptions,
    };
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
        if a.sweep_n.iter().any(|&n| n == 0 || n > 1000) {
            return Err(usage("--sweep-n: each depth must lie in 1..=1000"));
        }
        let mut opts = SweepOptions {
            steps: a.steps.min(3),
            ..SweepOptions::default()
        };
        if !a.sweep_n.is_empty() {
            opts.ns = a.sweep_n.clone();
        }
        if let Some(batch) = a.batch {
            opts.batch = batch;
        }
        // The children run on this command's device, kernels and checkpointing.
        let mut extra = vec![
            "--warmup".to_string(),
            a.warmup.min(1).to_string(),
            "--device".into(),
            a.device.clone(),
        ];
        extra.extend(a.kernels.to_args());
        if a.device != "cpu" {
            // Fail here, once, rather than in every child.
            crate::open_device(&a.device)?;
        }
        let exe = std::env::current_exe().context("cannot find the current executable")?;
        let rows = memory_sweep(&opts, |preset, batch, steps| {
            isolated(&exe, preset, batch, steps, &extra)
        })?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print_sweep(&rows);
        }
        return Ok(());
    }
    let device = crate::open_device(&a.device)?;
    let mut opts = BenchOptions {
        warmup: a.warmup,
        steps: a.steps,
        device,
        fused: !a.kernels.no_fused,
        precision: a.kernels.precision.unwrap_or_default(),
        f32_kernels: a.kernels.f32_kernels()?.unwrap_or_default(),
        checkpointing: a.kernels.checkpointing,
        ..BenchOptions::default()
    };
    if !a.preset.is_empty() {
        for p in &a.preset {
            logdense::model::presets::preset(p).map_err(|e| usage(format!("--preset: {e}")))?;
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
    /// The device to check against the CPU: vulkan (with the vulkan feature), wgpu (with the
    /// wgpu feature: a GPU, or the CPU through Mesa's lavapipe), or cpu (which only checks the
    /// comparison itself).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Presets to compare (repeatable; default: ld-v1-12-16, ld-v2-12-16, densenet-bc-40-12,
    /// and fc-ld-scenes and fc-densenet-56 at 64x64; segmentation presets run at 64x64).
    #[arg(long, conflicts_with = "small")]
    preset: Vec<String>,
    /// One small network per family instead (ld-v1, ld-v2, densenet-bc, loglog, fc-ld at 16x16,
    /// batch 2): the check a software GPU device (lavapipe) finishes in minutes.
    #[arg(long)]
    small: bool,
    /// Train the device's copy with gradient checkpointing (see `bench --checkpointing`).
    #[arg(long)]
    checkpointing: bool,
    /// Run the device's copy on burn's plain ops instead of its fused path (on a GPU, the
    /// recomputing layer; on the CPU, the fused kernels).
    #[arg(long)]
    plain: bool,
    #[arg(long)]
    json: bool,
}

/// Runs each preset on the CPU and on `--device` with the same weights and batch; fails if any
/// head or input gradient differs by more than the tolerance.
pub(crate) fn check_device_cmd(a: CheckDeviceArgs) -> Result<()> {
    use logdense::experiments::parity::{
        case_spec, compare_devices, small_case_spec, CopyOptions, DEFAULT_CASES, SMALL_CASES,
        TOLERANCE,
    };
    let copy_options = CopyOptions {
        checkpointing: a.checkpointing,
        fused: !a.plain,
        ..CopyOptions::default()
    };
    let device = crate::open_device(&a.device)?;
    let table = if a.small { SMALL_CASES } else { DEFAULT_CASES };
    let cases: Vec<(String, usize, usize)> = if a.small || a.preset.is_empty() {
        table
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
            let spec = match a.small {
                true => small_case_spec(&name, side),
                false => case_spec(&name, side),
            }
            .map_err(|e| usage(format!("--preset: {e}")))?;
            Ok((name, spec, batch))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for (name, spec, batch) in cases {
        let started = std::time::Instant::now();
        let before = logdense::model::fused::kernel_runs();
        let agreement =
            compare_devices(&name, &spec, batch, &Device::flex(), &device, &copy_options)?;
        let recomputed =
            logdense::model::fused::kernel_runs().recompute_backward > before.recompute_backward;
        if !a.json {
            println!(
                "{:<20} {:<10} heads {:.2e}  input gradient {:.2e}  parameter gradients {:.2e}  after a step {:.2e}  {:>6.1} s  {}",
                agreement.preset,
                match (recomputed, a.plain) {
                    (true, _) => "recompute",
                    (false, true) => "plain",
                    (false, false) => "fused",
                },
                agreement.heads_rel_error,
                agreement.input_grad_rel_error,
                agreement.param_grads_rel_error,
                agreement.step_rel_error,
                started.elapsed().as_secs_f64(),
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

/// Benchmarks one preset in a fresh process of the `logdense` executable `exe`, so that its
/// peak resident memory is its own: `exe bench --preset P --batch B --steps S [extra] --json`
/// (`extra_args`, e.g. `["--warmup", "1", "--device", "cpu"]`).
fn isolated(
    exe: &Path,
    preset: &str,
    batch: usize,
    steps: usize,
    extra_args: &[String],
) -> Result<BenchResult> {
    let out = Command::new(exe)
        .args(["bench", "--preset", preset])
        .args(["--batch", &batch.to_string(), "--steps", &steps.to_string()])
        .args(extra_args)
        .arg("--json")
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        bail!(
            "'{} bench --preset {preset}' failed ({}){}",
            exe.display(),
            out.status,
            if tail.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )
            }
        );
    }
    let results = parse_results(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("output of '{} bench --preset {preset}'", exe.display()))?;
    results
        .into_iter()
        .find(|r| r.preset == preset)
        .with_context(|| format!("the child printed no result for '{preset}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn isolated_runs_a_child_and_parses_its_json() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("logdense-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A stand-in for `logdense`: checks its arguments, prints a log line and the JSON.
        let r = BenchResult {
            preset: "ld-v1-2-4".into(),
            batch: 16,
            input: [3, 32, 32],
            params: 3678,
            gflops_per_image: 0.0027,
            train_step_ms_median: 10.0,
            infer_ms_median: 2.0,
            train_img_per_s: 1600.0,
            infer_img_per_s: 8000.0,
            train_gflop_per_s: 12.96,
            infer_gflop_per_s: 21.6,
            peak_rss_bytes: Some(123 << 20),
            steps: 2,
            warmup: 1,
            threads: 2,
            fused: Some(true),
            precision: None,
            f32_kernels: None,
            checkpointing: None,
            first_step_ms: None,
            device_peak_bytes: None,
            compilations_first_step: None,
            compilations_per_step: None,
        };
        let json = serde_json::to_string(&[&r]).unwrap();
        let exe = dir.join("fake-logdense");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\n[ \"$*\" = 'bench --preset ld-v1-2-4 --batch 16 --steps 2 --warmup 1 --json' ] || {{ echo \"bad args: $*\" >&2; exit 3; }}\necho 'starting'\necho '{json}'\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let extra = ["--warmup".to_string(), "1".to_string()];
        assert_eq!(isolated(&exe, "ld-v1-2-4", 16, 2, &extra).unwrap(), r);
        let err = isolated(&exe, "ld-v1-2-4", 8, 2, &extra).unwrap_err();
        assert!(format!("{err:#}").contains("bad args"), "{err:#}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
