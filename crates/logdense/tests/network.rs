//! Built networks against the cost model, and gradients against finite differences.

use burn::prelude::*;
use logdense::graph::{NetSpec, Pattern, Stem};
use logdense::model::presets::preset;
use logdense::SparseDenseNet;

/// burn's random generator is global to the process: tests that build networks take this lock,
/// so that the seeded gradient check gets the same network whatever runs beside it.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Parameters and FLOPs counted from the burn modules equal the analytic cost model's.
fn check(name: &str, spec: NetSpec) {
    let _rng = rng_lock();
    let device = Device::flex();
    let model = SparseDenseNet::new(&spec, 0.0, &device).unwrap();
    let cost = spec.build().unwrap().cost().total;
    assert_eq!(
        model.trainable_params() as u64,
        cost.params,
        "{name}: parameters"
    );
    assert_eq!(model.measured_flops(&device), cost.flops, "{name}: FLOPs");
}

#[test]
fn classification_presets_match_the_cost_model() {
    check("ld-v1-12-16", preset("ld-v1-12-16").unwrap());
    check("ld-v2-12-16", preset("ld-v2-12-16").unwrap());
    check("densenet-bc-40-12", preset("densenet-bc-40-12").unwrap());
    check("fashion", preset("fashion").unwrap());
    check(
        "nearest-half-and-log-6-8",
        preset("nearest-half-and-log-6-8").unwrap(),
    );
    let mut loglog = preset("loglog-8-8").unwrap();
    loglog.hub_multiplier = 3;
    check("loglog-8-8 hub x3", loglog);
}

/// A designed pattern (at LOG's budget, over the network's global indices) runs like a
/// built-in one: the built network matches the cost model, and its input sets are the file's.
#[test]
fn a_designed_pattern_matches_the_cost_model_and_is_the_one_that_runs() {
    use logdense::graph::design::{design_with, InputBudget};
    let base = preset("ld-v1-6-8").unwrap();
    let layers = base.num_layers();
    let d = design_with(layers, 5, InputBudget::Log, 0).unwrap();
    let spec = NetSpec {
        custom_sets: Some(d.sets.clone()),
        ..base.clone()
    };
    let graph = spec.build().unwrap();
    assert_eq!(
        graph.layer_input_sets(),
        d.sets,
        "the network reads the file's sets"
    );
    assert_ne!(
        graph.layer_input_sets(),
        base.build().unwrap().layer_input_sets(),
        "the designed sets replaced LOG's"
    );
    check("ld-v1-6-8 designed at LOG's budget", spec);
}

#[test]
fn imagenet_stem_and_bottleneck_match_the_cost_model() {
    // ld-v2-169's shape at a small input keeps the test fast.
    let spec = NetSpec {
        input: [3, 64, 64],
        classes: 10,
        blocks: vec![2, 3, 4, 2],
        ..preset("ld-v2-169").unwrap()
    };
    assert_eq!(spec.stem, Stem::imagenet(64));
    check("ld-v2 imagenet-shaped", spec);
}

#[test]
fn fully_convolutional_networks_match_the_cost_model() {
    check(
        "fc-densenet-56 @64",
        NetSpec {
            input: [3, 64, 64],
            ..preset("fc-densenet-56").unwrap()
        },
    );
    check(
        "fc-ld-103 @32",
        NetSpec {
            input: [3, 32, 32],
            ..preset("fc-ld-103").unwrap()
        },
    );
    // The fashion-scenes networks at the size they train at (the wide and slim ones'
    // transitions narrow layers to the growth of the block they enter; the slim one has no
    // auxiliary head at full resolution).
    for name in ["fc-ld-scenes", "fc-ld-scenes-wide", "fc-ld-scenes-slim"] {
        check(
            &format!("{name} @64"),
            NetSpec {
                input: [3, 64, 64],
                classes: 11,
                ..preset(name).unwrap()
            },
        );
    }
    // A stride-2 stem: every block at half resolution, the final logits upsampled.
    check(
        "fc-ld-scenes stride-2 stem @64",
        NetSpec {
            input: [3, 64, 64],
            classes: 11,
            stem: Stem {
                stride: 2,
                ..Stem::cifar(24)
            },
            ..preset("fc-ld-scenes").unwrap()
        },
    );
    // Per-block growth rates: wider low-resolution blocks.
    check(
        "fc-ld-scenes block growth @32",
        NetSpec {
            input: [3, 32, 32],
            classes: 11,
            block_growth: vec![8, 8, 12, 16, 24, 16, 12, 8, 8],
            ..preset("fc-ld-scenes").unwrap()
        },
    );
    // An odd size exercises the crop after the transposed convolutions.
    check(
        "fc-ld small @36",
        NetSpec {
            blocks: vec![2, 2, 2, 2, 2],
            growth: 4,
            stem: Stem::cifar(8),
            input: [3, 36, 36],
            ..NetSpec::fc_log_densenet_103(8)
        },
    );
}

#[test]
fn head_outputs_have_the_right_shapes() {
    let _rng = rng_lock();
    let device = Device::flex();
    let spec = NetSpec {
        blocks: vec![2, 2, 2, 2, 2],
        growth: 4,
        stem: Stem::cifar(8),
        input: [3, 32, 32],
        ..NetSpec::fc_log_densenet_103(8)
    };
    let model = SparseDenseNet::new(&spec, 0.0, &device).unwrap();
    let heads = model.forward_heads(Tensor::zeros([2, 3, 32, 32], &device));
    let shapes: Vec<[usize; 4]> = heads.iter().map(|h| h.dims()).collect();
    // Auxiliary predictions at 32, 16, 8 (bottleneck), 16, and the final one at 32.
    assert_eq!(
        shapes,
        vec![
            [2, 11, 32, 32],
            [2, 11, 16, 16],
            [2, 11, 8, 8],
            [2, 11, 16, 16],
            [2, 11, 32, 32]
        ]
    );
}

