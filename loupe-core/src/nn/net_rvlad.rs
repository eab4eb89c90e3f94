//! NetRVLAD pooling: NetVLAD without centres (paper section 2).

use super::shared::{
    try_assignment_weighted_sum, try_flatten_d_major, try_intra_normalize, try_l2_normalize,
    try_vlad_of_standardized, L2_NORM_FLOOR,
};
use super::SoftAssignment;
use dfdx::prelude::*;

pub mod builder {
    /// Builder of [`super::NetRvladPooling`]: `F` features per frame, `K` clusters, `OUT = K * F`.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct NetRvladPooling<const F: usize, const K: usize, const OUT: usize>;
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::NetRvladPooling<F, K, OUT>
where
    NetRvladPooling<F, K, OUT, E, D>: BuildModule<D, E>,
{
    type Built = NetRvladPooling<F, K, OUT, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = NetRvladPooling::<F, K, OUT, E, D>::CHECK;
        Self::Built::try_build(device)
    }
}

/// NetRVLAD, the residual-less NetVLAD (paper section 2).
///
/// `a = softmax_over_K(BN(X W))` ([`SoftAssignment`]), then per batch item
///
/// `rvlad[d,k] = sum_t a[t,k] x[t,d] = (a^T X)[k,d]`
///
/// followed by intra-normalisation (L2 over `d` for each `k`), flattening (**d-major**:
/// index `d * K + k`, as [`NetVladPooling`](super::NetVladPooling)) and a global L2 normalisation.
/// Half NetVLAD's parameters and work.
///
/// `OUT` must equal `K * F`; a wrong `OUT` fails `cargo build`.
///
/// # Shapes
/// `(B, S, F) -> (B, K * F)`, `B` and `S` any [`Dim`] (runtime or const).
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, NetRvladPooling};
/// let dev = loupe_core::device::cpu();
/// let mut rvlad: NetRvladPooling<8, 3, 24, f32, Cpu> = dev.build_module::<builder::NetRvladPooling<8, 3, 24>, f32>();
/// let x: Tensor<(usize, usize, Const<8>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// let train: Tensor<(usize, Const<24>), f32, _, _> = rvlad.forward_mut(x.trace(rvlad.alloc_grads()));
/// let eval: Tensor<(usize, Const<24>), f32, _> = rvlad.forward(x);
/// # let _ = (train, eval);
/// ```
#[derive(Debug, Clone)]
pub struct NetRvladPooling<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>> {
    /// Soft assignment of frames to the `K` clusters (with batch norm).
    pub assignment: SoftAssignment<F, K, E, D>,
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Storage<E>>
    NetRvladPooling<F, K, OUT, E, D>
{
    /// Fails the build when `OUT != K * F`.
    pub const CHECK: () = assert!(OUT == K * F, "NetRvladPooling<F, K, OUT>: OUT must equal K * F");
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for NetRvladPooling<F, K, OUT, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = NetRvladPooling<F, K, OUT, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let () = Self::CHECK;
        visitor.visit_fields(
            Self::module("assignment", |s| &s.assignment, |s| &mut s.assignment),
            |assignment| NetRvladPooling { assignment },
        )
    }
}

impl<const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>>
    NetRvladPooling<F, K, OUT, E, D>
{
    #[allow(clippy::type_complexity)]
    fn try_pool<B: Dim, S: Dim, T: Tape<E, D>>(
        a: Tensor<(B, S, Const<K>), E, D, T>,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let () = Self::CHECK;
        let weighted = try_assignment_weighted_sum(a, x)?;
        // Both normalisations and flattening as one fused op where available.
        let fused =
            crate::kernels::try_vlad_normalize::<_, S, F, K, OUT, _, _, _>(weighted, None, L2_NORM_FLOOR)?;
        let weighted = match fused {
            Ok(pooled) => return Ok(pooled),
            Err((weighted, _)) => weighted,
        };
        let intra = try_intra_normalize(weighted)?;
        try_l2_normalize(try_flatten_d_major(intra, Const::<OUT>)?)
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
    > ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for NetRvladPooling<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_train(x.retaped::<T>())?;
        Self::try_pool(a, x)
    }
}

impl<B: Dim, S: Dim, const F: usize, const K: usize, const OUT: usize, E: Dtype, D: Device<E>>
    Module<Tensor<(B, S, Const<F>), E, D>> for NetRvladPooling<F, K, OUT, E, D>
{
    type Output = Tensor<(B, Const<OUT>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        let a = self.assignment.try_assign_eval(x.clone())?;
        Self::try_pool(a, x)
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
    > super::PoolFrames<B, S, F, E, D, T> for NetRvladPooling<F, K, OUT, E, D>
{
    fn try_pool_frames(
        &mut self,
        frames: super::NormalizedFrames<B, S, F, E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        if !crate::kernels::fused_for::<E, D>() {
            return self.try_forward_mut(frames.try_into_frames()?);
        }
        // NetRVLAD is NetVLAD without centres: with the shift, the residual's centres are
        // `-shift`.
        let () = Self::CHECK;
        let super::NormalizedFrames { standardized, scale, shift } = frames;
        let a = self.assignment.try_assign_frames_train(&standardized, scale.retaped::<T>(), &shift)?;
        try_vlad_of_standardized(a, &standardized, (scale, shift), None)
    }
}
