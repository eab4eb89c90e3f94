//! Validation of a parsed spec, and the sizes the macro computes.
//!
//! `validate` checks every rule it can and reports every violation (spanned on the
//! offending token) before giving up, and on success returns the resolved [`Model`]:
//! plain numbers that `expand.rs` turns into const generics. Each part of the spec has
//! its `check_*` function; the pooling kinds' rules come from the table (`pooling.rs`).

use crate::ast::{Classifier, ClassifierKind, Fusion, GateKind, Keyed, Pooling, Size, Spec, Stream};
use crate::errors::Errors;
use crate::field::Field;
use crate::pooling::{ArgKey, Dims, PoolingDef};
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

/// A validated model: every size resolved.
pub struct Model {
    /// `input = video_level`: one vector per video, no pooling, `frames` is 1.
    pub video_level: bool,
    /// `input = raw_frames`: the frames go to pooling as they are (no L2 normalisation,
    /// no input batch norm).
    pub raw_frames: bool,
    /// Frames sampled per video.
    pub frames: usize,
    /// Input feature size: the sum of the streams' features.
    pub features: usize,
    pub streams: Vec<ResolvedStream>,
    /// `Some` for early fusion: one pooling over all the features.
    pub early: Option<ResolvedPooling>,
    /// Size of the pooled representation (the concatenation, for late fusion).
    pub pooled: usize,
    /// `frame_mask = true`: frames read in temporal order, those past each video's length
    /// masked out of the poolings that take a mask.
    pub frame_mask: bool,
    /// `dropout = p`: the rate and its parts per million (the layer's const generic).
    pub dropout: Option<(f64, usize)>,
    pub hidden: Option<ResolvedHidden>,
    /// Size of the representation the gate and the classifier see.
    pub representation: usize,
    pub gate: GateKind,
    pub gate_span: Span,
    /// SE Context Gating's reduction `r` (`GateKind::SeContextGating` only).
    pub gate_reduction: Option<usize>,
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
    pub kind: &'static PoolingDef,
    /// The kind's keyword.
    pub span: Span,
    /// Feature size pooled and the arguments (defaults applied).
    pub dims: Dims,
    pub output: usize,
}

