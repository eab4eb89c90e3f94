//! Summary statistics of a set of videos (`loupe inspect`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::features::{DataFormat, FeatureSpec};
use super::ratings::RatedSegment;
use super::reader::SkipReport;
use super::video::DecodedVideo;

/// Minimum, mean and maximum of a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CountSummary {
    /// Smallest value (0 when there was none).
    pub min: u64,
    /// Arithmetic mean (0 when there was none).
    pub mean: f64,
    /// Largest value.
    pub max: u64,
}

/// How many videos carry a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LabelCount {
    /// The label index.
    pub label: u32,
    /// Videos carrying it.
    pub videos: u64,
}

/// Statistics over the videos of one or more files.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetStats {
    /// Frame- or video-level.
    pub format: DataFormat,
    /// Files read.
    pub files: usize,
    /// Videos decoded.
    pub videos: u64,
    /// Frames kept per video (frame-level; after truncation); `None` for video-level.
    pub frames: Option<CountSummary>,
    /// Labels per video.
    pub labels_per_video: CountSummary,
    /// Videos without any label.
    pub videos_without_labels: u64,
    /// Distinct label indices seen.
    pub distinct_labels: usize,
    /// Largest label index seen.
    pub max_label: Option<u32>,
    /// The most frequent labels, most frequent first (ties by index).
    pub top_labels: Vec<LabelCount>,
    /// The rated segments of the 2019 segment-level data (zeros when there are none).
    pub segments: SegmentStats,
    /// What `--skip-corrupt` skipped.
    pub skipped: SkipReport,
}

/// Counts of the rated (segment, class) pairs ([`super::ratings`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SegmentStats {
    /// Videos with at least one rated pair.
    pub videos_rated: u64,
    /// Rated (segment, class) pairs.
    pub rated_pairs: u64,
    /// Pairs rated positive.
    pub positive_pairs: u64,
    /// Distinct classes rated.
    pub rated_classes: usize,
}

/// Accumulates [`DatasetStats`] one video at a time.
#[derive(Debug, Clone)]
pub struct StatsAccumulator {
    format: DataFormat,
    videos: u64,
    frames: Counter,
    labels: Counter,
    without_labels: u64,
    label_videos: HashMap<u32, u64>,
    segments: SegmentStats,
    segment_classes: BTreeSet<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    min: u64,
    max: u64,
    sum: u128,
    n: u64,
}

impl Counter {
    fn add(&mut self, v: u64) {
        if self.n == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.sum += u128::from(v);
        self.n += 1;
    }

    fn summary(&self) -> CountSummary {
        CountSummary {
            min: self.min,
            mean: if self.n == 0 { 0.0 } else { self.sum as f64 / self.n as f64 },
            max: self.max,
        }
    }
}

impl StatsAccumulator {
    /// An empty accumulator for `format` videos.
    pub fn new(format: DataFormat) -> Self {
        Self {
            format,
            videos: 0,
            frames: Counter::default(),
            labels: Counter::default(),
            without_labels: 0,
            label_videos: HashMap::new(),
            segments: SegmentStats::default(),
            segment_classes: BTreeSet::new(),
        }
    }

    /// Counts one video.
    pub fn add(&mut self, video: &DecodedVideo) {
        self.videos += 1;
        self.frames.add(video.num_frames() as u64);
        let labels = video.labels();
        self.labels.add(labels.len() as u64);
        if labels.is_empty() {
            self.without_labels += 1;
        }
        let mut seen: Vec<u32> = labels.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for l in seen {
            *self.label_videos.entry(l).or_default() += 1;
        }
        if let DecodedVideo::Frames(v) = video {
            if !v.segments.is_empty() {
                self.segments.videos_rated += 1;
                self.segments.rated_pairs += v.segments.len() as u64;
                self.segments.positive_pairs += v.segments.iter().filter(|s| s.is_positive()).count() as u64;
                self.segment_classes.extend(v.segments.iter().map(|s| s.label));
            }
        }
    }

    /// The statistics, listing the `top` most frequent labels.
    pub fn finish(self, files: usize, top: usize, skipped: SkipReport) -> DatasetStats {
        let mut counts: Vec<LabelCount> =
            self.label_videos.iter().map(|(&label, &videos)| LabelCount { label, videos }).collect();
        counts.sort_by(|a, b| b.videos.cmp(&a.videos).then(a.label.cmp(&b.label)));
        let max_label = self.label_videos.keys().copied().max();
        counts.truncate(top);
        DatasetStats {
            format: self.format,
            files,
            videos: self.videos,
            frames: (self.format == DataFormat::FrameLevel).then(|| self.frames.summary()),
            labels_per_video: self.labels.summary(),
            videos_without_labels: self.without_labels,
            distinct_labels: self.label_videos.len(),
            max_label,
            top_labels: counts,
            segments: SegmentStats { rated_classes: self.segment_classes.len(), ..self.segments },
            skipped,
        }
    }
}

/// One video as `loupe inspect --per-video` prints it: id, labels, frames kept, and
/// each stream's mean over the dequantised frames, keyed `mean_<stream>` (video-level
/// streams, already named `mean_*`, keep their names).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoSummary {
    /// The video id.
    pub id: String,
    /// Label indices.
    pub labels: Vec<u32>,
    /// Frames kept (1 for video-level).
    pub frames: usize,
    /// The rated (segment, class) pairs, in stored order (left out when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<RatedSegment>,
    /// `mean_rgb`, `mean_audio`, ...
    #[serde(flatten)]
    pub means: BTreeMap<String, Vec<f64>>,
}

impl VideoSummary {
    /// Summarises `video`, whose rows follow `spec`.
    pub fn of(video: &DecodedVideo, spec: &FeatureSpec) -> Self {
        let dim = spec.feature_dim();
        // Mean of each column over the rows, in f64 from the byte sums (exact).
        let column_means: Vec<f64> = match video {
            DecodedVideo::Frames(v) => {
                let mut sums = vec![0u64; dim];
                for row in v.frames.chunks_exact(dim) {
                    for (s, &b) in sums.iter_mut().zip(row) {
                        *s += u64::from(b);
                    }
                }
                let n = v.num_frames.max(1) as f64;
                sums.iter().map(|&s| s as f64 / n * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)).collect()
            }
            DecodedVideo::Mean(v) => v.features.iter().map(|&x| f64::from(x)).collect(),
            DecodedVideo::Floats(v) => {
                let mut sums = vec![0f64; dim];
                for row in v.features.chunks_exact(dim) {
                    for (s, &x) in sums.iter_mut().zip(row) {
                        *s += f64::from(x);
                    }
                }
                sums.iter().map(|&s| s / v.num_frames.max(1) as f64).collect()
            }
        };
        let means = spec
            .offsets()
            .map(|(offset, stream)| {
                let key = if stream.name.starts_with("mean_") {
                    stream.name.clone()
                } else {
                    format!("mean_{}", stream.name)
                };
                let values = column_means.get(offset..offset + stream.size).unwrap_or(&[]).to_vec();
                (key, values)
            })
            .collect();
        Self {
            id: video.id().to_string(),
            labels: video.labels().to_vec(),
            frames: video.num_frames(),
            segments: match video {
                DecodedVideo::Frames(v) => v.segments.clone(),
                DecodedVideo::Mean(_) | DecodedVideo::Floats(_) => Vec::new(),
            },
            means,
        }
    }
}
