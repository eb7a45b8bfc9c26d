//! Cross-device agreement: the same network, weights and batch on two devices, one
//! training-mode forward and backward and one SGD step, compared head by head, in the input
//! gradient, in every parameter's gradient and in the weights (and batch-norm statistics)
//! after the step.
//!
//! `logdense check-device --device vulkan` runs it against the CPU. The CPU reference takes the
//! fused CPU kernels; the GPU copy takes its own fused path (the recomputing layer) or, with
//! `fused` off, burn's plain ops, so agreement holds each against the other.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use logdense_graph::NetSpec;

use crate::SparseDenseNet;

/// Both sides compute in f32 but sum in other orders (and a GPU's matrix units may use reduced
/// internal precision). A wrong tap, a missed input or a stale weight gives errors of order one.
pub const TOLERANCE: f32 = 2e-2;

/// The presets `check-device` compares by default, with the input side (used by the fully
/// convolutional ones) and the batch.
pub const DEFAULT_CASES: &[(&str, usize, usize)] = &[
    ("ld-v1-12-16", 32, 4),
    ("ld-v2-12-16", 32, 4),
    ("densenet-bc-40-12", 32, 4),
    ("fc-ld-scenes", 64, 2),
    ("fc-densenet-56", 64, 2),
];

/// One network per preset family at a small size (16 x 16 images, batch 2): what a software
/// GPU device (Mesa's lavapipe, which compiles every kernel with LLVM) checks in minutes.
pub const SMALL_CASES: &[(&str, usize, usize)] = &[
    ("ld-v1-2-4", 16, 2),
    ("ld-v2-2-4", 16, 2),
    ("densenet-bc-10-4", 16, 2),
    ("loglog-2-4", 16, 2),
    ("fc-ld-small", 16, 2),
];

/// A small case as the check runs it: the preset at `side` x `side` whatever its task.
pub fn small_case_spec(name: &str, side: usize) -> Result<NetSpec, String> {
    let mut spec = crate::model::presets::preset(name)?;
    spec.input = [spec.input[0], side, side];
    spec.build().map_err(|e| e.to_string())?;
    Ok(spec)
}

/// A preset as the check runs it: classification presets at their own input, fully
/// convolutional ones at `side` x `side` (their 224x224 would only make the check slow).
pub fn case_spec(name: &str, side: usize) -> Result<NetSpec, String> {
    let mut spec = crate::model::presets::preset(name)?;
    if spec.task() == logdense_graph::TaskKind::Segment {
        spec.input = [spec.input[0], side, side];
    }
    Ok(spec)
}

/// How far `other`'s results are from `reference`'s, each as the largest absolute difference
/// over the largest magnitude of the reference tensor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agreement {
    /// The compared preset's name.
    pub preset: String,
    /// The worst over all heads (auxiliary and final).
    pub heads_rel_error: f32,
    /// The relative error of the loss's gradient with respect to the input image.
    pub input_grad_rel_error: f32,
    /// The relative error of every parameter's gradient, all parameters concatenated in
    /// visiting order (relative to the largest gradient element).
    pub param_grads_rel_error: f32,
    /// The relative error of every weight and batch-norm statistic after one SGD step
    /// (learning rate 0.1) from those gradients and that forward pass's statistics.
    pub step_rel_error: f32,
}

impl Agreement {
    /// Whether both the heads and the input gradient agree to below `tolerance`.
    pub fn within(&self, tolerance: f32) -> bool {
        self.heads_rel_error < tolerance
            && self.input_grad_rel_error < tolerance
            && self.param_grads_rel_error < tolerance
            && self.step_rel_error < tolerance
    }
}

/// Largest absolute difference relative to the largest magnitude of `reference`.
pub fn relative_error(reference: &[f32], other: &[f32]) -> f32 {
    assert_eq!(
        reference.len(),
        other.len(),
        "compared tensors differ in size"
    );
    let scale = reference
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    let diff = reference
        .iter()
        .zip(other)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// What one training step computes on a device.
struct Step {
    heads: Vec<Vec<f32>>,
    input_grad: Vec<f32>,
    param_grads: Vec<f32>,
    stepped: Vec<f32>,
}

/// Every parameter's gradient, flattened in visiting order.
struct CollectGrads<'a>(&'a burn::optim::GradientsParams, Vec<f32>);

