//! What the subcommands share: the device, the data layout, a resolved training setup,
//! and running a generic job on the zoo model picked by name.

use std::path::PathBuf;

use clap::Args;
use loupe::__private::LayerDevice;
use loupe::data::{
    detect_file_layout, detect_float_frames, expand_patterns, DataFormat, Dataset, FeatureSpec, FrameOrder,
    FrameSampling, VideoDecoder,
};
use loupe::dfdx::nn::BuildModule;
use loupe::dfdx::tensor::{Cpu, Synchronize};
use loupe::model::{count_params, ModelDescription, VideoModel};
use loupe::zoo::{self, ModelVisitor, ZooModel};

use loupe::train::run::{evaluation_dataset_in_order, RunConfig, RunError};

use super::error::CliError;

/// A training setup with every value resolved and validated (`train`, and
/// `train --segment-labels` in [`super::segments`]).
pub struct TrainPlan {
    pub model: String,
    pub config: RunConfig,
    pub regularization_penalty: Option<f64>,
    /// The file the streams were detected from (none when the flags name them).
    pub layout_source: Option<PathBuf>,
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("`{s}`: expected `cpu`, `cuda` or `cuda:N`")),
        }
    }
}

/// The device flags.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// `cpu`, `cuda` or `cuda:N` (GPU N; needs a loupe built with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Seed of the device's random generator (weight initialisation).
    #[arg(long)]
    pub init_seed: Option<u64>,
}

/// A built device: what a [`Job`] runs on.
pub enum RunDevice {
    Cpu(Cpu),
    #[cfg(feature = "cuda")]
    Cuda(loupe::dfdx::tensor::Cuda),
}

impl DeviceChoice {
    /// Builds the device, weights initialised from `seed`; a clear error (never a panic)
    /// for CUDA without the feature, a driver or the GPU asked for.
    pub fn build(self, seed: u64) -> Result<RunDevice, CliError> {
        match self {
            DeviceChoice::Cpu => Ok(RunDevice::Cpu(loupe::device::cpu_seeded(seed))),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda(n) => loupe::device::cuda(n, seed)
                .map(RunDevice::Cuda)
                .map_err(|e| CliError::context(format!("--device cuda:{n}"), e)),
            #[cfg(not(feature = "cuda"))]
            DeviceChoice::Cuda(n) => Err(CliError::context(
                format!("--device cuda:{n}"),
                loupe::device::DeviceError::NoCudaSupport,
            )),
        }
    }
}

impl DeviceArgs {
    /// The requested device, seeded with `--init-seed` (default 0).
    pub fn build(&self) -> Result<RunDevice, CliError> {
        self.device.build(self.init_seed.unwrap_or(0))
    }
}

/// `--frame-sampling` of `eval`, `predict` and `embed`: which frames of each video the
/// model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSamplingChoice {
    /// The first `T` frames in temporal order, a shorter video's last frame repeated
    /// ([`FrameSampling::InOrderRepeatLast`]: TensorFlow's sampling from frame 0).
    InOrder,
    /// `T` frames uniformly with replacement, seeded by the video id (the same on every run).
    Random,
}

impl std::str::FromStr for FrameSamplingChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "in-order" => Ok(FrameSamplingChoice::InOrder),
            "random" => Ok(FrameSamplingChoice::Random),
            other => Err(format!("frame sampling is `in-order` or `random`, not `{other}`")),
        }
    }
}

/// The evaluation sampling: `choice` when given, else what the checkpoint's training
/// recorded (`order`) implies for a model that reads frames in order (`sequence`) or not.
pub fn evaluation_sampling(
    choice: Option<FrameSamplingChoice>,
    order: FrameOrder,
    sequence: bool,
) -> FrameSampling {
    match choice {
        None => order.evaluation_sampling(sequence),
        Some(FrameSamplingChoice::InOrder) => FrameSampling::InOrderRepeatLast,
        Some(FrameSamplingChoice::Random) => FrameSampling::PerVideo { seed: 0 },
    }
}

/// The dataset `eval`, `predict` and `embed` read: `files` in order, their frames sampled
/// as [`evaluation_sampling`] says.
pub fn inference_dataset<M: VideoModel<f32, D>, D: JobDevice>(
    files: Vec<PathBuf>,
    decoder: VideoDecoder,
    batch_size: usize,
    skip_corrupt: bool,
    order: FrameOrder,
    choice: Option<FrameSamplingChoice>,
) -> Result<Dataset, RunError> {
    Ok(evaluation_dataset_in_order::<M, D>(files, decoder, batch_size, skip_corrupt, order)?
        .with_sampling(evaluation_sampling(choice, order, M::READS_FRAMES_IN_ORDER)))
}

/// The data-layout flags (defaults: detected from the first file).
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Feature streams in frame order, comma-separated (default: detected, e.g. `rgb,audio`;
    /// MediaPipe's feature files: `RGB/feature/floats,AUDIO/feature/floats`).
    #[arg(long, value_delimiter = ',')]
    pub feature_names: Vec<String>,
    /// Sizes of the feature streams, comma-separated (default: detected, e.g. `1024,128`).
    #[arg(long, value_delimiter = ',')]
    pub feature_sizes: Vec<usize>,
    /// Frames kept per video before sampling (YouTube-8M readers truncate at 300).
    #[arg(long, default_value_t = 300)]
    pub max_frames: usize,
    /// Skip corrupt records and files instead of stopping.
    #[arg(long)]
    pub skip_corrupt: bool,
}

