//! Binary cross-entropy on probabilities, as the reference computes it.

use dfdx::prelude::*;

/// Epsilon inside the logarithms (docs/reference.md section 5).
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
    let batch = probabilities.shape().0.size();
    batch_mean(log_likelihoods(probabilities, labels)?, batch)
}

/// [`try_cross_entropy_loss`] where only the classes with `mask = 1` count (a mask of 0
/// drops the class's term; other values weigh it): segment fine-tuning counts the rated
/// classes of each segment and ignores the rest. Still averaged over the batch.
///
/// # Shapes
/// `p`, `y`, `mask`: `(B, V)`; result: scalar.
///
/// ```
/// # use dfdx::prelude::*;
/// let dev = loupe_core::device::cpu();
/// let p = dev.tensor([[0.5f32, 0.9]]);
/// let y = dev.tensor([[1.0f32, 0.0]]);
/// let mask = dev.tensor([[1.0f32, 0.0]]);
/// let loss = loupe_core::train::try_masked_cross_entropy_loss(p, y, mask).unwrap().array();
/// assert!((loss + (0.5f32 + 1e-5).ln()).abs() < 1e-5);
/// ```
pub fn try_masked_cross_entropy_loss<B: Dim, V: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    probabilities: Tensor<(B, V), E, D, T>,
    labels: Tensor<(B, V), E, D>,
    mask: Tensor<(B, V), E, D>,
) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
    let batch = probabilities.shape().0.size();
    batch_mean(log_likelihoods(probabilities, labels)?.try_mul(mask)?, batch)
}

/// `y log(p + eps) + (1 - y) log(1 - p + eps)` per element.
#[allow(clippy::type_complexity)]
fn log_likelihoods<B: Dim, V: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    probabilities: Tensor<(B, V), E, D, T>,
    labels: Tensor<(B, V), E, D>,
) -> Result<Tensor<(B, V), E, D, T>, D::Err> {
    let eps = E::from_f64(CROSS_ENTROPY_EPSILON).unwrap();
    let one = E::from_f64(1.0).unwrap();
    let log_p = probabilities.retaped::<T>().try_add(eps)?.try_ln()?;
    let log_not_p = probabilities.try_negate()?.try_add(one + eps)?.try_ln()?;
    let not_y = labels.clone().try_negate()?.try_add(one)?;
    log_p.try_mul(labels)?.try_add(log_not_p.try_mul(not_y)?)
}

/// Minus the sum of `log_likelihoods` over the batch of `batch` videos, divided by it.
fn batch_mean<B: Dim, V: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    log_likelihoods: Tensor<(B, V), E, D, T>,
    batch: usize,
) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
    log_likelihoods.try_sum::<Rank0, _>()?.try_mul(E::from_f64(-1.0 / batch as f64).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_keeps_only_the_rated_classes_terms_and_gradients() {
        let dev = crate::device::cpu();
        let p = dev.tensor([[0.2f64, 0.7, 0.9], [0.6, 0.3, 0.5]]);
        let y = dev.tensor([[1.0f64, 0.0, 1.0], [0.0, 1.0, 0.0]]);
        let all = dev.ones_like(&y);
        let full = try_cross_entropy_loss(p.clone(), y.clone()).unwrap().array();
        assert!(
            (try_masked_cross_entropy_loss(p.clone(), y.clone(), all).unwrap().array() - full).abs() < 1e-12
        );
        // Masking class 1 of video 0 and class 2 of video 1 removes exactly those terms.
        let mask = dev.tensor([[1.0f64, 0.0, 1.0], [1.0, 1.0, 0.0]]);
        let kept = -((0.2f64 + 1e-5).ln()
            + (0.9f64 + 1e-5).ln()
            + (1.0 - 0.6f64 + 1e-5).ln()
            + (0.3f64 + 1e-5).ln())
            / 2.0;
        let loss = try_masked_cross_entropy_loss(p.clone().leaky_traced(), y, mask).unwrap();
        assert!((loss.array() - kept).abs() < 1e-12);
        let grads = loss.backward();
        let g = grads.get(&p).array();
        assert_eq!((g[0][1], g[1][2]), (0.0, 0.0));
        assert!(g[0][0] != 0.0 && g[1][1] != 0.0);
    }
}
