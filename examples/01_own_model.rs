//! Declare your own architecture with `#[video_model]` and train it with loupe's
//! machinery: synthetic YouTube-8M-format data, the training loop, evaluation and a
//! Kaggle submission, all from a few lines of Rust. Inference loads the checkpoint into a
//! `Predictor` (no optimizer state): probabilities, metrics and each video's vector.
//!
//! Run: `cargo run --release --example 01_own_model`

use loupe::data::{generate, DataFormat, FeatureSpec, SynthConfig, VideoDecoder};
use loupe::dfdx::prelude::*;
use loupe::infer::Predictor;
use loupe::model::{Layer, VideoModel};
use loupe::train::run::{evaluate_dataset, evaluation_dataset, predict, train, write_embeddings, RunConfig};
use loupe::train::{LearningRateSchedule, TrainConfig};
use loupe::video_model;

/// NetFV on rgb and soft bag-of-words on audio, gated, with a logistic classifier: an
/// architecture that is not in the paper.
#[video_model(
    frames = 16,
    streams = [
        rgb(features = 32, pooling = netfv(clusters = 8)),
        audio(features = 8, pooling = soft_bow(clusters = 16)),
    ],
    hidden = 64,
    after_pooling = context_gating,
    classifier = logistic(l2 = 1e-6),
    classes = 12,
)]
pub struct FisherBow;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("loupe-example-own-model");
    let synth = SynthConfig {
        num_classes: 12,
        train_videos: 800,
        validate_videos: 200,
        min_frames: 10,
        max_frames: 30,
        rgb_size: 32,
        audio_size: 8,
        ..SynthConfig::default()
    };
    let data = generate(dir.join("data"), &synth)?;
    let (train_files, validate_files): (Vec<_>, Vec<_>) = data
        .frame_files
        .iter()
        .cloned()
        .partition(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("train")));
    let decoder = VideoDecoder::new(
        DataFormat::FrameLevel,
        FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 32, 8),
    );

    type Model = FisherBowModel<f32, Cpu>;
    let config = RunConfig {
        train_files,
        validate_files: validate_files.clone(),
        decoder: decoder.clone(),
        batch_size: 32,
        shuffle_buffer: 256,
        max_steps: None,
        epochs: Some(4),
        eval_every: Some(50),
        output_dir: dir.join("run"),
        progress: true,
        optim: TrainConfig {
            schedule: LearningRateSchedule { base: 3e-3, decay: 0.9, decay_examples: 1_000 },
            classifier_l2: Model::describe().classifier_l2,
            ..TrainConfig::default()
        },
        ..RunConfig::default()
    };
    let (trainer, summary) = train::<Model, Cpu>(loupe::device::cpu_seeded(1), &config)?;
    let m = summary.metrics.expect("validation data was given");
    println!(
        "{} parameters, {} steps: validation GAP {:.4}, Hit@1 {:.4}",
        trainer.model.num_params(),
        summary.steps,
        m.gap,
        m.hit_at_1
    );
    drop(trainer);

    // Inference: the last checkpoint, no Trainer and no optimizer state.
    let (predictor, _) = Predictor::<Model, Cpu>::load(Cpu::default(), &dir.join("run").join("checkpoints"))?;
    let dataset = evaluation_dataset::<Model, Cpu>(validate_files, decoder, 64, false)?;
    println!("reloaded checkpoint: validation GAP {:.4}", evaluate_dataset(&predictor, &dataset, 20)?.gap);
    let csv = dir.join("predictions.csv");
    let n = predict(&predictor, &dataset, 20, std::fs::File::create(&csv)?, None)?;
    println!("wrote {n} predictions to {}", csv.display());
    let vectors = dir.join("gated.npy");
    let n = write_embeddings(&predictor, &dataset, Layer::Gated, &vectors)?;
    println!(
        "wrote {n} {}-value vectors (after context gating) to {}",
        Model::describe().hidden.unwrap_or(0),
        vectors.display()
    );
    Ok(())
}
