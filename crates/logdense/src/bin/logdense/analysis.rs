//! `graph`, `cost`, `design`: the tensor-free analyses of logdense-graph.

use crate::{parse_pattern, usage};
use anyhow::Result;
use clap::Args;
use logdense::graph::{
    design, distance, paper, Arch, NetGraph, NetSpec, Pattern, Stem, TransitionHops,
};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct GraphArgs {
    /// Connection pattern: dense, log, nearest, evenly-spaced, nearest-half, evenly-spaced-half, nearest-half-and-log, loglog, loglog-plain.
    #[arg(long, default_value = "log")]
    pattern: String,
    /// A pattern file (`logdense design --out`) instead of --pattern; --layers is the file's.
    #[arg(long)]
    pattern_file: Option<PathBuf>,
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
pub(crate) struct CostArgs {
    /// The network: a preset of the registry (`logdense presets`), e.g. ld-v1-12-16,
    /// densenet-bc-100-12, fc-ld-103; the options below change it.
    #[arg(long, default_value = "ld-v1-12-16")]
    preset: String,
    /// Connection pattern of a V1 network (dense, log, nearest, evenly-spaced, nearest-half,
    /// evenly-spaced-half, nearest-half-and-log, loglog, loglog-plain).
    #[arg(long, conflicts_with = "pattern_file")]
    pattern: Option<String>,
    /// A pattern file (`logdense design --out`) whose input sets replace a V1 network's
    /// pattern; its layers must be the network's.
    #[arg(long)]
    pattern_file: Option<PathBuf>,
    /// Number of blocks, each as long as the preset's first.
    #[arg(long)]
    blocks: Option<usize>,
    /// Input height = width (default: the preset's, 32 for CIFAR shapes, 224 for FC networks).
    #[arg(long)]
    input: Option<usize>,
    /// Bottleneck layers (BN-ReLU-1x1conv(4g) before each 3x3).
    #[arg(long)]
    bottleneck: bool,
    #[arg(long)]
    classes: Option<usize>,
    /// Initial convolution width.
    #[arg(long)]
    stem_width: Option<usize>,
    /// LOGLOG hub-layer growth multiplier.
    #[arg(long)]
    hub_multiplier: Option<usize>,
    #[arg(long)]
    json: bool,
    /// Print the paper's cost columns (Tables 1-3, Fig. 5b) beside ours.
    #[arg(long)]
    paper: bool,
}

#[derive(Args)]
pub(crate) struct DesignArgs {
    #[arg(long)]
    layers: usize,
    #[arg(long)]
    max_inputs: usize,
    /// At most this many connections in all (default: every layer reads all min(K, i) it may).
    #[arg(long, conflicts_with = "log_budget")]
    max_connections: Option<usize>,
    /// LOG's budget: each layer reads as many layers as LOG's does (1 + floor(log2 i), at most
    /// --max-inputs), so the design has exactly LOG's connections.
    #[arg(long)]
    log_budget: bool,
    /// Write the design as a pattern file (JSON) for --pattern-file and model.pattern_file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run the exact search up to this many layers.
    #[arg(long, default_value_t = 12)]
    exact_up_to: usize,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    png: Option<PathBuf>,
}

pub(crate) fn graph_cmd(a: GraphArgs) -> Result<()> {
    if let Some(path) = &a.pattern_file {
        return graph_of_file(&a, path);
    }
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
        let title = format!(
            "{pattern}: L = {}, {} block(s), MBD {}, {connections} connections",
            a.layers, a.blocks, summary.mbd
        );
        logdense::training::report::plot_connection_matrix(
            p,
            &sets,
            Some(a.layers / a.blocks),
            &title,
        )?;
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

/// `graph --pattern-file`: the file's input sets, one block, their MBD and connections.
fn graph_of_file(a: &GraphArgs, path: &std::path::Path) -> Result<()> {
    let file = logdense::graph::PatternFile::load(path).map_err(usage)?;
    let sets = &file.design.sets;
    let summary = distance::summarize_sets(sets)?;
    let connections = logdense::graph::pattern::connection_count(sets);
    let max_inputs = sets.iter().map(Vec::len).max().unwrap_or(0);
    let name = path.display();
    if let Some(p) = &a.png {
        let title = format!(
            "{name}: L = {}, MBD {}, {connections} connections",
            file.design.layers, summary.mbd
        );
        logdense::training::report::plot_connection_matrix(p, sets, None, &title)?;
    }
    if a.json {
        let v = serde_json::json!({
            "pattern_file": name.to_string(), "layers": file.design.layers, "blocks": 1,
            "mbd": summary.mbd, "mean_distance": summary.mean(),
            "unreachable_pairs": summary.unreachable_pairs, "connections": connections,
            "mean_inputs": logdense::graph::pattern::mean_inputs(sets), "max_inputs": max_inputs,
            "method": file.design.method, "proven_optimal": file.design.proven_optimal,
        });
        println!("{v}");
    } else {
        println!("pattern file {name}, L = {}, 1 block", file.design.layers);
        println!("  MBD                {}", summary.mbd);
        println!("  mean distance      {:.3}", summary.mean());
        println!("  connections        {connections}");
        println!("  max inputs         {max_inputs}");
        println!(
            "  found by           {} ({})",
            file.design.method,
            if file.design.proven_optimal {
                "proven optimal"
            } else {
                "not proven optimal"
            }
        );
    }
    Ok(())
}

fn cost_spec(a: &CostArgs) -> Result<NetSpec> {
    let mut spec =
        logdense::model::presets::preset(&a.preset).map_err(|e| usage(format!("--preset: {e}")))?;
    if let Some(p) = &a.pattern {
        let pattern = parse_pattern(p)?;
        match &mut spec.arch {
            Arch::V1 { pattern: old } => *old = pattern,
            other => {
                return Err(usage(format!(
                    "--pattern applies to V1 presets only, not {other:?}"
                )))
            }
        }
    }
    if let Some(b) = a.blocks {
        let n = spec.blocks.first().copied().unwrap_or(1);
        spec.blocks = vec![n; b];
        spec.block_growth.clear();
    }
    if a.bottleneck {
        spec.bottleneck = true;
    }
    if let Some(s) = a.input {
        spec.input = [spec.input[0], s, s];
    }
    if let Some(c) = a.classes {
        spec.classes = c;
    }
    if let Some(w) = a.stem_width {
        spec.stem = Stem {
            width: w,
            ..spec.stem
        };
    }
    if let Some(h) = a.hub_multiplier {
        spec.hub_multiplier = h;
    }
    if let Some(path) = &a.pattern_file {
        spec.custom_sets = Some(
            logdense::training::config::load_pattern_sets(path, &spec)
                .map_err(|e| usage(format!("--pattern-file: {e:#}")))?,
        );
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

pub(crate) fn cost_cmd(a: CostArgs) -> Result<()> {
    if a.paper {
        return paper_table();
    }
    let spec = cost_spec(&a)?;
    // The network comes from --preset and the options changing it: the error names those.
    let g = spec.build().map_err(|e| match e {
        logdense::graph::SpecError::Invalid { field, message } => {
            usage(format!("--preset {} ({field}): {message}", a.preset))
        }
    })?;
    let v = cost_json(&g)?;
    if a.json {
        println!("{v}");
        return Ok(());
    }
    let c = g.cost();
    println!(
        "{} ({} layers, g = {}, input {}x{})",
        a.preset,
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
pub(crate) fn paper_table() -> Result<()> {
    println!("Table 1 (V1 LD = N = E budget; LD2 = V2), GFLOPS at 32x32, 3 blocks, no bottleneck");
    println!("  (n,g)     LD paper   ours     LD2 paper  ours");
    for ((n, g), ld, ld2) in paper::TABLE1 {
        println!(
            "  ({n:>2},{g:>2})   {ld:>6.2}   {:>8.4}   {ld2:>6.2}   {:>8.4}",
            gf(NetSpec::v1(Pattern::Log, n, g, 3))?,
            gf(NetSpec::v2(n, g, 3))?
        );
    }
    println!("\nTable 2 (half budgets), GFLOPS, as the authors' code builds them: V1 with bottleneck layers");
    println!("  (N = nearest-half, E = evenly-spaced-half, N+LD = the code's nearest-half-and-log-authors,");
    println!("  D = DenseNet with bottlenecks and width-keeping transitions; docs/2026-12-01-paper-cost-readings.md)");
    println!("  (n,g)     N,E paper  N      E      N+LD paper ours   D paper  ours");
    let bottleneck = |p: Pattern, n: usize, g: usize| NetSpec {
        bottleneck: true,
        ..NetSpec::v1(p, n, g, 3)
    };
    for ((n, g), ne, nld, d) in paper::TABLE2 {
        println!(
            "  ({n:>2},{g:>2})   {ne:>6.2}   {:>6.3} {:>6.3}  {nld:>6.2}   {:>6.3}  {d:>6.2}  {:>6.3}",
            gf(bottleneck(Pattern::NearestHalf, n, g))?,
            gf(bottleneck(Pattern::EvenlySpacedHalf, n, g))?,
            gf(bottleneck(Pattern::NearestHalfAndLogAuthors, n, g))?,
            gf(NetSpec::densenet_uncompressed(n, g, 3))?
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

pub(crate) fn design_cmd(a: DesignArgs) -> Result<()> {
    let budget = match (a.max_connections, a.log_budget) {
        (Some(c), _) => design::InputBudget::Connections(c),
        (None, true) => design::InputBudget::Log,
        (None, false) => design::InputBudget::Full,
    };
    let d = design::design_with(a.layers, a.max_inputs, budget, a.exact_up_to)?;
    if let Some(out) = &a.out {
        let file = logdense::graph::PatternFile::new(d.clone());
        logdense::training::report::write_atomic(out, file.to_json().as_bytes())
            .map_err(|e| usage(format!("--out: {e:#}")))?;
    }
    let log_sets = Pattern::Log.input_sets(a.layers);
    let log_mbd = distance::summarize_sets(&log_sets)?.mbd;
    let log_conn = logdense::graph::pattern::connection_count(&log_sets);
    let log_max = log_sets.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(p) = &a.png {
        let title = format!(
            "designed: L = {}, at most {} inputs, MBD {}, {} connections",
            d.layers, d.max_inputs, d.mbd, d.connections
        );
        logdense::training::report::plot_connection_matrix(p, &d.sets, None, &title)?;
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
    println!("  inputs per layer   {}", d.budget);
    if let Some(out) = &a.out {
        println!("  pattern file       {}", out.display());
    }
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

#[derive(Args)]
pub(crate) struct PresetsArgs {
    /// Only this task's presets: classification or segmentation.
    #[arg(long, value_parser = ["classification", "segmentation"])]
    task: Option<String>,
    /// One JSON object per preset (name, task, summary, and for a fixed preset its
    /// parameters and GFLOPs) instead of the table.
    #[arg(long)]
    json: bool,
}

/// `logdense presets`: the registry, one line per preset.
pub(crate) fn presets_cmd(a: PresetsArgs) -> Result<()> {
    use logdense::model::presets::{self, Builder, PRESETS};
    if !a.json {
        println!(
            "{:<22} {:<15} {:<26} summary",
            "name", "task", "size (at its own input)"
        );
    }
    for p in PRESETS {
        let task = presets::task_name(p.task);
        if a.task.as_deref().is_some_and(|t| t != task) {
            continue;
        }
        let cost = match p.builder {
            Builder::Fixed(build) => Some(build().build()?.cost().total),
            Builder::Family(_) => None,
        };
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "name": p.name, "task": task, "summary": p.summary,
                    "params": cost.as_ref().map(|c| c.params),
                    "gflops": cost.as_ref().map(|c| c.gflops()),
                })
            );
        } else {
            let size = cost.map_or_else(
                || "-".to_string(),
                |c| format!("{:.2} M, {:.2} GFLOPs", c.params as f64 / 1e6, c.gflops()),
            );
            println!("{:<22} {:<15} {:<26} {}", p.name, task, size, p.summary);
        }
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct DatasetsArgs {
    /// Only this task's data sets: classification or segmentation.
    #[arg(long, value_parser = ["classification", "segmentation"])]
    task: Option<String>,
    /// One JSON object per data set instead of the table.
    #[arg(long)]
    json: bool,
}

/// `logdense datasets`: the data-set registry, one line per data set.
pub(crate) fn datasets_cmd(a: DatasetsArgs) -> Result<()> {
    use logdense::datasets::DATASETS;
    use logdense::model::presets::task_name;
    if !a.json {
        println!(
            "{:<15} {:<15} {:<12} {:<8} {:<15} summary",
            "name", "task", "images", "classes", "train / test"
        );
    }
    for d in DATASETS {
        let task = task_name(d.task);
        if a.task.as_deref().is_some_and(|t| t != task) {
            continue;
        }
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "name": d.name, "task": task, "summary": d.summary, "input": d.input,
                    "classes": d.classes, "train_images": d.train_images,
                    "test_images": d.test_images, "default_dir": d.default_dir,
                    "source": d.source,
                })
            );
        } else {
            let or_dash = |v: Option<usize>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let shape = d
                .input
                .map_or_else(|| "any".to_string(), |[c, h, w]| format!("{c}x{h}x{w}"));
            println!(
                "{:<15} {:<15} {:<12} {:<8} {:<15} {}",
                d.name,
                task,
                shape,
                or_dash(d.classes),
                format!("{} / {}", or_dash(d.train_images), or_dash(d.test_images)),
                d.summary
            );
            println!(
                "{:<15} files: {}{}",
                "",
                d.source,
                d.default_dir
                    .map_or_else(String::new, |dir| format!("; default --data {dir}"))
            );
        }
    }
    Ok(())
}
