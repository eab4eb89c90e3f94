//! Segment inference for the 2019 task: every 5-frame segment of every video scored by
//! a frame-level model, and each whitelisted class's best segments kept in a bounded
//! top-k (memory `k` entries per class, whatever the number of videos).
//!
//! **The model's input.** A segment is the frames `[start, start + 5)` that the video
//! has (fewer for the last segment of a video whose length is not a multiple of 5),
//! for `start = 0, 5, ...` below the kept frames (at most 300), as the starter code's
//! `inference.py` enumerates them. The model pools a fixed `FRAMES` rows, so the
//! segment's frames are repeated in order to fill them (`f0 f1 f2 f3 f4 f0 f1 ...`):
//! with `FRAMES` a multiple of 5 every frame has the same weight, which is what pooling
//! the segment alone means for an orderless model. Unlike Google's `SegmentReader`, a
//! short last segment is not padded with zero frames (loupe never pools padding). A
//! sequence model (LSTM, GRU) trained on temporal order reads the segment's frames once,
//! in order (its valid length is the segment's frame count).

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};
use std::path::PathBuf;

use dfdx::prelude::*;

use crate::data::segments::segment_rows;
use crate::data::{
    valid_rows, DataFormat, DecodedVideo, FrameOrder, VideoDecoder, VideoReader, SEGMENT_FRAMES,
};
use crate::infer::Predictor;
use crate::model::{InputKind, VideoModel};
use crate::segment_submission::{SegmentId, SegmentRow};
use crate::train::run_error::RunError;

/// One scored segment in a class's top-k.
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    /// Order of arrival: ties go to the segment scored first.
    seq: u64,
    video: u32,
    start: u32,
}

impl Scored {
    /// Better first: higher score, then earlier arrival.
    fn rank(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then(self.seq.cmp(&other.seq))
    }
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    /// Ordered by rank: the "greatest" entry is the worst one.
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank(other)
    }
}

/// The `k` best segments of each class of a whitelist, by decreasing score.
#[derive(Debug, Clone)]
pub struct SegmentTopK {
    k: usize,
    classes: Vec<u32>,
    /// One max-heap of the worst-first entries per class (the top is the one to drop).
    heaps: Vec<BinaryHeap<Scored>>,
    videos: Vec<String>,
    seq: u64,
}

impl SegmentTopK {
    /// Keeps up to `k` segments for each of `classes`.
    pub fn new(classes: &BTreeSet<u32>, k: usize) -> Self {
        Self {
            k,
            classes: classes.iter().copied().collect(),
            heaps: classes.iter().map(|_| BinaryHeap::new()).collect(),
            videos: Vec::new(),
            seq: 0,
        }
    }

    /// Starts the segments of a new video.
    pub fn begin_video(&mut self, id: &str) {
        self.videos.push(id.to_string());
    }

    /// Adds the segment of the current video starting at `start`, with its
    /// `scores[c]` for every class `c` of the model.
    pub fn add(&mut self, start: u32, scores: &[f32]) {
        let video = self.videos.len().saturating_sub(1) as u32;
        let seq = self.seq;
        self.seq += 1;
        for (heap, &class) in self.heaps.iter_mut().zip(&self.classes) {
            let Some(&score) = scores.get(class as usize) else { continue };
            let entry = Scored { score, seq, video, start };
            if heap.len() < self.k {
                heap.push(entry);
            } else if heap.peek().is_some_and(|worst| entry < *worst) {
                heap.pop();
                heap.push(entry);
            }
        }
    }

    /// One row per class (ascending), its segments by decreasing score.
    pub fn into_rows(self) -> Vec<SegmentRow> {
        let videos = self.videos;
        self.classes
            .into_iter()
            .zip(self.heaps)
            .map(|(class, heap)| SegmentRow {
                class,
                segments: heap
                    .into_sorted_vec()
                    .into_iter()
                    .map(|s| SegmentId { video: videos[s.video as usize].clone(), start: s.start })
                    .collect(),
            })
            .collect()
    }
}

/// What [`predict_segments`] reads and keeps.
#[derive(Debug, Clone)]
pub struct SegmentInference {
    /// Frame-level files, read in order.
    pub files: Vec<PathBuf>,
    /// Their decoder (its `max_frames` bounds the segments: 300 in YouTube-8M).
    pub decoder: VideoDecoder,
    /// The classes to rank segments for.
    pub classes: BTreeSet<u32>,
    /// Segments kept per class.
    pub max_per_class: usize,
    /// Segments per forward pass.
    pub batch_size: usize,
    /// Skip corrupt records instead of failing.
    pub skip_corrupt: bool,
    /// The frame order a sequence model was trained with.
    pub order: FrameOrder,
}

