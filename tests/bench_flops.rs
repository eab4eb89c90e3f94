//! `loupe bench`'s analytic matmul count (`bench::matmul_flops`) for late and early
//! fusion and the recurrent pooling, written out from the paper's sizes.

use loupe::bench::matmul_flops;
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::zoo;

fn describe<B: BuildOnDevice<Cpu, f32>>() -> loupe::model::ModelDescription
where
    B::Built: VideoModel<f32, Cpu>,
{
    <B::Built as VideoModel<f32, Cpu>>::describe()
}

/// The MoE classifier of the paper's models: 2 experts + gates over 3862 classes.
fn moe(b: f64, h: f64) -> f64 {
    2.0 * b * h * 3862.0 * 5.0
}

#[test]
fn late_and_early_netvlad_count_assignment_aggregation_hidden_and_moe() {
    let b = 80.0;
    // Late: video K=128 over 1024-d frames, audio K=64 over 128-d, hidden 1024.
    let pooled = 128.0 * 1024.0 + 64.0 * 128.0;
    let late =
        2.0 * b * 300.0 * (1024.0 * 128.0 + 128.0 * 64.0) * 2.0 + 2.0 * b * pooled * 1024.0 + moe(b, 1024.0);
    let got = matmul_flops(&describe::<zoo::NetVlad128>(), 80);
    assert!((got - late).abs() < 1e-6 * late, "{got} vs {late}");
    // Early: one K=128 NetVLAD over the 1152-d concatenated frames.
    let early = 2.0 * b * 300.0 * 1152.0 * 128.0 * 2.0 + 2.0 * b * 128.0 * 1152.0 * 1024.0 + moe(b, 1024.0);
    let got = matmul_flops(&describe::<zoo::NetVlad128Early>(), 80);
    assert!((got - early).abs() < 1e-6 * early, "{got} vs {early}");
}

#[test]
fn lstm_counts_both_layers_input_and_recurrent_products() {
    let (b, t, h) = (128.0, 150.0, 1024.0);
    let lstm = 2.0 * b * t * 4.0 * h * ((1152.0 + h) + (h + h)) + moe(b, 4.0 * h);
    let got = matmul_flops(&describe::<zoo::Lstm>(), 128);
    assert!((got - lstm).abs() < 1e-6 * lstm, "{got} vs {lstm}");
}
