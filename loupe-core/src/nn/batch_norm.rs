//! Batch normalisation as the reference implementation does it.

use dfdx::prelude::*;

/// Epsilon added to the variance (docs/reference.md section 1: 1e-3, not dfdx's 1e-5).
pub const BATCH_NORM_EPSILON: f64 = 1e-3;
/// Decay of the running averages used at evaluation (0.999).
pub const BATCH_NORM_DECAY: f64 = 0.999;

/// Decay of the running averages at update number `updates` (0-based):
/// `min(0.999, (1 + t) / (10 + t))`, TensorFlow's `ExponentialMovingAverage` with
/// `num_updates`. With a flat 0.999 the averages stay near their initial values (0 and 1)
/// for thousands of steps, so a short run evaluates with statistics its layers never
/// produced; after ~10,000 updates the two agree.
pub fn batch_norm_decay(updates: f64) -> f64 {
    BATCH_NORM_DECAY.min((1.0 + updates) / (10.0 + updates))
}

pub mod builder {
    /// Builder of [`super::BatchNorm`] over `C` channels.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct BatchNorm<const C: usize>;
}

impl<const C: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::BatchNorm<C>
where
    BatchNorm<C, E, D>: BuildModule<D, E>,
{
    type Built = BatchNorm<C, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Batch normalisation over the last axis, treating every other axis as rows.
///
/// Training (`ModuleMut`, any tape): each channel is normalised with the batch mean and the
/// **biased** variance over all rows (for a `(B, S, C)` input that is all `B*S` frames),
/// then scaled and shifted; the running averages move towards the batch statistics with
/// decay [`BATCH_NORM_DECAY`] (lower for the first updates: [`batch_norm_decay`]). Evaluation (`Module`, no tape) uses the running averages,
/// so predictions never depend on the batch they are computed in.
///
/// `y = scale * (x - mean) / sqrt(var + 1e-3) + shift`
///
/// # Shapes
/// - `(B, C) -> (B, C)`
/// - `(B, S, C) -> (B, S, C)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, BatchNorm};
/// let dev = loupe_core::device::cpu();
/// let mut bn: BatchNorm<4, f32, Cpu> = dev.build_module::<builder::BatchNorm<4>, f32>();
/// let x: Tensor<(usize, Const<3>, Const<4>), f32, _> = dev.sample_normal_like(&(2, Const, Const));
/// let train = bn.forward_mut(x.trace(bn.alloc_grads()));
/// let eval = bn.forward(x.clone());
/// assert_eq!(train.shape(), eval.shape());
/// ```
#[derive(Debug, Clone)]
pub struct BatchNorm<const C: usize, E: Dtype, D: Storage<E>> {
    /// Learned scale (gamma), starts at 1.
    pub scale: Tensor<Rank1<C>, E, D>,
    /// Learned shift (beta), starts at 0.
    pub shift: Tensor<Rank1<C>, E, D>,
    /// Running mean used at evaluation, starts at 0; not trained.
    pub running_mean: Tensor<Rank1<C>, E, D>,
    /// Running (biased) variance used at evaluation, starts at 1; not trained.
    pub running_var: Tensor<Rank1<C>, E, D>,
    /// Training passes so far (one element), which sets the running averages' decay.
    pub updates: Tensor<Rank1<1>, E, D>,
}

impl<const C: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for BatchNorm<C, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = BatchNorm<C, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("scale", |s| &s.scale, |s| &mut s.scale, TensorOptions::reset_to_ones()),
                Self::tensor("shift", |s| &s.shift, |s| &mut s.shift, TensorOptions::reset_to_zeros()),
                Self::tensor(
                    "running_mean",
                    |s| &s.running_mean,
                    |s| &mut s.running_mean,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
                Self::tensor(
                    "running_var",
                    |s| &s.running_var,
                    |s| &mut s.running_var,
                    TensorOptions::detached(|t| t.try_fill_with_ones()),
                ),
                Self::tensor(
                    "updates",
                    |s| &s.updates,
                    |s| &mut s.updates,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
            ),
            |(scale, shift, running_mean, running_var, updates)| BatchNorm {
                scale,
                shift,
                running_mean,
                running_var,
                updates,
            },
        )
    }
}

