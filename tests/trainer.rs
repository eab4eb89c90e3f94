//! The training step, prediction and exact resume, on a hand-written `VideoModel`.

mod common;

use common::tiny_model::{toy_batch, AverageLogistic, CLASSES};
use dfdx::prelude::*;
use loupe::gradcheck::named_params;
use loupe::kernels::set_fused;
use loupe::metrics::EvaluationMetrics;
use loupe::model::VideoModel;
use loupe::train::checkpoint::{load_checkpoint, save_checkpoint, CheckpointMeta, CHECKPOINT_FORMAT};
use loupe::train::{
    try_cross_entropy_loss, Adam, AdamConfig, LearningRateSchedule, TrainConfig, TrainError, Trainer,
};
use loupe::zoo::SmallGatedNetVladModel;

type Model = AverageLogistic<f32, Cpu>;

fn config() -> TrainConfig {
    TrainConfig {
        schedule: LearningRateSchedule { base: 0.05, decay: 0.9, decay_examples: 64 },
        adam: AdamConfig::default(),
        classifier_l2: 1e-6,
        ..TrainConfig::default()
    }
}

fn gap(trainer: &Trainer<Model, f32, Cpu>) -> f64 {
    let mut metrics = EvaluationMetrics::new(CLASSES, 20);
    let (frames, _, lists) = toy_batch(999, 64);
    trainer.evaluate_batch(&mut metrics, &frames, &lists).unwrap();
    metrics.summary().gap
}

#[test]
fn training_reduces_the_loss_and_improves_gap() {
    let mut trainer: Trainer<Model, f32, Cpu> = Trainer::new(loupe::device::cpu_seeded(1), config()).unwrap();
    let before = gap(&trainer);
    let mut first = None;
    let mut last = 0.0;
    for step in 0..60 {
        let (frames, labels, _) = toy_batch(step, 16);
        let stats = trainer.train_step(&frames, &labels).unwrap();
        first.get_or_insert(stats.loss);
        last = stats.loss;
    }
    assert!(last < 0.7 * first.unwrap(), "loss {first:?} -> {last}");
    let after = gap(&trainer);
    assert!(after > before + 0.1 && after > 0.8, "gap {before} -> {after}");
    assert_eq!(trainer.step, 60);
    assert_eq!(trainer.examples_seen, 960);
}

#[test]
fn learning_rate_follows_the_staircase_by_examples_seen() {
    let mut trainer: Trainer<Model, f32, Cpu> = Trainer::new(loupe::device::cpu_seeded(1), config()).unwrap();
    let lrs: Vec<f64> = (0..6)
        .map(|s| {
            let (frames, labels, _) = toy_batch(s, 16);
            trainer.train_step(&frames, &labels).unwrap().learning_rate
        })
        .collect();
    // 16 videos a step, decay every 64 videos.
    assert_eq!(lrs[..4], [0.05; 4]);
    assert!((lrs[4] - 0.045).abs() < 1e-12);
}

#[test]
fn a_non_finite_loss_stops_training_naming_the_step() {
    let mut trainer: Trainer<Model, f32, Cpu> = Trainer::new(loupe::device::cpu_seeded(1), config()).unwrap();
    let (frames, labels, _) = toy_batch(0, 4);
    trainer.train_step(&frames, &labels).unwrap();
    let mut bad = frames.clone();
    bad[3] = f32::NAN;
    let before = trainer.model.classifier.weight.as_vec();
    match trainer.train_step(&bad, &labels) {
        Err(TrainError::NonFiniteLoss { step, .. }) => assert_eq!(step, 2),
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
    // The failed step changed nothing.
    assert_eq!(trainer.step, 1);
    assert_eq!(trainer.model.classifier.weight.as_vec(), before);
}

#[test]
fn wrong_batch_sizes_are_errors_not_panics() {
    let mut trainer: Trainer<Model, f32, Cpu> = Trainer::new(loupe::device::cpu_seeded(1), config()).unwrap();
    let (frames, labels, _) = toy_batch(0, 4);
    assert!(matches!(
        trainer.train_step(&frames[1..], &labels),
        Err(TrainError::Shape { what: "frames", .. })
    ));
    assert!(matches!(
        trainer.train_step(&frames, &labels[1..]),
        Err(TrainError::Shape { what: "labels", .. })
    ));
    assert!(matches!(trainer.train_step(&[], &[]), Err(TrainError::Shape { .. })));
    assert!(trainer.predict(&frames[..5]).is_err());
}

#[test]
fn resuming_from_a_checkpoint_reproduces_an_uninterrupted_run() {
    let dir = common::scratch_dir("test-resume");
    let mut straight: Trainer<Model, f32, Cpu> =
        Trainer::new(loupe::device::cpu_seeded(5), config()).unwrap();
    let mut interrupted: Trainer<Model, f32, Cpu> =
        Trainer::new(loupe::device::cpu_seeded(5), config()).unwrap();
    for s in 0..8 {
        let (frames, labels, _) = toy_batch(s, 8);
        straight.train_step(&frames, &labels).unwrap();
        if s < 4 {
            interrupted.train_step(&frames, &labels).unwrap();
        }
    }
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        model: Model::describe(),
        dtype: "f32".into(),
        training: Default::default(),
        step: interrupted.step,
        examples_seen: interrupted.examples_seen,
        metrics: None,
        vocabulary_size: CLASSES,
        rng_state: Default::default(),
        files: Vec::new(),
    };
    save_checkpoint(&dir, &interrupted.model, &interrupted.adam, &meta, 1).unwrap();
    drop(interrupted);

    let dev = loupe::device::cpu_seeded(123);
    let mut resumed: Trainer<Model, f32, Cpu> = Trainer::new(dev, config()).unwrap();
    let meta =
        load_checkpoint(&dir, &Model::describe(), &mut resumed.model, Some(&mut resumed.adam)).unwrap();
    resumed.step = meta.step;
    resumed.examples_seen = meta.examples_seen;
    for s in 4..8 {
        let (frames, labels, _) = toy_batch(s, 8);
        resumed.train_step(&frames, &labels).unwrap();
    }
    assert_eq!(resumed.model.classifier.weight.as_vec(), straight.model.classifier.weight.as_vec());
    assert_eq!(resumed.model.classifier.bias.as_vec(), straight.model.classifier.bias.as_vec());
}

