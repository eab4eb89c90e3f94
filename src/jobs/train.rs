//! The jobs that train: training, the quick start's training with a few predictions,
//! fine-tuning on rated segments, and the benchmark of a training step.

use std::path::PathBuf;

use crate::bench::{bench_model_across, BenchConfig, BenchReport};
use crate::data::DataFormat;
use crate::distributed::Collective;
use crate::metrics::MetricsSummary;
use crate::model::VideoModel;
use crate::train::run::{evaluation_dataset, load_model, train_across, RunConfig, RunError, RunSummary};
use crate::train::segment_tuning::{fine_tune_segments as tune, SegmentTuning, SegmentTuningSummary};
use crate::train::TrainError;

use super::dispatch::{on_model, Job, JobDevice, JobModel, RunDevice};

/// A training setup with every value resolved: `loupe train`'s, and `loupe train
/// --segment-labels`'s.
pub struct TrainPlan {
    /// The zoo model's name.
    pub model: String,
    pub config: RunConfig,
    /// The classifier's L2 penalty; `None`: the model's own ([`ModelDescription::classifier_l2`](crate::model::ModelDescription::classifier_l2)).
    pub regularization_penalty: Option<f64>,
    /// The file the streams were detected from (none when the flags name them): a stream
    /// size that does not fit the model is then reported against that file.
    pub layout_source: Option<PathBuf>,
}

impl TrainPlan {
    /// The optimizer's settings with the classifier's penalty resolved for `M`.
    fn resolve<M: VideoModel<f32, D>, D: JobDevice>(&mut self) {
        self.config.optim.classifier_l2 = self.regularization_penalty.unwrap_or(M::describe().classifier_l2);
    }

    /// An error naming the file the streams came from when they do not fit `M`: the
    /// library's own check would only say that the sizes differ.
    fn check_layout<M: VideoModel<f32, D>, D: JobDevice>(&self) -> Result<(), RunError> {
        let decoder = &self.config.decoder;
        let Some(source) = self.layout_source.as_ref().filter(|_| decoder.feature_dim() != M::FEATURES)
        else {
            return Ok(());
        };
        let streams: Vec<String> =
            decoder.spec().streams().iter().map(|s| format!("{} {}", s.name, s.size)).collect();
        Err(RunError::Config(format!(
            "{}: record 0 has the streams {} ({} values per {unit}), but model {} expects {} values per {unit}: a stream is missing or of another size in this file (name the streams with --feature-names and --feature-sizes if they are called differently)",
            source.display(),
            streams.join(" + "),
            decoder.feature_dim(),
            self.model,
            M::FEATURES,
            unit = if decoder.format() == DataFormat::FrameLevel { "frame" } else { "video" },
        )))
    }
}

struct Train<'c>(TrainPlan, &'c dyn Collective);

impl Job for Train<'_> {
    type Output = Result<RunSummary, RunError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let Train(mut plan, collective) = self;
        plan.resolve::<M, D>();
        plan.check_layout::<M, D>()?;
        train_across::<M, D>(device, &plan.config, collective).map(|(_, summary)| summary)
    }
}

/// Trains `plan`'s zoo model as one rank of `collective` (checkpoints, TensorBoard events,
/// validation); `None` for a name not in the zoo.
pub fn train(
    plan: TrainPlan,
    device: RunDevice,
    collective: &dyn Collective,
) -> Option<Result<RunSummary, RunError>> {
    let name = plan.model.clone();
    on_model(&name, device, Train(plan, collective))
}

/// What [`train_and_show`] returns: the validation metrics, the training's seconds, and
/// `(id, true labels, top 3 predictions)` of the first validation videos.
pub type Shown = (MetricsSummary, f64, Vec<(String, Vec<u32>, Vec<(u32, f32)>)>);

struct TrainAndShow(RunConfig, usize);

impl Job for TrainAndShow {
    type Output = Result<Shown, RunError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let TrainAndShow(mut config, show) = self;
        config.optim.classifier_l2 = M::describe().classifier_l2;
        let (trainer, summary) = crate::train::run::train::<M, D>(device, &config)?;
        let metrics = summary.metrics.ok_or_else(|| RunError::Config("no validation data".into()))?;
        let dataset =
            evaluation_dataset::<M, D>(config.validate_files.clone(), config.decoder.clone(), show, false)?;
        let mut examples = Vec::new();
        if let Some(batch) = dataset.frame_batches()?.next() {
            let batch = batch?;
            let top = trainer.predict_top_k(&batch.frames, 3)?;
            for (i, predictions) in top.into_iter().enumerate() {
                let truth = batch
                    .video_labels(i)
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v > 0.5)
                    .map(|(c, _)| c as u32)
                    .collect();
                examples.push((batch.ids[i].clone(), truth, predictions));
            }
        }
        Ok((metrics, summary.seconds, examples))
    }
}

/// Trains the zoo model `name` in one process (the model's own classifier penalty), then
/// predicts the first `show` validation videos (`loupe quickstart`); `None` for a name not
/// in the zoo.
pub fn train_and_show(
    name: &str,
    device: RunDevice,
    config: RunConfig,
    show: usize,
) -> Option<Result<Shown, RunError>> {
    on_model(name, device, TrainAndShow(config, show))
}

struct Tune(TrainPlan, PathBuf);

impl Job for Tune {
    type Output = Result<SegmentTuningSummary, RunError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let Tune(mut plan, init) = self;
        plan.resolve::<M, D>();
        let (mut trainer, _) = load_model::<M, D>(device, &init, plan.config.optim)?;
        // A new run: the learning-rate schedule starts again from the base rate.
        trainer.step = 0;
        trainer.examples_seen = 0;
        let c = plan.config;
        let mut description = c.description;
        description.segment_labels = Some(true);
        description.init_from = Some(init.display().to_string());
        let tuning = SegmentTuning {
            train_files: c.train_files,
            validate_files: c.validate_files,
            decoder: c.decoder,
            batch_size: c.batch_size,
            epochs: c.epochs.unwrap_or(usize::MAX),
            max_steps: c.max_steps,
            eval_every: c.eval_every,
            seed: c.seed,
            frame_order: c.frame_order,
            output_dir: c.output_dir,
            keep_checkpoints: c.keep_checkpoints,
            skip_corrupt: c.skip_corrupt,
            progress: c.progress,
            description,
        };
        tune(&mut trainer, &tuning)
    }
}

/// Fine-tunes the checkpoint `init` (trained on video labels) of `plan`'s zoo model on the
/// rated segments of `plan`'s training files, in one process; `None` for a name not in
/// the zoo.
pub fn fine_tune_segments(
    plan: TrainPlan,
    init: PathBuf,
    device: RunDevice,
) -> Option<Result<SegmentTuningSummary, RunError>> {
    let name = plan.model.clone();
    on_model(&name, device, Tune(plan, init))
}

struct Bench<'c>(BenchConfig, &'c dyn Collective);

impl Job for Bench<'_> {
    type Output = Result<BenchReport, TrainError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        bench_model_across::<M, D>(device, &self.0, self.1)
    }
}

/// Times the zoo model `name`'s forward, forward + backward and training step as one rank
/// of `collective` ([`bench_model_across`]); `None` for a name not in the zoo.
pub fn bench(
    name: &str,
    device: RunDevice,
    config: &BenchConfig,
    collective: &dyn Collective,
) -> Option<Result<BenchReport, TrainError>> {
    on_model(name, device, Bench(*config, collective))
}
