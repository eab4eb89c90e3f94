use loupe::video_model;

// Four mistakes, four errors: a typo in a key, a zero, a duplicate stream, an unknown
// classifier.
#[video_model(
    frame = 300,
    streams = [
        rgb(features = 0, pooling = netvlad(clusters = 64)),
        rgb(features = 128, pooling = average),
    ],
    hidden = 1024,
    classifier = mixture(experts = 2),
    classes = 3862,
)]
pub struct Model;

fn main() {}
