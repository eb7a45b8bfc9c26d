//! Checkpoints that survive crashes: one file holding the training state (JSON), the model and
//! the optimiser (burnpack bytes), written to a temporary file, synced, then renamed over the
//! previous checkpoint, so a kill at any moment leaves either the old or the new one whole.

use crate::SparseDenseNet;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"LDCKPT01";

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
    pub seed: u64,
    /// Normalisation statistics of the training set, for eval and predict.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub class_names: Vec<String>,
    /// Wall time spent in finished epochs, summed over resumes.
    pub wall_s: f64,
    /// The stage the next epoch belongs to (see [`crate::engine::Stage`]).
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
pub struct Checkpoint {
    pub state: TrainState,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u64).to_le_bytes());
    out.extend_from_slice(part);
}

impl Checkpoint {
    /// Writes atomically: `path.tmp`, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = MAGIC.to_vec();
        put(&mut bytes, &serde_json::to_vec(&self.state)?);
        put(&mut bytes, &self.model);
        put(&mut bytes, &self.optimizer);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(&bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            bail!(
                "{} is not a logdense checkpoint (bad magic)",
                path.display()
            );
        }
        let mut at = MAGIC.len();
        let mut take = |what: &str| -> Result<Vec<u8>> {
            let len_end = at + 8;
            if bytes.len() < len_end {
                bail!(
                    "checkpoint {} is truncated (in the {what} length)",
                    path.display()
                );
            }
            let len = u64::from_le_bytes(bytes[at..len_end].try_into().expect("8 bytes")) as usize;
            let end = len_end.checked_add(len).filter(|&e| e <= bytes.len());
            let Some(end) = end else {
                bail!("checkpoint {} is truncated (in the {what})", path.display())
            };
            at = end;
            Ok(bytes[len_end..end].to_vec())
        };
        let state = serde_json::from_slice(&take("state")?)
            .with_context(|| format!("checkpoint {}: bad state", path.display()))?;
        let model = take("model")?;
        let optimizer = take("optimizer")?;
        Ok(Checkpoint {
            state,
            model,
            optimizer,
        })
    }
}

/// Writes the run directory's checkpoint (atomically, see [`Checkpoint::save`]).
pub fn save_checkpoint(
    dir: &Path,
    model: &SparseDenseNet,
    optim: &ModuleOptimizer,
    state: &TrainState,
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
    }
    .save(&dir.join(CHECKPOINT_FILE))
}

/// Restores model weights, optimiser state and training state from a checkpoint file.
pub fn load_checkpoint(
    path: &Path,
    model: SparseDenseNet,
    optim: ModuleOptimizer,
) -> Result<(SparseDenseNet, ModuleOptimizer, TrainState)> {
    let ck = Checkpoint::load(path)?;
    let record = burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(ck.model))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let optim = optim
        .from_bytes(Bytes::from_bytes_vec(ck.optimizer))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((model.load_record(record), optim, ck.state))
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
        Checkpoint {
            state: state.clone(),
            model: vec![1, 2, 3],
            optimizer: vec![9; 10],
        }
        .save(&path)
        .unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(
            (back.state, back.model, back.optimizer),
            (state, vec![1, 2, 3], vec![9; 10])
        );
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
}
