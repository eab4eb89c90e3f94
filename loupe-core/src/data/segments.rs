//! Segment-level tools (the 2019 temporal localisation task): a segment's frames as model
//! input, the rated segments of whole files, and the class whitelist file. One record's
//! ratings are parsed by [`super::ratings`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};
use super::ratings::{RatedSegment, SEGMENT_FRAMES};
use super::reader::VideoReader;
use super::video::{DecodedVideo, QuantizedVideo, VideoDecoder};
use super::{detect_file_layout, DataFormat, SkipReport};

/// The frames of the segment of `video` starting at `start`: `start..start + 5`, cut at
/// the frames the video has (kept after truncation).
pub fn segment_frames(video: &QuantizedVideo, start: usize) -> std::ops::Range<usize> {
    start.min(video.num_frames)..(start + SEGMENT_FRAMES).min(video.num_frames)
}

/// Appends `rows` dequantised rows to `out`: the frames of the segment starting at
/// `start` ([`segment_frames`]) in order, repeated from the first until `rows` are filled
/// (zeros if the segment has no frame). Returns the segment's frame count.
pub fn segment_rows(video: &QuantizedVideo, start: usize, rows: usize, out: &mut Vec<f32>) -> usize {
    let frames = segment_frames(video, start);
    let dim = video.feature_dim();
    let first = out.len();
    out.resize(first + rows * dim, 0.0);
    if !frames.is_empty() && dim > 0 {
        for (r, row) in out[first..].chunks_exact_mut(dim).enumerate() {
            video.dequantize_frame_into(frames.start + r % frames.len(), row);
        }
    }
    frames.len()
}

/// The rated segments of one video, as ground truth for the segment metric.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoRatings {
    /// The video id.
    pub id: String,
    /// Its rated (segment, class) pairs in stored order.
    pub segments: Vec<RatedSegment>,
}

/// The rated segments of every frame-level video in `files`, in file and record order
/// (videos without ratings included, with none). Frames are not kept (ratings are
/// checked against each video's stored length all the same).
pub fn read_segment_ratings(
    files: &[PathBuf],
    skip_corrupt: bool,
) -> Result<(Vec<VideoRatings>, SkipReport)> {
    let mut ratings = Vec::new();
    let mut skipped = SkipReport::default();
    for path in files {
        let (format, spec) = detect_file_layout(path)?;
        if format != DataFormat::FrameLevel {
            return Err(DataError::Config(format!(
                "{}: segment ratings are in frame-level records (SequenceExample); this file is video-level",
                path.display()
            )));
        }
        let decoder = VideoDecoder::new(format, spec).with_max_frames(1);
        let mut reader = VideoReader::open(path, &decoder)?.skip_corrupt(skip_corrupt);
        while let Some(video) = reader.next_decoded() {
            if let DecodedVideo::Frames(v) = video? {
                ratings.push(VideoRatings { id: v.id, segments: v.segments });
            }
        }
        skipped.merge(reader.skip_report());
    }
    Ok((ratings, skipped))
}

/// Reads a class whitelist (`segment_label_ids.csv` of the 2019 starter code): one class
/// index per line, an optional non-numeric header line first, blank lines ignored.
/// Returns the distinct classes in ascending order.
pub fn read_segment_classes(path: &Path) -> Result<BTreeSet<u32>> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        action: "reading the segment class list",
        source,
    })?;
    let mut classes = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<u32>() {
            Ok(class) => {
                classes.insert(class);
            }
            Err(_) if i == 0 => {} // a header such as `Index`
            Err(_) => {
                return Err(DataError::Vocabulary {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: format!("expected a class index, found `{line}`"),
                })
            }
        }
    }
    if classes.is_empty() {
        return Err(DataError::Vocabulary {
            path: path.to_path_buf(),
            line: 0,
            reason: "no class index in the file".into(),
        });
    }
    Ok(classes)
}
