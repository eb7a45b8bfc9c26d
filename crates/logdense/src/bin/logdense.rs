//! The `logdense` command-line tool.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use logdense::config::TrainConfig;
use logdense::graph::{
    design, distance, paper, Arch, NetGraph, NetSpec, Pattern, Stem, TransitionHops,
};
use logdense::train::{self, Run, Trained};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "logdense",
    version,
    about = "Log-DenseNet and sparse-skip DenseNets: analysis, training and evaluation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Semantic segmentation (FC-Log-DenseNet, FC-DenseNet): train, eval, predict.
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Data sets: generate fashion-scenes (real Fashion-MNIST garments on textured canvases).
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Args)]
struct BenchArgs {
    /// Presets to time (repeatable; default: ld-v1-12-16, ld-v1-32-24, densenet-bc-100-12, fc-ld-103).
    #[arg(long)]
    preset: Vec<String>,
    /// Batch size (default: 64 for classification, 1 for the 224x224 FC networks).
    #[arg(long)]
    batch: Option<usize>,
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

#[derive(Subcommand)]
enum DataCommand {
    /// Compose Fashion-MNIST garments into segmentation scenes, written in the SegNet/CamVid layout.
    FashionScenes(ScenesArgs),
}

#[derive(Args)]
struct ScenesArgs {
    #[arg(long)]
    out: PathBuf,
    /// Canvas side in pixels.
    #[arg(long, default_value_t = 96)]
    size: usize,
    /// Training scenes.
    #[arg(long, default_value_t = 2000)]
    train: usize,
    /// Test scenes (and as many validation scenes).
    #[arg(long, default_value_t = 500)]
    test: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fashion-MNIST directory.
    #[arg(long, default_value = logdense::data::FASHION_MNIST_DIR)]
    fashion: PathBuf,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum SegmentCommand {
    /// Train a segmentation network (default: fc-ld-small on data/fashion-scenes).
    Train(SegTrainArgs),
    /// Per-class IoU, mean IoU and global accuracy of a run on its evaluation split.
    Eval(SegEvalArgs),
    /// Write Fig. 2's picture: input, ground truth, every head's prediction, side by side.
    Predict(SegPredictArgs),
}

#[derive(Args)]
struct SegTrainArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// fc-ld-small, fc-ld-103, fc-densenet-56, fc-densenet-67, fc-densenet-103.
    #[arg(long)]
    preset: Option<String>,
    /// Data directory in the SegNet layout.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Epochs on random crops.
    #[arg(long)]
    epochs: Option<usize>,
    /// Epochs on full images after that.
    #[arg(long)]
    finetune_epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// Random crop side for the first stage.
    #[arg(long)]
    crop: Option<usize>,
    /// computed (median frequency), classic (SegNet's CamVid values) or none.
    #[arg(long)]
    class_weights: Option<String>,
    #[arg(long)]
    train_subset: Option<usize>,
    #[arg(long)]
    eval_subset: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    workers: Option<usize>,
    /// Wall-clock training budget in minutes (no epoch starts that would end past it).
    #[arg(long)]
    max_minutes: Option<f64>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, conflicts_with_all = ["config", "preset", "out"])]
    resume: Option<PathBuf>,
}

