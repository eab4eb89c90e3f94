//! Bad input: every problem is a specific error naming the file and the record, and
//! `skip_corrupt` skips and counts.

mod data_common;

use std::path::Path;

use data_common::{payload, scratch_dir, sequence_example, small_spec, small_video, write_records};
use loupe::data::{DataError, DataFormat, RecordPart, SkipReport, Video, VideoDecoder, VideoReader};

fn decoder() -> VideoDecoder {
    VideoDecoder::new(DataFormat::FrameLevel, small_spec()).with_num_classes(10)
}

fn read_all(path: &Path) -> Result<Vec<Video>, DataError> {
    VideoReader::open(path, &decoder())?.collect()
}

fn read_skipping(path: &Path) -> (Vec<Video>, SkipReport) {
    let mut reader = VideoReader::open(path, &decoder()).unwrap().skip_corrupt(true);
    let videos = reader.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    (videos, reader.skip_report().clone())
}

fn three_videos(dir: &Path) -> (std::path::PathBuf, Vec<usize>) {
    let path = dir.join("three.tfrecord");
    let payloads: Vec<Vec<u8>> = (0..3).map(|i| payload(&small_video(&format!("v{i}"), &[i], 4))).collect();
    let offsets = write_records(&path, &payloads);
    (path, offsets)
}

fn assert_names(error: &DataError, path: &Path, record: Option<u64>) {
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    if let Some(r) = record {
        assert!(text.contains(&format!("record {r}")), "{text}");
    }
}

#[test]
fn good_file_reads_back() {
    let dir = scratch_dir("good");
    let (path, _) = three_videos(&dir);
    let videos = read_all(&path).unwrap();
    assert_eq!(videos.len(), 3);
    assert_eq!(videos[1].labels, [1]);
    assert_eq!(videos[2].features.len(), 4 * 8);
}

#[test]
fn truncated_record() {
    let dir = scratch_dir("truncated");
    let (path, _) = three_videos(&dir);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    let error = read_all(&path).unwrap_err();
    assert!(matches!(error, DataError::Truncated { record: 2, part: RecordPart::Payload, .. }), "{error:?}");
    assert_names(&error, &path, Some(2));

    let (videos, report) = read_skipping(&path);
    assert_eq!(videos.len(), 2);
    assert_eq!(report.abandoned_files, 1);
}

#[test]
fn flipped_byte_in_length_header() {
    let dir = scratch_dir("flip-length");
    let (path, offsets) = three_videos(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[1] + 1] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let error = read_all(&path).unwrap_err();
    assert!(matches!(error, DataError::CrcMismatch { record: 1, part: RecordPart::Length, .. }), "{error:?}");
    assert_names(&error, &path, Some(1));
    assert!(error.to_string().contains("length"));
}

#[test]
fn flipped_byte_in_first_length_header_looks_like_another_format() {
    let dir = scratch_dir("flip-first-length");
    let (path, _) = three_videos(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let error = read_all(&path).unwrap_err();
    assert!(matches!(error, DataError::NotTfRecord { .. }), "{error:?}");
    assert_names(&error, &path, Some(0));
}

#[test]
fn flipped_byte_in_payload_is_skippable() {
    let dir = scratch_dir("flip-payload");
    let (path, offsets) = three_videos(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[1] + 12 + 5] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let error = read_all(&path).unwrap_err();
    assert!(
        matches!(error, DataError::CrcMismatch { record: 1, part: RecordPart::Payload, .. }),
        "{error:?}"
    );
    assert_names(&error, &path, Some(1));

    let (videos, report) = read_skipping(&path);
    let ids: Vec<_> = videos.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["v0", "v2"]);
    assert_eq!(report.skipped_records, 1);
    assert_eq!(report.abandoned_files, 0);
    assert!(report.messages[0].contains("record 1"));
}

#[test]
fn wrong_frame_byte_length() {
    let dir = scratch_dir("frame-size");
    let path = dir.join("f.tfrecord");
    let bad = sequence_example(b"bad", &[1], vec![vec![0; 6], vec![0; 5]], vec![vec![0; 2], vec![0; 2]]);
    write_records(&path, &[payload(&small_video("ok", &[0], 2)), bad]);
    let error = read_all(&path).unwrap_err();
    match &error {
        DataError::FrameSize { record: 1, frame: 1, expected: 6, found: 5, feature, .. } => {
            assert_eq!(feature, "rgb")
        }
        other => panic!("{other:?}"),
    }
    assert_names(&error, &path, Some(1));
    assert!(error.to_string().contains("\"bad\""), "{error}");
}

#[test]
fn label_not_below_the_number_of_classes() {
    let dir = scratch_dir("label");
    let path = dir.join("l.tfrecord");
    let bad = sequence_example(b"x", &[3, 10], vec![vec![0; 6]], vec![vec![0; 2]]);
    let negative = sequence_example(b"y", &[-1], vec![vec![0; 6]], vec![vec![0; 2]]);
    write_records(&path, &[bad, negative]);
    let error = read_all(&path).unwrap_err();
    assert!(
        matches!(error, DataError::LabelOutOfRange { record: 0, label: 10, num_classes: Some(10), .. }),
        "{error:?}"
    );
    assert_names(&error, &path, Some(0));
    assert!(error.to_string().contains("0..=9"), "{error}");

    let (videos, report) = read_skipping(&path);
    assert!(videos.is_empty());
    assert_eq!(report.skipped_records, 2);
}

