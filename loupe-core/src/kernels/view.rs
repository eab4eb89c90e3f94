//! The buffers of `Cpu` tensors as the fused kernels read and write them.
//!
//! dfdx 0.13 keeps a tensor's buffer crate-private. Its public API reaches a `Cpu` tensor's
//! whole buffer only by copying (`copy_into` out, `copy_from` in, both one `memcpy`), hands
//! out one element at a time (`Index`/`IndexMut`, each a reference to that element alone),
//! or runs its own kernels on it (`axpy`, the optimisers' `try_update`). The whole buffers
//! it does lend are gradients (`Gradients::get_or_alloc_mut`) and allocations from the
//! device's cache (`Storage::try_alloc_len`). So this module offers two paths:
//!
//! - **Safe, by copy** ([`read`], [`write`], [`zeroed`], [`tensor_from`]): the fused kernels
//!   copy their inputs out once into a buffer from the device's cache, compute into such a
//!   buffer, and copy the result into a tensor dfdx allocated. Their backward passes keep
//!   the forward's copies of activations (a parameter or the input frames, alive anyway,
//!   are read again instead of held twice), and gradients are borrowed whole
//!   ([`grad_mut`]). The fused ops of the training forward go this way. The copies
//!   themselves go through the in-place slices below and run on the pool's threads.
//! - **In place, unsafe** ([`params_mut`], [`params`]): for parameter-sized tensors
//!   that live across steps: Adam's update of a parameter and its two moments, and the
//!   streamed checkpoint writer. A copy there would be two more passes over each of the
//!   three 1.3 GB sets of a paper-size model per step (the optimizer is already 24% of a
//!   batch-16 step and its update streams seven; `docs/performance.md`) and a transient
//!   copy of the 1.07 GB hidden weight. The recurrences' host paths (GRU, LSTM) use it too:
//!   they write their activations over their own input projections, the buffers their
//!   backward keeps anyway, which a copy would double (`nn::shared::host_mut`). Ops
//!   that only read their input in the forward use it too: the forwards without a tape
//!   (evaluation: the frames' L2, every batch norm, the input stage into each stream,
//!   the VLAD tail, the split into streams) read their input in place and write into the
//!   output's tensor, and the VLAD tail reads its inputs in place when taped (its
//!   backward keeps the output); so do the training input stage's statistics and
//!   streams, whose frames are data.
//!
//!   The slice is derived from the reference to element 0 that `Index`/`IndexMut` hand
//!   out, after checking that the tensor is laid out row-major and contiguous. Why that
//!   is sound, and under which aliasing model, is written at [`params_mut`].
#![allow(unsafe_code)]

use std::any::{Any, TypeId};

use dfdx::dtypes::Unit;
use dfdx::prelude::*;
use rayon::prelude::*;

/// A buffer from the `Cpu` device's allocation cache, returned to the cache when dropped
/// (dfdx's `CachableVec`, which dereferences to `Vec<F>`).
pub(crate) type Buffer<F> = <Cpu as Storage<F>>::Vec;

/// Whether `(E, D)` is `(F, Cpu)`.
pub(crate) fn is_cpu<F: 'static, E: 'static, D: 'static>() -> bool {
    TypeId::of::<D>() == TypeId::of::<Cpu>() && TypeId::of::<E>() == TypeId::of::<F>()
}

/// The concrete row-major layout check: the element at unit index `e_i` of every axis
/// must sit `stride_i` elements after element 0. Returns the number of elements. Only
/// addresses are compared; nothing is read through them.
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

/// `t` as the `Cpu` tensor of dtype `F` it is, with its element count, when it is one
/// and its layout is row-major contiguous (no broadcast, no permutation).
fn as_cpu<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    t: &Tensor<S, E, D>,
) -> Option<(&Tensor<S, F, Cpu>, usize)> {
    let t: &Tensor<S, F, Cpu> = (t as &dyn Any).downcast_ref()?;
    Some((t, contiguous_len(t)?))
}

