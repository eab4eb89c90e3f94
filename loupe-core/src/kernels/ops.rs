//! Tensor-level fused ops: split the tape, run a kernel of [`super::math`] on the
//! buffers, record its backward, put the tape back. Each returns `Ok(Err(inputs))`
//! untouched when the fused kernel does not apply (device, dtype, layout, switch off),
//! so the caller continues with the composed dfdx ops.
//!
//! These ops take tensors and constants, never a layer: the glue that hands a layer's
//! tensors and constants (epsilon, decay, norm floor) to them lives in the layer's file
//! in `nn`.

use dfdx::prelude::*;

use super::math::{self, Real};
use super::view::{
    contiguous, expect_view, grad_buffer, grad_mut, is_cpu, params, params_mut, read, restore_grad,
    take_grad, tensor_from, write, zeroed,
};
use super::{cpu_float, CpuFloat};

/// The tensors of a batch norm over `C` channels, as the batch-norm kernels read them.
pub(crate) struct BatchNormTensors<'a, const C: usize, E: Dtype, D: Storage<E>> {
    /// `gamma`, multiplying the normalised values.
    pub scale: &'a Tensor<Rank1<C>, E, D>,
    /// `beta`, added after.
    pub shift: &'a Tensor<Rank1<C>, E, D>,
    /// `epsilon`, added to the variance.
    pub epsilon: f64,
}

/// Training-mode batch norm over the last axis (`C` channels, every other axis a row),
/// `y = scale (x - mean) / sqrt(var + epsilon) + shift` with the batch mean and biased
/// variance, followed by a softmax over the channels when `softmax` is set. The running
/// averages `running = (mean, var)` move towards the batch statistics,
/// `r = decay r + (1 - decay) batch`; `decay` is asked for only when the kernel applies.
#[allow(clippy::type_complexity)]
pub(crate) fn try_batch_norm_train<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, const C: usize>(
    x: Tensor<S, E, D, T>,
    bn: BatchNormTensors<'_, C, E, D>,
    running: (&mut Tensor<Rank1<C>, E, D>, &mut Tensor<Rank1<C>, E, D>),
    decay: impl FnOnce() -> f64,
    softmax: bool,
) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => batch_norm_train::<f32, _, _, _, _, C>(x, bn, running, decay, softmax),
        Some(CpuFloat::F64) => batch_norm_train::<f64, _, _, _, _, C>(x, bn, running, decay, softmax),
        None => Ok(Err(x)),
    }
}

#[allow(clippy::type_complexity)]
fn batch_norm_train<F: Real, S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, const C: usize>(
    x: Tensor<S, E, D, T>,
    bn: BatchNormTensors<'_, C, E, D>,
    (running_mean, running_var): (&mut Tensor<Rank1<C>, E, D>, &mut Tensor<Rank1<C>, E, D>),
    decay: impl FnOnce() -> f64,
    softmax: bool,
) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    let (x, mut tape) = x.split_tape();
    let channel_last = S::NUM_DIMS > 0 && x.shape().concrete()[S::NUM_DIMS - 1] == C;
    let applies = [
        contiguous::<F, _, _, _>(&x),
        contiguous::<F, _, _, _>(bn.scale),
        contiguous::<F, _, _, _>(bn.shift),
    ];
    if !channel_last || applies.contains(&false) {
        return Ok(Err(x.put_tape(tape)));
    }
    let gamma = expect_view(read::<F, _, _, _>(bn.scale)?);
    let beta = expect_view(read::<F, _, _, _>(bn.shift)?);
    // `x` is read in place and `y` written in place into its tensor; the backward reads
    // both there (the tensors it keeps never change: dfdx copies a shared buffer before
    // writing it).
    let mut out = x.device().try_zeros_like(x.shape())?;
    let stats = math::batch_norm_forward(
        expect_view(params::<F, _, _, _>(&x)),
        C,
        &gamma,
        &beta,
        bn.epsilon,
        softmax,
        expect_view(params_mut::<F, _, _, _>(&mut out)),
    );
    move_running_averages((running_mean, running_var), (&stats.mean, &stats.var), decay())?;
    if T::OWNS_TAPE {
        let (x_keep, out_keep, scale, shift) = (x, out.clone(), bn.scale.clone(), bn.shift.clone());
        tape.add_backward_op(move |grads| {
            // The output's gradient is consumed here: the kernel works in its buffer.
            let mut gy = take_grad::<F, _, _, _>(grads, &out_keep)?;
            let mut g_scale = take_grad::<F, _, _, _>(grads, &scale)?;
            let mut g_shift = take_grad::<F, _, _, _>(grads, &shift)?;
            math::batch_norm_backward(
                expect_view(params::<F, _, _, _>(&x_keep)),
                expect_view(params::<F, _, _, _>(&out_keep)),
                &mut gy,
                C,
                &gamma,
                &stats,
                softmax,
                grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&x_keep)?),
                &mut g_scale,
                &mut g_shift,
            );
            restore_grad(grads, &scale, g_scale)?;
            restore_grad(grads, &shift, g_shift)?;
            restore_grad(grads, &out_keep, gy)
        });
    }
    Ok(Ok(out.put_tape(tape)))
}

