//! The segment commands on the TensorFlow-written 2019 fixtures
//! (tests/fixtures/yt8m-2019-segments): `loupe inspect` reports the ratings, `loupe
//! score --segments` gives MAP@N equal to the official evaluation's values in
//! `metrics.json` (and the documented behaviour for extra and missing class rows).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/yt8m-2019-segments");

fn truth_pattern() -> String {
    format!("{FIXTURES}/validate/validate*.tfrecord")
}

fn metrics() -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/metrics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn score(submission: &Path, top_n: u64) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["score", "--segments", "--json", "--submission"])
        .arg(submission)
        .args(["--truth", &truth_pattern(), "--top-n", &top_n.to_string()])
        .output()
        .unwrap()
}

fn score_json(submission: &Path, top_n: u64) -> Value {
    let out = score(submission, top_n);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts `found` (loupe's JSON) equals `expected` (`{map, per_class_ap}` of
/// metrics.json) to 1e-6, class by class.
fn assert_matches(found: &Value, expected: &Value, what: &str) {
    let map = found["map"].as_f64().unwrap();
    let want = expected["map"].as_f64().unwrap();
    assert!((map - want).abs() < 1e-6, "{what}: MAP {map}, official {want}");
    let per_class = found["per_class"].as_array().unwrap();
    let official = expected["per_class_ap"].as_object().unwrap();
    assert_eq!(per_class.len(), official.len(), "{what}: classes averaged");
    for entry in per_class {
        let class = entry["class"].as_u64().unwrap().to_string();
        let want = official[&class].as_f64().unwrap();
        let ap = entry["ap"].as_f64().unwrap();
        assert!((ap - want).abs() < 1e-6, "{what}: class {class} AP {ap}, official {want}");
    }
}

#[test]
fn the_sample_submission_scores_the_official_values() {
    let m = metrics();
    let by_top_n = &m["submissions"]["submission.csv"]["by_top_n"];
    for top_n in [0, 5] {
        let found = score_json(&PathBuf::from(FIXTURES).join("submission.csv"), top_n);
        assert_matches(
            &found,
            &by_top_n[top_n.to_string()]["official"],
            &format!("submission.csv top_n {top_n}"),
        );
        assert_eq!(found["top_n"], top_n);
        assert_eq!(found["classes_without_row"], serde_json::json!([]));
    }
}

#[test]
fn a_missing_class_row_is_left_out_of_the_mean_and_reported() {
    let m = metrics();
    let by_top_n = &m["submissions"]["submission_missing_class.csv"]["by_top_n"];
    let path = PathBuf::from(FIXTURES).join("submission_missing_class.csv");
    for top_n in [0, 5] {
        let found = score_json(&path, top_n);
        assert_matches(
            &found,
            &by_top_n[top_n.to_string()]["official"],
            &format!("missing class top_n {top_n}"),
        );
        assert_eq!(found["classes_without_row"], serde_json::json!([1831]));
    }
    let out = score(&path, 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no row are not averaged: 1831"));
}

#[test]
fn rows_of_classes_without_positives_are_skipped_where_google_raises() {
    // Google's script raises KeyError here; metrics.json records the value with those
    // classes skipped (the "independent" implementation).
    let m = metrics();
    let entry = &m["submissions"]["submission_extra_classes.csv"]["by_top_n"];
    assert!(entry["0"]["official"]["error"].as_str().unwrap().starts_with("KeyError"));
    for top_n in [0, 5] {
        let expected = &entry[top_n.to_string()]["independent"];
        let found = score_json(&PathBuf::from(FIXTURES).join("submission_extra_classes.csv"), top_n);
        assert_matches(&found, expected, &format!("extra classes top_n {top_n}"));
        assert_eq!(found["skipped_without_positives"], expected["classes_skipped_no_positives"]);
    }
}

#[test]
fn the_text_output_names_n_and_the_class_count() {
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args([
            "score",
            "--segments",
            "--submission",
            &format!("{FIXTURES}/submission.csv"),
            "--truth",
            &truth_pattern(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Default N is Kaggle's 100000, more than any row holds: the same as N = 0.
    let want =
        metrics()["submissions"]["submission.csv"]["by_top_n"]["0"]["official"]["map"].as_f64().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("MAP@100000 {want:.6}  (8 classes averaged)")
    );
}

#[test]
fn bad_submissions_and_truth_without_ratings_fail_clearly() {
    let dir = common::scratch_dir("score-segments");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "Class,Segments\n74,d1pg:10 LwD3\n").unwrap();
    let out = score(&bad, 0);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.csv:2: expected `videoid:start`") && stderr.contains("`LwD3`"), "{stderr}");

    // The test split has no ratings: nothing to score against.
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["score", "--segments", "--submission", &format!("{FIXTURES}/submission.csv")])
        .args(["--truth", &format!("{FIXTURES}/test/test00.tfrecord")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no rated segment"));

    // A segment submission scored as a Kaggle one says what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["score", "--submission", &format!("{FIXTURES}/submission.csv"), "--truth", &truth_pattern()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a segment submission: score it with --segments"));
}

#[test]
fn inspect_reports_the_ratings() {
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["inspect", "--json", &truth_pattern()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gt = &metrics()["ground_truth"];
    let positives: u64 =
        gt["positives_per_class"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(json["segments"]["rated_pairs"], gt["rated_pairs"]);
    assert_eq!(json["segments"]["positive_pairs"], positives);
    // 20 videos, two without ratings (no keys; empty lists); 9 classes incl. 1454.
    assert_eq!(json["segments"]["videos_rated"], 18);
    assert_eq!(json["segments"]["rated_classes"], 9);

    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["inspect", "--per-video", &format!("{FIXTURES}/validate/validate00.tfrecord")])
        .output()
        .unwrap();
    let first: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "FvG5");
    assert_eq!(
        first["segments"],
        serde_json::json!([
            {"label": 900, "start": 10, "end": 15, "score": 1.0},
            {"label": 900, "start": 20, "end": 25, "score": 1.0}
        ])
    );
}

/// A checkpoint of `avg-logistic` (1152 features, 3862 classes: the fixtures' layout)
/// after two training steps on the validate fixtures, and the whitelist file.
fn checkpoint_and_classes(dir: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["train", "--model", "avg-logistic", "--quiet", "--max-steps", "2", "--batch-size", "4"])
        .args(["--train-data-pattern", &truth_pattern(), "--train-dir"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/truth.json")).unwrap()).unwrap();
    let mut csv = String::from("Index\n");
    for class in truth["segment_label_ids"].as_array().unwrap() {
        csv.push_str(&format!("{class}\n"));
    }
    let classes = dir.join("segment_label_ids.csv");
    std::fs::write(&classes, csv).unwrap();
    (dir.join("run/checkpoints"), classes)
}

/// `(class, [(video, start)])` rows of a segment submission.
fn rows(text: &str) -> Vec<(u32, Vec<(String, u32)>)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Class,Segments"));
    lines
        .map(|line| {
            let (class, entries) = line.split_once(',').unwrap();
            let entries = entries
                .split(' ')
                .filter(|e| !e.is_empty())
                .map(|e| {
                    let (video, start) = e.rsplit_once(':').unwrap();
                    (video.to_string(), start.parse().unwrap())
                })
                .collect();
            (class.parse().unwrap(), entries)
        })
        .collect()
}

#[test]
fn predict_segments_ranks_every_segment_by_the_models_score() {
    use loupe::data::{DataFormat, DecodedVideo, VideoDecoder, VideoReader};
    use loupe::dfdx::prelude::Cpu;
    use loupe::infer::Predictor;
    use loupe::zoo::AveragePoolingLogisticModel;

    let dir = common::scratch_dir("predict-segments");
    let (checkpoint, classes) = checkpoint_and_classes(&dir);
    let submission = dir.join("segments.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["predict", "--segments", "--segment-classes"])
        .arg(&classes)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .args([
            "--input-data-pattern",
            &truth_pattern(),
            "--batch-size",
            "7",
            "--segment-max-pred",
            "200",
            "--output-file",
        ])
        .arg(&submission)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = rows(&std::fs::read_to_string(&submission).unwrap());
    // One row per whitelisted class, ascending; every candidate segment once in each
    // (161 segments: 0, 5, ... below min(frames, 300) of the 20 videos).
    assert_eq!(written.len(), 1000);
    assert!(written.windows(2).all(|w| w[0].0 < w[1].0));
    let candidates = metrics()["score_model"]["candidate_segments"].as_u64().unwrap() as usize;
    for (_, entries) in &written {
        let mut distinct = entries.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!((entries.len(), distinct.len()), (candidates, candidates));
    }

    // The order is the model's: recompute each segment's scores from its frames,
    // repeated in order to the model's 300 rows.
    type M = AveragePoolingLogisticModel<f32, Cpu>;
    let (predictor, _) = Predictor::<M, Cpu>::load(loupe::device::cpu_seeded(0), &checkpoint).unwrap();
    let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel);
    let mut scores = std::collections::HashMap::new();
    for path in loupe::data::expand_glob(&truth_pattern()).unwrap() {
        let mut reader = VideoReader::open(&path, &decoder).unwrap();
        while let Some(video) = reader.next_decoded() {
            let DecodedVideo::Frames(video) = video.unwrap() else { unreachable!() };
            for start in (0..video.num_frames).step_by(5) {
                let frames: Vec<usize> = (start..(start + 5).min(video.num_frames)).collect();
                let input: Vec<f32> = (0..300)
                    .flat_map(|r| {
                        video.frame(frames[r % frames.len()]).iter().map(|&b| loupe::data::dequantize(b))
                    })
                    .collect();
                scores.insert((video.id.clone(), start as u32), predictor.predict(&input, &[300]).unwrap());
            }
        }
    }
    assert_eq!(scores.len(), candidates);
    for (class, entries) in written.iter().step_by(97) {
        let listed: Vec<f32> = entries.iter().map(|e| scores[e][*class as usize]).collect();
        assert!(
            listed.windows(2).all(|w| w[0] >= w[1]),
            "class {class}: not by decreasing score: {listed:?}"
        );
    }

    // --segment-max-pred keeps each class's best, and the file scores end to end.
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["predict", "--segments", "--segment-classes"])
        .arg(&classes)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .args(["--input-data-pattern", &truth_pattern(), "--segment-max-pred", "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let top = rows(&String::from_utf8_lossy(&out.stdout));
    for ((class, best), (_, all)) in top.iter().zip(&written) {
        assert_eq!(best[..], all[..10], "class {class}");
    }
    let top_file = dir.join("top10.csv");
    std::fs::write(&top_file, &out.stdout).unwrap();
    let map = score_json(&top_file, 0)["map"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&map));
}

#[test]
fn predict_segments_rejects_a_whitelist_beyond_the_model() {
    let dir = common::scratch_dir("predict-segments-bad");
    let (checkpoint, _) = checkpoint_and_classes(&dir);
    let classes = dir.join("bad.csv");
    std::fs::write(&classes, "Index\n3\n3862\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["predict", "--segments", "--segment-classes"])
        .arg(&classes)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .args(["--input-data-pattern", &truth_pattern()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("segment class 3862 is not among the model's 3862 classes"), "{stderr}");
    std::fs::write(&classes, "Index\n3\nseven\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["predict", "--segments", "--segment-classes"])
        .arg(&classes)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .args(["--input-data-pattern", &truth_pattern()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("bad.csv: line 3: expected a class index, found `seven`"));
}

#[test]
fn fine_tuning_on_the_rated_segments_raises_their_map() {
    let dir = common::scratch_dir("train-segments");
    let (checkpoint, classes) = checkpoint_and_classes(&dir);
    // Trained and evaluated on the same rated segments: fitting the targets with the
    // unrated classes masked must rank those segments better than the video model did.
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["train", "--segment-labels", "--init-from"])
        .arg(&checkpoint)
        .args(["--train-data-pattern", &truth_pattern(), "--eval-data-pattern", &truth_pattern()])
        .args([
            "--num-epochs",
            "15",
            "--batch-size",
            "16",
            "--base-learning-rate",
            "0.01",
            "--quiet",
            "--json",
            "--train-dir",
        ])
        .arg(dir.join("tuned"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["model"], "avg-logistic");
    // One example per distinct rated (video, start), all inside the 300-frame window.
    let distinct: usize = {
        let truth: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/truth.json")).unwrap())
                .unwrap();
        let mut starts = std::collections::BTreeSet::new();
        for (name, file) in truth["files"].as_object().unwrap() {
            if !name.starts_with("validate/") {
                continue;
            }
            for record in file["records"].as_array().unwrap() {
                for s in record["segments"].as_array().unwrap() {
                    starts.insert((record["id"].as_str().unwrap().to_string(), s[1].as_u64().unwrap()));
                }
            }
        }
        starts.len()
    };
    assert_eq!(summary["segments"], distinct);
    assert_eq!(summary["outside_window"], 0);
    let before = summary["initial_segment_map"].as_f64().unwrap();
    let after = summary["segment_map"].as_f64().unwrap();
    assert!(after > before + 0.05, "segment MAP {before} -> {after}");

    // The fine-tuned checkpoint predicts segments like any other, and scores as reported.
    let submission = dir.join("tuned.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["predict", "--segments", "--segment-classes"])
        .arg(&classes)
        .arg("--checkpoint")
        .arg(dir.join("tuned/checkpoints"))
        .args(["--input-data-pattern", &truth_pattern(), "--output-file"])
        .arg(&submission)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scored = score_json(&submission, 0)["map"].as_f64().unwrap();
    assert!((scored - after).abs() < 1e-9, "predict + score {scored} vs training's evaluation {after}");
}

#[test]
fn on_synthetic_rated_segments_fine_tuning_beats_the_video_model_on_held_out_videos() {
    let dir = common::scratch_dir("synth-segments");
    let loupe = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_loupe")).current_dir(&dir).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    std::fs::create_dir_all(&dir).unwrap();
    loupe(&[
        "synth",
        "--out",
        "data",
        "--classes",
        "10",
        "--train-videos",
        "600",
        "--validate-videos",
        "300",
        "--validate-shards",
        "2",
        "--rgb-size",
        "16",
        "--audio-size",
        "8",
        "--min-frames",
        "10",
        "--max-frames",
        "30",
        "--no-video-level",
        "--rated-segments",
    ]);
    loupe(&[
        "train",
        "--model",
        "small-average",
        "--train-data-pattern",
        "data/frame/train*",
        "--train-dir",
        "video",
        "--num-epochs",
        "5",
        "--batch-size",
        "32",
        "--base-learning-rate",
        "0.01",
        "--quiet",
    ]);
    let summary: Value = serde_json::from_slice(&loupe(&[
        "train",
        "--segment-labels",
        "--init-from",
        "video/checkpoints",
        "--train-data-pattern",
        "data/frame/validate0000.tfrecord",
        "--eval-data-pattern",
        "data/frame/validate0001.tfrecord",
        "--train-dir",
        "segments",
        "--num-epochs",
        "3",
        "--batch-size",
        "32",
        "--base-learning-rate",
        "0.01",
        "--quiet",
        "--json",
    ]))
    .unwrap();
    let before = summary["initial_segment_map"].as_f64().unwrap();
    let after = summary["segment_map"].as_f64().unwrap();
    assert!(after > before + 0.02, "held-out segment MAP {before} -> {after}");
}
