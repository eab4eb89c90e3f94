use loupe::video_model;

// A dropout rate is above 0 and below 1.
#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    dropout = 1.0,
    classifier = logistic,
    classes = 20,
)]
pub struct DropsEverything;

#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    dropout = 0,
    classifier = logistic,
    classes = 20,
)]
pub struct DropsNothing;

#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    dropout = true,
    classifier = logistic,
    classes = 20,
)]
pub struct NotARate;

fn main() {}
