//! Generated models are dfdx modules: they compose with dfdx's own layers when the sizes
//! agree (the mismatched case is `tests/ui/shapes/compose_wrong_size.rs`).

use loupe::dfdx::nn::builders::{Linear, ReLU};
use loupe::dfdx::prelude::*;
use loupe::zoo::SmallGatedNetVlad;

#[test]
fn generated_model_composes_with_dfdx_layers() {
    let dev = loupe::device::cpu_seeded(0);
    let mut model = dev.build_module::<(SmallGatedNetVlad, Linear<10, 5>, ReLU), f32>();
    let x: Tensor<(usize, Const<10>, Const<24>), f32, Cpu> = dev.sample_normal_like(&(3, Const, Const));
    let y: Tensor<(usize, Const<5>), f32, Cpu> = model.forward(x.clone());
    assert_eq!(y.shape().0, 3);
    let y = model.forward_mut(x.traced(model.alloc_grads()));
    let _grads = y.sum().backward();
}
