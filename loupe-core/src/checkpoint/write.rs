//! Writing a checkpoint: each file to a temporary name, flushed and renamed into place,
//! the sidecar after the tensor files, `latest` last; old checkpoints and the leftovers
//! of interrupted writes removed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use dfdx::tensor::safetensors::SafeDtype;

use super::error::{io, CheckpointError};
use super::meta::{stem, CheckpointFile, CheckpointMeta, OPTIMIZER_STATE, WEIGHTS};
use super::safetensors_io::write_streamed;

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let tmp = temporary_name(path);
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `tensors` to `path` (temporary file, fsync, rename) and returns its record for
/// [`CheckpointMeta::files`].
pub(crate) fn write_tensors<E: Dtype + SafeDtype, D: Device<E>, M: TensorCollection<E, D>>(
    path: &Path,
    tensors: &M,
) -> Result<CheckpointFile, CheckpointError> {
    let tmp = temporary_name(path);
    let digest = write_streamed(&tmp, tensors)
        .map_err(|e| CheckpointError::Write { path: tmp.clone(), message: e.to_string() })?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(CheckpointFile { name: path.file_name().unwrap_or_default().to_string_lossy().into_owned(), digest })
}

/// Completes the checkpoint of `meta.step` in `dir`, whose tensor files
/// ([`write_tensors`]) `meta.files` records: writes the sidecar, then points `latest` at
/// it, so that a checkpoint exists once its sidecar does. Keeps the newest `keep`
/// checkpoints (at least 1) and deletes older ones and leftovers of interrupted writes
/// ([`remove_leftovers`]). Returns the sidecar's path.
pub(crate) fn publish(dir: &Path, meta: &CheckpointMeta, keep: usize) -> Result<PathBuf, CheckpointError> {
    let stem = stem(meta.step);
    let sidecar = dir.join(format!("{stem}.json"));
    let json = serde_json::to_vec_pretty(meta)
        .map_err(|e| CheckpointError::Sidecar { path: sidecar.clone(), source: e })?;
    write_atomically(&sidecar, &json)?;
    write_atomically(&dir.join("latest"), stem.as_bytes())?;
    if let Ok(dir_handle) = fs::File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    prune(dir, keep.max(1))?;
    Ok(sidecar)
}

/// The file names in `dir`.
fn file_names(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    Ok(fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// The checkpoints in `dir` (the stems `step-XXXXXXXX` that have a sidecar), oldest first.
fn checkpoint_stems(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    let mut stems: Vec<String> = file_names(dir)?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .filter(|n| n.starts_with("step-"))
        .collect();
    stems.sort();
    Ok(stems)
}

/// Deletes all but the newest `keep` complete checkpoints (each sidecar first, so that
/// an interrupted deletion leaves unpaired tensor files, never a sidecar without them),
/// then [`remove_leftovers`].
fn prune(dir: &Path, keep: usize) -> Result<(), CheckpointError> {
    let stems = checkpoint_stems(dir)?;
    let old = stems.len().saturating_sub(keep);
    for stem in &stems[..old] {
        for extension in ["json", WEIGHTS, OPTIMIZER_STATE] {
            let _ = fs::remove_file(dir.join(format!("{stem}.{extension}")));
        }
    }
    remove_leftovers(dir).map(|_| ())
}

/// Removes what interrupted writes leave in a checkpoint directory: temporary files
/// (`*.tmp<pid>`) and tensor files whose step has no sidecar. Only the process that holds
/// the training directory may call this (another writer's files in progress look the
/// same). Returns the names removed.
pub fn remove_leftovers(dir: &Path) -> Result<Vec<String>, CheckpointError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let stems = checkpoint_stems(dir)?;
    let mut removed = Vec::new();
    for name in file_names(dir)? {
        let temporary =
            name.rsplit_once(".tmp").is_some_and(|(_, pid)| pid.chars().all(|c| c.is_ascii_digit()));
        let unpaired = name.starts_with("step-")
            && name.ends_with(".safetensors")
            && !stems
                .iter()
                .any(|stem| name.strip_prefix(stem.as_str()).is_some_and(|rest| rest.starts_with('.')));
        if temporary || unpaired {
            fs::remove_file(dir.join(&name)).map_err(io(&dir.join(&name)))?;
            removed.push(name);
        }
    }
    Ok(removed)
}
