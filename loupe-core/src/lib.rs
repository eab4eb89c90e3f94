//! Layers, model trait and numerical tooling of loupe.
//!
//! loupe implements "Learnable pooling with Context Gating for video classification"
//! (Miech, Laptev, Sivic, 2017) on [dfdx]. This crate holds the runtime: the paper's
//! layers ([`nn`]), YouTube-8M data ([`data`]), the [`model::VideoModel`] trait that training and evaluation are
//! generic over, [`infer`] (running a trained model: probabilities, representations), and [`gradcheck`], the finite-difference gradient checker every layer
//! is tested with.

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod distributed;
pub mod ensemble;
pub mod gradcheck;
pub mod infer;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod report;
pub mod segment_submission;
pub mod submission;
pub mod tf_checkpoint;
pub mod train;
mod walk;

pub use dfdx;
