// Lin et al.'s 2018 NeXtVLAD reads as its description: per-stream NeXtVLADs, frames
// masked past each video's length, dropout, a hidden layer without bias with batch norm,
// SE Context Gating with reduction 8, a logistic classifier.
use loupe::video_model;

#[video_model(
    frames = 300,
    frame_mask = true,
    streams = [
        rgb(features = 1024, pooling = nextvlad(clusters = 128, groups = 8, expansion = 2)),
        audio(features = 128, pooling = nextvlad(clusters = 64, groups = 4, expansion = 2)),
    ],
    dropout = 0.5,
    hidden = fc(size = 2048, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 8),
    classifier = logistic(l2 = 1e-5),
    classes = 3862,
)]
pub struct NeXtVlad2018;

// `frame_mask = false` is the default; dropout and SE gating need no NeXtVLAD.
#[video_model(
    frames = 30,
    frame_mask = false,
    streams = [rgb(features = 64, pooling = netvlad(clusters = 8))],
    dropout = 0.2,
    hidden = 64,
    after_pooling = context_gating(reduction = 16),
    classifier = moe(experts = 2),
    classes = 20,
)]
pub struct GatedVladWithDropout;

fn main() {
    assert_eq!(NeXtVlad2018::FEATURES, 1152);
    assert_eq!(GatedVladWithDropout::FRAMES, 30);
}
