//! The zoo's recurrent models (`small-lstm`, `small-gru`) through the model trait and the
//! run loop: a short video's padding does not change its output once the model is told
//! its valid frame count, the run loop feeds frames in temporal order with those counts
//! (or in random order, as the released LSTM), and both models learn synthetic data.

mod common;

use common::small_data::{small_synthetic, SmallData};
use loupe::data::{Dataset, FrameOrder, FrameSampling};
use loupe::dfdx::prelude::*;
use loupe::gradcheck::named_params;
use loupe::model::VideoModel;
use loupe::train::run::{train, RunConfig};
use loupe::train::{AdamConfig, LearningRateSchedule, TrainConfig, Trainer};
use loupe::zoo::{SmallGatedNetVladModel, SmallGruModel, SmallLstmModel};

// The small zoo models: 10 frames of 16 rgb + 8 audio values, 10 classes.
const FRAMES: usize = 10;
const FEATURES: usize = 24;

/// Two videos: one of 4 valid frames followed by `fill`, one of all 10 frames.
fn batch_with_fill(fill: &[f32]) -> Vec<f32> {
    let valid = |v: usize, t: usize, f: usize| ((v * 31 + t * 7 + f * 3) % 17) as f32 / 8.0 - 1.0;
    let mut frames = Vec::new();
    for t in 0..FRAMES {
        for f in 0..FEATURES {
            frames.push(if t < 4 { valid(0, t, f) } else { fill[(t - 4) * FEATURES + f] });
        }
    }
    frames.extend((0..FRAMES * FEATURES).map(|i| valid(1, i / FEATURES, i % FEATURES)));
    frames
}

fn padding_is_ignored<M>()
where
    M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone,
{
    let dev = loupe::device::cpu_seeded(4);
    let trainer: Trainer<M, f32, Cpu> = Trainer::new(dev, TrainConfig::default()).unwrap();
    let n = (FRAMES - 4) * FEATURES;
    // The video's frames cycled from its start (what in-order sampling fills), zeros, noise.
    let cycled: Vec<f32> =
        batch_with_fill(&vec![0.0; n])[..FRAMES * FEATURES].iter().copied().cycle().take(n).collect();
    let noise: Vec<f32> = (0..n).map(|i| ((i * 7919) % 101) as f32 / 25.0 - 2.0).collect();
    let fills = [cycled, vec![0.0; n], noise];
    let lengths = [4, FRAMES];
    let outputs: Vec<Vec<f32>> =
        fills.iter().map(|fill| trainer.predict_lengths(&batch_with_fill(fill), &lengths).unwrap()).collect();
    for other in &outputs[1..] {
        for (a, b) in outputs[0].iter().zip(other) {
            assert!(
                (a - b).abs() < 1e-6,
                "{} with lengths: {:?} vs {:?}",
                M::describe().name,
                outputs[0],
                other
            );
        }
    }
    // The padding does reach the model when it is not told the lengths.
    let frames_only = |fill: &Vec<f32>| trainer.predict(&batch_with_fill(fill)).unwrap();
    assert_ne!(frames_only(&fills[1]), frames_only(&fills[2]), "{}", M::describe().name);
    // The full-length video is unaffected by the other's padding either way.
    assert_eq!(outputs[0][10..], frames_only(&fills[0])[10..]);

    // Training mode: the same loss whatever the padding.
    let labels: Vec<f32> = (0..20).map(|i| if i % 7 == 0 { 1.0 } else { 0.0 }).collect();
    let losses: Vec<f64> = fills
        .iter()
        .map(|fill| {
            let mut t: Trainer<M, f32, Cpu> =
                Trainer::new(loupe::device::cpu_seeded(4), TrainConfig::default()).unwrap();
            t.train_step_lengths(&batch_with_fill(fill), &lengths, &labels).unwrap().loss
        })
        .collect();
    assert!(losses.iter().all(|l| (l - losses[0]).abs() < 1e-6), "{losses:?}");
}

#[test]
fn recurrent_zoo_models_ignore_padding_given_lengths() {
    const {
        assert!(<SmallLstmModel<f32, Cpu> as VideoModel<f32, Cpu>>::READS_FRAMES_IN_ORDER);
        assert!(<SmallGruModel<f32, Cpu> as VideoModel<f32, Cpu>>::READS_FRAMES_IN_ORDER);
        assert!(!<SmallGatedNetVladModel<f32, Cpu> as VideoModel<f32, Cpu>>::READS_FRAMES_IN_ORDER);
    }
    padding_is_ignored::<SmallLstmModel<f32, Cpu>>();
    padding_is_ignored::<SmallGruModel<f32, Cpu>>();
}

