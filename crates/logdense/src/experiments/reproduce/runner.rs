//! Training the planned runs: finished runs are skipped (or copied from an identical run of
//! another experiment), interrupted ones resumed.

use super::*;
use crate::training::engine::{LOCK_FILE, SUMMARY_FILE};
use crate::training::run::Run;
use anyhow::{Context, Result};
use burn::prelude::Device;
use std::path::{Path, PathBuf};

/// File in each run directory naming its place in the plan.
pub const PLAN_FILE: &str = "plan.json";

/// A finished run of another experiment under `out` whose config is `config` (the TOML of
/// [`run_config`]): the same network, data, schedule and seed, so its result is this run's
/// (Fig. 8's LD column is Table 1's, for example).
pub(super) fn identical_finished_run(
    out: &Path,
    experiment: &str,
    config: &str,
) -> Option<PathBuf> {
    let config_of =
        |dir: &Path| std::fs::read_to_string(dir.join(crate::training::config::CONFIG_FILE)).ok();
    std::fs::read_dir(out)
        .ok()?
        .flatten()
        .filter(|e| e.file_name() != experiment)
        .filter_map(|e| std::fs::read_dir(e.path()).ok())
        .flat_map(|dirs| dirs.flatten().map(|d| d.path()))
        .find(|dir| dir.join(SUMMARY_FILE).exists() && config_of(dir).as_deref() == Some(config))
}

/// Copies the finished run `from` into `to` (every file but its lock and plan), the summary
/// last, so that `to` counts as finished only once everything else is in place.
pub(super) fn copy_finished_run(from: &Path, to: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(from)
        .with_context(|| format!("cannot read {}", from.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default();
            name != PLAN_FILE && name != LOCK_FILE
        })
        .collect();
    files.sort_by_key(|p| p.file_name() == Some(std::ffi::OsStr::new(SUMMARY_FILE)));
    for file in files {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        crate::training::report::write_atomic(
            &to.join(file.file_name().unwrap_or_default()),
            &bytes,
        )?;
    }
    Ok(())
}

/// Trains every run not yet finished: a run whose directory holds `summary.json` is skipped,
/// one holding a checkpoint is resumed, and one that another experiment under `--out` already
/// finished with the identical config is copied from there (its `plan.json` names the source
/// in `reused_from`). Returns how many runs were trained.
pub fn execute(
    runs: &[PlannedRun],
    opts: &Options,
    device: &Device,
    progress: bool,
) -> Result<usize> {
    let mut trained = 0;
    for (k, run) in runs.iter().enumerate() {
        if run.dir.join(SUMMARY_FILE).exists() {
            if progress {
                eprintln!(
                    "[{}/{}] {}: finished, skipped",
                    k + 1,
                    runs.len(),
                    run.dir.display()
                );
            }
            continue;
        }
        let resume = run
            .dir
            .join(crate::training::checkpoint::CHECKPOINT_FILE)
            .exists();
        if progress {
            eprintln!(
                "[{}/{}] {} ({}, n = {}, g = {}, seed {}){}",
                k + 1,
                runs.len(),
                run.dir.display(),
                run.cell.label,
                run.cell.n,
                run.cell.g,
                run.seed,
                if resume { ", resumed" } else { "" }
            );
        }
        std::fs::create_dir_all(&run.dir)
            .with_context(|| format!("cannot create {}", run.dir.display()))?;
        let cfg = run_config(run, opts);
        if let Some(path) = &cfg.model.pattern_file {
            // The designed pattern as the run's config names it: written once, the same bytes
            // from every machine (the design is deterministic).
            if !path.exists() {
                // The design depends on the network's layers alone: the preset's spec has them.
                let preset =
                    crate::model::presets::preset(&run.cell.preset).map_err(anyhow::Error::msg)?;
                let design = designed_pattern(&preset)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let file = logdense_graph::PatternFile::new(design);
                crate::training::report::write_atomic(path, file.to_json().as_bytes())?;
            }
        }
        if !resume {
            if let Some(from) = identical_finished_run(&opts.out, &run.experiment, &cfg.to_toml()) {
                if progress {
                    eprintln!(
                        "  the same run (config) finished in {}: copied",
                        from.display()
                    );
                }
                // The plan first: a copy killed part-way leaves no summary without its plan.
                let plan = PlannedRun {
                    reused_from: Some(from.clone()),
                    ..run.clone()
                };
                crate::training::report::write_json_atomic(&run.dir.join(PLAN_FILE), &plan)?;
                copy_finished_run(&from, &run.dir)?;
                continue;
            }
        }
        crate::training::report::write_json_atomic(&run.dir.join(PLAN_FILE), run)?;
        Run {
            dir: run.dir.clone(),
            cfg,
            device: device.clone(),
            progress,
            stop_after: None,
            overwrite: false,
        }
        .train(resume)?;
        trained += 1;
    }
    Ok(trained)
}
