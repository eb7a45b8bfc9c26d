//! A plan on a cluster: the shard a Slurm array task takes, the `sbatch` scripts of a job
//! array and of its dependent report job, the state of every run of a plan, and the
//! node-hours a plan needs at measured speeds.
//!
//! Nothing here submits or spawns: the CLI does that. A run is the unit of work and of
//! recovery: an array task trains its shard's runs one after another, a finished run is
//! skipped and an interrupted one resumed from its last epoch, so resubmitting an array after
//! a preemption or a failed node finishes the grid without repeating finished work.

use super::*;
use crate::training::engine::{lock_is_held, LOCK_FILE};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// File under `OUT/EXPERIMENT/` that lists the whole plan, so that `reproduce status` knows
/// the runs not yet started.
pub const GRID_FILE: &str = "grid.json";

/// The shard (`K` of `N`, from 1) of a Slurm array task, from the values of
/// `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_COUNT`.
pub fn slurm_shard(
    task_id: Option<&str>,
    task_min: Option<&str>,
    task_count: Option<&str>,
) -> Result<(usize, usize)> {
    let read = |name: &str, value: Option<&str>| -> Result<usize> {
        let value = value.with_context(|| {
            format!("--shard slurm: {name} is not set: this is not a task of a Slurm job array")
        })?;
        value
            .trim()
            .parse()
            .with_context(|| format!("--shard slurm: {name} is '{value}', not a number"))
    };
    let id = read("SLURM_ARRAY_TASK_ID", task_id)?;
    let min = read("SLURM_ARRAY_TASK_MIN", task_min)?;
    let count = read("SLURM_ARRAY_TASK_COUNT", task_count)?;
    if id < min || id - min >= count {
        bail!(
            "--shard slurm: task {id} lies outside the array's {count} tasks from {min} (an \
             array with gaps or a step other than 1; submit it as --array=0-{})",
            count.saturating_sub(1)
        );
    }
    Ok((id - min + 1, count))
}

/// What one array task may use: CPUs, and memory from the cost model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskResources {
    /// CPUs per task (`--cpus-per-task`).
    pub cpus: usize,
    /// Memory per task in MiB (`--mem`): the largest run's estimate, with room for the data.
    pub mem_mib: u64,
}

/// CPUs an array task asks for: the 2-core machines the plans were measured on.
pub const TASK_CPUS: usize = 2;

/// Resident memory of a training process besides its network: the data in memory, burn and
/// the loaders (MiB).
const PROCESS_BASE_MIB: u64 = 768;

/// The resources of the plan's largest run: the cost model's training memory at the runs'
/// batch size (activations autograd keeps, weights, gradients and momentum), plus the
/// process's base, rounded up to 256 MiB.
pub fn task_resources(runs: &[PlannedRun], batch: usize) -> Result<TaskResources> {
    let mut largest = 0u64;
    for run in runs {
        let bytes = crate::experiments::bench::estimated_train_bytes(&run.spec()?, batch)?;
        largest = largest.max(bytes);
    }
    let mib = (largest >> 20) + PROCESS_BASE_MIB;
    Ok(TaskResources {
        cpus: TASK_CPUS,
        mem_mib: mib.div_ceil(256) * 256,
    })
}

/// A Slurm job array for a plan: its size, extra `sbatch` options and the command each task
/// runs.
#[derive(Debug, Clone)]
pub struct SlurmJob {
    /// The experiment's name (`table1`, ...).
    pub experiment: String,
    /// Array tasks: task `i` runs shard `i + 1` of `array_size`.
    pub array_size: usize,
    /// Extra `#SBATCH` options, one per line (`--partition=gpu`, `--time=2-00:00:00`).
    pub sbatch_args: Vec<String>,
    /// The `logdense` executable the tasks run (a path every node can reach).
    pub exe: PathBuf,
    /// The plan's options as `reproduce` arguments (without `--out` and `--shard`).
    pub plan_args: Vec<String>,
    /// The output directory, shared by every node.
    pub out: PathBuf,
    /// CPUs and memory per task.
    pub resources: TaskResources,
}

