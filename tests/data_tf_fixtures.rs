//! Files written by real TensorFlow (tests/fixtures/tf-written, see its README) read
//! back with the values `truth.json` records.

use std::path::PathBuf;

use loupe::data::{
    detect_file_format, DataFormat, DecodedVideo, VideoDecoder, VideoReader, VideoSummary, DEFAULT_MAX_FRAMES,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf-written")
}

fn truth() -> Value {
    let text = std::fs::read_to_string(fixtures().join("truth.json")).expect("truth.json is committed");
    serde_json::from_str(&text).expect("truth.json is JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("a list").iter().map(|x| x.as_f64().expect("a number")).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Per-stream means over the rows of `features` (`rows x (1024 + 128)`).
fn stream_means(features: &[f32], rows: usize) -> (Vec<f64>, Vec<f64>) {
    let dim = 1152;
    assert_eq!(features.len(), rows * dim);
    let mut sums = vec![0f64; dim];
    for row in features.chunks_exact(dim) {
        for (s, &x) in sums.iter_mut().zip(row) {
            *s += f64::from(x);
        }
    }
    let means: Vec<f64> = sums.iter().map(|s| s / rows as f64).collect();
    (means[..1024].to_vec(), means[1024..].to_vec())
}

fn assert_close(found: &[f64], expected: &[f64], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: length");
    for (i, (f, e)) in found.iter().zip(expected).enumerate() {
        assert!((f - e).abs() <= 1e-5, "{what}[{i}]: found {f}, expected {e}");
    }
}

#[test]
fn every_fixture_file_reads_as_tensorflow_wrote_it() {
    let truth = truth();
    let num_classes = truth["num_classes"].as_u64().unwrap() as usize;
    let files = truth["files"].as_object().unwrap();
    assert_eq!(files.len(), 10);
    let mut long_videos = 0;
    let mut videos = 0;
    for (name, file) in files {
        let path = fixtures().join(name);
        let format = match file["format"].as_str().unwrap() {
            "frame" => DataFormat::FrameLevel,
            "video" => DataFormat::VideoLevel,
            other => panic!("unknown format {other}"),
        };
        assert_eq!(detect_file_format(&path).unwrap(), format, "{name}");
        let decoder = VideoDecoder::youtube8m(format).with_num_classes(num_classes);
        let decoded: Vec<DecodedVideo> = {
            let mut reader = VideoReader::open(&path, &decoder).unwrap();
            std::iter::from_fn(|| reader.next_decoded()).collect::<Result<_, _>>().unwrap()
        };
        let records = file["records"].as_array().unwrap();
        assert_eq!(decoded.len(), records.len(), "{name}: record count");
        for (video, record) in decoded.iter().zip(records) {
            videos += 1;
            let what = format!("{name} {:?}", video.id());
            assert_eq!(hex(video.id().as_bytes()), record["id_hex"].as_str().unwrap(), "{what}: id bytes");
            assert_eq!(video.id(), record["id"].as_str().unwrap());
            let labels: Vec<u32> =
                record["labels"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap() as u32).collect();
            assert_eq!(video.labels(), labels.as_slice(), "{what}: labels");

            let spec = decoder.spec();
            let summary = VideoSummary::of(video, spec);
            let features = video.clone().into_video().features;
            match format {
                DataFormat::FrameLevel => {
                    let stored = record["num_frames"].as_u64().unwrap() as usize;
                    let kept = stored.min(DEFAULT_MAX_FRAMES);
                    assert_eq!(video.num_frames(), kept, "{what}: frames");
                    let (rgb_key, audio_key) = if stored > DEFAULT_MAX_FRAMES {
                        long_videos += 1;
                        ("rgb_mean_first300", "audio_mean_first300")
                    } else {
                        ("rgb_mean", "audio_mean")
                    };
                    let (rgb, audio) = stream_means(&features, kept);
                    assert_close(&rgb, &floats(&record[rgb_key]), &format!("{what}: {rgb_key}"));
                    assert_close(&audio, &floats(&record[audio_key]), &format!("{what}: {audio_key}"));
                    // The exact byte-sum means of `inspect --per-video` agree too.
                    assert_close(&summary.means["mean_rgb"], &floats(&record[rgb_key]), &what);
                    assert_close(&summary.means["mean_audio"], &floats(&record[audio_key]), &what);
                }
                DataFormat::VideoLevel => {
                    assert_eq!(video.num_frames(), 1);
                    let (rgb, audio) = stream_means(&features, 1);
                    assert_close(&rgb, &floats(&record["rgb_mean"]), &format!("{what}: mean_rgb"));
                    assert_close(&audio, &floats(&record["audio_mean"]), &format!("{what}: mean_audio"));
                    assert_close(&summary.means["mean_rgb"], &floats(&record["rgb_mean"]), &what);
                }
            }
        }
    }
    assert_eq!(long_videos, 1, "the fixtures hold one video over 300 frames");
    assert_eq!(videos, 68);
}

#[test]
fn truncation_is_configurable_and_keeps_the_first_frames() {
    let path = fixtures().join("frame/train0001.tfrecord");
    let full = VideoDecoder::youtube8m(DataFormat::FrameLevel).with_max_frames(usize::MAX);
    let long = VideoReader::open(&path, &full)
        .unwrap()
        .map(Result::unwrap)
        .find(|v| v.id == "long_360_frames")
        .unwrap();
    assert_eq!(long.num_frames, 360);
    let truth = truth();
    let record = truth["files"]["frame/train0001.tfrecord"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "long_360_frames")
        .unwrap()
        .clone();
    let (rgb, _) = stream_means(&long.features, 360);
    assert_close(&rgb, &floats(&record["rgb_mean"]), "full rgb mean");

    let short = VideoDecoder::youtube8m(DataFormat::FrameLevel).with_max_frames(300);
    let cut = VideoReader::open(&path, &short)
        .unwrap()
        .map(Result::unwrap)
        .find(|v| v.id == "long_360_frames")
        .unwrap();
    assert_eq!(cut.features[..], long.features[..300 * 1152]);
}

#[test]
fn the_2017_video_id_key_is_accepted() {
    for (name, format) in [
        ("frame/video_id_2017.tfrecord", DataFormat::FrameLevel),
        ("video/video_id_2017.tfrecord", DataFormat::VideoLevel),
    ] {
        let decoder = VideoDecoder::youtube8m(format);
        let ids: Vec<String> =
            VideoReader::open(fixtures().join(name), &decoder).unwrap().map(|v| v.unwrap().id).collect();
        assert_eq!(ids, ["2017_style_a", "2017_style_b"]);
    }
}
