// The paper's Gated NetVLAD reads as its description. This case also makes trybuild
// *build* (not just check) every case, so that const-evaluation errors are caught.
use loupe::video_model;

#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 256)),
        audio(features = 128, pooling = netvlad(clusters = 128)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
pub struct GatedNetVlad;

fn main() {
    assert_eq!(GatedNetVlad::FEATURES, 1152);
    assert_eq!(GatedNetVlad::FRAMES, 300);
    assert_eq!(GatedNetVlad::CLASSES, 3862);
}
