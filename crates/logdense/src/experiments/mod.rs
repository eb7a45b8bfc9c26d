//! The experiments layer: the paper's grids as plans of training runs, benchmarks of training
//! and inference steps, and the device check against the CPU.

pub mod bench;
pub mod parity;
pub mod reproduce;
