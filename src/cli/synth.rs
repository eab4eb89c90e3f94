//! `loupe synth`: write the synthetic data set.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use loupe::data::{generate, SynthConfig};

use super::error::CliError;
use super::output::Output;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Directory to write `frame/`, `video/` and `vocabulary.csv` into (created).
    #[arg(long)]
    out: PathBuf,
    /// Seed of everything generated.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of classes.
    #[arg(long, default_value_t = 64)]
    classes: usize,
    /// Videos in the train split.
    #[arg(long, default_value_t = 2000)]
    train_videos: usize,
    /// Videos in the validate split.
    #[arg(long, default_value_t = 500)]
    validate_videos: usize,
    /// Shards of the train split.
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Shards of the validate split.
    #[arg(long, default_value_t = 1)]
    validate_shards: usize,
    /// Fewest frames per video.
    #[arg(long, default_value_t = 20)]
    min_frames: usize,
    /// Most frames per video.
    #[arg(long, default_value_t = 60)]
    max_frames: usize,
    /// rgb values per frame.
    #[arg(long, default_value_t = 1024)]
    rgb_size: usize,
    /// audio values per frame.
    #[arg(long, default_value_t = 128)]
    audio_size: usize,
    /// Write only the frame-level shards.
    #[arg(long)]
    no_video_level: bool,
    /// Give the validate videos segment ratings (the 2019 task): 5-frame blocks that
    /// each show one of the video's classes or background, every label rated per block.
    #[arg(long)]
    rated_segments: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SynthArgs, out: &mut Output) -> Result<(), CliError> {
    let config = SynthConfig {
        seed: args.seed,
        num_classes: args.classes,
        train_videos: args.train_videos,
        validate_videos: args.validate_videos,
        train_shards: args.shards,
        validate_shards: args.validate_shards,
        min_frames: args.min_frames,
        max_frames: args.max_frames,
        rgb_size: args.rgb_size,
        audio_size: args.audio_size,
        video_level: !args.no_video_level,
        rated_segments: args.rated_segments,
    };
    let start = Instant::now();
    let summary = generate(&args.out, &config)?;
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        let value = serde_json::json!({ "config": config, "summary": summary, "seconds": seconds });
        return out.line(value);
    }
    out.line(format_args!(
        "wrote {} train + {} validate videos ({} frames, {} classes) to {} in {seconds:.2} s",
        summary.train_videos,
        summary.validate_videos,
        summary.frames,
        config.num_classes,
        args.out.display()
    ))?;
    out.line(format_args!(
        "  {} frame-level shards, {} video-level shards, {}",
        summary.frame_files.len(),
        summary.video_files.len(),
        summary.vocabulary.display()
    ))
}
