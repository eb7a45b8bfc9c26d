//! Builds a Log-DenseNet from its connection pattern, prints its cost, and trains one step.
//! Run: `cargo run --release -p logdense --example train_step`.

use burn::prelude::*;
use burn::tensor::Distribution;
use logdense::graph::{NetSpec, Pattern};
use logdense::training::engine::{self, head_weights, Optimizer, Rule};
use logdense::SparseDenseNet;

fn main() -> anyhow::Result<()> {
    // Three blocks of 6 layers, growth 12, CIFAR-shaped: layer i reads layers i-1, i-2, i-4, ...
    let spec = NetSpec {
        input: [3, 32, 32],
        classes: 10,
        ..NetSpec::v1(Pattern::Log, 6, 12, 3)
    };
    let cost = spec.build()?.cost();
    println!(
        "{} parameters, {:.4} GFLOPs per image",
        cost.total.params,
        cost.total.gflops()
    );

    let device = Device::flex().autodiff();
    let model = SparseDenseNet::new(&spec, 0.0, &device)?;
    let rule = Rule::Sgd {
        momentum: 0.9,
        nesterov: true,
    };
    let mut optim = Optimizer {
        rule,
        weight_decay: 1e-4,
    }
    .build();
    let images = Tensor::<4>::random([8, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new((0..8i64).collect(), [8]), &device);
    // Deep supervision: half the loss on the final head, half over the block-end heads.
    let weights = head_weights(model.graph.heads().len(), false);
    let (model, loss) = engine::train_step(model, &mut optim, 0.1, images, |heads| {
        logdense::training::classify::classify_loss(heads, &labels, &weights).loss
    })?;
    println!(
        "loss {loss:.4} after one step of {} parameters",
        model.trainable_params()
    );
    Ok(())
}
