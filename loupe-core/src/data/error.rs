//! The one error type of the data layer, and [`RecordLocation`] (a file and a record
//! index), which the decoders take to name a record in their errors.
//!
//! Every variant that concerns a file names the file and, where it concerns one record,
//! the record's index (0-based, in file order), so that a corrupt shard out of thousands
//! can be found and inspected. Underlying causes (I/O, protobuf) are kept as `source()`
//! rather than repeated in the message, so a caller printing the cause chain sees each
//! fact once.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a record came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct RecordLocation<'a> {
    /// The file (or `<stream>`).
    pub path: &'a Path,
    /// The record's 0-based index in the file.
    pub record: u64,
}

/// Which checksummed part of a TFRecord record a problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPart {
    /// The 8-byte little-endian length and its masked CRC-32C.
    Length,
    /// The payload and its masked CRC-32C.
    Payload,
}

impl fmt::Display for RecordPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordPart::Length => "length header",
            RecordPart::Payload => "payload",
        })
    }
}

/// Errors of reading, decoding, writing and batching YouTube-8M data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O operation on `path` failed.
    #[error("{path}: I/O error while {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The file ended inside a record.
    #[error("{path}: record {record}: truncated {part}: expected {expected} bytes, found {found}")]
    Truncated { path: PathBuf, record: u64, part: RecordPart, expected: u64, found: u64 },

    /// A stored checksum does not match the bytes it protects.
    #[error(
        "{path}: record {record}: CRC-32C mismatch in the {part}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    CrcMismatch { path: PathBuf, record: u64, part: RecordPart, stored: u32, computed: u32 },

    /// The first record's header is not a TFRecord header: the file is not TFRecord
    /// (or its first length header is corrupt, which cannot be told apart).
    #[error("{path}: not a TFRecord file: record 0 {reason}")]
    NotTfRecord { path: PathBuf, reason: String },

    /// A record declares a length above the reader's limit.
    #[error("{path}: record {record}: declared length {length} exceeds the limit of {limit} bytes")]
    RecordTooLarge { path: PathBuf, record: u64, length: u64, limit: u64 },

    /// A payload is not a valid protobuf message of the expected type.
    #[error("{path}: record {record}: payload is not a valid tf.train.{message}")]
    Decode {
        path: PathBuf,
        record: u64,
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// A required feature (or the video id) is absent.
    #[error("{path}: record {record}{video}: missing feature `{feature}` (expected {expected})")]
    MissingFeature { path: PathBuf, record: u64, video: VideoContext, feature: String, expected: String },

    /// A feature holds a different list type than expected.
    #[error("{path}: record {record}{video}: feature `{feature}` has the wrong type: expected {expected}, found {found}")]
    WrongFeatureType {
        path: PathBuf,
        record: u64,
        video: VideoContext,
        feature: String,
        expected: &'static str,
        found: &'static str,
    },

    /// A record holds a feature stream the decoder was not told about, while it reads
    /// the streams detected from the first file ([`crate::data::VideoDecoder::with_exact_streams`]):
    /// this file's layout differs from that one's.
    #[error(
        "{path}: record {record}{video}: unexpected feature stream `{feature}`: expected only {expected}"
    )]
    ExtraFeature { path: PathBuf, record: u64, video: VideoContext, feature: String, expected: String },

    /// A float feature holds NaN or an infinity.
    #[error("{path}: record {record}{video}: feature `{feature}` value {index} is {value}, expected a finite number")]
    NonFinite { path: PathBuf, record: u64, video: VideoContext, feature: String, index: usize, value: f32 },

    /// A frame of a frame-level feature has a byte length other than the feature size.
    #[error("{path}: record {record}{video}: feature `{feature}` frame {frame} has {found} bytes, expected {expected}")]
    FrameSize {
        path: PathBuf,
        record: u64,
        video: VideoContext,
        feature: String,
        frame: usize,
        expected: usize,
        found: usize,
    },

    /// A feature holds the wrong number of values (video-level), or feature lists
    /// disagree on the number of frames (frame-level).
    #[error("{path}: record {record}{video}: feature `{feature}` has {found} {unit}, expected {expected}")]
    FeatureLength {
        path: PathBuf,
        record: u64,
        video: VideoContext,
        feature: String,
        unit: &'static str,
        expected: usize,
        found: usize,
    },

    /// A frame-level video holds no frame (nothing could be sampled from it).
    #[error("{path}: record {record}{video}: no frames (a frame-level video needs at least one)")]
    NoFrames { path: PathBuf, record: u64, video: VideoContext },

    /// A label is negative, not below the number of classes, or (without a class
    /// count) above `u32::MAX`.
    #[error("{path}: record {record}{video}: label {label} is out of range: {}", label_range(*num_classes))]
    LabelOutOfRange {
        path: PathBuf,
        record: u64,
        video: VideoContext,
        label: i64,
        num_classes: Option<usize>,
    },

    /// The `segment_*` lists of a record hold different numbers of entries (one entry
    /// per rated segment is expected in each; a missing key counts as empty).
    #[error("{path}: record {record}{video}: the segment lists differ in length ({lengths}): expected one entry per rated segment in each")]
    SegmentListLengths { path: PathBuf, record: u64, video: VideoContext, lengths: String },

    /// One rated segment of a record is invalid.
    #[error("{path}: record {record}{video}: rated segment {segment}: {problem}")]
    InvalidSegment {
        path: PathBuf,
        record: u64,
        video: VideoContext,
        /// The entry's 0-based index in the segment lists.
        segment: usize,
        problem: SegmentProblem,
    },

    /// The video id bytes are not UTF-8.
    #[error("{path}: record {record}: video id is not UTF-8 (bytes {hex})")]
    IdNotUtf8 { path: PathBuf, record: u64, hex: String },

    /// A file expected to hold videos holds no record at all.
    #[error("{path}: empty file: expected at least one video record, found none")]
    EmptyFile { path: PathBuf },

    /// The first record is neither a frame-level `SequenceExample` (with feature
    /// lists) nor a video-level `Example` (with features).
    #[error("{path}: record 0 is neither a frame-level SequenceExample nor a video-level Example")]
    UnknownFormat { path: PathBuf },

    /// A glob pattern matched no file.
    #[error("no file matches `{pattern}`")]
    NoMatch { pattern: String },

    /// A glob pattern is malformed.
    #[error("invalid glob pattern `{pattern}`")]
    Pattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },

    /// A line of `vocabulary.csv` is malformed.
    #[error("{path}: line {line}: {reason}")]
    Vocabulary { path: PathBuf, line: usize, reason: String },

    /// A configuration value is unusable (zero batch size, feature size 0, ...).
    #[error("invalid data configuration: {0}")]
    Config(String),
}

