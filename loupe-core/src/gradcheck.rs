//! Finite-difference gradient checking for any dfdx module, by parameter name.
//!
//! Every layer in loupe is tested with [`check_gradients`]: the analytic gradient of a
//! random projection of the module's output is compared with central finite differences
//! for **every** element of every trainable parameter and of the input. dfdx drops a
//! gradient silently when a taped tensor is lost on the way to the loss (the gradient then
//! reads as zeros), so a parameter whose analytic gradient is all zero while its numeric
//! one is not is reported as [`GradCheckError::MissingGradient`].
//!
//! The same by-name access ([`named_params`], [`set_param`]) loads reference weights.

use dfdx::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::walk::{each_tensor, each_tensor_mut};

/// A parameter of a module, read by name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedParam<E> {
    /// Checkpoint key: field names joined with dots, e.g. `assignment.weights`.
    pub name: String,
    /// Values in row-major order.
    pub values: Vec<E>,
    /// Shape of the tensor.
    pub shape: Vec<usize>,
    /// Whether the optimiser updates it (false for batch-norm running statistics).
    pub trainable: bool,
}

/// Every tensor of `model` with its checkpoint name, in visiting order.
pub fn named_params<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(model: &M) -> Vec<NamedParam<E>> {
    let mut params = Vec::new();
    // The walk never fails: it only copies.
    let _ = each_tensor(model, &mut |name, trainable, t| {
        params.push(NamedParam { name: name.to_string(), values: t.to_host(), shape: t.dims(), trainable });
        Ok(())
    });
    params
}

/// Every tensor's gradient in `grads`, in the same visiting order as [`named_params`]:
/// the gradient of each trainable tensor, an empty vector for the others.
///
/// # Panics
/// When a trainable tensor has no gradient in `grads` (trace with `model.alloc_grads()`,
/// or allocate them, so a lost gradient reads as zeros).
pub fn param_grads<M: TensorCollection<f64, Cpu>>(model: &M, grads: &Gradients<f64, Cpu>) -> Vec<Vec<f64>> {
    let mut found = Vec::new();
    // The walk never fails: it only copies.
    let _ = each_tensor(model, &mut |_, trainable, t| {
        found.push(if trainable { t.grad_to_host(grads) } else { Vec::new() });
        Ok(())
    });
    found
}

/// Why [`set_param`] could not set a parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetParamError {
    #[error("no parameter named `{0}`")]
    UnknownName(String),
    #[error("parameter `{name}` has {expected} elements, {got} were given")]
    WrongSize { name: String, expected: usize, got: usize },
}

/// Overwrites the parameter called `name` with `values` (row-major).
pub fn set_param<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    model: &mut M,
    name: &str,
    values: &[E],
) -> Result<(), SetParamError> {
    let mut found = None;
    // The walk never fails: it only copies.
    let _ = each_tensor_mut(model, &mut |key, _, t| {
        if key == name {
            found = Some(if t.len() == values.len() {
                t.copy_from_host(values);
                Ok(())
            } else {
                Err((t.len(), values.len()))
            });
        }
        Ok(())
    });
    match found {
        None => Err(SetParamError::UnknownName(name.to_string())),
        Some(Ok(())) => Ok(()),
        Some(Err((expected, got))) => Err(SetParamError::WrongSize { name: name.to_string(), expected, got }),
    }
}

/// Tolerances of [`check_gradients`]: `|analytic - numeric| <= abs + rel * max(|a|, |n|)`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Step of the central difference.
    pub step: f64,
    pub abs: f64,
    pub rel: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { step: 1e-6, abs: 1e-7, rel: 1e-5 }
    }
}

/// A gradient that disagrees with finite differences, or never arrived.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GradCheckError {
    #[error("`{name}`[{index}]: analytic gradient {analytic:e}, finite differences {numeric:e}")]
    Mismatch { name: String, index: usize, analytic: f64, numeric: f64 },
    #[error("`{name}` received no gradient (all zero) but finite differences are not zero (max {numeric_max:e}): a taped tensor was lost")]
    MissingGradient { name: String, numeric_max: f64 },
    #[error("`{0}` has an all-zero gradient under finite differences too: the check proves nothing for it")]
    Untested(String),
}

/// What [`check_gradients`] verified.
#[derive(Debug, Clone)]
pub struct GradReport {
    /// Names of the checked tensors (`input` first), each with its element count.
    pub checked: Vec<(String, usize)>,
    /// Largest absolute difference seen.
    pub max_abs_error: f64,
}

type F64Tape = OwnedTape<f64, Cpu>;

