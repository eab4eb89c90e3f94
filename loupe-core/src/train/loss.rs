//! Binary cross-entropy on probabilities, as the reference computes it.

use dfdx::prelude::*;

/// Epsilon inside the logarithms (REFERENCE.md section 5).
pub const CROSS_ENTROPY_EPSILON: f64 = 1e-5;

/// `-(y log(p + eps) + (1 - y) log(1 - p + eps))` summed over classes and averaged over
/// the batch, with `eps = 1e-5`.
///
/// The models output probabilities (the MoE mixes sigmoids; probability gating multiplies
/// them), so this works on probabilities, not logits.
///
/// # Shapes
/// `p`, `y`: `(B, V)`; result: scalar.
///
/// ```
/// # use dfdx::prelude::*;
/// let dev = loupe_core::device::cpu();
/// let p = dev.tensor([[0.5f32, 0.5]]);
/// let y = dev.tensor([[1.0f32, 0.0]]);
/// let loss = loupe_core::train::cross_entropy_loss(p, y).array();
/// assert!((loss - 2.0 * -(0.5f32 + 1e-5).ln()).abs() < 1e-5);
/// ```
pub fn cross_entropy_loss<B: Dim, V: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    probabilities: Tensor<(B, V), E, D, T>,
    labels: Tensor<(B, V), E, D>,
) -> Tensor<Rank0, E, D, T> {
    try_cross_entropy_loss(probabilities, labels).unwrap()
}

/// Fallible [`cross_entropy_loss`].
pub fn try_cross_entropy_loss<B: Dim, V: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    probabilities: Tensor<(B, V), E, D, T>,
    labels: Tensor<(B, V), E, D>,
) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
    let eps = E::from_f64(CROSS_ENTROPY_EPSILON).unwrap();
    let one = E::from_f64(1.0).unwrap();
    let batch = probabilities.shape().0.size() as f64;
    let log_p = probabilities.retaped::<T>().try_add(eps)?.try_ln()?;
    let log_not_p = probabilities.try_negate()?.try_add(one + eps)?.try_ln()?;
    let not_y = labels.clone().try_negate()?.try_add(one)?;
    let per_element = log_p.try_mul(labels)?.try_add(log_not_p.try_mul(not_y)?)?;
    per_element.try_sum::<Rank0, _>()?.try_mul(E::from_f64(-1.0 / batch).unwrap())
}
