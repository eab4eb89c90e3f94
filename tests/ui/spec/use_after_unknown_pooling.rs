use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::video_model;

// One mistake (a typo in a pooling kind), one error: the code below, which builds the
// model, reads its consts, describes it and feeds it frames, adds none.
#[video_model(
    frames = 30,
    streams = [rgb(features = 16, pooling = netvald(clusters = 4)), audio(features = 8, pooling = average)],
    hidden = 32,
    classifier = moe(experts = 2),
    classes = 10,
)]
pub struct Model;

fn evaluate<M: VideoModel<f32, Cpu>>(m: &M, x: Tensor<(usize, M::Frames, M::Features), f32, Cpu>) -> usize {
    m.try_forward_eval(x).map(|y| y.shape().0).unwrap_or(0)
}

fn main() {
    let dev = loupe::device::cpu();
    let m = dev.build_module::<Model, f32>();
    assert_eq!((Model::FRAMES, Model::FEATURES, Model::CLASSES), (30, 24, 10));
    let _ = <ModelModel<f32, Cpu> as VideoModel<f32, Cpu>>::describe();
    let x: Tensor<(usize, Const<30>, Const<24>), f32, _> = dev.zeros_like(&(2, Const, Const));
    let _ = evaluate(&m, x.clone());
    let _: Tensor<(usize, Const<10>), f32, _> = m.forward(x);
}
