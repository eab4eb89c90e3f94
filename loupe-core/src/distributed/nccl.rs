//! The NCCL backend (cargo feature `nccl`): gradients that live on a GPU summed across
//! ranks by NCCL, one process per GPU. NCCL needs a unique id shared by all ranks before
//! it can connect them; rank 0 creates it and the job's [`Collective`] (MPI) broadcasts
//! it.

use std::any::Any;
use std::sync::Arc;

use cudarc::driver::{CudaDevice, CudaSlice, DeviceSlice};
use cudarc::nccl::{Comm, Id, ReduceOp};
use dfdx::prelude::*;

use super::{Collective, DistributedError};

fn nccl_error(e: impl std::fmt::Debug) -> DistributedError {
    DistributedError::Nccl(format!("{e:?}"))
}

/// A NCCL communicator over the job's ranks, each on its own GPU.
pub struct Nccl {
    comm: Comm,
}

impl Nccl {
    /// Connects this rank's GPU `device` to the other ranks' (every rank calls it).
    pub fn new(collective: &dyn Collective, device: Arc<CudaDevice>) -> Result<Self, DistributedError> {
        let id = if collective.is_root() { Id::new().map_err(nccl_error)? } else { Id::uninit([0; 128]) };
        let mut bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
        collective.broadcast_bytes(&mut bytes);
        let mut internal = [0; 128];
        if bytes.len() != internal.len() {
            return Err(DistributedError::Nccl(format!(
                "the unique id has {} bytes, expected 128",
                bytes.len()
            )));
        }
        for (c, b) in internal.iter_mut().zip(bytes) {
            *c = b as _;
        }
        let comm = Comm::from_rank(device, collective.rank(), collective.world_size(), Id::uninit(internal))
            .map_err(nccl_error)?;
        Ok(Nccl { comm })
    }

    /// [`Nccl::new`] on the GPU that holds `model`'s gradients in `grads` (the device
    /// dfdx computes on, so NCCL runs on dfdx's stream, after the backward pass).
    pub fn for_gradients<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
        collective: &dyn Collective,
        model: &M,
        grads: &mut Gradients<E, D>,
    ) -> Result<Self, DistributedError> {
        let mut visitor = FindDevice { grads, device: None };
        M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut visitor }).map_err(nccl_error)?;
        let device = visitor
            .device
            .ok_or(DistributedError::UnsupportedDevice { hint: " (NCCL reduces f32 gradients on a GPU)" })?;
        Self::new(collective, device)
    }

    /// Replaces `values` on every rank by their sum over ranks (through a scratch copy:
    /// the safe API takes distinct send and receive buffers).
    pub fn all_reduce_sum(&self, values: &mut CudaSlice<f32>) -> Result<(), DistributedError> {
        let device = self.comm.device();
        let mut send = device.alloc_zeros::<f32>(values.len()).map_err(nccl_error)?;
        device.dtod_copy(values, &mut send).map_err(nccl_error)?;
        self.comm.all_reduce(&send, values, &ReduceOp::Sum).map_err(nccl_error)?;
        Ok(())
    }

    /// Sums the gradient of every trainable parameter of `model` over ranks, where the
    /// gradients are `f32` on a GPU. Each rank's loss must already be weighted by its
    /// share of the global batch (the sum is then the global mean's gradient).
    pub fn all_reduce_gradients<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
        &self,
        model: &M,
        grads: &mut Gradients<E, D>,
    ) -> Result<(), DistributedError> {
        let mut visitor = Reduce { nccl: self, grads, failed: None };
        M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut visitor }).map_err(nccl_error)?;
        visitor.failed.map_or(Ok(()), Err)
    }
}

struct Reduce<'a, E: Dtype, D: Device<E>> {
    nccl: &'a Nccl,
    grads: &'a mut Gradients<E, D>,
    failed: Option<DistributedError>,
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
        if !opts.do_gradient_update || self.failed.is_some() {
            return Ok(None);
        }
        let buffer = self.grads.get_or_alloc_mut(t)?;
        let result = match (buffer as &mut dyn Any).downcast_mut::<CudaSlice<f32>>() {
            Some(g) => self.nccl.all_reduce_sum(g),
            None => {
                Err(DistributedError::UnsupportedDevice { hint: " (NCCL reduces f32 gradients on a GPU)" })
            }
        };
        self.failed = result.err();
        Ok(None)
    }
}

/// The GPU of the first trainable parameter's `f32` gradient buffer.
struct FindDevice<'a, E: Dtype, D: Device<E>> {
    grads: &'a mut Gradients<E, D>,
    device: Option<Arc<CudaDevice>>,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for FindDevice<'_, E, D> {
    type Viewer = ViewTensorRef;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        t: &Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if opts.do_gradient_update && self.device.is_none() {
            let buffer = self.grads.get_or_alloc_mut(t)?;
            self.device = (buffer as &mut dyn Any).downcast_mut::<CudaSlice<f32>>().map(|g| g.device());
        }
        Ok(None)
    }
}
