//! Soft assignment of frames to clusters, shared by every clustering pooling layer.

use super::shared::Normal;
use super::BatchNorm;
use dfdx::prelude::*;

pub mod builder {
    /// Builder of [`super::SoftAssignment`]: `F` features per frame, `K` clusters.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct SoftAssignment<const F: usize, const K: usize>;

    /// Builder of [`super::BiasedSoftAssignment`]: `F` features per frame, `K` clusters.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct BiasedSoftAssignment<const F: usize, const K: usize>;
}

impl<const F: usize, const K: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::SoftAssignment<F, K>
where
    SoftAssignment<F, K, E, D>: BuildModule<D, E>,
{
    type Built = SoftAssignment<F, K, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

impl<const F: usize, const K: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::BiasedSoftAssignment<F, K>
where
    BiasedSoftAssignment<F, K, E, D>: BuildModule<D, E>,
{
    type Built = BiasedSoftAssignment<F, K, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Soft assignment of each frame to `K` clusters with batch norm (paper section 2, as
/// released): `a = softmax_over_K(BN(X W))`.
///
/// `W` is `F x K` (`F` is the paper's D, the feature size), initialised `N(0, 1/sqrt(F))`.
/// There is no bias: batch norm's shift plays that role. Batch norm runs over all `B*S`
/// frames of the batch (training, [`ModuleMut`]) or uses its running averages
/// (evaluation, [`Module`]). A training batch without frames leaves the running averages
/// untouched (there are no statistics to take).
///
/// # Shapes
/// `(B, S, F) -> (B, S, K)`, `B` and `S` any [`Dim`] (runtime or const).
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, SoftAssignment};
/// let dev = loupe_core::device::cpu();
/// let mut assign: SoftAssignment<8, 3, f32, Cpu> = dev.build_module::<builder::SoftAssignment<8, 3>, f32>();
/// let x: Tensor<(usize, usize, Const<8>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// let a = assign.forward_mut(x.trace(assign.alloc_grads()));
/// assert_eq!(a.shape().concrete(), [2, 5, 3]);
/// let a_eval: Tensor<(usize, usize, Const<3>), f32, _> = assign.forward(x);
/// # let _ = a_eval;
/// ```
#[derive(Debug, Clone)]
pub struct SoftAssignment<const F: usize, const K: usize, E: Dtype, D: Storage<E>> {
    /// Assignment weights `W` (`F x K`), `N(0, 1/sqrt(F))`.
    pub weights: Tensor<Rank2<F, K>, E, D>,
    /// Batch norm over the `K` assignment logits.
    pub bn: BatchNorm<K, E, D>,
}

impl<const F: usize, const K: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for SoftAssignment<F, K, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = SoftAssignment<F, K, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weights",
                    |s| &s.weights,
                    |s| &mut s.weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::for_fan_in(0.0, F))),
                ),
                Self::module("bn", |s| &s.bn, |s| &mut s.bn),
            ),
            |(weights, bn)| SoftAssignment { weights, bn },
        )
    }
}

impl<const F: usize, const K: usize, E: Dtype, D: Device<E>> SoftAssignment<F, K, E, D> {
    /// Training-mode assignment (batch statistics; running averages updated).
    #[allow(clippy::type_complexity)]
    pub fn try_assign_train<B: Dim, S: Dim, T: Tape<E, D>>(
        &mut self,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<K>), E, D, T>, D::Err> {
        let logits = x.try_matmul(self.weights.retaped::<T>())?;
        self.try_normalize_train(logits)
    }

    /// Training-mode assignment of frames that need no gradient, given the input batch
    /// norm's affine (`scale`, `shift`) apart ([`super::PoolFrames`]): the logits are
    /// `x (diag(scale) W) + shift^T W`. The last term is the same for every frame, so the
    /// batch norm removes it from the output (its gradient is zero); it is added without
    /// a tape, for the running mean.
    #[allow(clippy::type_complexity)]
    pub(crate) fn try_assign_frames_train<B: Dim, S: Dim, T: Tape<E, D>>(
        &mut self,
        x: &Tensor<(B, S, Const<F>), E, D>,
        scale: Tensor<Rank1<F>, E, D, T>,
        shift: &Tensor<Rank1<F>, E, D, T>,
    ) -> Result<Tensor<(B, S, Const<K>), E, D, T>, D::Err> {
        let fk = (Const::<F>, Const::<K>);
        let weights = self.weights.retaped::<T>().try_mul(scale.try_broadcast_like::<_, Axis<1>>(&fk)?)?;
        let constant = shift
            .retaped::<NoneTape>()
            .try_broadcast_like::<_, Axis<1>>(&fk)?
            .try_mul(self.weights.clone())?
            .try_sum::<Rank1<K>, Axis<0>>()?;
        let logits = crate::kernels::try_frames_matmul(x, weights, Some(&constant))?;
        self.try_normalize_train(logits)
    }

