//! Code generation: a validated [`Model`] to the builder's impls and the built type.
//!
//! Every path is absolute (`::core::...`, `::loupe::__private::...`) and every injected
//! generic is `__`-prefixed so that nothing the user has in scope can change what the
//! generated code means. Layer types carry the span of the spec token they come from, so
//! that a const assertion failing in a layer points at the user's line.

use crate::ast::GateKind;
use crate::field::Field;
use crate::pooling::ArgKey;
use crate::valid::{Model, ResolvedClassifier, ResolvedPooling};
use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, ItemStruct};

/// `usize` literal without a suffix (`1024`, not `1024usize`), so that it reads as a
/// const generic argument in error messages.
pub(crate) fn lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

/// The generated module's pieces, in the order they are emitted.
pub fn expand(item: &ItemStruct, model: &Model) -> TokenStream {
    let built = built_name(&item.ident);
    let pieces = [
        gen_builder_consts(item, model),
        gen_built_struct(item, &built, model),
        gen_build_on_device(item, &built),
        gen_tensor_collection(&built, model),
        gen_module(&built, model),
        gen_module_mut(&built, model),
        gen_video_model(item, &built, model),
    ];
    quote! {
        #item
        #(#pieces)*
    }
}

/// The built type's name: the builder's name followed by `Model`.
pub fn built_name(builder: &Ident) -> Ident {
    format_ident!("{}Model", builder)
}

/// Paths of the runtime pieces the generated code uses.
pub(crate) fn private() -> TokenStream {
    quote!(::loupe::__private)
}

/// `Tensor<(usize, Const<FRAMES>, Const<FEATURES>), __E, __D, #tape>`.
fn input_type(model: &Model, tape: &TokenStream) -> TokenStream {
    frames_tensor(model.frames, model.features, model.frames_span, tape)
}

/// `Tensor<(usize, Const<CLASSES>), __E, __D, #tape>`.
fn output_type(model: &Model, tape: &TokenStream) -> TokenStream {
    classes_tensor(model.classes, model.classes_span, tape)
}