impl<const C: usize, E: Dtype, D: Device<E>> BatchNorm<C, E, D> {
    /// Training-mode normalisation of `x` whose channel axis is the last one; `Ax` are the
    /// other axes (the rows).
    pub fn try_forward_train<S, Ax: Axes, T>(
        &mut self,
        x: Tensor<S, E, D, T>,
    ) -> Result<Tensor<S, E, D, T>, D::Err>
    where
        S: Shape + HasAxes<Ax> + ReduceShapeTo<Rank1<C>, Ax>,
        T: Tape<E, D>,
    {
        let x = match self.try_fused_train(x, false)? {
            Ok(y) => return Ok(y),
            Err(x) => x,
        };
        let shape = *x.shape();
        let updates = self.updates.as_vec()[0].to_f64().unwrap_or(0.0);
        let decay = batch_norm_decay(updates);
        self.updates = self.updates.clone().try_add(E::ONE)?;
        let mean = x.retaped::<T>().try_mean::<Rank1<C>, Ax>()?;
        self.running_mean.try_axpy(decay, &mean, 1.0 - decay)?;
        let centered = x.try_sub(mean.try_broadcast_like(&shape)?)?;
        let var = centered.retaped::<T>().try_square()?.try_mean::<Rank1<C>, Ax>()?;
        self.running_var.try_axpy(decay, &var, 1.0 - decay)?;
        let inv_std = var.try_add(E::from_f64(BATCH_NORM_EPSILON).unwrap())?.try_sqrt()?.try_recip()?;
        let scale = self.scale.retaped::<T>().try_mul(inv_std)?.try_broadcast_like(&shape)?;
        let shift = self.shift.retaped::<T>().try_broadcast_like(&shape)?;
        centered.try_mul(scale)?.try_add(shift)
    }

