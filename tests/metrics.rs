//! Competition metrics against `tests/reference/metrics.py`, which computes them the way
//! the official YouTube-8M evaluation code defines them.

mod common;

use common::Reference;
use loupe::metrics::{top_k, EvaluationMetrics};

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: loupe {a}, reference {b}");
}

#[test]
fn metrics_agree_with_the_official_definitions() {
    let reference = Reference::load("metrics");
    for name in ["small_k", "competition_k"] {
        let case = reference.case(name);
        let (videos, classes, k) = (case.dim("videos"), case.dim("classes"), case.dim("k"));
        let predictions = case.values_f32("predictions");
        let labels = case.values("labels");
        let mut dense = EvaluationMetrics::new(classes, k);
        let mut sparse = EvaluationMetrics::new(classes, k);
        for v in 0..videos {
            let scores = &predictions[v * classes..(v + 1) * classes];
            let truth: Vec<u32> =
                (0..classes).filter(|&c| labels[v * classes + c] == 1.0).map(|c| c as u32).collect();
            dense.add_video(scores, &truth);
            // A submission row holds only the top predictions; PERR needs up to |labels|.
            sparse.add_sparse_video(&top_k(scores, k.max(truth.len())), &truth);
        }
        for metrics in [&dense, &sparse] {
            let s = metrics.summary();
            assert_eq!(s.videos, videos);
            close(s.gap, case.values("gap")[0], &format!("{name} gap"));
            close(s.hit_at_1, case.values("hit_at_1")[0], &format!("{name} hit@1"));
            close(s.perr, case.values("perr")[0], &format!("{name} perr"));
            close(s.map, case.values("map")[0], &format!("{name} map"));
        }
    }
}

#[test]
fn gap_counts_positives_that_never_reach_the_top_k() {
    let mut m = EvaluationMetrics::new(4, 1);
    // Two labels, only one can be in a top-1: GAP is at most 1/2.
    m.add_video(&[0.9, 0.8, 0.1, 0.0], &[0, 1]);
    let s = m.summary();
    assert_eq!(s.gap, 0.5);
    assert_eq!(s.hit_at_1, 1.0);
    assert_eq!(s.perr, 1.0);
}

#[test]
fn a_video_without_labels_scores_zero_perr_and_still_counts() {
    let mut m = EvaluationMetrics::new(3, 20);
    m.add_video(&[0.9, 0.1, 0.2], &[0]);
    m.add_video(&[0.9, 0.1, 0.2], &[]);
    let s = m.summary();
    assert_eq!(s.videos, 2);
    assert_eq!(s.perr, 0.5);
    assert_eq!(s.hit_at_1, 0.5);
}

#[test]
fn ties_are_broken_by_class_index() {
    // All scores equal: the top-1 is class 0, which is the label.
    let mut m = EvaluationMetrics::new(3, 1);
    m.add_video(&[0.5, 0.5, 0.5], &[0]);
    assert_eq!(m.summary().hit_at_1, 1.0);
    let mut m = EvaluationMetrics::new(3, 1);
    m.add_video(&[0.5, 0.5, 0.5], &[2]);
    assert_eq!(m.summary().hit_at_1, 0.0);
    // Perfect ranking gives GAP 1, a reversed one less.
    let mut m = EvaluationMetrics::new(3, 3);
    m.add_video(&[0.9, 0.5, 0.1], &[0]);
    assert_eq!(m.summary().gap, 1.0);
    let mut m = EvaluationMetrics::new(3, 3);
    m.add_video(&[0.1, 0.5, 0.9], &[0]);
    assert!((m.summary().gap - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn classes_without_positives_are_skipped_in_map() {
    let mut m = EvaluationMetrics::new(3, 3);
    m.add_video(&[0.9, 0.5, 0.1], &[0]);
    // Classes 1 and 2 have no positives: mAP is class 0's AP alone.
    assert_eq!(m.summary().map, 1.0);
}
