//! Byte-level entry points for the fuzz targets (`fuzz/`, run with `cargo fuzz`) and for the
//! stable test that replays their corpus (`tests/fuzz_corpus.rs`): a checkpoint file and the
//! two TOML configs, fed to the same functions the CLI uses. None may panic. The data formats'
//! entry points are in [`logdense_data::fuzzing`].

use anyhow::Result;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::config::TrainConfig;
use crate::segment::SegConfig;

/// A checkpoint file's bytes.
pub fn checkpoint(data: &[u8]) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::from_bytes(data)
}

/// A classification config (`--config`): TOML (invalid UTF-8 replaced), parsed and validated
/// as `TrainConfig::load` does.
pub fn train_config(data: &[u8]) -> Result<TrainConfig> {
    let text = String::from_utf8_lossy(data);
    let cfg: TrainConfig = toml::from_str(&text)?;
    cfg.validate()?;
    Ok(cfg)
}

/// A segmentation config (`segment --config`): TOML (invalid UTF-8 replaced), parsed and
/// validated as `SegConfig::load` does.
pub fn seg_config(data: &[u8]) -> Result<SegConfig> {
    let text = String::from_utf8_lossy(data);
    let cfg: SegConfig = toml::from_str(&text)?;
    cfg.validate()?;
    Ok(cfg)
}
