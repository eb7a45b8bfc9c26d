//! The model layer: burn layers and their fused CPU kernels, the network that executes any
//! graph of [`logdense_graph`], and the registry of named networks.

pub mod fused;
pub mod layers;
pub mod network;
pub mod presets;
pub mod tensor_ops;
