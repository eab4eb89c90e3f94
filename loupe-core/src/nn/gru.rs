//! GRU pooling, the paper's recurrent baseline (docs/reference.md section 2).

use super::shared::{
    activate, from_f64, host, host_mut, mask_values, pre_activation, to_f64, try_add_bias_gradient,
    try_add_to_gradient, try_add_weight_gradient, try_last_step, try_pick, try_pick_column,
    try_previous_states, Activation, GlorotUniform, RecurrentProduct,
};
use super::{Recurrent, RecurrentCell};
use dfdx::prelude::*;
use rayon::prelude::*;

use crate::kernels::{restore_grad, take_grad, try_sequence_data_product, try_sequence_weight_product};

pub mod builder {
    /// Builder of [`super::GruPooling`]: `F` features per frame, `H` units per layer, `OUT = 2 * H`.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct GruPooling<const F: usize, const H: usize, const OUT: usize>;

    /// Builder of [`super::GruCell`]: `I` inputs, `H` units.
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct GruCell<const I: usize, const H: usize>;
}

impl<const F: usize, const H: usize, const OUT: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E>
    for builder::GruPooling<F, H, OUT>
where
    GruPooling<F, H, OUT, E, D>: BuildModule<D, E>,
{
    type Built = GruPooling<F, H, OUT, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::GruCell<I, H>
where
    GruCell<I, H, E, D>: BuildModule<D, E>,
{
    type Built = GruCell<I, H, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// One GRU layer, TensorFlow's `GRUCell` (gate order `r, u`; the reset gate multiplies the
/// state **before** the candidate's recurrent product):
///
/// ```text
/// [r, u] = sigmoid(x_t Wg + h_{t-1} Ug + bg)
/// c      = tanh(x_t Wc + (r * h_{t-1}) Uc + bc)
/// h~     = u * h_{t-1} + (1 - u) * c
/// h_t    = m_t h~ + (1 - m_t) h_{t-1}
/// ```
///
/// with `h_0 = 0` and `m_t` the frame's mask (1 valid, 0 padding: the state is carried
/// through unchanged). `u` is the fraction of the old state kept.
///
/// Initialisation is TensorFlow's default for the cell: the gate bias `bg` starts at
/// **1.0** (a learned bias initialised to one, so the cell starts by keeping its state and
/// not resetting), the candidate bias `bc` at 0; kernels Glorot uniform over the
/// concatenated `[input; state]` kernels, `(I + H) x 2H` for the gates (bound
/// `sqrt(6 / (I + 3H))`) and `(I + H) x H` for the candidate (`sqrt(6 / (I + 2H))`).
/// Gate weights are stored per gate, `Wg[i][g][h]` = TensorFlow's column `g * H + h`.
#[derive(Debug, Clone)]
pub struct GruCell<const I: usize, const H: usize, E: Dtype, D: Storage<E>> {
    /// Gate input weights `Wg`, `I x 2 x H` (gates `r, u`).
    pub gate_input_weights: Tensor<Rank3<I, 2, H>, E, D>,
    /// Gate recurrent weights `Ug`, `H x 2 x H`.
    pub gate_recurrent_weights: Tensor<Rank3<H, 2, H>, E, D>,
    /// Gate bias `bg`, `2 x H`, starts at 1.
    pub gate_bias: Tensor<Rank2<2, H>, E, D>,
    /// Candidate input weights `Wc`, `I x H`.
    pub candidate_input_weights: Tensor<Rank2<I, H>, E, D>,
    /// Candidate recurrent weights `Uc`, `H x H`.
    pub candidate_recurrent_weights: Tensor<Rank2<H, H>, E, D>,
    /// Candidate bias `bc`, `H`, starts at 0.
    pub candidate_bias: Tensor<Rank1<H>, E, D>,
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for GruCell<I, H, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = GruCell<I, H, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "gate_input_weights",
                    |s| &s.gate_input_weights,
                    |s| &mut s.gate_input_weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I + H, 2 * H))),
                ),
                Self::tensor(
                    "gate_recurrent_weights",
                    |s| &s.gate_recurrent_weights,
                    |s| &mut s.gate_recurrent_weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I + H, 2 * H))),
                ),
                Self::tensor(
                    "gate_bias",
                    |s| &s.gate_bias,
                    |s| &mut s.gate_bias,
                    TensorOptions::reset_to_ones(),
                ),
                Self::tensor(
                    "candidate_input_weights",
                    |s| &s.candidate_input_weights,
                    |s| &mut s.candidate_input_weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I + H, H))),
                ),
                Self::tensor(
                    "candidate_recurrent_weights",
                    |s| &s.candidate_recurrent_weights,
                    |s| &mut s.candidate_recurrent_weights,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(GlorotUniform::new(I + H, H))),
                ),
                Self::tensor(
                    "candidate_bias",
                    |s| &s.candidate_bias,
                    |s| &mut s.candidate_bias,
                    TensorOptions::reset_to_zeros(),
                ),
            ),
            |(
                gate_input_weights,
                gate_recurrent_weights,
                gate_bias,
                candidate_input_weights,
                candidate_recurrent_weights,
                candidate_bias,
            )| GruCell {
                gate_input_weights,
                gate_recurrent_weights,
                gate_bias,
                candidate_input_weights,
                candidate_recurrent_weights,
                candidate_bias,
            },
        )
    }
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> GruCell<I, H, E, D> {
    /// The recurrence over the input projections `x Wg` and `x Wc`.
    #[allow(clippy::type_complexity)]
    fn try_recurrence<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        pg: Tensor<(B, S, usize), E, D, T>,
        pc: Tensor<(B, S, Const<H>), E, D, T>,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
        let biases = (&self.gate_bias, &self.candidate_bias);
        try_gru_recurrence(
            pg,
            pc,
            biases,
            &self.gate_recurrent_weights,
            &self.candidate_recurrent_weights,
            mask,
        )
    }
}

