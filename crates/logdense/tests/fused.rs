//! The fused, concat-free BN-ReLU-conv against the plain burn reference (concatenate, batch
//! norm, ReLU, convolution): outputs, every gradient and the running statistics, in training
//! and inference, for 3x3 and 1x1 kernels, with and without a convolution bias (segmentation
//! heads have one).
//!
//! Every comparison also checks, through `fused::kernel_runs`, that the fused kernels really
//! ran (forward and backward) when the flag was on and the shapes supported, and that with
//! the flag off the plain path ran instead: a silent fallback would make the comparisons
//! trivially equal.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use logdense::model::fused::recompute_bn_relu_conv;
use logdense::model::fused::{bn_relu_conv, kernel_runs, reference_bn_relu_conv, KernelRuns};
use logdense::model::fused::{Fused, Kernels, Precision};

/// Which path a test call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The fused function with the flag on: the kernels must run.
    Fused,
    /// The fused function with the flag off: the plain path must run.
    FlagOff,
    /// The plain burn reference itself.
    Reference,
    /// The fused function with the flag on, on a device with burn's gradient checkpointing:
    /// the kernels must run there too.
    FusedCheckpointed,
    /// The recomputing layer of GPU devices (`recompute_bn_relu_conv`), here on flex.
    Recompute,
    /// The recomputing layer on a device with gradient checkpointing.
    RecomputeCheckpointed,
}

impl Path {
    /// The autodiff device the path trains on.
    fn device(self) -> Device {
        let device = Device::flex().autodiff();
        match self {
            Path::FusedCheckpointed | Path::RecomputeCheckpointed => {
                device.gradient_checkpointing()
            }
            _ => device,
        }
    }
}

/// The kernel runs on this thread since `before`.
fn runs_since(before: KernelRuns) -> KernelRuns {
    let now = kernel_runs();
    KernelRuns {
        conv_forward: now.conv_forward - before.conv_forward,
        conv_backward: now.conv_backward - before.conv_backward,
        resample_forward: now.resample_forward - before.resample_forward,
        resample_backward: now.resample_backward - before.resample_backward,
        recompute_forward: now.recompute_forward - before.recompute_forward,
        recompute_backward: now.recompute_backward - before.recompute_backward,
        cube_kernels: now.cube_kernels - before.cube_kernels,
    }
}

/// One fused BN-ReLU-conv forward and its backward step.
const CONV_RUN: KernelRuns = KernelRuns {
    conv_forward: 1,
    conv_backward: 1,
    resample_forward: 0,
    resample_backward: 0,
    recompute_forward: 0,
    recompute_backward: 0,
    cube_kernels: 0,
};

/// One forward and backward step of the recomputing layer.
const RECOMPUTE_RUN: KernelRuns = KernelRuns {
    conv_forward: 0,
    conv_backward: 0,
    resample_forward: 0,
    resample_backward: 0,
    recompute_forward: 1,
    recompute_backward: 1,
    cube_kernels: 0,
};

/// Asserts that since `before` the fused kernels ran `fused` times on this thread if `path` is
/// the fused one, and not at all otherwise.
fn assert_runs(before: KernelRuns, path: Path, fused: KernelRuns) {
    let expected = match path {
        Path::Fused | Path::FusedCheckpointed => fused,
        Path::Recompute | Path::RecomputeCheckpointed => RECOMPUTE_RUN,
        Path::FlagOff | Path::Reference => KernelRuns::default(),
    };
    assert_eq!(runs_since(before), expected, "{path:?}: fused kernel runs");
}

static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn layer(
    channels: usize,
    out: usize,
    kernel: usize,
    bias: bool,
    device: &Device,
) -> (BatchNorm, Conv2d) {
    let bn = BatchNormConfig::new(channels).init(device);
    // Non-trivial affine parameters, so that gamma and beta gradients are exercised.
    let bn = BatchNorm {
        gamma: bn.gamma.map(|g| {
            (g + Tensor::random([channels], Distribution::Uniform(-0.5, 0.5), device))
                .detach()
                .require_grad()
        }),
        beta: bn.beta.map(|b| {
            (b + Tensor::random([channels], Distribution::Uniform(-0.3, 0.3), device))
                .detach()
                .require_grad()
        }),
        ..bn
    };
    (
        bn,
        logdense::model::layers::conv(channels, out, kernel, 1, bias, device),
    )
}

