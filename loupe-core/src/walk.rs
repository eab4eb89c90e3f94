//! The tensors of a model, one at a time, with their shapes erased: one walk per model
//! type, whatever is done with the tensors.
//!
//! dfdx reaches a model's tensors through a `TensorVisitor`, and every visitor type is
//! compiled once per model type, module by module (`visit_fields`, `handle_options`, ...
//! for every tuple and layer). With a visitor per task (writing a checkpoint, the
//! gradient norm, the all-reduce, the TF import, ...) that walking code was about a third
//! of the `loupe` binary's LLVM IR (`cargo llvm-lines`: 3.1M of 9.2M lines over the zoo's
//! 42 models). Here there are two visitors, [`each_tensor`] and [`each_tensor_mut`]; a
//! task is a closure over [`AnyTensor`] / [`AnyTensorMut`], compiled once, and a
//! tensor's own operations are compiled once per tensor shape, shared by every model
//! with a tensor of that shape.

use dfdx::prelude::*;

use crate::kernels;

/// A tensor of a model as the walks hand it out.
pub(crate) trait AnyTensor<E: Dtype, D: Device<E>> {
    /// Its dimensions.
    fn dims(&self) -> Vec<usize>;
    /// Its number of elements.
    fn len(&self) -> usize;
    /// A copy of its values, row-major.
    fn to_host(&self) -> Vec<E>;
    /// Its values in place when it is a contiguous `Cpu` tensor of `f32`.
    fn host_f32(&self) -> Option<&[f32]>;
    /// Its values in place when it is a contiguous `Cpu` tensor of `f64`.
    fn host_f64(&self) -> Option<&[f64]>;
    /// Its gradient buffer in `grads` (allocated zeroed if absent).
    ///
    /// # Panics
    /// When `(E, D)` is not `(f32, Cpu)` ([`kernels::is_cpu`] tells).
    fn grad_f32<'g>(&self, grads: &'g mut Gradients<E, D>) -> Result<&'g mut Vec<f32>, D::Err>;
    /// [`Self::grad_f32`] for `f64`.
    fn grad_f64<'g>(&self, grads: &'g mut Gradients<E, D>) -> Result<&'g mut Vec<f64>, D::Err>;
    /// A copy of its gradient in `grads`, which must hold one.
    fn grad_to_host(&self, grads: &Gradients<E, D>) -> Vec<E>;
    /// The squared L2 norm of its gradient in `grads`, which must hold one.
    fn grad_squared_norm(&self, grads: &Gradients<E, D>) -> Result<f64, D::Err>;
}

/// A tensor of a model that the walk lets change.
pub(crate) trait AnyTensorMut<E: Dtype, D: Device<E>>: AnyTensor<E, D> {
    /// Overwrites its values with `values` (row-major, [`AnyTensor::len`] of them).
    fn copy_from_host(&mut self, values: &[E]);
    /// Sets every value to zero, in its buffer.
    fn fill_zeros(&mut self) -> Result<(), D::Err>;
    /// Replaces it by a new zero tensor of its shape (clones keep the old buffer).
    fn replace_with_zeros(&mut self) -> Result<(), D::Err>;
}

impl<S: Shape, E: Dtype, D: Device<E>> AnyTensor<E, D> for Tensor<S, E, D> {
    fn dims(&self) -> Vec<usize> {
        self.shape().concrete().into_iter().collect()
    }
    fn len(&self) -> usize {
        self.shape().num_elements()
    }
    fn to_host(&self) -> Vec<E> {
        self.as_vec()
    }
    fn host_f32(&self) -> Option<&[f32]> {
        kernels::params::<f32, _, _, _>(self)
    }
    fn host_f64(&self) -> Option<&[f64]> {
        kernels::params::<f64, _, _, _>(self)
    }
    fn grad_f32<'g>(&self, grads: &'g mut Gradients<E, D>) -> Result<&'g mut Vec<f32>, D::Err> {
        kernels::grad_mut::<f32, _, _, _>(grads, self)
    }
    fn grad_f64<'g>(&self, grads: &'g mut Gradients<E, D>) -> Result<&'g mut Vec<f64>, D::Err> {
        kernels::grad_mut::<f64, _, _, _>(grads, self)
    }
    fn grad_to_host(&self, grads: &Gradients<E, D>) -> Vec<E> {
        grads.get(self).as_vec()
    }
    fn grad_squared_norm(&self, grads: &Gradients<E, D>) -> Result<f64, D::Err> {
        squared_norm(&grads.get(self))
    }
}