impl burn::module::ModuleVisitor for CollectGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Some(g) = self.0.get::<D>(param.id) {
            self.1.extend(values(g));
        }
    }
}

/// Every head's output and the gradients of a fixed, non-uniform weighting of the heads (so
/// that each gradient element differs), then one SGD step, for `net` on `device` (an autodiff
/// device).
fn forward_backward(net: &SparseDenseNet, input: &TensorData, device: &Device) -> Step {
    let x = Tensor::<4>::from_data(input.clone(), device).require_grad();
    let heads = net.forward_heads(x.clone());
    let loss = heads
        .iter()
        .map(|head| {
            let n = head.shape().num_elements() as i64;
            let probe = Tensor::<1, Int>::arange(0..n, device)
                .float()
                .mul_scalar(0.37)
                .sin()
                .reshape(head.shape());
            (head.clone() * probe).sum()
        })
        .reduce(|a, b| a + b)
        .expect("a network has at least one head");
    let grads = loss.backward();
    let gx = x.grad(&grads).expect("the input requires a gradient");
    let params = burn::optim::GradientsParams::from_grads(grads, net);
    let mut collect = CollectGrads(&params, Vec::new());
    net.visit(&mut collect);
    let param_grads = collect.1;
    let mut sgd = burn::optim::SgdConfig::new().init();
    let stepped = sgd.step(0.1, net.clone(), params).flat_weights();
    Step {
        heads: heads.into_iter().map(values).collect(),
        input_grad: values(gx),
        param_grads,
        stepped,
    }
}

/// How the copy [`compare_devices`] checks runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyOptions {
    /// Added to every weight of the copy: 0 for a real comparison; tests use it to show the
    /// measure sees a difference.
    pub perturb: f32,
    /// Whether the copy may take its device's fused path (the CPU kernels on the CPU, the
    /// recomputing layer on a GPU); off, it runs burn's plain ops. The reference always may.
    pub fused: bool,
    /// Whether the copy trains with gradient checkpointing
    /// ([`crate::training::engine::autodiff_device`]).
    pub checkpointing: bool,
}

impl Default for CopyOptions {
    /// An exact copy, fused where it can be, without checkpointing.
    fn default() -> Self {
        CopyOptions {
            perturb: 0.0,
            fused: true,
            checkpointing: false,
        }
    }
}

