//! loupe: video classification with learnable pooling and Context Gating on dfdx.
//!
//! An implementation of "Learnable pooling with Context Gating for video classification"
//! (Miech, Laptev, Sivic, 2017). This facade re-exports the runtime ([`loupe_core`]) and
//! the [`video_model`] attribute, and holds the paper's models in [`zoo`].

// Generated code names `::loupe::__private`; this makes that path work inside the crate
// too (the zoo is declared with the macro).
extern crate self as loupe;

pub use loupe_core::*;

pub mod config;
// trybuild (`tests/macro_ui.rs`) builds this crate again in a project of its own, with
// `--cfg trybuild`: its cases declare models of their own and never run a zoo job, and
// the jobs (every zoo model times every job, compiled here) were half of that build.
#[cfg(not(trybuild))]
pub mod jobs;
pub mod zoo;

/// Declares a video classification network: a builder type plus a built dfdx model.
///
/// Put it on a unit struct; the struct becomes the **builder** (zero-sized, as dfdx's
/// `builder::Linear`) and the macro adds the **built type** `<Name>Model<E, D>` with:
/// `BuildOnDevice` (so `dev.build_module::<Name, f32>()` works), `TensorCollection`
/// (checkpoint keys below), `Module` on untaped input (evaluation: batch norms use their
/// running averages), `ModuleMut` on any tape (training), and
/// [`VideoModel`](crate::model::VideoModel). The builder gets the consts `FRAMES`,
/// `FEATURES` and `CLASSES`. Sizes the macro can compute (K*D, 2*K*D, the concatenation of
/// the streams) it computes and writes into the const generics of the layers: a spec reads
/// as the paper's table does.
///
/// # Example: the paper's Gated NetVLAD
/// ```
/// use loupe::video_model;
/// use loupe::model::VideoModel;
/// use loupe::dfdx::prelude::*;
///
/// #[video_model(
///     frames = 300,
///     streams = [
///         rgb(features = 1024, pooling = netvlad(clusters = 256)),
///         audio(features = 128, pooling = netvlad(clusters = 128)),
///     ],
///     hidden = 1024,
///     after_pooling = context_gating,
///     classifier = moe(experts = 2, l2 = 1e-6),
///     after_classifier = context_gating,
///     classes = 3862,
/// )]
/// pub struct GatedNetVlad;
///
/// assert_eq!(GatedNetVlad::FEATURES, 1152);
/// let d = <GatedNetVladModel<f32, Cpu> as VideoModel<f32, Cpu>>::describe();
/// assert_eq!(d.streams[0].output, 256 * 1024);
/// ```
///
/// # Keys
/// Keys are `key = value`, separated by commas, in any order; each at most once.
///
/// | key | required | value |
/// |---|---|---|
/// | `input` | no (`frames`) | `frames`: frame-level features, L2-normalised and batch-normalised, pooled over time; `raw_frames`: the same as they are; `video_level`: one vector per video |
/// | `frames` | yes (not with `video_level`) | frames sampled per video (`Const` dim of the input) |
/// | `streams` | yes | `[name(features = N, pooling = P), ...]` in the frames' channel order (no `pooling` with `video_level`) |
/// | `fusion` | no (`late`) | `late`: pool each stream, concatenate; `early(pooling = P)`: concatenate the frames, pool once |
/// | `frame_mask` | no (`false`) | `true`: read each video's first frames in order, mask those past its length out of pooling |
/// | `dropout` | no (none) | `p` in (0, 1): dropout on the pooled representation, training only |
/// | `hidden` | no (none) | `N` or `fc(size = N, batch_norm = bool, relu6 = bool)`: fully connected layer to N values |
/// | `after_pooling` | no (`none`) | `context_gating`, `context_gating(reduction = r)`, `biased_context_gating`, `glu`, `none` |
/// | `classifier` | yes | `moe(experts = M, l2 = c)` or `logistic(l2 = c)` |
/// | `after_classifier` | no (`none`) | `context_gating` (probability gating, captures label co-occurrence) or `none` |
/// | `classes` | yes | number of classes |
///
/// **`frames`**, **`classes`**: integer literals in `1..=65536` and `1..=1048576`. The
/// input is `Tensor<(usize, Const<FRAMES>, Const<FEATURES>), E, D, _>`, the output
/// `Tensor<(usize, Const<CLASSES>), E, D, _>`: the batch is a runtime size.
///
/// **`streams`**: each stream is a name (used as its checkpoint key), its `features` per
/// frame and, under late fusion, its `pooling`. `FEATURES` is the sum of the streams'
/// features; stream `i` reads channels `[sum of the earlier features, + its own)`.
/// The pooling kinds (paper section 3, plus NeXtVLAD), over D features per frame:
///
/// | pooling | grammar | layer (`loupe::nn`) | fusion | output | parameters |
/// |---|---|---|---|---|---|
/// | NetVLAD | `netvlad(clusters = K)` | `NetVladPooling` | late or early | K·D | 2DK + 2K |
/// | NetRVLAD | `netrvlad(clusters = K)` | `NetRvladPooling` | late or early | K·D | DK + 2K |
/// | NetFV | `netfv(clusters = K)` | `NetFvPooling` | late or early | 2·K·D | 3DK + 2K |
/// | soft bag of words | `soft_bow(clusters = K)` | `SoftBowPooling` | late or early | K | DK + 2K |
/// | average | `average` | `AveragePooling` | late or early | D | 0 |
/// | max | `max` | `MaxPooling` | late or early | D | 0 |
/// | LSTM, 2 layers of H | `lstm(size = H)` | `LstmPooling` | early only | 4H ([c1, h1, c2, h2]) | 4H(D+H) + 4H + 8H² + 4H |
/// | GRU, 2 layers of H | `gru(size = H)` | `GruPooling` | early only | 2H ([h1, h2]) | 3H(D+H) + 3H + 6H² + 3H |
/// | NeXtVLAD (Lin et al. 2018) | `nextvlad(clusters = K, groups = G, expansion = λ)` (G = 8, λ = 2 by default) | `NeXtVladPooling` | late or early | K·λD/G | λD² + λD + G(λD + 1) + λDGK + 2GK + (λD/G)K + 2(λD/G)K |
///
/// `K`, `H`, `G` and `λ` are integer literals in `1..=65536`; NeXtVLAD's λD expanded
/// features must split evenly into its G groups. The recurrent kinds (`lstm`, `gru`)
/// read the concatenated frames in temporal order, each video up to its last valid
/// frame, L2-normalised without the input batch norm. This table is generated from the
/// macro's own table of kinds (`loupe-macros/src/pooling.rs`; `docs/macro.md` says how to
/// add a kind).
///
/// ```
/// # use loupe::video_model;
/// #[video_model(
///     frames = 30,
///     streams = [
///         rgb(features = 64, pooling = netfv(clusters = 8)),
///         audio(features = 16, pooling = soft_bow(clusters = 32)),
///     ],
///     hidden = 64,
///     classifier = logistic,
///     classes = 20,
/// )]
/// pub struct FvBow;
/// assert_eq!(FvBow::FEATURES, 80);
/// ```
///
/// **`fusion`**: `late` (the default; the paper's "late concat") or `early(pooling = P)`
/// ("early concat", Table 3): streams then carry no pooling.
///
/// ```
/// # use loupe::video_model;
/// #[video_model(
///     frames = 30,
///     fusion = early(pooling = netvlad(clusters = 8)),
///     streams = [rgb(features = 64), audio(features = 16)],
///     hidden = fc(size = 64, batch_norm = true, relu6 = true),
///     after_pooling = glu,
///     classifier = moe(experts = 2),
///     classes = 20,
/// )]
/// pub struct EarlyVlad;
/// ```
///
/// **`input`**: `video_level` declares a model on YouTube-8M's video-level records (one
/// `mean_rgb` and one `mean_audio` vector per video), as the starter code's
/// `LogisticModel` and `MoeModel`: the streams are concatenated and L2-normalised (no input
/// batch norm, no pooling) and the head (`hidden`, gates, classifier) sits on that vector.
/// `FRAMES` is 1: the input is `Tensor<(usize, Const<1>, Const<FEATURES>), ..>`, which is
/// how the data layer feeds video-level records. `frames`, `fusion` and stream poolings
/// are compile errors.
///
/// `raw_frames` feeds the frames to pooling as they are, without the L2 normalisation
/// and the input batch norm of `frames` (the model has no `input` tensors), as Lin et al.'s
/// released NeXtVLAD code does (`loupe::zoo::NeXtVlad`). Any other value is a compile
/// error listing the three.
///
/// ```
/// # use loupe::video_model;
/// # use loupe::model::{Fusion, InputKind, VideoModel};
/// # use loupe::dfdx::prelude::*;
/// #[video_model(
///     input = video_level,
///     streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
///     classifier = moe(experts = 2, l2 = 1e-8),
///     classes = 3862,
/// )]
/// pub struct VideoMoe;
/// assert_eq!((VideoMoe::FRAMES, VideoMoe::FEATURES), (1, 1152));
/// let d = <VideoMoeModel<f32, Cpu> as VideoModel<f32, Cpu>>::describe();
/// assert_eq!((d.input, d.fusion), (InputKind::VideoLevel, Fusion::None));
/// ```
///
/// **`frame_mask`**: `true` feeds each video's first `frames` frames in temporal order
/// (`VideoModel::READS_FRAMES_IN_ORDER`) and gives the poolings that take a mask the
/// mask of its valid frames: the frames past its length (filling) contribute nothing, as
/// in Lin et al. 2018 (eqs. 18-19). The kinds that take a mask: `nextvlad` (the mask
/// multiplies its group attention; in training the filling still enters its assignment
/// batch norm's statistics, as released). `lstm` and `gru` always stop at each video's
/// length and need no `frame_mask`; the other kinds pool every frame they get, filling
/// included. Without `frame_mask` (the default), frames are sampled with replacement
/// from the valid ones, so every row is valid and a mask would change nothing. A model
/// with `frame_mask` but no pooling that takes a mask does not compile.
///
/// **`dropout`**: inverted dropout with rate `p` on the pooled representation (the
/// streams' concatenation, before `hidden`), as Lin et al. 2018 (section 4.2, figure 3):
/// in training each value is zeroed with probability `p` and the others scaled by
/// `1 / (1 - p)`; in evaluation it is the identity. The masks come from the layer's own
/// seed (drawn when the model is built) and its count of training passes, both saved in
/// checkpoints (`dropout.seed`, `dropout.steps`): a run is reproducible from its seed and
/// a resumed run draws the masks the uninterrupted one would have ([`nn::Dropout`]).
///
/// ```
/// # use loupe::video_model;
/// # use loupe::model::{AfterPooling, VideoModel};
/// # use loupe::dfdx::prelude::*;
/// // Lin et al. 2018's NeXtVLAD at toy size (`loupe::zoo::NeXtVlad` at full size).
/// #[video_model(
///     frames = 30,
///     frame_mask = true,
///     streams = [
///         rgb(features = 64, pooling = nextvlad(clusters = 8, groups = 8, expansion = 2)),
///         audio(features = 16, pooling = nextvlad(clusters = 4, groups = 4, expansion = 2)),
///     ],
///     dropout = 0.5,
///     hidden = fc(size = 64, batch_norm = true, relu6 = false),
///     after_pooling = context_gating(reduction = 8),
///     classifier = logistic(l2 = 1e-5),
///     classes = 20,
/// )]
/// pub struct TinyNeXtVlad;
/// let d = <TinyNeXtVladModel<f32, Cpu> as VideoModel<f32, Cpu>>::describe();
/// assert!(d.frame_mask && <TinyNeXtVladModel<f32, Cpu> as VideoModel<f32, Cpu>>::READS_FRAMES_IN_ORDER);
/// assert_eq!((d.dropout, d.after_pooling, d.gating_reduction), (0.5, AfterPooling::SeContextGating, Some(8)));
/// ```
///
/// **`hidden`**: `N` is a fully connected layer with bias (the released models: weights
/// N(0, 1/sqrt(K)) with K the first stream's clusters, no activation); `fc(...)` selects
/// batch norm instead of the bias and a ReLU6 (the reference code's other option).
/// Without `hidden`, gating and classifier sit on the pooled representation directly.
///
/// **`after_pooling`**: Context Gating (`context_gating`, with batch norm as released;
/// `biased_context_gating` with a bias instead), SE Context Gating
/// (`context_gating(reduction = r)`, Lin et al. 2018: the gate through a bottleneck of
/// N / r, `x * sigmoid(relu(BN(x W1)) W2)`, [`nn::SeContextGating`]; `r` must divide the
/// gated size) or a gated linear unit (`glu`, Table 2).
///
/// **`classifier`**: mixture of `experts` (plus the dummy expert) or logistic regression;
/// `l2` (default `1e-8`, the reference code's) is the coefficient of the classifier's
/// weight penalty in the loss ([`ModelDescription::classifier_l2`](crate::model::ModelDescription)).
///
/// ```
/// # use loupe::video_model;
/// #[video_model(
///     frames = 30,
///     streams = [rgb(features = 64, pooling = average), audio(features = 16, pooling = max)],
///     after_pooling = biased_context_gating,
///     classifier = logistic(l2 = 1e-6),
///     after_classifier = none,
///     classes = 20,
/// )]
/// pub struct Baseline;
/// ```
///
/// # Checkpoint keys
/// The built type's fields, which are the `TensorCollection` names: `input` (per-frame
/// L2 normalisation and input batch norm; L2 normalisation only for recurrent pooling
/// and video-level input; nothing for `raw_frames`), one field per stream named after it (late
/// fusion) or `pooling` (early fusion), `dropout`, `hidden`, `gating`, `classifier`, `output_gating`;
/// absent layers have no field. Stream names may not be one of these.
///
/// # Errors
/// Mistakes are compile errors on the offending token, all of them at once: unknown or
/// duplicate keys, missing required keys, sizes that are negative, zero or beyond the
/// limits above (also any one weight tensor above 2^31 values), unknown pooling kinds:
///
/// ```text
/// error: expected one of: `netvlad`, `netrvlad`, `netfv`, `soft_bow`, `average`, `max`, `lstm`, `gru`, `nextvlad`
/// ```
///
/// One mistake gives one error: on error the macro still declares the built type, its
/// impls and the builder's consts (with the sizes the spec gave, where they are valid), so
/// the code that uses the model does not fail as well.
/// Shapes are types, so feeding a tensor with another frame count or feature size, or
/// chaining the model with a layer of the wrong size, does not compile:
///
/// ```compile_fail
/// # use loupe::video_model;
/// # use loupe::model::VideoModel;
/// # use loupe::dfdx::prelude::*;
/// #[video_model(
///     frames = 10,
///     streams = [rgb(features = 8, pooling = average)],
///     classifier = logistic,
///     classes = 3,
/// )]
/// pub struct Tiny;
/// let dev = loupe::device::cpu();
/// let m = dev.build_module::<Tiny, f32>();
/// let x: Tensor<(usize, Const<11>, Const<8>), f32, _> = dev.zeros_like(&(2, Const, Const));
/// let _ = m.try_forward_eval(x); // 11 frames, the model takes 10
/// ```
#[doc(inline)]
pub use loupe_macros::video_model;

