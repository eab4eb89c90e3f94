//! Helpers the layer files share, so that no layer file imports from another: the
//! weight initialisers (one normal, one Glorot uniform), the affine map, L2
//! normalisation, the classifier's weight penalty, the VLAD aggregation steps, scalar
//! conversions, the one-hot picks that stand in for dfdx 0.13's `select` and `slice`,
//! and the plumbing of the recurrent layers' fused recurrences into dfdx's tape (see
//! [`super::recurrent`]).
//!
//! The glue between these helpers and the fused kernels ([`crate::kernels`]) lives here
//! too, next to the composed dfdx path it replaces.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::device::try_tensor_from_slice;
use crate::kernels;

// ---- weight initialisers ----

/// `N(mean, std)`, the one normal initialiser of every layer: TensorFlow's
/// `random_normal_initializer`, or its truncated normal (draws beyond `truncate` standard
/// deviations redrawn). Sampled in `f64` and converted, so layers need no
/// `Float`/`StandardNormal` bounds on `E` (which would spread to every model generic).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Normal {
    mean: f64,
    std: f64,
    truncate: Option<f64>,
}

impl Normal {
    /// `N(mean, std)`.
    pub fn new(mean: f64, std: f64) -> Normal {
        Normal { mean, std, truncate: None }
    }

    /// `N(0, 1/sqrt(fan))`, the reference's init of hidden and gating weights.
    pub fn inverse_sqrt(fan: usize) -> Normal {
        Normal::for_fan_in(0.0, fan)
    }

    /// `N(mean, 1/sqrt(fan_in))`, the paper's init of assignment weights and centres.
    pub fn for_fan_in(mean: f64, fan_in: usize) -> Normal {
        Normal::new(mean, 1.0 / (fan_in as f64).sqrt())
    }

    /// The released NeXtVLAD's initialiser (`slim.variance_scaling_initializer()`: factor
    /// 2, fan-in, truncated normal): `N(0, sqrt(1.3 * 2 / fan_in))` redrawn beyond two
    /// standard deviations (1.3 undoes the truncation's shrinking of the spread).
    pub fn variance_scaling(fan_in: usize) -> Normal {
        Normal { mean: 0.0, std: (2.6 / fan_in as f64).sqrt(), truncate: Some(2.0) }
    }
}

impl<E: Dtype> Distribution<E> for Normal {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> E {
        loop {
            let z: f64 = rng.sample(StandardNormal);
            if self.truncate.is_none_or(|t| z.abs() <= t) {
                return from_f64(self.mean + self.std * z);
            }
        }
    }
}

/// Glorot (Xavier) uniform, `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))`: TF-slim's
/// default for `fully_connected` weights, which the reference classifiers use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GlorotUniform {
    pub bound: f64,
}

impl GlorotUniform {
    pub fn new(fan_in: usize, fan_out: usize) -> GlorotUniform {
        GlorotUniform { bound: (6.0 / (fan_in + fan_out) as f64).sqrt() }
    }
}

impl<E: Dtype> Distribution<E> for GlorotUniform {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> E {
        from_f64(rng.gen_range(-self.bound..self.bound))
    }
}

// ---- affine map, L2 normalisation, weight penalty ----

/// `x W + b` for a batch of rows, keeping `x`'s tape.
#[allow(clippy::type_complexity)]
pub(crate) fn try_affine<B: Dim, const I: usize, const O: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(B, Const<I>), E, D, T>,
    weight: &Tensor<Rank2<I, O>, E, D>,
    bias: &Tensor<Rank1<O>, E, D>,
) -> Result<Tensor<(B, Const<O>), E, D, T>, D::Err> {
    try_add_bias(crate::kernels::try_weight_product(x, weight)?, bias)
}

/// `h + b`, the bias added to every row of `h`, keeping `h`'s tape.
pub(crate) fn try_add_bias<B: Dim, const O: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    h: Tensor<(B, Const<O>), E, D, T>,
    bias: &Tensor<Rank1<O>, E, D>,
) -> Result<Tensor<(B, Const<O>), E, D, T>, D::Err> {
    let rows = h.shape().0;
    h.try_add(bias.retaped::<T>().try_broadcast_like(&(rows, Const::<O>))?)
}

