//! The paper's models, declared with [`video_model`] at the paper's
//! sizes, plus small variants for tests and quick runs on synthetic data.
//!
//! Every model takes the YouTube-8M frame features (rgb 1024 then audio 128 per frame,
//! 300 frames sampled per video) and predicts the 3862 classes of the 2018+ vocabulary;
//! the `video-*` models take the video-level features instead (`mean_rgb` 1024 then
//! `mean_audio` 128 per video), for users who only have those.
//! Sizes, clusters and L2 coefficients are those of docs/reference.md sections 4-5 (released
//! commands); where the paper and the released code differ, the item says which it follows.
//!
//! | CLI name | type | paper |
//! |---|---|---|
//! | `avg-logistic` | [`AveragePoolingLogistic`] | Table 1 |
//! | `avg-moe-cg` | [`AveragePoolingMoeCg`] | Table 1 |
//! | `lstm` | [`Lstm`] | Table 1 |
//! | `gru` | [`Gru`] | Table 1 |
//! | `soft-bow` | [`SoftBow`] | Table 1 |
//! | `netfv` | [`NetFv`] | Table 1 |
//! | `netrvlad` | [`NetRvlad`] | Table 1 |
//! | `netvlad` | [`NetVlad`] | Table 1 |
//! | `gated-soft-bow` | [`GatedSoftBow`] | Table 1 |
//! | `gated-netfv` | [`GatedNetFv`] | Table 1 |
//! | `gated-netrvlad` | [`GatedNetRvlad`] | Table 1 |
//! | `gated-netvlad` | [`GatedNetVlad`] | Table 1, section 4 |
//! | `netvlad-128` | [`NetVlad128`] | Table 2 |
//! | `netvlad-128-cg` | [`NetVlad128Cg`] | Table 2 |
//! | `netvlad-128-glu` | [`NetVlad128Glu`] | Table 2 |
//! | `netvlad-128-moe-cg` | [`NetVlad128MoeCg`] | Table 2 |
//! | `gated-netvlad-128` | [`GatedNetVlad128`] | Table 2 |
//! | `gated-netvlad-early` | [`GatedNetVladEarly`] | Table 3 |
//! | `netvlad-128-early` | [`NetVlad128Early`] | Table 3 |
//! | `nextvlad` | [`NeXtVlad`] | Lin et al. 2018 (NeXtVLAD), Table 1 |
//! | `nextvlad-112` | [`NeXtVlad112`] | Lin et al. 2018, the final single model (section 4.4) |
//! | `video-logistic` | [`VideoLogistic`] | video-level (starter code) |
//! | `video-moe` | [`VideoMoe`] | video-level (starter code) |
//! | `video-moe-cg` | [`VideoMoeCg`] | video-level |
//! | `gated-netvlad-2017` | [`GatedNetVlad2017`] | the authors' released checkpoint (4716 classes) |
//! | `video-logistic-2017` | [`VideoLogistic2017`] | starter code, 2017 vocabulary |
//! | `video-moe-2017` | [`VideoMoe2017`] | starter code, 2017 vocabulary |
//! | `small-gated-netvlad` | [`SmallGatedNetVlad`] | small |
//! | `small-gated-netfv` | [`SmallGatedNetFv`] | small |
//! | `small-soft-bow` | [`SmallSoftBow`] | small |
//! | `small-average` | [`SmallAverage`] | small |
//! | `small-netvlad-early` | [`SmallNetVladEarly`] | small |
//! | `small-lstm` | [`SmallLstm`] | small |
//! | `small-gru` | [`SmallGru`] | small |
//! | `small-nextvlad` | [`SmallNeXtVlad`] | small (Lin et al. 2018) |
//! | `small-nextvlad-2018` | [`SmallNeXtVlad2018`] | small, as [`NeXtVlad`] |
//! | `small-video-moe` | [`SmallVideoMoe`] | small, video-level |
//! | `quickstart-gated-netvlad` | [`QuickstartGatedNetVlad`] | quick start |
//! | `quickstart-average` | [`QuickstartAverage`] | quick start |
//! | `fixture-gated-netvlad` | [`FixtureGatedNetVlad`] | the TF fixture `willow-gated-netvlad` |
//! | `fixture-video-logistic` | [`FixtureVideoLogistic`] | the TF fixture `starter-video-logistic` |
//! | `fixture-video-moe` | [`FixtureVideoMoe`] | the TF fixture `starter-video-moe` |
//!
//! The recurrent models read each video's frames in temporal order (the data's
//! `FrameSampling::InOrder`) and stop at its last valid frame: the run loop passes each
//! batch's valid frame counts ([`FrameBatch::lengths`](crate::data::FrameBatch::lengths))
//! to [`VideoModel::try_forward_train_lengths`], so the cycled frames that fill a short
//! video are not read. Through the frames-only methods they see all `FRAMES` frames as
//! valid. `RunConfig::frame_order` (`loupe train --frame-order random`) feeds them frames
//! drawn with replacement in random order instead, as the released LSTM was trained.
//!
//! # Picking a model by name
//! [`visit`] hands the builder type registered under a name to a [`ModelVisitor`]; the
//! [`for_each_model!`](crate::for_each_model) macro expands a macro of yours once with the
//! whole list (for tests and tables).
//!
//! ```
//! use loupe::zoo::{self, ModelVisitor, ZooModel};
//! use loupe::model::VideoModel;
//! use loupe::dfdx::prelude::*;
//!
//! struct CountParams<'a>(&'a Cpu);
//! impl ModelVisitor<f32, Cpu> for CountParams<'_> {
//!     type Output = usize;
//!     fn visit<M: ZooModel<f32, Cpu>>(self) -> usize {
//!         self.0.build_module::<M, f32>().num_params()
//!     }
//! }
//! let dev = loupe::device::cpu();
//! let n = zoo::visit("small-gated-netvlad", CountParams(&dev)).unwrap();
//! assert!(n > 0);
//! assert!(zoo::visit("no-such-model", CountParams(&dev)).is_none());
//! ```

