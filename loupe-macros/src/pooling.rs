//! The table of pooling kinds: the one place a pooling kind is defined.
//!
//! Parsing (the keyword and its arguments), validation (required arguments, defaults,
//! which fusions allow it, the output size), code generation (the layer type and its
//! const generics), the model description (`loupe models`) and the documentation's table
//! all read [`POOLINGS`]. Adding a kind is one entry here plus its layer in
//! `loupe-core/src/nn/` (see "Adding a pooling kind" in `docs/macro.md`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Ident};

/// An argument a pooling kind may take: `clusters = K`, `size = H`, ...
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ArgKey {
    Clusters,
    Size,
    Groups,
    Expansion,
}

impl ArgKey {
    /// Every argument, in the order they are checked and listed in errors.
    pub const ALL: [ArgKey; 4] = [ArgKey::Clusters, ArgKey::Size, ArgKey::Groups, ArgKey::Expansion];

    /// The argument's key in the grammar.
    pub fn name(self) -> &'static str {
        match self {
            ArgKey::Clusters => "clusters",
            ArgKey::Size => "size",
            ArgKey::Groups => "groups",
            ArgKey::Expansion => "expansion",
        }
    }

    /// The symbol the docs' formulas use for it.
    #[cfg(test)]
    pub fn symbol(self) -> &'static str {
        match self {
            ArgKey::Clusters => "K",
            ArgKey::Size => "H",
            ArgKey::Groups => "G",
            ArgKey::Expansion => "λ",
        }
    }

    /// "`netvlad` needs a cluster count: `netvlad(clusters = 64)`".
    pub fn missing(self, kw: &str) -> String {
        let (what, example) = match self {
            ArgKey::Clusters => ("a cluster count", 64),
            ArgKey::Size => ("the cells per layer", 1024),
            ArgKey::Groups => ("its number of groups", 8),
            ArgKey::Expansion => ("its expansion factor", 2),
        };
        format!("`{kw}` needs {what}: `{kw}({} = {example})`", self.name())
    }

    /// "`average` pooling has no clusters".
    pub fn unexpected(self, kw: &str) -> String {
        match self {
            ArgKey::Clusters => format!("`{kw}` pooling has no clusters"),
            key => format!("`{kw}` pooling has no `{}`", key.name()),
        }
    }

    /// Its position in [`ArgKey::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One argument of a kind: its key and its default (`None`: required).
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub key: ArgKey,
    pub default: Option<usize>,
}

const fn required(key: ArgKey) -> Arg {
    Arg { key, default: None }
}

const fn optional(key: ArgKey, default: usize) -> Arg {
    Arg { key, default: Some(default) }
}

/// The resolved arguments of a pooling over `input` features (0 where the kind has no
/// such argument).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dims {
    /// D: the features pooled.
    pub input: usize,
    values: [usize; 4],
}

impl Dims {
    pub fn new(input: usize) -> Self {
        Dims { input, values: [0; 4] }
    }

    pub fn get(&self, key: ArgKey) -> usize {
        self.values[key.index()]
    }

    pub fn set(&mut self, key: ArgKey, value: usize) {
        self.values[key.index()] = value;
    }

    fn d(&self) -> u64 {
        self.input as u64
    }

    fn k(&self) -> u64 {
        self.get(ArgKey::Clusters) as u64
    }

    fn h(&self) -> u64 {
        self.get(ArgKey::Size) as u64
    }

    fn g(&self) -> u64 {
        self.get(ArgKey::Groups) as u64
    }

    /// λD, NeXtVLAD's expanded features.
    fn expanded(&self) -> u64 {
        self.get(ArgKey::Expansion) as u64 * self.d()
    }
}

/// A constraint between a kind's arguments: `Some((message, argument to point at))` when
/// they break it.
pub type Constraint = fn(&Dims) -> Option<(String, ArgKey)>;

