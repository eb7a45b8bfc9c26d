//! The `logdense` command-line tool.

use anyhow::Result;
use clap::{Parser, Subcommand};
use logdense::graph::Pattern;
use std::process::ExitCode;

mod analysis;
mod bench;
mod classify;
mod run_flags;
mod segment;

use analysis::{CostArgs, DesignArgs, GraphArgs};
use bench::{BenchArgs, CheckDeviceArgs};
use classify::{EvalArgs, PredictArgs, TrainArgs};
use segment::{DataCommand, SegmentCommand};

#[derive(Parser)]
#[command(
    name = "logdense",
    version,
    about = "Log-DenseNet and sparse-skip DenseNets: analysis, training and evaluation"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Connection graph of a pattern: MBD, connections, inputs per layer; Fig. 1's matrix as PNG.
    Graph(GraphArgs),
    /// Analytic cost of a network: FLOPs, parameters, activation memory, per block.
    Cost(CostArgs),
    /// Search for input sets with at most K inputs per layer that minimise the MBD.
    Design(DesignArgs),
    /// Train a classifier (default: a small Log-DenseNet on Fashion-MNIST, on CPU).
    Train(TrainArgs),
    /// Evaluate a trained run on its test set.
    Eval(EvalArgs),
    /// Top-5 predictions of a trained run for an image file.
    Predict(PredictArgs),
    /// Benchmark training and inference steps: median times, images/s, GFLOP/s, peak memory.
    Bench(BenchArgs),
    /// Check a device against the CPU: the same networks, weights and batch, one training
    /// step, compared head by head and in the input gradient.
    CheckDevice(CheckDeviceArgs),
    /// Semantic segmentation (FC-Log-DenseNet, FC-DenseNet): train, eval, predict.
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Data sets: generate fashion-scenes (real Fashion-MNIST garments on textured canvases).
    #[command(subcommand)]
    Data(DataCommand),
}

/// Errors from bad options exit with code 2, like clap's own.
pub(crate) struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::fmt::Debug for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

pub(crate) fn parse_pattern(s: &str) -> Result<Pattern> {
    s.parse::<Pattern>()
        .map_err(|e| usage(format!("--pattern: {e}")))
}

/// Restores the default SIGPIPE action, so that `logdense ... | head` ends quietly as other
/// Unix tools do instead of panicking on a closed stdout (Rust ignores SIGPIPE by default).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Training frees and allocates the same large tensor buffers every step. By default glibc's
/// malloc trims the freed top of its heap back to the kernel and page-faults it in again on the
/// next step. Keeping the freed top, growing the heap 256 MiB at a time, and serving buffers
/// up to 32 MiB from the heap (setting the first two stops glibc from raising that threshold
/// itself) measured 38.7 -> 49.8 images/s on fashion-scenes segmentation training (peak
/// memory 282 -> 319 MB) and 555 -> 531 ms per ld-v1-12-16 training step at batch 64.
/// `LOGDENSE_KEEP_FREED_MEMORY=0` leaves malloc's defaults, for comparisons.
fn keep_freed_memory() {
    if std::env::var_os("LOGDENSE_KEEP_FREED_MEMORY").is_some_and(|v| v == "0") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    keep_freed_memory();
    let cli = Cli::parse();
    let result = logdense::on_compute_pool(move || match cli.command {
        Command::Graph(a) => analysis::graph_cmd(a),
        Command::Cost(a) => analysis::cost_cmd(a),
        Command::Design(a) => analysis::design_cmd(a),
        Command::Train(a) => classify::train_cmd(a),
        Command::Eval(a) => classify::eval_cmd(a),
        Command::Predict(a) => classify::predict_cmd(a),
        Command::Bench(a) => bench::bench_cmd(a),
        Command::CheckDevice(a) => bench::check_device_cmd(a),
        Command::Segment(SegmentCommand::Train(a)) => segment::seg_train_cmd(a),
        Command::Segment(SegmentCommand::Eval(a)) => segment::seg_eval_cmd(a),
        Command::Segment(SegmentCommand::Predict(a)) => segment::seg_predict_cmd(a),
        Command::Data(DataCommand::FashionScenes(a)) => segment::scenes_cmd(a),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let is_usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<logdense::graph::SpecError>().is_some();
            ExitCode::from(if is_usage { 2 } else { 1 })
        }
    }
}
