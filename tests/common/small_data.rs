//! Synthetic frame-level shards at the small zoo models' sizes (10 classes, rgb 16 +
//! audio 8; 600 training videos in 2 shards, 200 validation videos in 1), for tests that
//! train through the library.

use std::path::{Path, PathBuf};

use super::scratch_dir;
use loupe::data::{generate, DataFormat, FeatureSpec, SynthConfig, VideoDecoder};

/// The written shards and the decoder that reads them.
pub struct SmallData {
    pub dir: super::ScratchDir,
    pub train: Vec<PathBuf>,
    pub validate: Vec<PathBuf>,
    pub decoder: VideoDecoder,
}

/// Writes the shards into a fresh temporary directory named after the calling file and
/// `name` ([`scratch_dir`]), videos of `min_frames` to 20 frames, labels drawn from `seed`.
#[track_caller]
pub fn small_synthetic(name: &str, seed: u64, min_frames: usize) -> SmallData {
    let dir = scratch_dir(name);
    let config = SynthConfig {
        seed,
        num_classes: 10,
        train_videos: 600,
        validate_videos: 200,
        train_shards: 2,
        validate_shards: 1,
        min_frames,
        max_frames: 20,
        rgb_size: 16,
        audio_size: 8,
        video_level: false,
        rated_segments: false,
    };
    let summary = generate(&dir, &config).unwrap();
    let (validate, train) =
        summary.frame_files.iter().cloned().partition(|p| file_name(p).starts_with("validate"));
    let decoder = VideoDecoder::new(
        DataFormat::FrameLevel,
        FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 16, 8),
    );
    SmallData { dir, train, validate, decoder }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}