impl<const I: usize, const H: usize, E: Dtype, D: Device<E>> RecurrentCell<E, D> for GruCell<I, H, E, D> {
    type Input = Const<I>;
    type Output = Const<H>;
    type State = Const<H>;
    const FINAL: usize = H;

    /// Every step's state `h_t` (`(B, S, H)`) for frames `x` and an optional mask (all
    /// frames valid without one).
    fn try_states<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<I>), E, D, T>,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
        // All frames' input projections at once.
        let wg = self.gate_input_weights.clone().try_reshape_like(&(Const::<I>, 2 * H))?;
        let pg = try_sequence_weight_product(x.retaped::<T>(), &wg)?;
        let pc = try_sequence_weight_product(x, &self.candidate_input_weights)?;
        self.try_recurrence(pg, pc, mask)
    }

    /// The frames' gradient is never formed on the `Cpu` (the input projections'
    /// backward forms only the weights' gradients).
    fn try_states_of_data<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<I>), E, D>,
        tape: T,
        mask: Option<&Tensor<(B, S), E, D>>,
    ) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
        let wg = self.gate_input_weights.clone().try_reshape_like(&(Const::<I>, 2 * H))?;
        let pg = try_sequence_data_product(x.clone(), tape, &wg)?;
        let pc = try_sequence_data_product(x, T::default(), &self.candidate_input_weights)?;
        self.try_recurrence(pg, pc, mask)
    }

    /// The states themselves: a GRU's state is its output.
    fn try_outputs<B: Dim, S: Dim, T: Tape<E, D>>(
        states: Tensor<(B, S, Const<H>), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
        Ok(states)
    }

    /// `h` after the last step.
    fn try_final<B: Dim, S: Dim, T: Tape<E, D>>(
        states: Tensor<(B, S, Const<H>), E, D, T>,
    ) -> Result<Tensor<(B, usize), E, D, T>, D::Err> {
        let b = states.shape().0;
        try_last_step(states)?.try_reshape_like(&(b, H))
    }
}

