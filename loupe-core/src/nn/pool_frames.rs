//! Training on frames that need no gradient: the input batch norm's affine kept apart,
//! so the poolings never form the gradient of their input.
//!
//! A frame-level model's training step needs the gradients of its parameters, never of
//! its input frames. With the input batch norm `y = gamma xhat + beta` written out
//! (`xhat` the standardised frames, data), a clustering pooling can move `gamma` and
//! `beta` onto its own small tensors:
//!
//! - assignment: `y W = xhat (diag(gamma) W) + beta^T W`; the last term is the same for
//!   every frame, so the assignment's training batch norm removes it (its gradient is
//!   exactly zero) and only its running mean records it;
//! - aggregation: `sum_t a[t,k] (y[t,d] - c[d,k]) = gamma[d] (xhat^T a)[d,k] - mass[k]
//!   (c[d,k] - beta[d])`.
//!
//! The big products then have the frames as a constant operand, and loupe's ops for that
//! case ([`crate::kernels`]) skip the frames' gradient: two of the largest products of
//! the backward pass. [`PoolFrames`] is the entry point; its default (every other
//! pooling, and any device without the fused kernels) applies the affine and runs the
//! layer's usual training forward.

use dfdx::prelude::*;

use super::{FrameInput, Stream};

/// A training batch of frames after the input's L2 normalisation and batch-norm
/// standardisation, with the batch norm's learned affine (`scale`, `shift`) kept apart:
/// the frames the pooling sees are `standardized * scale + shift`.
#[derive(Debug)]
pub struct NormalizedFrames<B: Dim, S: Dim, const F: usize, E: Dtype, D: Storage<E>, T> {
    /// `(L2(x) - mean) / sqrt(var + eps)` with the batch statistics: data, no tape.
    pub standardized: Tensor<(B, S, Const<F>), E, D>,
    /// The input batch norm's scale (gamma) for these channels, on the tape.
    pub scale: Tensor<Rank1<F>, E, D, T>,
    /// The input batch norm's shift (beta) for these channels, on the tape.
    pub shift: Tensor<Rank1<F>, E, D, T>,
}

impl<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    NormalizedFrames<B, S, F, E, D, T>
{
    /// The frames themselves, `standardized * scale + shift`, on the tape (through the
    /// scale and shift only).
    #[allow(clippy::type_complexity)]
    pub fn try_into_frames(self) -> Result<Tensor<(B, S, Const<F>), E, D, T>, D::Err> {
        crate::kernels::try_frames_affine(&self.standardized, self.scale, self.shift)
    }
}

/// A training batch's frames after the input's L2 normalisation and batch-norm
/// standardisation with the batch statistics, `(L2(x) - mean) / sqrt(var + eps)`, the
/// running averages already moved ([`FrameInput::try_standardize_train`]). With the
/// fused kernels the statistics are kept apart from the raw frames and each stream is
/// standardised straight from them when it is taken ([`Stream::try_normalized`]): no
/// full-width temporary. Elsewhere the standardised frames are one tensor.
#[derive(Debug, Clone)]
pub struct StandardizedFrames<B: Dim, S: Dim, const F: usize, E: Dtype, D: Storage<E>> {
    /// The raw frames with `standardization`, or the standardised frames without.
    frames: Tensor<(B, S, Const<F>), E, D>,
    standardization: Option<crate::kernels::Standardization<F, E, D>>,
}

impl<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>> StandardizedFrames<B, S, F, E, D> {
    /// Frames standardised elsewhere, taken as they are.
    pub fn from_standardized(frames: Tensor<(B, S, Const<F>), E, D>) -> Self {
        Self { frames, standardization: None }
    }

    /// Channels `[START, START + LEN)` of the standardised frames.
    fn try_channels<const START: usize, const LEN: usize>(
        &self,
    ) -> Result<Tensor<(B, S, Const<LEN>), E, D>, D::Err> {
        let (rows, steps, _) = *self.frames.shape();
        match &self.standardization {
            Some(s) => {
                crate::kernels::try_standardized_channels(&self.frames, s, START, (rows, steps, Const::<LEN>))
            }
            None => Stream::<START, LEN>.try_forward(self.frames.clone()),
        }
    }
}

