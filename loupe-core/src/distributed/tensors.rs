//! Whole models across ranks: rank 0's tensors copied to every rank, and gradients
//! summed over ranks in place.

use dfdx::prelude::*;

use super::{broadcast_values, Collective, Compression, DistributedError};
use crate::kernels;

/// Copies every tensor of `model` (parameters and batch-norm running statistics) from
/// rank 0 to the other ranks, so that all ranks start from the same weights whatever
/// their device seeds. Tensors are visited in the model's order, the same on every rank.
pub fn broadcast_tensors<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    collective: &dyn Collective,
    model: &mut M,
) -> Result<(), D::Err> {
    if collective.world_size() == 1 {
        return Ok(());
    }
    M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut Broadcast { collective } })?;
    Ok(())
}

struct Broadcast<'c> {
    collective: &'c dyn Collective,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Broadcast<'_> {
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        _opts: TensorOptions<S, E, D>,
        t: &mut Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        let mut values = t.as_vec();
        broadcast_values(self.collective, &mut values);
        t.copy_from(&values);
        Ok(None)
    }
}

/// Whether [`all_reduce_gradients`] can reduce gradients of dtype `E` on device `D`: the
/// `Cpu` with `f32` or `f64` (the gradient buffers are reduced where they lie).
pub fn gradients_reducible<E: Dtype, D: Device<E>>() -> bool {
    kernels::is_cpu::<f32, E, D>() || kernels::is_cpu::<f64, E, D>()
}

/// Replaces the gradient of every trainable parameter of `model` in `grads` by its sum
/// over ranks. With each rank's loss weighted by its share of the global batch (`local /
/// global` times the mean over its own batch, as [`crate::train::Trainer`] does before
/// `backward`), the sum is the gradient of the mean loss over the global batch: what one
/// process computes on the union of the ranks' batches. With [`Compression::Fp16`] the
/// gradients travel as halves ([`Collective::all_reduce_sum_f32_fp16`]; `f64` ones
/// through `f32`).
pub fn all_reduce_gradients<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    collective: &dyn Collective,
    model: &M,
    grads: &mut Gradients<E, D>,
    compression: Compression,
) -> Result<(), DistributedError> {
    if collective.world_size() == 1 {
        return Ok(());
    }
    if !gradients_reducible::<E, D>() {
        let hint = if cfg!(feature = "nccl") { " or on a GPU through the nccl backend" } else { "" };
        return Err(DistributedError::UnsupportedDevice { hint });
    }
    let mut reduce = Reduce { collective, grads, compression };
    M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut reduce }).map_err(|e| {
        DistributedError::Malformed { rank: collective.rank(), what: format!("gradient buffer: {e:?}") }
    })?;
    Ok(())
}

struct Reduce<'a, E: Dtype, D: Device<E>> {
    collective: &'a dyn Collective,
    grads: &'a mut Gradients<E, D>,
    compression: Compression,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Reduce<'_, E, D> {
    type Viewer = ViewTensorRef;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        t: &Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        match (kernels::is_cpu::<f32, E, D>(), self.compression) {
            (true, Compression::None) => {
                self.collective.all_reduce_sum_f32(kernels::grad_mut::<f32, _, _, _>(self.grads, t)?)
            }
            (true, Compression::Fp16) => {
                self.collective.all_reduce_sum_f32_fp16(kernels::grad_mut::<f32, _, _, _>(self.grads, t)?)
            }
            (false, Compression::None) => {
                self.collective.all_reduce_sum_f64(kernels::grad_mut::<f64, _, _, _>(self.grads, t)?)
            }
            (false, Compression::Fp16) => {
                let g = kernels::grad_mut::<f64, _, _, _>(self.grads, t)?;
                let mut narrow: Vec<f32> = g.iter().map(|&v| v as f32).collect();
                self.collective.all_reduce_sum_f32_fp16(&mut narrow);
                g.iter_mut().zip(narrow).for_each(|(v, n)| *v = f64::from(n));
            }
        }
        Ok(None)
    }
}
