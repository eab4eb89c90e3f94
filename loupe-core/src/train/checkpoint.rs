//! Checkpoints: safetensors weights and optimizer state plus a JSON sidecar, written so
//! that a crash at any moment leaves the last complete checkpoint intact.
//!
//! Layout of a checkpoint directory:
//! - `step-00000123.safetensors`: the model (keys are the parameter names);
//! - `step-00000123.adam.safetensors`: Adam's moments (`0.<name>` first, `1.<name>` second);
//! - `step-00000123.json`: [`CheckpointMeta`] (model spec, training configuration, step,
//!   examples seen, metrics), written after both weight files;
//! - `latest`: the name of the newest complete checkpoint (`step-00000123`).
//!
//! Every file is written to a temporary name, flushed to disk and renamed into place, and
//! `latest` is updated last, so readers never see a partial checkpoint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use dfdx::tensor::safetensors::SafeDtype;
use serde::{Deserialize, Serialize};

use crate::model::ModelDescription;
pub use crate::train::safetensors_io::FileDigest;
use crate::train::safetensors_io::{read_header, tensor_shapes, write_streamed};
use crate::train::sidecar;
pub use crate::train::sidecar::{CheckpointMetrics, RngState, TrainingDescription};
use crate::train::Adam;

/// Version of the checkpoint layout.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// The JSON sidecar of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    /// The architecture the weights belong to.
    pub model: ModelDescription,
    /// Element type of the weights (`f32`, `f64`).
    pub dtype: String,
    /// How the model was trained (`null` in the sidecar when nothing is recorded).
    #[serde(serialize_with = "sidecar::training_to_json", deserialize_with = "sidecar::null_as_default")]
    pub training: TrainingDescription,
    /// Optimizer updates applied.
    pub step: u64,
    /// Training videos seen.
    pub examples_seen: u64,
    /// Latest evaluation metrics (`gap`, `hit_at_1`, ...), if any.
    #[serde(default, serialize_with = "sidecar::sorted")]
    pub metrics: Option<CheckpointMetrics>,
    /// Size of the label vocabulary the model was trained for.
    pub vocabulary_size: usize,
    /// Random state of the trainer (data order, sampling), to resume exactly.
    #[serde(serialize_with = "sidecar::sorted", deserialize_with = "sidecar::null_as_default")]
    pub rng_state: RngState,
    /// Size and checksum of each tensor file of the checkpoint, filled in by
    /// [`save_checkpoint`] and checked by [`load_checkpoint`] (empty in checkpoints written
    /// before loupe recorded them, which load unchecked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<CheckpointFile>,
}

/// One tensor file of a checkpoint as its sidecar records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// File name, in the sidecar's directory.
    pub name: String,
    #[serde(flatten)]
    pub digest: FileDigest,
}

impl CheckpointMeta {
    /// The frame order the model was trained with, as `loupe train --frame-order` records
    /// it in the training description (`frame_order`); temporal when absent. Evaluating and
    /// predicting with the same order samples frames as training did.
    pub fn frame_order(&self) -> crate::data::FrameOrder {
        self.training.frame_order.unwrap_or_default()
    }
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a checkpoint sidecar")]
    Sidecar { path: PathBuf, source: serde_json::Error },
    #[error("{path}: cannot write weights: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{path}: cannot read weights: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("{path}: checkpoint format {found}, this loupe reads format {CHECKPOINT_FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("{path}: checkpoint is of another architecture ({}): {}", .found, .differences.join("; "))]
    Architecture { path: PathBuf, found: String, differences: Vec<String> },
    #[error("{path}: weights are {found}, the model is {expected}")]
    Dtype { path: PathBuf, found: String, expected: String },
    #[error("{path}: parameter `{name}`: {problem}")]
    Parameter { path: PathBuf, name: String, problem: String },
    #[error("{path}: no checkpoint here (no `latest` file and not a sidecar .json)")]
    NotFound { path: PathBuf },
    #[error("{path}: {problem}: the file is damaged or was replaced after its checkpoint was written ({sidecar} records it)")]
    Corrupt { path: PathBuf, sidecar: PathBuf, problem: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

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

/// Writes `tensors` to `path` (temporary file, fsync, rename) and returns its record.
fn save_tensors<E: Dtype + SafeDtype, D: Device<E>, M: TensorCollection<E, D>>(
    path: &Path,
    tensors: &M,
) -> Result<CheckpointFile, CheckpointError> {
    let tmp = temporary_name(path);
    let digest = write_streamed(&tmp, tensors)
        .map_err(|e| CheckpointError::Write { path: tmp.clone(), message: e.to_string() })?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(CheckpointFile { name: path.file_name().unwrap_or_default().to_string_lossy().into_owned(), digest })
}

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
    fs::create_dir_all(dir).map_err(io(dir))?;
    let stem = format!("step-{:08}", meta.step);
    let mut meta = meta.clone();
    meta.files = vec![save_tensors(&dir.join(format!("{stem}.safetensors")), model)?];
    if let Some((m, v)) = &adam.moments {
        meta.files
            .push(save_tensors(&dir.join(format!("{stem}.adam.safetensors")), &(m.clone(), v.clone()))?);
    }
    let sidecar = dir.join(format!("{stem}.json"));
    let json = serde_json::to_vec_pretty(&meta)
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
        for suffix in [".json", ".safetensors", ".adam.safetensors"] {
            let _ = fs::remove_file(dir.join(format!("{stem}{suffix}")));
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

/// Loads the checkpoint at `path` into `model` (and Adam's state into `adam` when given),
/// after checking that it is of the same architecture, dtype and parameter shapes.
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
    let stem = sidecar.with_extension("");
    let weights = stem.with_extension("safetensors");
    check_shapes(&weights, model, "")?;
    model
        .load_safetensors(&weights)
        .map_err(|e| CheckpointError::Weights { path: weights.clone(), message: format!("{e:?}") })?;
    if let Some(adam) = adam {
        let state = stem.with_extension("adam.safetensors");
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
/// shape)`, the model's first, then Adam's moments (`0.<name>`, `1.<name>`) when saved,
/// prefixed `adam.`. Reads only the files' headers.
pub fn checkpoint_tensors(path: &Path) -> Result<Vec<(String, String, Vec<usize>)>, CheckpointError> {
    let sidecar = resolve_checkpoint(path)?;
    let stem = sidecar.with_extension("");
    let mut tensors = Vec::new();
    for (file, prefix) in
        [(stem.with_extension("safetensors"), ""), (stem.with_extension("adam.safetensors"), "adam.")]
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
