//! Average and max pooling over frames, the paper's baselines (section 2).

use dfdx::prelude::*;

macro_rules! parameter_free_layer {
    ($name:ident) => {
        impl<const F: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for $name<F> {
            type Built = $name<F>;
        }

        impl<const F: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for $name<F> {
            type To<E2: Dtype, D2: Device<E2>> = $name<F>;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
                _: &mut V,
            ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                Ok(Some($name))
            }
        }

        impl<const F: usize> NonMutableModule for $name<F> {}
    };
}

/// Average pooling over the frame axis: `y[d] = (1/S) sum_t x[t,d]`.
///
/// The mean of the frames fed to it (the sampled frames: docs/reference.md section 1 never
/// pools padding). An input without frames pools to zeros rather than `0/0`.
/// Parameter-free: one type is both builder and layer, and any tape passes through.
///
/// # Shapes
/// `(B, S, F) -> (B, F)`, `B` and `S` any [`Dim`] (runtime or const).
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::AveragePooling;
/// let dev = loupe_core::device::cpu();
/// let x = dev.tensor([[[1.0f32, 2.0], [3.0, 6.0]]]);
/// let y = AveragePooling::<2>.forward(x);
/// assert_eq!(y.array(), [[2.0, 4.0]]);
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AveragePooling<const F: usize>;

parameter_free_layer!(AveragePooling);

impl<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, S, Const<F>), E, D, T>> for AveragePooling<F>
{
    type Output = Tensor<(B, Const<F>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        let frames = x.shape().1.size().max(1);
        x.try_sum::<(B, Const<F>), Axis<1>>()?.try_mul(E::from_f64(1.0 / frames as f64).unwrap())
    }
}

/// Max pooling over the frame axis: `y[d] = max_t x[t,d]`.
///
/// An input without frames pools to zeros rather than `-inf`. Parameter-free: one type is
/// both builder and layer, and any tape passes through. Where several frames share the
/// maximum, dfdx gives each of them the full gradient.
///
/// # Shapes
/// `(B, S, F) -> (B, F)`, `B` and `S` any [`Dim`] (runtime or const).
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::MaxPooling;
/// let dev = loupe_core::device::cpu();
/// let x = dev.tensor([[[1.0f32, 7.0], [3.0, 6.0]]]);
/// let y = MaxPooling::<2>.forward(x);
/// assert_eq!(y.array(), [[3.0, 7.0]]);
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaxPooling<const F: usize>;

parameter_free_layer!(MaxPooling);

impl<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, S, Const<F>), E, D, T>> for MaxPooling<F>
{
    type Output = Tensor<(B, Const<F>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        if x.shape().1.size() == 0 {
            // The sum over no frames: zeros, on the input's tape.
            return x.try_sum::<(B, Const<F>), Axis<1>>();
        }
        x.try_max::<(B, Const<F>), Axis<1>>()
    }
}
