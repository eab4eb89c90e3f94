//! NetVLAD pooling (paper section 2).

use super::l2_normalize::{try_l2_normalize, L2_NORM_FLOOR};
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

// Per-cluster descriptors are kept as `(B, F, K)`, the reference's layout: flattening is
// then free (d-major) and the intra-normalisation reduces over axis 1.

/// `sum_t a[t,k] x[t,d]` for every batch item, as one batched matmul `X^T a`:
/// `(B, S, F)` and `(B, S, K)` give `(B, F, K)`. No `(B, S, F, K)` tensor is formed.
#[allow(clippy::type_complexity)]
pub(crate) fn try_assignment_weighted_sum<B: Dim, S: Dim, const F: usize, const K: usize, E, D, T>(
    a: Tensor<(B, S, Const<K>), E, D, T>,
    x: Tensor<(B, S, Const<F>), E, D, T>,
) -> Result<Tensor<(B, Const<F>, Const<K>), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    x.try_permute::<(B, Const<F>, S), Axes3<0, 2, 1>>()?.try_matmul(a)
}

/// `sum_t a[t,k]` (the soft count of cluster `k`): `(B, S, K) -> (B, K)`.
#[allow(clippy::type_complexity)]
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

/// Intra-normalisation: L2 over `d` for each cluster `k` of `(B, F, K)` descriptors, with
/// the reference's floor, `v / sqrt(max(sum_d v^2, 1e-12))`.
#[allow(clippy::type_complexity)]
pub(crate) fn try_intra_normalize<B: Dim, const F: usize, const K: usize, E, D, T>(
    v: Tensor<(B, Const<F>, Const<K>), E, D, T>,
) -> Result<Tensor<(B, Const<F>, Const<K>), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    let shape = *v.shape();
    let inv_norm = v
        .retaped::<T>()
        .try_square()?
        .try_sum::<(B, Const<K>), Axis<1>>()?
        .try_clamp(L2_NORM_FLOOR, f64::INFINITY)?
        .try_sqrt()?
        .try_recip()?;
    v.try_mul(inv_norm.try_broadcast_like::<_, Axis<1>>(&shape)?)
}

/// Flattens `(B, F, K)` descriptors **d-major**, as the reference does: feature `d` of
/// cluster `k` lands at index `d * K + k`. Free for the contiguous tensors the layers make.
#[allow(clippy::type_complexity)]
pub(crate) fn try_flatten_d_major<B: Dim, const F: usize, const K: usize, Out: Dim, E, D, T>(
    v: Tensor<(B, Const<F>, Const<K>), E, D, T>,
    out: Out,
) -> Result<Tensor<(B, Out), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    let b = v.shape().0;
    v.try_reshape_like(&(b, out))
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
    #[allow(clippy::type_complexity)]
    fn try_pool<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        a: Tensor<(B, S, Const<K>), E, D, T>,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let mass_source = a.retaped::<T>();
        let weighted = try_assignment_weighted_sum(a, x)?;
        Self::try_residual_tail(weighted, mass_source, self.centers.retaped::<T>())
    }

    /// From the aggregated `w = X^T a` (`(B, F, K)`): the residual `w - (sum_t a) c` for
    /// centres `c` (any tensor on the tape), intra-normalisation, d-major flattening and
    /// the global L2.
    #[allow(clippy::type_complexity)]
    pub(crate) fn try_residual_tail<B: Dim, S: Dim, T: Tape<E, D>>(
        weighted: Tensor<(B, Const<F>, Const<K>), E, D, T>,
        mass_source: Tensor<(B, S, Const<K>), E, D, T>,
        centers: Tensor<Rank2<F, K>, E, D, T>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let () = Self::CHECK;
        let shape = (weighted.shape().0, Const::<F>, Const::<K>);
        // The centres' own backward (if computed) joins the tape of `weighted`.
        let (centers, centers_tape) = centers.split_tape();
        let (weighted, tape) = weighted.split_tape();
        let weighted = weighted.put_tape(tape.merge(centers_tape));
        // Residual, both normalisations and flattening as one fused op where available.
        let (weighted, mass_source) =
            match crate::kernels::try_vlad_normalize::<_, _, F, K, OUT, _, _, _>(
                weighted,
                Some((mass_source, &centers)),
                L2_NORM_FLOOR,
            )? {
                Ok(pooled) => return Ok(pooled),
                Err((weighted, mass_source)) => (weighted, mass_source.expect("handed back")),
            };
        let mass = try_assignment_mass(mass_source)?.try_broadcast_like::<_, Axis<1>>(&shape)?;
        let centers = centers.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&shape)?;
        let vlad = weighted.try_sub(mass.try_mul(centers)?)?;
        let intra = try_intra_normalize(vlad)?;
        try_l2_normalize(try_flatten_d_major(intra, Const::<OUT>)?)
    }

    /// NetVLAD / NetRVLAD of [`NormalizedFrames`](super::NormalizedFrames) with the input
    /// affine moved onto the small tensors (module docs of [`super::PoolFrames`]): the
    /// residual is `scale[d] (xhat^T a)[d,k] - mass[k] (c[d,k] - shift[d])`, with `c = 0`
    /// for NetRVLAD (`centers` `None`). The frames' gradient is never formed.
    #[allow(clippy::type_complexity)]
    pub(crate) fn try_pool_normalized<B: Dim, S: Dim, T: Tape<E, D>>(
        assignment: &mut SoftAssignment<F, K, E, D>,
        frames: super::NormalizedFrames<B, S, F, E, D, T>,
        centers: Option<&Tensor<Rank2<F, K>, E, D>>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let super::NormalizedFrames { standardized, scale, shift } = frames;
        let a = assignment.try_assign_frames_train(&standardized, scale.retaped::<T>(), &shift)?;
        let weighted = crate::kernels::try_frames_weighted_sum(a.retaped::<T>(), &standardized, scale)?;
        let fk = (Const::<F>, Const::<K>);
        let shift = shift.try_broadcast_like::<_, Axis<1>>(&fk)?;
        let centers = match centers {
            Some(c) => c.retaped::<T>().try_sub(shift)?,
            None => {
                let zeros: Tensor<Rank2<F, K>, E, D> = a.device().try_zeros_like(&fk)?;
                zeros.retaped::<T>().try_sub(shift)?
            }
        };
        Self::try_residual_tail(weighted, a, centers)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    super::PoolFrames<B, S, F, E, D, T> for NetVlad<F, K, OUT, E, D>
{
    fn try_pool_frames(&mut self, frames: super::NormalizedFrames<B, S, F, E, D, T>) -> Result<Self::Output, D::Err> {
        if !crate::kernels::fused_for::<E, D>() {
            return self.try_forward_mut(frames.try_into_frames()?);
        }
        Self::try_pool_normalized(&mut self.assignment, frames, Some(&self.centers))
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