use crate::__private::{BuildModule, BuildOnDevice, Dtype, LayerDevice, LayerDtype, VideoModel};
use crate::video_model;

/// A builder in the zoo: buildable on `D` with dtype `E` into a [`VideoModel`].
pub trait ZooModel<E: Dtype, D: LayerDevice<E>>: BuildOnDevice<D, E, Built = Self::Model> {
    /// The built model: buildable from nothing (initialised weights) and cloneable (the
    /// optimizer's state is a pair of model copies).
    type Model: VideoModel<E, D> + BuildModule<D, E> + Clone;
}

impl<E: Dtype, D: LayerDevice<E>, B> ZooModel<E, D> for B
where
    B: BuildOnDevice<D, E>,
    B::Built: VideoModel<E, D> + Clone,
{
    type Model = B::Built;
}

/// Does something with a model type chosen at run time ([`visit`]).
pub trait ModelVisitor<E: Dtype, D: LayerDevice<E>> {
    type Output;
    fn visit<M: ZooModel<E, D>>(self) -> Self::Output;
}

/// Expands `$callback! { "cli-name" => Type, ... }` with every model of the zoo, in the
/// order of [`zoo`](crate::zoo)'s table. Types are absolute paths (`$crate::zoo::...`).
///
/// ```
/// macro_rules! names {
///     ($($name:literal => $model:path),* $(,)?) => { [$($name),*] };
/// }
/// let names = loupe::for_each_model!(names);
/// assert!(names.contains(&"gated-netvlad"));
/// ```
#[macro_export]
macro_rules! for_each_model {
    ($callback:ident) => {
        $callback! {
            "avg-logistic" => $crate::zoo::AveragePoolingLogistic,
            "avg-moe-cg" => $crate::zoo::AveragePoolingMoeCg,
            "lstm" => $crate::zoo::Lstm,
            "gru" => $crate::zoo::Gru,
            "soft-bow" => $crate::zoo::SoftBow,
            "netfv" => $crate::zoo::NetFv,
            "netrvlad" => $crate::zoo::NetRvlad,
            "netvlad" => $crate::zoo::NetVlad,
            "gated-soft-bow" => $crate::zoo::GatedSoftBow,
            "gated-netfv" => $crate::zoo::GatedNetFv,
            "gated-netrvlad" => $crate::zoo::GatedNetRvlad,
            "gated-netvlad" => $crate::zoo::GatedNetVlad,
            "netvlad-128" => $crate::zoo::NetVlad128,
            "netvlad-128-cg" => $crate::zoo::NetVlad128Cg,
            "netvlad-128-glu" => $crate::zoo::NetVlad128Glu,
            "netvlad-128-moe-cg" => $crate::zoo::NetVlad128MoeCg,
            "gated-netvlad-128" => $crate::zoo::GatedNetVlad128,
            "gated-netvlad-early" => $crate::zoo::GatedNetVladEarly,
            "netvlad-128-early" => $crate::zoo::NetVlad128Early,
            "nextvlad" => $crate::zoo::NeXtVlad,
            "nextvlad-112" => $crate::zoo::NeXtVlad112,
            "video-logistic" => $crate::zoo::VideoLogistic,
            "video-moe" => $crate::zoo::VideoMoe,
            "video-moe-cg" => $crate::zoo::VideoMoeCg,
            "gated-netvlad-2017" => $crate::zoo::GatedNetVlad2017,
            "video-logistic-2017" => $crate::zoo::VideoLogistic2017,
            "video-moe-2017" => $crate::zoo::VideoMoe2017,
            "small-gated-netvlad" => $crate::zoo::SmallGatedNetVlad,
            "small-gated-netfv" => $crate::zoo::SmallGatedNetFv,
            "small-soft-bow" => $crate::zoo::SmallSoftBow,
            "small-average" => $crate::zoo::SmallAverage,
            "small-netvlad-early" => $crate::zoo::SmallNetVladEarly,
            "small-lstm" => $crate::zoo::SmallLstm,
            "small-gru" => $crate::zoo::SmallGru,
            "small-nextvlad" => $crate::zoo::SmallNeXtVlad,
            "small-nextvlad-2018" => $crate::zoo::SmallNeXtVlad2018,
            "small-video-moe" => $crate::zoo::SmallVideoMoe,
            "quickstart-gated-netvlad" => $crate::zoo::QuickstartGatedNetVlad,
            "quickstart-average" => $crate::zoo::QuickstartAverage,
            "fixture-gated-netvlad" => $crate::zoo::FixtureGatedNetVlad,
            "fixture-video-logistic" => $crate::zoo::FixtureVideoLogistic,
            "fixture-video-moe" => $crate::zoo::FixtureVideoMoe,
        }
    };
}

