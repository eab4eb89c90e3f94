//! `loupe embed`: each video's vector at a layer of a checkpoint's model, written as
//! `.npy` (+ ids) or `.safetensors` ([`loupe::infer::embeddings`]).

use std::path::PathBuf;

use clap::Args;
use loupe::distributed::Collective;
use loupe::infer::embeddings::{ids_path, EmbeddingFormat};
use loupe::jobs::{self, Inference};
use loupe::model::Layer;
use loupe::train::checkpoint::read_meta;

use super::error::CliError;
use super::job::{files, known, zoo_name_of, DeviceArgs, FrameSamplingChoice, LayoutArgs};
use super::output::Output;

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Checkpoint: a training directory's `checkpoints/`, or a `step-*.json` sidecar.
    #[arg(long)]
    checkpoint: PathBuf,
    /// TFRecord files or glob patterns of the videos to embed.
    #[arg(long, required = true, num_args = 1..)]
    input_data_pattern: Vec<String>,
    /// Where the vectors are taken: `pooled` (after pooling, the streams concatenated),
    /// `hidden` (after the hidden layer) or `gated` (after context gating or GLU).
    #[arg(long)]
    layer: Layer,
    /// Output file: `NAME.npy` (float32 `videos x size`, ids in `NAME.ids.txt`, one per
    /// line) or `NAME.safetensors` (tensors `embeddings` and `ids`).
    #[arg(long)]
    output: PathBuf,
    /// Videos per forward pass (does not change the vectors).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
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

pub fn run(args: EmbedArgs, _out: &mut Output, collective: &dyn Collective) -> Result<(), CliError> {
    if args.batch_size == 0 {
        return Err(CliError::message("--batch-size must be at least 1"));
    }
    let format = EmbeddingFormat::of(&args.output).map_err(|e| CliError::context("--output", e))?;
    let (_, meta) =
        read_meta(&args.checkpoint).map_err(|e| CliError::context("reading the checkpoint", e))?;
    let model = zoo_name_of(&meta)?;
    let files = files("--input-data-pattern", &args.input_data_pattern)?;
    let decoder = args.layout.decoder(&files)?;
    let device = args.device.build()?;
    let job = Inference {
        collective,
        checkpoint: args.checkpoint,
        files,
        decoder,
        batch_size: args.batch_size,
        skip_corrupt: args.layout.skip_corrupt,
        frame_sampling: args.frame_sampling.map(FrameSamplingChoice::sampling),
    };
    let (videos, size) = known(&model, jobs::embed(&model, device, job, args.layer, &args.output))?
        .map_err(|e| CliError::context(format!("embedding with {model}"), e))?;
    if !collective.is_root() {
        return Ok(());
    }
    let ids = match format {
        EmbeddingFormat::Npy => format!(", ids in {}", ids_path(&args.output).display()),
        EmbeddingFormat::Safetensors => String::new(),
    };
    eprintln!("wrote {videos} vectors of {size} values ({}) to {}{ids}", args.layer, args.output.display());
    Ok(())
}
