//! LSTM pooling, the paper's recurrent baseline (docs/reference.md section 2).

use super::shared::{
    activate, from_f64, host, host_mut, mask_values, pre_activation, to_f64, try_add_bias_gradient,
    try_add_to_gradient, try_add_weight_gradient, try_last_step, try_pick, try_pick_column,
    try_previous_states, Activation, GlorotUniform, RecurrentProduct,
};
use super::{Recurrent, RecurrentCell};
use dfdx::prelude::*;
use rayon::prelude::*;

use crate::kernels::{restore_grad, take_grad};

/// Added to the forget gate's pre-activation (TensorFlow's `BasicLSTMCell(forget_bias=1.0)`,
/// as released): a constant, not a learned initial value.
pub const LSTM_FORGET_BIAS: f64 = 1.0;

pub mod builder {
    /// Builder of [`super::LstmPooling`]: `F` features per frame, `H` cells per layer, `OUT = 4 * H`.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct LstmPooling<const F: usize, const H: usize, const OUT: usize>;

    /// Builder of [`super::LstmCell`]: `I` inputs, `H` cells.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct LstmCell<const I: usize, const H: usize>;
}

impl<const F: usize, const H: usize, const OUT: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::LstmPooling<F, H, OUT>
where
    LstmPooling<F, H, OUT, E, D>: BuildModule<D, E>,
{
    type Built = LstmPooling<F, H, OUT, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::LstmCell<I, H>
where
    LstmCell<I, H, E, D>: BuildModule<D, E>,
{
    type Built = LstmCell<I, H, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// One LSTM layer, TensorFlow's `BasicLSTMCell` (gate order `i, j, f, o`):
///
/// ```text
/// [i, j, f, o] = x_t W + h_{t-1} U + b
/// c~ = sigmoid(f + 1) * c_{t-1} + sigmoid(i) * tanh(j)
/// h~ = sigmoid(o) * tanh(c~)
/// c_t = m_t c~ + (1 - m_t) c_{t-1},   h_t = m_t h~ + (1 - m_t) h_{t-1}
/// ```
///
/// with `c_0 = h_0 = 0`, the forget bias [`LSTM_FORGET_BIAS`] = 1 a constant, and `m_t` the
/// frame's mask (1 valid, 0 padding: the state is carried through unchanged). Weights
/// are stored per gate, `W[i][g][h]` = TensorFlow's kernel column `g * H + h`, so a
/// TensorFlow `(I + H) x 4H` kernel splits into `W` (its first `I` rows) and `U`.
///
/// Initialisation is TensorFlow's default for the cell: Glorot uniform over the
/// concatenated `(I + H) x 4H` kernel (`W` and `U` share the bound
/// `sqrt(6 / (I + 5H))`), bias zeros.
///
/// Run it through [`LstmPooling`]; on its own it maps `(B, S, I)` frames to every step's
/// `[c_t, h_t]`, `(B, S, 2H)`.
#[derive(Debug, Clone)]
pub struct LstmCell<const I: usize, const H: usize, E: Dtype, D: Storage<E>> {
    /// Input weights `W`, `I x 4 x H` (gate blocks `i, j, f, o`).
    pub input_weights: Tensor<Rank3<I, 4, H>, E, D>,
    /// Recurrent weights `U`, `H x 4 x H`.
    pub recurrent_weights: Tensor<Rank3<H, 4, H>, E, D>,
    /// Bias `b`, `4 x H`, zeros (the forget bias is added on top).
    pub bias: Tensor<Rank2<4, H>, E, D>,
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for LstmCell<I, H, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = LstmCell<I, H, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "input_weights",
                    |s| &s.input_weights,
                    |s| &mut s.input_weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I + H, 4 * H))),
                ),
                Self::tensor(
                    "recurrent_weights",
                    |s| &s.recurrent_weights,
                    |s| &mut s.recurrent_weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I + H, 4 * H))),
                ),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
            ),
            |(input_weights, recurrent_weights, bias)| LstmCell { input_weights, recurrent_weights, bias },
        )
    }
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> LstmCell<I, H, E, D> {
    /// `W` as the `I x 4H` matrix of the input projection (a free reshape).
    fn input_matrix(&self) -> Result<Tensor<(Const<I>, usize), E, D>, D::Err> {
        self.input_weights.clone().try_reshape_like(&(Const::<I>, 4 * H))
    }
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> RecurrentCell<E, D> for LstmCell<I, H, E, D> {
    type Input = Const<I>;
    type Output = Const<H>;
    type State = usize;
    const FINAL: usize = 2 * H;

    /// Every step's `[c_t, h_t]` (`(B, S, 2H)`, `c` first) for frames `x` and an optional
    /// mask (all frames valid without one).
    fn try_states<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<I>), E, D, T>,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, S, usize), E, D, T>, D::Err> {
        // All frames' input projections at once: (B*S, I) x (I, 4H).
        let projected = crate::kernels::try_sequence_weight_product(x, &self.input_matrix()?)?;
        try_lstm_recurrence::<B, S, H, E, D, T>(projected, &self.bias, &self.recurrent_weights, mask)
    }

    /// The frames' gradient is never formed on the `Cpu` (the input projection's
    /// backward forms only the weight's gradient).
    fn try_states_of_data<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<I>), E, D>,
        tape: T,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, S, usize), E, D, T>, D::Err> {
        let projected = crate::kernels::try_sequence_data_product(x, tape, &self.input_matrix()?)?;
        try_lstm_recurrence::<B, S, H, E, D, T>(projected, &self.bias, &self.recurrent_weights, mask)
    }

    /// `h_t` of every step: channels `[H, 2H)` of `[c_t, h_t]` (on other devices than the
    /// `Cpu`, `[c_t, h_t]` read as `(B S, 2, H)`, entry 1 of axis 1).
    fn try_outputs<B: Dim, S: Dim, T: Tape<E, D>>(
        states: Tensor<(B, S, usize), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
        let (b, s, _) = *states.shape();
        match crate::kernels::try_channels(states, H, H, (b, s, Const::<H>))? {
            Ok(h) => Ok(h),
            Err(states) => {
                let rows = b.size() * s.size();
                try_pick(states.try_reshape_like(&(rows, Const::<2>, Const::<H>))?, 1)?
                    .try_reshape_like(&(b, s, Const::<H>))
            }
        }
    }

    /// `[c, h]` after the last step.
    fn try_final<B: Dim, S: Dim, T: Tape<E, D>>(
        states: Tensor<(B, S, usize), E, D, T>,
    ) -> Result<Tensor<(B, usize), E, D, T>, D::Err> {
        try_last_step(states)
    }
}