macro_rules! registry {
    ($($name:literal => $model:path),* $(,)?) => {
        /// Every model's CLI name, in table order.
        pub const NAMES: &[&str] = &[$($name),*];

        /// Calls `visitor` with the model registered under `name`; `None` for an unknown
        /// name (see [`NAMES`]).
        pub fn visit<E: LayerDtype, D: LayerDevice<E>, V: ModelVisitor<E, D>>(
            name: &str,
            visitor: V,
        ) -> Option<V::Output> {
            match name {
                $($name => Some(visitor.visit::<$model>()),)*
                _ => None,
            }
        }
    };
}
for_each_model!(registry);

// ---------------------------------------------------------------------------------------
// Table 1: pooling methods (validation GAP in the doc line).

/// Average pooling + logistic regression (Table 1: 71.4 GAP). The released frame-level
/// logistic model: no hidden layer, the classifier sits on the 1152 averaged values.
#[video_model(
    frames = 300,
    streams = [rgb(features = 1024, pooling = average), audio(features = 128, pooling = average)],
    classifier = logistic,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AveragePoolingLogistic;

/// Average pooling + MoE + Context Gating (Table 1: 74.1 GAP). No hidden layer (the
/// released code reduces only clustering models to 1024); the gate sits on the pooled
/// 1152 values.
#[video_model(
    frames = 300,
    streams = [rgb(features = 1024, pooling = average), audio(features = 128, pooling = average)],
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AveragePoolingMoeCg;

/// LSTM (Table 1: 81.7 GAP), as released: two stacked LSTM layers of 1024 cells (forget
/// bias 1) over the L2-normalised early-concat 1152-d frames, no input batch norm; the
/// MoE sits directly on the final states `[c1, h1, c2, h2]` (4096), no hidden layer, no
/// gating; 150 frames, MoE L2 1e-8. (The released run fed the 150 frames drawn with
/// replacement in random order, `loupe train --frame-order random`; the paper and loupe's
/// default read them in temporal order.)
#[video_model(
    frames = 150,
    fusion = early(pooling = lstm(size = 1024)),
    streams = [rgb(features = 1024), audio(features = 128)],
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lstm;

