//! MediaPipe's YouTube-8M feature files: `tf.train.SequenceExample`s whose feature lists
//! hold one float list per frame (`RGB/feature/floats`, `AUDIO/feature/floats`), not
//! YouTube-8M's quantised bytes. They are read as they are, without dequantisation.
//!
//! The video id is the context's `id` (or `video_id`) when present, else its
//! `clip/data_path` (the video file MediaPipe read), else `FILE:RECORD` (the file name and
//! the record's index); `labels` are read when present. Frames are truncated to the
//! decoder's `max_frames` as quantised frames are; when the streams hold different numbers
//! of frames (MediaPipe's audio windows may end a frame before or after the images), the
//! frames all streams have are kept. How these features relate to the
//! dataset's (PCA, quantisation) is in the README, "MediaPipe features".
//!
//! This module knows the record layout only: the decoder
//! ([`VideoDecoder::with_float_frames`](super::video::VideoDecoder::with_float_frames))
//! reads records with it, and the file-level detection is the reader's
//! ([`detect_decoder`](super::reader::detect_decoder)).

use std::collections::BTreeMap;

use prost::Message;

use super::error::{DataError, RecordLocation, Result, VideoContext};
use super::features::{FeatureSpec, ID_KEYS};
use super::proto::{feature::Kind, Feature, FeatureList, Features, SequenceExample};

/// MediaPipe's feature list of the RGB stream (1024 floats per frame in its YouTube-8M
/// graph, after PCA; see the README for the un-PCA'd variant).
pub const RGB_FEATURE: &str = "RGB/feature/floats";
/// MediaPipe's feature list of the audio stream (128 floats per frame).
pub const AUDIO_FEATURE: &str = "AUDIO/feature/floats";
/// The context key MediaPipe's extraction graph stores the video's path under.
pub const DATA_PATH_KEY: &str = "clip/data_path";

/// Whether a frame-level payload stores its frames as float lists: some feature list's
/// first frame is a `FloatList`.
pub fn holds_float_frames(payload: &[u8]) -> bool {
    let Ok(example) = SequenceExample::decode(payload) else { return false };
    let lists = example.feature_lists.unwrap_or_default().feature_list;
    lists
        .values()
        .any(|l| matches!(l.feature.first().and_then(|f| f.kind.as_ref()), Some(Kind::FloatList(_))))
}

/// The streams of a MediaPipe file with its usual sizes: `RGB/feature/floats` 1024 and
/// `AUDIO/feature/floats` 128, in the order the zoo's models take them.
pub fn mediapipe_spec() -> FeatureSpec {
    FeatureSpec::new([(RGB_FEATURE, 1024), (AUDIO_FEATURE, 128)]).expect("two distinct non-empty streams")
}

/// Gives a record without `id` or `video_id` an `id`: its `clip/data_path`, else
/// `FILE:RECORD`.
pub(super) fn insert_fallback_id(context: &mut Features, at: RecordLocation<'_>) {
    if ID_KEYS.iter().any(|k| context.feature.contains_key(*k)) {
        return;
    }
    let id = match context.feature.get(DATA_PATH_KEY).and_then(|f| f.kind.as_ref()) {
        Some(Kind::BytesList(b)) if b.value.len() == 1 => b.value[0].clone(),
        _ => {
            let file = at
                .path
                .file_name()
                .map_or_else(|| at.path.display().to_string(), |n| n.to_string_lossy().into_owned());
            format!("{file}:{}", at.record).into_bytes()
        }
    };
    context.feature.insert(ID_KEYS[0].to_string(), Feature::bytes(vec![id]));
}

/// The frames of video `id`'s float feature lists: the frames kept (up to `max_frames`)
/// and their `frames x spec.feature_dim()` values, streams concatenated per frame.
pub(super) fn float_frames(
    lists: &BTreeMap<String, FeatureList>,
    spec: &FeatureSpec,
    max_frames: usize,
    id: &str,
    at: RecordLocation<'_>,
) -> Result<(usize, Vec<f32>)> {
    let ctx = || VideoContext(Some(id.to_string()));
    let mut stream_lists = Vec::with_capacity(spec.streams().len());
    for stream in spec.streams() {
        let list = lists.get(&stream.name).ok_or_else(|| DataError::MissingFeature {
            path: at.path.to_path_buf(),
            record: at.record,
            video: ctx(),
            feature: stream.name.clone(),
            expected: format!("a feature list of {}-float frames", stream.size),
        })?;
        stream_lists.push(list);
    }
    // MediaPipe frames audio in 0.96 s windows and images at 1 fps: the streams may end a
    // frame apart. The frames both have are kept.
    let stored = stream_lists.iter().map(|l| l.feature.len()).min().unwrap_or(0);
    if stored == 0 {
        return Err(DataError::NoFrames { path: at.path.to_path_buf(), record: at.record, video: ctx() });
    }
    let num_frames = stored.min(max_frames);
    let dim = spec.feature_dim();
    let mut features = vec![0.0f32; num_frames * dim];
    for ((offset, stream), list) in spec.offsets().zip(&stream_lists) {
        for (t, frame) in list.feature.iter().take(num_frames).enumerate() {
            let values = match &frame.kind {
                Some(Kind::FloatList(f)) => &f.value,
                other => {
                    return Err(DataError::WrongFeatureType {
                        path: at.path.to_path_buf(),
                        record: at.record,
                        video: ctx(),
                        feature: format!("{}[{t}]", stream.name),
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
                    feature: format!("{}[{t}]", stream.name),
                    unit: "values",
                    expected: stream.size,
                    found: values.len(),
                });
            }
            features[t * dim + offset..t * dim + offset + stream.size].copy_from_slice(values);
        }
    }
    Ok((num_frames, features))
}
