//! Fused CPU kernels with their own backward, and the switch between them and the
//! composed dfdx path.
//!
//! dfdx 0.13 runs every elementwise op and reduction as its own single-threaded pass;
//! only matmul is multithreaded. The layers' elementwise work (batch norm, softmax, the
//! NetVLAD residual and its two L2 normalisations, L2 normalisation of frames, the
//! classifier's L2 penalty) is done here instead as one multithreaded (rayon) pass
//! forward and one or two backward, each recorded on the tape with `add_backward_op` like
//! a dfdx op. Matrix products stay dfdx's (gemm), except where loupe's own [`gemm::sgemm`]
//! measured faster on the model's shapes: the hidden layers' gradients, and the
//! recurrences' per-frame products forward and backward, whose weight is packed once per
//! pass ([`gemm_packed::sgemm_packed`]) ([`set_gemm`]).
//!
//! Dispatch is by type at run time, so no layer gains a trait bound: on `Cpu` with `f32`
//! or `f64` the fused kernels run; on any other device (`Cuda`) or dtype the layers use
//! the composed dfdx ops, which remain the reference every fused kernel is tested against
//! (`tests/fused_kernels.rs`: outputs, all gradients, finite differences).
//!
//! A leaf module: the kernels take tensors, slices and constants, never a layer type, and
//! import nothing from the layers (`nn`); each layer's file holds the glue that hands its
//! tensors to them.
//!
//! [`set_fused`] turns the kernels off for the calling thread (tests and "before"
//! benchmarks); the environment variable `LOUPE_FUSED=0` turns them off by default.

mod activation;
mod channels;
mod frames;
pub mod gemm;
mod gemm_ops;
pub mod gemm_packed;
mod gemm_tile;
mod math;
mod ops;
mod view;

pub(crate) use activation::{activate, Activation};
pub(crate) use channels::{try_channels, try_concat_rows};
pub(crate) use frames::{
    try_frames_affine, try_frames_matmul, try_frames_weighted_sum, try_video_weighted_sums,
};
pub(crate) use gemm_ops::{
    try_add_transposed_product, try_sequence_data_product, try_sequence_weight_product, try_weight_product,
};
pub(crate) use math::{adam_update, squared_norm, Real};
pub(crate) use ops::{
    try_batch_norm_eval, try_batch_norm_train, try_half_squared_norm, try_input_stage_eval,
    try_l2_normalize_rows, try_standardize_train, try_standardized_channels, try_vlad_normalize,
    BatchNormTensors, Standardization,
};
pub(crate) use view::{
    expect_view, grad_mut, is_cpu, params, params_mut, read, restore_grad, take_grad, write,
};

use std::cell::Cell;

thread_local! {
    static FUSED: Cell<bool> = Cell::new(std::env::var("LOUPE_FUSED").map_or(true, |v| v != "0"));
    static GEMM: Cell<bool> = Cell::new(std::env::var("LOUPE_GEMM").map_or(true, |v| v != "0"));
}

/// Turns loupe's own matrix product ([`gemm::sgemm`]) on or off for the calling thread's
/// layers (on by default, off when the environment has `LOUPE_GEMM=0`). It runs only
/// where the fused kernels do, on `f32`; off, those products are dfdx's matmul.
pub fn set_gemm(enabled: bool) {
    GEMM.with(|f| f.set(enabled));
}

/// Whether the layers' products that can run on [`gemm::sgemm`] do, on the calling thread.
pub fn gemm_enabled() -> bool {
    GEMM.with(|f| f.get())
}

/// Whether [`gemm::sgemm`] runs for `(E, D)` on the calling thread.
pub(crate) fn gemm_for<E: 'static, D: 'static>() -> bool {
    gemm_enabled() && cpu_float::<E, D>() == Some(CpuFloat::F32)
}

/// Turns the fused CPU kernels on or off for the calling thread (on by default, off when
/// the environment has `LOUPE_FUSED=0`). Off, every layer runs its composed dfdx ops.
pub fn set_fused(enabled: bool) {
    FUSED.with(|f| f.set(enabled));
}

/// Whether the fused CPU kernels are on for the calling thread.
pub fn fused_enabled() -> bool {
    FUSED.with(|f| f.get())
}

/// Whether the fused kernels run for `(E, D)` on the calling thread.
pub(crate) fn fused_for<E: 'static, D: 'static>() -> bool {
    cpu_float::<E, D>().is_some()
}

/// Which float the fused kernels run in for `(E, D)`, if they run at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuFloat {
    F32,
    F64,
}

pub(crate) fn cpu_float<E: 'static, D: 'static>() -> Option<CpuFloat> {
    if !fused_enabled() {
        None
    } else if is_cpu::<f32, E, D>() {
        Some(CpuFloat::F32)
    } else if is_cpu::<f64, E, D>() {
        Some(CpuFloat::F64)
    } else {
        None
    }
}
