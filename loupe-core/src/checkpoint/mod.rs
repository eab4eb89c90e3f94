//! The checkpoint format: what a checkpoint directory holds, writing its files so that a
//! crash leaves the last complete checkpoint intact, and reading a model's weights back
//! after checking that they fit it. Training ([`crate::train::checkpoint`]) adds Adam's
//! moments on top; inference ([`crate::infer::Predictor::load`]) reads the weights alone.
//! This module imports neither.
//!
//! Layout of a checkpoint directory:
//! - `step-00000123.safetensors`: the model (keys are the parameter names);
//! - `step-00000123.adam.safetensors`: the optimizer's state, when saved (Adam's moments,
//!   `0.<name>` first, `1.<name>` second);
//! - `step-00000123.json`: [`CheckpointMeta`] (model spec, training description, step,
//!   examples seen, metrics, each tensor file's size and checksum), written after the
//!   tensor files;
//! - `latest`: the name of the newest complete checkpoint (`step-00000123`).
//!
//! Every file is written to a temporary name, flushed to disk and renamed into place, and
//! `latest` is updated last, so readers never see a partial checkpoint.

mod error;
mod meta;
mod read;
mod safetensors_io;
mod sidecar;
mod write;

pub use error::CheckpointError;
pub(crate) use meta::{stem, OPTIMIZER_STATE, WEIGHTS};
pub use meta::{CheckpointFile, CheckpointMeta, CHECKPOINT_FORMAT};
pub use read::{checkpoint_tensors, load_weights, read_meta, resolve_checkpoint};
pub use safetensors_io::FileDigest;
pub use sidecar::{CheckpointMetrics, RngState, TrainingDescription};
pub(crate) use write::{publish, write_tensors};
pub use write::{remove_leftovers, write_atomically};
