//! The default backend: a job of one process, where every collective is a no-op.

use super::Collective;

/// One process alone: rank 0 of 1. Every operation returns at once and leaves the
/// buffers as they are (the sum, mean or broadcast over one rank).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f32(&self, _values: &mut [f32]) {}

    fn all_reduce_sum_f32_fp16(&self, _values: &mut [f32]) {}

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) {}

    fn broadcast_f32(&self, _values: &mut [f32]) {}

    fn broadcast_f64(&self, _values: &mut [f64]) {}

    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>) {}

    fn gather_bytes(&self, bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
        Some(vec![bytes.to_vec()])
    }

    fn barrier(&self) {}

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
