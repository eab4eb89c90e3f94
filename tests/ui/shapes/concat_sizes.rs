// The concatenation helper generated code uses checks, at build time, that the size the
// macro computed is the sum of the parts (`cargo check` would not evaluate it).
use loupe::dfdx::prelude::*;

fn main() {
    let dev = loupe::device::cpu();
    let a: Tensor<(usize, Const<2>), f32, Cpu> = dev.zeros_like(&(1, Const));
    let b: Tensor<(usize, Const<3>), f32, Cpu> = dev.zeros_like(&(1, Const));
    let _ = loupe::__private::concat::<2, 3, 6, _, _, _, _>(a, b);
}