/// Evaluation-mode batch norm over the last axis with the running averages
/// `running = (mean, var)`, followed by a softmax over the channels when `softmax` is
/// set, without a tape (inference): one pass instead of ~8 (with the softmax) or 2 single-
/// threaded ones (without). The input is read in place and the output written in place
/// into the tensor that holds it.
#[allow(clippy::type_complexity)]
pub(crate) fn try_batch_norm_eval<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, const C: usize>(
    x: Tensor<S, E, D, T>,
    bn: BatchNormTensors<'_, C, E, D>,
    running: (&Tensor<Rank1<C>, E, D>, &Tensor<Rank1<C>, E, D>),
    softmax: bool,
) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    if T::OWNS_TAPE {
        return Ok(Err(x));
    }
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => batch_norm_eval::<f32, _, _, _, _, C>(x, bn, running, softmax),
        Some(CpuFloat::F64) => batch_norm_eval::<f64, _, _, _, _, C>(x, bn, running, softmax),
        None => Ok(Err(x)),
    }
}

#[allow(clippy::type_complexity)]
fn batch_norm_eval<F: Real, S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, const C: usize>(
    x: Tensor<S, E, D, T>,
    bn: BatchNormTensors<'_, C, E, D>,
    (running_mean, running_var): (&Tensor<Rank1<C>, E, D>, &Tensor<Rank1<C>, E, D>),
    softmax: bool,
) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    let (x, tape) = x.split_tape();
    let channel_last = S::NUM_DIMS > 0 && x.shape().concrete()[S::NUM_DIMS - 1] == C;
    let layout = [bn.scale, bn.shift, running_mean, running_var].map(|t| contiguous::<F, _, _, _>(t));
    if !channel_last || !contiguous::<F, _, _, _>(&x) || layout.contains(&false) {
        return Ok(Err(x.put_tape(tape)));
    }
    let (scale, offset) = eval_affine::<F, _, _, C>(&bn, (running_mean, running_var))?;
    let mut out = x.device().try_zeros_like(x.shape())?;
    let xs = expect_view(params::<F, _, _, _>(&x));
    math::normalize_rows(xs, C, &scale, &offset, softmax, expect_view(params_mut::<F, _, _, _>(&mut out)));
    Ok(Ok(out.put_tape(tape)))
}

