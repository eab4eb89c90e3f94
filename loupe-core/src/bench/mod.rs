//! Timing of any [`VideoModel`] on the `Cpu` (or any dfdx device, [`bench_model_on`]):
//! forward, forward + backward and a full optimizer step, with achieved GFLOP/s against
//! the device's own matmul rate measured in the same run, and peak memory. `loupe bench
//! MODEL` prints this for the zoo; call [`bench_model`] for a model of your own.
//!
//! ```no_run
//! use loupe_core::bench::{bench_model, BenchConfig};
//! use loupe_core::dfdx::prelude::{BuildModule, Cpu};
//! use loupe_core::model::VideoModel;
//!
//! fn bench_mine<M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone>() {
//!     let report = bench_model::<M>(&BenchConfig { batch: 8, ..BenchConfig::default() }).unwrap();
//!     println!("{}", report.table());
//! }
//! ```

use std::time::{Duration, Instant};

use dfdx::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::device::try_tensor_from_slice;
use crate::model::{
    AfterClassifier, AfterPooling, ClassifierKind, ModelDescription, PoolingKind, VideoModel,
};
use crate::train::{try_cross_entropy_loss, TrainConfig, TrainError, Trainer};

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchConfig {
    /// Videos per batch.
    pub batch: usize,
    /// Untimed iterations before timing each phase.
    pub warmup: usize,
    /// Timed iterations of each phase (the median is reported).
    pub iterations: usize,
    /// Size `n` of the `n x n x n` matmul that measures the machine's rate.
    pub matmul_size: usize,
    /// Seed of the weights and the random batch.
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig { batch: 80, warmup: 1, iterations: 3, matmul_size: 2048, seed: 0 }
    }
}

/// One timed phase.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhaseTiming {
    /// `forward` (evaluation mode, no tape), `forward_backward` (training mode, loss and
    /// backward) or `train_step` (forward, backward and the Adam update).
    pub phase: String,
    /// Median milliseconds per step.
    pub ms: f64,
    /// Fastest step, milliseconds.
    pub min_ms: f64,
    /// Mean CPU time (user + system, all threads) per step, milliseconds, from
    /// `/proc/self/stat` (10 ms ticks; `None` off Linux). Less sensitive than wall time to
    /// other processes competing for the cores.
    pub cpu_ms: Option<f64>,
    pub videos_per_s: f64,
    /// Matmul FLOPs of the phase, counted analytically ([`matmul_flops`]), in GFLOP.
    pub gflop: f64,
    /// `gflop / median seconds`.
    pub gflops: f64,
    /// `gflops` as a fraction of [`BenchReport::machine_matmul_gflops`].
    pub fraction_of_matmul: f64,
}

/// Everything [`bench_model`] measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub batch: usize,
    pub frames: usize,
    pub threads: usize,
    /// `cpu`, or `cuda` for dfdx's `Cuda` device.
    pub device: String,
    pub parameters: usize,
    /// Whether the fused CPU kernels were on ([`crate::kernels::set_fused`]).
    pub fused_kernels: bool,
    pub phases: Vec<PhaseTiming>,
    /// The machine's single-precision matmul rate (`n x n x n`, same threads), GFLOP/s:
    /// the higher of the rates measured before and after the timed phases.
    pub machine_matmul_gflops: f64,
    /// Peak resident memory of the process so far (VmHWM), bytes; `None` off Linux.
    pub peak_memory_bytes: Option<u64>,
    /// On a GPU: its memory in use after the timed steps (total minus free), bytes. dfdx's
    /// allocation cache keeps freed buffers, so this is close to the step's peak.
    pub gpu_memory_bytes: Option<u64>,
}

impl BenchReport {
    /// The header (two lines) of the one-row-per-model markdown table that
    /// [`BenchReport::markdown_row`] fills; `benches/zoo_table.sh` prints the zoo with it.
    pub fn markdown_header() -> String {
        concat!(
            "| model | params | batch | threads | fwd ms | fwd+bwd ms | step ms | step CPU ms | step GFLOP/s | % matmul | peak memory |\n",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        )
        .to_string()
    }

