//! `loupe::jobs`: a zoo model's jobs picked by name give what the generic functions give
//! on the model's type, and a name not in the zoo is `None`.

mod common;

use common::small_data::{small_synthetic, SmallData};
use loupe::data::FrameOrder;
use loupe::distributed::SingleProcess;
use loupe::infer::Predictor;
use loupe::jobs::{self, Inference, RunDevice, TrainPlan};
use loupe::train::run::{evaluate_dataset, evaluation_dataset_in_order, RunConfig};
use loupe::train::{AdamConfig, LearningRateSchedule, TrainConfig};
use loupe::zoo::SmallAverageModel;

fn plan(model: &str, data: &SmallData) -> TrainPlan {
    let config = RunConfig {
        train_files: data.train.clone(),
        validate_files: data.validate.clone(),
        decoder: data.decoder.clone(),
        batch_size: 32,
        seed: 3,
        shuffle_buffer: 256,
        max_steps: Some(20),
        epochs: None,
        eval_every: None,
        checkpoint_every: None,
        output_dir: data.dir.join(model),
        keep_checkpoints: 1,
        resume: false,
        skip_corrupt: false,
        progress: false,
        top_k: 20,
        frame_order: FrameOrder::default(),
        optim: TrainConfig {
            schedule: LearningRateSchedule { base: 0.01, decay: 0.9, decay_examples: 1000 },
            adam: AdamConfig::default(),
            ..TrainConfig::default()
        },
        description: Default::default(),
    };
    TrainPlan { model: model.to_string(), config, regularization_penalty: None, layout_source: None }
}

fn cpu() -> RunDevice {
    RunDevice::Cpu(loupe::device::cpu_seeded(0))
}

fn inference(data: &SmallData, checkpoint: std::path::PathBuf) -> Inference<'static> {
    Inference {
        collective: &SingleProcess,
        checkpoint,
        files: data.validate.clone(),
        decoder: data.decoder.clone(),
        batch_size: 64,
        skip_corrupt: false,
        frame_sampling: None,
    }
}

#[test]
fn training_and_evaluating_by_name_match_the_typed_functions() {
    let data = small_synthetic("by-name", 5, 10);
    let summary =
        jobs::train(plan("small-average", &data), cpu(), &SingleProcess).expect("a zoo name").unwrap();
    assert_eq!(summary.steps, 20);
    let trained = summary.metrics.expect("validation files were given");
    let checkpoint = summary.checkpoint.expect("the run ends with a checkpoint");

    let (by_name, skipped) = jobs::evaluate("small-average", cpu(), inference(&data, checkpoint.clone()), 20)
        .expect("a zoo name")
        .unwrap();
    assert!(skipped.is_empty());

    type M = SmallAverageModel<f32, loupe::dfdx::tensor::Cpu>;
    let (predictor, _) = Predictor::<M, _>::load(loupe::device::cpu(), &checkpoint).unwrap();
    let dataset = evaluation_dataset_in_order::<M, _>(
        data.validate.clone(),
        data.decoder.clone(),
        64,
        false,
        FrameOrder::default(),
    )
    .unwrap();
    let typed = evaluate_dataset(&predictor, &dataset, 20).unwrap();

    assert_eq!(by_name.videos, 200);
    for (what, a, b, c) in [
        ("gap", by_name.gap, typed.gap, trained.gap),
        ("hit_at_1", by_name.hit_at_1, typed.hit_at_1, trained.hit_at_1),
        ("map", by_name.map, typed.map, trained.map),
    ] {
        assert_eq!(a, b, "{what}: by name against the typed predictor");
        assert_eq!(a, c, "{what}: by name against the training's own evaluation");
    }
    // The description by name is the typed model's.
    let (description, parameters) = jobs::describe("small-average").unwrap();
    assert_eq!(description, <M as loupe::model::VideoModel<f32, _>>::describe());
    assert!(parameters > 0);
}

#[test]
fn a_name_not_in_the_zoo_is_none() {
    let data = small_synthetic("unknown", 6, 10);
    assert!(jobs::describe("no-such-model").is_none());
    assert!(jobs::train(plan("no-such-model", &data), cpu(), &SingleProcess).is_none());
    let missing = data.dir.join("no-checkpoint");
    assert!(jobs::evaluate("no-such-model", cpu(), inference(&data, missing.clone()), 20).is_none());
    assert!(jobs::embed(
        "no-such-model",
        cpu(),
        inference(&data, missing),
        loupe::model::Layer::Pooled,
        &data.dir.join("x.npy")
    )
    .is_none());
}