#[test]
fn lengths_must_match_the_batch() {
    let mut trainer: Trainer<SmallLstmModel<f32, Cpu>, f32, Cpu> =
        Trainer::new(loupe::device::cpu_seeded(1), TrainConfig::default()).unwrap();
    let frames = batch_with_fill(&vec![0.0; (FRAMES - 4) * FEATURES]);
    let err = trainer.predict_lengths(&frames, &[4]).unwrap_err().to_string();
    assert!(err.contains("lengths: expected 2"), "{err}");
    let err = trainer.train_step_lengths(&frames, &[4, 10, 10], &[0.0; 20]).unwrap_err().to_string();
    assert!(err.contains("lengths: expected 2"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Through the run loop, on synthetic data.

/// Videos of 3 to 20 frames: about a third are shorter than the models' 10 frames.
fn synthetic(name: &str) -> SmallData {
    small_synthetic(&format!("train-recurrent-{name}"), 5, 3)
}

fn optim<M: VideoModel<f32, Cpu>>() -> TrainConfig {
    TrainConfig {
        schedule: LearningRateSchedule { base: 0.01, decay: 0.9, decay_examples: 1000 },
        adam: AdamConfig::default(),
        classifier_l2: M::describe().classifier_l2,
        ..TrainConfig::default()
    }
}

fn run_config<M: VideoModel<f32, Cpu>>(
    data: &SmallData,
    name: &str,
    order: FrameOrder,
    steps: Option<u64>,
) -> RunConfig {
    RunConfig {
        train_files: data.train.clone(),
        validate_files: if steps.is_some() { Vec::new() } else { data.validate.clone() },
        decoder: data.decoder.clone(),
        batch_size: 32,
        seed: 9,
        shuffle_buffer: 64,
        max_steps: steps,
        epochs: Some(3),
        eval_every: None,
        checkpoint_every: None,
        output_dir: data.dir.join(name),
        keep_checkpoints: 1,
        resume: false,
        skip_corrupt: false,
        progress: false,
        top_k: 20,
        frame_order: order,
        optim: optim::<M>(),
        description: Default::default(),
    }
}

fn weights<M: TensorCollection<f32, Cpu>>(m: &M) -> Vec<Vec<f32>> {
    named_params(m).into_iter().map(|p| p.values).collect()
}

/// The run loop's steps, replayed by hand: the training set `train` builds with `sampling`,
/// stepped with or without the batches' lengths.
fn replay<M>(data: &SmallData, sampling: FrameSampling, steps: usize, with_lengths: bool) -> Vec<Vec<f32>>
where
    M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone,
{
    let mut trainer: Trainer<M, f32, Cpu> = Trainer::new(loupe::device::cpu_seeded(2), optim::<M>()).unwrap();
    let set = Dataset::training(data.train.clone(), data.decoder.clone(), M::CLASSES)
        .with_batch_size(32)
        .with_frames_per_video(M::FRAMES)
        .with_sampling(sampling)
        .with_shuffle(9, 64)
        .with_epochs(Some(3))
        .with_skip_corrupt(false);
    let mut short = 0;
    for batch in set.frame_batches().unwrap().take(steps) {
        let batch = batch.unwrap();
        short += batch.lengths.iter().filter(|&&l| l < M::FRAMES).count();
        if with_lengths {
            trainer.train_step_lengths(&batch.frames, &batch.lengths, &batch.labels).unwrap();
        } else {
            trainer.train_step(&batch.frames, &batch.labels).unwrap();
        }
    }
    // In order, short videos are there to be masked; with replacement, every row is valid.
    assert_eq!(short > 0, sampling == FrameSampling::InOrder, "{sampling:?}: {short} short videos");
    weights(&trainer.model)
}

#[test]
fn run_loop_feeds_recurrent_models_in_order_with_lengths() {
    type M = SmallLstmModel<f32, Cpu>;
    let data = synthetic("order");
    let steps = 4;
    for (order, sampling) in
        [(FrameOrder::Temporal, FrameSampling::InOrder), (FrameOrder::Random, FrameSampling::Random)]
    {
        let config = run_config::<M>(&data, &format!("{order:?}"), order, Some(steps));
        let (trainer, _) = train::<M, Cpu>(loupe::device::cpu_seeded(2), &config).unwrap();
        let ran = weights(&trainer.model);
        assert_eq!(ran, replay::<M>(&data, sampling, steps as usize, true), "{order:?}");
        if order == FrameOrder::Temporal {
            // Without the lengths the cycled frames of short videos would change training.
            assert_ne!(ran, replay::<M>(&data, sampling, steps as usize, false));
        }
    }
}

/// `small-lstm` and `small-gru` learn the synthetic data through the run loop: the loss
/// falls and the validation GAP is far above what untrained models score.
#[test]
fn small_recurrent_models_learn_synthetic_data() {
    let data = synthetic("learn");
    fn learns<M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone>(data: &SmallData, name: &str) {
        let (untrained, _) = train::<M, Cpu>(
            loupe::device::cpu_seeded(3),
            &run_config::<M>(data, "untrained", FrameOrder::Temporal, Some(1)),
        )
        .unwrap();
        let set = loupe::train::run::evaluation_dataset::<M, Cpu>(
            data.validate.clone(),
            data.decoder.clone(),
            64,
            false,
        )
        .unwrap();
        let chance = loupe::train::run::evaluate_dataset(&untrained.predictor(), &set, 20).unwrap().gap;
        let (_, summary) = train::<M, Cpu>(
            loupe::device::cpu_seeded(3),
            &run_config::<M>(data, name, FrameOrder::Temporal, None),
        )
        .unwrap();
        let losses: Vec<f64> = summary.loss_history.iter().map(|l| l.1).collect();
        let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
        let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
        let gap = summary.metrics.unwrap().gap;
        println!("{name}: loss {first:.4} -> {last:.4}, GAP {chance:.3} (one step) -> {gap:.3}");
        assert!(last < 0.8 * first, "{name}: loss {first} -> {last}");
        assert!(gap > chance + 0.2 && gap > 0.45, "{name}: GAP {chance} -> {gap}");
    }
    learns::<SmallLstmModel<f32, Cpu>>(&data, "small-lstm");
    learns::<SmallGruModel<f32, Cpu>>(&data, "small-gru");
}
