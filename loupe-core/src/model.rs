//! The trait every video classification model implements, generated or hand-written.

use dfdx::prelude::*;

/// A frame-level video classifier: what training, evaluation and prediction are generic
/// over. `#[video_model]` implements it; hand-written models can too.
///
/// Input is a batch of videos, each `FRAMES` frames of `FEATURES` values (the streams
/// concatenated per frame in declared order, e.g. rgb 1024 then audio 128). Output is one
/// probability per class. Video-level models take `FRAMES = 1`.
pub trait VideoModel<E: Dtype, D: Device<E>>: TensorCollection<E, D> + Sized {
    /// Frames per video, as a `Const` dim.
    type Frames: ConstDim;
    /// Values per frame (all streams), as a `Const` dim.
    type Features: ConstDim;
    /// Number of classes, as a `Const` dim.
    type Classes: ConstDim;

    /// Frames per video.
    const FRAMES: usize;
    /// Values per frame.
    const FEATURES: usize;
    /// Number of classes.
    const CLASSES: usize;
    /// Whether the model reads frames as a sequence (the recurrent poolings): the run loop
    /// then feeds each video's frames in temporal order by default and tells the model how
    /// many are valid ([`Self::try_forward_train_lengths`]). Orderless poolings keep the
    /// default `false` and get frames sampled uniformly with replacement.
    const READS_FRAMES_IN_ORDER: bool = false;

    /// What this model is: the declarative spec it was built from.
    fn describe() -> ModelDescription;

    /// Training-mode forward pass (batch statistics; running averages updated).
    #[allow(clippy::type_complexity)]
    fn try_forward_train(
        &mut self,
        frames: Tensor<(usize, Self::Frames, Self::Features), E, D, OwnedTape<E, D>>,
    ) -> Result<Tensor<(usize, Self::Classes), E, D, OwnedTape<E, D>>, D::Err>;

    /// Evaluation-mode forward pass (running averages; no tape).
    #[allow(clippy::type_complexity)]
    fn try_forward_eval(
        &self,
        frames: Tensor<(usize, Self::Frames, Self::Features), E, D>,
    ) -> Result<Tensor<(usize, Self::Classes), E, D>, D::Err>;

    /// [`Self::try_forward_train`] given each video's count of valid frames: `lengths[b]`
    /// (one per video) says that only the first `lengths[b]` frames of video `b` are its
    /// own, the rest filling (a short video's frames cycled, or zeros). Models whose
    /// output depends on frame order (the recurrent poolings) stop reading a video there;
    /// the default ignores `lengths`, right for poolings over frames sampled with
    /// replacement, where every frame is valid.
    ///
    /// # Panics
    /// A model that uses `lengths` may panic when there is not one per video
    /// ([`crate::train::Trainer`] checks this and returns an error instead).
    #[allow(clippy::type_complexity)]
    fn try_forward_train_lengths(
        &mut self,
        frames: Tensor<(usize, Self::Frames, Self::Features), E, D, OwnedTape<E, D>>,
        lengths: &[usize],
    ) -> Result<Tensor<(usize, Self::Classes), E, D, OwnedTape<E, D>>, D::Err> {
        let _ = lengths;
        self.try_forward_train(frames)
    }

    /// [`Self::try_forward_eval`] given each video's count of valid frames (see
    /// [`Self::try_forward_train_lengths`]).
    #[allow(clippy::type_complexity)]
    fn try_forward_eval_lengths(
        &self,
        frames: Tensor<(usize, Self::Frames, Self::Features), E, D>,
        lengths: &[usize],
    ) -> Result<Tensor<(usize, Self::Classes), E, D>, D::Err> {
        let _ = lengths;
        self.try_forward_eval(frames)
    }

    /// The classifier's weight penalty `(|Wg|^2 + |We|^2) / 2` (MoE) or `|W|^2 / 2`
    /// (logistic), on a tape so that it can be added to the loss. The training loop
    /// multiplies it by [`ModelDescription::classifier_l2`].
    fn try_l2_penalty(&self) -> Result<Tensor<Rank0, E, D, OwnedTape<E, D>>, D::Err>;

    /// Number of trainable parameters.
    fn num_params(&self) -> usize {
        self.num_trainable_params()
    }
}

