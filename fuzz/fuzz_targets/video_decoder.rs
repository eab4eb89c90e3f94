//! Arbitrary bytes as a record payload: the decoders return videos or errors, never
//! panic, and the frame-level fast path agrees with the prost reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loupe_core::data::{DataFormat, FeatureSpec, RecordLocation, VideoDecoder};

fuzz_target!(|data: &[u8]| {
    let at = RecordLocation { path: std::path::Path::new("fuzz"), record: 0 };
    let spec = FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 4, 2);
    let frames = VideoDecoder::new(DataFormat::FrameLevel, spec).with_num_classes(50).with_max_frames(3);
    let fast = frames.decode_frames(data, at).map_err(|e| e.to_string());
    let reference = frames.decode_frames_prost(data, at).map_err(|e| e.to_string());
    assert_eq!(fast, reference);
    let _ = VideoDecoder::youtube8m(DataFormat::FrameLevel).decode(data, at);
    let _ = VideoDecoder::youtube8m(DataFormat::VideoLevel).decode(data, at);
    let _ = loupe_core::data::detect_format(data);
});
