//! Validation of a parsed spec, and the sizes the macro computes.
//!
//! `validate` checks every rule it can and reports every violation (spanned on the
//! offending token) before giving up, and on success returns the resolved [`Model`]:
//! plain numbers that `expand.rs` turns into const generics.

use crate::ast::{Classifier, ClassifierKind, Fusion, GateKind, Keyed, Pooling, PoolingKind, Size, Spec, Stream};
use crate::attr::Errors;
use proc_macro2::Span;
use syn::Ident;

/// Largest frame count, feature size, cluster count or hidden size accepted.
pub const MAX_DIM: u64 = 1 << 16;
/// Largest class count accepted.
pub const MAX_CLASSES: u64 = 1 << 20;
/// Largest number of mixture experts accepted.
pub const MAX_EXPERTS: u64 = 64;
/// Largest number of elements in any one weight matrix (8 GiB of `f32`).
pub const MAX_ELEMENTS: u64 = 1 << 31;

/// Field names the generated model uses for its own layers; streams may not take them.
pub const RESERVED: &[&str] = &["input", "pooling", "hidden", "gating", "classifier", "output_gating"];

/// A validated model: every size resolved.
pub struct Model {
    /// `input = video_level`: one vector per video, no pooling, `frames` is 1.
    pub video_level: bool,
    /// Frames sampled per video.
    pub frames: usize,
    /// Input feature size: the sum of the streams' features.
    pub features: usize,
    pub streams: Vec<ResolvedStream>,
    /// `Some` for early fusion: one pooling over all the features.
    pub early: Option<ResolvedPooling>,
    /// Size of the pooled representation (the concatenation, for late fusion).
    pub pooled: usize,
    pub hidden: Option<ResolvedHidden>,
    /// Size of the representation the gate and the classifier see.
    pub representation: usize,
    pub gate: GateKind,
    pub gate_span: Span,
    pub classifier: ResolvedClassifier,
    pub classifier_span: Span,
    pub output_gating: bool,
    pub output_gate_span: Span,
    pub classes: usize,
    pub classes_span: Span,
    pub frames_span: Span,
}

pub struct ResolvedStream {
    pub name: Ident,
    /// First channel of the stream in the input frames.
    pub start: usize,
    pub features: usize,
    pub features_span: Span,
    /// `None` under early fusion.
    pub pooling: Option<ResolvedPooling>,
}

#[derive(Clone)]
pub struct ResolvedPooling {
    pub kind: PoolingKind,
    pub span: Span,
    /// Feature size pooled.
    pub input: usize,
    /// Cluster count (0 for the kinds without clusters).
    pub clusters: usize,
    /// Cells per layer (recurrent kinds; 0 otherwise).
    pub cells: usize,
    /// NeXtVLAD's groups and expansion (8 and 2 for the other kinds, unused).
    pub groups: usize,
    pub expansion: usize,
    pub output: usize,
}

pub struct ResolvedHidden {
    pub size: usize,
    /// Fan used by the weight initialisation, N(0, 1/sqrt(fan)): the first (video)
    /// stream's cluster count in the reference, the input size when it has none (the
    /// concatenated features for video-level input).
    pub fan: usize,
    pub batch_norm: bool,
    pub relu6: bool,
    pub span: Span,
}

#[derive(Clone, Copy)]
pub enum ResolvedClassifier {
    Moe { experts: usize, l2: f64 },
    Logistic { l2: f64 },
}

impl ResolvedClassifier {
    pub fn l2(self) -> f64 {
        match self {
            ResolvedClassifier::Moe { l2, .. } | ResolvedClassifier::Logistic { l2 } => l2,
        }
    }
}