/// What is wrong with a rated segment ([`DataError::InvalidSegment`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentProblem {
    /// The start is negative or not before the video's stored frame count.
    StartPastEnd { start: i64, num_frames: usize },
    /// The end is not after the start.
    EndNotAfterStart { start: i64, end: i64 },
    /// The class is negative or not in the vocabulary.
    LabelOutOfRange { label: i64, num_classes: Option<usize> },
    /// The rating is not a number in 0..=1.
    Score { score: f32 },
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SegmentProblem::StartPastEnd { start, num_frames } => {
                write!(f, "start {start} is past the video's end: expected 0..{num_frames} for a video of {num_frames} frames")
            }
            SegmentProblem::EndNotAfterStart { start, end } => {
                write!(f, "end {end} is not after start {start}")
            }
            SegmentProblem::LabelOutOfRange { label, num_classes } => {
                write!(f, "class {label} is outside the vocabulary: {}", label_range(num_classes))
            }
            SegmentProblem::Score { score } => {
                write!(f, "score {score} is not a rating: expected 1 (positive) or 0 (negative)")
            }
        }
    }
}

/// The video id, where known, appended to record-level messages as ` (video "id")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoContext(pub Option<String>);

impl fmt::Display for VideoContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(id) => write!(f, " (video {id:?})"),
            None => Ok(()),
        }
    }
}

fn label_range(num_classes: Option<usize>) -> String {
    match num_classes {
        Some(n) => format!("expected 0..={} for {n} classes", n.saturating_sub(1)),
        None => format!("expected 0..={}", u32::MAX),
    }
}

impl DataError {
    /// Whether reading can go on with the next record of the same file after this error
    /// (the framing is intact and only this record's content is bad). Used by
    /// `skip_corrupt`; errors after which the file's framing is lost end that file.
    pub fn is_record_local(&self) -> bool {
        matches!(
            self,
            DataError::CrcMismatch { part: RecordPart::Payload, .. }
                | DataError::Decode { .. }
                | DataError::MissingFeature { .. }
                | DataError::WrongFeatureType { .. }
                | DataError::FrameSize { .. }
                | DataError::FeatureLength { .. }
                | DataError::ExtraFeature { .. }
                | DataError::NonFinite { .. }
                | DataError::NoFrames { .. }
                | DataError::LabelOutOfRange { .. }
                | DataError::IdNotUtf8 { .. }
                | DataError::SegmentListLengths { .. }
                | DataError::InvalidSegment { .. }
        )
    }
}

impl DataError {
    /// A short name for the kind of problem, under which `skip_corrupt` counts skipped
    /// records ([`crate::data::SkipReport::reasons`]): `crc`, `truncated`,
    /// `not_tfrecord`, `too_large`, `io`, `not_protobuf`, `missing_stream`,
    /// `extra_stream`, `wrong_type`, `wrong_size`, `non_finite`, `no_frames`,
    /// `label_out_of_range`, `bad_id`, `bad_segment`, `empty_file`, `other`.
    ///
    /// ```
    /// use loupe_core::data::DataError;
    ///
    /// let error = DataError::EmptyFile { path: "train0000.tfrecord".into() };
    /// assert_eq!(error.skip_reason(), "empty_file");
    /// ```
    pub fn skip_reason(&self) -> &'static str {
        match self {
            DataError::CrcMismatch { .. } => "crc",
            DataError::Truncated { .. } => "truncated",
            DataError::NotTfRecord { .. } | DataError::UnknownFormat { .. } => "not_tfrecord",
            DataError::RecordTooLarge { .. } => "too_large",
            DataError::Io { .. } => "io",
            DataError::Decode { .. } => "not_protobuf",
            DataError::MissingFeature { feature, .. } if feature == "id" => "bad_id",
            DataError::MissingFeature { .. } => "missing_stream",
            DataError::ExtraFeature { .. } => "extra_stream",
            DataError::WrongFeatureType { .. } => "wrong_type",
            DataError::FrameSize { .. } | DataError::FeatureLength { .. } => "wrong_size",
            DataError::NonFinite { .. } => "non_finite",
            DataError::NoFrames { .. } => "no_frames",
            DataError::LabelOutOfRange { .. } => "label_out_of_range",
            DataError::IdNotUtf8 { .. } => "bad_id",
            DataError::SegmentListLengths { .. } | DataError::InvalidSegment { .. } => "bad_segment",
            DataError::EmptyFile { .. } => "empty_file",
            DataError::NoMatch { .. }
            | DataError::Pattern { .. }
            | DataError::Vocabulary { .. }
            | DataError::Config(_) => "other",
        }
    }
}

/// Result alias of the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
