//! The main job through the command line, on synthetic data at the small zoo models'
//! sizes: train, evaluate, predict, score, resume, and clear errors for bad settings.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn loupe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loupe")).args(args).output().unwrap()
}

fn ok(out: Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or(serde_json::Value::Null)
}

fn scratch(name: &str) -> common::ScratchDir {
    common::scratch_dir(&format!("cli-train-{name}"))
}

struct Data {
    dir: common::ScratchDir,
    train: String,
    validate: String,
}

fn synth(name: &str) -> Data {
    let dir = scratch(name);
    let out = dir.join("data");
    ok(loupe(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "3",
        "--classes",
        "10",
        "--train-videos",
        "600",
        "--validate-videos",
        "200",
        "--shards",
        "2",
        "--min-frames",
        "10",
        "--max-frames",
        "20",
        "--rgb-size",
        "16",
        "--audio-size",
        "8",
    ]));
    Data {
        train: out.join("frame/train*.tfrecord").to_str().unwrap().to_string(),
        validate: out.join("frame/validate*.tfrecord").to_str().unwrap().to_string(),
        dir,
    }
}

fn train(data: &Data, model: &str, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "train",
        "--model",
        model,
        "--train-data-pattern",
        &data.train,
        "--eval-data-pattern",
        &data.validate,
        "--train-dir",
        dir.to_str().unwrap(),
        "--batch-size",
        "32",
        "--base-learning-rate",
        "0.01",
        "--learning-rate-decay",
        "0.9",
        "--learning-rate-decay-examples",
        "1000",
        "--quiet",
        "--json",
    ];
    args.extend_from_slice(extra);
    ok(loupe(&args))
}

