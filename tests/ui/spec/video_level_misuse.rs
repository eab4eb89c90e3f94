use loupe::video_model;

// Video-level input has one vector per video: no frame count, no fusion, no pooling.
#[video_model(
    input = video_level,
    frames = 300,
    fusion = late,
    streams = [mean_rgb(features = 1024, pooling = average), mean_audio(features = 128)],
    classifier = moe(experts = 2),
    classes = 3862,
)]
pub struct Model;

fn main() {}
