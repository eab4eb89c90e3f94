//! Memory does not grow with the number of videos read (issue: one input batch was kept
//! per training step).
//!
//! The test binary counts the allocator's live bytes. A training run of `4N` steps must
//! peak within a small bound of an `N`-step run of the same model and data, and so must
//! prediction over four passes of the validation files against one pass. Before the fix,
//! every step's input batch stayed in dfdx's allocation cache: at these sizes (batch 32,
//! 10 frames of 24 values) 3N = 60 extra steps kept about 1.9 MB, far above the bound.
//! The LSTM covers the recurrent layers, which built a host tensor per frame.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::small_data::{small_synthetic, SmallData};
use loupe::dfdx::prelude::*;
use loupe::infer::Predictor;
use loupe::model::VideoModel;
use loupe::train::run::{evaluation_dataset, train, RunConfig};
use loupe::train::TrainConfig;
use loupe::zoo::{SmallGatedNetVladModel, SmallLstmModel};

/// The system allocator, counting the bytes it has handed out and not yet got back.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and
// only updates two counters besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this binary run one at a time: the counters are process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The peak of live bytes while `f` runs, above the live bytes when it started.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f();
    (PEAK.load(Ordering::Relaxed).saturating_sub(start), out)
}

/// What a run or pass may peak above its `N`-sized twin: small against one batch per
/// step (60 x 31 KB) or per video (600 x 1 KB).
const BOUND: usize = 256 * 1024;

fn run_config(data: &SmallData, name: &str, steps: u64) -> RunConfig {
    RunConfig {
        train_files: data.train.clone(),
        validate_files: Vec::new(),
        decoder: data.decoder.clone(),
        batch_size: 32,
        seed: 3,
        shuffle_buffer: 64,
        max_steps: Some(steps),
        epochs: None,
        eval_every: None,
        checkpoint_every: None,
        output_dir: data.dir.join(name),
        keep_checkpoints: 1,
        resume: false,
        skip_corrupt: false,
        progress: false,
        top_k: 20,
        frame_order: Default::default(),
        optim: TrainConfig::default(),
        description: Default::default(),
    }
}

/// Peak growth of an `n`-step and a `4n`-step run.
fn training_peaks<M>(data: &SmallData, n: u64) -> (usize, usize)
where
    M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone,
{
    let run = |steps: u64| {
        let config = run_config(data, &format!("{}-{steps}", M::describe().name), steps);
        let (peak, out) =
            peak_growth(|| train::<M, Cpu>(loupe::device::cpu_seeded(1), &config).map(|(_, s)| s.steps));
        assert_eq!(out.unwrap(), steps);
        peak
    };
    // A first short run warms up what the process keeps once (thread pools, statics).
    run(2);
    (run(n), run(4 * n))
}

/// Peak growth of predicting `passes` passes over the validation files.
fn prediction_peak<M>(data: &SmallData, passes: usize) -> usize
where
    M: VideoModel<f32, Cpu> + BuildModule<Cpu, f32> + Clone,
{
    let files: Vec<_> = (0..passes).flat_map(|_| data.validate.iter().cloned()).collect();
    let set = evaluation_dataset::<M, Cpu>(files, data.decoder.clone(), 32, false).unwrap();
    let predictor = Predictor::<M, Cpu>::build(loupe::device::cpu_seeded(1)).unwrap();
    let (peak, videos) = peak_growth(|| {
        let mut videos = 0;
        for batch in set.frame_batches().unwrap() {
            let batch = batch.unwrap();
            let scores = predictor.predict(&batch.frames, &batch.lengths).unwrap();
            videos += scores.len() / M::CLASSES;
        }
        videos
    });
    assert_eq!(videos, 200 * passes);
    peak
}

/// The counter sees the growth this test guards against: tensors built with dfdx's
/// `tensor_from_vec` and dropped, one per step, stay in the allocation cache.
#[test]
fn the_counter_sees_buffers_kept_by_the_allocation_cache() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = loupe::device::cpu();
    let steps = |n: usize| {
        peak_growth(|| {
            for _ in 0..n {
                let t: Tensor<(usize, Const<24>), f32, Cpu> =
                    dev.tensor_from_vec(vec![0.5; 320 * 24], (320, Const));
                drop(t);
            }
        })
        .0
    };
    let (short, long) = (steps(20), steps(80));
    assert!(long > short + BOUND, "peak {short} -> {long} bytes");
    // Through loupe's constructor the same loop reuses one buffer.
    let steps = |n: usize| {
        peak_growth(|| {
            for _ in 0..n {
                let t: Tensor<(usize, Const<24>), f32, Cpu> =
                    loupe::device::try_tensor_from_slice(&dev, &[0.5; 320 * 24], (320, Const)).unwrap();
                drop(t);
            }
        })
        .0
    };
    let (short, long) = (steps(20), steps(80));
    assert!(long < short + 1024, "peak {short} -> {long} bytes");
}

#[test]
fn memory_does_not_grow_with_videos_read() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = small_synthetic("memory-bounded", 8, 10);
    let mut report = Vec::new();

    let (short, long) = training_peaks::<SmallGatedNetVladModel<f32, Cpu>>(&data, 20);
    report.push(("train small-gated-netvlad", short, long));
    let (short, long) = training_peaks::<SmallLstmModel<f32, Cpu>>(&data, 20);
    report.push(("train small-lstm", short, long));

    prediction_peak::<SmallGatedNetVladModel<f32, Cpu>>(&data, 1);
    let (one, four) = (
        prediction_peak::<SmallGatedNetVladModel<f32, Cpu>>(&data, 1),
        prediction_peak::<SmallGatedNetVladModel<f32, Cpu>>(&data, 4),
    );
    report.push(("predict small-gated-netvlad", one, four));
    let (one, four) = (
        prediction_peak::<SmallLstmModel<f32, Cpu>>(&data, 1),
        prediction_peak::<SmallLstmModel<f32, Cpu>>(&data, 4),
    );
    report.push(("predict small-lstm", one, four));

    for (what, short, long) in &report {
        println!("{what}: peak +{short} B (N), +{long} B (4N)");
    }
    for (what, short, long) in report {
        assert!(long < short + BOUND, "{what}: peak grew from {short} to {long} bytes with 4x the videos");
    }
}
