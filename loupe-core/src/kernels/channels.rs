//! Channels split off and joined along the last axis, copied by all threads: a
//! frame-level model's streams where the input stage does not write them itself (taped
//! frames, video-level rows, raw frames; the fused input stage writes each stream
//! straight from the frames, `ops::try_input_stage_eval` and
//! `ops::try_standardized_channels`), the recurrent layers' outputs and final states
//! ([`try_channels`]), and the late fusion of the pooled streams ([`try_concat_rows`]).
//!
//! dfdx's `slice` and `concat_along` walk their output one element at a time on one
//! thread; at paper size the evaluation forward spent 4% of its time in the slice,
//! splitting the `(80, 300, 1152)` standardised frames into their rgb and audio streams,
//! and 2% in the concatenation (`docs/performance.md`, "Where the time goes now"). The
//! recurrent layers picked their `h_t` and last state with one-hot products over the
//! whole `(80, 150, 2048)` states, forward and backward, on one thread. Both ops here
//! have their backward (each input's gradient gains its channels of the output's;
//! dfdx 0.13's `slice` backward assigns instead of adding).

use dfdx::prelude::*;
use rayon::prelude::*;

use super::math::{rows_per_task, Real};
use super::view::{expect_view, grad_buffer, params, params_mut};
use super::{cpu_float, CpuFloat};

/// Channels `[start, start + len)` of the last axis of `x` (every other axis a row), as
/// a new tensor of `shape` (`x`'s shape with the last axis `len`), with its backward.
/// Hands `x` back as `Err` when the op does not apply: `x` is not a contiguous `Cpu`
/// tensor of `f32` / `f64`, or the fused kernels are off.
///
/// # Panics
/// When the channels do not lie within the last axis or `shape` does not hold the rows
/// times `len` values (the callers' const checks rule both out).
pub(crate) fn try_channels<S: Shape, Y: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    start: usize,
    len: usize,
    shape: Y,
) -> Result<Result<Tensor<Y, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    if S::NUM_DIMS == 0 {
        return Ok(Err(x));
    }
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => channels::<f32, _, _, _, _, _>(x, start, len, shape),
        Some(CpuFloat::F64) => channels::<f64, _, _, _, _, _>(x, start, len, shape),
        None => Ok(Err(x)),
    }
}

#[allow(clippy::type_complexity)]
fn channels<F: Real, S: Shape, Y: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    start: usize,
    len: usize,
    shape: Y,
) -> Result<Result<Tensor<Y, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
    let (x, mut tape) = x.split_tape();
    let Some(xs) = params::<F, _, _, _>(&x) else {
        return Ok(Err(x.put_tape(tape)));
    };
    let width = x.shape().concrete()[S::NUM_DIMS - 1];
    assert!(len > 0 && start + len <= width, "channels [{start}, {}) of {width}", start + len);
    let rows = xs.len() / width;
    assert_eq!(shape.num_elements(), rows * len, "the channels' shape");
    // Written in place into the tensor that holds them (a buffer and a copy would move
    // the stream twice).
    let mut out = x.device().try_zeros_like(&shape)?;
    let ys = expect_view(params_mut::<F, _, _, _>(&mut out));
    let chunk = rows_per_task(rows, width);
    ys.par_chunks_mut(chunk * len).zip(xs.par_chunks(chunk * width)).for_each(|(ys, xs)| {
        for (y, x) in ys.chunks_exact_mut(len).zip(xs.chunks_exact(width)) {
            y.copy_from_slice(&x[start..start + len]);
        }
    });
    if T::OWNS_TAPE {
        let (x_id, out_id) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let g = std::mem::take(grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&out_id)?));
            // x[:, start..start + len] += g, row by row.
            let gx = grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&x_id)?);
            gx.par_chunks_mut(chunk * width).zip(g.par_chunks(chunk * len)).for_each(|(xs, gs)| {
                for (x, g) in xs.chunks_exact_mut(width).zip(gs.chunks_exact(len)) {
                    x[start..start + len].iter_mut().zip(g).for_each(|(x, g)| *x = *x + *g);
                }
            });
            *grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&out_id)?) = g;
            Ok(())
        });
    }
    Ok(Ok(out.put_tape(tape)))
}

