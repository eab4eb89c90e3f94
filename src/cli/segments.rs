//! The 2019 segment task on the command line: `loupe predict --segments` (every 5-frame
//! segment scored, the best per whitelisted class kept) and `loupe train
//! --segment-labels` (fine-tuning on rated segments).

use std::path::{Path, PathBuf};

use loupe::data::{read_segment_classes, FrameOrder, VideoDecoder};
use loupe::infer::Predictor;
use loupe::model::VideoModel;
use loupe::segment_submission::{write_segment_submission, SegmentRow};
use loupe::train::checkpoint::read_meta;
use loupe::train::run::{load_model, RunError};
use loupe::train::segment_tuning::{fine_tune_segments, SegmentTuning, SegmentTuningSummary};
use loupe::train::segments::{predict_segments, SegmentInference};

use super::error::CliError;
use super::job::{
    files, on_model, zoo_name_of, DeviceArgs, Job, JobDevice, LayoutArgs, RunDevice, TrainPlan,
};
use super::output::Output;

/// What `predict --segments` was asked for.
pub struct SegmentPredictRequest<'a> {
    pub checkpoint: &'a Path,
    pub patterns: &'a [String],
    pub classes: &'a Path,
    pub max_per_class: usize,
    pub batch_size: usize,
    pub output_file: Option<&'a PathBuf>,
    pub layout: &'a LayoutArgs,
    pub device: &'a DeviceArgs,
}

struct SegmentJob {
    checkpoint: PathBuf,
    inference: SegmentInference,
}

impl Job for SegmentJob {
    type Output = Result<(Vec<SegmentRow>, u64), RunError>;
    fn run<M, D>(self, device: D) -> Self::Output
    where
        D: JobDevice,
        M: VideoModel<f32, D> + loupe::dfdx::nn::BuildModule<D, f32> + Clone,
    {
        let (predictor, meta) = Predictor::<M, D>::load(device, &self.checkpoint)?;
        let inference = SegmentInference { order: meta.frame_order(), ..self.inference };
        predict_segments(&predictor, &inference)
    }
}

/// Runs the segment inference and writes the submission (to `output_file`, atomically,
/// or to standard output).
pub fn run_predict_segments(request: SegmentPredictRequest<'_>, out: &mut Output) -> Result<(), CliError> {
    if request.batch_size == 0 || request.max_per_class == 0 {
        return Err(CliError::message("--batch-size and --segment-max-pred must be at least 1"));
    }
    let classes = read_segment_classes(request.classes)?;
    let (_, meta) =
        read_meta(request.checkpoint).map_err(|e| CliError::context("reading the checkpoint", e))?;
    let model = zoo_name_of(&meta)?;
    let files = files("--input-data-pattern", request.patterns)?;
    let decoder: VideoDecoder = request.layout.decoder(&files)?;
    let device = request.device.build()?;
    let job = SegmentJob {
        checkpoint: request.checkpoint.to_path_buf(),
        inference: SegmentInference {
            files,
            decoder,
            classes,
            max_per_class: request.max_per_class,
            batch_size: request.batch_size,
            skip_corrupt: request.layout.skip_corrupt,
            order: FrameOrder::default(),
        },
    };
    let (rows, scored) = on_model(&model, device, job)?
        .map_err(|e| CliError::context(format!("scoring segments with {model}"), e))?;
    match request.output_file {
        Some(path) => {
            // Write next to the target and rename, so a failed run leaves no half file.
            let tmp = path.with_extension("csv.tmp");
            let file = std::fs::File::create(&tmp)
                .map_err(|e| CliError::context(format!("{}", tmp.display()), e))?;
            write_segment_submission(std::io::BufWriter::new(file), rows)
                .map_err(|e| CliError::context(format!("{}", tmp.display()), e))?;
            std::fs::rename(&tmp, path).map_err(|e| CliError::context(format!("{}", path.display()), e))?;
            eprintln!("scored {scored} segments; wrote the best per class to {}", path.display());
        }
        None => {
            let mut buffer = Vec::new();
            write_segment_submission(&mut buffer, rows)
                .map_err(|e| CliError::context("writing the submission", e))?;
            for line in String::from_utf8_lossy(&buffer).lines() {
                out.line(line)?;
            }
        }
    }
    Ok(())
}

/// Fine-tunes the checkpoint `init` on rated segments (`train --segment-labels`).
struct SegmentTuningJob {
    plan: TrainPlan,
    init: PathBuf,
}

impl Job for SegmentTuningJob {
    type Output = Result<SegmentTuningSummary, RunError>;
    fn run<M, D>(self, device: D) -> Self::Output
    where
        D: JobDevice,
        M: VideoModel<f32, D> + loupe::dfdx::nn::BuildModule<D, f32> + Clone,
    {
        let mut optim = self.plan.config.optim;
        optim.classifier_l2 = self.plan.regularization_penalty.unwrap_or(M::describe().classifier_l2);
        let (mut trainer, _) = load_model::<M, D>(device, &self.init, optim)?;
        // A new run: the learning-rate schedule starts again from the base rate.
        trainer.step = 0;
        trainer.examples_seen = 0;
        let c = self.plan.config;
        let mut description = c.description;
        description.segment_labels = Some(true);
        description.init_from = Some(self.init.display().to_string());
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
        fine_tune_segments(&mut trainer, &tuning)
    }
}

/// Runs `train --segment-labels` and prints its summary.
pub fn run_segment_tuning(
    plan: TrainPlan,
    init: PathBuf,
    device: RunDevice,
    json: bool,
    out: &mut Output,
) -> Result<(), CliError> {
    let model = plan.model.clone();
    let s = on_model(&model, device, SegmentTuningJob { plan, init })?
        .map_err(|e| CliError::context(format!("fine-tuning {model} on rated segments"), e))?;
    let first = s.map_history.first().map(|m| m.1);
    let last = s.metrics.as_ref().map(|m| m.map);
    if json {
        return out.line(serde_json::json!({
            "model": model,
            "segments": s.segments,
            "outside_window": s.outside_window,
            "steps": s.steps,
            "seconds": s.seconds,
            "final_loss": s.loss_history.last().map(|l| l.1),
            "initial_segment_map": first,
            "segment_map": last,
            "map_history": s.map_history,
            "checkpoint": s.checkpoint,
        }));
    }
    out.line(format!(
        "{model}: fine-tuned on {} rated segments, {} steps in {:.1} s; final loss {:.4}",
        s.segments,
        s.steps,
        s.seconds,
        s.loss_history.last().map_or(f64::NAN, |l| l.1)
    ))?;
    if let (Some(first), Some(last)) = (first, last) {
        out.line(format!("validation segment MAP: {first:.4} before, {last:.4} after"))?;
    }
    if let Some(c) = &s.checkpoint {
        out.line(format!("checkpoint: {}", c.display()))?;
    }
    Ok(())
}
