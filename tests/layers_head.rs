//! Input, hidden, gating and classifier layers against `tests/reference/head.py`, plus
//! finite-difference gradients of every parameter, initialisations and sizes.

mod common;

use common::{assert_close, device, Case, Reference, TestDevice};
use dfdx::prelude::*;
use loupe::gradcheck::{check_gradients, GradReport, Tolerance};
use loupe::nn::{
    builder, BiasedContextGating, ClassifierPenalty, ContextGating, Dropout, FrameInput, Glu, Hidden,
    HiddenBn, Logistic, MixtureOfExperts, ProbabilityGating, SeContextGating, Stream,
};

fn head() -> Reference {
    Reference::load("head")
}

/// Loads `case`'s parameters into a freshly built `M`.
fn load<M: BuildOnDevice<TestDevice, E>, E: Dtype>(case: &Case) -> M::Built
where
    TestDevice: Device<E>,
    M::Built: TensorCollection<E, TestDevice>,
{
    let mut module = device().build_module::<M, E>();
    case.load_params(&mut module);
    module
}

// ---------------------------------------------------------------------------------------
// Reference values, f64 (~1e-10) and f32 (~1e-5).

fn frame_input_matches<E: Dtype>(tol: f64)
where
    TestDevice: Device<E>,
{
    let case = head().case("frame_input");
    let mut layer: FrameInput<6, E, _> = load::<builder::FrameInput<6>, E>(&case);
    let x: Tensor<(usize, usize, Const<6>), E, _> =
        case.tensor(&device(), "input", (2usize, 3usize, Const::<6>));
    assert_close(&layer.forward(x.clone()).as_vec(), &case.values("output_eval"), tol, "frame_input eval");
    assert_close(&layer.forward_mut(x).as_vec(), &case.values("output"), tol, "frame_input train");
    assert_close(&layer.bn.running_mean.as_vec(), &case.values("bn.running_mean_after"), tol, "running mean");
    assert_close(&layer.bn.running_var.as_vec(), &case.values("bn.running_var_after"), tol, "running var");
}

#[test]
fn frame_input_matches_reference() {
    frame_input_matches::<f64>(1e-10);
    frame_input_matches::<f32>(1e-5);
}

fn hidden_matches<E: Dtype>(tol: f64)
where
    TestDevice: Device<E>,
{
    let reference = head();
    let case = reference.case("hidden");
    let layer: Hidden<6, 4, 3, false, E, _> = load::<builder::Hidden<6, 4, 3, false>, E>(&case);
    let x = case.tensor(&device(), "input", (5usize, Const::<6>));
    assert_close(&layer.forward(x).as_vec(), &case.values("output"), tol, "hidden");

    let case = reference.case("hidden_relu6");
    let layer: Hidden<6, 4, 3, true, E, _> = load::<builder::Hidden<6, 4, 3, true>, E>(&case);
    let x = case.tensor(&device(), "input", (5usize, Const::<6>));
    assert_close(&layer.forward(x).as_vec(), &case.values("output"), tol, "hidden relu6");

    let case = reference.case("hidden_bn_relu6");
    let mut layer: HiddenBn<6, 4, 3, true, E, _> = load::<builder::HiddenBn<6, 4, 3, true>, E>(&case);
    let x = case.tensor(&device(), "input", (5usize, Const::<6>));
    assert_close(&layer.forward(x.clone()).as_vec(), &case.values("output_eval"), tol, "hidden bn eval");
    assert_close(&layer.forward_mut(x).as_vec(), &case.values("output"), tol, "hidden bn train");
    assert_close(
        &layer.bn.running_var.as_vec(),
        &case.values("bn.running_var_after"),
        tol,
        "hidden bn running var",
    );
}

#[test]
fn hidden_layers_match_reference() {
    hidden_matches::<f64>(1e-10);
    hidden_matches::<f32>(1e-5);
}

fn gating_matches<E: Dtype>(tol: f64)
where
    TestDevice: Device<E>,
{
    let reference = head();
    let case = reference.case("context_gating");
    let mut layer: ContextGating<5, E, _> = load::<builder::ContextGating<5>, E>(&case);
    let x = case.tensor(&device(), "input", (6usize, Const::<5>));
    assert_close(&layer.forward(x.clone()).as_vec(), &case.values("output_eval"), tol, "cg eval");
    assert_close(&layer.forward_mut(x).as_vec(), &case.values("output"), tol, "cg train");
    assert_close(
        &layer.bn.running_mean.as_vec(),
        &case.values("bn.running_mean_after"),
        tol,
        "cg running mean",
    );
    assert_close(&layer.bn.running_var.as_vec(), &case.values("bn.running_var_after"), tol, "cg running var");

    let case = reference.case("biased_context_gating");
    let layer: BiasedContextGating<5, E, _> = load::<builder::BiasedContextGating<5>, E>(&case);
    let x = case.tensor(&device(), "input", (6usize, Const::<5>));
    assert_close(&layer.forward(x).as_vec(), &case.values("output"), tol, "biased cg");

    let case = reference.case("glu");
    let layer: Glu<5, E, _> = load::<builder::Glu<5>, E>(&case);
    let x = case.tensor(&device(), "input", (6usize, Const::<5>));
    assert_close(&layer.forward(x).as_vec(), &case.values("output"), tol, "glu");

    let case = reference.case("probability_gating");
    let mut layer: ProbabilityGating<7, E, _> = load::<builder::ProbabilityGating<7>, E>(&case);
    let p = case.tensor(&device(), "input", (6usize, Const::<7>));
    assert_close(&layer.forward(p.clone()).as_vec(), &case.values("output_eval"), tol, "prob gating eval");
    assert_close(&layer.forward_mut(p).as_vec(), &case.values("output"), tol, "prob gating train");
    assert_close(
        &layer.bn.running_var.as_vec(),
        &case.values("bn.running_var_after"),
        tol,
        "prob gating running var",
    );
}