/// Checks the spec and resolves its sizes; every problem found lands in `errors`.
pub fn validate(spec: &Spec, errors: &mut Errors) -> Option<Model> {
    let before = errors.len();
    let call_site = Span::call_site();

    let video_level = spec.input.as_ref().is_some_and(|i| i.value.video_level);
    let frames = if video_level {
        // One vector per video (the starter code's video-level models): nothing to pool.
        if let Some(f) = &spec.frames {
            errors.push(syn::Error::new(
                f.key.span(),
                "`input = video_level` reads one vector per video (`FRAMES` is 1): remove `frames`",
            ));
        }
        if let Some(f) = &spec.fusion {
            errors.push(syn::Error::new(
                f.key.span(),
                "`input = video_level` has no frames to pool: remove `fusion` (the streams are concatenated)",
            ));
        }
        Some(1)
    } else {
        required(&spec.frames, "frames", "the number of frames sampled per video, e.g. `frames = 300`", errors)
            .and_then(|s| size(&s.value, "frames", MAX_DIM, errors))
    };
    let classes = required(&spec.classes, "classes", "the number of classes, e.g. `classes = 3862`", errors)
        .and_then(|s| size(&s.value, "classes", MAX_CLASSES, errors));
    let streams = required(
        &spec.streams,
        "streams",
        "the input streams in channel order, e.g. `streams = [rgb(features = 1024, pooling = netvlad(clusters = 256)), audio(...)]`",
        errors,
    );
    let classifier = required(&spec.classifier, "classifier", "one of `moe(experts = 2)`, `logistic`", errors)
        .and_then(|c| classifier(&c.value, errors));

    let early = match spec.fusion.as_ref().map(|f| &f.value).filter(|_| !video_level) {
        Some(Fusion::Early { kw, pooling }) => {
            if pooling.is_none() {
                errors.missing(syn::Error::new(
                    *kw,
                    "`fusion = early` needs the pooling of the concatenated streams: `early(pooling = netvlad(clusters = 256))`",
                ));
            }
            Some(pooling.as_ref())
        }
        Some(Fusion::Late) | None => None,
    };

    // Streams: unique, unreserved names; sizes; pooling where the fusion wants it.
    let mut resolved = Vec::new();
    let mut start = 0usize;
    let mut streams_ok = true;
    if let Some(streams) = streams {
        if streams.value.is_empty() {
            errors.push(syn::Error::new(streams.key.span(), "`streams` needs at least one stream"));
            streams_ok = false;
        }
        for (i, stream) in streams.value.iter().enumerate() {
            let pooled_by = if video_level {
                PooledBy::Nothing
            } else if early.is_some() {
                PooledBy::EarlyFusion
            } else {
                PooledBy::Stream
            };
            match resolve_stream(stream, &streams.value[..i], pooled_by, start, errors) {
                Some(s) => {
                    start += s.features;
                    resolved.push(s);
                }
                None => streams_ok = false,
            }
        }
    } else {
        streams_ok = false;
    }
    let features = start;
    if streams_ok && features as u64 > MAX_DIM {
        let span = spec.streams.as_ref().map_or(call_site, |s| s.key.span());
        errors.push(syn::Error::new(
            span,
            format!("the streams add up to {features} features; at most {MAX_DIM} are supported"),
        ));
        streams_ok = false;
    }

    // Pooled size.
    let early = match early {
        Some(Some(p)) if streams_ok => pooling(&p.value, features, errors),
        Some(Some(p)) => {
            // Still check the pooling's own arguments.
            let _ = pooling(&p.value, 1, errors);
            None
        }
        _ => None,
    };
    let pooled = if let Some(p) = &early {
        Some(p.output)
    } else if video_level {
        streams_ok.then_some(features)
    } else if streams_ok && spec.fusion.as_ref().map_or(true, |f| matches!(f.value, Fusion::Late)) {
        let mut total = 0u64;
        for s in &resolved {
            if let Some(p) = &s.pooling {
                total += p.output as u64;
            }
        }
        if total > MAX_ELEMENTS {
            errors.push(syn::Error::new(
                spec.streams.as_ref().map_or(call_site, |s| s.key.span()),
                format!("the pooled streams add up to {total} values; at most {MAX_ELEMENTS} are supported"),
            ));
            None
        } else {
            Some(total as usize)
        }
    } else {
        None
    };

    // Hidden layer.
    let mut hidden = None;
    if let Some(h) = &spec.hidden {
        match &h.value.size {
            None => errors.missing(syn::Error::new(h.value.span, "`fc` needs a `size`: `fc(size = 1024)`")),
            Some(s) => {
                if let Some(size) = size(s, "hidden", MAX_DIM, errors) {
                    let fan = resolved
                        .first()
                        .and_then(|s| s.pooling.as_ref())
                        .or(early.as_ref())
                        .map(|p| if p.clusters > 0 { p.clusters } else { p.input })
                        .unwrap_or(features.max(1));
                    if let Some(pooled) = pooled {
                        check_elements(pooled as u64 * size as u64, s.span(), "the hidden layer's weight", errors);
                    }
                    hidden = Some(ResolvedHidden {
                        size,
                        fan,
                        batch_norm: h.value.batch_norm.as_ref().is_some_and(|b| b.value.value),
                        relu6: h.value.relu6.as_ref().is_some_and(|b| b.value.value),
                        span: h.value.span,
                    });
                }
            }
        }
    }
    let representation = match (&spec.hidden, &hidden) {
        (Some(_), Some(h)) => Some(h.size),
        (Some(_), None) => None,
        (None, _) => pooled,
    };

    // Gate after pooling.
    let (gate, gate_span) = spec
        .after_pooling
        .as_ref()
        .map_or((GateKind::None, call_site), |g| (g.value.kind, g.value.span));
    if let (Some(n), true) = (representation, gate != GateKind::None) {
        let weights = if gate == GateKind::Glu { 2 } else { 1 };
        check_elements(
            weights * n as u64 * n as u64,
            gate_span,
            &format!("gating {n} values (add a `hidden` layer to reduce them)"),
            errors,
        );
    }

    // Classifier weights.
    if let (Some(i), Some(v), Some(c)) = (representation, classes, classifier) {
        let per_class = match c {
            ResolvedClassifier::Moe { experts, .. } => 2 * experts as u64 + 1,
            ResolvedClassifier::Logistic { .. } => 1,
        };
        let span = spec.classifier.as_ref().map_or(call_site, |c| c.key.span());
        check_elements(i as u64 * v as u64 * per_class, span, "the classifier's weights", errors);
    }

    // Gate after the classifier.
    let (output_gating, output_gate_span) = spec
        .after_classifier
        .as_ref()
        .map_or((false, call_site), |g| (g.value.gating, g.value.span));
    if let (Some(v), true) = (classes, output_gating) {
        check_elements(v as u64 * v as u64, output_gate_span, "probability gating", errors);
    }

    if errors.len() > before {
        return None;
    }
    let (frames, classes, classifier, pooled, representation) =
        (frames?, classes?, classifier?, pooled?, representation?);
    Some(Model {
        video_level,
        frames,
        features,
        streams: resolved,
        early,
        pooled,
        hidden,
        representation,
        gate,
        gate_span,
        classifier,
        classifier_span: spec.classifier.as_ref().map_or(call_site, |c| c.key.span()),
        output_gating,
        output_gate_span,
        classes,
        classes_span: spec.classes.as_ref().map_or(call_site, |c| c.value.span()),
        frames_span: spec.frames.as_ref().map_or(call_site, |c| c.value.span()),
    })
}

