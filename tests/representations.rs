//! `VideoModel::try_representation` (through `Predictor::represent`): each layer's vector
//! is the model's own forward pass up to that layer, so feeding it to the layers after it
//! gives back the model's class probabilities; a layer the model lacks is an error.

use loupe::dfdx::prelude::*;
use loupe::infer::{PredictError, Predictor};
use loupe::model::{Layer, VideoModel};
use loupe::video_model;
use loupe::zoo::{SmallGatedNetVladModel, SmallLstmModel, SmallNetVladEarlyModel};

/// A video-level model with Context Gating on its input vector and no hidden layer.
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 16), mean_audio(features = 8)],
    after_pooling = context_gating,
    classifier = moe(experts = 2),
    classes = 10,
)]
pub struct TinyVideoCg;

const BATCH: usize = 3;

/// Deterministic, varied input values.
fn frames<M: VideoModel<f32, Cpu>>() -> Vec<f32> {
    (0..BATCH * M::FRAMES * M::FEATURES)
        .map(|i| (((i * 7919) % 211) as f32 / 53.0 - 2.0).sin() * 1.5)
        .collect()
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
    }
}

fn rows<const N: usize>(dev: &Cpu, values: Vec<f32>) -> Tensor<(usize, Const<N>), f32, Cpu> {
    assert_eq!(values.len(), BATCH * N);
    dev.tensor_from_vec(values, (BATCH, Const::<N>))
}

#[test]
fn late_fusion_layers_continue_to_the_probabilities() {
    type M = SmallGatedNetVladModel<f32, Cpu>;
    let dev = loupe::device::cpu_seeded(7);
    let p = Predictor::<M, Cpu>::build(dev.clone()).unwrap();
    let (x, lengths) = (frames::<M>(), vec![10; BATCH]);
    let expected = p.predict(&x, &lengths).unwrap();
    let m = &p.model;
    let head = |gated: Tensor<(usize, Const<32>), f32, Cpu>| {
        m.output_gating.forward(m.classifier.forward(gated)).as_vec()
    };
    let gated = p.represent(&x, &lengths, Layer::Gated).unwrap();
    assert_close("from gated", &head(rows::<32>(&dev, gated.clone())), &expected);
    let hidden = p.represent(&x, &lengths, Layer::Hidden).unwrap();
    assert_close("gating(hidden)", &m.gating.forward(rows::<32>(&dev, hidden.clone())).as_vec(), &gated);
    // 8 x 16 (rgb) + 4 x 8 (audio) pooled values.
    let pooled = p.represent(&x, &lengths, Layer::Pooled).unwrap();
    assert_eq!(M::describe().representation_size(Layer::Pooled), Some(160));
    assert_close("hidden(pooled)", &m.hidden.forward(rows::<160>(&dev, pooled)).as_vec(), &hidden);
    assert_ne!(gated, hidden);
}

#[test]
fn early_fusion_layers_continue_to_the_probabilities() {
    type M = SmallNetVladEarlyModel<f32, Cpu>;
    let dev = loupe::device::cpu_seeded(8);
    let p = Predictor::<M, Cpu>::build(dev.clone()).unwrap();
    let (x, lengths) = (frames::<M>(), vec![10; BATCH]);
    let expected = p.predict(&x, &lengths).unwrap();
    let m = &p.model;
    // 4 clusters x 24 values; GLU after the hidden layer.
    let pooled = p.represent(&x, &lengths, Layer::Pooled).unwrap();
    let hidden = m.hidden.forward(rows::<96>(&dev, pooled));
    assert_close("hidden", &hidden.as_vec(), &p.represent(&x, &lengths, Layer::Hidden).unwrap());
    let gated = p.represent(&x, &lengths, Layer::Gated).unwrap();
    assert_close("glu(hidden)", &m.gating.forward(hidden).as_vec(), &gated);
    let probabilities = m.output_gating.forward(m.classifier.forward(rows::<32>(&dev, gated))).as_vec();
    assert_close("from gated", &probabilities, &expected);
}

#[test]
fn video_level_input_is_the_pooled_layer_and_has_no_hidden_one() {
    type M = TinyVideoCgModel<f32, Cpu>;
    let dev = loupe::device::cpu_seeded(9);
    let p = Predictor::<M, Cpu>::build(dev.clone()).unwrap();
    let (x, lengths) = (frames::<M>(), vec![1; BATCH]);
    let m = &p.model;
    let pooled = p.represent(&x, &lengths, Layer::Pooled).unwrap();
    // The pooled vector of a video-level model is its L2-normalised input.
    for (row, input) in pooled.chunks(24).zip(x.chunks(24)) {
        let norm = input.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert_close("normalised input", row, &input.iter().map(|v| v / norm).collect::<Vec<_>>());
    }
    let gated = p.represent(&x, &lengths, Layer::Gated).unwrap();
    assert_close("gating(pooled)", &m.gating.forward(rows::<24>(&dev, pooled)).as_vec(), &gated);
    assert_close(
        "from gated",
        &m.classifier.forward(rows::<24>(&dev, gated)).as_vec(),
        &p.predict(&x, &lengths).unwrap(),
    );
    let err = p.represent(&x, &lengths, Layer::Hidden).unwrap_err();
    assert!(matches!(err, PredictError::NoSuchLayer { layer: Layer::Hidden, .. }), "{err}");
    assert_eq!(err.to_string(), "the model `TinyVideoCg` has no `hidden` layer (it has: pooled, gated)");
}

#[test]
fn recurrent_pooling_reads_only_the_valid_frames() {
    type M = SmallLstmModel<f32, Cpu>;
    let dev = loupe::device::cpu_seeded(10);
    let p = Predictor::<M, Cpu>::build(dev.clone()).unwrap();
    let mut x = frames::<M>();
    let lengths = vec![4, 10, 7];
    let pooled = p.represent(&x, &lengths, Layer::Pooled).unwrap();
    // [c1, h1, c2, h2] of 2 x 8 cells; the MoE reads it directly.
    let probabilities = p.model.classifier.forward(rows::<32>(&dev, pooled.clone())).as_vec();
    assert_close("from pooled", &probabilities, &p.predict(&x, &lengths).unwrap());
    // Frames past a video's length do not change its vector.
    let per_video = M::FRAMES * M::FEATURES;
    x[5 * M::FEATURES..per_video].iter_mut().for_each(|v| *v = 9.0);
    assert_eq!(p.represent(&x, &lengths, Layer::Pooled).unwrap()[..32], pooled[..32]);
    assert!(p.represent(&x, &lengths, Layer::Gated).is_err());
    assert!(p.represent(&x[1..], &lengths, Layer::Pooled).is_err());
}