/// A word for a shell script: itself if it needs no quoting, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl SlurmJob {
    /// The directory of the scripts and task logs: `OUT/EXPERIMENT/slurm`.
    pub fn dir(&self) -> PathBuf {
        self.out.join(&self.experiment).join("slurm")
    }

    /// The array's script: task `i` runs `reproduce EXPERIMENT ... --shard slurm`.
    pub fn array_script(&self) -> String {
        let dir = self.dir();
        let mut s = String::from("#!/bin/bash\n");
        s += &format!("#SBATCH --job-name=logdense-{}\n", self.experiment);
        s += &format!("#SBATCH --array=0-{}\n", self.array_size - 1);
        s += &format!("#SBATCH --cpus-per-task={}\n", self.resources.cpus);
        s += &format!("#SBATCH --mem={}M\n", self.resources.mem_mib);
        s += &format!("#SBATCH --output={}\n", dir.join("task-%a.log").display());
        for arg in &self.sbatch_args {
            s += &format!("#SBATCH {arg}\n");
        }
        s += "# Task i trains shard i+1 of the plan; finished runs are skipped, interrupted ones\n";
        s += "# resumed, so resubmitting this array finishes the grid without repeating work.\n";
        s += "set -eu\n";
        let mut command = vec![
            shell_word(&self.exe.display().to_string()),
            "reproduce".into(),
            shell_word(&self.experiment),
        ];
        command.extend(self.plan_args.iter().map(|a| shell_word(a)));
        command.push("--out".into());
        command.push(shell_word(&self.out.display().to_string()));
        command.extend(["--shard".into(), "slurm".into()]);
        s += &format!("exec {}\n", command.join(" "));
        s
    }

    /// The report job's script: merges whatever finished into the tables and plots; submitted
    /// with `--dependency=afterany:ARRAY` so that it runs once every task has ended, however.
    pub fn report_script(&self) -> String {
        let dir = self.dir();
        let mut s = String::from("#!/bin/bash\n");
        s += &format!("#SBATCH --job-name=logdense-{}-report\n", self.experiment);
        s += "#SBATCH --cpus-per-task=1\n#SBATCH --mem=1024M\n";
        s += &format!("#SBATCH --output={}\n", dir.join("report.log").display());
        for arg in self
            .sbatch_args
            .iter()
            .filter(|a| !a.starts_with("--array"))
        {
            s += &format!("#SBATCH {arg}\n");
        }
        s += "set -eu\n";
        s += &format!(
            "exec {} reproduce report --out {}\n",
            shell_word(&self.exe.display().to_string()),
            shell_word(&self.out.display().to_string())
        );
        s
    }

    /// Writes both scripts (atomically) into [`SlurmJob::dir`]; returns their paths.
    pub fn write(&self) -> Result<(PathBuf, PathBuf)> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("--out: cannot create {}", dir.display()))?;
        let array = dir.join("array.sbatch");
        let report = dir.join("report.sbatch");
        crate::training::report::write_atomic(&array, self.array_script().as_bytes())?;
        crate::training::report::write_atomic(&report, self.report_script().as_bytes())?;
        Ok((array, report))
    }
}

/// Checks an array size against the plan: at least 1 and at most one task per run.
pub fn check_array_size(array_size: usize, runs: usize) -> Result<()> {
    if array_size == 0 {
        bail!("--array-size must be at least 1");
    }
    if array_size > runs {
        bail!(
            "--array-size {array_size}: the plan has {runs} runs, so {} tasks would have nothing \
             to do; use at most {runs}",
            array_size - runs
        );
    }
    Ok(())
}

