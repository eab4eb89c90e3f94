//! Checkpoints: round trip of weights and optimizer state, atomic replacement, clear
//! errors for a checkpoint of another architecture.

mod common;

use dfdx::prelude::*;
use loupe::model::{AfterClassifier, AfterPooling, ClassifierKind, Fusion, InputKind, ModelDescription};
use loupe::train::checkpoint::{
    load_checkpoint, save_checkpoint, CheckpointError, CheckpointMeta, CHECKPOINT_FORMAT,
};
use loupe::train::{Adam, AdamConfig, CheckpointMetrics, RngState, TrainingDescription};

fn scratch(name: &str) -> common::ScratchDir {
    common::scratch_dir(&format!("checkpoint-{name}"))
}

fn description(hidden: usize) -> ModelDescription {
    ModelDescription {
        name: "Tiny".into(),
        input: InputKind::Frames,
        streams: vec![],
        fusion: Fusion::Late,
        early_pooling: None,
        frames: 1,
        hidden: Some(hidden),
        hidden_batch_norm: false,
        hidden_relu6: false,
        frame_mask: false,
        dropout: 0.0,
        after_pooling: AfterPooling::None,
        gating_reduction: None,
        classifier: ClassifierKind::Logistic,
        experts: 0,
        after_classifier: AfterClassifier::None,
        classes: 2,
        classifier_l2: 1e-8,
    }
}

fn meta(step: u64, hidden: usize) -> CheckpointMeta {
    CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        model: description(hidden),
        dtype: "f32".into(),
        training: TrainingDescription { batch_size: Some(4), ..TrainingDescription::default() },
        step,
        examples_seen: step * 4,
        metrics: Some(CheckpointMetrics::Segments { segment_map: 0.5 }),
        vocabulary_size: 2,
        rng_state: RngState::default(),
        files: Vec::new(),
    }
}

type Tiny = (Linear<3, 4>, Linear<4, 2>);

fn trained_step(
    model: &mut <Tiny as BuildOnDevice<Cpu, f32>>::Built,
    adam: &mut Adam<<Tiny as BuildOnDevice<Cpu, f32>>::Built>,
    dev: &Cpu,
) {
    let x: Tensor<(usize, Const<3>), f32, _> = dev.sample_normal_like(&(5, Const));
    let loss = model.forward(x.trace(model.alloc_grads())).square().sum::<Rank0, _>();
    let grads = loss.backward();
    adam.update(model, &grads, 0.01).unwrap();
}

#[test]
fn checkpoint_round_trips_weights_and_optimizer_state() {
    let dir = scratch("roundtrip");
    let dev = loupe::device::cpu_seeded(1);
    let mut model = dev.build_module::<Tiny, f32>();
    let mut adam = Adam::new(AdamConfig::default());
    trained_step(&mut model, &mut adam, &dev);
    let sidecar = save_checkpoint(&dir, &model, &adam, &meta(1, 4), 2).unwrap();
    assert!(sidecar.ends_with("step-00000001.json"));

    let mut restored = dev.build_module::<Tiny, f32>();
    let mut restored_adam = Adam::new(AdamConfig::default());
    let mut m = load_checkpoint(&dir, &description(4), &mut restored, Some(&mut restored_adam)).unwrap();
    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["step-00000001.safetensors", "step-00000001.adam.safetensors"]);
    for f in &m.files {
        assert_eq!(f.digest.bytes, std::fs::metadata(dir.join(&f.name)).unwrap().len());
    }
    m.files.clear();
    assert_eq!(m, meta(1, 4));
    assert_eq!(restored.0.weight.as_vec(), model.0.weight.as_vec());
    assert_eq!(restored.1.bias.as_vec(), model.1.bias.as_vec());
    assert_eq!(restored_adam.step, 1);
    let (m0, v0) = adam.moments.as_ref().unwrap();
    let (m1, v1) = restored_adam.moments.as_ref().unwrap();
    assert_eq!(m0.0.weight.as_vec(), m1.0.weight.as_vec());
    assert_eq!(v0.1.weight.as_vec(), v1.1.weight.as_vec());

    // One more identical step from both gives identical weights: resume is exact.
    let dev2 = loupe::device::cpu_seeded(7);
    let dev3 = loupe::device::cpu_seeded(7);
    trained_step(&mut model, &mut adam, &dev2);
    trained_step(&mut restored, &mut restored_adam, &dev3);
    assert_eq!(restored.0.weight.as_vec(), model.0.weight.as_vec());
}

