use loupe::video_model;

#[video_model(
    frames = 300,
    fusion = early(pooling = netvlad(clusters = 64)),
    streams = [rgb(features = 1024, pooling = netvlad(clusters = 64)), audio(features = 128)],
    hidden = 1024,
    classifier = moe(experts = 2),
    classes = 3862,
)]
pub struct Model;

fn main() {}