/// Concatenation of two pooled representations along their features, `(B, A) ++ (B, B)
/// -> (B, C)` (late fusion), keeping both tapes; fused on the `Cpu` (one parallel copy,
/// and its backward), dfdx's `concat_along` elsewhere.
///
/// # Panics
/// When `A + B != C` (the `#[video_model]` macro computes `C`, and checks it at compile
/// time) or the row counts differ.
#[allow(clippy::type_complexity)]
pub fn try_concat_features<const A: usize, const B: usize, const C: usize, E, D, T, R>(
    a: Tensor<(usize, Const<A>), E, D, T>,
    b: Tensor<(usize, Const<B>), E, D, R>,
) -> Result<Tensor<(usize, Const<C>), E, D, T>, D::Err>
where
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D> + Merge<R>,
    R: Tape<E, D>,
{
    let (a, b) = match crate::kernels::try_concat_rows(a, b)? {
        Ok(c) => return Ok(c),
        Err(inputs) => inputs,
    };
    let c = (
        a.try_realize::<(usize, usize)>().unwrap_or_else(|_| unreachable!("same rank")),
        b.try_realize::<(usize, usize)>().unwrap_or_else(|_| unreachable!("same rank")),
    )
        .try_concat_along(Axis::<1>)?;
    Ok(c.try_realize::<(usize, Const<C>)>()
        .unwrap_or_else(|c| panic!("concatenation of {A} + {B} features into {C}: {:?}", c.shape())))
}

/// Floor of the squared norm, as in the reference: `x * rsqrt(max(sum x^2, 1e-12))`.
pub const L2_NORM_FLOOR: f64 = 1e-12;

/// Fallible [`l2_normalize`](super::l2_normalize).
pub fn try_l2_normalize<S, E, D, T>(x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err>
where
    S: Shape + ReduceShape<S::LastAxis>,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    let x = match crate::kernels::try_l2_normalize_rows(x, L2_NORM_FLOOR)? {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    let shape = *x.shape();
    let inv_norm = x
        .retaped::<T>()
        .try_square()?
        .try_sum::<S::Reduced, S::LastAxis>()?
        .try_clamp(L2_NORM_FLOOR, f64::INFINITY)?
        .try_sqrt()?
        .try_recip()?;
    x.try_mul(inv_norm.try_broadcast_like(&shape)?)
}

/// `|w|^2 / 2` on a fresh tape of type `T` (fused on the `Cpu`, see [`crate::kernels`]).
pub(crate) fn try_half_squared_norm<S, Ax, E, D, T>(
    w: &Tensor<S, E, D>,
) -> Result<Tensor<Rank0, E, D, T>, D::Err>
where
    S: Shape + ReduceShapeTo<Rank0, Ax>,
    Ax: Axes,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    if let Some(penalty) = crate::kernels::try_half_squared_norm(w)? {
        return Ok(penalty);
    }
    w.retaped::<T>().try_square()?.try_sum::<Rank0, Ax>()?.try_mul(E::from_f64(0.5).unwrap_or_default())
}

// ---- VLAD aggregation (NetVLAD, NetRVLAD, NetFV, soft BoW) ----

// Per-cluster descriptors are kept as `(B, F, K)`, the reference's layout: flattening is
// then free (d-major) and the intra-normalisation reduces over axis 1.

/// `sum_t a[t,k] x[t,d]` for every batch item, as one batched matmul `X^T a`:
/// `(B, S, F)` and `(B, S, K)` give `(B, F, K)`. No `(B, S, F, K)` tensor is formed.
/// Without a tape to record on (evaluation) it runs on sgemm where that is on.
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
    if !T::OWNS_TAPE {
        let ((a, a_tape), (x, x_tape)) = (a.split_tape(), x.split_tape());
        return match crate::kernels::try_video_weighted_sums(&a, &x)? {
            Some(sums) => Ok(sums.put_tape(a_tape.merge(x_tape))),
            None => x
                .put_tape(x_tape)
                .try_permute::<(B, Const<F>, S), Axes3<0, 2, 1>>()?
                .try_matmul(a.put_tape(a_tape)),
        };
    }
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

