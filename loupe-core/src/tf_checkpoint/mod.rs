//! TensorFlow checkpoints (the V2 "tensor bundle" format of TF 1.x and 2.x `Saver`),
//! read in Rust and imported into any [`VideoModel`](crate::model::VideoModel).
//!
//! - [`table`]: the sorted-string table of the `.index` file (blocks, restart points,
//!   prefix-compressed keys, footer and magic, block CRC32Cs);
//! - [`proto`]: the `BundleHeaderProto` / `BundleEntryProto` messages;
//! - [`TfCheckpoint`] (`bundle`): the index's entries and the data shards, each tensor's
//!   bytes checked against its CRC32C;
//! - [`Mapping`]: which TF variable fills which loupe tensor, with the built-in
//!   [`Convention`]s of the paper's training code and the starter code;
//! - [`import_checkpoint`]: weights, batch-norm moving averages, Adam's moments and the
//!   step into a model; [`plan`] the same check without reading;
//! - [`infer_spec`]: the `#[video_model]` spec matching a checkpoint.
//!
//! Every malformed input is a [`TfCheckpointError`] naming the file and the entry or
//! block; a checkpoint that does not fit the model is a [`TfImportError::Mismatch`]
//! listing every missing, mis-shaped and unused variable with both shapes.

mod bundle;
mod error;
mod import;
mod mapping;
pub mod proto;
mod spec;
pub mod table;

pub use bundle::{resolve_prefix, TfCheckpoint, TfDtype, TfEntry, TfValues};
pub use error::{TfCheckpointError, TfImportError};
pub use import::{import_checkpoint, model_tensors, plan, Imported, ModelTensor, Plan, PlanRow};
pub use mapping::{Convention, Mapping, Rule, Transform};
pub use spec::infer_spec;
