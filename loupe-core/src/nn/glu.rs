//! Gated linear unit, the alternative to Context Gating ablated in the paper's Table 2.

use dfdx::prelude::*;

use super::shared::{try_affine, Normal};

pub mod builder {
    /// Builder of [`super::Glu`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct Glu<const N: usize>;
}

impl<const N: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::Glu<N> {
    type Built = Glu<N, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Gated linear unit (Dauphin et al.), as the paper compares it to Context Gating:
/// `Y = (X W1 + b1) * sigmoid(X W2 + b2)`.
///
/// The reference gives no initialisation for it; loupe initialises both paths like the
/// hidden layer: `W1`, `W2` (`N x N`) at `N(0, 1/sqrt(N))`, `b1`, `b2` at `N(0, 0.01)`.
///
/// # Shapes
/// - `(B, N) -> (B, N)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, Glu};
/// let dev = loupe_core::device::cpu();
/// let glu: Glu<6, f32, Cpu> = dev.build_module::<builder::Glu<6>, f32>();
/// let x: Tensor<(usize, Const<6>), f32, _> = dev.sample_normal_like(&(4, Const));
/// assert_eq!(glu.forward(x).shape().concrete(), [4, 6]);
/// ```
#[derive(Debug, Clone)]
pub struct Glu<const N: usize, E: Dtype, D: Storage<E>> {
    /// `W1`, `N x N`: the linear path.
    pub weight: Tensor<Rank2<N, N>, E, D>,
    /// `b1`, `N`.
    pub bias: Tensor<Rank1<N>, E, D>,
    /// `W2`, `N x N`: the gate path.
    pub gate_weight: Tensor<Rank2<N, N>, E, D>,
    /// `b2`, `N`.
    pub gate_bias: Tensor<Rank1<N>, E, D>,
}

impl<const N: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for Glu<N, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Glu<N, E2, D2>;

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
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::new(0.0, 0.01))),
                ),
                Self::tensor(
                    "gate_weight",
                    |s| &s.gate_weight,
                    |s| &mut s.gate_weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::inverse_sqrt(N))),
                ),
                Self::tensor(
                    "gate_bias",
                    |s| &s.gate_bias,
                    |s| &mut s.gate_bias,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::new(0.0, 0.01))),
                ),
            ),
            |(weight, bias, gate_weight, gate_bias)| Glu { weight, bias, gate_weight, gate_bias },
        )
    }
}

impl<const N: usize, E: Dtype, D: Storage<E>> NonMutableModule for Glu<N, E, D> {}

impl<B: Dim, const N: usize, E: Dtype, D: Device<E>, T: Tape<E, D>> Module<Tensor<(B, Const<N>), E, D, T>>
    for Glu<N, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<N>), E, D, T>) -> Result<Self::Output, D::Err> {
        let linear = try_affine(x.retaped::<T>(), &self.weight, &self.bias)?;
        let gates = try_affine(x, &self.gate_weight, &self.gate_bias)?.try_sigmoid()?;
        linear.try_mul(gates)
    }
}
