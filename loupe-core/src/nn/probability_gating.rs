//! Context Gating after the classifier ("probability gating", docs/reference.md section 3).

use super::ContextGating;

pub mod builder {
    /// Builder of [`super::ProbabilityGating`]: the builder of
    /// [`ContextGating`](crate::nn::builder::ContextGating) over `V` classes.
    pub type ProbabilityGating<const V: usize> = crate::nn::builder::ContextGating<V>;
}

/// Context Gating applied to the classifier's `V` probabilities, which lets the model
/// learn label co-occurrence: `p' = p * sigmoid(BN(p Wp))`.
///
/// It is [`ContextGating`] over `V` channels, the same equation, initialisation
/// (`Wp`, `V x V`, at `N(0, 1/sqrt(V))`, batch norm at scale 1, shift 0, no bias) and
/// checkpoint keys (`weight`, `bn.*`); the reference puts no L2 penalty on it.
///
/// # Shapes
/// - `(B, V) -> (B, V)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, ProbabilityGating};
/// let dev = loupe_core::device::cpu();
/// let gating: ProbabilityGating<5, f32, Cpu> = dev.build_module::<builder::ProbabilityGating<5>, f32>();
/// let p: Tensor<(usize, Const<5>), f32, _> = dev.sample_uniform_like(&(3, Const));
/// let gated = gating.forward(p.clone());
/// // A gate is in (0, 1): gating only lowers probabilities.
/// assert!(gated.as_vec().iter().zip(p.as_vec()).all(|(g, p)| *g <= p));
/// ```
pub type ProbabilityGating<const V: usize, E, D> = ContextGating<V, E, D>;