fn inputs(channels: &[usize], device: &Device) -> Vec<Tensor<4>> {
    channels
        .iter()
        .map(|&c| {
            let x = Tensor::random([3, c, 9, 7], Distribution::Normal(0.5, 1.5), device);
            if device.is_autodiff() {
                x.require_grad()
            } else {
                x
            }
        })
        .collect()
}

/// Everything one training call produces, read back: output, input gradients, gamma, beta and
/// weight gradients, running mean and variance.
struct Outcome {
    tensors: Vec<(String, Tensor<1>)>,
}

/// Builds a layer and inputs from `seed` and runs one training forward and backward along
/// `path`, checking that the fused kernels ran exactly when they should. The same seed gives
/// the same layer and inputs.
fn train_once(seed: u64, channels: &[usize], kernel: usize, bias: bool, path: Path) -> Outcome {
    train_once_in(Precision::F32, seed, channels, kernel, bias, path)
}

/// [`train_once`] with the fused kernels in `precision` (bf16 runs on AMX where the CPU has
/// it, on the emulated tiles elsewhere): the layer's option, passed with its call.
fn train_once_in(
    precision: Precision,
    seed: u64,
    channels: &[usize],
    kernel: usize,
    bias: bool,
    path: Path,
) -> Outcome {
    // burn's RNG is process-global: tests running in parallel would interleave their draws.
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = path.device();
    device.seed(seed);
    let cin = channels.iter().sum();
    let (bn, conv) = layer(cin, 6, kernel, bias, &device);
    let xs = inputs(channels, &device);
    let probe = Tensor::<4>::random([3, 6, 9, 7], Distribution::Normal(0.0, 1.0), &device);
    assert!(logdense::model::fused::conv_supported(&xs, &conv));
    let before = kernel_runs();
    let out = match path {
        Path::Fused | Path::FusedCheckpointed => bn_relu_conv(
            xs.clone(),
            &bn,
            &conv,
            Fused {
                on: true,
                kernels: Kernels {
                    precision,
                    ..Kernels::default()
                },
            },
        ),
        Path::FlagOff => bn_relu_conv(xs.clone(), &bn, &conv, false),
        Path::Reference => reference_bn_relu_conv(xs.clone(), &bn, &conv),
        Path::Recompute | Path::RecomputeCheckpointed => {
            recompute_bn_relu_conv(xs.clone(), &bn, &conv).expect("the layer fits")
        }
    };
    let flat = |t: Tensor<4>| t.clone().reshape([t.shape().num_elements()]).inner();
    let grads = (out.clone() * probe).sum().backward();
    assert_runs(before, path, CONV_RUN);
    let mut tensors = vec![("output".to_string(), flat(out.detach()))];
    for (j, x) in xs.iter().enumerate() {
        let g = x.grad(&grads).expect("input gradient");
        tensors.push((format!("input {j} gradient"), flat(g)));
    }
    tensors.push((
        "gamma gradient".into(),
        bn.gamma.val().grad(&grads).expect("gamma"),
    ));
    tensors.push((
        "beta gradient".into(),
        bn.beta.val().grad(&grads).expect("beta"),
    ));
    tensors.push((
        "weight gradient".into(),
        flat(conv.weight.val().grad(&grads).expect("weight")),
    ));
    if let Some(b) = &conv.bias {
        tensors.push(("bias gradient".into(), b.val().grad(&grads).expect("bias")));
    }
    tensors.push(("running mean".into(), bn.running_mean.value().inner()));
    tensors.push(("running var".into(), bn.running_var.value().inner()));
    Outcome { tensors }
}

fn assert_same(fused: Outcome, reference: Outcome, what: &str) {
    for ((name, a), (_, b)) in fused.tensors.into_iter().zip(reference.tensors) {
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
        let d = max_abs_diff(a, b);
        assert!(
            d < 2e-5 * scale * 10.0,
            "{what}: {name} differs by {d} (scale {scale})"
        );
    }
}

#[test]
fn fused_layer_equals_the_reference_in_training_with_gradients() {
    for (kernel, bias) in [(3, false), (1, false), (1, true)] {
        let channels = [4, 2, 5];
        assert_same(
            train_once(7, &channels, kernel, bias, Path::Fused),
            train_once(7, &channels, kernel, bias, Path::Reference),
            &format!("kernel {kernel}, bias {bias}"),
        );
        assert_same(
            train_once(7, &channels, kernel, bias, Path::FlagOff),
            train_once(7, &channels, kernel, bias, Path::Reference),
            &format!("flag off: kernel {kernel}, bias {bias}"),
        );
    }
}