type Small = SmallGatedNetVladModel<f32, Cpu>;

/// A deterministic batch for the small zoo models (10 frames of 24 values, 10 classes).
fn small_batch(seed: u64, batch: usize) -> (Vec<f32>, Vec<f32>) {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let frames = (0..batch * Small::FRAMES * Small::FEATURES).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let labels = (0..batch * Small::CLASSES).map(|_| if rng.gen_bool(0.3) { 1.0 } else { 0.0 }).collect();
    (frames, labels)
}

/// The trainer's step written out with the gradients zeroed explicitly every step
/// (`zero_grads`) and the same gradient buffers kept between steps, as the trainer did
/// before the update zeroed them.
struct ExplicitZeroing {
    model: Small,
    adam: Adam<Small>,
    grads: Option<Gradients<f32, Cpu>>,
    examples_seen: u64,
}

impl ExplicitZeroing {
    fn step(&mut self, dev: &Cpu, config: &TrainConfig, frames: &[f32], labels: &[f32]) {
        let batch = labels.len() / Small::CLASSES;
        let x = dev.tensor_from_vec(frames.to_vec(), (batch, Const::<10>, Const::<24>));
        let y = dev.tensor_from_vec(labels.to_vec(), (batch, Const::<10>));
        let mut grads = self.grads.take().unwrap_or_else(|| self.model.alloc_grads());
        self.model.zero_grads(&mut grads);
        let p = self.model.try_forward_train(x.traced(grads)).unwrap();
        let penalty = self.model.try_l2_penalty().unwrap().try_mul(config.classifier_l2 as f32).unwrap();
        let loss = try_cross_entropy_loss(p, y).unwrap().try_add(penalty).unwrap();
        let mut grads = loss.backward();
        let lr = config.schedule.learning_rate(self.examples_seen);
        self.adam.update_in_place(&mut self.model, &mut grads, lr).unwrap();
        self.grads = Some(grads);
        self.examples_seen += batch as u64;
    }
}

fn assert_same_bits(a: &Small, b: &Small, what: &str) {
    for (x, y) in named_params(a).iter().zip(named_params(b)) {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x.values), bits(&y.values), "{what}: {}", x.name);
    }
}

#[test]
fn skipping_the_zeroing_after_a_fused_update_matches_explicit_zeroing() {
    for fused in [true, false] {
        set_fused(fused);
        let dev = loupe::device::cpu_seeded(21);
        let config = config();
        let mut trainer: Trainer<Small, f32, Cpu> = Trainer::new(dev.clone(), config).unwrap();
        let mut reference = ExplicitZeroing {
            model: trainer.model.clone(),
            adam: Adam::new(config.adam),
            grads: None,
            examples_seen: 0,
        };
        for step in 0..6 {
            if step == 3 {
                // A new model (new tensors) in the middle of training: the kept gradients
                // are not its gradients, so the trainer must zero (register) them again.
                let fresh = <Small as BuildModule<Cpu, f32>>::build(&dev);
                trainer.model = fresh.clone();
                reference.model = fresh;
            }
            let (frames, labels) = small_batch(step, 8);
            trainer.train_step(&frames, &labels).unwrap();
            reference.step(&dev, &config, &frames, &labels);
            assert_eq!(trainer.gradients_zeroed_by_update(), fused, "step {step}");
            assert_same_bits(&trainer.model, &reference.model, &format!("fused {fused}, step {step}"));
            let (tm, tv) = trainer.adam.moments.as_ref().unwrap();
            let (rm, rv) = reference.adam.moments.as_ref().unwrap();
            assert_same_bits(tm, rm, "first moments");
            assert_same_bits(tv, rv, "second moments");
        }
    }
    set_fused(true);
}
