//! Device glue: the devices loupe runs on.

use dfdx::tensor::{Cache, Cpu};

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
