//! The 2019 segment task on the command line: `loupe predict --segments` (every 5-frame
//! segment scored, the best per whitelisted class kept) and `loupe train
//! --segment-labels` (fine-tuning on rated segments).

use std::path::{Path, PathBuf};

use loupe::data::{read_segment_classes, FrameOrder, VideoDecoder};
use loupe::jobs::{self, RunDevice, TrainPlan};
use loupe::segment_submission::write_segment_submission;
use loupe::train::checkpoint::read_meta;
use loupe::train::segments::SegmentInference;

use super::error::CliError;
use super::job::{files, known, zoo_name_of, DeviceArgs, LayoutArgs};
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
    let inference = SegmentInference {
        files,
        decoder,
        classes,
        max_per_class: request.max_per_class,
        batch_size: request.batch_size,
        skip_corrupt: request.layout.skip_corrupt,
        // The checkpoint's own order replaces this.
        order: FrameOrder::default(),
    };
    let (rows, scored) =
        known(&model, jobs::predict_segments(&model, device, request.checkpoint, inference))?
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

/// Runs `train --segment-labels` and prints its summary.
pub fn run_segment_tuning(
    plan: TrainPlan,
    init: PathBuf,
    device: RunDevice,
    json: bool,
    out: &mut Output,
) -> Result<(), CliError> {
    let model = plan.model.clone();
    let s = known(&model, jobs::fine_tune_segments(plan, init, device))?
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