/// The recurrence of one LSTM layer over projected inputs `x W` (`(B, S, 4H)`) and the
/// bias `b`; returns `[c_t, h_t]` for every step. On the `Cpu` (f32, f64, fused kernels
/// on) it is one host op with its own backward, elsewhere composed dfdx ops (see
/// `nn/recurrent.rs`).
#[allow(clippy::type_complexity)]
fn try_lstm_recurrence<B: Dim, S: Dim, const H: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    projected: Tensor<(B, S, usize), E, D, T>,
    bias: &Tensor<Rank2<4, H>, E, D>,
    recurrent: &Tensor<Rank3<H, 4, H>, E, D>,
    mask: Option<&Tensor<(B, S), E, D>>,
) -> Result<Tensor<(B, S, usize), E, D, T>, D::Err> {
    if crate::kernels::cpu_float::<E, D>().is_some() {
        try_lstm_recurrence_host::<B, S, H, E, D, T>(projected, bias, recurrent, mask)
    } else {
        let (b, s, _) = *projected.shape();
        let bias = bias
            .retaped::<T>()
            .try_reshape_like(&(4 * H,))?
            .try_broadcast_like::<_, Axes2<0, 1>>(&(b, s, 4 * H))?;
        try_lstm_recurrence_composed::<B, S, H, E, D, T>(projected.try_add(bias)?, recurrent, mask)
    }
}

