//! `loupe train`: train a zoo model on YouTube-8M-format data.
//!
//! Flags are named like the YouTube-8M starter code's (`--train-data-pattern`,
//! `--base-learning-rate`, ...). A TOML file (`--config`) may hold the same settings with
//! snake_case keys; flags given on the command line win over the file.

use std::path::PathBuf;

use clap::Args;
use loupe::config::TrainFile;
use loupe::data::FrameOrder;
use loupe::distributed::{Collective, Compression};
use loupe::jobs::{self, TrainPlan};
use loupe::train::checkpoint::read_meta;
use loupe::train::run::{RunConfig, RunSummary};
use loupe::train::{AdamConfig, GradientClipping, LearningRateSchedule, TrainConfig, TrainingDescription};

use super::error::CliError;
use super::job::{files, known, zoo_name_of, DeviceArgs, LayoutArgs};
use super::output::{print_metrics, report_skipped, Output};
use super::segments::run_segment_tuning;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Zoo model to train (`loupe models` lists them).
    #[arg(long)]
    model: Option<String>,
    /// Training TFRecord files or glob patterns.
    #[arg(long, num_args = 1..)]
    train_data_pattern: Vec<String>,
    /// Validation TFRecord files or glob patterns (evaluated every --eval-every steps and at the end).
    #[arg(long, num_args = 1..)]
    eval_data_pattern: Vec<String>,
    /// Output directory: checkpoints/, events/ (TensorBoard) and curves.png.
    #[arg(long)]
    train_dir: Option<PathBuf>,
    /// TOML file with these settings (snake_case keys); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Videos per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate at the start.
    #[arg(long)]
    base_learning_rate: Option<f64>,
    /// Factor applied every --learning-rate-decay-examples videos.
    #[arg(long)]
    learning_rate_decay: Option<f64>,
    /// Videos between two learning-rate decays.
    #[arg(long)]
    learning_rate_decay_examples: Option<u64>,
    /// Passes over the training data.
    #[arg(long)]
    num_epochs: Option<usize>,
    /// Optimizer steps.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Evaluate every this many steps (default: only at the end).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Checkpoint every this many steps (and at the end).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Checkpoints kept.
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Clip each variable's gradient to this L2 norm (the reference's default: 1.0; 0 turns clipping off).
    #[arg(long)]
    clip_gradient_norm: Option<f64>,
    /// Clip all gradients together to this global L2 norm instead.
    #[arg(long)]
    clip_global_norm: Option<f64>,
    /// Coefficient of the classifier's L2 penalty (default: the model's).
    #[arg(long)]
    regularization_penalty: Option<f64>,
    /// Order a recurrent model (lstm, gru) or a model with frame masks (nextvlad) reads
    /// each video's frames in: `temporal` (the paper, default) or `random` (drawn with
    /// replacement, as the released LSTM); other models always sample with replacement.
    #[arg(long, value_name = "temporal|random")]
    frame_order: Option<FrameOrder>,
    /// Seed of the data order and frame sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Videos in the shuffle buffer.
    #[arg(long)]
    shuffle_buffer: Option<usize>,
    /// Predictions per video kept by the metrics.
    #[arg(long)]
    top_k: Option<usize>,
    /// Across MPI ranks: send the gradients as IEEE half precision (half the bytes of the
    /// all-reduce, about 3 significant digits; Horovod's fp16 compression). Off by default.
    #[arg(long)]
    allreduce_fp16: bool,
    /// Continue from the checkpoint in --train-dir.
    #[arg(long)]
    resume: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Fine-tune on the rated segments of the training files (the 2019 task) instead of
    /// video labels: each rated segment's positive and negative classes are the targets,
    /// unrated classes stay out of the loss, evaluation reports the segment MAP. Starts
    /// from `--init-from`.
    #[arg(long, requires = "init_from", conflicts_with = "resume")]
    segment_labels: bool,
    /// With `--segment-labels`: the checkpoint (trained on video labels) to start from;
    /// its model is the one trained (`--model` may be left out).
    #[arg(long, requires = "segment_labels")]
    init_from: Option<PathBuf>,
    #[command(flatten)]
    layout: LayoutArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

fn positive(name: &str, v: f64) -> Result<f64, CliError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(CliError::message(format!("--{name} must be positive, got {v}")))
    }
}

fn at_least_one<T: PartialOrd + From<u8> + std::fmt::Display>(name: &str, v: T) -> Result<T, CliError> {
    if v >= T::from(1) {
        Ok(v)
    } else {
        Err(CliError::message(format!("--{name} must be at least 1, got {v}")))
    }
}

