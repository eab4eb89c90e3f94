//! One model declared with `#[video_model]` and the same model written by hand from
//! loupe-core layers, for the equivalence test (`tests/macro_equivalence.rs`) and the
//! overhead bench (`benches/macro_overhead.rs`).
//!
//! The hand-written forward pass slices and concatenates with plain dfdx calls, so it
//! checks the generated wiring (channel offsets, concatenation order, layer order, tape
//! handling) rather than repeating it.

#![allow(dead_code)]

use loupe::dfdx::prelude::*;
use loupe::nn::{ContextGating, FrameInput, Hidden, MixtureOfExperts, NetVladPooling, ProbabilityGating};
use loupe::video_model;

pub const FRAMES: usize = 16;
pub const FEATURES: usize = 96;
pub const CLASSES: usize = 64;

/// Gated NetVLAD at a size where the forward pass is not trivial.
#[video_model(
    frames = 16,
    streams = [
        rgb(features = 64, pooling = netvlad(clusters = 16)),
        audio(features = 32, pooling = netvlad(clusters = 8)),
    ],
    hidden = 128,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 64,
)]
pub struct Generated;

pub type Input<T = NoneTape> = Tensor<(usize, Const<FRAMES>, Const<FEATURES>), f32, Cpu, T>;
pub type Output<T = NoneTape> = Tensor<(usize, Const<CLASSES>), f32, Cpu, T>;

/// The same network, written out.
#[derive(Debug, Clone)]
pub struct HandWritten<E: Dtype, D: Device<E>> {
    pub input: FrameInput<96, E, D>,
    pub rgb: NetVladPooling<64, 16, 1024, E, D>,
    pub audio: NetVladPooling<32, 8, 256, E, D>,
    pub hidden: Hidden<1280, 128, 16, false, E, D>,
    pub gating: ContextGating<128, E, D>,
    pub classifier: MixtureOfExperts<128, 64, 2, E, D>,
    pub output_gating: ProbabilityGating<64, E, D>,
}

impl HandWritten<f32, Cpu> {
    /// The generated model's layers, cloned: the same weights.
    pub fn from_generated(m: &GeneratedModel<f32, Cpu>) -> Self {
        HandWritten {
            input: m.input.clone(),
            rgb: m.rgb.clone(),
            audio: m.audio.clone(),
            hidden: m.hidden.clone(),
            gating: m.gating.clone(),
            classifier: m.classifier.clone(),
            output_gating: m.output_gating.clone(),
        }
    }

    pub fn forward_eval(&self, x: Input) -> Output {
        let x = self.input.forward(x);
        let rgb: Tensor<(usize, Const<FRAMES>, Const<64>), f32, Cpu> =
            x.clone().slice((.., .., 0..64)).realize();
        let audio: Tensor<(usize, Const<FRAMES>, Const<32>), f32, Cpu> = x.slice((.., .., 64..96)).realize();
        let rgb = self.rgb.forward(rgb).realize::<(usize, usize)>();
        let audio = self.audio.forward(audio).realize::<(usize, usize)>();
        let pooled: Tensor<(usize, Const<1280>), f32, Cpu> = (rgb, audio).concat_along(Axis::<1>).realize();
        let h = self.hidden.forward(pooled);
        let h = self.gating.forward(h);
        let p = self.classifier.forward(h);
        self.output_gating.forward(p)
    }

    pub fn forward_train(&mut self, x: Input<OwnedTape<f32, Cpu>>) -> Output<OwnedTape<f32, Cpu>> {
        let x = self.input.forward_mut(x);
        let rgb: Tensor<(usize, Const<FRAMES>, Const<64>), f32, Cpu, OwnedTape<f32, Cpu>> =
            x.retaped().slice((.., .., 0..64)).realize();
        let audio: Tensor<(usize, Const<FRAMES>, Const<32>), f32, Cpu, OwnedTape<f32, Cpu>> =
            x.slice((.., .., 64..96)).realize();
        let rgb = self.rgb.forward_mut(rgb).realize::<(usize, usize)>();
        let audio = self.audio.forward_mut(audio).realize::<(usize, usize)>();
        let pooled: Tensor<(usize, Const<1280>), f32, Cpu, OwnedTape<f32, Cpu>> =
            (rgb, audio).concat_along(Axis::<1>).realize();
        let h = self.hidden.forward_mut(pooled);
        let h = self.gating.forward_mut(h);
        let p = self.classifier.forward_mut(h);
        self.output_gating.forward_mut(p)
    }
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for HandWritten<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = HandWritten<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    Self::module("input", |s| &s.input, |s| &mut s.input),
                    Self::module("rgb", |s| &s.rgb, |s| &mut s.rgb),
                    Self::module("audio", |s| &s.audio, |s| &mut s.audio),
                    Self::module("hidden", |s| &s.hidden, |s| &mut s.hidden),
                ),
                (
                    Self::module("gating", |s| &s.gating, |s| &mut s.gating),
                    Self::module("classifier", |s| &s.classifier, |s| &mut s.classifier),
                    Self::module("output_gating", |s| &s.output_gating, |s| &mut s.output_gating),
                ),
            ),
            |((input, rgb, audio, hidden), (gating, classifier, output_gating))| HandWritten {
                input,
                rgb,
                audio,
                hidden,
                gating,
                classifier,
                output_gating,
            },
        )
    }
}

