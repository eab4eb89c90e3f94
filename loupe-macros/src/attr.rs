//! Parsing of the attribute's arguments into the typed spec of `ast.rs`.
//!
//! Errors do not stop the parse: each key that fails records its error and the parser
//! skips to the next comma at that nesting level, so several mistakes in one spec are
//! all reported (the caller combines them).

use crate::ast::{
    Classifier, ClassifierKind, Coefficient, Fusion, Gate, GateKind, Hidden, Input, Keyed, OutputGate,
    Pooling, Size, Spec, Stream,
};
use crate::kw;
use crate::pooling::{self, ArgKey};
use proc_macro2::{TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{bracketed, parenthesized, token, Ident, Lit, LitBool, LitFloat, LitInt, Token};

pub use crate::errors::Errors;

/// Parses the attribute's arguments. The spec holds whatever parsed; `errors` what did not.
pub fn parse_spec(args: TokenStream, errors: &mut Errors) -> Spec {
    let mut spec = Spec::default();
    let parser = |input: ParseStream| {
        keyed_list(input, errors, |input, errors| top_level_key(input, &mut spec, errors));
        Ok(())
    };
    if let Err(e) = parser.parse2(args) {
        errors.push(e);
    }
    errors.end_parse();
    spec
}

/// Parses `item (, item)* ,?` where each item is parsed by `each`; an item that fails is
/// reported and skipped up to the next comma.
fn keyed_list<F>(input: ParseStream, errors: &mut Errors, mut each: F)
where
    F: FnMut(ParseStream, &mut Errors) -> syn::Result<()>,
{
    while !input.is_empty() {
        if let Err(e) = each(input, errors) {
            errors.push(e);
            skip_to_comma(input);
        }
        if input.is_empty() {
            break;
        }
        if let Err(e) = input.parse::<Token![,]>() {
            errors.push(e);
            skip_to_comma(input);
            let _ = input.parse::<Option<Token![,]>>();
        }
    }
}

/// Skips token trees up to (not including) the next `,` at this level.
fn skip_to_comma(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt {
                if p.as_char() == ',' {
                    return Ok(((), rest));
                }
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

/// Stores a value in its slot, or reports a duplicate key on the second occurrence.
fn set<T>(slot: &mut Option<Keyed<T>>, key: Ident, value: T, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(syn::Error::new(key.span(), format!("duplicate key `{key}`: each key may appear once")));
    } else {
        *slot = Some(Keyed { key, value });
    }
}

/// Parses a keyword token and returns it as an identifier, with its span.
macro_rules! key {
    ($input:expr, $kw:ident) => {{
        let k: kw::$kw = $input.parse()?;
        Ident::new(stringify!($kw), k.span)
    }};
}

fn top_level_key(input: ParseStream, spec: &mut Spec, errors: &mut Errors) -> syn::Result<()> {
    let la = input.lookahead1();
    if la.peek(kw::frames) {
        let key = key!(input, frames);
        let value = eq_then(input, parse_size)?;
        set(&mut spec.frames, key, value, errors);
    } else if la.peek(kw::fusion) {
        let key = key!(input, fusion);
        let value = eq_then(input, |input| parse_fusion(input, errors))?;
        set(&mut spec.fusion, key, value, errors);
    } else if la.peek(kw::streams) {
        let key = key!(input, streams);
        let value = eq_then(input, |input| parse_streams(input, errors))?;
        set(&mut spec.streams, key, value, errors);
    } else if la.peek(kw::hidden) {
        let key = key!(input, hidden);
        let value = eq_then(input, |input| parse_hidden(input, errors))?;
        set(&mut spec.hidden, key, value, errors);
    } else if la.peek(kw::after_pooling) {
        let key = key!(input, after_pooling);
        let value = eq_then(input, |input| parse_gate(input, errors))?;
        set(&mut spec.after_pooling, key, value, errors);
    } else if la.peek(kw::classifier) {
        let key = key!(input, classifier);
        let value = eq_then(input, |input| parse_classifier(input, errors))?;
        set(&mut spec.classifier, key, value, errors);
    } else if la.peek(kw::after_classifier) {
        let key = key!(input, after_classifier);
        let value = eq_then(input, parse_output_gate)?;
        set(&mut spec.after_classifier, key, value, errors);
    } else if la.peek(kw::classes) {
        let key = key!(input, classes);
        let value = eq_then(input, parse_size)?;
        set(&mut spec.classes, key, value, errors);
    } else if la.peek(kw::frame_mask) {
        let key = key!(input, frame_mask);
        let value = eq_then(input, parse_bool)?;
        set(&mut spec.frame_mask, key, value, errors);
    } else if la.peek(kw::dropout) {
        let key = key!(input, dropout);
        let value = eq_then(input, parse_coefficient)?;
        set(&mut spec.dropout, key, value, errors);
    } else if la.peek(kw::input) {
        let key = key!(input, input);
        let value = eq_then(input, parse_input)?;
        set(&mut spec.input, key, value, errors);
    } else {
        return Err(la.error());
    }
    Ok(())
}

/// `= value`.
fn eq_then<T>(input: ParseStream, value: impl FnOnce(ParseStream) -> syn::Result<T>) -> syn::Result<T> {
    input.parse::<Token![=]>()?;
    value(input)
}

fn parse_size(input: ParseStream) -> syn::Result<Size> {
    let la = input.lookahead1();
    if la.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        let value = lit.base10_parse::<u64>().ok();
        Ok(Size { lit, value })
    } else {
        Err(la.error())
    }
}

fn parse_bool(input: ParseStream) -> syn::Result<LitBool> {
    let la = input.lookahead1();
    if la.peek(LitBool) {
        input.parse()
    } else {
        Err(la.error())
    }
}

fn parse_input(input: ParseStream) -> syn::Result<Input> {
    let la = input.lookahead1();
    if la.peek(kw::frames) {
        input.parse::<kw::frames>()?;
        Ok(Input { video_level: false, raw_frames: false })
    } else if la.peek(kw::raw_frames) {
        input.parse::<kw::raw_frames>()?;
        Ok(Input { video_level: false, raw_frames: true })
    } else if la.peek(kw::video_level) {
        input.parse::<kw::video_level>()?;
        Ok(Input { video_level: true, raw_frames: false })
    } else {
        Err(la.error())
    }
}

fn parse_fusion(input: ParseStream, errors: &mut Errors) -> syn::Result<Fusion> {
    let la = input.lookahead1();
    if la.peek(kw::late) {
        input.parse::<kw::late>()?;
        Ok(Fusion::Late)
    } else if la.peek(kw::early) {
        let kw: kw::early = input.parse()?;
        let content;
        parenthesized!(content in input);
        let mut pooling = None;
        keyed_list(&content, errors, |input, errors| {
            let la = input.lookahead1();
            if la.peek(kw::pooling) {
                let key = key!(input, pooling);
                let value = eq_then(input, |input| parse_pooling(input, errors))?;
                set(&mut pooling, key, value, errors);
                Ok(())
            } else {
                Err(la.error())
            }
        });
        Ok(Fusion::Early { kw: kw.span, pooling: pooling.map(Box::new) })
    } else {
        Err(la.error())
    }
}

fn parse_streams(input: ParseStream, errors: &mut Errors) -> syn::Result<Vec<Stream>> {
    let content;
    bracketed!(content in input);
    let mut streams = Vec::new();
    keyed_list(&content, errors, |input, errors| {
        streams.push(parse_stream(input, errors)?);
        Ok(())
    });
    Ok(streams)
}

fn parse_stream(input: ParseStream, errors: &mut Errors) -> syn::Result<Stream> {
    let name: Ident = input.parse()?;
    let content;
    parenthesized!(content in input);
    let mut features = None;
    let mut pooling = None;
    keyed_list(&content, errors, |input, errors| {
        let la = input.lookahead1();
        if la.peek(kw::features) {
            let key = key!(input, features);
            let value = eq_then(input, parse_size)?;
            set(&mut features, key, value, errors);
        } else if la.peek(kw::pooling) {
            let key = key!(input, pooling);
            let value = eq_then(input, |input| parse_pooling(input, errors))?;
            set(&mut pooling, key, value, errors);
        } else {
            return Err(la.error());
        }
        Ok(())
    });
    Ok(Stream { name, features, pooling })
}

/// A kind of the pooling table (`pooling::POOLINGS`, whose order is the order of the
/// "expected one of" list) and its arguments.
pub(crate) fn parse_pooling(input: ParseStream, errors: &mut Errors) -> syn::Result<Pooling> {
    let (kind, keyword) = pooling::parse_kind(input)?;
    let mut args: [Option<Keyed<Size>>; 4] = Default::default();
    if input.peek(token::Paren) {
        let content;
        parenthesized!(content in input);
        keyed_list(&content, errors, |input, errors| {
            let (arg, key) = pooling::parse_one_of(input, &ArgKey::ALL, ArgKey::name)?;
            let value = eq_then(input, parse_size)?;
            set(&mut args[arg.index()], key, value, errors);
            Ok(())
        });
    }
    Ok(Pooling { kind, span: keyword.span(), args })
}

fn parse_hidden(input: ParseStream, errors: &mut Errors) -> syn::Result<Hidden> {
    let la = input.lookahead1();
    if la.peek(LitInt) {
        let size = parse_size(input)?;
        Ok(Hidden { span: size.span(), size: Some(size), batch_norm: None, relu6: None })
    } else if la.peek(kw::fc) {
        let kw: kw::fc = input.parse()?;
        let content;
        parenthesized!(content in input);
        let mut size: Option<Keyed<Size>> = None;
        let mut batch_norm = None;
        let mut relu6 = None;
        keyed_list(&content, errors, |input, errors| {
            let la = input.lookahead1();
            if la.peek(kw::size) {
                let key = key!(input, size);
                let value = eq_then(input, parse_size)?;
                set(&mut size, key, value, errors);
            } else if la.peek(kw::batch_norm) {
                let key = key!(input, batch_norm);
                let value = eq_then(input, parse_bool)?;
                set(&mut batch_norm, key, value, errors);
            } else if la.peek(kw::relu6) {
                let key = key!(input, relu6);
                let value = eq_then(input, parse_bool)?;
                set(&mut relu6, key, value, errors);
            } else {
                return Err(la.error());
            }
            Ok(())
        });
        Ok(Hidden { span: kw.span, size: size.map(|s| s.value), batch_norm, relu6 })
    } else {
        Err(la.error())
    }
}

fn parse_gate(input: ParseStream, errors: &mut Errors) -> syn::Result<Gate> {
    let la = input.lookahead1();
    let (kind, span) = if la.peek(kw::context_gating) {
        let span = input.parse::<kw::context_gating>()?.span;
        if !input.peek(token::Paren) {
            return Ok(Gate { kind: GateKind::ContextGating, span, reduction: None });
        }
        // `context_gating(reduction = r)`: the SE Context Gating of Lin et al. 2018.
        let content;
        parenthesized!(content in input);
        let mut reduction = None;
        keyed_list(&content, errors, |input, errors| {
            let la = input.lookahead1();
            if la.peek(kw::reduction) {
                let key = key!(input, reduction);
                let value = eq_then(input, parse_size)?;
                set(&mut reduction, key, value, errors);
                Ok(())
            } else {
                Err(la.error())
            }
        });
        return Ok(Gate { kind: GateKind::SeContextGating, span, reduction });
    } else if la.peek(kw::biased_context_gating) {
        (GateKind::BiasedContextGating, input.parse::<kw::biased_context_gating>()?.span)
    } else if la.peek(kw::glu) {
        (GateKind::Glu, input.parse::<kw::glu>()?.span)
    } else if la.peek(kw::none) {
        (GateKind::None, input.parse::<kw::none>()?.span)
    } else {
        return Err(la.error());
    };
    let keyword = match kind {
        GateKind::BiasedContextGating => "biased_context_gating",
        GateKind::Glu => "glu",
        _ => "none",
    };
    no_arguments(
        input,
        keyword,
        "`after_pooling` accepts one of: `context_gating`, `context_gating(reduction = r)`, `biased_context_gating`, `glu`, `none`",
    )?;
    Ok(Gate { kind, span, reduction: None })
}

/// Refuses `(...)` after a `keyword` that takes no arguments, saying what `accepted` there
/// (without this, the parse stops at the parenthesis with only "expected `,`").
fn no_arguments(input: ParseStream, keyword: &str, accepted: &str) -> syn::Result<()> {
    if input.peek(token::Paren) {
        let arguments: TokenTree = input.parse()?;
        return Err(syn::Error::new(arguments.span(), format!("`{keyword}` takes no arguments; {accepted}")));
    }
    Ok(())
}

fn parse_classifier(input: ParseStream, errors: &mut Errors) -> syn::Result<Classifier> {
    let la = input.lookahead1();
    let (kind, span) = if la.peek(kw::moe) {
        (ClassifierKind::Moe, input.parse::<kw::moe>()?.span)
    } else if la.peek(kw::logistic) {
        (ClassifierKind::Logistic, input.parse::<kw::logistic>()?.span)
    } else {
        return Err(la.error());
    };
    let mut experts = None;
    let mut l2 = None;
    if input.peek(token::Paren) {
        let content;
        parenthesized!(content in input);
        keyed_list(&content, errors, |input, errors| {
            let la = input.lookahead1();
            if la.peek(kw::experts) {
                let key = key!(input, experts);
                let value = eq_then(input, parse_size)?;
                set(&mut experts, key, value, errors);
            } else if la.peek(kw::l2) {
                let key = key!(input, l2);
                let value = eq_then(input, parse_coefficient)?;
                set(&mut l2, key, value, errors);
            } else {
                return Err(la.error());
            }
            Ok(())
        });
    }
    Ok(Classifier { kind, span, experts, l2 })
}

fn parse_coefficient(input: ParseStream) -> syn::Result<Coefficient> {
    let la = input.lookahead1();
    if la.peek(LitFloat) {
        let lit: LitFloat = input.parse()?;
        let value = lit.base10_parse::<f64>().ok();
        Ok(Coefficient { lit: Lit::Float(lit), value })
    } else if la.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        let value = lit.base10_parse::<f64>().ok();
        Ok(Coefficient { lit: Lit::Int(lit), value })
    } else {
        Err(la.error())
    }
}

fn parse_output_gate(input: ParseStream) -> syn::Result<OutputGate> {
    let la = input.lookahead1();
    let (gating, keyword, span) = if la.peek(kw::context_gating) {
        (true, "context_gating", input.parse::<kw::context_gating>()?.span)
    } else if la.peek(kw::none) {
        (false, "none", input.parse::<kw::none>()?.span)
    } else {
        return Err(la.error());
    };
    no_arguments(input, keyword, "`after_classifier` accepts one of: `context_gating`, `none`")?;
    Ok(OutputGate { gating, span })
}
