//! `loupe ensemble` on prediction files and checkpoints over synthetic validation shards:
//! the JSON it prints, the submission it writes, and errors on bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use loupe::data::{generate, read_labels, DataFormat, FeatureSpec, SynthConfig, VideoDecoder};
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::train::run::{train, RunConfig};
use loupe::train::{AdamConfig, LearningRateSchedule, TrainConfig};
use loupe::zoo::SmallAverageModel;

struct Fixture {
    dir: common::ScratchDir,
    train: Vec<PathBuf>,
    validation: String,
    truth: Vec<(String, Vec<u32>)>,
}

fn fixture(name: &str) -> Fixture {
    let dir = common::scratch_dir(&format!("cli-ensemble-{name}"));
    let config = SynthConfig {
        seed: 3,
        num_classes: 10,
        train_videos: 200,
        validate_videos: 60,
        train_shards: 1,
        validate_shards: 1,
        min_frames: 10,
        max_frames: 12,
        rgb_size: 16,
        audio_size: 8,
        video_level: false,
        rated_segments: false,
    };
    let summary = generate(&dir, &config).unwrap();
    let (validate, train): (Vec<PathBuf>, Vec<PathBuf>) = summary
        .frame_files
        .into_iter()
        .partition(|p| p.file_name().unwrap().to_string_lossy().starts_with("validate"));
    let truth = read_labels(&validate, false).unwrap().0;
    Fixture { validation: validate[0].display().to_string(), dir, train, truth }
}

/// A prediction file right on the videos `right` picks (true labels 0.9, a wrong one 0.1)
/// and wrong on the others (true labels 0.05, a wrong one at `miss`).
fn predictions(f: &Fixture, name: &str, right: impl Fn(usize) -> bool, miss: f32) -> PathBuf {
    let mut csv = String::from("VideoId,LabelConfidencePairs\n");
    for (i, (id, labels)) in f.truth.iter().enumerate() {
        let wrong = (0..10).find(|c| !labels.contains(c)).unwrap();
        let (truth_score, wrong_score) = if right(i) { (0.9, 0.1) } else { (0.05, miss) };
        let mut pairs = vec![format!("{wrong} {wrong_score}")];
        pairs.extend(labels.iter().map(|l| format!("{l} {truth_score}")));
        csv.push_str(&format!("{id},{}\n", pairs.join(" ")));
    }
    let path = f.dir.join(format!("{name}.csv"));
    std::fs::write(&path, csv).unwrap();
    path
}

