//! Logistic regression classifier (the paper's "Average pooling + Logistic Regression").

use dfdx::prelude::*;

use super::shared::{try_affine, try_half_squared_norm, GlorotUniform};
use super::ClassifierPenalty;

pub mod builder {
    /// Builder of [`super::Logistic`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct Logistic<const I: usize, const V: usize>;
}

impl<const I: usize, const V: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::Logistic<I, V> {
    type Built = Logistic<I, V, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// One independent logistic regression per class: `p = sigmoid(x W + b)`.
///
/// As TF-slim's `fully_connected` in the reference's `LogisticModel`: `W` (`I x V`)
/// Glorot-uniform, `b` zeros. Its [`ClassifierPenalty`] is `|W|^2 / 2`.
///
/// # Shapes
/// - `(B, I) -> (B, V)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, Logistic};
/// let dev = loupe_core::device::cpu();
/// let logistic: Logistic<8, 5, f32, Cpu> = dev.build_module::<builder::Logistic<8, 5>, f32>();
/// let x: Tensor<(usize, Const<8>), f32, _> = dev.sample_normal_like(&(3, Const));
/// let p = logistic.forward(x);
/// assert!(p.as_vec().iter().all(|&p| p > 0.0 && p < 1.0));
/// ```
#[derive(Debug, Clone)]
pub struct Logistic<const I: usize, const V: usize, E: Dtype, D: Storage<E>> {
    /// `W`, `I x V`.
    pub weight: Tensor<Rank2<I, V>, E, D>,
    /// `b`, `V`.
    pub bias: Tensor<Rank1<V>, E, D>,
}

impl<const I: usize, const V: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for Logistic<I, V, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Logistic<I, V, E2, D2>;

    fn iter_tensors<Vis: ModuleVisitor<Self, E, D>>(
        visitor: &mut Vis,
    ) -> Result<Option<Self::To<Vis::E2, Vis::D2>>, Vis::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I, V))),
                ),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
            ),
            |(weight, bias)| Logistic { weight, bias },
        )
    }
}

impl<const I: usize, const V: usize, E: Dtype, D: Storage<E>> NonMutableModule for Logistic<I, V, E, D> {}

impl<B: Dim, const I: usize, const V: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, Const<I>), E, D, T>> for Logistic<I, V, E, D>
{
    type Output = Tensor<(B, Const<V>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        try_affine(x, &self.weight, &self.bias)?.try_sigmoid()
    }
}

impl<const I: usize, const V: usize, E: Dtype, D: Device<E>> ClassifierPenalty<E, D>
    for Logistic<I, V, E, D>
{
    fn try_l2_penalty<T: Tape<E, D>>(&self) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
        try_half_squared_norm(&self.weight)
    }
}
