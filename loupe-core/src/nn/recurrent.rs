//! Recurrent pooling: [`Recurrent`], two stacked recurrent layers generic over the cell
//! ([`RecurrentCell`], implemented by [`super::LstmCell`] and [`super::GruCell`]; the
//! paper's LSTM and GRU baselines are the aliases [`super::LstmPooling`] and [`super::GruPooling`]),
//! and the valid-frame mask they read.
//!
//! A new recurrent cell is one file: the cell's parameters (`TensorCollection`), its
//! recurrence ([`RecurrentCell::try_states`]) and how its per-step states give the next
//! layer's input and the final state; the two-layer wrapper, the mask handling of the
//! wrapper, the empty-video case and the output size check come from here.
//!
//! dfdx 0.13 has no recurrent layers, and a recurrence built from its ops records some 20
//! taped ops per frame and layer (12,000 backward closures and every intermediate kept
//! for a 300-frame, 2-layer pass). On the `Cpu` (f32, f64, with the fused kernels on,
//! [`crate::kernels`]) loupe instead runs each layer's whole recurrence as one op with
//! its own backward (backpropagation through time): the input projection of all frames
//! is one taped matmul before it, each step's recurrent product is one untaped
//! `(B, H) x (H, nH)` matmul, the gate arithmetic (biases included) is a fused loop
//! shared among the threads by video, and the backward keeps only the gate activations.
//! In training the frames are data ([`Recurrent::try_pool_data`]): the first layer's
//! input projection never forms their gradient. Everywhere else (`Cuda`, other dtypes, or with
//! `LOUPE_FUSED=0`) the recurrence is composed from dfdx ops frame by frame, so it runs
//! on the device; `tests/fused_kernels.rs` checks that both paths agree, outputs and
//! every gradient.

use std::marker::PhantomData;

use dfdx::prelude::*;

/// The 0/1 mask of valid frames, `(B, S)`: `mask[b][t] = 1` for `t < lengths[b]`, else 0.
///
/// The recurrent layers take `(frames, mask)`; a video's state stops changing at its
/// first masked frame, so whatever padding follows its `lengths[b]` frames does not
/// change its output. Lengths beyond `S` count as `S`.
///
/// # Panics
/// When `lengths.len()` is not the batch size of `shape`.
///
/// ```
/// # use dfdx::prelude::*;
/// let dev = loupe_core::device::cpu();
/// let mask: Tensor<(usize, Const<4>), f32, _> = loupe_core::nn::valid_frame_mask(&dev, &[2, 9], (2, Const));
/// assert_eq!(mask.as_vec(), [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
/// ```
pub fn valid_frame_mask<B: Dim, S: Dim, E: Dtype, D: Device<E>>(
    dev: &D,
    lengths: &[usize],
    shape: (B, S),
) -> Tensor<(B, S), E, D> {
    let (b, s) = (shape.0.size(), shape.1.size());
    assert_eq!(lengths.len(), b, "one length per video");
    let values: Vec<E> = lengths
        .iter()
        .flat_map(|&n| (0..s).map(move |t| if t < n { E::ONE } else { E::default() }))
        .collect();
    crate::device::try_tensor_from_slice(dev, &values, shape).expect("allocating the frame mask")
}

/// One recurrent layer as [`Recurrent`] stacks it: a cell that reads `(B, S, Input)` frames
/// and keeps a state per step.
///
/// The tape of the layer's input travels on the states ([`Self::try_states`]);
/// [`Self::try_outputs`] and [`Self::try_final`] read them, so a caller that needs both
/// gives one of them a `retaped` copy (as [`Recurrent`] does) and merges the tapes by
/// combining the results.
pub trait RecurrentCell<E: Dtype, D: Device<E>>: TensorCollection<E, D> {
    /// Features per frame the cell reads (`Const<I>`).
    type Input: Dim;
    /// Width of the per-step output the next layer reads (`Const<H>`).
    type Output: Dim;
    /// Width of the per-step state (LSTM: `[c_t, h_t]`, `2H`; GRU: `h_t`, `H`).
    type State: Dim;
    /// Width of the final state the pooling reports for this layer.
    const FINAL: usize;

