//! Checkpoints that survive crashes: one file holding the training state (JSON), the model and
//! the optimiser (burnpack bytes) and the run's metric rows (JSON), written to a temporary
//! file, synced, then renamed over the previous checkpoint, so a kill at any moment leaves
//! either the old or the new one whole, and an epoch's weights and metrics are committed by
//! one rename. A CRC-32 over the whole content detects corruption anywhere in the file.
//!
//! Format (little-endian): the magic `LDCKPT02`, the CRC-32 (4 bytes) of everything after it,
//! then four parts, each a u64 length and its bytes: state, model, optimiser, metrics. Files
//! of the first format (`LDCKPT01`: no checksum, no metrics) still load.

use crate::SparseDenseNet;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"LDCKPT02";
/// The first format: no checksum, three parts.
const MAGIC_V1: &[u8; 8] = b"LDCKPT01";

/// The run directory's checkpoint file.
pub const CHECKPOINT_FILE: &str = "checkpoint.ldck";

/// Where training stands after an epoch. The data order, augmentation and dropout of every
/// epoch are functions of (seed, epoch), so this is all the random state there is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The network exactly as built (input shape and classes fixed by the data).
    pub spec: logdense_graph::NetSpec,
    /// Epochs completed (main schedule and final-only epochs together).
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub iteration: usize,
    /// The run's seed, from which every epoch's data order, augmentation and dropout derive.
    pub seed: u64,
    /// Normalisation statistics of the training set, for eval and predict.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training images, for eval and predict.
    pub std: Vec<f32>,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Wall time spent in finished epochs, summed over resumes.
    pub wall_s: f64,
    /// The stage the next epoch belongs to (see [`crate::training::engine::Stage`]).
    #[serde(default)]
    pub stage: usize,
    /// Epochs of that stage already finished.
    #[serde(default)]
    pub stage_epoch: usize,
}

impl TrainState {
    /// The state before the first epoch.
    pub fn fresh(
        spec: logdense_graph::NetSpec,
        seed: u64,
        mean: Vec<f32>,
        std: Vec<f32>,
        class_names: Vec<String>,
    ) -> Self {
        TrainState {
            spec,
            epochs_done: 0,
            iteration: 0,
            seed,
            mean,
            std,
            class_names,
            wall_s: 0.0,
            stage: 0,
            stage_epoch: 0,
        }
    }
}

/// The pieces of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The training state: spec, progress, statistics, classes.
    pub state: TrainState,
    /// The model's record, as burn's binary recorder writes it.
    pub model: Vec<u8>,
    /// The optimiser's record (momentum and other running state).
    pub optimizer: Vec<u8>,
    /// The run's metric rows up to this epoch, as the JSON array `metrics.json` holds (empty in
    /// checkpoints of the first format).
    pub metrics: Vec<u8>,
}

fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_le_bytes());
    out.extend_from_slice(part);
}

/// Why a checkpoint's bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CheckpointError {
    #[error("not a logdense checkpoint (bad magic)")]
    /// The file does not start with a logdense checkpoint's magic bytes.
    BadMagic,
    #[error("truncated (in the {0})")]
    /// The file ends inside the named part.
    Truncated(&'static str),
    /// The CRC-32 over the file differs from the one it stores: corruption somewhere.
    #[error("corrupt: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// The CRC-32 the file stores.
        stored: u32,
        /// The CRC-32 of the bytes read.
        computed: u32,
    },
    #[error("corrupt: {0} bytes after the last part")]
    /// Bytes follow the last part.
    Trailing(usize),
    #[error("bad state: {0}")]
    /// The state part is not a valid training state.
    State(String),
}

