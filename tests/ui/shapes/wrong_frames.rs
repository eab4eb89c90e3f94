// The model samples 10 frames; a batch of 12-frame videos is a type error.
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::zoo::SmallGatedNetVlad;

fn main() {
    let dev = loupe::device::cpu();
    let model = dev.build_module::<SmallGatedNetVlad, f32>();
    let x: Tensor<(usize, Const<12>, Const<24>), f32, Cpu> = dev.zeros_like(&(2, Const, Const));
    let _ = model.try_forward_eval(x);
}