/// Checks the gradients of `model` at input `x`, in training mode (`ModuleMut`).
///
/// The objective is `sum(out * R)` with `R` a fixed random tensor (seed `seed`), so every
/// output element contributes with a different weight. Every element of the input and of
/// every trainable parameter is checked; all errors are returned, not only the first.
pub fn check_gradients<M, S, O>(
    model: &mut M,
    x: Tensor<S, f64, Cpu>,
    tol: Tolerance,
    seed: u64,
) -> Result<GradReport, Vec<GradCheckError>>
where
    S: Shape,
    O: Shape,
    M: TensorCollection<f64, Cpu>
        + ModuleMut<Tensor<S, f64, Cpu, F64Tape>, Output = Tensor<O, f64, Cpu, F64Tape>>
        + ModuleMut<Tensor<S, f64, Cpu>, Output = Tensor<O, f64, Cpu>>,
{
    let dev = x.device().clone();
    // Output shape from one untaped pass.
    let probe = model.forward_mut(x.clone());
    let out_shape = *probe.shape();
    let mut rng = StdRng::seed_from_u64(seed);
    let r_values: Vec<f64> = (0..out_shape.num_elements()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut r: Tensor<O, f64, Cpu> = dev.zeros_like(&out_shape);
    r.copy_from(&r_values);

    let objective = |model: &mut M, x: Tensor<S, f64, Cpu>| -> f64 {
        let out = model.forward_mut(x);
        (out * r.clone()).sum::<Rank0, _>().array()
    };

    // Analytic gradients.
    // Leaky gradients keep the input's gradient; every trainable parameter gets a zeroed
    // buffer up front, so a lost gradient reads as zeros (as in training) and is caught below.
    let mut grads = Gradients::leaky();
    {
        each_tensor(&*model, &mut |_, trainable, t| {
            if trainable {
                t.grad_f64(&mut grads)?;
            }
            Ok(())
        })
        .expect("cpu allocation");
    }
    grads.try_alloc_for(&x).expect("cpu allocation");
    let x_traced = x.clone().trace(grads);
    let out = model.forward_mut(x_traced);
    let grads = (out * r.clone()).sum::<Rank0, _>().backward();
    let input_grad = grads.get(&x).as_vec();
    let analytic_params: Vec<(NamedParam<f64>, Vec<f64>)> = named_params(&*model)
        .into_iter()
        .zip(param_grads(&*model, &grads))
        .filter(|(p, _)| p.trainable)
        .collect();

    let mut errors = Vec::new();
    let mut report = GradReport { checked: Vec::new(), max_abs_error: 0.0 };
    let mut compare = |name: &str, analytic: &[f64], numeric: &[f64], errors: &mut Vec<GradCheckError>| {
        let numeric_max = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let analytic_max = analytic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if numeric_max == 0.0 && analytic_max == 0.0 {
            errors.push(GradCheckError::Untested(name.to_string()));
        } else if analytic_max == 0.0 && numeric_max > tol.abs {
            errors.push(GradCheckError::MissingGradient { name: name.to_string(), numeric_max });
        } else {
            for (index, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
                let diff = (a - n).abs();
                report.max_abs_error = report.max_abs_error.max(diff);
                if diff > tol.abs + tol.rel * a.abs().max(n.abs()) {
                    errors.push(GradCheckError::Mismatch {
                        name: name.to_string(),
                        index,
                        analytic: a,
                        numeric: n,
                    });
                }
            }
        }
        report.checked.push((name.to_string(), analytic.len()));
    };

    // Input.
    let x_values = x.as_vec();
    let numeric: Vec<f64> = (0..x_values.len())
        .map(|i| {
            let mut shifted = x_values.clone();
            let mut at = |delta: f64| {
                shifted[i] = x_values[i] + delta;
                let mut xs = x.clone();
                xs.copy_from(&shifted);
                objective(model, xs)
            };
            (at(tol.step) - at(-tol.step)) / (2.0 * tol.step)
        })
        .collect();
    compare("input", &input_grad, &numeric, &mut errors);

    // Parameters.
    for (param, analytic) in &analytic_params {
        let numeric: Vec<f64> = (0..param.values.len())
            .map(|i| {
                let mut at = |delta: f64| {
                    let mut v = param.values.clone();
                    v[i] += delta;
                    set_param(model, &param.name, &v).expect("name read from the model");
                    objective(model, x.clone())
                };
                let d = (at(tol.step) - at(-tol.step)) / (2.0 * tol.step);
                set_param(model, &param.name, &param.values).expect("name read from the model");
                d
            })
            .collect();
        compare(&param.name, analytic, &numeric, &mut errors);
    }

    if errors.is_empty() {
        Ok(report)
    } else {
        Err(errors)
    }
}
