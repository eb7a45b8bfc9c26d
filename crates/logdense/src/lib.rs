//! # logdense
//!
//! Log-DenseNet and its family of sparse-skip networks on burn: layers, networks built from
//! [`logdense_graph`]'s graphs, presets, configuration, training, checkpoints and reports.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod fused;
pub mod layers;
pub mod network;
pub mod parity;
pub mod presets;
pub mod report;
pub mod segment;
pub mod train;

pub use logdense_data as data;
pub use logdense_graph as graph;
pub use network::SparseDenseNet;