/// Reports a missing required key on the attribute itself.
fn required<'a, T>(
    slot: &'a Option<Keyed<T>>,
    key: &str,
    what: &str,
    errors: &mut Errors,
) -> Option<&'a Keyed<T>> {
    if slot.is_none() {
        errors.missing(syn::Error::new(
            Span::call_site(),
            format!("missing required key `{key}`: {what}"),
        ));
    }
    slot.as_ref()
}

/// A size in `1..=max`, reported on its literal otherwise.
fn size(s: &Size, what: &str, max: u64, errors: &mut Errors) -> Option<usize> {
    match s.value {
        Some(0) => {
            errors.push(syn::Error::new(s.span(), format!("`{what}` must be at least 1")));
            None
        }
        Some(v) if v <= max => usize::try_from(v).ok(),
        _ => {
            errors.push(syn::Error::new(
                s.span(),
                format!("`{what}` = {} is too large: at most {max} is supported", s.lit),
            ));
            None
        }
    }
}

fn check_elements(n: u64, span: Span, what: &str, errors: &mut Errors) {
    if n > MAX_ELEMENTS {
        errors.push(syn::Error::new(
            span,
            format!("{what} would need {n} parameters in one tensor; at most {MAX_ELEMENTS} are supported"),
        ));
    }
}

