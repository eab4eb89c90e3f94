//! Batches as plain row-major `f32` buffers (the model side turns them into tensors),
//! and their assembly from decoded videos.

use super::error::{DataError, Result};
use super::features::dequantize_into;
use super::sampling::{sample_frames, valid_rows, FrameSampling};
use super::video::DecodedVideo;

/// A batch of frame-level videos.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameBatch {
    /// Video ids, one per video.
    pub ids: Vec<String>,
    /// `len x num_classes` multi-hot labels (1.0 for each label of the video).
    pub labels: Vec<f32>,
    /// Each video's valid frame count (after truncation to the decoder's `max_frames`,
    /// not capped by `frames_per_video`): a recurrent model reading the in-order
    /// frames runs `min(num_frames, frames_per_video)` steps.
    pub num_frames: Vec<usize>,
    /// How many of each video's `frames_per_video` rows are valid for a model reading
    /// them as a sequence ([`super::sampling::valid_rows`]): `min(num_frames, frames_per_video)` in
    /// order, all rows when sampled with replacement, 0 for a video without frames.
    /// Pass them to [`crate::train::Trainer::train_step_lengths`].
    pub lengths: Vec<usize>,
    /// `len x frames_per_video x feature_dim` dequantised frames, as sampled.
    pub frames: Vec<f32>,
    /// `T`, the frames sampled per video.
    pub frames_per_video: usize,
    /// Values per frame.
    pub feature_dim: usize,
    /// Classes per label row.
    pub num_classes: usize,
}

/// A batch of video-level videos (one row per video).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoBatch {
    /// Video ids, one per video.
    pub ids: Vec<String>,
    /// `len x num_classes` multi-hot labels.
    pub labels: Vec<f32>,
    /// `len x feature_dim` features.
    pub features: Vec<f32>,
    /// Values per video.
    pub feature_dim: usize,
    /// Classes per label row.
    pub num_classes: usize,
}

impl FrameBatch {
    /// Number of videos.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch holds no video.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The sampled frames of video `i`: `frames_per_video x feature_dim` values.
    pub fn video_frames(&self, i: usize) -> &[f32] {
        let n = self.frames_per_video * self.feature_dim;
        &self.frames[i * n..(i + 1) * n]
    }

    /// The label row of video `i`.
    pub fn video_labels(&self, i: usize) -> &[f32] {
        &self.labels[i * self.num_classes..(i + 1) * self.num_classes]
    }
}

impl VideoBatch {
    /// Number of videos.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch holds no video.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Sets `row[label] = 1.0` for every label (labels already checked `< row.len()`).
fn set_multi_hot(labels: &[u32], row: &mut [f32]) {
    for &l in labels {
        if let Some(slot) = row.get_mut(l as usize) {
            *slot = 1.0;
        }
    }
}

/// Builds one kind of batch from decoded videos.
pub(crate) trait Assemble: Send + 'static {
    type Batch: Send + 'static;
    /// Adds one video.
    fn push(&mut self, video: DecodedVideo, rng: &mut dyn rand::RngCore) -> Result<()>;
    /// Videos added since the last `take`.
    fn len(&self) -> usize;
    /// The batch so far; starts a new one.
    fn take(&mut self) -> Self::Batch;
}

pub(crate) struct FrameAssembler {
    batch_size: usize,
    num_classes: usize,
    frames_per_video: usize,
    feature_dim: usize,
    sampling: FrameSampling,
    indices: Vec<usize>,
    current: FrameBatch,
}

impl FrameAssembler {
    pub(crate) fn new(
        batch_size: usize,
        num_classes: usize,
        frames_per_video: usize,
        feature_dim: usize,
        sampling: FrameSampling,
    ) -> Self {
        let mut assembler = Self {
            batch_size,
            num_classes,
            frames_per_video,
            feature_dim,
            sampling,
            indices: Vec::with_capacity(frames_per_video),
            current: FrameBatch {
                ids: Vec::new(),
                labels: Vec::new(),
                num_frames: Vec::new(),
                lengths: Vec::new(),
                frames: Vec::new(),
                frames_per_video,
                feature_dim,
                num_classes,
            },
        };
        assembler.current = assembler.empty();
        assembler
    }

