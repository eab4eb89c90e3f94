//! [`RunError`]: why a job over a dataset stopped (training, evaluation, prediction,
//! embeddings, segment fine-tuning), one variant per layer it can come from.

use std::path::PathBuf;

use crate::data::DataError;
use crate::distributed::DistributedError;
use crate::infer::embeddings::EmbeddingError;
use crate::infer::PredictError;
use crate::train::checkpoint::CheckpointError;
use crate::train::{LockError, TrainError};

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Distributed(#[from] DistributedError),
    #[error("stopped after step {step} as asked (SIGINT or SIGTERM); checkpoint {} written: to continue, run the same command with --resume", .checkpoint.display())]
    Interrupted { step: u64, checkpoint: PathBuf },
}
