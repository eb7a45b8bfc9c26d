//! # logdense
//!
//! Log-DenseNet and its family of sparse-skip networks on burn: layers, networks built from
//! [`logdense_graph`]'s graphs, presets, training and evaluation.

pub mod layers;
pub mod network;

pub use logdense_graph as graph;
pub use network::SparseDenseNet;