/// [`try_lstm_recurrence`] as dfdx ops over `p = x W + b`, one frame at a time, so it runs
/// on any device:
/// `p_t` and each gate are picked with one-hot products ([`try_pick`]; never `slice`, whose backward assigns), the
/// recurrent product a dfdx matmul, the steps' states a `stack`.
#[allow(clippy::type_complexity)]
fn try_lstm_recurrence_composed<B: Dim, S: Dim, const H: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    p: Tensor<(B, S, usize), E, D, T>,
    recurrent: &Tensor<Rank3<H, 4, H>, E, D>,
    mask: Option<&Tensor<(B, S), E, D>>,
) -> Result<Tensor<(B, S, usize), E, D, T>, D::Err> {
    let (b, s, _) = *p.shape();
    let (nb, ns) = (b.size(), s.size());
    let dev = p.device().clone();
    if let Some(m) = mask {
        assert_eq!(m.shape().concrete(), [nb, ns], "mask shape must be (batch, frames)");
    }
    // Every taped value is used through `retaped` copies; the tapes of the originals are
    // gathered here and put on the output, so no backward op is dropped.
    let (p, mut tape) = p.split_tape();
    if ns == 0 {
        return Ok(dev.try_zeros_like(&(b, s, 2 * H))?.put_tape(tape));
    }
    let (u, u_tape) = recurrent.retaped::<T>().try_reshape_like(&(Const::<H>, 4 * H))?.split_tape();
    tape = tape.merge(u_tape);
    let forget_bias: E = from_f64(LSTM_FORGET_BIAS);
    type State<B, const H: usize, E, D, T> = Tensor<(B, Const<H>), E, D, T>;
    let mut state: Option<(State<B, H, E, D, T>, State<B, H, E, D, T>)> = None;
    let (mut cs, mut hs) = (Vec::with_capacity(ns), Vec::with_capacity(ns));
    for t in 0..ns {
        let mut pre = try_pick(p.retaped::<T>(), t)?;
        if let Some((_, h)) = &state {
            pre = pre.try_add(h.retaped::<T>().try_matmul(u.retaped::<T>())?)?;
        }
        let pre = pre.try_reshape_like(&(b, Const::<4>, Const::<H>))?;
        let gate = |g: usize| try_pick(pre.retaped::<T>(), g);
        let (i, j, o) = (gate(0)?.try_sigmoid()?, gate(1)?.try_tanh()?, gate(3)?.try_sigmoid()?);
        let ij = i.try_mul(j)?;
        let c_new = match &state {
            None => ij,
            Some((c, _)) => {
                gate(2)?.try_add(forget_bias)?.try_sigmoid()?.try_mul(c.retaped::<T>())?.try_add(ij)?
            }
        };
        tape = tape.merge(pre.split_tape().1);
        let h_new = o.try_mul(c_new.retaped::<T>().try_tanh()?)?;
        let (c, h) = match mask {
            None => (c_new, h_new),
            Some(mask) => {
                let m = try_pick_column(mask, t)?.try_broadcast_like::<_, Axis<1>>(&(b, Const::<H>))?;
                // x_t = x_{t-1} + m_t (x~ - x_{t-1}): padding carries the state over.
                let carry = |new: State<B, H, E, D, T>, old: Option<State<B, H, E, D, T>>| match old {
                    None => new.try_mul(m.clone()),
                    Some(old) => old.retaped::<T>().try_add(new.try_sub(old)?.try_mul(m.clone())?),
                };
                let (c_prev, h_prev) = state.take().map_or((None, None), |(c, h)| (Some(c), Some(h)));
                (carry(c_new, c_prev)?, carry(h_new, h_prev)?)
            }
        };
        if let Some((c_prev, h_prev)) = state.take() {
            tape = tape.merge(c_prev.split_tape().1).merge(h_prev.split_tape().1);
        }
        cs.push(c.retaped::<T>().try_reshape_like(&(b, H))?);
        hs.push(h.retaped::<T>().try_reshape_like(&(b, H))?);
        state = Some((c, h));
    }
    if let Some((c, h)) = state {
        tape = tape.merge(c.split_tape().1).merge(h.split_tape().1);
    }
    // (S, B, H) twice -> (S, B, 2H) -> (B, S, 2H).
    let (out, out_tape) = (cs.try_stack()?, hs.try_stack()?)
        .try_concat_along(Axis::<2>)?
        .try_permute::<(B, usize, usize), Axes3<1, 0, 2>>()?
        .try_reshape_like(&(b, s, 2 * H))?
        .split_tape();
    Ok(out.put_tape(tape.merge(out_tape)))
}