/// GRU (Table 1: 82.0 GAP), as released: two stacked GRU layers of 1200 units over the
/// L2-normalised early-concat frames in temporal order (300), no input batch norm; the
/// MoE sits directly on `[h1, h2]` (2400), no hidden layer, no gating; MoE L2 1e-6.
#[video_model(
    frames = 300,
    fusion = early(pooling = gru(size = 1200)),
    streams = [rgb(features = 1024), audio(features = 128)],
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gru;

/// Soft bag of words with 4096 video / 512 audio clusters (Table 1 "BoW 4096": 81.6 GAP).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = soft_bow(clusters = 4096)),
        audio(features = 128, pooling = soft_bow(clusters = 512)),
    ],
    hidden = 1024,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoftBow;

/// NetFV with 128 video / 64 audio clusters (Table 1: 82.2 GAP).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netfv(clusters = 128)),
        audio(features = 128, pooling = netfv(clusters = 64)),
    ],
    hidden = 1024,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetFv;

/// NetRVLAD with 256 video / 128 audio clusters (Table 1: 82.3 GAP).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netrvlad(clusters = 256)),
        audio(features = 128, pooling = netrvlad(clusters = 128)),
    ],
    hidden = 1024,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetRvlad;

/// NetVLAD with 256 video / 128 audio clusters (Table 1: 82.4 GAP).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 256)),
        audio(features = 128, pooling = netvlad(clusters = 128)),
    ],
    hidden = 1024,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetVlad;

/// Gated soft BoW, 4096 / 512 clusters (Table 1: 82.0 GAP), as the paper describes it:
/// soft BoW + Context Gating + MoE + probability gating. The released model instead gated
/// the video histogram with its own context (docs/reference.md section 2); that variant needs a
/// pooling kind of its own.
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = soft_bow(clusters = 4096)),
        audio(features = 128, pooling = soft_bow(clusters = 512)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatedSoftBow;

/// Gated NetFV, 128 / 64 clusters (Table 1: 83.0 GAP).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netfv(clusters = 128)),
        audio(features = 128, pooling = netfv(clusters = 64)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatedNetFv;

/// Gated NetRVLAD, 256 / 128 clusters (Table 1: 83.1 GAP).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netrvlad(clusters = 256)),
        audio(features = 128, pooling = netrvlad(clusters = 128)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatedNetRvlad;

/// Gated NetVLAD, the released architecture (section 4; Table 1: 83.2 GAP): NetVLAD 256 /
/// 128 clusters, late concat (278528), hidden 1024, Context Gating, MoE with 2 experts,
/// probability gating.
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 256)),
        audio(features = 128, pooling = netvlad(clusters = 128)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatedNetVlad;

// ---------------------------------------------------------------------------------------
// Table 2: gating ablation on NetVLAD with 128 clusters (64 for audio).

/// NetVLAD 128 without any gating (Table 2 baseline).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 128)),
        audio(features = 128, pooling = netvlad(clusters = 64)),
    ],
    hidden = 1024,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetVlad128;

/// NetVLAD 128 with Context Gating after pooling only (Table 2).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 128)),
        audio(features = 128, pooling = netvlad(clusters = 64)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetVlad128Cg;

/// NetVLAD 128 with a gated linear unit after pooling (Table 2).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 128)),
        audio(features = 128, pooling = netvlad(clusters = 64)),
    ],
    hidden = 1024,
    after_pooling = glu,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetVlad128Glu;

/// NetVLAD 128 with Context Gating after the MoE only (probability gating; Table 2).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 128)),
        audio(features = 128, pooling = netvlad(clusters = 64)),
    ],
    hidden = 1024,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetVlad128MoeCg;

