//! Byte-level entry points for the fuzz targets (`fuzz/`, run with `cargo fuzz`) and for the
//! stable test that replays their corpus (`tests/fuzz_corpus.rs`): a checkpoint file, the
//! TOML config of either command, a pattern file and the state-dict readers of `import`, fed to the same functions the CLI uses. None may panic. The
//! data formats' entry points are in [`logdense_data::fuzzing`].

use anyhow::Result;

use crate::training::checkpoint::{Checkpoint, CheckpointError};
use crate::training::config::TaskConfig;
use logdense_graph::TaskKind;

/// A checkpoint file's bytes.
pub fn checkpoint(data: &[u8]) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::from_bytes(data)
}

/// A config given to `train --config`: TOML (invalid UTF-8 replaced), parsed and validated as
/// [`TaskConfig::load`] does.
pub fn train_config(data: &[u8]) -> Result<TaskConfig> {
    TaskConfig::from_toml(&String::from_utf8_lossy(data), TaskKind::Classify)
}

/// A config given to `segment train --config`: as [`train_config`], with segmentation the
/// task of a file that names neither a task nor a preset.
pub fn seg_config(data: &[u8]) -> Result<TaskConfig> {
    TaskConfig::from_toml(&String::from_utf8_lossy(data), TaskKind::Segment)
}

/// A pattern file (`--pattern-file`): JSON (invalid UTF-8 replaced), parsed and checked as
/// [`logdense_graph::PatternFile::load`] does.
pub fn pattern_file(data: &[u8]) -> Result<logdense_graph::PatternFile> {
    logdense_graph::PatternFile::parse(&String::from_utf8_lossy(data), "input")
        .map_err(anyhow::Error::msg)
}

/// A safetensors state dict (`import --safetensors`), parsed as the import reads it.
pub fn safetensors_state_dict(data: &[u8]) -> Result<crate::interop::files::StateDictFile> {
    crate::interop::files::parse_safetensors(data, std::path::Path::new("input"))
        .map_err(anyhow::Error::from)
}

/// A PyTorch `.pt`/`.pth` state dict (`import --pytorch`), read as the import reads it: from
/// a file (the reader opens the archive's entries), written to a temporary one first.
pub fn pytorch_state_dict(data: &[u8]) -> Result<crate::interop::files::StateDictFile> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "logdense-fuzz-{}-{}.pth",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, data)?;
    let result = crate::interop::files::read_pytorch(&path);
    let _ = std::fs::remove_file(&path);
    result.map_err(anyhow::Error::from)
}
