//! The jobs that load a checkpoint and run its model over data: evaluation, prediction,
//! embedding, segment scoring and an ensemble member's predictions.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::data::{Dataset, FrameSampling, SkipReport, VideoDecoder, Vocabulary};
use crate::dfdx::nn::BuildModule;
use crate::distributed::{sum_skip_reports, Collective, SingleProcess};
use crate::ensemble::{model_predictions, EnsembleError, Keep, Predictions};
use crate::infer::Predictor;
use crate::metrics::MetricsSummary;
use crate::model::{Layer, VideoModel};
use crate::segment_submission::SegmentRow;
use crate::train::run::{
    embed_across, evaluate_across, evaluation_dataset_in_order, predict_across, RunError,
};
use crate::train::segments::{predict_segments as score_segments, SegmentInference};

use super::dispatch::{on_model, Job, JobDevice, JobModel, RunDevice};

/// A checkpoint of a zoo model and the data [`evaluate`], [`predict`] and [`embed`] run it
/// over, as one rank of `collective`: every rank loads the checkpoint and reads its share
/// of the files; rank 0 gets the results, in file order.
pub struct Inference<'c> {
    pub collective: &'c dyn Collective,
    /// A training directory's `checkpoints/`, or a `step-*.json` sidecar.
    pub checkpoint: PathBuf,
    pub files: Vec<PathBuf>,
    pub decoder: VideoDecoder,
    pub batch_size: usize,
    pub skip_corrupt: bool,
    /// The frames the model sees; `None`: what the checkpoint's training order implies
    /// ([`FrameOrder::evaluation_sampling`](crate::data::FrameOrder::evaluation_sampling)).
    pub frame_sampling: Option<FrameSampling>,
}

impl Inference<'_> {
    /// The checkpoint's model and the dataset it reads.
    fn load<M, D>(&self, device: D) -> Result<(Predictor<M, D>, Dataset), RunError>
    where
        D: JobDevice,
        M: VideoModel<f32, D> + BuildModule<D, f32>,
    {
        let (predictor, meta) = Predictor::<M, D>::load(device, &self.checkpoint)?;
        // Sampled as the checkpoint's training order implies, unless asked otherwise.
        let dataset = evaluation_dataset_in_order::<M, D>(
            self.files.clone(),
            self.decoder.clone(),
            self.batch_size,
            self.skip_corrupt,
            meta.frame_order(),
        )?;
        Ok((
            predictor,
            match self.frame_sampling {
                Some(sampling) => dataset.with_sampling(sampling),
                None => dataset,
            },
        ))
    }
}

struct Evaluate<'c>(Inference<'c>, usize);

impl Job for Evaluate<'_> {
    type Output = Result<(MetricsSummary, SkipReport), RunError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let Evaluate(job, top_k) = self;
        let (predictor, dataset) = job.load::<M, D>(device)?;
        let metrics = evaluate_across(&predictor, &dataset, top_k, job.collective)?;
        Ok((metrics, sum_skip_reports(job.collective, &dataset.skip_report())))
    }
}

/// The competition metrics of the zoo model `name`'s checkpoint on `job`'s files (its top
/// `top_k` predictions per video), with the skipped records of every rank added up on rank
/// 0; `None` for a name not in the zoo.
pub fn evaluate(
    name: &str,
    device: RunDevice,
    job: Inference<'_>,
    top_k: usize,
) -> Option<Result<(MetricsSummary, SkipReport), RunError>> {
    on_model(name, device, Evaluate(job, top_k))
}

/// Writes to a trait object: a job generic over its writer was compiled once per writer
/// type and zoo model.
struct Predict<'c, 'w> {
    job: Inference<'c>,
    top_k: usize,
    out: Box<dyn Write + 'w>,
    vocabulary: Option<Vocabulary>,
}

