//! The frame preprocessing of frame-level models (docs/reference.md section 1).

use dfdx::prelude::*;

use super::shared::{try_l2_normalize, L2_NORM_FLOOR};
use super::BatchNorm;

pub mod builder {
    /// Builder of [`super::FrameInput`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct FrameInput<const F: usize>;
}

impl<const F: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::FrameInput<F> {
    type Built = FrameInput<F, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// Frame preprocessing of the clustering models: each frame's concatenated streams
/// (`F` values, e.g. rgb 1024 + audio 128) are L2-normalised as one vector,
/// `x / sqrt(max(sum x^2, 1e-12))`, then batch-normalised over all `B*S` frames of the
/// batch: `y = BN(L2(x))`. Split the result into streams with [`Stream`].
///
/// Training (`ModuleMut`, any tape) uses the batch statistics of the `B*S` frames,
/// evaluation (`Module`, no tape) the running averages.
///
/// # Shapes
/// - `(B, S, F) -> (B, S, F)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, FrameInput, Stream};
/// let dev = loupe_core::device::cpu();
/// let mut input: FrameInput<6, f32, Cpu> = dev.build_module::<builder::FrameInput<6>, f32>();
/// let frames: Tensor<(usize, Const<3>, Const<6>), f32, _> = dev.sample_normal_like(&(2, Const, Const));
/// let x = input.forward_mut(frames.trace(input.alloc_grads()));
/// // Channels 0..4 are the "video" stream, 4..6 the "audio" one.
/// let video = Stream::<0, 4>.forward(x.retaped::<OwnedTape<f32, Cpu>>());
/// let audio = Stream::<4, 2>.forward(x);
/// assert_eq!(video.shape().concrete(), [2, 3, 4]);
/// assert_eq!(audio.shape().concrete(), [2, 3, 2]);
/// ```
#[derive(Debug, Clone)]
pub struct FrameInput<const F: usize, E: Dtype, D: Storage<E>> {
    /// The input batch norm over the `F` channels.
    pub bn: BatchNorm<F, E, D>,
}

impl<const F: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for FrameInput<F, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = FrameInput<F, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("bn", |s| &s.bn, |s| &mut s.bn), |bn| FrameInput { bn })
    }
}

impl<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    ModuleMut<Tensor<(B, S, Const<F>), E, D, T>> for FrameInput<F, E, D>
{
    type Output = Tensor<(B, S, Const<F>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        self.bn.try_forward_mut(try_l2_normalize(x)?)
    }
}

impl<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>> Module<Tensor<(B, S, Const<F>), E, D>>
    for FrameInput<F, E, D>
{
    type Output = Tensor<(B, S, Const<F>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D>) -> Result<Self::Output, D::Err> {
        if let Some(y) = self.try_fused_eval(&x, 0, *x.shape())? {
            return Ok(y);
        }
        self.bn.try_forward(try_l2_normalize(x)?)
    }
}

impl<const F: usize, E: Dtype, D: Device<E>> FrameInput<F, E, D> {
    /// Channels `[start, start + len)` of the evaluation output `BN(L2(x))`, as a tensor
    /// of `shape` (`x`'s rows, `len` channels), by the fused kernel: one pass over `x`,
    /// the same bits as the two layers one after the other. `None` when the kernel does
    /// not apply (device, dtype, layout, fused kernels off).
    fn try_fused_eval<S: Shape, Y: Shape>(
        &self,
        x: &Tensor<S, E, D>,
        start: usize,
        shape: Y,
    ) -> Result<Option<Tensor<Y, E, D>>, D::Err> {
        let running = (&self.bn.running_mean, &self.bn.running_var);
        crate::kernels::try_input_stage_eval(
            x,
            L2_NORM_FLOOR,
            self.bn.kernel_tensors(),
            running,
            start,
            shape,
        )
    }
}

