use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::video_model;

// A missing key is one error; the model's type, its consts and its forward pass still
// exist for the code below.
#[video_model(
    frames = 30,
    streams = [rgb(features = 16, pooling = average)],
    classes = 10,
)]
pub struct Model;

fn main() {
    let dev = loupe::device::cpu();
    let m: ModelModel<f32, Cpu> = dev.build_module::<Model, f32>();
    let x: Tensor<(usize, Const<30>, Const<16>), f32, _> = dev.zeros_like(&(2, Const, Const));
    let y: Tensor<(usize, Const<10>), f32, _> = m.try_forward_eval(x).unwrap();
    assert_eq!(y.shape().0 * Model::CLASSES, 20);
}
