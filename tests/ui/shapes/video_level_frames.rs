use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::video_model;

#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 8), mean_audio(features = 4)],
    classifier = logistic,
    classes = 3,
)]
pub struct Tiny;

fn main() {
    let dev = loupe::device::cpu();
    let m = dev.build_module::<Tiny, f32>();
    // A video-level model takes one vector per video, not frames.
    let x: Tensor<(usize, Const<10>, Const<12>), f32, _> = dev.zeros_like(&(2, Const, Const));
    let _ = m.try_forward_eval(x);
}
