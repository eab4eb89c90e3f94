//! What the macro emits when the spec has errors, besides the errors: stand-ins for the
//! generated items (the builder's consts, the built type, its `BuildOnDevice`,
//! `TensorCollection`, `Module`, `ModuleMut` and `VideoModel` impls), so that the user's
//! code that names them still resolves and one mistake gives one error.
//!
//! The stand-ins carry the sizes the spec gave where they are valid (`valid::outline`),
//! 1 where they are not. Their bodies are never run: the crate does not compile.

use crate::expand::{builder_consts, built_name, classes_tensor, frames_tensor, generics, lit, private};
use crate::valid::Outline;
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ItemStruct;

pub fn stubs(item: &ItemStruct, outline: &Outline) -> TokenStream {
    let p = private();
    let (name, vis) = (&item.ident, &item.vis);
    let built = built_name(name);
    let generics = generics();
    let frames = outline.frames.unwrap_or(1);
    let features = outline.features.unwrap_or(1);
    let classes = outline.classes.unwrap_or(1);
    let consts = builder_consts(item, frames, features, classes);
    let (none, owned, any) = (quote!(#p::NoneTape), quote!(#p::OwnedTape<__E, __D>), quote!(__T));
    let span = Span::call_site();
    let (eval_in, eval_out) =
        (frames_tensor(frames, features, span, &none), classes_tensor(classes, span, &none));
    let (train_in, train_out) =
        (frames_tensor(frames, features, span, &owned), classes_tensor(classes, span, &owned));
    let (mut_in, mut_out) =
        (frames_tensor(frames, features, span, &any), classes_tensor(classes, span, &any));
    let (f, fe, c) = (lit(frames), lit(features), lit(classes));
    let err = quote!(<__D as #p::HasErr>::Err);
    let unreachable = quote!(::core::unreachable!("the `#[video_model]` spec has errors"));
    quote! {
        #consts

        /// Stands for the built type while the `#[video_model]` spec has errors.
        #[derive(::core::fmt::Debug, ::core::clone::Clone)]
        #vis struct #built<#generics> {
            __spec_has_errors: ::core::marker::PhantomData<(__E, __D)>,
        }

        #[automatically_derived]
        impl<#generics> #p::BuildOnDevice<__D, __E> for #name {
            type Built = #built<__E, __D>;
            fn try_build_on_device(_: &__D) -> ::core::result::Result<Self::Built, #err> {
                #unreachable
            }
        }

        #[automatically_derived]
        impl<#generics> #p::TensorCollection<__E, __D> for #built<__E, __D> {
            type To<__E2: #p::Dtype, __D2: #p::Device<__E2>> = #built<__E2, __D2>;
            fn iter_tensors<__V: #p::ModuleVisitor<Self, __E, __D>>(
                _: &mut __V,
            ) -> ::core::result::Result<::core::option::Option<Self::To<__V::E2, __V::D2>>, __V::Err> {
                #unreachable
            }
        }

        #[automatically_derived]
        impl<#generics> #p::Module<#eval_in> for #built<__E, __D> {
            type Output = #eval_out;
            type Error = #err;
            fn try_forward(&self, _: #eval_in) -> ::core::result::Result<Self::Output, Self::Error> {
                #unreachable
            }
        }

        #[automatically_derived]
        impl<#generics, __T: #p::Tape<__E, __D>> #p::ModuleMut<#mut_in> for #built<__E, __D> {
            type Output = #mut_out;
            type Error = #err;
            fn try_forward_mut(&mut self, _: #mut_in) -> ::core::result::Result<Self::Output, Self::Error> {
                #unreachable
            }
        }

        #[automatically_derived]
        impl<#generics> #p::VideoModel<__E, __D> for #built<__E, __D> {
            type Frames = #p::Const<#f>;
            type Features = #p::Const<#fe>;
            type Classes = #p::Const<#c>;
            const FRAMES: ::core::primitive::usize = #f;
            const FEATURES: ::core::primitive::usize = #fe;
            const CLASSES: ::core::primitive::usize = #c;
            const POOLING_MATMUL_FLOPS: ::core::primitive::u64 = 0;

            fn describe() -> #p::ModelDescription {
                #unreachable
            }

            fn try_forward_train(&mut self, _: #train_in) -> ::core::result::Result<#train_out, #err> {
                #unreachable
            }

            fn try_forward_eval(&self, _: #eval_in) -> ::core::result::Result<#eval_out, #err> {
                #unreachable
            }

            fn try_l2_penalty(&self) -> ::core::result::Result<#p::Tensor<(), __E, __D, #owned>, #err> {
                #unreachable
            }
        }
    }
}
