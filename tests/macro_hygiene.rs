//! Generated code is hygienic: everything it names is an absolute path and every generic
//! it injects is `__`-prefixed, so shadowing prelude and dfdx names, or defining types
//! named like common generics, changes nothing (serde's `test_gen.rs` idea).

#![allow(dead_code, non_camel_case_types, non_upper_case_globals, clippy::all)]

mod shadowed {
    // Prelude and std names.
    struct Result;
    struct Option;
    struct Ok;
    struct Err;
    struct Some;
    struct None;
    struct Vec;
    struct String;
    struct Box;
    struct Clone;
    struct Debug;
    trait Default {}
    // dfdx names the generated code uses.
    struct Tensor;
    struct Module;
    struct ModuleMut;
    struct Const;
    struct Tape;
    struct NoneTape;
    struct OwnedTape;
    struct Device;
    struct Dtype;
    struct TensorCollection;
    struct BuildOnDevice;
    struct BuildModule;
    struct VideoModel;
    // Names an unhygienic macro would use for its generics and locals.
    struct E;
    struct D;
    struct T;
    struct V;
    struct S;
    const x: u8 = 0;
    const s: u8 = 0;
    const device: u8 = 0;
    const visitor: u8 = 0;
    const frames: u8 = 0;
    // The facade itself, under a different name: generated code must not rely on a `loupe`
    // in scope (it names `::loupe`).
    mod loupe {}

    #[::loupe::video_model(
        frames = 4,
        streams = [
            rgb(features = 6, pooling = netvlad(clusters = 2)),
            audio(features = 2, pooling = average),
        ],
        hidden = 8,
        after_pooling = context_gating,
        classifier = moe(experts = 2),
        after_classifier = context_gating,
        classes = 3,
    )]
    pub struct Shadowed;

    #[::loupe::video_model(
        frames = 4,
        fusion = early(pooling = soft_bow(clusters = 3)),
        streams = [a(features = 2), b(features = 1)],
        classifier = logistic,
        classes = 2,
    )]
    pub struct ShadowedEarly;
}

#[test]
fn generated_code_ignores_shadowed_names() {
    use loupe::dfdx::prelude::*;
    use loupe::model::VideoModel;
    let dev = loupe::device::cpu();
    let mut m = dev.build_module::<shadowed::Shadowed, f32>();
    let input: Tensor<(usize, Const<4>, Const<8>), f32, _> = dev.sample_normal_like(&(2, Const, Const));
    let y = m.try_forward_train(input.traced(m.alloc_grads())).unwrap();
    assert_eq!(y.shape().0, 2);
    let m = dev.build_module::<shadowed::ShadowedEarly, f32>();
    let input: Tensor<(usize, Const<4>, Const<3>), f32, _> = dev.sample_normal_like(&(2, Const, Const));
    assert_eq!(m.try_forward_eval(input).unwrap().shape().0, 2);
}