/// Writes the whole plan to `OUT/EXPERIMENT/grid.json` (atomically; every shard writes the
/// same), so that [`status`] lists the runs not yet started.
pub fn write_grid(out: &Path, experiment: Experiment, runs: &[PlannedRun]) -> Result<()> {
    let dir = out.join(experiment.name());
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("--out: cannot create {}", dir.display()))?;
    crate::training::report::write_json_atomic(&dir.join(GRID_FILE), &runs)
}

/// Where a run of a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Its `summary.json` exists.
    Done,
    /// A process holds its `run.lock`: it is training now.
    Running,
    /// It has a checkpoint but no summary and nobody trains it: the next task resumes it.
    Interrupted,
    /// Nothing of it exists yet.
    Missing,
}

impl RunState {
    /// The state's name in `reproduce status`.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Done => "done",
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
            RunState::Missing => "missing",
        }
    }
}

/// The state of the run in `dir`.
pub fn run_state(dir: &Path) -> RunState {
    if dir.join(crate::training::engine::SUMMARY_FILE).exists() {
        RunState::Done
    } else if dir.join(LOCK_FILE).exists() && lock_is_held(dir) {
        RunState::Running
    } else if dir
        .join(crate::training::checkpoint::CHECKPOINT_FILE)
        .exists()
    {
        RunState::Interrupted
    } else {
        RunState::Missing
    }
}

/// One run in `reproduce status`.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    /// The experiment it belongs to.
    pub experiment: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Where it stands.
    pub state: RunState,
}

