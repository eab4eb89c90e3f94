//! Times the gradient all-reduce of data-parallel training: a buffer the size of a
//! model's gradients (default: the paper's Gated NetVLAD, 321M trainable floats) summed
//! across the MPI ranks through [`loupe::distributed::Collective`], as
//! `Trainer::train_step_across` does every step. Prints, on rank 0, seconds per
//! all-reduce and the bus bandwidth `2 (N-1)/N x bytes / s` (the ring algorithm's traffic
//! per rank, counted in `f32` bytes), the number docs/distributed.md's scaling model uses.
//! With `--fp16` it also times the same sum with the values sent as IEEE half
//! (`loupe train --allreduce-fp16`), the two alternating in each repetition.
//!
//! Run: `cargo build --release --features mpi --example 02_all_reduce`, then
//! `mpirun -np 2 target/release/examples/02_all_reduce [floats] [repeats] [--fp16]`.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fp16 = args.iter().any(|a| a == "--fp16");
    let numbers: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let floats: usize = numbers.first().and_then(|a| a.parse().ok()).unwrap_or(321_000_000);
    let repeats: usize = numbers.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let collective = match loupe::distributed::from_environment() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let collective = &*collective;
    let ranks = collective.world_size();
    let mut buffer = vec![collective.rank() as f32 + 1.0; floats];
    let mut halves = if fp16 { vec![collective.rank() as f32 + 1.0; floats] } else { Vec::new() };
    collective.barrier();
    let (mut times, mut fp16_times) = (Vec::new(), Vec::new());
    let timed = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        collective.barrier();
        started.elapsed().as_secs_f64()
    };
    for _ in 0..repeats {
        times.push(timed(&mut || collective.all_reduce_sum_f32(&mut buffer)));
        if fp16 {
            fp16_times.push(timed(&mut || collective.all_reduce_sum_f32_fp16(&mut halves)));
        }
    }
    // Each repeat sums the ranks' values again: (1 + 2 + ... + N) N^(repeats - 1), an
    // integer that halves hold exactly while it stays below 2048.
    let expected = (ranks * (ranks + 1) / 2) as f64 * (ranks as f64).powi(repeats as i32 - 1);
    for (name, b) in [("f32", &buffer), ("fp16", &halves)] {
        if let Some(&v) = b.get(floats / 2) {
            if (v as f64 - expected).abs() > 1e-3 * expected {
                eprintln!("error: rank {}: {name} summed value {v} instead of {expected}", collective.rank());
                collective.abort(1);
            }
        }
    }
    if collective.is_root() {
        let bytes = (floats * 4) as f64;
        for (name, times) in [("f32 ", &times), ("fp16", &fp16_times)] {
            if times.is_empty() {
                continue;
            }
            let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
            let bus = 2.0 * (ranks as f64 - 1.0) / ranks as f64 * bytes / best;
            println!(
                "{name} on the wire: {ranks} ranks, {floats} floats ({:.2} GB as f32): best {best:.3} s of {times:.3?}; bus bandwidth {:.2} GB/s ({:.1} Gb/s) of f32 gradients",
                bytes / 1e9,
                bus / 1e9,
                bus * 8.0 / 1e9
            );
        }
    }
}
