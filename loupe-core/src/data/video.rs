//! Decoded videos, and the decoder from `tf.train` records to them.

use std::collections::BTreeMap;

use prost::Message;

use super::error::{DataError, RecordLocation, Result, VideoContext};
use super::features::{dequantize_into, DataFormat, FeatureSpec, DEFAULT_MAX_FRAMES};
use super::mediapipe;
use super::proto::{feature::Kind, Example, Feature, FeatureList, FeatureLists, Features, SequenceExample};
use super::ratings::{rated_segments, RatedSegment, SEGMENT_KEYS};
use super::wire;

pub use super::features::ID_KEYS;
/// The labels key; a record without it has no labels.
pub const LABELS_KEY: &str = "labels";

/// One decoded video.
///
/// Frame-level: `features` is row-major `num_frames x feature_dim`, the spec's streams
/// concatenated per frame in declared order, dequantised, truncated to the decoder's
/// `max_frames`. Video-level: one row (`num_frames == 1`) of the streams' floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// The video id (UTF-8; see [`DataError::IdNotUtf8`]).
    pub id: String,
    /// Label indices in record order.
    pub labels: Vec<u32>,
    /// Rows in `features` (frames kept, after truncation; 1 for video-level data).
    pub num_frames: usize,
    /// `num_frames x feature_dim` values.
    pub features: Vec<f32>,
}

/// A frame-level video kept in its stored uint8 form: a quarter of the memory of
/// [`Video`], and only the frames a batch samples are ever dequantised. This is what
/// the dataset's shuffle buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizedVideo {
    /// The video id.
    pub id: String,
    /// Label indices in record order.
    pub labels: Vec<u32>,
    /// Frames kept (after truncation).
    pub num_frames: usize,
    /// `num_frames x feature_dim` quantised bytes, streams concatenated per frame.
    pub frames: Vec<u8>,
    /// The rated (segment, class) pairs of the 2019 segment-level data, in stored
    /// order; empty for records without ratings ([`super::ratings`]).
    pub segments: Vec<RatedSegment>,
}

impl QuantizedVideo {
    /// Values per frame.
    pub fn feature_dim(&self) -> usize {
        self.frames.len().checked_div(self.num_frames).unwrap_or(0)
    }

    /// The quantised bytes of frame `t`.
    pub fn frame(&self, t: usize) -> &[u8] {
        let dim = self.feature_dim();
        &self.frames[t * dim..(t + 1) * dim]
    }

    /// Dequantises frame `t` into `out` (`feature_dim` values).
    pub fn dequantize_frame_into(&self, t: usize, out: &mut [f32]) {
        dequantize_into(self.frame(t), out);
    }

    /// The dequantised video.
    pub fn dequantize(&self) -> Video {
        let mut features = vec![0.0; self.frames.len()];
        dequantize_into(&self.frames, &mut features);
        Video { id: self.id.clone(), labels: self.labels.clone(), num_frames: self.num_frames, features }
    }

    /// The `tf.train.SequenceExample` YouTube-8M stores for this video, under the id
    /// key `id_key` (`id`, or `video_id` for the 2017 layout).
    pub fn to_sequence_example(&self, spec: &FeatureSpec, id_key: &str) -> SequenceExample {
        let dim = spec.feature_dim();
        let mut lists = BTreeMap::new();
        for (offset, stream) in spec.offsets() {
            let frames = self
                .frames
                .chunks_exact(dim)
                .map(|row| Feature::bytes(vec![row[offset..offset + stream.size].to_vec()]))
                .collect();
            lists.insert(stream.name.clone(), FeatureList { feature: frames });
        }
        let mut context = context_features(&self.id, &self.labels, id_key);
        if !self.segments.is_empty() {
            let ints = |f: fn(&RatedSegment) -> i64| Feature::int64s(self.segments.iter().map(f).collect());
            let lists = [
                ints(|s| i64::from(s.label)),
                ints(|s| i64::from(s.start)),
                ints(|s| i64::from(s.end)),
                Feature::floats(self.segments.iter().map(|s| s.score).collect()),
            ];
            for (key, list) in SEGMENT_KEYS.iter().zip(lists) {
                context.feature.insert((*key).to_string(), list);
            }
        }
        SequenceExample { context: Some(context), feature_lists: Some(FeatureLists { feature_list: lists }) }
    }
}