/// The recomputing layer that GPU devices take, run here on flex: the same outputs, gradients
/// and running statistics as the plain ops, with and without burn's gradient checkpointing;
/// and the CPU kernels under checkpointing too.
#[test]
fn recomputing_layer_equals_the_reference_in_training_with_gradients() {
    for (channels, kernel, bias) in [
        (&[4, 2, 5][..], 3, false),
        (&[4, 2, 5][..], 1, true),
        (&[6][..], 3, false),
    ] {
        let reference = || train_once(7, channels, kernel, bias, Path::Reference);
        for path in [
            Path::Recompute,
            Path::RecomputeCheckpointed,
            Path::FusedCheckpointed,
        ] {
            assert_same(
                train_once(7, channels, kernel, bias, path),
                reference(),
                &format!("{path:?}: {channels:?}, kernel {kernel}, bias {bias}"),
            );
        }
    }
}

/// Mixed precision through burn's autodiff: the output, every gradient and the running
/// statistics within 2 % (of the largest value) of the f32 reference, and not equal to the f32
/// fused result (the bf16 products really ran).
#[test]
fn bf16_layer_is_within_two_percent_of_the_reference_with_gradients() {
    for (kernel, bias) in [(3, false), (1, true)] {
        let channels = [20, 9, 5];
        let what = format!("bf16, kernel {kernel}, bias {bias}");
        let bf16 = train_once_in(Precision::Bf16, 7, &channels, kernel, bias, Path::Fused);
        let f32 = train_once(7, &channels, kernel, bias, Path::Fused);
        let reference = train_once(7, &channels, kernel, bias, Path::Reference);
        let mut differs = false;
        for (((name, a), (_, b)), (_, f)) in bf16
            .tensors
            .into_iter()
            .zip(reference.tensors)
            .zip(f32.tensors)
        {
            let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-3);
            let d = max_abs_diff(a.clone(), b);
            assert!(
                d <= 2e-2 * scale,
                "{what}: {name} differs by {d} (scale {scale})"
            );
            differs |= max_abs_diff(a, f) > 0.0;
        }
        assert!(
            differs,
            "{what}: equal to the f32 kernels, so bf16 did not run"
        );
    }
}

#[test]
fn more_inputs_than_one_call_takes_are_grouped() {
    let channels = vec![1; logdense::model::fused::MAX_INPUTS + 4];
    assert_same(
        train_once(9, &channels, 3, false, Path::Fused),
        train_once(9, &channels, 3, false, Path::Reference),
        "33 inputs",
    );
}

#[test]
fn fused_layer_equals_the_reference_in_inference() {
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(8);
    let (bn, conv) = layer(7, 5, 3, true, &device);
    // A training call moves the running statistics off 0 / 1 first.
    let before = kernel_runs();
    let _ = bn_relu_conv(inputs(&[3, 4], &device), &bn, &conv, true);
    assert_eq!(
        runs_since(before).conv_forward,
        1,
        "the training call ran fused"
    );
    let (bn, conv) = (bn.valid(), conv.valid());
    let xs: Vec<Tensor<4>> = inputs(&[3, 4], &Device::flex());
    assert!(logdense::model::fused::conv_supported(&xs, &conv));
    let before = kernel_runs();
    let fused = bn_relu_conv(xs.clone(), &bn, &conv, true);
    assert_eq!(
        runs_since(before).conv_forward,
        1,
        "the inference call ran fused"
    );
    let before = kernel_runs();
    let flag_off = bn_relu_conv(xs.clone(), &bn, &conv, false);
    assert_eq!(
        runs_since(before),
        KernelRuns::default(),
        "flag off ran fused"
    );
    let reference = reference_bn_relu_conv(xs, &bn, &conv);
    let d = max_abs_diff(fused, reference.clone());
    assert!(d < 1e-4, "inference outputs differ by {d}");
    let d = max_abs_diff(flag_off, reference);
    assert!(d < 1e-6, "flag off: inference outputs differ by {d}");
}

