//! The typed model of a `#[video_model(...)]` spec, as written.
//!
//! Every value keeps the syn node it came from so that the validator and the code
//! generator can point errors at the user's tokens. Nothing here is checked yet:
//! optional fields are `None` when the key was absent (or failed to parse), and the
//! validator (`valid.rs`) decides what that means.

use crate::pooling::{ArgKey, PoolingDef};
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
    pub frame_mask: Option<Keyed<LitBool>>,
    pub streams: Option<Keyed<Vec<Stream>>>,
    pub dropout: Option<Keyed<Coefficient>>,
    pub hidden: Option<Keyed<Hidden>>,
    pub after_pooling: Option<Keyed<Gate>>,
    pub classifier: Option<Keyed<Classifier>>,
    pub after_classifier: Option<Keyed<OutputGate>>,
    pub classes: Option<Keyed<Size>>,
}

/// `input = frames` (frame-level features, L2-normalised and batch-normalised: the
/// default), `input = raw_frames` (frame-level features as they are) or
/// `input = video_level` (one vector per video: YouTube-8M's `mean_rgb` and `mean_audio`).
pub struct Input {
    pub video_level: bool,
    pub raw_frames: bool,
}

/// `fusion = late` or `fusion = early(pooling = <pooling>)`.
pub enum Fusion {
    /// Each stream is pooled on its own and the pooled vectors are concatenated.
    Late,
    /// The streams' frames are concatenated and pooled once.
    Early { kw: Span, pooling: Option<Box<Keyed<Pooling>>> },
}

/// One input stream: `rgb(features = 1024, pooling = netvlad(clusters = 256))`.
pub struct Stream {
    pub name: Ident,
    pub features: Option<Keyed<Size>>,
    pub pooling: Option<Keyed<Pooling>>,
}

/// `netvlad(clusters = 256)`, `average`, ...: a kind of the table in `pooling.rs` and the
/// arguments as written (any kind's arguments parse; the validator checks them).
pub struct Pooling {
    pub kind: &'static PoolingDef,
    /// The kind's keyword.
    pub span: Span,
    /// One slot per [`ArgKey`], in [`ArgKey::ALL`] order.
    pub args: [Option<Keyed<Size>>; 4],
}

impl Pooling {
    pub fn arg(&self, key: ArgKey) -> Option<&Keyed<Size>> {
        self.args[key.index()].as_ref()
    }
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
    /// `context_gating(reduction = r)`: SE Context Gating (Lin et al. 2018).
    SeContextGating,
    Glu,
}

/// `context_gating`, `context_gating(reduction = 8)`, `glu`, ...
pub struct Gate {
    pub kind: GateKind,
    pub span: Span,
    /// The bottleneck reduction of `context_gating(reduction = r)`.
    pub reduction: Option<Keyed<Size>>,
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
