//! With the `cuda` feature: every small zoo model gives the same predictions, loss and
//! updated weights on dfdx's `Cuda` as on the `Cpu` (where loupe runs its fused kernels,
//! so this also checks the composed path the GPU runs against them).
//!
//! Built only with `--features cuda`; CI type-checks it (`.ci/run`), a machine with a GPU
//! runs it (`cargo test --features cuda --test cuda_vs_cpu`).
#![cfg(feature = "cuda")]

use dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::train::{TrainConfig, Trainer};
use loupe::zoo::{self, ZooModel};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Same weights on both devices (through safetensors), same batch: eval predictions,
/// then two training steps' losses, then the predictions of the updated models.
fn compare<B>(name: &str, gpu: &Cuda)
where
    B: ZooModel<f32, Cpu> + ZooModel<f32, Cuda>,
{
    type CpuModel<B> = <B as ZooModel<f32, Cpu>>::Model;
    type GpuModel<B> = <B as ZooModel<f32, Cuda>>::Model;
    let (frames_n, features, classes) = (
        <CpuModel<B> as VideoModel<f32, Cpu>>::FRAMES,
        <CpuModel<B> as VideoModel<f32, Cpu>>::FEATURES,
        <CpuModel<B> as VideoModel<f32, Cpu>>::CLASSES,
    );
    let batch = 6;
    let mut rng = StdRng::seed_from_u64(7);
    let frames: Vec<f32> = (0..batch * frames_n * features).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut labels = vec![0.0f32; batch * classes];
    for video in labels.chunks_mut(classes) {
        video[rng.gen_range(0..classes)] = 1.0;
    }
    let config = TrainConfig { classifier_l2: 1e-6, ..TrainConfig::default() };

    let cpu_dev = loupe::device::cpu_seeded(3);
    let mut cpu = Trainer::<CpuModel<B>, f32, Cpu>::new(cpu_dev, config).unwrap();
    let weights =
        std::env::temp_dir().join(format!("loupe-cuda-vs-cpu-{name}-{}.safetensors", std::process::id()));
    cpu.model.save_safetensors(&weights).unwrap();
    let mut gpu_model = gpu.build_module::<B, f32>();
    gpu_model.load_safetensors(&weights).unwrap();
    let _ = std::fs::remove_file(&weights);
    let mut cuda = Trainer::<GpuModel<B>, f32, Cuda>::from_model(gpu.clone(), gpu_model, config);

    let (p_cpu, p_gpu) = (cpu.predict(&frames).unwrap(), cuda.predict(&frames).unwrap());
    let d = max_difference(&p_cpu, &p_gpu);
    assert!(d < 1e-4, "{name}: evaluation predictions differ by {d}");
    for step in 0..2 {
        let (l_cpu, l_gpu) =
            (cpu.train_step(&frames, &labels).unwrap().loss, cuda.train_step(&frames, &labels).unwrap().loss);
        assert!(
            (l_cpu - l_gpu).abs() < 1e-4 * l_cpu.abs().max(1.0),
            "{name}: step {step} loss {l_cpu} on Cpu, {l_gpu} on Cuda"
        );
    }
    let (p_cpu, p_gpu) = (cpu.predict(&frames).unwrap(), cuda.predict(&frames).unwrap());
    let d = max_difference(&p_cpu, &p_gpu);
    assert!(d < 1e-3, "{name}: predictions after two Adam steps differ by {d}");
}

#[test]
fn small_zoo_models_agree_on_cuda_and_cpu() {
    let gpu = match loupe::device::cuda(0, 0) {
        Ok(gpu) => gpu,
        Err(e) => panic!("this test needs a GPU (built with --features cuda): {e}"),
    };
    compare::<zoo::SmallGatedNetVlad>("small-gated-netvlad", &gpu);
    compare::<zoo::SmallGatedNetFv>("small-gated-netfv", &gpu);
    compare::<zoo::SmallSoftBow>("small-soft-bow", &gpu);
    compare::<zoo::SmallAverage>("small-average", &gpu);
    compare::<zoo::SmallNetVladEarly>("small-netvlad-early", &gpu);
    compare::<zoo::SmallLstm>("small-lstm", &gpu);
    compare::<zoo::SmallGru>("small-gru", &gpu);
    compare::<zoo::SmallNeXtVlad>("small-nextvlad", &gpu);
    compare::<zoo::SmallVideoMoe>("small-video-moe", &gpu);
}
