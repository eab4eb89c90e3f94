//! Training's checkpoints: the model with Adam's moments, to resume a run exactly.
//!
//! The format (files, sidecar, atomic writes, checks on load) is [`crate::checkpoint`]'s;
//! this module adds the optimizer's state, `step-00000123.adam.safetensors` (Adam's
//! moments, `0.<name>` first, `1.<name>` second), and re-exports the format's items so
//! that a training program finds everything under one path.

use std::fs;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use dfdx::tensor::safetensors::SafeDtype;

pub use crate::checkpoint::{
    checkpoint_tensors, read_meta, remove_leftovers, resolve_checkpoint, write_atomically, CheckpointError,
    CheckpointFile, CheckpointMeta, CheckpointMetrics, FileDigest, RngState, TrainingDescription,
    CHECKPOINT_FORMAT,
};
use crate::checkpoint::{load_weights, publish, stem, write_tensors, OPTIMIZER_STATE, WEIGHTS};
use crate::model::ModelDescription;
use crate::train::Adam;

/// Saves `model`, `adam` and `meta` as a new checkpoint in `dir` (created if needed) and
/// points `latest` at it. The tensor files are written first, then the sidecar with their
/// sizes and checksums ([`CheckpointMeta::files`]), then `latest`: a checkpoint exists
/// once its sidecar does. Keeps the newest `keep` checkpoints (at least 1) and deletes
/// older ones and leftovers of interrupted writes ([`remove_leftovers`]). Returns the
/// sidecar's path.
pub fn save_checkpoint<E, D, M>(
    dir: &Path,
    model: &M,
    adam: &Adam<M>,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<PathBuf, CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D> + Clone,
{
    fs::create_dir_all(dir).map_err(|source| CheckpointError::Io { path: dir.to_path_buf(), source })?;
    let stem = stem(meta.step);
    let mut meta = meta.clone();
    meta.files = vec![write_tensors(&dir.join(format!("{stem}.{WEIGHTS}")), model)?];
    if let Some((m, v)) = &adam.moments {
        meta.files
            .push(write_tensors(&dir.join(format!("{stem}.{OPTIMIZER_STATE}")), &(m.clone(), v.clone()))?);
    }
    publish(dir, &meta, keep)
}

/// Loads the checkpoint at `path` into `model` (and Adam's state into `adam` when given),
/// after checking that it is of the same architecture, dtype and parameter shapes
/// ([`load_weights`], which inference uses alone).
pub fn load_checkpoint<E, D, M>(
    path: &Path,
    expected: &ModelDescription,
    model: &mut M,
    adam: Option<&mut Adam<M>>,
) -> Result<CheckpointMeta, CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D> + Clone,
{
    let (sidecar, meta) = load_weights(path, expected, model)?;
    if let Some(adam) = adam {
        let state = sidecar.with_extension("").with_extension(OPTIMIZER_STATE);
        if state.exists() {
            let mut moments = (model.clone(), model.clone());
            moments
                .load_safetensors(&state)
                .map_err(|e| CheckpointError::Weights { path: state.clone(), message: format!("{e:?}") })?;
            adam.moments = Some(moments);
        } else {
            adam.moments = None;
        }
        adam.step = meta.step;
    }
    Ok(meta)
}
