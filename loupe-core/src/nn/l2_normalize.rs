//! L2 normalisation along the last axis.

use dfdx::prelude::*;

use super::shared::try_l2_normalize;

/// L2-normalises `x` along its last axis: `x / sqrt(max(sum x^2, 1e-12))`.
///
/// This is the normalisation the paper applies to frames, to each VLAD cluster
/// (intra-normalisation) and to pooled vectors; dfdx's `normalize` is layer norm, not this.
///
/// # Shapes
/// Any shape; the last axis is normalised.
///
/// ```
/// # use dfdx::prelude::*;
/// let dev = loupe_core::device::cpu();
/// let x = dev.tensor([[3.0f32, 4.0], [0.0, 0.0]]);
/// let y = loupe_core::nn::l2_normalize(x);
/// assert_eq!(y.array(), [[0.6, 0.8], [0.0, 0.0]]);
/// ```
pub fn l2_normalize<S, E, D, T>(x: Tensor<S, E, D, T>) -> Tensor<S, E, D, T>
where
    S: Shape + ReduceShape<S::LastAxis>,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    try_l2_normalize(x).unwrap()
}

/// [`l2_normalize`] as a parameter-free layer, for use in dfdx module tuples.
///
/// # Shapes
/// Any shape; the last axis is normalised.
#[derive(Debug, Default, Clone, Copy)]
pub struct L2Normalize;

impl<E: Dtype, D: Device<E>> BuildOnDevice<D, E> for L2Normalize {
    type Built = L2Normalize;
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for L2Normalize {
    type To<E2: Dtype, D2: Device<E2>> = L2Normalize;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        _: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        Ok(Some(L2Normalize))
    }
}

impl NonMutableModule for L2Normalize {}

impl<S, E, D, T> Module<Tensor<S, E, D, T>> for L2Normalize
where
    S: Shape + ReduceShape<S::LastAxis>,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        try_l2_normalize(x)
    }
}