/// The input stage of `input = raw_frames`: the frames as they are, with neither the L2
/// normalisation nor the batch norm of [`FrameInput`]. Lin et al.'s released NeXtVLAD code
/// (`train.py` and `eval.py` of linrongc/youtube-8m) feeds its poolings the dequantised
/// features this way (after undoing the rgb PCA whitening, which needs Google's PCA
/// eigenvalues and is left to the data).
///
/// # Shapes
/// Any shape, unchanged.
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::RawFrames;
/// let dev = loupe_core::device::cpu();
/// let frames = dev.tensor([[[3.0f32, 4.0], [0.5, -2.0]]]);
/// assert_eq!(RawFrames.forward(frames.clone()).array(), frames.array());
/// ```
#[derive(Debug, Default, Clone, Copy, Eq, PartialEq)]
pub struct RawFrames;

impl<E: Dtype, D: Device<E>> BuildOnDevice<D, E> for RawFrames {
    type Built = RawFrames;
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for RawFrames {
    type To<E2: Dtype, D2: Device<E2>> = RawFrames;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        _: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        Ok(Some(RawFrames))
    }
}

impl NonMutableModule for RawFrames {}

impl<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for RawFrames {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        Ok(x)
    }
}

/// One input stream: channels `[START, START + LEN)` of the last axis, keeping the tape
/// (the gradient flows back into exactly those channels, added to any other use's). On
/// the `Cpu` the channels are copied out, and their gradient added back, by all threads.
///
/// `START + LEN <= F` (and `LEN > 0`) is checked when the layer is instantiated for an
/// `F`-channel input; `cargo build` reports a violation (`cargo check` does not evaluate
/// it):
///
/// ```compile_fail
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::Stream;
/// let dev = loupe_core::device::cpu();
/// let frames: Tensor<(usize, Const<3>, Const<6>), f32, _> = dev.zeros_like(&(2, Const, Const));
/// let _ = Stream::<4, 3>.forward(frames); // channels 4..7 of 6
/// ```
///
/// # Shapes
/// - `(B, S, F) -> (B, S, LEN)`
/// - `(B, F) -> (B, LEN)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::Stream;
/// let dev = loupe_core::device::cpu();
/// let frames = dev.tensor([[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]]).realize::<(usize, Const<2>, Const<3>)>();
/// let audio = Stream::<2, 1>.forward(frames);
/// assert_eq!(audio.as_vec(), [3.0, 6.0]);
/// ```
#[derive(Debug, Default, Clone, Copy, Eq, PartialEq)]
pub struct Stream<const START: usize, const LEN: usize>;

/// The frames of an evaluation forward as its streams take them ([`Stream::try_eval`]),
/// from [`FrameInput::try_eval_frames`]: where the fused kernels run, the raw frames, each
/// stream normalised straight from them; elsewhere the input stage's output `BN(L2(x))`,
/// computed once for all streams.
#[derive(Debug, Clone)]
pub struct EvalFrames<B: Dim, S: Dim, const F: usize, E: Dtype, D: Storage<E>> {
    frames: Tensor<(B, S, Const<F>), E, D>,
    normalized: bool,
}

impl<B: Dim, S: Dim, const F: usize, E: Dtype, D: Storage<E>> EvalFrames<B, S, F, E, D> {
    /// The frames' shape, `(B, S, F)`.
    pub fn shape(&self) -> (B, S, Const<F>) {
        *self.frames.shape()
    }
}

impl<const F: usize, E: Dtype, D: Device<E>> FrameInput<F, E, D> {
    /// The raw `frames` of an evaluation forward, ready for its streams to take
    /// ([`Stream::try_eval`]).
    pub fn try_eval_frames<B: Dim, S: Dim>(
        &self,
        frames: Tensor<(B, S, Const<F>), E, D>,
    ) -> Result<EvalFrames<B, S, F, E, D>, D::Err> {
        if crate::kernels::fused_for::<E, D>() {
            return Ok(EvalFrames { frames, normalized: false });
        }
        Ok(EvalFrames { frames: self.try_forward(frames)?, normalized: true })
    }
}

