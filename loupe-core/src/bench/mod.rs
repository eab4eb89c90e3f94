//! Timing of any [`VideoModel`] on the `Cpu` (or any dfdx device, [`bench_model_on`]):
//! forward, forward + backward and a full optimizer step, with achieved GFLOP/s against
//! the device's own matmul rate and (on the `Cpu`) the cores' peak FMA rate ([`peak`]),
//! both measured in the same run, the optimizer's update alone against the memory
//! bandwidth ([`bandwidth`]), and peak memory. `loupe bench
//! MODEL` prints this for the zoo; call [`bench_model`] for a model of your own.
//! [`bench_model_across`] times the data-parallel step of several ranks (`mpirun -np N
//! loupe bench MODEL`): forward, backward, the gradient all-reduce and Adam, as
//! [`Trainer::train_step_across`] runs it.
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
use crate::distributed::{Collective, SingleProcess};
use crate::model::{AfterClassifier, AfterPooling, ClassifierKind, VideoModel};
use crate::train::{try_cross_entropy_loss, TrainConfig, TrainError, Trainer};

pub mod bandwidth;
pub mod gemm;
pub mod peak;

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
    /// Videos of all ranks per second: `ranks x batch / median seconds`.
    pub videos_per_s: f64,
    /// Median milliseconds of the gradient all-reduce inside the step (timed around the
    /// reduction alone), for `train_step` with several ranks; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_reduce_ms: Option<f64>,
    /// Matmul FLOPs of the phase, counted analytically ([`matmul_flops`]), in GFLOP.
    pub gflop: f64,
    /// `gflop / median seconds`.
    pub gflops: f64,
    /// `gflops` as a fraction of [`BenchReport::machine_matmul_gflops`].
    pub fraction_of_matmul: f64,
    /// `gflops` as a fraction of [`BenchReport::machine_peak_gflops`] (`None` on a GPU).
    pub fraction_of_peak: Option<f64>,
}

/// The optimizer's update alone (Adam over every trainable parameter), the memory side
/// of the roofline: its traffic against the machine's stream rate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OptimizerTiming {
    /// Median milliseconds per update.
    pub ms: f64,
    /// Fastest update, milliseconds.
    pub min_ms: f64,
    /// Bytes one update moves on the fused CPU path, in GB (10^9): per parameter 4 bytes
    /// times [`optimizer_streams`].
    pub gbytes: f64,
    /// `gbytes / median seconds`.
    pub gbps: f64,
    /// `gbps` as a fraction of [`BenchReport::machine_bandwidth_gbps`] (`None` on a GPU).
    pub fraction_of_bandwidth: Option<f64>,
}

/// Streams of `f32` one Adam update moves per parameter on the fused CPU path: the
/// parameter, its gradient and the two moments read and written (the gradient written
/// as zero), plus one more read of the gradient for its norm when the gradients are
/// clipped (per variable, as the paper's code, or globally).
pub fn optimizer_streams(clipping: crate::train::GradientClipping) -> usize {
    match clipping {
        crate::train::GradientClipping::None => 8,
        _ => 9,
    }
}

