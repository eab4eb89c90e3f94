use loupe::video_model;

// Frame masks need a pooling that takes them (NeXtVLAD), and frames.
#[video_model(
    frames = 30,
    frame_mask = true,
    streams = [rgb(features = 64, pooling = netvlad(clusters = 8)), audio(features = 8, pooling = average)],
    classifier = logistic,
    classes = 20,
)]
pub struct NothingToMask;

#[video_model(
    input = video_level,
    frame_mask = true,
    streams = [mean_rgb(features = 64)],
    classifier = logistic,
    classes = 20,
)]
pub struct NoFrames;

#[video_model(
    frames = 30,
    frame_mask = 1,
    streams = [rgb(features = 64, pooling = nextvlad(clusters = 8))],
    classifier = logistic,
    classes = 20,
)]
pub struct NotABool;

fn main() {}