/// Whether the fused kernels can read `t`: a row-major contiguous `Cpu` tensor of dtype `F`.
pub(crate) fn contiguous<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(t: &Tensor<S, E, D>) -> bool {
    as_cpu::<F, _, _, _>(t).is_some()
}

/// `v` as the `Cpu` buffer of `F` it is.
///
/// # Panics
/// When `(E, D)` is not `(F, Cpu)`: callers dispatch on [`is_cpu`] first.
fn cpu_buffer<F: Unit, E: Unit, D: Storage<E>>(v: D::Vec) -> Buffer<F> {
    let mut v = Some(v);
    let slot: &mut Option<Buffer<F>> =
        (&mut v as &mut dyn Any).downcast_mut().expect("a buffer of the Cpu with dtype F");
    slot.take().expect("just filled")
}

/// `n` zeros of `F` in a buffer from the cache of `dev` (which must be the `Cpu`, with the
/// tensors' dtype `E` being `F`).
pub(crate) fn zeroed<F: Unit, E: Unit, D: Storage<E>>(dev: &D, n: usize) -> Result<Buffer<F>, D::Err> {
    Ok(cpu_buffer::<F, E, D>(dev.try_alloc_len(n)?))
}

/// A copy of `t`'s values, row-major, in a buffer from the device's cache; `None` when
/// `t` is not a contiguous `Cpu` tensor of dtype `F` ([`contiguous`]).
pub(crate) fn read<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    t: &Tensor<S, E, D>,
) -> Result<Option<Buffer<F>>, D::Err> {
    // A row-major contiguous dfdx tensor owns exactly its elements (every allocation is
    // sized by the shape; a reshape of a contiguous tensor shares its buffer).
    let Some(values) = params::<F, _, _, _>(t) else {
        return Ok(None);
    };
    let mut buffer = zeroed::<F, E, D>(t.device(), values.len())?;
    copy(&mut buffer, values);
    Ok(Some(buffer))
}

/// Copies `values` into `t` (dfdx's copy-on-write makes its buffer unique first, so clones
/// of `t` keep their values). Returns false, writing nothing, when `t` is not a
/// contiguous `Cpu` tensor of dtype `F` holding `values.len()` elements.
#[must_use]
pub(crate) fn write<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    t: &mut Tensor<S, E, D>,
    values: &[F],
) -> bool {
    if as_cpu::<F, _, _, _>(t).is_none_or(|(_, n)| n != values.len()) {
        return false;
    }
    copy(params_mut(t).expect("checked by as_cpu"), values);
    true
}

/// Values per task of [`copy`]; shorter copies run on the calling thread.
const COPY_CHUNK: usize = 1 << 18;

/// `dst.copy_from_slice(src)`, on the threads of the current rayon pool when long: one
/// core copies at about half the machine's memory bandwidth, and [`read`] and [`write`]
/// copy every input and output of the fused ops (up to 105 MB each in a paper-size batch),
/// which ran on one thread while the others waited.
fn copy<F: Unit>(dst: &mut [F], src: &[F]) {
    if src.len() < 2 * COPY_CHUNK {
        dst.copy_from_slice(src);
        return;
    }
    assert_eq!(dst.len(), src.len(), "copy between buffers of one length");
    dst.par_chunks_mut(COPY_CHUNK).zip(src.par_chunks(COPY_CHUNK)).for_each(|(d, s)| d.copy_from_slice(s));
}

/// A new tensor of `shape` on `dev` holding `values` (row-major), for a fused kernel's
/// output: a buffer of dfdx's own allocation, so the cache's accounting is unchanged.
pub(crate) fn tensor_from<F: Unit, S: Shape, E: Dtype, D: ZerosTensor<E>>(
    dev: &D,
    shape: S,
    values: &[F],
) -> Result<Tensor<S, E, D>, D::Err> {
    let mut t = dev.try_zeros_like(&shape)?;
    assert!(
        write(&mut t, values),
        "tensor_from: {} values of the Cpu dtype for shape {shape:?}",
        values.len()
    );
    Ok(t)
}

