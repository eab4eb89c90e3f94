//! The hidden fully connected layer after pooling (docs/reference.md section 4).

use dfdx::prelude::*;

use super::shared::{try_add_bias, Normal};
use super::BatchNorm;
use crate::kernels::try_weight_product;

pub mod builder {
    /// Builder of [`super::Hidden`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct Hidden<const I: usize, const O: usize, const FAN: usize, const RELU6: bool>;

    /// Builder of [`super::HiddenBn`].
    #[derive(Debug, Copy, Clone, Default, Eq, PartialEq)]
    pub struct HiddenBn<const I: usize, const O: usize, const FAN: usize, const RELU6: bool>;
}

impl<const I: usize, const O: usize, const FAN: usize, const RELU6: bool, E: Dtype, D: Device<E>>
    BuildOnDevice<D, E> for builder::Hidden<I, O, FAN, RELU6>
{
    type Built = Hidden<I, O, FAN, RELU6, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

impl<const I: usize, const O: usize, const FAN: usize, const RELU6: bool, E: Dtype, D: Device<E>>
    BuildOnDevice<D, E> for builder::HiddenBn<I, O, FAN, RELU6>
{
    type Built = HiddenBn<I, O, FAN, RELU6, E, D>;
    fn try_build_on_device(device: &D) -> Result<Self::Built, D::Err> {
        Self::Built::try_build(device)
    }
}

/// `min(max(x, 0), 6)` when `RELU6`, identity otherwise.
fn try_relu6<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, const RELU6: bool>(
    x: Tensor<S, E, D, T>,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    if RELU6 {
        x.try_clamp(0.0, 6.0)
    } else {
        Ok(x)
    }
}

/// The hidden fully connected layer of the released models: `h = x W + b`, optionally
/// followed by ReLU6 `min(max(h, 0), 6)` when `RELU6`.
///
/// The released Gated NetVLAD/NetFV/NetRVLAD runs use it without activation
/// (`RELU6 = false`). `W` (`I x O`) starts at `N(0, 1/sqrt(FAN))` where, as in the
/// reference, `FAN` is the video stream's cluster count (not `I`); `b` starts at
/// `N(0, 0.01)`.
///
/// # Shapes
/// - `(B, I) -> (B, O)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, Hidden};
/// let dev = loupe_core::device::cpu();
/// // 8 pooled values to 4, weights N(0, 1/sqrt(2)), no activation.
/// let hidden: Hidden<8, 4, 2, false, f32, Cpu> = dev.build_module::<builder::Hidden<8, 4, 2, false>, f32>();
/// let x: Tensor<(usize, Const<8>), f32, _> = dev.sample_normal_like(&(3, Const));
/// let h = hidden.forward(x);
/// assert_eq!(h.shape().concrete(), [3, 4]);
/// ```
#[derive(Debug, Clone)]
pub struct Hidden<
    const I: usize,
    const O: usize,
    const FAN: usize,
    const RELU6: bool,
    E: Dtype,
    D: Storage<E>,
> {
    /// `W`, `I x O`.
    pub weight: Tensor<Rank2<I, O>, E, D>,
    /// `b`, `O`.
    pub bias: Tensor<Rank1<O>, E, D>,
}

impl<const I: usize, const O: usize, const FAN: usize, const RELU6: bool, E: Dtype, D: Device<E>>
    TensorCollection<E, D> for Hidden<I, O, FAN, RELU6, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Hidden<I, O, FAN, RELU6, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::inverse_sqrt(FAN))),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::new(0.0, 0.01))),
                ),
            ),
            |(weight, bias)| Hidden { weight, bias },
        )
    }
}

impl<const I: usize, const O: usize, const FAN: usize, const RELU6: bool, E: Dtype, D: Storage<E>>
    NonMutableModule for Hidden<I, O, FAN, RELU6, E, D>
{
}

impl<
        B: Dim,
        const I: usize,
        const O: usize,
        const FAN: usize,
        const RELU6: bool,
        E: Dtype,
        D: Device<E>,
        T: Tape<E, D>,
    > Module<Tensor<(B, Const<I>), E, D, T>> for Hidden<I, O, FAN, RELU6, E, D>
{
    type Output = Tensor<(B, Const<O>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        let h = try_add_bias(try_weight_product(x, &self.weight)?, &self.bias)?;
        try_relu6::<_, _, _, _, RELU6>(h)
    }
}

/// The reference's other hidden layer: `h = BN(x W)`, optionally followed by ReLU6
/// `min(max(h, 0), 6)` when `RELU6`. Batch norm's shift replaces the bias.
///
/// `W` (`I x O`) starts at `N(0, 1/sqrt(FAN))`, `FAN` the video stream's cluster count.
/// Training (`ModuleMut`, any tape) uses batch statistics, evaluation (`Module`, no
/// tape) the running averages.
///
/// # Shapes
/// - `(B, I) -> (B, O)`
///
/// ```
/// # use dfdx::prelude::*;
/// # use loupe_core::nn::{builder, HiddenBn};
/// let dev = loupe_core::device::cpu();
/// let mut hidden: HiddenBn<8, 4, 2, true, f32, Cpu> =
///     dev.build_module::<builder::HiddenBn<8, 4, 2, true>, f32>();
/// let x: Tensor<(usize, Const<8>), f32, _> = dev.sample_normal_like(&(3, Const));
/// let train = hidden.forward_mut(x.trace(hidden.alloc_grads()));
/// let eval = hidden.forward(x);
/// assert!(eval.as_vec().iter().all(|&h| (0.0..=6.0).contains(&h)));
/// # let _ = train;
/// ```
#[derive(Debug, Clone)]
pub struct HiddenBn<
    const I: usize,
    const O: usize,
    const FAN: usize,
    const RELU6: bool,
    E: Dtype,
    D: Storage<E>,
> {
    /// `W`, `I x O`.
    pub weight: Tensor<Rank2<I, O>, E, D>,
    /// Batch norm of `x W`.
    pub bn: BatchNorm<O, E, D>,
}

impl<const I: usize, const O: usize, const FAN: usize, const RELU6: bool, E: Dtype, D: Device<E>>
    TensorCollection<E, D> for HiddenBn<I, O, FAN, RELU6, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = HiddenBn<I, O, FAN, RELU6, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| t.try_fill_with_distr(Normal::inverse_sqrt(FAN))),
                ),
                Self::module("bn", |s| &s.bn, |s| &mut s.bn),
            ),
            |(weight, bn)| HiddenBn { weight, bn },
        )
    }
}

impl<
        B: Dim,
        const I: usize,
        const O: usize,
        const FAN: usize,
        const RELU6: bool,
        E: Dtype,
        D: Device<E>,
        T: Tape<E, D>,
    > ModuleMut<Tensor<(B, Const<I>), E, D, T>> for HiddenBn<I, O, FAN, RELU6, E, D>
{
    type Output = Tensor<(B, Const<O>), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(B, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        let h = try_weight_product(x, &self.weight)?;
        try_relu6::<_, _, _, _, RELU6>(self.bn.try_forward_mut(h)?)
    }
}

impl<B: Dim, const I: usize, const O: usize, const FAN: usize, const RELU6: bool, E: Dtype, D: Device<E>>
    Module<Tensor<(B, Const<I>), E, D>> for HiddenBn<I, O, FAN, RELU6, E, D>
{
    type Output = Tensor<(B, Const<O>), E, D>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, Const<I>), E, D>) -> Result<Self::Output, D::Err> {
        let h = try_weight_product(x, &self.weight)?;
        try_relu6::<_, _, _, _, RELU6>(self.bn.try_forward(h)?)
    }
}