/// NetVLAD 128 with Context Gating after pooling and after the MoE (Table 2).
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 128)),
        audio(features = 128, pooling = netvlad(clusters = 64)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatedNetVlad128;

// ---------------------------------------------------------------------------------------
// Table 3: early concatenation (one pooling over the 1152-value frames). The late
// counterparts are `GatedNetVlad` and `NetVlad128`.

/// Gated NetVLAD with early concat: one NetVLAD (256 clusters) over rgb+audio frames.
#[video_model(
    frames = 300,
    fusion = early(pooling = netvlad(clusters = 256)),
    streams = [rgb(features = 1024), audio(features = 128)],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatedNetVladEarly;

/// NetVLAD 128 with early concat (Table 3).
#[video_model(
    frames = 300,
    fusion = early(pooling = netvlad(clusters = 128)),
    streams = [rgb(features = 1024), audio(features = 128)],
    hidden = 1024,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetVlad128Early;

/// NeXtVLAD as Lin, Xiao and Fan published it for the 2018 YouTube-8M challenge
/// ("NeXtVLAD: An Efficient Neural Network to Aggregate Frame-level Features for
/// Large-scale Video Classification", arXiv 1811.05014; `NeXtVLADModel` of their released
/// code with `scripts/train_nextvlad_local.sh`), the paper's Table 1 row "NeXtVLAD (8G,
/// 0.5drop, 128K, 2048H)". Each choice, with where it comes from:
///
/// - **Frames as they are** (`input = raw_frames`): the released `train.py` and `eval.py`
///   feed the model the dequantised features with neither L2 normalisation (their
///   `l2_normalize` line is commented out) nor an input batch norm.
/// - **Two streams, each its own NeXtVLAD** (section 3.3, figure 3): rgb with K = 128
///   clusters, G = 8 groups, expansion λ = 2 (section 3.2, Table 1); audio with half the
///   clusters and half the groups, K = 64, G = 4, λ = 2 (the released code).
/// - **Frames masked past each video's length** (section 4.2, eqs. 18-19): `frame_mask`
///   feeds the first 300 frames in temporal order and leaves those past the video's end
///   out of the aggregation (the released code pads to 300 and masks the attention).
/// - **Dropout 0.5** on the concatenated streams, training only (section 4.2, figure 3).
/// - **Hidden layer of 2048 without bias, then batch norm**, no activation (figure 3; the
///   released `hidden1_weights` and `hidden1_bn`).
/// - **SE Context Gating, reduction r = 8** (section 3.3, figure 4, eq. 10):
///   `x * sigmoid(relu(BN(x W1)) W2)` with `W1`: 2048 x 256, `W2`: 256 x 2048, no biases.
///   Figure 4 draws a second batch norm before the sigmoid; the released code has none,
///   and loupe follows the code.
/// - **Logistic classifier, l2 1e-5** (section 3.3: "a logistic classifier with sigmoid
///   activation"; section 4.2: "a l2(1e-5) regularizer"), not a mixture of experts.
/// - 3862 classes (the 2018 vocabulary), 300 frames.
///
/// Where loupe differs from the release: the release first reverses the rgb PCA whitening
/// of the dataset (`(x_j - 4/512) (sqrt(e_j) + 1e-4)` over the 1024 rgb values, section
/// 3.3, eq. 11), which needs Google's PCA eigenvalues; loupe feeds the dequantised
/// features as they are (importing their checkpoint, apply that transform to the data
/// first: docs/tf-checkpoints.md). The hidden weights start at N(0, 1/sqrt(128)) instead
/// of variance scaling; and the logistic L2 penalty covers its weights, not its biases.
///
/// Parameters: 88,889,378 trainable, 80,976,140 without the classifier (the logistic
/// 2048 x 3862 + 3862 adds 7,913,238). The paper's Table 1 gives 89M for this
/// configuration, classifier included; its "71M+" (section 3.2, eq. 9) is the rgb
/// NeXtVLAD with the hidden layer only. The "79M" single model of its final submission
/// (GAP 0.87846, section 4.4) is [`NeXtVlad112`].
///
/// Training as published (section 4.2): Adam, learning rate 2e-4 decayed by 0.8 every
/// 2,000,000 examples, batch 160 (80 per GPU on two GPUs), 5 epochs (about 120k steps)
/// for the paper's local runs; the README's zoo table gives the `loupe train` flags.
#[video_model(
    input = raw_frames,
    frames = 300,
    frame_mask = true,
    streams = [
        rgb(features = 1024, pooling = nextvlad(clusters = 128, groups = 8, expansion = 2)),
        audio(features = 128, pooling = nextvlad(clusters = 64, groups = 4, expansion = 2)),
    ],
    dropout = 0.5,
    hidden = fc(size = 2048, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 8),
    classifier = logistic(l2 = 1e-5),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeXtVlad;

/// [`NeXtVlad`] as in Lin et al.'s final submission (section 4.4, Table 3; the released
/// `scripts/train_mix_nextvlad_final_submission.sh`): one branch of their 3-model mixture,
/// rgb K = 112 (audio K = 56, G = 4), SE Context Gating with reduction r = 16, everything
/// else as [`NeXtVlad`]. The paper's "single NeXtVLAD model with only 79M parameters"
/// that scores GAP 0.87846 on the private leaderboard: 78,643,170 trainable parameters
/// here, 70,729,932 without the logistic classifier. The mixture's gating network and
/// on-the-fly distillation (section 3.4) are not part of it. Trained on the train and
/// validate partitions for 15 epochs (about 460k steps), learning rate 2e-4 decayed by
/// 0.9 every 2,500,000 examples, batch 160 (section 4.2).
#[video_model(
    input = raw_frames,
    frames = 300,
    frame_mask = true,
    streams = [
        rgb(features = 1024, pooling = nextvlad(clusters = 112, groups = 8, expansion = 2)),
        audio(features = 128, pooling = nextvlad(clusters = 56, groups = 4, expansion = 2)),
    ],
    dropout = 0.5,
    hidden = fc(size = 2048, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 16),
    classifier = logistic(l2 = 1e-5),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeXtVlad112;

// ---------------------------------------------------------------------------------------
// Video-level models: the YouTube-8M starter code's `LogisticModel` and `MoeModel` on
// video-level records (one `mean_rgb` + `mean_audio` vector per video). As in its
// `train.py`, the concatenated 1152 values are L2-normalised and nothing else: no input
// batch norm, no pooling. Train them on the `video/` shards (`loupe synth` writes both).

/// The starter code's video-level `LogisticModel`: one linear layer and a sigmoid on the
/// L2-normalised 1152 values, L2 penalty 1e-8.
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = logistic(l2 = 1e-8),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoLogistic;

/// The starter code's video-level `MoeModel` at its defaults: 2 experts (plus the dummy
/// expert of the gates' softmax), L2 penalty 1e-8.
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoMoe;

/// [`VideoMoe`] with Context Gating on the input vector (the video-level counterpart of
/// Table 1's "Avg + MoE + CG"; not in the starter code).
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 3862,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoMoeCg;

// ---------------------------------------------------------------------------------------
// The 2017 vocabulary (4716 classes; records name the video `video_id`, which the data
// layer reads like `id`): the configurations of the released TensorFlow checkpoints,
// for `loupe import` (docs/tf-checkpoints.md).

/// The authors' released Gated NetVLAD (WILLOW `NetVLADModelLF` with `--gating
/// --moe_prob_gating --netvlad_relu=False`, 256 / 128 clusters, hidden 1024, 300 frames
/// sampled per video), trained on the 2017 vocabulary of 4716 classes.
#[video_model(
    frames = 300,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 256)),
        audio(features = 128, pooling = netvlad(clusters = 128)),
    ],
    hidden = 1024,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 4716,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatedNetVlad2017;

