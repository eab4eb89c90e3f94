//! `loupe eval` and `loupe predict`: a checkpoint on data, as metrics or a Kaggle CSV.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use loupe::data::Vocabulary;
use loupe::distributed::Collective;
use loupe::jobs::{self, Inference, RunDevice};
use loupe::train::checkpoint::read_meta;

use super::error::CliError;
use super::job::{files, known, zoo_name_of, DeviceArgs, FrameSamplingChoice, LayoutArgs};
use super::output::{print_metrics, report_skipped, Output};
use super::segments::{run_predict_segments, SegmentPredictRequest};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint: a training directory's `checkpoints/`, or a `step-*.json` sidecar.
    #[arg(long)]
    checkpoint: PathBuf,
    /// TFRecord files or glob patterns with ground-truth labels.
    #[arg(long, required = true, num_args = 1..)]
    eval_data_pattern: Vec<String>,
    /// Videos per forward pass (does not change the results: batch norm uses running statistics).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Predictions per video kept by the metrics.
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    /// Print one JSON object (`gap`, `hit_at_1`, `perr`, `map`, `videos`).
    #[arg(long)]
    json: bool,
    /// Which frames of each video the model sees: `in-order` (the first T frames in
    /// temporal order, a shorter video's last frame repeated: what TensorFlow's eval with
    /// `--sample_random_frames=False` fed, to reproduce a released model's outputs) or
    /// `random` (T frames uniformly with replacement, seeded by the video id, so the same
    /// on every run). Default: from the checkpoint (in order for a sequence model trained
    /// in temporal order, random otherwise).
    #[arg(long)]
    frame_sampling: Option<FrameSamplingChoice>,
    #[command(flatten)]
    layout: LayoutArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Checkpoint: a training directory's `checkpoints/`, or a `step-*.json` sidecar.
    #[arg(long)]
    checkpoint: PathBuf,
    /// TFRecord files or glob patterns of the videos to label.
    #[arg(long, required = true, num_args = 1..)]
    input_data_pattern: Vec<String>,
    /// Where to write the CSV (default: standard output).
    #[arg(long)]
    output_file: Option<PathBuf>,
    /// Labels per video.
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    /// `vocabulary.csv`: adds a `LabelNames` column (for reading; Kaggle wants two columns).
    #[arg(long)]
    vocabulary: Option<PathBuf>,
    /// Videos per forward pass (with `--segments`: segments).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Score every 5-frame segment of every video (the 2019 task) and write the
    /// `Class,Segments` submission instead of video labels.
    #[arg(long, requires = "segment_classes")]
    segments: bool,
    /// With `--segments`: the classes to rank segments for, one index per line
    /// (`segment_label_ids.csv`).
    #[arg(long, requires = "segments")]
    segment_classes: Option<PathBuf>,
    /// With `--segments`: segments kept per class, best first.
    #[arg(long, default_value_t = 100_000)]
    segment_max_pred: usize,
    /// Which frames of each video the model sees: `in-order` (the first T frames in
    /// temporal order, a shorter video's last frame repeated: what TensorFlow's eval with
    /// `--sample_random_frames=False` fed, to reproduce a released model's outputs) or
    /// `random` (T frames uniformly with replacement, seeded by the video id, so the same
    /// on every run). Default: from the checkpoint (in order for a sequence model trained
    /// in temporal order, random otherwise).
    #[arg(long, conflicts_with = "segments")]
    frame_sampling: Option<FrameSamplingChoice>,
    #[command(flatten)]
    layout: LayoutArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[allow(clippy::too_many_arguments)]
fn job<'c>(
    checkpoint: PathBuf,
    patterns: &[String],
    flag: &str,
    layout: &LayoutArgs,
    device: &DeviceArgs,
    batch_size: usize,
    top_k: usize,
    frame_sampling: Option<FrameSamplingChoice>,
    collective: &'c dyn Collective,
) -> Result<(String, RunDevice, Inference<'c>), CliError> {
    if batch_size == 0 || top_k == 0 {
        return Err(CliError::message("--batch-size and --top-k must be at least 1"));
    }
    let (_, meta) = read_meta(&checkpoint).map_err(|e| CliError::context("reading the checkpoint", e))?;
    let model = zoo_name_of(&meta)?;
    let files = files(flag, patterns)?;
    let decoder = layout.decoder(&files)?;
    let device = device.build()?;
    Ok((
        model,
        device,
        Inference {
            collective,
            checkpoint,
            files,
            decoder,
            batch_size,
            skip_corrupt: layout.skip_corrupt,
            frame_sampling: frame_sampling.map(FrameSamplingChoice::sampling),
        },
    ))
}