    /// This report as one markdown table row (see [`BenchReport::markdown_header`]): median
    /// ms of each phase, then the training step's CPU ms, GFLOP/s and share of the machine's
    /// matmul rate, and the peak memory (host VmHWM, or the GPU's memory in use).
    pub fn markdown_row(&self) -> String {
        let phase = |name: &str| self.phases.iter().find(|p| p.phase == name);
        let ms = |name: &str| phase(name).map_or("-".to_string(), |p| format!("{:.1}", p.ms));
        let step = phase("train_step");
        let gib = |b: u64| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64);
        format!(
            "| {} | {:.1}M | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.model,
            self.parameters as f64 / 1e6,
            self.batch,
            self.threads,
            ms("forward"),
            ms("forward_backward"),
            ms("train_step"),
            step.and_then(|p| p.cpu_ms).map_or("-".to_string(), |c| format!("{c:.0}")),
            step.map_or("-".to_string(), |p| format!("{:.1}", p.gflops)),
            step.map_or("-".to_string(), |p| format!("{:.0}%", 100.0 * p.fraction_of_matmul)),
            self.gpu_memory_bytes.or(self.peak_memory_bytes).map_or("-".to_string(), gib),
        )
    }

    /// A plain-text table, one row per phase.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} on {}: batch {}, {} frames, {} threads, {:.1}M parameters, fused kernels {}\n",
            self.model,
            self.device,
            self.batch,
            self.frames,
            self.threads,
            self.parameters as f64 / 1e6,
            if self.fused_kernels { "on" } else { "off" },
        );
        s.push_str(&format!(
            "{:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}\n",
            "phase", "ms/step", "min ms", "CPU ms", "videos/s", "GFLOP", "GFLOP/s", "% matmul"
        ));
        for p in &self.phases {
            s.push_str(&format!(
                "{:<18} {:>10.1} {:>10.1} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>8.0}%\n",
                p.phase,
                p.ms,
                p.min_ms,
                p.cpu_ms.map_or("-".to_string(), |c| format!("{c:.0}")),
                p.videos_per_s,
                p.gflop,
                p.gflops,
                100.0 * p.fraction_of_matmul
            ));
        }
        s.push_str(&format!("{} sgemm rate: {:.1} GFLOP/s\n", self.device, self.machine_matmul_gflops));
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        match self.peak_memory_bytes {
            Some(b) => s.push_str(&format!("peak host memory (VmHWM): {:.2} GiB\n", gib(b))),
            None => s.push_str("peak host memory: unavailable\n"),
        }
        if let Some(b) = self.gpu_memory_bytes {
            s.push_str(&format!("GPU memory in use after the steps: {:.2} GiB\n", gib(b)));
        }
        s
    }
}

/// Forward matmul FLOPs of one batch of `model` (multiply-adds counted as 2):
/// per clustering stream the assignment `X W` (`2 B T F K`) and the aggregation `X^T a`
/// (`2 B T F K`, twice for NetFV's two statistics, none for soft BoW; gated soft BoW's
/// own gate adds `2 B K (1024 + K)` roughly, not counted), the hidden layer
/// (`2 B P H`), context gating (`2 B H H`), SE context gating (`4 B H H / r`) or GLU (`4 B H H`), the classifier
/// (`2 B H V (2M + 1)` for the MoE, `2 B H V` logistic) and the probability gating
/// (`2 B V V`). A backward pass costs twice its forward (input and weight gradients).
pub fn matmul_flops(d: &ModelDescription, batch: usize) -> f64 {
    let (b, t) = (batch as f64, d.frames as f64);
    let mut flops = 0.0;
    let mut pooled = 0.0;
    for s in &d.streams {
        flops += pooling_flops(s.pooling, b, t, s.features as f64, s.clusters, None);
        pooled += s.output as f64;
    }
    // Early fusion: one pooling over the concatenated frames.
    if let Some(p) = &d.early_pooling {
        let f = d.streams.iter().map(|s| s.features as f64).sum();
        flops += pooling_flops(p.kind, b, t, f, p.clusters, p.size);
        pooled = p.output as f64;
    }
    let top = match d.hidden {
        Some(h) => {
            let h = h as f64;
            flops += 2.0 * b * pooled * h;
            flops += match d.after_pooling {
                AfterPooling::ContextGating => 2.0 * b * h * h,
                AfterPooling::Glu => 4.0 * b * h * h,
                // Two products through the bottleneck of h / r.
                AfterPooling::SeContextGating => 4.0 * b * h * h / d.gating_reduction.unwrap_or(1) as f64,
                AfterPooling::BiasedContextGating | AfterPooling::None => 0.0,
            };
            h
        }
        None => pooled,
    };
    let v = d.classes as f64;
    flops += match d.classifier {
        ClassifierKind::Moe => 2.0 * b * top * v * (2.0 * d.experts as f64 + 1.0),
        ClassifierKind::Logistic => 2.0 * b * top * v,
    };
    if d.after_classifier != AfterClassifier::None {
        flops += 2.0 * b * v * v;
    }
    flops
}