impl Video {
    /// The `tf.train.Example` YouTube-8M stores for a video-level record (one row).
    pub fn to_example(&self, spec: &FeatureSpec, id_key: &str) -> Example {
        let mut features = context_features(&self.id, &self.labels, id_key);
        for (offset, stream) in spec.offsets() {
            let values = self.features.get(offset..offset + stream.size).unwrap_or(&[]).to_vec();
            features.feature.insert(stream.name.clone(), Feature::floats(values));
        }
        Example { features: Some(features) }
    }
}

fn context_features(id: &str, labels: &[u32], id_key: &str) -> Features {
    let mut features = Features::default();
    features.feature.insert(id_key.to_string(), Feature::bytes(vec![id.as_bytes().to_vec()]));
    features
        .feature
        .insert(LABELS_KEY.to_string(), Feature::int64s(labels.iter().map(|&l| i64::from(l)).collect()));
    features
}

/// A decoded record in the form the dataset keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedVideo {
    /// Frame-level, still quantised.
    Frames(QuantizedVideo),
    /// Video-level, one float row.
    Mean(Video),
    /// Frame-level with float frames (MediaPipe's feature files, [`super::mediapipe`]),
    /// kept as they were stored.
    Floats(Video),
}

impl DecodedVideo {
    /// The video id.
    pub fn id(&self) -> &str {
        match self {
            DecodedVideo::Frames(v) => &v.id,
            DecodedVideo::Mean(v) | DecodedVideo::Floats(v) => &v.id,
        }
    }

    /// The label indices.
    pub fn labels(&self) -> &[u32] {
        match self {
            DecodedVideo::Frames(v) => &v.labels,
            DecodedVideo::Mean(v) | DecodedVideo::Floats(v) => &v.labels,
        }
    }

    /// Rows held (frames kept, or 1).
    pub fn num_frames(&self) -> usize {
        match self {
            DecodedVideo::Frames(v) => v.num_frames,
            DecodedVideo::Mean(v) | DecodedVideo::Floats(v) => v.num_frames,
        }
    }

    /// The dequantised video.
    pub fn into_video(self) -> Video {
        match self {
            DecodedVideo::Frames(v) => v.dequantize(),
            DecodedVideo::Mean(v) | DecodedVideo::Floats(v) => v,
        }
    }
}

/// Decodes YouTube-8M records into videos: which format, which streams, how many
/// frames to keep, and (optionally) the number of classes labels must stay below.
///
/// ```
/// use loupe_core::data::{DataFormat, VideoDecoder};
///
/// let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel).with_num_classes(3862);
/// assert_eq!(decoder.feature_dim(), 1152);
/// assert_eq!(decoder.max_frames(), 300);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VideoDecoder {
    format: DataFormat,
    spec: FeatureSpec,
    max_frames: usize,
    num_classes: Option<usize>,
    exact_streams: bool,
    float_frames: bool,
}

impl VideoDecoder {
    /// A decoder of `format` records holding `spec`'s streams, keeping up to 300 frames
    /// and not checking labels against a class count.
    pub fn new(format: DataFormat, spec: FeatureSpec) -> Self {
        Self {
            format,
            spec,
            max_frames: DEFAULT_MAX_FRAMES,
            num_classes: None,
            exact_streams: false,
            float_frames: false,
        }
    }

    /// A decoder of YouTube-8M's streams (rgb 1024 + audio 128).
    pub fn youtube8m(format: DataFormat) -> Self {
        Self::new(format, FeatureSpec::youtube8m(format))
    }

    /// Keeps at most `max_frames` frames per video (the first ones); at least 1.
    pub fn with_max_frames(mut self, max_frames: usize) -> Self {
        self.max_frames = max_frames.max(1);
        self
    }