impl TrainArgs {
    pub fn plan(self) -> Result<TrainPlan, CliError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::context(format!("{}", path.display()), e))?;
                TrainFile::parse(&text).map_err(|e| CliError::context(format!("{}", path.display()), e))?
            }
            None => TrainFile::default(),
        };
        let pick_vec = |flag: Vec<String>, file: Option<Vec<String>>| {
            if flag.is_empty() {
                file.unwrap_or_default()
            } else {
                flag
            }
        };
        let model = self
            .model
            .or(file.model)
            .ok_or_else(|| CliError::message("--model is required (`loupe models` lists them)"))?;
        let train_patterns = pick_vec(self.train_data_pattern, file.train_data_pattern);
        if train_patterns.is_empty() {
            return Err(CliError::message("--train-data-pattern is required"));
        }
        let eval_patterns = pick_vec(self.eval_data_pattern, file.eval_data_pattern);
        let train_files = files("--train-data-pattern", &train_patterns)?;
        let validate_files =
            if eval_patterns.is_empty() { Vec::new() } else { files("--eval-data-pattern", &eval_patterns)? };
        let decoder = self.layout.decoder(&train_files)?;
        let layout_source = self.layout.detected_from(&train_files).cloned();

        let batch_size = at_least_one("batch-size", self.batch_size.or(file.batch_size).unwrap_or(80))?;
        let schedule = LearningRateSchedule {
            base: positive(
                "base-learning-rate",
                self.base_learning_rate.or(file.base_learning_rate).unwrap_or(2e-4),
            )?,
            decay: positive(
                "learning-rate-decay",
                self.learning_rate_decay.or(file.learning_rate_decay).unwrap_or(0.8),
            )?,
            decay_examples: at_least_one(
                "learning-rate-decay-examples",
                self.learning_rate_decay_examples.or(file.learning_rate_decay_examples).unwrap_or(4_000_000),
            )?,
        };
        if schedule.decay > 1.0 {
            return Err(CliError::message(format!(
                "--learning-rate-decay must be at most 1, got {}",
                schedule.decay
            )));
        }
        let clipping = match (
            self.clip_global_norm.or(file.clip_global_norm),
            self.clip_gradient_norm.or(file.clip_gradient_norm),
        ) {
            (Some(_), Some(_)) => {
                return Err(CliError::message("give --clip-gradient-norm or --clip-global-norm, not both"))
            }
            (Some(g), None) => GradientClipping::GlobalNorm(positive("clip-global-norm", g)?),
            (None, Some(0.0)) => GradientClipping::None,
            (None, Some(c)) => GradientClipping::PerVariable(positive("clip-gradient-norm", c)?),
            (None, None) => GradientClipping::PerVariable(1.0),
        };
        let regularization_penalty = self.regularization_penalty.or(file.regularization_penalty);
        if let Some(l2) = regularization_penalty {
            if !(l2.is_finite() && l2 >= 0.0) {
                return Err(CliError::message(format!("--regularization-penalty must be >= 0, got {l2}")));
            }
        }
        let max_steps =
            self.max_steps.or(file.max_steps).map(|s| at_least_one("max-steps", s)).transpose()?;
        let epochs =
            self.num_epochs.or(file.num_epochs).map(|e| at_least_one("num-epochs", e)).transpose()?;
        let epochs = if max_steps.is_none() && epochs.is_none() { Some(1) } else { epochs };
        let eval_every =
            self.eval_every.or(file.eval_every).map(|s| at_least_one("eval-every", s)).transpose()?;
        let checkpoint_every = at_least_one(
            "checkpoint-every",
            self.checkpoint_every.or(file.checkpoint_every).unwrap_or(1000),
        )?;
        let seed = self.seed.or(file.seed).unwrap_or(0);
        let frame_order = self.frame_order.or(file.frame_order).unwrap_or_default();
        let train_dir = self.train_dir.or(file.train_dir).unwrap_or_else(|| PathBuf::from("loupe-train"));
        let description = TrainingDescription {
            model: Some(model.clone()),
            train_data_pattern: Some(train_patterns.clone()),
            eval_data_pattern: Some(eval_patterns.clone()),
            batch_size: Some(batch_size),
            base_learning_rate: Some(schedule.base),
            learning_rate_decay: Some(schedule.decay),
            learning_rate_decay_examples: Some(schedule.decay_examples),
            clipping: Some(format!("{clipping:?}")),
            regularization_penalty: Some(regularization_penalty),
            seed: Some(seed),
            frame_order: Some(frame_order),
            ..TrainingDescription::default()
        };
        let config = RunConfig {
            train_files,
            validate_files,
            decoder,
            batch_size,
            seed,
            shuffle_buffer: at_least_one(
                "shuffle-buffer",
                self.shuffle_buffer.or(file.shuffle_buffer).unwrap_or(512),
            )?,
            max_steps,
            epochs,
            eval_every,
            checkpoint_every: Some(checkpoint_every),
            output_dir: train_dir,
            keep_checkpoints: at_least_one(
                "keep-checkpoints",
                self.keep_checkpoints.or(file.keep_checkpoints).unwrap_or(3),
            )?,
            resume: self.resume,
            skip_corrupt: self.layout.skip_corrupt,
            progress: !self.quiet,
            top_k: at_least_one("top-k", self.top_k.or(file.top_k).unwrap_or(20))?,
            frame_order,
            optim: TrainConfig {
                schedule,
                adam: AdamConfig { clipping, ..AdamConfig::default() },
                classifier_l2: 0.0,
                compression: if self.allreduce_fp16 { Compression::Fp16 } else { Compression::None },
            },
            description,
        };
        Ok(TrainPlan { model, config, regularization_penalty, layout_source })
    }
}