#[test]
fn latest_always_names_a_complete_checkpoint_and_old_ones_are_pruned() {
    let dir = scratch("latest");
    let dev = loupe::device::cpu_seeded(2);
    let mut model = dev.build_module::<Tiny, f32>();
    let mut adam = Adam::new(AdamConfig::default());
    for step in 1..=3 {
        trained_step(&mut model, &mut adam, &dev);
        save_checkpoint(&dir, &model, &adam, &meta(step, 4), 2).unwrap();
    }
    // A crash in the middle of writing step 4: only a partial temporary file exists.
    std::fs::write(dir.join("step-00000004.safetensors.tmp999"), b"partial").unwrap();
    let mut restored = dev.build_module::<Tiny, f32>();
    let m = load_checkpoint(&dir, &description(4), &mut restored, None).unwrap();
    assert_eq!(m.step, 3);
    assert_eq!(restored.0.weight.as_vec(), model.0.weight.as_vec());
    assert!(!dir.join("step-00000001.json").exists(), "pruned");
    assert!(dir.join("step-00000002.json").exists());
}

/// A tensor file changed after its checkpoint was written (one flipped byte, a truncated
/// file, a missing file) is named when loading, with what differs.
#[test]
fn damaged_tensor_files_are_named_when_loading() {
    let dir = scratch("damaged");
    let dev = loupe::device::cpu_seeded(3);
    let mut model = dev.build_module::<Tiny, f32>();
    let mut adam = Adam::new(AdamConfig::default());
    trained_step(&mut model, &mut adam, &dev);
    save_checkpoint(&dir, &model, &adam, &meta(1, 4), 2).unwrap();
    let weights = dir.join("step-00000001.safetensors");
    let adam_file = dir.join("step-00000001.adam.safetensors");
    let good = std::fs::read(&weights).unwrap();
    let load = |with_adam: bool| {
        let mut restored = dev.build_module::<Tiny, f32>();
        let mut restored_adam = Adam::new(AdamConfig::default());
        let adam = if with_adam { Some(&mut restored_adam) } else { None };
        load_checkpoint(&dir, &description(4), &mut restored, adam).map(|_| ())
    };
    load(true).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    std::fs::write(&weights, &flipped).unwrap();
    let err = load(false).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("step-00000001.safetensors") && text.contains("CRC32C"), "{text}");

    std::fs::write(&weights, &good[..good.len() - 4]).unwrap();
    let text = load(false).unwrap_err().to_string();
    assert!(text.contains(&format!("{} bytes, expected {}", good.len() - 4, good.len())), "{text}");

    std::fs::write(&weights, &good).unwrap();
    std::fs::remove_file(&adam_file).unwrap();
    let text = load(true).unwrap_err().to_string();
    assert!(text.contains("step-00000001.adam.safetensors: missing"), "{text}");
}