/// [`VideoLogistic`] on the 2017 vocabulary (4716 classes).
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = logistic(l2 = 1e-8),
    classes = 4716,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoLogistic2017;

/// [`VideoMoe`] on the 2017 vocabulary (4716 classes).
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 4716,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoMoe2017;

// ---------------------------------------------------------------------------------------
// Small variants: same architectures, sizes for tests and quick starts on synthetic data
// (16 rgb + 8 audio features, 10 frames, 10 classes).

/// [`GatedNetVlad`] at toy size: 16/8 features, 8/4 clusters, hidden 32, 10 classes.
#[video_model(
    frames = 10,
    streams = [
        rgb(features = 16, pooling = netvlad(clusters = 8)),
        audio(features = 8, pooling = netvlad(clusters = 4)),
    ],
    hidden = 32,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallGatedNetVlad;

/// [`GatedNetFv`] at toy size.
#[video_model(
    frames = 10,
    streams = [
        rgb(features = 16, pooling = netfv(clusters = 4)),
        audio(features = 8, pooling = netfv(clusters = 2)),
    ],
    hidden = 32,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallGatedNetFv;

/// [`SoftBow`] at toy size, with a batch-normalised ReLU6 hidden layer.
#[video_model(
    frames = 10,
    streams = [
        rgb(features = 16, pooling = soft_bow(clusters = 32)),
        audio(features = 8, pooling = soft_bow(clusters = 4)),
    ],
    hidden = fc(size = 32, batch_norm = true, relu6 = true),
    after_pooling = biased_context_gating,
    classifier = moe(experts = 2),
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallSoftBow;

/// Average and max pooling + logistic regression at toy size.
#[video_model(
    frames = 10,
    streams = [rgb(features = 16, pooling = average), audio(features = 8, pooling = max)],
    classifier = logistic,
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallAverage;

