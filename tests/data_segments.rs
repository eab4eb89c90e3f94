//! Segment ratings (the 2019 temporal localisation task) read from files written by real
//! TensorFlow (tests/fixtures/yt8m-2019-segments, see its README), and the errors of
//! records whose ratings do not fit together.

mod common;

use std::path::{Path, PathBuf};

use loupe::data::proto::{Feature, Message};
use loupe::data::segments::{segment_frames, segment_rows};
use loupe::data::{
    read_segment_ratings, DataError, DataFormat, DecodedVideo, FeatureSpec, QuantizedVideo, RatedSegment,
    RecordWriter, VideoDecoder, VideoReader,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yt8m-2019-segments")
}

fn truth() -> Value {
    let text = std::fs::read_to_string(fixtures().join("truth.json")).expect("truth.json is committed");
    serde_json::from_str(&text).expect("truth.json is JSON")
}

fn read_all(path: &Path, decoder: &VideoDecoder) -> Result<Vec<QuantizedVideo>, DataError> {
    let mut reader = VideoReader::open(path, decoder)?;
    std::iter::from_fn(|| reader.next_decoded())
        .map(|v| match v? {
            DecodedVideo::Frames(v) => Ok(v),
            DecodedVideo::Mean(_) | DecodedVideo::Floats(_) => panic!("the fixtures are frame-level"),
        })
        .collect()
}

#[test]
fn every_fixture_record_reads_with_the_ratings_tensorflow_stored() {
    let truth = truth();
    let num_classes = truth["num_classes"].as_u64().unwrap() as usize;
    let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel).with_num_classes(num_classes);
    let mut rated = 0;
    for (name, file) in truth["files"].as_object().unwrap() {
        let videos = read_all(&fixtures().join(name), &decoder).unwrap();
        let records = file["records"].as_array().unwrap();
        assert_eq!(videos.len(), records.len(), "{name}: record count");
        for (video, record) in videos.iter().zip(records) {
            let what = format!("{name} {:?}", video.id);
            assert_eq!(video.id, record["id"].as_str().unwrap());
            assert_eq!(
                video.num_frames as u64,
                record["num_frames"].as_u64().unwrap().min(300),
                "{what}: frames kept"
            );
            let labels: Vec<u32> =
                record["labels"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap() as u32).collect();
            assert_eq!(video.labels, labels, "{what}: labels");
            let triples = record["segments"].as_array().unwrap();
            let ends = record["segment_end_times"].as_array().unwrap();
            assert_eq!(video.segments.len(), triples.len(), "{what}: rated segments");
            for ((segment, triple), end) in video.segments.iter().zip(triples).zip(ends) {
                let expected = RatedSegment {
                    label: triple[0].as_u64().unwrap() as u32,
                    start: triple[1].as_u64().unwrap() as u32,
                    end: end.as_u64().unwrap() as u32,
                    score: triple[2].as_f64().unwrap() as f32,
                };
                assert_eq!(*segment, expected, "{what}");
                assert_eq!(segment.is_positive(), expected.score == 1.0);
            }
            rated += video.segments.len();
        }
    }
    // 65 rated pairs in validate (metrics.json), 2 in the edge file.
    assert_eq!(rated, 67);
}

