//! Which TensorFlow variable fills which loupe tensor, and how.
//!
//! A [`Mapping`] is a list of [`Rule`]s, one per loupe tensor (dfdx `TensorCollection`
//! names: `rgb.assignment.weights`, `classifier.expert_bias`, ...). The built-in ones
//! ([`Convention::Willow`], [`Convention::Starter`]) are derived from the model's tensor
//! names; a user's own is read from a file of `[[map]]` tables (`tf`, `loupe`, optional
//! `transform`).

use serde::{Deserialize, Serialize};

use crate::model::{ModelDescription, PoolingKind};

/// How a TensorFlow variable's values become a loupe tensor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The same shape and row-major order.
    #[default]
    Identity,
    /// The same values in row-major order, another shape with the same element count
    /// (`[1, D, K]` -> `[D, K]`, `[C * M]` -> `[C, M]`, `[H, C * M]` -> `[H, C, M]`).
    Reshape,
    /// A matrix transposed (`[a, b]` -> `[b, a]`).
    Transpose,
    /// The MoE gate matrix `[I, C * (M + 1)]` (column `c * (M + 1) + m`) to the experts'
    /// gates `[I, C, M]` (columns `m < M`).
    MoeGates,
    /// The same matrix to the dummy expert's gate `[I, C]` (column `c * (M + 1) + M`).
    MoeDummyGate,
    /// No variable: a batch norm's update count or a dropout's pass count, set to the
    /// checkpoint's step.
    Step,
    /// No variable: the tensor keeps the value it was built with (a dropout's mask seed,
    /// which TensorFlow does not store).
    Keep,
}

impl Transform {
    /// The name printed by `--dry-run`.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Identity => "identity",
            Transform::Reshape => "reshape",
            Transform::Transpose => "transpose",
            Transform::MoeGates => "moe_gates",
            Transform::MoeDummyGate => "moe_dummy_gate",
            Transform::Step => "step",
            Transform::Keep => "keep",
        }
    }

    /// Whether the rule reads a TF variable ([`Transform::Step`] and [`Transform::Keep`]
    /// do not).
    pub fn reads_variable(self) -> bool {
        !matches!(self, Transform::Step | Transform::Keep)
    }

    /// Whether a TF tensor of `tf` shape can fill a loupe tensor of `loupe` shape.
    pub fn accepts(self, tf: &[usize], loupe: &[usize]) -> bool {
        let count = |s: &[usize]| s.iter().product::<usize>();
        match self {
            Transform::Identity => tf == loupe,
            Transform::Reshape => count(tf) == count(loupe),
            Transform::Transpose => {
                tf.len() == 2 && loupe.len() == 2 && tf[0] == loupe[1] && tf[1] == loupe[0]
            }
            Transform::MoeGates => {
                matches!((tf, loupe), ([i, cols], [li, c, m]) if i == li && *cols == c * (m + 1))
            }
            Transform::MoeDummyGate => {
                matches!((tf, loupe), ([i, cols], [li, c]) if i == li && *c > 0 && cols % c == 0 && cols / c >= 2)
            }
            Transform::Step | Transform::Keep => true,
        }
    }

    /// `values` (of a TF tensor of shape `tf`) rearranged for a loupe tensor of shape
    /// `loupe`; [`Transform::accepts`] must hold.
    pub fn apply<T: Copy>(self, values: &[T], tf: &[usize], loupe: &[usize]) -> Vec<T> {
        match self {
            Transform::Identity | Transform::Reshape | Transform::Step | Transform::Keep => values.to_vec(),
            Transform::Transpose => {
                let (rows, cols) = (tf[0], tf[1]);
                (0..cols).flat_map(|j| (0..rows).map(move |i| values[i * cols + j])).collect()
            }
            Transform::MoeGates => {
                let (inputs, classes, experts) = (loupe[0], loupe[1], loupe[2]);
                let cols = tf[1];
                let mut out = Vec::with_capacity(inputs * classes * experts);
                for i in 0..inputs {
                    for c in 0..classes {
                        for m in 0..experts {
                            out.push(values[i * cols + c * (experts + 1) + m]);
                        }
                    }
                }
                out
            }
            Transform::MoeDummyGate => {
                let (inputs, classes) = (loupe[0], loupe[1]);
                let cols = tf[1];
                let slots = cols / classes;
                (0..inputs)
                    .flat_map(|i| (0..classes).map(move |c| values[i * cols + c * slots + slots - 1]))
                    .collect()
            }
        }
    }
}

/// One loupe tensor filled from one TF variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The TF variable's name (empty for [`Transform::Step`] and [`Transform::Keep`]).
    #[serde(default)]
    pub tf: String,
    /// The loupe tensor's name.
    pub loupe: String,
    #[serde(default)]
    pub transform: Transform,
}

