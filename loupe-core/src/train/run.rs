//! The training job end to end: data in, checkpoints, TensorBoard events, curves and
//! metrics out. Generic over any [`VideoModel`], so a user's own `#[video_model]` gets
//! the same machinery as the zoo.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dfdx::prelude::*;
use dfdx::tensor::safetensors::SafeDtype;

use crate::data::{DataFormat, Dataset, FrameOrder, SkipReport, VideoDecoder};
use crate::distributed::{
    broadcast_tensors, broadcast_u64, sum_skip_reports, training_shard, Collective, SingleProcess,
};
use crate::metrics::MetricsSummary;
use crate::model::VideoModel;
use crate::report::{training_curves_png, EventWriter};
use crate::train::checkpoint::{
    load_checkpoint, remove_leftovers, resolve_checkpoint, save_checkpoint, CheckpointMeta, CHECKPOINT_FORMAT,
};
use crate::train::evaluation::{batches, check_data_fits};
use crate::train::{
    interrupt, CheckpointMetrics, RngState, TrainConfig, TrainDirLock, TrainError, Trainer,
    TrainingDescription,
};

// The jobs over a dataset live below this module (the training job validates with them);
// their public paths are here.
pub use crate::train::evaluation::{
    evaluate_dataset, evaluation_dataset, evaluation_dataset_in_order, predict, write_embeddings,
};
pub use crate::train::run_error::RunError;
pub use crate::train::sharded::{embed_across, evaluate_across, predict_across};

/// Everything a training run needs besides the model type and the device. The
/// [`Default`] is `loupe train`'s defaults (no files, YouTube-8M frame-level streams,
/// batch 80, 1000 steps, a checkpoint every 1000 steps, output in `loupe-run`): set what
/// differs with `RunConfig { train_files, ..RunConfig::default() }`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Training shards.
    pub train_files: Vec<PathBuf>,
    /// Validation shards (empty: no evaluation).
    pub validate_files: Vec<PathBuf>,
    /// How records become videos (format, streams, max frames).
    pub decoder: VideoDecoder,
    pub batch_size: usize,
    /// Seeds the data order and frame sampling (model weights come from the device seed).
    pub seed: u64,
    /// Videos in the shuffle buffer.
    pub shuffle_buffer: usize,
    /// Stop after this many optimizer steps.
    pub max_steps: Option<u64>,
    /// Stop after this many passes over the training data (`None`: until `max_steps`).
    pub epochs: Option<usize>,
    /// Evaluate on the validation shards every this many steps (and at the end).
    pub eval_every: Option<u64>,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: Option<u64>,
    /// Checkpoints go to `<output_dir>/checkpoints`, TensorBoard events to
    /// `<output_dir>/events`, the curves to `<output_dir>/curves.png`.
    pub output_dir: PathBuf,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Continue from `<output_dir>/checkpoints` if a checkpoint is there.
    pub resume: bool,
    /// Skip corrupt records instead of stopping.
    pub skip_corrupt: bool,
    /// Print a progress line to stderr.
    pub progress: bool,
    /// Predictions per video kept by the metrics (20 in the competition).
    pub top_k: usize,
    /// The order a model that reads frames as a sequence (LSTM, GRU) gets them in, in
    /// training and validation; orderless poolings ignore it.
    pub frame_order: FrameOrder,
    /// Loss and optimiser settings.
    pub optim: TrainConfig,
    /// How the model is trained, stored in checkpoints.
    pub description: TrainingDescription,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            train_files: Vec::new(),
            validate_files: Vec::new(),
            decoder: VideoDecoder::youtube8m(DataFormat::FrameLevel),
            batch_size: 80,
            seed: 0,
            shuffle_buffer: 512,
            max_steps: Some(1000),
            epochs: None,
            eval_every: None,
            checkpoint_every: Some(1000),
            output_dir: PathBuf::from("loupe-run"),
            keep_checkpoints: 3,
            resume: false,
            skip_corrupt: false,
            progress: false,
            top_k: 20,
            frame_order: FrameOrder::default(),
            optim: TrainConfig::default(),
            description: TrainingDescription::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: u64,
    pub examples_seen: u64,
    /// Validation metrics at the end (when validation shards were given).
    pub metrics: Option<MetricsSummary>,
    /// The final checkpoint's sidecar.
    pub checkpoint: Option<PathBuf>,
    /// Training loss per step.
    pub loss_history: Vec<(u64, f64)>,
    /// Validation GAP per evaluation.
    pub gap_history: Vec<(u64, f64)>,
    pub seconds: f64,
    /// What `skip_corrupt` skipped in the training files read so far (each bad record
    /// counted once, however many epochs met it).
    pub skipped_training: SkipReport,
    /// What `skip_corrupt` skipped in the validation files.
    pub skipped_validation: SkipReport,
}

