//! The MPI backend (cargo feature `mpi`): the system's MPI library through the `mpi`
//! crate (rsmpi), with its safe API only.

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;

use super::{half, Collective, DistributedError};

/// Elements per MPI call: MPI counts are 32-bit, and chunks keep the scratch copy that
/// an in-place reduction needs small (32 MiB of `f32`).
const CHUNK: usize = 8 << 20;

/// MPI's world communicator. Create it once per process, at the start of `main`; MPI is
/// finalised when it is dropped, so keep it alive until the end.
///
/// MPI is initialised with `MPI_THREAD_FUNNELED`: loupe's data loaders and kernels run
/// threads, but only the thread that created this value calls MPI.
pub struct Mpi {
    world: SimpleCommunicator,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

impl Mpi {
    /// Initialises MPI (rank and world size come from the launcher).
    pub fn initialize() -> Result<Self, DistributedError> {
        let (universe, _) =
            mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or(DistributedError::MpiInit)?;
        Ok(Mpi { world: universe.world(), _universe: universe })
    }

    fn all_reduce_sum<T: Equivalence + Copy>(&self, values: &mut [T]) {
        if self.world.size() == 1 {
            return;
        }
        // rsmpi has no MPI_IN_PLACE: reduce a copy of each chunk into the chunk.
        let mut send: Vec<T> = Vec::with_capacity(values.len().min(CHUNK));
        for chunk in values.chunks_mut(CHUNK) {
            send.clear();
            send.extend_from_slice(chunk);
            self.world.all_reduce_into(&send[..], chunk, SystemOperation::sum());
        }
    }

    /// [`Collective::all_reduce_sum_f32_fp16`]: per chunk, a reduce-scatter done as one
    /// `MPI_Alltoall` of halves (rank `r` receives part `r` of every rank's chunk), the
    /// parts decoded and summed in `f32` in rank order, the sums encoded again and
    /// exchanged with one `MPI_Allgather`. Each rank sends and receives `2 (N-1)/N` times
    /// the chunk in halves: half of what a ring all-reduce of `f32` moves, with standard
    /// MPI collectives only (summing halves inside MPI would need a user-defined
    /// operation, which rsmpi builds with libffi).
    fn all_reduce_sum_fp16(&self, values: &mut [f32]) {
        let ranks = self.world_size();
        if ranks == 1 {
            return;
        }
        let (mut send, mut received, mut gathered) = (Vec::new(), Vec::new(), Vec::new());
        let mut part_sum: Vec<u16> = Vec::new();
        let mut sums: Vec<f32> = Vec::new();
        for chunk in values.chunks_mut(CHUNK) {
            // Every rank's chunk has the same length: split it into `ranks` equal parts,
            // padded with zeros.
            let part = chunk.len().div_ceil(ranks);
            send.clear();
            half::encode(chunk, &mut send);
            send.resize(part * ranks, 0);
            received.clear();
            received.resize(part * ranks, 0u16);
            self.world.all_to_all_into(&send[..], &mut received[..]);
            sums.clear();
            sums.resize(part, 0.0);
            for from in received.chunks_exact(part) {
                for (s, &h) in sums.iter_mut().zip(from) {
                    *s += half::f16_to_f32(h);
                }
            }
            part_sum.clear();
            half::encode(&sums, &mut part_sum);
            gathered.clear();
            gathered.resize(part * ranks, 0u16);
            self.world.all_gather_into(&part_sum[..], &mut gathered[..]);
            for (v, &h) in chunk.iter_mut().zip(&gathered) {
                *v = half::f16_to_f32(h);
            }
        }
    }

    fn broadcast<T: Equivalence>(&self, values: &mut [T]) {
        let root = self.world.process_at_rank(0);
        for chunk in values.chunks_mut(CHUNK) {
            root.broadcast_into(chunk);
        }
    }

    fn count(&self, n: usize) -> Count {
        match Count::try_from(n) {
            Ok(c) => c,
            Err(_) => {
                eprintln!(
                    "error: rank {}: a gathered result of {n} bytes exceeds MPI's 2 GiB message limit",
                    self.world.rank()
                );
                self.world.abort(1)
            }
        }
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        self.all_reduce_sum(values)
    }

    fn all_reduce_sum_f32_fp16(&self, values: &mut [f32]) {
        self.all_reduce_sum_fp16(values)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        self.all_reduce_sum(values)
    }

    fn broadcast_f32(&self, values: &mut [f32]) {
        self.broadcast(values)
    }

    fn broadcast_f64(&self, values: &mut [f64]) {
        self.broadcast(values)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        let mut len = bytes.len() as u64;
        self.world.process_at_rank(0).broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        self.broadcast(&mut bytes[..]);
    }

    fn gather_bytes(&self, bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
        let root = self.world.process_at_rank(0);
        // OpenMPI rejects a rank's empty send buffer in MPI_Gatherv (MPI_ERR_ARG), and a
        // rank may have nothing to send (no files of its own): every part carries one
        // extra byte, dropped on rank 0.
        let mut framed = Vec::with_capacity(bytes.len() + 1);
        framed.extend_from_slice(bytes);
        framed.push(0);
        let bytes = &framed[..];
        let len = self.count(bytes.len());
        if !self.is_root() {
            root.gather_into(&len);
            root.gather_varcount_into(bytes);
            return None;
        }
        let mut counts: Vec<Count> = vec![0; self.world_size()];
        root.gather_into_root(&len, &mut counts[..]);
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut displs = Vec::with_capacity(counts.len());
        let mut at = 0usize;
        for &c in &counts {
            displs.push(self.count(at));
            at += c as usize;
        }
        let mut all = vec![0u8; total];
        {
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            root.gather_varcount_into_root(bytes, &mut partition);
        }
        Some(
            counts
                .iter()
                .zip(&displs)
                .map(|(&c, &d)| all[d as usize..(d + c - 1) as usize].to_vec())
                .collect(),
        )
    }

    fn barrier(&self) {
        self.world.barrier()
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