/// The naming conventions of the built-in mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// The paper's training code (antoine77340/Youtube-8M-WILLOW): `input_bn`,
    /// `video_VLAD/...` and `audio_VLAD/...` (`_FV`, `_DBOF` for NetFV and soft BoW),
    /// `hidden1_weights`, `gating_weights_2` + `gating_bn`, MoE `gates/weights` and
    /// `experts/...`, `gating_prob_weights` + `gating_prob_bn`; no scope around them.
    Willow,
    /// The YouTube-8M starter code (google/youtube-8m) and code built on its `train.py`:
    /// everything under `tower/`; the video-level `MoeModel` (`tower/gates/weights`,
    /// `tower/experts/...`) and `LogisticModel` (`tower/fully_connected/...`), and Lin et
    /// al.'s `NeXtVLADModel` (linrongc/youtube-8m: `tower/video_VLAD/...`,
    /// `tower/audio_VLAD/...`, `tower/hidden1_weights`, `tower/gating_weights_1`, ...).
    Starter,
}

impl Convention {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Convention::Willow => "willow",
            Convention::Starter => "starter",
        }
    }

    /// The convention a checkpoint's variable names follow: `Starter` when it has
    /// variables under `tower/`, else `Willow`.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Convention {
        if names.into_iter().any(|n| n.starts_with("tower/")) {
            Convention::Starter
        } else {
            Convention::Willow
        }
    }
}

/// The TF name of a batch norm's leaf (`scale` -> `gamma`, ...); `None` for `updates`.
fn batch_norm_leaf(leaf: &str) -> Option<&'static str> {
    match leaf {
        "scale" => Some("gamma"),
        "shift" => Some("beta"),
        "running_mean" => Some("moving_mean"),
        "running_var" => Some("moving_variance"),
        _ => None,
    }
}

/// A full mapping: one rule per loupe tensor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    #[serde(default)]
    pub map: Vec<Rule>,
}

impl Mapping {
    /// The built-in mapping of `convention` for a model described by `description` whose
    /// tensors are `names`. Tensors the convention has no variable for get no rule (they
    /// are reported missing on import). Batch norms' update counts and the dropout's pass
    /// count get [`Transform::Step`], its seed [`Transform::Keep`].
    pub fn builtin(convention: Convention, description: &ModelDescription, names: &[String]) -> Mapping {
        let map = names
            .iter()
            .filter_map(|name| {
                let (tf, transform) = builtin_name(convention, description, name)?;
                Some(Rule { tf, loupe: name.clone(), transform })
            })
            .collect();
        Mapping { map }
    }

    /// A user's mapping for a model whose tensors are `names`: the file's rules, plus a
    /// rule for every tensor without a TF counterpart that the file does not map (batch
    /// norms' update counts and the dropout's pass count: the step; the dropout's seed:
    /// kept).
    pub fn with_update_counts(mut self, names: &[String]) -> Mapping {
        for name in names {
            if let Some(transform) = unstored(name) {
                if !self.map.iter().any(|r| &r.loupe == name) {
                    self.map.push(Rule { tf: String::new(), loupe: name.clone(), transform });
                }
            }
        }
        self
    }

    /// The rule filling `loupe`.
    pub fn rule(&self, loupe: &str) -> Option<&Rule> {
        self.map.iter().find(|r| r.loupe == loupe)
    }
}

/// The rule of a loupe tensor that no TF variable holds: batch norms' update counts
/// (`*.updates`) and the dropout's pass count (`dropout.steps`) become the step, the
/// dropout's mask seed (`dropout.seed`) keeps its value.
fn unstored(name: &str) -> Option<Transform> {
    match name {
        "dropout.steps" => Some(Transform::Step),
        "dropout.seed" => Some(Transform::Keep),
        _ if name.ends_with(".updates") => Some(Transform::Step),
        _ => None,
    }
}

