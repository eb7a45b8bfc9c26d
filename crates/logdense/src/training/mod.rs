//! The training layer: one configuration shape for every task, the engine's loop, a run in a
//! directory, the tasks (classification, segmentation), checkpoints, metric reports and the
//! memory check.

pub mod checkpoint;
pub mod classify;
pub mod config;
pub mod engine;
pub mod report;
pub mod resources;
pub mod run;
pub mod segment;