/// One training step of a classification head (BN-ReLU, global average pool, linear) along
/// `path`, checking that the fused kernels ran exactly when they should: the fused path is one
/// BN-ReLU-1x1 convolution to the classes, then the average.
fn head_once(seed: u64, channels: &[usize], path: Path) -> Outcome {
    use burn::nn::LinearConfig;
    use logdense::model::fused::{bn_relu_pool_linear, reference_bn_relu_pool_linear};
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(seed);
    let (cin, classes) = (channels.iter().sum(), 4);
    let (bn, _) = layer(cin, classes, 1, false, &device);
    let linear = LinearConfig::new(cin, classes).init(&device);
    let xs = inputs(channels, &device);
    let probe = Tensor::<2>::random([3, classes], Distribution::Normal(0.0, 1.0), &device);
    let before = kernel_runs();
    let out = match path {
        Path::Fused => bn_relu_pool_linear(xs.clone(), &bn, &linear, true),
        Path::FlagOff => bn_relu_pool_linear(xs.clone(), &bn, &linear, false),
        Path::Reference => reference_bn_relu_pool_linear(xs.clone(), &bn, &linear),
        other => panic!("{other:?} is not a path of the head test"),
    };
    let grads = (out.clone() * probe).sum().backward();
    assert_runs(before, path, CONV_RUN);
    let flat2 = |t: Tensor<2>| t.clone().reshape([t.shape().num_elements()]);
    let mut tensors = vec![("logits".to_string(), flat2(out.detach()).inner())];
    for (j, x) in xs.iter().enumerate() {
        let g = x.grad(&grads).expect("input gradient");
        tensors.push((
            format!("input {j} gradient"),
            g.clone().reshape([g.shape().num_elements()]),
        ));
    }
    let grad = |t: Tensor<1>, what: &str| t.grad(&grads).unwrap_or_else(|| panic!("{what}"));
    tensors.push(("gamma gradient".into(), grad(bn.gamma.val(), "gamma")));
    tensors.push(("beta gradient".into(), grad(bn.beta.val(), "beta")));
    let w = linear.weight.val().grad(&grads).expect("weight");
    tensors.push((
        "weight gradient".into(),
        w.clone().reshape([w.shape().num_elements()]),
    ));
    let b = linear.bias.as_ref().expect("a bias");
    tensors.push(("bias gradient".into(), grad(b.val(), "bias")));
    tensors.push(("running mean".into(), bn.running_mean.value().inner()));
    tensors.push(("running var".into(), bn.running_var.value().inner()));
    Outcome { tensors }
}

#[test]
fn fused_head_equals_the_reference_in_training_with_gradients() {
    let channels = [4, 2, 5];
    assert_same(
        head_once(11, &channels, Path::Fused),
        head_once(11, &channels, Path::Reference),
        "head",
    );
    assert_same(
        head_once(11, &channels, Path::FlagOff),
        head_once(11, &channels, Path::Reference),
        "flag off: head",
    );
}