/// Moves a batch norm's running averages `(mean, var)` towards the batch statistics,
/// `r = decay r + (1 - decay) batch`; a running average that is not a contiguous `Cpu`
/// tensor of `F` is left as it is.
fn move_running_averages<F: Real, E: Dtype, D: Storage<E>, const C: usize>(
    (running_mean, running_var): (&mut Tensor<Rank1<C>, E, D>, &mut Tensor<Rank1<C>, E, D>),
    (mean, var): (&[F], &[F]),
    decay: f64,
) -> Result<(), D::Err> {
    let decay = F::from_f64(decay).expect("decay fits");
    for (running, batch) in [(running_mean, mean), (running_var, var)] {
        if let Some(mut r) = read::<F, _, _, _>(running)? {
            for (r, &b) in r.iter_mut().zip(batch) {
                *r = decay * *r + (F::one() - decay) * b;
            }
            assert!(write(running, &r), "the running average was read as a contiguous Cpu tensor");
        }
    }
    Ok(())
}

/// The evaluation batch norm as one multiply-add per value, `y = x * scale + offset`:
/// `scale = gamma / sqrt(running_var + epsilon)`, `offset = beta - running_mean * scale`.
/// The tensors' layout is checked by the caller.
fn eval_affine<F: Real, E: Dtype, D: Storage<E>, const C: usize>(
    bn: &BatchNormTensors<'_, C, E, D>,
    (running_mean, running_var): (&Tensor<Rank1<C>, E, D>, &Tensor<Rank1<C>, E, D>),
) -> Result<(Vec<F>, Vec<F>), D::Err> {
    let gamma = expect_view(read::<F, _, _, _>(bn.scale)?);
    let beta = expect_view(read::<F, _, _, _>(bn.shift)?);
    let mean = expect_view(read::<F, _, _, _>(running_mean)?);
    let var = expect_view(read::<F, _, _, _>(running_var)?);
    let eps = F::from_f64(bn.epsilon).expect("epsilon fits");
    let scale: Vec<F> = gamma.iter().zip(var.iter()).map(|(&g, &v)| g / (v + eps).sqrt()).collect();
    let offset: Vec<F> = beta.iter().zip(mean.iter()).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
    Ok((scale, offset))
}

/// The evaluation input stage of the frame-level models for channels `[start, start +
/// len)` of `x`'s last axis (`C` channels, every other axis a row): each row
/// L2-normalised over all `C` channels with the squared-norm floor `floor`, then the
/// batch norm with its running averages, written straight into a new tensor of `shape`
/// (`x`'s rows, `len` channels). One pass over `x` and no full-width temporary, with the
/// bits of [`try_l2_normalize_rows`], [`try_batch_norm_eval`] and the channels' copy one
/// after the other. `None` when the kernel does not apply: `x` or the batch norm's
/// tensors are not contiguous `Cpu` tensors of `f32` / `f64`, `x`'s last axis is not
/// `C`, or the fused kernels are off.
///
/// # Panics
/// When the channels do not lie within the `C` channels or `shape` does not hold the rows
/// times `len` values (the callers' const checks rule both out).
pub(crate) fn try_input_stage_eval<S: Shape, Y: Shape, E: Dtype, D: Device<E>, const C: usize>(
    x: &Tensor<S, E, D>,
    floor: f64,
    bn: BatchNormTensors<'_, C, E, D>,
    running: (&Tensor<Rank1<C>, E, D>, &Tensor<Rank1<C>, E, D>),
    start: usize,
    shape: Y,
) -> Result<Option<Tensor<Y, E, D>>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => input_stage_eval::<f32, _, _, _, _, C>(x, floor, bn, running, start, shape),
        Some(CpuFloat::F64) => input_stage_eval::<f64, _, _, _, _, C>(x, floor, bn, running, start, shape),
        None => Ok(None),
    }
}

