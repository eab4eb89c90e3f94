//! A hand-written `VideoModel` (average pooling + logistic regression) for testing the
//! training machinery independently of the generated models.

use dfdx::prelude::*;
use loupe::model::{
    AfterClassifier, AfterPooling, ClassifierKind, Fusion, InputKind, ModelDescription, VideoModel,
};

pub const FRAMES: usize = 4;
pub const FEATURES: usize = 6;
pub const CLASSES: usize = 3;

#[derive(Debug, Clone)]
pub struct AverageLogistic<E: Dtype, D: Storage<E>> {
    pub classifier: dfdx::nn::modules::Linear<FEATURES, CLASSES, E, D>,
}

impl<E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform, D: Device<E>> TensorCollection<E, D>
    for AverageLogistic<E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = AverageLogistic<E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        v: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        v.visit_fields(Self::module("classifier", |s| &s.classifier, |s| &mut s.classifier), |classifier| {
            AverageLogistic { classifier }
        })
    }
}

impl<E: Dtype + num_traits::Float + rand_distr::uniform::SampleUniform, D: Device<E>> VideoModel<E, D>
    for AverageLogistic<E, D>
{
    type Frames = Const<FRAMES>;
    type Features = Const<FEATURES>;
    type Classes = Const<CLASSES>;
    const FRAMES: usize = FRAMES;
    const FEATURES: usize = FEATURES;
    const CLASSES: usize = CLASSES;
    const POOLING_MATMUL_FLOPS: u64 = 0;

    fn describe() -> ModelDescription {
        ModelDescription {
            name: "AverageLogistic".into(),
            input: InputKind::Frames,
            streams: vec![],
            fusion: Fusion::Early,
            early_pooling: None,
            frames: FRAMES,
            hidden: None,
            hidden_batch_norm: false,
            hidden_relu6: false,
            frame_mask: false,
            dropout: 0.0,
            after_pooling: AfterPooling::None,
            gating_reduction: None,
            classifier: ClassifierKind::Logistic,
            experts: 0,
            after_classifier: AfterClassifier::None,
            classes: CLASSES,
            classifier_l2: 1e-8,
        }
    }

    fn try_forward_train(
        &mut self,
        x: Tensor<(usize, Const<FRAMES>, Const<FEATURES>), E, D, OwnedTape<E, D>>,
    ) -> Result<Tensor<(usize, Const<CLASSES>), E, D, OwnedTape<E, D>>, D::Err> {
        self.classifier.try_forward(x.try_mean::<_, Axis<1>>()?)?.try_sigmoid()
    }

    fn try_forward_eval(
        &self,
        x: Tensor<(usize, Const<FRAMES>, Const<FEATURES>), E, D>,
    ) -> Result<Tensor<(usize, Const<CLASSES>), E, D>, D::Err> {
        self.classifier.try_forward(x.try_mean::<_, Axis<1>>()?)?.try_sigmoid()
    }

    fn try_l2_penalty(&self) -> Result<Tensor<Rank0, E, D, OwnedTape<E, D>>, D::Err> {
        self.classifier
            .weight
            .retaped::<OwnedTape<E, D>>()
            .try_square()?
            .try_sum()?
            .try_mul(E::from_f64(0.5).unwrap())
    }
}

/// A learnable toy problem: class c is present when feature c's frame mean is positive.
pub fn toy_batch(seed: u64, batch: usize) -> (Vec<f32>, Vec<f32>, Vec<Vec<u32>>) {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let frames: Vec<f32> = (0..batch * FRAMES * FEATURES).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let mut labels = vec![0.0; batch * CLASSES];
    let mut lists = vec![Vec::new(); batch];
    for b in 0..batch {
        for c in 0..CLASSES {
            let mean: f32 = (0..FRAMES).map(|t| frames[(b * FRAMES + t) * FEATURES + c]).sum::<f32>();
            if mean > 0.0 {
                labels[b * CLASSES + c] = 1.0;
                lists[b].push(c as u32);
            }
        }
    }
    (frames, labels, lists)
}
