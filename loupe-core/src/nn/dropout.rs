//! Dropout after pooling (Lin, Xiao, Fan 2018, section 4.2: "a dropout ratio of 0.5"),
//! with masks that a checkpoint reproduces.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;

use super::shared::{from_f64, to_f64};
use crate::device::try_tensor_from_slice;

/// Parts per million of [`Dropout`]'s rate: const generics cannot be floats on stable Rust,
/// so a rate `p` is written `(p * 1e6).round()` in the layer's type.
pub const DROPOUT_RATE_SCALE: usize = 1_000_000;

/// Seeds are integers below 2^24, which every float dtype holds exactly.
const SEED_LIMIT: u32 = 1 << 24;

pub mod builder {
    /// Builder of [`super::Dropout`]: drops `PPM` values per million
    /// ([`super::DROPOUT_RATE_SCALE`]).
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct Dropout<const PPM: usize>;
}

impl<const PPM: usize, E: Dtype, D: Device<E>> BuildOnDevice<D, E> for builder::Dropout<PPM> {
    type Built = Dropout<PPM, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        let () = Dropout::<PPM, E, D>::CHECK;
        Self::Built::try_build(device)
    }
}

/// Inverted dropout, `y = x * m / (1 - p)` with `m` a mask of independent Bernoulli(1 - p)
/// draws, in training (`ModuleMut`, any tape); the identity in evaluation (`Module`, no
/// tape). The rate is `p = PPM / 1e6`.
///
/// **Reproducible and resumable.** The masks come from the layer's own state, not from the
/// device's random stream: `seed`, drawn from the device's generator when the model is
/// built (so `--seed` decides it, as it decides the weights), and `steps`, the count of
/// training passes so far. Training pass `n` draws its mask from a generator seeded by
/// `(seed, n)`, then `steps` becomes `n + 1`. Both are tensors of the checkpoint (not
/// trained), so a run resumed from a checkpoint draws the masks the uninterrupted run
/// would have drawn. (A run split across processes draws the same mask sequence on each
/// process, each applied to its own examples.)
///
/// # Shapes
/// - `(B, N) -> (B, N)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, Dropout};
/// let dev = loupe_core::device::cpu();
/// // p = 0.5: half a million per million.
/// let mut dropout: Dropout<500_000, f32, Cpu> = dev.build_module::<builder::Dropout<500_000>, f32>();
/// let x: Tensor<(usize, Const<6>), f32, _> = dev.ones_like(&(4, Const));
/// assert_eq!(dropout.forward(x.clone()).as_vec(), x.as_vec()); // evaluation: identity
/// let y = dropout.forward_mut(x).as_vec(); // training: each value 0 or 2
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// assert_eq!(dropout.steps.as_vec(), [1.0]);
/// ```
#[derive(Debug, Clone)]
pub struct Dropout<const PPM: usize, E: Dtype, D: Storage<E>> {
    /// Seed of the masks (one integer below 2^24), drawn at build time; not trained.
    pub seed: Tensor<Rank1<1>, E, D>,
    /// Training passes so far (one element); not trained.
    pub steps: Tensor<Rank1<1>, E, D>,
}

impl<const PPM: usize, E: Dtype, D: Storage<E>> Dropout<PPM, E, D> {
    /// The rate `p`.
    pub const RATE: f64 = PPM as f64 / DROPOUT_RATE_SCALE as f64;

    /// Fails the build unless `p < 1`.
    pub const CHECK: () =
        assert!(PPM < DROPOUT_RATE_SCALE, "Dropout<PPM>: the rate PPM / 1e6 must be below 1");
}

/// A seed: an integer below [`SEED_LIMIT`], as a value of the tensor's dtype.
struct SeedDistribution;

impl<E: Dtype> Distribution<E> for SeedDistribution {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> E {
        from_f64(f64::from(rng.gen_range(0..SEED_LIMIT)))
    }
}

impl<const PPM: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for Dropout<PPM, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Dropout<PPM, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "seed",
                    |s| &s.seed,
                    |s| &mut s.seed,
                    TensorOptions::detached(|t| t.try_fill_with_distr(SeedDistribution)),
                ),
                Self::tensor(
                    "steps",
                    |s| &s.steps,
                    |s| &mut s.steps,
                    TensorOptions::detached(|t| t.try_fill_with_zeros()),
                ),
            ),
            |(seed, steps)| Dropout { seed, steps },
        )
    }
}

impl<const PPM: usize, E: Dtype, D: Device<E>> Dropout<PPM, E, D> {
    /// The scaled keep mask of training pass `steps` for `n` values: `1 / (1 - p)` where
    /// kept, 0 where dropped.
    pub fn mask_values(&self, n: usize) -> Vec<E> {
        let seed = to_f64(self.seed.as_vec()[0]) as u64;
        let step = to_f64(self.steps.as_vec()[0]) as u64;
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step);
        let keep = from_f64::<E>(1.0 / (1.0 - Self::RATE));
        (0..n).map(|_| if rng.gen::<f64>() < Self::RATE { E::default() } else { keep }).collect()
    }
}

impl<B: Dim, const N: usize, const PPM: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>
    ModuleMut<Tensor<(B, Const<N>), E, D, T>> for Dropout<PPM, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, Const<N>), E, D, T>) -> Result<Self::Output, D::Err> {
        let () = Self::CHECK;
        let shape = *x.shape();
        let mask = try_tensor_from_slice(x.device(), &self.mask_values(shape.num_elements()), shape)?;
        self.steps = self.steps.clone().try_add(E::ONE)?;
        x.try_mul(mask)
    }
}

impl<B: Dim, const N: usize, const PPM: usize, E: Dtype, D: Device<E>> Module<Tensor<(B, Const<N>), E, D>>
    for Dropout<PPM, E, D>
{
    type Output = Tensor<(B, Const<N>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<N>), E, D>) -> Result<Self::Output, D::Err> {
        Ok(x)
    }
}
