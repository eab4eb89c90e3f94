//! Device glue: the devices loupe runs on.
//!
//! [`cpu`] and [`cpu_seeded`] build dfdx's `Cpu` with its allocation cache on. With the
//! `cuda` feature, `cuda` builds dfdx's `Cuda` on GPU `N` after checking that a driver
//! and that GPU exist (cudarc panics inside `Cuda::try_build` when they do not).

use dfdx::dtypes::Unit;
use dfdx::prelude::*;
use dfdx::tensor::{Cache, Cpu};

use crate::kernels;

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

/// A tensor of `shape` holding `values`, in a buffer taken from the device's allocation
/// cache.
///
/// Every tensor loupe builds from host data goes through here (or
/// [`try_tensor_from_f32`]), never through dfdx's `tensor_from_vec`. That one wraps a
/// freshly allocated buffer, and with the cache on ([`cpu`], `cuda`) a dropped tensor's
/// buffer goes into the cache, keyed by its size; only allocations that dfdx makes itself
/// take buffers out. A batch of input frames is never allocated by dfdx, so each step's
/// batch stayed in the cache for good: memory grew by one batch per step (1.4 MB per
/// video at YouTube-8M's sizes). Allocating through the cache instead makes each step
/// reuse the buffer the previous step's batch returned.
///
/// # Panics
/// When `values` does not hold exactly `shape`'s number of elements (callers check the
/// sizes of user data first and report a typed error).
///
/// ```
/// use dfdx::prelude::*;
/// let dev = loupe_core::device::cpu();
/// let t: Tensor<(usize, Const<2>), f32, _> =
///     loupe_core::device::try_tensor_from_slice(&dev, &[1.0, 2.0, 3.0, 4.0], (2, Const)).unwrap();
/// assert_eq!(t.as_vec(), [1.0, 2.0, 3.0, 4.0]);
/// ```
pub fn try_tensor_from_slice<S: Shape, E: Unit, D: ZerosTensor<E> + CopySlice<E>>(
    dev: &D,
    values: &[E],
    shape: S,
) -> Result<Tensor<S, E, D>, D::Err> {
    assert_eq!(
        values.len(),
        shape.num_elements(),
        "try_tensor_from_slice: {} values for shape {:?}",
        values.len(),
        shape
    );
    let mut t = dev.try_zeros_like(&shape)?;
    t.copy_from(values);
    Ok(t)
}

/// [`try_tensor_from_slice`] for `f32` host data and a model of any dtype `E`: on the
/// `Cpu` with `f32` the values are copied straight into the cached buffer, otherwise
/// converted first.
///
/// # Panics
/// As [`try_tensor_from_slice`].
pub fn try_tensor_from_f32<S: Shape, E: Dtype, D: Device<E>>(
    dev: &D,
    values: &[f32],
    shape: S,
) -> Result<Tensor<S, E, D>, D::Err> {
    assert_eq!(
        values.len(),
        shape.num_elements(),
        "try_tensor_from_f32: {} values for shape {:?}",
        values.len(),
        shape
    );
    let mut t = dev.try_zeros_like(&shape)?;
    if !kernels::write(&mut t, values) {
        let converted: Vec<E> =
            values.iter().map(|&v| E::from_f32(v).expect("every f32 converts to a float dtype")).collect();
        t.copy_from(&converted);
    }
    Ok(t)
}