    /// What the fused batch-norm kernels read of this layer.
    pub(crate) fn kernel_tensors(&self) -> crate::kernels::BatchNormTensors<'_, C, E, D> {
        crate::kernels::BatchNormTensors {
            scale: &self.scale,
            shift: &self.shift,
            epsilon: BATCH_NORM_EPSILON,
        }
    }

    /// Training-mode normalisation (and a softmax over the channels when `softmax` is
    /// set) by the fused kernel, which updates the running averages as
    /// [`Self::try_forward_train`] does; `Err(x)` when the kernel does not apply.
    #[allow(clippy::type_complexity)]
    pub(crate) fn try_fused_train<S: Shape, T: Tape<E, D>>(
        &mut self,
        x: Tensor<S, E, D, T>,
        softmax: bool,
    ) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
        // Field by field: the running averages are borrowed mutably alongside.
        let tensors = crate::kernels::BatchNormTensors {
            scale: &self.scale,
            shift: &self.shift,
            epsilon: BATCH_NORM_EPSILON,
        };
        let running = (&mut self.running_mean, &mut self.running_var);
        // The running averages' decay follows the update count, as in the composed path.
        let updates = &self.updates;
        let decay = || batch_norm_decay(updates.as_vec()[0].to_f64().unwrap_or(0.0));
        let y = crate::kernels::try_batch_norm_train(x, tensors, running, decay, softmax)?;
        if y.is_ok() {
            self.updates = self.updates.clone().try_add(E::ONE)?;
        }
        Ok(y)
    }

    /// The training statistics of `L2(x)` (each row of `x` L2-normalised with the
    /// squared-norm floor `floor`, `C` channels last) by the fused kernel, the running
    /// averages and the update count moved as [`Self::try_fused_train`] moves them; the
    /// normalisation itself, with a unit scale and a zero shift, is left to
    /// [`crate::kernels::try_standardized_channels`]. `None` when the kernel does not
    /// apply.
    pub(crate) fn try_fused_standardize<S: Shape>(
        &mut self,
        x: &Tensor<S, E, D>,
        floor: f64,
    ) -> Result<Option<crate::kernels::Standardization<C, E, D>>, D::Err> {
        let running = (&mut self.running_mean, &mut self.running_var);
        let updates = &self.updates;
        let decay = || batch_norm_decay(updates.as_vec()[0].to_f64().unwrap_or(0.0));
        let standardization =
            crate::kernels::try_standardize_train(x, floor, BATCH_NORM_EPSILON, running, decay)?;
        if standardization.is_some() {
            self.updates = self.updates.clone().try_add(E::ONE)?;
        }
        Ok(standardization)
    }

    /// Evaluation-mode normalisation, followed by a softmax over the channels when
    /// `softmax` is set, by the fused kernel (no tape); `Err(x)` when the kernel does not
    /// apply.
    #[allow(clippy::type_complexity)]
    pub(crate) fn try_fused_eval<S: Shape, T: Tape<E, D>>(
        &self,
        x: Tensor<S, E, D, T>,
        softmax: bool,
    ) -> Result<Result<Tensor<S, E, D, T>, Tensor<S, E, D, T>>, D::Err> {
        let tensors = self.kernel_tensors();
        crate::kernels::try_batch_norm_eval(x, tensors, (&self.running_mean, &self.running_var), softmax)
    }

    /// Evaluation-mode normalisation with the running averages.
    pub fn try_forward_eval<S, Ax: Axes, T>(
        &self,
        x: Tensor<S, E, D, T>,
    ) -> Result<Tensor<S, E, D, T>, D::Err>
    where
        S: Shape + HasAxes<Ax> + ReduceShapeTo<Rank1<C>, Ax>,
        T: Tape<E, D>,
    {
        let x = match self.try_fused_eval(x, false)? {
            Ok(y) => return Ok(y),
            Err(x) => x,
        };
        let shape = *x.shape();
        let inv_std = self
            .running_var
            .clone()
            .try_add(E::from_f64(BATCH_NORM_EPSILON).unwrap())?
            .try_sqrt()?
            .try_recip()?;
        let scale = self.scale.clone().try_mul(inv_std)?;
        // y = x * a + (shift - mean * a), one multiply-add per element.
        let offset = self.shift.clone().try_sub(self.running_mean.clone().try_mul(scale.clone())?)?;
        x.try_mul(scale.try_broadcast_like(&shape)?)?.try_add(offset.try_broadcast_like(&shape)?)
    }
}

macro_rules! batch_norm_modules {
    ($(($($dim:ident),*) over $ax:ty;)*) => {$(
        impl<$($dim: Dim,)* const C: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
            ModuleMut<Tensor<($($dim,)* Const<C>), E, D, T>> for BatchNorm<C, E, D>
        {
            type Output = Tensor<($($dim,)* Const<C>), E, D, T>;
            type Error = D::Err;
            fn try_forward_mut(&mut self, x: Tensor<($($dim,)* Const<C>), E, D, T>) -> Result<Self::Output, D::Err> {
                self.try_forward_train::<_, $ax, T>(x)
            }
        }

        impl<$($dim: Dim,)* const C: usize, E: Dtype, D: Device<E>>
            Module<Tensor<($($dim,)* Const<C>), E, D>> for BatchNorm<C, E, D>
        {
            type Output = Tensor<($($dim,)* Const<C>), E, D>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<($($dim,)* Const<C>), E, D>) -> Result<Self::Output, D::Err> {
                self.try_forward_eval::<_, $ax, NoneTape>(x)
            }
        }
    )*};
}

batch_norm_modules! {
    (B) over Axis<0>;
    (B, S) over Axes2<0, 1>;
}
