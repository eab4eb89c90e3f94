//! Ensembles of different trained models beat their best member on synthetic validation
//! data (issue 8's done-when), through the library.

mod common;

use common::small_data::{small_synthetic, SmallData};
use loupe::dfdx::prelude::*;
use loupe::ensemble::{
    greedy_selection, model_predictions, score_predictions, weighted_mean, GroundTruth, Keep, MissingVideos,
    Predictions, SelectionOptions,
};
use loupe::model::VideoModel;
use loupe::train::run::{evaluation_dataset, train, RunConfig};
use loupe::train::{AdamConfig, LearningRateSchedule, TrainConfig};
use loupe::zoo::{SmallAverageModel, SmallGatedNetVladModel, SmallSoftBowModel};

/// Videos of 10 to 20 frames: every video fills the small models' 10 frames.
fn synthetic(name: &str) -> SmallData {
    small_synthetic(&format!("ensemble-{name}"), 8, 10)
}

/// Trains `M` briefly (3 epochs of 600 videos: members that have not converged, whose
/// errors differ; fully trained small models reach ~0.95 GAP here and leave little to
/// gain) and returns its dense validation predictions (every label kept)
/// and the GAP the training run's own evaluation gives them.
fn member<M>(data: &SmallData, name: &str, seed: u64) -> (Predictions, f64)
where
    M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone,
{
    let config = RunConfig {
        train_files: data.train.clone(),
        validate_files: data.validate.clone(),
        decoder: data.decoder.clone(),
        batch_size: 32,
        seed,
        shuffle_buffer: 256,
        max_steps: None,
        epochs: Some(3),
        eval_every: None,
        checkpoint_every: None,
        output_dir: data.dir.join(name),
        keep_checkpoints: 1,
        resume: false,
        skip_corrupt: false,
        progress: false,
        top_k: 20,
        frame_order: Default::default(),
        optim: TrainConfig {
            schedule: LearningRateSchedule { base: 0.01, decay: 0.9, decay_examples: 1000 },
            adam: AdamConfig::default(),
            classifier_l2: M::describe().classifier_l2,
            ..TrainConfig::default()
        },
        description: Default::default(),
    };
    let (trainer, summary) = train::<M, Cpu>(loupe::device::cpu_seeded(seed), &config).unwrap();
    let dataset =
        evaluation_dataset::<M, Cpu>(data.validate.clone(), data.decoder.clone(), 64, false).unwrap();
    let predictions = model_predictions(&trainer.predictor(), &dataset, name, Keep::All).unwrap();
    (predictions, summary.metrics.unwrap().gap)
}

#[test]
fn an_ensemble_of_different_models_beats_its_best_member() {
    let data = synthetic("beats");
    let truth = GroundTruth::read(&data.validate, Some(10)).unwrap();
    assert_eq!(truth.len(), 200);
    let started = std::time::Instant::now();
    let trained = [
        member::<SmallAverageModel<f32, Cpu>>(&data, "small-average", 1),
        member::<SmallSoftBowModel<f32, Cpu>>(&data, "small-soft-bow", 2),
        member::<SmallGatedNetVladModel<f32, Cpu>>(&data, "small-gated-netvlad", 3),
    ];
    let seconds = started.elapsed().as_secs_f64();
    let members: Vec<Predictions> = trained.iter().map(|(p, _)| p.clone()).collect();

    // A member's GAP through the ensemble code is the training run's own evaluation.
    let mut member_gaps = Vec::new();
    for (predictions, run_gap) in &trained {
        let gap = score_predictions(predictions, &truth, 20, MissingVideos::Error).unwrap().gap;
        assert!((gap - run_gap).abs() < 1e-12, "{}: {gap} vs {run_gap}", predictions.name());
        member_gaps.push(gap);
    }
    let best = member_gaps.iter().copied().fold(0.0, f64::max);

    // The two set-based poolings (soft BoW, NetVLAD) at equal weights, chosen a priori.
    // Average pooling is confused by design (the synthetic co-occurrence classes).
    let mean = weighted_mean(&members, &[0.0, 1.0, 1.0], MissingVideos::Error).unwrap();
    let mean_gap = score_predictions(&mean, &truth, 20, MissingVideos::Error).unwrap().gap;
    let selection = greedy_selection(&members, &truth, &SelectionOptions::default()).unwrap();
    eprintln!(
        "members {:?} (best {best:.4}), soft BoW + NetVLAD mean {mean_gap:.4}, greedy {:.4} with weights {:?}; training {seconds:.1} s",
        members.iter().map(Predictions::name).zip(&member_gaps).collect::<Vec<_>>(),
        selection.metrics.gap,
        selection.weights
    );
    assert!(mean_gap > best, "soft BoW + NetVLAD mean {mean_gap} vs best member {best}");
    assert!(selection.metrics.gap > best, "greedy {} vs best member {best}", selection.metrics.gap);
    assert!(selection.weights.iter().filter(|&&w| w > 0.0).count() >= 2, "{:?}", selection.weights);

    // Out of sample: weights chosen on the even videos still beat the best member on
    // the odd ones (members predict all 200 videos: the others are ignored).
    let half = |parity: usize| {
        let videos = truth.iter().enumerate().filter(|(i, _)| i % 2 == parity);
        GroundTruth::new(Some(10), videos.map(|(_, (id, labels))| (id.to_string(), labels.to_vec()))).unwrap()
    };
    let (fit, held_out) = (half(0), half(1));
    let options = SelectionOptions { missing: MissingVideos::Empty, ..SelectionOptions::default() };
    let fitted = greedy_selection(&members, &fit, &options).unwrap();
    let ensemble = weighted_mean(&members, &fitted.weights, MissingVideos::Error).unwrap();
    let held_out_gap = score_predictions(&ensemble, &held_out, 20, MissingVideos::Empty).unwrap().gap;
    let held_out_best = members
        .iter()
        .map(|m| score_predictions(m, &held_out, 20, MissingVideos::Empty).unwrap().gap)
        .fold(0.0, f64::max);
    eprintln!(
        "held out: greedy {held_out_gap:.4} with weights {:?}, best member {held_out_best:.4}",
        fitted.weights
    );
    assert!(held_out_gap > held_out_best, "held out: ensemble {held_out_gap} vs best member {held_out_best}");
}