/// Classifier L2 coefficient when the spec gives none (the reference code's default).
pub const DEFAULT_L2: f64 = 1e-8;

fn classifier(c: &Classifier, errors: &mut Errors) -> Option<ResolvedClassifier> {
    let before = errors.len();
    let kw = match c.kind {
        ClassifierKind::Moe => "moe",
        ClassifierKind::Logistic => "logistic",
    };
    let l2 = match &c.l2 {
        None => DEFAULT_L2,
        Some(l2) => match l2.value.value {
            Some(v) if v.is_finite() && v >= 0.0 => v,
            _ => {
                errors.push(syn::Error::new(l2.value.lit.span(), "`l2` must be a finite coefficient >= 0, e.g. `l2 = 1e-6`"));
                DEFAULT_L2
            }
        },
    };
    let experts = match (c.kind, &c.experts) {
        (ClassifierKind::Moe, None) => {
            errors.missing(syn::Error::new(c.span, "`moe` needs its number of experts: `moe(experts = 2)`"));
            None
        }
        (ClassifierKind::Moe, Some(e)) => size(&e.value, "experts", MAX_EXPERTS, errors),
        (ClassifierKind::Logistic, Some(e)) => {
            errors.push(syn::Error::new(e.key.span(), format!("`{kw}` has no experts")));
            None
        }
        (ClassifierKind::Logistic, None) => Some(0),
    };
    if errors.len() > before {
        return None;
    }
    let experts = experts?;
    Some(match c.kind {
        ClassifierKind::Moe => ResolvedClassifier::Moe { experts, l2 },
        ClassifierKind::Logistic => ResolvedClassifier::Logistic { l2 },
    })
}

/// What pools a stream's frames.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PooledBy {
    /// Its own `pooling` (late fusion).
    Stream,
    /// The pooling of `fusion = early(...)`.
    EarlyFusion,
    /// Nothing: `input = video_level` has one vector per video.
    Nothing,
}

