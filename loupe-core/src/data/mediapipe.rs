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

use std::path::Path;

use prost::Message;

use super::error::{DataError, RecordLocation, Result, VideoContext};
use super::features::FeatureSpec;
use super::proto::{feature::Kind, Feature, Features, SequenceExample};
use super::reader::detect_file_layout;
use super::tfrecord::RecordReader;
use super::video::{Video, VideoDecoder, ID_KEYS};

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

/// Whether the first record of `path` stores float frames ([`holds_float_frames`]): a
/// MediaPipe feature file.
pub fn detect_float_frames(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let mut records = RecordReader::open(path)?;
    let payload = records.read_record()?.ok_or_else(|| DataError::EmptyFile { path: path.to_path_buf() })?;
    Ok(holds_float_frames(payload))
}

/// The decoder for `path`: format and streams detected from its first record
/// ([`detect_file_layout`]), float frames read as floats ([`detect_float_frames`]).
///
/// ```no_run
/// let decoder = loupe_core::data::mediapipe::detect_decoder("features.tfrecord")?;
/// assert!(decoder.float_frames());
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
pub fn detect_decoder(path: impl AsRef<Path>) -> Result<VideoDecoder> {
    let (format, spec) = detect_file_layout(path.as_ref())?;
    Ok(VideoDecoder::new(format, spec).with_float_frames(detect_float_frames(path)?))
}

/// The streams of a MediaPipe file with its usual sizes: `RGB/feature/floats` 1024 and
/// `AUDIO/feature/floats` 128, in the order the zoo's models take them.
pub fn mediapipe_spec() -> FeatureSpec {
    FeatureSpec::new([(RGB_FEATURE, 1024), (AUDIO_FEATURE, 128)]).expect("two distinct non-empty streams")
}

/// The id of a record without `id` or `video_id`: `clip/data_path`, else `FILE:RECORD`.
fn fallback_id(context: &Features, at: RecordLocation<'_>) -> Vec<u8> {
    match context.feature.get(DATA_PATH_KEY).and_then(|f| f.kind.as_ref()) {
        Some(Kind::BytesList(b)) if b.value.len() == 1 => b.value[0].clone(),
        _ => {
            let file = at
                .path
                .file_name()
                .map_or_else(|| at.path.display().to_string(), |n| n.to_string_lossy().into_owned());
            format!("{file}:{}", at.record).into_bytes()
        }
    }
}

/// Decodes a frame-level payload whose frames are float lists into a float [`Video`].
pub(crate) fn decode_float_frames(
    decoder: &VideoDecoder,
    payload: &[u8],
    at: RecordLocation<'_>,
) -> Result<Video> {
    let example = SequenceExample::decode(payload).map_err(|source| DataError::Decode {
        path: at.path.to_path_buf(),
        record: at.record,
        message: "SequenceExample",
        source,
    })?;
    let mut context = example.context.unwrap_or_default();
    if !ID_KEYS.iter().any(|k| context.feature.contains_key(*k)) {
        let id = fallback_id(&context, at);
        context.feature.insert(ID_KEYS[0].to_string(), Feature::bytes(vec![id]));
    }
    let (id, labels) = decoder.id_and_labels(&context, at)?;
    let ctx = || VideoContext(Some(id.clone()));
    let lists = example.feature_lists.unwrap_or_default().feature_list;
    let spec = decoder.spec();
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
    let num_frames = stored.min(decoder.max_frames());
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
    Ok(Video { id, labels, num_frames, features })
}
