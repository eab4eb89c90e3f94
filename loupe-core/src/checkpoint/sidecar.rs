//! The typed parts of a checkpoint sidecar ([`super::CheckpointMeta`]): how
//! the model was trained, its latest metrics and the trainer's random state.
//!
//! Each is written exactly as the free-form JSON of earlier sidecars was (keys sorted, a
//! key absent where nothing was recorded, `null` for an empty training description), so
//! that sidecars written before these types existed load, and new ones read the same.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::FrameOrder;
use crate::metrics::MetricsSummary;

/// How a checkpoint's model was trained, as the CLI records it (every field optional: a
/// library user's run records what it sets, `loupe train`, `loupe quickstart`, `loupe
/// segments` and `loupe import` each their own fields). Keys the sidecar has and this
/// does not know are ignored.
///
/// ```
/// use loupe_core::checkpoint::TrainingDescription;
/// let d = TrainingDescription { model: Some("gated-netvlad".into()), seed: Some(1), ..Default::default() };
/// assert!(!d.is_empty());
/// assert!(TrainingDescription::default().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingDescription {
    /// The zoo name of the model (`loupe models`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Glob patterns of the training files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_data_pattern: Option<Vec<String>>,
    /// Glob patterns of the validation files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_data_pattern: Option<Vec<String>>,
    /// Videos per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// The learning-rate schedule's base rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_learning_rate: Option<f64>,
    /// The schedule's decay factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate_decay: Option<f64>,
    /// Training videos per decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate_decay_examples: Option<u64>,
    /// The gradient clipping, in words (`Norm(1.0)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipping: Option<String>,
    /// The classifier's weight penalty as given: `Some(None)` where the run recorded that
    /// none was given (the model's own, written `null`), `None` where it recorded nothing.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub regularization_penalty: Option<Option<f64>>,
    /// The run's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The order sequence models read frames in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_order: Option<FrameOrder>,
    /// Set by `loupe quickstart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quickstart: Option<bool>,
    /// Set by `loupe segments`: the model was fine-tuned on segment labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_labels: Option<bool>,
    /// Set by `loupe segments`: the checkpoint fine-tuning started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// Set by `loupe import`: the TensorFlow checkpoint the weights came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
}

impl TrainingDescription {
    /// Whether nothing is recorded (written `null`, as the untyped default was).
    pub fn is_empty(&self) -> bool {
        *self == TrainingDescription::default()
    }
}

/// The latest evaluation metrics a checkpoint records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CheckpointMetrics {
    /// Video-level metrics of a training run's validation.
    Videos(MetricsSummary),
    /// Segment fine-tuning's validation.
    Segments {
        /// Mean average precision over the rated segments.
        segment_map: f64,
    },
}

/// The trainer's random state, to resume with the same data order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The run's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Batches the run had read (all ranks together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_consumed: Option<u64>,
    /// Ranks the run was sharded over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<u64>,
}

/// `Some(value)` for a key that is present, even when its value is `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Writes `value` with its keys sorted, as a `serde_json::Value` is written.
pub(crate) fn sorted<S: Serializer, T: Serialize>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value).map_err(serde::ser::Error::custom)?.serialize(s)
}

/// The training description, `null` when empty.
pub(crate) fn training_to_json<S: Serializer>(value: &TrainingDescription, s: S) -> Result<S::Ok, S::Error> {
    if value.is_empty() {
        s.serialize_none()
    } else {
        sorted(value, s)
    }
}

/// A value or `null` (its default).
pub(crate) fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}
