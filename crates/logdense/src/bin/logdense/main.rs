//! The `logdense` command-line tool.

use anyhow::Result;
use clap::{Parser, Subcommand};
use logdense::graph::Pattern;
use std::process::ExitCode;

mod analysis;
mod bench;
mod classify;
mod interop;
mod reproduce;
mod run_flags;
mod segment;

use analysis::{CostArgs, DatasetsArgs, DesignArgs, GraphArgs, PresetsArgs};
use bench::{BenchArgs, CheckDeviceArgs};
use classify::{EvalArgs, PredictArgs, TrainArgs};
use interop::{ExportArgs, ImportArgs};
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
    /// Process tuning: run the command on the calling thread instead of a thread of the
    /// compute pool (rayon's, which burn, gemm and the fused kernels share). For comparisons.
    #[arg(long, global = true)]
    no_compute_pool: bool,
    /// Process tuning: leave glibc malloc's defaults instead of keeping freed memory in the
    /// heap (see `keep_freed_memory`). For comparisons.
    #[arg(long, global = true)]
    malloc_defaults: bool,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Connection graph of a pattern: MBD, connections, inputs per layer; Fig. 1's matrix as PNG.
    Graph(GraphArgs),
    /// Analytic cost of a network: FLOPs, parameters, activation memory, per block.
    Cost(CostArgs),
    /// The model registry: every preset with its task, size and a one-line summary.
    Presets(PresetsArgs),
    /// The data-set registry: every data set, its task, shape, classes and where its files
    /// come from.
    Datasets(DatasetsArgs),
    /// Search for input sets with at most K inputs per layer that minimise the MBD.
    Design(DesignArgs),
    /// Train a network (default: a small Log-DenseNet on Fashion-MNIST, on CPU); a
    /// segmentation config or preset trains a segmentation network.
    Train(TrainArgs),
    /// Evaluate a trained run on its test set.
    Eval(EvalArgs),
    /// Top-5 predictions of a trained run for an image file.
    Predict(PredictArgs),
    /// Export a run or a preset: ONNX (for ONNX Runtime, TensorRT), safetensors with PyTorch's
    /// names, and a sample input with our logits to check them against.
    Export(ExportArgs),
    /// Import a safetensors or PyTorch state dict (ours, or torchvision's DenseNet) into a new
    /// run directory that eval, predict and train --resume read.
    Import(ImportArgs),
    /// Benchmark training and inference steps: median times, images/s, GFLOP/s, peak memory.
    Bench(BenchArgs),
    /// Check a device against the CPU: the same networks, weights and batch, one training
    /// step, compared head by head and in the input gradient.
    CheckDevice(CheckDeviceArgs),
    /// The paper's experiments: table1, table2, fig8 as grids of training runs (shardable,
    /// resumable), costs, and report (merge finished runs into the tables).
    Reproduce(reproduce::ReproduceArgs),
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

/// `--device NAME`: the device, or a usage error (exit code 2) saying what is missing. burn
/// panics in its device thread when no adapter is found; the panic message is kept off the
/// terminal while the device is probed, so that the error line stands alone. On a GPU device
/// the kernel compilations are counted (`bench` reports them).
pub(crate) fn open_device(name: &str) -> anyhow::Result<burn::prelude::Device> {
    if name != "cpu" && name != "flex" {
        logdense::device::count_kernel_compilations();
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let device = logdense::device::device_from_name(name);
    std::panic::set_hook(hook);
    device.map_err(|e| usage(e.to_string()))
}

/// The training commands' `--preset` help: the defaults and the registry's names.
pub(crate) fn preset_help() -> String {
    format!(
        "Network preset (default: {} for train, {} for segment train); a segmentation preset \
         makes a segmentation run: {}",
        logdense::model::presets::DEFAULT_PRESET,
        logdense::model::presets::DEFAULT_SEG_PRESET,
        logdense::model::presets::names(None)
    )
}

/// The `--dataset` help: the registry's names.
pub(crate) fn dataset_help() -> String {
    format!(
        "Data set (`data.dataset`; `logdense datasets` lists them): {}",
        logdense::datasets::names(None)
    )
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
/// next step. This keeps the freed top, grows the heap 256 MiB at a time, and serves buffers up
/// to 32 MiB from the heap (setting the first two stops glibc from raising that threshold
/// itself): faster steps for a little more peak memory (docs/2026-11-performance-history.md,
/// "The malloc setting", has the figures).
/// `--malloc-defaults` leaves malloc's defaults, for comparisons.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// The error and its causes on one line, each cause once: a library error that already quotes
/// its cause (a decoder's message, say) does not repeat it.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    if !cli.malloc_defaults {
        keep_freed_memory();
    }
    let command = cli.command;
    let run = move || match command {
        Command::Graph(a) => analysis::graph_cmd(a),
        Command::Cost(a) => analysis::cost_cmd(a),
        Command::Design(a) => analysis::design_cmd(a),
        Command::Presets(a) => analysis::presets_cmd(a),
        Command::Datasets(a) => analysis::datasets_cmd(a),
        Command::Train(a) => classify::train_cmd(a),
        Command::Eval(a) => classify::eval_cmd(a),
        Command::Predict(a) => classify::predict_cmd(a),
        Command::Export(a) => interop::export_cmd(a),
        Command::Import(a) => interop::import_cmd(a),
        Command::Bench(a) => bench::bench_cmd(a),
        Command::CheckDevice(a) => bench::check_device_cmd(a),
        Command::Reproduce(a) => reproduce::reproduce_cmd(a),
        Command::Segment(SegmentCommand::Train(a)) => segment::seg_train_cmd(a),
        Command::Segment(SegmentCommand::Eval(a)) => segment::seg_eval_cmd(a),
        Command::Segment(SegmentCommand::Predict(a)) => segment::seg_predict_cmd(a),
        Command::Data(DataCommand::FashionScenes(a)) => segment::scenes_cmd(a),
    };
    let result = if cli.no_compute_pool {
        run()
    } else {
        logdense::on_compute_pool(run)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            let is_usage =
                e.downcast_ref::<UsageError>().is_some() || logdense::error::is_invalid_input(&e);
            ExitCode::from(if is_usage { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::error_line;
    use anyhow::Context;

    #[test]
    fn an_error_line_names_each_cause_once() {
        #[derive(Debug)]
        struct Inner;
        impl std::fmt::Display for Inner {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Invalid PNG signature.")
            }
        }
        impl std::error::Error for Inner {}
        // A message that quotes its cause, wrapped in context: the cause appears once.
        let quoted: anyhow::Result<()> = Err(anyhow::Error::new(Inner))
            .context("x.png: cannot decode image: Invalid PNG signature.");
        let e = quoted.context("data.dir /d").unwrap_err();
        assert_eq!(
            error_line(&e),
            "data.dir /d: x.png: cannot decode image: Invalid PNG signature."
        );
        let plain: anyhow::Result<()> = Err(anyhow::Error::new(Inner)).context("reading x.png");
        assert_eq!(
            error_line(&plain.unwrap_err()),
            "reading x.png: Invalid PNG signature."
        );
    }
}