#[test]
fn train_eval_predict_score_and_resume() {
    let data = synth("main");
    let vlad_dir = data.dir.join("vlad");
    let vlad = train(&data, "small-gated-netvlad", &vlad_dir, &["--num-epochs", "3"]);
    let avg = train(&data, "small-average", &data.dir.join("avg"), &["--num-epochs", "3"]);
    let (vlad_gap, avg_gap) =
        (vlad["metrics"]["gap"].as_f64().unwrap(), avg["metrics"]["gap"].as_f64().unwrap());
    assert!(vlad_gap > avg_gap + 0.1, "NetVLAD {vlad_gap} vs average pooling {avg_gap}");
    assert_eq!(vlad["metrics"]["videos"], 200);
    assert!(vlad["peak_memory_bytes"].as_u64().unwrap() > 1 << 20, "{vlad}");
    assert!(vlad_dir.join("curves.png").exists());
    assert!(std::fs::read_dir(vlad_dir.join("events")).unwrap().count() == 1);

    // Evaluation of the checkpoint repeats the training run's final evaluation exactly.
    let checkpoints = vlad_dir.join("checkpoints");
    let eval = ok(loupe(&[
        "eval",
        "--checkpoint",
        checkpoints.to_str().unwrap(),
        "--eval-data-pattern",
        &data.validate,
        "--json",
    ]));
    assert_eq!(eval["gap"].as_f64().unwrap(), vlad_gap);

    // Predictions scored against the same videos agree (scores are rounded to 6 digits).
    let csv = data.dir.join("predictions.csv");
    ok(loupe(&[
        "predict",
        "--checkpoint",
        checkpoints.to_str().unwrap(),
        "--input-data-pattern",
        &data.validate,
        "--output-file",
        csv.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("VideoId,LabelConfidencePairs\n"));
    assert_eq!(text.lines().count(), 201);
    let score = ok(loupe(&[
        "score",
        "--submission",
        csv.to_str().unwrap(),
        "--truth",
        &data.validate,
        "--classes",
        "10",
        "--json",
    ]));
    assert!((score["gap"].as_f64().unwrap() - vlad_gap).abs() < 1e-3, "{score} vs {vlad_gap}");

    // Resuming from step 6 reproduces the weights of an uninterrupted 12-step run.
    let straight = data.dir.join("straight");
    let resumed = data.dir.join("resumed");
    train(&data, "small-gated-netvlad", &straight, &["--max-steps", "12"]);
    train(&data, "small-gated-netvlad", &resumed, &["--max-steps", "6"]);
    train(&data, "small-gated-netvlad", &resumed, &["--max-steps", "12", "--resume"]);
    let weights = |dir: &Path| std::fs::read(dir.join("checkpoints/step-00000012.safetensors")).unwrap();
    assert!(weights(&straight) == weights(&resumed), "resumed weights differ");
}

#[test]
fn bad_settings_are_clear_errors() {
    let data = synth("bad");
    let dir = data.dir.join("bad");
    let config = data.dir.join("bad.toml");
    std::fs::write(&config, "batch_size = 8\nlearning_rate = 0.1\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", "small-average", "--base-learning-rate=-1"], "--base-learning-rate must be positive"),
        (vec!["--model", "small-average", "--batch-size", "0"], "--batch-size must be at least 1"),
        (vec!["--model", "no-such-model"], "unknown model `no-such-model`"),
        (vec!["--model", "small-average", "--config", config.to_str().unwrap()], "unknown field `learning_rate`"),
        (vec!["--model", "small-average", "--learning-rate-decay", "1.5"], "--learning-rate-decay must be at most 1"),
        (
            vec!["--model", "quickstart-average"],
            "train0000.tfrecord: record 0 has the streams rgb 16 + audio 8 (24 values per frame), but model quickstart-average expects 1152 values per frame",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "train",
            "--train-data-pattern",
            &data.train,
            "--train-dir",
            dir.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(&extra);
        let out = loupe(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected) && !stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
    // One writer per training directory: while this process holds it, a run fails at
    // once naming the holder.
    let lock = loupe::train::TrainDirLock::acquire(&dir).unwrap();
    let out = loupe(&[
        "train",
        "--model",
        "small-average",
        "--train-data-pattern",
        &data.train,
        "--train-dir",
        dir.to_str().unwrap(),
        "--max-steps",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("in use by another training process (pid {})", std::process::id())),
        "{stderr}"
    );
    assert!(!dir.join("checkpoints").exists(), "the second writer wrote");
    drop(lock);
    let out =
        loupe(&["train", "--model", "small-average", "--train-data-pattern", "/nonexistent/*.tfrecord"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/*.tfrecord"));
    let out = loupe(&["eval", "--checkpoint", dir.to_str().unwrap(), "--eval-data-pattern", &data.validate]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint here"));
}

/// GAP of the best label-blind submission: every video gets the same scores, each class's
/// frequency among `truth`'s videos (an oracle prior), scored by `loupe score`.
fn prior_gap(truth: &str, dir: &Path, classes: usize) -> f64 {
    let out = loupe(&["inspect", truth, "--json", "--per-video"]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let videos: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["id"].is_string())
        .collect();
    let mut counts = vec![0usize; classes];
    for v in &videos {
        for label in v["labels"].as_array().unwrap() {
            counts[label.as_u64().unwrap() as usize] += 1;
        }
    }
    let pairs: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(c, n)| format!("{c} {:.6}", *n as f64 / videos.len() as f64))
        .collect();
    let mut csv = String::from("VideoId,LabelConfidencePairs\n");
    for v in &videos {
        csv.push_str(&format!("{},{}\n", v["id"].as_str().unwrap(), pairs.join(" ")));
    }
    let path = dir.join("prior.csv");
    std::fs::write(&path, csv).unwrap();
    let classes = classes.to_string();
    ok(loupe(&[
        "score",
        "--submission",
        path.to_str().unwrap(),
        "--truth",
        truth,
        "--classes",
        &classes,
        "--json",
    ]))["gap"]
        .as_f64()
        .unwrap()
}

/// The starter code's video-level MoE at full size (1152 inputs, 3862 classes) trains on
/// video-level records (`mean_rgb`, `mean_audio`) and evaluates well above a label prior;
/// the checkpoint evaluates again to the same GAP; frame-level files are refused.
#[test]
fn video_level_moe_trains_on_video_level_records() {
    let dir = scratch("video-level");
    let out = dir.join("data");
    ok(loupe(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "5",
        "--classes",
        "10",
        "--train-videos",
        "400",
        "--validate-videos",
        "100",
        "--shards",
        "1",
        "--min-frames",
        "5",
        "--max-frames",
        "10",
    ]));
    let (train_data, validate) = (
        out.join("video/train*.tfrecord").to_str().unwrap().to_string(),
        out.join("video/validate*.tfrecord").to_str().unwrap().to_string(),
    );
    let data = Data { dir: dir.clone(), train: train_data, validate: validate.clone() };
    let run = dir.join("video-moe");
    let summary = train(&data, "video-moe", &run, &["--num-epochs", "2"]);
    let gap = summary["metrics"]["gap"].as_f64().unwrap();
    let prior = prior_gap(&validate, &dir, 10);
    assert!(gap > 0.75 && gap > prior + 0.3, "video-moe GAP {gap}, label prior {prior}");
    assert_eq!(summary["metrics"]["videos"], 100);

    let checkpoints = run.join("checkpoints");
    let eval = ok(loupe(&[
        "eval",
        "--checkpoint",
        checkpoints.to_str().unwrap(),
        "--eval-data-pattern",
        &validate,
        "--json",
    ]));
    assert_eq!(eval["gap"].as_f64().unwrap(), gap);

    // A video-level model on frame-level files, and a frame-level model on video-level ones.
    let frames = out.join("frame/train*.tfrecord");
    let refused = loupe(&[
        "train",
        "--model",
        "video-moe",
        "--train-data-pattern",
        frames.to_str().unwrap(),
        "--train-dir",
        dir.join("refused").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("reads video-level records") && stderr.contains("frame-level"), "{stderr}");
    let refused = loupe(&[
        "train",
        "--model",
        "avg-logistic",
        "--train-data-pattern",
        &data.train,
        "--train-dir",
        dir.join("refused").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("video-level data has one vector per video"), "{stderr}");
}

#[test]
fn frame_order_flag_reaches_the_run() {
    let data = synth("order");
    let meta = |dir: &Path, step: u64| -> serde_json::Value {
        let path = dir.join(format!("checkpoints/step-{step:08}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let random = data.dir.join("random");
    let trained = train(&data, "small-lstm", &random, &["--max-steps", "2", "--frame-order", "random"]);
    assert_eq!(trained["steps"], 2);
    assert_eq!(meta(&random, 2)["training"]["frame_order"], "random");
    // `loupe eval` samples the frames as the training run's evaluation did (random order
    // here, not the temporal default), so it repeats that evaluation exactly.
    let checkpoints = random.join("checkpoints");
    let eval = ok(loupe(&[
        "eval",
        "--checkpoint",
        checkpoints.to_str().unwrap(),
        "--eval-data-pattern",
        &data.validate,
        "--json",
    ]));
    assert_eq!(eval["gap"], trained["metrics"]["gap"]);
    let temporal = data.dir.join("temporal");
    train(&data, "small-gru", &temporal, &["--max-steps", "1"]);
    assert_eq!(meta(&temporal, 1)["training"]["frame_order"], "temporal");
    let out = loupe(&[
        "train",
        "--model",
        "small-lstm",
        "--train-data-pattern",
        &data.train,
        "--frame-order",
        "sideways",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`temporal` or `random`"), "{stderr}");
}

/// Lin et al.'s 2018 NeXtVLAD at toy size trains and evaluates from the command line, on
/// videos shorter and longer than its 10 frames (short ones are masked past their
/// length), and a resumed run reproduces the uninterrupted one's weights: its dropout masks
/// come from the checkpoint's state, not from the process.
#[test]
fn nextvlad_2018_trains_evaluates_and_resumes() {
    let dir = scratch("nextvlad-2018");
    let out = dir.join("data");
    ok(loupe(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "4",
        "--classes",
        "10",
        "--train-videos",
        "200",
        "--validate-videos",
        "60",
        "--shards",
        "1",
        "--min-frames",
        "3",
        "--max-frames",
        "16",
        "--rgb-size",
        "16",
        "--audio-size",
        "8",
    ]));
    let data = Data {
        train: out.join("frame/train*.tfrecord").to_str().unwrap().to_string(),
        validate: out.join("frame/validate*.tfrecord").to_str().unwrap().to_string(),
        dir,
    };
    let straight = data.dir.join("straight");
    let trained = train(&data, "small-nextvlad-2018", &straight, &["--max-steps", "8"]);
    assert_eq!(trained["steps"], 8);
    assert_eq!(trained["metrics"]["videos"], 60);
    let gap = trained["metrics"]["gap"].as_f64().unwrap();
    assert!(gap.is_finite() && gap > 0.0, "{trained}");
    let eval = ok(loupe(&[
        "eval",
        "--checkpoint",
        straight.join("checkpoints").to_str().unwrap(),
        "--eval-data-pattern",
        &data.validate,
        "--json",
    ]));
    assert_eq!(eval["gap"], trained["metrics"]["gap"]);
    let resumed = data.dir.join("resumed");
    train(&data, "small-nextvlad-2018", &resumed, &["--max-steps", "4"]);
    train(&data, "small-nextvlad-2018", &resumed, &["--max-steps", "8", "--resume"]);
    let weights = |dir: &Path| std::fs::read(dir.join("checkpoints/step-00000008.safetensors")).unwrap();
    assert!(weights(&straight) == weights(&resumed), "resumed weights differ");
}

/// A training process killed (SIGKILL) at seeded random moments always leaves a last
/// checkpoint that loads, verifies and resumes; the next run removes what the killed one
/// left half-written.
#[test]
fn killed_training_leaves_a_checkpoint_that_resumes() {
    let data = synth("kill");
    let dir = data.dir.join("run");
    let args = |steps: &str| -> Vec<String> {
        [
            "train",
            "--model",
            "small-gated-netvlad",
            "--train-data-pattern",
            &data.train,
            "--train-dir",
            dir.to_str().unwrap(),
            "--batch-size",
            "16",
            "--checkpoint-every",
            "1",
            "--keep-checkpoints",
            "2",
            "--max-steps",
            steps,
            "--num-epochs",
            "100000",
            "--quiet",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // A fixed sequence of delays (a linear congruential generator), 40 to 1,000 ms.
    let mut state: u64 = 0x5eed;
    let trials = 8;
    let mut killed_with_checkpoint = 0;
    for trial in 0..trials {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = 40 + (state >> 33) % 960;
        let mut child = Command::new(env!("CARGO_BIN_EXE_loupe"))
            .args(args("100000").iter().chain(["--resume".to_string()].iter()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let checkpoints = dir.join("checkpoints");
        if !checkpoints.join("latest").exists() {
            continue;
        }
        killed_with_checkpoint += 1;
        let eval = loupe(&[
            "eval",
            "--checkpoint",
            checkpoints.to_str().unwrap(),
            "--eval-data-pattern",
            &data.validate,
            "--json",
        ]);
        assert!(
            eval.status.success(),
            "trial {trial} ({delay} ms): {}",
            String::from_utf8_lossy(&eval.stderr)
        );
    }
    assert!(
        killed_with_checkpoint >= trials / 2,
        "only {killed_with_checkpoint} of {trials} kills came after a checkpoint"
    );
    // Resuming continues from the last checkpoint and leaves no stray files.
    let latest = std::fs::read_to_string(dir.join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    let resumed = ok(loupe(
        &args(&(step + 2).to_string()).iter().map(String::as_str).chain(["--resume"]).collect::<Vec<_>>(),
    ));
    assert_eq!(resumed["steps"], step + 2);
    let names: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    for name in names.iter().filter(|n| n.ends_with(".safetensors")) {
        let stem = name.split('.').next().unwrap();
        assert!(names.contains(&format!("{stem}.json")), "{name} without its sidecar: {names:?}");
    }
}

/// SIGINT finishes the current step, writes a checkpoint of it and exits with 130 and a
/// message saying how to resume; resuming then continues from that step.
#[test]
fn interrupted_training_checkpoints_and_resumes() {
    let data = synth("sigint");
    let dir = data.dir.join("run");
    let base = [
        "train",
        "--model",
        "small-gated-netvlad",
        "--train-data-pattern",
        &data.train,
        "--train-dir",
        dir.to_str().unwrap(),
        "--batch-size",
        "16",
        "--quiet",
        "--json",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(base.iter().chain(&["--max-steps", "1000000", "--num-epochs", "100000"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it trains (its events file exists), then interrupt it.
    let events = dir.join("events");
    let started = std::time::Instant::now();
    while !events.exists() || std::fs::read_dir(&events).unwrap().count() == 0 {
        assert!(started.elapsed().as_secs() < 60, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume") && !stderr.contains("panicked"), "{stderr}");
    let latest = std::fs::read_to_string(dir.join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    assert!(step >= 1 && stderr.contains(&format!("step {step}")), "{stderr}");
    let resumed = ok(loupe(
        &base.iter().copied().chain(["--max-steps", &(step + 1).to_string(), "--resume"]).collect::<Vec<_>>(),
    ));
    assert_eq!(resumed["steps"], step + 1);
}

/// A hand-made frame-level record: `id`, `labels`, and `frames` frames of each
/// `(stream, bytes per frame)`.
fn frame_record(id: &str, labels: &[i64], streams: &[(&str, usize)], frames: usize) -> Vec<u8> {
    use loupe::data::proto::{Feature, Message, SequenceExample};
    let mut example = SequenceExample::default();
    let context = example.context.get_or_insert_with(Default::default);
    context.feature.insert("id".into(), Feature::bytes(vec![id.as_bytes().to_vec()]));
    context.feature.insert("labels".into(), Feature::int64s(labels.to_vec()));
    let lists = example.feature_lists.get_or_insert_with(Default::default);
    for &(name, size) in streams {
        let list = lists.feature_list.entry(name.into()).or_default();
        list.feature = (0..frames).map(|t| Feature::bytes(vec![vec![(t * 7 % 251) as u8; size]])).collect();
    }
    example.encode_to_vec()
}

/// A hand-made video-level record with `mean_rgb` and `mean_audio` as given.
fn video_record(id: &str, labels: &[i64], mean_rgb: Vec<f32>, mean_audio: Vec<f32>) -> Vec<u8> {
    use loupe::data::proto::{Example, Feature, Message};
    let mut example = Example::default();
    let features = example.features.get_or_insert_with(Default::default);
    features.feature.insert("id".into(), Feature::bytes(vec![id.as_bytes().to_vec()]));
    features.feature.insert("labels".into(), Feature::int64s(labels.to_vec()));
    features.feature.insert("mean_rgb".into(), Feature::floats(mean_rgb));
    features.feature.insert("mean_audio".into(), Feature::floats(mean_audio));
    example.encode_to_vec()
}

/// The TFRecord bytes of `payloads`, and the offset of each record (8 + 4 bytes of
/// header, the payload, 4 bytes of footer each).
fn tfrecord_bytes(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut writer = loupe::data::RecordWriter::new(Vec::new());
    for p in payloads {
        writer.write_record(p).unwrap();
    }
    let offsets = payloads.iter().scan(0, |at, p| Some(std::mem::replace(at, *at + 16 + p.len()))).collect();
    (writer.finish().unwrap(), offsets)
}

/// Runs `loupe train` on `patterns` for one epoch and returns its stderr, asserting it
/// failed with exit code 1 and no panic.
fn train_fails(model: &str, patterns: &[&str], dir: &Path) -> String {
    let mut args =
        vec!["train", "--model", model, "--train-dir", dir.to_str().unwrap(), "--num-epochs", "1", "--quiet"];
    args.push("--train-data-pattern");
    args.extend_from_slice(patterns);
    let out = loupe(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{patterns:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Issue 18: a bad record in a file after a good one (the streams detected from the good
/// file) stops training with a message naming the bad file, the record and the video id,
/// for every kind of problem; non-finite video-level features are caught when decoded.
#[test]
fn every_bad_record_is_named_by_file_record_and_video() {
    let data = synth("named");
    let good = |i: usize| frame_record(&format!("ok-{i}"), &[1], &[("rgb", 16), ("audio", 8)], 4);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no-audio", frame_record("no-audio", &[2], &[("rgb", 16)], 4), "missing feature `audio`"),
        (
            "short-rgb",
            frame_record("short-rgb", &[2], &[("rgb", 15), ("audio", 8)], 4),
            "feature `rgb` frame 0 has 15 bytes, expected 16",
        ),
        (
            "label-10",
            frame_record("label-10", &[3, 10], &[("rgb", 16), ("audio", 8)], 4),
            "label 10 is out of range: expected 0..=9 for 10 classes",
        ),
        (
            "extra-depth",
            frame_record("extra-depth", &[2], &[("rgb", 16), ("audio", 8), ("depth", 4)], 4),
            "unexpected feature stream `depth`: expected only `rgb`, `audio`",
        ),
    ];
    for (id, record, problem) in cases {
        let bad = data.dir.join(format!("zz-{id}.tfrecord"));
        std::fs::write(&bad, tfrecord_bytes(&[good(0), record, good(2)]).0).unwrap();
        let stderr =
            train_fails("small-average", &[&data.validate, bad.to_str().unwrap()], &data.dir.join(id));
        let expected = format!("{}: record 1 (video \"{id}\"): {problem}", bad.display());
        assert!(stderr.contains(&expected), "expected `{expected}` in: {stderr}");
    }

    // Video-level: a NaN in mean_rgb, and a mean_rgb of 1000 values, in a later file.
    let video = data.dir.join("video");
    ok(loupe(&[
        "synth",
        "--out",
        video.to_str().unwrap(),
        "--seed",
        "4",
        "--classes",
        "10",
        "--train-videos",
        "20",
        "--validate-videos",
        "5",
        "--shards",
        "1",
        "--min-frames",
        "2",
        "--max-frames",
        "3",
    ]));
    let good_video = video.join("video/train0000.tfrecord");
    let mut nan = vec![0.25f32; 1024];
    nan[5] = f32::NAN;
    let cases = [
        (
            "nan-rgb",
            video_record("nan-rgb", &[1], nan, vec![0.0; 128]),
            "feature `mean_rgb` value 5 is NaN, expected a finite number",
        ),
        (
            "rgb-1000",
            video_record("rgb-1000", &[1], vec![0.5; 1000], vec![0.0; 128]),
            "feature `mean_rgb` has 1000 values, expected 1024",
        ),
    ];
    for (id, record, problem) in cases {
        let bad = data.dir.join(format!("zz-{id}.tfrecord"));
        let fine = video_record("fine", &[1], vec![0.5; 1024], vec![0.0; 128]);
        std::fs::write(&bad, tfrecord_bytes(&[fine, record]).0).unwrap();
        let stderr = train_fails(
            "video-moe",
            &[good_video.to_str().unwrap(), bad.to_str().unwrap()],
            &data.dir.join(id),
        );
        let expected = format!("{}: record 1 (video \"{id}\"): {problem}", bad.display());
        assert!(stderr.contains(&expected), "expected `{expected}` in: {stderr}");
        assert!(!stderr.contains("loss is NaN"), "{stderr}");
    }
}

/// Issue 18: `--skip-corrupt` skips every kind of bad record (not only framing errors),
/// uses the good ones, and the summaries of train, eval, predict and inspect count what
/// was skipped per reason, each bad record once however many epochs read it.
#[test]
fn skip_corrupt_uses_the_good_records_and_counts_the_bad_per_reason() {
    let data = synth("skip");
    let streams = [("rgb", 16), ("audio", 8)];
    let payloads = vec![
        frame_record("good-0", &[1], &streams, 5),
        frame_record("no-audio", &[2], &[("rgb", 16)], 5),
        frame_record("short-rgb", &[2], &[("rgb", 15), ("audio", 8)], 5),
        frame_record("label-10", &[10], &streams, 5),
        frame_record("extra-depth", &[2], &[("rgb", 16), ("audio", 8), ("depth", 4)], 5),
        frame_record("good-5", &[3], &streams, 5),
        frame_record("crc-flipped", &[3], &streams, 5),
        frame_record("good-7", &[4], &streams, 5),
        frame_record("truncated", &[4], &streams, 5),
    ];
    let (mut bytes, offsets) = tfrecord_bytes(&payloads);
    bytes[offsets[6] + 12 + 3] ^= 0x10; // a payload byte of record 6: its CRC no longer matches
    bytes.truncate(offsets[8] + 30); // record 8 ends inside its payload: the file is abandoned there
    let mixed = data.dir.join("mixed.tfrecord");
    std::fs::write(&mixed, &bytes).unwrap();
    let expected = serde_json::json!({
        "missing_stream": 1, "wrong_size": 1, "label_out_of_range": 1, "extra_stream": 1, "crc": 1, "truncated": 1,
    });
    let check = |skipped: &serde_json::Value, what: &str| {
        assert_eq!(skipped["reasons"], expected, "{what}: {skipped}");
        assert_eq!(skipped["skipped_records"], 5, "{what}: {skipped}");
        assert_eq!(skipped["abandoned_files"], 1, "{what}: {skipped}");
    };

    // Training on the 200 validation videos plus the mixed file for 2 epochs: the 3 good
    // records are used (2 x 203 videos seen), the 6 bad ones counted once.
    let run = data.dir.join("run");
    let trained = train(
        &Data { dir: data.dir.clone(), train: data.validate.clone(), validate: data.validate.clone() },
        "small-average",
        &run,
        &[
            "--num-epochs",
            "2",
            "--skip-corrupt",
            "--train-data-pattern",
            &data.validate,
            mixed.to_str().unwrap(),
        ],
    );
    assert_eq!(trained["examples_seen"], 2 * 203, "{trained}");
    check(&trained["skipped"]["training"], "train");
    assert_eq!(trained["skipped"]["validation"]["skipped_records"], 0, "{trained}");
    // Without --skip-corrupt the same data stops at the first bad record.
    let stderr =
        train_fails("small-average", &[&data.validate, mixed.to_str().unwrap()], &data.dir.join("strict"));
    assert!(stderr.contains(&format!("{}: record 1 (video \"no-audio\")", mixed.display())), "{stderr}");

    let checkpoints = run.join("checkpoints");
    let both = [data.validate.as_str(), mixed.to_str().unwrap()];
    let mut args = vec![
        "eval",
        "--checkpoint",
        checkpoints.to_str().unwrap(),
        "--json",
        "--skip-corrupt",
        "--eval-data-pattern",
    ];
    args.extend_from_slice(&both);
    let eval = ok(loupe(&args));
    assert_eq!(eval["videos"], 203, "{eval}");
    check(&eval["skipped"], "eval");

    let csv = data.dir.join("predictions.csv");
    let mut args = vec![
        "predict",
        "--checkpoint",
        checkpoints.to_str().unwrap(),
        "--output-file",
        csv.to_str().unwrap(),
    ];
    args.extend_from_slice(&["--skip-corrupt", "--input-data-pattern"]);
    args.extend_from_slice(&both);
    let out = loupe(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 203);
    assert!(rows.contains("\ngood-5,") && !rows.contains("no-audio"), "{rows}");
    assert!(
        stderr.contains(
            "input data: skipped 5 records, abandoned 1 file (crc 1, extra_stream 1, label_out_of_range 1"
        ),
        "{stderr}"
    );
    // The end-to-end rate counts the videos written.
    let rate = stderr
        .lines()
        .find(|l| l.starts_with("predicted 203 videos in "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let per_second: f64 = rate.rsplit(": ").next().unwrap().trim_end_matches(" videos/s").parse().unwrap();
    assert!(per_second > 0.0, "{rate}");

    let out = loupe(&["inspect", mixed.to_str().unwrap(), "--skip-corrupt", "--num-classes", "10", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["videos"], 3, "{stats}");
    check(&stats["skipped"], "inspect");
}
