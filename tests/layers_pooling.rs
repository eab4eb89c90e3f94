//! Pooling layers (docs/reference.md section 2) against `tests/reference/pooling.py`, finite
//! differences for every parameter, sizes, and degenerate inputs.

mod common;

use common::{assert_close, device, Case, Reference};
use dfdx::prelude::*;
use loupe::gradcheck::{check_gradients, named_params, Tolerance};
use loupe::nn::{
    builder, AveragePooling, BiasedSoftAssignment, MaxPooling, NetFvPooling, NetRvladPooling, NetVladPooling,
    SoftAssignment, SoftBowPooling,
};

// B = 2 videos, S = 5 frames, D = 4 features, K = 3 clusters (pooling.py's sizes).
type Frames5<E> = Tensor<(usize, Const<5>, Const<4>), E, TestDevice>;
use common::TestDevice;

fn frames5<E: Dtype>(case: &Case, dev: &TestDevice) -> Frames5<E>
where
    TestDevice: Device<E>,
{
    case.tensor(dev, "input", (case.dim("batch"), Const::<5>, Const::<4>))
}

/// Evaluation output, then training output and running averages, against the case.
macro_rules! assert_matches_case {
    ($model:expr, $x:expr, $case:expr, $tol:expr, $bn:literal) => {{
        let (model, x, case, tol) = (&mut $model, $x, &$case, $tol);
        assert_close(&model.forward(x.clone()).as_vec(), &case.values("output_eval"), tol, "eval");
        assert_close(&model.forward_mut(x).as_vec(), &case.values("output"), tol, "train");
        let after: Vec<_> = named_params(&*model)
            .into_iter()
            .filter(|p| p.name.ends_with("running_mean") || p.name.ends_with("running_var"))
            .collect();
        assert_eq!(after.len(), 2);
        for p in after {
            let expected = case.values(&format!("{}{}_after", $bn, p.name.rsplit('.').next().unwrap()));
            assert_close(&p.values, &expected, tol, &p.name);
        }
    }};
}

#[test]
fn soft_assignment_matches_reference() {
    let case = Reference::load("pooling").case("soft_assignment");
    let dev = device();
    let mut layer: SoftAssignment<4, 3, f64, _> = dev.build_module::<builder::SoftAssignment<4, 3>, f64>();
    case.load_params(&mut layer);
    assert_matches_case!(layer, frames5::<f64>(&case, &dev), case, 1e-10, "bn.");

    let mut layer: SoftAssignment<4, 3, f32, _> = dev.build_module::<builder::SoftAssignment<4, 3>, f32>();
    case.load_params(&mut layer);
    assert_matches_case!(layer, frames5::<f32>(&case, &dev), case, 1e-5, "bn.");
}

#[test]
fn biased_soft_assignment_matches_reference() {
    let case = Reference::load("pooling").case("biased_soft_assignment");
    let dev = device();
    let mut layer: BiasedSoftAssignment<4, 3, f64, _> =
        dev.build_module::<builder::BiasedSoftAssignment<4, 3>, f64>();
    case.load_params(&mut layer);
    assert_close(&layer.forward(frames5::<f64>(&case, &dev)).as_vec(), &case.values("output"), 1e-10, "f64");
    let mut layer: BiasedSoftAssignment<4, 3, f32, _> =
        dev.build_module::<builder::BiasedSoftAssignment<4, 3>, f32>();
    case.load_params(&mut layer);
    assert_close(&layer.forward(frames5::<f32>(&case, &dev)).as_vec(), &case.values("output"), 1e-5, "f32");
}

macro_rules! clustering_reference_test {
    ($test:ident, $case:literal, $layer:ident < $($c:literal),* >) => {
        #[test]
        fn $test() {
            let case = Reference::load("pooling").case($case);
            let dev = device();
            let mut layer: $layer<$($c,)* f64, _> = dev.build_module::<builder::$layer<$($c),*>, f64>();
            case.load_params(&mut layer);
            assert_matches_case!(layer, frames5::<f64>(&case, &dev), case, 1e-10, "assignment.bn.");

            let mut layer: $layer<$($c,)* f32, _> = dev.build_module::<builder::$layer<$($c),*>, f32>();
            case.load_params(&mut layer);
            assert_matches_case!(layer, frames5::<f32>(&case, &dev), case, 1e-5, "assignment.bn.");
        }
    };
}