fn input_stage_eval<F: Real, S: Shape, Y: Shape, E: Dtype, D: Device<E>, const C: usize>(
    x: &Tensor<S, E, D>,
    floor: f64,
    bn: BatchNormTensors<'_, C, E, D>,
    running: (&Tensor<Rank1<C>, E, D>, &Tensor<Rank1<C>, E, D>),
    start: usize,
    shape: Y,
) -> Result<Option<Tensor<Y, E, D>>, D::Err> {
    let channel_last = S::NUM_DIMS > 0 && x.shape().concrete()[S::NUM_DIMS - 1] == C;
    let layout = [bn.scale, bn.shift, running.0, running.1].map(|t| contiguous::<F, _, _, _>(t));
    if Y::NUM_DIMS == 0 || !channel_last || !contiguous::<F, _, _, _>(x) || layout.contains(&false) {
        return Ok(None);
    }
    let len = shape.concrete()[Y::NUM_DIMS - 1];
    assert!(start + len <= C, "channels [{start}, {}) of {C}", start + len);
    let (scale, offset) = eval_affine::<F, _, _, C>(&bn, running)?;
    let mut out = x.device().try_zeros_like(&shape)?;
    let (scale, offset) = (&scale[start..start + len], &offset[start..start + len]);
    let xs = expect_view(params::<F, _, _, _>(x));
    math::l2_affine_rows(xs, C, floor, start, scale, offset, expect_view(params_mut::<F, _, _, _>(&mut out)));
    Ok(Some(out))
}

/// A training batch's input standardisation, computed but not applied: each row's
/// inverse L2 norm and the per-channel `scale` and `offset` that map the L2-normalised
/// row to `(L2(x) - mean) / sqrt(var + epsilon)` ([`try_standardize_train`]); the
/// standardised channels are formed by [`try_standardized_channels`].
#[derive(Debug, Clone)]
pub(crate) struct Standardization<const C: usize, E: Dtype, D: Storage<E>> {
    inv_norms: Tensor<(usize,), E, D>,
    scale: Tensor<Rank1<C>, E, D>,
    offset: Tensor<Rank1<C>, E, D>,
}

/// Training-mode standardisation statistics of the frame-level input stage over the rows
/// of `x` (`C` channels last, every other axis a row): each row L2-normalised with the
/// squared-norm floor `floor`, then the batch mean and biased variance per channel,
/// without writing the normalised rows. The running averages `running = (mean, var)`
/// move towards the batch statistics, `r = decay r + (1 - decay) batch`, as
/// [`try_batch_norm_train`] moves them (`decay` is asked for only when the kernel
/// applies). The bits of [`try_l2_normalize_rows`] then [`try_batch_norm_train`] with a
/// unit scale and a zero shift. `None` when the kernel does not apply (not contiguous
/// `Cpu` tensors of `f32` / `f64`, `x`'s last axis not `C`, or the fused kernels off).
#[allow(clippy::type_complexity)]
pub(crate) fn try_standardize_train<S: Shape, E: Dtype, D: Device<E>, const C: usize>(
    x: &Tensor<S, E, D>,
    floor: f64,
    epsilon: f64,
    running: (&mut Tensor<Rank1<C>, E, D>, &mut Tensor<Rank1<C>, E, D>),
    decay: impl FnOnce() -> f64,
) -> Result<Option<Standardization<C, E, D>>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => standardize_train::<f32, _, _, _, C>(x, floor, epsilon, running, decay),
        Some(CpuFloat::F64) => standardize_train::<f64, _, _, _, C>(x, floor, epsilon, running, decay),
        None => Ok(None),
    }
}

#[allow(clippy::type_complexity)]
fn standardize_train<F: Real, S: Shape, E: Dtype, D: Device<E>, const C: usize>(
    x: &Tensor<S, E, D>,
    floor: f64,
    epsilon: f64,
    (running_mean, running_var): (&mut Tensor<Rank1<C>, E, D>, &mut Tensor<Rank1<C>, E, D>),
    decay: impl FnOnce() -> f64,
) -> Result<Option<Standardization<C, E, D>>, D::Err> {
    let channel_last = S::NUM_DIMS > 0 && x.shape().concrete()[S::NUM_DIMS - 1] == C;
    let running = [&*running_mean, &*running_var].map(|t| contiguous::<F, _, _, _>(t));
    if !channel_last || !contiguous::<F, _, _, _>(x) || running.contains(&false) {
        return Ok(None);
    }
    let (inv, mean, var) = math::l2_standardize_stats(expect_view(params::<F, _, _, _>(x)), C, floor);
    // A batch norm with a unit scale and a zero shift.
    let (unit, zero) = (vec![F::one(); C], vec![F::zero(); C]);
    let (_, scale, offset) = math::batch_norm_affine(&mean, &var, &unit, &zero, epsilon);
    move_running_averages((running_mean, running_var), (&mean, &var), decay())?;
    let dev = x.device();
    Ok(Some(Standardization {
        inv_norms: tensor_from::<F, _, _, _>(dev, (inv.len(),), &inv)?,
        scale: tensor_from::<F, _, _, _>(dev, Rank1::<C>::default(), &scale)?,
        offset: tensor_from::<F, _, _, _>(dev, Rank1::<C>::default(), &offset)?,
    }))
}