pub fn run_eval(args: EvalArgs, out: &mut Output, collective: &dyn Collective) -> Result<(), CliError> {
    let (model, device, job) = job(
        args.checkpoint,
        &args.eval_data_pattern,
        "--eval-data-pattern",
        &args.layout,
        &args.device,
        args.batch_size,
        args.top_k,
        args.frame_sampling,
        collective,
    )?;
    let (summary, skipped) = known(&model, jobs::evaluate(&model, device, job, args.top_k))?
        .map_err(|e| CliError::context(format!("evaluating {model}"), e))?;
    // Rank 0 holds every rank's skips added up; the others print nothing.
    if collective.is_root() {
        report_skipped("evaluation data", &skipped);
    }
    if args.json {
        let mut value =
            serde_json::to_value(summary).map_err(|e| CliError::context("serialising metrics", e))?;
        value["skipped"] =
            serde_json::to_value(&skipped).map_err(|e| CliError::context("serialising metrics", e))?;
        return out.line(value);
    }
    print_metrics(out, &summary, false)
}

pub fn run_predict(args: PredictArgs, out: &mut Output, collective: &dyn Collective) -> Result<(), CliError> {
    if let (true, Some(classes)) = (args.segments, &args.segment_classes) {
        let request = SegmentPredictRequest {
            checkpoint: &args.checkpoint,
            patterns: &args.input_data_pattern,
            classes,
            max_per_class: args.segment_max_pred,
            batch_size: args.batch_size,
            output_file: args.output_file.as_ref(),
            layout: &args.layout,
            device: &args.device,
        };
        return run_predict_segments(request, out);
    }
    let (model, device, eval) = job(
        args.checkpoint,
        &args.input_data_pattern,
        "--input-data-pattern",
        &args.layout,
        &args.device,
        args.batch_size,
        args.top_k,
        args.frame_sampling,
        collective,
    )?;
    let vocabulary = args.vocabulary.as_ref().map(Vocabulary::load).transpose()?;
    let started = std::time::Instant::now();
    // The one call of the job, writing its rows where `out` says.
    let predict = |rows: Box<dyn Write + '_>| {
        known(&model, jobs::predict(&model, device, eval, args.top_k, rows, vocabulary))?
            .map_err(|e| CliError::context(format!("predicting with {model}"), e))
    };
    let (written, skipped) = match &args.output_file {
        // Rank 0 alone writes; the other ranks only send it their rows.
        Some(_) if !collective.is_root() => predict(Box::new(std::io::sink()))?,
        Some(path) => {
            // Write next to the target and rename, so a failed run leaves no half file.
            let tmp = path.with_extension("csv.tmp");
            let file = std::fs::File::create(&tmp)
                .map_err(|e| CliError::context(format!("{}", tmp.display()), e))?;
            let (n, skipped) = predict(Box::new(std::io::BufWriter::new(file)))?;
            std::fs::rename(&tmp, path).map_err(|e| CliError::context(format!("{}", path.display()), e))?;
            eprintln!("wrote {n} videos to {}", path.display());
            (n, skipped)
        }
        None => {
            let mut buffer = Vec::new();
            let result = predict(Box::new(&mut buffer))?;
            for line in String::from_utf8_lossy(&buffer).lines() {
                out.line(line)?;
            }
            result
        }
    };
    if collective.is_root() {
        report_skipped("input data", &skipped);
        // End to end: the checkpoint's loading, the decoding (which overlaps the model's
        // batches on its own thread) and the writing.
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "predicted {written} videos in {seconds:.2} s: {:.1} videos/s",
            written as f64 / seconds.max(1e-9)
        );
    }
    Ok(())
}
