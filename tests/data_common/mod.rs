//! Helpers shared by the data integration tests: temporary directories ([`scratch_dir`],
//! the suite's one helper) and small hand-made records.
#![allow(dead_code)]

use std::path::Path;

use loupe::data::proto::Message;
use loupe::data::proto::{Feature, SequenceExample};
use loupe::data::{DataFormat, FeatureSpec, QuantizedVideo, RecordWriter};

// The one temporary-directory helper of the test suite, shared with `tests/common`.
#[path = "../common/scratch.rs"]
mod scratch;
// Each data test file has its own copy of this module; not every one names the guard.
#[allow(unused_imports)]
pub use scratch::{scratch_dir, ScratchDir};

/// The small spec used by hand-made records: rgb 6 + audio 2 per frame.
pub fn small_spec() -> FeatureSpec {
    FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 6, 2)
}

/// A frame-level video of `frames` frames with byte `t * 10 + d` at frame t, value d.
pub fn small_video(id: &str, labels: &[u32], frames: usize) -> QuantizedVideo {
    let dim = small_spec().feature_dim();
    QuantizedVideo {
        id: id.to_string(),
        labels: labels.to_vec(),
        num_frames: frames,
        frames: (0..frames * dim).map(|i| ((i / dim) * 10 + i % dim) as u8).collect(),
        segments: Vec::new(),
    }
}

/// The SequenceExample payload of `video` in the small spec.
pub fn payload(video: &QuantizedVideo) -> Vec<u8> {
    video.to_sequence_example(&small_spec(), "id").encode_to_vec()
}

/// Writes records holding `payloads` to `path`; returns the byte offset of each record.
pub fn write_records(path: &Path, payloads: &[Vec<u8>]) -> Vec<usize> {
    let mut writer = RecordWriter::create(path).unwrap();
    let mut offsets = Vec::new();
    let mut offset = 0;
    for p in payloads {
        offsets.push(offset);
        offset += p.len() + 16;
        writer.write_record(p).unwrap();
    }
    writer.finish().unwrap();
    offsets
}

/// A SequenceExample with `id`, labels, and the given rgb/audio frames.
pub fn sequence_example(id: &[u8], labels: &[i64], rgb: Vec<Vec<u8>>, audio: Vec<Vec<u8>>) -> Vec<u8> {
    let mut example = SequenceExample::default();
    let context = example.context.get_or_insert_with(Default::default);
    context.feature.insert("id".into(), Feature::bytes(vec![id.to_vec()]));
    context.feature.insert("labels".into(), Feature::int64s(labels.to_vec()));
    let lists = example.feature_lists.get_or_insert_with(Default::default);
    for (name, frames) in [("rgb", rgb), ("audio", audio)] {
        if !frames.is_empty() {
            let list = lists.feature_list.entry(name.into()).or_default();
            list.feature = frames.into_iter().map(|f| Feature::bytes(vec![f])).collect();
        }
    }
    example.encode_to_vec()
}
