//! Recurrent pooling (LSTM, GRU; docs/reference.md section 2) and NeXtVLAD against
//! `tests/reference/recurrent.py`, finite differences for every parameter and the input
//! (masked and unmasked, and behind a `tanh`), padding invariance, sizes.

mod common;

use common::{assert_close, device, Case, Reference, TestDevice};
use dfdx::prelude::*;
use loupe::gradcheck::{check_gradients, named_params, GradReport, NamedParam, Tolerance};
use loupe::kernels::set_fused;
use loupe::nn::{builder, valid_frame_mask, GruPooling, LstmPooling, NeXtVladPooling};

// B = 2 videos of S = 5 frames, F = 4 features, H = 3 (recurrent.py's sizes); the
// videos have 5 and 3 valid frames.
type Frames<E> = Tensor<(usize, Const<5>, Const<4>), E, TestDevice>;

fn frames<E: Dtype>(case: &Case, dev: &TestDevice) -> Frames<E>
where
    TestDevice: Device<E>,
{
    case.tensor(dev, "input", (case.dim("batch"), Const::<5>, Const::<4>))
}

fn lengths(case: &Case) -> Vec<usize> {
    case.values("lengths").into_iter().map(|v| v as usize).collect()
}

/// Masked and all-frames outputs, without a tape and on one (training and evaluation are
/// the same function: no batch norm).
macro_rules! assert_matches_case {
    ($layer:expr, $case:expr, $e:ty, $tol:expr) => {{
        let (layer, case, tol) = (&$layer, &$case, $tol);
        let dev = device();
        let x = frames::<$e>(case, &dev);
        let mask = valid_frame_mask(&dev, &lengths(case), (2, Const::<5>));
        assert_close(
            &layer.forward((x.clone(), mask.clone())).as_vec(),
            &case.values("output"),
            tol,
            "eval, masked",
        );
        let taped = layer.forward((x.clone().trace(Gradients::leaky()), mask));
        assert_close(&taped.as_vec(), &case.values("output"), tol, "train, masked");
        assert_close(
            &layer.forward(x.clone()).as_vec(),
            &case.values("output_all_frames"),
            tol,
            "eval, all frames",
        );
        let taped = layer.forward(x.trace(Gradients::leaky()));
        assert_close(&taped.as_vec(), &case.values("output_all_frames"), tol, "train, all frames");
    }};
}

/// Both paths on the `Cpu` (the host recurrence, then the composed dfdx ops that other
/// devices run); on `Cuda` both runs take the composed path.
#[test]
fn lstm_matches_reference() {
    let case = Reference::load("recurrent").case("lstm");
    let dev = device();
    for fused in [true, false] {
        set_fused(fused);
        let mut layer: LstmPooling<4, 3, 12, f64, _> =
            dev.build_module::<builder::LstmPooling<4, 3, 12>, f64>();
        case.load_params(&mut layer);
        assert_matches_case!(layer, case, f64, 1e-10);
        let mut layer: LstmPooling<4, 3, 12, f32, _> =
            dev.build_module::<builder::LstmPooling<4, 3, 12>, f32>();
        case.load_params(&mut layer);
        assert_matches_case!(layer, case, f32, 1e-5);
    }
}

#[test]
fn gru_matches_reference() {
    let case = Reference::load("recurrent").case("gru");
    let dev = device();
    for fused in [true, false] {
        set_fused(fused);
        let mut layer: GruPooling<4, 3, 6, f64, _> = dev.build_module::<builder::GruPooling<4, 3, 6>, f64>();
        case.load_params(&mut layer);
        assert_matches_case!(layer, case, f64, 1e-10);
        let mut layer: GruPooling<4, 3, 6, f32, _> = dev.build_module::<builder::GruPooling<4, 3, 6>, f32>();
        case.load_params(&mut layer);
        assert_matches_case!(layer, case, f32, 1e-5);
    }
}

// ---------------------------------------------------------------------------------------
// Gradients.

