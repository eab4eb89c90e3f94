//! The `#[video_model(...)]` attribute of loupe.
//!
//! Use it through the `loupe` facade (`loupe::video_model`), whose documentation holds
//! the grammar and compiled examples: the generated code refers to `::loupe::__private`.
//!
//! Pipeline (thiserror's `impl/` shape): `attr` parses the arguments into the typed spec
//! of `ast`, collecting every error; `valid` checks the spec and computes the sizes;
//! `expand` generates the builder's impls and the built type.

mod ast;
mod attr;
mod expand;
mod kw;
mod valid;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::ToTokens;

/// Turns a unit struct into the builder of a video classification network.
///
/// See `loupe::video_model` for the grammar and examples.
#[proc_macro_attribute]
pub fn video_model(args: TokenStream, item: TokenStream) -> TokenStream {
    video_model_impl(args.into(), item.into()).into()
}

/// The whole macro on `proc_macro2` tokens (unit-testable).
fn video_model_impl(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let mut errors = attr::Errors::default();
    let spec = attr::parse_spec(args, &mut errors);
    let item_struct = match syn::parse2::<syn::ItemStruct>(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.push(syn::Error::new_spanned(
                &item,
                "`#[video_model]` goes on a unit struct, e.g. `pub struct GatedNetVlad;`",
            ));
            return with_errors(item, errors.into_vec());
        }
    };
    check_item(&item_struct, &mut errors);
    let model = valid::validate(&spec, &mut errors);
    match model {
        Some(model) if errors.is_empty() => expand::expand(&item_struct, &model),
        _ => with_errors(item_struct.into_token_stream(), errors.into_vec()),
    }
}

/// The builder is a unit struct without generics: the macro injects its own.
fn check_item(item: &syn::ItemStruct, errors: &mut attr::Errors) {
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
}

/// The user's item unchanged plus every error, combined: one mistake, one error.
fn with_errors(item: TokenStream2, errors: Vec<syn::Error>) -> TokenStream2 {
    let mut iter = errors.into_iter();
    let mut combined = match iter.next() {
        Some(e) => e,
        None => return item,
    };
    for e in iter {
        combined.combine(e);
    }
    let errors = combined.into_compile_error();
    quote::quote!(#item #errors)
}
