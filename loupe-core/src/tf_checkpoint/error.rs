//! Why a TensorFlow checkpoint could not be read or imported.

use std::path::PathBuf;

/// A TensorFlow checkpoint that could not be found, read or imported. Every variant
/// names the file, and where one is concerned the entry (tensor name) or block offset.
#[derive(Debug, thiserror::Error)]
pub enum TfCheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// No checkpoint at the path: no `PREFIX.index`, or a directory without a usable
    /// `checkpoint` file.
    #[error("{path}: not a TensorFlow checkpoint: {problem}")]
    NotFound { path: PathBuf, problem: String },
    /// The index file's table structure is damaged: footer, magic, block handles,
    /// block checksums, entry encoding.
    #[error("{path}: index table: {problem}")]
    Table { path: PathBuf, problem: String },
    /// One entry of the index cannot be used (undecodable, unsupported dtype, slices).
    #[error("{path}: entry `{entry}`: {problem}")]
    Entry { path: PathBuf, entry: String, problem: String },
    /// A data shard is missing, too short for an entry, or its bytes fail the entry's
    /// checksum.
    #[error("{path}: tensor `{entry}`: {problem}")]
    Shard { path: PathBuf, entry: String, problem: String },
}

impl TfCheckpointError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TfCheckpointError + '_ {
        move |source| TfCheckpointError::Io { path: path.to_path_buf(), source }
    }
}

/// Why a TensorFlow checkpoint could not be imported into a model.
#[derive(Debug, thiserror::Error)]
pub enum TfImportError {
    #[error(transparent)]
    Checkpoint(#[from] TfCheckpointError),
    /// The checkpoint's variables do not fit the model: every missing, mis-shaped and
    /// unused variable, one per line of `problems`.
    #[error("{prefix}: the checkpoint does not fit the model ({} problems): {}", .problems.len(), .problems.join("; "))]
    Mismatch { prefix: PathBuf, problems: Vec<String> },
    /// A mapping file could not be read.
    #[error("{path}: mapping file: {problem}")]
    MappingFile { path: PathBuf, problem: String },
}