#[test]
fn segment_frames_are_the_frames_tensorflow_summed() {
    // truth.json sums the dequantised rgb and audio values over the frames
    // [start, min(start + 5, num_frames, 300)) of every rated segment.
    let truth = truth();
    let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel);
    let mut checked = 0;
    for (name, file) in truth["files"].as_object().unwrap() {
        let videos = read_all(&fixtures().join(name), &decoder).unwrap();
        for (video, record) in videos.iter().zip(file["records"].as_array().unwrap()) {
            for (segment, sums) in video.segments.iter().zip(record["segment_frame_sums"].as_array().unwrap())
            {
                let frames = segment_frames(video, segment.start as usize);
                assert_eq!(
                    frames.len() as u64,
                    sums[0].as_u64().unwrap(),
                    "{} at {}",
                    video.id,
                    segment.start
                );
                let mut rows = Vec::new();
                assert_eq!(
                    segment_rows(video, segment.start as usize, frames.len(), &mut rows),
                    frames.len()
                );
                let (mut rgb, mut audio) = (0f64, 0f64);
                for row in rows.chunks_exact(1152) {
                    rgb += row[..1024].iter().map(|&x| f64::from(x)).sum::<f64>();
                    audio += row[1024..].iter().map(|&x| f64::from(x)).sum::<f64>();
                }
                assert!(
                    (rgb - sums[1].as_f64().unwrap()).abs() < 1e-3,
                    "{} at {}: rgb {rgb} vs {}",
                    video.id,
                    segment.start,
                    sums[1]
                );
                assert!(
                    (audio - sums[2].as_f64().unwrap()).abs() < 1e-3,
                    "{} at {}: audio",
                    video.id,
                    segment.start
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 67);
}

#[test]
fn a_short_segment_is_repeated_in_order_to_fill_the_model_frames() {
    let video = QuantizedVideo {
        id: "v".into(),
        labels: vec![],
        num_frames: 7,
        frames: (0..7u8).flat_map(|t| [t, 100 + t]).collect(),
        segments: Vec::new(),
    };
    let mut rows = Vec::new();
    // Frames 5 and 6 fill 5 rows as 5 6 5 6 5.
    assert_eq!(segment_rows(&video, 5, 5, &mut rows), 2);
    let firsts: Vec<f32> = rows.chunks_exact(2).map(|r| r[0]).collect();
    let d = loupe::data::dequantize;
    assert_eq!(firsts, [d(5), d(6), d(5), d(6), d(5)]);
}

#[test]
fn the_prost_path_reads_the_same_ratings_as_the_fast_path() {
    let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel);
    let path = fixtures().join("validate/validate01.tfrecord");
    let fast = read_all(&path, &decoder).unwrap();
    let mut records = loupe::data::RecordReader::open(&path).unwrap();
    let mut index = 0;
    while let Some(payload) = records.read_record().unwrap() {
        let at = loupe::data::RecordLocation { path: &path, record: index };
        let slow = decoder.decode_frames_prost(payload, at).unwrap();
        assert_eq!(slow, fast[index as usize]);
        index += 1;
    }
    assert_eq!(index, 10);
}

#[test]
fn ground_truth_ratings_come_from_every_validate_record() {
    let files = vec![
        fixtures().join("validate/validate00.tfrecord"),
        fixtures().join("validate/validate01.tfrecord"),
    ];
    let (ratings, skipped) = read_segment_ratings(&files, false).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(ratings.len(), 20);
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("metrics.json")).unwrap()).unwrap();
    let gt = &metrics["ground_truth"];
    let pairs: usize = ratings.iter().map(|v| v.segments.len()).sum();
    assert_eq!(pairs as u64, gt["rated_pairs"].as_u64().unwrap());
    for (class, count) in gt["positives_per_class"].as_object().unwrap() {
        let class: u32 = class.parse().unwrap();
        let found =
            ratings.iter().flat_map(|v| &v.segments).filter(|s| s.label == class && s.is_positive()).count();
        assert_eq!(found as u64, count.as_u64().unwrap(), "positives of class {class}");
    }
}

#[test]
fn a_rating_past_the_300_frame_window_is_still_a_rating() {
    // The edge video has 305 frames and a rating at 300: valid data, outside the frames
    // the readers keep (Google's SegmentReader fails on it).
    let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel);
    let videos = read_all(&fixtures().join("edge/segment_beyond_300.tfrecord"), &decoder).unwrap();
    assert_eq!(videos[0].num_frames, 300);
    assert_eq!(videos[0].segments.iter().map(|s| s.start).collect::<Vec<_>>(), vec![0, 300]);
}

/// A one-record file whose context holds `lists` (label, start, end, score) for a
/// video of `frames` frames.
fn record_with(dir: &Path, name: &str, frames: usize, lists: [Option<Feature>; 4]) -> PathBuf {
    let spec = FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 4, 2);
    let video = QuantizedVideo {
        id: "bad1".into(),
        labels: vec![3],
        num_frames: frames,
        frames: vec![128; frames * 6],
        segments: Vec::new(),
    };
    let mut example = video.to_sequence_example(&spec, "id");
    let context = example.context.as_mut().unwrap();
    let keys = ["segment_labels", "segment_start_times", "segment_end_times", "segment_scores"];
    for (key, list) in keys.iter().zip(lists) {
        if let Some(list) = list {
            context.feature.insert((*key).to_string(), list);
        }
    }
    let good = video.to_sequence_example(&spec, "id");
    let path = dir.join(name);
    let mut writer = RecordWriter::create(&path).unwrap();
    writer.write_record(&good.encode_to_vec()).unwrap();
    writer.write_record(&example.encode_to_vec()).unwrap();
    writer.finish().unwrap();
    path
}

fn first_error(path: &Path, num_classes: usize) -> String {
    let spec = FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 4, 2);
    let decoder = VideoDecoder::new(DataFormat::FrameLevel, spec).with_num_classes(num_classes);
    let error = read_all(path, &decoder).unwrap_err();
    assert!(error.is_record_local(), "{error}");
    error.to_string()
}

