//! NetVLAD pooling (paper section 2).

use super::l2_normalize::try_l2_normalize;
use super::soft_assignment::{ScaledNormal, SoftAssignment};
use dfdx::prelude::*;

pub mod builder {
    /// Builder of [`super::NetVlad`]: `F` features per frame, `K` clusters, `OUT = K * F`.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct NetVlad<const F: usize, const K: usize, const OUT: usize>;
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::NetVlad<F, K, OUT>
where
    NetVlad<F, K, OUT, E, D>: BuildModule<D, E>,
{
    type Built = NetVlad<F, K, OUT, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = NetVlad::<F, K, OUT, E, D>::CHECK;
        Self::Built::try_build(device)
    }
}

/// `sum_t a[t,k] x[t,d]` for every batch item, as the batched matmul `a^T X`:
/// `(B, S, K)` and `(B, S, F)` give `(B, K, F)`.
pub(crate) fn try_assignment_weighted_sum<B: Dim, S: Dim, const F: usize, const K: usize, E, D, T>(
    a: Tensor<(B, S, Const<K>), E, D, T>,
    x: Tensor<(B, S, Const<F>), E, D, T>,
) -> Result<Tensor<(B, Const<K>, Const<F>), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    a.try_permute::<(B, Const<K>, S), Axes3<0, 2, 1>>()?.try_matmul(x)
}

/// `sum_t a[t,k]` (the soft count of cluster `k`): `(B, S, K) -> (B, K)`.
pub(crate) fn try_assignment_mass<B: Dim, S: Dim, const K: usize, E, D, T>(
    a: Tensor<(B, S, Const<K>), E, D, T>,
) -> Result<Tensor<(B, Const<K>), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    a.try_sum::<(B, Const<K>), Axis<1>>()
}

/// A `F x K` parameter (the reference layout) as `(B, K, F)`, for elementwise use with
/// per-cluster descriptors.
pub(crate) fn try_per_cluster<B: Dim, const F: usize, const K: usize, E, D, T>(
    p: Tensor<Rank2<F, K>, E, D, T>,
    batch: B,
) -> Result<Tensor<(B, Const<K>, Const<F>), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    p.try_permute::<Rank2<K, F>, Axes2<1, 0>>()?
        .try_broadcast_like::<_, Axis<0>>(&(batch, Const::<K>, Const::<F>))
}

/// Flattens per-cluster descriptors `(B, K, F)` **d-major**, as the reference does: the
/// value of feature `d` in cluster `k` lands at index `d * K + k`.
pub(crate) fn try_flatten_d_major<B: Dim, const F: usize, const K: usize, Out: Dim, E, D, T>(
    v: Tensor<(B, Const<K>, Const<F>), E, D, T>,
    out: Out,
) -> Result<Tensor<(B, Out), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    let b = v.shape().0;
    v.try_permute::<(B, Const<F>, Const<K>), Axes3<0, 2, 1>>()?
        .try_reshape_like(&(b, out))
}

/// NetVLAD (paper section 2): a differentiable VLAD over soft assignments.
///
/// `a = softmax_over_K(BN(X W))` ([`SoftAssignment`]), then per batch item
///
/// `vlad[d,k] = sum_t a[t,k] (x[t,d] - c[d,k]) = (a^T X)[k,d] - (sum_t a[t,k]) c[d,k]`
///
/// followed by intra-normalisation (L2 over `d` for each `k`), flattening and a global
/// L2 normalisation. `sum_t a x` is one batched matmul; no `(B, S, K, F)` tensor is formed.
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
/// # use loupe_core::nn::{builder, NetVlad};
/// let dev = loupe_core::device::cpu();
/// let mut vlad: NetVlad<8, 3, 24, f32, Cpu> = dev.build_module::<builder::NetVlad<8, 3, 24>, f32>();
/// let x: Tensor<(usize, usize, Const<8>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// // Training: batch-norm statistics over the 2 * 5 frames, any tape.
/// let train: Tensor<(usize, Const<24>), f32, _, _> = vlad.forward_mut(x.trace(vlad.alloc_grads()));
/// // Evaluation: running averages, no tape.
/// let eval: Tensor<(usize, Const<24>), f32, _> = vlad.forward(x);
/// # let _ = (train, eval);
/// ```
#[derive(Debug, Clone)]
pub struct NetVlad<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>> {
    /// Soft assignment of frames to the `K` clusters (with batch norm).
    pub assignment: SoftAssignment<F, K, E, D>,
    /// Cluster centres `C` (`F x K`), `N(0, 1/sqrt(F))`.
    pub centers: Tensor<Rank2<F, K>, E, D>,
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>> NetVlad<F, K, OUT, E, D> {
    /// Fails the build when `OUT != K * F`.
    pub const CHECK: () = assert!(OUT == K * F, "NetVlad<F, K, OUT>: OUT must equal K * F");
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for NetVlad<F, K, OUT, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = NetVlad<F, K, OUT, E2, D2>;

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
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(ScaledNormal::for_fan_in(0.0, F))),
                ),
            ),
            |(assignment, centers)| NetVlad { assignment, centers },
        )
    }
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> NetVlad<F, K, OUT, E, D> {
    /// Pools frames `x` given their assignment `a` (both on the same tape).
    fn try_pool<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        a: Tensor<(B, S, Const<K>), E, D, T>,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let () = Self::CHECK;
        let b = x.shape().0;
        let shape = (b, Const::<K>, Const::<F>);
        let mass = try_assignment_mass(a.retaped::<T>())?.try_broadcast_like::<_, Axis<2>>(&shape)?;
        let weighted = try_assignment_weighted_sum(a, x)?;
        let centers = try_per_cluster(self.centers.retaped::<T>(), b)?;
        let vlad = weighted.try_sub(mass.try_mul(centers)?)?;
        let intra = try_l2_normalize(vlad)?;
        try_l2_normalize(try_flatten_d_major(intra, Const::<OUT>)?)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for NetVlad<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_train(x.retaped::<T>())?;
        self.try_pool(a, x)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>>
    Module<Tensor<(B, S, Const<F>), E, D>> for NetVlad<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_eval(x.clone())?;
        self.try_pool(a, x)
    }
}
