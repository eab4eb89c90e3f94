//! What the subcommands share: the device, the data layout, and the model picked by name.

use std::path::PathBuf;

use clap::Args;
use loupe::data::{
    detect_file_layout, detect_float_frames, expand_patterns, DataFormat, FeatureSpec, FrameSampling,
    VideoDecoder,
};
use loupe::jobs::{self, RunDevice};
use loupe::model::ModelDescription;
use loupe::zoo;

use super::error::CliError;

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

impl FrameSamplingChoice {
    /// The sampling this choice asks for.
    pub fn sampling(self) -> FrameSampling {
        match self {
            FrameSamplingChoice::InOrder => FrameSampling::InOrderRepeatLast,
            FrameSamplingChoice::Random => FrameSampling::PerVideo { seed: 0 },
        }
    }
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

fn unknown_model(name: &str) -> CliError {
    CliError::message(format!("unknown model `{name}`; `loupe models` lists them: {}", zoo::NAMES.join(", ")))
}

/// A job's outcome, or the error for a model name not in the zoo (`None`, as
/// [`loupe::jobs`] returns it).
pub fn known<T>(name: &str, outcome: Option<T>) -> Result<T, CliError> {
    outcome.ok_or_else(|| unknown_model(name))
}

/// The description and trainable parameter count of the zoo model called `name`.
pub fn describe(name: &str) -> Result<(ModelDescription, usize), CliError> {
    known(name, jobs::describe(name))
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
