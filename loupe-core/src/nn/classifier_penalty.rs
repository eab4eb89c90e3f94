//! The classifier's weight penalty, the L2 term of the paper's training loss.

use dfdx::prelude::*;

/// The L2 weight penalty of a classifier, before its coefficient: `(|Wg|^2 + |We|^2) / 2`
/// for [`MixtureOfExperts`](super::MixtureOfExperts) (every gate weight, the dummy
/// expert's included, and every expert weight; no bias), `|W|^2 / 2` for
/// [`Logistic`](super::Logistic). This is TensorFlow's `l2_regularizer(l2)` without the
/// `l2`: the training loss adds `l2 * penalty` (docs/reference.md section 3).
///
/// The penalty is returned on a fresh tape of type `T` holding the parameters' own ids,
/// so adding it to a loss on another tape (`loss + penalty`) merges the tapes and the
/// penalty's gradient reaches the parameters. [`VideoModel::try_l2_penalty`] is this
/// with `T = OwnedTape<E, D>`.
///
/// [`VideoModel::try_l2_penalty`]: crate::model::VideoModel::try_l2_penalty
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, ClassifierPenalty, Logistic};
/// let dev = loupe_core::device::cpu();
/// let logistic: Logistic<4, 3, f32, Cpu> = dev.build_module::<builder::Logistic<4, 3>, f32>();
/// let x: Tensor<(usize, Const<4>), f32, _> = dev.sample_normal_like(&(2, Const));
/// let probabilities = logistic.forward(x.trace(logistic.alloc_grads()));
/// let penalty = logistic.try_l2_penalty::<OwnedTape<f32, Cpu>>().unwrap();
/// let loss = probabilities.sum::<Rank0, _>() + penalty * 1e-6;
/// let grads = loss.backward();
/// assert_eq!(grads.get(&logistic.weight).shape().concrete(), [4, 3]);
/// ```
pub trait ClassifierPenalty<E: Dtype, D: Device<E>> {
    /// The penalty on a tape of type `T` (`NoneTape` for its value only).
    fn try_l2_penalty<T: Tape<E, D>>(&self) -> Result<Tensor<Rank0, E, D, T>, D::Err>;

    /// Infallible [`ClassifierPenalty::try_l2_penalty`].
    fn l2_penalty<T: Tape<E, D>>(&self) -> Tensor<Rank0, E, D, T> {
        self.try_l2_penalty::<T>().unwrap()
    }
}