/// One training step of an up transition's BN-ReLU-3x3 stride-2 transposed convolution,
/// through the fused path (1x1 convolution and overlap-add) or burn's own operations, checking
/// that the fused kernels ran exactly when they should.
fn deconv_once(seed: u64, size: (usize, usize), path: Path) -> Outcome {
    use burn::nn::conv::ConvTranspose2dConfig;
    use logdense::model::fused::{bn_relu_deconv, reference_bn_relu_deconv};
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(seed);
    let (cin, cout) = (5, 3);
    let (bn, _) = layer(cin, 1, 1, false, &device);
    let deconv = ConvTranspose2dConfig::new([cin, cout], [3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_padding_out([1, 1])
        .with_bias(false)
        .init(&device);
    let x = Tensor::<4>::random(
        [2, cin, size.0, size.1],
        Distribution::Normal(0.3, 1.2),
        &device,
    )
    .require_grad();
    let probe = Tensor::<4>::random(
        [2, cout, 2 * size.0, 2 * size.1],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    assert!(logdense::model::fused::deconv_supported(&x, &deconv));
    let before = kernel_runs();
    let out = match path {
        Path::Fused => bn_relu_deconv(x.clone(), &bn, &deconv, true),
        Path::FlagOff => bn_relu_deconv(x.clone(), &bn, &deconv, false),
        Path::Reference => reference_bn_relu_deconv(x.clone(), &bn, &deconv),
        other => panic!("{other:?} is not a path of the transposed-convolution test"),
    };
    assert_eq!(out.dims(), [2, cout, 2 * size.0, 2 * size.1]);
    let flat = |t: Tensor<4>| t.clone().reshape([t.shape().num_elements()]).inner();
    let grads = (out.clone() * probe).sum().backward();
    let resample = KernelRuns {
        resample_forward: 1,
        resample_backward: 1,
        ..CONV_RUN
    };
    assert_runs(before, path, resample);
    let tensors = vec![
        ("output".to_string(), flat(out.detach())),
        (
            "input gradient".into(),
            flat(x.grad(&grads).expect("input")),
        ),
        (
            "gamma gradient".into(),
            bn.gamma.val().grad(&grads).expect("gamma"),
        ),
        (
            "beta gradient".into(),
            bn.beta.val().grad(&grads).expect("beta"),
        ),
        (
            "weight gradient".into(),
            flat(deconv.weight.val().grad(&grads).expect("weight")),
        ),
        ("running mean".into(), bn.running_mean.value().inner()),
        ("running var".into(), bn.running_var.value().inner()),
    ];
    Outcome { tensors }
}

#[test]
fn fused_up_transition_equals_the_transposed_convolution() {
    // Square, rectangular and 1-pixel-wide inputs (the overlap-add's edges).
    for size in [(4, 4), (3, 5), (1, 2)] {
        assert_same(
            deconv_once(11, size, Path::Fused),
            deconv_once(11, size, Path::Reference),
            &format!("input {size:?}"),
        );
        assert_same(
            deconv_once(11, size, Path::FlagOff),
            deconv_once(11, size, Path::Reference),
            &format!("flag off: input {size:?}"),
        );
    }
}

#[test]
fn fused_average_pool_equals_burns_with_its_gradient() {
    use burn::tensor::module::avg_pool2d;
    use burn::tensor::ops::AvgPoolOptions;
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(12);
    // Odd sizes: the last row and column are dropped, and get no gradient.
    for (h, w) in [(6, 8), (7, 5)] {
        let x = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
        let probe = Tensor::<4>::random([2, 3, h / 2, w / 2], Distribution::Default, &device);
        let run = |path: Path| {
            let x = x.clone().detach().require_grad();
            let before = kernel_runs();
            let y = match path {
                Path::Fused => logdense::model::fused::avg_pool2(x.clone(), true),
                Path::FlagOff => logdense::model::fused::avg_pool2(x.clone(), false),
                Path::Reference => avg_pool2d(x.clone(), AvgPoolOptions::new([2, 2])),
                other => panic!("{other:?} is not a path of the pool test"),
            };
            let g = (y.clone() * probe.clone()).sum().backward();
            let pool = KernelRuns {
                resample_forward: 1,
                resample_backward: 1,
                ..KernelRuns::default()
            };
            assert_runs(before, path, pool);
            (y.inner(), x.grad(&g).expect("input gradient"))
        };
        let ((y1, g1), (y2, g2)) = (run(Path::Fused), run(Path::Reference));
        assert_eq!(y1.dims(), [2, 3, h / 2, w / 2]);
        assert!(max_abs_diff(y1, y2.clone()) < 1e-6, "{h}x{w} output");
        assert!(max_abs_diff(g1, g2.clone()) < 1e-6, "{h}x{w} gradient");
        let (y3, g3) = run(Path::FlagOff);
        assert!(max_abs_diff(y3, y2) < 1e-6, "{h}x{w} output, flag off");
        assert!(max_abs_diff(g3, g2) < 1e-6, "{h}x{w} gradient, flag off");
    }
}

/// A whole FC network built with the fused option and without: `fused_active` says which one
/// runs the kernels, the kernels run only in the first, both give the same outputs and input
/// gradients, and their records (checkpoints) are interchangeable.
#[test]
fn the_network_option_chooses_the_path_and_leaves_the_weights_alone() {
    use logdense::graph::{NetSpec, Stem};
    use logdense::model::network::NetOptions;
    use logdense::SparseDenseNet;
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(13);
    let spec = NetSpec {
        blocks: vec![2, 2, 2],
        growth: 4,
        stem: Stem::cifar(8),
        input: [3, 16, 16],
        ..NetSpec::fc_log_densenet_103(8)
    };
    let fused = SparseDenseNet::new_with(&spec, &NetOptions::default(), &device).unwrap();
    assert!(fused.fused_requested() && fused.fused_active());
    let plain = SparseDenseNet::new_with(
        &spec,
        &NetOptions {
            fused: false,
            ..NetOptions::default()
        },
        &device,
    )
    .unwrap()
    .load_record(fused.clone().into_record());
    assert!(!plain.fused_requested() && !plain.fused_active());
    assert_eq!(plain.flat_weights(), fused.flat_weights());
    assert!(plain.clone().with_fused(true).fused_active());
    assert!(SparseDenseNet::new(&spec, 0.0, &device)
        .unwrap()
        .fused_active());
    let image = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
    let run = |model: &SparseDenseNet| {
        let x = image.clone().require_grad();
        let before = kernel_runs();
        // Every head enters the loss, so that every fused step gets its backward.
        let heads = model.forward_heads(x.clone());
        let loss = heads
            .iter()
            .map(|h| (h.clone() * h.clone()).sum())
            .reduce(|a, b| a + b)
            .expect("heads");
        let out = heads.last().expect("a final head").clone();
        let grads = loss.backward();
        let grad = x.grad(&grads).expect("input gradient");
        (out.inner(), grad, runs_since(before))
    };
    let (out_f, grad_f, runs_f) = run(&fused);
    let (out_p, grad_p, runs_p) = run(&plain);
    assert_eq!(
        runs_p,
        KernelRuns::default(),
        "the plain network ran fused kernels"
    );
    // Layers, down transitions (conv and average pool), up transitions (conv and overlap-add)
    // and the segmentation heads all ran fused, forward and backward.
    assert!(runs_f.conv_forward > 0 && runs_f.conv_backward == runs_f.conv_forward);
    assert!(runs_f.resample_forward > 0 && runs_f.resample_backward == runs_f.resample_forward);
    let scale = out_p.clone().abs().max().into_scalar::<f32>().max(1.0);
    let d = max_abs_diff(out_f, out_p);
    assert!(d < 1e-4 * scale, "outputs differ by {d} (scale {scale})");
    let scale = grad_p.clone().abs().max().into_scalar::<f32>().max(1.0);
    let d = max_abs_diff(grad_f, grad_p);
    assert!(
        d < 1e-3 * scale,
        "input gradients differ by {d} (scale {scale})"
    );
}

/// The kernel choice is a model option: two networks built with different precisions run in
/// one process, interleaved, and each computes what it would alone (bf16 differs from f32, and
/// f32 equals the plain burn ops), with no process-wide switch between them.
#[test]
fn two_models_with_different_kernels_run_side_by_side() {
    use logdense::{NetOptions, SparseDenseNet};
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let spec = logdense::model::presets::preset("ld-v1-2-4").unwrap();
    let device = Device::flex();
    let options = |precision| NetOptions {
        precision,
        ..NetOptions::default()
    };
    let f32_model = SparseDenseNet::new_with(&spec, &options(Precision::F32), &device).unwrap();
    assert_eq!(f32_model.fused.kernels.precision, Precision::F32);
    // The precision is an option of the built network...
    let built_bf16 = SparseDenseNet::new_with(&spec, &options(Precision::Bf16), &device).unwrap();
    let bf16_kernels = built_bf16.fused;
    assert_eq!(
        bf16_kernels.kernels.precision,
        logdense::model::fused::effective_precision(Precision::Bf16)
    );
    // ... and the same weights run on either kernels.
    let bf16_model = f32_model.clone().with_fused(bf16_kernels);
    device.seed(4);
    let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let alone_f32 = f32_model.forward(x.clone());
    let alone_bf16 = bf16_model.forward(x.clone());
    // Interleaved: each model's calls carry its own kernels.
    let mixed_bf16 = bf16_model.forward(x.clone());
    let mixed_f32 = f32_model.forward(x.clone());
    let plain = f32_model.clone().with_fused(false).forward(x);
    let diff = |a: Tensor<4>, b: Tensor<4>| (a - b).abs().max().into_scalar::<f32>();
    assert_eq!(diff(alone_f32.clone(), mixed_f32.clone()), 0.0);
    assert_eq!(diff(alone_bf16.clone(), mixed_bf16), 0.0);
    assert!(
        diff(mixed_f32.clone(), plain) < 1e-4,
        "f32 fused against plain ops"
    );
    if bf16_model.fused.kernels.precision == Precision::Bf16 {
        let scale = mixed_f32.clone().abs().max().into_scalar::<f32>();
        let d = diff(alone_bf16, mixed_f32);
        assert!(
            d > 0.0 && d < 2e-2 * scale,
            "bf16 against f32 differs by {d} (scale {scale})"
        );
    } else {
        println!("skipped: bf16 against f32 (this CPU runs bf16 as f32)");
    }
}
