//! [`Predictor`]: a model and its device, evaluation-mode forward passes over batches.

use std::path::Path;

use dfdx::prelude::*;
use dfdx::tensor::safetensors::SafeDtype;

use crate::checkpoint::{load_weights, CheckpointError, CheckpointMeta};
use crate::device::try_tensor_from_f32;
use crate::metrics::{top_k, EvaluationMetrics};
use crate::model::{Layer, ModelDescription, VideoModel};

/// Why a forward pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("{what}: expected {expected} values, got {got}")]
    Shape { what: &'static str, expected: usize, got: usize },
    #[error("device error: {0}")]
    Device(String),
    #[error("the model `{model}` has no `{layer}` layer (it has: {available})")]
    NoSuchLayer { model: String, layer: Layer, available: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

fn device_error<Err: std::fmt::Debug>(e: Err) -> PredictError {
    PredictError::Device(format!("{e:?}"))
}

/// A model ready for inference: no optimizer state, no gradients. Every forward pass is in
/// evaluation mode (batch norm uses its running averages), so a video's outputs do not
/// depend on the other videos of its batch.
///
/// Batches are row-major `batch x FRAMES x FEATURES` buffers, as the data layer's
/// [`FrameBatch::frames`](crate::data::FrameBatch::frames) holds them, with each video's
/// count of valid frames ([`FrameBatch::lengths`](crate::data::FrameBatch::lengths)).
///
/// ```
/// use dfdx::prelude::*;
/// use loupe_core::infer::Predictor;
/// use loupe_core::model::{Layer, VideoModel};
/// # use loupe_core::model::ModelDescription;
/// // Any `VideoModel` (usually one `#[video_model]` built; see the `loupe` crate).
/// fn scores<M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32>>(frames: &[f32]) -> Vec<f32> {
///     let predictor = Predictor::<M, Cpu>::build(Cpu::default()).unwrap();
///     let batch = frames.len() / (M::FRAMES * M::FEATURES);
///     predictor.predict(frames, &vec![M::FRAMES; batch]).unwrap()
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Predictor<M, D> {
    /// The model.
    pub model: M,
    device: D,
}

impl<M, D> Predictor<M, D>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    /// Inference with `model`, which lives on `device`.
    pub fn new(device: D, model: M) -> Self {
        Predictor { model, device }
    }

    /// A freshly initialised model on `device` (weights from the device's generator).
    pub fn build(device: D) -> Result<Self, PredictError>
    where
        M: BuildModule<D, f32>,
    {
        let model = M::try_build(&device).map_err(device_error)?;
        Ok(Predictor { model, device })
    }

    /// The model of the checkpoint at `path` (a checkpoint directory, whose `latest` is
    /// read, or a `step-*.json` sidecar), checked to be of `M`'s architecture; Adam's
    /// moments, when the checkpoint holds them, are not read.
    pub fn load(device: D, path: &Path) -> Result<(Self, CheckpointMeta), PredictError>
    where
        f32: SafeDtype,
        M: BuildModule<D, f32>,
    {
        let mut predictor = Self::build(device)?;
        let (_, meta) = load_weights(path, &M::describe(), &mut predictor.model)?;
        Ok((predictor, meta))
    }

    /// The device the model lives on.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Checks a batch of `batch` videos and makes it a tensor.
    #[allow(clippy::type_complexity)]
    fn input(
        &self,
        frames: &[f32],
        batch: usize,
    ) -> Result<Tensor<(usize, M::Frames, M::Features), f32, D>, PredictError> {
        let per_video = M::FRAMES * M::FEATURES;
        if batch == 0 || frames.len() != batch * per_video {
            let expected = batch.max(1) * per_video;
            return Err(PredictError::Shape { what: "frames", expected, got: frames.len() });
        }
        try_tensor_from_f32(&self.device, frames, (batch, M::Frames::default(), M::Features::default()))
            .map_err(device_error)
    }

    /// Class probabilities, `batch x CLASSES` row-major, of a batch of `lengths.len()`
    /// videos where only the first `lengths[b]` frames of video `b` are its own
    /// ([`VideoModel::try_forward_eval_lengths`]).
    pub fn predict(&self, frames: &[f32], lengths: &[usize]) -> Result<Vec<f32>, PredictError> {
        self.forward(frames, Some(lengths))
    }

    /// [`Self::predict`], or without `lengths` every frame valid
    /// ([`VideoModel::try_forward_eval`]).
    pub(crate) fn forward(
        &self,
        frames: &[f32],
        lengths: Option<&[usize]>,
    ) -> Result<Vec<f32>, PredictError> {
        let batch = match lengths {
            Some(lengths) => {
                let batch = frames.len() / (M::FRAMES * M::FEATURES).max(1);
                if lengths.len() != batch {
                    return Err(PredictError::Shape { what: "lengths", expected: batch, got: lengths.len() });
                }
                batch
            }
            None => frames.len() / (M::FRAMES * M::FEATURES).max(1),
        };
        let x = self.input(frames, batch)?;
        let p = match lengths {
            Some(lengths) => self.model.try_forward_eval_lengths(x, lengths),
            None => self.model.try_forward_eval(x),
        };
        Ok(p.map_err(device_error)?.as_vec())
    }

    /// The `k` best `(class, score)` pairs of each video of a batch, best first.
    pub fn predict_top_k(
        &self,
        frames: &[f32],
        lengths: &[usize],
        k: usize,
    ) -> Result<Vec<Vec<(u32, f32)>>, PredictError> {
        Ok(self.predict(frames, lengths)?.chunks(M::CLASSES).map(|row| top_k(row, k)).collect())
    }

    /// Predicts a batch and adds it to `metrics`; `labels[b]` are video `b`'s true labels.
    pub fn evaluate(
        &self,
        metrics: &mut EvaluationMetrics,
        frames: &[f32],
        lengths: &[usize],
        labels: &[Vec<u32>],
    ) -> Result<(), PredictError> {
        if labels.len() != lengths.len() {
            return Err(PredictError::Shape { what: "labels", expected: lengths.len(), got: labels.len() });
        }
        for (row, truth) in self.predict(frames, lengths)?.chunks(M::CLASSES).zip(labels) {
            metrics.add_video(row, truth);
        }
        Ok(())
    }

    /// Each video's vector at `layer`, `batch x size` row-major (size:
    /// [`ModelDescription::representation_size`](crate::model::ModelDescription::representation_size)).
    /// An error names the layers the model has when it has not this one.
    pub fn represent(
        &self,
        frames: &[f32],
        lengths: &[usize],
        layer: Layer,
    ) -> Result<Vec<f32>, PredictError> {
        if lengths.len() * M::FRAMES * M::FEATURES != frames.len() {
            let expected = lengths.len() * M::FRAMES * M::FEATURES;
            return Err(PredictError::Shape { what: "frames", expected, got: frames.len() });
        }
        let x = self.input(frames, lengths.len())?;
        match self.model.try_representation(x, lengths, layer).map_err(device_error)? {
            Some(t) => Ok(t.as_vec()),
            None => Err(no_such_layer(&M::describe(), layer)),
        }
    }
}

/// The error for a `layer` the model described by `d` does not have, naming those it has.
pub(crate) fn no_such_layer(d: &ModelDescription, layer: Layer) -> PredictError {
    let available: Vec<&str> =
        Layer::ALL.into_iter().filter(|l| d.representation_size(*l).is_some()).map(Layer::name).collect();
    PredictError::NoSuchLayer { model: d.name.clone(), layer, available: available.join(", ") }
}