/// Scores every segment of every video of `job.files` with `predictor`'s model (evaluation
/// mode) and returns each whitelisted class's best segments (module docs). Also returns
/// the number of segments scored.
pub fn predict_segments<M, D>(
    predictor: &Predictor<M, D>,
    job: &SegmentInference,
) -> Result<(Vec<SegmentRow>, u64), RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    if job.decoder.format() != DataFormat::FrameLevel
        || M::FRAMES < 1
        || M::describe().input == InputKind::VideoLevel
    {
        return Err(RunError::Config(format!(
            "segment inference needs a frame-level model on frame-level data; {} reads {} and the data is {}",
            M::describe().name,
            M::describe().input,
            job.decoder.format()
        )));
    }
    if job.decoder.feature_dim() != M::FEATURES {
        return Err(RunError::Config(format!(
            "model {} expects {} values per frame, the data gives {}",
            M::describe().name,
            M::FEATURES,
            job.decoder.feature_dim()
        )));
    }
    if let Some(&class) = job.classes.iter().find(|&&c| c as usize >= M::CLASSES) {
        return Err(RunError::Config(format!(
            "segment class {class} is not among the model's {} classes",
            M::CLASSES
        )));
    }
    if job.batch_size == 0 || job.max_per_class == 0 {
        return Err(RunError::Config(
            "the batch size and the segments kept per class must be at least 1".into(),
        ));
    }
    let sampling = job.order.evaluation_sampling(M::READS_FRAMES_IN_ORDER);
    let mut top = SegmentTopK::new(&job.classes, job.max_per_class);
    let mut pending = PendingBatch::default();
    let mut scored = 0u64;
    let mut flush = |pending: &mut PendingBatch, top: &mut SegmentTopK| -> Result<(), RunError> {
        if pending.starts.is_empty() {
            return Ok(());
        }
        let scores = predictor.predict(&pending.frames, &pending.lengths)?;
        for ((video, start), row) in pending.videos.iter().zip(&pending.starts).zip(scores.chunks(M::CLASSES))
        {
            if top.videos.last() != Some(video) {
                top.begin_video(video);
            }
            top.add(*start, row);
        }
        scored += pending.starts.len() as u64;
        *pending = PendingBatch::default();
        Ok(())
    };
    for path in &job.files {
        let mut reader = VideoReader::open(path, &job.decoder)?.skip_corrupt(job.skip_corrupt);
        while let Some(video) = reader.next_decoded() {
            let video = match video? {
                DecodedVideo::Frames(video) => video,
                DecodedVideo::Floats(video) => {
                    return Err(RunError::Config(format!(
                        "{}: video {:?} has float frames (a MediaPipe feature file): segment scoring reads the dataset's quantised frames",
                        path.display(),
                        video.id
                    )))
                }
                DecodedVideo::Mean(_) => continue,
            };
            for start in (0..video.num_frames).step_by(SEGMENT_FRAMES) {
                let valid = segment_rows(&video, start, M::FRAMES, &mut pending.frames);
                pending.lengths.push(valid_rows(sampling, valid, M::FRAMES));
                pending.videos.push(video.id.clone());
                pending.starts.push(start as u32);
                if pending.starts.len() == job.batch_size {
                    flush(&mut pending, &mut top)?;
                }
            }
        }
    }
    flush(&mut pending, &mut top)?;
    Ok((top.into_rows(), scored))
}

/// Segments waiting for a forward pass.
#[derive(Default)]
struct PendingBatch {
    frames: Vec<f32>,
    lengths: Vec<usize>,
    videos: Vec<String>,
    starts: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_per_class_in_order_with_ties_to_the_first() {
        let classes: BTreeSet<u32> = [0, 2].into();
        let mut top = SegmentTopK::new(&classes, 2);
        top.begin_video("a");
        top.add(0, &[0.1, 9.0, 0.5]);
        top.add(5, &[0.3, 9.0, 0.5]);
        top.begin_video("b");
        top.add(0, &[0.2, 9.0, 0.9]);
        let rows = top.into_rows();
        let ids = |r: &SegmentRow| {
            r.segments.iter().map(|s| format!("{}:{}", s.video, s.start)).collect::<Vec<_>>()
        };
        assert_eq!(rows[0].class, 0);
        assert_eq!(ids(&rows[0]), ["a:5", "b:0"]);
        // a:0 and a:5 tie at 0.5 for class 2: the first scored wins the second place.
        assert_eq!(ids(&rows[1]), ["b:0", "a:0"]);
    }
}
