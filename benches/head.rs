//! Forward + backward of the head layers at the paper's sizes: Context Gating over the
//! 1024-d hidden vector, the Mixture of Experts (M = 2) over 3862 classes and the
//! probability gating over those classes, in training mode, batch 80 (the released runs).
//!
//! Small sizes (hidden 64, 100 classes, batch 16) follow the paper-size ones. Run:
//! `cargo bench --bench head`. Throughput is in videos per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dfdx::prelude::*;
use loupe::nn::builder;

const BATCH: usize = 80;
const HIDDEN: usize = 1024;
const CLASSES: usize = 3862;

/// One training step's worth of work for `module`: forward with a tape, `sum` as the
/// loss, backward, gradients zeroed for the next iteration.
fn bench_step<M, const N: usize, const O: usize>(c: &mut Criterion, name: &str, module: &mut M, dev: &Cpu)
where
    M: TensorCollection<f32, Cpu>
        + ModuleMut<
            Tensor<(usize, Const<N>), f32, Cpu, OwnedTape<f32, Cpu>>,
            Output = Tensor<(usize, Const<O>), f32, Cpu, OwnedTape<f32, Cpu>>,
        >,
{
    bench_step_at::<M, N, O>(c, name, module, dev, BATCH)
}

fn bench_step_at<M, const N: usize, const O: usize>(
    c: &mut Criterion,
    name: &str,
    module: &mut M,
    dev: &Cpu,
    batch: usize,
) where
    M: TensorCollection<f32, Cpu>
        + ModuleMut<
            Tensor<(usize, Const<N>), f32, Cpu, OwnedTape<f32, Cpu>>,
            Output = Tensor<(usize, Const<O>), f32, Cpu, OwnedTape<f32, Cpu>>,
        >,
{
    let x: Tensor<(usize, Const<N>), f32, _> = dev.sample_uniform_like(&(batch, Const));
    let mut grads = Some(module.alloc_grads());
    let mut group = c.benchmark_group("head");
    group.sample_size(10).throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("{name}/cpu"), |b| {
        b.iter(|| {
            let y = module.forward_mut(x.trace(grads.take().expect("gradients")));
            let mut g = y.sum::<Rank0, _>().backward();
            module.zero_grads(&mut g);
            // The Cpu device computes synchronously: the step is done when backward returns.
            grads = Some(g);
        })
    });
    group.finish();
}

fn head(c: &mut Criterion) {
    let dev = loupe::device::cpu_seeded(0);

    let mut cg = dev.build_module::<builder::ContextGating<HIDDEN>, f32>();
    bench_step::<_, HIDDEN, HIDDEN>(c, "context_gating_1024_b80", &mut cg, &dev);
    drop(cg);

    let mut moe = dev.build_module::<builder::MixtureOfExperts<HIDDEN, CLASSES, 2>, f32>();
    bench_step::<_, HIDDEN, CLASSES>(c, "mixture_of_experts_1024x3862x2_b80", &mut moe, &dev);
    drop(moe);

    let mut gating = dev.build_module::<builder::ProbabilityGating<CLASSES>, f32>();
    bench_step::<_, CLASSES, CLASSES>(c, "probability_gating_3862_b80", &mut gating, &dev);
    drop(gating);

    let mut cg = dev.build_module::<builder::ContextGating<64>, f32>();
    bench_step_at::<_, 64, 64>(c, "context_gating_64_b16", &mut cg, &dev, 16);
    let mut moe = dev.build_module::<builder::MixtureOfExperts<64, 100, 2>, f32>();
    bench_step_at::<_, 64, 100>(c, "mixture_of_experts_64x100x2_b16", &mut moe, &dev, 16);
    let mut gating = dev.build_module::<builder::ProbabilityGating<100>, f32>();
    bench_step_at::<_, 100, 100>(c, "probability_gating_100_b16", &mut gating, &dev, 16);

    // Baseline: the MoE's matrix products alone (h times the I x V(2M+1) weights it
    // multiplies by, forward and backward), the floor for the layer on this machine.
    let h: Tensor<(usize, Const<HIDDEN>), f32, _> = dev.sample_uniform_like(&(BATCH, Const));
    let w: Tensor<(Const<HIDDEN>, usize), f32, _> = dev.sample_uniform_like(&(Const, CLASSES * 5));
    let mut group = c.benchmark_group("head");
    group.sample_size(10).throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("matmul_baseline_1024x19310_b80/cpu", |b| {
        b.iter(|| {
            let y = h.trace(Gradients::leaky()).matmul(w.retaped::<OwnedTape<f32, Cpu>>());
            y.sum::<Rank0, _>().backward()
        })
    });
    group.finish();
}

criterion_group!(benches, head);
criterion_main!(benches);
