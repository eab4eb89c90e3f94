//! Data parallelism: the collective operations that training, evaluation and prediction
//! use to work as one job over several processes.
//!
//! Every process (a *rank*) runs the same program on its own part of the data. A
//! [`Collective`] tells a rank who it is ([`Collective::rank`],
//! [`Collective::world_size`]) and combines values across ranks: all-reduce sums,
//! broadcast from rank 0, gather of small results on rank 0, barrier, abort.
//!
//! Backends:
//! - [`SingleProcess`]: one rank, every operation a no-op; the default, no dependency.
//! - `Mpi` (cargo feature `mpi`): the system's MPI through the `mpi` crate. Rank and
//!   world size come from the launcher (`mpirun -np 4 loupe train ...`, `srun`), see
//!   [`from_environment`].
//! - `nccl` (cargo feature `nccl`, on top of `cuda` and `mpi`): GPU buffers reduced with
//!   NCCL, one process per GPU, the NCCL unique id broadcast over MPI.
//!
//! What uses them: [`crate::train::run::train_across`] (weights broadcast from rank 0,
//! files dealt round-robin, gradients averaged before clipping and Adam),
//! [`crate::train::run::evaluate_across`] and [`crate::train::run::predict_across`]
//! (files dealt round-robin, per-video results gathered on rank 0 in file order).
//! docs/distributed.md describes running them.

mod codec;
mod error;
pub mod half;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
mod single;
mod tensors;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
pub use codec::{Decoder, Encoder};
pub use error::DistributedError;
pub use single::SingleProcess;
pub use tensors::{all_reduce_gradients, broadcast_tensors, gradients_reducible};

use std::path::PathBuf;

/// The operations data-parallel training and evaluation need, as every rank of a job
/// sees them. Every rank must call the same operations in the same order with buffers of
/// the same length (as with MPI); a rank that stops calling leaves the others waiting,
/// so a failing rank ends the job with [`Collective::abort`].
pub trait Collective {
    /// This process's index, `0..world_size()`; rank 0 writes the outputs.
    fn rank(&self) -> usize;

    /// Number of processes in the job.
    fn world_size(&self) -> usize;

    /// Whether this is rank 0, the rank that writes checkpoints, events and results.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Replaces `values` on every rank by their element-wise sum over all ranks.
    fn all_reduce_sum_f32(&self, values: &mut [f32]);

    /// [`Collective::all_reduce_sum_f32`] with the values sent as IEEE half precision
    /// ([`Compression::Fp16`]): each rank's values are rounded to half, summed in `f32`,
    /// and the sum is rounded to half again before every rank gets it back as `f32`.
    /// Half the bytes on the wire for about 3 decimal digits (relative error up to 2^-11
    /// per rounding), magnitudes below 2^-24 lost and above 65504 infinite.
    fn all_reduce_sum_f32_fp16(&self, values: &mut [f32]);

    /// [`Collective::all_reduce_sum_f32`] for `f64`.
    fn all_reduce_sum_f64(&self, values: &mut [f64]);

    /// Replaces `values` on every rank by their element-wise mean over all ranks.
    fn all_reduce_mean_f32(&self, values: &mut [f32]) {
        self.all_reduce_sum_f32(values);
        if self.world_size() > 1 {
            let scale = 1.0 / self.world_size() as f32;
            values.iter_mut().for_each(|v| *v *= scale);
        }
    }

    /// Replaces `values` on every rank by rank 0's (the lengths must agree).
    fn broadcast_f32(&self, values: &mut [f32]);

    /// [`Collective::broadcast_f32`] for `f64`.
    fn broadcast_f64(&self, values: &mut [f64]);

    /// Replaces `bytes` on every rank by rank 0's, whatever their length elsewhere.
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>);

    /// Every rank's `bytes`, in rank order, on rank 0; `None` on the other ranks.
    fn gather_bytes(&self, bytes: &[u8]) -> Option<Vec<Vec<u8>>>;

    /// Returns once every rank has called it.
    fn barrier(&self);

    /// Ends every rank of the job with exit status `code` (MPI_Abort); one process alone
    /// just exits.
    fn abort(&self, code: i32) -> !;
}

/// How gradients travel in the all-reduce of a training step across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// As they are (`f32` or `f64`).
    #[default]
    None,
    /// As IEEE half precision, summed in `f32` (Horovod's `Compression.fp16`):
    /// [`Collective::all_reduce_sum_f32_fp16`]. `loupe train --allreduce-fp16`.
    Fp16,
}

