//! What can go wrong when setting up a distributed job.

/// Why a distributed job cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    #[error(
        "{files} training files for {ranks} ranks: each rank reads whole files, so give at least one file per rank \
         (split the data into more shards, or start fewer ranks)"
    )]
    FewerFilesThanRanks { files: usize, ranks: usize },
    #[error(
        "started by an MPI launcher as one of {processes} processes, but this loupe was built without the `mpi` \
         feature (every process would train alone): rebuild with `--features mpi`"
    )]
    NoMpiSupport { processes: usize },
    #[error("MPI could not be initialised (was it initialised already in this process?)")]
    MpiInit,
    #[error(
        "averaging gradients across ranks needs them on the Cpu (f32 or f64){hint}; this model runs on another device"
    )]
    UnsupportedDevice { hint: &'static str },
    #[error("malformed result from rank {rank}: {what}")]
    Malformed { rank: usize, what: String },
    #[error("NCCL: {0}")]
    Nccl(String),
}