fn resolve_stream(
    stream: &Stream,
    earlier: &[Stream],
    pooled_by: PooledBy,
    start: usize,
    errors: &mut Errors,
) -> Option<ResolvedStream> {
    let before = errors.len();
    let name = &stream.name;
    if earlier.iter().any(|s| s.name == *name) {
        errors.push(syn::Error::new(name.span(), format!("duplicate stream `{name}`: stream names must be unique")));
    }
    let plain = name.to_string();
    let plain = plain.strip_prefix("r#").unwrap_or(&plain);
    if RESERVED.contains(&plain) {
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "`{name}` names one of the model's own layers; pick another stream name (reserved: {})",
                RESERVED.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let features = match &stream.features {
        None => {
            errors.missing(syn::Error::new(
                name.span(),
                format!("stream `{name}` needs its feature size: `{name}(features = 1024, ...)`"),
            ));
            None
        }
        Some(f) => size(&f.value, "features", MAX_DIM, errors).map(|n| (n, f.value.span())),
    };
    let pooling = match (&stream.pooling, pooled_by != PooledBy::Stream) {
        (Some(p), true) if pooled_by == PooledBy::Nothing => {
            errors.push(syn::Error::new(
                p.key.span(),
                "with `input = video_level` each stream is one vector per video, not pooled: remove `pooling`",
            ));
            None
        }
        (Some(p), true) => {
            errors.push(syn::Error::new(
                p.key.span(),
                "with `fusion = early` the streams are pooled together: give the pooling to `fusion = early(pooling = ...)`",
            ));
            None
        }
        (None, false) => {
            errors.missing(syn::Error::new(
                name.span(),
                format!("stream `{name}` needs a pooling: `{name}(features = .., pooling = netvlad(clusters = 64))`"),
            ));
            None
        }
        (Some(p), false) if p.value.kind.is_recurrent() => {
            let kw = p.value.kind.keyword();
            errors.push(syn::Error::new(
                p.value.span,
                format!("`{kw}` reads the concatenated frames (paper, section 2): use `fusion = early(pooling = {kw}(size = ..))`"),
            ));
            None
        }
        (Some(p), false) => pooling(&p.value, features.map_or(1, |f| f.0), errors),
        (None, true) => None,
    };
    if errors.len() > before {
        return None;
    }
    let (features, features_span) = features?;
    Some(ResolvedStream { name: name.clone(), start, features, features_span, pooling })
}

/// Checks a pooling's arguments and computes its output size for `input` features.
fn pooling(p: &Pooling, input: usize, errors: &mut Errors) -> Option<ResolvedPooling> {
    let kw = p.kind.keyword();
    let clusters = match (&p.clusters, p.kind.needs_clusters()) {
        (None, true) => {
            errors.missing(syn::Error::new(p.span, format!("`{kw}` needs a cluster count: `{kw}(clusters = 64)`")));
            return None;
        }
        (Some(c), false) => {
            errors.push(syn::Error::new(c.key.span(), format!("`{kw}` pooling has no clusters")));
            return None;
        }
        (Some(c), true) => size(&c.value, "clusters", MAX_DIM, errors)?,
        (None, false) => 0,
    };
    // Recurrent kinds: cells per layer.
    let cells = match (&p.size, p.kind.is_recurrent()) {
        (None, true) => {
            errors.missing(syn::Error::new(p.span, format!("`{kw}` needs the cells per layer: `{kw}(size = 1024)`")));
            return None;
        }
        (Some(s), false) => {
            errors.push(syn::Error::new(s.key.span(), format!("`{kw}` pooling has no `size`")));
            return None;
        }
        (Some(s), true) => size(&s.value, "size", MAX_DIM, errors)?,
        (None, false) => 0,
    };
    // NeXtVLAD: groups (default 8) and expansion (default 2), as in Lin et al. 2018.
    let mut extra = |slot: &Option<Keyed<Size>>, what: &str, default: usize| match slot {
        Some(v) if p.kind != PoolingKind::NeXtVlad => {
            errors.push(syn::Error::new(v.key.span(), format!("`{kw}` pooling has no `{what}`")));
            None
        }
        Some(v) => size(&v.value, what, MAX_DIM, errors),
        None => Some(default),
    };
    let (groups, expansion) = (extra(&p.groups, "groups", 8)?, extra(&p.expansion, "expansion", 2)?);
    if p.kind == PoolingKind::NeXtVlad && (input * expansion) % groups != 0 {
        let span = p.groups.as_ref().map_or(p.span, |g| g.value.span());
        errors.push(syn::Error::new(
            span,
            format!("`nextvlad` splits {input} x {expansion} expanded features into {groups} groups: they must divide evenly"),
        ));
        return None;
    }
    let output = match p.kind {
        PoolingKind::Lstm => 4 * cells as u64,
        PoolingKind::Gru => 2 * cells as u64,
        PoolingKind::NeXtVlad => clusters as u64 * (input * expansion / groups) as u64,
        kind => pooled_size(kind, input as u64, clusters as u64),
    };
    if output > MAX_ELEMENTS {
        let span = p.clusters.as_ref().map_or(p.span, |c| c.value.span());
        errors.push(syn::Error::new(
            span,
            format!("`{kw}` over {input} features with {clusters} clusters would output {output} values; at most {MAX_ELEMENTS} are supported"),
        ));
        return None;
    }
    Some(ResolvedPooling {
        kind: p.kind,
        span: p.span,
        input,
        clusters,
        cells,
        groups,
        expansion,
        output: output as usize,
    })
}

/// Output size of a pooling (paper, section 2).
pub fn pooled_size(kind: PoolingKind, features: u64, clusters: u64) -> u64 {
    match kind {
        PoolingKind::NetVlad | PoolingKind::NetRvlad => clusters * features,
        PoolingKind::NetFv => 2 * clusters * features,
        PoolingKind::SoftBow => clusters,
        PoolingKind::Average | PoolingKind::Max => features,
        // Sizes set by their own keys (see `pooling`).
        PoolingKind::Lstm | PoolingKind::Gru | PoolingKind::NeXtVlad => 0,
    }
}