    /// Every step's state, `(B, S, State)`, for frames `x` and an optional `(B, S)` mask
    /// (all frames valid without one; at a masked frame the state carries over).
    #[allow(clippy::type_complexity)]
    fn try_states<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Self::Input), E, D, T>,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, S, Self::State), E, D, T>, D::Err>;

    /// [`Self::try_states`] of frames that need no gradient: `x` is data and `tape` the
    /// tape the states go on (the parameters' gradients). The default puts the tape back
    /// on `x`; the LSTM and GRU cells never form `x`'s gradient on the `Cpu`.
    #[allow(clippy::type_complexity)]
    fn try_states_of_data<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Self::Input), E, D>,
        tape: T,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, S, Self::State), E, D, T>, D::Err> {
        self.try_states(x.put_tape(tape), mask)
    }

    /// Every step's output `h_t`, `(B, S, Output)`, read from the states.
    #[allow(clippy::type_complexity)]
    fn try_outputs<B: Dim, S: Dim, T: Tape<E, D>>(
        states: Tensor<(B, S, Self::State), E, D, T>,
    ) -> Result<Tensor<(B, S, Self::Output), E, D, T>, D::Err>;

    /// The state after the last step, `(B, FINAL)`. Needs at least one step.
    #[allow(clippy::type_complexity)]
    fn try_final<B: Dim, S: Dim, T: Tape<E, D>>(
        states: Tensor<(B, S, Self::State), E, D, T>,
    ) -> Result<Tensor<(B, usize), E, D, T>, D::Err>;
}

/// Two stacked recurrent layers read the frames in the order given; the representation is
/// the final state of both layers, concatenated (`OUT = L1::FINAL + L2::FINAL`).
///
/// Layer 1 reads the frames, layer 2 reads layer 1's per-step output. "Final" is the state
/// after a video's last valid frame: the input is either frames alone (all `S` frames
/// valid) or `(frames, mask)` with `mask` a `(B, S)` tensor of 0/1 ([`valid_frame_mask`]
/// makes it from lengths); at a masked frame the state is carried over unchanged, so
/// padding after a video's true length does not change its output. A video without
/// frames (`S = 0`) pools to zeros.
///
/// No batch norm: training and evaluation compute the same function, so this is a
/// [`NonMutableModule`] whose [`Module`] accepts any tape. The checkpoint keys are
/// `layer1.*` and `layer2.*`, then the cell's own names.
///
/// `OUT` must equal the sum of both layers' final state sizes; a wrong `OUT` fails
/// `cargo build` (when the layer is built or run).
///
/// The paper's baselines are the aliases [`super::LstmPooling`] and [`super::GruPooling`]; their docs
/// have examples.
///
/// # Shapes
/// - `(B, S, L1::Input) -> (B, OUT)`
/// - `((B, S, L1::Input), (B, S)) -> (B, OUT)`
#[derive(Debug, Clone)]
pub struct Recurrent<L1, L2, const OUT: usize> {
    /// First layer, reading the frames.
    pub layer1: L1,
    /// Second layer, reading the first layer's per-step output.
    pub layer2: L2,
}

/// `OUT == L1::FINAL + L2::FINAL`, checked at compile time.
struct OutputSize<L1, L2, const OUT: usize, E, D>(PhantomData<(L1, L2, E, D)>);

impl<L1: RecurrentCell<E, D>, L2: RecurrentCell<E, D>, const OUT: usize, E: Dtype, D: Device<E>>
    OutputSize<L1, L2, OUT, E, D>
{
    const CHECK: () = assert!(
        OUT == L1::FINAL + L2::FINAL,
        "Recurrent<L1, L2, OUT>: OUT must equal the final state sizes of both layers (LstmPooling: 4 * H, GruPooling: 2 * H)"
    );
}

impl<L1, L2, const OUT: usize> NonMutableModule for Recurrent<L1, L2, OUT> {}