/// Loads the checkpoint at `path` (a directory or a sidecar) into a new model on `device`
/// to train it further (with `optim`; Adam's moments start afresh). To run a trained
/// model, load it with [`Predictor::load`](crate::infer::Predictor::load).
pub fn load_model<M, D>(
    device: D,
    path: &Path,
    optim: TrainConfig,
) -> Result<(Trainer<M, f32, D>, CheckpointMeta), RunError>
where
    D: Device<f32>,
    f32: SafeDtype,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    let mut trainer = Trainer::<M, f32, D>::new(device, optim)?;
    let meta = load_checkpoint(path, &M::describe(), &mut trainer.model, None)?;
    trainer.step = meta.step;
    trainer.examples_seen = meta.examples_seen;
    Ok((trainer, meta))
}

/// Trains a new model of type `M` on `device` (or resumes one) as `config` says.
pub fn train<M, D>(device: D, config: &RunConfig) -> Result<(Trainer<M, f32, D>, RunSummary), RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    train_across::<M, D>(device, config, &SingleProcess)
}

/// [`train`] as one rank of a data-parallel job; every rank of `collective` calls it
/// with the same `config`.
///
/// - Rank 0's weights (and, when resuming, its checkpoint: weights, Adam moments and
///   counters) are broadcast, so all ranks start equal whatever their device seeds.
/// - Rank `r` reads `train_files[r]`, `train_files[r + N]`, ... (an error when there are
///   fewer files than ranks), shuffled with the same seed on every rank.
/// - Each step, the gradients are averaged over the ranks' batches before clipping and
///   Adam ([`Trainer::train_step_across`]), so all ranks keep the same weights; the
///   schedule, `examples_seen` and the progress line count the videos of all ranks.
///   Training stops when any rank's data ends (the others' last batches are not used).
/// - Validation files are dealt to ranks the same way ([`evaluate_across`]).
/// - Only rank 0 writes checkpoints, events, curves and the progress line.
/// - Resuming with another number of ranks continues from the checkpoint's weights and
///   counters; each rank skips `examples_seen / ranks` videos of its own stream (the
///   interrupted run's data order is reproduced exactly only with the same number of
///   ranks, or when the files are laid out for it; see docs/distributed.md).
///
/// An error on one rank leaves the others waiting in their next collective call: end
/// the job with [`Collective::abort`] (the CLI does).
pub fn train_across<M, D>(
    device: D,
    config: &RunConfig,
    collective: &dyn Collective,
) -> Result<(Trainer<M, f32, D>, RunSummary), RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    if config.batch_size == 0 {
        return Err(RunError::Config("batch size must be at least 1".into()));
    }
    if config.train_files.is_empty() {
        return Err(RunError::Config("no training files".into()));
    }
    if config.max_steps.is_none() && config.epochs.is_none() {
        return Err(RunError::Config("give a number of steps or of epochs, or training never ends".into()));
    }
    check_data_fits::<M, D>(&config.decoder)?;
    let train_files = training_shard(&config.train_files, collective)?;
    let root = collective.is_root();
    let ranks = collective.world_size() as u64;
    let started = Instant::now();
    // Held until training returns: one writer per training directory (rank 0 writes).
    let _lock = if root { Some(TrainDirLock::acquire(&config.output_dir)?) } else { None };
    let checkpoints = config.output_dir.join("checkpoints");
    if root {
        remove_leftovers(&checkpoints)?;
    }
    let mut trainer = Trainer::<M, f32, D>::new(device, config.optim)?;
    let mut consumed: u64 = 0;
    // Ranks of the run that wrote the checkpoint resumed from.
    let mut checkpoint_ranks = ranks;
    let mut summary = RunSummary {
        steps: 0,
        examples_seen: 0,
        metrics: None,
        checkpoint: None,
        loss_history: Vec::new(),
        gap_history: Vec::new(),
        seconds: 0.0,
        skipped_training: SkipReport::default(),
        skipped_validation: SkipReport::default(),
    };
    let resume =
        broadcast_u64(collective, (root && config.resume && resolve_checkpoint(&checkpoints).is_ok()) as u64)
            == 1;
    if resume && root {
        let meta =
            load_checkpoint(&checkpoints, &M::describe(), &mut trainer.model, Some(&mut trainer.adam))?;
        trainer.step = meta.step;
        trainer.examples_seen = meta.examples_seen;
        consumed = meta.rng_state.batches_consumed.unwrap_or(meta.step);
        checkpoint_ranks = meta.rng_state.ranks.unwrap_or(1).max(1);
        if meta.rng_state.seed != Some(config.seed) {
            return Err(RunError::Config(format!(
                "resuming with seed {} but the checkpoint was trained with seed {}: the data order would differ",
                config.seed,
                meta.rng_state.seed.map_or_else(|| "null".to_string(), |s| s.to_string())
            )));
        }
    }
    if ranks > 1 {
        share_state(collective, &mut trainer, resume)?;
        consumed = broadcast_u64(collective, consumed);
        checkpoint_ranks = broadcast_u64(collective, checkpoint_ranks);
    }
    let train_set = Dataset::training(train_files, config.decoder.clone(), M::CLASSES)
        .with_batch_size(config.batch_size)
        .with_frames_per_video(M::FRAMES)
        .with_sampling(config.frame_order.training_sampling(M::READS_FRAMES_IN_ORDER))
        .with_shuffle(config.seed, config.shuffle_buffer.max(1))
        .with_epochs(config.epochs)
        .with_skip_corrupt(config.skip_corrupt);
    let validate_set = if config.validate_files.is_empty() {
        None
    } else {
        Some(evaluation_dataset_in_order::<M, D>(
            config.validate_files.clone(),
            config.decoder.clone(),
            config.batch_size,
            config.skip_corrupt,
            config.frame_order,
        )?)
    };
    let mut events = if root { Some(EventWriter::create(&config.output_dir.join("events"))?) } else { None };
    let mut stream = batches(&train_set)?;
    // Resuming: the data order is a function of the seed (and the number of ranks), so
    // skipping the batches already consumed puts the stream exactly where the interrupted
    // run was. With another number of ranks, each rank skips its share of the videos seen
    // (exact when the files split evenly, e.g. one rank's file order interleaved).
    let skip = if checkpoint_ranks == ranks {
        consumed
    } else {
        trainer.examples_seen.div_ceil(ranks * config.batch_size as u64)
    };
    for _ in 0..skip {
        if stream.next().transpose()?.is_none() {
            break;
        }
    }
    let mut progress = Progress::new(config.progress && root);
    let save = |trainer: &Trainer<M, f32, D>,
                consumed: u64,
                metrics: Option<&MetricsSummary>|
     -> Result<PathBuf, RunError> {
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT,
            model: M::describe(),
            dtype: "f32".into(),
            training: config.description.clone(),
            step: trainer.step,
            examples_seen: trainer.examples_seen,
            metrics: metrics.map(|m| CheckpointMetrics::Videos(*m)),
            vocabulary_size: M::CLASSES,
            rng_state: RngState {
                seed: Some(config.seed),
                batches_consumed: Some(consumed),
                ranks: Some(ranks),
            },
            files: Vec::new(),
        };
        Ok(save_checkpoint(&checkpoints, &trainer.model, &trainer.adam, &meta, config.keep_checkpoints)?)
    };
    let mut last_metrics = None;
    let mut interrupted = false;
    loop {
        if config.max_steps.is_some_and(|max| trainer.step >= max) {
            break;
        }
        let next = stream.next().transpose()?;
        let (all_have_batches, stop) = agree_on_next_step(collective, next.is_some());
        if stop {
            // The batch just read is not consumed: a resumed run reads it again.
            interrupted = true;
            break;
        }
        if !all_have_batches {
            break;
        }
        let Some(batch) = next else { break };
        let stats = trainer.train_step_across(&batch.frames, &batch.lengths, &batch.labels, collective)?;
        consumed += 1;
        summary.loss_history.push((stats.step, stats.loss));
        if let Some(events) = &mut events {
            events.scalars(stats.step, &[("loss", stats.loss), ("learning_rate", stats.learning_rate)])?;
        }
        progress.step(&stats);
        if let (Some(every), Some(set)) = (config.eval_every, &validate_set) {
            if stats.step % every == 0 {
                let m = evaluate_across(&trainer.predictor(), set, config.top_k, collective)?;
                if let Some(events) = &mut events {
                    events.scalars(
                        stats.step,
                        &[("gap", m.gap), ("hit_at_1", m.hit_at_1), ("perr", m.perr), ("map", m.map)],
                    )?;
                }
                summary.gap_history.push((stats.step, m.gap));
                progress.evaluated(stats.step, &m);
                last_metrics = Some(m);
            }
        }
        if root && config.checkpoint_every.is_some_and(|every| stats.step % every == 0) {
            summary.checkpoint = Some(save(&trainer, consumed, last_metrics.as_ref())?);
        }
    }
    progress.finish();
    if let (false, Some(set)) = (interrupted, &validate_set) {
        if summary.gap_history.last().map(|g| g.0) != Some(trainer.step) {
            let m = evaluate_across(&trainer.predictor(), set, config.top_k, collective)?;
            if let Some(events) = &mut events {
                events.scalars(
                    trainer.step,
                    &[("gap", m.gap), ("hit_at_1", m.hit_at_1), ("perr", m.perr), ("map", m.map)],
                )?;
            }
            summary.gap_history.push((trainer.step, m.gap));
            last_metrics = Some(m);
        }
    }
    if root {
        summary.checkpoint = Some(save(&trainer, consumed, last_metrics.as_ref())?);
        let plot = config.output_dir.join("curves.png");
        std::fs::write(&plot, training_curves_png(&summary.loss_history, &summary.gap_history))
            .map_err(|source| RunError::Io { path: plot, source })?;
    }
    if interrupted {
        let checkpoint = summary.checkpoint.clone().unwrap_or_else(|| checkpoints.clone());
        return Err(RunError::Interrupted { step: trainer.step, checkpoint });
    }
    summary.metrics = last_metrics;
    summary.steps = trainer.step;
    summary.examples_seen = trainer.examples_seen;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.skipped_training = sum_skip_reports(collective, &train_set.skip_report());
    let skipped_validation = validate_set.map(|set| set.skip_report()).unwrap_or_default();
    summary.skipped_validation = sum_skip_reports(collective, &skipped_validation);
    Ok((trainer, summary))
}