impl<const F: usize, E: Dtype, D: Device<E>> FrameInput<F, E, D> {
    /// Training-mode standardisation of frames that need no gradient:
    /// `(L2(x) - mean) / sqrt(var + eps)` over the batch's `B*S` frames, without the
    /// batch norm's affine. Updates the running averages exactly as the training forward
    /// does. Pair with [`Self::try_normalized`] or [`Stream::try_normalized`].
    pub fn try_standardize_train<B: Dim, S: Dim>(
        &mut self,
        x: Tensor<(B, S, Const<F>), E, D>,
    ) -> Result<StandardizedFrames<B, S, F, E, D>, D::Err> {
        if let Some(s) = self.bn.try_fused_standardize(&x, super::L2_NORM_FLOOR)? {
            return Ok(StandardizedFrames { frames: x, standardization: Some(s) });
        }
        let mut unit = self.bn.clone();
        unit.scale = x.device().try_ones_like(&self.bn.scale)?;
        unit.shift = x.device().try_zeros_like(&self.bn.shift)?;
        let standardized = unit.try_forward_mut(super::try_l2_normalize(x)?)?;
        self.bn.running_mean = unit.running_mean;
        self.bn.running_var = unit.running_var;
        self.bn.updates = unit.updates;
        Ok(StandardizedFrames::from_standardized(standardized))
    }

    /// All channels of standardised frames with this input's affine; `tape` goes on the
    /// scale.
    #[allow(clippy::type_complexity)]
    pub fn try_normalized<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        standardized: &StandardizedFrames<B, S, F, E, D>,
        tape: T,
    ) -> Result<NormalizedFrames<B, S, F, E, D, T>, D::Err> {
        let frames = match standardized.standardization {
            Some(_) => standardized.try_channels::<0, F>()?,
            None => standardized.frames.clone(),
        };
        Ok(NormalizedFrames {
            standardized: frames,
            scale: self.bn.scale.clone().put_tape(tape),
            shift: self.bn.shift.retaped::<T>(),
        })
    }
}

impl<const START: usize, const LEN: usize> Stream<START, LEN> {
    /// This stream's channels of standardised frames with `input`'s affine for them;
    /// `tape` goes on the scale.
    #[allow(clippy::type_complexity)]
    pub fn try_normalized<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        input: &FrameInput<F, E, D>,
        standardized: &StandardizedFrames<B, S, F, E, D>,
        tape: T,
    ) -> Result<NormalizedFrames<B, S, LEN, E, D, T>, D::Err> {
        let frames = standardized.try_channels::<START, LEN>()?;
        let channels = |t: Tensor<Rank1<F>, E, D, T>| {
            t.try_slice((START..START + LEN,))?.try_reshape_like(&(Const::<LEN>,))
        };
        Ok(NormalizedFrames {
            standardized: frames,
            scale: channels(input.bn.scale.clone().put_tape(tape))?,
            shift: channels(input.bn.shift.retaped::<T>())?,
        })
    }
}

/// A pooling that can train on [`NormalizedFrames`]: frames that need no gradient.
///
/// The default applies the affine ([`NormalizedFrames::try_into_frames`]) and runs the
/// layer's training forward. NetVLAD, NetRVLAD and soft BoW override it on devices with
/// the fused kernels, and never compute their input's gradient. Either way the output
/// and every parameter's gradient equal those of the usual path (tested to rounding).
pub trait PoolFrames<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>:
    ModuleMut<Tensor<(B, S, Const<F>), E, D, T>, Error = D::Err>
{
    /// Training-mode pooling of normalised frames.
    fn try_pool_frames(
        &mut self,
        frames: NormalizedFrames<B, S, F, E, D, T>,
    ) -> Result<Self::Output, D::Err> {
        let x = frames.try_into_frames()?;
        self.try_forward_mut(x)
    }
}

macro_rules! default_pool_frames {
    ($($layer:ty => [$($generics:tt)*];)*) => {$(
        impl<B: Dim, S: Dim, const F: usize, $($generics)* E: Dtype, D: Device<E>, T: Tape<E, D>>
            PoolFrames<B, S, F, E, D, T> for $layer
        where
            Self: ModuleMut<Tensor<(B, S, Const<F>), E, D, T>, Error = D::Err>,
        {
        }
    )*};
}

default_pool_frames! {
    super::AveragePooling<F> => [];
    super::MaxPooling<F> => [];
    super::NetFvPooling<F, K, OUT, E, D> => [const K: usize, const OUT: usize,];
    super::Recurrent<L1, L2, OUT> => [L1, L2, const OUT: usize,];
    super::NeXtVladPooling<F, FE, G, K, GK, OUT, E, D> => [const FE: usize, const G: usize, const K: usize, const GK: usize, const OUT: usize,];
}