/// The state of every run of every experiment under `out` whose plan `grid.json` lists, in
/// plan order; run directories the plans do not list are added at the end of their
/// experiment.
pub fn status(out: &Path) -> Result<Vec<RunStatus>> {
    let mut rows = Vec::new();
    for experiment in Experiment::ALL {
        let root = out.join(experiment.name());
        if !root.is_dir() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = match std::fs::read(root.join(GRID_FILE)) {
            Ok(bytes) => serde_json::from_slice::<Vec<PlannedRun>>(&bytes)
                .with_context(|| format!("{}", root.join(GRID_FILE).display()))?
                .into_iter()
                .map(|r| r.dir)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
            .with_context(|| format!("cannot read {}", root.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(PLAN_FILE).exists())
            .filter(|p| !dirs.iter().any(|d| d == p))
            .collect();
        found.sort();
        dirs.extend(found);
        rows.extend(dirs.into_iter().map(|dir| RunStatus {
            experiment: experiment.name().into(),
            state: run_state(&dir),
            dir,
        }));
    }
    if rows.is_empty() {
        bail!("--out: {} holds no experiment", out.display());
    }
    Ok(rows)
}

/// The time a plan needs at measured speeds: the sum over its runs and the wall time on a
/// number of nodes that each train one run at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanTime {
    /// Seconds of each run, in plan order.
    pub run_s: Vec<f64>,
}

impl PlanTime {
    /// Node-hours: every run's time, summed.
    pub fn node_hours(&self) -> f64 {
        self.run_s.iter().sum::<f64>() / 3600.0
    }

    /// Hours until the last run ends on `nodes` nodes, runs assigned longest first to the
    /// node that frees first (as a scheduler with one array task per node does).
    pub fn wall_hours(&self, nodes: usize) -> f64 {
        let mut order = self.run_s.clone();
        order.sort_by(|a, b| b.total_cmp(a));
        let mut busy = vec![0.0f64; nodes.max(1)];
        for s in order {
            let first = busy
                .iter_mut()
                .min_by(|a, b| a.total_cmp(b))
                .expect("at least one node");
            *first += s;
        }
        busy.into_iter().fold(0.0, f64::max) / 3600.0
    }
}

/// The time of every run from measured speeds: `speed(run)` gives its training and inference
/// images per second; a run trains `images` per epoch over its epochs and final-head-only
/// epochs and evaluates `test_images` after each.
pub fn plan_time(
    runs: &[PlannedRun],
    mut speed: impl FnMut(&PlannedRun) -> Result<(f64, f64)>,
) -> Result<PlanTime> {
    let mut run_s = Vec::with_capacity(runs.len());
    for run in runs {
        let (train_ips, infer_ips) = speed(run)?;
        let passes = (run.epochs + run.final_only_epochs) as f64;
        run_s.push(
            passes
                * (run.images as f64 / train_ips.max(1e-9)
                    + run.test_images as f64 / infer_ips.max(1e-9)),
        );
    }
    Ok(PlanTime { run_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_variables_give_the_shard_and_bad_ones_are_named() {
        assert_eq!(
            slurm_shard(Some("0"), Some("0"), Some("4")).unwrap(),
            (1, 4)
        );
        assert_eq!(
            slurm_shard(Some("7"), Some("4"), Some("4")).unwrap(),
            (4, 4)
        );
        let e = slurm_shard(None, None, None).unwrap_err().to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("not a task"),
            "{e}"
        );
        let e = slurm_shard(Some("x"), Some("0"), Some("4"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'x'"), "{e}");
        assert!(slurm_shard(Some("4"), Some("0"), Some("4")).is_err());
    }

    #[test]
    fn array_sizes_are_checked_against_the_plan() {
        assert!(check_array_size(0, 4)
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        let e = check_array_size(8, 4).unwrap_err().to_string();
        assert!(e.contains("4 runs") && e.contains("at most 4"), "{e}");
        check_array_size(4, 4).unwrap();
    }

    #[test]
    fn scripts_run_the_shards_and_the_report_after_them() {
        let job = SlurmJob {
            experiment: "table1".into(),
            array_size: 3,
            sbatch_args: vec!["--partition=cpu".into(), "--time=1:00:00".into()],
            exe: "/opt/logdense bin/logdense".into(),
            plan_args: vec!["--quick".into(), "--seeds".into(), "3".into()],
            out: "/shared/runs".into(),
            resources: TaskResources {
                cpus: 2,
                mem_mib: 1024,
            },
        };
        let array = job.array_script();
        for line in [
            "#SBATCH --array=0-2",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=1024M",
            "#SBATCH --partition=cpu",
            "#SBATCH --output=/shared/runs/table1/slurm/task-%a.log",
            "exec '/opt/logdense bin/logdense' reproduce table1 --quick --seeds 3 --out \
             /shared/runs --shard slurm",
        ] {
            assert!(array.lines().any(|l| l == line), "{line}\n{array}");
        }
        let report = job.report_script();
        assert!(report
            .contains("exec '/opt/logdense bin/logdense' reproduce report --out /shared/runs"));
        assert!(!report.contains("--array"), "{report}");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn wall_time_assigns_the_longest_runs_first() {
        let t = PlanTime {
            run_s: vec![3600.0, 3600.0, 7200.0, 1800.0],
        };
        assert!((t.node_hours() - 4.5).abs() < 1e-12);
        assert!((t.wall_hours(1) - 4.5).abs() < 1e-12);
        assert!((t.wall_hours(2) - 2.5).abs() < 1e-12);
        assert!((t.wall_hours(64) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_run_without_files_is_missing_and_one_with_a_checkpoint_interrupted() {
        let dir = std::env::temp_dir().join(format!("logdense-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(run_state(&dir), RunState::Missing);
        std::fs::write(dir.join(crate::training::checkpoint::CHECKPOINT_FILE), b"x").unwrap();
        assert_eq!(run_state(&dir), RunState::Interrupted);
        // A held lock: running.
        let lock = crate::training::engine::open_run_dir(&dir, true, false).unwrap();
        assert_eq!(run_state(&dir), RunState::Running);
        drop(lock);
        assert_eq!(run_state(&dir), RunState::Interrupted);
        std::fs::write(dir.join(crate::training::engine::SUMMARY_FILE), b"{}").unwrap();
        assert_eq!(run_state(&dir), RunState::Done);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
