use loupe::video_model;

#[video_model(
    frames = 300,
    streams = [rgb(features = 1024, pooling = netvlad(clusters = 1000000))],
    hidden = 1024,
    classifier = moe(experts = 2),
    classes = 3862,
)]
pub struct Model;

fn main() {}