#[test]
fn invalid_ratings_are_errors_naming_file_record_and_video() {
    let dir = common::scratch_dir("segments");
    let ints = |v: &[i64]| Some(Feature::int64s(v.to_vec()));
    let floats = |v: &[f32]| Some(Feature::floats(v.to_vec()));

    let path = record_with(
        &dir,
        "lengths.tfrecord",
        10,
        [ints(&[3, 3]), ints(&[0, 5]), ints(&[5]), floats(&[1.0, 0.0])],
    );
    let text = first_error(&path, 10);
    assert!(text.starts_with(&format!("{}: record 1 (video \"bad1\")", path.display())), "{text}");
    assert!(text.contains("segment_end_times 1"), "{text}");

    let path =
        record_with(&dir, "past_end.tfrecord", 12, [ints(&[3]), ints(&[15]), ints(&[20]), floats(&[1.0])]);
    let text = first_error(&path, 10);
    assert!(
        text.contains("record 1") && text.contains("rated segment 0: start 15 is past the video's end"),
        "{text}"
    );

    let path = record_with(
        &dir,
        "class.tfrecord",
        10,
        [ints(&[3, 10]), ints(&[0, 5]), ints(&[5, 10]), floats(&[1.0, 1.0])],
    );
    let text = first_error(&path, 10);
    assert!(text.contains("rated segment 1: class 10 is outside the vocabulary"), "{text}");

    let path = record_with(&dir, "type.tfrecord", 10, [ints(&[3]), ints(&[0]), ints(&[5]), ints(&[1])]);
    let text = first_error(&path, 10);
    assert!(
        text.contains("`segment_scores` has the wrong type: expected float_list, found int64_list"),
        "{text}"
    );
}

#[test]
fn ratings_survive_a_write_and_read() {
    let spec = FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 4, 2);
    let video = QuantizedVideo {
        id: "rt01".into(),
        labels: vec![1, 2],
        num_frames: 12,
        frames: (0..72).map(|i| i as u8).collect(),
        segments: vec![
            RatedSegment { label: 2, start: 10, end: 15, score: 0.0 },
            RatedSegment { label: 1, start: 0, end: 5, score: 1.0 },
        ],
    };
    let bytes = video.to_sequence_example(&spec, "id").encode_to_vec();
    let decoder = VideoDecoder::new(DataFormat::FrameLevel, spec);
    let at = loupe::data::RecordLocation { path: Path::new("mem"), record: 0 };
    assert_eq!(decoder.decode_frames(&bytes, at).unwrap(), video);
    assert_eq!(decoder.decode_frames_prost(&bytes, at).unwrap(), video);
}

#[test]
fn synthetic_rated_segments_rate_every_label_on_every_block() {
    let dir = common::scratch_dir("synth-rated");
    let config = loupe::data::SynthConfig {
        num_classes: 10,
        train_videos: 20,
        validate_videos: 20,
        train_shards: 1,
        min_frames: 3,
        max_frames: 23,
        rgb_size: 8,
        audio_size: 4,
        video_level: false,
        rated_segments: true,
        ..Default::default()
    };
    let summary = loupe::data::generate(&dir, &config).unwrap();
    let decoder =
        VideoDecoder::new(DataFormat::FrameLevel, FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 8, 4))
            .with_num_classes(10);
    let mut positives = 0;
    for path in &summary.frame_files {
        let validate = path.file_name().unwrap().to_string_lossy().starts_with("validate");
        for video in read_all(path, &decoder).unwrap() {
            if !validate {
                assert!(video.segments.is_empty(), "train videos are not rated");
                continue;
            }
            let blocks = video.num_frames.div_ceil(5);
            assert_eq!(video.segments.len(), video.labels.len() * blocks, "{}", video.id);
            for block in 0..blocks {
                let here: Vec<&RatedSegment> =
                    video.segments.iter().filter(|s| s.start as usize == block * 5).collect();
                assert_eq!(here.len(), video.labels.len());
                assert!(
                    here.iter().filter(|s| s.is_positive()).count() <= 1,
                    "a block shows at most one class"
                );
                positives += here.iter().filter(|s| s.is_positive()).count();
            }
        }
    }
    assert!(positives > 0);
    // Without the flag the same configuration writes the same train split, unrated validate.
    let plain = dir.join("plain");
    let summary =
        loupe::data::generate(&plain, &loupe::data::SynthConfig { rated_segments: false, ..config }).unwrap();
    let train = |root: &Path| std::fs::read(root.join("frame/train0000.tfrecord")).unwrap();
    assert_eq!(train(&dir), train(&plain));
    for path in &summary.frame_files {
        assert!(read_all(path, &decoder).unwrap().iter().all(|v| v.segments.is_empty()));
    }
}