impl ResolvedPooling {
    /// The value of an argument the kind takes (`None` for the others).
    pub fn arg(&self, key: ArgKey) -> Option<usize> {
        self.kind.takes(key).then(|| self.dims.get(key))
    }
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

impl Model {
    /// Whether the built type has this field.
    pub fn has(&self, field: Field) -> bool {
        match field {
            Field::Input | Field::Classifier => true,
            Field::Pooling => self.early.is_some(),
            Field::Dropout => self.dropout.is_some(),
            Field::Hidden => self.hidden.is_some(),
            Field::Gating => self.gate != GateKind::None,
            Field::OutputGating => self.output_gating,
        }
    }
}

impl ResolvedClassifier {
    pub fn l2(self) -> f64 {
        match self {
            ResolvedClassifier::Moe { l2, .. } | ResolvedClassifier::Logistic { l2 } => l2,
        }
    }
}

/// Checks the spec and resolves its sizes; every problem found lands in `errors`.
///
/// The checks run in the spec's reading order (input and sizes, streams, pooling, head),
/// which is the order of the reported errors.
pub fn validate(spec: &Spec, errors: &mut Errors) -> Option<Model> {
    let before = errors.len();
    let call_site = Span::call_site();
    let video_level = spec.input.as_ref().is_some_and(|i| i.value.video_level);
    let raw_frames = spec.input.as_ref().is_some_and(|i| i.value.raw_frames);
    let frames = check_frames(spec, video_level, errors);
    let classes = required(&spec.classes, "classes", "the number of classes, e.g. `classes = 3862`", errors)
        .and_then(|s| size(&s.value, "classes", MAX_CLASSES, errors));
    let streams = required(
        &spec.streams,
        "streams",
        "the input streams in channel order, e.g. `streams = [rgb(features = 1024, pooling = netvlad(clusters = 256)), audio(...)]`",
        errors,
    );
    let classifier =
        required(&spec.classifier, "classifier", "one of `moe(experts = 2)`, `logistic`", errors)
            .and_then(|c| check_classifier(&c.value, errors));
    let early = check_fusion(spec, video_level, errors);
    let pooled_by = if video_level {
        PooledBy::Nothing
    } else if early.is_some() {
        PooledBy::EarlyFusion
    } else {
        PooledBy::Stream
    };
    let (resolved, features) = check_streams(spec, streams, pooled_by, errors);
    let early = match early {
        Some(Some(p)) => check_pooling(&p.value, features.ok(), errors),
        _ => None,
    };
    let pooled = check_pooled(spec, video_level, early.as_ref(), &resolved, features.ok(), errors);
    let features = features.unwrap_or_else(|partial| partial);
    let frame_mask = check_frame_mask(spec, video_level, early.as_ref(), &resolved, errors);
    let dropout = check_dropout(spec, errors);
    let hidden = check_hidden(spec, &resolved, early.as_ref(), features, pooled, errors);
    let representation = match (&spec.hidden, &hidden) {
        (Some(_), Some(h)) => Some(h.size),
        (Some(_), None) => None,
        (None, _) => pooled,
    };
    let (gate, gate_span, gate_reduction) = check_gate(spec, representation, errors);
    check_classifier_weights(spec, representation, classes, classifier, errors);
    let (output_gating, output_gate_span) = check_output_gate(spec, classes, errors);

    if errors.len() > before {
        return None;
    }
    let (frames, classes, classifier, pooled, representation) =
        (frames?, classes?, classifier?, pooled?, representation?);
    Some(Model {
        video_level,
        raw_frames,
        frames,
        features,
        streams: resolved,
        early,
        pooled,
        frame_mask,
        dropout,
        hidden,
        representation,
        gate,
        gate_span,
        gate_reduction,
        classifier,
        classifier_span: spec.classifier.as_ref().map_or(call_site, |c| c.key.span()),
        output_gating,
        output_gate_span,
        classes,
        classes_span: spec.classes.as_ref().map_or(call_site, |c| c.value.span()),
        frames_span: spec.frames.as_ref().map_or(call_site, |c| c.value.span()),
    })
}

/// The sizes of a spec that may be invalid, as far as they are known, without reporting
/// anything: what the stubs emitted on error use, so that the user's code that names
/// the model's types still checks against the right sizes.
pub struct Outline {
    pub frames: Option<usize>,
    pub features: Option<usize>,
    pub classes: Option<usize>,
}

pub fn outline(spec: &Spec) -> Outline {
    let quiet =
        |s: &Size, max: u64| s.value.filter(|v| (1..=max).contains(v)).and_then(|v| usize::try_from(v).ok());
    let video_level = spec.input.as_ref().is_some_and(|i| i.value.video_level);
    let frames =
        if video_level { Some(1) } else { spec.frames.as_ref().and_then(|f| quiet(&f.value, MAX_DIM)) };
    let features = spec.streams.as_ref().filter(|s| !s.value.is_empty()).and_then(|streams| {
        streams.value.iter().map(|s| s.features.as_ref().and_then(|f| quiet(&f.value, MAX_DIM))).sum()
    });
    let classes = spec.classes.as_ref().and_then(|c| quiet(&c.value, MAX_CLASSES));
    Outline { frames, features: features.filter(|f| *f as u64 <= MAX_DIM), classes }
}

/// `frames`, or its absence under `input = video_level` (and no `fusion` either).
fn check_frames(spec: &Spec, video_level: bool, errors: &mut Errors) -> Option<usize> {
    if !video_level {
        return required(
            &spec.frames,
            "frames",
            "the number of frames sampled per video, e.g. `frames = 300`",
            errors,
        )
        .and_then(|s| size(&s.value, "frames", MAX_DIM, errors));
    }
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
}

/// `Some(pooling)` under early fusion (`Some(None)` when its pooling is missing).
fn check_fusion<'a>(
    spec: &'a Spec,
    video_level: bool,
    errors: &mut Errors,
) -> Option<Option<&'a Keyed<Pooling>>> {
    match spec.fusion.as_ref().map(|f| &f.value).filter(|_| !video_level) {
        Some(Fusion::Early { kw, pooling }) => {
            if pooling.is_none() {
                errors.missing(syn::Error::new(
                    *kw,
                    "`fusion = early` needs the pooling of the concatenated streams: `early(pooling = netvlad(clusters = 256))`",
                ));
            }
            Some(pooling.as_deref())
        }
        Some(Fusion::Late) | None => None,
    }
}