/// One pooling kind.
pub struct PoolingDef {
    /// The keyword that names it in the grammar.
    pub keyword: &'static str,
    /// Its name in prose (the docs' table).
    pub name: &'static str,
    /// Its layer type in `loupe_core::nn`.
    pub layer: &'static str,
    /// Its variant of `loupe_core::model::PoolingKind` (the model description's name for
    /// it, serialised as the keyword).
    pub variant: &'static str,
    /// Whether the layer is generic over dtype and device (`<.., __E, __D>`); the
    /// parameter-free ones are their own builder and are not.
    pub has_params: bool,
    pub args: &'static [Arg],
    /// Whether a stream may take it under late fusion (every kind allows early fusion).
    pub late: bool,
    /// Whether it reads the frames as a sequence: L2-normalised without the input batch
    /// norm, in temporal order, up to each video's last valid frame (the recurrent kinds).
    pub in_order: bool,
    /// Whether it takes a mask of each video's valid frames under `frame_mask = true`
    /// (the in-order kinds stop at each video's length whatever `frame_mask` says).
    pub masks: bool,
    /// Output size; checked against the limits before any other use.
    pub output: fn(&Dims) -> u64,
    pub output_formula: &'static str,
    /// Trainable parameters of the layer.
    pub params: fn(&Dims) -> u64,
    pub params_formula: &'static str,
    /// Forward matrix-product FLOPs of the layer for one frame of one video (a
    /// multiply-add counts 2): `VideoModel::POOLING_MATMUL_FLOPS`, which `loupe bench`
    /// counts against the machine's rate.
    pub flops: fn(&Dims) -> u64,
    /// The layer type's const generics (before dtype and device), given its output size.
    pub generics: fn(&Dims, usize) -> Vec<usize>,
    pub constraint: Option<Constraint>,
}

impl PoolingDef {
    /// The kind's entry for `key`, if it takes it.
    pub fn arg(&self, key: ArgKey) -> Option<&Arg> {
        self.args.iter().find(|a| a.key == key)
    }

    pub fn takes(&self, key: ArgKey) -> bool {
        self.arg(key).is_some()
    }

    /// `netvlad(clusters = K)`, `average`.
    #[cfg(test)]
    pub fn grammar(&self) -> String {
        if self.args.is_empty() {
            return self.keyword.to_string();
        }
        let args: Vec<String> =
            self.args.iter().map(|a| format!("{} = {}", a.key.name(), a.key.symbol())).collect();
        format!("{}({})", self.keyword, args.join(", "))
    }

    /// `lstm(size = ..)`: the kind with its required arguments elided.
    pub fn example(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .filter(|a| a.default.is_none())
            .map(|a| format!("{} = ..", a.key.name()))
            .collect();
        if args.is_empty() {
            self.keyword.to_string()
        } else {
            format!("{}({})", self.keyword, args.join(", "))
        }
    }
}