/// A model's spec in words and numbers: stored in checkpoints, printed by `loupe models`,
/// compared when a checkpoint is loaded into an architecture.
///
/// Fields in [`ModelDescription::ADDED_FIELDS`] came after the first checkpoints: a
/// sidecar without them reads them as their defaults, and [`load_checkpoint`] compares
/// only the fields a sidecar records.
///
/// [`load_checkpoint`]: crate::train::checkpoint::load_checkpoint
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelDescription {
    /// The model's type name (e.g. `GatedNetVlad`).
    pub name: String,
    /// `"frames"` (frame-level features, pooled over time) or `"video_level"` (one vector
    /// per video, YouTube-8M's `mean_rgb` and `mean_audio`; `frames` is 1).
    #[serde(default = "frames_input")]
    pub input: String,
    /// Input streams in frame order.
    pub streams: Vec<StreamDescription>,
    /// `"early"` (one pooling over the concatenated frames), `"late"` (one per stream) or
    /// `"none"` (video-level input: nothing is pooled).
    pub fusion: String,
    /// The pooling of the concatenated frames under early fusion (under late fusion each
    /// stream's is in [`streams`](Self::streams)).
    #[serde(default)]
    pub early_pooling: Option<PoolingDescription>,
    /// Frames fed to pooling.
    pub frames: usize,
    /// Hidden size, if there is a hidden fully connected layer.
    pub hidden: Option<usize>,
    /// Whether the hidden layer has batch norm instead of a bias.
    #[serde(default)]
    pub hidden_batch_norm: bool,
    /// Whether the hidden layer ends in a ReLU6.
    #[serde(default)]
    pub hidden_relu6: bool,
    /// What follows pooling/hidden: `"context_gating"`, `"glu"` or `"none"`.
    pub after_pooling: String,
    /// `"moe"` or `"logistic"`.
    pub classifier: String,
    /// Mixture experts (0 for logistic).
    pub experts: usize,
    /// What follows the classifier: `"probability_gating"` or `"none"`.
    pub after_classifier: String,
    /// Number of classes.
    pub classes: usize,
    /// Coefficient of [`VideoModel::try_l2_penalty`] in the loss.
    pub classifier_l2: f64,
}

/// One input stream of a [`ModelDescription`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamDescription {
    /// Feature name in the data (`rgb`, `audio`).
    pub name: String,
    /// Values per frame.
    pub features: usize,
    /// Pooling kind (`netvlad`, `netrvlad`, `netfv`, `soft_bow`, `average`, `max`, ...).
    pub pooling: String,
    /// Cluster count, where the pooling has clusters.
    pub clusters: Option<usize>,
    /// Size of the pooled representation.
    pub output: usize,
}

/// The pooling of a [`ModelDescription`]'s early fusion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoolingDescription {
    /// Pooling kind (`netvlad`, `lstm`, `nextvlad`, ...).
    pub kind: String,
    /// Cluster count, where the pooling has clusters.
    pub clusters: Option<usize>,
    /// Cells per layer, for the recurrent kinds.
    pub size: Option<usize>,
    /// Size of the pooled representation.
    pub output: usize,
}

fn frames_input() -> String {
    "frames".to_string()
}

impl ModelDescription {
    /// Fields added after the first checkpoint format; sidecars written before lack them.
    pub const ADDED_FIELDS: &'static [&'static str] = &["input", "early_pooling", "hidden_batch_norm", "hidden_relu6"];

    /// What differs between two descriptions, one line per field (`field: a vs b`);
    /// empty when they describe the same architecture.
    pub fn differences(&self, other: &ModelDescription) -> Vec<String> {
        self.differences_in(other, |_| true)
    }

    /// [`differences`](Self::differences) restricted to the fields `compared` accepts.
    pub fn differences_in(&self, other: &ModelDescription, compared: impl Fn(&str) -> bool) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["descriptions are not objects".to_string()];
        };
        a.iter()
            .filter(|(k, v)| compared(k) && b.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}: {v} vs {}", b.get(k).cloned().unwrap_or_default()))
            .collect()
    }

    /// The pooling in words: each stream's (`rgb netvlad(256) + audio netvlad(128)`), the
    /// early fusion's (`rgb + audio netvlad(256)`), or none for video-level input
    /// (`mean_rgb + mean_audio, not pooled`).
    pub fn pooling_summary(&self) -> String {
        let names = || self.streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" + ");
        let sized = |kind: &str, n: Option<usize>| match n {
            Some(n) => format!("{kind}({n})"),
            None => kind.to_string(),
        };
        if self.input == "video_level" {
            return format!("{}, not pooled", names());
        }
        match &self.early_pooling {
            Some(p) => format!("{} {}", names(), sized(&p.kind, p.clusters.or(p.size))),
            None => self
                .streams
                .iter()
                .map(|s| format!("{} {}", s.name, sized(&s.pooling, s.clusters)))
                .collect::<Vec<_>>()
                .join(" + "),
        }
    }
}

struct ParamCounter(usize);

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for ParamCounter {
    type Viewer = ();
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(&mut self, opts: TensorOptions<S, E, D>, _: ()) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if opts.do_gradient_update {
            self.0 += opts.shape.num_elements();
        }
        Ok(None)
    }
}

/// Trainable parameters of a model type, counted from its shapes without allocating
/// anything (a paper-size Gated NetVLAD has ~300M).
///
/// ```
/// # use dfdx::prelude::*;
/// let n = loupe_core::model::count_params::<f32, Cpu, dfdx::nn::modules::Linear<3, 2, f32, Cpu>>();
/// assert_eq!(n, 8);
/// ```
pub fn count_params<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>() -> usize {
    let mut counter = ParamCounter(0);
    let _ = M::iter_tensors(&mut RecursiveWalker { m: (), f: &mut counter });
    counter.0
}
