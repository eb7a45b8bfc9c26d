//! The analytic cost model: FLOPs, parameters and training activation memory.
//!
//! Conventions (SPEC.md): FLOPs are 2 x the multiply-accumulates of convolutions and linear
//! layers; batch norm, ReLU and pooling are free. Convolutions carry no bias (each is followed
//! or preceded by batch norm) except prediction heads; batch norm has 2 parameters per
//! channel (scale and shift; running statistics are buffers, not parameters).
//!
//! Activation memory is counted at batch 1 in f32 for two implementations:
//! - `naive` (what autograd keeps in a plain framework): per node, the concatenated input when
//!   there is more than one input tensor, the ReLU output that the convolution saves, the
//!   bottleneck's intermediate tensors, and the node's output. This grows as O(L^2) for
//!   DenseNet, which is why DenseNets need custom memory sharing.
//! - `shared` (concat-free, recomputing BN-ReLU in the backward pass): only node outputs.

use crate::net::{NetGraph, Node, Op, TaskKind};
use serde::{Deserialize, Serialize};

/// Costs of one node, block or network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Floating-point operations of one forward pass at batch 1: 2 x the multiply-accumulates
    /// of convolutions and linear layers.
    pub flops: u64,
    /// Trainable parameters: weights, prediction-head biases and batch norm scales and shifts.
    pub params: u64,
    /// Convolution and linear weights only (no batch norm, no biases).
    pub weight_params: u64,
    /// Bytes of f32 activations a plain autograd keeps for the backward pass at batch 1
    /// (concatenated inputs, ReLU outputs, bottleneck intermediates and outputs).
    pub activation_bytes: u64,
    /// Bytes of f32 activations kept at batch 1 by a concat-free implementation that
    /// recomputes BN-ReLU in the backward pass: node outputs only.
    pub activation_bytes_shared: u64,
}

impl Cost {
    /// The sum, or `None` if a field overflows.
    pub fn checked_add(self, o: Cost) -> Option<Cost> {
        Some(Cost {
            flops: self.flops.checked_add(o.flops)?,
            params: self.params.checked_add(o.params)?,
            weight_params: self.weight_params.checked_add(o.weight_params)?,
            activation_bytes: self.activation_bytes.checked_add(o.activation_bytes)?,
            activation_bytes_shared: self
                .activation_bytes_shared
                .checked_add(o.activation_bytes_shared)?,
        })
    }
}

impl Cost {
    /// [`Cost::flops`] in units of 10^9, as the paper's tables print them.
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / 1e9
    }
}

/// A network's cost, in total and by block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// The whole network's cost.
    pub total: Cost,
    /// Cost of each block, in block order; a transition counts towards the block after it.
    pub per_block: Vec<Cost>,
}

const BYTES_PER_FLOAT: u64 = 4;

/// The product of `factors`, or `None` on overflow.
fn mul(factors: &[u64]) -> Option<u64> {
    factors.iter().try_fold(1u64, |a, &f| a.checked_mul(f))
}

fn area(size: (usize, usize)) -> Option<u64> {
    mul(&[size.0 as u64, size.1 as u64])
}

/// BN-ReLU in front of a convolution: 2 parameters per channel; autograd keeps the ReLU output.
fn pre_activation(cin: u64, hw: u64) -> Option<Cost> {
    Some(Cost {
        params: mul(&[2, cin])?,
        activation_bytes: mul(&[cin, hw, BYTES_PER_FLOAT])?,
        ..Cost::default()
    })
}

/// A k x k convolution evaluated at `hw` output positions.
fn conv(cin: u64, cout: u64, k: u64, hw: u64, bias: bool) -> Option<Cost> {
    let weights = mul(&[cin, cout, k, k])?;
    Some(Cost {
        flops: mul(&[2, weights, hw])?,
        params: weights.checked_add(if bias { cout } else { 0 })?,
        weight_params: weights,
        ..Cost::default()
    })
}

