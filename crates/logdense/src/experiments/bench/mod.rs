//! Benchmarks: training-step and inference throughput, achieved GFLOP/s and peak memory.
//!
//! What is measured, per preset:
//!
//! - **Training step**: the step training takes for the preset's task, [`engine::train_step`]
//!   with that task's loss and optimiser: for classifiers the deep-supervision weighted
//!   cross-entropy ([`crate::training::classify::classify_loss`]) and SGD (momentum 0.9, Nesterov, weight
//!   decay 1e-4); for segmentation networks the class-weighted per-pixel cross-entropy against
//!   labels subsampled to each head's scale ([`crate::training::segment::segment_loss`]) and RMSprop
//!   (weight decay 1e-4), as `segment train` runs them; then a device sync.
//! - **Inference**: `model.valid().forward(x)` with the output read back (`into_data`), so that
//!   a lazy backend has finished.
//! - Each is run `warmup` times untimed, then `steps` times; the **median** step time is
//!   reported, and images/s = batch / median.
//! - **GFLOP/s** come from the analytic cost model (forward FLOPs per image, see
//!   [`logdense_graph::cost`]), not from counters.
//! - **Peak memory** is the process's `VmHWM` (peak resident set size) from
//!   `/proc/self/status`. That is a process-wide high-water mark: for a number that belongs to
//!   one preset, run it in a fresh process (`logdense bench --memory-sweep` runs each preset
//!   as its own `bench --preset P --json` child and hands [`memory_sweep`] the results).
//!
//! Inputs and labels are random (fixed seed): throughput does not depend on the data.

mod memory;
mod table;

pub use memory::*;
pub use table::*;

use crate::model::presets;
use crate::training::classify::cross_entropy;
use crate::training::engine::{self, head_weights};
use crate::SparseDenseNet;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use logdense_graph::{NetSpec, TaskKind};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The presets `logdense bench` runs when none is named: the paper's CIFAR networks at
/// three sizes and FC-Log-DenseNet-103.
pub const DEFAULT_PRESETS: [&str; 4] = [
    "ld-v1-12-16",
    "ld-v1-32-24",
    "densenet-bc-100-12",
    "fc-ld-103",
];

/// Batch size of classification presets when [`BenchOptions::batch`] is 0.
pub const DEFAULT_CLASSIFY_BATCH: usize = 64;
/// Batch size of segmentation presets (224x224 FC networks) when [`BenchOptions::batch`] is 0.
pub const DEFAULT_SEGMENT_BATCH: usize = 1;

/// Depths `n` (layers per block) of the memory sweep: V1 LOG against DenseNet (`dense-N-G`).
pub const SWEEP_NS: [usize; 4] = [12, 52, 100, 200];
/// Growth rate of the memory sweep.
pub const SWEEP_GROWTH: usize = 24;
/// Batch size of the memory sweep.
pub const SWEEP_BATCH: usize = 16;

const SEED: u64 = 1;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Names of the presets to benchmark, in order.
    pub presets: Vec<String>,
    /// Images per step; 0 picks [`default_batch`] per preset (64 for classification, 1 for
    /// the 224x224 segmentation networks).
    pub batch: usize,
    /// Untimed steps before the timed ones (training and inference each).
    pub warmup: usize,
    /// Timed steps (training and inference each); the median is reported.
    pub steps: usize,
    /// Input height = width in place of each preset's own (`None`: the preset's), e.g. 64
    /// to time the fashion-scenes network at the size it trains at.
    pub input: Option<usize>,
    /// The plain device (autodiff is enabled on a copy for training).
    pub device: Device,
    /// Build the networks with the fused CPU kernels (the model option training uses).
    pub fused: bool,
    /// The fused kernels' precision (a model option: `NetOptions::precision`).
    pub precision: crate::model::fused::Precision,
    /// The fused kernels' f32 product family (`NetOptions::f32_kernels`).
    pub f32_kernels: crate::model::fused::F32Kernels,
    /// Train with burn's gradient checkpointing
    /// ([`crate::training::engine::autodiff_device`]).
    pub checkpointing: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            presets: DEFAULT_PRESETS.iter().map(|s| s.to_string()).collect(),
            batch: 0,
            warmup: 2,
            steps: 10,
            input: None,
            device: Device::flex(),
            fused: true,
            precision: crate::model::fused::Precision::F32,
            f32_kernels: crate::model::fused::F32Kernels::Direct,
            checkpointing: false,
        }
    }
}

