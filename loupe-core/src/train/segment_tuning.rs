//! Fine-tuning a frame-level model on rated segments (the 2019 task), as the top 2019
//! solutions did: a model trained on video labels, then trained further on the
//! segments raters judged.
//!
//! Each distinct rated segment of the training files is one example: its frames (as
//! segment inference feeds them, [`super::segments`]), the classes rated positive as
//! targets, and a loss mask that keeps only the classes rated for that segment
//! (positives and negatives); every unrated class is left out of the loss
//! ([`crate::train::try_masked_cross_entropy_loss`]). A segment whose start lies past
//! the kept frames (beyond 300) has no frame to learn from and is skipped.
//! Evaluation scores every segment of the validation files and reports the segment
//! MAP ([`crate::metrics::segments`]) over the classes rated there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::segments::segment_rows;
use crate::data::{
    valid_rows, DataError, DecodedVideo, FrameOrder, QuantizedVideo, SkipReport, VideoDecoder, VideoReader,
};
use crate::infer::Predictor;
use crate::metrics::segments::{segment_map, SegmentMetrics, SegmentTruth};
use crate::model::VideoModel;
use crate::report::{training_curves_png, EventWriter};
use crate::train::checkpoint::{save_checkpoint, CheckpointMeta, CHECKPOINT_FORMAT};
use crate::train::run_error::RunError;
use crate::train::segments::{predict_segments, SegmentInference};
use crate::train::{CheckpointMetrics, RngState, Trainer, TrainingDescription};

/// One rated segment as a training example: a video of the segment's frames whose
/// `segments` are the ratings of that segment (start 0).
pub type SegmentExample = QuantizedVideo;

/// The rated segments of `files` as examples (file order), the number of rated segments
/// skipped because they start past the kept frames, and what `skip_corrupt` skipped.
pub fn read_segment_examples(
    files: &[PathBuf],
    decoder: &VideoDecoder,
    skip_corrupt: bool,
) -> Result<(Vec<SegmentExample>, usize, SkipReport), DataError> {
    let mut examples = Vec::new();
    let mut outside = 0;
    let mut skipped = SkipReport::default();
    for path in files {
        let mut reader = VideoReader::open(path, decoder)?.skip_corrupt(skip_corrupt);
        while let Some(video) = reader.next_decoded() {
            let DecodedVideo::Frames(video) = video? else { continue };
            let mut by_start: BTreeMap<u32, Vec<_>> = BTreeMap::new();
            for s in &video.segments {
                by_start.entry(s.start).or_default().push(*s);
            }
            let dim = video.feature_dim();
            for (start, ratings) in by_start {
                let frames = crate::data::segments::segment_frames(&video, start as usize);
                if frames.is_empty() {
                    outside += ratings.len();
                    continue;
                }
                examples.push(QuantizedVideo {
                    id: format!("{}:{start}", video.id),
                    labels: ratings.iter().filter(|r| r.is_positive()).map(|r| r.label).collect(),
                    num_frames: frames.len(),
                    frames: video.frames[frames.start * dim..frames.end * dim].to_vec(),
                    segments: ratings,
                });
            }
        }
        skipped.merge(reader.skip_report());
    }
    Ok((examples, outside, skipped))
}

/// Everything a segment fine-tuning run needs besides the model and the device.
#[derive(Debug, Clone)]
pub struct SegmentTuning {
    /// Files with rated segments to train on.
    pub train_files: Vec<PathBuf>,
    /// Files with rated segments to evaluate on (empty: no evaluation).
    pub validate_files: Vec<PathBuf>,
    pub decoder: VideoDecoder,
    /// Segments per step.
    pub batch_size: usize,
    /// Passes over the training segments.
    pub epochs: usize,
    /// Stop after this many steps (whatever `epochs` says).
    pub max_steps: Option<u64>,
    /// Evaluate every this many steps (and before the first step and at the end).
    pub eval_every: Option<u64>,
    /// Seeds the order of the segments.
    pub seed: u64,
    /// The order a sequence model reads frames in.
    pub frame_order: FrameOrder,
    /// Checkpoints go to `<output_dir>/checkpoints`, events to `<output_dir>/events`.
    pub output_dir: PathBuf,
    pub keep_checkpoints: usize,
    pub skip_corrupt: bool,
    /// Print progress to stderr.
    pub progress: bool,
    /// Stored in the checkpoint.
    pub description: TrainingDescription,
}

/// What a segment fine-tuning run did.
#[derive(Debug, Clone)]
pub struct SegmentTuningSummary {
    /// Training examples (distinct rated segments with frames).
    pub segments: usize,
    /// Rated segments skipped because they start past the kept frames.
    pub outside_window: usize,
    pub steps: u64,
    pub loss_history: Vec<(u64, f64)>,
    /// Segment MAP (all entries) per evaluation; the first is before any step.
    pub map_history: Vec<(u64, f64)>,
    /// The last evaluation.
    pub metrics: Option<SegmentMetrics>,
    pub checkpoint: Option<PathBuf>,
    pub seconds: f64,
}