/// The biases of a GRU layer, `bg` (`2 x H`) and `bc` (`H`).
type GruBiases<'a, const H: usize, E, D> = (&'a Tensor<Rank2<2, H>, E, D>, &'a Tensor<Rank1<H>, E, D>);

/// The recurrence of one GRU layer over the projected inputs `x Wg` (`(B, S, 2H)`) and
/// `x Wc` (`(B, S, H)`) and the biases `bg`, `bc`; returns `h_t` for every step. On the
/// `Cpu` (f32, f64, fused kernels on) it is one host op with its own backward, elsewhere
/// composed dfdx ops over `pg = x Wg + bg` and `pc = x Wc + bc` (see `nn/recurrent.rs`).
#[allow(clippy::type_complexity)]
fn try_gru_recurrence<B: Dim, S: Dim, const H: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    pg: Tensor<(B, S, usize), E, D, T>,
    pc: Tensor<(B, S, Const<H>), E, D, T>,
    biases: GruBiases<H, E, D>,
    gate_recurrent: &Tensor<Rank3<H, 2, H>, E, D>,
    candidate_recurrent: &Tensor<Rank2<H, H>, E, D>,
    mask: Option<&Tensor<(B, S), E, D>>,
) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
    if crate::kernels::cpu_float::<E, D>().is_some() {
        return try_gru_recurrence_host(pg, pc, biases, gate_recurrent, candidate_recurrent, mask);
    }
    let (b, s, _) = *pg.shape();
    let (gate_bias, candidate_bias) = biases;
    let gate_bias = gate_bias
        .retaped::<T>()
        .try_reshape_like(&(2 * H,))?
        .try_broadcast_like::<_, Axes2<0, 1>>(&(b, s, 2 * H))?;
    let candidate_bias =
        candidate_bias.retaped::<T>().try_broadcast_like::<_, Axes2<0, 1>>(&(b, s, Const::<H>))?;
    let (pg, pc) = (pg.try_add(gate_bias)?, pc.try_add(candidate_bias)?);
    try_gru_recurrence_composed(pg, pc, gate_recurrent, candidate_recurrent, mask)
}

