//! NeXtVLAD pooling (Lin, Xiao, Fan 2018, "NeXtVLAD: An Efficient Neural Network to
//! Aggregate Frame-level Features for Large-scale Video Classification").

use super::shared::Normal;
use super::BatchNorm;
use dfdx::prelude::*;

pub mod builder {
    /// Builder of [`super::NeXtVladPooling`]: `F` features per frame, expanded to `FE`, split into
    /// `G` groups, `K` clusters; `GK = G * K` and `OUT = K * FE / G`.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct NeXtVladPooling<
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
    >;
}

impl<
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
    > BuildOnDevice<D, E> for builder::NeXtVladPooling<F, FE, G, K, GK, OUT>
where
    E: Dtype,
    D: Device<E>,
    NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>: BuildModule<D, E>,
{
    type Built = NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = NeXtVladPooling::<F, FE, G, K, GK, OUT, E, D>::CHECK;
        Self::Built::try_build(device)
    }
}

/// NeXtVLAD pooling (Lin et al. 2018, eqs. 3-6, as in its released code): NetVLAD over
/// `G` lower-dimensional groups of an expanded frame, weighted by a group attention.
///
/// For each frame `x_t` (`F` values):
///
/// ```text
/// x'_t       = x_t We + be                                  (expansion to FE = lambda * F)
/// alpha_g(t) = sigmoid(x'_t Wa + ba)_g                      (group attention, g < G)
/// a_gk(t)    = softmax_k(BN(x'_t Wg))_{g,k}                 (per-group soft assignment)
/// v[d,k]     = sum_{t,g} alpha_g(t) a_gk(t) (x'_{t,g,d} - c[d,k])   (d < FE / G)
/// ```
///
/// where `x'_{t,g,d} = x'_t[g * FE/G + d]` is group `g` of the expanded frame and the
/// assignment logits `x'_t Wg` (`FE x GK`) are read as `G x K`, group-major. Then
/// intra-normalisation (L2 over `d` for each `k`, with the floor of
/// [`super::L2_NORM_FLOOR`]), flattening **d-major** (index `d * K + k`) and a batch norm
/// over the `OUT = K * FE / G` values ([`BatchNorm`]: batch statistics in training,
/// running averages in evaluation). The assignment batch norm normalises each of the `GK`
/// logits over all `B * S` frames. The paper's dropout after pooling is left to the model
/// (no dropout here). Unlike NetVLAD there is no global L2 normalisation (the released
/// code has none).
///
/// Valid frames: the input is frames alone (all valid) or `(frames, mask)` with a
/// `(B, S)` mask of 0/1 ([`super::valid_frame_mask`]) multiplying the attention, as the
/// released code does: a masked frame contributes nothing to `v`. As released, masked
/// frames still enter the assignment batch norm's batch statistics in training, so
/// padding is invisible only in evaluation.
///
/// Initialisation as released: `We`, `Wa`, `Wg` and `c` from slim's variance scaling
/// (truncated normal, std `sqrt(2.6 / fan_in)`; fan-in `F`, `FE`, `FE`, `FE/G`), biases
/// zeros, batch norms scale 1 / shift 0.
///
/// `FE` must be a multiple of `G`, `GK = G * K` and `OUT = K * FE / G` (stable Rust cannot
/// compute them in types; wrong values fail `cargo build`). The paper's best model has
/// `lambda = 2` (`FE = 2F`), `G = 8`, `K = 128`.
///
/// # Shapes
/// - `(B, S, F) -> (B, K * FE / G)`
/// - `((B, S, F), (B, S)) -> (B, K * FE / G)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, valid_frame_mask, NeXtVladPooling};
/// let dev = loupe_core::device::cpu();
/// // F = 4 expanded to 8, 2 groups of 4, 3 clusters: 3 * 8 / 2 = 12 outputs.
/// type Pool = builder::NeXtVladPooling<4, 8, 2, 3, 6, 12>;
/// let mut pool: NeXtVladPooling<4, 8, 2, 3, 6, 12, f32, Cpu> = dev.build_module::<Pool, f32>();
/// let x: Tensor<(usize, usize, Const<4>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// let mask = valid_frame_mask(&dev, &[5, 3], (2, 5));
/// let train: Tensor<(usize, Const<12>), f32, _, _> = pool.forward_mut((x.trace(pool.alloc_grads()), mask));
/// let eval: Tensor<(usize, Const<12>), f32, _> = pool.forward(x);
/// # let _ = (train, eval);
/// ```
#[derive(Debug, Clone)]
pub struct NeXtVladPooling<
    const F: usize,
    const FE: usize,
    const G: usize,
    const K: usize,
    const GK: usize,
    const OUT: usize,
    E: Dtype,
    D: Storage<E>,
