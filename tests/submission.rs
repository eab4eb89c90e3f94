//! Kaggle submission files: write, read back, and clear errors on malformed input.

mod common;

use loupe::submission::{read_submission, write_submission, SubmissionError, SubmissionRow};

/// `text` written to `submission.csv` in a scratch directory, which lives as long as the
/// returned guard.
fn scratch(name: &str, text: &str) -> (common::ScratchDir, std::path::PathBuf) {
    let dir = common::scratch_dir(&format!("submission-{name}"));
    let path = dir.join("submission.csv");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn written_submissions_read_back() {
    let rows = vec![
        SubmissionRow { id: "abc".into(), predictions: vec![(3, 0.9), (1, 0.25)] },
        SubmissionRow { id: "0x12".into(), predictions: vec![] },
    ];
    let mut out = Vec::new();
    write_submission(&mut out, rows.clone(), None).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, "VideoId,LabelConfidencePairs\nabc,3 0.900000 1 0.250000\n0x12,\n");
    let (_dir, path) = scratch("ok", &text);
    assert_eq!(read_submission(&path, 4).unwrap(), rows);

    let mut named = Vec::new();
    let names = |l: u32| format!("label{l}");
    write_submission(&mut named, rows.clone(), Some(&names)).unwrap();
    let named = String::from_utf8(named).unwrap();
    assert!(named.contains("abc,3 0.900000 1 0.250000,label3 | label1"), "{named}");
    let (_dir, path) = scratch("named", &named);
    assert_eq!(read_submission(&path, 4).unwrap(), rows);
}

#[test]
fn malformed_submissions_are_errors_naming_the_line() {
    let cases = [
        ("header", "Id,Pairs\n", "expected the header"),
        ("odd", "VideoId,LabelConfidencePairs\na,1 0.5\nb,1\n", ":3: 1 values"),
        ("label", "VideoId,LabelConfidencePairs\na,x 0.5\n", ":2: label `x`"),
        ("range", "VideoId,LabelConfidencePairs\na,9 0.5\n", "label 9 is out of range"),
        ("score", "VideoId,LabelConfidencePairs\na,1 zz\n", "score `zz` of label 1"),
        ("dup", "VideoId,LabelConfidencePairs\na,1 0.5\na,2 0.5\n", ":3: video `a` appears twice"),
        ("columns", "VideoId,LabelConfidencePairs\nlonely\n", "one column"),
        ("empty", "", "empty file"),
    ];
    for (name, text, expected) in cases {
        let (_dir, path) = scratch(name, text);
        let err = read_submission(&path, 5).unwrap_err();
        assert!(err.to_string().contains(expected), "{name}: {err}");
        assert!(err.to_string().contains(path.to_str().unwrap()), "{name}: names the file: {err}");
    }
    let dir = common::scratch_dir("submission-missing");
    let missing = dir.join("no-such-file.csv");
    assert!(matches!(read_submission(&missing, 5), Err(SubmissionError::Io { .. })));
}