/// [`try_gru_recurrence`] as dfdx ops, one frame at a time, so it runs on any device:
/// the frame's projections and each gate are picked with one-hot products ([`try_pick`]; never `slice`, whose backward
/// assigns), the recurrent products dfdx matmuls, the steps' states a `stack`.
#[allow(clippy::type_complexity)]
fn try_gru_recurrence_composed<B: Dim, S: Dim, const H: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    pg: Tensor<(B, S, usize), E, D, T>,
    pc: Tensor<(B, S, Const<H>), E, D, T>,
    gate_recurrent: &Tensor<Rank3<H, 2, H>, E, D>,
    candidate_recurrent: &Tensor<Rank2<H, H>, E, D>,
    mask: Option<&Tensor<(B, S), E, D>>,
) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
    let (b, s, _) = *pg.shape();
    let (nb, ns) = (b.size(), s.size());
    let dev = pg.device().clone();
    if let Some(m) = mask {
        assert_eq!(m.shape().concrete(), [nb, ns], "mask shape must be (batch, frames)");
    }
    // Every taped value is used through `retaped` copies; the tapes of the originals are
    // gathered here and put on the output, so no backward op is dropped.
    let (pg, tape) = pg.split_tape();
    let (pc, pc_tape) = pc.split_tape();
    let mut tape = tape.merge(pc_tape);
    if ns == 0 {
        return Ok(dev.try_zeros_like(&(b, s, Const::<H>))?.put_tape(tape));
    }
    let (ug, ug_tape) = gate_recurrent.retaped::<T>().try_reshape_like(&(Const::<H>, 2 * H))?.split_tape();
    tape = tape.merge(ug_tape);
    let uc = candidate_recurrent.retaped::<T>();
    let mut state: Option<Tensor<(B, Const<H>), E, D, T>> = None;
    let mut hs = Vec::with_capacity(ns);
    for t in 0..ns {
        let mut pre = try_pick(pg.retaped::<T>(), t)?;
        if let Some(h) = &state {
            pre = pre.try_add(h.retaped::<T>().try_matmul(ug.retaped::<T>())?)?;
        }
        let gates = pre.try_sigmoid()?.try_reshape_like(&(b, Const::<2>, Const::<H>))?;
        let u = try_pick(gates.retaped::<T>(), 1)?;
        let mut pre_c = try_pick(pc.retaped::<T>(), t)?;
        if let Some(h) = &state {
            let r = try_pick(gates.retaped::<T>(), 0)?;
            pre_c = pre_c.try_add(r.try_mul(h.retaped::<T>())?.try_matmul(uc.retaped::<T>())?)?;
        }
        tape = tape.merge(gates.split_tape().1);
        let c = pre_c.try_tanh()?;
        // h~ = u h + (1 - u) c = c + u (h - c).
        let h_new = match &state {
            None => c.retaped::<T>().try_sub(u.try_mul(c)?)?,
            Some(h) => c.retaped::<T>().try_add(u.try_mul(h.retaped::<T>().try_sub(c)?)?)?,
        };
        let h = match mask {
            None => h_new,
            Some(mask) => {
                let m = try_pick_column(mask, t)?.try_broadcast_like::<_, Axis<1>>(&(b, Const::<H>))?;
                // h_t = h_{t-1} + m_t (h~ - h_{t-1}): padding carries the state over.
                match state.take() {
                    None => h_new.try_mul(m)?,
                    Some(old) => old.retaped::<T>().try_add(h_new.try_sub(old)?.try_mul(m)?)?,
                }
            }
        };
        if let Some(old) = state.take() {
            tape = tape.merge(old.split_tape().1);
        }
        hs.push(h.retaped::<T>());
        state = Some(h);
    }
    if let Some(h) = state {
        tape = tape.merge(h.split_tape().1);
    }
    // (S, B, H) -> (B, S, H).
    let (out, out_tape) = hs
        .try_stack()?
        .try_permute::<(B, usize, Const<H>), Axes3<1, 0, 2>>()?
        .try_reshape_like(&(b, s, Const::<H>))?
        .split_tape();
    Ok(out.put_tape(tape.merge(out_tape)))
}