impl LayoutArgs {
    /// The file whose first record gives the streams: the first of `files`, unless the
    /// flags name the streams.
    pub fn detected_from<'f>(&self, files: &'f [PathBuf]) -> Option<&'f PathBuf> {
        if self.feature_names.is_empty() && self.feature_sizes.is_empty() {
            files.first()
        } else {
            None
        }
    }

    /// The decoder for `files`: format and streams from the flags or the first file.
    pub fn decoder(&self, files: &[PathBuf]) -> Result<VideoDecoder, CliError> {
        let first = files.first().ok_or_else(|| CliError::message("no data files"))?;
        let (format, detected) = detect_file_layout(first)?;
        let detect = self.feature_names.is_empty() && self.feature_sizes.is_empty();
        let spec = if detect {
            detected
        } else {
            if self.feature_names.len() != self.feature_sizes.len() {
                return Err(CliError::message(format!(
                    "--feature-names has {} entries but --feature-sizes has {}",
                    self.feature_names.len(),
                    self.feature_sizes.len()
                )));
            }
            FeatureSpec::new(self.feature_names.iter().cloned().zip(self.feature_sizes.iter().copied()))?
        };
        // Streams taken from the first file: a later file with more streams is laid out
        // differently and is named, not silently read as a subset. MediaPipe's feature
        // files store float frames (detected from the first record) next to other
        // feature lists (timestamps), so there only the named streams are read.
        let float_frames = detect_float_frames(first)?;
        let decoder = VideoDecoder::new(format, spec)
            .with_float_frames(float_frames)
            .with_exact_streams(detect && !float_frames);
        Ok(if format == DataFormat::FrameLevel { decoder.with_max_frames(self.max_frames) } else { decoder })
    }
}

/// Expands glob patterns, naming the flag in the error.
pub fn files(flag: &str, patterns: &[String]) -> Result<Vec<PathBuf>, CliError> {
    expand_patterns(patterns).map_err(|e| CliError::context(flag.to_string(), e))
}

/// What a job's device must offer: the layers' ops and a way to wait for queued work.
pub trait JobDevice: LayerDevice<f32> + Synchronize {}
impl<D: LayerDevice<f32> + Synchronize> JobDevice for D {}

/// A job that runs on any zoo model on any device.
pub trait Job {
    type Output;
    fn run<M, D>(self, device: D) -> Self::Output
    where
        D: JobDevice,
        M: VideoModel<f32, D> + BuildModule<D, f32> + Clone;
}

struct Dispatch<J, D>(J, D);

impl<J: Job, D: JobDevice> ModelVisitor<f32, D> for Dispatch<J, D> {
    type Output = J::Output;
    fn visit<M: ZooModel<f32, D>>(self) -> J::Output {
        self.0.run::<M::Model, D>(self.1)
    }
}

fn unknown_model(name: &str) -> CliError {
    CliError::message(format!("unknown model `{name}`; `loupe models` lists them: {}", zoo::NAMES.join(", ")))
}

/// Runs `job` on the zoo model called `name` on `device`, or says which names exist.
pub fn on_model<J: Job>(name: &str, device: RunDevice, job: J) -> Result<J::Output, CliError> {
    let output = match device {
        RunDevice::Cpu(dev) => zoo::visit(name, Dispatch(job, dev)),
        #[cfg(feature = "cuda")]
        RunDevice::Cuda(dev) => zoo::visit(name, Dispatch(job, dev)),
    };
    output.ok_or_else(|| unknown_model(name))
}

struct Card;
impl ModelVisitor<f32, Cpu> for Card {
    type Output = (ModelDescription, usize);
    fn visit<M: ZooModel<f32, Cpu>>(self) -> Self::Output {
        (<M::Model as VideoModel<f32, Cpu>>::describe(), count_params::<f32, Cpu, M::Model>())
    }
}

/// The description and trainable parameter count of the zoo model called `name`.
pub fn describe(name: &str) -> Result<(ModelDescription, usize), CliError> {
    zoo::visit(name, Card).ok_or_else(|| unknown_model(name))
}

/// The zoo name of the model a checkpoint was trained as: the name the trainer stored,
/// else the zoo model whose description matches.
pub fn zoo_name_of(meta: &loupe::train::checkpoint::CheckpointMeta) -> Result<String, CliError> {
    if let Some(name) = meta.training.model.as_deref() {
        if zoo::NAMES.contains(&name) {
            return Ok(name.to_string());
        }
    }
    for name in zoo::NAMES {
        if describe(name)?.0 == meta.model {
            return Ok(name.to_string());
        }
    }
    Err(CliError::message(format!(
        "the checkpoint holds a `{}`, which is not a zoo model; load it from Rust with loupe::infer::Predictor::load",
        meta.model.name
    )))
}