/// The TF variable of `name` under `convention`.
fn builtin_name(convention: Convention, d: &ModelDescription, name: &str) -> Option<(String, Transform)> {
    use Transform::*;
    if let Some(transform) = unstored(name) {
        return Some((String::new(), transform));
    }
    let prefix = match convention {
        Convention::Willow => "",
        Convention::Starter => "tower/",
    };
    let parts: Vec<&str> = name.split('.').collect();
    let bn =
        |scope: &str, leaf: &str| batch_norm_leaf(leaf).map(|l| (format!("{prefix}{scope}/{l}"), Identity));
    match parts.as_slice() {
        ["input", "bn", leaf] => bn("input_bn", leaf),
        ["hidden", "weight"] => Some((format!("{prefix}hidden1_weights"), Identity)),
        ["hidden", "bias"] => Some((format!("{prefix}hidden1_biases"), Identity)),
        ["hidden", "bn", leaf] => bn("hidden1_bn", leaf),
        ["gating", "weight"] => Some((format!("{prefix}gating_weights_2"), Identity)),
        // SE Context Gating (Lin et al. 2018): W1 is `gating_weights_1`, W2 `gating_weights_2`.
        ["gating", "squeeze_weight"] => Some((format!("{prefix}gating_weights_1"), Identity)),
        ["gating", "excite_weight"] => Some((format!("{prefix}gating_weights_2"), Identity)),
        ["gating", "bn", leaf] => bn("gating_bn", leaf),
        ["classifier", "gate_weight"] => Some((format!("{prefix}gates/weights"), MoeGates)),
        ["classifier", "dummy_gate_weight"] => Some((format!("{prefix}gates/weights"), MoeDummyGate)),
        ["classifier", "expert_weight"] => Some((format!("{prefix}experts/weights"), Reshape)),
        ["classifier", "expert_bias"] => Some((format!("{prefix}experts/biases"), Reshape)),
        ["classifier", "weight"] => Some((format!("{prefix}fully_connected/weights"), Identity)),
        ["classifier", "bias"] => Some((format!("{prefix}fully_connected/biases"), Identity)),
        ["output_gating", "weight"] => Some((format!("{prefix}gating_prob_weights"), Identity)),
        ["output_gating", "bn", leaf] => bn("gating_prob_bn", leaf),
        [stream, rest @ ..] => {
            let index = d.streams.iter().position(|s| s.name == *stream)?;
            let s = &d.streams[index];
            let kind = match s.pooling {
                PoolingKind::NetVlad | PoolingKind::NetRvlad | PoolingKind::NeXtVlad => "VLAD",
                PoolingKind::NetFv => "FV",
                PoolingKind::SoftBow => "DBOF",
                _ => return None,
            };
            let side = match index {
                0 => "video",
                1 => "audio",
                _ => return None,
            };
            let scope = format!("{side}_{kind}");
            match rest {
                ["assignment", "weights"] => Some((format!("{prefix}{scope}/cluster_weights"), Identity)),
                ["assignment", "bn", leaf] => bn(&format!("{scope}/cluster_bn"), leaf),
                ["centers"] => Some((format!("{prefix}{scope}/cluster_weights2"), Reshape)),
                ["covariance_weights"] => Some((format!("{prefix}{scope}/covar_weights"), Identity)),
                // NeXtVLAD (linrongc/youtube-8m `NeXtVLAD.forward`): the expansion and the
                // group attention are slim `fully_connected` layers without a scope of
                // their own, so slim names them `fully_connected` and `fully_connected_1`.
                ["expansion_weights"] => Some((format!("{prefix}{scope}/fully_connected/weights"), Identity)),
                ["expansion_bias"] => Some((format!("{prefix}{scope}/fully_connected/biases"), Identity)),
                ["attention_weights"] => {
                    Some((format!("{prefix}{scope}/fully_connected_1/weights"), Identity))
                }
                ["attention_bias"] => Some((format!("{prefix}{scope}/fully_connected_1/biases"), Identity)),
                ["assignment_weights"] => Some((format!("{prefix}{scope}/cluster_weights"), Identity)),
                ["assignment_bn", leaf] => bn(&format!("{scope}/cluster_bn"), leaf),
                ["vlad_bn", leaf] => bn(&format!("{scope}/vlad_bn"), leaf),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Transform;

    #[test]
    fn moe_gates_split_the_dummy_column_off() {
        // I = 1, C = 2 classes, M = 2 experts: columns c * 3 + m.
        let tf = [10.0, 11.0, 12.0, 20.0, 21.0, 22.0];
        assert!(Transform::MoeGates.accepts(&[1, 6], &[1, 2, 2]));
        assert_eq!(Transform::MoeGates.apply(&tf, &[1, 6], &[1, 2, 2]), [10.0, 11.0, 20.0, 21.0]);
        assert!(Transform::MoeDummyGate.accepts(&[1, 6], &[1, 2]));
        assert_eq!(Transform::MoeDummyGate.apply(&tf, &[1, 6], &[1, 2]), [12.0, 22.0]);
        assert!(!Transform::MoeGates.accepts(&[1, 6], &[1, 3, 2]));
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let tf = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [[1, 2, 3], [4, 5, 6]]
        assert!(Transform::Transpose.accepts(&[2, 3], &[3, 2]));
        assert_eq!(Transform::Transpose.apply(&tf, &[2, 3], &[3, 2]), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(!Transform::Identity.accepts(&[2, 3], &[3, 2]));
    }
}