#[test]
fn gating_layers_match_reference() {
    gating_matches::<f64>(1e-10);
    gating_matches::<f32>(1e-5);
}

fn se_context_gating_matches<E: Dtype>(tol: f64)
where
    TestDevice: Device<E>,
{
    let case = head().case("se_context_gating");
    assert_eq!(case.dim("reduction"), 4);
    let mut layer: SeContextGating<8, 2, E, _> = load::<builder::SeContextGating<8, 2>, E>(&case);
    let x = case.tensor(&device(), "input", (6usize, Const::<8>));
    assert_close(&layer.forward(x.clone()).as_vec(), &case.values("output_eval"), tol, "se cg eval");
    assert_close(&layer.forward_mut(x).as_vec(), &case.values("output"), tol, "se cg train");
    assert_close(
        &layer.bn.running_mean.as_vec(),
        &case.values("bn.running_mean_after"),
        tol,
        "se running mean",
    );
    assert_close(&layer.bn.running_var.as_vec(), &case.values("bn.running_var_after"), tol, "se running var");
}

#[test]
fn se_context_gating_matches_reference() {
    se_context_gating_matches::<f64>(1e-10);
    se_context_gating_matches::<f32>(1e-5);
}

#[test]
fn dropout_is_the_identity_in_evaluation() {
    let case = head().case("dropout");
    let dev = device();
    let layer: Dropout<500_000, f64, _> = dev.build_module::<builder::Dropout<500_000>, f64>();
    let x = case.tensor(&dev, "input", (4usize, Const::<6>));
    assert_eq!(layer.forward(x).as_vec(), case.values("output_eval"));
    assert_eq!(layer.steps.as_vec(), [0.0], "evaluation draws no mask");
}

fn classifiers_match<E: Dtype>(tol: f64)
where
    TestDevice: Device<E>,
{
    let reference = head();
    // The case's parameters are the reference's flat Wg/We rearranged into loupe's
    // storage by the script: agreement proves the layouts (gate v(M+1)+m, expert vM+m).
    let case = reference.case("moe");
    let moe: MixtureOfExperts<6, 4, 2, E, _> = load::<builder::MixtureOfExperts<6, 4, 2>, E>(&case);
    let h = case.tensor(&device(), "input", (5usize, Const::<6>));
    assert_close(&moe.forward(h.clone()).as_vec(), &case.values("output"), tol, "moe");
    // Training and evaluation are the same function of the input.
    assert_close(
        &moe.forward(h.traced(moe.alloc_grads())).as_vec(),
        &case.values("output"),
        tol,
        "moe taped",
    );
    assert_close(&[moe.l2_penalty::<NoneTape>().as_vec()[0]], &case.values("penalty"), tol, "moe penalty");

    let case = reference.case("moe_three_experts");
    let moe: MixtureOfExperts<3, 2, 3, E, _> = load::<builder::MixtureOfExperts<3, 2, 3>, E>(&case);
    let h = case.tensor(&device(), "input", (4usize, Const::<3>));
    assert_close(&moe.forward(h).as_vec(), &case.values("output"), tol, "moe M=3");
    assert_close(
        &[moe.l2_penalty::<NoneTape>().as_vec()[0]],
        &case.values("penalty"),
        tol,
        "moe M=3 penalty",
    );

    let case = reference.case("logistic");
    let logistic: Logistic<6, 4, E, _> = load::<builder::Logistic<6, 4>, E>(&case);
    let x = case.tensor(&device(), "input", (5usize, Const::<6>));
    assert_close(&logistic.forward(x).as_vec(), &case.values("output"), tol, "logistic");
    assert_close(
        &[logistic.l2_penalty::<NoneTape>().as_vec()[0]],
        &case.values("penalty"),
        tol,
        "logistic penalty",
    );
}

#[test]
fn classifiers_and_penalties_match_reference() {
    classifiers_match::<f64>(1e-10);
    classifiers_match::<f32>(1e-5);
}

