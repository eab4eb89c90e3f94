//! Unit tests of the parser and the validator, on specs built with `parse_quote!`.

use crate::ast::GateKind;
use crate::attr::parse_spec;
use crate::valid::{validate, Model, ResolvedClassifier};
use proc_macro2::TokenStream;
use syn::parse_quote;

fn check(args: TokenStream) -> Result<Model, Vec<String>> {
    let mut errors = crate::attr::Errors::default();
    let spec = parse_spec(args, &mut errors);
    let model = validate(&spec, &mut errors);
    match model {
        Some(model) if errors.is_empty() => Ok(model),
        _ => Err(errors.into_vec().iter().map(ToString::to_string).collect()),
    }
}

fn errors(args: TokenStream) -> Vec<String> {
    match check(args) {
        Ok(_) => panic!("spec unexpectedly valid"),
        Err(e) => e,
    }
}

fn gated_netvlad() -> TokenStream {
    parse_quote! {
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
    }
}

#[test]
fn paper_gated_netvlad_sizes() {
    let m = check(gated_netvlad()).unwrap();
    assert_eq!(m.frames, 300);
    assert_eq!(m.features, 1152);
    assert_eq!(m.streams[1].start, 1024);
    assert_eq!(m.pooled, 256 * 1024 + 128 * 128);
    assert_eq!(m.pooled, 278528);
    let h = m.hidden.as_ref().unwrap();
    assert_eq!((h.size, h.fan, h.batch_norm, h.relu6), (1024, 256, false, false));
    assert_eq!(m.representation, 1024);
    assert!(matches!(m.classifier, ResolvedClassifier::Moe { experts: 2, l2 } if l2 == 1e-6));
    assert!(m.output_gating);
    assert_eq!(m.classes, 3862);
}

#[test]
fn netfv_doubles_and_soft_bow_is_k() {
    let m = check(parse_quote! {
        frames = 10,
        streams = [a(features = 8, pooling = netfv(clusters = 4)), b(features = 2, pooling = soft_bow(clusters = 16))],
        classifier = logistic,
        classes = 3,
    })
    .unwrap();
    assert_eq!(m.pooled, 2 * 4 * 8 + 16);
    assert_eq!(m.representation, m.pooled);
    assert!(matches!(m.classifier, ResolvedClassifier::Logistic { l2 } if l2 == crate::valid::DEFAULT_L2));
}

#[test]
fn early_fusion_pools_the_concatenation() {
    let m = check(parse_quote! {
        frames = 300,
        fusion = early(pooling = netvlad(clusters = 256)),
        streams = [rgb(features = 1024), audio(features = 128)],
        hidden = fc(size = 1024, batch_norm = true, relu6 = true),
        classifier = moe(experts = 2),
        classes = 3862,
    })
    .unwrap();
    assert_eq!(m.pooled, 256 * 1152);
    let h = m.hidden.as_ref().unwrap();
    assert_eq!((h.fan, h.batch_norm, h.relu6), (256, true, true));
    assert!(m.streams.iter().all(|s| s.pooling.is_none()));
}

#[test]
fn video_level_input_is_the_concatenated_vector() {
    let m = check(parse_quote! {
        input = video_level,
        streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
        hidden = 256,
        after_pooling = context_gating,
        classifier = moe(experts = 2),
        classes = 3862,
    })
    .unwrap();
    assert!(m.video_level);
    assert_eq!((m.frames, m.features, m.pooled, m.representation), (1, 1152, 1152, 256));
    assert!(m.early.is_none() && m.streams.iter().all(|s| s.pooling.is_none()));
    // No clusters to size the hidden layer's initialisation by: the input's size.
    assert_eq!(m.hidden.as_ref().unwrap().fan, 1152);
    let m = check(parse_quote! {
        input = frames,
        frames = 3,
        streams = [rgb(features = 4, pooling = average)],
        classifier = logistic,
        classes = 2,
    })
    .unwrap();
    assert!(!m.video_level);
    assert_eq!(m.frames, 3);
}

#[test]
fn video_level_input_takes_no_frames_fusion_or_pooling() {
    let e = errors(parse_quote! {
        input = video_level,
        frames = 300,
        fusion = early(pooling = netvlad(clusters = 8)),
        streams = [mean_rgb(features = 1024, pooling = average), mean_audio(features = 128)],
        classifier = logistic,
        classes = 2,
    });
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("`input = video_level` reads one vector per video")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("`input = video_level` has no frames to pool")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("with `input = video_level` each stream is one vector")), "{e:?}");
    let e = errors(parse_quote!(input = video, classes = 2));
    assert!(e.iter().any(|e| e == "expected one of: `frames`, `raw_frames`, `video_level`"), "{e:?}");
}

