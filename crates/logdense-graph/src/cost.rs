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

use crate::net::{NetGraph, Node, Op, Task};
use serde::{Deserialize, Serialize};

/// Costs of one node, block or network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    pub flops: u64,
    pub params: u64,
    /// Convolution and linear weights only (no batch norm, no biases).
    pub weight_params: u64,
    pub activation_bytes: u64,
    pub activation_bytes_shared: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.flops += o.flops;
        self.params += o.params;
        self.weight_params += o.weight_params;
        self.activation_bytes += o.activation_bytes;
        self.activation_bytes_shared += o.activation_bytes_shared;
    }
}

impl Cost {
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / 1e9
    }
}

/// A network's cost, in total and by block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub total: Cost,
    pub per_block: Vec<Cost>,
}

const BYTES_PER_FLOAT: u64 = 4;

fn area(size: (usize, usize)) -> u64 {
    (size.0 * size.1) as u64
}

/// BN-ReLU in front of a convolution: 2 parameters per channel; autograd keeps the ReLU output.
fn pre_activation(cin: u64, hw: u64) -> Cost {
    Cost {
        params: 2 * cin,
        activation_bytes: cin * hw * BYTES_PER_FLOAT,
        ..Cost::default()
    }
}

/// A k x k convolution evaluated at `hw` output positions.
fn conv(cin: u64, cout: u64, k: u64, hw: u64, bias: bool) -> Cost {
    let weights = cin * cout * k * k;
    Cost {
        flops: 2 * weights * hw,
        params: weights + if bias { cout } else { 0 },
        weight_params: weights,
        ..Cost::default()
    }
}

/// The cost of one node.
pub fn node_cost(node: &Node) -> Cost {
    let cin = node.in_channels as u64;
    let cout = node.channels as u64;
    let hw_in = area(node.in_size);
    let hw_out = area(node.size);
    let mut c = Cost::default();
    if node.inputs.len() > 1 {
        c.activation_bytes += cin * hw_in * BYTES_PER_FLOAT;
    }
    match node.op {
        Op::Input => return Cost::default(),
        Op::Stem {
            kernel,
            stride,
            max_pool,
        } => {
            let (h, w) = node.in_size;
            let k = kernel;
            let conv_out = |x: usize| (x + 2 * (k / 2)).saturating_sub(k) / stride + 1;
            let hw_conv = (conv_out(h) * conv_out(w)) as u64;
            c += conv(cin, cout, k as u64, hw_conv, false);
            if max_pool {
                c += pre_activation(cout, hw_conv);
                c.activation_bytes += cout * hw_conv * BYTES_PER_FLOAT;
            }
        }
        Op::Layer { bottleneck, .. } => {
            c += pre_activation(cin, hw_in);
            match bottleneck {
                None => c += conv(cin, cout, 3, hw_out, false),
                Some(w) => {
                    let w = w as u64;
                    c += conv(cin, w, 1, hw_in, false);
                    c.activation_bytes += w * hw_in * BYTES_PER_FLOAT;
                    c += pre_activation(w, hw_in);
                    c += conv(w, cout, 3, hw_out, false);
                }
            }
        }
        Op::Down { .. } => {
            c += pre_activation(cin, hw_in);
            c += conv(cin, cout, 1, hw_in, false);
        }
        Op::Up {
            pre_activation: pre,
            ..
        } => {
            if pre {
                c += pre_activation(cin, hw_in);
            }
            // A transposed convolution does k*k*cin*cout MACs per *input* position.
            c += conv(cin, cout, 3, hw_in, false);
        }
        Op::Head { task, .. } => {
            c += pre_activation(cin, hw_in);
            c += match task {
                Task::Classify => conv(cin, cout, 1, 1, true),
                Task::Segment => conv(cin, cout, 1, hw_in, true),
            };
        }
    }
    // A classifier's output is one vector of logits (global pooling removes the resolution).
    let output = match node.op {
        Op::Head {
            task: Task::Classify,
            ..
        } => cout * BYTES_PER_FLOAT,
        _ => cout * hw_out * BYTES_PER_FLOAT,
    };
    c.activation_bytes += output;
    c.activation_bytes_shared += output;
    c
}

impl NetGraph {
    /// FLOPs, parameters and activation memory, in total and per block.
    pub fn cost(&self) -> CostReport {
        let mut per_block = vec![Cost::default(); self.blocks.len()];
        let mut total = Cost::default();
        for node in &self.nodes {
            let c = node_cost(node);
            per_block[node.block] += c;
            total += c;
        }
        CostReport { total, per_block }
    }
}