/// Scores every segment of `files` with the model and returns MAP over all entries
/// against the ratings of the same files, ranking the classes rated there.
pub fn evaluate_segments<M, D>(
    predictor: &Predictor<M, D>,
    files: &[PathBuf],
    decoder: &VideoDecoder,
    order: FrameOrder,
    skip_corrupt: bool,
) -> Result<SegmentMetrics, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    let (ratings, _) = crate::data::read_segment_ratings(files, skip_corrupt)?;
    let mut truth = SegmentTruth::new();
    let mut classes = BTreeSet::new();
    for video in &ratings {
        truth.add_video(&video.id, &video.segments);
        classes.extend(video.segments.iter().map(|s| s.label));
    }
    if classes.is_empty() {
        return Err(RunError::Config("the validation files hold no rated segment".into()));
    }
    let job = SegmentInference {
        files: files.to_vec(),
        decoder: decoder.clone(),
        classes,
        max_per_class: usize::MAX,
        batch_size: 64,
        skip_corrupt,
        order,
    };
    let (rows, _) = predict_segments(predictor, &job)?;
    segment_map(&truth, &rows, 0).map_err(|e| RunError::Config(e.to_string()))
}

/// Fine-tunes `trainer`'s model on the rated segments of `config.train_files` (module
/// docs), evaluating and checkpointing as `config` says.
pub fn fine_tune_segments<M, D>(
    trainer: &mut Trainer<M, f32, D>,
    config: &SegmentTuning,
) -> Result<SegmentTuningSummary, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(RunError::Config("batch size and epochs must be at least 1".into()));
    }
    let started = Instant::now();
    // Held until fine-tuning returns: one writer per training directory.
    let _lock = crate::train::TrainDirLock::acquire(&config.output_dir)?;
    let decoder = config.decoder.clone().with_num_classes(M::CLASSES);
    let (examples, outside_window, skipped) =
        read_segment_examples(&config.train_files, &decoder, config.skip_corrupt)?;
    if examples.is_empty() {
        return Err(RunError::Config(
            "the training files hold no rated segment with frames (the 2019 validate files carry ratings)"
                .into(),
        ));
    }
    if config.progress && !skipped.is_empty() {
        eprintln!("training data: {}", skipped.summary());
    }
    let sampling = config.frame_order.evaluation_sampling(M::READS_FRAMES_IN_ORDER);
    let mut events = EventWriter::create(&config.output_dir.join("events"))?;
    let mut summary = SegmentTuningSummary {
        segments: examples.len(),
        outside_window,
        steps: 0,
        loss_history: Vec::new(),
        map_history: Vec::new(),
        metrics: None,
        checkpoint: None,
        seconds: 0.0,
    };
    let evaluate = |trainer: &Trainer<M, f32, D>,
                    summary: &mut SegmentTuningSummary,
                    events: &mut EventWriter|
     -> Result<(), RunError> {
        if config.validate_files.is_empty() {
            return Ok(());
        }
        let m = evaluate_segments(
            &trainer.predictor(),
            &config.validate_files,
            &decoder,
            config.frame_order,
            config.skip_corrupt,
        )?;
        events.scalars(trainer.step, &[("segment_map", m.map)])?;
        if config.progress {
            eprintln!(
                "step {:>7}  validation segment MAP {:.4}  ({} classes)",
                trainer.step,
                m.map,
                m.per_class.len()
            );
        }
        summary.map_history.push((trainer.step, m.map));
        summary.metrics = Some(m);
        Ok(())
    };
    evaluate(trainer, &mut summary, &mut events)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let (mut frames, mut lengths, mut labels, mut mask) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    'epochs: for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(config.batch_size) {
            if config.max_steps.is_some_and(|max| summary.steps >= max) {
                break 'epochs;
            }
            frames.clear();
            lengths.clear();
            labels.clear();
            labels.resize(chunk.len() * M::CLASSES, 0.0);
            mask.clear();
            mask.resize(chunk.len() * M::CLASSES, 0.0);
            for (b, &i) in chunk.iter().enumerate() {
                let example = &examples[i];
                let valid = segment_rows(example, 0, M::FRAMES, &mut frames);
                lengths.push(valid_rows(sampling, valid, M::FRAMES));
                for rating in &example.segments {
                    let at = b * M::CLASSES + rating.label as usize;
                    mask[at] = 1.0;
                    labels[at] = if rating.is_positive() { 1.0 } else { 0.0 };
                }
            }
            let stats = trainer.train_step_masked(&frames, &lengths, &labels, &mask)?;
            summary.steps += 1;
            summary.loss_history.push((stats.step, stats.loss));
            events.scalars(
                stats.step,
                &[("segment_loss", stats.loss), ("learning_rate", stats.learning_rate)],
            )?;
            if config.eval_every.is_some_and(|every| summary.steps.is_multiple_of(every)) {
                evaluate(trainer, &mut summary, &mut events)?;
            }
        }
    }
    if summary.map_history.last().map(|m| m.0) != Some(trainer.step) {
        evaluate(trainer, &mut summary, &mut events)?;
    }
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        model: M::describe(),
        dtype: "f32".into(),
        training: config.description.clone(),
        step: trainer.step,
        examples_seen: trainer.examples_seen,
        metrics: summary.metrics.as_ref().map(|m| CheckpointMetrics::Segments { segment_map: m.map }),
        vocabulary_size: M::CLASSES,
        rng_state: RngState { seed: Some(config.seed), ..RngState::default() },
        files: Vec::new(),
    };
    summary.checkpoint = Some(save_checkpoint(
        &config.output_dir.join("checkpoints"),
        &trainer.model,
        &trainer.adam,
        &meta,
        config.keep_checkpoints.max(1),
    )?);
    let plot = config.output_dir.join("curves.png");
    std::fs::write(&plot, training_curves_png(&summary.loss_history, &summary.map_history))
        .map_err(|source| RunError::Io { path: plot, source })?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
