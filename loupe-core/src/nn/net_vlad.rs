//! NetVLAD pooling (paper section 2).

use super::shared::{try_assignment_weighted_sum, try_vlad_of_standardized, try_vlad_residual_tail, Normal};
use super::SoftAssignment;
use dfdx::prelude::*;

pub mod builder {
    /// Builder of [`super::NetVladPooling`]: `F` features per frame, `K` clusters, `OUT = K * F`.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct NetVladPooling<const F: usize, const K: usize, const OUT: usize>;
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::NetVladPooling<F, K, OUT>
where
    NetVladPooling<F, K, OUT, E, D>: BuildModule<D, E>,
{
    type Built = NetVladPooling<F, K, OUT, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = NetVladPooling::<F, K, OUT, E, D>::CHECK;
        Self::Built::try_build(device)
    }
}

/// NetVLAD (paper section 2): a differentiable VLAD over soft assignments.
///
/// `a = softmax_over_K(BN(X W))` ([`SoftAssignment`]), then per batch item
///
/// `vlad[d,k] = sum_t a[t,k] (x[t,d] - c[d,k]) = (a^T X)[k,d] - (sum_t a[t,k]) c[d,k]`
///
/// followed by intra-normalisation (L2 over `d` for each `k`), flattening and a global
/// L2 normalisation. `sum_t a x` is one batched matmul (`X^T a`); the centre term is
/// `(sum_t a[t,k]) c[d,k]`; no `(B, S, F, K)` tensor is formed.
///
/// Flattening is **d-major** as in the reference: output index `d * K + k`.
///
/// `F` is the feature size (the paper's D), `K` the clusters, and `OUT` must equal `K * F`
/// (stable Rust cannot compute it in types); a wrong `OUT` fails `cargo build` (not
/// `cargo check`) when the layer is built or run.
///
/// # Shapes
/// `(B, S, F) -> (B, K * F)`, `B` and `S` any [`Dim`] (runtime or const).
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, NetVladPooling};
/// let dev = loupe_core::device::cpu();
/// let mut vlad: NetVladPooling<8, 3, 24, f32, Cpu> = dev.build_module::<builder::NetVladPooling<8, 3, 24>, f32>();
/// let x: Tensor<(usize, usize, Const<8>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// // Training: batch-norm statistics over the 2 * 5 frames, any tape.
/// let train: Tensor<(usize, Const<24>), f32, _, _> = vlad.forward_mut(x.trace(vlad.alloc_grads()));
/// // Evaluation: running averages, no tape.
/// let eval: Tensor<(usize, Const<24>), f32, _> = vlad.forward(x);
/// # let _ = (train, eval);
/// ```
#[derive(Debug, Clone)]
pub struct NetVladPooling<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>> {
    /// Soft assignment of frames to the `K` clusters (with batch norm).
    pub assignment: SoftAssignment<F, K, E, D>,
    /// Cluster centres `C` (`F x K`), `N(0, 1/sqrt(F))`.
    pub centers: Tensor<Rank2<F, K>, E, D>,
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>>
    NetVladPooling<F, K, OUT, E, D>
{
    /// Fails the build when `OUT != K * F`.
    pub const CHECK: () = assert!(OUT == K * F, "NetVladPooling<F, K, OUT>: OUT must equal K * F");
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for NetVladPooling<F, K, OUT, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = NetVladPooling<F, K, OUT, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let () = Self::CHECK;
        visitor.visit_fields(
            (
                Self::module("assignment", |s| &s.assignment, |s| &mut s.assignment),
                Self::tensor(
                    "centers",
                    |s| &s.centers,
                    |s| &mut s.centers,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::for_fan_in(0.0, F))),
                ),
            ),
            |(assignment, centers)| NetVladPooling { assignment, centers },
        )
    }
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>>
    NetVladPooling<F, K, OUT, E, D>
{
    /// Pools frames `x` given their assignment `a` (both on the same tape).
    #[allow(clippy::type_complexity)]
    fn try_pool<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        a: Tensor<(B, S, Const<K>), E, D, T>,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let mass_source = a.retaped::<T>();
        let weighted = try_assignment_weighted_sum(a, x)?;
        try_vlad_residual_tail(weighted, mass_source, self.centers.retaped::<T>())
    }
}

impl<
        B: Dim,
        S: Dim,
        const F: usize,
        const K: usize,
        const OUT: usize,
        E: Dtype,
        D: Device<E>,
        T: Tape<E, D>,
    > super::PoolFrames<B, S, F, E, D, T> for NetVladPooling<F, K, OUT, E, D>
{
    fn try_pool_frames(
        &mut self,
        frames: super::NormalizedFrames<B, S, F, E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        if !crate::kernels::fused_for::<E, D>() {
            return self.try_forward_mut(frames.try_into_frames()?);
        }
        let super::NormalizedFrames { standardized, scale, shift } = frames;
        let a = self.assignment.try_assign_frames_train(&standardized, scale.retaped::<T>(), &shift)?;
        try_vlad_of_standardized(a, &standardized, (scale, shift), Some(&self.centers))
    }
}

impl<
        B: Dim,
        S: Dim,
        const F: usize,
        const K: usize,
        const OUT: usize,
        E: Dtype,
        D: Device<E>,
        T: Tape<E, D>,
    > ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for NetVladPooling<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_train(x.retaped::<T>())?;
        self.try_pool(a, x)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>>
    Module<Tensor<(B, S, Const<F>), E, D>> for NetVladPooling<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_eval(x.clone())?;
        self.try_pool(a, x)
    }
}
