//! Weight initialisers of the reference implementation, for any dtype.
//!
//! dfdx fills tensors from any `rand` distribution producing the element type; these
//! sample in `f64` and convert, so layers need no float bounds beyond `Dtype` and the
//! device's seeded generator keeps builds reproducible.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// `N(mean, std)`, TensorFlow's `random_normal_initializer`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Normal {
    pub mean: f64,
    pub std: f64,
}

impl Normal {
    /// `N(0, 1/sqrt(fan))`, the reference's init of clustering, hidden and gating weights.
    pub fn inverse_sqrt(fan: usize) -> Normal {
        Normal { mean: 0.0, std: 1.0 / (fan as f64).sqrt() }
    }
}

impl<E: Dtype> Distribution<E> for Normal {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> E {
        let z: f64 = rng.sample(StandardNormal);
        from_f64(self.mean + self.std * z)
    }
}

/// Glorot (Xavier) uniform, `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))`: TF-slim's
/// default for `fully_connected` weights, which the reference classifiers use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GlorotUniform {
    pub bound: f64,
}

impl GlorotUniform {
    pub fn new(fan_in: usize, fan_out: usize) -> GlorotUniform {
        GlorotUniform { bound: (6.0 / (fan_in + fan_out) as f64).sqrt() }
    }
}

impl<E: Dtype> Distribution<E> for GlorotUniform {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> E {
        from_f64(rng.gen_range(-self.bound..self.bound))
    }
}

fn from_f64<E: Dtype>(v: f64) -> E {
    // Every float dtype dfdx has converts any finite f64 (possibly rounding).
    E::from_f64(v).unwrap_or_default()
}