/// The cost of one node (`None` if it overflows 64 bits; [`NetSpec::build`](crate::NetSpec::build)
/// refuses such networks, so a built graph's nodes never do).
pub fn node_cost(node: &Node) -> Option<Cost> {
    let cin = node.in_channels as u64;
    let cout = node.channels as u64;
    let hw_in = area(node.in_size)?;
    let hw_out = area(node.size)?;
    let mut c = Cost::default();
    let add = |c: Cost, o: Option<Cost>| c.checked_add(o?);
    let bytes = |factors: &[u64]| -> Option<Cost> {
        Some(Cost {
            activation_bytes: mul(factors)?,
            ..Cost::default()
        })
    };
    if node.inputs.len() > 1 {
        c = add(c, bytes(&[cin, hw_in, BYTES_PER_FLOAT]))?;
    }
    match node.op {
        Op::Input => return Some(Cost::default()),
        Op::Stem {
            kernel,
            stride,
            max_pool,
        } => {
            let (h, w) = node.in_size;
            let k = kernel;
            let conv_out = |x: usize| (x + 2 * (k / 2)).saturating_sub(k) / stride + 1;
            let hw_conv = mul(&[conv_out(h) as u64, conv_out(w) as u64])?;
            c = add(c, conv(cin, cout, k as u64, hw_conv, false))?;
            if max_pool {
                c = add(c, pre_activation(cout, hw_conv))?;
                c = add(c, bytes(&[cout, hw_conv, BYTES_PER_FLOAT]))?;
            }
        }
        Op::Layer { bottleneck, .. } => {
            c = add(c, pre_activation(cin, hw_in))?;
            match bottleneck {
                None => c = add(c, conv(cin, cout, 3, hw_out, false))?,
                Some(w) => {
                    let w = w as u64;
                    c = add(c, conv(cin, w, 1, hw_in, false))?;
                    c = add(c, bytes(&[w, hw_in, BYTES_PER_FLOAT]))?;
                    c = add(c, pre_activation(w, hw_in))?;
                    c = add(c, conv(w, cout, 3, hw_out, false))?;
                }
            }
        }
        Op::Down { .. } => {
            c = add(c, pre_activation(cin, hw_in))?;
            c = add(c, conv(cin, cout, 1, hw_in, false))?;
        }
        Op::Up {
            pre_activation: pre,
            ..
        } => {
            if pre {
                c = add(c, pre_activation(cin, hw_in))?;
            }
            // A transposed convolution does k*k*cin*cout MACs per *input* position.
            c = add(c, conv(cin, cout, 3, hw_in, false))?;
        }
        Op::Head { task, .. } => {
            c = add(c, pre_activation(cin, hw_in))?;
            c = add(
                c,
                match task {
                    TaskKind::Classify => conv(cin, cout, 1, 1, true),
                    TaskKind::Segment => conv(cin, cout, 1, hw_in, true),
                },
            )?;
        }
    }
    // A classifier's output is one vector of logits (global pooling removes the resolution).
    let output = match node.op {
        Op::Head {
            task: TaskKind::Classify,
            ..
        } => mul(&[cout, BYTES_PER_FLOAT])?,
        _ => mul(&[cout, hw_out, BYTES_PER_FLOAT])?,
    };
    c.checked_add(Cost {
        activation_bytes: output,
        activation_bytes_shared: output,
        ..Cost::default()
    })
}

impl NetGraph {
    /// FLOPs, parameters and activation memory, in total and per block.
    pub fn cost(&self) -> CostReport {
        self.try_cost()
            .expect("NetSpec::build refuses networks whose cost overflows 64 bits")
    }

    /// [`NetGraph::cost`] with every sum and product checked: `None` on overflow.
    pub fn try_cost(&self) -> Option<CostReport> {
        let mut per_block = vec![Cost::default(); self.blocks.len()];
        let mut total = Cost::default();
        for node in &self.nodes {
            let c = node_cost(node)?;
            per_block[node.block] = per_block[node.block].checked_add(c)?;
            total = total.checked_add(c)?;
        }
        Some(CostReport { total, per_block })
    }
}
