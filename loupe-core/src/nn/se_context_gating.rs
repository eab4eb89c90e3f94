//! SE Context Gating (Lin, Xiao, Fan 2018, section 3.3 and figure 4): Context Gating whose
//! gate goes through a bottleneck, as in squeeze-and-excitation networks.

use dfdx::prelude::*;

use super::shared::Normal;
use super::BatchNorm;

pub mod builder {
    /// Builder of [`super::SeContextGating`]: `N` values gated through a bottleneck of
    /// `NR = N / r` (`r`, the reduction, is what the spec writes).
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct SeContextGating<const N: usize, const NR: usize>;
}

impl<const N: usize, const NR: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::SeContextGating<N, NR>
{
    type Built = SeContextGating<N, NR, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = SeContextGating::<N, NR, E, D>::CHECK;
        Self::Built::try_build(device)
    }
}

/// SE Context Gating as released with NeXtVLAD:
/// `Y = X * sigmoid(relu(BN(X W1)) W2)` (elementwise product).
///
/// `W1` (`N x NR`) squeezes the `N` values to `NR = N / r`, batch norm and a ReLU follow,
/// `W2` (`NR x N`) expands back and a sigmoid makes the gate; no biases. The parameter
/// count is the paper's equation (10), `2 N² / r`, plus the batch norm's `2 NR`. The
/// paper's figure 4 draws a second batch norm after `W2`; the released code (`gating_bn`
/// only) has none, and neither has this layer. `W1` and `W2` start from slim's variance
/// scaling (truncated normal, std `sqrt(2.6 / fan_in)`: fan-in `N` and `NR`), as released;
/// batch norm at scale 1, shift 0. Training (`ModuleMut`, any tape) normalises with batch
/// statistics, evaluation (`Module`, no tape) with the running averages.
///
/// `NR` must divide `N` evenly into `N / NR` (checked when built).
///
/// # Shapes
/// - `(B, N) -> (B, N)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, SeContextGating};
/// let dev = loupe_core::device::cpu();
/// // 8 values gated through a bottleneck of 2 (reduction 4).
/// let mut cg: SeContextGating<8, 2, f32, Cpu> = dev.build_module::<builder::SeContextGating<8, 2>, f32>();
/// let x: Tensor<(usize, Const<8>), f32, _> = dev.sample_normal_like(&(4, Const));
/// let y = cg.forward_mut(x.trace(cg.alloc_grads()));
/// let grads = y.sum::<Rank0, _>().backward();
/// assert_eq!(cg.forward(x).shape().concrete(), [4, 8]);
/// # let _ = grads;
/// ```
#[derive(Debug, Clone)]
pub struct SeContextGating<const N: usize, const NR: usize, E: Dtype, D: Storage<E>> {
    /// `W1`, `N x NR` (the squeeze).
    pub squeeze_weight: Tensor<Rank2<N, NR>, E, D>,
    /// Batch norm of `X W1`.
    pub bn: BatchNorm<NR, E, D>,
    /// `W2`, `NR x N` (the excitation).
    pub excite_weight: Tensor<Rank2<NR, N>, E, D>,
}

impl<const N: usize, const NR: usize, E: Dtype, D: Storage<E>> SeContextGating<N, NR, E, D> {
    /// Fails the build unless `0 < NR <= N` and `NR` divides `N`.
    pub const CHECK: () = assert!(
        NR > 0 && NR <= N && N.is_multiple_of(NR),
        "SeContextGating<N, NR>: NR must be N / r for a reduction r that divides N"
    );
}

impl<const N: usize, const NR: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for SeContextGating<N, NR, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = SeContextGating<N, NR, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let () = Self::CHECK;
        visitor.visit_fields(
            (
                Self::tensor(
                    "squeeze_weight",
                    |s| &s.squeeze_weight,
                    |s| &mut s.squeeze_weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::variance_scaling(N))),
                ),
                Self::module("bn", |s| &s.bn, |s| &mut s.bn),
                Self::tensor(
                    "excite_weight",
                    |s| &s.excite_weight,
                    |s| &mut s.excite_weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::variance_scaling(NR))),
                ),
            ),
            |(squeeze_weight, bn, excite_weight)| SeContextGating { squeeze_weight, bn, excite_weight },
        )
    }
}

impl<B: Dim, const N: usize, const NR: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    ModuleMut<Tensor<(B, Const<N>), E, D, T>> for SeContextGating<N, NR, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, Const<N>), E, D, T>) -> Result<Self::Output, D::Err> {
        // X is used twice: the gate path gets a retaped copy, the product the original.
        let squeezed = x.retaped::<T>().try_matmul(self.squeeze_weight.retaped::<T>())?;
        let squeezed = self.bn.try_forward_mut(squeezed)?.try_relu()?;
        let gates = squeezed.try_matmul(self.excite_weight.retaped::<T>())?.try_sigmoid()?;
        gates.try_mul(x)
    }
}

impl<B: Dim, const N: usize, const NR: usize, E: Dtype, D: Device<E>> Module<Tensor<(B, Const<N>), E, D>>
    for SeContextGating<N, NR, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<N>), E, D>) -> Result<Self::Output, D::Err> {
        let squeezed = x.clone().try_matmul(self.squeeze_weight.clone())?;
        let squeezed = self.bn.try_forward(squeezed)?.try_relu()?;
        let gates = squeezed.try_matmul(self.excite_weight.clone())?.try_sigmoid()?;
        gates.try_mul(x)
    }
}
