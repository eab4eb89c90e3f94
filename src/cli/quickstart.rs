//! `loupe quickstart`: the main job in one command. Generates the default synthetic
//! YouTube-8M dataset (real TFRecord files), trains a small Gated NetVLAD and an
//! average-pooling baseline with the same head on it, evaluates both on the validation
//! shards and prints their metrics side by side and a few predictions with label names.

use std::path::PathBuf;

use clap::Args;
use loupe::data::{generate, DataFormat, FeatureSpec, SynthConfig, VideoDecoder, Vocabulary};
use loupe::jobs;
use loupe::train::run::RunConfig;
use loupe::train::{AdamConfig, LearningRateSchedule, TrainConfig, TrainingDescription};

use super::error::CliError;
use super::job::{known, DeviceChoice};
use super::output::Output;

/// The two models the quick start compares (zoo names).
pub const QUICKSTART_MODELS: [&str; 2] = ["quickstart-gated-netvlad", "quickstart-average"];

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Working directory: data/, and one training directory per model.
    #[arg(long, default_value = "loupe-quickstart")]
    dir: PathBuf,
    /// Passes over the 2,000 training videos.
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Seed of the data, the weights and the data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// `cpu`, `cuda` or `cuda:N` (GPU N; needs a loupe built with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Print one JSON object with both models' metrics.
    #[arg(long)]
    json: bool,
}

pub fn run(args: QuickstartArgs, out: &mut Output) -> Result<(), CliError> {
    let data_dir = args.dir.join("data");
    let synth = SynthConfig { seed: args.seed, ..SynthConfig::default() };
    if !args.quiet {
        eprintln!("generating the synthetic dataset in {} ...", data_dir.display());
    }
    let written = generate(&data_dir, &synth)?;
    let vocabulary = Vocabulary::load(&written.vocabulary)?;
    let (train_files, validate_files): (Vec<PathBuf>, Vec<PathBuf>) = written
        .frame_files
        .iter()
        .cloned()
        .partition(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("train")));
    let decoder = VideoDecoder::new(
        DataFormat::FrameLevel,
        FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, synth.rgb_size, synth.audio_size),
    );
    let mut results = Vec::new();
    for name in QUICKSTART_MODELS {
        if !args.quiet {
            eprintln!("training {name} for {} epochs ...", args.epochs);
        }
        let config = RunConfig {
            train_files: train_files.clone(),
            validate_files: validate_files.clone(),
            decoder: decoder.clone(),
            batch_size: 32,
            seed: args.seed,
            shuffle_buffer: 512,
            max_steps: None,
            epochs: Some(args.epochs),
            eval_every: None,
            checkpoint_every: None,
            output_dir: args.dir.join(name),
            keep_checkpoints: 1,
            resume: false,
            skip_corrupt: false,
            progress: !args.quiet,
            top_k: 20,
            frame_order: Default::default(),
            optim: TrainConfig {
                schedule: LearningRateSchedule { base: 1e-3, decay: 0.8, decay_examples: 4_000 },
                adam: AdamConfig::default(),
                classifier_l2: 0.0,
                ..TrainConfig::default()
            },
            description: TrainingDescription {
                model: Some(name.to_string()),
                quickstart: Some(true),
                seed: Some(args.seed),
                ..TrainingDescription::default()
            },
        };
        let outcome = known(name, jobs::train_and_show(name, args.device.build(args.seed)?, config, 4))?
            .map_err(|e| CliError::context(format!("training {name}"), e))?;
        results.push((name, outcome));
    }
    if args.json {
        let models: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(name, (m, seconds, _))| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                v["seconds"] = serde_json::json!(seconds);
                (name.to_string(), v)
            })
            .collect();
        return out.line(serde_json::Value::Object(models));
    }
    out.line(format!(
        "{:<26} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "model", "GAP", "Hit@1", "PERR", "mAP", "seconds"
    ))?;
    for (name, (m, seconds, _)) in &results {
        out.line(format!(
            "{name:<26} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {seconds:>9.1}",
            m.gap, m.hit_at_1, m.perr, m.map
        ))?;
    }
    let label = |c: u32| vocabulary.name(c).map(str::to_string).unwrap_or_else(|| c.to_string());
    let (name, (_, _, examples)) = &results[0];
    out.line(format!("\npredictions of {name} on validation videos:"))?;
    for (id, truth, predictions) in examples {
        let truth: Vec<String> = truth.iter().map(|&c| label(c)).collect();
        let predicted: Vec<String> =
            predictions.iter().map(|&(c, s)| format!("{} {s:.2}", label(c))).collect();
        out.line(format!("  {id}: predicted [{}]  true [{}]", predicted.join(", "), truth.join(", ")))?;
    }
    out.line(format!(
        "\ncheckpoints, TensorBoard events and curves.png are in {}/<model>/",
        args.dir.display()
    ))
}
