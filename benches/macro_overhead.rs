//! `#[video_model]` adds no runtime cost: the generated Gated NetVLAD against the same
//! network written by hand from loupe-core layers (`tests/hand_written/mod.rs`), in
//! evaluation (forward, no tape) and training (forward + backward).
//!
//! Run: `cargo bench --bench macro_overhead`.

#[path = "../tests/hand_written/mod.rs"]
mod hand_written;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hand_written::{Generated, HandWritten, Input};
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;

const BATCH: usize = 32;

fn overhead(c: &mut Criterion) {
    let dev = loupe::device::cpu_seeded(0);
    let mut generated = dev.build_module::<Generated, f32>();
    let mut hand = HandWritten::from_generated(&generated);
    let x: Input = dev.sample_normal_like(&(BATCH, Const, Const));

    let mut eval = c.benchmark_group("macro_overhead/eval/cpu");
    eval.throughput(Throughput::Elements(BATCH as u64));
    eval.bench_function("generated", |b| {
        b.iter(|| black_box(generated.try_forward_eval(x.clone()).unwrap().as_vec()))
    });
    eval.bench_function("hand_written", |b| b.iter(|| black_box(hand.forward_eval(x.clone()).as_vec())));
    eval.finish();

    let mut train = c.benchmark_group("macro_overhead/train/cpu");
    train.throughput(Throughput::Elements(BATCH as u64));
    let mut grads_g = generated.alloc_grads();
    train.bench_function("generated", |b| {
        b.iter(|| {
            let y = generated.try_forward_train(x.clone().traced(grads_g.clone())).unwrap();
            grads_g = y.sum().backward();
            black_box(&grads_g);
        })
    });
    let mut grads_h = hand.alloc_grads();
    train.bench_function("hand_written", |b| {
        b.iter(|| {
            let y = hand.forward_train(x.clone().traced(grads_h.clone()));
            grads_h = y.sum().backward();
            black_box(&grads_h);
        })
    });
    train.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