/// The streams, each checked (`check_stream`), and their total feature size: `Ok` when
/// every stream is valid and the total within the limit, `Err(partial sum)` otherwise.
fn check_streams(
    spec: &Spec,
    streams: Option<&Keyed<Vec<Stream>>>,
    pooled_by: PooledBy,
    errors: &mut Errors,
) -> (Vec<ResolvedStream>, Result<usize, usize>) {
    let mut resolved = Vec::new();
    let mut start = 0usize;
    let Some(streams) = streams else {
        return (resolved, Err(start));
    };
    let mut ok = true;
    if streams.value.is_empty() {
        errors.push(syn::Error::new(streams.key.span(), "`streams` needs at least one stream"));
        ok = false;
    }
    for (i, stream) in streams.value.iter().enumerate() {
        match check_stream(stream, &streams.value[..i], pooled_by, start, errors) {
            Some(s) => {
                start += s.features;
                resolved.push(s);
            }
            None => ok = false,
        }
    }
    if ok && start as u64 > MAX_DIM {
        let span = spec.streams.as_ref().map_or(Span::call_site(), |s| s.key.span());
        errors.push(syn::Error::new(
            span,
            format!("the streams add up to {start} features; at most {MAX_DIM} are supported"),
        ));
        ok = false;
    }
    (resolved, if ok { Ok(start) } else { Err(start) })
}

/// The pooled representation's size: the early pooling's output, the streams' outputs
/// concatenated (late fusion), or the streams' features (video-level input).
fn check_pooled(
    spec: &Spec,
    video_level: bool,
    early: Option<&ResolvedPooling>,
    streams: &[ResolvedStream],
    features: Option<usize>,
    errors: &mut Errors,
) -> Option<usize> {
    if let Some(p) = early {
        return Some(p.output);
    }
    if video_level {
        return features;
    }
    let late = spec.fusion.as_ref().is_none_or(|f| matches!(f.value, Fusion::Late));
    if features.is_none() || !late {
        return None;
    }
    let total: u64 = streams.iter().filter_map(|s| s.pooling.as_ref()).map(|p| p.output as u64).sum();
    if total > MAX_ELEMENTS {
        errors.push(syn::Error::new(
            spec.streams.as_ref().map_or(Span::call_site(), |s| s.key.span()),
            format!("the pooled streams add up to {total} values; at most {MAX_ELEMENTS} are supported"),
        ));
        return None;
    }
    Some(total as usize)
}

/// The hidden layer: its size, and its weight against the element limit.
fn check_hidden(
    spec: &Spec,
    streams: &[ResolvedStream],
    early: Option<&ResolvedPooling>,
    features: usize,
    pooled: Option<usize>,
    errors: &mut Errors,
) -> Option<ResolvedHidden> {
    let h = &spec.hidden.as_ref()?.value;
    let Some(s) = &h.size else {
        errors.missing(syn::Error::new(h.span, "`fc` needs a `size`: `fc(size = 1024)`"));
        return None;
    };
    let size = size(s, "hidden", MAX_DIM, errors)?;
    let fan = streams
        .first()
        .and_then(|s| s.pooling.as_ref())
        .or(early)
        .map(|p| if p.kind.takes(ArgKey::Clusters) { p.dims.get(ArgKey::Clusters) } else { p.dims.input })
        .unwrap_or(features.max(1));
    if let Some(pooled) = pooled {
        check_elements(pooled as u64 * size as u64, s.span(), "the hidden layer's weight", errors);
    }
    Some(ResolvedHidden {
        size,
        fan,
        batch_norm: h.batch_norm.as_ref().is_some_and(|b| b.value.value),
        relu6: h.relu6.as_ref().is_some_and(|b| b.value.value),
        span: h.span,
    })
}

/// `frame_mask`: only where a pooling takes the mask, and not on video-level input.
fn check_frame_mask(
    spec: &Spec,
    video_level: bool,
    early: Option<&ResolvedPooling>,
    streams: &[ResolvedStream],
    errors: &mut Errors,
) -> bool {
    let Some(mask) = spec.frame_mask.as_ref().filter(|m| m.value.value) else {
        return false;
    };
    let span = mask.key.span();
    if video_level {
        errors
            .push(syn::Error::new(span, "`input = video_level` has no frames to mask: remove `frame_mask`"));
        return false;
    }
    let mut poolings = early.into_iter().chain(streams.iter().filter_map(|s| s.pooling.as_ref()));
    // Poolings not resolved (errors already reported) say nothing either way.
    let known = early.is_some() || !streams.is_empty();
    if known && !poolings.any(|p| p.kind.masks) {
        let maskable: Vec<String> =
            crate::pooling::POOLINGS.iter().filter(|k| k.masks).map(|k| format!("`{}`", k.keyword)).collect();
        errors.push(syn::Error::new(
            span,
            format!(
                "`frame_mask` masks the frames past each video's length out of the poolings that take a mask ({}); this model has none (`lstm` and `gru` stop at each video's length without it)",
                maskable.join(", ")
            ),
        ));
        return false;
    }
    true
}

