//! MAP@N of the 2019 segment task (temporal localisation), as Google's
//! `segment_eval_inference.py` defines it.
//!
//! The ground truth is every rated (segment, class) pair; `P_c` counts the positive
//! pairs of class `c`. For each class row of a submission: keep its first `N` entries
//! (`N = 0`: all), then drop the entries not rated for that class (they neither help nor
//! hurt, but they did use up their slots), and with `rel_k` the rating of the `k`-th
//! remaining entry, `AP_c = (1 / P_c) * sum_k rel_k * precision@k` (the denominator is
//! `P_c` even when `N < P_c`). MAP@N is the mean of `AP_c` over the classes that have a
//! row and at least one positive pair.
//!
//! Where Google's script fails or is silent, loupe decides: a class with a row but no
//! positive pair is skipped and listed (the script raises `KeyError`); a class with
//! positives but no row is not averaged (as the script) and is listed; one class row is
//! enough (the script needs two).

use std::collections::{BTreeMap, HashMap};

use super::average_precision;
use crate::data::RatedSegment;
use crate::segment_submission::SegmentRow;

/// The rated (segment, class) pairs of a data set.
#[derive(Debug, Clone, Default)]
pub struct SegmentTruth {
    /// video -> (start, class) -> positive.
    ratings: HashMap<String, HashMap<(u32, u32), bool>>,
}

impl SegmentTruth {
    /// No ratings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a video's ratings; a pair rated again keeps its last rating.
    pub fn add_video(&mut self, id: &str, segments: &[RatedSegment]) {
        if segments.is_empty() {
            return;
        }
        let video = self.ratings.entry(id.to_string()).or_default();
        for s in segments {
            video.insert((s.start, s.label), s.is_positive());
        }
    }

    /// The rating of `class` for the segment of `video` starting at `start`: `None`
    /// when that pair was not rated.
    pub fn rating(&self, video: &str, start: u32, class: u32) -> Option<bool> {
        self.ratings.get(video)?.get(&(start, class)).copied()
    }

    /// Rated pairs.
    pub fn rated_pairs(&self) -> usize {
        self.ratings.values().map(HashMap::len).sum()
    }

    /// Positive pairs per class (classes rated only negatively are absent).
    pub fn positives_per_class(&self) -> BTreeMap<u32, u64> {
        let mut counts = BTreeMap::new();
        for (&(_, class), &positive) in self.ratings.values().flatten() {
            if positive {
                *counts.entry(class).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// One class's average precision.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassAp {
    pub class: u32,
    /// `AP_c` over the row's first `N` entries.
    pub ap: f64,
    /// `P_c`, the class's positive pairs in the ground truth.
    pub positives: u64,
    /// Entries among the first `N` that are rated for the class.
    pub rated_entries: usize,
}

/// MAP@N of a segment submission, with what went into it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SegmentMetrics {
    /// Mean of the per-class APs.
    pub map: f64,
    /// `N`: entries per row that count (0: all).
    pub top_n: usize,
    /// The averaged classes, ascending.
    pub per_class: Vec<ClassAp>,
    /// Rows of classes without a positive pair (not averaged).
    pub skipped_without_positives: Vec<u32>,
    /// Classes with positive pairs but no row (not averaged).
    pub classes_without_row: Vec<u32>,
}

/// Why no MAP could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentMetricError {
    #[error(
        "none of the submission's {rows} class rows is for a class with positive ratings in the ground truth"
    )]
    NoScoredClass { rows: usize },
}