    fn empty(&self) -> FrameBatch {
        FrameBatch {
            ids: Vec::with_capacity(self.batch_size),
            labels: Vec::with_capacity(self.batch_size * self.num_classes),
            num_frames: Vec::with_capacity(self.batch_size),
            lengths: Vec::with_capacity(self.batch_size),
            frames: Vec::with_capacity(self.batch_size * self.frames_per_video * self.feature_dim),
            frames_per_video: self.frames_per_video,
            feature_dim: self.feature_dim,
            num_classes: self.num_classes,
        }
    }
}

impl Assemble for FrameAssembler {
    type Batch = FrameBatch;

    fn push(&mut self, video: DecodedVideo, rng: &mut dyn rand::RngCore) -> Result<()> {
        // Quantised frames (YouTube-8M) or float frames (MediaPipe), as one view.
        let (id, labels, num_frames, dim, floats, bytes) = match video {
            DecodedVideo::Frames(v) => {
                (v.id, v.labels, v.num_frames, v.frames.len() / v.num_frames.max(1), Vec::new(), v.frames)
            }
            DecodedVideo::Floats(v) => {
                (v.id, v.labels, v.num_frames, v.features.len() / v.num_frames.max(1), v.features, Vec::new())
            }
            DecodedVideo::Mean(_) => {
                return Err(DataError::Config("a video-level record reached the frame-level batcher".into()));
            }
        };
        if dim != self.feature_dim {
            return Err(DataError::Config(format!(
                "video {id:?} has {dim} values per frame, the batch {}",
                self.feature_dim
            )));
        }
        self.indices.clear();
        sample_frames(self.sampling, &id, num_frames, self.frames_per_video, rng, &mut self.indices);
        let batch = &mut self.current;
        let start = batch.frames.len();
        batch.frames.resize(start + self.frames_per_video * self.feature_dim, 0.0);
        let rows = batch.frames[start..].chunks_exact_mut(self.feature_dim);
        for (row, &t) in rows.zip(&self.indices) {
            let frame = t * dim..(t + 1) * dim;
            if floats.is_empty() {
                dequantize_into(&bytes[frame], row);
            } else {
                row.copy_from_slice(&floats[frame]);
            }
        }
        let label_start = batch.labels.len();
        batch.labels.resize(label_start + self.num_classes, 0.0);
        set_multi_hot(&labels, &mut batch.labels[label_start..]);
        batch.num_frames.push(num_frames);
        batch.lengths.push(valid_rows(self.sampling, num_frames, self.frames_per_video));
        batch.ids.push(id);
        Ok(())
    }

    fn len(&self) -> usize {
        self.current.ids.len()
    }

    fn take(&mut self) -> FrameBatch {
        let next = self.empty();
        std::mem::replace(&mut self.current, next)
    }
}

pub(crate) struct VideoAssembler {
    num_classes: usize,
    feature_dim: usize,
    current: VideoBatch,
}

impl VideoAssembler {
    pub(crate) fn new(num_classes: usize, feature_dim: usize) -> Self {
        Self { num_classes, feature_dim, current: Self::empty(num_classes, feature_dim) }
    }

    fn empty(num_classes: usize, feature_dim: usize) -> VideoBatch {
        VideoBatch { ids: Vec::new(), labels: Vec::new(), features: Vec::new(), feature_dim, num_classes }
    }
}

impl Assemble for VideoAssembler {
    type Batch = VideoBatch;

    fn push(&mut self, video: DecodedVideo, _rng: &mut dyn rand::RngCore) -> Result<()> {
        let DecodedVideo::Mean(video) = video else {
            return Err(DataError::Config("a frame-level record reached the video-level batcher".into()));
        };
        if video.features.len() != self.feature_dim {
            return Err(DataError::Config(format!(
                "video {:?} has {} values, the batch {}",
                video.id,
                video.features.len(),
                self.feature_dim
            )));
        }
        let batch = &mut self.current;
        batch.features.extend_from_slice(&video.features);
        let label_start = batch.labels.len();
        batch.labels.resize(label_start + self.num_classes, 0.0);
        set_multi_hot(&video.labels, &mut batch.labels[label_start..]);
        batch.ids.push(video.id);
        Ok(())
    }

    fn len(&self) -> usize {
        self.current.ids.len()
    }

    fn take(&mut self) -> VideoBatch {
        std::mem::replace(&mut self.current, Self::empty(self.num_classes, self.feature_dim))
    }
}