/// Forward matmul FLOPs of one pooling over `f`-dimensional frames: the assignment and
/// aggregation products of the clustering kinds, the input and recurrent products of the
/// two stacked recurrent layers (`size` cells; 4 gates for the LSTM, 3 for the GRU).
fn pooling_flops(
    kind: PoolingKind,
    b: f64,
    t: f64,
    f: f64,
    clusters: Option<usize>,
    size: Option<usize>,
) -> f64 {
    let k = clusters.unwrap_or(0) as f64;
    let h = size.unwrap_or(0) as f64;
    match kind {
        PoolingKind::NetVlad | PoolingKind::NetRvlad => 2.0 * b * t * f * k * 2.0,
        PoolingKind::NetFv => 2.0 * b * t * f * k * 3.0,
        PoolingKind::SoftBow => 2.0 * b * t * f * k,
        PoolingKind::Lstm => 2.0 * b * t * 4.0 * h * ((f + h) + (h + h)),
        PoolingKind::Gru => 2.0 * b * t * 3.0 * h * ((f + h) + (h + h)),
        _ => 0.0,
    }
}

/// Peak resident set size of this process (`VmHWM` of `/proc/self/status`), bytes.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The device's single-precision matmul rate in GFLOP/s: the best of a few `n x n x n`
/// products through dfdx (on the `Cpu`: gemm, all threads of the current rayon pool; on
/// `Cuda`: cuBLAS).
pub fn machine_matmul_gflops<D: Device<f32> + Synchronize>(dev: &D, n: usize) -> f64 {
    let a: Tensor<(usize, usize), f32, D> = dev.sample_uniform_like(&(n, n));
    let b: Tensor<(usize, usize), f32, D> = dev.sample_uniform_like(&(n, n));
    let _ = a.clone().matmul(b.clone());
    dev.synchronize();
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let c = a.clone().matmul(b.clone());
            dev.synchronize();
            let e = t.elapsed();
            drop(c);
            e
        })
        .min()
        .unwrap_or(Duration::from_secs(1));
    2.0 * (n as f64).powi(3) / best.as_secs_f64() / 1e9
}

/// CPU time (user + system) this process has used, in milliseconds, if known.
pub fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every mainstream platform.
    Some((utime + stime) * 10.0)
}

/// Median and fastest wall milliseconds, and mean CPU milliseconds, per call of `f`.
type Timing = (f64, f64, Option<f64>);

fn time(
    warmup: usize,
    iterations: usize,
    mut f: impl FnMut() -> Result<(), TrainError>,
) -> Result<Timing, TrainError> {
    for _ in 0..warmup {
        f()?;
    }
    let n = iterations.max(1);
    let mut samples = Vec::with_capacity(n);
    let cpu_start = process_cpu_ms();
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed());
    }
    let cpu = match (cpu_start, process_cpu_ms()) {
        (Some(a), Some(b)) => Some((b - a) / n as f64),
        _ => None,
    };
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((ms(samples[n / 2]), ms(samples[0]), cpu))
}

fn device_error<Err: std::fmt::Debug>(e: Err) -> TrainError {
    TrainError::Device(format!("{e:?}"))
}

/// Times `M` on a random batch (uniform frames, ~3 random labels per video) after
/// warm-up: forward (evaluation), forward + backward (training mode, the training loss)
/// and [`Trainer::train_step`] (paper's Adam), on the `Cpu` seeded with `config.seed`.
/// Runs on the calling thread's rayon pool.
pub fn bench_model<M>(config: &BenchConfig) -> Result<BenchReport, TrainError>
where
    M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone,
{
    bench_model_on::<M, Cpu>(crate::device::cpu_seeded(config.seed), config)
}

/// What the GPU holds now, if `D` is dfdx's `Cuda` (`D` is read only in a `cuda` build).
#[allow(clippy::extra_unused_type_parameters)]
fn gpu_memory_bytes<D: 'static>() -> Option<u64> {
    #[cfg(feature = "cuda")]
    if std::any::TypeId::of::<D>() == std::any::TypeId::of::<Cuda>() {
        return crate::device::cuda_memory_in_use();
    }
    None
}

fn device_name<D: 'static>() -> &'static str {
    if std::any::TypeId::of::<D>() == std::any::TypeId::of::<Cpu>() {
        "cpu"
    } else {
        "cuda"
    }
}