/// `dropout = p`: a rate in `(0, 1)`, with its parts per million.
fn check_dropout(spec: &Spec, errors: &mut Errors) -> Option<(f64, usize)> {
    let d = spec.dropout.as_ref()?;
    let scale = 1e6;
    match d.value.value {
        Some(p) if p > 0.0 && p < 1.0 && (p * scale).round() >= 1.0 && (p * scale).round() < scale => {
            Some((p, (p * scale).round() as usize))
        }
        _ => {
            errors.push(syn::Error::new(
                d.value.lit.span(),
                "`dropout` must be a rate above 0 and below 1 (at least 1e-6 from both), e.g. `dropout = 0.5`",
            ));
            None
        }
    }
}

/// The gate after pooling, its reduction (SE Context Gating), and its weights against the
/// element limit.
fn check_gate(
    spec: &Spec,
    representation: Option<usize>,
    errors: &mut Errors,
) -> (GateKind, Span, Option<usize>) {
    let Some(g) = spec.after_pooling.as_ref().map(|g| &g.value) else {
        return (GateKind::None, Span::call_site(), None);
    };
    let (gate, span) = (g.kind, g.span);
    let reduction = if gate == GateKind::SeContextGating {
        match &g.reduction {
            None => {
                errors.missing(syn::Error::new(
                    span,
                    "`context_gating(...)` needs its bottleneck reduction: `context_gating(reduction = 8)`",
                ));
                None
            }
            Some(r) => size(&r.value, "reduction", MAX_DIM, errors).and_then(|r_value| match representation {
                Some(n) if n % r_value != 0 => {
                    errors.push(syn::Error::new(
                        r.value.span(),
                        format!("`reduction` = {r_value} must divide the {n} gated values evenly (the bottleneck has n / r)"),
                    ));
                    None
                }
                _ => Some(r_value),
            }),
        }
    } else {
        None
    };
    if let (Some(n), true) = (representation, gate != GateKind::None) {
        let n = n as u64;
        let weights = match (gate, reduction) {
            (GateKind::Glu, _) => 2 * n * n,
            (GateKind::SeContextGating, Some(r)) => n * (n / r as u64),
            (GateKind::SeContextGating, None) => 0,
            _ => n * n,
        };
        check_elements(
            weights,
            span,
            &format!("gating {n} values (add a `hidden` layer to reduce them)"),
            errors,
        );
    }
    (gate, span, reduction)
}

/// The classifier's weights against the element limit.
fn check_classifier_weights(
    spec: &Spec,
    representation: Option<usize>,
    classes: Option<usize>,
    classifier: Option<ResolvedClassifier>,
    errors: &mut Errors,
) {
    if let (Some(i), Some(v), Some(c)) = (representation, classes, classifier) {
        let per_class = match c {
            ResolvedClassifier::Moe { experts, .. } => 2 * experts as u64 + 1,
            ResolvedClassifier::Logistic { .. } => 1,
        };
        let span = spec.classifier.as_ref().map_or(Span::call_site(), |c| c.key.span());
        check_elements(i as u64 * v as u64 * per_class, span, "the classifier's weights", errors);
    }
}

/// Probability gating after the classifier, and its weight against the element limit.
fn check_output_gate(spec: &Spec, classes: Option<usize>, errors: &mut Errors) -> (bool, Span) {
    let (gating, span) =
        spec.after_classifier.as_ref().map_or((false, Span::call_site()), |g| (g.value.gating, g.value.span));
    if let (Some(v), true) = (classes, gating) {
        check_elements(v as u64 * v as u64, span, "probability gating", errors);
    }
    (gating, span)
}

/// Reports a missing required key on the attribute itself.
fn required<'a, T>(
    slot: &'a Option<Keyed<T>>,
    key: &str,
    what: &str,
    errors: &mut Errors,
) -> Option<&'a Keyed<T>> {
    if slot.is_none() {
        errors.missing(syn::Error::new(Span::call_site(), format!("missing required key `{key}`: {what}")));
    }
    slot.as_ref()
}

