//! What `train`, `eval`, `predict` and `quickstart` share: the device, the data layout,
//! and running a generic job on the zoo model picked by name.

use std::path::PathBuf;

use clap::Args;
use loupe::data::{detect_file_layout, expand_patterns, DataFormat, FeatureSpec, VideoDecoder};
use loupe::model::{ModelDescription, VideoModel};
use loupe::zoo::{self, ModelVisitor, ZooModel};

use super::CliError;

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
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Seed of the device's random generator (weight initialisation).
    #[arg(long)]
    pub init_seed: Option<u64>,
}

impl DeviceArgs {
    /// The CPU device, or an error saying how to get the requested one.
    pub fn cpu(&self) -> Result<loupe::dfdx::tensor::Cpu, CliError> {
        match self.device {
            DeviceChoice::Cpu => Ok(loupe::device::cpu_seeded(self.init_seed.unwrap_or(0))),
            DeviceChoice::Cuda(n) => Err(CliError::message(format!(
                "--device cuda:{n}: this loupe was built without CUDA; rebuild with `cargo build --release --features cuda` on a machine with the CUDA toolkit"
            ))),
        }
    }
}

/// The data-layout flags (defaults: detected from the first file).
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Feature streams in frame order, comma-separated (default: detected, e.g. `rgb,audio`).
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
    /// The decoder for `files`: format and streams from the flags or the first file.
    pub fn decoder(&self, files: &[PathBuf]) -> Result<VideoDecoder, CliError> {
        let first = files.first().ok_or_else(|| CliError::message("no data files"))?;
        let (format, detected) = detect_file_layout(first)?;
        let spec = if self.feature_names.is_empty() && self.feature_sizes.is_empty() {
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
        let decoder = VideoDecoder::new(format, spec);
        Ok(if format == DataFormat::FrameLevel { decoder.with_max_frames(self.max_frames) } else { decoder })
    }
}

/// Expands glob patterns, naming the flag in the error.
pub fn files(flag: &str, patterns: &[String]) -> Result<Vec<PathBuf>, CliError> {
    expand_patterns(patterns).map_err(|e| CliError::context(format!("{flag}"), e))
}

/// A job that runs on any zoo model on the CPU.
pub trait CpuJob {
    type Output;
    fn run<M>(self) -> Self::Output
    where
        M: VideoModel<f32, loupe::dfdx::tensor::Cpu>
            + loupe::dfdx::nn::BuildModule<loupe::dfdx::tensor::Cpu, f32>
            + Clone;
}

struct Dispatch<J>(J);

impl<J: CpuJob> ModelVisitor<f32, loupe::dfdx::tensor::Cpu> for Dispatch<J> {
    type Output = J::Output;
    fn visit<M: ZooModel<f32, loupe::dfdx::tensor::Cpu>>(self) -> J::Output {
        self.0.run::<M::Model>()
    }
}

/// Runs `job` on the zoo model called `name`, or says which names exist.
pub fn on_model<J: CpuJob>(name: &str, job: J) -> Result<J::Output, CliError> {
    zoo::visit(name, Dispatch(job)).ok_or_else(|| {
        CliError::message(format!("unknown model `{name}`; `loupe models` lists them: {}", zoo::NAMES.join(", ")))
    })
}

struct Describe;
impl CpuJob for Describe {
    type Output = ModelDescription;
    fn run<M>(self) -> ModelDescription
    where
        M: VideoModel<f32, loupe::dfdx::tensor::Cpu> + loupe::dfdx::nn::BuildModule<loupe::dfdx::tensor::Cpu, f32> + Clone,
    {
        M::describe()
    }
}

/// The zoo name of the model a checkpoint was trained as: the name the trainer stored,
/// else the zoo model whose description matches.
pub fn zoo_name_of(meta: &loupe::train::checkpoint::CheckpointMeta) -> Result<String, CliError> {
    if let Some(name) = meta.training["model"].as_str() {
        if zoo::NAMES.contains(&name) {
            return Ok(name.to_string());
        }
    }
    for name in zoo::NAMES {
        if on_model(name, Describe)? == meta.model {
            return Ok(name.to_string());
        }
    }
    Err(CliError::message(format!(
        "the checkpoint holds a `{}`, which is not a zoo model; load it from Rust with loupe::train::run::load_model",
        meta.model.name
    )))
}