/// One preset's measurements. Field names are shared with `bench/pytorch_reference.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// The preset's name (or the label [`run_spec`] was given).
    pub preset: String,
    /// Images per step, training and inference.
    pub batch: usize,
    /// Input channels, height, width.
    pub input: [usize; 3],
    /// Trainable parameters (the cost model's count, checked against the built modules).
    pub params: u64,
    /// Forward FLOPs of one image from the cost model, in GFLOPs (1e9).
    pub gflops_per_image: f64,
    /// Median wall time of one training step (forward, loss, backward, SGD update).
    pub train_step_ms_median: f64,
    /// Median wall time of one inference forward pass of a batch.
    pub infer_ms_median: f64,
    /// Training images per second: batch / median training-step time.
    pub train_img_per_s: f64,
    /// Inference images per second: batch / median inference time.
    pub infer_img_per_s: f64,
    /// Achieved training GFLOP/s, counting a training image as **3 x its forward FLOPs**
    /// (forward, plus backward for the inputs' and the weights' gradients, about 1 x each):
    /// the usual convention, not a measured count.
    pub train_gflop_per_s: f64,
    /// Achieved inference GFLOP/s (1 x forward FLOPs per image).
    pub infer_gflop_per_s: f64,
    /// Peak resident memory (`VmHWM`) of the process after this preset, in bytes; `None`
    /// where `/proc/self/status` does not exist. Process-wide: see [`isolated`].
    pub peak_rss_bytes: Option<u64>,
    /// Timed steps (each of training and inference).
    pub steps: usize,
    /// Untimed warm-up steps before them.
    #[serde(default)]
    pub warmup: usize,
    /// Worker threads available (`RAYON_NUM_THREADS` if set, else the CPUs available).
    #[serde(default)]
    pub threads: usize,
    /// Whether the fused CPU kernels ran the layers (`None` in results from before it was
    /// recorded).
    #[serde(default)]
    pub fused: Option<bool>,
    /// The fused kernels' precision that ran (`f32` or `bf16`; `None` in results from before
    /// it was recorded).
    #[serde(default)]
    pub precision: Option<String>,
    /// The fused layers' f32 kernels where they ran in f32 (`direct` AVX-512 blocks or
    /// `gemm`'s; `None` otherwise, and in results from before it was recorded).
    #[serde(default)]
    pub f32_kernels: Option<String>,
    /// Whether the training steps ran with gradient checkpointing (`None` in results from
    /// before it was recorded).
    #[serde(default)]
    pub checkpointing: Option<bool>,
    /// Wall time of the first training step (untimed warm-up included or not): on a GPU it
    /// holds the kernels' compilation, the cost a user waits through before the first batch.
    #[serde(default)]
    pub first_step_ms: Option<f64>,
    /// The device allocator's reserved bytes at their highest after a training step
    /// ([`crate::device::allocator_reserved_bytes`]): the GPU memory a step needs, pool slack
    /// included. `None` on the CPU, whose figure is `peak_rss_bytes`.
    #[serde(default)]
    pub device_peak_bytes: Option<u64>,
    /// Kernels the GPU runtime compiled during the first training step (`None` on the CPU).
    #[serde(default)]
    pub compilations_first_step: Option<u64>,
    /// Kernels compiled during the timed training steps, per step: 0 once every shape has
    /// been seen (`None` on the CPU).
    #[serde(default)]
    pub compilations_per_step: Option<f64>,
}

/// The batch [`run_bench`] uses for `spec` when [`BenchOptions::batch`] is 0.
pub fn default_batch(spec: &NetSpec) -> usize {
    match spec.task() {
        TaskKind::Classify => DEFAULT_CLASSIFY_BATCH,
        TaskKind::Segment => DEFAULT_SEGMENT_BATCH,
    }
}

/// Threads the CPU backend may use: `RAYON_NUM_THREADS` if set, else the CPUs available.
pub fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Mean per-pixel cross-entropy of logits `[N, C, H, W]` against labels `[N, H, W]` (the mean
/// over all `N * H * W` positions, as PyTorch's `F.cross_entropy` with `reduction="mean"`).
/// A classifier's `[N, C, 1, 1]` output with labels `[N, 1, 1]` gives the usual cross-entropy.
pub fn pixel_cross_entropy(logits: Tensor<4>, labels: Tensor<3, Int>) -> Tensor<1> {
    let [n, c, h, w] = logits.dims();
    let flat = logits.permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    cross_entropy(flat, labels.reshape([n * h * w]))
}

/// The targets of a benchmark batch, per task (one per benchmark: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum BenchTargets {
    Classes(Tensor<1, Int>),
    /// Label map, its host copy, class weights (void last).
    Pixels(Tensor<3, Int>, Vec<i64>, Tensor<1>),
}