/// `layer` fed `(tanh?(x), mask)`: the mask is fixed, the tanh makes the layer's input a
/// non-leaf, so a layer that drops its input's tape loses the upstream backward ops.
#[derive(Debug, Clone)]
struct Fed<M> {
    layer: M,
    mask: Option<Tensor<(usize, Const<5>), f64, Cpu>>,
    tanh: bool,
}

impl<M: TensorCollection<f64, Cpu>> TensorCollection<f64, Cpu> for Fed<M> {
    type To<E2: Dtype, D2: Device<E2>> = M::To<E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, f64, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // Parameters keep the layer's own names (no prefix).
        visitor.visit_fields(Self::module("", |s| &s.layer, |s| &mut s.layer), |m| m)
    }
}

type Input<T> = Tensor<(usize, Const<5>, Const<4>), f64, Cpu, T>;

impl<M, T: Tape<f64, Cpu>, O: Shape> ModuleMut<Input<T>> for Fed<M>
where
    M: ModuleMut<Input<T>, Output = Tensor<O, f64, Cpu, T>, Error = <Cpu as HasErr>::Err>
        + ModuleMut<
            (Input<T>, Tensor<(usize, Const<5>), f64, Cpu>),
            Output = Tensor<O, f64, Cpu, T>,
            Error = <Cpu as HasErr>::Err,
        >,
{
    type Output = Tensor<O, f64, Cpu, T>;
    type Error = <Cpu as HasErr>::Err;
    fn try_forward_mut(&mut self, x: Input<T>) -> Result<Self::Output, Self::Error> {
        let x = if self.tanh { x.try_tanh()? } else { x };
        match &self.mask {
            Some(mask) => self.layer.try_forward_mut((x, mask.clone())),
            None => self.layer.try_forward_mut(x),
        }
    }
}

fn names(report: &GradReport) -> Vec<String> {
    report.checked.iter().map(|(n, _)| n.trim_start_matches('.').to_string()).collect()
}

/// Every gradient of `layer` (loaded with `case`'s parameters) at the case's input, with
/// and without the case's mask, with and without a tanh in front; returns the names.
fn check_all<M, O: Shape>(layer: M, case: &Case) -> Vec<String>
where
    M: Clone + TensorCollection<f64, Cpu>,
    Fed<M>: TensorCollection<f64, Cpu>
        + ModuleMut<Input<OwnedTape<f64, Cpu>>, Output = Tensor<O, f64, Cpu, OwnedTape<f64, Cpu>>>
        + ModuleMut<Input<NoneTape>, Output = Tensor<O, f64, Cpu>>,
{
    let dev = loupe::device::cpu_seeded(1);
    let x: Tensor<(usize, Const<5>, Const<4>), f64, _> = case.tensor(&dev, "input", (2, Const, Const));
    let mask = valid_frame_mask(&dev, &lengths(case), (2, Const::<5>));
    let mut checked = None;
    for (seed, (mask, tanh)) in
        [(None, false), (Some(mask.clone()), false), (Some(mask), true), (None, true)].into_iter().enumerate()
    {
        let mut fed = Fed { layer: layer.clone(), mask, tanh };
        let report = check_gradients(&mut fed, x.clone(), Tolerance::default(), seed as u64)
            .unwrap_or_else(|e| panic!("mask/tanh case {seed}: {e:#?}"));
        checked = Some(names(&report));
    }
    checked.unwrap()
}

const LSTM_CELL: [&str; 3] = ["input_weights", "recurrent_weights", "bias"];
const GRU_CELL: [&str; 6] = [
    "gate_input_weights",
    "gate_recurrent_weights",
    "gate_bias",
    "candidate_input_weights",
    "candidate_recurrent_weights",
    "candidate_bias",
];

fn expected_names(cell: &[&str]) -> Vec<String> {
    let mut names = vec!["input".to_string()];
    for layer in ["layer1", "layer2"] {
        names.extend(cell.iter().map(|p| format!("{layer}.{p}")));
    }
    names
}