/// NetVLAD's tail: from the aggregated `w = X^T a` (`(B, F, K)`), the residual
/// `w - (sum_t a) c` for centres `c` (any tensor on the tape), intra-normalisation,
/// d-major flattening and the global L2.
#[allow(clippy::type_complexity)]
pub(crate) fn try_vlad_residual_tail<B, S, const F: usize, const K: usize, const OUT: usize, E, D, T>(
    weighted: Tensor<(B, Const<F>, Const<K>), E, D, T>,
    mass_source: Tensor<(B, S, Const<K>), E, D, T>,
    centers: Tensor<Rank2<F, K>, E, D, T>,
) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err>
where
    B: Dim,
    S: Dim,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    const { assert!(OUT == K * F, "VLAD: OUT must equal K * F") };
    let shape = (weighted.shape().0, Const::<F>, Const::<K>);
    // The centres' own backward (if computed) joins the tape of `weighted`.
    let (centers, centers_tape) = centers.split_tape();
    let (weighted, tape) = weighted.split_tape();
    let weighted = weighted.put_tape(tape.merge(centers_tape));
    // Residual, both normalisations and flattening as one fused op where available.
    let fused = crate::kernels::try_vlad_normalize::<_, _, F, K, OUT, _, _, _>(
        weighted,
        Some((mass_source, &centers)),
        L2_NORM_FLOOR,
    )?;
    let (weighted, mass_source) = match fused {
        Ok(pooled) => return Ok(pooled),
        Err((weighted, mass_source)) => (weighted, mass_source.expect("handed back")),
    };
    let mass = try_assignment_mass(mass_source)?.try_broadcast_like::<_, Axis<1>>(&shape)?;
    let centers = centers.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&shape)?;
    let vlad = weighted.try_sub(mass.try_mul(centers)?)?;
    let intra = try_intra_normalize(vlad)?;
    try_l2_normalize(try_flatten_d_major(intra, Const::<OUT>)?)
}

/// NetVLAD / NetRVLAD of standardised frames with the input affine (`scale`, `shift`)
/// moved onto the small tensors (module docs of [`super::PoolFrames`]), given their
/// assignment `a`: the residual is `scale[d] (xhat^T a)[d,k] - mass[k] (c[d,k] -
/// shift[d])`, with `c = 0` for NetRVLAD (`centers` `None`). The frames' gradient is
/// never formed.
#[allow(clippy::type_complexity)]
pub(crate) fn try_vlad_of_standardized<B, S, const F: usize, const K: usize, const OUT: usize, E, D, T>(
    a: Tensor<(B, S, Const<K>), E, D, T>,
    standardized: &Tensor<(B, S, Const<F>), E, D>,
    (scale, shift): (Tensor<Rank1<F>, E, D, T>, Tensor<Rank1<F>, E, D, T>),
    centers: Option<&Tensor<Rank2<F, K>, E, D>>,
) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err>
where
    B: Dim,
    S: Dim,
    E: Dtype,
    D: Device<E>,
    T: Tape<E, D>,
{
    let weighted = crate::kernels::try_frames_weighted_sum(a.retaped::<T>(), standardized, scale)?;
    let fk = (Const::<F>, Const::<K>);
    let shift = shift.try_broadcast_like::<_, Axis<1>>(&fk)?;
    let centers = match centers {
        Some(c) => c.retaped::<T>().try_sub(shift)?,
        None => {
            let zeros: Tensor<Rank2<F, K>, E, D> = a.device().try_zeros_like(&fk)?;
            zeros.retaped::<T>().try_sub(shift)?
        }
    };
    try_vlad_residual_tail(weighted, a, centers)
}

// ---- scalars, picks and the recurrences' tape plumbing ----

