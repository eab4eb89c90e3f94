//! Mixture of Experts classifier (paper section 4, docs/reference.md section 3).

use dfdx::prelude::*;

use super::shared::{try_half_squared_norm, GlorotUniform};
use super::ClassifierPenalty;
use crate::kernels::try_weight_product;

pub mod builder {
    /// Builder of [`super::MixtureOfExperts`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct MixtureOfExperts<const I: usize, const V: usize, const M: usize>;
}

impl<const I: usize, const V: usize, const M: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::MixtureOfExperts<I, V, M>
{
    type Built = MixtureOfExperts<I, V, M, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Mixture of Experts over `V` independent classes with `M` experts each, plus the
/// reference's dummy expert that always predicts 0:
///
/// - gates `G[v, :] = softmax(h Wg[:, v, 0..M+1])` over the `M + 1` slots (no bias),
/// - experts `E[v, m] = sigmoid(h We[:, v, m] + be[v, m])`,
/// - `p[v] = sum_{m < M} G[v, m] E[v, m]`.
///
/// The reference stores `Wg` as one `I x V(M+1)` matrix (gate `(v, m)` at column
/// `v(M+1) + m`) and `We` as `I x VM` (column `vM + m`). Stable Rust cannot write
/// `V * (M + 1)` in a type, so the `M + 1` gate slots are stored as `gate_weight`
/// (`I x V x M`, slots `0..M`) and `dummy_gate_weight` (`I x V`, slot `M`); `expert_weight`
/// (`I x V x M`) is the reference's `We` exactly (row-major `(i, v, m)` = column `vM + m`).
/// `Wg` and `We` are Glorot-uniform with the reference matrices' fans (`I` in; `V(M+1)`,
/// respectively `VM`, out), `be` zeros. Its [`ClassifierPenalty`] is
/// `(|Wg|^2 + |We|^2) / 2`, dummy slot included, bias excluded.
///
/// The softmax is computed without materialising the `M + 1` slots:
/// `p[v] = sum_m exp(g[v, m] - c) E[v, m] / (sum_m exp(g[v, m] - c) + exp(g[v, M] - c))`
/// with `c` the per-class maximum logit (a constant for the gradient).
///
/// # Shapes
/// - `(B, I) -> (B, V)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, MixtureOfExperts};
/// let dev = loupe_core::device::cpu();
/// let moe: MixtureOfExperts<8, 5, 2, f32, Cpu> = dev.build_module::<builder::MixtureOfExperts<8, 5, 2>, f32>();
/// assert_eq!(moe.num_trainable_params(), 8 * 5 * 3 + 8 * 5 * 2 + 5 * 2);
/// let h: Tensor<(usize, Const<8>), f32, _> = dev.sample_normal_like(&(3, Const));
/// let p = moe.forward(h);
/// assert!(p.as_vec().iter().all(|&p| p > 0.0 && p < 1.0));
/// ```
#[derive(Debug, Clone)]
pub struct MixtureOfExperts<const I: usize, const V: usize, const M: usize, E: Dtype, D: Storage<E>> {
    /// Gate weights of the `M` experts, `I x V x M` (`Wg[:, v(M+1) + m]` for `m < M`).
    pub gate_weight: Tensor<Rank3<I, V, M>, E, D>,
    /// Gate weights of the dummy expert, `I x V` (`Wg[:, v(M+1) + M]`).
    pub dummy_gate_weight: Tensor<Rank2<I, V>, E, D>,
    /// Expert weights, `I x V x M` (`We[:, vM + m]`).
    pub expert_weight: Tensor<Rank3<I, V, M>, E, D>,
    /// Expert biases, `V x M`.
    pub expert_bias: Tensor<Rank2<V, M>, E, D>,
}

impl<const I: usize, const V: usize, const M: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for MixtureOfExperts<I, V, M, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = MixtureOfExperts<I, V, M, E2, D2>;

    fn iter_tensors<Vis: ModuleVisitor<Self, E, D>>(
        visitor: &mut Vis,
    ) -> Result<Option<Self::To<Vis::E2, Vis::D2>>, Vis::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "gate_weight",
                    |s| &s.gate_weight,
                    |s| &mut s.gate_weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I, V * (M + 1)))),
                ),
                Self::tensor(
                    "dummy_gate_weight",
                    |s| &s.dummy_gate_weight,
                    |s| &mut s.dummy_gate_weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I, V * (M + 1)))),
                ),
                Self::tensor(
                    "expert_weight",
                    |s| &s.expert_weight,
                    |s| &mut s.expert_weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I, V * M))),
                ),
                Self::tensor(
                    "expert_bias",
                    |s| &s.expert_bias,
                    |s| &mut s.expert_bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(gate_weight, dummy_gate_weight, expert_weight, expert_bias)| MixtureOfExperts {
                gate_weight,
                dummy_gate_weight,
                expert_weight,
                expert_bias,
            },
        )
    }
}

impl<const I: usize, const V: usize, const M: usize, E: Dtype, D: Storage<E>> NonMutableModule
    for MixtureOfExperts<I, V, M, E, D>
{
}

impl<B: Dim, const I: usize, const V: usize, const M: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, Const<I>), E, D, T>> for MixtureOfExperts<I, V, M, E, D>
{
    type Output = Tensor<(B, Const<V>), E, D, T>;
    type Error = D::Err;

    fn try_forward(&self, h: Tensor<(B, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        let rows = h.shape().0;
        let per_class = (rows, Const::<V>, Const::<M>);
        // `I x V x M` as the `I x VM` matrix it is (a free reshape, same tensor ids).
        let flat = (Const::<I>, V * M);

        // h is used three times: two retaped copies, the original last.
        let gate_logits =
            try_weight_product(h.retaped::<T>(), &self.gate_weight.clone().try_reshape_like(&flat)?)?
                .try_reshape_like(&per_class)?;
        let dummy_logits = try_weight_product(h.retaped::<T>(), &self.dummy_gate_weight)?;
        let experts = try_weight_product(h, &self.expert_weight.clone().try_reshape_like(&flat)?)?
            .try_reshape_like(&per_class)?
            .try_add(self.expert_bias.retaped::<T>().try_broadcast_like(&per_class)?)?
            .try_sigmoid()?;

        // Softmax over the M + 1 slots, shifted by the largest logit of each class.
        let shift = gate_logits
            .retaped::<NoneTape>()
            .try_max::<(B, Const<V>), Axis<2>>()?
            .try_maximum(dummy_logits.retaped::<NoneTape>())?;
        let gates = gate_logits.try_sub(shift.clone().try_broadcast_like(&per_class)?)?.try_exp()?;
        let dummy_gate = dummy_logits.try_sub(shift)?.try_exp()?;
        let normaliser = gates.retaped::<T>().try_sum::<(B, Const<V>), Axis<2>>()?.try_add(dummy_gate)?;
        gates.try_mul(experts)?.try_sum::<(B, Const<V>), Axis<2>>()?.try_div(normaliser)
    }
}

impl<const I: usize, const V: usize, const M: usize, E: Dtype, D: Device<E>> ClassifierPenalty<E, D>
    for MixtureOfExperts<I, V, M, E, D>
{
    fn try_l2_penalty<T: Tape<E, D>>(&self) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
        try_half_squared_norm::<_, _, _, _, T>(&self.gate_weight)?
            .try_add(try_half_squared_norm::<_, _, _, _, T>(&self.dummy_gate_weight)?)?
            .try_add(try_half_squared_norm::<_, _, _, _, T>(&self.expert_weight)?)
    }
}
