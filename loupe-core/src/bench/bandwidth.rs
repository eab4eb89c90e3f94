//! The machine's memory bandwidth for the optimizer's access pattern, measured directly:
//! [`ARRAYS`] arrays far larger than any cache, each read and written once per pass, on
//! every thread of the rayon pool. Adam reads a parameter, its gradient and the two
//! moments and writes all four back (the gradient as zero), so this stream is the ceiling
//! of its update: [`super::bench_model`] reports the `optimizer` phase as a fraction of
//! it (the roofline's memory side, next to [`super::peak`]'s compute side).

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

/// Arrays of the stream (Adam's parameter, gradient and two moments).
pub const ARRAYS: usize = 4;

/// Elements per chunk a thread takes (256 KiB of each array).
const CHUNK: usize = 64 * 1024;

/// Bytes one pass moves over `elements` `f32` per array: each array read and written.
pub fn pass_bytes(elements: usize) -> f64 {
    (ARRAYS * 2 * elements * std::mem::size_of::<f32>()) as f64
}

/// One pass: every element of the four arrays read and written, in parallel chunks (the
/// same chunk of each array in turn, as the optimizer walks a parameter and its state).
/// Each value moves halfway to 2 (`x -> 0.5 x + 1`), so repeated passes stay finite and
/// never subnormal, and the compiler cannot drop a load or a store. Each array is swept
/// on its own within a chunk: interleaving the four element by element measured 12-14
/// GB/s on the development machine against 30-39 GB/s this way (same bytes, same
/// threads), so the interleaved form measures the loop, not the memory.
pub fn pass(arrays: &mut [Vec<f32>; ARRAYS]) {
    let [a, b, c, d] = arrays;
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks_mut(CHUNK))
        .zip(c.par_chunks_mut(CHUNK))
        .zip(d.par_chunks_mut(CHUNK))
        .for_each(|(((a, b), c), d)| {
            for chunk in [a, b, c, d] {
                for x in chunk.iter_mut() {
                    *x = 0.5 * *x + 1.0;
                }
            }
        });
}

/// The stream's rate in GB/s (10^9 bytes): [`ARRAYS`] arrays of `bytes_per_array` bytes,
/// touched once before timing (so page faults are not counted), then the best of
/// `passes` timed passes.
pub fn stream_gbps(bytes_per_array: usize, passes: usize) -> f64 {
    let elements = (bytes_per_array / std::mem::size_of::<f32>()).max(1);
    let mut arrays: [Vec<f32>; ARRAYS] = std::array::from_fn(|i| vec![1.0 + i as f32; elements]);
    pass(&mut arrays);
    let best = (0..passes.max(1))
        .map(|_| {
            let t = Instant::now();
            pass(black_box(&mut arrays));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    black_box(&arrays);
    pass_bytes(elements) / best.max(1e-9) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_reads_and_writes_every_element_of_every_array() {
        // Sizes across a chunk boundary: every element is updated from its old values.
        let n = CHUNK + 3;
        let mut arrays: [Vec<f32>; ARRAYS] = std::array::from_fn(|i| vec![(i + 1) as f32; n]);
        pass(&mut arrays);
        let want = [1.5, 2.0, 2.5, 3.0];
        for (array, want) in arrays.iter().zip(want) {
            assert!(array.iter().all(|&x| x == want), "{want}: {:?}", &array[n - 2..]);
        }
        assert_eq!(pass_bytes(n), (4 * 2 * 4 * n) as f64);
    }

    #[test]
    fn the_rate_is_positive() {
        let gbps = stream_gbps(1 << 20, 2);
        assert!(gbps.is_finite() && gbps > 0.0, "{gbps}");
    }
}
