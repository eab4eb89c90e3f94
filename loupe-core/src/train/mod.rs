//! Training: the loss, Adam with the reference's gradient clipping, the learning-rate
//! schedule and checkpoints.

mod adam;
pub mod checkpoint;
pub(crate) mod evaluation;
pub mod interrupt;
mod lock;
mod loss;
pub mod run;
pub(crate) mod run_error;
mod schedule;
pub mod segment_tuning;
pub mod segments;
mod sharded;
mod trainer;

pub use adam::{Adam, AdamConfig, AdamUpdate, GradientClipping};
pub use checkpoint::{CheckpointMetrics, RngState, TrainingDescription};
pub use lock::{LockError, TrainDirLock, LOCK_FILE};
pub use loss::{
    cross_entropy_loss, try_cross_entropy_loss, try_masked_cross_entropy_loss, CROSS_ENTROPY_EPSILON,
};
pub use schedule::LearningRateSchedule;
pub use trainer::{StepStats, TrainConfig, TrainError, Trainer};
