//! Device glue: the devices loupe runs on.
//!
//! [`cpu`] and [`cpu_seeded`] build dfdx's `Cpu` with its allocation cache on. With the
//! `cuda` feature, [`cuda`] builds dfdx's `Cuda` on GPU `N` after checking that a driver
//! and that GPU exist (cudarc panics inside `Cuda::try_build` when they do not).

use dfdx::tensor::{Cache, Cpu};

/// Why a device could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// This build has no CUDA support.
    #[error("this loupe was built without CUDA; rebuild with `--features cuda` on a machine with the CUDA toolkit (see the README)")]
    NoCudaSupport,
    /// The CUDA driver could not be initialised (no driver, or no GPU at all).
    #[error("the CUDA driver could not be initialised ({0}); is there an NVIDIA GPU and its driver on this machine?")]
    NoDriver(String),
    /// The ordinal names a GPU that does not exist.
    #[error("GPU {ordinal} requested but this machine has {count} CUDA device(s) (ordinals start at 0)")]
    NoSuchGpu { ordinal: usize, count: usize },
    /// dfdx failed to set the device up (context, cuBLAS, streams).
    #[error("setting up CUDA device {ordinal}: {message}")]
    Setup { ordinal: usize, message: String },
}

/// A `Cpu` device with dfdx's allocation cache on.
///
/// Without the cache a large share of a NetVLAD step is page faults on fresh buffers
/// (measured 1.5x slower), so every `Cpu` loupe makes goes through here.
///
/// ```
/// let dev = loupe_core::device::cpu();
/// # let _ = dev;
/// ```
pub fn cpu() -> Cpu {
    let dev = Cpu::default();
    dev.enable_cache();
    dev
}

/// A seeded `Cpu` device (weights initialised from `seed`), cache on.
pub fn cpu_seeded(seed: u64) -> Cpu {
    let dev = Cpu::seed_from_u64(seed);
    dev.enable_cache();
    dev
}

/// How many CUDA GPUs the driver sees; an error when there is no usable driver.
#[cfg(feature = "cuda")]
pub fn cuda_device_count() -> Result<usize, DeviceError> {
    use cudarc::driver::result;
    result::init().map_err(|e| DeviceError::NoDriver(format!("{e:?}")))?;
    let count = result::device::get_count().map_err(|e| DeviceError::NoDriver(format!("{e:?}")))?;
    Ok(count.max(0) as usize)
}

/// dfdx's `Cuda` device on GPU `ordinal`, weights initialised from `seed`, allocation
/// cache on; a [`DeviceError`] (never a panic) when there is no driver or no such GPU.
///
/// ```no_run
/// # #[cfg(feature = "cuda")] {
/// let dev = loupe_core::device::cuda(0, 42).expect("a GPU");
/// # let _ = dev;
/// # }
/// ```
#[cfg(feature = "cuda")]
pub fn cuda(ordinal: usize, seed: u64) -> Result<dfdx::tensor::Cuda, DeviceError> {
    let count = cuda_device_count()?;
    if ordinal >= count {
        return Err(DeviceError::NoSuchGpu { ordinal, count });
    }
    let dev = dfdx::tensor::Cuda::try_build(ordinal, seed)
        .map_err(|e| DeviceError::Setup { ordinal, message: format!("{e:?}") })?;
    dev.enable_cache();
    Ok(dev)
}

/// Memory in use on the current CUDA context's GPU (total minus free), bytes.
///
/// dfdx's allocation cache keeps freed buffers, so after a few training steps this is
/// close to the step's peak.
#[cfg(feature = "cuda")]
pub fn cuda_memory_in_use() -> Option<u64> {
    let (free, total) = cudarc::driver::result::mem_get_info().ok()?;
    Some(total.saturating_sub(free) as u64)
}
