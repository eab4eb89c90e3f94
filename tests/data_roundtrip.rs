//! Property tests: whatever is written reads back unchanged.

use loupe::data::proto::{Example, Feature, FeatureList, Features, Message, SequenceExample};
use loupe::data::{
    DataFormat, FeatureSpec, QuantizedVideo, RecordLocation, RecordReader, RecordWriter, Video, VideoDecoder,
};
use proptest::prelude::*;

fn feature() -> impl Strategy<Value = Feature> {
    prop_oneof![
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..4).prop_map(Feature::bytes),
        prop::collection::vec(any::<f32>().prop_filter("NaN != NaN", |x| !x.is_nan()), 0..20)
            .prop_map(Feature::floats),
        prop::collection::vec(any::<i64>(), 0..20).prop_map(Feature::int64s),
        Just(Feature { kind: None }),
    ]
}

fn features() -> impl Strategy<Value = Features> {
    prop::collection::btree_map("[a-z_]{0,8}", feature(), 0..5).prop_map(|feature| Features { feature })
}

proptest! {
    #[test]
    fn records_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut writer = RecordWriter::new(Vec::new());
        for p in &payloads {
            writer.write_record(p).unwrap();
        }
        let bytes = writer.finish().unwrap();
        let mut reader = RecordReader::new(bytes.as_slice());
        for p in &payloads {
            prop_assert_eq!(reader.read_record().unwrap(), Some(p.as_slice()));
        }
        prop_assert_eq!(reader.read_record().unwrap(), None);
    }

    #[test]
    fn examples_round_trip(features in features()) {
        let example = Example { features: Some(features) };
        let bytes = example.encode_to_vec();
        prop_assert_eq!(Example::decode(bytes.as_slice()).unwrap(), example);
    }

    #[test]
    fn sequence_examples_round_trip(
        context in features(),
        lists in prop::collection::btree_map("[a-z]{1,6}", prop::collection::vec(feature(), 0..5), 0..4),
    ) {
        let example = SequenceExample {
            context: Some(context),
            feature_lists: Some(loupe::data::proto::FeatureLists {
                feature_list: lists.into_iter().map(|(k, feature)| (k, FeatureList { feature })).collect(),
            }),
        };
        let bytes = example.encode_to_vec();
        prop_assert_eq!(SequenceExample::decode(bytes.as_slice()).unwrap(), example);
    }

    #[test]
    fn frame_level_videos_round_trip(
        id in "\\PC{0,30}",
        labels in prop::collection::vec(0u32..100, 0..10),
        rgb in 1usize..20,
        audio in 1usize..6,
        frames in 1usize..12,
        seed in any::<u64>(),
    ) {
        let spec = FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, rgb, audio);
        let dim = rgb + audio;
        let video = QuantizedVideo {
            id,
            labels,
            num_frames: frames,
            frames: (0..frames * dim).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 7) as u8).collect(),
            segments: Vec::new(),
        };
        let bytes = video.to_sequence_example(&spec, "id").encode_to_vec();
        let decoder = VideoDecoder::new(DataFormat::FrameLevel, spec).with_num_classes(100);
        let at = RecordLocation { path: std::path::Path::new("mem"), record: 0 };
        prop_assert_eq!(decoder.decode_frames(&bytes, at).unwrap(), video.clone());
        // Truncation keeps the first frames.
        let short = decoder.clone().with_max_frames(2).decode_frames(&bytes, at).unwrap();
        prop_assert_eq!(short.num_frames, frames.min(2));
        prop_assert_eq!(&short.frames[..], &video.frames[..frames.min(2) * dim]);
    }

    #[test]
    fn video_level_videos_round_trip(
        id in "[a-zA-Z0-9_-]{1,11}",
        labels in prop::collection::vec(0u32..4000, 0..30),
        values in prop::collection::vec(-3.0f32..3.0, 7),
    ) {
        let spec = FeatureSpec::youtube8m_sized(DataFormat::VideoLevel, 5, 2);
        let video = Video { id, labels, num_frames: 1, features: values };
        let bytes = video.to_example(&spec, "video_id").encode_to_vec();
        let decoder = VideoDecoder::new(DataFormat::VideoLevel, spec);
        let at = RecordLocation { path: std::path::Path::new("mem"), record: 0 };
        prop_assert_eq!(decoder.decode(&bytes, at).unwrap(), video);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_readers(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel);
        let at = RecordLocation { path: std::path::Path::new("mem"), record: 0 };
        let _ = decoder.decode(&bytes, at);
        let _ = VideoDecoder::youtube8m(DataFormat::VideoLevel).decode(&bytes, at);
        let mut reader = RecordReader::new(bytes.as_slice());
        while let Ok(Some(_)) = reader.read_record() {}
    }
}

proptest! {
    /// The fast frame-level path agrees with the prost reference on mutated records.
    #[test]
    fn fast_frame_decoding_matches_prost(
        frames in 1usize..6,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let spec = FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 5, 3);
        let video = QuantizedVideo {
            id: "v".into(),
            labels: vec![1, 2],
            num_frames: frames,
            frames: (0..frames * 8).map(|i| i as u8).collect(),
            segments: Vec::new(),
        };
        let mut bytes = video.to_sequence_example(&spec, "id").encode_to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let decoder = VideoDecoder::new(DataFormat::FrameLevel, spec).with_num_classes(200).with_max_frames(3);
        let at = RecordLocation { path: std::path::Path::new("mem"), record: 0 };
        let fast = decoder.decode_frames(&bytes, at).map_err(|e| e.to_string());
        let reference = decoder.decode_frames_prost(&bytes, at).map_err(|e| e.to_string());
        prop_assert_eq!(fast, reference);
    }
}