impl Checkpoint {
    /// The file's bytes (see the module documentation for the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put(
            &mut body,
            &serde_json::to_vec(&self.state).expect("a state always serialises"),
        );
        put(&mut body, &self.model);
        put(&mut body, &self.optimizer);
        put(&mut body, &self.metrics);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Parses a checkpoint's bytes, checking the checksum; never panics, and allocates no more
    /// than the input's size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let magic = bytes.get(..MAGIC.len()).ok_or(CheckpointError::BadMagic)?;
        // The layout is read first, so that a short file is called truncated; then the
        // checksum finds corruption anywhere else.
        let (mut at, parts, stored) = if magic == MAGIC {
            let stored = bytes
                .get(8..12)
                .ok_or(CheckpointError::Truncated("checksum"))?;
            (
                12,
                4,
                Some(u32::from_le_bytes(stored.try_into().expect("4 bytes"))),
            )
        } else if magic == MAGIC_V1 {
            (8, 3, None)
        } else {
            return Err(CheckpointError::BadMagic);
        };
        let mut take = |what: &'static str| -> Result<&[u8], CheckpointError> {
            let len = bytes
                .get(at..at + 8)
                .ok_or(CheckpointError::Truncated(what))?;
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
            let start = at + 8;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| start.checked_add(l))
                .filter(|&e| e <= bytes.len())
                .ok_or(CheckpointError::Truncated(what))?;
            at = end;
            Ok(&bytes[start..end])
        };
        let state = take("state")?;
        let model = take("model")?;
        let optimizer = take("optimizer")?;
        let metrics = if parts == 4 { take("metrics")? } else { &[] };
        if at != bytes.len() {
            return Err(CheckpointError::Trailing(bytes.len() - at));
        }
        if let Some(stored) = stored {
            let computed = crc32fast::hash(&bytes[12..]);
            if stored != computed {
                return Err(CheckpointError::Checksum { stored, computed });
            }
        }
        let state =
            serde_json::from_slice(state).map_err(|e| CheckpointError::State(e.to_string()))?;
        let (model, optimizer, metrics) = (model.to_vec(), optimizer.to_vec(), metrics.to_vec());
        Ok(Checkpoint {
            state,
            model,
            optimizer,
            metrics,
        })
    }

    /// Writes atomically: `path.tmp`, fsync, rename; a failed write removes the partial
    /// temporary file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let written = (|| -> Result<()> {
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            f.write_all(&self.to_bytes())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.sync_all()
                .with_context(|| format!("cannot sync {}", tmp.display()))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }

    /// Reads and checks a checkpoint file; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", path.display()))
    }
}

/// Writes the run directory's checkpoint (atomically, see [`Checkpoint::save`]).
pub fn save_checkpoint(
    dir: &Path,
    model: &SparseDenseNet,
    optim: &ModuleOptimizer,
    state: &TrainState,
    metrics: Vec<u8>,
) -> Result<()> {
    let model_bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the model: {e}"))?;
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the optimiser: {e}"))?;
    Checkpoint {
        state: state.clone(),
        model: model_bytes.to_vec(),
        optimizer: optim_bytes.to_vec(),
        metrics,
    }
    .save(&dir.join(CHECKPOINT_FILE))
}

/// Restores model weights, optimiser state and training state from a checkpoint file, and
/// returns its metric rows (JSON). The checkpoint must hold the network `model` was built
/// from (a run resumed with other data or another network is refused, naming both).
pub fn load_checkpoint(
    path: &Path,
    model: SparseDenseNet,
    optim: ModuleOptimizer,
) -> Result<(SparseDenseNet, ModuleOptimizer, TrainState, Vec<u8>)> {
    let ck = Checkpoint::load(path)?;
    if ck.state.spec != model.graph.spec {
        return Err(crate::error::invalid(format!(
            "checkpoint {} holds another network than this run builds (data or model changed?): \
             input {:?} with {} classes in the checkpoint, {:?} with {} now",
            path.display(),
            ck.state.spec.input,
            ck.state.spec.classes,
            model.graph.spec.input,
            model.graph.spec.classes
        )));
    }
    let record = burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(ck.model))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let optim = optim
        .from_bytes(Bytes::from_bytes_vec(ck.optimizer))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((model.load_record(record), optim, ck.state, ck.metrics))
}