/// [`bench_model`] on any device `dev` (e.g. `loupe_core::device::cuda(0, seed)` with the
/// `cuda` feature); every timed step ends with `dev.synchronize()`.
pub fn bench_model_on<M, D>(dev: D, config: &BenchConfig) -> Result<BenchReport, TrainError>
where
    D: Device<f32> + Synchronize,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    let machine = machine_matmul_gflops(&dev, config.matmul_size);
    let description = M::describe();
    let batch = config.batch.max(1);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let frames: Vec<f32> = (0..batch * M::FRAMES * M::FEATURES).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut labels = vec![0.0f32; batch * M::CLASSES];
    for video in labels.chunks_mut(M::CLASSES) {
        for _ in 0..3 {
            video[rng.gen_range(0..M::CLASSES)] = 1.0;
        }
    }
    let train_config = TrainConfig {
        schedule: Default::default(),
        adam: Default::default(),
        classifier_l2: description.classifier_l2,
    };
    let mut trainer = Trainer::<M, f32, D>::new(dev.clone(), train_config)?;
    let parameters = trainer.model.num_params();
    let x: Tensor<(usize, M::Frames, M::Features), f32, D> =
        try_tensor_from_slice(&dev, &frames, (batch, Default::default(), Default::default()))
            .map_err(device_error)?;
    let y: Tensor<(usize, M::Classes), f32, D> =
        try_tensor_from_slice(&dev, &labels, (batch, Default::default())).map_err(device_error)?;

    let forward_flops = matmul_flops(&description, batch);
    let mut timings: Vec<(&str, Timing, f64)> = Vec::new();
    let mut record = |phase: &'static str, timing: Timing, flops: f64| timings.push((phase, timing, flops));

    let timing = time(config.warmup, config.iterations, || {
        let p = trainer.model.try_forward_eval(x.clone()).map_err(device_error)?;
        dev.try_synchronize().map_err(device_error)?;
        drop(p);
        Ok(())
    })?;
    record("forward", timing, forward_flops);

    let mut grads = Some(trainer.model.try_alloc_grads().map_err(device_error)?);
    let timing = time(config.warmup, config.iterations, || {
        let mut g = grads.take().expect("gradients are put back");
        trainer.model.try_zero_grads(&mut g).map_err(device_error)?;
        let p = trainer.model.try_forward_train(x.clone().traced(g)).map_err(device_error)?;
        let loss = try_cross_entropy_loss(p, y.clone()).map_err(device_error)?;
        grads = Some(loss.try_backward().map_err(device_error)?);
        dev.try_synchronize().map_err(device_error)
    })?;
    record("forward_backward", timing, 3.0 * forward_flops);
    drop(grads);

    let timing = time(config.warmup, config.iterations, || {
        trainer.train_step(&frames, &labels)?;
        dev.try_synchronize().map_err(device_error)
    })?;
    record("train_step", timing, 3.0 * forward_flops);

    // The machine's rate varies over a run (shared or throttled cores): take the higher
    // of the rates measured before and after the phases, so the ratios are not flattered.
    let machine = machine.max(machine_matmul_gflops(&dev, config.matmul_size));
    let phases = timings
        .into_iter()
        .map(|(phase, (ms, min_ms, cpu_ms), flops)| {
            let gflops = flops / 1e9 / (ms / 1e3);
            PhaseTiming {
                phase: phase.to_string(),
                ms,
                min_ms,
                cpu_ms,
                videos_per_s: batch as f64 / (ms / 1e3),
                gflop: flops / 1e9,
                gflops,
                fraction_of_matmul: gflops / machine,
            }
        })
        .collect();

    Ok(BenchReport {
        model: description.name.clone(),
        batch,
        frames: M::FRAMES,
        threads: rayon::current_num_threads(),
        device: device_name::<D>().to_string(),
        parameters,
        fused_kernels: crate::kernels::fused_enabled(),
        phases,
        machine_matmul_gflops: machine,
        peak_memory_bytes: peak_memory_bytes(),
        gpu_memory_bytes: gpu_memory_bytes::<D>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        let phase = |name: &str, ms: f64| PhaseTiming {
            phase: name.to_string(),
            ms,
            min_ms: ms,
            cpu_ms: Some(2.0 * ms),
            videos_per_s: 1.0,
            gflop: 1.0,
            gflops: 50.0,
            fraction_of_matmul: 0.25,
        };
        BenchReport {
            model: "M".to_string(),
            batch: 4,
            frames: 10,
            threads: 2,
            device: "cpu".to_string(),
            parameters: 2_500_000,
            fused_kernels: true,
            phases: vec![phase("forward", 1.0), phase("forward_backward", 3.0), phase("train_step", 4.5)],
            machine_matmul_gflops: 200.0,
            peak_memory_bytes: Some(3 << 30),
            gpu_memory_bytes: None,
        }
    }

    #[test]
    fn markdown_row_fills_every_column_of_the_header() {
        let header = BenchReport::markdown_header();
        let columns = header.lines().next().unwrap().matches('|').count();
        let row = report().markdown_row();
        assert_eq!(row.matches('|').count(), columns);
        assert_eq!(row, "| M | 2.5M | 4 | 2 | 1.0 | 3.0 | 4.5 | 9 | 50.0 | 25% | 3.00 GiB |");
    }

    #[test]
    fn markdown_row_prefers_gpu_memory_and_marks_missing_phases() {
        let mut r = report();
        r.phases.truncate(1);
        r.gpu_memory_bytes = Some(1 << 30);
        assert_eq!(r.markdown_row(), "| M | 2.5M | 4 | 2 | 1.0 | - | - | - | - | - | 1.00 GiB |");
    }
}