/// Runtime items the code generated by [`video_model`] refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use ::dfdx::nn::{BuildModule, BuildOnDevice, Module, ModuleMut, ModuleVisitor, TensorCollection};
    pub use ::dfdx::shapes::{Const, Dtype, HasShape};
    pub use ::dfdx::tensor::{HasErr, NoneTape, OwnedTape, SplitTape, Tape, Tensor};
    pub use ::dfdx::tensor_ops::Device;
    pub use ::loupe_core::model::{
        AfterClassifier, AfterPooling, ClassifierKind, Fusion, InputKind, Layer, ModelDescription,
        PoolingDescription, PoolingKind, StreamDescription, VideoModel,
    };
    pub use ::loupe_core::nn;
    pub use ::loupe_core::nn::ClassifierPenalty;

    use ::dfdx::tensor_ops::{RealizeTo, ReshapeTo};

    /// The dtypes generated models are generic over: whatever the layers need.
    pub trait LayerDtype: Dtype {}
    impl<E: Dtype> LayerDtype for E {}

    /// The devices generated models are generic over: whatever the layers need.
    pub trait LayerDevice<E: Dtype>: Device<E> {}
    impl<E: Dtype, D: Device<E>> LayerDevice<E> for D {}

    /// Concatenation of two pooled representations, `(B, A) ++ (B, B) -> (B, C)`, with
    /// `C = A + B` computed by the macro (adding two `Const` dims needs nightly).
    #[allow(clippy::type_complexity)]
    pub fn concat<const A: usize, const B: usize, const C: usize, E: Dtype, D: Device<E>, T, R>(
        a: Tensor<(usize, Const<A>), E, D, T>,
        b: Tensor<(usize, Const<B>), E, D, R>,
    ) -> Result<Tensor<(usize, Const<C>), E, D, T>, D::Err>
    where
        T: Tape<E, D> + ::dfdx::tensor::Merge<R>,
        R: Tape<E, D>,
    {
        #[allow(clippy::let_unit_value)]
        let () = ConcatSizes::<A, B, C>::CHECK;
        ::loupe_core::nn::try_concat_features(a, b)
    }

    /// A video-level model's input, `(B, 1, F) -> (B, F)`: the one vector per video that
    /// YouTube-8M's video-level records hold (the data layer feeds it as one frame).
    #[allow(clippy::type_complexity)]
    pub fn video_vector<const F: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
        x: Tensor<(usize, Const<1>, Const<F>), E, D, T>,
    ) -> Result<Tensor<(usize, Const<F>), E, D, T>, D::Err> {
        let batch = x.shape().0;
        x.try_reshape_like(&(batch, Const::<F>))
    }

    /// A representation, `(B, N) -> (B, N)` with `N` a runtime size
    /// ([`VideoModel::try_representation`]).
    pub fn rows<const N: usize, E: Dtype, D: Device<E>>(
        x: Tensor<(usize, Const<N>), E, D>,
    ) -> Tensor<(usize, usize), E, D> {
        realized(x.try_realize::<(usize, usize)>())
    }

    struct ConcatSizes<const A: usize, const B: usize, const C: usize>;

    impl<const A: usize, const B: usize, const C: usize> ConcatSizes<A, B, C> {
        const CHECK: () = assert!(A + B == C, "concat::<A, B, C>: C must be A + B");
    }

    /// A `realize` the const assertion of the caller makes infallible.
    fn realized<T, U>(r: Result<T, U>) -> T {
        match r {
            Ok(t) => t,
            Err(_) => unreachable!("dims checked at compile time"),
        }
    }
}