/// Deterministic pseudo-random labels in `0..classes` (a fixed LCG: no dependence on the
/// backend's integer sampling).
fn random_labels(shape: [usize; 3], classes: usize, salt: u64, device: &Device) -> Tensor<3, Int> {
    let count: usize = shape.iter().product();
    let mut state = SEED
        .wrapping_mul(6364136223846793005)
        .wrapping_add(salt | 1);
    let labels: Vec<i64> = (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % classes as u64) as i64
        })
        .collect();
    Tensor::from_data(TensorData::new(labels, shape), device)
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        0.5 * (xs[m - 1] + xs[m])
    }
}

/// Benchmarks one preset (see the module documentation for what is timed).
///
/// `peak_rss_bytes` is the process's high-water mark, reset (where Linux allows) at the start
/// of this call; memory the allocator kept from earlier work in the same process still counts,
/// so for a per-preset memory figure run each preset in its own process ([`isolated`]).
pub fn run_bench(preset: &str, opts: &BenchOptions) -> Result<BenchResult> {
    let mut spec = presets::preset(preset).map_err(anyhow::Error::msg)?;
    if let Some(side) = opts.input {
        spec.input = [spec.input[0], side, side];
    }
    run_spec(preset, &spec, opts)
}

/// [`run_bench`] for a spec that is not a named preset; `name` labels the result.
pub fn run_spec(name: &str, spec: &NetSpec, opts: &BenchOptions) -> Result<BenchResult> {
    if opts.steps == 0 {
        bail!("--steps: at least 1 timed step is needed");
    }
    let graph = spec
        .build()
        .map_err(|e| anyhow::anyhow!("preset '{name}': {e}"))?;
    let cost = graph.cost();
    let batch = if opts.batch == 0 {
        default_batch(spec)
    } else {
        opts.batch
    };
    crate::training::resources::check_training_fits(spec, batch, "--batch")?;
    reset_peak_rss();

    let device = opts.device.clone().inner();
    crate::device::release_unused_memory(&device);
    let ad = engine::autodiff_device(&device, opts.checkpointing);
    ad.seed(SEED);
    let options = crate::model::network::NetOptions {
        dropout: 0.0,
        fused: opts.fused,
        precision: opts.precision,
        f32_kernels: opts.f32_kernels,
    };
    let mut model = SparseDenseNet::new_with(spec, &options, &ad)?;
    let fused = model.valid().fused_active();
    let cpu_kernels = model.valid().cpu_kernels_active();
    let kernels = model.fused.kernels;
    let precision = kernels.precision;
    let params = model.trainable_params() as u64;
    if params != cost.total.params {
        bail!(
            "preset '{name}': the built model has {params} parameters but the cost model counts {}",
            cost.total.params
        );
    }
    let [c, h, w] = spec.input;
    let image = Tensor::<4>::random([batch, c, h, w], Distribution::Normal(0.0, 1.0), &ad);
    let heads = graph.heads();
    let weights = head_weights(heads.len(), false);
    // The task's own targets, loss and optimiser: the step its training takes.
    let task_defaults = crate::training::config::TaskConfig::defaults(graph.task);
    let (mut optim, lr) = (task_defaults.optimizer().build(), task_defaults.optim.lr);
    let targets = match graph.task {
        TaskKind::Classify => BenchTargets::Classes(
            random_labels([batch, 1, 1], spec.classes, 0, &ad).reshape([batch]),
        ),
        TaskKind::Segment => {
            let labels = random_labels([batch, h, w], spec.classes, 0, &ad);
            let values = crate::training::segment::label_values(&labels);
            // Weights of the real classes 1 (median-frequency weights change values, not
            // work), void last with 0, as training builds them.
            let mut class_weights = vec![1.0f32; spec.classes];
            class_weights.push(0.0);
            let class_weights =
                Tensor::<1>::from_data(TensorData::new(class_weights, [spec.classes + 1]), &ad);
            BenchTargets::Pixels(labels, values, class_weights)
        }
    };

    let mut train_ms = Vec::with_capacity(opts.steps);
    let mut first_step_ms = None;
    let mut device_peak_bytes: Option<u64> = None;
    let compilations_before = crate::device::kernel_compilations();
    let mut compilations_first_step = None;
    let mut compilations_timed_from = None;
    for step in 0..opts.warmup + opts.steps {
        if step == opts.warmup {
            compilations_timed_from = crate::device::kernel_compilations();
        }
        let t0 = Instant::now();
        let (next, loss_value) = engine::train_step(
            model,
            &mut optim,
            lr,
            image.clone(),
            |outputs| match &targets {
                BenchTargets::Classes(t) => {
                    crate::training::classify::classify_loss(outputs, t, &weights).loss
                }
                BenchTargets::Pixels(labels, values, class_weights) => {
                    crate::training::segment::segment_loss(
                        outputs,
                        labels,
                        values,
                        class_weights,
                        &weights,
                    )
                }
            },
        )
        .with_context(|| format!("preset '{name}': benchmark step {step}"))?;
        model = next;
        debug_assert!(loss_value.is_finite());
        ad.sync()
            .map_err(|e| anyhow::anyhow!("device error in a training step: {e:?}"))?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if step == 0 {
            first_step_ms = Some(ms);
            compilations_first_step = crate::device::kernel_compilations()
                .zip(compilations_before)
                .map(|(now, before)| now - before);
        }
        if step >= opts.warmup {
            train_ms.push(ms);
        }
        if let Some(bytes) = crate::device::allocator_reserved_bytes(&device) {
            device_peak_bytes = Some(device_peak_bytes.unwrap_or(0).max(bytes));
        }
    }
    let compilations_per_step = crate::device::kernel_compilations()
        .zip(compilations_timed_from)
        .map(|(now, from)| (now - from) as f64 / opts.steps as f64);
    drop(optim);

    let valid = model.valid();
    drop(model);
    let image = Tensor::<4>::random([batch, c, h, w], Distribution::Normal(0.0, 1.0), &device);
    let mut infer_ms = Vec::with_capacity(opts.steps);
    for step in 0..opts.warmup + opts.steps {
        let t0 = Instant::now();
        let out = valid.forward(image.clone()).into_data();
        if step >= opts.warmup {
            infer_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        debug_assert_eq!(out.shape()[0], batch);
    }

    let gflops_per_image = cost.total.flops as f64 / 1e9;
    let train_step_ms_median = median(train_ms);
    let infer_ms_median = median(infer_ms);
    let train_img_per_s = batch as f64 * 1e3 / train_step_ms_median;
    let infer_img_per_s = batch as f64 * 1e3 / infer_ms_median;
    Ok(BenchResult {
        preset: name.to_string(),
        batch,
        input: spec.input,
        params,
        gflops_per_image,
        train_step_ms_median,
        infer_ms_median,
        train_img_per_s,
        infer_img_per_s,
        train_gflop_per_s: 3.0 * gflops_per_image * train_img_per_s,
        infer_gflop_per_s: gflops_per_image * infer_img_per_s,
        peak_rss_bytes: peak_rss_bytes(),
        steps: opts.steps,
        warmup: opts.warmup,
        threads: threads(),
        fused: Some(fused),
        precision: Some(
            crate::model::fused::precision_of_model(precision, cpu_kernels)
                .name()
                .to_string(),
        ),
        f32_kernels: (cpu_kernels
            && crate::model::fused::precision_of_model(precision, cpu_kernels)
                == crate::model::fused::Precision::F32)
            .then(|| kernels.f32_name().to_string()),
        checkpointing: Some(opts.checkpointing),
        first_step_ms,
        device_peak_bytes,
        compilations_first_step,
        compilations_per_step,
    })
}

/// Runs every preset of `opts` in this process, in order.
pub fn run_all(opts: &BenchOptions) -> Result<Vec<BenchResult>> {
    opts.presets.iter().map(|p| run_bench(p, opts)).collect()
}

/// What a `logdense bench` verb can call: runs the presets in order (a line per preset on
/// standard error) and prints a JSON list (`json`, the form [`parse_results`] and
/// `bench/compare.sh` read) or the table on standard output.
pub fn run_and_print(opts: &BenchOptions, json: bool) -> Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    for p in &opts.presets {
        eprintln!("bench: {p} ...");
        results.push(run_bench(p, opts)?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_table(&results);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logdense_graph::{Arch, Stem};

    fn tiny_opts() -> BenchOptions {
        BenchOptions {
            presets: vec!["ld-v1-2-4".into()],
            batch: 2,
            warmup: 1,
            steps: 2,
            input: None,
            device: Device::flex(),
            fused: true,
            ..BenchOptions::default()
        }
    }

    fn check_consistent(r: &BenchResult) {
        assert!(r.params > 0 && r.gflops_per_image > 0.0);
        for v in [
            r.train_step_ms_median,
            r.infer_ms_median,
            r.train_img_per_s,
            r.infer_img_per_s,
            r.train_gflop_per_s,
            r.infer_gflop_per_s,
        ] {
            assert!(v.is_finite() && v > 0.0, "{r:?}");
        }
        // Figures that come from the measurement and the cost model, checked against an
        // independent build of the preset and against each other.
        if let Ok(spec) = presets::preset(&r.preset) {
            let cost = spec.build().unwrap().cost();
            assert_eq!(r.params, cost.total.params, "{r:?}");
            if r.input == spec.input {
                assert_eq!(r.gflops_per_image, cost.total.flops as f64 / 1e9, "{r:?}");
            }
        }
        // A training step (forward, backward, update) takes longer than an inference pass.
        assert!(r.train_step_ms_median > r.infer_ms_median, "{r:?}");
        assert!(r.train_img_per_s < r.infer_img_per_s, "{r:?}");
        // Peak memory comes from Linux's /proc; elsewhere there is none to report.
        assert_eq!(
            r.peak_rss_bytes.is_some_and(|b| b > 0),
            cfg!(target_os = "linux")
        );
        assert!(r.threads >= 1);
    }

    #[test]
    fn bench_tiny_classifier() {
        let r = run_bench("ld-v1-2-4", &tiny_opts()).unwrap();
        assert_eq!(
            (r.preset.as_str(), r.batch, r.input),
            ("ld-v1-2-4", 2, [3, 32, 32])
        );
        let cost = presets::preset("ld-v1-2-4")
            .unwrap()
            .build()
            .unwrap()
            .cost();
        assert_eq!(r.params, cost.total.params);
        assert_eq!(r.gflops_per_image, cost.total.flops as f64 / 1e9);
        assert_eq!((r.steps, r.warmup), (2, 1));
        assert_eq!(
            r.fused,
            Some(true),
            "the fused kernels ran the CPU benchmark"
        );
        check_consistent(&r);
        let plain = run_bench(
            "ld-v1-2-4",
            &BenchOptions {
                fused: false,
                ..tiny_opts()
            },
        )
        .unwrap();
        assert_eq!(plain.fused, Some(false));
        // The JSON round-trips through the parser that `isolated` uses.
        let text = format!(
            "some log line\n{}",
            serde_json::to_string_pretty(&[&r]).unwrap()
        );
        // (serde_json's default float parsing may be 1 ulp off: compare with a tolerance.)
        let back = parse_results(&text).unwrap();
        assert_eq!(back.len(), 1);
        let b = &back[0];
        assert_eq!(
            (&b.preset, b.batch, b.params, b.peak_rss_bytes),
            (&r.preset, r.batch, r.params, r.peak_rss_bytes)
        );
        for (x, y) in [
            (b.train_step_ms_median, r.train_step_ms_median),
            (b.infer_img_per_s, r.infer_img_per_s),
            (b.train_gflop_per_s, r.train_gflop_per_s),
        ] {
            assert!((x - y).abs() <= 1e-12 * y.abs(), "{x} {y}");
        }
        let table = format_table(&[r]);
        assert!(table.contains("ld-v1-2-4") && table.contains("3x32x32"));
    }

    #[test]
    fn input_option_resizes_the_preset() {
        let opts = BenchOptions {
            input: Some(16),
            ..tiny_opts()
        };
        let r = run_bench("ld-v1-2-4", &opts).unwrap();
        assert_eq!(r.input, [3, 16, 16]);
        let mut spec = presets::preset("ld-v1-2-4").unwrap();
        spec.input = [3, 16, 16];
        let cost = spec.build().unwrap().cost();
        assert_eq!(r.gflops_per_image, cost.total.flops as f64 / 1e9);
        check_consistent(&r);
    }

    #[test]
    fn bench_tiny_segmenter() {
        // A small FC-Log-DenseNet: deep-supervision heads at 16, 8 and 16 pixels.
        let spec = NetSpec {
            arch: Arch::FcLog,
            blocks: vec![1, 1, 1],
            growth: 4,
            bottleneck: false,
            stem: Stem::cifar(8),
            input: [3, 16, 16],
            classes: 3,
            deep_supervision: true,
            hub_multiplier: 1,
            block_growth: Vec::new(),
            aux_min_stride: 0,
            custom_sets: None,
        };
        let opts = BenchOptions {
            batch: 0,
            ..tiny_opts()
        };
        let r = run_spec("tiny-fc", &spec, &opts).unwrap();
        assert_eq!(r.batch, DEFAULT_SEGMENT_BATCH);
        check_consistent(&r);
    }

    #[test]
    fn pixel_cross_entropy_is_the_mean_over_positions() {
        let d = Device::flex();
        // Uniform logits: ln(C) everywhere.
        let logits = Tensor::<4>::zeros([2, 5, 3, 4], &d);
        let labels = random_labels([2, 3, 4], 5, 0, &d);
        let v = pixel_cross_entropy(logits, labels).into_scalar::<f32>();
        assert!((v - 5f32.ln()).abs() < 1e-5, "{v}");
        // A classifier's [N, C, 1, 1] output gives the plain cross-entropy.
        let logits = Tensor::<4>::random([3, 4, 1, 1], Distribution::Normal(0.0, 1.0), &d);
        let labels = random_labels([3, 1, 1], 4, 7, &d);
        let a = pixel_cross_entropy(logits.clone(), labels.clone()).into_scalar::<f32>();
        let b = cross_entropy(logits.reshape([3, 4]), labels.reshape([3])).into_scalar::<f32>();
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn labels_lie_in_range_and_median_is_the_middle() {
        let d = Device::flex();
        let l = random_labels([4, 8, 8], 11, 3, &d).into_data();
        let v: Vec<i64> = l.iter::<i64>().collect();
        assert!(v.iter().all(|&x| (0..11).contains(&x)));
        assert!(v.iter().collect::<std::collections::HashSet<_>>().len() > 5);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn sweep_estimates_and_presets() {
        let small = estimated_train_bytes(&presets::preset("ld-v1-12-24").unwrap(), 16).unwrap();
        let dense = estimated_train_bytes(&presets::preset("dense-200-24").unwrap(), 16).unwrap();
        assert!(small < dense && dense > 64 << 30, "{small} {dense}");
        // A sweep whose limit is 0 skips everything without running a child.
        let rows = memory_sweep(
            &SweepOptions {
                ns: vec![12],
                max_bytes: Some(0),
                ..SweepOptions::default()
            },
            |p, _, _| panic!("{p} was measured past its limit"),
        )
        .unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.preset.as_str()).collect();
        assert_eq!(names, ["ld-v1-12-24", "dense-12-24"]);
        assert!(rows
            .iter()
            .all(|r| r.result.is_none() && r.skipped.is_some()));
        assert!(format_sweep(&rows).contains("dense-12-24"));
    }

    /// A manual run without the CLI, e.g.
    /// `LOGDENSE_BENCH=ld-v1-12-16,densenet-bc-100-12 LOGDENSE_BENCH_BATCH=16 cargo test
    /// --release -p logdense --lib bench::tests::manual_run -- --ignored --nocapture`
    /// (`LOGDENSE_BENCH_STEPS`, default 2, after 1 warm-up step).
    #[test]
    #[ignore = "a timing run, started by hand"]
    fn manual_run() {
        let env = |k: &str| std::env::var(k).ok();
        let presets = env("LOGDENSE_BENCH").unwrap_or_else(|| "ld-v1-12-16".into());
        let opts = BenchOptions {
            presets: presets.split(',').map(|s| s.trim().to_string()).collect(),
            batch: env("LOGDENSE_BENCH_BATCH").map_or(0, |b| b.parse().unwrap()),
            warmup: 1,
            steps: env("LOGDENSE_BENCH_STEPS").map_or(2, |b| b.parse().unwrap()),
            input: env("LOGDENSE_BENCH_INPUT").map(|b| b.parse().unwrap()),
            ..BenchOptions::default()
        };
        let results = run_all(&opts).unwrap();
        print_table(&results);
        println!("{}", serde_json::to_string_pretty(&results).unwrap());
    }

    #[test]
    #[cfg_attr(
        not(target_os = "linux"),
        ignore = "peak memory is read from Linux's /proc/self/status"
    )]
    fn peak_rss_reads_proc() {
        let peak = peak_rss_bytes().unwrap();
        assert!(peak >= current_rss_bytes().unwrap() / 2 && peak > 0);
    }
}