/// [`try_lstm_recurrence`] as one op with its own backward, the recurrence run on the
/// tensors' host buffers, each step's gate arithmetic shared among the threads by video.
///
/// Memory: the gate activations `[i, j, f, o]` the backward needs are written over the
/// projections `p` they come from, which the backward keeps anyway to name their
/// gradient; nothing else is saved but the output. The backward builds the gradient of
/// `p` once, as the tensor the weight gradient's product reads, and adds it to the
/// input's, the bias's (its column sums) and the weight's gradients in place.
///
/// The per-frame products `h U` (forward) and `dz U^T` (backward) are a
/// [`RecurrentProduct`] each, built once per pass: on `f32` with sgemm on, `U` is packed
/// once per pass instead of once per frame.
#[allow(clippy::type_complexity)]
fn try_lstm_recurrence_host<B: Dim, S: Dim, const H: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    p: Tensor<(B, S, usize), E, D, T>,
    bias: &Tensor<Rank2<4, H>, E, D>,
    recurrent: &Tensor<Rank3<H, 4, H>, E, D>,
    mask: Option<&Tensor<(B, S), E, D>>,
) -> Result<Tensor<(B, S, usize), E, D, T>, D::Err> {
    let (mut p, mut tape) = p.split_tape();
    let (b, s, _) = *p.shape();
    let (nb, ns) = (b.size(), s.size());
    let dev = p.device().clone();
    let u = recurrent.clone().try_reshape_like(&(Const::<H>, 4 * H))?;
    let m = mask_values(mask, nb, ns);
    let bias_values: Vec<f64> = host(bias).iter().map(|&v| to_f64(v)).collect();

    // Forward; each step's gate activations replace its projections.
    let mut out = dev.try_zeros_like(&(b, s, 2 * H))?;
    {
        let (gates, states) = (host_mut(&mut p), host_mut(&mut out));
        let hu = RecurrentProduct::try_forward(&u)?;
        let mut c = vec![0.0f64; nb * H];
        let mut h = vec![E::default(); nb * H];
        let mut z = Vec::new();
        for t in 0..ns {
            if t > 0 {
                hu.try_apply(&dev, &h, nb, &mut z)?;
            }
            let z = (t > 0).then_some(&z[..]);
            let videos = gates.par_chunks_mut(ns * 4 * H).zip(states.par_chunks_mut(ns * 2 * H));
            videos.zip(c.par_chunks_mut(H)).zip(h.par_chunks_mut(H)).enumerate().for_each_init(
                Vec::new,
                |a, (bi, (((gates, states), c), h))| {
                    let gates = &mut gates[t * 4 * H..(t + 1) * 4 * H];
                    let (c_out, h_out) = states[t * 2 * H..(t + 1) * 2 * H].split_at_mut(H);
                    let z = z.map(|z| &z[bi * 4 * H..(bi + 1) * 4 * H]);
                    let mt = m[bi * ns + t];
                    // a = [i, j, f, o] activated, then tanh of the cell's unmasked new c.
                    // Plain loops over slices (no closures, pushes or per-value branches):
                    // they vectorise.
                    a.resize(5 * H, E::default());
                    let blocks =
                        a.chunks_exact_mut(H).zip(gates.chunks_exact(H)).zip(bias_values.chunks_exact(H));
                    for (g, ((a, p), b)) in blocks.enumerate() {
                        let forget = if g == 2 { LSTM_FORGET_BIAS } else { 0.0 };
                        pre_activation(a, p, b, z.map(|z| &z[g * H..(g + 1) * H]), Some(forget));
                    }
                    activate(Activation::Sigmoid, a, 0..H);
                    activate(Activation::Tanh, a, H..2 * H);
                    activate(Activation::Sigmoid, a, 2 * H..4 * H);
                    gates.copy_from_slice(&a[..4 * H]);
                    {
                        let (ijf, tc) = a.split_at_mut(3 * H);
                        let (i, jf) = ijf.split_at(H);
                        let (j, f) = jf.split_at(H);
                        let tc = &mut tc[H..];
                        for k in 0..H {
                            let (i, j, f) = (to_f64(i[k]), to_f64(j[k]), to_f64(f[k]));
                            let c_prev = c[k];
                            let c_new = f * c_prev + i * j;
                            c[k] = mt * c_new + (1.0 - mt) * c_prev;
                            c_out[k] = from_f64(c[k]);
                            tc[k] = from_f64(c_new);
                        }
                    }
                    activate(Activation::Tanh, a, 4 * H..5 * H);
                    let (o, tc) = a[3 * H..].split_at(H);
                    for k in 0..H {
                        let h_new = to_f64(o[k]) * to_f64(tc[k]);
                        let h_prev = to_f64(h[k]);
                        h[k] = from_f64(mt * h_new + (1.0 - mt) * h_prev);
                        h_out[k] = h[k];
                    }
                },
            );
        }
    }
    if !T::OWNS_TAPE {
        return Ok(out.put_tape(tape));
    }

    // `p` holds [i, j, f, o] from here on.
    let out_ghost = out.clone();
    let (bias, recurrent) = (bias.clone(), recurrent.clone());
    tape.add_backward_op(move |grads| {
        let dy = take_grad::<E, _, _, _>(grads, &out_ghost)?;
        let (ys, gates) = (host(&out_ghost), host(&p));
        let rows = nb * ns;
        let mut dp_t = dev.try_zeros_like(&(rows, 4 * H))?;
        {
            let dp = host_mut(&mut dp_t);
            let dz_ut = RecurrentProduct::try_backward(&u)?;
            let mut dc = vec![0.0f64; nb * H];
            let mut dh = vec![0.0f64; nb * H];
            let mut dz = vec![E::default(); nb * 4 * H];
            let mut back = Vec::new();
            let zeros = vec![E::default(); H];
            for t in (0..ns).rev() {
                let videos = dp.par_chunks_mut(ns * 4 * H).zip(dz.par_chunks_mut(4 * H));
                videos.zip(dc.par_chunks_mut(H)).zip(dh.par_chunks_mut(H)).enumerate().for_each_init(
                    Vec::new,
                    |tc, (bi, (((dp, dz), dc), dh))| {
                        let step = bi * ns + t;
                        let dp = &mut dp[t * 4 * H..(t + 1) * 4 * H];
                        let a = &gates[step * 4 * H..(step + 1) * 4 * H];
                        let dy = &dy[step * 2 * H..(step + 1) * 2 * H];
                        // c_{t-1} (zeros before the first step).
                        let c_prev =
                            if t > 0 { &ys[(step - 1) * 2 * H..(step - 1) * 2 * H + H] } else { &zeros[..] };
                        let mt = m[step];
                        let (i, rest) = a.split_at(H);
                        let (j, rest) = rest.split_at(H);
                        let (f, o) = rest.split_at(H);
                        // tanh of the unmasked new c, as the forward computed it. Plain loops
                        // over slices, so that they vectorise.
                        tc.resize(H, E::default());
                        for k in 0..H {
                            tc[k] = from_f64(to_f64(f[k]) * to_f64(c_prev[k]) + to_f64(i[k]) * to_f64(j[k]));
                        }
                        activate(Activation::Tanh, tc, 0..H);
                        let (dp_i, rest) = dp.split_at_mut(H);
                        let (dp_j, rest) = rest.split_at_mut(H);
                        let (dp_f, dp_o) = rest.split_at_mut(H);
                        let (dz_i, rest) = dz.split_at_mut(H);
                        let (dz_j, rest) = rest.split_at_mut(H);
                        let (dz_f, dz_o) = rest.split_at_mut(H);
                        for k in 0..H {
                            let (i, j, f, o) = (to_f64(i[k]), to_f64(j[k]), to_f64(f[k]), to_f64(o[k]));
                            let (c_prev, tc) = (to_f64(c_prev[k]), to_f64(tc[k]));
                            let dct = dc[k] + to_f64(dy[k]);
                            let dht = dh[k] + to_f64(dy[H + k]);
                            let (dc_new, dh_new) = (mt * dct, mt * dht);
                            let dc_full = dc_new + dh_new * o * (1.0 - tc * tc);
                            let di = from_f64(dc_full * j * i * (1.0 - i));
                            let dj = from_f64(dc_full * i * (1.0 - j * j));
                            let df = from_f64(dc_full * c_prev * f * (1.0 - f));
                            let d_o = from_f64(dh_new * tc * o * (1.0 - o));
                            (dp_i[k], dp_j[k], dp_f[k], dp_o[k]) = (di, dj, df, d_o);
                            (dz_i[k], dz_j[k], dz_f[k], dz_o[k]) = (di, dj, df, d_o);
                            dc[k] = (1.0 - mt) * dct + dc_full * f;
                            dh[k] = (1.0 - mt) * dht;
                        }
                    },
                );
                if t > 0 {
                    dz_ut.try_apply(&dev, &dz, nb, &mut back)?;
                    for (acc, v) in dh.iter_mut().zip(&back) {
                        *acc += to_f64(*v);
                    }
                }
            }
        }
        restore_grad(grads, &out_ghost, dy)?;
        // dU = sum_t h_{t-1}^T dz_t, all steps in one product.
        let h_prev = try_previous_states::<H, _, _>(&dev, ys, (nb, ns), 2 * H, H)?;
        try_add_weight_gradient(grads, &recurrent, &h_prev, &dp_t)?;
        try_add_bias_gradient(grads, &bias, host(&dp_t))?;
        try_add_to_gradient(grads, &p, host(&dp_t))
    });
    Ok(out.put_tape(tape))
}

