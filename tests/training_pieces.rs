//! Loss and optimiser against `tests/reference/training.py`.

mod common;

use common::{assert_close, device, Reference};
use dfdx::prelude::*;
use loupe::train::{cross_entropy_loss, Adam, AdamConfig, GradientClipping, LearningRateSchedule};

#[test]
fn cross_entropy_matches_reference_value_and_gradient() {
    let case = Reference::load("training").case("cross_entropy");
    let dev = device();
    let p: Tensor<(usize, Const<6>), f64, _> = case.tensor(&dev, "probabilities", (4usize, Const::<6>));
    let y = case.tensor(&dev, "labels", (4usize, Const::<6>));
    let loss = cross_entropy_loss(p.leaky_trace(), y);
    assert_close(&loss.as_vec(), &case.values("loss"), 1e-12, "loss");
    let grads = loss.backward();
    assert_close(&grads.get(&p).as_vec(), &case.values("gradient"), 1e-10, "d loss / d p");
}

fn adam_case(name: &str, clipping: GradientClipping) {
    let case = Reference::load("training").case(name);
    let dev = device();
    let mut model = dev.build_module::<Linear<3, 2>, f64>();
    case.load_params(&mut model);
    let x: Tensor<(usize, Const<3>), f64, _> = case.tensor(&dev, "input", (4usize, Const::<3>));
    let r: Tensor<(usize, Const<2>), f64, _> = case.tensor(&dev, "projection", (4usize, Const::<2>));
    let mut adam = Adam::new(AdamConfig { clipping, ..AdamConfig::default() });
    for (t, lr) in case.values("learning_rates").into_iter().enumerate() {
        let out = model.forward(x.clone().trace(model.alloc_grads()));
        // The reference scales the objective by (1 + t) at step t (1-based).
        let loss = (out * r.clone()).sum::<Rank0, _>() * (2.0 + t as f64);
        let grads = loss.backward();
        adam.update(&mut model, &grads, lr).unwrap();
    }
    assert_eq!(adam.step, 3);
    assert_close(&model.weight.as_vec(), &case.values("weight_after"), 1e-10, &format!("{name} weight"));
    assert_close(&model.bias.as_vec(), &case.values("bias_after"), 1e-10, &format!("{name} bias"));
    let (m, v) = adam.moments.as_ref().unwrap();
    assert_close(&m.weight.as_vec(), &case.values("first_moment_weight"), 1e-10, &format!("{name} m"));
    assert_close(&v.weight.as_vec(), &case.values("second_moment_weight"), 1e-10, &format!("{name} v"));
}

#[test]
fn adam_with_per_variable_clipping_matches_reference() {
    adam_case("adam_per_variable", GradientClipping::PerVariable(1.0));
}

#[test]
fn adam_with_global_norm_clipping_matches_reference() {
    adam_case("adam_global", GradientClipping::GlobalNorm(2.0));
}

#[test]
fn adam_without_clipping_matches_reference() {
    adam_case("adam_unclipped", GradientClipping::None);
}

#[test]
fn adam_leaves_batch_norm_running_statistics_alone() {
    let dev = device();
    let mut bn = dev.build_module::<loupe::nn::builder::BatchNorm<3>, f64>();
    let x: Tensor<(usize, Const<3>), f64, _> = dev.sample_normal_like(&(4, Const));
    let out = bn.forward_mut(x.trace(bn.alloc_grads()));
    let running = (bn.running_mean.as_vec(), bn.running_var.as_vec());
    let grads = out.square().sum::<Rank0, _>().backward();
    let mut adam = Adam::new(AdamConfig::default());
    adam.update(&mut bn, &grads, 0.1).unwrap();
    assert_eq!((bn.running_mean.as_vec(), bn.running_var.as_vec()), running);
    assert_ne!(bn.scale.as_vec(), vec![1.0; 3]);
}

#[test]
fn staircase_schedule() {
    let s = LearningRateSchedule { base: 1.0, decay: 0.5, decay_examples: 10 };
    assert_eq!(s.learning_rate(0), 1.0);
    assert_eq!(s.learning_rate(9), 1.0);
    assert_eq!(s.learning_rate(10), 0.5);
    assert_eq!(s.learning_rate(35), 0.125);
}