clustering_reference_test!(net_vlad_matches_reference, "net_vlad", NetVladPooling<4, 3, 12>);
clustering_reference_test!(net_rvlad_matches_reference, "net_rvlad", NetRvladPooling<4, 3, 12>);
clustering_reference_test!(net_fv_matches_reference, "net_fv", NetFvPooling<4, 3, 24>);
clustering_reference_test!(soft_bow_matches_reference, "soft_bow", SoftBowPooling<4, 3>);

#[test]
fn net_vlad_matches_reference_with_a_runtime_frame_count() {
    // One layer, first on 2 videos of `Const<5>` frames, then on 3 videos of 7 frames
    // with `S` a runtime `usize` (pooling.py gives both cases the same parameters).
    let reference = Reference::load("pooling");
    let (case5, case7) = (reference.case("net_vlad"), reference.case("net_vlad_7_frames"));
    let dev = device();
    let mut layer: NetVladPooling<4, 3, 12, f64, _> =
        dev.build_module::<builder::NetVladPooling<4, 3, 12>, f64>();
    case5.load_params(&mut layer);
    let x5 = frames5::<f64>(&case5, &dev);
    assert_close(&layer.forward(x5).as_vec(), &case5.values("output_eval"), 1e-10, "eval, 5 frames");
    let x7: Tensor<(usize, usize, Const<4>), f64, _> = case7.tensor(&dev, "input", (3, 7, Const));
    assert_matches_case!(layer, x7, case7, 1e-10, "assignment.bn.");
}

#[test]
fn temporal_pooling_matches_reference() {
    let reference = Reference::load("pooling");
    let dev = device();
    let case = reference.case("average_pooling");
    assert_close(
        &AveragePooling::<4>.forward(frames5::<f64>(&case, &dev)).as_vec(),
        &case.values("output"),
        1e-12,
        "avg",
    );
    assert_close(
        &AveragePooling::<4>.forward(frames5::<f32>(&case, &dev)).as_vec(),
        &case.values("output"),
        1e-6,
        "avg f32",
    );
    let case = reference.case("max_pooling");
    assert_close(
        &MaxPooling::<4>.forward(frames5::<f64>(&case, &dev)).as_vec(),
        &case.values("output"),
        0.0,
        "max",
    );
    let x: Tensor<(usize, usize, Const<4>), f32, _> = case.tensor(&dev, "input", (2, 5, Const));
    assert_close(&MaxPooling::<4>.forward(x).as_vec(), &case.values("output"), 1e-7, "max f32");
}

/// Names checked by the gradient checker (`input` first) must be exactly `expected`.
fn assert_checked(report: &loupe::gradcheck::GradReport, expected: &[&str]) {
    let names: Vec<_> = report.checked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected);
}

const ASSIGNMENT: [&str; 3] = ["assignment.weights", "assignment.bn.scale", "assignment.bn.shift"];

/// Loads the reference case's parameters (off their initial values, so every term
/// matters) into `layer` and checks every gradient at the case's input.
macro_rules! gradient_test {
    ($test:ident, $case:literal, $layer:ident < $($c:literal),* >, [$($name:expr),*]) => {
        #[test]
        fn $test() {
            let case = Reference::load("pooling").case($case);
            let dev = loupe::device::cpu_seeded(1);
            let mut layer: $layer<$($c,)* f64, Cpu> = dev.build_module::<builder::$layer<$($c),*>, f64>();
            case.load_params(&mut layer);
            let x: Tensor<(usize, Const<5>, Const<4>), f64, _> = case.tensor(&dev, "input", (2, Const, Const));
            let report = check_gradients(&mut layer, x, Tolerance::default(), 7).unwrap_or_else(|e| panic!("{e:#?}"));
            let mut expected = vec!["input"];
            $(expected.extend($name);)*
            assert_checked(&report, &expected);
        }
    };
}

gradient_test!(soft_assignment_gradients, "soft_assignment", SoftAssignment<4, 3>, [["weights", "bn.scale", "bn.shift"]]);
gradient_test!(biased_soft_assignment_gradients, "biased_soft_assignment", BiasedSoftAssignment<4, 3>, [["weights", "bias"]]);
gradient_test!(net_vlad_gradients, "net_vlad", NetVladPooling<4, 3, 12>, [ASSIGNMENT, ["centers"]]);
gradient_test!(net_rvlad_gradients, "net_rvlad", NetRvladPooling<4, 3, 12>, [ASSIGNMENT]);
gradient_test!(net_fv_gradients, "net_fv", NetFvPooling<4, 3, 24>, [ASSIGNMENT, ["centers", "covariance_weights"]]);
gradient_test!(soft_bow_gradients, "soft_bow", SoftBowPooling<4, 3>, [ASSIGNMENT]);