/// Everything [`bench_model`] measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    /// Videos per batch, per rank.
    pub batch: usize,
    /// Ranks of the job (data-parallel processes); absent from the JSON for one.
    #[serde(skip_serializing_if = "is_one")]
    pub ranks: usize,
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
    /// On the `Cpu`: the cores' peak single-precision rate, GFLOP/s, measured by a
    /// register-only multiply-add loop on every thread ([`peak::peak_gflops`]), and which
    /// instructions it ran. `None` on a GPU.
    pub machine_peak_gflops: Option<f64>,
    pub machine_peak_kind: Option<peak::PeakKind>,
    /// On the `Cpu`: the register tile loupe's products ran on
    /// ([`crate::kernels::gemm::TileKind::name`]; `LOUPE_TILE` picks it). `None` on a GPU.
    pub register_tile: Option<&'static str>,
    /// The optimizer's update alone, timed after the training steps.
    pub optimizer: OptimizerTiming,
    /// On the `Cpu`: the memory bandwidth for the optimizer's pattern, GB/s, measured by
    /// [`bandwidth::stream_gbps`] (four arrays of 64 MiB read and written, all threads) after
    /// the peak memory is read. `None` on a GPU.
    pub machine_bandwidth_gbps: Option<f64>,
    /// Peak resident memory of the process so far (VmHWM), bytes; `None` off Linux.
    pub peak_memory_bytes: Option<u64>,
    /// On a GPU: its memory in use after the timed steps (total minus free), bytes. dfdx's
    /// allocation cache keeps freed buffers, so this is close to the step's peak.
    pub gpu_memory_bytes: Option<u64>,
    /// With several ranks: each rank's peak resident memory (VmHWM, 0 where unknown), in
    /// rank order; [`BenchReport::peak_memory_bytes`] is rank 0's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes_per_rank: Option<Vec<u64>>,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl BenchReport {
    /// The header (two lines) of the one-row-per-model markdown table that
    /// [`BenchReport::markdown_row`] fills; `benches/zoo_table.sh` prints the zoo with it.
    pub fn markdown_header() -> String {
        concat!(
            "| model | params | batch | threads | fwd ms | fwd+bwd ms | step ms | step CPU ms | step GFLOP/s | % matmul | % peak | peak memory |\n",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        )
        .to_string()
    }

    /// This report as one markdown table row (see [`BenchReport::markdown_header`]): median
    /// ms of each phase, then the training step's CPU ms, GFLOP/s and share of the machine's
    /// matmul rate and of the cores' peak, and the peak memory (host VmHWM, or the GPU's memory in use).
    pub fn markdown_row(&self) -> String {
        let phase = |name: &str| self.phases.iter().find(|p| p.phase == name);
        let ms = |name: &str| phase(name).map_or("-".to_string(), |p| format!("{:.1}", p.ms));
        let step = phase("train_step");
        let gib = |b: u64| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64);
        format!(
            "| {} | {:.1}M | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
            step.and_then(|p| p.fraction_of_peak).map_or("-".to_string(), |f| format!("{:.0}%", 100.0 * f)),
            self.gpu_memory_bytes.or(self.peak_memory_bytes).map_or("-".to_string(), gib),
        )
    }

    /// A plain-text table, one row per phase.
    /// With several ranks the step is the data-parallel one, videos/s count every rank's
    /// videos, and an `all-reduce ms` column and each rank's peak memory are added.
    pub fn table(&self) -> String {
        let across = self.ranks > 1;
        let mut s = if across {
            format!(
                "{} on {}: {} ranks x batch {} (global batch {}), {} frames, {} threads per rank, {:.1}M parameters, fused kernels {}\n",
                self.model,
                self.device,
                self.ranks,
                self.batch,
                self.ranks * self.batch,
                self.frames,
                self.threads,
                self.parameters as f64 / 1e6,
                if self.fused_kernels { "on" } else { "off" },
            )
        } else {
            format!(
                "{} on {}: batch {}, {} frames, {} threads, {:.1}M parameters, fused kernels {}\n",
                self.model,
                self.device,
                self.batch,
                self.frames,
                self.threads,
                self.parameters as f64 / 1e6,
                if self.fused_kernels { "on" } else { "off" },
            )
        };
        s.push_str(&format!(
            "{:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}",
            "phase", "ms/step", "min ms", "CPU ms", "videos/s", "GFLOP", "GFLOP/s", "% matmul", "% peak"
        ));
        s.push_str(if across { "  all-reduce ms\n" } else { "\n" });
        for p in &self.phases {
            s.push_str(&format!(
                "{:<18} {:>10.1} {:>10.1} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>8.0}% {:>7}",
                p.phase,
                p.ms,
                p.min_ms,
                p.cpu_ms.map_or("-".to_string(), |c| format!("{c:.0}")),
                p.videos_per_s,
                p.gflop,
                p.gflops,
                100.0 * p.fraction_of_matmul,
                p.fraction_of_peak.map_or("-".to_string(), |f| format!("{:.0}%", 100.0 * f)),
            ));
            if across {
                s.push_str(&format!(
                    " {:>14}",
                    p.all_reduce_ms.map_or("-".to_string(), |ms| format!("{ms:.1}"))
                ));
            }
            s.push('\n');
        }
        s.push_str(&format!("{} sgemm rate: {:.1} GFLOP/s\n", self.device, self.machine_matmul_gflops));
        if let (Some(peak), Some(kind)) = (self.machine_peak_gflops, self.machine_peak_kind) {
            s.push_str(&format!(
                "{} peak rate: {:.1} GFLOP/s ({}, {} threads); sgemm reaches {:.0}% of it\n",
                self.device,
                peak,
                kind.describe(),
                self.threads,
                100.0 * self.machine_matmul_gflops / peak
            ));
        }
        if let Some(tile) = self.register_tile {
            s.push_str(&format!("loupe's products ran on the {tile} register tile\n"));
        }
        let o = &self.optimizer;
        s.push_str(&format!(
            "optimizer update alone: {:.1} ms (min {:.1}), {:.2} GB moved, {:.1} GB/s",
            o.ms, o.min_ms, o.gbytes, o.gbps
        ));
        match (self.machine_bandwidth_gbps, o.fraction_of_bandwidth) {
            (Some(b), Some(f)) => s.push_str(&format!(
                "; {} memory bandwidth (4 arrays read and written): {b:.1} GB/s, the update reaches {:.0}% of it\n",
                self.device,
                100.0 * f
            )),
            _ => s.push('\n'),
        }
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        match self.peak_memory_bytes {
            Some(b) => s.push_str(&format!("peak host memory (VmHWM): {:.2} GiB\n", gib(b))),
            None => s.push_str("peak host memory: unavailable\n"),
        }
        if let Some(per_rank) = &self.peak_memory_bytes_per_rank {
            let each: Vec<String> = per_rank.iter().map(|&b| format!("{:.2}", gib(b))).collect();
            s.push_str(&format!("peak host memory per rank (GiB, rank 0 first): {}\n", each.join(", ")));
        }
        if let Some(b) = self.gpu_memory_bytes {
            s.push_str(&format!("GPU memory in use after the steps: {:.2} GiB\n", gib(b)));
        }
        s
    }
}