impl Job for Predict<'_, '_> {
    type Output = Result<(usize, SkipReport), RunError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let (predictor, dataset) = self.job.load::<M, D>(device)?;
        let vocabulary = self.vocabulary;
        let names = |label: u32| {
            vocabulary
                .as_ref()
                .and_then(|v| v.name(label))
                .map(str::to_string)
                .unwrap_or_else(|| label.to_string())
        };
        let names: Option<&dyn Fn(u32) -> String> = if vocabulary.is_some() { Some(&names) } else { None };
        let collective = self.job.collective;
        let written = predict_across(&predictor, &dataset, self.top_k, self.out, names, collective)?;
        Ok((written, sum_skip_reports(collective, &dataset.skip_report())))
    }
}

/// Writes the Kaggle rows (`VideoId,LabelConfidencePairs`, the top `top_k` classes, named
/// from `vocabulary` when given) of the zoo model `name`'s checkpoint on `job`'s files to
/// `out` (rank 0 writes; the other ranks only send it their rows). Returns the number of
/// videos and the skipped records; `None` for a name not in the zoo.
pub fn predict<'w>(
    name: &str,
    device: RunDevice,
    job: Inference<'_>,
    top_k: usize,
    out: Box<dyn Write + 'w>,
    vocabulary: Option<Vocabulary>,
) -> Option<Result<(usize, SkipReport), RunError>> {
    on_model(name, device, Predict { job, top_k, out, vocabulary })
}

struct Embed<'c, 'p>(Inference<'c>, Layer, &'p Path);

impl Job for Embed<'_, '_> {
    type Output = Result<(u64, usize), RunError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let Embed(job, layer, output) = self;
        let (predictor, dataset) = job.load::<M, D>(device)?;
        let videos = embed_across(&predictor, &dataset, layer, output, job.collective)?;
        Ok((videos, M::describe().representation_size(layer).unwrap_or(0)))
    }
}

/// Writes each video's vector at `layer` of the zoo model `name`'s checkpoint, for `job`'s
/// files, to `output` (`.npy` + ids, or `.safetensors`; rank 0 writes). Returns the number
/// of vectors and their size; `None` for a name not in the zoo.
pub fn embed(
    name: &str,
    device: RunDevice,
    job: Inference<'_>,
    layer: Layer,
    output: &Path,
) -> Option<Result<(u64, usize), RunError>> {
    on_model(name, device, Embed(job, layer, output))
}

struct Segments<'p>(&'p Path, SegmentInference);

impl Job for Segments<'_> {
    type Output = Result<(Vec<SegmentRow>, u64), RunError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let (predictor, meta) = Predictor::<M, D>::load(device, self.0)?;
        let inference = SegmentInference { order: meta.frame_order(), ..self.1 };
        score_segments(&predictor, &inference)
    }
}

/// Scores every 5-frame segment of `inference`'s files with the zoo model `name`'s
/// `checkpoint` (read in the frame order its training used) and keeps the best per
/// whitelisted class: the rows of the 2019 segment submission and the number of segments
/// scored; `None` for a name not in the zoo.
pub fn predict_segments(
    name: &str,
    device: RunDevice,
    checkpoint: &Path,
    inference: SegmentInference,
) -> Option<Result<(Vec<SegmentRow>, u64), RunError>> {
    on_model(name, device, Segments(checkpoint, inference))
}

struct Member<'a>(Inference<'a>, Keep);

impl Job for Member<'_> {
    type Output = Result<Predictions, EnsembleError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let Member(job, keep) = self;
        let (predictor, dataset) = job.load::<M, D>(device)?;
        model_predictions(&predictor, &dataset, job.checkpoint.display().to_string(), keep)
    }
}

/// The predictions of the zoo model `name`'s `checkpoint` on `files` (decoded by
/// `decoder`), as an ensemble member named after the checkpoint, each video's best `keep`
/// probabilities kept; `None` for a name not in the zoo.
pub fn member_predictions(
    name: &str,
    device: RunDevice,
    checkpoint: &Path,
    files: &[PathBuf],
    decoder: VideoDecoder,
    keep: Keep,
) -> Option<Result<Predictions, EnsembleError>> {
    let job = Inference {
        collective: &SingleProcess,
        checkpoint: checkpoint.to_path_buf(),
        files: files.to_vec(),
        decoder,
        batch_size: 64,
        skip_corrupt: false,
        frame_sampling: None,
    };
    on_model(name, device, Member(job, keep))
}