/// Unwraps a view whose layout a fused op checked before it ran.
pub(crate) fn expect_view<T>(v: Option<T>) -> T {
    v.expect("fused kernel: layout checked before the op ran")
}

/// A gradient buffer that `Gradients::get_or_alloc_mut` lent (for a tensor, or for its
/// `ghost()` when the backward needs the tensor's gradient but not its values) as
/// `&mut Vec<F>`.
///
/// # Panics
/// When `(E, D)` is not `(F, Cpu)`.
pub(crate) fn grad_buffer<F: Unit, E: Unit, D: Storage<E>>(buf: &mut D::Vec) -> &mut Vec<F> {
    let buf: &mut Buffer<F> = (buf as &mut dyn Any)
        .downcast_mut()
        .expect("grad_buffer: called for a tensor that is not on the Cpu with dtype F");
    buf
}

/// The gradient buffer of `t` in `grads` as `&mut Vec<F>` (allocated zeroed if absent).
pub(crate) fn grad_mut<'g, F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    grads: &'g mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
) -> Result<&'g mut Vec<F>, D::Err> {
    Ok(grad_buffer::<F, E, D>(grads.get_or_alloc_mut(t)?))
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

/// The buffer of a tensor `t` as `&[F]`, in place, when `t` lives on the `Cpu`, its dtype
/// is `F` and its layout is row-major contiguous; `None` otherwise. For the streamed
/// checkpoint writer, the recurrences' host paths, the L2 penalty's weights (see the
/// module doc) and [`read`]'s copy; see [`params_mut`] for why it is sound.
pub(crate) fn params<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(t: &Tensor<S, E, D>) -> Option<&[F]> {
    let (t, numel) = as_cpu::<F, _, _, _>(t)?;
    let first: &F = &t[Default::default()];
    // SAFETY: see `params_mut`; here the slice is shared and borrows `t`, so the buffer
    // stays alive and is not written while it exists.
    Some(unsafe { std::slice::from_raw_parts(first as *const F, numel) })
}

/// The buffer of a parameter-sized tensor `t` as `&mut [F]`, in place (see [`params`]);
/// the buffer is made unique first (dfdx's copy-on-write), so writing does not affect
/// clones of `t`. For Adam's update of a parameter and its moments, the recurrences'
/// host paths (see the module doc), and the outputs of loupe's sgemm products, written
/// into the fresh tensor that holds them (a buffer and a copy would hold each twice).
///
/// Soundness. What is certain: `first` points at element 0 of the tensor's one
/// allocation; the layout check puts elements `0..numel` at `first..first + numel`, all
/// inside it and initialised; the buffer is owned by `t` alone after `IndexMut`
/// (`Arc::make_mut`), and the slice borrows `t` mutably for its whole life, so nothing
/// else reads or writes the buffer meanwhile. What depends on the aliasing model: the
/// pointer comes from a reference to one element. Under Tree Borrows (Miri's
/// `-Zmiri-tree-borrows`) a pointer derived from a reference may reach the rest of its
/// allocation, and this is defined. Under Stacked Borrows a reference's tag covers only
/// its pointee, so reaching elements past the first through it is undefined there. Rust
/// has not settled its aliasing model. dfdx 0.13 offers no public accessor to derive the
/// pointer from the whole buffer instead.
pub(crate) fn params_mut<F: Unit, S: Shape, E: Dtype, D: Storage<E>>(
    t: &mut Tensor<S, E, D>,
) -> Option<&mut [F]> {
    let t: &mut Tensor<S, F, Cpu> = (t as &mut dyn Any).downcast_mut()?;
    // `IndexMut` makes the buffer unique (Arc::make_mut) before handing out a reference.
    let _ = &mut t[Default::default()];
    let numel = contiguous_len(t)?;
    let first: *mut F = &mut t[Default::default()];
    // SAFETY: see the doc above: elements `0..numel` are the initialised buffer positions
    // `first..first + numel` of one allocation owned by `t` alone, and the returned slice
    // mutably borrows `t` for its whole lifetime.
    Some(unsafe { std::slice::from_raw_parts_mut(first, numel) })
}