#[test]
fn a_strided_stem_predicts_at_the_image_resolution() {
    let _rng = rng_lock();
    let device = Device::flex();
    let spec = NetSpec {
        blocks: vec![2, 2, 2],
        growth: 4,
        stem: Stem {
            stride: 2,
            ..Stem::cifar(8)
        },
        input: [3, 32, 32],
        ..NetSpec::fc_log_densenet_103(8)
    };
    let graph = spec.build().unwrap();
    let last = *graph.heads().last().unwrap();
    assert_eq!(
        (graph.nodes[last].in_size, graph.nodes[last].size),
        ((16, 16), (32, 32))
    );
    let model = SparseDenseNet::new(&spec, 0.0, &device).unwrap();
    // Auxiliary heads stay at their blocks' scales; the final one comes back to the image's
    // size, also for an odd runtime size the network was not built for.
    for side in [32usize, 27] {
        let image = Tensor::<4>::random(
            [2, 3, side, side],
            burn::tensor::Distribution::Default,
            &device,
        );
        let shapes: Vec<[usize; 4]> = model
            .forward_heads(image)
            .iter()
            .map(|h| h.dims())
            .collect();
        let half = side.div_ceil(2);
        assert_eq!(
            shapes,
            vec![
                [2, 11, half, half],
                [2, 11, half.div_ceil(2), half.div_ceil(2)],
                [2, 11, side, side]
            ],
            "input {side}"
        );
    }
    // Upsampled logits of a constant map stay that constant (bilinear weights sum to 1).
    let flat = Tensor::<4>::ones([1, 11, 4, 4], &device);
    let up = logdense::model::network::upsample_logits(flat, (8, 8));
    let values: Vec<f32> = up.into_data().try_to_vec::<f32>().unwrap();
    assert!(values.iter().all(|&v| (v - 1.0).abs() < 1e-6));
}

/// The loss of a tiny V1 network on a fixed batch, as a function of the input pixels.
fn loss_of(model: &SparseDenseNet, x: Tensor<4>, targets: Tensor<1, Int>) -> Tensor<1> {
    let heads = model.forward_heads(x);
    let mut total: Option<Tensor<1>> = None;
    for h in heads {
        let [n, c, _, _] = h.dims();
        let term = logdense::training::classify::cross_entropy(h.reshape([n, c]), targets.clone());
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total.unwrap()
}

#[test]
fn input_gradients_match_finite_differences() {
    let _rng = rng_lock();
    let device = Device::flex().autodiff();
    device.seed(3);
    let spec = NetSpec {
        input: [1, 8, 8],
        classes: 3,
        stem: Stem::cifar(4),
        ..NetSpec::v1(Pattern::Log, 2, 3, 2)
    };
    let model = SparseDenseNet::new(&spec, 0.0, &device).unwrap();
    let data: Vec<f32> = (0..4 * 64)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let x =
        Tensor::<4>::from_data(TensorData::new(data.clone(), [4, 1, 8, 8]), &device).require_grad();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 1], [4]), &device);
    let grads = loss_of(&model, x.clone(), targets.clone()).backward();
    let analytic: Vec<f32> = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let eps = 2e-3f32;
    let eval = |d: &[f32]| -> f64 {
        let t = Tensor::<4>::from_data(TensorData::new(d.to_vec(), [4, 1, 8, 8]), &device);
        loss_of(&model, t, targets.clone()).into_scalar::<f32>() as f64
    };
    let at = |k: usize, delta: f32| -> f64 {
        let mut moved = data.clone();
        moved[k] += delta;
        eval(&moved)
    };
    let centre = eval(&data);
    let (mut smooth, mut kinks) = (0, 0);
    for k in (0..data.len()).step_by(17) {
        let (plus, minus) = (at(k, eps), at(k, -eps));
        let central = (plus - minus) / (2.0 * eps as f64);
        let right = (plus - centre) / eps as f64;
        let left = (centre - minus) / eps as f64;
        let a = analytic[k] as f64;
        let scale = central.abs().max(a.abs()).max(1e-2);
        let close = |numeric: f64, tolerance: f64| (numeric - a).abs() / scale < tolerance;
        eprintln!(
            "pixel {k}: analytic {a:.6}, central {central:.6}, right {right:.6}, left {left:.6}"
        );
        // A ReLU whose input crosses zero within eps of this pixel is a kink: the loss is only
        // piecewise smooth there, its one-sided slopes differ, and the analytic gradient must
        // equal one of them (the side autodiff's ReLU mask picked), not their average.
        let kink = (right - left).abs() / scale > 0.05;
        if kink {
            assert!(
                close(right, 0.1) || close(left, 0.1),
                "pixel {k} (kink): analytic {a} is neither one-sided slope, right {right}, left {left}"
            );
            kinks += 1;
        } else {
            assert!(
                close(central, 0.05),
                "pixel {k}: analytic {a}, numeric {central}"
            );
            smooth += 1;
        }
    }
    assert!(
        smooth >= 10 && smooth + kinks >= 16,
        "{smooth} smooth pixels checked, {kinks} at kinks"
    );
}