#[test]
fn lstm_gradients() {
    let case = Reference::load("recurrent").case("lstm");
    let mut layer: LstmPooling<4, 3, 12, f64, Cpu> =
        loupe::device::cpu().build_module::<builder::LstmPooling<4, 3, 12>, f64>();
    case.load_params(&mut layer);
    assert_eq!(check_all(layer, &case), expected_names(&LSTM_CELL));
}

#[test]
fn gru_gradients() {
    let case = Reference::load("recurrent").case("gru");
    let mut layer: GruPooling<4, 3, 6, f64, Cpu> =
        loupe::device::cpu().build_module::<builder::GruPooling<4, 3, 6>, f64>();
    case.load_params(&mut layer);
    assert_eq!(check_all(layer, &case), expected_names(&GRU_CELL));
}

// ---------------------------------------------------------------------------------------
// NeXtVLAD.

type NextVlad<E> = NeXtVladPooling<4, 8, 2, 3, 6, 12, E, TestDevice>;
type NextVladBuilder = builder::NeXtVladPooling<4, 8, 2, 3, 6, 12>;

fn next_vlad_matches<E: Dtype>(tol: f64)
where
    TestDevice: Device<E>,
{
    let case = Reference::load("recurrent").case("next_vlad");
    let dev = device();
    let x = frames::<E>(&case, &dev);
    let mask = valid_frame_mask(&dev, &lengths(&case), (2, Const::<5>));
    for suffix in ["", "_all_frames"] {
        let mut layer: NextVlad<E> = dev.build_module::<NextVladBuilder, E>();
        case.load_params(&mut layer);
        let (eval, train) = if suffix.is_empty() {
            (
                layer.forward((x.clone(), mask.clone())),
                layer.forward_mut((x.clone().trace(Gradients::leaky()), mask.clone())),
            )
        } else {
            (layer.forward(x.clone()), layer.forward_mut(x.clone().trace(Gradients::leaky())))
        };
        assert_close(
            &eval.as_vec(),
            &case.values(&format!("output_eval{suffix}")),
            tol,
            &format!("eval{suffix}"),
        );
        assert_close(
            &train.as_vec(),
            &case.values(&format!("output{suffix}")),
            tol,
            &format!("train{suffix}"),
        );
        let running: Vec<NamedParam<E>> =
            named_params(&layer).into_iter().filter(|p| p.name.contains("running")).collect();
        assert_eq!(running.len(), 4);
        for p in running {
            assert_close(&p.values, &case.values(&format!("{}_after{suffix}", p.name)), tol, &p.name);
        }
    }
}

#[test]
fn next_vlad_matches_reference() {
    next_vlad_matches::<f64>(1e-10);
    next_vlad_matches::<f32>(1e-5);
}

#[test]
fn next_vlad_gradients() {
    let case = Reference::load("recurrent").case("next_vlad");
    let mut layer: NeXtVladPooling<4, 8, 2, 3, 6, 12, f64, Cpu> =
        loupe::device::cpu().build_module::<NextVladBuilder, f64>();
    case.load_params(&mut layer);
    let expected = [
        "input",
        "expansion_weights",
        "expansion_bias",
        "attention_weights",
        "attention_bias",
        "assignment_weights",
        "assignment_bn.scale",
        "assignment_bn.shift",
        "centers",
        "vlad_bn.scale",
        "vlad_bn.shift",
    ];
    assert_eq!(check_all(layer, &case), expected);
}

// ---------------------------------------------------------------------------------------
// Valid lengths, sizes, initialisation, degenerate input.

