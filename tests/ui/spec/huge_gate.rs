use loupe::video_model;

// Context gating straight on a 262144-value NetVLAD would need a 262144^2 weight.
#[video_model(
    frames = 300,
    streams = [rgb(features = 1024, pooling = netvlad(clusters = 256))],
    after_pooling = context_gating,
    classifier = logistic,
    classes = 3862,
)]
pub struct Model;

fn main() {}
