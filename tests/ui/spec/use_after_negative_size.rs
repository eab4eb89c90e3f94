use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::video_model;

// A negative cluster count is reported as negative, once; the training step below that
// uses the model adds no error.
#[video_model(
    frames = 30,
    streams = [rgb(features = 16, pooling = netvlad(clusters = -8))],
    classifier = logistic,
    classes = 10,
)]
pub struct Model;

fn main() {
    let dev = loupe::device::cpu();
    let mut m = dev.build_module::<Model, f32>();
    let x: Tensor<(usize, Const<30>, Const<16>), f32, _> = dev.zeros_like(&(2, Const, Const));
    let y = m.try_forward_train(x.traced(m.alloc_grads())).unwrap();
    let _ = y.sum().backward();
    let _ = m.try_l2_penalty();
}