    /// Rejects labels `>= num_classes`.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = Some(num_classes);
        self
    }

    /// With `true`, a record holding a stream the spec does not name (a frame-level
    /// feature list, or a video-level float feature) is an error
    /// ([`DataError::ExtraFeature`]) instead of being ignored. For streams detected from
    /// one file's first record, this catches a later file laid out differently; leave it
    /// off when the spec deliberately reads a subset of the streams.
    pub fn with_exact_streams(mut self, exact: bool) -> Self {
        self.exact_streams = exact;
        self
    }

    /// Reads frame-level feature lists of float frames (MediaPipe's feature files,
    /// [`super::mediapipe`]) instead of quantised bytes; the values are kept as stored.
    pub fn with_float_frames(mut self, float_frames: bool) -> Self {
        self.float_frames = float_frames;
        self
    }

    /// Whether frames are read as float lists ([`Self::with_float_frames`]).
    pub fn float_frames(&self) -> bool {
        self.float_frames
    }

    /// The record format.
    pub fn format(&self) -> DataFormat {
        self.format
    }

    /// The streams read.
    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    /// Values per row.
    pub fn feature_dim(&self) -> usize {
        self.spec.feature_dim()
    }

    /// Frames kept per video.
    pub fn max_frames(&self) -> usize {
        self.max_frames
    }

    /// The class count labels are checked against, if any.
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    /// Decodes one record payload and dequantises it.
    pub fn decode(&self, payload: &[u8], at: RecordLocation<'_>) -> Result<Video> {
        self.decode_record(payload, at).map(DecodedVideo::into_video)
    }

    /// Decodes one record payload, keeping frame-level features quantised.
    pub fn decode_record(&self, payload: &[u8], at: RecordLocation<'_>) -> Result<DecodedVideo> {
        match self.format {
            DataFormat::FrameLevel if self.float_frames => {
                self.decode_float_frames(payload, at).map(DecodedVideo::Floats)
            }
            DataFormat::FrameLevel => self.decode_frames(payload, at).map(DecodedVideo::Frames),
            DataFormat::VideoLevel => self.decode_mean(payload, at).map(DecodedVideo::Mean),
        }
    }

    /// Decodes a frame-level payload whose frames are float lists ([`super::mediapipe`]).
    fn decode_float_frames(&self, payload: &[u8], at: RecordLocation<'_>) -> Result<Video> {
        let example = SequenceExample::decode(payload).map_err(|source| DataError::Decode {
            path: at.path.to_path_buf(),
            record: at.record,
            message: "SequenceExample",
            source,
        })?;
        let mut context = example.context.unwrap_or_default();
        mediapipe::insert_fallback_id(&mut context, at);
        let (id, labels) = self.id_and_labels(&context, at)?;
        let lists = example.feature_lists.unwrap_or_default().feature_list;
        let (num_frames, features) = mediapipe::float_frames(&lists, &self.spec, self.max_frames, &id, at)?;
        Ok(Video { id, labels, num_frames, features })
    }

    /// Decodes a frame-level `SequenceExample` payload.
    ///
    /// Regular records take a borrowing fast path (no allocation per frame); anything
    /// else is decoded by [`VideoDecoder::decode_frames_prost`], so both give the same
    /// result.
    pub fn decode_frames(&self, payload: &[u8], at: RecordLocation<'_>) -> Result<QuantizedVideo> {
        match wire::decode_regular_frames(payload, &self.spec, self.max_frames, self.exact_streams) {
            Some(regular) => {
                let [a, b, c, d] = &regular.segment_features;
                let segment_features = [a.as_ref(), b.as_ref(), c.as_ref(), d.as_ref()];
                Ok(QuantizedVideo {
                    labels: self.check_labels(&regular.labels, &regular.id, at)?,
                    segments: rated_segments(
                        segment_features,
                        &regular.id,
                        regular.stored_frames,
                        self.num_classes,
                        at,
                    )?,
                    id: regular.id,
                    num_frames: regular.num_frames,
                    frames: regular.frames,
                })
            }
            None => self.decode_frames_prost(payload, at),
        }
    }

    /// Decodes a frame-level payload through the prost messages: the reference the
    /// fast path of [`VideoDecoder::decode_frames`] is checked against.
    pub fn decode_frames_prost(&self, payload: &[u8], at: RecordLocation<'_>) -> Result<QuantizedVideo> {
        let example = SequenceExample::decode(payload).map_err(|source| DataError::Decode {
            path: at.path.to_path_buf(),
            record: at.record,
            message: "SequenceExample",
            source,
        })?;
        let context = example.context.unwrap_or_default();
        let (id, labels) = self.id_and_labels(&context, at)?;
        let segment_features = SEGMENT_KEYS.map(|key| context.feature.get(key));
        let ctx = || VideoContext(Some(id.clone()));
        let lists = example.feature_lists.unwrap_or_default().feature_list;

        let dim = self.spec.feature_dim();
        let mut stream_lists = Vec::with_capacity(self.spec.streams().len());
        for stream in self.spec.streams() {
            let list = lists.get(&stream.name).ok_or_else(|| DataError::MissingFeature {
                path: at.path.to_path_buf(),
                record: at.record,
                video: ctx(),
                feature: stream.name.clone(),
                expected: format!("a feature list of {}-byte frames", stream.size),
            })?;
            stream_lists.push(list);
        }
        if self.exact_streams {
            if let Some(extra) =
                lists.keys().filter(|k| !self.spec.streams().iter().any(|s| &s.name == *k)).min()
            {
                return Err(self.extra_feature(extra, &id, at));
            }
        }
        let stored_frames = stream_lists.first().map_or(0, |l| l.feature.len());
        for (stream, list) in self.spec.streams().iter().zip(&stream_lists) {
            if list.feature.len() != stored_frames {
                return Err(DataError::FeatureLength {
                    path: at.path.to_path_buf(),
                    record: at.record,
                    video: ctx(),
                    feature: stream.name.clone(),
                    unit: "frames",
                    expected: stored_frames,
                    found: list.feature.len(),
                });
            }
        }
        if stored_frames == 0 {
            return Err(DataError::NoFrames { path: at.path.to_path_buf(), record: at.record, video: ctx() });
        }
        let segments = rated_segments(segment_features, &id, stored_frames, self.num_classes, at)?;
        let num_frames = stored_frames.min(self.max_frames);
        let mut frames = vec![0u8; num_frames * dim];
        for ((offset, stream), list) in self.spec.offsets().zip(&stream_lists) {
            for (t, feature) in list.feature.iter().take(num_frames).enumerate() {
                let row = &mut frames[t * dim + offset..t * dim + offset + stream.size];
                let bytes: &[Vec<u8>] = match &feature.kind {
                    Some(Kind::BytesList(b)) => &b.value,
                    other => {
                        return Err(DataError::WrongFeatureType {
                            path: at.path.to_path_buf(),
                            record: at.record,
                            video: ctx(),
                            feature: format!("{}[{t}]", stream.name),
                            expected: "bytes_list",
                            found: other.as_ref().map_or("no value", Kind::type_name),
                        })
                    }
                };
                // YouTube-8M stores one bytes value per frame; tolerate a split one.
                let found: usize = bytes.iter().map(Vec::len).sum();
                if found != stream.size {
                    return Err(DataError::FrameSize {
                        path: at.path.to_path_buf(),
                        record: at.record,
                        video: ctx(),
                        feature: stream.name.clone(),
                        frame: t,
                        expected: stream.size,
                        found,
                    });
                }
                let mut start = 0;
                for value in bytes {
                    row[start..start + value.len()].copy_from_slice(value);
                    start += value.len();
                }
            }
        }
        Ok(QuantizedVideo { id, labels, num_frames, frames, segments })
    }

    /// Decodes a video-level `Example` payload.
    pub fn decode_mean(&self, payload: &[u8], at: RecordLocation<'_>) -> Result<Video> {
        let example = Example::decode(payload).map_err(|source| DataError::Decode {
            path: at.path.to_path_buf(),
            record: at.record,
            message: "Example",
            source,
        })?;
        let features = example.features.unwrap_or_default();
        let (id, labels) = self.id_and_labels(&features, at)?;
        let ctx = || VideoContext(Some(id.clone()));
        let mut row = Vec::with_capacity(self.spec.feature_dim());
        for stream in self.spec.streams() {
            let feature = features.feature.get(&stream.name).ok_or_else(|| DataError::MissingFeature {
                path: at.path.to_path_buf(),
                record: at.record,
                video: ctx(),
                feature: stream.name.clone(),
                expected: format!("a float list of {} values", stream.size),
            })?;
            let values = match &feature.kind {
                Some(Kind::FloatList(f)) => &f.value,
                other => {
                    return Err(DataError::WrongFeatureType {
                        path: at.path.to_path_buf(),
                        record: at.record,
                        video: ctx(),
                        feature: stream.name.clone(),
                        expected: "float_list",
                        found: other.as_ref().map_or("no value", Kind::type_name),
                    })
                }
            };
            if values.len() != stream.size {
                return Err(DataError::FeatureLength {
                    path: at.path.to_path_buf(),
                    record: at.record,
                    video: ctx(),
                    feature: stream.name.clone(),
                    unit: "values",
                    expected: stream.size,
                    found: values.len(),
                });
            }
            if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                return Err(DataError::NonFinite {
                    path: at.path.to_path_buf(),
                    record: at.record,
                    video: ctx(),
                    feature: stream.name.clone(),
                    index,
                    value: values[index],
                });
            }
            row.extend_from_slice(values);
        }
        if self.exact_streams {
            let extra = features
                .feature
                .iter()
                .filter(|(name, f)| {
                    matches!(f.kind, Some(Kind::FloatList(_)))
                        && !self.spec.streams().iter().any(|s| &s.name == *name)
                })
                .map(|(name, _)| name)
                .min();
            if let Some(name) = extra {
                return Err(self.extra_feature(name, &id, at));
            }
        }
        Ok(Video { id, labels, num_frames: 1, features: row })
    }

    /// Reads the id (`id` or `video_id`) and the labels (missing key = no labels).
    fn id_and_labels(&self, context: &Features, at: RecordLocation<'_>) -> Result<(String, Vec<u32>)> {
        let found = ID_KEYS.iter().find_map(|key| context.feature.get(*key).map(|f| (*key, f)));
        let (key, feature) = found.ok_or_else(|| DataError::MissingFeature {
            path: at.path.to_path_buf(),
            record: at.record,
            video: VideoContext(None),
            feature: "id".into(),
            expected: "a bytes value under `id` or `video_id`".into(),
        })?;
        let id_bytes = match &feature.kind {
            Some(Kind::BytesList(b)) if b.value.len() == 1 => &b.value[0],
            Some(Kind::BytesList(b)) => {
                return Err(DataError::FeatureLength {
                    path: at.path.to_path_buf(),
                    record: at.record,
                    video: VideoContext(None),
                    feature: key.into(),
                    unit: "values",
                    expected: 1,
                    found: b.value.len(),
                })
            }
            other => {
                return Err(DataError::WrongFeatureType {
                    path: at.path.to_path_buf(),
                    record: at.record,
                    video: VideoContext(None),
                    feature: key.into(),
                    expected: "bytes_list",
                    found: other.as_ref().map_or("no value", Kind::type_name),
                })
            }
        };
        let id = String::from_utf8(id_bytes.clone()).map_err(|_| DataError::IdNotUtf8 {
            path: at.path.to_path_buf(),
            record: at.record,
            hex: id_bytes.iter().map(|b| format!("{b:02x}")).collect(),
        })?;
        let labels = match context.feature.get(LABELS_KEY).map(|f| &f.kind) {
            None => Vec::new(),
            Some(Some(Kind::Int64List(l))) => self.check_labels(&l.value, &id, at)?,
            Some(other) => {
                return Err(DataError::WrongFeatureType {
                    path: at.path.to_path_buf(),
                    record: at.record,
                    video: VideoContext(Some(id)),
                    feature: LABELS_KEY.into(),
                    expected: "int64_list",
                    found: other.as_ref().map_or("no value", Kind::type_name),
                })
            }
        };
        Ok((id, labels))
    }

    fn extra_feature(&self, feature: &str, id: &str, at: RecordLocation<'_>) -> DataError {
        let names: Vec<String> = self.spec.streams().iter().map(|s| format!("`{}`", s.name)).collect();
        DataError::ExtraFeature {
            path: at.path.to_path_buf(),
            record: at.record,
            video: VideoContext(Some(id.to_string())),
            feature: feature.to_string(),
            expected: names.join(", "),
        }
    }

    fn check_labels(&self, raw: &[i64], id: &str, at: RecordLocation<'_>) -> Result<Vec<u32>> {
        raw.iter()
            .map(|&label| {
                let in_range =
                    u32::try_from(label).ok().filter(|&l| self.num_classes.is_none_or(|n| (l as usize) < n));
                in_range.ok_or_else(|| DataError::LabelOutOfRange {
                    path: at.path.to_path_buf(),
                    record: at.record,
                    video: VideoContext(Some(id.to_string())),
                    label,
                    num_classes: self.num_classes,
                })
            })
            .collect()
    }
}

/// Tells a frame-level record from a video-level one: a `SequenceExample` with feature
/// lists is frame-level, an `Example` with features is video-level. `None` when the
/// payload is neither.
pub fn detect_format(payload: &[u8]) -> Option<DataFormat> {
    let example = SequenceExample::decode(payload).ok()?;
    if example.feature_lists.is_some_and(|l| !l.feature_list.is_empty()) {
        Some(DataFormat::FrameLevel)
    } else if example.context.is_some_and(|c| !c.feature.is_empty()) {
        Some(DataFormat::VideoLevel)
    } else {
        None
    }
}
