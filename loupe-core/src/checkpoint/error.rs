//! [`CheckpointError`]: why a checkpoint could not be written or read.

use std::path::{Path, PathBuf};

use super::meta::CHECKPOINT_FORMAT;

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

/// The error of an I/O failure on `path`.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}