#[test]
fn temporal_pooling_gradients() {
    let dev = loupe::device::cpu_seeded(2);
    let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.sample_normal_like(&(2, 5, Const));
    let report = check_gradients(&mut AveragePooling::<4>, x.clone(), Tolerance::default(), 8)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_checked(&report, &["input"]);
    let report = check_gradients(&mut MaxPooling::<4>, x, Tolerance::default(), 9)
        .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_checked(&report, &["input"]);
}

#[test]
fn net_vlad_gradients_with_as_many_clusters_as_features() {
    // K == D: any reduction or broadcast over an unnamed axis would pick the wrong one.
    let dev = loupe::device::cpu_seeded(3);
    let mut layer: NetVladPooling<3, 3, 9, f64, Cpu> =
        dev.build_module::<builder::NetVladPooling<3, 3, 9>, f64>();
    layer.assignment.bn.scale = dev.tensor([0.7, 1.3, -0.9]);
    layer.assignment.bn.shift = dev.tensor([0.2, -0.4, 0.1]);
    let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
    let report =
        check_gradients(&mut layer, x, Tolerance::default(), 10).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_checked(
        &report,
        &["input", "assignment.weights", "assignment.bn.scale", "assignment.bn.shift", "centers"],
    );
}

#[test]
fn output_sizes_and_parameter_counts() {
    const D: usize = 8;
    const K: usize = 4;
    let dev = device();
    let x: Tensor<(usize, usize, Const<D>), f32, _> = dev.sample_normal_like(&(3, 6, Const));

    let m = dev.build_module::<builder::SoftAssignment<D, K>, f32>();
    assert_eq!(m.forward(x.clone()).shape().concrete(), [3, 6, K]);
    assert_eq!(m.num_trainable_params(), D * K + 2 * K);
    let m = dev.build_module::<builder::BiasedSoftAssignment<D, K>, f32>();
    assert_eq!(m.forward(x.clone()).shape().concrete(), [3, 6, K]);
    assert_eq!(m.num_trainable_params(), D * K + K);

    let m = dev.build_module::<builder::NetVladPooling<D, K, 32>, f32>();
    let y: Tensor<(usize, Const<{ K * D }>), f32, _> = m.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, K * D]);
    assert_eq!(m.num_trainable_params(), D * K + 2 * K + D * K);

    let m = dev.build_module::<builder::NetRvladPooling<D, K, 32>, f32>();
    let y: Tensor<(usize, Const<{ K * D }>), f32, _> = m.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, K * D]);
    assert_eq!(m.num_trainable_params(), D * K + 2 * K);

    let m = dev.build_module::<builder::NetFvPooling<D, K, 64>, f32>();
    let y: Tensor<(usize, Const<{ 2 * K * D }>), f32, _> = m.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, 2 * K * D]);
    assert_eq!(m.num_trainable_params(), D * K + 2 * K + 2 * D * K);

    let m = dev.build_module::<builder::SoftBowPooling<D, K>, f32>();
    let y: Tensor<(usize, Const<K>), f32, _> = m.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, K]);
    assert_eq!(m.num_trainable_params(), D * K + 2 * K);

    let y: Tensor<(usize, Const<D>), f32, _> = AveragePooling::<D>.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, D]);
    let y: Tensor<(usize, Const<D>), f32, _> = MaxPooling::<D>.forward(x);
    assert_eq!(y.shape().concrete(), [3, D]);
    assert_eq!(<MaxPooling<D> as NumParams<f32, TestDevice>>::num_trainable_params(&MaxPooling), 0);
    assert_eq!(<AveragePooling<D> as NumParams<f32, TestDevice>>::num_trainable_params(&AveragePooling), 0);
}

#[test]
fn checkpoint_keys_are_the_field_names() {
    let dev = device();
    let names = |params: Vec<loupe::gradcheck::NamedParam<f32>>| {
        params.into_iter().map(|p| p.name).collect::<Vec<_>>()
    };
    let fv = dev.build_module::<builder::NetFvPooling<4, 3, 24>, f32>();
    assert_eq!(
        names(named_params(&fv)),
        [
            "assignment.weights",
            "assignment.bn.scale",
            "assignment.bn.shift",
            "assignment.bn.running_mean",
            "assignment.bn.running_var",
            "assignment.bn.updates",
            "centers",
            "covariance_weights",
        ]
    );
    let bias = dev.build_module::<builder::BiasedSoftAssignment<4, 3>, f32>();
    assert_eq!(names(named_params(&bias)), ["weights", "bias"]);
}

