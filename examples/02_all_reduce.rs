//! Times the gradient all-reduce of data-parallel training: a buffer the size of a
//! model's gradients (default: the paper's Gated NetVLAD, 321M trainable floats) summed
//! across the MPI ranks through [`loupe::distributed::Collective`], as
//! `Trainer::train_step_across` does every step. Prints, on rank 0, seconds per
//! all-reduce and the bus bandwidth `2 (N-1)/N x bytes / s` (the ring algorithm's traffic
//! per rank), the number docs/distributed.md's scaling model uses.
//!
//! Run: `cargo build --release --features mpi --example 02_all_reduce`, then
//! `mpirun -np 2 target/release/examples/02_all_reduce [floats] [repeats]`.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let floats: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(321_000_000);
    let repeats: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let collective = match loupe::distributed::from_environment() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let ranks = collective.world_size();
    let mut buffer = vec![collective.rank() as f32 + 1.0; floats];
    collective.barrier();
    let mut times = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        collective.all_reduce_sum_f32(&mut buffer);
        collective.barrier();
        times.push(started.elapsed().as_secs_f64());
    }
    // Each repeat sums the ranks' values again: (1 + 2 + ... + N) N^(repeats - 1).
    let expected = (ranks * (ranks + 1) / 2) as f64 * (ranks as f64).powi(repeats as i32 - 1);
    if (buffer[floats / 2] as f64 - expected).abs() > 1e-3 * expected {
        eprintln!(
            "error: rank {}: summed value {} instead of {expected}",
            collective.rank(),
            buffer[floats / 2]
        );
        collective.abort(1);
    }
    if collective.is_root() {
        let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let bytes = (floats * 4) as f64;
        let bus = 2.0 * (ranks as f64 - 1.0) / ranks as f64 * bytes / best;
        println!(
            "{ranks} ranks, {floats} floats ({:.2} GB): best {best:.3} s of {times:.3?}; bus bandwidth {:.2} GB/s ({:.1} Gb/s)",
            bytes / 1e9,
            bus / 1e9,
            bus * 8.0 / 1e9
        );
    }
}