#[test]
fn missing_feature_and_missing_id() {
    let dir = scratch_dir("missing");
    let path = dir.join("m.tfrecord");
    let no_audio = sequence_example(b"x", &[1], vec![vec![0; 6]], vec![]);
    write_records(&path, &[no_audio]);
    let error = read_all(&path).unwrap_err();
    match &error {
        DataError::MissingFeature { record: 0, feature, .. } => assert_eq!(feature, "audio"),
        other => panic!("{other:?}"),
    }
    assert_names(&error, &path, Some(0));

    let mut video = small_video("id", &[1], 1).to_sequence_example(&small_spec(), "youtube_id");
    video.context.as_mut().unwrap().feature.remove("id");
    write_records(&path, &[loupe::data::proto::Message::encode_to_vec(&video)]);
    let error = read_all(&path).unwrap_err();
    assert!(matches!(&error, DataError::MissingFeature { feature, .. } if feature == "id"), "{error:?}");
    assert!(error.to_string().contains("video_id"));
}

#[test]
fn empty_file_is_an_error_unless_skipping() {
    let dir = scratch_dir("empty");
    let path = dir.join("empty.tfrecord");
    std::fs::write(&path, b"").unwrap();
    let error = read_all(&path).unwrap_err();
    assert!(matches!(error, DataError::EmptyFile { .. }), "{error:?}");
    assert_names(&error, &path, None);
    let (videos, report) = read_skipping(&path);
    assert!(videos.is_empty());
    assert_eq!(report.abandoned_files, 1);
}

#[test]
fn text_file_is_not_tfrecord() {
    let dir = scratch_dir("text");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "These are notes, not a TFRecord file.\n").unwrap();
    let error = read_all(&path).unwrap_err();
    assert!(matches!(error, DataError::NotTfRecord { .. }), "{error:?}");
    assert_names(&error, &path, Some(0));
    let tiny = dir.join("tiny.txt");
    std::fs::write(&tiny, "hi").unwrap();
    assert!(matches!(read_all(&tiny).unwrap_err(), DataError::NotTfRecord { .. }));
}

#[test]
fn payload_that_is_not_protobuf() {
    let dir = scratch_dir("garbage");
    let path = dir.join("g.tfrecord");
    write_records(&path, &[vec![0xff, 0xff, 0xff, 0xff]]);
    let error = read_all(&path).unwrap_err();
    assert!(matches!(error, DataError::Decode { record: 0, .. }), "{error:?}");
    assert_names(&error, &path, Some(0));
    assert!(std::error::Error::source(&error).is_some(), "the protobuf cause is kept");
}

#[test]
fn id_that_is_not_utf8() {
    let dir = scratch_dir("utf8");
    let path = dir.join("u.tfrecord");
    write_records(&path, &[sequence_example(&[0x66, 0xff], &[1], vec![vec![0; 6]], vec![vec![0; 2]])]);
    let error = read_all(&path).unwrap_err();
    assert!(matches!(&error, DataError::IdNotUtf8 { hex, .. } if hex == "66ff"), "{error:?}");
    assert_names(&error, &path, Some(0));
}

#[test]
fn mismatched_frame_counts_and_zero_frames() {
    let dir = scratch_dir("counts");
    let path = dir.join("c.tfrecord");
    write_records(&path, &[sequence_example(b"x", &[1], vec![vec![0; 6]; 3], vec![vec![0; 2]; 2])]);
    let error = read_all(&path).unwrap_err();
    assert!(
        matches!(error, DataError::FeatureLength { expected: 3, found: 2, unit: "frames", .. }),
        "{error:?}"
    );

    let mut empty = small_video("e", &[1], 1).to_sequence_example(&small_spec(), "id");
    for list in empty.feature_lists.as_mut().unwrap().feature_list.values_mut() {
        list.feature.clear();
    }
    write_records(&path, &[loupe::data::proto::Message::encode_to_vec(&empty)]);
    assert!(matches!(read_all(&path).unwrap_err(), DataError::NoFrames { record: 0, .. }));
}

#[test]
fn skip_corrupt_counts_mixed_problems() {
    let dir = scratch_dir("mixed");
    let path = dir.join("mixed.tfrecord");
    let records = vec![
        payload(&small_video("a", &[1], 2)),
        sequence_example(b"bad-label", &[11], vec![vec![0; 6]], vec![vec![0; 2]]),
        sequence_example(b"bad-frame", &[1], vec![vec![0; 7]], vec![vec![0; 2]]),
        payload(&small_video("b", &[2], 3)),
        payload(&small_video("crc", &[2], 3)),
        payload(&small_video("c", &[], 1)),
    ];
    let offsets = write_records(&path, &records);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[4] + 12] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    let (videos, report) = read_skipping(&path);
    let ids: Vec<_> = videos.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(report.skipped_records, 3);
    assert_eq!(report.messages.len(), 3);
}
