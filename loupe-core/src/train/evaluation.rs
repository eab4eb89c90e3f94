//! A trained model over a whole dataset, in one process: the evaluation dataset, the
//! competition metrics, a submission's rows and each video's representation. The
//! training job validates with these; [`super::sharded`] deals the same work to MPI
//! ranks. Public through [`super::run`].

use std::io::Write;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;

use crate::data::{DataError, DataFormat, Dataset, FrameOrder, VideoDecoder};
use crate::infer::embeddings::EmbeddingWriter;
use crate::infer::{no_such_layer, Predictor};
use crate::metrics::{EvaluationMetrics, MetricsSummary};
use crate::model::{InputKind, Layer, VideoModel};
use crate::submission::{write_submission, SubmissionRow};
use crate::train::run_error::RunError;

/// Whether `decoder`'s records fit model `M`: its values per frame, and frame- or
/// video-level input.
pub(super) fn check_data_fits<M: VideoModel<f32, D>, D: Device<f32>>(
    decoder: &VideoDecoder,
) -> Result<(), RunError> {
    if decoder.feature_dim() != M::FEATURES {
        return Err(RunError::Config(format!(
            "model {} expects {} values per frame, the data's streams ({}) give {}",
            M::describe().name,
            M::FEATURES,
            decoder
                .spec()
                .streams()
                .iter()
                .map(|s| format!("{} {}", s.name, s.size))
                .collect::<Vec<_>>()
                .join(" + "),
            decoder.feature_dim()
        )));
    }
    if decoder.format() == DataFormat::VideoLevel && M::FRAMES != 1 {
        return Err(RunError::Config(format!(
            "model {} pools {} frames; video-level data has one vector per video (use a frame-level model's data or a video-level model)",
            M::describe().name,
            M::FRAMES
        )));
    }
    if decoder.format() == DataFormat::FrameLevel && M::describe().input == InputKind::VideoLevel {
        return Err(RunError::Config(format!(
            "model {} reads video-level records (one mean_rgb and mean_audio vector per video); these files are frame-level",
            M::describe().name
        )));
    }
    Ok(())
}

/// One batch of either data format, as the model takes it.
pub(crate) struct ModelBatch {
    pub ids: Vec<String>,
    /// `len x FRAMES x FEATURES` values.
    pub frames: Vec<f32>,
    /// Valid frames per video ([`crate::data::FrameBatch::lengths`]; 1 for video-level data).
    pub lengths: Vec<usize>,
    /// `len x CLASSES` multi-hot labels.
    pub labels: Vec<f32>,
}

/// A stream of batches of either data format.
pub(crate) fn batches(
    dataset: &Dataset,
) -> Result<Box<dyn Iterator<Item = Result<ModelBatch, DataError>>>, RunError> {
    Ok(match dataset.decoder().format() {
        DataFormat::FrameLevel => Box::new(dataset.frame_batches()?.map(|b| {
            b.map(|b| ModelBatch { ids: b.ids, frames: b.frames, lengths: b.lengths, labels: b.labels })
        })),
        DataFormat::VideoLevel => Box::new(dataset.video_batches()?.map(|b| {
            b.map(|b| ModelBatch {
                lengths: vec![1; b.ids.len()],
                ids: b.ids,
                frames: b.features,
                labels: b.labels,
            })
        })),
    })
}

pub(crate) fn label_lists(labels: &[f32], classes: usize) -> Vec<Vec<u32>> {
    labels
        .chunks(classes)
        .map(|row| row.iter().enumerate().filter(|(_, &v)| v > 0.5).map(|(c, _)| c as u32).collect())
        .collect()
}

/// The deterministic evaluation dataset: file order, per-video seeded frame sampling, or
/// for a model that reads frames in order ([`VideoModel::READS_FRAMES_IN_ORDER`]) each
/// video's frames in temporal order ([`FrameOrder::Temporal`]).
pub fn evaluation_dataset<M: VideoModel<f32, D>, D: Device<f32>>(
    files: Vec<PathBuf>,
    decoder: VideoDecoder,
    batch_size: usize,
    skip_corrupt: bool,
) -> Result<Dataset, RunError> {
    evaluation_dataset_in_order::<M, D>(files, decoder, batch_size, skip_corrupt, FrameOrder::default())
}

