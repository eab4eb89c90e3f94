//! Batch norm and L2 normalisation against `tests/reference/norms.py`, plus gradients.

mod common;

use common::{assert_close, device, Reference};
use dfdx::prelude::*;
use loupe::gradcheck::{check_gradients, Tolerance};
use loupe::nn::{builder, l2_normalize, BatchNorm, L2Normalize};

#[test]
fn batch_norm_matches_reference_in_training_and_evaluation() {
    let reference = Reference::load("norms");
    let dev = device();

    let case = reference.case("batch_norm_rank2");
    let mut bn: BatchNorm<4, f64, _> = dev.build_module::<builder::BatchNorm<4>, f64>();
    case.load_params(&mut bn);
    let x = case.tensor(&dev, "input", (5usize, Const::<4>));
    assert_close(&bn.forward(x.clone()).as_vec(), &case.values("output_eval"), 1e-10, "eval");
    assert_close(&bn.forward_mut(x.clone()).as_vec(), &case.values("output"), 1e-10, "train");
    assert_close(&bn.running_mean.as_vec(), &case.values("running_mean_after"), 1e-12, "running mean");
    assert_close(&bn.running_var.as_vec(), &case.values("running_var_after"), 1e-12, "running var");

    let case = reference.case("batch_norm_rank3");
    let mut bn: BatchNorm<4, f64, _> = dev.build_module::<builder::BatchNorm<4>, f64>();
    case.load_params(&mut bn);
    let x = case.tensor(&dev, "input", (2usize, 3usize, Const::<4>));
    assert_close(&bn.forward(x.clone()).as_vec(), &case.values("output_eval"), 1e-10, "eval rank 3");
    assert_close(&bn.forward_mut(x).as_vec(), &case.values("output"), 1e-10, "train rank 3");
    assert_close(&bn.running_var.as_vec(), &case.values("running_var_after"), 1e-12, "running var rank 3");
}

#[test]
fn batch_norm_in_f32_matches_reference() {
    let case = Reference::load("norms").case("batch_norm_rank3");
    let dev = device();
    let mut bn: BatchNorm<4, f32, _> = dev.build_module::<builder::BatchNorm<4>, f32>();
    case.load_params(&mut bn);
    let x = case.tensor(&dev, "input", (2usize, 3usize, Const::<4>));
    assert_close(&bn.forward_mut(x).as_vec(), &case.values("output"), 1e-5, "train f32");
}

#[test]
fn batch_norm_starts_as_the_reference_initialises_it() {
    let dev = device();
    let bn: BatchNorm<3, f32, _> = dev.build_module::<builder::BatchNorm<3>, f32>();
    assert_eq!(bn.scale.as_vec(), vec![1.0; 3]);
    assert_eq!(bn.shift.as_vec(), vec![0.0; 3]);
    assert_eq!(bn.running_mean.as_vec(), vec![0.0; 3]);
    assert_eq!(bn.running_var.as_vec(), vec![1.0; 3]);
    // Running statistics are not trained.
    assert_eq!(bn.num_trainable_params(), 6);
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    let dev = loupe::device::cpu_seeded(1);
    let mut bn: BatchNorm<3, f64, _> = dev.build_module::<builder::BatchNorm<3>, f64>();
    // Move scale/shift off their initial values so every term matters.
    bn.scale = dev.tensor([0.5, -1.5, 2.0]);
    bn.shift = dev.tensor([0.1, 0.2, -0.3]);
    let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_normal_like(&(2, 4, Const));
    let report = check_gradients(&mut bn, x, Tolerance::default(), 3).unwrap_or_else(|e| panic!("{e:#?}"));
    let names: Vec<_> = report.checked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["input", "scale", "shift"]);
}

#[test]
fn l2_normalize_matches_reference_including_zero_and_tiny_rows() {
    let case = Reference::load("norms").case("l2_normalize");
    let dev = device();
    let x: Tensor<(usize, usize, Const<5>), f64, _> =
        case.tensor(&dev, "input", (3usize, 2usize, Const::<5>));
    assert_close(&l2_normalize(x).as_vec(), &case.values("output"), 1e-12, "l2");
}

#[test]
fn l2_normalize_gradients_match_finite_differences() {
    let dev = loupe::device::cpu_seeded(2);
    let x: Tensor<(usize, Const<6>), f64, _> = dev.sample_normal_like(&(3, Const));
    check_gradients(&mut L2Normalize, x, Tolerance::default(), 4).unwrap_or_else(|e| panic!("{e:#?}"));
}

#[test]
fn gradient_checker_reports_a_lost_gradient() {
    // A layer that loses its parameter's tape: the checker must say so.
    #[derive(Clone, Debug)]
    struct Leaky<E: Dtype, D: Storage<E>> {
        w: Tensor<Rank1<3>, E, D>,
    }
    impl<D: Device<f64>> TensorCollection<f64, D> for Leaky<f64, D> {
        type To<E2: Dtype, D2: Device<E2>> = Leaky<E2, D2>;
        fn iter_tensors<V: ModuleVisitor<Self, f64, D>>(
            v: &mut V,
        ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
            v.visit_fields(Self::tensor("w", |s| &s.w, |s| &mut s.w, TensorOptions::reset_to_ones()), |w| {
                Leaky { w }
            })
        }
    }
    impl<D: Device<f64>, T: Tape<f64, D>> ModuleMut<Tensor<(usize, Const<3>), f64, D, T>> for Leaky<f64, D> {
        type Output = Tensor<(usize, Const<3>), f64, D, T>;
        type Error = D::Err;
        fn try_forward_mut(
            &mut self,
            x: Tensor<(usize, Const<3>), f64, D, T>,
        ) -> Result<Self::Output, D::Err> {
            // The classic dfdx mistake: an op on the weight is recorded on a tape that is
            // then dropped, so the weight's gradient silently never arrives.
            let shape = *x.shape();
            let (doubled, _lost_tape) = self.w.retaped::<T>().try_mul(2.0)?.split_tape();
            x.try_mul(doubled.try_broadcast_like(&shape)?)
        }
    }
    let dev = loupe::device::cpu_seeded(3);
    let mut leaky = Leaky { w: dev.tensor([1.0, 2.0, 3.0]) };
    let x: Tensor<(usize, Const<3>), f64, _> = dev.sample_normal_like(&(2, Const));
    let errors = check_gradients(&mut leaky, x, Tolerance::default(), 5).unwrap_err();
    assert!(
        errors.iter().any(
            |e| matches!(e, loupe::gradcheck::GradCheckError::MissingGradient { name, .. } if name == "w")
        ),
        "{errors:#?}"
    );
}