/// Frames beyond a video's length, replaced by anything, change nothing.
macro_rules! padding_test {
    ($test:ident, $builder:ty, $eval_only:literal) => {
        #[test]
        fn $test() {
            let dev = loupe::device::cpu_seeded(5);
            let mut layer = dev.build_module::<$builder, f64>();
            let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.sample_normal_like(&(3, 6, Const));
            let lengths = [6, 2, 4];
            let mask = valid_frame_mask(&dev, &lengths, (3, 6));
            // Same valid frames, different padding.
            let mut values = x.as_vec();
            let noise: Tensor<(usize, usize, Const<4>), f64, _> = dev.sample_normal_like(&(3, 6, Const));
            for (i, n) in noise.as_vec().into_iter().enumerate() {
                let (v, t) = (i / 24, i / 4 % 6);
                if t >= lengths[v] {
                    values[i] = 10.0 * n;
                }
            }
            let mut padded = x.clone();
            padded.copy_from(&values);
            assert_ne!(padded.as_vec(), x.as_vec());
            let a = layer.forward((x.clone(), mask.clone())).as_vec();
            let b = layer.forward((padded.clone(), mask.clone())).as_vec();
            assert_eq!(a, b, "evaluation");
            if !$eval_only {
                let a = layer.forward_mut((x.trace(Gradients::leaky()), mask.clone())).as_vec();
                let b = layer.forward_mut((padded.trace(Gradients::leaky()), mask)).as_vec();
                assert_eq!(a, b, "training");
            }
            // A video truncated to its valid frames pools as in the padded batch.
            let short: Tensor<(usize, usize, Const<4>), f64, _> = {
                let mut t = dev.zeros_like(&(1, 2, Const));
                t.copy_from(&x_video(&values, 1, 2));
                t
            };
            let alone = layer.forward(short).as_vec();
            let n = alone.len();
            assert!(
                alone.iter().zip(&a[n..2 * n]).all(|(p, q)| (p - q).abs() < 1e-12),
                "{alone:?} vs {:?}",
                &a[n..2 * n]
            );
        }
    };
}

/// The first `len` frames of video `v` of a (_, 6, 4) batch given as values.
fn x_video(values: &[f64], v: usize, len: usize) -> Vec<f64> {
    values[v * 24..v * 24 + len * 4].to_vec()
}

padding_test!(lstm_ignores_padding, builder::LstmPooling<4, 3, 12>, false);
padding_test!(gru_ignores_padding, builder::GruPooling<4, 3, 6>, false);
// Training-mode batch norm takes its statistics over padding too (as released).
padding_test!(next_vlad_ignores_padding_in_evaluation, NextVladBuilder, true);

#[test]
fn output_sizes_and_parameter_counts() {
    const F: usize = 8;
    const H: usize = 5;
    let dev = device();
    let x: Tensor<(usize, usize, Const<F>), f32, _> = dev.sample_normal_like(&(3, 6, Const));

    let m = dev.build_module::<builder::LstmPooling<F, H, { 4 * H }>, f32>();
    let y: Tensor<(usize, Const<{ 4 * H }>), f32, _> = m.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, 4 * H]);
    let cell = |i: usize| i * 4 * H + H * 4 * H + 4 * H;
    assert_eq!(m.num_trainable_params(), cell(F) + cell(H));

    let m = dev.build_module::<builder::GruPooling<F, H, { 2 * H }>, f32>();
    let y: Tensor<(usize, Const<{ 2 * H }>), f32, _> = m.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, 2 * H]);
    let cell = |i: usize| (i + H) * 2 * H + 2 * H + (i + H) * H + H;
    assert_eq!(m.num_trainable_params(), cell(F) + cell(H));

    // lambda = 2, G = 4 groups of 4, K = 3.
    let m = dev.build_module::<builder::NeXtVladPooling<F, 16, 4, 3, 12, 12>, f32>();
    let y: Tensor<(usize, Const<12>), f32, _> = m.forward(x);
    assert_eq!(y.shape().concrete(), [3, 12]);
    assert_eq!(m.num_trainable_params(), F * 16 + 16 + 16 * 4 + 4 + 16 * 12 + 2 * 12 + 12 + 2 * 12);

    // The paper's sizes: LSTM 4096, GRU 2400 (type-level only; not built).
    let _: fn(&LstmPooling<1152, 1024, 4096, f32, Cpu>) = |_| ();
    let _: fn(&GruPooling<1152, 1200, 2400, f32, Cpu>) = |_| ();
}

