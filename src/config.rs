//! The `loupe train --config` file: the training flags as snake_case TOML keys.
//!
//! Every key is optional and unknown keys are rejected, so a misspelt setting is an
//! error rather than silently ignored; flags given on the command line win over the file.
//!
//! ```
//! use loupe::config::TrainFile;
//!
//! let file = TrainFile::parse("model = \"small-average\"\nbatch_size = 8\n")?;
//! assert_eq!(file.batch_size, Some(8));
//! assert!(TrainFile::parse("learning_rate = 0.1").is_err());
//! # Ok::<(), toml::de::Error>(())
//! ```

use std::path::PathBuf;

use loupe_core::data::FrameOrder;
use serde::Deserialize;

/// The settings of a `--config` file; each field is the flag of the same name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainFile {
    pub model: Option<String>,
    pub train_data_pattern: Option<Vec<String>>,
    pub eval_data_pattern: Option<Vec<String>>,
    pub train_dir: Option<PathBuf>,
    pub batch_size: Option<usize>,
    pub base_learning_rate: Option<f64>,
    pub learning_rate_decay: Option<f64>,
    pub learning_rate_decay_examples: Option<u64>,
    pub num_epochs: Option<usize>,
    pub max_steps: Option<u64>,
    pub eval_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    pub keep_checkpoints: Option<usize>,
    pub clip_gradient_norm: Option<f64>,
    pub clip_global_norm: Option<f64>,
    pub regularization_penalty: Option<f64>,
    pub frame_order: Option<FrameOrder>,
    pub seed: Option<u64>,
    pub shuffle_buffer: Option<usize>,
    pub top_k: Option<usize>,
}

impl TrainFile {
    /// Parses the text of a `--config` file.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