#[test]
fn moe_storage_is_the_reference_matrices_rearranged() {
    // The flat reference matrices and loupe's tensors hold the same numbers at the
    // documented positions: Wg[i, v(M+1)+m] = gate_weight[i, v, m] (m < M) or
    // dummy_gate_weight[i, v] (m = M); We[i, vM+m] = expert_weight[i, v, m].
    let case = head().case("moe");
    let (i_n, v_n, m_n) = (case.dim("in"), case.dim("classes"), case.dim("experts"));
    let wg = case.values("reference_gate_matrix");
    let we = case.values("reference_expert_matrix");
    let moe: MixtureOfExperts<6, 4, 2, f64, _> = load::<builder::MixtureOfExperts<6, 4, 2>, f64>(&case);
    let (gate, dummy, expert) =
        (moe.gate_weight.as_vec(), moe.dummy_gate_weight.as_vec(), moe.expert_weight.as_vec());
    for i in 0..i_n {
        for v in 0..v_n {
            for m in 0..=m_n {
                let flat = wg[i * v_n * (m_n + 1) + v * (m_n + 1) + m];
                let stored = if m < m_n { gate[(i * v_n + v) * m_n + m] } else { dummy[i * v_n + v] };
                assert_eq!(flat, stored, "Wg[{i}, {v}*(M+1)+{m}]");
            }
            for m in 0..m_n {
                assert_eq!(
                    we[i * v_n * m_n + v * m_n + m],
                    expert[(i * v_n + v) * m_n + m],
                    "We[{i}, {v}*M+{m}]"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Gradients: every element of every trainable parameter and of the input.

fn names(report: &GradReport) -> Vec<&str> {
    report.checked.iter().map(|(n, _)| n.as_str()).collect()
}

fn gradcheck<M, S, O>(module: &mut M, x: Tensor<S, f64, Cpu>) -> GradReport
where
    S: Shape,
    O: Shape,
    M: TensorCollection<f64, Cpu>
        + ModuleMut<Tensor<S, f64, Cpu, OwnedTape<f64, Cpu>>, Output = Tensor<O, f64, Cpu, OwnedTape<f64, Cpu>>>
        + ModuleMut<Tensor<S, f64, Cpu>, Output = Tensor<O, f64, Cpu>>,
{
    check_gradients(module, x, Tolerance::default(), 11).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// Moves batch norm off scale 1 / shift 0 so every term of its gradient matters.
fn perturb_bn<const C: usize>(bn: &mut loupe::nn::BatchNorm<C, f64, Cpu>, dev: &Cpu) {
    bn.scale = dev.sample_normal::<Rank1<C>>() * 0.5 + 1.0;
    bn.shift = dev.sample_normal::<Rank1<C>>() * 0.5;
}

#[test]
fn frame_input_and_stream_gradients_match_finite_differences() {
    let dev = loupe::device::cpu_seeded(21);
    let mut layer: FrameInput<5, f64, _> = dev.build_module::<builder::FrameInput<5>, f64>();
    perturb_bn(&mut layer.bn, &dev);
    let x: Tensor<(usize, usize, Const<5>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
    assert_eq!(names(&gradcheck(&mut layer, x.clone())), ["input", "bn.scale", "bn.shift"]);

    assert_eq!(names(&gradcheck(&mut Stream::<1, 3>, x.clone())), ["input"]);
    let rows: Tensor<(usize, Const<5>), f64, _> = dev.sample_normal_like(&(4, Const));
    assert_eq!(names(&gradcheck(&mut Stream::<3, 2>, rows)), ["input"]);
}

#[test]
fn stream_takes_its_channels_and_its_gradient_flows_back_into_them() {
    let dev = loupe::device::cpu_seeded(22);
    let x: Tensor<(usize, usize, Const<6>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
    let audio = Stream::<2, 3>.forward(x.trace(Gradients::leaky()));
    assert_eq!(audio.shape().concrete(), [2, 3, 3]);
    let xs = x.as_vec();
    let expected: Vec<f64> = xs.chunks(6).flat_map(|frame| frame[2..5].to_vec()).collect();
    assert_eq!(audio.as_vec(), expected);
    // d/dx sum(audio * w) is w on channels 2..5 and 0 elsewhere.
    let w: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
    let grads = (audio * w.clone()).sum::<Rank0, _>().backward();
    let g = grads.get(&x).as_vec();
    let wv = w.as_vec();
    for row in 0..6 {
        for c in 0..6 {
            let want = if (2..5).contains(&c) { wv[row * 3 + c - 2] } else { 0.0 };
            assert_eq!(g[row * 6 + c], want, "frame {row} channel {c}");
        }
    }
}

#[test]
fn hidden_gradients_match_finite_differences() {
    let dev = loupe::device::cpu_seeded(23);
    let x: Tensor<(usize, Const<4>), f64, _> = dev.sample_normal_like(&(5, Const));
    let mut plain: Hidden<4, 3, 2, false, f64, _> =
        dev.build_module::<builder::Hidden<4, 3, 2, false>, f64>();
    plain.bias = dev.sample_normal::<Rank1<3>>();
    assert_eq!(names(&gradcheck(&mut plain, x.clone())), ["input", "weight", "bias"]);

    // ReLU6 with values on both clipped sides and inside.
    let mut relu: Hidden<4, 3, 2, true, f64, _> = dev.build_module::<builder::Hidden<4, 3, 2, true>, f64>();
    relu.weight = dev.sample_normal::<Rank2<4, 3>>() * 2.0;
    relu.bias = dev.tensor([8.0, -2.0, 3.0]);
    let out = relu.forward(x.clone()).as_vec();
    assert!(out.contains(&0.0) && out.contains(&6.0) && out.iter().any(|&h| h > 0.0 && h < 6.0), "{out:?}");
    assert_eq!(names(&gradcheck(&mut relu, x.clone())), ["input", "weight", "bias"]);

    let mut bn: HiddenBn<4, 3, 2, true, f64, _> = dev.build_module::<builder::HiddenBn<4, 3, 2, true>, f64>();
    perturb_bn(&mut bn.bn, &dev);
    assert_eq!(names(&gradcheck(&mut bn, x.clone())), ["input", "weight", "bn.scale", "bn.shift"]);
    let mut bn_linear: HiddenBn<4, 3, 2, false, f64, _> =
        dev.build_module::<builder::HiddenBn<4, 3, 2, false>, f64>();
    perturb_bn(&mut bn_linear.bn, &dev);
    assert_eq!(names(&gradcheck(&mut bn_linear, x)), ["input", "weight", "bn.scale", "bn.shift"]);
}

#[test]
fn gating_gradients_match_finite_differences() {
    let dev = loupe::device::cpu_seeded(24);
    let x: Tensor<(usize, Const<4>), f64, _> = dev.sample_normal_like(&(5, Const));

    let mut cg: ContextGating<4, f64, _> = dev.build_module::<builder::ContextGating<4>, f64>();
    perturb_bn(&mut cg.bn, &dev);
    assert_eq!(names(&gradcheck(&mut cg, x.clone())), ["input", "weight", "bn.scale", "bn.shift"]);

    let mut biased: BiasedContextGating<4, f64, _> =
        dev.build_module::<builder::BiasedContextGating<4>, f64>();
    assert_eq!(names(&gradcheck(&mut biased, x.clone())), ["input", "weight", "bias"]);

    let mut glu: Glu<4, f64, _> = dev.build_module::<builder::Glu<4>, f64>();
    glu.bias = dev.sample_normal::<Rank1<4>>();
    glu.gate_bias = dev.sample_normal::<Rank1<4>>();
    assert_eq!(names(&gradcheck(&mut glu, x)), ["input", "weight", "bias", "gate_weight", "gate_bias"]);

    let mut gating: ProbabilityGating<5, f64, _> = dev.build_module::<builder::ProbabilityGating<5>, f64>();
    perturb_bn(&mut gating.bn, &dev);
    let p: Tensor<(usize, Const<5>), f64, _> = dev.sample_uniform_like(&(6, Const));
    assert_eq!(names(&gradcheck(&mut gating, p)), ["input", "weight", "bn.scale", "bn.shift"]);
}

#[test]
fn se_context_gating_gradients_match_finite_differences() {
    let dev = loupe::device::cpu_seeded(25);
    let x: Tensor<(usize, Const<8>), f64, _> = dev.sample_normal_like(&(5, Const));
    let mut se: SeContextGating<8, 2, f64, _> = dev.build_module::<builder::SeContextGating<8, 2>, f64>();
    perturb_bn(&mut se.bn, &dev);
    assert_eq!(
        names(&gradcheck(&mut se, x)),
        ["input", "squeeze_weight", "bn.scale", "bn.shift", "excite_weight"]
    );
}

/// Training zeroes about `p` of the values and scales the rest by `1 / (1 - p)`: over
/// 40,000 values the dropped fraction lies within 5 standard deviations of `p` (a fair
/// coin's 0.0025), so a wrong rate (or no dropout) fails.
#[test]
fn dropout_in_training_zeroes_about_p_and_scales_the_rest() {
    fn check<const PPM: usize>(dev: &Cpu) {
        let p = PPM as f64 / 1e6;
        let mut layer: Dropout<PPM, f64, _> = dev.build_module::<builder::Dropout<PPM>, f64>();
        let x: Tensor<(usize, Const<100>), f64, _> = dev.sample_uniform_like(&(400, Const));
        let x = x + 0.5; // no zeros in the input
        let (xs, y) = (x.as_vec(), layer.forward_mut(x.clone()).as_vec());
        let dropped = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        let sd = (p * (1.0 - p) / y.len() as f64).sqrt();
        assert!((dropped - p).abs() < 5.0 * sd, "p = {p}: dropped {dropped}");
        for (a, b) in xs.iter().zip(&y) {
            assert!(*b == 0.0 || (b - a / (1.0 - p)).abs() < 1e-12, "p = {p}: {a} -> {b}");
        }
        // Each pass draws a new mask; the gradient is the mask that was applied.
        let g = layer.forward_mut(x.trace(Gradients::leaky()));
        let mask: Vec<f64> = g.as_vec().iter().zip(&xs).map(|(y, x)| y / x).collect();
        let grads = g.sum::<Rank0, _>().backward();
        assert_close(&grads.get(&x).as_vec(), &mask, 1e-12, "gradient");
        assert_ne!(
            y.iter().map(|v| *v == 0.0).collect::<Vec<_>>(),
            mask.iter().map(|m| *m == 0.0).collect::<Vec<_>>()
        );
        assert_eq!(layer.steps.as_vec(), [2.0]);
    }
    let dev = loupe::device::cpu_seeded(26);
    check::<500_000>(&dev);
    check::<200_000>(&dev);
    check::<900_000>(&dev);
}

/// The masks depend on the layer's seed and step count alone: a copy of the layer (a
/// checkpoint's tensors) continues the same sequence, a layer built with another seed
/// does not.
#[test]
fn dropout_masks_resume_from_the_layer_state() {
    let dev = loupe::device::cpu_seeded(27);
    let mut a: Dropout<500_000, f64, _> = dev.build_module::<builder::Dropout<500_000>, f64>();
    let x: Tensor<(usize, Const<64>), f64, _> = dev.ones_like(&(8, Const));
    let _ = a.forward_mut(x.clone());
    let mut resumed: Dropout<500_000, f64, _> = dev.build_module::<builder::Dropout<500_000>, f64>();
    assert_ne!(resumed.seed.as_vec(), a.seed.as_vec(), "each build draws its seed");
    resumed.seed.copy_from(&a.seed.as_vec());
    resumed.steps.copy_from(&a.steps.as_vec());
    let (next, next_resumed) = (a.forward_mut(x.clone()).as_vec(), resumed.forward_mut(x.clone()).as_vec());
    assert_eq!(next, next_resumed);
    let mut other: Dropout<500_000, f64, _> = dev.build_module::<builder::Dropout<500_000>, f64>();
    other.steps.copy_from(&a.steps.as_vec());
    assert_ne!(other.forward_mut(x.clone()).as_vec(), a.forward_mut(x).as_vec());
}

#[test]
fn classifier_gradients_match_finite_differences() {
    let dev = loupe::device::cpu_seeded(25);
    let h: Tensor<(usize, Const<3>), f64, _> = dev.sample_normal_like(&(4, Const));

    let mut moe: MixtureOfExperts<3, 2, 2, f64, _> =
        dev.build_module::<builder::MixtureOfExperts<3, 2, 2>, f64>();
    moe.expert_bias = dev.sample_normal::<Rank2<2, 2>>();
    assert_eq!(
        names(&gradcheck(&mut moe, h.clone())),
        ["input", "gate_weight", "dummy_gate_weight", "expert_weight", "expert_bias"]
    );
    let mut moe3: MixtureOfExperts<3, 2, 3, f64, _> =
        dev.build_module::<builder::MixtureOfExperts<3, 2, 3>, f64>();
    moe3.gate_weight = dev.sample_normal::<Rank3<3, 2, 3>>() * 2.0;
    assert_eq!(
        names(&gradcheck(&mut moe3, h.clone())),
        ["input", "gate_weight", "dummy_gate_weight", "expert_weight", "expert_bias"]
    );

    let mut logistic: Logistic<3, 4, f64, _> = dev.build_module::<builder::Logistic<3, 4>, f64>();
    logistic.bias = dev.sample_normal::<Rank1<4>>();
    assert_eq!(names(&gradcheck(&mut logistic, h)), ["input", "weight", "bias"]);
}

/// `layer` behind a tanh, so that its input is not a leaf: a layer that uses its input
/// several times and drops the tape the input arrived on loses the upstream backward
/// ops, which a check on a leaf input cannot see.
#[derive(Debug, Clone)]
struct AfterTanh<M>(M);

impl<M: TensorCollection<f64, Cpu>> TensorCollection<f64, Cpu> for AfterTanh<M> {
    type To<E2: Dtype, D2: Device<E2>> = AfterTanh<M::To<E2, D2>>;
    fn iter_tensors<V: ModuleVisitor<Self, f64, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("layer", |s| &s.0, |s| &mut s.0), AfterTanh)
    }
}

impl<M, S: Shape, T: Tape<f64, Cpu>> ModuleMut<Tensor<S, f64, Cpu, T>> for AfterTanh<M>
where
    M: ModuleMut<Tensor<S, f64, Cpu, T>, Error = <Cpu as HasErr>::Err>,
{
    type Output = M::Output;
    type Error = M::Error;
    fn try_forward_mut(&mut self, x: Tensor<S, f64, Cpu, T>) -> Result<Self::Output, Self::Error> {
        self.0.try_forward_mut(x.try_tanh()?)
    }
}

/// Gradient-checks `layer` behind a tanh; returns the checked names without the
/// wrapper's `layer.` prefix.
fn gradcheck_after_tanh<M, S, O>(layer: M, x: Tensor<S, f64, Cpu>) -> Vec<String>
where
    S: Shape,
    O: Shape,
    M: TensorCollection<f64, Cpu>
        + ModuleMut<
            Tensor<S, f64, Cpu, OwnedTape<f64, Cpu>>,
            Output = Tensor<O, f64, Cpu, OwnedTape<f64, Cpu>>,
            Error = <Cpu as HasErr>::Err,
        > + ModuleMut<Tensor<S, f64, Cpu>, Output = Tensor<O, f64, Cpu>, Error = <Cpu as HasErr>::Err>,
{
    let report = gradcheck(&mut AfterTanh(layer), x);
    report.checked.iter().map(|(n, _)| n.strip_prefix("layer.").unwrap_or(n).to_string()).collect()
}

#[test]
fn gradients_flow_back_through_upstream_ops() {
    let dev = loupe::device::cpu_seeded(28);
    let frames: Tensor<(usize, usize, Const<5>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
    let x: Tensor<(usize, Const<4>), f64, _> = dev.sample_normal_like(&(5, Const));
    let with_bn = ["input", "weight", "bn.scale", "bn.shift"];

    let mut input = dev.build_module::<builder::FrameInput<5>, f64>();
    perturb_bn(&mut input.bn, &dev);
    assert_eq!(gradcheck_after_tanh(input, frames.clone()), ["input", "bn.scale", "bn.shift"]);
    assert_eq!(gradcheck_after_tanh(Stream::<1, 3>, frames), ["input"]);

    let hidden = dev.build_module::<builder::Hidden<4, 3, 2, false>, f64>();
    assert_eq!(gradcheck_after_tanh(hidden, x.clone()), ["input", "weight", "bias"]);
    let mut hidden_bn = dev.build_module::<builder::HiddenBn<4, 3, 2, true>, f64>();
    perturb_bn(&mut hidden_bn.bn, &dev);
    assert_eq!(gradcheck_after_tanh(hidden_bn, x.clone()), with_bn);

    let mut cg = dev.build_module::<builder::ContextGating<4>, f64>();
    perturb_bn(&mut cg.bn, &dev);
    assert_eq!(gradcheck_after_tanh(cg, x.clone()), with_bn);
    let biased = dev.build_module::<builder::BiasedContextGating<4>, f64>();
    assert_eq!(gradcheck_after_tanh(biased, x.clone()), ["input", "weight", "bias"]);
    let glu = dev.build_module::<builder::Glu<4>, f64>();
    assert_eq!(gradcheck_after_tanh(glu, x.clone()), ["input", "weight", "bias", "gate_weight", "gate_bias"]);
    let mut gating = dev.build_module::<builder::ProbabilityGating<4>, f64>();
    perturb_bn(&mut gating.bn, &dev);
    assert_eq!(gradcheck_after_tanh(gating, x.clone()), with_bn);

    let mut moe = dev.build_module::<builder::MixtureOfExperts<4, 2, 2>, f64>();
    moe.expert_bias = dev.sample_normal::<Rank2<2, 2>>();
    assert_eq!(
        gradcheck_after_tanh(moe, x.clone()),
        ["input", "gate_weight", "dummy_gate_weight", "expert_weight", "expert_bias"]
    );
    let logistic = dev.build_module::<builder::Logistic<4, 3>, f64>();
    assert_eq!(gradcheck_after_tanh(logistic, x), ["input", "weight", "bias"]);
}

/// A classifier whose output has its L2 penalty added: the penalty is built on its own
/// tape and merged into the output's, exactly as a training loss adds it.
#[derive(Debug, Clone)]
struct WithPenalty<C>(C);

impl<C: TensorCollection<f64, Cpu>> TensorCollection<f64, Cpu> for WithPenalty<C> {
    type To<E2: Dtype, D2: Device<E2>> = WithPenalty<C::To<E2, D2>>;
    fn iter_tensors<V: ModuleVisitor<Self, f64, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("classifier", |s| &s.0, |s| &mut s.0), WithPenalty)
    }
}

impl<C, const I: usize, const V: usize, T: Tape<f64, Cpu>> ModuleMut<Tensor<(usize, Const<I>), f64, Cpu, T>>
    for WithPenalty<C>
where
    C: ClassifierPenalty<f64, Cpu>
        + Module<
            Tensor<(usize, Const<I>), f64, Cpu, T>,
            Output = Tensor<(usize, Const<V>), f64, Cpu, T>,
            Error = <Cpu as HasErr>::Err,
        >,
{
    type Output = Tensor<(usize, Const<V>), f64, Cpu, T>;
    type Error = <Cpu as HasErr>::Err;
    fn try_forward_mut(
        &mut self,
        x: Tensor<(usize, Const<I>), f64, Cpu, T>,
    ) -> Result<Self::Output, Self::Error> {
        let out = self.0.try_forward(x)?;
        let shape = *out.shape();
        let penalty = self.0.try_l2_penalty::<T>()?;
        out.try_add(penalty.try_broadcast_like(&shape)?)
    }
}

#[test]
fn penalty_gradients_reach_the_parameters_through_another_tape() {
    let dev = loupe::device::cpu_seeded(26);
    let h: Tensor<(usize, Const<3>), f64, _> = dev.sample_normal_like(&(4, Const));
    let mut moe = WithPenalty(dev.build_module::<builder::MixtureOfExperts<3, 2, 2>, f64>());
    moe.0.expert_bias = dev.sample_normal::<Rank2<2, 2>>();
    assert_eq!(
        names(&gradcheck(&mut moe, h.clone())),
        [
            "input",
            "classifier.gate_weight",
            "classifier.dummy_gate_weight",
            "classifier.expert_weight",
            "classifier.expert_bias"
        ]
    );
    let mut logistic = WithPenalty(dev.build_module::<builder::Logistic<3, 4>, f64>());
    assert_eq!(names(&gradcheck(&mut logistic, h)), ["input", "classifier.weight", "classifier.bias"]);
}

#[test]
fn penalty_gradient_is_the_weights() {
    // d/dW |W|^2 / 2 = W, for every gate slot (dummy included) and every expert weight.
    let dev = loupe::device::cpu_seeded(27);
    let moe: MixtureOfExperts<3, 2, 2, f64, _> =
        dev.build_module::<builder::MixtureOfExperts<3, 2, 2>, f64>();
    let grads = moe.l2_penalty::<OwnedTape<f64, Cpu>>().backward();
    assert_eq!(grads.get(&moe.gate_weight).as_vec(), moe.gate_weight.as_vec());
    assert_eq!(grads.get(&moe.dummy_gate_weight).as_vec(), moe.dummy_gate_weight.as_vec());
    assert_eq!(grads.get(&moe.expert_weight).as_vec(), moe.expert_weight.as_vec());

    let logistic: Logistic<3, 4, f64, _> = dev.build_module::<builder::Logistic<3, 4>, f64>();
    let grads = logistic.l2_penalty::<OwnedTape<f64, Cpu>>().backward();
    assert_eq!(grads.get(&logistic.weight).as_vec(), logistic.weight.as_vec());
}

// ---------------------------------------------------------------------------------------
// Initialisation, sizes, probabilities.

/// Mean and (population) standard deviation.
fn moments(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Asserts that `values` look like draws with standard deviation `std` around `mean`:
/// the sample mean within 5 standard errors, the sample std within `std_tol` (relative).
fn assert_distribution(values: &[f32], mean: f64, std: f64, std_tol: f64, what: &str) {
    let (m, s) = moments(values);
    let n = values.len() as f64;
    assert!((m - mean).abs() < 5.0 * std / n.sqrt(), "{what}: mean {m}, expected {mean}");
    assert!((s / std - 1.0).abs() < std_tol, "{what}: std {s}, expected {std}");
}

fn assert_glorot(values: &[f32], fan_in: usize, fan_out: usize, what: &str) {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let max = values.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    assert!(max <= bound && max > 0.95 * bound, "{what}: max |w| {max}, bound {bound}");
    assert_distribution(values, 0.0, bound / 3f64.sqrt(), 0.06, what);
}

fn assert_fresh_bn<const C: usize>(bn: &loupe::nn::BatchNorm<C, f32, TestDevice>) {
    assert_eq!(bn.scale.as_vec(), vec![1.0; C]);
    assert_eq!(bn.shift.as_vec(), vec![0.0; C]);
    assert_eq!(bn.running_mean.as_vec(), vec![0.0; C]);
    assert_eq!(bn.running_var.as_vec(), vec![1.0; C]);
}

#[test]
fn initialisations_follow_the_reference() {
    let dev = device();

    let input: FrameInput<16, f32, _> = dev.build_module::<builder::FrameInput<16>, f32>();
    assert_fresh_bn(&input.bn);

    // Hidden weights use the cluster count FAN, not I.
    let hidden: Hidden<64, 128, 16, false, f32, _> =
        dev.build_module::<builder::Hidden<64, 128, 16, false>, f32>();
    assert_distribution(&hidden.weight.as_vec(), 0.0, 0.25, 0.04, "hidden weight");
    assert_distribution(&hidden.bias.as_vec(), 0.0, 0.01, 0.2, "hidden bias");
    let hidden_bn: HiddenBn<64, 128, 16, true, f32, _> =
        dev.build_module::<builder::HiddenBn<64, 128, 16, true>, f32>();
    assert_distribution(&hidden_bn.weight.as_vec(), 0.0, 0.25, 0.04, "hidden bn weight");
    assert_fresh_bn(&hidden_bn.bn);

    let cg: ContextGating<128, f32, _> = dev.build_module::<builder::ContextGating<128>, f32>();
    assert_distribution(&cg.weight.as_vec(), 0.0, 1.0 / 128f64.sqrt(), 0.04, "cg weight");
    assert_fresh_bn(&cg.bn);
    let biased: BiasedContextGating<128, f32, _> =
        dev.build_module::<builder::BiasedContextGating<128>, f32>();
    assert_distribution(&biased.weight.as_vec(), 0.0, 1.0 / 128f64.sqrt(), 0.04, "biased cg weight");
    assert_distribution(&biased.bias.as_vec(), 0.0, 1.0 / 128f64.sqrt(), 0.3, "biased cg bias");
    let glu: Glu<128, f32, _> = dev.build_module::<builder::Glu<128>, f32>();
    assert_distribution(&glu.weight.as_vec(), 0.0, 1.0 / 128f64.sqrt(), 0.04, "glu weight");
    assert_distribution(&glu.gate_weight.as_vec(), 0.0, 1.0 / 128f64.sqrt(), 0.04, "glu gate weight");
    assert_distribution(&glu.bias.as_vec(), 0.0, 0.01, 0.3, "glu bias");
    assert_distribution(&glu.gate_bias.as_vec(), 0.0, 0.01, 0.3, "glu gate bias");
    let gating: ProbabilityGating<128, f32, _> = dev.build_module::<builder::ProbabilityGating<128>, f32>();
    assert_distribution(&gating.weight.as_vec(), 0.0, 1.0 / 128f64.sqrt(), 0.04, "probability gating weight");
    assert_fresh_bn(&gating.bn);

    // Glorot bounds from the reference's full matrices: Wg is I x V(M+1), We is I x VM.
    let moe: MixtureOfExperts<64, 32, 2, f32, _> =
        dev.build_module::<builder::MixtureOfExperts<64, 32, 2>, f32>();
    let mut all_gates = moe.gate_weight.as_vec();
    all_gates.extend(moe.dummy_gate_weight.as_vec());
    assert_glorot(&all_gates, 64, 32 * 3, "moe gates");
    assert_glorot(&moe.dummy_gate_weight.as_vec(), 64, 32 * 3, "moe dummy gate");
    assert_glorot(&moe.expert_weight.as_vec(), 64, 32 * 2, "moe experts");
    assert_eq!(moe.expert_bias.as_vec(), vec![0.0; 64]);

    let logistic: Logistic<64, 96, f32, _> = dev.build_module::<builder::Logistic<64, 96>, f32>();
    assert_glorot(&logistic.weight.as_vec(), 64, 96, "logistic weight");
    assert_eq!(logistic.bias.as_vec(), vec![0.0; 96]);
}

#[test]
fn output_sizes_and_parameter_counts() {
    let dev = device();
    let batch = 7;

    let mut input: FrameInput<12, f32, _> = dev.build_module::<builder::FrameInput<12>, f32>();
    let frames: Tensor<(usize, Const<5>, Const<12>), f32, _> = dev.sample_normal_like(&(batch, Const, Const));
    assert_eq!(input.forward_mut(frames.clone()).shape().concrete(), [batch, 5, 12]);
    assert_eq!(input.num_trainable_params(), 2 * 12);
    let video: Tensor<(usize, Const<5>, Const<8>), f32, _> = Stream::<0, 8>.forward(frames.clone());
    let audio: Tensor<(usize, Const<5>, Const<4>), f32, _> = Stream::<8, 4>.forward(frames);
    assert_eq!((video.shape().concrete(), audio.shape().concrete()), ([batch, 5, 8], [batch, 5, 4]));

    let x: Tensor<(usize, Const<10>), f32, _> = dev.sample_normal_like(&(batch, Const));
    let hidden: Hidden<10, 6, 4, false, f32, _> = dev.build_module::<builder::Hidden<10, 6, 4, false>, f32>();
    assert_eq!(hidden.forward(x.clone()).shape().concrete(), [batch, 6]);
    assert_eq!(hidden.num_trainable_params(), 10 * 6 + 6);
    let hidden_bn: HiddenBn<10, 6, 4, true, f32, _> =
        dev.build_module::<builder::HiddenBn<10, 6, 4, true>, f32>();
    assert_eq!(hidden_bn.forward(x.clone()).shape().concrete(), [batch, 6]);
    assert_eq!(hidden_bn.num_trainable_params(), 10 * 6 + 2 * 6);

    let cg: ContextGating<10, f32, _> = dev.build_module::<builder::ContextGating<10>, f32>();
    assert_eq!(cg.forward(x.clone()).shape().concrete(), [batch, 10]);
    assert_eq!(cg.num_trainable_params(), 10 * 10 + 2 * 10);
    let biased: BiasedContextGating<10, f32, _> = dev.build_module::<builder::BiasedContextGating<10>, f32>();
    assert_eq!(biased.forward(x.clone()).shape().concrete(), [batch, 10]);
    assert_eq!(biased.num_trainable_params(), 10 * 10 + 10);
    let glu: Glu<10, f32, _> = dev.build_module::<builder::Glu<10>, f32>();
    assert_eq!(glu.forward(x.clone()).shape().concrete(), [batch, 10]);
    assert_eq!(glu.num_trainable_params(), 2 * (10 * 10 + 10));

    let moe: MixtureOfExperts<10, 9, 2, f32, _> =
        dev.build_module::<builder::MixtureOfExperts<10, 9, 2>, f32>();
    let p = moe.forward(x.clone());
    assert_eq!(p.shape().concrete(), [batch, 9]);
    assert_eq!(moe.num_trainable_params(), 10 * 9 * (2 + 1) + 10 * 9 * 2 + 9 * 2);
    let logistic: Logistic<10, 9, f32, _> = dev.build_module::<builder::Logistic<10, 9>, f32>();
    assert_eq!(logistic.forward(x).shape().concrete(), [batch, 9]);
    assert_eq!(logistic.num_trainable_params(), 10 * 9 + 9);
    let gating: ProbabilityGating<9, f32, _> = dev.build_module::<builder::ProbabilityGating<9>, f32>();
    assert_eq!(gating.forward(p).shape().concrete(), [batch, 9]);
    assert_eq!(gating.num_trainable_params(), 9 * 9 + 2 * 9);
}

#[test]
fn moe_outputs_are_probabilities() {
    let dev = device();
    let mut moe: MixtureOfExperts<32, 100, 2, f32, _> =
        dev.build_module::<builder::MixtureOfExperts<32, 100, 2>, f32>();
    moe.expert_bias = dev.sample_normal::<Rank2<100, 2>>() * 3.0;
    for scale in [0.1f32, 1.0, 10.0] {
        let h: Tensor<(usize, Const<32>), f32, _> = dev.sample_normal_like(&(16, Const)) * scale;
        let p = moe.forward(h).as_vec();
        assert!(
            p.iter().all(|&p| p > 0.0 && p < 1.0),
            "scale {scale}: {:?}",
            p.iter().find(|&&p| p <= 0.0 || p >= 1.0)
        );
    }
}

#[test]
fn evaluation_does_not_depend_on_the_batch() {
    // Running statistics at evaluation: a video's gated vector is the same alone or in a batch.
    let dev = device();
    let cg: ContextGating<6, f32, _> = dev.build_module::<builder::ContextGating<6>, f32>();
    let x: Tensor<(usize, Const<6>), f32, _> = dev.sample_normal_like(&(5, Const));
    let batch = cg.forward(x.clone()).as_vec();
    let first: Tensor<(usize, Const<6>), f32, _> = x.slice((0..1, ..)).realize();
    let alone: Vec<f64> = cg.forward(first).as_vec().into_iter().map(f64::from).collect();
    // Equal up to the matmul's summation order, which depends on the batch size.
    assert_close(&batch[..6], &alone, 1e-6, "first video alone vs in its batch");
}
