// The model outputs 10 class probabilities; a dfdx layer taking 11 cannot follow it.
use loupe::dfdx::nn::builders::Linear;
use loupe::dfdx::prelude::*;
use loupe::zoo::SmallGatedNetVlad;

fn main() {
    let dev = loupe::device::cpu();
    let model = dev.build_module::<(SmallGatedNetVlad, Linear<11, 5>), f32>();
    let x: Tensor<(usize, Const<10>, Const<24>), f32, Cpu> = dev.zeros_like(&(2, Const, Const));
    let _ = model.forward(x);
}
