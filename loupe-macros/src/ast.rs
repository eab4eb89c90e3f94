//! The typed model of a `#[video_model(...)]` spec, as written.
//!
//! Every value keeps the syn node it came from so that the validator and the code
//! generator can point errors at the user's tokens. Nothing here is checked yet:
//! optional fields are `None` when the key was absent (or failed to parse), and the
//! validator (`valid.rs`) decides what that means.

use proc_macro2::Span;
use syn::{Ident, LitBool, LitInt};

/// A `key = value` pair: the key's identifier (for "duplicate key" errors) and the value.
pub struct Keyed<T> {
    pub key: Ident,
    pub value: T,
}

/// A size written as an integer literal; `value` is `None` when the literal does not fit
/// in a `u64` (the validator reports it on the literal).
pub struct Size {
    pub lit: LitInt,
    pub value: Option<u64>,
}

impl Size {
    pub fn span(&self) -> Span {
        self.lit.span()
    }
}

/// The whole spec: one slot per top-level key.
#[derive(Default)]
pub struct Spec {
    pub input: Option<Keyed<Input>>,
    pub frames: Option<Keyed<Size>>,
    pub fusion: Option<Keyed<Fusion>>,
    pub streams: Option<Keyed<Vec<Stream>>>,
    pub hidden: Option<Keyed<Hidden>>,
    pub after_pooling: Option<Keyed<Gate>>,
    pub classifier: Option<Keyed<Classifier>>,
    pub after_classifier: Option<Keyed<OutputGate>>,
    pub classes: Option<Keyed<Size>>,
}

/// `input = frames` (frame-level features, the default) or `input = video_level`
/// (one vector per video: YouTube-8M's `mean_rgb` and `mean_audio`).
pub struct Input {
    pub video_level: bool,
}

/// `fusion = late` or `fusion = early(pooling = <pooling>)`.
pub enum Fusion {
    /// Each stream is pooled on its own and the pooled vectors are concatenated.
    Late,
    /// The streams' frames are concatenated and pooled once.
    Early { kw: Span, pooling: Option<Keyed<Pooling>> },
}

/// One input stream: `rgb(features = 1024, pooling = netvlad(clusters = 256))`.
pub struct Stream {
    pub name: Ident,
    pub features: Option<Keyed<Size>>,
    pub pooling: Option<Keyed<Pooling>>,
}

/// The pooling kinds. Adding one (LSTM, NeXtVLAD, ...) is one variant here, one arm in
/// `attr::parse_pooling`, its constraints in `PoolingKind::needs_clusters` and
/// `valid::pooled_size`, and one arm in `expand::pooling_type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PoolingKind {
    NetVlad,
    NetRvlad,
    NetFv,
    SoftBow,
    Average,
    Max,
    /// Two stacked LSTM layers of `size` cells, final states `[c1, h1, c2, h2]`.
    Lstm,
    /// Two stacked GRU layers of `size` units, final states `[h1, h2]`.
    Gru,
    /// NeXtVLAD with `clusters`, `groups` (default 8) and `expansion` (default 2).
    NeXtVlad,
}

impl PoolingKind {
    /// The keyword that names this kind in the grammar.
    pub fn keyword(self) -> &'static str {
        match self {
            PoolingKind::NetVlad => "netvlad",
            PoolingKind::NetRvlad => "netrvlad",
            PoolingKind::NetFv => "netfv",
            PoolingKind::SoftBow => "soft_bow",
            PoolingKind::Average => "average",
            PoolingKind::Max => "max",
            PoolingKind::Lstm => "lstm",
            PoolingKind::Gru => "gru",
            PoolingKind::NeXtVlad => "nextvlad",
        }
    }

    /// Whether the kind is a clustering one (takes `clusters = K`).
    pub fn needs_clusters(self) -> bool {
        match self {
            PoolingKind::NetVlad
            | PoolingKind::NetRvlad
            | PoolingKind::NetFv
            | PoolingKind::SoftBow
            | PoolingKind::NeXtVlad => true,
            PoolingKind::Average | PoolingKind::Max | PoolingKind::Lstm | PoolingKind::Gru => false,
        }
    }

    /// Whether the kind is recurrent (takes `size = H`; reads the L2-normalised frames
    /// without the input batch norm, REFERENCE.md section 2).
    pub fn is_recurrent(self) -> bool {
        matches!(self, PoolingKind::Lstm | PoolingKind::Gru)
    }
}

/// `netvlad(clusters = 256)`, `average`, ...
pub struct Pooling {
    pub kind: PoolingKind,
    /// The kind's keyword.
    pub span: Span,
    pub clusters: Option<Keyed<Size>>,
    /// Cells per layer of a recurrent kind.
    pub size: Option<Keyed<Size>>,
    /// NeXtVLAD's groups.
    pub groups: Option<Keyed<Size>>,
    /// NeXtVLAD's expansion factor (lambda).
    pub expansion: Option<Keyed<Size>>,
}

/// `hidden = 1024` or `hidden = fc(size = 1024, batch_norm = true, relu6 = true)`.
pub struct Hidden {
    pub span: Span,
    pub size: Option<Size>,
    pub batch_norm: Option<Keyed<LitBool>>,
    pub relu6: Option<Keyed<LitBool>>,
}

/// What sits on the pooled (and hidden-reduced) representation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GateKind {
    None,
    ContextGating,
    BiasedContextGating,
    Glu,
}

pub struct Gate {
    pub kind: GateKind,
    pub span: Span,
}

/// `moe(experts = 2, l2 = 1e-6)` or `logistic(l2 = 1e-8)`.
pub struct Classifier {
    pub kind: ClassifierKind,
    /// The kind's keyword.
    pub span: Span,
    pub experts: Option<Keyed<Size>>,
    pub l2: Option<Keyed<Coefficient>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ClassifierKind {
    Moe,
    Logistic,
}

/// A non-negative coefficient written as a float or integer literal.
pub struct Coefficient {
    pub lit: syn::Lit,
    /// `None` when the literal does not parse as an `f64`.
    pub value: Option<f64>,
}

/// What sits after the classifier: probability gating (`context_gating`) or `none`.
pub struct OutputGate {
    pub gating: bool,
    pub span: Span,
}
