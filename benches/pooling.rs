//! Forward + backward (training mode) of the pooling layers, at the paper's NetVLAD
//! reference point (B=32 videos, S=300 frames, D=1024 features, K=64 clusters; about
//! 170 ms on the 2-core dev machine per DFDX_NOTES.md) and at a small size.
//!
//! Each layer runs twice: with loupe's fused CPU kernels (`fused`) and with the composed
//! dfdx ops they replace (`composed`, `loupe::kernels::set_fused(false)`), the "before".
//!
//! NetVLAD also runs as a model's training step runs it (`frames-as-data`: the frames
//! need no gradient, `loupe::nn::PoolFrames`).
//!
//! Run: `cargo bench --bench pooling` (or `-- NetVladPooling` for one layer, `--quick` for a
//! fast estimate).

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use loupe::dfdx::prelude::*;
use loupe::nn::builder;

type Dev = Cpu;
const DEVICE: &str = "cpu";

fn device() -> Dev {
    loupe::device::cpu_seeded(0)
}

/// The benchmark group `LAYER/DEVICE/PATH` of one size (`[B, S, D, K]`), videos per
/// second as throughput, 10 samples for the large sizes; and the benchmark's id.
fn bench_group<'c>(
    c: &'c mut Criterion,
    layer: &str,
    path: &str,
    [b, s, f, k]: [usize; 4],
) -> (BenchmarkGroup<'c, WallTime>, BenchmarkId) {
    let mut group = c.benchmark_group(format!("{layer}/{DEVICE}/{path}"));
    group.throughput(Throughput::Elements(b as u64));
    if b * s * f > 1_000_000 {
        group.sample_size(10);
    }
    (group, BenchmarkId::from_parameter(format!("B{b}_S{s}_D{f}_K{k}")))
}

/// One training step's worth of pooling work: forward with a tape, backward of the sum.
macro_rules! bench_layer {
    ($c:expr, $name:literal, $builder:ty, b = $b:expr, s = $s:expr, f = $f:literal, k = $k:literal) => {{
        for fused in [true, false] {
            loupe::kernels::set_fused(fused);
            let dev = device();
            let mut layer = dev.build_module::<$builder, f32>();
            let x: Tensor<(usize, usize, Const<$f>), f32, _> = dev.sample_normal_like(&($b, $s, Const));
            let mut grads = Some(layer.alloc_grads());
            let kernels = if fused { "fused" } else { "composed" };
            let (mut group, id) = bench_group($c, $name, kernels, [$b, $s, $f, $k]);
            group.bench_function(id, |bench| {
                bench.iter(|| {
                    let y = layer.forward_mut(x.trace(grads.take().unwrap()));
                    let mut g = y.sum().backward();
                    layer.zero_grads(&mut g);
                    grads = Some(g);
                    // Cpu ops are synchronous; a Cuda device would synchronise here.
                })
            });
            group.finish();
        }
        loupe::kernels::set_fused(true);
    }};
}

/// The same layer as a model's training step runs it: the frames are data
/// (`PoolFrames::try_pool_frames` on `NormalizedFrames`), so only the parameters'
/// gradients are formed (fused kernels on).
macro_rules! bench_frames {
    ($c:expr, $name:literal, $builder:ty, b = $b:expr, s = $s:expr, f = $f:literal, k = $k:literal) => {{
        use loupe::nn::PoolFrames;
        let dev = device();
        let mut layer = dev.build_module::<$builder, f32>();
        let input = dev.build_module::<builder::FrameInput<$f>, f32>();
        let x: Tensor<(usize, usize, Const<$f>), f32, _> = dev.sample_normal_like(&($b, $s, Const));
        let standardized = loupe::nn::StandardizedFrames::from_standardized(x.clone());
        let mut grads = Some(layer.alloc_grads());
        let (mut group, id) = bench_group($c, $name, "frames-as-data", [$b, $s, $f, $k]);
        group.bench_function(id, |bench| {
            bench.iter(|| {
                let (_, tape) = x.clone().traced(grads.take().unwrap()).split_tape();
                let frames = input.try_normalized(&standardized, tape).unwrap();
                let y = layer.try_pool_frames(frames).unwrap();
                let mut g = y.sum().backward();
                layer.zero_grads(&mut g);
                grads = Some(g);
            })
        });
        group.finish();
    }};
}