/// Every pooling kind, in the order of the "expected one of" message and the docs.
pub static POOLINGS: &[PoolingDef] = &[
    PoolingDef {
        keyword: "netvlad",
        name: "NetVLAD",
        layer: "NetVladPooling",
        variant: "NetVlad",
        has_params: true,
        args: &[required(ArgKey::Clusters)],
        late: true,
        in_order: false,
        masks: false,
        output: |d| d.k() * d.d(),
        output_formula: "K·D",
        params: |d| 2 * d.d() * d.k() + 2 * d.k(),
        params_formula: "2DK + 2K",
        // Assignment X W and aggregation a^T X.
        flops: |d| 2 * (d.d() * d.k() + d.k() * d.d()),
        generics: |d, out| vec![d.input, d.get(ArgKey::Clusters), out],
        constraint: None,
    },
    PoolingDef {
        keyword: "netrvlad",
        name: "NetRVLAD",
        layer: "NetRvladPooling",
        variant: "NetRvlad",
        has_params: true,
        args: &[required(ArgKey::Clusters)],
        late: true,
        in_order: false,
        masks: false,
        output: |d| d.k() * d.d(),
        output_formula: "K·D",
        params: |d| d.d() * d.k() + 2 * d.k(),
        params_formula: "DK + 2K",
        flops: |d| 2 * (d.d() * d.k() + d.k() * d.d()),
        generics: |d, out| vec![d.input, d.get(ArgKey::Clusters), out],
        constraint: None,
    },
    PoolingDef {
        keyword: "netfv",
        name: "NetFV",
        layer: "NetFvPooling",
        variant: "NetFv",
        has_params: true,
        args: &[required(ArgKey::Clusters)],
        late: true,
        in_order: false,
        masks: false,
        output: |d| 2 * d.k() * d.d(),
        output_formula: "2·K·D",
        params: |d| 3 * d.d() * d.k() + 2 * d.k(),
        params_formula: "3DK + 2K",
        // Assignment, then the first- and second-order aggregations.
        flops: |d| 2 * (d.d() * d.k() + 2 * d.k() * d.d()),
        generics: |d, out| vec![d.input, d.get(ArgKey::Clusters), out],
        constraint: None,
    },
    PoolingDef {
        keyword: "soft_bow",
        name: "soft bag of words",
        layer: "SoftBowPooling",
        variant: "SoftBow",
        has_params: true,
        args: &[required(ArgKey::Clusters)],
        late: true,
        in_order: false,
        masks: false,
        output: |d| d.k(),
        output_formula: "K",
        params: |d| d.d() * d.k() + 2 * d.k(),
        params_formula: "DK + 2K",
        flops: |d| 2 * d.d() * d.k(),
        generics: |d, _| vec![d.input, d.get(ArgKey::Clusters)],
        constraint: None,
    },
    PoolingDef {
        keyword: "average",
        name: "average",
        layer: "AveragePooling",
        variant: "Average",
        has_params: false,
        args: &[],
        late: true,
        in_order: false,
        masks: false,
        output: |d| d.d(),
        output_formula: "D",
        params: |_| 0,
        params_formula: "0",
        flops: |_| 0,
        generics: |d, _| vec![d.input],
        constraint: None,
    },
    PoolingDef {
        keyword: "max",
        name: "max",
        layer: "MaxPooling",
        variant: "Max",
        has_params: false,
        args: &[],
        late: true,
        in_order: false,
        masks: false,
        output: |d| d.d(),
        output_formula: "D",
        params: |_| 0,
        params_formula: "0",
        flops: |_| 0,
        generics: |d, _| vec![d.input],
        constraint: None,
    },
    PoolingDef {
        keyword: "lstm",
        name: "LSTM, 2 layers of H",
        layer: "LstmPooling",
        variant: "Lstm",
        has_params: true,
        args: &[required(ArgKey::Size)],
        late: false,
        in_order: true,
        masks: false,
        // Final states [c1, h1, c2, h2].
        output: |d| 4 * d.h(),
        output_formula: "4H ([c1, h1, c2, h2])",
        params: |d| 4 * d.h() * (d.d() + d.h()) + 4 * d.h() + 8 * d.h() * d.h() + 4 * d.h(),
        params_formula: "4H(D+H) + 4H + 8H² + 4H",
        // Two layers, 4 gates: the input and recurrent products of each.
        flops: |d| 2 * 4 * d.h() * ((d.d() + d.h()) + (d.h() + d.h())),
        generics: |d, out| vec![d.input, d.get(ArgKey::Size), out],
        constraint: None,
    },
    PoolingDef {
        keyword: "gru",
        name: "GRU, 2 layers of H",
        layer: "GruPooling",
        variant: "Gru",
        has_params: true,
        args: &[required(ArgKey::Size)],
        late: false,
        in_order: true,
        masks: false,
        // Final states [h1, h2].
        output: |d| 2 * d.h(),
        output_formula: "2H ([h1, h2])",
        params: |d| 3 * d.h() * (d.d() + d.h()) + 3 * d.h() + 6 * d.h() * d.h() + 3 * d.h(),
        params_formula: "3H(D+H) + 3H + 6H² + 3H",
        // Two layers, 3 gates.
        flops: |d| 2 * 3 * d.h() * ((d.d() + d.h()) + (d.h() + d.h())),
        generics: |d, out| vec![d.input, d.get(ArgKey::Size), out],
        constraint: None,
    },
    PoolingDef {
        keyword: "nextvlad",
        name: "NeXtVLAD (Lin et al. 2018)",
        layer: "NeXtVladPooling",
        variant: "NeXtVlad",
        has_params: true,
        // Groups and expansion default to Lin et al.'s 8 and 2.
        args: &[required(ArgKey::Clusters), optional(ArgKey::Groups, 8), optional(ArgKey::Expansion, 2)],
        late: true,
        in_order: false,
        masks: true,
        output: |d| d.k() * (d.expanded() / d.g()),
        output_formula: "K·λD/G",
        params: |d| {
            let (l, g, k) = (d.expanded(), d.g(), d.k());
            l * d.d() + l + g * (l + 1) + l * g * k + 2 * g * k + (l / g) * k + 2 * (l / g) * k
        },
        params_formula: "λD² + λD + G(λD + 1) + λDGK + 2GK + (λD/G)K + 2(λD/G)K",
        // Expansion, group attention, assignment, aggregation.
        flops: |d| {
            let (l, g, k) = (d.expanded(), d.g(), d.k());
            2 * (d.d() * l + l * g + l * g * k + l * k)
        },
        generics: |d, out| {
            let (k, g) = (d.get(ArgKey::Clusters), d.get(ArgKey::Groups));
            vec![d.input, d.input * d.get(ArgKey::Expansion), g, k, g * k, out]
        },
        constraint: Some(|d| {
            let (input, expansion, groups) = (d.input, d.get(ArgKey::Expansion), d.get(ArgKey::Groups));
            ((input * expansion) % groups != 0).then(|| {
                let message = format!(
                    "`nextvlad` splits {input} x {expansion} expanded features into {groups} groups: they must divide evenly"
                );
                (message, ArgKey::Groups)
            })
        }),
    },
];

