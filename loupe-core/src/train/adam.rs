//! Adam with the reference's per-variable gradient clipping, state kept as model copies
//! so that it is saved in checkpoints and training resumes exactly.

use dfdx::prelude::*;

use crate::kernels::{self, CpuFloat, Real};
use crate::walk::{each_tensor, each_tensor_mut, squared_norm};

/// How gradients are clipped before the update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradientClipping {
    /// Each variable's gradient separately to this L2 norm (the reference's default, 1.0):
    /// `g * c / max(|g|, c)`.
    PerVariable(f64),
    /// All gradients together to this global L2 norm.
    GlobalNorm(f64),
    /// No clipping.
    None,
}

/// Adam hyper-parameters (docs/reference.md section 5: 0.9 / 0.999 / 1e-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub clipping: GradientClipping,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, clipping: GradientClipping::PerVariable(1.0) }
    }
}

/// Adam as TensorFlow's `AdamOptimizer` computes it (the reference's optimiser):
///
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`.
///
/// The moments are stored as two copies of the model (`M`), so they have the model's
/// parameter names and are saved and loaded like it. Batch-norm running statistics are
/// not trained and not touched.
#[derive(Debug, Clone)]
pub struct Adam<M> {
    pub config: AdamConfig,
    /// Updates applied so far (`t`).
    pub step: u64,
    /// First and second moments, created on the first update.
    pub moments: Option<(M, M)>,
}

impl<M> Adam<M> {
    pub fn new(config: AdamConfig) -> Self {
        Adam { config, step: 0, moments: None }
    }
}

/// What one [`Adam::update_and_zero_grads`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamUpdate {
    /// The global gradient norm before clipping, computed only when clipping globally
    /// (else NaN).
    pub global_norm: f64,
    /// Whether the gradient of every parameter the update visited (every tensor of the
    /// model with `do_gradient_update`, the ones `ZeroGrads::try_zero_grads` zeroes) was
    /// left zero. True on the fused CPU path (`Cpu`, `f32`/`f64`, fused kernels on); false
    /// on the composed path (`Cuda`, other dtypes, fused kernels off), which leaves the
    /// gradients unchanged.
    pub gradients_zeroed: bool,
}

/// A copy of `model` with every tensor zero (Adam's initial moments): each tensor of the
/// clone is replaced by a new zero tensor of its shape, without copying the parameters
/// first (the clone shares their buffers; on `Cpu` the zeros are a fresh zeroed
/// allocation, or a cached buffer filled with zeros, and the first fused update writes
/// them without reading).
fn zeroed_like<E: Dtype, D: Device<E>, M: TensorCollection<E, D> + Clone>(model: &M) -> Result<M, D::Err> {
    let mut zeros = model.clone();
    each_tensor_mut(&mut zeros, &mut |_, _, t| t.replace_with_zeros())?;
    Ok(zeros)
}

/// Where [`Update`] reads gradients from: shared (copied out per variable) or owned
/// (read in place by the fused kernel).
enum GradientSource<'g, E: Dtype, D: Device<E>> {
    Shared(&'g Gradients<E, D>),
    Owned(&'g mut Gradients<E, D>),
}

impl<E: Dtype, D: Device<E>> GradientSource<'_, E, D> {
    fn get<S: Shape>(&self, p: &Tensor<S, E, D>) -> Tensor<S, E, D> {
        match self {
            GradientSource::Shared(g) => g.get(p),
            GradientSource::Owned(g) => g.get(p),
        }
    }
}

struct Update<'g, E: Dtype, D: Device<E>> {
    grads: GradientSource<'g, E, D>,
    config: AdamConfig,
    /// Global clipping factor, when clipping globally.
    global_scale: f64,
    step_size: f64,
    /// Whether the moments are all zero (created by this update).
    moments_zero: bool,
    /// Whether every gradient visited so far was zeroed by the fused kernel.
    zeroed_all: bool,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Update<'_, E, D> {
    type Viewer = (ViewTensorMut, ViewTensorMut, ViewTensorMut);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        (p, m, v): (&mut Tensor<S, E, D>, &mut Tensor<S, E, D>, &mut Tensor<S, E, D>),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        match kernels::cpu_float::<E, D>() {
            Some(CpuFloat::F32) => return self.fused::<f32, S>(p, m, v).map(|()| None),
            Some(CpuFloat::F64) => return self.fused::<f64, S>(p, m, v).map(|()| None),
            None => {}
        }
        self.zeroed_all = false;
        let mut g = self.grads.get(p);
        let scale = match self.config.clipping {
            GradientClipping::PerVariable(c) => {
                let norm = squared_norm(&g)?.sqrt();
                if norm > c {
                    c / norm
                } else {
                    1.0
                }
            }
            GradientClipping::GlobalNorm(_) => self.global_scale,
            GradientClipping::None => 1.0,
        };
        if scale != 1.0 {
            g = g.try_mul(E::from_f64(scale).unwrap())?;
        }
        let c = self.config;
        m.try_axpy(c.beta1, &g, 1.0 - c.beta1)?;
        v.try_axpy(c.beta2, &g.try_square()?, 1.0 - c.beta2)?;
        let direction = m.clone().try_div(v.clone().try_sqrt()?.try_add(E::from_f64(c.epsilon).unwrap())?)?;
        p.try_axpy(1.0, &direction, -self.step_size)?;
        Ok(None)
    }
}

impl<E: Dtype, D: Device<E>> Update<'_, E, D> {
    /// The whole update of one variable as one multithreaded pass (plus one for the
    /// norm when clipping per variable), in place on `p`, `m`, `v`; the pass zeroes the
    /// gradient as it reads it (in `grads` when owned, else a private copy).
    fn fused<F: Real, S: Shape>(
        &mut self,
        p: &mut Tensor<S, E, D>,
        m: &mut Tensor<S, E, D>,
        v: &mut Tensor<S, E, D>,
    ) -> Result<(), D::Err> {
        let c = self.config;
        let step_size = self.step_size;
        let mut copied;
        let g: &mut [F] = match &mut self.grads {
            GradientSource::Owned(grads) => kernels::grad_mut::<F, _, _, _>(grads, p)?,
            GradientSource::Shared(grads) => {
                self.zeroed_all = false;
                copied = kernels::read::<F, _, _, _>(&grads.get(p))?.expect("gradients are contiguous");
                &mut copied
            }
        };
        let norm = || kernels::squared_norm(g);
        let scale = match c.clipping {
            GradientClipping::PerVariable(limit) => {
                let n = norm().sqrt();
                if n > limit {
                    limit / n
                } else {
                    1.0
                }
            }
            GradientClipping::GlobalNorm(_) => self.global_scale,
            GradientClipping::None => 1.0,
        };
        let (Some(p), Some(m), Some(v)) = (
            kernels::params_mut::<F, _, _, _>(p),
            kernels::params_mut::<F, _, _, _>(m),
            kernels::params_mut::<F, _, _, _>(v),
        ) else {
            unreachable!("parameters and moments are contiguous Cpu tensors")
        };
        kernels::adam_update(p, m, v, g, self.moments_zero, scale, c.beta1, c.beta2, c.epsilon, step_size);
        Ok(())
    }
}

impl<M> Adam<M> {
    /// Applies one update with learning rate `lr` from `grads` (as returned by
    /// `backward()` on a loss traced with `model.alloc_grads()`), which are not changed.
    /// Returns the global gradient norm before clipping, computed only when clipping
    /// globally (else NaN).
    pub fn update<E: Dtype, D: Device<E>>(
        &mut self,
        model: &mut M,
        grads: &Gradients<E, D>,
        lr: f64,
    ) -> Result<f64, D::Err>
    where
        M: TensorCollection<E, D> + Clone,
    {
        Ok(self.apply(model, GradientSource::Shared(grads), lr)?.global_norm)
    }

    fn apply<E: Dtype, D: Device<E>>(
        &mut self,
        model: &mut M,
        grads: GradientSource<'_, E, D>,
        lr: f64,
    ) -> Result<AdamUpdate, D::Err>
    where
        M: TensorCollection<E, D> + Clone,
    {
        let moments_zero = self.moments.is_none();
        if moments_zero {
            self.moments = Some((zeroed_like(model)?, zeroed_like(model)?));
        }
        let (global_norm, global_scale) = match self.config.clipping {
            GradientClipping::GlobalNorm(c) => {
                let shared = match &grads {
                    GradientSource::Shared(g) => &**g,
                    GradientSource::Owned(g) => &**g,
                };
                let mut total = 0.0;
                each_tensor(&*model, &mut |_, trained, p| {
                    if trained {
                        total += p.grad_squared_norm(shared)?;
                    }
                    Ok(())
                })?;
                let n = total.sqrt();
                (n, if n > c { c / n } else { 1.0 })
            }
            _ => (f64::NAN, 1.0),
        };
        self.step += 1;
        let t = self.step as i32;
        let c = self.config;
        let step_size = lr * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t));
        let (m, v) = self.moments.as_mut().expect("created above");
        let owned = matches!(grads, GradientSource::Owned(_));
        let mut update =
            Update { grads, config: c, global_scale, step_size, moments_zero, zeroed_all: owned };
        M::iter_tensors(&mut RecursiveWalker { m: (model, m, v), f: &mut update })?;
        Ok(AdamUpdate { global_norm, gradients_zeroed: update.zeroed_all })
    }

    /// [`Adam::update`] reading the gradients in place (no copy of each gradient on the
    /// fused CPU path) and consuming them: on the fused CPU path every gradient it reads
    /// is left zero, elsewhere `grads` is left unchanged
    /// ([`Adam::update_and_zero_grads`] says which). Returns the global gradient norm as
    /// [`Adam::update`] does.
    pub fn update_in_place<E: Dtype, D: Device<E>>(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<E, D>,
        lr: f64,
    ) -> Result<f64, D::Err>
    where
        M: TensorCollection<E, D> + Clone,
    {
        Ok(self.update_and_zero_grads(model, grads, lr)?.global_norm)
    }

    /// [`Adam::update_in_place`], saying whether it left the gradients zeroed.
    ///
    /// The contract: when [`AdamUpdate::gradients_zeroed`] is true, the gradient in
    /// `grads` of every tensor of `model` with `do_gradient_update` (exactly the set that
    /// `model.try_zero_grads(grads)` zeroes) is zero, written by the update's own pass as
    /// it read each gradient, so for gradients returned by `backward()` on a tape traced
    /// with `model.alloc_grads()` (which hold only those tensors' gradients) `grads` is
    /// as `try_zero_grads` would leave it and can be traced again directly. Tensors
    /// without `do_gradient_update` (batch-norm running statistics) are not visited; their
    /// gradients are never among those. When false, `grads` is unchanged and must be
    /// zeroed before it accumulates another backward pass.
    pub fn update_and_zero_grads<E: Dtype, D: Device<E>>(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<E, D>,
        lr: f64,
    ) -> Result<AdamUpdate, D::Err>
    where
        M: TensorCollection<E, D> + Clone,
    {
        self.apply(model, GradientSource::Owned(grads), lr)
    }
}