/// `Tensor<(usize, Const<frames>, Const<features>), __E, __D, #tape>`.
pub(crate) fn frames_tensor(
    frames: usize,
    features: usize,
    frames_span: Span,
    tape: &TokenStream,
) -> TokenStream {
    let p = private();
    let (frames, features) = (lit(frames), lit(features));
    let frames_ty = quote_spanned!(frames_span=> #p::Const<#frames>);
    quote!(#p::Tensor<(::core::primitive::usize, #frames_ty, #p::Const<#features>), __E, __D, #tape>)
}

/// `Tensor<(usize, Const<classes>), __E, __D, #tape>`.
pub(crate) fn classes_tensor(classes: usize, classes_span: Span, tape: &TokenStream) -> TokenStream {
    let p = private();
    let classes = lit(classes);
    let classes_ty = quote_spanned!(classes_span=> #p::Const<#classes>);
    quote!(#p::Tensor<(::core::primitive::usize, #classes_ty), __E, __D, #tape>)
}

fn gen_builder_consts(item: &ItemStruct, model: &Model) -> TokenStream {
    builder_consts(item, model.frames, model.features, model.classes)
}

/// The builder's `FRAMES`, `FEATURES` and `CLASSES`.
pub(crate) fn builder_consts(
    item: &ItemStruct,
    frames: usize,
    features: usize,
    classes: usize,
) -> TokenStream {
    let name = &item.ident;
    let (frames, features, classes) = (lit(frames), lit(features), lit(classes));
    quote! {
        #[automatically_derived]
        impl #name {
            /// Frames sampled per video.
            pub const FRAMES: ::core::primitive::usize = #frames;
            /// Values per frame: the streams' features, concatenated in declared order.
            pub const FEATURES: ::core::primitive::usize = #features;
            /// Number of classes.
            pub const CLASSES: ::core::primitive::usize = #classes;
        }
    }
}

/// The layer types of the model, field by field: `(field name, type)`.
fn fields(model: &Model) -> Vec<(Ident, TokenStream)> {
    let p = private();
    let nn = quote!(#p::nn);
    let mut fields = Vec::new();
    let features = lit(model.features);
    // Recurrent poolings read the L2-normalised frames without the input batch norm; so do
    // video-level models (the starter code L2-normalises the concatenated vector only).
    // `input = raw_frames` reads the frames as they are.
    if model.raw_frames {
        fields.push((Field::Input.ident(), quote!(#nn::RawFrames)));
    } else if model.video_level || model.early.as_ref().is_some_and(|p| p.kind.in_order) {
        fields.push((Field::Input.ident(), quote!(#nn::L2Normalize)));
    } else {
        fields.push((Field::Input.ident(), quote!(#nn::FrameInput<#features, __E, __D>)));
    }
    if let Some(pool) = &model.early {
        fields.push((Field::Pooling.ident(), pooling_type(pool)));
    }
    for s in &model.streams {
        if let Some(pool) = &s.pooling {
            fields.push((s.name.clone(), pooling_type(pool)));
        }
    }
    if let Some((_, ppm)) = model.dropout {
        let ppm = lit(ppm);
        fields.push((Field::Dropout.ident(), quote!(#nn::Dropout<#ppm, __E, __D>)));
    }
    if let Some(h) = &model.hidden {
        let (i, o, fan) = (lit(model.pooled), lit(h.size), lit(h.fan));
        let relu6 = h.relu6;
        let ty = if h.batch_norm {
            quote_spanned!(h.span=> #nn::HiddenBn<#i, #o, #fan, #relu6, __E, __D>)
        } else {
            quote_spanned!(h.span=> #nn::Hidden<#i, #o, #fan, #relu6, __E, __D>)
        };
        fields.push((Field::Hidden.ident(), ty));
    }
    let n = lit(model.representation);
    let gate = match model.gate {
        GateKind::None => None,
        GateKind::ContextGating => Some(quote_spanned!(model.gate_span=> #nn::ContextGating<#n, __E, __D>)),
        GateKind::BiasedContextGating => {
            Some(quote_spanned!(model.gate_span=> #nn::BiasedContextGating<#n, __E, __D>))
        }
        GateKind::SeContextGating => {
            let nr = lit(model.representation / model.gate_reduction.unwrap_or(1).max(1));
            Some(quote_spanned!(model.gate_span=> #nn::SeContextGating<#n, #nr, __E, __D>))
        }
        GateKind::Glu => Some(quote_spanned!(model.gate_span=> #nn::Glu<#n, __E, __D>)),
    };
    if let Some(gate) = gate {
        fields.push((Field::Gating.ident(), gate));
    }
    let v = lit(model.classes);
    let classifier = match model.classifier {
        ResolvedClassifier::Moe { experts, .. } => {
            let m = lit(experts);
            quote_spanned!(model.classifier_span=> #nn::MixtureOfExperts<#n, #v, #m, __E, __D>)
        }
        ResolvedClassifier::Logistic { .. } => {
            quote_spanned!(model.classifier_span=> #nn::Logistic<#n, #v, __E, __D>)
        }
    };
    fields.push((Field::Classifier.ident(), classifier));
    if model.output_gating {
        fields.push((
            Field::OutputGating.ident(),
            quote_spanned!(model.output_gate_span=> #nn::ProbabilityGating<#v, __E, __D>),
        ));
    }
    fields
}

/// The pooling's layer type, from its kind's entry in the table (`pooling.rs`):
/// `NetVladPooling<1024, 256, 262144, __E, __D>`, `AveragePooling<1024>`.
fn pooling_type(pool: &ResolvedPooling) -> TokenStream {
    let p = private();
    let layer = Ident::new(pool.kind.layer, pool.span);
    let generics = (pool.kind.generics)(&pool.dims, pool.output).into_iter().map(lit);
    if pool.kind.has_params {
        quote_spanned!(pool.span=> #p::nn::#layer<#(#generics,)* __E, __D>)
    } else {
        // Parameter-free: one type is builder and layer, no dtype or device.
        quote_spanned!(pool.span=> #p::nn::#layer<#(#generics),*>)
    }
}

pub(crate) fn generics() -> TokenStream {
    let p = private();
    quote!(__E: #p::LayerDtype, __D: #p::LayerDevice<__E>)
}

fn gen_built_struct(item: &ItemStruct, built: &Ident, model: &Model) -> TokenStream {
    let vis = &item.vis;
    let name = &item.ident;
    let generics = generics();
    let fields = fields(model).into_iter().map(|(name, ty)| {
        let doc = match field_pooling(model, &name) {
            Some(pool) => format!(
                "Checkpoint keys `{name}.*`: {} pooling ({} = {} values out, {} = {} parameters).",
                pool.kind.name,
                pool.kind.output_formula,
                pool.output,
                pool.kind.params_formula,
                (pool.kind.params)(&pool.dims)
            ),
            None => format!("Checkpoint keys `{name}.*`."),
        };
        quote!(#[doc = #doc] pub #name: #ty,)
    });
    let doc = format!(
        "The built form of [`{name}`] (`dev.build_module::<{name}, f32>()`): {} frames of {} values in, {} class probabilities out.",
        model.frames, model.features, model.classes
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone)]
        #vis struct #built<#generics> {
            #(#fields)*
        }
    }
}

/// The pooling a field of the built type holds, if it holds one.
fn field_pooling<'a>(model: &'a Model, field: &Ident) -> Option<&'a ResolvedPooling> {
    if *field == Field::Pooling.ident() {
        return model.early.as_ref();
    }
    model.streams.iter().find(|s| s.name == *field).and_then(|s| s.pooling.as_ref())
}

fn gen_build_on_device(item: &ItemStruct, built: &Ident) -> TokenStream {
    let p = private();
    let name = &item.ident;
    let generics = generics();
    quote! {
        #[automatically_derived]
        impl<#generics> #p::BuildOnDevice<__D, __E> for #name {
            type Built = #built<__E, __D>;
            fn try_build_on_device(
                __device: &__D,
            ) -> ::core::result::Result<Self::Built, <__D as #p::HasErr>::Err> {
                <#built<__E, __D> as #p::BuildModule<__D, __E>>::try_build(__device)
            }
        }
    }
}

/// dfdx implements `ModuleFields` for tuples of up to 6: group longer lists in nested
/// tuples (the closure destructures the same shape).
fn nest(items: &[TokenStream]) -> TokenStream {
    if items.len() <= 6 {
        return quote!((#(#items,)*));
    }
    let groups: Vec<TokenStream> = items.chunks(6).map(nest).collect();
    nest(&groups)
}

fn gen_tensor_collection(built: &Ident, model: &Model) -> TokenStream {
    let p = private();
    let generics = generics();
    let names: Vec<Ident> = fields(model).into_iter().map(|(name, _)| name).collect();
    let visits: Vec<TokenStream> = names
        .iter()
        .map(|name| {
            let key = name.to_string();
            let key = key.strip_prefix("r#").unwrap_or(&key);
            quote!(Self::module(#key, |__s| &__s.#name, |__s| &mut __s.#name))
        })
        .collect();
    let locals: Vec<Ident> = (0..names.len()).map(|i| format_ident!("__field_{}", i)).collect();
    let binds: Vec<TokenStream> = locals.iter().map(|n| quote!(#n)).collect();
    let visits = nest(&visits);
    let binds = nest(&binds);
    quote! {
        #[automatically_derived]
        impl<#generics> #p::TensorCollection<__E, __D> for #built<__E, __D> {
            type To<__E2: #p::Dtype, __D2: #p::Device<__E2>> = #built<__E2, __D2>;

            fn iter_tensors<__V: #p::ModuleVisitor<Self, __E, __D>>(
                __visitor: &mut __V,
            ) -> ::core::result::Result<::core::option::Option<Self::To<__V::E2, __V::D2>>, __V::Err> {
                __visitor.visit_fields(#visits, |#binds| #built { #(#names: #locals),* })
            }
        }
    }
}

/// The forward pass, shared by evaluation (`Module`, `train` false) and training
/// (`ModuleMut`): `__x` is the input, `tape` the tape type for `retaped`. With `lengths`
/// (recurrent early pooling only) the pooling also gets the mask of the valid frames
/// made from `__lengths: &[usize]`.
fn forward_body(model: &Model, train: bool, tape: &TokenStream, lengths: bool) -> TokenStream {
    forward_body_with(model, train, tape, lengths, false, false)
}

/// The training forward of [`VideoModel::try_forward_train`] (and, for recurrent early
/// pooling, of `try_forward_train_lengths`, with `lengths`) for frame-level models: the
/// frames are data (their gradient is never used), so the input's tape is split off and
/// the frames are normalised without a tape. Every orderless pooling gets them through
/// `PoolFrames` with the input batch norm's affine apart (loupe-core `nn::pool_frames`);
/// a recurrent one through `Recurrent::try_pool_data`. Video-level models keep the
/// `ModuleMut` path.
fn frames_train_body(model: &Model, tape: &TokenStream, lengths: bool) -> TokenStream {
    forward_body_with(model, true, tape, lengths, true, false)
}

/// The body of [`VideoModel::try_representation`]: the evaluation forward that returns
/// at `__layer: Layer` (each present layer is a stop) and `None` at the classifier.
fn representation_body(model: &Model, lengths: bool) -> TokenStream {
    let p = private();
    forward_body_with(model, false, &quote!(#p::NoneTape), lengths, false, true)
}

fn forward_body_with(
    model: &Model,
    train: bool,
    tape: &TokenStream,
    lengths: bool,
    data_frames: bool,
    represent: bool,
) -> TokenStream {
    let p = private();
    let stop = |layer: &str| {
        let layer = format_ident!("{}", layer);
        quote! {
            if ::core::matches!(__layer, #p::Layer::#layer) {
                return ::core::result::Result::Ok(::core::option::Option::Some(#p::rows(__x)));
            }
        }
    };
    let call = |field: &Ident, arg: TokenStream| {
        if train {
            quote!(#p::ModuleMut::try_forward_mut(&mut self.#field, #arg)?)
        } else {
            quote!(#p::Module::try_forward(&self.#field, #arg)?)
        }
    };
    let pool_frames = |field: &Ident, frames: TokenStream| quote!(#p::nn::PoolFrames::try_pool_frames(&mut self.#field, #frames)?);
    let mut body = Vec::new();
    // Recurrent early pooling reads the L2-normalised frames; as data, it takes the tape
    // apart (`Recurrent::try_pool_data`).
    let recurrent_early = model.early.as_ref().is_some_and(|p| p.kind.in_order);
    // The evaluation forward of normalised frames split into streams takes each stream
    // straight from the raw frames where the fused kernels run (`FrameInput::
    // try_eval_frames`, `Stream::try_eval`): no full-width temporary.
    let eval_streams = !train && !model.video_level && !model.raw_frames && model.early.is_none();
    if data_frames && recurrent_early {
        body.push(quote! {
            let (__x, __tape) = #p::SplitTape::split_tape(__x);
            let __x = #p::Module::try_forward(&self.input, __x)?;
        });
    } else if data_frames {
        body.push(quote! {
            let (__x, __tape) = #p::SplitTape::split_tape(__x);
            let __x = self.input.try_standardize_train(__x)?;
        });
    } else if !eval_streams {
        let first = call(&Field::Input.ident(), quote!(__x));
        body.push(quote!(let __x = #first;));
    }
    let x = if model.video_level {
        let features = lit(model.features);
        body.push(quote!(let __x = #p::video_vector::<#features, _, _, _>(__x)?;));
        quote!(__x)
    } else if model.early.is_some() {
        let input = if lengths {
            body.push(quote! {
                let __shape = *#p::HasShape::shape(&__x);
                let __mask = #p::nn::valid_frame_mask(__x.device(), __lengths, (__shape.0, __shape.1));
            });
            quote!((__x, __mask))
        } else {
            quote!(__x)
        };
        let pooled = if data_frames && recurrent_early {
            let mask = if lengths {
                quote!(::core::option::Option::Some(&__mask))
            } else {
                quote!(::core::option::Option::None)
            };
            quote!(self.pooling.try_pool_data(__x, __tape, #mask)?)
        } else if data_frames {
            pool_frames(&Field::Pooling.ident(), quote!(self.input.try_normalized(&__x, __tape)?))
        } else {
            call(&Field::Pooling.ident(), input)
        };
        body.push(quote!(let __x = #pooled;));
        quote!(__x)
    } else {
        // One slice per stream; every use but the last gets a fresh tape (the original
        // one, holding the input layer's backward, goes to the last stream). With
        // `lengths`, the poolings that take a mask get the valid frames' mask too.
        let n = model.streams.len();
        let masked =
            |s: &crate::valid::ResolvedStream| lengths && s.pooling.as_ref().is_some_and(|p| p.kind.masks);
        if model.streams.iter().any(masked) {
            body.push(quote! {
                let __shape = *#p::HasShape::shape(&__x);
                let __mask = #p::nn::valid_frame_mask(__x.device(), __lengths, (__shape.0, __shape.1));
            });
        }
        if eval_streams {
            body.push(quote!(let __x = self.input.try_eval_frames(__x)?;));
        }
        let mut pooled = Vec::new();
        for (i, s) in model.streams.iter().enumerate() {
            let (start, len) = (lit(s.start), lit(s.features));
            let name = format_ident!("__pooled_{}", i);
            let pool = if data_frames {
                let stream_tape = if i + 1 == n {
                    quote!(__tape)
                } else {
                    quote!(<#tape as ::core::default::Default>::default())
                };
                let frames = quote_spanned!(s.features_span=> #p::nn::Stream::<#start, #len>.try_normalized(&self.input, &__x, #stream_tape)?);
                pool_frames(&s.name, frames)
            } else {
                let src = if i + 1 == n { quote!(__x) } else { quote!(__x.retaped::<#tape>()) };
                let slice = if eval_streams {
                    quote_spanned!(s.features_span=> #p::nn::Stream::<#start, #len>.try_eval(&self.input, &__x)?)
                } else {
                    quote_spanned!(s.features_span=> #p::Module::try_forward(&#p::nn::Stream::<#start, #len>, #src)?)
                };
                if masked(s) {
                    call(&s.name, quote!((#slice, ::core::clone::Clone::clone(&__mask))))
                } else {
                    call(&s.name, slice)
                }
            };
            body.push(quote!(let #name = #pool;));
            pooled.push((name, s.pooling.as_ref().map_or(0, |p| p.output)));
        }
        // The validator guarantees at least one stream under late fusion.
        let Some(((acc, first_size), rest)) = pooled.split_first() else {
            return quote!(::core::compile_error!("video_model: no stream to pool"));
        };
        let mut size = *first_size;
        for (name, out) in rest {
            let total = size + out;
            let (a, b, c) = (lit(size), lit(*out), lit(total));
            body.push(quote!(let #acc = #p::concat::<#a, #b, #c, _, _, _, _>(#acc, #name)?;));
            size = total;
        }
        quote!(#acc)
    };
    // The head, layer by layer.
    let mut x = x;
    if represent {
        body.push(quote!(let __x = #x;));
        body.push(stop("Pooled"));
        x = quote!(__x);
    }
    for field in Field::HEAD.into_iter().filter(|f| model.has(*f)) {
        if represent && field == Field::Classifier {
            body.push(quote!(let _ = __x;));
            return quote! {
                #(#body)*
                ::core::result::Result::Ok(::core::option::Option::None)
            };
        }
        let step = call(&field.ident(), x);
        body.push(quote!(let __x = #step;));
        x = quote!(__x);
        // Dropout is the identity in evaluation: no stop of its own.
        if represent && field != Field::Dropout {
            body.push(stop(if field == Field::Hidden { "Hidden" } else { "Gated" }));
        }
    }
    quote! {
        #(#body)*
        ::core::result::Result::Ok(#x)
    }
}

fn gen_module(built: &Ident, model: &Model) -> TokenStream {
    let p = private();
    let generics = generics();
    let tape = quote!(#p::NoneTape);
    let input = input_type(model, &tape);
    let output = output_type(model, &tape);
    let body = forward_body(model, false, &tape, false);
    quote! {
        /// Evaluation: batch norms use their running averages, no tape.
        #[automatically_derived]
        impl<#generics> #p::Module<#input> for #built<__E, __D> {
            type Output = #output;
            type Error = <__D as #p::HasErr>::Err;
            fn try_forward(&self, __x: #input) -> ::core::result::Result<Self::Output, Self::Error> {
                #body
            }
        }
    }
}

fn gen_module_mut(built: &Ident, model: &Model) -> TokenStream {
    let p = private();
    let generics = generics();
    let tape = quote!(__T);
    let input = input_type(model, &tape);
    let output = output_type(model, &tape);
    let body = forward_body(model, true, &tape, false);
    quote! {
        /// Training: batch statistics, running averages updated; any tape.
        #[automatically_derived]
        impl<#generics, __T: #p::Tape<__E, __D>> #p::ModuleMut<#input> for #built<__E, __D> {
            type Output = #output;
            type Error = <__D as #p::HasErr>::Err;
            fn try_forward_mut(&mut self, __x: #input) -> ::core::result::Result<Self::Output, Self::Error> {
                #body
            }
        }
    }
}

/// `Some(n)` for a size the layer has, `None` for the kinds without it.
fn option(n: Option<usize>) -> TokenStream {
    match n.map(lit) {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    }
}

fn gen_description(item: &ItemStruct, model: &Model) -> TokenStream {
    let p = private();
    let string = |s: &str| quote!(::std::string::String::from(#s));
    // `loupe_core::model::Kind::Variant`.
    let variant = |kind: &str, variant: &str| {
        let (kind, variant) = (format_ident!("{kind}"), format_ident!("{variant}"));
        quote!(#p::#kind::#variant)
    };
    let name = string(&item.ident.to_string());
    let streams = model.streams.iter().map(|s| {
        let stream_name = s.name.to_string();
        let stream_name = string(stream_name.strip_prefix("r#").unwrap_or(&stream_name));
        let features = lit(s.features);
        let (pooling, clusters, output) = match &s.pooling {
            Some(pool) => (pool.kind.variant, pool.arg(ArgKey::Clusters), pool.output),
            None => ("None", None, s.features),
        };
        let pooling = variant("PoolingKind", pooling);
        let clusters = option(clusters);
        let output = lit(output);
        quote! {
            #p::StreamDescription {
                name: #stream_name,
                features: #features,
                pooling: #pooling,
                clusters: #clusters,
                output: #output,
            }
        }
    });
    let fusion = variant(
        "Fusion",
        match (&model.early, model.video_level) {
            (_, true) => "None",
            (Some(_), false) => "Early",
            (None, false) => "Late",
        },
    );
    let input = variant(
        "InputKind",
        match (model.video_level, model.raw_frames) {
            (true, _) => "VideoLevel",
            (false, true) => "RawFrames",
            (false, false) => "Frames",
        },
    );
    let early_pooling = match &model.early {
        Some(pool) => {
            let kind = variant("PoolingKind", pool.kind.variant);
            let clusters = option(pool.arg(ArgKey::Clusters));
            let size = option(pool.arg(ArgKey::Size));
            let output = lit(pool.output);
            quote!(::core::option::Option::Some(#p::PoolingDescription {
                kind: #kind,
                clusters: #clusters,
                size: #size,
                output: #output,
            }))
        }
        None => quote!(::core::option::Option::None),
    };
    let (hidden_batch_norm, hidden_relu6) =
        model.hidden.as_ref().map_or((false, false), |h| (h.batch_norm, h.relu6));
    let hidden = match &model.hidden {
        Some(h) => {
            let s = lit(h.size);
            quote!(::core::option::Option::Some(#s))
        }
        None => quote!(::core::option::Option::None),
    };
    let after_pooling = variant(
        "AfterPooling",
        match model.gate {
            GateKind::None => "None",
            GateKind::ContextGating => "ContextGating",
            GateKind::BiasedContextGating => "BiasedContextGating",
            GateKind::SeContextGating => "SeContextGating",
            GateKind::Glu => "Glu",
        },
    );
    let gating_reduction = option(model.gate_reduction);
    let frame_mask = model.frame_mask;
    let dropout = Literal::f64_suffixed(model.dropout.map_or(0.0, |(p, _)| p));
    let (classifier, experts) = match model.classifier {
        ResolvedClassifier::Moe { experts, .. } => ("Moe", experts),
        ResolvedClassifier::Logistic { .. } => ("Logistic", 0),
    };
    let classifier = variant("ClassifierKind", classifier);
    let experts = lit(experts);
    let after_classifier =
        variant("AfterClassifier", if model.output_gating { "ProbabilityGating" } else { "None" });
    let (frames, classes) = (lit(model.frames), lit(model.classes));
    let l2 = Literal::f64_suffixed(model.classifier.l2());
    quote! {
        #p::ModelDescription {
            name: #name,
            input: #input,
            streams: ::std::vec![#(#streams),*],
            fusion: #fusion,
            early_pooling: #early_pooling,
            frames: #frames,
            hidden: #hidden,
            hidden_batch_norm: #hidden_batch_norm,
            hidden_relu6: #hidden_relu6,
            frame_mask: #frame_mask,
            dropout: #dropout,
            after_pooling: #after_pooling,
            gating_reduction: #gating_reduction,
            classifier: #classifier,
            experts: #experts,
            after_classifier: #after_classifier,
            classes: #classes,
            classifier_l2: #l2,
        }
    }
}

fn gen_video_model(item: &ItemStruct, built: &Ident, model: &Model) -> TokenStream {
    let p = private();
    let generics = generics();
    let (frames, features, classes) = (lit(model.frames), lit(model.features), lit(model.classes));
    let owned = quote!(#p::OwnedTape<__E, __D>);
    let none = quote!(#p::NoneTape);
    let (train_in, train_out) = (input_type(model, &owned), output_type(model, &owned));
    let (eval_in, eval_out) = (input_type(model, &none), output_type(model, &none));
    let description = gen_description(item, model);
    let pooling_flops: u64 = model
        .streams
        .iter()
        .filter_map(|s| s.pooling.as_ref())
        .chain(&model.early)
        .map(|p| (p.kind.flops)(&p.dims))
        .sum();
    let pooling_flops = Literal::u64_unsuffixed(pooling_flops);
    let recurrent_early = model.early.as_ref().is_some_and(|p| p.kind.in_order);
    // Video-level models keep the `ModuleMut` path, and so do raw frames pooled by an
    // orderless kind (`PoolFrames` reads standardised frames); a recurrent kind reads any
    // frames as data.
    let train_body = if model.video_level || (model.raw_frames && !recurrent_early) {
        quote!(#p::ModuleMut::try_forward_mut(self, __x))
    } else {
        frames_train_body(model, &owned, false)
    };
    // Recurrent poolings stop reading a video at its last valid frame; with `frame_mask`
    // the poolings that take a mask leave the frames past it out.
    let in_order = recurrent_early || model.frame_mask;
    let representation = representation_body(model, in_order);
    let lengths = if in_order {
        let train_body = if recurrent_early {
            frames_train_body(model, &owned, true)
        } else {
            forward_body(model, true, &owned, true)
        };
        let eval_body = forward_body(model, false, &none, true);
        quote! {
            const READS_FRAMES_IN_ORDER: ::core::primitive::bool = true;

            fn try_forward_train_lengths(
                &mut self,
                __x: #train_in,
                __lengths: &[::core::primitive::usize],
            ) -> ::core::result::Result<#train_out, <__D as #p::HasErr>::Err> {
                #train_body
            }

            fn try_forward_eval_lengths(
                &self,
                __x: #eval_in,
                __lengths: &[::core::primitive::usize],
            ) -> ::core::result::Result<#eval_out, <__D as #p::HasErr>::Err> {
                #eval_body
            }
        }
    } else {
        TokenStream::new()
    };
    quote! {
        #[automatically_derived]
        impl<#generics> #p::VideoModel<__E, __D> for #built<__E, __D> {
            type Frames = #p::Const<#frames>;
            type Features = #p::Const<#features>;
            type Classes = #p::Const<#classes>;
            const FRAMES: ::core::primitive::usize = #frames;
            const FEATURES: ::core::primitive::usize = #features;
            const CLASSES: ::core::primitive::usize = #classes;
            const POOLING_MATMUL_FLOPS: ::core::primitive::u64 = #pooling_flops;

            fn describe() -> #p::ModelDescription {
                #description
            }

            fn try_forward_train(
                &mut self,
                __x: #train_in,
            ) -> ::core::result::Result<#train_out, <__D as #p::HasErr>::Err> {
                #train_body
            }

            fn try_forward_eval(
                &self,
                __frames: #eval_in,
            ) -> ::core::result::Result<#eval_out, <__D as #p::HasErr>::Err> {
                #p::Module::try_forward(self, __frames)
            }

            #lengths

            fn try_representation(
                &self,
                __x: #eval_in,
                __lengths: &[::core::primitive::usize],
                __layer: #p::Layer,
            ) -> ::core::result::Result<
                ::core::option::Option<#p::Tensor<(::core::primitive::usize, ::core::primitive::usize), __E, __D>>,
                <__D as #p::HasErr>::Err,
            > {
                #representation
            }

            fn try_l2_penalty(
                &self,
            ) -> ::core::result::Result<#p::Tensor<(), __E, __D, #owned>, <__D as #p::HasErr>::Err> {
                #p::ClassifierPenalty::try_l2_penalty::<#owned>(&self.classifier)
            }
        }
    }
}
