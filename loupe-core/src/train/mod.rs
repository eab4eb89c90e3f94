//! Training: the loss, Adam with the reference's gradient clipping, the learning-rate
//! schedule and checkpoints.

mod adam;
pub mod checkpoint;
mod loss;
pub mod run;
mod schedule;
mod sharded;
mod trainer;

pub use adam::{Adam, AdamConfig, AdamUpdate, GradientClipping};
pub use loss::{cross_entropy_loss, try_cross_entropy_loss, CROSS_ENTROPY_EPSILON};
pub use schedule::LearningRateSchedule;
pub use trainer::{StepStats, TrainConfig, TrainError, Trainer};