/// Early-concat NetVLAD with GLU at toy size.
#[video_model(
    frames = 10,
    fusion = early(pooling = netvlad(clusters = 4)),
    streams = [rgb(features = 16), audio(features = 8)],
    hidden = 32,
    after_pooling = glu,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallNetVladEarly;

/// [`Lstm`] at toy size: 2 x 8 cells.
#[video_model(
    frames = 10,
    fusion = early(pooling = lstm(size = 8)),
    streams = [rgb(features = 16), audio(features = 8)],
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallLstm;

/// [`Gru`] at toy size: 2 x 8 units.
#[video_model(
    frames = 10,
    fusion = early(pooling = gru(size = 8)),
    streams = [rgb(features = 16), audio(features = 8)],
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallGru;

/// NeXtVLAD (Lin et al. 2018) at toy size: expansion 2, 4 groups, 4 clusters over the
/// early-concat frames, hidden 32 with Context Gating.
#[video_model(
    frames = 10,
    fusion = early(pooling = nextvlad(clusters = 4, groups = 4, expansion = 2)),
    streams = [rgb(features = 16), audio(features = 8)],
    hidden = 32,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallNeXtVlad;

/// [`NeXtVlad`] (Lin et al. 2018 as published) at toy size: frames as they are,
/// per-stream NeXtVLADs (rgb K = 4, G = 4; audio K = 2, G = 2, the release's halves;
/// expansion 2), frames masked past each video's length, dropout 0.5, hidden 32 without
/// bias with batch norm, SE Context Gating with reduction 8, logistic classifier with l2
/// 1e-5. The TF fixture `tests/fixtures/tf-checkpoints/nextvlad-2018/` holds the released
/// code's variables at these sizes.
#[video_model(
    input = raw_frames,
    frames = 10,
    frame_mask = true,
    streams = [
        rgb(features = 16, pooling = nextvlad(clusters = 4, groups = 4, expansion = 2)),
        audio(features = 8, pooling = nextvlad(clusters = 2, groups = 2, expansion = 2)),
    ],
    dropout = 0.5,
    hidden = fc(size = 32, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 8),
    classifier = logistic(l2 = 1e-5),
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallNeXtVlad2018;

/// [`VideoMoe`] at toy size: 16 + 8 video-level features, 10 classes.
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 16), mean_audio(features = 8)],
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 10,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallVideoMoe;
// ---------------------------------------------------------------------------------------
// The quick start's pair (`loupe quickstart`): the default synthetic dataset's layout
// (rgb 1024 + audio 128 per frame, 64 classes), 32 frames sampled per video. Both share
// the same head, so the comparison isolates the pooling.

/// Gated NetVLAD sized for the quick start: NetVLAD 16 / 8 clusters, hidden 256, Context
/// Gating, MoE with 2 experts, probability gating, 64 classes.
#[video_model(
    frames = 32,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 16)),
        audio(features = 128, pooling = netvlad(clusters = 8)),
    ],
    hidden = 256,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 64,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuickstartGatedNetVlad;

/// The quick start's baseline: average pooling with the same head as
/// [`QuickstartGatedNetVlad`].
#[video_model(
    frames = 32,
    streams = [rgb(features = 1024, pooling = average), audio(features = 128, pooling = average)],
    hidden = 256,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 64,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuickstartAverage;

// ---------------------------------------------------------------------------------------
// The architectures of the TensorFlow checkpoints in `tests/fixtures/tf-checkpoints/`,
// written by the original training code at small sizes (each folder's README has the
// flags): `loupe import` tests run end to end on them.

/// WILLOW's Gated NetVLAD as the fixture `willow-gated-netvlad` trained it: 8 rgb / 4
/// audio clusters, hidden 16, Context Gating, MoE(2), probability gating, 20 classes,
/// 6 frames (`--iterations=6`).
#[video_model(
    frames = 6,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 8)),
        audio(features = 128, pooling = netvlad(clusters = 4)),
    ],
    hidden = 16,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 20,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixtureGatedNetVlad;

/// The starter code's video-level `LogisticModel` over 20 classes (fixture
/// `starter-video-logistic`).
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = logistic(l2 = 1e-8),
    classes = 20,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixtureVideoLogistic;

/// The starter code's video-level `MoeModel`, 2 mixtures over 20 classes (fixture
/// `starter-video-moe`).
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 20,
)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixtureVideoMoe;