/// Forward matmul FLOPs of one batch of `M` (multiply-adds counted as 2): the poolings'
/// products over every frame (`B T` times [`VideoModel::POOLING_MATMUL_FLOPS`], each
/// pooling kind's count from `#[video_model]`'s table: for NetVLAD the assignment `X W`
/// and the aggregation `a^T X`, `4 F K` per frame; gated soft BoW's own gate, about
/// `2 B K (1024 + K)`, is not counted), the hidden layer (`2 B P H`), context gating
/// (`2 B H H`), SE context gating (`4 B H H / r`) or GLU (`4 B H H`), the classifier
/// (`2 B H V (2M + 1)` for the MoE, `2 B H V` logistic) and the probability gating
/// (`2 B V V`). A backward pass costs twice its forward (input and weight gradients).
pub fn matmul_flops<E: Dtype, D: Device<E>, M: VideoModel<E, D>>(batch: usize) -> f64 {
    let d = M::describe();
    let (b, t) = (batch as f64, d.frames as f64);
    let mut flops = b * t * M::POOLING_MATMUL_FLOPS as f64;
    // The pooled representation: the streams' outputs concatenated, or early fusion's one.
    let pooled = match &d.early_pooling {
        Some(p) => p.output as f64,
        None => d.streams.iter().map(|s| s.output as f64).sum(),
    };
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
    bench_model_across::<M, D>(dev, config, &SingleProcess)
}

