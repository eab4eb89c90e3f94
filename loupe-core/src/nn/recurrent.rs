//! What the recurrent pooling layers ([`super::Lstm`], [`super::Gru`]) share: the
//! valid-frame mask, and the plumbing of their fused recurrences into dfdx's tape.
//!
//! dfdx 0.13 has no recurrent layers, and a recurrence built from its ops records some 20
//! taped ops per frame and layer (12,000 backward closures and every intermediate kept
//! for a 300-frame, 2-layer pass). On the `Cpu` (f32, f64, with the fused kernels on,
//! [`crate::kernels`]) loupe instead runs each layer's whole recurrence as one op with
//! its own backward (backpropagation through time): the input projection of all frames
//! is one taped matmul before it, each step's recurrent product is one untaped
//! `(B, H) x (H, nH)` matmul, the gate arithmetic is a fused loop, and the backward
//! keeps only the gate activations. Everywhere else (`Cuda`, other dtypes, or with
//! `LOUPE_FUSED=0`) the recurrence is composed from dfdx ops frame by frame, so it runs
//! on the device; `tests/fused_kernels.rs` checks that both paths agree, outputs and
//! every gradient.

use dfdx::prelude::*;

use crate::device::try_tensor_from_slice;

/// The 0/1 mask of valid frames, `(B, S)`: `mask[b][t] = 1` for `t < lengths[b]`, else 0.
///
/// The recurrent layers take `(frames, mask)`; a video's state stops changing at its
/// first masked frame, so whatever padding follows its `lengths[b]` frames does not
/// change its output. Lengths beyond `S` count as `S`.
///
/// # Panics
/// When `lengths.len()` is not the batch size of `shape`.
///
/// ```
/// # use dfdx::prelude::*;
/// let dev = loupe_core::device::cpu();
/// let mask: Tensor<(usize, Const<4>), f32, _> = loupe_core::nn::valid_frame_mask(&dev, &[2, 9], (2, Const));
/// assert_eq!(mask.as_vec(), [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
/// ```
pub fn valid_frame_mask<B: Dim, S: Dim, E: Dtype, D: Device<E>>(
    dev: &D,
    lengths: &[usize],
    shape: (B, S),
) -> Tensor<(B, S), E, D> {
    let (b, s) = (shape.0.size(), shape.1.size());
    assert_eq!(lengths.len(), b, "one length per video");
    let values: Vec<E> = lengths
        .iter()
        .flat_map(|&n| (0..s).map(move |t| if t < n { E::ONE } else { E::default() }))
        .collect();
    crate::device::try_tensor_from_slice(dev, &values, shape).expect("allocating the frame mask")
}

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
