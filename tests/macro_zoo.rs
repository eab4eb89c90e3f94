//! Every model of the zoo builds and trains: the small ones run a forward/backward pass
//! here; the paper-size ones are built and their parameters counted (their
//! forward/backward test is `#[ignore]`d: several GB and seconds per step on a CPU).

use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::zoo::{self, ModelVisitor, ZooModel};

/// Builds the model, runs a training step's forward and backward (loss: the summed
/// probabilities plus the classifier's L2 term) on `batch` random videos and an
/// evaluation pass; returns the parameter count.
struct Step<'a> {
    dev: &'a Cpu,
    batch: usize,
}

impl ModelVisitor<f32, Cpu> for Step<'_> {
    type Output = usize;
    fn visit<M: ZooModel<f32, Cpu>>(self) -> usize {
        let mut model = self.dev.build_module::<M, f32>();
        let shape = (self.batch, Default::default(), Default::default());
        #[allow(clippy::type_complexity)]
        let x: Tensor<(usize, <M::Model as VideoModel<f32, Cpu>>::Frames, _), f32, Cpu> =
            self.dev.sample_uniform_like(&shape);
        let y = model.try_forward_train(x.clone().traced(model.alloc_grads())).unwrap();
        assert_eq!(y.shape().0, self.batch);
        let probabilities = y.as_vec();
        assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)), "{probabilities:?}");
        let penalty = model.try_l2_penalty().unwrap();
        let (loss, tape) = y.sum().split_tape();
        let loss = loss.put_tape(tape).try_add(penalty).unwrap();
        let grads = loss.backward();
        let _ = grads;
        let eval = model.try_forward_eval(x).unwrap();
        assert!(eval.as_vec().iter().all(|p| p.is_finite()));
        model.num_params()
    }
}

/// Builds the model and counts its parameters.
struct Count<'a>(&'a Cpu);

impl ModelVisitor<f32, Cpu> for Count<'_> {
    type Output = usize;
    fn visit<M: ZooModel<f32, Cpu>>(self) -> usize {
        self.0.build_module::<M, f32>().num_params()
    }
}

fn small() -> impl Iterator<Item = &'static str> {
    zoo::NAMES.iter().copied().filter(|n| n.starts_with("small-"))
}

fn paper() -> impl Iterator<Item = &'static str> {
    zoo::NAMES.iter().copied().filter(|n| !n.starts_with("small-"))
}

#[test]
fn small_models_train_and_evaluate() {
    let dev = loupe::device::cpu_seeded(1);
    for name in small() {
        let params = zoo::visit(name, Step { dev: &dev, batch: 3 }).unwrap();
        assert!(params > 0, "{name}");
    }
}

#[test]
fn every_name_is_registered_once_and_describes_itself() {
    struct Describe;
    impl ModelVisitor<f32, Cpu> for Describe {
        type Output = loupe::model::ModelDescription;
        fn visit<M: ZooModel<f32, Cpu>>(self) -> Self::Output {
            M::Model::describe()
        }
    }
    let mut seen = std::collections::HashSet::new();
    for name in zoo::NAMES {
        assert!(seen.insert(*name), "{name} registered twice");
        let d = zoo::visit::<f32, Cpu, _>(name, Describe).unwrap();
        let features: usize = d.streams.iter().map(|s| s.features).sum();
        assert_eq!(features, if name.starts_with("small-") { 24 } else { 1152 }, "{name}");
    }
    assert!(zoo::visit::<f32, Cpu, _>("gated-netvald", Describe).is_none());
    assert_eq!(paper().count(), 17);
}

/// Trainable parameters of the paper-size models (batch norm running averages excluded).
/// Gated NetVLAD: hidden 278528x1024 + 1024 = 285.2M, MoE 1024x3862x(2+3) = 19.8M,
/// probability gating 3862^2 = 14.9M, Context Gating 1M, NetVLADs 0.56M, input BN 2304.
/// A change here changes checkpoints.
const PAPER_PARAMS: &[(&str, usize)] = &[
    ("avg-logistic", 4_455_190),
    ("avg-moe-cg", 23_584_556),
    ("soft-bow", 28_772_140),
    ("netfv", 305_415_340),
    ("netrvlad", 305_276_460),
    ("netvlad", 305_554_988),
    ("gated-soft-bow", 44_745_532),
    ("gated-netfv", 321_388_732),
    ("gated-netrvlad", 321_249_852),
    ("gated-netvlad", 321_528_380),
    ("netvlad-128", 162_669_740),
    ("netvlad-128-cg", 163_720_364),
    ("netvlad-128-glu", 164_768_940),
    ("netvlad-128-moe-cg", 177_592_508),
    ("gated-netvlad-128", 178_643_132),
    ("gated-netvlad-early", 338_338_108),
    ("netvlad-128-early", 171_074_604),
];

/// Builds every paper-size model and counts its parameters.
#[test]
fn paper_models_build_at_paper_size() {
    let dev = loupe::device::cpu_seeded(2);
    let names: Vec<&str> = paper().collect();
    let listed: Vec<&str> = PAPER_PARAMS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed);
    for (name, expected) in PAPER_PARAMS {
        let params = zoo::visit(name, Count(&dev)).unwrap();
        assert_eq!(params, *expected, "{name}");
    }
}

#[test]
#[ignore = "paper sizes: several GB and minutes on a CPU; run with --ignored"]
fn paper_models_train_and_evaluate() {
    let dev = loupe::device::cpu_seeded(3);
    for name in paper() {
        zoo::visit(name, Step { dev: &dev, batch: 2 }).unwrap();
    }
}
