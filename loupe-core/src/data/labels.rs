//! Ground truth: every video's id and labels from a set of shards.

use std::path::PathBuf;

use super::{detect_file_layout, DataFormat, Result, SkipReport, VideoDecoder, VideoReader};

/// `(id, labels)` of every video in `files`, in file and record order. The layout
/// (frame- or video-level, streams) is detected per file; frames are decoded and checked
/// like any read, so a corrupt file is reported the same way.
pub fn read_labels(files: &[PathBuf], skip_corrupt: bool) -> Result<(Vec<(String, Vec<u32>)>, SkipReport)> {
    let mut truth = Vec::new();
    let mut skipped = SkipReport::default();
    for path in files {
        let (format, spec) = detect_file_layout(path)?;
        let decoder = VideoDecoder::new(format, spec);
        let decoder = if format == DataFormat::FrameLevel { decoder.with_max_frames(1) } else { decoder };
        let mut reader = VideoReader::open(path, &decoder)?.skip_corrupt(skip_corrupt);
        while let Some(video) = reader.next_decoded() {
            let video = video?;
            truth.push((video.id().to_string(), video.labels().to_vec()));
        }
        skipped.merge(reader.skip_report());
    }
    Ok((truth, skipped))
}
