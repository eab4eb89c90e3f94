// The model's frames have 16 + 8 = 24 values; 1152-value frames do not fit.
use loupe::dfdx::prelude::*;
use loupe::zoo::SmallGatedNetVlad;

fn main() {
    let dev = loupe::device::cpu();
    let model = dev.build_module::<SmallGatedNetVlad, f32>();
    let x: Tensor<(usize, Const<10>, Const<1152>), f32, Cpu> = dev.zeros_like(&(2, Const, Const));
    let _ = model.forward(x);
}