/// A model and its training state loaded from a run directory's checkpoint.
pub fn load_trained(dir: &Path, device: &Device) -> Result<(SparseDenseNet, TrainState)> {
    let ckpt_path = dir.join(CHECKPOINT_FILE);
    let ck = Checkpoint::load(&ckpt_path)?;
    let model = SparseDenseNet::new(&ck.state.spec, 0.0, device)?;
    let record = burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(ck.model))
        .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt_path.display()))?;
    Ok((model.load_record(record), ck.state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("ldck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoint.ldck");
        let state = TrainState {
            spec: logdense_graph::NetSpec::v1(logdense_graph::Pattern::Log, 2, 4, 1),
            epochs_done: 3,
            iteration: 42,
            seed: 7,
            mean: vec![0.5],
            std: vec![0.25],
            class_names: vec!["a".into()],
            wall_s: 1.5,
            stage: 1,
            stage_epoch: 2,
        };
        let ck = Checkpoint {
            state: state.clone(),
            model: vec![1, 2, 3],
            optimizer: vec![9; 10],
            metrics: b"[]".to_vec(),
        };
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(
            (back.state, back.model, back.optimizer),
            (state, vec![1, 2, 3], vec![9; 10])
        );
        assert_eq!(back.metrics, b"[]");
        assert!(!dir.join("checkpoint.tmp").exists());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let e = Checkpoint::load(&path).err().unwrap().to_string();
        assert!(
            e.contains("truncated") && e.contains("checkpoint.ldck"),
            "{e}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Checkpoint::load(&path)
            .err()
            .unwrap()
            .to_string()
            .contains("bad magic"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            state: TrainState::fresh(
                logdense_graph::NetSpec::v1(logdense_graph::Pattern::Log, 2, 4, 1),
                3,
                vec![0.5],
                vec![0.25],
                vec!["a".into(), "b".into()],
            ),
            model: (0..200u8).collect(),
            optimizer: vec![7; 64],
            metrics: br#"[{"epoch":1}]"#.to_vec(),
        }
    }

    #[test]
    fn corruption_anywhere_is_detected_and_named() {
        let bytes = sample().to_bytes();
        assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), sample());
        // Every single flipped byte, in any part (the lengths included), is refused.
        for k in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[k] ^= 0x40;
            let e = Checkpoint::from_bytes(&bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    CheckpointError::Checksum { .. }
                        | CheckpointError::Truncated(_)
                        | CheckpointError::Trailing(_)
                        | CheckpointError::BadMagic
                ),
                "byte {k}: {e}"
            );
        }
        // 64 flipped bytes in the middle of the model: the checksum says so.
        let mut bad = bytes.clone();
        let mid = bytes.len() / 2;
        for b in &mut bad[mid - 32..mid + 32] {
            *b = !*b;
        }
        let e = Checkpoint::from_bytes(&bad).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        // Bytes appended after the last part.
        let mut long = bytes.clone();
        long.extend_from_slice(b"xx");
        assert_eq!(
            Checkpoint::from_bytes(&long).unwrap_err(),
            CheckpointError::Trailing(2)
        );
        // Every prefix is refused without a panic.
        for n in 0..bytes.len() {
            assert!(Checkpoint::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn first_format_checkpoints_still_load() {
        let ck = sample();
        let mut v1 = MAGIC_V1.to_vec();
        put(&mut v1, &serde_json::to_vec(&ck.state).unwrap());
        put(&mut v1, &ck.model);
        put(&mut v1, &ck.optimizer);
        let back = Checkpoint::from_bytes(&v1).unwrap();
        assert_eq!(
            (back.state, back.model, back.optimizer),
            (ck.state, ck.model, ck.optimizer)
        );
        assert!(back.metrics.is_empty());
    }

    #[test]
    fn a_huge_length_is_truncation_not_an_allocation() {
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Checkpoint::from_bytes(&bytes).unwrap_err(),
            CheckpointError::Truncated("state")
        );
    }
}