/// Saving removes what interrupted writes left: temporary files and tensor files of a
/// step without a sidecar; complete checkpoints stay.
#[test]
fn saving_removes_leftovers_of_interrupted_writes() {
    let dir = scratch("leftovers");
    let dev = loupe::device::cpu_seeded(4);
    let model = dev.build_module::<Tiny, f32>();
    let adam = Adam::new(AdamConfig::default());
    save_checkpoint(&dir, &model, &adam, &meta(1, 4), 3).unwrap();
    let strays = [
        "step-00000002.safetensors",
        "step-00000002.adam.safetensors",
        "step-00000002.json.tmp4242",
        "latest.tmp17",
    ];
    for stray in strays {
        std::fs::write(dir.join(stray), b"partial").unwrap();
    }
    assert_eq!(loupe::train::checkpoint::remove_leftovers(&dir).unwrap().len(), strays.len());
    for stray in strays {
        std::fs::write(dir.join(stray), b"partial").unwrap();
    }
    save_checkpoint(&dir, &model, &adam, &meta(3, 4), 3).unwrap();
    for stray in strays {
        assert!(!dir.join(stray).exists(), "{stray} left behind");
    }
    for kept in [
        "step-00000001.json",
        "step-00000001.safetensors",
        "step-00000003.json",
        "step-00000003.safetensors",
        "latest",
    ] {
        assert!(dir.join(kept).exists(), "{kept} removed");
    }
}

#[test]
fn loading_into_another_architecture_names_the_difference() {
    let dir = scratch("arch");
    let dev = loupe::device::cpu_seeded(3);
    let model = dev.build_module::<Tiny, f32>();
    save_checkpoint(&dir, &model, &Adam::new(AdamConfig::default()), &meta(1, 4), 1).unwrap();

    let mut other = dev.build_module::<(Linear<3, 5>, Linear<5, 2>), f32>();
    let err = load_checkpoint(&dir, &description(5), &mut other, None).unwrap_err();
    assert!(matches!(err, CheckpointError::Architecture { .. }), "{err}");
    assert!(err.to_string().contains("hidden: 4 vs 5"), "{err}");

    // Same description but different shapes (a hand-written model lying about itself).
    let err = load_checkpoint(&dir, &description(4), &mut other, None).unwrap_err();
    assert!(
        err.to_string().contains("parameter `0.weight`: shape [4, 3] in the file, [5, 3] in the model"),
        "{err}"
    );

    let mut wide = dev.build_module::<Tiny, f64>();
    let err = load_checkpoint(&dir, &description(4), &mut wide, None).unwrap_err();
    assert!(matches!(err, CheckpointError::Dtype { .. }), "{err}");

    let err = load_checkpoint(&dir.join("nothing"), &description(4), &mut wide, None).unwrap_err();
    assert!(matches!(err, CheckpointError::NotFound { .. }), "{err}");
}

#[test]
fn sidecars_written_before_the_added_description_fields_still_load() {
    let dir = scratch("added-fields");
    let dev = loupe::device::cpu_seeded(4);
    let model = dev.build_module::<Tiny, f32>();
    let sidecar = save_checkpoint(&dir, &model, &Adam::new(AdamConfig::default()), &meta(1, 4), 1).unwrap();

    // The architecture grew a ReLU6 on its hidden layer: no weight tells, the description does.
    let mut relu6 = description(4);
    relu6.hidden_relu6 = true;
    let mut restored = dev.build_module::<Tiny, f32>();
    let err = load_checkpoint(&dir, &relu6, &mut restored, None).unwrap_err();
    assert!(err.to_string().contains("hidden_relu6: false vs true"), "{err}");

    // A sidecar from before the fields existed does not record them: they are not compared,
    // every field it does record still is.
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    let recorded = json["model"].as_object_mut().unwrap();
    // The first added fields are always written; the later ones (frame_mask, dropout,
    // gating_reduction) only when they are set, so an old-style sidecar lacks them anyway.
    for field in ModelDescription::ADDED_FIELDS {
        let always_written = ["input", "early_pooling", "hidden_batch_norm", "hidden_relu6"].contains(field);
        assert_eq!(recorded.remove(*field).is_some(), always_written, "{field}");
    }
    std::fs::write(&sidecar, serde_json::to_vec(&json).unwrap()).unwrap();
    let m = load_checkpoint(&dir, &relu6, &mut restored, None).unwrap();
    assert_eq!(
        (m.model.input, m.model.hidden_relu6, m.model.early_pooling.clone()),
        (InputKind::Frames, false, None)
    );
    assert_eq!(restored.0.weight.as_vec(), model.0.weight.as_vec());
    let err = load_checkpoint(&dir, &description(5), &mut restored, None).unwrap_err();
    assert!(err.to_string().contains("hidden: 4 vs 5"), "{err}");
}

