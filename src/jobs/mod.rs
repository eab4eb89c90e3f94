//! Every job of the `loupe` command line on a zoo model picked by name at run time:
//! training, evaluation, prediction, embedding, the segment task, ensemble members,
//! benchmarks and TensorFlow imports.
//!
//! Each function matches the name against the zoo ([`crate::zoo::visit`]) and runs the
//! generic job (e.g. [`train_across`](crate::train::run::train_across)) on that model's
//! type; it returns `None` for a name not in the zoo ([`crate::zoo::NAMES`]). None of them
//! is generic, so every model's instantiation of every job is compiled once, in this
//! crate: a program calling them (the command line) is not generic over the zoo, and
//! rebuilds in seconds. A model of your own declared with [`video_model`](crate::video_model)
//! runs through the generic functions directly.
//!
//! ```
//! use loupe::jobs;
//! let (description, parameters) = jobs::describe("small-gated-netvlad").unwrap();
//! assert_eq!(description.classes, 10);
//! assert!(parameters > 0);
//! assert!(jobs::describe("no-such-model").is_none());
//! ```

mod dispatch;
mod import;
mod infer;
mod train;

pub use dispatch::{describe, RunDevice};
pub use import::{import, ImportError, ImportOutcome, ImportRequest};
pub use infer::{embed, evaluate, member_predictions, predict, predict_segments, Inference};
pub use train::{bench, fine_tune_segments, train, train_and_show, Shown, TrainPlan};
