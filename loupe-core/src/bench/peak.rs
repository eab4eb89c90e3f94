//! The cores' peak single-precision rate, measured directly: a loop of fused multiply-adds
//! whose operands never leave the registers, run on every thread of the rayon pool at
//! once. It is the ceiling no matrix product can pass (no loads, no stores, no
//! dependencies between the accumulators), so [`super::bench_model`] reports each phase
//! as a fraction of it next to the fraction of the measured matmul rate.
//!
//! On x86-64 with AVX-512 (detected at run time) the loop issues 512-bit `vfmadd`
//! instructions on [`CHAINS`] independent accumulators, with AVX2 and FMA only 256-bit
//! ones: enough to cover the instruction's latency (4-5 cycles) times the two FMA ports of
//! current cores. The widest the CPU has is its peak (cores with 512-bit FMA units run
//! twice the 256-bit rate; the register tile of `kernels::gemm` uses the same). Elsewhere
//! it runs the same arithmetic as 8-lane multiply-then-add in portable Rust, which the
//! compiler vectorises for the build's target (without FMA: a multiply and an add per
//! lane, so the rate is the portable ceiling, not the hardware's).
#![allow(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Independent accumulators (vector registers) of the loop.
pub const CHAINS: usize = 12;
/// `f32` lanes per accumulator of the portable and AVX2 loops (one 256-bit register).
pub const LANES: usize = 8;

/// Which instructions the loop ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeakKind {
    /// 512-bit fused multiply-add (x86-64 AVX-512F).
    Avx512,
    /// 256-bit fused multiply-add (x86-64 AVX2 + FMA).
    Avx2Fma,
    /// Portable multiply then add, vectorised for the build's target.
    Portable,
}

impl PeakKind {
    /// How the report names it.
    pub fn describe(self) -> &'static str {
        match self {
            PeakKind::Avx512 => "512-bit FMA",
            PeakKind::Avx2Fma => "256-bit FMA",
            PeakKind::Portable => "portable multiply-add",
        }
    }
}

impl PeakKind {
    /// `f32` lanes per accumulator.
    pub fn lanes(self) -> usize {
        match self {
            PeakKind::Avx512 => 2 * LANES,
            PeakKind::Avx2Fma | PeakKind::Portable => LANES,
        }
    }
}

/// FLOPs of one call of [`fma_loop`] with `iterations` that ran as `kind` (a multiply-add
/// counts as 2).
pub fn loop_flops(iterations: u64, kind: PeakKind) -> f64 {
    iterations as f64 * (CHAINS * kind.lanes() * 2) as f64
}

/// Runs `iterations` rounds of `acc = acc * a + b` on [`CHAINS`] x [`LANES`] accumulators
/// starting at zero, and returns the sum of every accumulator's first lane (so the work
/// cannot be optimised away; with `a = 1`, `b = 1` and `iterations < 2^24` the result is
/// exactly `CHAINS * iterations`) and the kind of instructions that ran.
pub fn fma_loop(iterations: u64, a: f32, b: f32) -> (f32, PeakKind) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the only requirement of calling a `#[target_feature]` function is that
        // the CPU supports the features it enables, detected just above.
        return (unsafe { fma_loop_avx512(iterations, a, b) }, PeakKind::Avx512);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the only requirement of calling a `#[target_feature]` function is that
        // the CPU supports the features it enables; both were detected just above.
        return (unsafe { fma_loop_avx2(iterations, a, b) }, PeakKind::Avx2Fma);
    }
    (fma_loop_portable(iterations, a, b), PeakKind::Portable)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop_avx2(iterations: u64, a: f32, b: f32) -> f32 {
    use std::arch::x86_64::{_mm256_cvtss_f32, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps};
    let (va, vb) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, va, vb);
        }
    }
    acc.iter().map(|&x| _mm256_cvtss_f32(x)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_loop_avx512(iterations: u64, a: f32, b: f32) -> f32 {
    use std::arch::x86_64::{_mm512_cvtss_f32, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps};
    let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, va, vb);
        }
    }
    acc.iter().map(|&x| _mm512_cvtss_f32(x)).sum()
}

fn fma_loop_portable(iterations: u64, a: f32, b: f32) -> f32 {
    let mut acc = [[0f32; LANES]; CHAINS];
    for _ in 0..iterations {
        for chain in acc.iter_mut() {
            for x in chain.iter_mut() {
                *x = *x * a + b;
            }
        }
    }
    acc.iter().map(|chain| chain[0]).sum()
}

/// The peak rate of every thread of the current rayon pool together, GFLOP/s: the loop
/// runs on all threads at once (`rayon::broadcast`), sized to take about `target` per
/// thread; the best of three rounds, each counted from the slowest thread's time.
pub fn peak_gflops(target: Duration) -> (f64, PeakKind) {
    let probe = 1u64 << 16;
    let t = Instant::now();
    let (_, kind) = fma_loop(probe, black_box(1.0), black_box(1.0));
    let per_iteration = t.elapsed().as_secs_f64().max(1e-9) / probe as f64;
    let iterations = ((target.as_secs_f64() / per_iteration) as u64).clamp(probe, 1 << 34);
    let threads = rayon::current_num_threads().max(1);
    let best = (0..3)
        .map(|_| {
            let times = rayon::broadcast(|_| {
                let t = Instant::now();
                black_box(fma_loop(iterations, black_box(1.0), black_box(1e-7)));
                t.elapsed()
            });
            times.into_iter().max().unwrap_or(Duration::from_secs(1))
        })
        .min()
        .unwrap_or(Duration::from_secs(1));
    (threads as f64 * loop_flops(iterations, kind) / best.as_secs_f64() / 1e9, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_runs_every_multiply_add_it_counts() {
        // acc = acc * 1 + 1 from 0: after n rounds every lane holds n, so the first lanes
        // of the CHAINS accumulators sum to CHAINS * n (exact below 2^24).
        for n in [0u64, 1, 7, 1000, 123_457] {
            let (sum, _) = fma_loop(n, 1.0, 1.0);
            assert_eq!(sum, (CHAINS as u64 * n) as f32, "{n} rounds");
        }
        let portable = fma_loop_portable(1000, 0.5, 2.0);
        let (dispatched, _) = fma_loop(1000, 0.5, 2.0);
        // acc -> 0.5 acc + 2 converges to 4 from below: both paths compute the same values.
        assert_eq!(portable, dispatched);
        assert!((portable - CHAINS as f32 * 4.0).abs() < 1e-4, "{portable}");
        assert_eq!(loop_flops(10, PeakKind::Avx2Fma), 10.0 * (CHAINS * LANES * 2) as f64);
        assert_eq!(loop_flops(10, PeakKind::Avx512), 2.0 * loop_flops(10, PeakKind::Avx2Fma));
    }

    #[test]
    fn peak_rate_is_positive_and_names_its_instructions() {
        let (gflops, kind) = peak_gflops(Duration::from_millis(5));
        assert!(gflops.is_finite() && gflops > 0.0, "{gflops}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert_eq!(kind, PeakKind::Avx512);
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            assert_eq!(kind, PeakKind::Avx2Fma);
        }
        let _ = kind.describe();
    }
}
