//! Context Gating (paper section 3.1, docs/reference.md section 3).

use dfdx::prelude::*;

use super::shared::{try_affine, Normal};
use super::BatchNorm;
use crate::kernels::try_weight_product;

pub mod builder {
    /// Builder of [`super::ContextGating`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct ContextGating<const N: usize>;

    /// Builder of [`super::BiasedContextGating`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct BiasedContextGating<const N: usize>;
}

impl<const N: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::ContextGating<N> {
    type Built = ContextGating<N, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

impl<const N: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::BiasedContextGating<N> {
    type Built = BiasedContextGating<N, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Context Gating as released: `Y = sigmoid(BN(X W)) * X` (elementwise product), the
/// paper's equation (2) with batch norm in place of the bias.
///
/// `W` (`N x N`) starts at `N(0, 1/sqrt(N))`; batch norm at scale 1, shift 0. Training
/// (`ModuleMut`, any tape) normalises with batch statistics, evaluation (`Module`, no
/// tape) with the running averages. The same layer gates the classifier's output
/// ([`ProbabilityGating`](super::ProbabilityGating)).
///
/// # Shapes
/// - `(B, N) -> (B, N)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, ContextGating};
/// let dev = loupe_core::device::cpu();
/// let mut cg: ContextGating<6, f32, Cpu> = dev.build_module::<builder::ContextGating<6>, f32>();
/// let x: Tensor<(usize, Const<6>), f32, _> = dev.sample_normal_like(&(4, Const));
/// let y = cg.forward_mut(x.trace(cg.alloc_grads()));
/// let grads = y.sum::<Rank0, _>().backward();
/// assert_eq!(cg.forward(x).shape().concrete(), [4, 6]);
/// # let _ = grads;
/// ```
#[derive(Debug, Clone)]
pub struct ContextGating<const N: usize, E: Dtype, D: Storage<E>> {
    /// `W`, `N x N`.
    pub weight: Tensor<Rank2<N, N>, E, D>,
    /// Batch norm of `X W`.
    pub bn: BatchNorm<N, E, D>,
}

impl<const N: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for ContextGating<N, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = ContextGating<N, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::inverse_sqrt(N))),
                ),
                Self::module("bn", |s| &s.bn, |s| &mut s.bn),
            ),
            |(weight, bn)| ContextGating { weight, bn },
        )
    }
}

impl<B: Dim, const N: usize, E: Dtype, D: Device<E>, T: Tape<E, D>> ModuleMut<Tensor<(B, Const<N>), E, D, T>>
    for ContextGating<N, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, Const<N>), E, D, T>) -> Result<Self::Output, D::Err> {
        // X is used twice: the gate path gets a retaped copy, the product the original.
        let gates = try_weight_product(x.retaped::<T>(), &self.weight)?;
        let gates = self.bn.try_forward_mut(gates)?.try_sigmoid()?;
        gates.try_mul(x)
    }
}

impl<B: Dim, const N: usize, E: Dtype, D: Device<E>> Module<Tensor<(B, Const<N>), E, D>>
    for ContextGating<N, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<N>), E, D>) -> Result<Self::Output, D::Err> {
        let gates = try_weight_product(x.clone(), &self.weight)?;
        let gates = self.bn.try_forward(gates)?.try_sigmoid()?;
        gates.try_mul(x)
    }
}

/// Context Gating without batch norm, the paper's equation (2): `Y = sigmoid(X W + b) * X`.
///
/// `W` (`N x N`) and `b` (`N`) start at `N(0, 1/sqrt(N))`, as the reference's
/// non-batch-norm branch initialises them.
///
/// # Shapes
/// - `(B, N) -> (B, N)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, BiasedContextGating};
/// let dev = loupe_core::device::cpu();
/// let cg: BiasedContextGating<6, f32, Cpu> = dev.build_module::<builder::BiasedContextGating<6>, f32>();
/// let x: Tensor<(usize, Const<6>), f32, _> = dev.sample_normal_like(&(4, Const));
/// assert_eq!(cg.forward(x).shape().concrete(), [4, 6]);
/// ```
#[derive(Debug, Clone)]
pub struct BiasedContextGating<const N: usize, E: Dtype, D: Storage<E>> {
    /// `W`, `N x N`.
    pub weight: Tensor<Rank2<N, N>, E, D>,
    /// `b`, `N`.
    pub bias: Tensor<Rank1<N>, E, D>,
}

impl<const N: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for BiasedContextGating<N, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = BiasedContextGating<N, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::inverse_sqrt(N))),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::inverse_sqrt(N))),
                ),
            ),
            |(weight, bias)| BiasedContextGating { weight, bias },
        )
    }
}

impl<const N: usize, E: Dtype, D: Storage<E>> NonMutableModule for BiasedContextGating<N, E, D> {}

impl<B: Dim, const N: usize, E: Dtype, D: Device<E>, T: Tape<E, D>> Module<Tensor<(B, Const<N>), E, D, T>>
    for BiasedContextGating<N, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<N>), E, D, T>) -> Result<Self::Output, D::Err> {
        let gates = try_affine(x.retaped::<T>(), &self.weight, &self.bias)?.try_sigmoid()?;
        gates.try_mul(x)
    }
}
