//! [`CheckpointMeta`], the JSON sidecar of a checkpoint, and the names of its files.

use serde::{Deserialize, Serialize};

use super::safetensors_io::FileDigest;
use super::sidecar::{self, CheckpointMetrics, RngState, TrainingDescription};
use crate::model::ModelDescription;

/// Version of the checkpoint layout.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// Extension of the model's tensor file (`step-00000123.safetensors`).
pub(crate) const WEIGHTS: &str = "safetensors";

/// Extension of the optimizer's tensor file (`step-00000123.adam.safetensors`).
pub(crate) const OPTIMIZER_STATE: &str = "adam.safetensors";

/// The name of the checkpoint of step `step`, without extension (`step-00000123`).
pub(crate) fn stem(step: u64) -> String {
    format!("step-{step:08}")
}

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
    /// Size and checksum of each tensor file of the checkpoint, filled in when it is saved
    /// and checked by [`load_weights`](super::load_weights) (empty in checkpoints written
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
