//! `loupe score` on files written by TensorFlow: exact metrics for a constructed
//! submission, and errors for bad submissions.

use std::process::Command;

mod common;

const TRUTH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tf-written/video/train000*.tfrecord");

fn truth_labels() -> Vec<(String, Vec<u32>)> {
    let files = loupe::data::expand_glob(TRUTH).unwrap();
    loupe::data::read_labels(&files, false).unwrap().0
}

/// `text` written to `submission.csv` in a scratch directory, which lives as long as the
/// returned guard.
fn write(name: &str, text: &str) -> (common::ScratchDir, std::path::PathBuf) {
    let dir = common::scratch_dir(&format!("score-{name}"));
    let path = dir.join("submission.csv");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn score(submission: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["score", "--json", "--classes", "3862", "--submission"])
        .arg(submission)
        .args(["--truth", TRUTH])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_submission_of_the_true_labels_scores_what_the_definition_says() {
    let truth = truth_labels();
    assert_eq!(truth.len(), 24);
    let mut csv = String::from("VideoId,LabelConfidencePairs\n");
    for (id, labels) in &truth {
        let pairs: Vec<String> =
            labels.iter().enumerate().map(|(i, l)| format!("{l} {:.4}", 0.99 - 0.01 * i as f64)).collect();
        csv.push_str(&format!("{id},{}\n", pairs.join(" ")));
    }
    let out = score(&write("perfect", &csv).1, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every pooled pair is positive, so precision is 1 everywhere: GAP is the share of
    // positives that fit in a top 20.
    let positives: usize = truth.iter().map(|(_, l)| l.len()).sum();
    let in_top: usize = truth.iter().map(|(_, l)| l.len().min(20)).sum();
    assert!((json["gap"].as_f64().unwrap() - in_top as f64 / positives as f64).abs() < 1e-12, "{json}");
    let labelled = truth.iter().filter(|(_, l)| !l.is_empty()).count();
    assert!((json["hit_at_1"].as_f64().unwrap() - labelled as f64 / 24.0).abs() < 1e-12);
    assert!((json["perr"].as_f64().unwrap() - labelled as f64 / 24.0).abs() < 1e-12);
    assert_eq!(json["map"].as_f64().unwrap(), 1.0, "all classes' positives ranked first");
    assert_eq!(json["videos"], 24);
}

#[test]
fn bad_submissions_fail_with_a_clear_message() {
    let truth = truth_labels();
    let all_rows: String = truth.iter().map(|(id, _)| format!("{id},1 0.5\n")).collect();
    let cases = [
        (
            "unknown",
            format!("VideoId,LabelConfidencePairs\n{all_rows}nosuchvideo,1 0.5\n"),
            "`nosuchvideo`, which is not in the ground truth",
        ),
        (
            "missing",
            "VideoId,LabelConfidencePairs\n".to_string()
                + &all_rows.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>(),
            "1 of 24 ground-truth videos have no row",
        ),
        ("malformed", format!("VideoId,LabelConfidencePairs\n{}x,1\n", all_rows), "1 values"),
        ("range", "VideoId,LabelConfidencePairs\na,5000 0.5\n".to_string(), "label 5000 is out of range"),
    ];
    for (name, text, expected) in cases {
        let out = score(&write(name, &text).1, &[]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    // --allow-missing scores the missing video as empty predictions.
    let text = "VideoId,LabelConfidencePairs\n".to_string()
        + &all_rows.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>();
    let out = score(&write("allowed", &text).1, &["--allow-missing"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = Command::new(env!("CARGO_BIN_EXE_loupe"))
        .args(["score", "--submission", "x.csv", "--truth", "/nonexistent/dir/*.tfrecord"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/*.tfrecord"));
}