/// The collective this process was launched into: `Mpi` when an MPI launcher started
/// it (OpenMPI's `mpirun`, MPICH's `mpiexec`, Slurm's `srun` with PMI or PMIx) and loupe
/// was built with the `mpi` feature, else [`SingleProcess`].
///
/// A process that a launcher started as one of several, in a build without the `mpi`
/// feature, gets [`DistributedError::NoMpiSupport`] rather than silently training alone
/// (every rank would write the same outputs).
pub fn from_environment() -> Result<Box<dyn Collective>, DistributedError> {
    match launcher_world_size() {
        None => Ok(Box::new(SingleProcess)),
        #[cfg(feature = "mpi")]
        Some(_) => Ok(Box::new(Mpi::initialize()?)),
        // One process, or a PMIx launch that does not say how many: nothing to join.
        #[cfg(not(feature = "mpi"))]
        Some(0 | 1) => Ok(Box::new(SingleProcess)),
        #[cfg(not(feature = "mpi"))]
        Some(n) => Err(DistributedError::NoMpiSupport { processes: n }),
    }
}

/// The number of processes an MPI launcher says it started, from the variables it sets
/// for each process (`None`: not started by a launcher loupe knows).
pub fn launcher_world_size() -> Option<usize> {
    const SIZE_VARIABLES: [&str; 4] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"];
    for name in SIZE_VARIABLES {
        if let Some(n) = std::env::var(name).ok().and_then(|v| v.trim().parse().ok()) {
            return Some(n);
        }
    }
    // PMIx (Slurm `--mpi=pmix`, OpenMPI 5) always sets the rank, not always the size.
    std::env::var_os("PMIX_RANK").map(|_| 0)
}

/// The files rank `rank` of `world_size` reads: `files[rank]`, `files[rank + world_size]`,
/// ... (round-robin, so shards of similar size give ranks similar work).
pub fn shard_files(files: &[PathBuf], rank: usize, world_size: usize) -> Vec<PathBuf> {
    files.iter().skip(rank).step_by(world_size.max(1)).cloned().collect()
}

/// [`shard_files`] for training, where every rank needs data: an error when there are
/// fewer files than ranks.
pub fn training_shard(
    files: &[PathBuf],
    collective: &dyn Collective,
) -> Result<Vec<PathBuf>, DistributedError> {
    let ranks = collective.world_size();
    if files.len() < ranks {
        return Err(DistributedError::FewerFilesThanRanks { files: files.len(), ranks });
    }
    Ok(shard_files(files, collective.rank(), ranks))
}

/// Copies `values` from rank 0 to every rank, for any element type: bit-exact for `f32`
/// and `f64` (sent as they are), through `f64` for other dtypes.
#[allow(clippy::ptr_arg)] // a `Vec`, not a slice: it is downcast through `Any`, which needs `Sized`
pub fn broadcast_values<E: dfdx::dtypes::Dtype>(collective: &dyn Collective, values: &mut Vec<E>) {
    if collective.world_size() == 1 {
        return;
    }
    let any: &mut dyn std::any::Any = values;
    if let Some(v) = any.downcast_mut::<Vec<f32>>() {
        return collective.broadcast_f32(v);
    }
    if let Some(v) = any.downcast_mut::<Vec<f64>>() {
        return collective.broadcast_f64(v);
    }
    let mut wide: Vec<f64> = values.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).collect();
    collective.broadcast_f64(&mut wide);
    for (v, w) in values.iter_mut().zip(wide) {
        *v = E::from_f64(w).unwrap_or(*v);
    }
}

/// The skip reports of every rank added up, on rank 0 (other ranks get their own back):
/// each rank reads its own files, so a job's summary must count what all of them skipped.
/// A report that does not survive the trip (it cannot: both ends are this code) counts as
/// nothing rather than failing the run at its end.
pub fn sum_skip_reports(
    collective: &dyn Collective,
    report: &crate::data::SkipReport,
) -> crate::data::SkipReport {
    if collective.world_size() == 1 {
        return report.clone();
    }
    let bytes = serde_json::to_vec(report).unwrap_or_default();
    let Some(all) = collective.gather_bytes(&bytes) else {
        return report.clone();
    };
    let mut total = crate::data::SkipReport::default();
    for part in all {
        if let Ok(r) = serde_json::from_slice::<crate::data::SkipReport>(&part) {
            total.merge(&r);
        }
    }
    total
}

/// [`broadcast_values`] for one `u64` (step counters and flags).
pub fn broadcast_u64(collective: &dyn Collective, value: u64) -> u64 {
    if collective.world_size() == 1 {
        return value;
    }
    let mut bytes = value.to_le_bytes().to_vec();
    collective.broadcast_bytes(&mut bytes);
    bytes.try_into().map(u64::from_le_bytes).unwrap_or(value)
}

#[cfg(test)]
mod tests;
