//! Helpers the layer files share, so that no layer file imports from another.
//!
//! Scalar conversions, the one-hot picks that stand in for dfdx 0.13's `select` and
//! `slice`, and the plumbing of the recurrent layers' fused recurrences into dfdx's tape
//! (see [`super::recurrent`]).

use dfdx::prelude::*;

use crate::device::try_tensor_from_slice;

/// Adds `delta` to the gradient of `t` held in `grads`, with dfdx's public API only.
///
/// dfdx exposes a gradient as its opaque device storage; the one public way to write
/// chosen values there is to let dfdx's own backward produce them: `d/dz sum(z * v) = v`
/// exactly (a product with the seed 1), for any device.
pub(crate) fn try_accumulate_gradient<S: Shape, E: Dtype, D: Device<E>>(
    grads: &mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
    delta: Tensor<S, E, D>,
) -> Result<(), D::Err> {
    grads.try_alloc_for(t)?;
    let total = grads.get(t).try_add(delta)?;
    let probe: Tensor<S, E, D> = t.device().try_zeros_like(t.shape())?;
    let mut inner = probe
        .clone()
        .traced(Gradients::leaky())
        .try_mul(total)?
        .try_sum::<Rank0, _>()?
        .try_backward()?;
    let values = inner.get_or_alloc_mut(&probe)?.clone();
    *grads.get_or_alloc_mut(t)? = values;
    Ok(())
}

/// The per-video 0/1 (or any) multipliers of `mask`, or all ones.
pub(crate) fn mask_values<B: Dim, S: Dim, E: Dtype, D: Device<E>>(
    mask: Option<&Tensor<(B, S), E, D>>,
    b: usize,
    s: usize,
) -> Vec<f64> {
    match mask {
        Some(m) => {
            assert_eq!(m.shape().concrete(), [b, s], "mask shape must be (batch, frames)");
            m.as_vec().into_iter().map(to_f64).collect()
        }
        None => vec![1.0; b * s],
    }
}

pub(crate) fn to_f64<E: Dtype>(v: E) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

pub(crate) fn from_f64<E: Dtype>(v: f64) -> E {
    E::from_f64(v).unwrap_or_default()
}

pub(crate) fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// `h (B, H) x W (H, N)` as host values, `None` standing for an all-zero `h`.
pub(crate) fn try_host_matmul<const H: usize, E: Dtype, D: Device<E>>(
    dev: &D,
    h: &[E],
    batch: usize,
    w: &Tensor<(Const<H>, usize), E, D>,
) -> Result<Vec<E>, D::Err> {
    try_tensor_from_slice(dev, h, (batch, Const::<H>))?
        .try_matmul(w.clone())
        .map(|t| t.as_vec())
}

/// `d (B, N) x W^T (N, H)` as host values: the gradient a recurrent product sends back
/// to the state.
pub(crate) fn try_host_matmul_transposed<const H: usize, E: Dtype, D: Device<E>>(
    dev: &D,
    d: Vec<E>,
    batch: usize,
    w: &Tensor<(Const<H>, usize), E, D>,
) -> Result<Vec<E>, D::Err> {
    let n = w.shape().1;
    let wt = w.clone().try_permute::<(usize, Const<H>), Axes2<1, 0>>()?;
    try_tensor_from_slice(dev, &d, (batch, n))?.try_matmul(wt).map(|t| t.as_vec())
}

/// `sum_rows a^T b` for `a (R, H)` and `b (R, N)` given as host values: the gradient of
/// a recurrent weight from every step's state and gate gradient at once.
pub(crate) fn try_weight_gradient<const H: usize, E: Dtype, D: Device<E>>(
    dev: &D,
    a: Vec<E>,
    b: Vec<E>,
    rows: usize,
    n: usize,
) -> Result<Tensor<(Const<H>, usize), E, D>, D::Err> {
    let a = try_tensor_from_slice(dev, &a, (rows, Const::<H>))?;
    let b = try_tensor_from_slice(dev, &b, (rows, n))?;
    a.try_permute::<(Const<H>, usize), Axes2<1, 0>>()?.try_matmul(b)
}

/// Entry `t` of axis 1 of `x` `(B, S, N)`, as `(B, N)`: `sum_s x[:, s, :] [s = t]`.
///
/// A product with a one-hot mask rather than dfdx's `select`, whose `(B,)` index tensor
/// of `usize` would be built from host memory on every call: dfdx's allocation cache
/// keeps every dropped buffer but hands out `usize` buffers to nobody, so memory grew by
/// one index tensor per call (see [`crate::device::try_tensor_from_slice`]). Not `slice`
/// either, whose backward assigns instead of adding. The result is exact (`x * 1 = x`,
/// and adding the other entries' `x * 0 = 0` changes nothing), and so is the gradient.
/// It costs `B S N` products where `select` copies `B N`: the recurrent layers pick once
/// per frame only on the composed path (devices other than `Cpu`).
pub(crate) fn try_pick<B: Dim, S: Dim, N: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(B, S, N), E, D, T>,
    t: usize,
) -> Result<Tensor<(B, N), E, D, T>, D::Err> {
    let (b, s, n) = *x.shape();
    let hot: Vec<E> = (0..s.size()).map(|i| if i == t { E::ONE } else { E::default() }).collect();
    let hot: Tensor<(S,), E, D> = try_tensor_from_slice(x.device(), &hot, (s,))?;
    x.try_mul(hot.try_broadcast_like::<_, Axes2<0, 2>>(&(b, s, n))?)?.try_sum::<(B, N), Axis<1>>()
}

/// Column `t` of a `(B, S)` mask, as `(B,)` ([`try_pick`] for an untaped 2-D tensor).
pub(crate) fn try_pick_column<B: Dim, S: Dim, E: Dtype, D: Device<E>>(
    mask: &Tensor<(B, S), E, D>,
    t: usize,
) -> Result<Tensor<(B,), E, D>, D::Err> {
    let (b, s) = *mask.shape();
    let picked = try_pick(mask.clone().try_reshape_like(&(b, s, Const::<1>))?, t)?;
    picked.try_reshape_like(&(b,))
}

/// `(B, S, N)` states -> `(B, N)`, the state after the last step ([`try_pick`]: no
/// `usize` index tensor, and not dfdx 0.13's `slice`, whose backward **assigns** its
/// gradient into the input's instead of adding).
#[allow(clippy::type_complexity)]
pub(crate) fn try_last_step<B: Dim, S: Dim, N: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    states: Tensor<(B, S, N), E, D, T>,
) -> Result<Tensor<(B, N), E, D, T>, D::Err> {
    let last = states.shape().1.size() - 1;
    try_pick(states, last)
}
