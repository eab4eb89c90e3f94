use loupe::video_model;

// SE Context Gating's reduction divides the gated values; it must be given.
#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    hidden = 100,
    after_pooling = context_gating(reduction = 8),
    classifier = logistic,
    classes = 20,
)]
pub struct NotDividing;

#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    after_pooling = context_gating(reduction = 0),
    classifier = logistic,
    classes = 20,
)]
pub struct ZeroReduction;

#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    after_pooling = context_gating(),
    classifier = logistic,
    classes = 20,
)]
pub struct MissingReduction;

#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    after_pooling = glu(reduction = 8),
    classifier = logistic,
    classes = 20,
)]
pub struct GluHasNoReduction;

fn main() {}
