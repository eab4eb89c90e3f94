//! Whole models across ranks: rank 0's tensors copied to every rank, and gradients
//! summed over ranks in place.

use dfdx::prelude::*;

use super::{broadcast_values, Collective, Compression, DistributedError};
use crate::kernels;
use crate::walk::{each_tensor, each_tensor_mut};

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
    each_tensor_mut(model, &mut |_, _, t| {
        let mut values = t.to_host();
        broadcast_values(collective, &mut values);
        t.copy_from_host(&values);
        Ok(())
    })
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
    let f32_buffers = kernels::is_cpu::<f32, E, D>();
    each_tensor(model, &mut |_, trained, t| {
        if !trained {
            return Ok(());
        }
        match (f32_buffers, compression) {
            (true, Compression::None) => collective.all_reduce_sum_f32(t.grad_f32(grads)?),
            (true, Compression::Fp16) => collective.all_reduce_sum_f32_fp16(t.grad_f32(grads)?),
            (false, Compression::None) => collective.all_reduce_sum_f64(t.grad_f64(grads)?),
            (false, Compression::Fp16) => {
                let g = t.grad_f64(grads)?;
                let mut narrow: Vec<f32> = g.iter().map(|&v| v as f32).collect();
                collective.all_reduce_sum_f32_fp16(&mut narrow);
                g.iter_mut().zip(narrow).for_each(|(v, n)| *v = f64::from(n));
            }
        }
        Ok(())
    })
    .map_err(|e| DistributedError::Malformed {
        rank: collective.rank(),
        what: format!("gradient buffer: {e:?}"),
    })?;
    Ok(())
}