impl<S: Shape, E: Dtype, D: Device<E>> AnyTensorMut<E, D> for Tensor<S, E, D> {
    fn copy_from_host(&mut self, values: &[E]) {
        self.copy_from(values);
    }
    fn fill_zeros(&mut self) -> Result<(), D::Err> {
        self.try_fill_with_zeros()
    }
    fn replace_with_zeros(&mut self) -> Result<(), D::Err> {
        *self = self.device().try_zeros_like(self.shape())?;
        Ok(())
    }
}

/// The squared L2 norm of `t`'s values, on its device.
pub(crate) fn squared_norm<S: Shape, E: Dtype, D: Device<E>>(t: &Tensor<S, E, D>) -> Result<f64, D::Err> {
    Ok(t.clone().try_square()?.try_sum::<Rank0, _>()?.as_vec()[0].to_f64().unwrap_or(f64::NAN))
}

/// What a walk calls for each tensor: its name (field names joined with dots, as dfdx's
/// safetensors files key it), whether it is trained (`do_gradient_update`), the tensor.
pub(crate) type Each<'f, E, D> =
    dyn FnMut(&str, bool, &dyn AnyTensor<E, D>) -> Result<(), <D as HasErr>::Err> + 'f;
/// [`Each`] for [`each_tensor_mut`].
pub(crate) type EachMut<'f, E, D> =
    dyn FnMut(&str, bool, &mut dyn AnyTensorMut<E, D>) -> Result<(), <D as HasErr>::Err> + 'f;

struct Walk<'w, 'f, E: Dtype, D: Device<E>>(&'w mut Each<'f, E, D>);
struct WalkMut<'w, 'f, E: Dtype, D: Device<E>>(&'w mut EachMut<'f, E, D>);

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Walk<'_, '_, E, D> {
    type Viewer = (ViewTensorName, ViewTensorRef);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        (name, t): (String, &Tensor<S, E, D>),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        (self.0)(&name, opts.do_gradient_update, t)?;
        Ok(None)
    }
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for WalkMut<'_, '_, E, D> {
    type Viewer = (ViewTensorName, ViewTensorMut);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        (name, t): (String, &mut Tensor<S, E, D>),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        (self.0)(&name, opts.do_gradient_update, t)?;
        Ok(None)
    }
}

/// Calls `f` on every tensor of `tensors` (parameters and buffers such as batch norm's
/// running statistics), in the collection's order; stops at the first error.
pub(crate) fn each_tensor<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    tensors: &M,
    f: &mut Each<'_, E, D>,
) -> Result<(), D::Err> {
    M::iter_tensors(&mut RecursiveWalker { m: (String::new(), tensors), f: &mut Walk(f) })?;
    Ok(())
}

/// [`each_tensor`], letting `f` change the tensors.
pub(crate) fn each_tensor_mut<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    tensors: &mut M,
    f: &mut EachMut<'_, E, D>,
) -> Result<(), D::Err> {
    M::iter_tensors(&mut RecursiveWalker { m: (String::new(), tensors), f: &mut WalkMut(f) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::nn::builders::{BatchNorm1D, Linear};

    #[test]
    fn the_walks_visit_every_tensor_with_dfdx_names_in_order() {
        let dev = Cpu::seed_from_u64(0);
        let mut net = dev.build_module::<(Linear<3, 2>, BatchNorm1D<2>), f64>();
        let mut seen = Vec::new();
        each_tensor(&net, &mut |name, trained, t| {
            seen.push((name.to_string(), trained, t.dims(), t.to_host().len()));
            Ok(())
        })
        .unwrap();
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["0.weight", "0.bias", "1.scale", "1.bias", "1.running_mean", "1.running_var"]);
        assert_eq!(seen[0].2, vec![2, 3]);
        assert!(seen[0].1 && !seen[4].1, "running statistics are not trained");
        assert!(seen.iter().all(|s| s.2.iter().product::<usize>() == s.3));

        let mut k = 0.0;
        each_tensor_mut(&mut net, &mut |_, _, t| {
            let values: Vec<f64> = (0..t.len()).map(|i| k + i as f64).collect();
            k += 10.0;
            t.copy_from_host(&values);
            Ok(())
        })
        .unwrap();
        assert_eq!(net.0.bias.as_vec(), vec![10.0, 11.0]);
        assert_eq!(net.1.running_var.as_vec(), vec![50.0, 51.0]);
        let before = net.clone();
        each_tensor_mut(&mut net, &mut |_, _, t| t.replace_with_zeros()).unwrap();
        assert_eq!(net.0.weight.as_vec(), vec![0.0; 6]);
        assert_eq!(before.0.weight.as_vec()[1], 1.0, "a clone keeps its values");
    }
}