/// Channels `[start, start + len)` of the standardised rows of `x` that `standardization`
/// describes (`x` the frames it was computed from), as a new tensor of `shape` (`x`'s
/// rows, `len` channels): one pass over `x`, no full-width temporary.
///
/// # Panics
/// When `x` is not the contiguous `Cpu` tensor of `f32` / `f64` with `C` channels that
/// [`try_standardize_train`] accepted, or the channels do not lie within the `C`
/// channels, or `shape` does not hold the rows times `len` values.
pub(crate) fn try_standardized_channels<S: Shape, Y: Shape, E: Dtype, D: Device<E>, const C: usize>(
    x: &Tensor<S, E, D>,
    standardization: &Standardization<C, E, D>,
    start: usize,
    shape: Y,
) -> Result<Tensor<Y, E, D>, D::Err> {
    fn channels<F: Real, S: Shape, Y: Shape, E: Dtype, D: Device<E>, const C: usize>(
        x: &Tensor<S, E, D>,
        s: &Standardization<C, E, D>,
        start: usize,
        shape: Y,
    ) -> Result<Tensor<Y, E, D>, D::Err> {
        let len = if Y::NUM_DIMS == 0 { 1 } else { shape.concrete()[Y::NUM_DIMS - 1] };
        assert!(start + len <= C, "channels [{start}, {}) of {C}", start + len);
        let mut out = x.device().try_zeros_like(&shape)?;
        let inv = expect_view(params::<F, _, _, _>(&s.inv_norms));
        let scale = &expect_view(params::<F, _, _, _>(&s.scale))[start..start + len];
        let offset = &expect_view(params::<F, _, _, _>(&s.offset))[start..start + len];
        let xs = expect_view(params::<F, _, _, _>(x));
        math::affine_rows(xs, C, inv, start, scale, offset, expect_view(params_mut::<F, _, _, _>(&mut out)));
        Ok(out)
    }
    // By dtype alone: the statistics exist only where the kernel applied.
    if is_cpu::<f32, E, D>() {
        channels::<f32, _, _, _, _, C>(x, standardization, start, shape)
    } else {
        channels::<f64, _, _, _, _, C>(x, standardization, start, shape)
    }
}

/// L2 normalisation of the last axis with a floor on the squared norm,
/// `x / sqrt(max(sum x^2, floor))`.
#[allow(clippy::type_complexity)]
pub(crate) fn try_l2_normalize_rows<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    floor: f64,
) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => l2_rows::<f32, _, _, _, _>(x, floor),
        Some(CpuFloat::F64) => l2_rows::<f64, _, _, _, _>(x, floor),
        None => Ok(Err(x)),
    }
}