#[test]
fn parameters_start_as_the_paper_initialises_them() {
    // N(0, 1/sqrt(D)) weights and centres, N(1, 1/sqrt(D)) covariance weights, BN 1/0.
    const D: usize = 256;
    let dev = loupe::device::cpu_seeded(4);
    let fv = dev.build_module::<builder::NetFvPooling<D, 64, { 2 * 64 * D }>, f64>();
    let moments = |v: Vec<f64>| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        (mean, (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt())
    };
    let std = 1.0 / (D as f64).sqrt();
    for (name, v, expected_mean) in [
        ("weights", fv.assignment.weights.as_vec(), 0.0),
        ("centers", fv.centers.as_vec(), 0.0),
        ("covariance_weights", fv.covariance_weights.as_vec(), 1.0),
    ] {
        let (mean, sd) = moments(v);
        // 16384 draws: the sample mean is within 4 standard errors (4 * std / 128).
        assert!((mean - expected_mean).abs() < 4.0 * std / 128.0, "{name}: mean {mean}");
        assert!((sd / std - 1.0).abs() < 0.03, "{name}: std {sd}, expected {std}");
    }
    assert_eq!(fv.assignment.bn.scale.as_vec(), vec![1.0; 64]);
    assert_eq!(fv.assignment.bn.shift.as_vec(), vec![0.0; 64]);
}

fn assert_finite<E: Dtype>(values: &[E], what: &str) {
    assert!(values.iter().all(|v| v.to_f64().unwrap().is_finite()), "{what}: {values:?}");
}

/// Zero frames and all-zero frames pool to finite values in training and evaluation,
/// and leave finite running averages.
macro_rules! degenerate_input_test {
    ($test:ident, $builder:ty) => {
        #[test]
        fn $test() {
            let dev = device();
            let mut layer = dev.build_module::<$builder, f64>();
            for frames in [0usize, 4] {
                let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.zeros_like(&(2, frames, Const));
                let what = format!("{} frames", frames);
                assert_finite(&layer.forward(x.clone()).as_vec(), &format!("eval, {what}"));
                let train = layer.forward_mut(x.trace(Gradients::leaky()));
                assert_finite(&train.as_vec(), &format!("train, {what}"));
                let grads = train.sum().backward();
                if frames > 0 {
                    // (dfdx's `as_vec` panics on an empty tensor.)
                    assert_finite(&grads.get(&x).as_vec(), &format!("input gradient, {what}"));
                }
                for p in named_params::<f64, TestDevice, _>(&layer) {
                    assert_finite(&p.values, &format!("{}, {what}", p.name));
                }
            }
        }
    };
}

degenerate_input_test!(net_vlad_is_finite_on_empty_and_zero_input, builder::NetVladPooling<4, 3, 12>);
degenerate_input_test!(net_rvlad_is_finite_on_empty_and_zero_input, builder::NetRvladPooling<4, 3, 12>);
degenerate_input_test!(net_fv_is_finite_on_empty_and_zero_input, builder::NetFvPooling<4, 3, 24>);
degenerate_input_test!(soft_bow_is_finite_on_empty_and_zero_input, builder::SoftBowPooling<4, 3>);
degenerate_input_test!(average_pooling_is_finite_on_empty_and_zero_input, AveragePooling<4>);
degenerate_input_test!(max_pooling_is_finite_on_empty_and_zero_input, MaxPooling<4>);

#[test]
fn empty_input_pools_to_zeros() {
    let dev = device();
    let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.zeros_like(&(2, 0, Const));
    let mut vlad = dev.build_module::<builder::NetVladPooling<4, 3, 12>, f64>();
    assert_eq!(vlad.forward_mut(x.clone()).as_vec(), vec![0.0; 24]);
    assert_eq!(AveragePooling::<4>.forward(x.clone()).as_vec(), vec![0.0; 8]);
    assert_eq!(MaxPooling::<4>.forward(x).as_vec(), vec![0.0; 8]);
    // No frames, no statistics: the running averages stay as they were.
    assert_eq!(vlad.assignment.bn.running_mean.as_vec(), vec![0.0; 3]);
    assert_eq!(vlad.assignment.bn.running_var.as_vec(), vec![1.0; 3]);
}