> {
    /// Expansion weights `We`, `F x FE`.
    pub expansion_weights: Tensor<Rank2<F, FE>, E, D>,
    /// Expansion bias `be`, `FE`, zeros.
    pub expansion_bias: Tensor<Rank1<FE>, E, D>,
    /// Group attention weights `Wa`, `FE x G`.
    pub attention_weights: Tensor<Rank2<FE, G>, E, D>,
    /// Group attention bias `ba`, `G`, zeros.
    pub attention_bias: Tensor<Rank1<G>, E, D>,
    /// Assignment weights `Wg`, `FE x GK` (column `g * K + k`).
    pub assignment_weights: Tensor<Rank2<FE, GK>, E, D>,
    /// Batch norm of the `GK` assignment logits.
    pub assignment_bn: BatchNorm<GK, E, D>,
    /// Cluster centres `c`, `FE/G x K` stored flat d-major (`c[d,k]` at `d * K + k`).
    pub centers: Tensor<Rank1<OUT>, E, D>,
    /// Batch norm of the `OUT` pooled values.
    pub vlad_bn: BatchNorm<OUT, E, D>,
}

impl<
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
    > NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>
where
    E: Dtype,
    D: Storage<E>,
{
    /// Fails the build unless `G > 0`, `FE % G == 0`, `GK == G * K` and `OUT == K * FE / G`.
    pub const CHECK: () = assert!(
        G > 0 && FE.is_multiple_of(G) && GK == G * K && OUT == K * (FE / G),
        "NeXtVladPooling<F, FE, G, K, GK, OUT>: FE must be a multiple of G, GK = G * K, OUT = K * FE / G"
    );
}

impl<
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
    > TensorCollection<E, D> for NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>
where
    E: Dtype,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = NeXtVladPooling<F, FE, G, K, GK, OUT, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let () = Self::CHECK;
        visitor.visit_fields(
            (
                (
                    Self::tensor(
                        "expansion_weights",
                        |s| &s.expansion_weights,
                        |s| &mut s.expansion_weights,
                        TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::variance_scaling(F))),
                    ),
                    Self::tensor(
                        "expansion_bias",
                        |s| &s.expansion_bias,
                        |s| &mut s.expansion_bias,
                        TensorOptions::reset_to_zeros(),
                    ),
                    Self::tensor(
                        "attention_weights",
                        |s| &s.attention_weights,
                        |s| &mut s.attention_weights,
                        TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::variance_scaling(FE))),
                    ),
                    Self::tensor(
                        "attention_bias",
                        |s| &s.attention_bias,
                        |s| &mut s.attention_bias,
                        TensorOptions::reset_to_zeros(),
                    ),
                ),
                (
                    Self::tensor(
                        "assignment_weights",
                        |s| &s.assignment_weights,
                        |s| &mut s.assignment_weights,
                        TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::variance_scaling(FE))),
                    ),
                    Self::module("assignment_bn", |s| &s.assignment_bn, |s| &mut s.assignment_bn),
                    Self::tensor(
                        "centers",
                        |s| &s.centers,
                        |s| &mut s.centers,
                        TensorOptions::reset_with(|t| {
                            t.try_fill_with_distr(Normal::variance_scaling(FE / G))
                        }),
                    ),
                    Self::module("vlad_bn", |s| &s.vlad_bn, |s| &mut s.vlad_bn),
                ),
            ),
            |(
                (expansion_weights, expansion_bias, attention_weights, attention_bias),
                (assignment_weights, assignment_bn, centers, vlad_bn),
            )| NeXtVladPooling {
                expansion_weights,
                expansion_bias,
                attention_weights,
                attention_bias,
                assignment_weights,
                assignment_bn,
                centers,
                vlad_bn,
            },
        )
    }
}

impl<
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
    > NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>
