//! The synthetic generator: deterministic, readable, labels in range, structured.

mod data_common;

use data_common::scratch_dir;
use loupe::data::{
    expand_glob, generate, DataFormat, FeatureSpec, SynthConfig, VideoDecoder, VideoReader, Vocabulary,
};

fn small() -> SynthConfig {
    SynthConfig {
        seed: 3,
        num_classes: 16,
        train_videos: 40,
        validate_videos: 12,
        train_shards: 3,
        validate_shards: 2,
        min_frames: 2,
        max_frames: 9,
        rgb_size: 16,
        audio_size: 4,
        video_level: true,
        rated_segments: false,
    }
}

fn all_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = expand_glob(&format!("{}/**/*", dir.display())).unwrap();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (scratch_dir("synth-a"), scratch_dir("synth-b"), scratch_dir("synth-c"));
    generate(&a, &small()).unwrap();
    generate(&b, &small()).unwrap();
    generate(&c, &SynthConfig { seed: 4, ..small() }).unwrap();
    let (a, b, c) = (all_bytes(&a), all_bytes(&b), all_bytes(&c));
    assert_eq!(a.len(), 3 + 2 + 3 + 2 + 1);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn output_is_readable_with_labels_in_range_and_matching_means() {
    let dir = scratch_dir("synth-read");
    let config = small();
    let summary = generate(&dir, &config).unwrap();
    let frame_decoder = VideoDecoder::new(
        DataFormat::FrameLevel,
        FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 16, 4),
    )
    .with_num_classes(config.num_classes);
    let video_decoder = VideoDecoder::new(
        DataFormat::VideoLevel,
        FeatureSpec::youtube8m_sized(DataFormat::VideoLevel, 16, 4),
    )
    .with_num_classes(config.num_classes);
    let mut videos = 0;
    let mut frames_total = 0u64;
    for (frame_file, video_file) in summary.frame_files.iter().zip(&summary.video_files) {
        let frames: Vec<_> =
            VideoReader::open(frame_file, &frame_decoder).unwrap().collect::<Result<_, _>>().unwrap();
        let means: Vec<_> =
            VideoReader::open(video_file, &video_decoder).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), means.len());
        for (f, m) in frames.iter().zip(&means) {
            videos += 1;
            frames_total += f.num_frames as u64;
            assert_eq!(f.id, m.id);
            assert_eq!(f.labels, m.labels);
            assert!(!f.labels.is_empty());
            assert!(f.labels.iter().all(|&l| (l as usize) < config.num_classes));
            assert!((config.min_frames..=config.max_frames).contains(&f.num_frames));
            for d in 0..20 {
                let mean: f32 =
                    (0..f.num_frames).map(|t| f.features[t * 20 + d]).sum::<f32>() / f.num_frames as f32;
                assert!((mean - m.features[d]).abs() < 1e-4, "{} dim {d}", f.id);
            }
        }
    }
    assert_eq!(videos, 52);
    assert_eq!(frames_total, summary.frames);
    let vocabulary = Vocabulary::load(&summary.vocabulary).unwrap();
    assert_eq!(vocabulary.len(), 16);
    assert!(vocabulary.entry(3).unwrap().vertical == "Co-occurrence");
    assert!(vocabulary.entry(7).unwrap().vertical == "Audio");
}

#[test]
fn bad_configurations_are_errors() {
    let dir = scratch_dir("synth-bad");
    for config in [
        SynthConfig { num_classes: 1, ..small() },
        SynthConfig { min_frames: 0, ..small() },
        SynthConfig { min_frames: 10, max_frames: 9, ..small() },
        SynthConfig { train_videos: 2, train_shards: 3, ..small() },
    ] {
        assert!(matches!(generate(&dir, &config), Err(loupe::data::DataError::Config(_))));
    }
}