/// What every rank must agree on before a step, in one all-reduce: whether every rank
/// has a batch (a rank whose data ended would leave the others waiting in the gradient
/// all-reduce, so all step or none), and whether a stop was asked for
/// ([`interrupt::request_stop`]) on any rank (so all stop after the same step).
fn agree_on_next_step(collective: &dyn Collective, has_batch: bool) -> (bool, bool) {
    let mut flags = [has_batch as u8 as f64, interrupt::stop_requested() as u8 as f64];
    if collective.world_size() > 1 {
        collective.all_reduce_sum_f64(&mut flags);
    }
    (flags[0] >= collective.world_size() as f64, flags[1] > 0.0)
}

/// Makes every rank's model, Adam state and counters rank 0's (after rank 0 loaded a
/// checkpoint when `resumed`).
fn share_state<M, D>(
    collective: &dyn Collective,
    trainer: &mut Trainer<M, f32, D>,
    resumed: bool,
) -> Result<(), RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    let device = |e: D::Err| RunError::Train(TrainError::Device(format!("{e:?}")));
    broadcast_tensors(collective, &mut trainer.model).map_err(device)?;
    if resumed {
        let has_moments = broadcast_u64(collective, trainer.adam.moments.is_some() as u64) == 1;
        if has_moments {
            // The other ranks' moments take their structure from the model, then rank 0's values.
            let (m, v) =
                trainer.adam.moments.get_or_insert_with(|| (trainer.model.clone(), trainer.model.clone()));
            broadcast_tensors(collective, m).map_err(device)?;
            broadcast_tensors(collective, v).map_err(device)?;
        }
        trainer.adam.step = broadcast_u64(collective, trainer.adam.step);
        trainer.step = broadcast_u64(collective, trainer.step);
        trainer.examples_seen = broadcast_u64(collective, trainer.examples_seen);
    }
    Ok(())
}

