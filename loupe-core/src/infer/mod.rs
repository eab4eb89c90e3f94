//! Inference: running a trained model without its training state. [`Predictor`] holds a
//! model and its device, loads a loupe checkpoint without the optimizer's moments, and
//! runs evaluation-mode forward passes over batches: class probabilities, top-k labels,
//! metrics, and each video's representation at a layer ([`crate::model::Layer`]).
//! Evaluation, prediction, segment scoring, ensembles and `loupe embed` all go through it;
//! [`embeddings`] streams representations to `.npy` or `.safetensors` files.

pub mod embeddings;
mod predictor;

pub(crate) use predictor::no_such_layer;
pub use predictor::{PredictError, Predictor};