#[allow(clippy::type_complexity)]
fn l2_rows<F: Real, S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    floor: f64,
) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    let (x, mut tape) = x.split_tape();
    if S::NUM_DIMS == 0 || !contiguous::<F, _, _, _>(&x) {
        return Ok(Err(x.put_tape(tape)));
    }
    let c = x.shape().concrete()[S::NUM_DIMS - 1];
    // Read and written in place; the backward reads the output in its tensor.
    let mut out = x.device().try_zeros_like(x.shape())?;
    let xs = expect_view(params::<F, _, _, _>(&x));
    let norms = math::l2_rows_forward(xs, c, floor, expect_view(params_mut::<F, _, _, _>(&mut out)));
    if T::OWNS_TAPE {
        let (x_id, out_keep) = (x.ghost(), out.clone());
        tape.add_backward_op(move |grads| {
            let gy = take_grad::<F, _, _, _>(grads, &out_keep)?;
            let ys = expect_view(params::<F, _, _, _>(&out_keep));
            let gx = grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&x_id)?);
            math::l2_rows_backward(ys, &gy, &norms, c, floor, gx);
            restore_grad(grads, &out_keep, gy)
        });
    }
    Ok(Ok(out.put_tape(tape)))
}

/// Inputs handed back when [`try_vlad_normalize`] does not apply.
pub(crate) type VladInputs<B, S, const F: usize, const K: usize, E, D, T> =
    (Tensor<(B, Const<F>, Const<K>), E, D, T>, Option<Tensor<(B, S, Const<K>), E, D, T>>);

/// The tail of NetVLAD / NetRVLAD in one op: from the aggregated `w = X^T a`
/// (`(B, F, K)`), optionally the residual `v = w - (sum_t a) c` (given `a` and centres
/// `c`), intra-normalisation over `F` per cluster, d-major flattening and the global L2,
/// each L2 with `floor` on the squared norm.
#[allow(clippy::type_complexity)]
pub(crate) fn try_vlad_normalize<
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    const OUT: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    w: Tensor<(B, Const<F>, Const<K>), E, D, T>,
    residual: Option<(Tensor<(B, S, Const<K>), E, D, T>, &Tensor<Rank2<F, K>, E, D>)>,
    floor: f64,
) -> Result<Result<Tensor<(B, Const<OUT>), E, D, T>, VladInputs<B, S, F, K, E, D, T>>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => vlad::<f32, B, S, F, K, OUT, E, D, T>(w, residual, floor),
        Some(CpuFloat::F64) => vlad::<f64, B, S, F, K, OUT, E, D, T>(w, residual, floor),
        None => Ok(Err((w, residual.map(|(a, _)| a)))),
    }
}

#[allow(clippy::type_complexity)]
fn vlad<
    R: Real,
    B: Dim,
    S: Dim,
    const F: usize,
    const K: usize,
    const OUT: usize,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