/// [`bench_model_on`] as one rank of a data-parallel job (every rank of `collective`
/// calls it): the `train_step` phase is [`Trainer::train_step_across`] (forward,
/// backward, the gradient all-reduce, Adam), with the all-reduce also timed on its own;
/// videos/s count the videos of all ranks (`ranks x batch` per step); each rank's peak
/// memory is gathered on rank 0. The ranks start each phase together (a barrier); the
/// timings are rank 0's. With one rank this is [`bench_model_on`].
pub fn bench_model_across<M, D>(
    dev: D,
    config: &BenchConfig,
    collective: &dyn Collective,
) -> Result<BenchReport, TrainError>
where
    D: Device<f32> + Synchronize,
    M: VideoModel<f32, D> + BuildModule<D, f32> + Clone,
{
    let ranks = collective.world_size();
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
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::<M, f32, D>::new(dev.clone(), train_config)?;
    let parameters = trainer.model.num_params();
    let x: Tensor<(usize, M::Frames, M::Features), f32, D> =
        try_tensor_from_slice(&dev, &frames, (batch, Default::default(), Default::default()))
            .map_err(device_error)?;
    let y: Tensor<(usize, M::Classes), f32, D> =
        try_tensor_from_slice(&dev, &labels, (batch, Default::default())).map_err(device_error)?;

    let forward_flops = matmul_flops::<f32, D, M>(batch);
    let mut timings: Vec<(&str, Timing, f64)> = Vec::new();
    let mut record = |phase: &'static str, timing: Timing, flops: f64| timings.push((phase, timing, flops));

    collective.barrier();
    let timing = time(config.warmup, config.iterations, || {
        let p = trainer.model.try_forward_eval(x.clone()).map_err(device_error)?;
        dev.try_synchronize().map_err(device_error)?;
        drop(p);
        Ok(())
    })?;
    record("forward", timing, forward_flops);

    let mut grads = Some(trainer.model.try_alloc_grads().map_err(device_error)?);
    collective.barrier();
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

    // Every frame valid, as in `train_step`.
    let lengths = vec![M::FRAMES; batch];
    let mut all_reduce = Vec::new();
    collective.barrier();
    let timing = time(config.warmup, config.iterations, || {
        trainer.train_step_across(&frames, &lengths, &labels, collective)?;
        dev.try_synchronize().map_err(device_error)?;
        all_reduce.extend(trainer.last_all_reduce());
        Ok(())
    })?;
    record("train_step", timing, 3.0 * forward_flops);
    // The timed steps' all-reduces are the last `iterations` (after the warm-up's).
    let mut all_reduce: Vec<Duration> =
        all_reduce.split_off(all_reduce.len().saturating_sub(config.iterations));
    all_reduce.sort();
    let all_reduce_ms = all_reduce.get(all_reduce.len() / 2).map(|d| d.as_secs_f64() * 1e3);

    // The optimizer alone: Adam once more over the gradients the last step left.
    collective.barrier();
    let (optimizer_ms, optimizer_min_ms, _) = time(0, config.iterations, || {
        trainer.repeat_update()?;
        dev.try_synchronize().map_err(device_error)
    })?;

    // The machine's rate varies over a run (shared or throttled cores): take the higher
    // of the rates measured before and after the phases, so the ratios are not flattered.
    let machine = machine.max(machine_matmul_gflops(&dev, config.matmul_size));
    let fma_peak = (device_name::<D>() == "cpu").then(|| peak::peak_gflops(Duration::from_millis(300)));
    let phases = timings
        .into_iter()
        .map(|(phase, (ms, min_ms, cpu_ms), flops)| {
            let gflops = flops / 1e9 / (ms / 1e3);
            PhaseTiming {
                phase: phase.to_string(),
                ms,
                min_ms,
                cpu_ms,
                videos_per_s: (ranks * batch) as f64 / (ms / 1e3),
                all_reduce_ms: if phase == "train_step" { all_reduce_ms } else { None },
                gflop: flops / 1e9,
                gflops,
                fraction_of_matmul: gflops / machine,
                fraction_of_peak: fma_peak.map(|(peak, _)| gflops / peak),
            }
        })
        .collect();

    let peak = peak_memory_bytes();
    // Measured after the peak memory is read: its 256 MiB would otherwise be the peak of a
    // small model's run.
    let bandwidth = (device_name::<D>() == "cpu").then(|| bandwidth::stream_gbps(64 << 20, 5));
    let gbytes = (parameters * 4 * optimizer_streams(train_config.adam.clipping)) as f64 / 1e9;
    let gbps = gbytes / (optimizer_ms / 1e3);
    let optimizer = OptimizerTiming {
        ms: optimizer_ms,
        min_ms: optimizer_min_ms,
        gbytes,
        gbps,
        fraction_of_bandwidth: bandwidth.map(|b| gbps / b),
    };
    let peak_memory_bytes_per_rank = if ranks > 1 {
        collective
            .gather_bytes(&peak.unwrap_or(0).to_le_bytes())
            .map(|all| all.iter().map(|b| b.as_slice().try_into().map_or(0, u64::from_le_bytes)).collect())
    } else {
        None
    };
    Ok(BenchReport {
        model: description.name.clone(),
        batch,
        ranks,
        frames: M::FRAMES,
        threads: rayon::current_num_threads(),
        device: device_name::<D>().to_string(),
        parameters,
        fused_kernels: crate::kernels::fused_enabled(),
        phases,
        machine_matmul_gflops: machine,
        machine_peak_gflops: fma_peak.map(|(peak, _)| peak),
        machine_peak_kind: fma_peak.map(|(_, kind)| kind),
        register_tile: fma_peak.map(|_| crate::kernels::gemm::TileKind::detect().name()),
        optimizer,
        machine_bandwidth_gbps: bandwidth,
        peak_memory_bytes: peak,
        gpu_memory_bytes: gpu_memory_bytes::<D>(),
        peak_memory_bytes_per_rank,
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
            all_reduce_ms: None,
            gflop: 1.0,
            gflops: 50.0,
            fraction_of_matmul: 0.25,
            fraction_of_peak: Some(0.15),
        };
        BenchReport {
            model: "M".to_string(),
            batch: 4,
            ranks: 1,
            frames: 10,
            threads: 2,
            device: "cpu".to_string(),
            parameters: 2_500_000,
            fused_kernels: true,
            phases: vec![phase("forward", 1.0), phase("forward_backward", 3.0), phase("train_step", 4.5)],
            machine_matmul_gflops: 200.0,
            machine_peak_gflops: Some(400.0),
            machine_peak_kind: Some(peak::PeakKind::Avx2Fma),
            register_tile: Some("avx2"),
            optimizer: OptimizerTiming {
                ms: 500.0,
                min_ms: 480.0,
                gbytes: 10.0,
                gbps: 20.0,
                fraction_of_bandwidth: Some(0.8),
            },
            machine_bandwidth_gbps: Some(25.0),
            peak_memory_bytes: Some(3 << 30),
            gpu_memory_bytes: None,
            peak_memory_bytes_per_rank: None,
        }
    }

    #[test]
    fn markdown_row_fills_every_column_of_the_header() {
        let header = BenchReport::markdown_header();
        let columns = header.lines().next().unwrap().matches('|').count();
        let row = report().markdown_row();
        assert_eq!(row.matches('|').count(), columns);
        assert_eq!(row, "| M | 2.5M | 4 | 2 | 1.0 | 3.0 | 4.5 | 9 | 50.0 | 25% | 15% | 3.00 GiB |");
    }

    #[test]
    fn the_table_puts_the_optimizer_against_the_memory_bandwidth() {
        let table = report().table();
        assert!(
            table.contains(
                "optimizer update alone: 500.0 ms (min 480.0), 10.00 GB moved, 20.0 GB/s; cpu memory bandwidth (4 arrays read and written): 25.0 GB/s, the update reaches 80% of it\n"
            ),
            "{table}"
        );
        let mut gpu = report();
        gpu.machine_bandwidth_gbps = None;
        gpu.optimizer.fraction_of_bandwidth = None;
        assert!(gpu.table().contains("10.00 GB moved, 20.0 GB/s\n"), "{}", gpu.table());
        assert_eq!(optimizer_streams(crate::train::GradientClipping::PerVariable(1.0)), 9);
        assert_eq!(optimizer_streams(crate::train::GradientClipping::None), 8);
    }

    #[test]
    fn markdown_row_prefers_gpu_memory_and_marks_missing_phases() {
        let mut r = report();
        r.phases.truncate(1);
        r.gpu_memory_bytes = Some(1 << 30);
        assert_eq!(r.markdown_row(), "| M | 2.5M | 4 | 2 | 1.0 | - | - | - | - | - | - | 1.00 GiB |");
    }
}