fn loupe(args: &[&str], paths: &[&Path]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loupe"));
    command.arg("ensemble").args(args);
    for p in paths {
        command.arg(p);
    }
    command.output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn greedy_ensemble_of_two_files_beats_both_and_writes_a_submission() {
    let f = fixture("greedy");
    let a = predictions(&f, "a", |i| i % 3 != 0, 0.5);
    let b = predictions(&f, "b", |i| i % 3 == 0, 0.15);
    let out_csv = f.dir.join("submission.csv");
    let out = loupe(
        &[
            "--json",
            "--greedy",
            "--validation",
            &f.validation,
            "--out",
            &out_csv.display().to_string(),
            "--predictions",
        ],
        &[&a, &b],
    );
    let j = json(&out);
    let gap = j["gap"].as_f64().unwrap();
    let members = j["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["name"], a.display().to_string());
    for m in members {
        assert!(gap > m["gap"].as_f64().unwrap(), "{j}");
        assert!(m["weight"].as_f64().unwrap() >= 1.0, "both are chosen: {j}");
    }
    assert_eq!(j["videos"], 60);
    for key in ["hit_at_1", "perr", "map"] {
        assert!(j[key].as_f64().is_some(), "{key}: {j}");
    }
    assert_eq!(j["steps"][0]["member"], a.display().to_string(), "the better member first: {j}");

    // The submission scores what the ensemble reported (up to its 6 written decimals).
    let text = std::fs::read_to_string(&out_csv).unwrap();
    assert!(text.starts_with("VideoId,LabelConfidencePairs\n"));
    assert_eq!(text.lines().count(), 61);
    let scored = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["score", "--json", "--classes", "10", "--truth", &f.validation, "--submission"])
        .arg(&out_csv)
        .output()
        .unwrap();
    assert!((json(&scored)["gap"].as_f64().unwrap() - gap).abs() < 1e-4);

    // Fixed weights: no selection steps, member weights as given.
    let j = json(&loupe(
        &["--json", "--weights", "1", "3", "--validation", &f.validation, "--predictions"],
        &[&a, &b],
    ));
    assert_eq!(j["members"][1]["weight"], 3.0);
    assert_eq!(j["steps"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_input_is_a_clear_error() {
    let f = fixture("bad");
    let a = predictions(&f, "a", |i| i % 2 == 0, 0.5);
    let validation = ["--validation", f.validation.as_str(), "--predictions"];

    let malformed = f.dir.join("malformed.csv");
    std::fs::write(&malformed, "VideoId,LabelConfidencePairs\nv1,3 0.5 4\n").unwrap();
    let out = loupe(&validation, &[&a, &malformed]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("malformed.csv:2: 3 values"), "{}", stderr(&out));

    // A file missing videos: an error naming one, unless missing videos are allowed.
    let text = std::fs::read_to_string(&a).unwrap();
    let short = f.dir.join("short.csv");
    std::fs::write(&short, text.lines().take(30).collect::<Vec<_>>().join("\n")).unwrap();
    let out = loupe(&validation, &[&a, &short]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("but not by") && stderr(&out).contains("(31 such videos)"),
        "{}",
        stderr(&out)
    );
    let j = json(&loupe(
        &["--json", "--allow-missing", "--validation", &f.validation, "--predictions"],
        &[&a, &short],
    ));
    assert_eq!(j["videos"], 60);

    let out = loupe(&["--weights", "1", "--predictions"], &[&a, &short]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("1 weights given for 2 members"), "{}", stderr(&out));
    let out = loupe(&["--greedy", "--predictions"], &[&a]);
    assert_eq!(out.status.code(), Some(2), "--greedy needs --validation: {}", stderr(&out));
    let out = loupe(&["--validation", &f.validation], &[]);
    assert_eq!(out.status.code(), Some(2), "no member: {}", stderr(&out));
    let out = loupe(&["--predictions"], &[&f.dir.join("absent.csv")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("absent.csv"), "{}", stderr(&out));
}

#[test]
fn checkpoints_predict_the_validation_videos() {
    let f = fixture("checkpoint");
    type M = SmallAverageModel<f32, Cpu>;
    let config = RunConfig {
        train_files: f.train.clone(),
        validate_files: vec![],
        decoder: VideoDecoder::new(
            DataFormat::FrameLevel,
            FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 16, 8),
        ),
        batch_size: 32,
        seed: 1,
        shuffle_buffer: 64,
        max_steps: None,
        epochs: Some(3),
        eval_every: None,
        checkpoint_every: None,
        output_dir: f.dir.join("run"),
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
    train::<M, Cpu>(loupe::device::cpu_seeded(1), &config).unwrap();
    let checkpoints = f.dir.join("run/checkpoints");
    let a = predictions(&f, "a", |i| i % 2 == 0, 0.5);

    let a = a.display().to_string();
    let args = ["--json", "--greedy", "--validation", &f.validation, "--predictions", &a, "--checkpoints"];
    let j = json(&loupe(&args, &[&checkpoints]));
    let members = j["members"].as_array().unwrap();
    assert_eq!(members[1]["name"], checkpoints.display().to_string(), "files first, then checkpoints: {j}");
    assert!(members[1]["gap"].as_f64().unwrap() > 0.0, "{j}");

    // A model of 10 classes cannot join members of 12.
    let out = loupe(&["--classes", "12", "--validation", &f.validation, "--checkpoints"], &[&checkpoints]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("predicts 10 classes"), "{}", stderr(&out));
}