/// Early fusion, a batch-normalised ReLU6 hidden layer, a GLU and a logistic classifier.
#[video_model(
    frames = 6,
    fusion = early(pooling = netfv(clusters = 3)),
    streams = [rgb(features = 5), audio(features = 3)],
    hidden = fc(size = 12, batch_norm = true, relu6 = true),
    after_pooling = glu,
    classifier = logistic(l2 = 1e-6),
    classes = 4,
)]
pub struct GeneratedEarly;

#[derive(Debug, Clone)]
pub struct HandWrittenEarly {
    pub input: FrameInput<8, f32, Cpu>,
    pub pooling: loupe::nn::NetFvPooling<8, 3, 48, f32, Cpu>,
    pub hidden: loupe::nn::HiddenBn<48, 12, 3, true, f32, Cpu>,
    pub gating: loupe::nn::Glu<12, f32, Cpu>,
    pub classifier: loupe::nn::Logistic<12, 4, f32, Cpu>,
}

impl HandWrittenEarly {
    pub fn from_generated(m: &GeneratedEarlyModel<f32, Cpu>) -> Self {
        HandWrittenEarly {
            input: m.input.clone(),
            pooling: m.pooling.clone(),
            hidden: m.hidden.clone(),
            gating: m.gating.clone(),
            classifier: m.classifier.clone(),
        }
    }

    pub fn forward_eval(
        &self,
        x: Tensor<(usize, Const<6>, Const<8>), f32, Cpu>,
    ) -> Tensor<(usize, Const<4>), f32, Cpu> {
        let x = self.input.forward(x);
        let x = self.pooling.forward(x);
        let x = self.hidden.forward(x);
        let x = self.gating.forward(x);
        self.classifier.forward(x)
    }
}

/// Three late-fused streams of three pooling kinds: the concatenation order.
#[video_model(
    frames = 5,
    streams = [
        a(features = 4, pooling = average),
        b(features = 3, pooling = max),
        c(features = 5, pooling = soft_bow(clusters = 6)),
    ],
    classifier = logistic,
    classes = 3,
)]
pub struct GeneratedThree;

#[derive(Debug, Clone)]
pub struct HandWrittenThree {
    pub input: FrameInput<12, f32, Cpu>,
    pub c: loupe::nn::SoftBowPooling<5, 6, f32, Cpu>,
    pub classifier: loupe::nn::Logistic<13, 3, f32, Cpu>,
}

impl HandWrittenThree {
    pub fn from_generated(m: &GeneratedThreeModel<f32, Cpu>) -> Self {
        HandWrittenThree { input: m.input.clone(), c: m.c.clone(), classifier: m.classifier.clone() }
    }

    pub fn forward_eval(
        &self,
        x: Tensor<(usize, Const<5>, Const<12>), f32, Cpu>,
    ) -> Tensor<(usize, Const<3>), f32, Cpu> {
        let x = self.input.forward(x);
        let a: Tensor<(usize, Const<5>, Const<4>), f32, Cpu> = x.clone().slice((.., .., 0..4)).realize();
        let b: Tensor<(usize, Const<5>, Const<3>), f32, Cpu> = x.clone().slice((.., .., 4..7)).realize();
        let c: Tensor<(usize, Const<5>, Const<5>), f32, Cpu> = x.slice((.., .., 7..12)).realize();
        let a = loupe::nn::AveragePooling::<4>.forward(a).realize::<(usize, usize)>();
        let b = loupe::nn::MaxPooling::<3>.forward(b).realize::<(usize, usize)>();
        let c = self.c.forward(c).realize::<(usize, usize)>();
        let ab = (a, b).concat_along(Axis::<1>);
        let pooled: Tensor<(usize, Const<13>), f32, Cpu> = (ab, c).concat_along(Axis::<1>).realize();
        self.classifier.forward(pooled)
    }
}