/// MAP@`top_n` of `rows` against `truth` (module docs).
///
/// ```
/// use loupe_core::data::RatedSegment;
/// use loupe_core::metrics::segments::{segment_map, SegmentTruth};
/// use loupe_core::segment_submission::{SegmentId, SegmentRow};
///
/// let mut truth = SegmentTruth::new();
/// let rate = |start, score| RatedSegment { label: 7, start, end: start + 5, score };
/// truth.add_video("v", &[rate(0, 0.0), rate(5, 1.0), rate(10, 1.0)]);
/// let at = |start| SegmentId { video: "v".into(), start };
/// // v:20 is not rated for class 7: dropped. Ranks: 5 (+), 0 (-), 10 (+).
/// let rows = [SegmentRow { class: 7, segments: vec![at(20), at(5), at(0), at(10)] }];
/// let m = segment_map(&truth, &rows, 0)?;
/// assert!((m.map - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
/// // Top 2 keeps v:20 and v:5 only.
/// assert!((segment_map(&truth, &rows, 2)?.map - 0.5).abs() < 1e-12);
/// # Ok::<(), loupe_core::metrics::segments::SegmentMetricError>(())
/// ```
pub fn segment_map(
    truth: &SegmentTruth,
    rows: &[SegmentRow],
    top_n: usize,
) -> Result<SegmentMetrics, SegmentMetricError> {
    let positives = truth.positives_per_class();
    let mut per_class = Vec::new();
    let mut skipped_without_positives = Vec::new();
    for row in rows {
        let Some(&p) = positives.get(&row.class) else {
            skipped_without_positives.push(row.class);
            continue;
        };
        let kept = if top_n == 0 { row.segments.len() } else { top_n.min(row.segments.len()) };
        let ranked: Vec<bool> =
            row.segments[..kept].iter().filter_map(|s| truth.rating(&s.video, s.start, row.class)).collect();
        per_class.push(ClassAp {
            class: row.class,
            ap: average_precision(ranked.iter().copied(), p),
            positives: p,
            rated_entries: ranked.len(),
        });
    }
    if per_class.is_empty() {
        return Err(SegmentMetricError::NoScoredClass { rows: rows.len() });
    }
    per_class.sort_by_key(|c| c.class);
    skipped_without_positives.sort_unstable();
    let classes_without_row =
        positives.keys().copied().filter(|c| !rows.iter().any(|r| r.class == *c)).collect();
    let map = per_class.iter().map(|c| c.ap).sum::<f64>() / per_class.len() as f64;
    Ok(SegmentMetrics { map, top_n, per_class, skipped_without_positives, classes_without_row })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment_submission::SegmentId;

    fn rate(label: u32, start: u32, score: f32) -> RatedSegment {
        RatedSegment { label, start, end: start + 5, score }
    }

    #[test]
    fn entries_rated_for_another_class_do_not_count() {
        let mut truth = SegmentTruth::new();
        truth.add_video("a", &[rate(1, 0, 1.0), rate(2, 5, 1.0)]);
        truth.add_video("b", &[rate(2, 0, 1.0)]);
        // a:5 is positive for class 2, not rated for class 1: dropped from class 1's row.
        let rows = [
            SegmentRow {
                class: 1,
                segments: vec![
                    SegmentId { video: "a".into(), start: 5 },
                    SegmentId { video: "a".into(), start: 0 },
                ],
            },
            SegmentRow { class: 2, segments: vec![SegmentId { video: "b".into(), start: 0 }] },
        ];
        let m = segment_map(&truth, &rows, 0).unwrap();
        assert_eq!(m.per_class[0], ClassAp { class: 1, ap: 1.0, positives: 1, rated_entries: 1 });
        // Class 2 found one of its two positives at rank 1.
        assert_eq!(m.per_class[1].ap, 0.5);
        assert_eq!(m.map, 0.75);
        assert!(m.classes_without_row.is_empty());
    }

    #[test]
    fn a_submission_without_scored_class_is_an_error() {
        let mut truth = SegmentTruth::new();
        truth.add_video("a", &[rate(1, 0, 0.0)]);
        let rows = [SegmentRow { class: 1, segments: vec![] }];
        assert_eq!(segment_map(&truth, &rows, 0), Err(SegmentMetricError::NoScoredClass { rows: 1 }));
    }
}
