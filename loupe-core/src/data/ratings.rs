//! The rated segments of one record (the 2019 temporal localisation task): the four
//! `segment_*` context keys, [`RatedSegment`] and the parser that checks and zips them.
//!
//! A validate (or test) record of the 2019 release rates some 5-second segments of its
//! video for some classes: four parallel lists, one entry per rated (segment, class)
//! pair. Start and end are frame indices (one frame per second); score 1 means the
//! class is visible in the segment, 0 that a rater said it is not. Records without the
//! keys (the training split, the test split) simply have no rated segment.
//!
//! A leaf of the data layer: the decoders ([`super::video`], `wire`) and the
//! segment tools ([`super::segments`]) import it; it imports only the errors and the
//! protobuf messages.

use super::error::{DataError, RecordLocation, Result, SegmentProblem, VideoContext};
use super::proto::feature::Kind;
use super::proto::Feature;

/// Context key of the rated classes (int64 list).
pub const SEGMENT_LABELS_KEY: &str = "segment_labels";
/// Context key of the segments' first frames (int64 list).
pub const SEGMENT_START_TIMES_KEY: &str = "segment_start_times";
/// Context key of the segments' ends, exclusive (int64 list).
pub const SEGMENT_END_TIMES_KEY: &str = "segment_end_times";
/// Context key of the ratings (float list: 1 positive, 0 negative).
pub const SEGMENT_SCORES_KEY: &str = "segment_scores";
/// The four keys, in the order `SegmentFeatures` holds them.
pub const SEGMENT_KEYS: [&str; 4] =
    [SEGMENT_LABELS_KEY, SEGMENT_START_TIMES_KEY, SEGMENT_END_TIMES_KEY, SEGMENT_SCORES_KEY];
/// Frames per segment in the 2019 data (5 seconds, one frame per second).
pub const SEGMENT_FRAMES: usize = 5;

/// One rated (segment, class) pair of a video.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RatedSegment {
    /// The class rated.
    pub label: u32,
    /// The segment's first frame (a multiple of 5 in the 2019 data).
    pub start: u32,
    /// One past the segment's last frame (`start + 5` in the 2019 data).
    pub end: u32,
    /// The rating: 1 positive, 0 negative.
    pub score: f32,
}

/// Scores are checked finite when read ([`SegmentProblem::Score`]), so equality is an
/// equivalence.
impl Eq for RatedSegment {}

impl RatedSegment {
    /// Whether raters saw the class in the segment (score above 0, as the official
    /// evaluation counts positives).
    pub fn is_positive(&self) -> bool {
        self.score > 0.0
    }
}

/// The four `segment_*` context features of a record, as found (`None`: key absent).
pub(crate) type SegmentFeatures<'a> = [Option<&'a Feature>; 4];