/// [`evaluation_dataset`] with the frame order a sequence model was trained with.
pub fn evaluation_dataset_in_order<M: VideoModel<f32, D>, D: Device<f32>>(
    files: Vec<PathBuf>,
    decoder: VideoDecoder,
    batch_size: usize,
    skip_corrupt: bool,
    order: FrameOrder,
) -> Result<Dataset, RunError> {
    check_data_fits::<M, D>(&decoder)?;
    Ok(Dataset::evaluation(files, decoder, M::CLASSES)
        .with_batch_size(batch_size.max(1))
        .with_frames_per_video(M::FRAMES)
        .with_sampling(order.evaluation_sampling(M::READS_FRAMES_IN_ORDER))
        .with_skip_corrupt(skip_corrupt))
}

/// Evaluates `predictor`'s model on every video of `dataset` (one process; see
/// [`evaluate_across`](super::run::evaluate_across) for several ranks): the competition metrics of its top `top_k`
/// labels.
pub fn evaluate_dataset<M, D>(
    predictor: &Predictor<M, D>,
    dataset: &Dataset,
    top_k: usize,
) -> Result<MetricsSummary, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    let mut metrics = EvaluationMetrics::new(M::CLASSES, top_k);
    for batch in batches(dataset)? {
        let batch = batch?;
        predictor.evaluate(
            &mut metrics,
            &batch.frames,
            &batch.lengths,
            &label_lists(&batch.labels, M::CLASSES),
        )?;
    }
    Ok(metrics.summary())
}

/// Writes a Kaggle submission of `dataset`'s videos (top `top_k` labels each) to `out`;
/// `names` adds a column of label names. Returns the number of videos.
pub fn predict<M, D, W: Write>(
    predictor: &Predictor<M, D>,
    dataset: &Dataset,
    top_k: usize,
    out: W,
    names: Option<&dyn Fn(u32) -> String>,
) -> Result<usize, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    let mut rows = Vec::new();
    for batch in batches(dataset)? {
        let batch = batch?;
        for (id, predictions) in
            batch.ids.into_iter().zip(predictor.predict_top_k(&batch.frames, &batch.lengths, top_k)?)
        {
            rows.push(SubmissionRow { id, predictions });
        }
    }
    let count = rows.len();
    write_rows(out, rows, names)?;
    Ok(count)
}

/// [`write_submission`] with the error of a run.
pub(crate) fn write_rows<W: Write>(
    out: W,
    rows: Vec<SubmissionRow>,
    names: Option<&dyn Fn(u32) -> String>,
) -> Result<(), RunError> {
    write_submission(out, rows, names)
        .map_err(|source| RunError::Io { path: PathBuf::from("<predictions>"), source })
}

/// Writes the representation at `layer` of every video of `dataset` (e.g.
/// [`evaluation_dataset`]: the frames prediction
/// samples) to `path`, batch by batch; returns the number of videos.
pub fn write_embeddings<M, D>(
    predictor: &Predictor<M, D>,
    dataset: &Dataset,
    layer: Layer,
    path: &Path,
) -> Result<u64, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    let description = M::describe();
    let size = match description.representation_size(layer) {
        Some(size) => size,
        None => return Err(no_such_layer(&description, layer).into()),
    };
    let mut writer =
        EmbeddingWriter::create(path, size, &[("layer", layer.name()), ("model", &description.name)])?;
    for batch in batches(dataset)? {
        let batch = batch?;
        let rows = predictor.represent(&batch.frames, &batch.lengths, layer)?;
        for (id, row) in batch.ids.iter().zip(rows.chunks(size)) {
            writer.push(id, row)?;
        }
    }
    Ok(writer.finish()?)
}