#[derive(Args)]
struct SegEvalArgs {
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    data: Option<PathBuf>,
    /// val or test (default: the run's evaluation split).
    #[arg(long)]
    split: Option<String>,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct SegPredictArgs {
    #[arg(long)]
    run: PathBuf,
    /// An RGB image; if it lies in a SegNet-layout folder (e.g. test/0001.png), its label
    /// (testannot/0001.png) is shown as ground truth.
    image: PathBuf,
    /// A label PNG to show as ground truth.
    #[arg(long)]
    label: Option<PathBuf>,
    #[arg(long, default_value = "prediction.png")]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct GraphArgs {
    /// Connection pattern: dense, log, nearest, evenly-spaced, nearest-half, evenly-spaced-half, nearest-half-and-log, loglog, loglog-plain.
    #[arg(long, default_value = "log")]
    pattern: String,
    /// Number of feature layers L.
    #[arg(long, default_value_t = 24)]
    layers: usize,
    /// Blocks (V1 transitions between them; L must divide evenly).
    #[arg(long, default_value_t = 1)]
    blocks: usize,
    /// Count transitions as free instead of one hop each (Prop. 3.1 counts them).
    #[arg(long)]
    free_transitions: bool,
    #[arg(long)]
    json: bool,
    /// Draw the connection matrix (row: layer, column: input) to this PNG file.
    #[arg(long)]
    png: Option<PathBuf>,
}

#[derive(Args)]
struct CostArgs {
    /// ld-v1, ld-v2, densenet-bc, loglog, fc-ld-103, fc-densenet-56, fc-densenet-67, fc-densenet-103.
    #[arg(long, default_value = "ld-v1")]
    net: String,
    /// A named preset instead of --net and its shape options (e.g. fashion, ld-v1-12-16, fc-ld-103).
    #[arg(long)]
    preset: Option<String>,
    /// Connection pattern of ld-v1 networks.
    #[arg(long, default_value = "log")]
    pattern: String,
    /// Layers per block.
    #[arg(long, default_value_t = 12)]
    n: usize,
    /// Growth rate.
    #[arg(long, default_value_t = 16)]
    g: usize,
    #[arg(long, default_value_t = 3)]
    blocks: usize,
    /// Input height = width (default: 32 for classification, 224 for FC networks).
    #[arg(long)]
    input: Option<usize>,
    #[arg(long)]
    bottleneck: bool,
    #[arg(long)]
    classes: Option<usize>,
    /// Initial convolution width (default 2g; FC-Log-DenseNet: 72, FC-DenseNet: 48).
    #[arg(long)]
    stem_width: Option<usize>,
    /// LOGLOG hub-layer growth multiplier.
    #[arg(long, default_value_t = 1)]
    hub_multiplier: usize,
    #[arg(long)]
    json: bool,
    /// Print the paper's cost columns (Tables 1-3, Fig. 5b) beside ours.
    #[arg(long)]
    paper: bool,
}

#[derive(Args)]
struct DesignArgs {
    #[arg(long)]
    layers: usize,
    #[arg(long)]
    max_inputs: usize,
    /// Run the exact search up to this many layers.
    #[arg(long, default_value_t = 12)]
    exact_up_to: usize,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    png: Option<PathBuf>,
}

#[derive(Args)]
struct TrainArgs {
    /// TOML configuration (see README); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Network preset (default: fashion).
    #[arg(long)]
    preset: Option<String>,
    /// Data directory (default: /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    data: Option<PathBuf>,
    /// fashion-mnist, mnist, cifar10, cifar100, svhn, folder.
    #[arg(long)]
    dataset: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    dropout: Option<f64>,
    /// Train on a seeded subset of this many training images.
    #[arg(long)]
    train_subset: Option<usize>,
    #[arg(long)]
    test_subset: Option<usize>,
    /// Loader worker threads.
    #[arg(long)]
    workers: Option<usize>,
    /// cpu (burn flex) or vulkan (with the vulkan feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run directory (default: runs/<preset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["config", "preset", "out"])]
    resume: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct PredictArgs {
    #[arg(long)]
    run: PathBuf,
    image: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Errors from bad options exit with code 2, like clap's own.
struct UsageError(String);

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

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

fn parse_pattern(s: &str) -> Result<Pattern> {
    s.parse::<Pattern>()
        .map_err(|e| usage(format!("--pattern: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Graph(a) => graph_cmd(a),
        Command::Cost(a) => cost_cmd(a),
        Command::Design(a) => design_cmd(a),
        Command::Train(a) => train_cmd(a),
        Command::Eval(a) => eval_cmd(a),
        Command::Predict(a) => predict_cmd(a),
        Command::Bench(a) => bench_cmd(a),
        Command::Segment(SegmentCommand::Train(a)) => seg_train_cmd(a),
        Command::Segment(SegmentCommand::Eval(a)) => seg_eval_cmd(a),
        Command::Segment(SegmentCommand::Predict(a)) => seg_predict_cmd(a),
        Command::Data(DataCommand::FashionScenes(a)) => scenes_cmd(a),
    };
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

/// Fig. 1: one row per layer, a black cell for each input (cells of `cell` pixels).
fn draw_matrix(sets: &[Vec<usize>], path: &std::path::Path) -> Result<()> {
    let n = sets.len();
    let cell = (600 / n.max(1)).clamp(1, 16) as u32;
    let size = n as u32 * cell;
    let mut img = image::GrayImage::from_pixel(size, size, image::Luma([255u8]));
    for (i, set) in sets.iter().enumerate() {
        for &j in set {
            for dy in 0..cell {
                for dx in 0..cell {
                    img.put_pixel(j as u32 * cell + dx, i as u32 * cell + dy, image::Luma([0]));
                }
            }
        }
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn graph_cmd(a: GraphArgs) -> Result<()> {
    let pattern = parse_pattern(&a.pattern)?;
    if a.layers == 0 {
        return Err(usage("--layers must be at least 1"));
    }
    if a.blocks == 0 || !a.layers.is_multiple_of(a.blocks) {
        return Err(usage(format!(
            "--blocks: {} blocks must divide --layers {} evenly",
            a.blocks, a.layers
        )));
    }
    distance::check_pattern_size(pattern, a.layers)?;
    // Bare topology: tiny channel counts and a large enough input for any number of blocks.
    let side = 1usize << a.blocks.min(30);
    let spec = NetSpec {
        input: [1, side, side],
        deep_supervision: false,
        ..NetSpec::v1(pattern, a.layers / a.blocks, 1, a.blocks)
    };
    let sets = if a.blocks == 1 {
        pattern.input_sets(a.layers)
    } else {
        spec.build()?.layer_input_sets()
    };
    let summary = if a.blocks == 1 {
        distance::summarize_sets(&sets)?
    } else {
        let g = spec.build()?;
        let hops = if a.free_transitions {
            TransitionHops::Free
        } else {
            TransitionHops::Counted
        };
        distance::GraphDistances::new(&g, hops).summary()?
    };
    let connections = logdense::graph::pattern::connection_count(&sets);
    let mean_inputs = logdense::graph::pattern::mean_inputs(&sets);
    let max_inputs = sets.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(p) = &a.png {
        draw_matrix(&sets, p)?;
    }
    if a.json {
        let v = serde_json::json!({
            "pattern": pattern.to_string(), "layers": a.layers, "blocks": a.blocks,
            "mbd": summary.mbd, "mean_distance": summary.mean(), "unreachable_pairs": summary.unreachable_pairs,
            "connections": connections, "mean_inputs": mean_inputs, "max_inputs": max_inputs,
            "hub_layers": pattern.hub_layers(a.layers),
        });
        println!("{v}");
    } else {
        println!("pattern {pattern}, L = {}, {} block(s)", a.layers, a.blocks);
        println!("  MBD                {}", summary.mbd);
        println!("  mean distance      {:.3}", summary.mean());
        println!("  connections        {connections}");
        println!("  inputs per layer   mean {mean_inputs:.3}, max {max_inputs}");
        if summary.unreachable_pairs > 0 {
            println!("  unreachable pairs  {}", summary.unreachable_pairs);
        }
        if let Some(p) = &a.png {
            println!("  matrix written to  {}", p.display());
        }
    }
    Ok(())
}

fn cost_spec(a: &CostArgs) -> Result<NetSpec> {
    let mut spec = match (&a.preset, a.net.as_str()) {
        (Some(p), _) => logdense::presets::preset(p).map_err(|e| usage(format!("--preset: {e}")))?,
        (None, "ld-v1") => NetSpec::v1(parse_pattern(&a.pattern)?, a.n, a.g, a.blocks),
        (None, "ld-v2") => NetSpec::v2(a.n, a.g, a.blocks),
        (None, "densenet-bc") => NetSpec::densenet_bc(a.n, a.g, a.blocks),
        (None, "loglog") => NetSpec { hub_multiplier: a.hub_multiplier, ..NetSpec::v1(Pattern::LogLog { min_inputs: 4 }, a.n, a.g, a.blocks) },
        (None, "fc-ld-103") => NetSpec { growth: a.g, ..NetSpec::fc_log_densenet_103(a.stem_width.unwrap_or(72)) },
        (None, "fc-densenet-56" | "fc-densenet-67" | "fc-densenet-103") => NetSpec::tiramisu(a.net[12..].parse().expect("matched names")).expect("known depth"),
        (None, other) => return Err(usage(format!("--net: unknown network '{other}' (ld-v1, ld-v2, densenet-bc, loglog, fc-ld-103, fc-densenet-56, fc-densenet-67, fc-densenet-103)"))),
    };
    if a.bottleneck {
        spec.bottleneck = true;
    }
    if let Some(s) = a.input {
        spec.input = [spec.input[0], s, s];
    }
    if let Some(c) = a.classes {
        spec.classes = c;
    }
    if let (Some(w), false) = (a.stem_width, matches!(spec.arch, Arch::FcLog)) {
        spec.stem = Stem {
            width: w,
            ..spec.stem
        };
    }
    Ok(spec)
}

fn cost_json(g: &NetGraph) -> Result<serde_json::Value> {
    let c = g.cost();
    let mbd = distance::GraphDistances::new(g, TransitionHops::Counted)
        .summary()?
        .mbd;
    Ok(serde_json::json!({
        "net": g.spec, "gflops": c.total.gflops(), "flops": c.total.flops, "params": c.total.params,
        "weight_params": c.total.weight_params, "activation_bytes": c.total.activation_bytes,
        "activation_bytes_shared": c.total.activation_bytes_shared, "connections": g.connections(), "mbd": mbd,
        "per_block": c.per_block.iter().enumerate().map(|(b, x)| serde_json::json!({
            "block": b, "gflops": x.gflops(), "params": x.params, "activation_bytes": x.activation_bytes,
            "activation_bytes_shared": x.activation_bytes_shared })).collect::<Vec<_>>(),
    }))
}

fn cost_cmd(a: CostArgs) -> Result<()> {
    if a.paper {
        return paper_table();
    }
    let spec = cost_spec(&a)?;
    let g = spec.build()?;
    let v = cost_json(&g)?;
    if a.json {
        println!("{v}");
        return Ok(());
    }
    let c = g.cost();
    println!(
        "{} ({} layers, g = {}, input {}x{})",
        a.preset.as_deref().unwrap_or(&a.net),
        g.num_layers(),
        spec.growth,
        spec.input[1],
        spec.input[2]
    );
    println!("  GFLOPs             {:.4}", c.total.gflops());
    println!(
        "  parameters         {} ({:.3} M; conv/linear weights only {:.3} M)",
        c.total.params,
        c.total.params as f64 / 1e6,
        c.total.weight_params as f64 / 1e6
    );
    println!(
        "  activations        {:.2} MiB naive, {:.2} MiB shared (batch 1, f32)",
        mib(c.total.activation_bytes),
        mib(c.total.activation_bytes_shared)
    );
    println!("  connections        {}", g.connections());
    println!("  MBD                {}", v["mbd"]);
    println!("  per block          GFLOPs     params  naive MiB");
    for (b, x) in c.per_block.iter().enumerate() {
        println!(
            "    {b:>2}             {:>8.4} {:>10} {:>10.2}",
            x.gflops(),
            x.params,
            mib(x.activation_bytes)
        );
    }
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn gf(spec: NetSpec) -> Result<f64> {
    Ok(spec.build()?.cost().total.gflops())
}

/// The paper's cost columns beside ours.
fn paper_table() -> Result<()> {
    println!("Table 1 (V1 LD = N = E budget; LD2 = V2), GFLOPS at 32x32, 3 blocks, no bottleneck");
    println!("  (n,g)     LD paper   ours     LD2 paper  ours");
    for ((n, g), ld, ld2) in paper::TABLE1 {
        println!(
            "  ({n:>2},{g:>2})   {ld:>6.2}   {:>8.4}   {ld2:>6.2}   {:>8.4}",
            gf(NetSpec::v1(Pattern::Log, n, g, 3))?,
            gf(NetSpec::v2(n, g, 3))?
        );
    }
    println!("\nTable 2 (half budgets), GFLOPS: N = nearest-half, E = evenly-spaced-half, N+LD, D = dense V1");
    println!("  (n,g)     N,E paper  N      E      N+LD paper ours   D paper  ours");
    for ((n, g), ne, nld, d) in paper::TABLE2 {
        println!(
            "  ({n:>2},{g:>2})   {ne:>6.2}   {:>6.3} {:>6.3}  {nld:>6.2}   {:>6.3}  {d:>6.2}  {:>6.3}",
            gf(NetSpec::v1(Pattern::NearestHalf, n, g, 3))?,
            gf(NetSpec::v1(Pattern::EvenlySpacedHalf, n, g, 3))?,
            gf(NetSpec::v1(Pattern::NearestHalfAndLog, n, g, 3))?,
            gf(NetSpec::v1(Pattern::Dense, n, g, 3))?
        );
    }
    println!("\nTable 3 (224x224, 11 classes)");
    println!("  network            params paper   ours (M)   GFLOPS paper  ours");
    let fc = [
        ("fc-densenet-67", NetSpec::tiramisu(67).expect("67")),
        ("fc-densenet-103", NetSpec::tiramisu(103).expect("103")),
        ("fc-ld-103", NetSpec::fc_log_densenet_103(72)),
    ];
    for ((name, params, gflops), (_, spec)) in paper::TABLE3.iter().zip(fc) {
        let c = spec.build()?.cost();
        let paper_gf = gflops
            .map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {name:<18} {params:>8.1}      {:>8.3}   {paper_gf:>8}     {:>6.2}",
            c.total.params as f64 / 1e6,
            c.total.gflops()
        );
    }
    let c48 = NetSpec::fc_log_densenet_103(48).build()?.cost();
    println!(
        "  fc-ld-103 (stem 48)               {:>8.3}                 {:>6.2}",
        c48.total.params as f64 / 1e6,
        c48.total.gflops()
    );
    println!(
        "\nFig. 5b (GFLOPS per block at 224x224; the paper: {})",
        paper::FIG5B_CLAIM
    );
    for (name, spec) in [
        ("fc-densenet-67", NetSpec::tiramisu(67).expect("67")),
        ("fc-densenet-103", NetSpec::tiramisu(103).expect("103")),
        ("fc-ld-103", NetSpec::fc_log_densenet_103(72)),
    ] {
        let c = spec.build()?.cost();
        let blocks: Vec<String> = c
            .per_block
            .iter()
            .map(|b| format!("{:.2}", b.gflops()))
            .collect();
        let k = c.per_block.len();
        let last_two =
            (c.per_block[k - 1].flops + c.per_block[k - 2].flops) as f64 / c.total.flops as f64;
        println!(
            "  {name:<16} [{}]  last two blocks {:.0}%",
            blocks.join(", "),
            100.0 * last_two
        );
    }
    Ok(())
}

fn design_cmd(a: DesignArgs) -> Result<()> {
    let d = design::design(a.layers, a.max_inputs, a.exact_up_to)?;
    let log_sets = Pattern::Log.input_sets(a.layers);
    let log_mbd = distance::summarize_sets(&log_sets)?.mbd;
    let log_conn = logdense::graph::pattern::connection_count(&log_sets);
    let log_max = log_sets.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(p) = &a.png {
        draw_matrix(&d.sets, p)?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"design": d, "log": {"mbd": log_mbd, "connections": log_conn, "max_inputs": log_max}})
        );
        return Ok(());
    }
    println!(
        "L = {}, at most {} inputs per layer",
        a.layers, a.max_inputs
    );
    println!(
        "  best found         MBD {} with {} connections ({}; {})",
        d.mbd,
        d.connections,
        d.method,
        if d.proven_optimal {
            "proven optimal"
        } else {
            "not proven optimal"
        }
    );
    println!("  lower bound        MBD >= {}", d.lower_bound);
    println!("  LOG (up to {log_max} inputs)  MBD {log_mbd} with {log_conn} connections");
    for (i, s) in d.sets.iter().enumerate().skip(1).take(40) {
        println!("    x{i:<4} <- {s:?}");
    }
    if d.sets.len() > 41 {
        println!(
            "    ... ({} more layers; --json prints all)",
            d.sets.len() - 41
        );
    }
    Ok(())
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let device = train::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    if let Some(dir) = a.resume {
        let cfg = TrainConfig::load(&dir.join(train::CONFIG_FILE))
            .with_context(|| format!("--resume: {} is not a run directory", dir.display()))?;
        let cfg = apply_overrides(
            cfg,
            &a.data,
            &a.dataset,
            a.epochs,
            a.batch_size,
            a.lr,
            a.seed,
            a.dropout,
            a.train_subset,
            a.test_subset,
            a.workers,
        )?;
        return finish_training(
            Run {
                dir,
                cfg,
                device,
                progress: true,
                stop_after: None,
            },
            true,
        );
    }
    let mut cfg = match &a.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    if let Some(p) = &a.preset {
        cfg.model.preset = p.clone();
    }
    let cfg = apply_overrides(
        cfg,
        &a.data,
        &a.dataset,
        a.epochs,
        a.batch_size,
        a.lr,
        a.seed,
        a.dropout,
        a.train_subset,
        a.test_subset,
        a.workers,
    )?;
    let dir = a
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(&cfg.model.preset));
    finish_training(
        Run {
            dir,
            cfg,
            device,
            progress: true,
            stop_after: None,
        },
        false,
    )
}

#[allow(clippy::too_many_arguments)]
fn apply_overrides(
    mut cfg: TrainConfig,
    data: &Option<PathBuf>,
    dataset: &Option<String>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    seed: Option<u64>,
    dropout: Option<f64>,
    train_subset: Option<usize>,
    test_subset: Option<usize>,
    workers: Option<usize>,
) -> Result<TrainConfig> {
    if let Some(d) = data {
        cfg.data.dir = Some(d.clone());
    }
    if let Some(d) = dataset {
        cfg.data.dataset = d.clone();
    }
    cfg.optim.epochs = epochs.unwrap_or(cfg.optim.epochs);
    cfg.optim.batch_size = batch_size.unwrap_or(cfg.optim.batch_size);
    cfg.optim.lr = lr.unwrap_or(cfg.optim.lr);
    cfg.seed = seed.unwrap_or(cfg.seed);
    cfg.model.dropout = dropout.unwrap_or(cfg.model.dropout);
    cfg.data.train_subset = train_subset.or(cfg.data.train_subset);
    cfg.data.test_subset = test_subset.or(cfg.data.test_subset);
    cfg.data.workers = workers.unwrap_or(cfg.data.workers);
    cfg.validate().map_err(|e| usage(format!("{e:#}")))?;
    Ok(cfg)
}

fn finish_training(run: Run, resume: bool) -> Result<()> {
    eprintln!("run directory: {}", run.dir.display());
    let (_, s) = run.train(resume)?;
    println!(
        "final: test_accuracy={:.4} test_error={:.2}% epochs={} wall_s={:.0}",
        s.test_accuracy,
        100.0 * (1.0 - s.test_accuracy),
        s.epochs,
        s.wall_s
    );
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let device = train::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let mut t = Trained::load(&a.run, &device)?;
    if let Some(d) = a.data {
        t.cfg.data.dir = Some(d);
    }
    let data = train::load_data(&t.cfg)?;
    let n = data.test.len();
    let batcher = logdense::data::ClassBatcher::eval(
        t.state.mean.clone(),
        t.state.std.clone(),
        t.cfg.data.augment.clone(),
    );
    let loader =
        logdense::data::loader_on(data.test, batcher, 256, None, t.cfg.data.workers, &device);
    let (loss, acc) = train::evaluate(&t.model, loader)?;
    println!(
        "eval: images={n} test_loss={loss:.4} test_accuracy={acc:.4} test_error={:.2}%",
        100.0 * (1.0 - acc)
    );
    Ok(())
}

fn predict_cmd(a: PredictArgs) -> Result<()> {
    use burn::prelude::*;
    let device = train::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let t = Trained::load(&a.run, &device)?;
    let [c, h, w] = t.state.spec.input;
    let img = image::open(&a.image)
        .with_context(|| format!("cannot read image {}", a.image.display()))?;
    let img = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    let pixels: Vec<u8> = if c == 1 {
        img.to_luma8().into_raw()
    } else {
        img.to_rgb8().into_raw()
    };
    let mut data = vec![0f32; c * h * w];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let v = pixels[(y * w + x) * c + ch] as f32 / 255.0;
                data[ch * h * w + y * w + x] = (v - t.state.mean[ch]) / t.state.std[ch];
            }
        }
    }
    let input = Tensor::<4>::from_data(TensorData::new(data, [1, c, h, w]), &device);
    let logits = t.model.forward(input);
    let classes = logits.dims()[1];
    let probs: Vec<f32> = burn::tensor::activation::softmax(logits.reshape([1, classes]), 1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by(|&x, &y| probs[y].total_cmp(&probs[x]));
    println!("{}:", a.image.display());
    for &k in order.iter().take(5) {
        println!(
            "  {:>6.2}%  {}",
            100.0 * probs[k],
            t.state
                .class_names
                .get(k)
                .map(String::as_str)
                .unwrap_or("?")
        );
    }
    Ok(())
}

fn scenes_cmd(a: ScenesArgs) -> Result<()> {
    if a.size < 32 {
        return Err(usage("--size must be at least 32"));
    }
    let t0 = std::time::Instant::now();
    let written = logdense::data::fashion_scenes::generate(
        &a.out, a.size, a.train, a.test, a.seed, &a.fashion,
    )?;
    println!(
        "fashion-scenes: {written:?} in {} ({:.1} s)",
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn parse_split(s: &str) -> Result<logdense::data::seg::SegSplit> {
    use logdense::data::seg::SegSplit;
    match s {
        "train" => Ok(SegSplit::Train),
        "val" => Ok(SegSplit::Val),
        "test" => Ok(SegSplit::Test),
        other => Err(usage(format!(
            "--split: unknown split '{other}' (train, val, test)"
        ))),
    }
}

fn seg_train_cmd(a: SegTrainArgs) -> Result<()> {
    use logdense::segment::{SegConfig, SegRun, SEG_CONFIG_FILE};
    let device = train::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let (mut cfg, dir, resume) = match &a.resume {
        Some(dir) => (
            SegConfig::load(&dir.join(SEG_CONFIG_FILE)).with_context(|| {
                format!("--resume: {} is not a segmentation run", dir.display())
            })?,
            dir.clone(),
            true,
        ),
        None => {
            let mut cfg = match &a.config {
                Some(p) => SegConfig::load(p)?,
                None => SegConfig::default(),
            };
            if let Some(p) = &a.preset {
                cfg.model.preset = p.clone();
            }
            let dir = a.out.clone().unwrap_or_else(|| {
                PathBuf::from("runs").join(format!("segment-{}", cfg.model.preset))
            });
            (cfg, dir, false)
        }
    };
    if let Some(d) = &a.data {
        cfg.data.dir = d.clone();
    }
    cfg.optim.epochs = a.epochs.unwrap_or(cfg.optim.epochs);
    cfg.optim.finetune_epochs = a.finetune_epochs.unwrap_or(cfg.optim.finetune_epochs);
    cfg.optim.batch_size = a.batch_size.unwrap_or(cfg.optim.batch_size);
    cfg.optim.lr = a.lr.unwrap_or(cfg.optim.lr);
    if let Some(c) = a.crop {
        cfg.data.crop = Some([c, c]);
    }
    if let Some(w) = &a.class_weights {
        cfg.data.class_weights = serde_json::from_value(serde_json::Value::String(w.clone()))
            .map_err(|_| {
                usage(format!(
                    "--class-weights: unknown value '{w}' (computed, classic, none)"
                ))
            })?;
    }
    cfg.data.train_subset = a.train_subset.or(cfg.data.train_subset);
    cfg.data.eval_subset = a.eval_subset.or(cfg.data.eval_subset);
    cfg.seed = a.seed.unwrap_or(cfg.seed);
    cfg.data.workers = a.workers.unwrap_or(cfg.data.workers);
    if let Some(m) = a.max_minutes {
        cfg.optim.max_train_s = Some(m * 60.0);
    }
    cfg.validate().map_err(|e| usage(format!("{e:#}")))?;
    if !cfg.data.dir.exists() {
        return Err(usage(format!(
            "--data: {} does not exist (generate a data set with `logdense data fashion-scenes --out {}`, or point --data at CamVid in the SegNet layout)",
            cfg.data.dir.display(),
            cfg.data.dir.display()
        )));
    }
    eprintln!("run directory: {}", dir.display());
    let (_, s) = SegRun {
        dir,
        cfg,
        device,
        progress: true,
    }
    .train(resume)?;
    println!(
        "final: mean_iou={:.4} global_accuracy={:.4} epochs={} wall_s={:.0}",
        s.mean_iou, s.global_accuracy, s.epochs, s.wall_s
    );
    Ok(())
}

fn seg_eval_cmd(a: SegEvalArgs) -> Result<()> {
    use logdense::data::seg::{load_camvid, SegBatcher, SegInMemory};
    let device = train::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let (cfg, model, state) = logdense::segment::load_run(&a.run, &device)?;
    let dir = a.data.unwrap_or(cfg.data.dir.clone());
    let split = match &a.split {
        Some(s) => parse_split(s)?,
        None => cfg.data.eval_split,
    };
    let set = load_camvid(&dir, split)?;
    let n = set.len();
    let classes = set.classes;
    let names = set.class_names.clone();
    let loader = logdense::data::seg::seg_loader_on(
        SegInMemory::new(set),
        SegBatcher::eval(state.mean.clone(), state.std.clone()),
        8,
        None,
        cfg.data.workers,
        &device,
    );
    let cm = logdense::segment::evaluate(&model, loader, classes)?;
    println!("eval: images={n} split={split:?}");
    for (name, iou) in names.iter().zip(cm.per_class_iou()) {
        match iou {
            Some(v) => println!("  {name:<14} IoU {:.4}", v),
            None => println!("  {name:<14} IoU -"),
        }
    }
    println!(
        "mean_iou={:.4} global_accuracy={:.4}",
        cm.mean_iou(),
        cm.global_accuracy()
    );
    Ok(())
}

fn seg_predict_cmd(a: SegPredictArgs) -> Result<()> {
    let device = train::device_from_name(&a.device).map_err(|e| usage(e.to_string()))?;
    let (cfg, model, state) = logdense::segment::load_run(&a.run, &device)?;
    let img = image::open(&a.image)
        .with_context(|| format!("cannot read image {}", a.image.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut chw = vec![0u8; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            chw[c * h * w + y as usize * w + x as usize] = p.0[c];
        }
    }
    // The ground truth: --label, or the SegNet-layout sibling folder (test/ -> testannot/).
    let label_path = a.label.clone().or_else(|| {
        let parent = a.image.parent()?;
        let annot = parent.with_file_name(format!("{}annot", parent.file_name()?.to_str()?));
        let p = annot.join(a.image.file_name()?);
        p.exists().then_some(p)
    });
    let classes = state.class_names.len();
    let truth = match &label_path {
        Some(p) => {
            let (labels, lh, lw) = logdense::data::seg::camvid::decode_label(p, classes)?;
            if (lh, lw) != (h, w) {
                return Err(usage(format!(
                    "--label: {} is {lw}x{lh}, the image is {w}x{h}",
                    p.display()
                )));
            }
            Some(labels)
        }
        None => None,
    };
    let palette = logdense::segment::palette_of(&cfg.data.dir);
    let strip = logdense::segment::prediction_strip(
        &model,
        &state,
        &palette,
        &chw,
        truth.as_deref(),
        (h, w),
        &device,
    );
    strip
        .save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!(
        "wrote {} (input{}, {} head prediction(s), final last)",
        a.out.display(),
        if truth.is_some() {
            ", ground truth"
        } else {
            ""
        },
        model.graph.heads().len()
    );
    Ok(())
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
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
    run_and_print(&opts, a.json)?;
    Ok(())
}