    /// Batch norm (training) and softmax over the clusters of the assignment logits.
    #[allow(clippy::type_complexity)]
    fn try_normalize_train<B: Dim, S: Dim, T: Tape<E, D>>(
        &mut self,
        logits: Tensor<(B, S, Const<K>), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<K>), E, D, T>, D::Err> {
        let (b, s, _) = *logits.shape();
        let normalised = if b.size() * s.size() == 0 {
            // No rows: batch statistics are 0/0. The output is empty anyway; keep the
            // running averages clean.
            self.bn.try_forward_eval::<_, Axes2<0, 1>, T>(logits)?
        } else {
            // Batch norm and softmax as one fused op where the device has it.
            match self.bn.try_fused_train(logits, true)? {
                Ok(assignment) => return Ok(assignment),
                Err(logits) => self.bn.try_forward_train::<_, Axes2<0, 1>, T>(logits)?,
            }
        };
        normalised.try_softmax::<Axis<2>>()
    }

    /// Evaluation-mode assignment (running averages), on any tape.
    #[allow(clippy::type_complexity)]
    pub fn try_assign_eval<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<K>), E, D, T>, D::Err> {
        let logits = crate::kernels::try_sequence_weight_product(x, &self.weights)?;
        let logits = match self.bn.try_fused_eval(logits, true)? {
            Ok(assignment) => return Ok(assignment),
            Err(logits) => logits,
        };
        self.bn.try_forward_eval::<_, Axes2<0, 1>, T>(logits)?.try_softmax::<Axis<2>>()
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for SoftAssignment<F, K, E, D>
{
    type Output = Tensor<(B, S, Const<K>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        self.try_assign_train(x)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, E: Dtype, D: Device<E>>
    Module<Tensor<(B, S, Const<F>), E, D>> for SoftAssignment<F, K, E, D>
{
    type Output = Tensor<(B, S, Const<K>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        self.try_assign_eval(x)
    }
}

/// Soft assignment without batch norm (paper section 2): `a = softmax_over_K(X W + b)`.
///
/// `W` is `F x K`, initialised `N(0, 1/sqrt(F))`. docs/reference.md says only that a bias of
/// size `K` is added; loupe initialises it like `W`, `N(0, 1/sqrt(F))`. Training and
/// evaluation are the same computation, so this is a [`NonMutableModule`] whose
/// [`Module`] accepts any tape.
///
/// # Shapes
/// `(B, S, F) -> (B, S, K)`, `B` and `S` any [`Dim`].
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, BiasedSoftAssignment};
/// let dev = loupe_core::device::cpu();
/// let assign: BiasedSoftAssignment<8, 3, f32, Cpu> = dev.build_module::<builder::BiasedSoftAssignment<8, 3>, f32>();
/// let x: Tensor<(usize, Const<5>, Const<8>), f32, _> = dev.sample_normal_like(&(2, Const, Const));
/// let a: Tensor<(usize, Const<5>, Const<3>), f32, _, _> = assign.forward(x.traced(assign.alloc_grads()));
/// # let _ = a;
/// ```
#[derive(Debug, Clone)]
pub struct BiasedSoftAssignment<const F: usize, const K: usize, E: Dtype, D: Storage<E>> {
    /// Assignment weights `W` (`F x K`), `N(0, 1/sqrt(F))`.
    pub weights: Tensor<Rank2<F, K>, E, D>,
    /// Bias `b` (`K`), `N(0, 1/sqrt(F))`.
    pub bias: Tensor<Rank1<K>, E, D>,
}

impl<const F: usize, const K: usize, E: Dtype, D: Storage<E>> NonMutableModule
    for BiasedSoftAssignment<F, K, E, D>
{
}

impl<const F: usize, const K: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for BiasedSoftAssignment<F, K, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = BiasedSoftAssignment<F, K, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weights",
                    |s| &s.weights,
                    |s| &mut s.weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::for_fan_in(0.0, F))),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::for_fan_in(0.0, F))),
                ),
            ),
            |(weights, bias)| BiasedSoftAssignment { weights, bias },
        )
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, S, Const<F>), E, D, T>> for BiasedSoftAssignment<F, K, E, D>
{
    type Output = Tensor<(B, S, Const<K>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        let logits = crate::kernels::try_sequence_weight_product(x, &self.weights)?;
        let shape = *logits.shape();
        let bias = self.bias.retaped::<T>().try_broadcast_like::<_, Axes2<0, 1>>(&shape)?;
        logits.try_add(bias)?.try_softmax::<Axis<2>>()
    }
}
