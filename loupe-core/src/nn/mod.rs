//! The paper's layers as dfdx modules.
//!
//! Every layer follows dfdx 0.13's own idioms so that layers, generated models and dfdx's
//! own modules compose:
//! - a zero-sized builder type in [`builder`] carrying the const dims, implementing
//!   `BuildOnDevice`, and a built type of the same name generic over dtype and device;
//! - `TensorCollection` with named fields: the names are the checkpoint keys;
//! - `Module` (no tape) is evaluation: batch norm uses its running averages;
//!   `ModuleMut` (any tape) is training: batch statistics, running averages updated.
//!
//! The batch axis is a runtime dimension (`usize`); frames may be runtime or `Const`;
//! feature sizes, clusters, hidden sizes and classes are const generics.
//!
//! One layer per file. What several layers use (initialisers, the affine map, L2
//! normalisation, the VLAD steps, the recurrences' tape plumbing) lives in the private
//! `shared` module; a layer file imports helpers from there only, and names another
//! layer (a `BatchNorm` inside a layer, say) through this module's re-exports. The
//! recurrent baselines share one two-layer wrapper, `Recurrent`, generic over the cell;
//! the fused CPU kernels they and the other layers call (`crate::kernels`) take tensors
//! and constants, and each layer's file holds the glue.

mod batch_norm;
mod l2_normalize;

pub use batch_norm::{batch_norm_decay, BatchNorm, BATCH_NORM_DECAY, BATCH_NORM_EPSILON};
pub use l2_normalize::{l2_normalize, L2Normalize};
pub use shared::{try_concat_features, try_l2_normalize, L2_NORM_FLOOR};

// ---- pooling layers (paper section 2) ----
mod net_fv;
mod net_rvlad;
mod net_vlad;
mod soft_assignment;
mod soft_bow;
mod temporal_pooling;

pub use net_fv::{NetFvPooling, NET_FV_SIGMA_EPSILON};
pub use net_rvlad::NetRvladPooling;
pub use net_vlad::NetVladPooling;
pub use soft_assignment::{BiasedSoftAssignment, SoftAssignment};
pub use soft_bow::SoftBowPooling;
pub use temporal_pooling::{AveragePooling, MaxPooling};
// ---- end pooling layers ----

// --- Input, hidden, gating and classifier layers (the "head") ---
mod classifier_penalty;
mod context_gating;
mod dropout;
mod frame_input;
mod glu;
mod hidden;
mod logistic;
mod mixture_of_experts;
mod pool_frames;
mod probability_gating;
mod se_context_gating;

pub use classifier_penalty::ClassifierPenalty;
pub use context_gating::{BiasedContextGating, ContextGating};
pub use dropout::{Dropout, DROPOUT_RATE_SCALE};
pub use frame_input::{EvalFrames, FrameInput, RawFrames, Stream};
pub use glu::Glu;
pub use hidden::{Hidden, HiddenBn};
pub use logistic::Logistic;
pub use mixture_of_experts::MixtureOfExperts;
pub use pool_frames::{NormalizedFrames, PoolFrames, StandardizedFrames};
pub use probability_gating::ProbabilityGating;
pub use se_context_gating::SeContextGating;
// --- end of the head layers ---

// ==== recurrent pooling and NeXtVLAD (issue 8) ====
mod gru;
mod lstm;
mod next_vlad;
mod recurrent;
mod shared;

pub use gru::{GruCell, GruPooling};
pub use lstm::{LstmCell, LstmPooling, LSTM_FORGET_BIAS};
pub use next_vlad::NeXtVladPooling;
pub use recurrent::{valid_frame_mask, Recurrent, RecurrentCell};
// ==== end recurrent pooling and NeXtVLAD ====

/// Zero-sized builders of the layers (`dev.build_module::<builder::NetVladPooling<..>, f32>()`).
pub mod builder {
    pub use super::batch_norm::builder::*;
    pub use super::l2_normalize::L2Normalize;

    // ---- pooling layers ----
    pub use super::net_fv::builder::*;
    pub use super::net_rvlad::builder::*;
    pub use super::net_vlad::builder::*;
    pub use super::soft_assignment::builder::*;
    pub use super::soft_bow::builder::*;
    pub use super::temporal_pooling::{AveragePooling, MaxPooling};
    // ---- end pooling layers ----

    // --- head layers ---
    pub use super::context_gating::builder::*;
    pub use super::dropout::builder::*;
    pub use super::frame_input::builder::*;
    pub use super::frame_input::{RawFrames, Stream};
    pub use super::glu::builder::*;
    pub use super::hidden::builder::*;
    pub use super::logistic::builder::*;
    pub use super::mixture_of_experts::builder::*;
    pub use super::probability_gating::builder::*;
    pub use super::se_context_gating::builder::*;
    // --- end of the head layers ---

    // ==== recurrent pooling and NeXtVLAD ====
    pub use super::gru::builder::*;
    pub use super::lstm::builder::*;
    pub use super::next_vlad::builder::*;
    // ==== end recurrent pooling and NeXtVLAD ====
}
