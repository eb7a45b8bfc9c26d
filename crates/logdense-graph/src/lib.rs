#![warn(missing_docs)]
//! # logdense-graph
//!
//! The tensor-free half of logdense: where skip connections go and what they cost.
//!
//! - [`pattern`]: every connection pattern of the paper, defined once, as input sets.
//! - [`net`]: network shapes (V1, V2, DenseNet-BC, FC-Log-DenseNet, FC-DenseNet) as a graph
//!   of tensors that the burn networks execute.
//! - [`distance`]: backpropagation distances and the MBD.
//! - [`cost`]: FLOPs, parameters and activation memory.
//! - [`design`]: search for input sets that minimise the MBD under an input budget, and
//!   [`pattern_file`]: such designs as files that every network takes like a pattern.
//! - [`paper`]: the paper's published figures, for side-by-side reports and tests.

pub mod cost;
pub mod design;
pub mod distance;
pub mod error;
pub mod net;
pub mod paper;
pub mod pattern;
pub mod pattern_file;

pub use cost::{Cost, CostReport};
pub use distance::{DistanceSummary, GraphDistances, TransitionHops};
pub use error::SpecError;
pub use net::{
    Arch, NetGraph, NetSpec, Node, NodeId, Op, Pool, Stem, TaskKind, MAX_CHANNELS, MAX_CONNECTIONS,
    MAX_LAYERS, MAX_SIDE,
};
pub use pattern::Pattern;
pub use pattern_file::PatternFile;