/// The values of `t` read in place, for the recurrences' host paths, which run only on
/// the `Cpu` with `f32`/`f64` ([`crate::kernels::cpu_float`]) on the contiguous tensors
/// they make themselves. Through the same in-place view as Adam's update
/// (`kernels::view::params`; its doc says under which aliasing model it is defined): the
/// recurrences write their activations over their own projections, which a copy would
/// double (about 2 GiB at the GRU's paper size, docs/performance.md).
pub(crate) fn host<S: Shape, E: Dtype, D: Storage<E>>(t: &Tensor<S, E, D>) -> &[E] {
    kernels::expect_view(kernels::params::<E, _, _, _>(t))
}

/// [`host`] for writing: the buffer of `t` in place (made unique first, so clones of `t`
/// keep their values).
pub(crate) fn host_mut<S: Shape, E: Dtype, D: Storage<E>>(t: &mut Tensor<S, E, D>) -> &mut [E] {
    kernels::expect_view(kernels::params_mut::<E, _, _, _>(t))
}

/// Adds `delta` (laid out like `t`) to the gradient of `t` held in `grads`, in place
/// (host paths only, see [`host`]).
pub(crate) fn try_add_to_gradient<S: Shape, E: Dtype, D: Storage<E>>(
    grads: &mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
    delta: &[E],
) -> Result<(), D::Err> {
    let g = kernels::grad_mut::<E, _, _, _>(grads, t)?;
    assert_eq!(g.len(), delta.len(), "gradient of {} values, delta of {}", g.len(), delta.len());
    g.par_chunks_mut(1 << 16).zip(delta.par_chunks(1 << 16)).for_each(|(g, d)| {
        g.iter_mut().zip(d).for_each(|(g, d)| *g += *d);
    });
    Ok(())
}

/// The per-video 0/1 (or any) multipliers of `mask`, or all ones.
pub(crate) fn mask_values<B: Dim, S: Dim, E: Dtype, D: Device<E>>(
    mask: Option<&Tensor<(B, S), E, D>>,
    b: usize,
    s: usize,
) -> Vec<f64> {
    match mask {
        Some(m) => {
            assert_eq!(m.shape().concrete(), [b, s], "mask shape must be (batch, frames)");
            m.as_vec().into_iter().map(to_f64).collect()
        }
        None => vec![1.0; b * s],
    }
}

pub(crate) fn to_f64<E: Dtype>(v: E) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// `v` rounded to `E`. `f32` and `f64` by a cast (round to nearest, infinite beyond the
/// range), branch-free so that the recurrences' per-value loops vectorise (num-traits'
/// conversion checks the range, a branch per value); other dtypes through num-traits.
pub(crate) fn from_f64<E: Dtype>(v: f64) -> E {
    use std::any::Any;
    if let Some(&x) = (&(v as f32) as &dyn Any).downcast_ref::<E>() {
        return x;
    }
    if let Some(&x) = (&v as &dyn Any).downcast_ref::<E>() {
        return x;
    }
    // Every other float dtype dfdx has converts any finite f64 (possibly rounding).
    E::from_f64(v).unwrap_or_default()
}

