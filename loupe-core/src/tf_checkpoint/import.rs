//! Loading a TensorFlow checkpoint's variables into a loupe model through a [`Mapping`].

use std::collections::{BTreeSet, HashMap};

use dfdx::prelude::*;

use super::bundle::TfCheckpoint;
use super::error::{TfCheckpointError, TfImportError};
use super::mapping::{Mapping, Transform};
use crate::walk::{each_tensor, each_tensor_mut};

/// One loupe tensor of a model: name, shape, whether it is trained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub trainable: bool,
}

/// Every tensor of `model`, in visiting order (nothing copied).
pub fn model_tensors<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(model: &M) -> Vec<ModelTensor> {
    let mut layout = Vec::new();
    // The walk never fails: it only reads shapes.
    let _ = each_tensor(model, &mut |name, trainable, t| {
        layout.push(ModelTensor { name: name.to_string(), shape: t.dims(), trainable });
        Ok(())
    });
    layout
}

/// Where [`fill`] gets each tensor's values: read on demand by name, `None` for a tensor
/// the source does not fill.
type Source<'a> = dyn FnMut(&str) -> Result<Option<Vec<f32>>, TfCheckpointError> + 'a;

/// Writes the values `source` has into `model`'s tensors; `zero_others` zeroes every tensor
/// the source does not fill.
fn fill<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    model: &mut M,
    source: &mut Source<'_>,
    zero_others: bool,
    prefix: &std::path::Path,
) -> Result<(), TfImportError> {
    // Values by tensor name, one tensor at a time (only one tensor's values are ever held
    // besides the model); the first read error stops the filling.
    let mut error = None;
    each_tensor_mut(model, &mut |name, _, t| {
        if error.is_some() {
            return Ok(());
        }
        match source(name) {
            Ok(Some(v)) => {
                let converted: Vec<E> = v.into_iter().map(|x| E::from_f32(x).unwrap_or_default()).collect();
                t.copy_from_host(&converted);
            }
            Ok(None) if zero_others => t.fill_zeros()?,
            Ok(None) => {}
            Err(e) => error = Some(e),
        }
        Ok(())
    })
    .map_err(|e| TfImportError::Mismatch {
        prefix: prefix.to_path_buf(),
        problems: vec![format!("device: {e:?}")],
    })?;
    match error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// One row of an import plan: which TF variable fills which loupe tensor.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanRow {
    /// The TF variable (empty where the rule reads none: [`Transform::Step`], [`Transform::Keep`]).
    pub tf: String,
    /// Its shape in the checkpoint.
    pub tf_shape: Vec<usize>,
    pub loupe: String,
    pub loupe_shape: Vec<usize>,
    pub transform: Transform,
}

/// What [`plan`] found: the rows, and every problem (missing, mis-shaped, unused).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    pub rows: Vec<PlanRow>,
    pub problems: Vec<String>,
    /// Adam's moments: `true` when every trained tensor's variable has both slots
    /// (`<var>/Adam`, `<var>/Adam_1`).
    pub adam: bool,
    /// Trained tensors whose variable lacks an Adam slot, when others have them.
    pub missing_slots: Vec<String>,
    /// The optimizer step: `global_step`, else derived from `beta1_power` (TF's Adam keeps
    /// `0.9^(t+1)`), else 0.
    pub step: u64,
}

fn is_bookkeeping(name: &str) -> bool {
    name == "global_step" || name.ends_with("beta1_power") || name.ends_with("beta2_power")
}

fn slots(name: &str) -> [String; 2] {
    [format!("{name}/Adam"), format!("{name}/Adam_1")]
}

/// Checks `mapping` against the checkpoint and the model's tensors without reading any
/// tensor but the step: every loupe tensor must have a rule whose variable exists with
/// a shape the transform accepts, and every variable of the checkpoint (except Adam
/// slots of mapped variables, the Adam powers and `global_step`) must be used.
pub fn plan(
    ckpt: &TfCheckpoint,
    mapping: &Mapping,
    tensors: &[ModelTensor],
) -> Result<Plan, TfCheckpointError> {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for t in tensors {
        let Some(rule) = mapping.rule(&t.name) else {
            problems.push(format!("missing: no TF variable is mapped to `{}` {:?}", t.name, t.shape));
            continue;
        };
        if !rule.transform.reads_variable() {
            rows.push(PlanRow {
                tf: String::new(),
                tf_shape: Vec::new(),
                loupe: t.name.clone(),
                loupe_shape: t.shape.clone(),
                transform: rule.transform,
            });
            continue;
        }
        let Some(entry) = ckpt.entry(&rule.tf) else {
            problems.push(format!(
                "missing: TF variable `{}` (for `{}` {:?}) is not in the checkpoint",
                rule.tf, t.name, t.shape
            ));
            continue;
        };
        used.insert(rule.tf.clone());
        if !rule.transform.accepts(&entry.shape, &t.shape) {
            problems.push(format!(
                "mis-shaped: TF `{}` {:?} cannot fill `{}` {:?} ({})",
                rule.tf,
                entry.shape,
                t.name,
                t.shape,
                rule.transform.name()
            ));
            continue;
        }
        rows.push(PlanRow {
            tf: rule.tf.clone(),
            tf_shape: entry.shape.clone(),
            loupe: t.name.clone(),
            loupe_shape: t.shape.clone(),
            transform: rule.transform,
        });
    }
    let slot_names: BTreeSet<String> = used.iter().flat_map(|n| slots(n)).collect();
    for entry in ckpt.entries() {
        if !used.contains(&entry.name) && !slot_names.contains(&entry.name) && !is_bookkeeping(&entry.name) {
            let base = entry.name.strip_suffix("/Adam_1").or_else(|| entry.name.strip_suffix("/Adam"));
            if base.is_some_and(|b| ckpt.entry(b).is_some()) {
                continue; // reported with its variable
            }
            problems.push(format!(
                "unused: TF variable `{}` {:?} fills no tensor of the model",
                entry.name, entry.shape
            ));
        }
    }
    let trained: Vec<&PlanRow> = rows
        .iter()
        .filter(|r| r.transform.reads_variable() && tensors.iter().any(|t| t.name == r.loupe && t.trainable))
        .collect();
    let missing_slots: Vec<String> = trained
        .iter()
        .filter(|r| slots(&r.tf).iter().any(|s| ckpt.entry(s).is_none()))
        .map(|r| r.tf.clone())
        .collect();
    let adam = !trained.is_empty() && missing_slots.is_empty();
    let missing_slots = if missing_slots.len() == trained.len() { Vec::new() } else { missing_slots };
    let step = match ckpt.global_step()? {
        Some(step) => step,
        None => match ckpt.entries().find(|e| e.name.ends_with("beta1_power")) {
            Some(e) => {
                let power = ckpt.read(&e.name)?.to_f64().first().copied().unwrap_or(1.0);
                ((power.ln() / 0.9f64.ln()).round() as i64 - 1).max(0) as u64
            }
            None => 0,
        },
    };
    Ok(Plan { rows, problems, adam, missing_slots, step })
}

