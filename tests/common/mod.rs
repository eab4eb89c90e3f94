//! Shared by the layer tests: reference values written by `tests/reference/*.py`, the
//! crate-wide test device, and closeness assertions.
#![allow(dead_code)]

pub mod npz;
pub mod scratch;
pub mod small_data;
pub mod tiny_model;

#[allow(unused_imports)] // not every test binary writes files
pub use scratch::{scratch_dir, ScratchDir};

use dfdx::prelude::*;
use loupe::gradcheck::{named_params, set_param};
use serde_json::Value;

/// The device every numerical test runs on: `Cuda` when built with the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub type TestDevice = Cpu;
#[cfg(feature = "cuda")]
pub type TestDevice = Cuda;

pub fn device() -> TestDevice {
    #[cfg(not(feature = "cuda"))]
    {
        loupe::device::cpu_seeded(0)
    }
    #[cfg(feature = "cuda")]
    {
        loupe::device::cuda(0, 0).unwrap_or_else(|e| panic!("the cuda tests need a GPU: {e}"))
    }
}

/// All cases of `tests/reference/<family>.json`.
pub struct Reference {
    cases: Vec<Value>,
    family: String,
}

impl Reference {
    pub fn load(family: &str) -> Reference {
        let path = format!("{}/tests/reference/{family}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        Reference { cases: json["cases"].as_array().expect("cases").clone(), family: family.to_string() }
    }

    pub fn case(&self, name: &str) -> Case {
        let value = self
            .cases
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no case `{name}` in {}.json: rerun its script", self.family));
        Case { value: value.clone() }
    }
}

/// One reference case: named tensors and dims.
pub struct Case {
    value: Value,
}

impl Case {
    pub fn has(&self, tensor: &str) -> bool {
        self.value["tensors"].get(tensor).is_some()
    }

    pub fn values(&self, tensor: &str) -> Vec<f64> {
        self.value["tensors"][tensor]["values"]
            .as_array()
            .unwrap_or_else(|| panic!("case {} has no tensor `{tensor}`", self.value["name"]))
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect()
    }

    pub fn values_f32(&self, tensor: &str) -> Vec<f32> {
        self.values(tensor).into_iter().map(|v| v as f32).collect()
    }

    pub fn shape(&self, tensor: &str) -> Vec<usize> {
        self.value["tensors"][tensor]["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|v| v.as_u64().expect("dim") as usize)
            .collect()
    }

    pub fn dim(&self, name: &str) -> usize {
        self.value["dims"][name].as_u64().unwrap_or_else(|| panic!("no dim `{name}`")) as usize
    }

    /// A tensor of the case, on `dev`, with the runtime/const shape `shape`.
    pub fn tensor<S: Shape, E: Dtype, D: Device<E>>(&self, dev: &D, name: &str, shape: S) -> Tensor<S, E, D> {
        assert_eq!(shape.concrete().into_iter().collect::<Vec<_>>(), self.shape(name), "shape of `{name}`");
        let values: Vec<E> = self.values(name).into_iter().map(|v| E::from_f64(v).unwrap()).collect();
        let mut t = dev.zeros_like(&shape);
        t.copy_from(&values);
        t
    }

    /// Loads every parameter of `model` from the case's tensor of the same name; every
    /// trainable parameter must be present in the case.
    pub fn load_params<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(&self, model: &mut M) {
        for p in named_params(&*model) {
            if self.has(&p.name) {
                let values: Vec<E> =
                    self.values(&p.name).into_iter().map(|v| E::from_f64(v).unwrap()).collect();
                set_param(model, &p.name, &values).unwrap();
            } else {
                assert!(!p.trainable, "reference case lacks parameter `{}`", p.name);
            }
        }
    }
}

/// Asserts `|a - e| <= tol * max(1, |e|)` elementwise, naming the first offender.
pub fn assert_close<E: Dtype>(actual: &[E], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let a = a.to_f64().unwrap();
        assert!(
            (a - e).abs() <= tol * e.abs().max(1.0),
            "{what}[{i}]: got {a}, expected {e} (tolerance {tol})"
        );
    }
}