impl<const START: usize, const LEN: usize> Stream<START, LEN> {
    /// This stream of `input`'s evaluation output: the same values as
    /// `self.forward(input.forward(frames))`. On the `Cpu` (the fused kernels) each
    /// stream is normalised straight from the raw frames, in one pass that reads every
    /// frame once and writes only this stream's channels, with the same bits; elsewhere
    /// it is the slice of the input stage's output. The evaluation forward of
    /// `#[video_model]` takes its streams this way.
    ///
    /// ```
    /// # use dfdx::prelude::*;
    /// # use loupe_core::nn::{builder, FrameInput, Stream};
    /// let dev = loupe_core::device::cpu();
    /// let input: FrameInput<6, f32, Cpu> = dev.build_module::<builder::FrameInput<6>, f32>();
    /// let frames: Tensor<(usize, Const<3>, Const<6>), f32, _> = dev.sample_normal_like(&(2, Const, Const));
    /// let ready = input.try_eval_frames(frames.clone()).unwrap();
    /// let audio = Stream::<4, 2>.try_eval(&input, &ready).unwrap();
    /// assert_eq!(audio.as_vec(), Stream::<4, 2>.forward(input.forward(frames)).as_vec());
    /// ```
    pub fn try_eval<B: Dim, S: Dim, const F: usize, E: Dtype, D: Device<E>>(
        &self,
        input: &FrameInput<F, E, D>,
        frames: &EvalFrames<B, S, F, E, D>,
    ) -> Result<Tensor<(B, S, Const<LEN>), E, D>, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = StreamBounds::<START, LEN, F>::CHECK;
        if frames.normalized {
            return self.try_forward(frames.frames.clone());
        }
        let (rows, steps, _) = frames.shape();
        if let Some(stream) = input.try_fused_eval(&frames.frames, START, (rows, steps, Const::<LEN>))? {
            return Ok(stream);
        }
        // Raw frames the kernel does not take (a layout other than row-major).
        self.try_forward(input.try_forward(frames.frames.clone())?)
    }
}

struct StreamBounds<const START: usize, const LEN: usize, const F: usize>;

impl<const START: usize, const LEN: usize, const F: usize> StreamBounds<START, LEN, F> {
    const CHECK: () = assert!(
        LEN > 0 && START + LEN <= F,
        "Stream<START, LEN>: channels [START, START + LEN) must be non-empty and lie within the input's F channels"
    );
}

impl<const START: usize, const LEN: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for Stream<START, LEN>
{
    type Built = Stream<START, LEN>;
}

impl<const START: usize, const LEN: usize, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for Stream<START, LEN>
{
    type To<E2: Dtype, D2: Device<E2>> = Stream<START, LEN>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        _: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        Ok(Some(Stream))
    }
}

impl<const START: usize, const LEN: usize> NonMutableModule for Stream<START, LEN> {}

impl<
        B: Dim,
        S: Dim,
        const F: usize,
        const START: usize,
        const LEN: usize,
        E: Dtype,
        D: Device<E>,
        T: Tape<E, D>,
    > Module<Tensor<(B, S, Const<F>), E, D, T>> for Stream<START, LEN>
{
    type Output = Tensor<(B, S, Const<LEN>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = StreamBounds::<START, LEN, F>::CHECK;
        let (rows, frames, _) = *x.shape();
        let x = match crate::kernels::try_channels(x, START, LEN, (rows, frames, Const::<LEN>))? {
            Ok(stream) => return Ok(stream),
            Err(x) => x,
        };
        // The slice is a fresh contiguous tensor: the reshape back to `Const<LEN>` is free.
        x.try_slice((.., .., START..START + LEN))?.try_reshape_like(&(rows, frames, Const::<LEN>))
    }
}

impl<B: Dim, const F: usize, const START: usize, const LEN: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, Const<F>), E, D, T>> for Stream<START, LEN>
{
    type Output = Tensor<(B, Const<LEN>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<F>), E, D, T>) -> Result<Self::Output, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = StreamBounds::<START, LEN, F>::CHECK;
        let rows = x.shape().0;
        let x = match crate::kernels::try_channels(x, START, LEN, (rows, Const::<LEN>))? {
            Ok(stream) => return Ok(stream),
            Err(x) => x,
        };
        x.try_slice((.., START..START + LEN))?.try_reshape_like(&(rows, Const::<LEN>))
    }
}