pub fn print_summary(out: &mut Output, model: &str, s: &RunSummary, json: bool) -> Result<(), CliError> {
    report_skipped("training data", &s.skipped_training);
    report_skipped("validation data", &s.skipped_validation);
    if json {
        let metrics = s.metrics.map(|m| serde_json::to_value(m).unwrap_or_default());
        return out.line(serde_json::json!({
            "model": model,
            "steps": s.steps,
            "examples_seen": s.examples_seen,
            "seconds": s.seconds,
            "final_loss": s.loss_history.last().map(|l| l.1),
            "metrics": metrics,
            "checkpoint": s.checkpoint,
            "peak_memory_bytes": loupe::bench::peak_memory_bytes(),
            "skipped": {"training": s.skipped_training, "validation": s.skipped_validation},
        }));
    }
    out.line(format!(
        "{model}: {} steps, {} videos in {:.1} s; final loss {:.4}",
        s.steps,
        s.examples_seen,
        s.seconds,
        s.loss_history.last().map_or(f64::NAN, |l| l.1)
    ))?;
    if let Some(m) = &s.metrics {
        print_metrics(out, m, false)?;
    }
    if let Some(c) = &s.checkpoint {
        out.line(format!("checkpoint: {}", c.display()))?;
    }
    if let Some(peak) = loupe::bench::peak_memory_bytes() {
        out.line(format!("peak memory (VmHWM): {:.2} GiB", peak as f64 / (1u64 << 30) as f64))?;
    }
    for (what, skipped) in
        [("training data", &s.skipped_training), ("validation data", &s.skipped_validation)]
    {
        if !skipped.is_empty() {
            out.line(format!("{what}: {}", skipped.summary()))?;
        }
    }
    Ok(())
}

/// The first SIGINT or SIGTERM asks the run to stop after its current step
/// ([`loupe::train::interrupt`]); a second one, the stop already asked, exits at once.
fn stop_on_signals() -> Result<(), CliError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = loupe::train::interrupt::stop_flag();
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            loupe::train::interrupt::INTERRUPTED_EXIT_CODE,
            flag.clone(),
        )
        .and_then(|_| signal_hook::flag::register(signal, flag.clone()))
        .map_err(|e| CliError::context("installing the SIGINT/SIGTERM handlers", e))?;
    }
    Ok(())
}

pub fn run(mut args: TrainArgs, out: &mut Output, collective: &dyn Collective) -> Result<(), CliError> {
    stop_on_signals()?;
    let device = args.device.build()?;
    let json = args.json;
    if args.segment_labels && collective.world_size() > 1 {
        return Err(CliError::message(
            "fine-tuning on rated segments (--segment-labels) runs as one process; start it without mpirun",
        ));
    }
    if let (true, Some(init)) = (args.segment_labels, args.init_from.take()) {
        if args.model.is_none() {
            let (_, meta) = read_meta(&init).map_err(|e| CliError::context("reading --init-from", e))?;
            args.model = Some(zoo_name_of(&meta)?);
        }
        return run_segment_tuning(args.plan()?, init, device, json, out);
    }
    let plan = args.plan()?;
    let model = plan.model.clone();
    let summary = known(&model, jobs::train(plan, device, collective))?
        .map_err(|e| CliError::context(format!("training {model}"), e))?;
    print_summary(out, &model, &summary, json)
}
