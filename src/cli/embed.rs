//! `loupe embed`: each video's vector at a layer of a checkpoint's model, written as
//! `.npy` (+ ids) or `.safetensors` ([`loupe::infer::embeddings`]).

use std::path::PathBuf;

use clap::Args;
use loupe::data::VideoDecoder;
use loupe::distributed::Collective;
use loupe::infer::embeddings::{ids_path, EmbeddingFormat};
use loupe::infer::Predictor;
use loupe::model::{Layer, VideoModel};
use loupe::train::checkpoint::read_meta;
use loupe::train::run::{embed_across, RunError};

use super::error::CliError;
use super::job::{
    files, inference_dataset, on_model, zoo_name_of, DeviceArgs, FrameSamplingChoice, Job, JobDevice,
    LayoutArgs,
};
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

/// Embeds as one rank of `collective`: every rank loads the checkpoint and reads its share
/// of the files; rank 0 writes the vectors in file order.
struct EmbedJob<'c> {
    collective: &'c dyn Collective,
    checkpoint: PathBuf,
    files: Vec<PathBuf>,
    decoder: VideoDecoder,
    batch_size: usize,
    skip_corrupt: bool,
    layer: Layer,
    output: PathBuf,
    frame_sampling: Option<FrameSamplingChoice>,
}

impl Job for EmbedJob<'_> {
    type Output = Result<(u64, usize), RunError>;
    fn run<M, D>(self, device: D) -> Self::Output
    where
        D: JobDevice,
        M: VideoModel<f32, D> + loupe::dfdx::nn::BuildModule<D, f32> + Clone,
    {
        let (predictor, meta) = Predictor::<M, D>::load(device, &self.checkpoint)?;
        // The frames prediction samples: `--frame-sampling`, else the training's frame order.
        let dataset = inference_dataset::<M, D>(
            self.files,
            self.decoder,
            self.batch_size,
            self.skip_corrupt,
            meta.frame_order(),
            self.frame_sampling,
        )?;
        let videos = embed_across(&predictor, &dataset, self.layer, &self.output, self.collective)?;
        Ok((videos, M::describe().representation_size(self.layer).unwrap_or(0)))
    }
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
    let job = EmbedJob {
        collective,
        checkpoint: args.checkpoint,
        files,
        decoder,
        batch_size: args.batch_size,
        skip_corrupt: args.layout.skip_corrupt,
        layer: args.layer,
        output: args.output.clone(),
        frame_sampling: args.frame_sampling,
    };
    let (videos, size) = on_model(&model, device, job)?
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