where
    E: Dtype,
    D: Device<E>,
{
    /// `x' = x We + be` and the assignment logits `x' Wg` (before batch norm).
    #[allow(clippy::type_complexity)]
    fn try_expand<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<F>), E, D, T>,
    ) -> Result<(Tensor<(B, S, Const<FE>), E, D, T>, Tensor<(B, S, Const<GK>), E, D, T>), D::Err> {
        let () = Self::CHECK;
        let expanded = x.try_matmul(self.expansion_weights.retaped::<T>())?;
        let shape = *expanded.shape();
        let expanded = expanded.try_add(self.expansion_bias.retaped::<T>().try_broadcast_like(&shape)?)?;
        let logits = expanded.retaped::<T>().try_matmul(self.assignment_weights.retaped::<T>())?;
        Ok((expanded, logits))
    }

    /// Everything after the assignment batch norm, up to (not including) the output
    /// batch norm.
    #[allow(clippy::type_complexity)]
    fn try_aggregate<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        expanded: Tensor<(B, S, Const<FE>), E, D, T>,
        normalised: Tensor<(B, S, Const<GK>), E, D, T>,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let (b, s, _) = *expanded.shape();
        let (rows, group) = (s.size() * G, FE / G);
        let attention_shape = (b, s, Const::<G>);
        let attention = expanded
            .retaped::<T>()
            .try_matmul(self.attention_weights.retaped::<T>())?
            .try_add(self.attention_bias.retaped::<T>().try_broadcast_like(&attention_shape)?)?
            .try_sigmoid()?;
        let attention = match mask {
            Some(mask) => {
                assert_eq!(
                    mask.shape().concrete(),
                    [b.size(), s.size()],
                    "mask shape must be (batch, frames)"
                );
                attention.try_mul(mask.clone().try_broadcast_like::<_, Axis<2>>(&attention_shape)?)?
            }
            None => attention,
        };
        // Rows are (frame, group) pairs: (B, S*G, K) assignments, (B, S*G, FE/G) groups.
        let assignment_shape = (b, rows, Const::<K>);
        let a = normalised.try_reshape_like(&assignment_shape)?.try_softmax::<Axis<2>>()?.try_mul(
            attention.try_reshape_like(&(b, rows))?.try_broadcast_like::<_, Axis<2>>(&assignment_shape)?,
        )?;
        let groups = expanded.try_reshape_like(&(b, rows, group))?;
        let weighted =
            groups.try_permute::<(B, usize, usize), Axes3<0, 2, 1>>()?.try_matmul(a.retaped::<T>())?;
        let vlad_shape = (b, group, Const::<K>);
        let mass = a.try_sum::<(B, Const<K>), Axis<1>>()?.try_broadcast_like::<_, Axis<1>>(&vlad_shape)?;
        let centers = self
            .centers
            .retaped::<T>()
            .try_reshape_like(&(group, Const::<K>))?
            .try_broadcast_like::<_, Axis<0>>(&vlad_shape)?;
        let vlad = weighted.try_sub(mass.try_mul(centers)?)?;
        // Intra-normalisation: L2 over d for each cluster.
        let inv_norm = vlad
            .retaped::<T>()
            .try_square()?
            .try_sum::<(B, Const<K>), Axis<1>>()?
            .try_clamp(super::L2_NORM_FLOOR, f64::INFINITY)?
            .try_sqrt()?
            .try_recip()?;
        vlad.try_mul(inv_norm.try_broadcast_like::<_, Axis<1>>(&vlad_shape)?)?
            .try_reshape_like(&(b, Const::<OUT>))
    }

    #[allow(clippy::type_complexity)]
    fn try_pool_train<B: Dim, S: Dim, T: Tape<E, D>>(
        &mut self,
        x: Tensor<(B, S, Const<F>), E, D, T>,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err> {
        let (b, s, _) = *x.shape();
        let (expanded, logits) = self.try_expand(x)?;
        // Without frames there are no statistics to take: keep the running averages clean.
        let normalised = if b.size() * s.size() == 0 {
            self.assignment_bn.try_forward_eval::<_, Axes2<0, 1>, T>(logits)?
        } else {
            self.assignment_bn.try_forward_train::<_, Axes2<0, 1>, T>(logits)?
        };
        let vlad = self.try_aggregate(expanded, normalised, mask)?;
        if b.size() == 0 {
            self.vlad_bn.try_forward_eval::<_, Axis<0>, T>(vlad)
        } else {
            self.vlad_bn.try_forward_train::<_, Axis<0>, T>(vlad)
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_pool_eval<B: Dim, S: Dim>(
        &self,
        x: Tensor<(B, S, Const<F>), E, D>,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D>, D::Err> {
        let (expanded, logits) = self.try_expand(x)?;
        let normalised = self.assignment_bn.try_forward_eval::<_, Axes2<0, 1>, NoneTape>(logits)?;
        let vlad = self.try_aggregate(expanded, normalised, mask)?;
        self.vlad_bn.try_forward_eval::<_, Axis<0>, NoneTape>(vlad)
    }
}

impl<
        B: Dim,
        S: Dim,
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
        T,
    > ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        self.try_pool_train(x, None)
    }
}

impl<
        B: Dim,
        S: Dim,
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
        T,
    > ModuleMut<(Tensor<(B, S, Const<F>), E, D, T>, Tensor<(B, S), E, D>)>
    for NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(
        &mut self,
        (x, mask): (Tensor<(B, S, Const<F>), E, D, T>, Tensor<(B, S), E, D>),
    ) -> Result<Self::Output, D::Err> {
        self.try_pool_train(x, Some(&mask))
    }
}

impl<
        B: Dim,
        S: Dim,
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
    > Module<Tensor<(B, S, Const<F>), E, D>> for NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>
where
    E: Dtype,
    D: Device<E>,
{
    type Output = Tensor<(B, Const<OUT>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        self.try_pool_eval(x, None)
    }
}

impl<
        B: Dim,
        S: Dim,
        const F: usize,
        const FE: usize,
        const G: usize,
        const K: usize,
        const GK: usize,
        const OUT: usize,
        E,
        D,
    > Module<(Tensor<(B, S, Const<F>), E, D>, Tensor<(B, S), E, D>)>
    for NeXtVladPooling<F, FE, G, K, GK, OUT, E, D>
where
    E: Dtype,
    D: Device<E>,
{
    type Output = Tensor<(B, Const<OUT>), E, D>;
    type Error = D::Err;
    fn try_forward(
        &self,
        (x, mask): (Tensor<(B, S, Const<F>), E, D>, Tensor<(B, S), E, D>),
    ) -> Result<Self::Output, D::Err> {
        self.try_pool_eval(x, Some(&mask))
    }
}