#[test]
fn checkpoint_keys_are_the_field_names() {
    let dev = device();
    let names = |params: Vec<NamedParam<f32>>| params.into_iter().map(|p| p.name).collect::<Vec<_>>();
    let lstm = dev.build_module::<builder::LstmPooling<4, 3, 12>, f32>();
    assert_eq!(names(named_params(&lstm)), expected_names(&LSTM_CELL)[1..]);
    let gru = dev.build_module::<builder::GruPooling<4, 3, 6>, f32>();
    assert_eq!(names(named_params(&gru)), expected_names(&GRU_CELL)[1..]);
    let nv = dev.build_module::<NextVladBuilder, f32>();
    assert_eq!(
        names(named_params(&nv)),
        [
            "expansion_weights",
            "expansion_bias",
            "attention_weights",
            "attention_bias",
            "assignment_weights",
            "assignment_bn.scale",
            "assignment_bn.shift",
            "assignment_bn.running_mean",
            "assignment_bn.running_var",
            "assignment_bn.updates",
            "centers",
            "vlad_bn.scale",
            "vlad_bn.shift",
            "vlad_bn.running_mean",
            "vlad_bn.running_var",
            "vlad_bn.updates",
        ]
    );
}

#[test]
fn parameters_start_as_tensorflow_initialises_them() {
    const F: usize = 64;
    const H: usize = 32;
    let dev = loupe::device::cpu_seeded(6);
    let max_abs = |v: Vec<f64>| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let lstm = dev.build_module::<builder::LstmPooling<F, H, { 4 * H }>, f64>();
    // Glorot uniform over the (I + H) x 4H kernel: |w| < bound, and close to it.
    let bound = (6.0 / (F + 5 * H) as f64).sqrt();
    for w in [lstm.layer1.input_weights.as_vec(), lstm.layer1.recurrent_weights.as_vec()] {
        let m = max_abs(w);
        assert!(m < bound && m > 0.95 * bound, "{m} vs {bound}");
    }
    assert_eq!(lstm.layer1.bias.as_vec(), vec![0.0; 4 * H]);
    let gru = dev.build_module::<builder::GruPooling<F, H, { 2 * H }>, f64>();
    assert_eq!(gru.layer2.gate_bias.as_vec(), vec![1.0; 2 * H]);
    assert_eq!(gru.layer2.candidate_bias.as_vec(), vec![0.0; H]);
    let m = max_abs(gru.layer1.candidate_recurrent_weights.as_vec());
    let bound = (6.0 / (F + 2 * H) as f64).sqrt();
    assert!(m < bound && m > 0.9 * bound, "{m} vs {bound}");
    let nv = dev.build_module::<builder::NeXtVladPooling<F, 128, 8, 16, 128, 256>, f64>();
    // Truncated normal, std sqrt(2.6 / fan_in), cut at two standard deviations.
    let std = (2.6 / F as f64).sqrt();
    let w = nv.expansion_weights.as_vec();
    assert!(max_abs(w.clone()) <= 2.0 * std);
    let sd = (w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64).sqrt();
    // The truncation leaves 0.88 of the spread.
    assert!((sd / (0.880 * std) - 1.0).abs() < 0.03, "{sd} vs {std}");
    assert_eq!(nv.expansion_bias.as_vec(), vec![0.0; 128]);
}

#[test]
fn no_frames_pool_to_zeros() {
    let dev = device();
    let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.zeros_like(&(2, 0, Const));
    let lstm = dev.build_module::<builder::LstmPooling<4, 3, 12>, f64>();
    assert_eq!(lstm.forward(x.clone()).as_vec(), vec![0.0; 24]);
    let gru = dev.build_module::<builder::GruPooling<4, 3, 6>, f64>();
    assert_eq!(gru.forward(x.clone().trace(Gradients::leaky())).as_vec(), vec![0.0; 12]);
    // A video whose mask is all zero keeps the zero state.
    let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
    let mask = valid_frame_mask(&dev, &[0, 3], (2, 3));
    assert_eq!(lstm.forward((x, mask)).as_vec()[..12], [0.0; 12]);
}
