//! The `#[video_model(...)]` attribute of loupe.
//!
//! Use it through the `loupe` facade (`loupe::video_model`), whose documentation holds
//! the grammar and compiled examples: the generated code refers to `::loupe::__private`.
//!
//! Pipeline (the shape of thiserror's `impl/` and serde_derive's `internals/`):
//!
//! - `attr` parses the arguments into the typed spec of `ast`, collecting every error
//!   in `errors::Errors`;
//! - `valid` checks the spec, one `check_*` function per part, and resolves the sizes
//!   into a `valid::Model`;
//! - `expand` generates the builder's impls and the built type; on any error `stub`
//!   generates stand-ins for them instead, so that one mistake gives one error.
//!
//! Two tables are the single source of what they list: `pooling::POOLINGS` (the
//! pooling kinds: keyword, layer, arguments, fusions, output size, parameters, FLOPs;
//! `loupe_core::model::PoolingKind` is generated from it by [`pooling_kind_enum!`]; see
//! "Adding a pooling kind" in `docs/macro.md`) and `field::Field` (the built type's own
//! field names). `kw` holds the grammar's other keywords.

mod ast;
mod attr;
mod errors;
mod expand;
mod field;
mod kw;
mod pooling;
mod stub;
mod valid;

#[cfg(test)]
mod tests;

use errors::Errors;
use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

/// Turns a unit struct into the builder of a video classification network.
///
/// See `loupe::video_model` for the grammar and examples.
#[proc_macro_attribute]
pub fn video_model(args: TokenStream, item: TokenStream) -> TokenStream {
    video_model_impl(args.into(), item.into()).into()
}

/// Defines `loupe_core::model::PoolingKind` from the table of pooling kinds: one variant
/// per entry of `pooling::POOLINGS` (its `variant`, serialised as its keyword, its `name`
/// as doc), plus `None`. Not for users: `loupe-core` calls it once, with the enum's
/// attributes and name, inside the scope of its `kind_enum!`.
#[doc(hidden)]
#[proc_macro]
pub fn pooling_kind_enum(input: TokenStream) -> TokenStream {
    pooling::kind_enum(input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// The whole macro on `proc_macro2` tokens (unit-testable).
fn video_model_impl(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let mut errors = Errors::default();
    let spec = attr::parse_spec(args, &mut errors);
    let item_struct = match syn::parse2::<syn::ItemStruct>(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.push(syn::Error::new_spanned(
                &item,
                "`#[video_model]` goes on a unit struct, e.g. `pub struct GatedNetVlad;`",
            ));
            let errors = errors.into_compile_error();
            return quote!(#item #errors);
        }
    };
    let item_ok = check_item(&item_struct, &mut errors);
    let model = valid::validate(&spec, &mut errors);
    match model {
        Some(model) if errors.is_empty() => expand::expand(&item_struct, &model),
        _ => {
            // The user's item unchanged, stand-ins for what the macro generates (not for
            // a struct with generics or fields: nothing could stand in for it), and every
            // error, combined.
            let stubs =
                if item_ok { stub::stubs(&item_struct, &valid::outline(&spec)) } else { TokenStream2::new() };
            let errors = errors.into_compile_error();
            quote!(#item_struct #stubs #errors)
        }
    }
}

/// The builder is a unit struct without generics: the macro injects its own. Returns
/// whether it is one.
fn check_item(item: &syn::ItemStruct, errors: &mut Errors) -> bool {
    let before = errors.len();
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "a `#[video_model]` struct takes no generics: the built type is generic over dtype and device",
        ));
    }
    if !matches!(item.fields, syn::Fields::Unit) {
        errors.push(syn::Error::new_spanned(
            &item.fields,
            "a `#[video_model]` struct is a unit struct (`pub struct GatedNetVlad;`): the macro generates the layers",
        ));
    }
    errors.len() == before
}