/// A model's weights imported from a TF checkpoint, with Adam's state when present.
#[derive(Debug, Clone)]
pub struct Imported<M> {
    pub plan: Plan,
    /// First and second moments, as copies of the model (see `train::Adam`).
    pub moments: Option<(M, M)>,
    /// The optimizer step to continue from.
    pub step: u64,
}

/// Reads every variable `mapping` names from `ckpt` into `model` (and Adam's slots into
/// moments when every trained tensor has them). Fails, before changing `model`, with
/// every missing, mis-shaped and unused variable when the checkpoint does not fit.
/// Batch norms' update counts are set to the step, so their running averages continue
/// with TensorFlow's decay; so is a dropout's pass count, whose seed keeps its value.
///
/// ```no_run
/// use loupe_core::tf_checkpoint::{import_checkpoint, Convention, Mapping, TfCheckpoint, model_tensors};
/// # fn run<M: loupe_core::model::VideoModel<f32, dfdx::prelude::Cpu> + Clone>(model: &mut M) -> Result<(), Box<dyn std::error::Error>> {
/// let ckpt = TfCheckpoint::open("willow_train_dir".as_ref())?;
/// let names: Vec<String> = model_tensors(model).into_iter().map(|t| t.name).collect();
/// let mapping = Mapping::builtin(Convention::Willow, &M::describe(), &names);
/// let imported = import_checkpoint(&ckpt, &mapping, model)?;
/// println!("step {}, Adam state: {}", imported.step, imported.moments.is_some());
/// # Ok(()) }
/// ```
pub fn import_checkpoint<E: Dtype, D: Device<E>, M: TensorCollection<E, D> + Clone>(
    ckpt: &TfCheckpoint,
    mapping: &Mapping,
    model: &mut M,
) -> Result<Imported<M>, TfImportError> {
    let tensors = model_tensors(model);
    let plan = plan(ckpt, mapping, &tensors)?;
    if !plan.problems.is_empty() {
        return Err(TfImportError::Mismatch { prefix: ckpt.prefix().to_path_buf(), problems: plan.problems });
    }
    // Each tensor is read, rearranged and converted to `E` as its turn comes: memory is
    // the model (and the two moment copies) plus one tensor.
    let prefix = ckpt.prefix().to_path_buf();
    let rows: HashMap<&str, &PlanRow> = plan.rows.iter().map(|r| (r.loupe.as_str(), r)).collect();
    let read = |row: &PlanRow, tf: &str| -> Result<Vec<f32>, TfCheckpointError> {
        Ok(row.transform.apply(&ckpt.read_f32(tf)?, &row.tf_shape, &row.loupe_shape))
    };
    let step = plan.step;
    fill(
        model,
        &mut |name: &str| match rows.get(name) {
            Some(row) if row.transform == Transform::Step => {
                Ok(Some(vec![step as f32; row.loupe_shape.iter().product()]))
            }
            Some(row) if row.transform == Transform::Keep => Ok(None),
            Some(row) => read(row, &row.tf).map(Some),
            None => Ok(None),
        },
        false,
        &prefix,
    )?;
    let moments = if plan.adam {
        // Adam's moments of the trained tensors; the others' are zero.
        let trained: HashMap<&str, &PlanRow> = rows
            .iter()
            .filter(|(name, row)| {
                row.transform.reads_variable() && tensors.iter().any(|t| t.name == **name && t.trainable)
            })
            .map(|(name, row)| (*name, *row))
            .collect();
        let moment = |slot: usize| -> Result<M, TfImportError> {
            let mut copy = model.clone();
            fill(
                &mut copy,
                &mut |name: &str| match trained.get(name) {
                    Some(row) => read(row, &slots(&row.tf)[slot]).map(Some),
                    None => Ok(None),
                },
                true,
                &prefix,
            )?;
            Ok(copy)
        };
        let first = moment(0)?;
        let second = moment(1)?;
        Some((first, second))
    } else {
        None
    };
    Ok(Imported { plan, moments, step })
}