/// `[a, b]` along the last axis of rows: `(B, A)` and `(B, C - A)` give `(B, C)` (the
/// late fusion of two pooled streams), with its backward (each input's gradient is its
/// columns of the output's). Hands both back as `Err` when the op does not apply: not
/// contiguous `Cpu` tensors of `f32` / `f64`, different row counts, or the fused
/// kernels are off.
#[allow(clippy::type_complexity)]
pub(crate) fn try_concat_rows<const A: usize, const B: usize, const C: usize, E, D, T, R>(
    a: Tensor<(usize, Const<A>), E, D, T>,
    b: Tensor<(usize, Const<B>), E, D, R>,
) -> Result<Result<Tensor<(usize, Const<C>), E, D, T>, ConcatInputs<A, B, E, D, T, R>>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D> + Merge<R>,
    R: Tape<E, D>,
{
    assert_eq!(A + B, C, "the concatenation's width");
    match cpu_float::<E, D>() {
        Some(CpuFloat::F32) => concat_rows::<f32, A, B, C, _, _, _, _>(a, b),
        Some(CpuFloat::F64) => concat_rows::<f64, A, B, C, _, _, _, _>(a, b),
        None => Ok(Err((a, b))),
    }
}

/// The inputs [`try_concat_rows`] hands back when it does not apply.
pub(crate) type ConcatInputs<const A: usize, const B: usize, E, D, T, R> =
    (Tensor<(usize, Const<A>), E, D, T>, Tensor<(usize, Const<B>), E, D, R>);

#[allow(clippy::type_complexity)]
fn concat_rows<F: Real, const A: usize, const B: usize, const C: usize, E, D, T, R>(
    a: Tensor<(usize, Const<A>), E, D, T>,
    b: Tensor<(usize, Const<B>), E, D, R>,
) -> Result<Result<Tensor<(usize, Const<C>), E, D, T>, ConcatInputs<A, B, E, D, T, R>>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D> + Merge<R>,
    R: Tape<E, D>,
{
    let ((a, a_tape), (b, b_tape)) = (a.split_tape(), b.split_tape());
    let rows = a.shape().0;
    let (Some(av), Some(bv)) = (params::<F, _, _, _>(&a), params::<F, _, _, _>(&b)) else {
        return Ok(Err((a.put_tape(a_tape), b.put_tape(b_tape))));
    };
    if b.shape().0 != rows {
        return Ok(Err((a.put_tape(a_tape), b.put_tape(b_tape))));
    }
    let mut out = a.device().try_zeros_like(&(rows, Const::<C>))?;
    let ys = expect_view(params_mut::<F, _, _, _>(&mut out));
    let chunk = rows_per_task(rows, C);
    ys.par_chunks_mut(chunk * C).zip(av.par_chunks(chunk * A)).zip(bv.par_chunks(chunk * B)).for_each(
        |((ys, av), bv)| {
            for ((y, a), b) in ys.chunks_exact_mut(C).zip(av.chunks_exact(A)).zip(bv.chunks_exact(B)) {
                y[..A].copy_from_slice(a);
                y[A..].copy_from_slice(b);
            }
        },
    );
    let mut tape = a_tape.merge(b_tape);
    if T::OWNS_TAPE {
        let (a_id, b_id, out_id) = (a.ghost(), b.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let g = std::mem::take(grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&out_id)?));
            // Each input's gradient += its columns of the output's.
            let columns = |grad: &mut Vec<F>, from: usize, width: usize| {
                grad.par_chunks_mut(chunk * width).zip(g.par_chunks(chunk * C)).for_each(|(gx, g)| {
                    for (gx, g) in gx.chunks_exact_mut(width).zip(g.chunks_exact(C)) {
                        gx.iter_mut().zip(&g[from..from + width]).for_each(|(x, y)| *x = *x + *y);
                    }
                });
            };
            columns(grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&a_id)?), 0, A);
            columns(grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&b_id)?), A, B);
            *grad_buffer::<F, E, D>(grads.get_or_alloc_mut(&out_id)?) = g;
            Ok(())
        });
    }
    Ok(Ok(out.put_tape(tape)))
}