/// `input = raw_frames`: frame-level, read as they are; the default is normalised frames.
#[test]
fn raw_frames_input_is_frame_level_without_normalisation() {
    let spec = |input: TokenStream| -> TokenStream {
        parse_quote! {
            #input
            frames = 3,
            streams = [rgb(features = 4, pooling = nextvlad(clusters = 2, groups = 2))],
            classifier = logistic,
            classes = 2,
        }
    };
    let m = check(spec(parse_quote!(input = raw_frames,))).unwrap();
    assert!(m.raw_frames && !m.video_level);
    assert_eq!((m.frames, m.features), (3, 4));
    for input in [parse_quote!(input = frames,), TokenStream::new()] {
        let m = check(spec(input)).unwrap();
        assert!(!m.raw_frames && !m.video_level);
    }
}

/// A gate that takes no arguments, given some, says what the position accepts.
#[test]
fn arguments_to_a_gate_without_any_say_what_is_accepted() {
    let head = |gate: TokenStream| -> TokenStream {
        parse_quote! {
            frames = 3,
            streams = [rgb(features = 4, pooling = average)],
            hidden = 8,
            #gate,
            classifier = logistic,
            classes = 2,
        }
    };
    for (gate, keyword) in [
        (parse_quote!(after_pooling = glu(reduction = 8)), "glu"),
        (parse_quote!(after_pooling = biased_context_gating(reduction = 8)), "biased_context_gating"),
        (parse_quote!(after_pooling = none()), "none"),
    ] {
        let e = errors(head(gate));
        assert_eq!(e, [format!("`{keyword}` takes no arguments; `after_pooling` accepts one of: `context_gating`, `context_gating(reduction = r)`, `biased_context_gating`, `glu`, `none`")]);
    }
    let e = errors(head(parse_quote!(after_classifier = context_gating(reduction = 8))));
    assert_eq!(
        e,
        ["`context_gating` takes no arguments; `after_classifier` accepts one of: `context_gating`, `none`"]
    );
}

/// Lin et al. 2018's NeXtVLAD: per-stream NeXtVLADs, masks, dropout, SE gating.
#[test]
fn nextvlad_2018_resolves_masks_dropout_and_se_gating() {
    let m = check(parse_quote! {
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
    })
    .unwrap();
    assert!(m.frame_mask);
    assert_eq!(m.dropout, Some((0.5, 500_000)));
    assert_eq!(m.pooled, 128 * 2048 / 8 + 64 * 256 / 4);
    assert_eq!((m.gate, m.gate_reduction), (GateKind::SeContextGating, Some(8)));
    let plain = check(gated_netvlad()).unwrap();
    assert!(!plain.frame_mask && plain.dropout.is_none() && plain.gate_reduction.is_none());
}

#[test]
fn masks_dropout_and_reduction_are_checked() {
    let e = errors(parse_quote! {
        frames = 3,
        frame_mask = true,
        streams = [rgb(features = 4, pooling = average)],
        dropout = 1.5,
        hidden = 6,
        after_pooling = context_gating(reduction = 4),
        classifier = logistic,
        classes = 2,
    });
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("`frame_mask` masks the frames past each video's length"), "{e:?}");
    assert!(e[1].starts_with("`dropout` must be a rate above 0 and below 1"), "{e:?}");
    assert_eq!(e[2], "`reduction` = 4 must divide the 6 gated values evenly (the bottleneck has n / r)");
    let e = errors(parse_quote! {
        frames = 3,
        streams = [rgb(features = 4, pooling = average)],
        after_pooling = context_gating(),
        classifier = logistic,
        classes = 2,
    });
    assert_eq!(e, ["`context_gating(...)` needs its bottleneck reduction: `context_gating(reduction = 8)`"]);
}

#[test]
fn unknown_key_lists_the_keys() {
    let e = errors(parse_quote!(frames = 3, clases = 4));
    assert!(e[0].starts_with("expected one of: `frames`, `fusion`, `streams`"), "{e:?}");
}

