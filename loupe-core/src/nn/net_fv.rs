//! NetFV pooling: a differentiable Fisher vector (paper section 2).

use super::shared::{
    try_assignment_mass, try_assignment_weighted_sum, try_flatten_d_major, try_intra_normalize,
    try_l2_normalize, Normal,
};
use super::SoftAssignment;
use dfdx::prelude::*;

/// Added to the squared covariance weights: `sigma = S^2 + 1e-6` (as the reference).
pub const NET_FV_SIGMA_EPSILON: f64 = 1e-6;

pub mod builder {
    /// Builder of [`super::NetFvPooling`]: `F` features per frame, `K` clusters, `OUT = 2 * K * F`.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct NetFvPooling<const F: usize, const K: usize, const OUT: usize>;
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::NetFvPooling<F, K, OUT>
where
    NetFvPooling<F, K, OUT, E, D>: BuildModule<D, E>,
{
    type Built = NetFvPooling<F, K, OUT, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = NetFvPooling::<F, K, OUT, E, D>::CHECK;
        Self::Built::try_build(device)
    }
}

/// NetFV (paper section 2): first- and second-order Fisher vector statistics over soft
/// assignments, with independent centres.
///
/// `a = softmax_over_K(BN(X W))` ([`SoftAssignment`]), `sigma = S^2 + 1e-6`, and per batch
/// item
///
/// - `fv1[d,k] = sum_t a[t,k] (x[t,d] - c[d,k]) / sigma[d,k]`
///   -> intra-normalisation (L2 over `d` for each `k`) -> flatten -> L2;
/// - `fv2[d,k] = sum_t a[t,k] (x[t,d] - c[d,k])^2 / sigma[d,k]^2 - sum_t a[t,k]`
///   -> flatten -> L2 (no intra-normalisation, as the reference). The last term is the
///   soft count of cluster `k`, subtracted from every `d` (docs/reference.md writes it outside
///   the first sum, indexed by `k` only; the reference code broadcasts it the same way).
///
/// The output is `[fv1, fv2]`, each flattened **d-major** (index `d * K + k` within its
/// half). The squares are expanded,
/// `sum_t a (x - c)^2 = a^T X^2 - 2 c (a^T X) + (sum_t a) c^2`, so no `(B, S, K, F)` tensor
/// is formed.
///
/// `OUT` must equal `2 * K * F`; a wrong `OUT` fails `cargo build`.
///
/// # Shapes
/// `(B, S, F) -> (B, 2 * K * F)`, `B` and `S` any [`Dim`] (runtime or const).
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, NetFvPooling};
/// let dev = loupe_core::device::cpu();
/// let mut fv: NetFvPooling<8, 3, 48, f32, Cpu> = dev.build_module::<builder::NetFvPooling<8, 3, 48>, f32>();
/// let x: Tensor<(usize, usize, Const<8>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// let train: Tensor<(usize, Const<48>), f32, _, _> = fv.forward_mut(x.trace(fv.alloc_grads()));
/// let eval: Tensor<(usize, Const<48>), f32, _> = fv.forward(x);
/// # let _ = (train, eval);
/// ```
#[derive(Debug, Clone)]
pub struct NetFvPooling<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>> {
    /// Soft assignment of frames to the `K` clusters (with batch norm).
    pub assignment: SoftAssignment<F, K, E, D>,
    /// Cluster centres `C` (`F x K`), `N(0, 1/sqrt(F))`.
    pub centers: Tensor<Rank2<F, K>, E, D>,
    /// Covariance weights `S` (`F x K`), `N(1, 1/sqrt(F))`; `sigma = S^2 + 1e-6`.
    pub covariance_weights: Tensor<Rank2<F, K>, E, D>,
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>>
    NetFvPooling<F, K, OUT, E, D>
{
    /// Fails the build when `OUT != 2 * K * F`.
    pub const CHECK: () = assert!(OUT == 2 * K * F, "NetFvPooling<F, K, OUT>: OUT must equal 2 * K * F");
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for NetFvPooling<F, K, OUT, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = NetFvPooling<F, K, OUT, E2, D2>;

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
                Self::tensor(
                    "covariance_weights",
                    |s| &s.covariance_weights,
                    |s| &mut s.covariance_weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::for_fan_in(1.0, F))),
                ),
            ),
            |(assignment, centers, covariance_weights)| NetFvPooling {
                assignment,
                centers,
                covariance_weights,
            },
        )
    }
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> NetFvPooling<F, K, OUT, E, D> {
    #[allow(clippy::type_complexity)]
    fn try_pool<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        a: Tensor<(B, S, Const<K>), E, D, T>,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let () = Self::CHECK;
        let b = x.shape().0;
        let shape = (b, Const::<F>, Const::<K>);
        // Each value below is used several times: every use but the last is `retaped`.
        let mass = try_assignment_mass(a.retaped::<T>())?.try_broadcast_like::<_, Axis<1>>(&shape)?;
        let first = try_assignment_weighted_sum(a.retaped::<T>(), x.retaped::<T>())?;
        let second = try_assignment_weighted_sum(a, x.try_square()?)?;
        let centers = self.centers.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&shape)?;
        let sigma = self
            .covariance_weights
            .retaped::<T>()
            .try_square()?
            .try_add(E::from_f64(NET_FV_SIGMA_EPSILON).unwrap())?
            .try_broadcast_like::<_, Axis<0>>(&shape)?;

        // fv1 = (a^T X - (sum_t a) c) / sigma
        let fv1 = first
            .retaped::<T>()
            .try_sub(mass.retaped::<T>().try_mul(centers.retaped::<T>())?)?
            .try_div(sigma.retaped::<T>())?;
        // fv2 = (a^T X^2 - 2 c a^T X + (sum_t a) c^2) / sigma^2 - sum_t a
        let fv2 = second
            .try_sub(centers.retaped::<T>().try_mul(first)?.try_mul(E::from_f64(2.0).unwrap())?)?
            .try_add(mass.retaped::<T>().try_mul(centers.try_square()?)?)?
            .try_div(sigma.try_square()?)?
            .try_sub(mass)?;

        let half = K * F;
        let fv1 = try_l2_normalize(try_flatten_d_major(try_intra_normalize(fv1)?, half)?)?;
        let fv2 = try_l2_normalize(try_flatten_d_major(fv2, half)?)?;
        (fv1, fv2).try_concat_along(Axis::<1>)?.try_reshape_like(&(b, Const::<OUT>))
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
    > ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for NetFvPooling<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_train(x.retaped::<T>())?;
        self.try_pool(a, x)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>>
    Module<Tensor<(B, S, Const<F>), E, D>> for NetFvPooling<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_eval(x.clone())?;
        self.try_pool(a, x)
    }
}
