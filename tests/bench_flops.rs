//! `loupe bench`'s analytic matmul count (`bench::matmul_flops`) for late and early
//! fusion, the recurrent pooling and NeXtVLAD, written out from the papers' sizes; and
//! its optimizer phase, counted against the memory bandwidth.

use loupe::bench::{bench_model, matmul_flops, BenchConfig};
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::zoo;

/// The count for the zoo model `B` at `batch`.
fn flops<B: BuildOnDevice<Cpu, f32>>(batch: usize) -> f64
where
    B::Built: VideoModel<f32, Cpu>,
{
    matmul_flops::<f32, Cpu, B::Built>(batch)
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
    let got = flops::<zoo::NetVlad128>(80);
    assert!((got - late).abs() < 1e-6 * late, "{got} vs {late}");
    // Early: one K=128 NetVLAD over the 1152-d concatenated frames.
    let early = 2.0 * b * 300.0 * 1152.0 * 128.0 * 2.0 + 2.0 * b * 128.0 * 1152.0 * 1024.0 + moe(b, 1024.0);
    let got = flops::<zoo::NetVlad128Early>(80);
    assert!((got - early).abs() < 1e-6 * early, "{got} vs {early}");
}

#[test]
fn lstm_counts_both_layers_input_and_recurrent_products() {
    let (b, t, h) = (128.0, 150.0, 1024.0);
    let lstm = 2.0 * b * t * 4.0 * h * ((1152.0 + h) + (h + h)) + moe(b, 4.0 * h);
    let got = flops::<zoo::Lstm>(128);
    assert!((got - lstm).abs() < 1e-6 * lstm, "{got} vs {lstm}");
}

/// Lin et al.'s NeXtVLAD (rgb: K = 128, G = 8, λ = 2; audio: K = 64, G = 4, λ = 2): per
/// frame the expansion `D x λD`, the group attention `λD x G`, the assignment
/// `λD x GK` and the aggregation (`λD/G x K` per group); then the hidden layer of 2048,
/// SE Context Gating through 2048 / 8 and the logistic classifier.
#[test]
fn nextvlad_counts_expansion_attention_assignment_and_aggregation() {
    let (b, t) = (80.0, 300.0);
    let per_frame = |d: f64, k: f64, g: f64, lambda: f64| {
        let l = lambda * d;
        2.0 * (d * l + l * g + l * g * k + (l / g) * k * g)
    };
    let pooled = 128.0 * (2.0 * 1024.0 / 8.0) + 64.0 * (2.0 * 128.0 / 4.0);
    let h = 2048.0;
    let want = b * t * (per_frame(1024.0, 128.0, 8.0, 2.0) + per_frame(128.0, 64.0, 4.0, 2.0))
        + 2.0 * b * pooled * h
        + 4.0 * b * h * h / 8.0
        + 2.0 * b * h * 3862.0;
    let got = flops::<zoo::NeXtVlad>(80);
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
}

/// The optimizer's update alone moves 9 `f32` streams per trainable parameter (parameter,
/// gradient and both moments read and written, the gradient read once more for its
/// per-variable norm), reported against the machine's stream rate.
#[test]
fn bench_times_the_optimizer_update_against_the_memory_bandwidth() {
    type M = <zoo::SmallGatedNetVlad as BuildOnDevice<Cpu, f32>>::Built;
    let config = BenchConfig { batch: 2, warmup: 0, iterations: 2, matmul_size: 64, seed: 1 };
    let r = bench_model::<M>(&config).unwrap();
    assert_eq!(r.parameters, loupe::model::count_params::<f32, Cpu, M>());
    assert_eq!(r.optimizer.gbytes, (r.parameters * 4 * 9) as f64 / 1e9);
    let bandwidth = r.machine_bandwidth_gbps.expect("measured on the Cpu");
    assert!(bandwidth.is_finite() && bandwidth > 0.0, "{bandwidth}");
    assert!(r.optimizer.min_ms <= r.optimizer.ms, "{:?}", r.optimizer);
    let fraction = r.optimizer.fraction_of_bandwidth.unwrap();
    assert!((fraction - r.optimizer.gbps / bandwidth).abs() < 1e-12, "{fraction}");
    assert!(r.table().contains("optimizer update alone: "), "{}", r.table());
}
