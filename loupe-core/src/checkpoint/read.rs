//! Reading a checkpoint: finding its sidecar, checking its files against their recorded
//! sizes and checksums and its weights against a model, and loading the weights.

use std::fs;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use dfdx::tensor::safetensors::SafeDtype;

use super::error::{io, CheckpointError};
use super::meta::{CheckpointMeta, CHECKPOINT_FORMAT, OPTIMIZER_STATE, WEIGHTS};
use super::safetensors_io::{read_header, tensor_shapes, FileDigest};
use crate::model::ModelDescription;

/// Checks the tensor files `meta` records against their sizes and checksums.
fn verify_files(sidecar: &Path, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
    let dir = sidecar.parent().unwrap_or(Path::new("."));
    for file in &meta.files {
        let path = dir.join(&file.name);
        let corrupt = |problem: String| CheckpointError::Corrupt {
            path: path.clone(),
            sidecar: sidecar.to_path_buf(),
            problem,
        };
        let found = match FileDigest::of_file(&path) {
            Ok(found) => found,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(corrupt("missing".to_string())),
            Err(e) => return Err(CheckpointError::Io { path, source: e }),
        };
        if found.bytes != file.digest.bytes {
            return Err(corrupt(format!("{} bytes, expected {}", found.bytes, file.digest.bytes)));
        }
        if found.crc32c != file.digest.crc32c {
            return Err(corrupt(format!("CRC32C {:08x}, expected {:08x}", found.crc32c, file.digest.crc32c)));
        }
    }
    Ok(())
}

/// The sidecar a path designates: a checkpoint directory (its `latest`), or a sidecar.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.is_dir() {
        let latest = path.join("latest");
        if !latest.exists() {
            return Err(CheckpointError::NotFound { path: path.to_path_buf() });
        }
        let stem = fs::read_to_string(&latest).map_err(io(&latest))?;
        Ok(path.join(format!("{}.json", stem.trim())))
    } else if path.extension().is_some_and(|e| e == "json") {
        Ok(path.to_path_buf())
    } else {
        Err(CheckpointError::NotFound { path: path.to_path_buf() })
    }
}

/// Reads the sidecar of the checkpoint at `path` (directory or sidecar).
pub fn read_meta(path: &Path) -> Result<(PathBuf, CheckpointMeta), CheckpointError> {
    read_sidecar(path).map(|(sidecar, meta, _)| (sidecar, meta))
}

/// [`read_meta`], plus the description fields the sidecar records (one written before a
/// field of [`ModelDescription::ADDED_FIELDS`] existed lacks it).
fn read_sidecar(path: &Path) -> Result<(PathBuf, CheckpointMeta, Vec<String>), CheckpointError> {
    let sidecar = resolve_checkpoint(path)?;
    let text = fs::read(&sidecar).map_err(io(&sidecar))?;
    let sidecar_error = |e| CheckpointError::Sidecar { path: sidecar.clone(), source: e };
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(sidecar_error)?;
    let recorded = value["model"].as_object().map_or_else(Vec::new, |m| m.keys().cloned().collect());
    let meta: CheckpointMeta = serde_json::from_value(value).map_err(sidecar_error)?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(CheckpointError::Format { path: sidecar, found: meta.format });
    }
    Ok((sidecar, meta, recorded))
}

/// Loads the model weights of the checkpoint at `path` (directory or sidecar) into
/// `model`, after checking that they are of the same architecture, dtype and parameter
/// shapes and that its files are intact. The optimizer's state, when saved, is not read.
/// Returns the sidecar's path and what it records.
pub fn load_weights<E, D, M>(
    path: &Path,
    expected: &ModelDescription,
    model: &mut M,
) -> Result<(PathBuf, CheckpointMeta), CheckpointError>
where
    E: Dtype + SafeDtype,
    D: Device<E>,
    M: TensorCollection<E, D>,
{
    let (sidecar, meta, recorded) = read_sidecar(path)?;
    // A field the sidecar predates cannot be compared; the weights' shapes still are.
    let differences = meta.model.differences_in(expected, |field| {
        !ModelDescription::ADDED_FIELDS.contains(&field) || recorded.iter().any(|r| r == field)
    });
    if !differences.is_empty() {
        return Err(CheckpointError::Architecture {
            path: sidecar,
            found: meta.model.name.clone(),
            differences,
        });
    }
    let dtype = std::any::type_name::<E>().to_string();
    if meta.dtype != dtype {
        return Err(CheckpointError::Dtype { path: sidecar, found: meta.dtype, expected: dtype });
    }
    verify_files(&sidecar, &meta)?;
    let weights = sidecar.with_extension("").with_extension(WEIGHTS);
    check_shapes(&weights, model, "")?;
    model
        .load_safetensors(&weights)
        .map_err(|e| CheckpointError::Weights { path: weights.clone(), message: format!("{e:?}") })?;
    Ok((sidecar, meta))
}

/// Checks every parameter of `model` against the header of `path`, naming the first
/// missing or differently shaped one.
fn check_shapes<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    path: &Path,
    model: &M,
    prefix: &str,
) -> Result<(), CheckpointError> {
    let header = read_header(path)
        .map_err(|e| CheckpointError::Weights { path: path.to_path_buf(), message: e.to_string() })?;
    for (name, shape) in tensor_shapes(model) {
        let name = format!("{prefix}{name}");
        match header.get(&name) {
            Some(t) if t.shape == shape => {}
            Some(t) => {
                return Err(CheckpointError::Parameter {
                    path: path.to_path_buf(),
                    name,
                    problem: format!("shape {:?} in the file, {:?} in the model", t.shape, shape),
                })
            }
            None => {
                return Err(CheckpointError::Parameter {
                    path: path.to_path_buf(),
                    name,
                    problem: "missing from the file".to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Every tensor of the checkpoint at `path` (directory or sidecar): `(name, dtype,
/// shape)`, the model's first, then the optimizer's state (Adam's moments, `0.<name>`,
/// `1.<name>`) when saved, prefixed `adam.`. Reads only the files' headers.
pub fn checkpoint_tensors(path: &Path) -> Result<Vec<(String, String, Vec<usize>)>, CheckpointError> {
    let sidecar = resolve_checkpoint(path)?;
    let stem = sidecar.with_extension("");
    let mut tensors = Vec::new();
    for (file, prefix) in
        [(stem.with_extension(WEIGHTS), ""), (stem.with_extension(OPTIMIZER_STATE), "adam.")]
    {
        if prefix == "adam." && !file.exists() {
            continue;
        }
        let header = read_header(&file)
            .map_err(|e| CheckpointError::Weights { path: file.clone(), message: e.to_string() })?;
        tensors.extend(
            header.into_iter().map(|(name, entry)| (format!("{prefix}{name}"), entry.dtype, entry.shape)),
        );
    }
    Ok(tensors)
}