/// `loupe_core::model::PoolingKind`, as an invocation of loupe-core's `kind_enum!`: the
/// `input` is the enum's attributes and name; one variant per entry of [`POOLINGS`], then
/// `None` for a video-level stream.
pub fn kind_enum(input: TokenStream) -> syn::Result<TokenStream> {
    let (attrs, name) = (|input: ParseStream| {
        let attrs = input.call(Attribute::parse_outer)?;
        let name: Ident = input.parse()?;
        Ok((attrs, name))
    })
    .parse2(input)?;
    let variants = POOLINGS.iter().map(|p| {
        let (doc, variant, keyword) = (format!(" {}.", p.name), format_ident!("{}", p.variant), p.keyword);
        quote!(#[doc = #doc] #variant = #keyword,)
    });
    Ok(quote! {
        kind_enum! {
            #(#attrs)*
            #name {
                #(#variants)*
                /// Not pooled (a video-level stream).
                None = "none",
            }
        }
    })
}

/// syn's wording for a lookahead failure: "expected `a`", "expected `a` or `b`",
/// "expected one of: `a`, `b`, `c`".
pub fn expected<'a>(choices: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = choices.into_iter().map(|c| format!("`{c}`")).collect();
    match quoted.as_slice() {
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        _ => format!("expected one of: {}", quoted.join(", ")),
    }
}

/// The error for an unknown pooling kind.
#[cfg(test)]
pub fn expected_kinds() -> String {
    expected(POOLINGS.iter().map(|p| p.keyword))
}

/// Parses one identifier out of `choices` (given by `name`), as syn's `Lookahead1` over
/// custom keywords would, and returns the choice with the identifier.
pub fn parse_one_of<T: Copy>(
    input: ParseStream,
    choices: &[T],
    name: impl Fn(T) -> &'static str,
) -> syn::Result<(T, Ident)> {
    let found = input.cursor().ident().and_then(|(ident, _)| {
        let text = ident.to_string();
        choices.iter().copied().find(|c| name(*c) == text)
    });
    match found {
        Some(choice) => {
            let ident =
                input.step(|cursor| cursor.ident().ok_or_else(|| cursor.error("expected an identifier")))?;
            Ok((choice, ident))
        }
        None => Err(input.error(expected(choices.iter().map(|c| name(*c))))),
    }
}

/// Parses a pooling kind's keyword.
pub fn parse_kind(input: ParseStream) -> syn::Result<(&'static PoolingDef, Ident)> {
    let indices: Vec<usize> = (0..POOLINGS.len()).collect();
    let (i, ident) = parse_one_of(input, &indices, |i| POOLINGS[i].keyword)?;
    Ok((&POOLINGS[i], ident))
}

/// The docs' table of pooling kinds, one row per entry of [`POOLINGS`] (the docs of
/// `loupe::video_model` and the README hold it; a unit test checks that they match).
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| pooling | grammar | layer (`loupe::nn`) | fusion | output | parameters |\n|---|---|---|---|---|---|\n",
    );
    for p in POOLINGS {
        let defaults: Vec<String> =
            p.args.iter().filter_map(|a| a.default.map(|d| format!("{} = {d}", a.key.symbol()))).collect();
        let grammar = if defaults.is_empty() {
            format!("`{}`", p.grammar())
        } else {
            format!("`{}` ({} by default)", p.grammar(), defaults.join(", "))
        };
        let fusion = if p.late { "late or early" } else { "early only" };
        table.push_str(&format!(
            "| {} | {grammar} | `{}` | {fusion} | {} | {} |\n",
            p.name, p.layer, p.output_formula, p.params_formula
        ));
    }
    table
}
