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
    if a.blocks == 0 || a.layers % a.blocks != 0 {
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
    if let Some(p) = &a.preset {
        return logdense::presets::preset(p).map_err(|e| usage(format!("--preset: {e}")));
    }
    let mut spec = match a.net.as_str() {
        "ld-v1" => NetSpec::v1(parse_pattern(&a.pattern)?, a.n, a.g, a.blocks),
        "ld-v2" => NetSpec::v2(a.n, a.g, a.blocks),
        "densenet-bc" => NetSpec::densenet_bc(a.n, a.g, a.blocks),
        "loglog" => NetSpec { hub_multiplier: a.hub_multiplier, ..NetSpec::v1(Pattern::LogLog { min_inputs: 4 }, a.n, a.g, a.blocks) },
        "fc-ld-103" => NetSpec { growth: a.g, ..NetSpec::fc_log_densenet_103(a.stem_width.unwrap_or(72)) },
        "fc-densenet-56" | "fc-densenet-67" | "fc-densenet-103" => NetSpec::tiramisu(a.net[12..].parse().expect("matched names")).expect("known depth"),
        other => return Err(usage(format!("--net: unknown network '{other}' (ld-v1, ld-v2, densenet-bc, loglog, fc-ld-103, fc-densenet-56, fc-densenet-67, fc-densenet-103)"))),
    };
    if a.bottleneck {
        spec.bottleneck = true;
    }
    if let Some(s) = a.input {
        spec.input = [3, s, s];
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
        a.net,
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
    let (_, test) = train::load_data(&t.cfg)?;
    let n = test.len();
    let batcher = logdense::data::ClassBatcher::eval(
        t.state.mean.clone(),
        t.state.std.clone(),
        t.cfg.data.augment.clone(),
    );
    let loader = logdense::data::loader_on(
        logdense::data::InMemory::new(test),
        batcher,
        256,
        None,
        t.cfg.data.workers,
        &device,
    );
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