/// LSTM pooling (paper section 2, "LSTM" baseline of Table 1): two stacked LSTM layers
/// ([`LstmCell`], TensorFlow's `BasicLSTMCell` with forget bias 1) read the frames in the
/// order given; the representation is the final state of both layers,
/// `[c1, h1, c2, h2]` (`OUT = 4H`; 4096 for the paper's `H = 1024`).
///
/// The two-layer wrapper is [`Recurrent`] (shared with [`super::GruPooling`]): layer 1 reads the
/// frames, layer 2 reads layer 1's `h_t`. "Final" is the state after a video's last valid
/// frame: the input is either frames alone (all `S` frames valid) or `(frames, mask)`
/// with `mask` a `(B, S)` tensor of 0/1 ([`valid_frame_mask`] makes it from lengths); at
/// a masked frame the state is carried over unchanged, so padding after a video's true
/// length does not change its output (TensorFlow's `dynamic_rnn` with `sequence_length`,
/// as released). A video without valid frames pools to zeros.
///
/// No batch norm: training and evaluation compute the same function, so this is a
/// [`NonMutableModule`] whose [`Module`] accepts any tape. On the `Cpu` each layer's
/// recurrence is one op with its own backward (backpropagation through time), on other
/// devices dfdx ops frame by frame (see `nn/recurrent.rs`).
///
/// `OUT` must equal `4 * H` (a wrong `OUT` fails `cargo build`, like [`super::NetVladPooling`]).
///
/// [`valid_frame_mask`]: super::valid_frame_mask
///
/// # Shapes
/// - `(B, S, F) -> (B, 4H)`
/// - `((B, S, F), (B, S)) -> (B, 4H)`
///
/// `B` and `S` any [`Dim`]; the mask carries no tape.
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, valid_frame_mask, LstmPooling};
/// let dev = loupe_core::device::cpu();
/// let lstm: LstmPooling<8, 3, 12, f32, Cpu> = dev.build_module::<builder::LstmPooling<8, 3, 12>, f32>();
/// let x: Tensor<(usize, Const<5>, Const<8>), f32, _> = dev.sample_normal_like(&(2, Const, Const));
/// // Videos of 5 and 2 valid frames, trained with any tape.
/// let mask = valid_frame_mask(&dev, &[5, 2], (2, Const::<5>));
/// let y: Tensor<(usize, Const<12>), f32, _, _> = lstm.forward((x.trace(lstm.alloc_grads()), mask));
/// // All frames valid.
/// let all: Tensor<(usize, Const<12>), f32, _> = lstm.forward(x);
/// # let _ = (y, all);
/// ```
pub type LstmPooling<const F: usize, const H: usize, const OUT: usize, E, D> =
    Recurrent<LstmCell<F, H, E, D>, LstmCell<H, H, E, D>, OUT>;