/// The progress line: step, loss (smoothed), learning rate, videos/s.
struct Progress {
    enabled: bool,
    terminal: bool,
    started: Instant,
    videos: u64,
    smoothed: Option<f64>,
    last_print: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            videos: 0,
            smoothed: None,
            last_print: None,
        }
    }

    fn step(&mut self, stats: &crate::train::StepStats) {
        self.videos += stats.batch as u64;
        let s = self.smoothed.map_or(stats.loss, |s| 0.9 * s + 0.1 * stats.loss);
        self.smoothed = Some(s);
        if !self.enabled {
            return;
        }
        let due =
            self.last_print.is_none_or(|t| t.elapsed().as_secs_f64() > if self.terminal { 0.2 } else { 5.0 });
        if due {
            let rate = self.videos as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let line = format!(
                "step {:>7}  loss {s:.4}  lr {:.2e}  {rate:.1} videos/s",
                stats.step, stats.learning_rate
            );
            if self.terminal {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
            self.last_print = Some(Instant::now());
        }
    }

    fn evaluated(&mut self, step: u64, m: &MetricsSummary) {
        if self.enabled {
            if self.terminal {
                eprintln!();
            }
            eprintln!(
                "step {step:>7}  validation GAP {:.4}  hit@1 {:.4}  PERR {:.4}  mAP {:.4}  ({} videos)",
                m.gap, m.hit_at_1, m.perr, m.map, m.videos
            );
        }
    }

    fn finish(&mut self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}