/// [`try_gru_recurrence`] as one op with its own backward, the recurrence run on the
/// tensors' host buffers, each step's gate arithmetic shared among the threads by video.
///
/// Memory: the activations the backward needs are written over the projections they
/// come from (`pg` then holds `[r, u]`, `pc` holds `c`), which the backward keeps anyway
/// to name their gradients; nothing else is saved but the output. The backward builds
/// each gradient once, as the tensor its weight gradient's product reads, and adds it to
/// the inputs', the biases' (column sums) and the weights' gradients in place.
///
/// The per-frame products with `Ug` and `Uc` (forward) and with their transposes
/// (backward) are a [`RecurrentProduct`] each, built once per pass: on `f32` with sgemm
/// on, each weight is packed once per pass instead of once per frame.
#[allow(clippy::type_complexity)]
fn try_gru_recurrence_host<B: Dim, S: Dim, const H: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    pg: Tensor<(B, S, usize), E, D, T>,
    pc: Tensor<(B, S, Const<H>), E, D, T>,
    (gate_bias, candidate_bias): GruBiases<H, E, D>,
    gate_recurrent: &Tensor<Rank3<H, 2, H>, E, D>,
    candidate_recurrent: &Tensor<Rank2<H, H>, E, D>,
    mask: Option<&Tensor<(B, S), E, D>>,
) -> Result<Tensor<(B, S, Const<H>), E, D, T>, D::Err> {
    let (mut pg, tape) = pg.split_tape();
    let (mut pc, pc_tape) = pc.split_tape();
    let mut tape = tape.merge(pc_tape);
    let (b, s, _) = *pg.shape();
    let (nb, ns) = (b.size(), s.size());
    let dev = pg.device().clone();
    let ug = gate_recurrent.clone().try_reshape_like(&(Const::<H>, 2 * H))?;
    let uc = candidate_recurrent.clone().try_reshape_like(&(Const::<H>, H))?;
    let m = mask_values(mask, nb, ns);
    let bg: Vec<f64> = host(gate_bias).iter().map(|&v| to_f64(v)).collect();
    let bc: Vec<f64> = host(candidate_bias).iter().map(|&v| to_f64(v)).collect();

    // Forward; each step's [r, u] replaces its gate projections, c its candidate's.
    let mut out = dev.try_zeros_like(&(b, s, Const::<H>))?;
    {
        let (gates, cand, states) = (host_mut(&mut pg), host_mut(&mut pc), host_mut(&mut out));
        let (h_ug, rh_uc) = (RecurrentProduct::try_forward(&ug)?, RecurrentProduct::try_forward(&uc)?);
        let mut h = vec![E::default(); nb * H];
        let mut rh = vec![E::default(); nb * H];
        let mut u = vec![0.0f64; nb * H];
        let (mut zg, mut zc) = (Vec::new(), Vec::new());
        for t in 0..ns {
            if t > 0 {
                h_ug.try_apply(&dev, &h, nb, &mut zg)?;
            }
            let z = (t > 0).then_some(&zg[..]);
            let videos = gates.par_chunks_mut(ns * 2 * H).zip(u.par_chunks_mut(H));
            videos.zip(rh.par_chunks_mut(H)).zip(h.par_chunks(H)).enumerate().for_each_init(
                Vec::new,
                |a, (bi, (((gates, u), rh), h))| {
                    let gates = &mut gates[t * 2 * H..(t + 1) * 2 * H];
                    let z = z.map(|z| &z[bi * 2 * H..(bi + 1) * 2 * H]);
                    // a = [r, u]. Plain loops over slices (no closures or per-value
                    // branches): they vectorise.
                    a.resize(2 * H, E::default());
                    pre_activation(a, gates, &bg, z, None);
                    activate(Activation::Sigmoid, a, 0..2 * H);
                    gates.copy_from_slice(a);
                    for k in 0..H {
                        u[k] = to_f64(a[H + k]);
                        rh[k] = from_f64(to_f64(a[k]) * to_f64(h[k]));
                    }
                },
            );
            if t > 0 {
                rh_uc.try_apply(&dev, &rh, nb, &mut zc)?;
            }
            let z = (t > 0).then_some(&zc[..]);
            let videos = cand.par_chunks_mut(ns * H).zip(states.par_chunks_mut(ns * H));
            videos.zip(h.par_chunks_mut(H)).zip(u.par_chunks(H)).enumerate().for_each_init(
                Vec::new,
                |a, (bi, (((cand, states), h), u))| {
                    let mt = m[bi * ns + t];
                    let (cand, states) = (&mut cand[t * H..(t + 1) * H], &mut states[t * H..(t + 1) * H]);
                    let z = z.map(|z| &z[bi * H..(bi + 1) * H]);
                    // a = the candidate c.
                    a.resize(H, E::default());
                    pre_activation(a, cand, &bc, z, None);
                    activate(Activation::Tanh, a, 0..H);
                    cand.copy_from_slice(a);
                    for k in 0..H {
                        let c = to_f64(a[k]);
                        let h_prev = to_f64(h[k]);
                        let h_new = u[k] * h_prev + (1.0 - u[k]) * c;
                        h[k] = from_f64(mt * h_new + (1.0 - mt) * h_prev);
                        states[k] = h[k];
                    }
                },
            );
        }
    }
    if !T::OWNS_TAPE {
        return Ok(out.put_tape(tape));
    }

    // `pg` holds [r, u] and `pc` holds c from here on.
    let out_ghost = out.clone();
    let (gate_bias, candidate_bias) = (gate_bias.clone(), candidate_bias.clone());
    let (gate_recurrent, candidate_recurrent) = (gate_recurrent.clone(), candidate_recurrent.clone());
    tape.add_backward_op(move |grads| {
        let dy = take_grad::<E, _, _, _>(grads, &out_ghost)?;
        let (ys, acts_g, acts_c) = (host(&out_ghost), host(&pg), host(&pc));
        // h_{t-1} of video `bi`'s step `t` (zeros before the first).
        let zeros = vec![E::default(); H];
        let prev = |step: usize, t: usize| if t == 0 { &zeros[..] } else { &ys[(step - 1) * H..step * H] };
        let rows = nb * ns;
        let mut dpg_t = dev.try_zeros_like(&(rows, 2 * H))?;
        let mut dpc_t = dev.try_zeros_like(&(rows, H))?;
        {
            let (dpg, dpc) = (host_mut(&mut dpg_t), host_mut(&mut dpc_t));
            let (dzg_ugt, dzc_uct) =
                (RecurrentProduct::try_backward(&ug)?, RecurrentProduct::try_backward(&uc)?);
            let mut dh = vec![0.0f64; nb * H];
            let mut dzc = vec![E::default(); nb * H];
            let mut dhu = vec![0.0f64; nb * H];
            let mut dzg = vec![E::default(); nb * 2 * H];
            let (mut drh, mut back) = (Vec::new(), Vec::new());
            for t in (0..ns).rev() {
                let videos = dpc.par_chunks_mut(ns * H).zip(dzc.par_chunks_mut(H));
                videos.zip(dhu.par_chunks_mut(H)).zip(dh.par_chunks_mut(H)).enumerate().for_each(
                    |(bi, (((dpc, dzc), dhu), dh))| {
                        let step = bi * ns + t;
                        let mt = m[step];
                        let dpc = &mut dpc[t * H..(t + 1) * H];
                        let (u, c) = (
                            &acts_g[step * 2 * H + H..(step + 1) * 2 * H],
                            &acts_c[step * H..(step + 1) * H],
                        );
                        let (dy, h_prev) = (&dy[step * H..(step + 1) * H], prev(step, t));
                        for k in 0..H {
                            let (uu, c) = (to_f64(u[k]), to_f64(c[k]));
                            let dht = dh[k] + to_f64(dy[k]);
                            let dh_new = mt * dht;
                            let v = dh_new * (1.0 - uu) * (1.0 - c * c);
                            dpc[k] = from_f64(v);
                            dzc[k] = from_f64(v);
                            dhu[k] = dh_new * (to_f64(h_prev[k]) - c) * uu * (1.0 - uu);
                            dh[k] = (1.0 - mt) * dht + dh_new * uu;
                        }
                    },
                );
                // Through the candidate's recurrent product (r * h) Uc.
                if t > 0 {
                    dzc_uct.try_apply(&dev, &dzc, nb, &mut drh)?;
                }
                let drh = (t > 0).then_some(&drh[..]);
                let videos = dpg.par_chunks_mut(ns * 2 * H).zip(dzg.par_chunks_mut(2 * H));
                videos.zip(dh.par_chunks_mut(H)).zip(dhu.par_chunks(H)).enumerate().for_each(
                    |(bi, (((dpg, dzg), dh), dhu))| {
                        let step = bi * ns + t;
                        let (dpg_r, dpg_u) = dpg[t * 2 * H..(t + 1) * 2 * H].split_at_mut(H);
                        let (dzg_r, dzg_u) = dzg.split_at_mut(H);
                        let r = &acts_g[step * 2 * H..step * 2 * H + H];
                        let drh = drh.map_or(&zeros[..], |d| &d[bi * H..(bi + 1) * H]);
                        let h_prev = prev(step, t);
                        for k in 0..H {
                            let rr = to_f64(r[k]);
                            let drh = to_f64(drh[k]);
                            let dr = drh * to_f64(h_prev[k]) * rr * (1.0 - rr);
                            dh[k] += drh * rr;
                            (dpg_r[k], dpg_u[k]) = (from_f64(dr), from_f64(dhu[k]));
                            (dzg_r[k], dzg_u[k]) = (from_f64(dr), from_f64(dhu[k]));
                        }
                    },
                );
                if t > 0 {
                    dzg_ugt.try_apply(&dev, &dzg, nb, &mut back)?;
                    for (acc, v) in dh.iter_mut().zip(&back) {
                        *acc += to_f64(*v);
                    }
                }
            }
        }
        restore_grad(grads, &out_ghost, dy)?;
        // dUg = sum_t h_{t-1}^T dzg_t, then dUc = sum_t (r_t * h_{t-1})^T dzc_t in the same
        // buffer, one product each.
        let mut states_prev = try_previous_states::<H, _, _>(&dev, ys, (nb, ns), H, 0)?;
        try_add_weight_gradient(grads, &gate_recurrent, &states_prev, &dpg_t)?;
        host_mut(&mut states_prev).par_chunks_mut(H).zip(acts_g.par_chunks(2 * H)).for_each(|(h, g)| {
            h.iter_mut().zip(&g[..H]).for_each(|(h, r)| *h = from_f64(to_f64(*r) * to_f64(*h)));
        });
        try_add_weight_gradient(grads, &candidate_recurrent, &states_prev, &dpc_t)?;
        try_add_bias_gradient(grads, &gate_bias, host(&dpg_t))?;
        try_add_bias_gradient(grads, &candidate_bias, host(&dpc_t))?;
        try_add_to_gradient(grads, &pg, host(&dpg_t))?;
        try_add_to_gradient(grads, &pc, host(&dpc_t))
    });
    Ok(out.put_tape(tape))
}

