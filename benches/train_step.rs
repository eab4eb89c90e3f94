//! One full training step (`Trainer::train_step`: forward, loss, backward, Adam with
//! per-variable clipping) of the paper's Gated NetVLAD (K = 256/128, hidden 1024, MoE with
//! 2 experts, 3862 classes, 300 frames) at batch 80, and of the zoo's small variant.
//! Each runs with the fused CPU kernels and with the composed dfdx ops (`composed`).
//!
//! Run: `cargo bench --bench train_step` (`-- small` for the small model only). The
//! paper-size step takes seconds on a 2-core machine: criterion's minimum of 10 samples
//! makes that group take minutes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::train::{TrainConfig, Trainer};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn bench_train_step<M>(c: &mut Criterion, name: &str, batch: usize)
where
    M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone,
{
    let mut rng = StdRng::seed_from_u64(0);
    let frames: Vec<f32> = (0..batch * M::FRAMES * M::FEATURES).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut labels = vec![0.0f32; batch * M::CLASSES];
    for video in labels.chunks_mut(M::CLASSES) {
        video[rng.gen_range(0..M::CLASSES)] = 1.0;
    }
    for fused in [true, false] {
        loupe::kernels::set_fused(fused);
        let config = TrainConfig {
            schedule: Default::default(),
            adam: Default::default(),
            classifier_l2: M::describe().classifier_l2,
            ..TrainConfig::default()
        };
        let mut trainer =
            Trainer::<M, f32, Cpu>::new(loupe::device::cpu_seeded(0), config).expect("model builds");
        let mut group = c.benchmark_group("train_step");
        group.sample_size(10).throughput(Throughput::Elements(batch as u64));
        let kernels = if fused { "fused" } else { "composed" };
        group.bench_function(format!("{name}_b{batch}/cpu/{kernels}"), |b| {
            // The Cpu device is synchronous: the step is done when train_step returns.
            b.iter(|| trainer.train_step(&frames, &labels).expect("step"))
        });
        group.finish();
    }
    loupe::kernels::set_fused(true);
}

fn train_step(c: &mut Criterion) {
    type Small = <loupe::zoo::SmallGatedNetVlad as BuildOnDevice<Cpu, f32>>::Built;
    type Paper = <loupe::zoo::GatedNetVlad as BuildOnDevice<Cpu, f32>>::Built;
    bench_train_step::<Small>(c, "small_gated_netvlad", 16);
    bench_train_step::<Paper>(c, "gated_netvlad", 80);
}

criterion_group!(benches, train_step);
criterion_main!(benches);