/// A size in `1..=max`, reported on its literal otherwise (negative, zero, too large).
fn size(s: &Size, what: &str, max: u64, errors: &mut Errors) -> Option<usize> {
    if s.lit.base10_digits().starts_with('-') && s.value != Some(0) {
        errors.push(syn::Error::new(
            s.span(),
            format!("`{what}` = {} is negative: it must be at least 1", s.lit),
        ));
        return None;
    }
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

fn check_classifier(c: &Classifier, errors: &mut Errors) -> Option<ResolvedClassifier> {
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
                errors.push(syn::Error::new(
                    l2.value.lit.span(),
                    "`l2` must be a finite coefficient >= 0, e.g. `l2 = 1e-6`",
                ));
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

/// One stream: its name, its feature size, its pooling where the fusion wants one.
fn check_stream(
    stream: &Stream,
    earlier: &[Stream],
    pooled_by: PooledBy,
    start: usize,
    errors: &mut Errors,
) -> Option<ResolvedStream> {
    let before = errors.len();
    let name = &stream.name;
    check_stream_name(name, earlier, errors);
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
    let pooling = check_stream_pooling(stream, pooled_by, features.map(|f| f.0), errors);
    if errors.len() > before {
        return None;
    }
    let (features, features_span) = features?;
    Some(ResolvedStream { name: name.clone(), start, features, features_span, pooling })
}

/// A stream's name: unique, and not one of the model's own fields.
fn check_stream_name(name: &Ident, earlier: &[Stream], errors: &mut Errors) {
    if earlier.iter().any(|s| s.name == *name) {
        errors.push(syn::Error::new(
            name.span(),
            format!("duplicate stream `{name}`: stream names must be unique"),
        ));
    }
    let plain = name.to_string();
    let plain = plain.strip_prefix("r#").unwrap_or(&plain);
    if Field::is_reserved(plain) {
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "`{name}` names one of the model's own layers; pick another stream name (reserved: {})",
                Field::ALL.iter().map(|f| format!("`{}`", f.name())).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
}

/// A stream's own pooling: present under late fusion only, of a kind late fusion allows.
fn check_stream_pooling(
    stream: &Stream,
    pooled_by: PooledBy,
    features: Option<usize>,
    errors: &mut Errors,
) -> Option<ResolvedPooling> {
    let name = &stream.name;
    match (&stream.pooling, pooled_by != PooledBy::Stream) {
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
        (Some(p), false) if !p.value.kind.late => {
            let (kw, example) = (p.value.kind.keyword, p.value.kind.example());
            errors.push(syn::Error::new(
                p.value.span,
                format!("`{kw}` reads the concatenated frames (paper, section 2): use `fusion = early(pooling = {example})`"),
            ));
            None
        }
        (Some(p), false) => check_pooling(&p.value, features, errors),
        (None, true) => None,
    }
}

/// Checks a pooling's arguments against its kind's entry in the table and, when the
/// features pooled are known (`input`), computes its output size.
fn check_pooling(p: &Pooling, input: Option<usize>, errors: &mut Errors) -> Option<ResolvedPooling> {
    let kind = p.kind;
    let kw = kind.keyword;
    let mut dims = Dims::new(input.unwrap_or(0));
    for key in ArgKey::ALL {
        let value = match (p.arg(key), kind.arg(key)) {
            (None, None) => 0,
            (None, Some(arg)) => match arg.default {
                Some(default) => default,
                None => {
                    errors.missing(syn::Error::new(p.span, key.missing(kw)));
                    return None;
                }
            },
            (Some(given), None) => {
                errors.push(syn::Error::new(given.key.span(), key.unexpected(kw)));
                return None;
            }
            (Some(given), Some(_)) => size(&given.value, key.name(), MAX_DIM, errors)?,
        };
        dims.set(key, value);
    }
    let input = input?;
    if let Some((message, key)) = kind.constraint.and_then(|constraint| constraint(&dims)) {
        let span = p.arg(key).map_or(p.span, |a| a.value.span());
        errors.push(syn::Error::new(span, message));
        return None;
    }
    let output = (kind.output)(&dims);
    if output > MAX_ELEMENTS {
        let span = p.arg(ArgKey::Clusters).map_or(p.span, |c| c.value.span());
        let clusters = dims.get(ArgKey::Clusters);
        errors.push(syn::Error::new(
            span,
            format!("`{kw}` over {input} features with {clusters} clusters would output {output} values; at most {MAX_ELEMENTS} are supported"),
        ));
        return None;
    }
    Some(ResolvedPooling { kind, span: p.span, dims, output: output as usize })
}
