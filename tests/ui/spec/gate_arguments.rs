use loupe::video_model;

// Only `context_gating` takes an argument after pooling (SE Context Gating's reduction).
#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    hidden = 64,
    after_pooling = glu(reduction = 8),
    classifier = logistic,
    classes = 20,
)]
pub struct GluWithReduction;

// Probability gating takes none.
#[video_model(
    frames = 30,
    streams = [rgb(features = 64, pooling = average)],
    classifier = logistic,
    after_classifier = context_gating(reduction = 8),
    classes = 20,
)]
pub struct ProbabilityGatingWithReduction;

fn main() {}