impl<L1: RecurrentCell<E, D>, L2: RecurrentCell<E, D>, const OUT: usize, E: Dtype, D: Device<E>>
    TensorCollection<E, D> for Recurrent<L1, L2, OUT>
{
    type To<E2: Dtype, D2: Device<E2>> = Recurrent<
        <L1 as TensorCollection<E, D>>::To<E2, D2>,
        <L2 as TensorCollection<E, D>>::To<E2, D2>,
        OUT,
    >;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let () = OutputSize::<L1, L2, OUT, E, D>::CHECK;
        visitor.visit_fields(
            (
                Self::module("layer1", |s| &s.layer1, |s| &mut s.layer1),
                Self::module("layer2", |s| &s.layer2, |s| &mut s.layer2),
            ),
            |(layer1, layer2)| Recurrent { layer1, layer2 },
        )
    }
}

impl<L1, L2, const OUT: usize> Recurrent<L1, L2, OUT> {
    /// Training-mode pooling of frames that need no gradient (the training step's frames):
    /// `frames` are data, `tape` carries the parameters' gradients, and the first layer
    /// never forms the frames' gradient ([`RecurrentCell::try_states_of_data`]; on the
    /// `Cpu` that skips a product as large as its input projection). The output and every
    /// parameter's gradient are the [`Module`] forward's with the frames on the tape. A
    /// `mask` as for `(frames, mask)` input.
    #[allow(clippy::type_complexity)]
    pub fn try_pool_data<B: Dim, S: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        frames: Tensor<(B, S, L1::Input), E, D>,
        tape: T,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err>
    where
        L1: RecurrentCell<E, D>,
        L2: RecurrentCell<E, D, Input = L1::Output>,
    {
        self.try_pool(frames.put_tape(tape), mask, true)
    }

    /// Both layers over `x`; with `data`, `x`'s gradient is not needed.
    #[allow(clippy::type_complexity)]
    fn try_pool<B: Dim, S: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, L1::Input), E, D, T>,
        mask: Option<&Tensor<(B, S), E, D>>,
        data: bool,
    ) -> Result<Tensor<(B, Const<OUT>), E, D, T>, D::Err>
    where
        L1: RecurrentCell<E, D>,
        L2: RecurrentCell<E, D, Input = L1::Output>,
    {
        let () = OutputSize::<L1, L2, OUT, E, D>::CHECK;
        let (b, s, _) = *x.shape();
        if s.size() == 0 {
            let (x, tape) = x.split_tape();
            return Ok(x.device().try_zeros_like(&(b, Const::<OUT>))?.put_tape(tape));
        }
        let states1 = if data {
            let (x, tape) = x.split_tape();
            self.layer1.try_states_of_data(x, tape, mask)?
        } else {
            self.layer1.try_states(x, mask)?
        };
        let states2 = self.layer2.try_states(L1::try_outputs(states1.retaped::<T>())?, mask)?;
        (L1::try_final(states1)?, L2::try_final(states2)?)
            .try_concat_along(Axis::<1>)?
            .try_reshape_like(&(b, Const::<OUT>))
    }
}

impl<B: Dim, S: Dim, L1, L2, const OUT: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, S, L1::Input), E, D, T>> for Recurrent<L1, L2, OUT>
where
    L1: RecurrentCell<E, D>,
    L2: RecurrentCell<E, D, Input = L1::Output>,
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, L1::Input), E, D, T>) -> Result<Self::Output, D::Err> {
        self.try_pool(x, None, false)
    }
}

impl<B: Dim, S: Dim, L1, L2, const OUT: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    Module<(Tensor<(B, S, L1::Input), E, D, T>, Tensor<(B, S), E, D>)> for Recurrent<L1, L2, OUT>
where
    L1: RecurrentCell<E, D>,
    L2: RecurrentCell<E, D, Input = L1::Output>,
{
    type Output = Tensor<(B, Const<OUT>), E, D, T>;
    type Error = D::Err;
    fn try_forward(
        &self,
        (x, mask): (Tensor<(B, S, L1::Input), E, D, T>, Tensor<(B, S), E, D>),
    ) -> Result<Self::Output, D::Err> {
        self.try_pool(x, Some(&mask), false)
    }
}
