//! The `loupe` binary: `synth` then `inspect`, and failures with their messages and
//! exit codes.

mod data_common;

use std::process::{Command, Output};

use data_common::scratch_dir;
use serde_json::Value;

fn loupe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loupe")).args(args).output().expect("the loupe binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fixture(rel: &str) -> String {
    format!("{}/tests/fixtures/tf-written/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn synth_then_inspect_agree_on_counts() {
    let dir = scratch_dir("cli-synth");
    let out_dir = dir.display().to_string();
    let synth = loupe(&[
        "synth",
        "--out",
        &out_dir,
        "--seed",
        "9",
        "--classes",
        "12",
        "--train-videos",
        "30",
        "--validate-videos",
        "10",
        "--shards",
        "3",
        "--min-frames",
        "3",
        "--max-frames",
        "7",
        "--rgb-size",
        "8",
        "--audio-size",
        "4",
        "--json",
    ]);
    assert!(synth.status.success(), "{}", stderr(&synth));
    let synth: Value = serde_json::from_slice(&synth.stdout).unwrap();
    assert_eq!(synth["summary"]["train_videos"], 30);

    let inspect = loupe(&["inspect", &format!("{out_dir}/frame/*.tfrecord"), "--json"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let stats: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(stats["format"], "frame-level");
    assert_eq!(stats["files"], 4);
    assert_eq!(stats["videos"], 40);
    assert_eq!(stats["streams"][0]["size"], 8);
    assert!(stats["frames"]["min"].as_u64().unwrap() >= 3 && stats["frames"]["max"].as_u64().unwrap() <= 7);
    assert!(stats["max_label"].as_u64().unwrap() < 12);
    let total_frames = stats["frames"]["mean"].as_f64().unwrap() * 40.0;
    assert!((total_frames - synth["summary"]["frames"].as_f64().unwrap()).abs() < 1e-6);

    let video = loupe(&["inspect", &format!("{out_dir}/video/train*"), "--json"]);
    let video: Value = serde_json::from_slice(&video.stdout).unwrap();
    assert_eq!(video["format"], "video-level");
    assert_eq!(video["videos"], 30);
}

#[test]
fn per_video_lines_carry_means() {
    let out = loupe(&["inspect", &fixture("frame/validate0000.tfrecord"), "--per-video"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[5]["id"], "vídeo-ünïcødé-视频-✓");
    assert_eq!(lines[3]["labels"], serde_json::json!([]));
    assert_eq!(lines[0]["frames"], 28);
    assert_eq!(lines[0]["mean_rgb"].as_array().unwrap().len(), 1024);
    assert_eq!(lines[0]["mean_audio"].as_array().unwrap().len(), 128);
}

#[test]
fn text_output_summarises_the_fixtures() {
    let out = loupe(&["inspect", &fixture("frame/*.tfrecord")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("videos: 34"), "{text}");
    assert!(text.contains("max 300"), "{text}");
}

#[test]
fn a_bad_file_fails_with_its_name() {
    let dir = scratch_dir("cli-bad");
    let path = dir.join("notes.tfrecord");
    std::fs::write(&path, "plain text, not records").unwrap();
    let out = loupe(&["inspect", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("notes.tfrecord") && err.contains("not a TFRecord file"), "{err}");
}

#[test]
fn a_truncated_file_names_the_record_and_can_be_skipped() {
    let dir = scratch_dir("cli-truncated");
    let bytes = std::fs::read(fixture("frame/train0000.tfrecord")).unwrap();
    let path = dir.join("cut.tfrecord");
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let out = loupe(&["inspect", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cut.tfrecord: record 7: truncated"), "{err}");

    let out = loupe(&["inspect", &path.display().to_string(), "--skip-corrupt", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["videos"], 7);
    assert_eq!(stats["skipped"]["abandoned_files"], 1);
}

#[test]
fn a_glob_matching_nothing_fails() {
    let dir = scratch_dir("cli-nothing");
    let pattern = format!("{}/*.tfrecord", dir.display());
    let out = loupe(&["inspect", &pattern]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("error: no file matches `{pattern}`")), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(loupe(&["inspect"]).status.code(), Some(2));
    assert_eq!(loupe(&["synth"]).status.code(), Some(2));
    assert_eq!(loupe(&["synth", "--out", "x", "--classes", "many"]).status.code(), Some(2));
    let dir = scratch_dir("cli-one-class");
    let out = loupe(&["synth", "--out", &dir.display().to_string(), "--classes", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 2 classes"));
}