#[test]
fn a_value_that_fails_to_parse_is_not_also_missing() {
    let e = errors(parse_quote! {
        frames = 300,
        streams = [rgb(features = 1024, pooling = netvald(clusters = 64))],
        classifier = moe(experts = 2),
        clases = 3,
    });
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn duplicate_key_is_reported() {
    let e = errors(parse_quote!(frames = 3, frames = 4));
    assert!(e.iter().any(|e| e.starts_with("duplicate key `frames`")), "{e:?}");
}

#[test]
fn missing_keys_are_all_reported() {
    let e = errors(parse_quote!(frames = 3));
    for key in ["classes", "streams", "classifier"] {
        assert!(e.iter().any(|e| e.starts_with(&format!("missing required key `{key}`"))), "{key}: {e:?}");
    }
}

#[test]
fn zero_and_absurd_sizes() {
    let e = errors(parse_quote! {
        frames = 0,
        streams = [rgb(features = 99999999999999999999999, pooling = netvlad(clusters = 0))],
        classifier = moe(experts = 1000),
        classes = 5,
    });
    assert!(e.iter().any(|e| e == "`frames` must be at least 1"), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("`features` = 99999999999999999999999 is too large")), "{e:?}");
    assert!(e.iter().any(|e| e == "`clusters` must be at least 1"), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("`experts` = 1000 is too large")), "{e:?}");
}

#[test]
fn several_mistakes_are_all_reported() {
    let e = errors(parse_quote! {
        frame = 300,
        streams = [rgb(features = 1024, pooling = netvlad(clusters = 256)), rgb(features = 128, pooling = nope)],
        classifier = moe(experts = 2),
        classes = 0,
    });
    assert!(e.len() >= 4, "{e:?}");
}

#[test]
fn gate_on_a_huge_representation_needs_a_hidden_layer() {
    let e = errors(parse_quote! {
        frames = 300,
        streams = [rgb(features = 1024, pooling = netvlad(clusters = 256))],
        after_pooling = context_gating,
        classifier = logistic,
        classes = 10,
    });
    assert!(e.iter().any(|e| e.contains("add a `hidden` layer")), "{e:?}");
}

#[test]
fn stream_rules() {
    let e = errors(parse_quote! {
        frames = 3,
        streams = [hidden(features = 4, pooling = average), b(pooling = max), c(features = 2)],
        classifier = logistic,
        classes = 2,
    });
    assert!(e.iter().any(|e| e.starts_with("`hidden` names one of the model's own layers")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("stream `b` needs its feature size")), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("stream `c` needs a pooling")), "{e:?}");
    let e = errors(parse_quote! {
        frames = 3,
        fusion = early(pooling = average),
        streams = [a(features = 4, pooling = average)],
        classifier = logistic,
        classes = 2,
    });
    assert!(
        e.iter().any(|e| e.starts_with("with `fusion = early` the streams are pooled together")),
        "{e:?}"
    );
}

#[test]
fn pooling_arguments() {
    let e = errors(parse_quote! {
        frames = 3,
        streams = [a(features = 4, pooling = average(clusters = 3)), b(features = 4, pooling = netvlad)],
        classifier = logistic(experts = 2),
        classes = 2,
    });
    assert!(e.iter().any(|e| e == "`average` pooling has no clusters"), "{e:?}");
    assert!(e.iter().any(|e| e.starts_with("`netvlad` needs a cluster count")), "{e:?}");
    assert!(e.iter().any(|e| e == "`logistic` has no experts"), "{e:?}");
}

#[test]
fn expansion_of_the_paper_model_parses_as_items() {
    let out = crate::video_model_impl(
        gated_netvlad(),
        parse_quote!(
            pub struct GatedNetVlad;
        ),
    );
    let file: syn::File = syn::parse2(out).unwrap();
    // The struct, its consts, the built struct and five trait impls.
    assert_eq!(file.items.len(), 8);
    let text = quote::quote!(#file).to_string();
    assert!(text.contains("NetVladPooling < 1024 , 256 , 262144 , __E , __D >"), "{text}");
    assert!(text.contains("Hidden < 278528 , 1024 , 256 , false , __E , __D >"), "{text}");
    assert!(!text.contains("compile_error"));
}

#[test]
fn errors_keep_the_item() {
    let out = crate::video_model_impl(
        parse_quote!(frames = 0),
        parse_quote!(
            pub struct M;
        ),
    );
    let text = out.to_string();
    assert!(text.starts_with("pub struct M ;"), "{text}");
    assert!(text.contains("compile_error"));
}

#[test]
fn generics_and_fields_are_rejected() {
    let out = crate::video_model_impl(
        gated_netvlad(),
        parse_quote!(
            pub struct M<E> {
                x: E,
            }
        ),
    );
    let text = out.to_string();
    assert!(text.contains("takes no generics") && text.contains("is a unit struct"), "{text}");
}

#[test]
fn negative_zero_and_too_large_each_have_their_message() {
    let e = errors(parse_quote! {
        frames = -3,
        streams = [rgb(features = 1024, pooling = netvlad(clusters = -64))],
        classifier = moe(experts = 0),
        classes = 99999999,
    });
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(e.iter().any(|e| e == "`frames` = -3 is negative: it must be at least 1"), "{e:?}");
    assert!(e.iter().any(|e| e == "`clusters` = -64 is negative: it must be at least 1"), "{e:?}");
    assert!(e.iter().any(|e| e == "`experts` must be at least 1"), "{e:?}");
    assert!(
        e.iter().any(|e| e == "`classes` = 99999999 is too large: at most 1048576 is supported"),
        "{e:?}"
    );
}

// The pooling table (`pooling.rs`).

use crate::pooling::{expected_kinds, markdown_table, ArgKey, Dims, PoolingDef, POOLINGS};

fn kind(keyword: &str) -> &'static PoolingDef {
    POOLINGS.iter().find(|p| p.keyword == keyword).unwrap()
}

