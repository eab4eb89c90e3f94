//! Soft bag-of-words pooling (paper section 2).

use super::shared::{try_assignment_mass, try_l2_normalize};
use super::SoftAssignment;
use dfdx::prelude::*;

pub mod builder {
    /// Builder of [`super::SoftBowPooling`]: `F` features per frame, `K` clusters.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct SoftBowPooling<const F: usize, const K: usize>;
}

impl<const F: usize, const K: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::SoftBowPooling<F, K>
where
    SoftBowPooling<F, K, E, D>: BuildModule<D, E>,
{
    type Built = SoftBowPooling<F, K, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Soft bag of visual words (paper section 2): the L2-normalised histogram of soft
/// assignments.
///
/// `a = softmax_over_K(BN(X W))` ([`SoftAssignment`]), `bow[k] = sum_t a[t,k]`, then L2.
/// It needs many more clusters (4096-8000) than NetVLAD for a rich representation.
///
/// # Shapes
/// `(B, S, F) -> (B, K)`, `B` and `S` any [`Dim`] (runtime or const).
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, SoftBowPooling};
/// let dev = loupe_core::device::cpu();
/// let mut bow: SoftBowPooling<8, 16, f32, Cpu> = dev.build_module::<builder::SoftBowPooling<8, 16>, f32>();
/// let x: Tensor<(usize, usize, Const<8>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// let train: Tensor<(usize, Const<16>), f32, _, _> = bow.forward_mut(x.trace(bow.alloc_grads()));
/// let eval: Tensor<(usize, Const<16>), f32, _> = bow.forward(x);
/// # let _ = (train, eval);
/// ```
#[derive(Debug, Clone)]
pub struct SoftBowPooling<const F: usize, const K: usize, E: Dtype, D: Storage<E>> {
    /// Soft assignment of frames to the `K` clusters (with batch norm).
    pub assignment: SoftAssignment<F, K, E, D>,
}

impl<const F: usize, const K: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for SoftBowPooling<F, K, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = SoftBowPooling<F, K, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::module("assignment", |s| &s.assignment, |s| &mut s.assignment),
            |assignment| SoftBowPooling { assignment },
        )
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for SoftBowPooling<F, K, E, D>
{
    type Output = Tensor<(B, Const<K>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        try_l2_normalize(try_assignment_mass(self.assignment.try_assign_train(x)?)?)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, E: Dtype, D: Device<E>>
    Module<Tensor<(B, S, Const<F>), E, D>> for SoftBowPooling<F, K, E, D>
{
    type Output = Tensor<(B, Const<K>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        try_l2_normalize(try_assignment_mass(self.assignment.try_assign_eval(x)?)?)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    super::PoolFrames<B, S, F, E, D, T> for SoftBowPooling<F, K, E, D>
{
    fn try_pool_frames(
        &mut self,
        frames: super::NormalizedFrames<B, S, F, E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        if !crate::kernels::fused_for::<E, D>() {
            return self.try_forward_mut(frames.try_into_frames()?);
        }
        let super::NormalizedFrames { standardized, scale, shift } = frames;
        let a = self.assignment.try_assign_frames_train(&standardized, scale, &shift)?;
        try_l2_normalize(try_assignment_mass(a)?)
    }
}