/// Builds `spec` on `reference` (seeded), copies the same weights to `other`, and compares
/// one training-mode step on a seeded batch.
pub fn compare_devices(
    name: &str,
    spec: &NetSpec,
    batch: usize,
    reference: &Device,
    other: &Device,
    copy_options: &CopyOptions,
) -> anyhow::Result<Agreement> {
    let reference = reference.clone().autodiff();
    let other = crate::training::engine::autodiff_device(other, copy_options.checkpointing);
    reference.seed(11);
    let net = SparseDenseNet::new(spec, 0.0, &reference)?;
    // The weights travel as a checkpoint's do (record bytes, loaded into a network built on
    // the other device), which is how a run trained on one device is evaluated on another.
    let bytes = net
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the model: {e}"))?;
    let record = burn::store::ModuleRecord::from_bytes(bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the model back: {e}"))?;
    let options = crate::model::network::NetOptions {
        fused: copy_options.fused,
        ..Default::default()
    };
    let mut copy = SparseDenseNet::new_with(spec, &options, &other)?.load_record(record);
    if copy_options.perturb != 0.0 {
        copy = copy.map(&mut Perturb(copy_options.perturb));
    }
    let [c, h, w] = spec.input;
    let input = Tensor::<4>::random([batch, c, h, w], Distribution::Normal(0.0, 1.0), &reference)
        .into_data();
    let a = forward_backward(&net, &input, &reference);
    let b = forward_backward(&copy, &input, &other);
    anyhow::ensure!(
        a.heads.len() == b.heads.len(),
        "{name}: {} heads on one device, {} on the other",
        a.heads.len(),
        b.heads.len()
    );
    anyhow::ensure!(
        a.param_grads.len() == b.param_grads.len() && !a.param_grads.is_empty(),
        "{name}: {} gradient values on one device, {} on the other",
        a.param_grads.len(),
        b.param_grads.len()
    );
    let heads_rel_error = a
        .heads
        .iter()
        .zip(&b.heads)
        .map(|(a, b)| relative_error(a, b))
        .fold(0f32, f32::max);
    Ok(Agreement {
        preset: name.to_string(),
        heads_rel_error,
        input_grad_rel_error: relative_error(&a.input_grad, &b.input_grad),
        param_grads_rel_error: relative_error(&a.param_grads, &b.param_grads),
        step_rel_error: relative_error(&a.stepped, &b.stepped),
    })
}

/// Adds a constant to every float parameter.
struct Perturb(f32);

impl burn::module::ModuleMapper for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        // A new leaf that requires a gradient, as a loaded weight is.
        param.map(|t| t.add_scalar(self.0).detach().require_grad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> NetSpec {
        NetSpec {
            input: [1, 8, 8],
            blocks: vec![2, 2],
            ..crate::model::presets::preset("ld-v1-12-16").unwrap()
        }
    }

    #[test]
    fn a_device_agrees_with_itself_and_a_perturbed_copy_does_not() {
        let cpu = Device::flex();
        let same =
            compare_devices("small", &small(), 2, &cpu, &cpu, &CopyOptions::default()).unwrap();
        assert!(same.heads_rel_error < 1e-6, "{same:?}");
        assert!(same.input_grad_rel_error < 1e-6, "{same:?}");
        assert!(same.param_grads_rel_error < 1e-6, "{same:?}");
        assert!(same.step_rel_error < 1e-6, "{same:?}");
        let perturbed = CopyOptions {
            perturb: 0.05,
            ..CopyOptions::default()
        };
        let off = compare_devices("small", &small(), 2, &cpu, &cpu, &perturbed).unwrap();
        assert!(!off.within(TOLERANCE), "{off:?}");
    }

    /// burn's gradient checkpointing recomputes the plain path's memory-bound ops in the
    /// backward pass: kept or recomputed, the plain path agrees with the fused reference, and
    /// the fused kernels run checkpointed too.
    #[test]
    fn gradient_checkpointing_changes_no_value() {
        let cpu = Device::flex();
        let plain = CopyOptions {
            fused: false,
            ..CopyOptions::default()
        };
        let checkpointed = CopyOptions {
            checkpointing: true,
            ..plain
        };
        for (name, side) in [("ld-v1-2-4", 16), ("ld-v2-2-4", 16), ("fc-ld-small", 16)] {
            let spec = small_case_spec(name, side).unwrap();
            let kept = compare_devices(name, &spec, 2, &cpu, &cpu, &plain).unwrap();
            let recomputed = compare_devices(name, &spec, 2, &cpu, &cpu, &checkpointed).unwrap();
            assert!(recomputed.within(1e-4), "{recomputed:?}");
            // The fused CPU kernels run under checkpointing too, and agree.
            let fused_checkpointed = CopyOptions {
                fused: true,
                ..checkpointed
            };
            let fused = compare_devices(name, &spec, 2, &cpu, &cpu, &fused_checkpointed).unwrap();
            assert!(fused.within(1e-4), "{fused:?}");
            // Keeping and recomputing agree with the reference alike. (Their errors are not
            // compared for equality: burn's RNG is process-global, so a test running beside
            // this one can draw between the two builds and change their weights.)
            assert!(kept.within(1e-4), "{kept:?}");
        }
    }

    #[test]
    fn relative_error_scales_by_the_reference() {
        assert_eq!(relative_error(&[2.0, -4.0], &[2.0, -3.0]), 0.25);
        assert_eq!(relative_error(&[0.0], &[0.0]), 0.0);
    }
}