fn pooling(c: &mut Criterion) {
    bench_frames!(c, "NetVlad", builder::NetVladPooling<1024, 64, 65536>, b = 32, s = 300, f = 1024, k = 64);
    bench_frames!(c, "NetVlad", builder::NetVladPooling<1024, 256, 262144>, b = 80, s = 300, f = 1024, k = 256);
    bench_frames!(c, "NetVlad", builder::NetVladPooling<128, 128, 16384>, b = 80, s = 300, f = 128, k = 128);
    bench_layer!(c, "NetVlad", builder::NetVladPooling<1024, 64, 65536>, b = 32, s = 300, f = 1024, k = 64);
    // The paper's video stream (K = 256) and audio stream (D = 128, K = 128), batch 80.
    bench_layer!(c, "NetVlad", builder::NetVladPooling<1024, 256, 262144>, b = 80, s = 300, f = 1024, k = 256);
    bench_layer!(c, "NetVlad", builder::NetVladPooling<128, 128, 16384>, b = 80, s = 300, f = 128, k = 128);
    bench_layer!(c, "NetVlad", builder::NetVladPooling<128, 16, 2048>, b = 8, s = 32, f = 128, k = 16);
    bench_layer!(c, "NetRvlad", builder::NetRvladPooling<1024, 64, 65536>, b = 32, s = 300, f = 1024, k = 64);
    bench_layer!(c, "NetRvlad", builder::NetRvladPooling<128, 16, 2048>, b = 8, s = 32, f = 128, k = 16);
    bench_layer!(c, "NetFv", builder::NetFvPooling<1024, 64, 131072>, b = 32, s = 300, f = 1024, k = 64);
    bench_layer!(c, "NetFv", builder::NetFvPooling<128, 16, 4096>, b = 8, s = 32, f = 128, k = 16);
    bench_layer!(c, "SoftBow", builder::SoftBowPooling<1024, 64>, b = 32, s = 300, f = 1024, k = 64);
    bench_layer!(c, "SoftBow", builder::SoftBowPooling<128, 16>, b = 8, s = 32, f = 128, k = 16);
}

/// What surrounds the poolings of a late-fusion model at the paper's size (batch 80, 300
/// frames, rgb 1024 + audio 128, pooled to 262,144 + 16,384): the frames' evaluation
/// preprocessing (L2, then the batch norm's running averages), the split of the
/// standardised frames into the two streams (no tape: evaluation, and the training step's
/// frames as data) and the concatenation of the pooled streams (no tape, and with one:
/// forward and backward), fused and composed.
fn streams(c: &mut Criterion) {
    use loupe::nn::{try_concat_features, Stream};
    const RGB: usize = 262_144;
    const AUDIO: usize = 16_384;
    let dev = device();
    let frames: Tensor<(usize, Const<300>, Const<1152>), f32, _> =
        dev.sample_normal_like(&(80, Const, Const));
    let rgb: Tensor<(usize, Const<RGB>), f32, _> = dev.sample_normal_like(&(80, Const));
    let audio: Tensor<(usize, Const<AUDIO>), f32, _> = dev.sample_normal_like(&(80, Const));
    let input = dev.build_module::<builder::FrameInput<1152>, f32>();
    for fused in [true, false] {
        loupe::kernels::set_fused(fused);
        let kernels = if fused { "fused" } else { "composed" };
        let mut group = c.benchmark_group(format!("Streams/{DEVICE}/{kernels}"));
        group.throughput(Throughput::Elements(80));
        group.sample_size(10);
        group.bench_function("split_B80_S300_rgb1024_audio128", |bench| {
            bench.iter(|| {
                let video = Stream::<0, 1024>.forward(frames.clone());
                let sound = Stream::<1024, 128>.forward(frames.clone());
                (video, sound)
            })
        });
        group.bench_function("frame_input_eval_B80_S300_F1152", |bench| {
            bench.iter(|| input.forward(frames.clone()))
        });
        group.bench_function("concat_B80_262144_16384", |bench| {
            bench.iter(|| {
                try_concat_features::<RGB, AUDIO, { RGB + AUDIO }, _, _, _, _>(rgb.clone(), audio.clone())
            })
        });
        group.bench_function("concat_backward_B80_262144_16384", |bench| {
            bench.iter(|| {
                let (a, b) =
                    (rgb.clone().traced(Gradients::leaky()), audio.clone().traced(Gradients::leaky()));
                let c = try_concat_features::<RGB, AUDIO, { RGB + AUDIO }, _, _, _, _>(a, b).unwrap();
                c.sum().backward()
            })
        });
        group.finish();
    }
    loupe::kernels::set_fused(true);
}

criterion_group!(benches, pooling, streams);
criterion_main!(benches);
