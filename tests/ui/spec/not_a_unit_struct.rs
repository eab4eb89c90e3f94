use loupe::video_model;

#[video_model(
    frames = 300,
    streams = [rgb(features = 1024, pooling = average)],
    classifier = logistic,
    classes = 3862,
)]
pub struct Model<E> {
    e: E,
}

fn main() {}