/// Checks and zips the segment lists of one record.
///
/// Absent keys count as empty lists. `stored_frames` is the video's length as stored
/// (before truncation to the decoder's window), so a rating past the reader's 300
/// frames is still a valid rating; `num_classes` bounds the labels when given.
pub(crate) fn rated_segments(
    features: SegmentFeatures<'_>,
    id: &str,
    stored_frames: usize,
    num_classes: Option<usize>,
    at: RecordLocation<'_>,
) -> Result<Vec<RatedSegment>> {
    if features.iter().all(Option::is_none) {
        return Ok(Vec::new());
    }
    let ctx = || VideoContext(Some(id.to_string()));
    let ints = |i: usize| -> Result<&[i64]> {
        match features[i].map(|f| &f.kind) {
            None => Ok(&[]),
            Some(Some(Kind::Int64List(l))) => Ok(&l.value),
            Some(other) => Err(wrong_type(at, ctx(), SEGMENT_KEYS[i], "int64_list", other.as_ref())),
        }
    };
    let labels = ints(0)?;
    let starts = ints(1)?;
    let ends = ints(2)?;
    let scores: &[f32] = match features[3].map(|f| &f.kind) {
        None => &[],
        Some(Some(Kind::FloatList(l))) => &l.value,
        Some(other) => return Err(wrong_type(at, ctx(), SEGMENT_SCORES_KEY, "float_list", other.as_ref())),
    };
    let lengths = [labels.len(), starts.len(), ends.len(), scores.len()];
    if lengths.iter().any(|&n| n != labels.len()) {
        return Err(DataError::SegmentListLengths {
            path: at.path.to_path_buf(),
            record: at.record,
            video: ctx(),
            lengths: SEGMENT_KEYS
                .iter()
                .zip(lengths)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let invalid = |segment: usize, problem: SegmentProblem| DataError::InvalidSegment {
        path: at.path.to_path_buf(),
        record: at.record,
        video: ctx(),
        segment,
        problem,
    };
    let mut segments = Vec::with_capacity(labels.len());
    for (i, (((&label, &start), &end), &score)) in labels.iter().zip(starts).zip(ends).zip(scores).enumerate()
    {
        let class = u32::try_from(label).ok().filter(|&l| num_classes.is_none_or(|n| (l as usize) < n));
        let class =
            class.ok_or_else(|| invalid(i, SegmentProblem::LabelOutOfRange { label, num_classes }))?;
        let first = u32::try_from(start).ok().filter(|&s| (s as usize) < stored_frames);
        let first = first
            .ok_or_else(|| invalid(i, SegmentProblem::StartPastEnd { start, num_frames: stored_frames }))?;
        let last = u32::try_from(end).ok().filter(|&e| e > first);
        let last = last.ok_or_else(|| invalid(i, SegmentProblem::EndNotAfterStart { start, end }))?;
        if !(0.0..=1.0).contains(&score) {
            return Err(invalid(i, SegmentProblem::Score { score }));
        }
        segments.push(RatedSegment { label: class, start: first, end: last, score });
    }
    Ok(segments)
}

fn wrong_type(
    at: RecordLocation<'_>,
    video: VideoContext,
    key: &str,
    expected: &'static str,
    found: Option<&Kind>,
) -> DataError {
    DataError::WrongFeatureType {
        path: at.path.to_path_buf(),
        record: at.record,
        video,
        feature: key.into(),
        expected,
        found: found.map_or("no value", Kind::type_name),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn at() -> RecordLocation<'static> {
        RecordLocation { path: Path::new("f.tfrecord"), record: 3 }
    }

    fn lists(labels: Vec<i64>, starts: Vec<i64>, ends: Vec<i64>, scores: Vec<f32>) -> [Feature; 4] {
        [Feature::int64s(labels), Feature::int64s(starts), Feature::int64s(ends), Feature::floats(scores)]
    }

    fn check(f: &[Feature; 4], frames: usize, classes: Option<usize>) -> Result<Vec<RatedSegment>> {
        rated_segments([Some(&f[0]), Some(&f[1]), Some(&f[2]), Some(&f[3])], "vid", frames, classes, at())
    }

    #[test]
    fn parallel_lists_zip_into_segments() {
        let f = lists(vec![7, 9], vec![0, 5], vec![5, 10], vec![1.0, 0.0]);
        let s = check(&f, 8, Some(10)).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].label, s[1].start, s[1].end), (9, 5, 10));
        assert!(s[0].is_positive() && !s[1].is_positive());
    }

    #[test]
    fn absent_keys_mean_no_segments_but_a_partial_set_is_an_error() {
        assert!(rated_segments([None; 4], "vid", 8, None, at()).unwrap().is_empty());
        let labels = Feature::int64s(vec![1]);
        let e = rated_segments([Some(&labels), None, None, None], "vid", 8, None, at()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("f.tfrecord: record 3 (video \"vid\")"), "{text}");
        assert!(text.contains("segment_labels 1, segment_start_times 0"), "{text}");
    }

    #[test]
    fn invalid_entries_name_the_segment_and_the_problem() {
        let past = lists(vec![1, 1], vec![0, 10], vec![5, 15], vec![1.0, 1.0]);
        let text = check(&past, 10, None).unwrap_err().to_string();
        assert!(
            text.contains("rated segment 1") && text.contains("start 10") && text.contains("10 frames"),
            "{text}"
        );
        let class = lists(vec![3862], vec![0], vec![5], vec![1.0]);
        let text = check(&class, 10, Some(3862)).unwrap_err().to_string();
        assert!(text.contains("class 3862") && text.contains("3862 classes"), "{text}");
        let score = lists(vec![1], vec![0], vec![5], vec![f32::NAN]);
        assert!(check(&score, 10, None).unwrap_err().to_string().contains("score NaN"));
        let end = lists(vec![1], vec![5], vec![5], vec![1.0]);
        assert!(check(&end, 10, None).unwrap_err().to_string().contains("end 5"));
        assert!(check(&end, 10, None).unwrap_err().is_record_local());
    }
}