/// A sidecar exactly as `loupe train` wrote it before the description's kinds and the
/// training, metrics and random-state fields were typed (written by that version, the
/// data paths made relative): it reads into the typed fields and writes back byte for byte.
#[test]
fn a_sidecar_written_before_the_typed_fields_reads_and_writes_the_same_text() {
    use loupe::model::PoolingKind;
    use loupe::train::checkpoint::read_meta;
    let text = include_str!("fixtures/sidecars/train_main.json");
    let meta: CheckpointMeta = serde_json::from_str(text).unwrap();
    let m = &meta.model;
    assert_eq!((m.input, m.fusion), (InputKind::Frames, Fusion::Late));
    assert_eq!(m.streams.iter().map(|s| s.pooling).collect::<Vec<_>>(), [PoolingKind::NetVlad; 2]);
    assert_eq!(
        (m.after_pooling, m.classifier, m.after_classifier),
        (AfterPooling::ContextGating, ClassifierKind::Moe, AfterClassifier::ProbabilityGating)
    );
    assert_eq!(meta.training.model.as_deref(), Some("small-gated-netvlad"));
    assert_eq!(meta.training.regularization_penalty, Some(None));
    assert_eq!(meta.training.train_data_pattern, Some(vec!["data/frame/train*.tfrecord".to_string()]));
    assert_eq!(meta.frame_order(), loupe::data::FrameOrder::Temporal);
    match meta.metrics {
        Some(CheckpointMetrics::Videos(v)) => assert_eq!((v.videos, v.hit_at_1), (20, 0.3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(meta.rng_state, RngState { seed: Some(0), batches_consumed: Some(2), ranks: Some(1) });
    assert_eq!(serde_json::to_string_pretty(&meta).unwrap(), text);

    // A library run's sidecar (no training description, no metrics yet), a segment
    // fine-tuning's metrics and a hand-written model's sidecar without random state
    // (compared as JSON values: `value` is written with its keys sorted).
    let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
    for (training, metrics, rng_state) in [
        (serde_json::Value::Null, serde_json::Value::Null, serde_json::json!({"seed": 7})),
        (
            serde_json::json!({"init_from": "run/checkpoints", "segment_labels": true}),
            serde_json::json!({"segment_map": 0.25}),
            serde_json::json!({"seed": 7}),
        ),
    ] {
        value["training"] = training;
        value["metrics"] = metrics;
        value["rng_state"] = rng_state;
        let text = serde_json::to_string_pretty(&value).unwrap();
        let meta: CheckpointMeta = serde_json::from_str(&text).unwrap();
        assert_eq!(meta.rng_state.seed, Some(7));
        assert_eq!(serde_json::to_value(&meta).unwrap(), value);
    }
    value["rng_state"] = serde_json::Value::Null;
    let meta: CheckpointMeta = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(meta.rng_state, RngState::default());
    assert_eq!(meta.metrics, Some(CheckpointMetrics::Segments { segment_map: 0.25 }));
    assert_eq!(meta.training.segment_labels, Some(true));

    // A kind this version does not know is a typed error naming the sidecar.
    value["model"]["fusion"] = "middle".into();
    let dir = scratch("unknown-kind");
    std::fs::create_dir_all(&dir).unwrap();
    let sidecar = dir.join("step-00000002.json");
    std::fs::write(&sidecar, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let err = read_meta(&sidecar).unwrap_err();
    assert!(matches!(err, CheckpointError::Sidecar { .. }), "{err:?}");
    assert!(err.to_string().contains("step-00000002.json"), "{err}");
}