/// GRU pooling (paper section 2, "GRU" baseline of Table 1): two stacked GRU layers
/// ([`GruCell`], TensorFlow's `GRUCell`) read the frames in the order given; the
/// representation is the final state of both layers, `[h1, h2]` (`OUT = 2H`; 2400 for
/// the paper's `H = 1200`).
///
/// The two-layer wrapper is [`Recurrent`] (shared with [`super::LstmPooling`]): layer 1 reads
/// the frames, layer 2 reads layer 1's `h_t`. "Final" is the state after a
/// video's last valid frame: the input is either frames alone (all `S` frames valid) or
/// `(frames, mask)` with `mask` a `(B, S)` tensor of 0/1 ([`valid_frame_mask`] makes it
/// from lengths); at a masked frame the state is carried over unchanged, so padding
/// after a video's true length does not change its output. A video without valid frames
/// pools to zeros.
///
/// No batch norm: a [`NonMutableModule`] whose [`Module`] accepts any tape. On the `Cpu`
/// each layer's recurrence is one op with its own backward (backpropagation through
/// time), on other devices dfdx ops frame by frame (see `nn/recurrent.rs`).
///
/// `OUT` must equal `2 * H` (a wrong `OUT` fails `cargo build`).
///
/// [`valid_frame_mask`]: super::valid_frame_mask
///
/// # Shapes
/// - `(B, S, F) -> (B, 2H)`
/// - `((B, S, F), (B, S)) -> (B, 2H)`
///
/// `B` and `S` any [`Dim`]; the mask carries no tape.
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, valid_frame_mask, GruPooling};
/// let dev = loupe_core::device::cpu();
/// let gru: GruPooling<8, 3, 6, f32, Cpu> = dev.build_module::<builder::GruPooling<8, 3, 6>, f32>();
/// let x: Tensor<(usize, usize, Const<8>), f32, _> = dev.sample_normal_like(&(2, 5, Const));
/// let mask = valid_frame_mask(&dev, &[3, 5], (2, 5));
/// let y: Tensor<(usize, Const<6>), f32, _, _> = gru.forward((x.trace(gru.alloc_grads()), mask));
/// let all: Tensor<(usize, Const<6>), f32, _> = gru.forward(x);
/// # let _ = (y, all);
/// ```
pub type GruPooling<const F: usize, const H: usize, const OUT: usize, E, D> =
    Recurrent<GruCell<F, H, E, D>, GruCell<H, H, E, D>, OUT>;
