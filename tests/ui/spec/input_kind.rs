use loupe::video_model;

// `input` is `frames`, `raw_frames` or `video_level`.
#[video_model(
    input = raw,
    frames = 30,
    streams = [rgb(features = 64, pooling = nextvlad(clusters = 8, groups = 8))],
    classifier = logistic,
    classes = 20,
)]
pub struct RawIsNotAKind;

// `raw_frames` is frame-level: like `frames`, it needs `frames`.
#[video_model(
    input = raw_frames,
    streams = [rgb(features = 64, pooling = nextvlad(clusters = 8, groups = 8))],
    classifier = logistic,
    classes = 20,
)]
pub struct RawFramesWithoutFrames;

fn main() {}