/// A recurrence's pre-activations, rounded to `E`: `a[k] = p[k] + bias[k] + z[k]`, plus
/// `extra` when given (the LSTM's forget bias), summed in `f64` in that order. Without `z`
/// (the first frame has no recurrent product) `0.0` takes its place. Plain loops over
/// slices, which vectorise.
pub(crate) fn pre_activation<E: Dtype>(
    a: &mut [E],
    p: &[E],
    bias: &[f64],
    z: Option<&[E]>,
    extra: Option<f64>,
) {
    let (a, bias) = (&mut a[..p.len()], &bias[..p.len()]);
    match (z, extra) {
        (Some(z), Some(x)) => {
            for (((a, &p), &b), &z) in a.iter_mut().zip(p).zip(bias).zip(z) {
                *a = from_f64(to_f64(p) + b + to_f64(z) + x);
            }
        }
        (Some(z), None) => {
            for (((a, &p), &b), &z) in a.iter_mut().zip(p).zip(bias).zip(z) {
                *a = from_f64(to_f64(p) + b + to_f64(z));
            }
        }
        (None, Some(x)) => {
            for ((a, &p), &b) in a.iter_mut().zip(p).zip(bias) {
                *a = from_f64(to_f64(p) + b + 0.0 + x);
            }
        }
        (None, None) => {
            for ((a, &p), &b) in a.iter_mut().zip(p).zip(bias) {
                *a = from_f64(to_f64(p) + b + 0.0);
            }
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

pub(crate) use kernels::Activation;

/// `f` applied in place to `values[range]`: eight values at a time on `f32`
/// (`kernels::activate`, within two ulps), one at a time in `f64` otherwise.
#[allow(clippy::ptr_arg)] // a `Vec`, not a slice: it is downcast through `Any`, which needs `Sized`
pub(crate) fn activate<E: Dtype>(f: Activation, values: &mut Vec<E>, range: std::ops::Range<usize>) {
    if let Some(v) = (values as &mut dyn std::any::Any).downcast_mut::<Vec<f32>>() {
        return kernels::activate(f, &mut v[range]);
    }
    for v in &mut values[range] {
        let x = to_f64(*v);
        *v = from_f64(match f {
            Activation::Exp => x.exp(),
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
        });
    }
}

/// A recurrent layer's product with its recurrent weight `U` (`H x N`), one per frame,
/// on host values: `h (B, H) x U` forward ([`Self::try_forward`]) or `d (B, N) x U^T`
/// backward ([`Self::try_backward`], the gradient a recurrent product sends back to the
/// state). Built once per pass over the frames.
///
/// Where loupe's own sgemm runs for `(E, D)` (`f32` on the `Cpu`, fused kernels and sgemm
/// on: [`kernels::set_gemm`], `LOUPE_GEMM=0`), `U` (or `U^T`, through strides) is packed
/// once ([`kernels::gemm_packed::PackedB`]: 16 MB at `1024 x 4096`) and every frame's product
/// is [`kernels::gemm_packed::sgemm_packed`]; `sgemm` would pack it again on every frame, which
/// at a batch of 16 costs more than the multiplications. Otherwise (`f64`, other devices,
/// sgemm off) each frame is dfdx's matmul on a tensor made from the host values.
pub(crate) struct RecurrentProduct<const H: usize, E: Dtype, D: Storage<E>> {
    way: Way<H, E, D>,
}

enum Way<const H: usize, E: Dtype, D: Storage<E>> {
    /// `U` (forward) or `U^T` (backward) packed for sgemm.
    Packed(kernels::gemm_packed::PackedB),
    /// `h U` with dfdx's matmul.
    Forward(Tensor<(Const<H>, usize), E, D>),
    /// `d U^T` with dfdx's matmul (`U^T` a permuted view of `U`).
    Backward(Tensor<(usize, Const<H>), E, D>),
}

impl<const H: usize, E: Dtype, D: Device<E>> RecurrentProduct<H, E, D> {
    /// `h (B, H) x U (H, N)`, `(B, N)`.
    pub fn try_forward(u: &Tensor<(Const<H>, usize), E, D>) -> Result<Self, D::Err> {
        let way = match Self::packed(u, false) {
            Some(packed) => Way::Packed(packed),
            None => Way::Forward(u.clone()),
        };
        Ok(RecurrentProduct { way })
    }

    /// `d (B, N) x U^T (N, H)`, `(B, H)`.
    pub fn try_backward(u: &Tensor<(Const<H>, usize), E, D>) -> Result<Self, D::Err> {
        let way = match Self::packed(u, true) {
            Some(packed) => Way::Packed(packed),
            None => Way::Backward(u.clone().try_permute::<(usize, Const<H>), Axes2<1, 0>>()?),
        };
        Ok(RecurrentProduct { way })
    }

    /// `U` (or `U^T`) packed, when sgemm runs for `(E, D)` and `U` is a contiguous `Cpu`
    /// tensor of `f32` (read in place).
    fn packed(
        u: &Tensor<(Const<H>, usize), E, D>,
        transposed: bool,
    ) -> Option<kernels::gemm_packed::PackedB> {
        use kernels::gemm::MatRef;
        use kernels::gemm_packed::PackedB;
        if !kernels::gemm_for::<E, D>() {
            return None;
        }
        let u = MatRef::row_major(kernels::params::<f32, _, _, _>(u)?, H, u.shape().1).ok()?;
        Some(PackedB::new(if transposed { u.transpose() } else { u }))
    }

    /// The product for one frame: `x` (`batch` rows, row-major) times `U` or `U^T`, into
    /// `out` (`batch` rows of the product; reused frame after frame).
    ///
    /// `x` and `out` are `Vec`s rather than slices so that on the sgemm path they are read
    /// as the `Vec<f32>` they are (a type check, no copy).
    #[allow(clippy::ptr_arg)]
    pub fn try_apply(&self, dev: &D, x: &Vec<E>, batch: usize, out: &mut Vec<E>) -> Result<(), D::Err> {
        match &self.way {
            Way::Packed(u) => {
                use kernels::gemm::{MatMut, MatRef};
                use kernels::gemm_packed::sgemm_packed;
                let (k, n) = u.shape();
                let x: &Vec<f32> = (x as &dyn std::any::Any).downcast_ref().expect("packed for f32 only");
                let out: &mut Vec<f32> =
                    (out as &mut dyn std::any::Any).downcast_mut().expect("packed for f32 only");
                out.resize(batch * n, 0.0);
                sgemm_packed(
                    MatRef::row_major(x, batch, k).expect("batch rows of the weight's inputs"),
                    u,
                    MatMut::row_major(out, batch, n).expect("sized above"),
                    false,
                )
                .expect("the shapes chain");
            }
            Way::Forward(u) => {
                *out = try_tensor_from_slice(dev, x, (batch, Const::<H>))?.try_matmul(u.clone())?.as_vec();
            }
            Way::Backward(ut) => {
                let n = ut.shape().0;
                *out = try_tensor_from_slice(dev, x, (batch, n))?.try_matmul(ut.clone())?.as_vec();
            }
        }
        Ok(())
    }
}

/// Adds `sum_rows a^T b` for `a (R, H)` and `b (R, N)` to the gradient of `weight` (`H N`
/// values): the gradient of a recurrent weight from every step's state and gate gradient
/// at once. On sgemm where it runs for `(E, D)`, accumulated into the gradient in place;
/// otherwise dfdx's matmul.
pub(crate) fn try_add_weight_gradient<W: Shape, const H: usize, E: Dtype, D: Device<E>>(
    grads: &mut Gradients<E, D>,
    weight: &Tensor<W, E, D>,
    a: &Tensor<(usize, Const<H>), E, D>,
    b: &Tensor<(usize, usize), E, D>,
) -> Result<(), D::Err> {
    if kernels::try_add_transposed_product(grads, weight, a, b)? {
        return Ok(());
    }
    let product = a.clone().try_permute::<(Const<H>, usize), Axes2<1, 0>>()?.try_matmul(b.clone())?;
    try_add_to_gradient(grads, weight, host(&product))
}

/// Every step's previous state, `(B S, H)`: row `(b, t)` holds the `H` channels from
/// `offset` on of `states[b][t - 1]` (rows of `width`), zeros at `t = 0`; the left factor
/// of a recurrent weight's gradient.
pub(crate) fn try_previous_states<const H: usize, E: Dtype, D: Device<E>>(
    dev: &D,
    states: &[E],
    (nb, ns): (usize, usize),
    width: usize,
    offset: usize,
) -> Result<Tensor<(usize, Const<H>), E, D>, D::Err> {
    let mut prev = dev.try_zeros_like(&(nb * ns, Const::<H>))?;
    host_mut(&mut prev).par_chunks_mut(H).enumerate().filter(|(row, _)| row % ns > 0).for_each(|(row, p)| {
        let from = (row - 1) * width + offset;
        p.copy_from_slice(&states[from..from + H]);
    });
    Ok(prev)
}

/// Adds the column sums of `values` (rows of `bias`'s size) to the gradient of `bias`,
/// summed in `f64` by all threads: a bias's gradient from its layer's gate gradients.
pub(crate) fn try_add_bias_gradient<S: Shape, E: Dtype, D: Storage<E>>(
    grads: &mut Gradients<E, D>,
    bias: &Tensor<S, E, D>,
    values: &[E],
) -> Result<(), D::Err> {
    let width = bias.shape().num_elements();
    let rows = values.len() / width.max(1);
    let chunk = rows.div_ceil(4 * rayon::current_num_threads().max(1)).max(1);
    let sums = values
        .par_chunks(chunk * width)
        .map(|block| {
            let mut acc = vec![0.0f64; width];
            for row in block.chunks_exact(width) {
                acc.iter_mut().zip(row).for_each(|(a, v)| *a += to_f64(*v));
            }
            acc
        })
        .reduce(
            || vec![0.0f64; width],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        );
    let delta: Vec<E> = sums.into_iter().map(from_f64).collect();
    try_add_to_gradient(grads, bias, &delta)
}

/// Entry `t` of axis 1 of `x` `(B, S, N)`, as `(B, N)`: `sum_s x[:, s, :] [s = t]`.
///
/// A product with a one-hot mask rather than dfdx's `select`, whose `(B,)` index tensor
/// of `usize` would be built from host memory on every call: dfdx's allocation cache
/// keeps every dropped buffer but hands out `usize` buffers to nobody, so memory grew by
/// one index tensor per call (see [`crate::device::try_tensor_from_slice`]). Not `slice`
/// either, whose backward assigns instead of adding. The result is exact (`x * 1 = x`,
/// and adding the other entries' `x * 0 = 0` changes nothing), and so is the gradient.
/// It costs `B S N` products where `select` copies `B N`: the recurrent layers pick once
/// per frame only on the composed path (devices other than `Cpu`).
pub(crate) fn try_pick<B: Dim, S: Dim, N: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(B, S, N), E, D, T>,
    t: usize,
) -> Result<Tensor<(B, N), E, D, T>, D::Err> {
    let (b, s, n) = *x.shape();
    let hot: Vec<E> = (0..s.size()).map(|i| if i == t { E::ONE } else { E::default() }).collect();
    let hot: Tensor<(S,), E, D> = try_tensor_from_slice(x.device(), &hot, (s,))?;
    x.try_mul(hot.try_broadcast_like::<_, Axes2<0, 2>>(&(b, s, n))?)?.try_sum::<(B, N), Axis<1>>()
}

/// Column `t` of a `(B, S)` mask, as `(B,)` ([`try_pick`] for an untaped 2-D tensor).
pub(crate) fn try_pick_column<B: Dim, S: Dim, E: Dtype, D: Device<E>>(
    mask: &Tensor<(B, S), E, D>,
    t: usize,
) -> Result<Tensor<(B,), E, D>, D::Err> {
    let (b, s) = *mask.shape();
    let picked = try_pick(mask.clone().try_reshape_like(&(b, s, Const::<1>))?, t)?;
    picked.try_reshape_like(&(b,))
}

/// `(B, S, N)` states -> `(B, N)`, the state after the last step: on the `Cpu` the last
/// `N` channels of the states read as `(B, S N)` ([`kernels::try_channels`], all threads),
/// elsewhere [`try_pick`] (no `usize` index tensor, and not dfdx 0.13's `slice`, whose
/// backward **assigns** its gradient into the input's instead of adding).
#[allow(clippy::type_complexity)]
pub(crate) fn try_last_step<B: Dim, S: Dim, N: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    states: Tensor<(B, S, N), E, D, T>,
) -> Result<Tensor<(B, N), E, D, T>, D::Err> {
    let (b, s, n) = *states.shape();
    let (last, width) = (s.size() - 1, n.size());
    // Contiguous (the recurrences make their states), so both reshapes are free.
    let rows = states.try_reshape_like(&(b, s.size() * width))?;
    match kernels::try_channels(rows, last * width, width, (b, n))? {
        Ok(state) => Ok(state),
        Err(rows) => try_pick(rows.try_reshape_like(&(b, s, n))?, last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn variance_scaling_redraws_beyond_two_standard_deviations() {
        let mut rng = StdRng::seed_from_u64(7);
        let std = (2.6f64 / 10.0).sqrt();
        let truncated: Vec<f64> =
            (0..10_000).map(|_| Normal::variance_scaling(10).sample(&mut rng)).collect();
        assert!(truncated.iter().all(|v| v.abs() <= 2.0 * std));
        // Untruncated, about 4.6% of the draws of N(0, std) lie beyond two deviations.
        let plain: Vec<f64> = (0..10_000).map(|_| Normal::new(0.0, std).sample(&mut rng)).collect();
        let beyond = plain.iter().filter(|v| v.abs() > 2.0 * std).count();
        assert!((300..700).contains(&beyond), "{beyond} of 10000 beyond two deviations");
    }

    /// With sgemm on, both directions are exactly `sgemm` on the same values (so the
    /// packed path ran); with it off, and in f64, dfdx's matmul, equal within rounding.
    #[test]
    fn recurrent_product_runs_packed_sgemm_on_f32_and_dfdx_otherwise() {
        use crate::kernels::gemm::{sgemm, MatMut, MatRef};
        const H: usize = 7;
        let (n, batch) = (37, 3);
        let dev = crate::device::cpu_seeded(5);
        let u: Tensor<(Const<H>, usize), f32, Cpu> = dev.sample_normal_like(&(Const, n));
        let h: Vec<f32> = dev.sample_normal_like(&(batch, Const::<H>)).as_vec();
        let d: Vec<f32> = dev.sample_normal_like(&(batch, n)).as_vec();
        let uv = u.as_vec();
        let mut hu = vec![0f32; batch * n];
        let uref = MatRef::row_major(&uv, H, n).unwrap();
        sgemm(
            MatRef::row_major(&h, batch, H).unwrap(),
            uref,
            MatMut::row_major(&mut hu, batch, n).unwrap(),
            false,
        )
        .unwrap();
        let mut dut = vec![0f32; batch * H];
        let dref = MatRef::row_major(&d, batch, n).unwrap();
        sgemm(dref, uref.transpose(), MatMut::row_major(&mut dut, batch, H).unwrap(), false).unwrap();

        let run = |gemm: bool| {
            crate::kernels::set_gemm(gemm);
            // Into buffers of the wrong length: the product sizes them.
            let (mut f, mut b) = (vec![9.0; 1], vec![9.0; 2 * batch * H]);
            RecurrentProduct::try_forward(&u).unwrap().try_apply(&dev, &h, batch, &mut f).unwrap();
            RecurrentProduct::try_backward(&u).unwrap().try_apply(&dev, &d, batch, &mut b).unwrap();
            crate::kernels::set_gemm(true);
            (f, b)
        };
        let on = run(true);
        assert_eq!((&on.0, &on.1), (&hu, &dut));
        let off = run(false);
        let u64: Tensor<(Const<H>, usize), f64, Cpu> = u.clone().to_dtype::<f64>();
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let (mut f, mut b) = (Vec::new(), Vec::new());
        RecurrentProduct::try_forward(&u64).unwrap().try_apply(&dev, &widen(&h), batch, &mut f).unwrap();
        RecurrentProduct::try_backward(&u64).unwrap().try_apply(&dev, &widen(&d), batch, &mut b).unwrap();
        let f64s = (f, b);
        for (p, q, r) in
            on.0.iter()
                .zip(&off.0)
                .zip(&f64s.0)
                .chain(on.1.iter().zip(&off.1).zip(&f64s.1))
                .map(|((p, q), r)| (p, q, r))
        {
            assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
            assert!((*p as f64 - r).abs() <= 1e-5 * (1.0 + r.abs()), "{p} vs {r}");
        }
    }
}