>(
    w: Tensor<(B, Const<F>, Const<K>), E, D, T>,
    residual: Option<(Tensor<(B, S, Const<K>), E, D, T>, &Tensor<Rank2<F, K>, E, D>)>,
    floor: f64,
) -> Result<Result<Tensor<(B, Const<OUT>), E, D, T>, VladInputs<B, S, F, K, E, D, T>>, D::Err> {
    assert_eq!(OUT, F * K, "VLAD output size must be F * K");
    let (w, mut tape) = w.split_tape();
    let (a, centers) = match residual {
        Some((a, c)) => {
            let (a, a_tape) = a.split_tape();
            tape = tape.merge(a_tape);
            (Some(a), Some(c.clone()))
        }
        None => (None, None),
    };
    let applies = contiguous::<R, _, _, _>(&w)
        && a.as_ref().is_none_or(|a| contiguous::<R, _, _, _>(a))
        && centers.as_ref().is_none_or(|c| contiguous::<R, _, _, _>(c));
    if !applies || w.shape().num_elements() == 0 {
        // Give the whole tape back with `w`; `a` continues on an empty one.
        return Ok(Err((w.put_tape(tape), a.map(|a| a.put_tape(T::default())))));
    }
    let b = w.shape().0;
    // The aggregated descriptors and the assignment are read in place (the forward only
    // reads them); the centres (F x K) are copied, as the backward keeps them.
    let ws = expect_view(params::<R, _, _, _>(&w));
    let a_values = a.as_ref().map(|a| expect_view(params::<R, _, _, _>(a)));
    let center_values = match &centers {
        Some(c) => Some(expect_view(read::<R, _, _, _>(c)?)),
        None => None,
    };
    // Written in place into its tensor, where the backward reads it.
    let mut out = w.device().try_zeros_like(&(b, Const::<OUT>))?;
    let ys = expect_view(params_mut::<R, _, _, _>(&mut out));
    let stats = math::vlad_forward(ws, a_values, center_values.as_deref().map(|v| &v[..]), F, K, floor, ys);
    if !T::OWNS_TAPE {
        return Ok(Ok(out.put_tape(tape)));
    }
    // Of `w` and `a` the backward needs only their gradients' identities (`ghost`).
    let (out_keep, w_id, a_id) = (out.clone(), w.ghost(), a.map(|a| a.ghost()));
    let dev = w.device().clone();
    tape.add_backward_op(move |grads| {
        let gy = take_grad::<R, _, _, _>(grads, &out_keep)?;
        let ys = expect_view(params::<R, _, _, _>(&out_keep));
        let mut gv = zeroed::<R, E, _>(&dev, ys.len())?;
        let mut ga = match &a_id {
            Some(a) => Some(std::mem::take(grad_buffer::<R, E, D>(grads.get_or_alloc_mut(a)?))),
            None => None,
        };
        let mut gc = match &centers {
            Some(c) => Some(take_grad::<R, _, _, _>(grads, c)?),
            None => None,
        };
        math::vlad_backward(
            ys,
            &gy,
            center_values.as_deref().map(|v| &v[..]),
            &stats,
            F,
            K,
            floor,
            grad_buffer::<R, E, D>(grads.get_or_alloc_mut(&w_id)?),
            ga.as_deref_mut(),
            gc.as_deref_mut(),
            &mut gv,
        );
        if let (Some(a), Some(ga)) = (&a_id, ga) {
            *grad_buffer::<R, E, D>(grads.get_or_alloc_mut(a)?) = ga;
        }
        if let (Some(c), Some(gc)) = (&centers, gc) {
            restore_grad(grads, c, gc)?;
        }
        restore_grad(grads, &out_keep, gy)
    });
    Ok(Ok(out.put_tape(tape)))
}

/// `|w|^2 / 2` of a parameter on a fresh tape of type `T`, in one multithreaded pass
/// forward (accumulated in f64) and one backward (`gw += g w`), without the `w^2`
/// temporary of the composed ops. `None` when the fused kernel does not apply.
#[allow(clippy::type_complexity)]
pub(crate) fn try_half_squared_norm<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    w: &Tensor<S, E, D>,
) -> Result<Option<Tensor<Rank0, E, D, T>>, D::Err> {
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => half_squared_norm::<f32, _, _, _, _>(w),
        Some(CpuFloat::F64) => half_squared_norm::<f64, _, _, _, _>(w),
        None => Ok(None),
    }
}

#[allow(clippy::type_complexity)]
fn half_squared_norm<F: Real, S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    w: &Tensor<S, E, D>,
) -> Result<Option<Tensor<Rank0, E, D, T>>, D::Err> {
    // The weights are read in place, forward and backward: a parameter, alive anyway,
    // which a copy per pass would stream twice more (the MoE's are 31.6 MB).
    let Some(values) = params::<F, _, _, _>(w) else {
        return Ok(None);
    };
    let half = E::from_f64(0.5 * math::squared_norm(values)).expect("norm fits the dtype");
    let mut out = w.device().try_zeros_like(&())?;
    out.copy_from(&[half]);
    let mut tape = T::default();
    if T::OWNS_TAPE {
        let (w_keep, out_keep) = (w.clone(), out.clone());
        tape.add_backward_op(move |grads| {
            let g = take_grad::<F, _, _, _>(grads, &out_keep)?;
            let values = params::<F, _, _, _>(&w_keep).expect("a Cpu tensor of F, as in the forward");
            math::scaled_add(grad_mut::<F, _, _, _>(grads, &w_keep)?, g[0], values);
            restore_grad(grads, &out_keep, g)
        });
    }
    Ok(Some(out.put_tape(tape)))
}
