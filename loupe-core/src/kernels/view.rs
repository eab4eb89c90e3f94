//! Zero-copy slices of `Cpu` tensors.
//!
//! dfdx 0.13 keeps a tensor's buffer crate-private; its public API only copies it out
//! (`as_vec`, `copy_into`) or indexes one element at a time. A fused kernel needs the
//! whole contiguous buffer, so this module derives a slice from the references the public
//! `Index`/`IndexMut` impls hand out, after checking that the tensor's layout is the
//! plain row-major one. This is the only `unsafe` in loupe.
#![allow(unsafe_code)]

use std::any::{Any, TypeId};

use dfdx::dtypes::Unit;
use dfdx::prelude::*;

/// Whether `(E, D)` is `(F, Cpu)`.
pub(crate) fn is_cpu<F: 'static, E: 'static, D: 'static>() -> bool {
    TypeId::of::<D>() == TypeId::of::<Cpu>() && TypeId::of::<E>() == TypeId::of::<F>()
}

/// The concrete row-major layout check: the element at unit index `e_i` of every axis
/// must sit `stride_i` elements after element 0. Returns the number of elements.
fn contiguous_len<S: Shape, F: Unit>(t: &Tensor<S, F, Cpu>) -> Option<usize> {
    let shape = *t.shape();
    let numel = shape.num_elements();
    if numel == 0 {
        return None;
    }
    let strides = shape.strides();
    let dims = shape.concrete();
    let base = &t[Default::default()] as *const F as usize;
    for axis in 0..S::NUM_DIMS {
        if dims[axis] < 2 {
            continue;
        }
        let mut index: S::Concrete = Default::default();
        index[axis] = 1;
        let at = &t[index] as *const F as usize;
        if at != base + strides[axis] * std::mem::size_of::<F>() {
            return None;
        }
    }
    Some(numel)
}

/// The buffer of `t` as `&[F]`, when `t` lives on the `Cpu`, its dtype is `F` and its
/// layout is row-major contiguous (no broadcast, no permutation). `None` otherwise.
pub(crate) fn slice<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(t: &Tensor<S, E, D>) -> Option<&[F]> {
    let t: &Tensor<S, F, Cpu> = (t as &dyn Any).downcast_ref()?;
    let numel = contiguous_len(t)?;
    let first: &F = &t[Default::default()];
    // SAFETY: `first` points into the tensor's buffer, and `contiguous_len` checked that
    // the buffer is laid out row-major with unit stride on the last axis and the
    // row-major stride on every other axis, so elements `0..numel` are exactly the
    // buffer positions `first..first + numel`, all inside the same allocation (the last
    // one is itself reachable through `Index`). The slice borrows `t`, which keeps the
    // buffer alive and (being a shared borrow) unmodified.
    Some(unsafe { std::slice::from_raw_parts(first as *const F, numel) })
}

/// The buffer of `t` as `&mut [F]` (see [`slice`]); the buffer is made unique first
/// (dfdx's copy-on-write), so writing does not affect clones of `t`.
pub(crate) fn slice_mut<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    t: &mut Tensor<S, E, D>,
) -> Option<&mut [F]> {
    let t: &mut Tensor<S, F, Cpu> = (t as &mut dyn Any).downcast_mut()?;
    // `IndexMut` makes the buffer unique (Arc::make_mut) before handing out a reference.
    let _ = &mut t[Default::default()];
    let numel = contiguous_len(t)?;
    let first: *mut F = &mut t[Default::default()];
    // SAFETY: as in `slice`, elements `0..numel` are the buffer positions
    // `first..first + numel` of one allocation. The buffer is uniquely owned by `t` after
    // `IndexMut` (no other tensor shares it), and the returned slice mutably borrows `t`
    // for its whole lifetime, so nothing else can read or write it meanwhile.
    Some(unsafe { std::slice::from_raw_parts_mut(first, numel) })
}

/// Unwraps a view whose layout a fused op checked before it ran.
pub(crate) fn expect_view<T>(v: Option<T>) -> T {
    v.expect("fused kernel: layout checked before the op ran")
}

/// The gradient buffer of `t` in `grads` as `&mut Vec<F>` (allocated zeroed if absent).
pub(crate) fn grad_mut<'g, F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    grads: &'g mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
) -> Result<&'g mut Vec<F>, D::Err> {
    let buf = grads.get_or_alloc_mut(t)?;
    let buf: &mut <Cpu as Storage<F>>::Vec = (buf as &mut dyn Any)
        .downcast_mut()
        .expect("grad_mut: called for a tensor that is not on the Cpu with dtype F");
    Ok(buf)
}

/// Moves the gradient of `t` out of `grads` (to read it while other gradients are
/// borrowed mutably); put it back with [`restore_grad`].
pub(crate) fn take_grad<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    grads: &mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
) -> Result<Vec<F>, D::Err> {
    Ok(std::mem::take(grad_mut::<F, _, _, _>(grads, t)?))
}

/// Puts back a gradient taken with [`take_grad`].
pub(crate) fn restore_grad<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    grads: &mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
    g: Vec<F>,
) -> Result<(), D::Err> {
    *grad_mut::<F, _, _, _>(grads, t)? = g;
    Ok(())
}