fn dims(input: usize, args: &[(ArgKey, usize)]) -> Dims {
    let mut dims = Dims::new(input);
    for (key, value) in args {
        dims.set(*key, *value);
    }
    dims
}

/// Every entry of the table is a working kind: a spec naming it (under late fusion where
/// it allows it, early otherwise) validates to the entry's output size and generates its
/// layer type.
#[test]
fn every_table_entry_is_a_kind_of_the_grammar() {
    for p in POOLINGS {
        let keyword = syn::Ident::new(p.keyword, proc_macro2::Span::call_site());
        let args = p.args.iter().filter(|a| a.default.is_none()).map(|a| {
            let key = syn::Ident::new(a.key.name(), proc_macro2::Span::call_site());
            quote::quote!(#key = 4)
        });
        let pooling =
            if p.args.is_empty() { quote::quote!(#keyword) } else { quote::quote!(#keyword(#(#args),*)) };
        let spec = if p.late {
            quote::quote!(frames = 5, streams = [rgb(features = 8, pooling = #pooling)], classifier = logistic, classes = 2)
        } else {
            quote::quote!(frames = 5, fusion = early(pooling = #pooling), streams = [rgb(features = 8)], classifier = logistic, classes = 2)
        };
        let m = check(spec.clone()).unwrap_or_else(|e| panic!("{}: {e:?}", p.keyword));
        let resolved = m.early.as_ref().or(m.streams[0].pooling.as_ref()).unwrap();
        assert_eq!(resolved.kind.keyword, p.keyword);
        assert_eq!(m.pooled as u64, (p.output)(&resolved.dims), "{}", p.keyword);
        let out = crate::video_model_impl(
            spec,
            parse_quote!(
                pub struct M;
            ),
        )
        .to_string();
        assert!(out.contains(&format!(":: nn :: {} <", p.layer)), "{}: {out}", p.keyword);
        assert!(!out.contains("compile_error"), "{}", p.keyword);
    }
}

#[test]
fn recurrent_kinds_need_early_fusion() {
    let e = errors(parse_quote! {
        frames = 5,
        streams = [rgb(features = 8, pooling = gru(size = 4))],
        classifier = logistic,
        classes = 2,
    });
    assert_eq!(
        e,
        ["`gru` reads the concatenated frames (paper, section 2): use `fusion = early(pooling = gru(size = ..))`"]
    );
}

/// The table's parameter formulas, summed with the head's, give the paper models' counts
/// that `tests/macro_zoo.rs` (`PAPER_PARAMS`) asserts against the built layers.
#[test]
fn table_parameter_counts_add_up_to_the_zoo_models() {
    let (k, h) = (ArgKey::Clusters, ArgKey::Size);
    let moe = |n: u64| n * 3862 * 5 + 3862 * 2;
    // rgb 1024 + audio 128, late fusion: input batch norm, poolings, `hidden = 1024`, MoE(2).
    let late = |keyword: &str, k_rgb: usize, k_audio: usize| {
        let (p, rgb, audio) = (kind(keyword), dims(1024, &[(k, k_rgb)]), dims(128, &[(k, k_audio)]));
        let pooled = (p.output)(&rgb) + (p.output)(&audio);
        2 * 1152 + (p.params)(&rgb) + (p.params)(&audio) + pooled * 1024 + 1024 + moe(1024)
    };
    assert_eq!(late("netvlad", 256, 128), 305_554_988);
    assert_eq!(late("netrvlad", 256, 128), 305_276_460);
    assert_eq!(late("netfv", 128, 64), 305_415_340);
    assert_eq!(late("soft_bow", 4096, 512), 28_772_140);
    // Recurrent, early fusion over 1152: L2 normalisation only, MoE on the final states.
    let early = |keyword: &str, cells: usize| {
        let (p, d) = (kind(keyword), dims(1152, &[(h, cells)]));
        (p.params)(&d) + moe((p.output)(&d))
    };
    assert_eq!(early("lstm", 1024), 96_411_180);
    assert_eq!(early("gru", 1200), 63_466_124);
    // NeXtVLAD over 24 features, G = 4, K = 4, λ = 2, from its fields' shapes: We 24x48,
    // be 48, Wa 48x4, ba 4, Wg 48x16, batch norm 2x16, centres 48, batch norm 2x48.
    let d = dims(24, &[(k, 4), (ArgKey::Groups, 4), (ArgKey::Expansion, 2)]);
    assert_eq!((kind("nextvlad").params)(&d), 24 * 48 + 48 + 48 * 4 + 4 + 48 * 16 + 2 * 16 + 48 + 2 * 48);
    assert_eq!((kind("nextvlad").output)(&d), 48);
    assert_eq!((kind("average").params)(&dims(1024, &[])), 0);
}

#[test]
fn unknown_pooling_message_comes_from_the_table() {
    let e = errors(parse_quote!(streams = [rgb(features = 4, pooling = vlad(clusters = 2))]));
    assert!(e.contains(&expected_kinds()), "{e:?}");
    // syn's wording, every keyword of the table in its order.
    let listed: Vec<String> = POOLINGS.iter().map(|p| format!("`{}`", p.keyword)).collect();
    assert_eq!(expected_kinds(), format!("expected one of: {}", listed.join(", ")));
    let e = errors(parse_quote!(streams = [rgb(features = 4, pooling = netvlad(cluster = 2))]));
    assert!(e.iter().any(|e| e == "expected one of: `clusters`, `size`, `groups`, `expansion`"), "{e:?}");
}

/// The docs hold the table generated from `POOLINGS` and the real "expected one of"
/// message. After a change to the table, `LOUPE_BLESS=1 cargo test -p loupe-macros
/// docs_hold` writes them into the files (and the next run checks them).
#[test]
fn docs_hold_the_generated_pooling_table() {
    let table = markdown_table();
    let message = format!("error: {}", expected_kinds());
    let docs = [
        ("src/lib.rs", "/// ", include_str!("../../src/lib.rs")),
        ("README.md", "", include_str!("../../README.md")),
        ("docs/macro.md", "", include_str!("../../docs/macro.md")),
    ];
    if std::env::var_os("LOUPE_BLESS").is_some() {
        for (file, prefix, _) in docs {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, with_pooling_docs(&text, prefix, &table, &message)).unwrap();
        }
        return;
    }
    for (file, prefix, text) in docs {
        let block: String = table.lines().map(|l| format!("{prefix}{l}\n")).collect();
        assert!(text.contains(&block), "{file} needs the pooling table (LOUPE_BLESS=1 writes it):\n{block}");
    }
    let facade = docs[0].2;
    assert!(
        facade.contains(&format!("/// {message}\n")),
        "the docs of `loupe::video_model` (src/lib.rs) need `{message}` (LOUPE_BLESS=1 writes it)"
    );
    let keys = &facade[facade.find("/// # Checkpoint keys").expect("a `# Checkpoint keys` section")..];
    for field in crate::field::Field::ALL {
        assert!(
            keys.contains(&format!("`{}`", field.name())),
            "the checkpoint keys in src/lib.rs lack `{field:?}`"
        );
    }
}

/// `text` with its pooling table (the header, the separator and every row naming a
/// `...Pooling` layer; rows after those, such as the README's video-level row, stay) and
/// its "expected one of" line for the pooling keywords replaced, each line after `prefix`.
fn with_pooling_docs(text: &str, prefix: &str, table: &str, message: &str) -> String {
    let header = format!("{prefix}{}", table.lines().next().unwrap());
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == header {
            lines.next(); // the separator
            while lines
                .peek()
                .is_some_and(|l| l.starts_with(&format!("{prefix}|")) && l.contains("Pooling` |"))
            {
                lines.next();
            }
            out.extend(table.lines().map(|l| format!("{prefix}{l}")));
        } else if line.starts_with(&format!("{prefix}error: expected one of: `{}`", POOLINGS[0].keyword)) {
            out.push(format!("{prefix}{message}"));
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n") + if text.ends_with('\n') { "\n" } else { "" }
}

/// Rewriting the docs keeps what follows the table and replaces a stale table and message.
#[test]
fn docs_are_rewritten_in_place() {
    let table = markdown_table();
    let message = format!("error: {}", expected_kinds());
    let mut stale: Vec<&str> = table.lines().collect();
    stale.pop();
    let text = format!(
        "intro\n/// {}\n/// | none | video-level | | |\n/// error: expected one of: `netvlad`, `max`\nend\n",
        stale.join("\n/// ")
    );
    let fixed = with_pooling_docs(&text, "/// ", &table, &message);
    let block: String = table.lines().map(|l| format!("/// {l}\n")).collect();
    assert_eq!(
        fixed,
        format!("intro\n{block}/// | none | video-level | | |\n/// {message}\nend\n"),
        "{fixed}"
    );
}

/// `loupe_core::model::PoolingKind` is generated from the table: one variant per kind,
/// serialised as its keyword (the description a generated model reports and checkpoint
/// sidecars store name the kind the spec declared), plus `None`; the enum's attributes
/// pass through. Variants and keywords are distinct, and every layer's name ends in
/// `Pooling` (none may clash with a zoo model at the crate root).
#[test]
fn the_pooling_kind_enum_has_one_variant_per_kind_and_a_pooling_layer_each() {
    let out = crate::pooling::kind_enum(quote::quote!(
        #[doc = " Kinds."]
        PoolingKind
    ))
    .unwrap()
    .to_string();
    assert!(out.starts_with("kind_enum ! { # [doc = \" Kinds.\"] PoolingKind {"), "{out}");
    for p in POOLINGS {
        let variant = format!("# [doc = \" {}.\"] {} = \"{}\" ,", p.name, p.variant, p.keyword);
        assert!(out.contains(&variant), "{variant}: {out}");
        assert!(p.layer.ends_with("Pooling"), "{}", p.layer);
    }
    assert!(out.ends_with("None = \"none\" , } }"), "{out}");
    assert_eq!(out.matches("\" ,").count(), POOLINGS.len() + 1, "one variant per kind, plus `None`: {out}");
    for field in [|p: &PoolingDef| p.variant, |p: &PoolingDef| p.keyword] {
        let mut names: Vec<&str> = POOLINGS.iter().map(field).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), POOLINGS.len(), "{names:?}");
    }
    // Anything but attributes and a name is refused.
    assert!(crate::pooling::kind_enum(quote::quote!(PoolingKind {})).is_err());
}

// Stand-ins on error (`stub.rs`).

/// One mistake: one error, and the generated items still exist with the spec's sizes,
/// so that the user's code naming them adds no error of its own.
#[test]
fn a_spec_error_comes_with_stand_ins_for_the_generated_items() {
    let out = crate::video_model_impl(
        parse_quote! {
            frames = 300,
            streams = [rgb(features = 1024, pooling = netvald(clusters = 64)), audio(features = 128, pooling = average)],
            classifier = moe(experts = 2),
            classes = 3862,
        },
        parse_quote!(
            pub struct M;
        ),
    );
    let file: syn::File = syn::parse2(out).unwrap();
    let text = quote::quote!(#file).to_string();
    assert_eq!(text.matches("compile_error").count(), 1, "{text}");
    for item in [
        "pub struct M ;",
        "pub const FRAMES : :: core :: primitive :: usize = 300 ;",
        "pub const FEATURES : :: core :: primitive :: usize = 1152 ;",
        "pub struct MModel <",
        "BuildOnDevice < __D , __E > for M",
        "TensorCollection < __E , __D > for MModel",
        "Module < :: loupe :: __private :: Tensor",
        "ModuleMut < :: loupe :: __private :: Tensor",
        "VideoModel < __E , __D > for MModel",
        "type Classes = :: loupe :: __private :: Const < 3862 >",
    ] {
        assert!(text.contains(item), "{item}: {text}");
    }
    // A struct with generics gets no stand-ins: nothing could stand in for it.
    let out = crate::video_model_impl(
        parse_quote!(frames = 0),
        parse_quote!(
            pub struct M<E>(E);
        ),
    )
    .to_string();
    assert!(!out.contains("MModel"), "{out}");
}
