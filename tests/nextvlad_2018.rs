//! The pieces of Lin et al.'s 2018 NeXtVLAD model in `#[video_model]`: per-stream NeXtVLAD
//! under late fusion, frame masks from each video's length, dropout, SE Context Gating;
//! and the zoo's `nextvlad` and `small-nextvlad-2018` built from them.

use loupe::dfdx::prelude::*;
use loupe::gradcheck::named_params;
use loupe::model::{count_params, AfterPooling, ClassifierKind, Layer, PoolingKind, VideoModel};
use loupe::nn;
use loupe::video_model;
use loupe::zoo::{
    NeXtVlad, NeXtVlad112Model, NeXtVladModel, SmallNeXtVlad2018, SmallNeXtVlad2018Model, SmallNeXtVladModel,
};

/// Two streams, each with its own clusters, groups and expansion.
#[video_model(
    frames = 6,
    streams = [
        rgb(features = 8, pooling = nextvlad(clusters = 3, groups = 4, expansion = 2)),
        audio(features = 4, pooling = nextvlad(clusters = 2, groups = 2, expansion = 3)),
    ],
    classifier = logistic,
    classes = 5,
)]
struct TwoNextVlads;

#[test]
fn each_stream_has_its_own_nextvlad_under_late_fusion() {
    let d = <TwoNextVladsModel<f64, Cpu> as VideoModel<f64, Cpu>>::describe();
    // rgb: K * λD / G = 3 * 16 / 4 = 12; audio: 2 * 12 / 2 = 12.
    assert_eq!(
        d.streams.iter().map(|s| (s.pooling, s.clusters, s.output)).collect::<Vec<_>>(),
        [(PoolingKind::NeXtVlad, Some(3), 12), (PoolingKind::NeXtVlad, Some(2), 12)]
    );
    assert!(!d.frame_mask);
    // The fields are the layers with those sizes: F, λF, G, K, GK, K λF / G.
    let rgb = count_params::<f64, Cpu, nn::NeXtVladPooling<8, 16, 4, 3, 12, 12, f64, Cpu>>();
    let audio = count_params::<f64, Cpu, nn::NeXtVladPooling<4, 12, 2, 2, 4, 12, f64, Cpu>>();
    let input = 2 * 12;
    let logistic = 24 * 5 + 5;
    assert_eq!(count_params::<f64, Cpu, TwoNextVladsModel<f64, Cpu>>(), input + rgb + audio + logistic);
    let dev = loupe::device::cpu_seeded(3);
    let mut m = dev.build_module::<TwoNextVlads, f64>();
    let x: Tensor<(usize, Const<6>, Const<12>), f64, _> = dev.sample_normal_like(&(3, Const, Const));
    let y = m.try_forward_train(x.clone().traced(m.alloc_grads())).unwrap();
    assert_eq!(y.shape().concrete(), [3, 5]);
    // Without `frame_mask` the model samples frames (every row valid): lengths are ignored.
    const { assert!(!<TwoNextVladsModel<f64, Cpu> as VideoModel<f64, Cpu>>::READS_FRAMES_IN_ORDER) };
    assert_eq!(
        m.try_forward_eval_lengths(x.clone(), &[1, 2, 3]).unwrap().as_vec(),
        m.try_forward_eval(x).unwrap().as_vec()
    );
}

/// Same spec with masks.
#[video_model(
    frames = 6,
    frame_mask = true,
    streams = [
        rgb(features = 8, pooling = nextvlad(clusters = 3, groups = 4, expansion = 2)),
        audio(features = 4, pooling = average),
    ],
    hidden = fc(size = 8, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 4),
    classifier = logistic,
    classes = 5,
)]
struct MaskedNextVlad;

type Masked = MaskedNextVladModel<f64, Cpu>;

/// Frames of `x` past each video's length replaced by large noise.
fn with_noisy_padding(
    dev: &Cpu,
    x: &Tensor<(usize, Const<6>, Const<12>), f64, Cpu>,
    lengths: &[usize],
) -> Tensor<(usize, Const<6>, Const<12>), f64, Cpu> {
    let noise: Tensor<(usize, Const<6>, Const<12>), f64, _> = dev.sample_normal_like(x.shape());
    let mut values = x.as_vec();
    for (i, n) in noise.as_vec().into_iter().enumerate() {
        let (video, frame) = (i / 72, i / 12 % 6);
        if frame >= lengths[video] {
            values[i] = 10.0 * n;
        }
    }
    let mut padded = x.clone();
    padded.copy_from(&values);
    padded
}

#[test]
fn frame_masks_leave_the_frames_past_each_length_out_of_nextvlad() {
    const { assert!(<Masked as VideoModel<f64, Cpu>>::READS_FRAMES_IN_ORDER) };
    let d = <Masked as VideoModel<f64, Cpu>>::describe();
    assert!(d.frame_mask);
    assert_eq!((d.after_pooling, d.gating_reduction), (AfterPooling::SeContextGating, Some(4)));
    let dev = loupe::device::cpu_seeded(4);
    let mut m = dev.build_module::<MaskedNextVlad, f64>();
    // A few training steps so that the running averages are not the initial ones.
    for _ in 0..3 {
        let x: Tensor<(usize, Const<6>, Const<12>), f64, _> = dev.sample_normal_like(&(4, Const, Const));
        let _ = m.try_forward_train_lengths(x.traced(m.alloc_grads()), &[6, 2, 4, 1]).unwrap();
    }
    let x: Tensor<(usize, Const<6>, Const<12>), f64, _> = dev.sample_normal_like(&(3, Const, Const));
    let lengths = [6, 2, 4];
    let padded = with_noisy_padding(&dev, &x, &lengths);
    let (a, b) = (
        m.try_forward_eval_lengths(x.clone(), &lengths).unwrap().as_vec(),
        m.try_forward_eval_lengths(padded.clone(), &lengths).unwrap().as_vec(),
    );
    // The average stream takes no mask: only the NeXtVLAD stream ignores the padding.
    let pooled = |x: &Tensor<(usize, Const<6>, Const<12>), f64, Cpu>| {
        m.try_representation(x.clone(), &lengths, Layer::Pooled).unwrap().unwrap().as_vec()
    };
    let (pa, pb) = (pooled(&x), pooled(&padded));
    // Pooled: rgb NeXtVLAD's 12 values, then audio's average of 4.
    for v in 0..3 {
        assert_eq!(pa[v * 16..v * 16 + 12], pb[v * 16..v * 16 + 12], "video {v}: NeXtVLAD saw the padding");
        if lengths[v] < 6 {
            assert_ne!(pa[v * 16 + 12..v * 16 + 16], pb[v * 16 + 12..v * 16 + 16], "video {v}: average");
        }
    }
    assert_ne!(a, b, "the average stream sees the padding");
    // All frames valid: the mask is all ones, the same as no mask.
    assert_eq!(
        m.try_forward_eval_lengths(x.clone(), &[6, 6, 6]).unwrap().as_vec(),
        m.try_forward_eval(x).unwrap().as_vec()
    );
}

#[test]
fn small_nextvlad_2018_describes_the_published_architecture() {
    let d = <SmallNeXtVlad2018Model<f32, Cpu> as VideoModel<f32, Cpu>>::describe();
    assert!(d.frame_mask);
    assert_eq!(d.dropout, 0.5);
    assert_eq!((d.hidden, d.hidden_batch_norm, d.hidden_relu6), (Some(32), true, false));
    assert_eq!((d.after_pooling, d.gating_reduction), (AfterPooling::SeContextGating, Some(8)));
    assert_eq!((d.classifier, d.classifier_l2), (ClassifierKind::Logistic, 1e-5));
    const { assert!(<SmallNeXtVlad2018Model<f32, Cpu> as VideoModel<f32, Cpu>>::READS_FRAMES_IN_ORDER) };
    // The 2018 model's pieces, by checkpoint key.
    let dev = loupe::device::cpu_seeded(6);
    let m = dev.build_module::<SmallNeXtVlad2018, f32>();
    let names: Vec<String> = named_params(&m).into_iter().map(|p| p.name).collect();
    for key in [
        "rgb.vlad_bn.scale",
        "audio.centers",
        "dropout.seed",
        "dropout.steps",
        "hidden.weight",
        "hidden.bn.scale",
        "gating.squeeze_weight",
        "gating.bn.scale",
        "gating.excite_weight",
        "classifier.weight",
    ] {
        assert!(names.iter().any(|n| n == key), "{key} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n == "hidden.bias"), "the hidden layer has no bias");
    // The existing early-fusion `small-nextvlad` keeps sampling frames.
    const { assert!(!<SmallNeXtVladModel<f32, Cpu> as VideoModel<f32, Cpu>>::READS_FRAMES_IN_ORDER) };
}

#[test]
fn dropout_acts_in_training_only() {
    let dev = loupe::device::cpu_seeded(7);
    let mut m = dev.build_module::<SmallNeXtVlad2018, f64>();
    let x: Tensor<(usize, Const<10>, Const<24>), f64, _> = dev.sample_normal_like(&(4, Const, Const));
    let eval = m.try_forward_eval(x.clone()).unwrap().as_vec();
    assert_eq!(m.try_forward_eval(x.clone()).unwrap().as_vec(), eval, "evaluation is deterministic");
    // Two training passes from the same state differ only by their dropout masks.
    let mut twin = m.clone();
    let a = m.try_forward_train(x.clone().traced(m.alloc_grads())).unwrap().as_vec();
    let b = m.try_forward_train(x.clone().traced(m.alloc_grads())).unwrap().as_vec();
    assert_ne!(a, b);
    assert_eq!(twin.try_forward_train(x.clone().traced(twin.alloc_grads())).unwrap().as_vec(), a);
    assert_eq!(m.dropout.steps.as_vec(), [2.0]);
}

/// The published model's parameter count: NeXtVLADs, hidden layer and SE Context Gating
/// (what the README calls "without the classifier"), plus the logistic classifier.
#[test]
fn nextvlad_has_the_published_size() {
    let total = count_params::<f32, Cpu, NeXtVladModel<f32, Cpu>>();
    let classifier = count_params::<f32, Cpu, nn::Logistic<2048, 3862, f32, Cpu>>();
    assert_eq!(classifier, 2048 * 3862 + 3862);
    let rgb = count_params::<f32, Cpu, nn::NeXtVladPooling<1024, 2048, 8, 128, 1024, 32768, f32, Cpu>>();
    let audio = count_params::<f32, Cpu, nn::NeXtVladPooling<128, 256, 4, 64, 256, 4096, f32, Cpu>>();
    // No input batch norm: the frames go to the NeXtVLADs as they are.
    let hidden = (32768 + 4096) * 2048 + 2 * 2048;
    let gating = 2 * 2048 * 256 + 2 * 256;
    assert_eq!(total, rgb + audio + hidden + gating + classifier);
    // The paper's eq. 9 for the rgb stream with the hidden layer, "71M+" (section 3.2):
    // λN(N + G + K(G + (H + 1)/G)) with N = 1024, λ = 2, G = 8, K = 128, H = 2048.
    let eq9 = 2.0 * 1024.0 * (1024.0 + 8.0 + 128.0 * (8.0 + 2049.0 / 8.0));
    assert!((71e6..72e6).contains(&eq9), "{eq9}");
    // Table 1 lists this configuration at 89M.
    assert!((88.5e6..89.5e6).contains(&(total as f64)), "{total}");
    assert_eq!(NeXtVlad::FRAMES, 300);
    assert_eq!((total, total - classifier), (88_889_378, 80_976_140));
    // The final submission's single model (section 4.4): "79M".
    let final_model = count_params::<f32, Cpu, NeXtVlad112Model<f32, Cpu>>();
    assert_eq!((final_model, final_model - classifier), (78_643_170, 70_729_932));
}

/// `input = raw_frames`: the frames reach the NeXtVLADs as they are.
#[video_model(
    input = raw_frames,
    frames = 6,
    frame_mask = true,
    streams = [
        rgb(features = 8, pooling = nextvlad(clusters = 3, groups = 4, expansion = 2)),
        audio(features = 4, pooling = nextvlad(clusters = 2, groups = 2, expansion = 2)),
    ],
    hidden = fc(size = 8, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 4),
    classifier = logistic,
    classes = 5,
)]
struct RawNextVlad;

#[test]
fn raw_frames_equal_the_layers_composed_by_hand() {
    use loupe::model::InputKind;
    let d = <RawNextVladModel<f64, Cpu> as VideoModel<f64, Cpu>>::describe();
    assert_eq!(d.input, InputKind::RawFrames);
    assert_eq!(serde_json::to_value(&d).unwrap()["input"], "raw_frames");
    let dev = loupe::device::cpu_seeded(8);
    let mut m = dev.build_module::<RawNextVlad, f64>();
    // No input layer's tensors: no L2 normalisation, no batch norm.
    assert!(named_params(&m).iter().all(|p| !p.name.starts_with("input.")));
    // A few training steps, so that the running averages are not the initial ones.
    for _ in 0..3 {
        let x: Tensor<(usize, Const<6>, Const<12>), f64, _> = dev.sample_normal_like(&(4, Const, Const));
        let _ = m.try_forward_train_lengths(x.traced(m.alloc_grads()), &[6, 2, 4, 1]).unwrap();
    }
    // Frames far from unit norm: an L2 normalisation or a batch norm would change them.
    let x: Tensor<(usize, Const<6>, Const<12>), f64, _> = dev.sample_normal_like(&(3, Const, Const)) * 5.0;
    let lengths = [6, 3, 1];
    let mask = nn::valid_frame_mask(&dev, &lengths, (3, Const::<6>));
    let rgb = m.rgb.forward((nn::Stream::<0, 8>.forward(x.clone()), mask.clone()));
    let audio = m.audio.forward((nn::Stream::<8, 4>.forward(x.clone()), mask));
    let (rgb, audio) = (rgb.as_vec(), audio.as_vec());
    let pooled: Vec<f64> =
        (0..3).flat_map(|v| [&rgb[v * 12..v * 12 + 12], &audio[v * 8..v * 8 + 8]].concat()).collect();
    assert_eq!(m.try_representation(x.clone(), &lengths, Layer::Pooled).unwrap().unwrap().as_vec(), pooled);
    let pooled: Tensor<(usize, Const<20>), f64, _> = dev.tensor_from_vec(pooled, (3, Const));
    let by_hand = m.classifier.forward(m.gating.forward(m.hidden.forward(pooled)));
    assert_eq!(m.try_forward_eval_lengths(x.clone(), &lengths).unwrap().as_vec(), by_hand.as_vec());
    // Training: the same composition with batch statistics, on a copy of the layers.
    let mut twin = m.clone();
    let y = m.try_forward_train_lengths(x.clone().traced(m.alloc_grads()), &lengths).unwrap().as_vec();
    let mask = nn::valid_frame_mask(&dev, &lengths, (3, Const::<6>));
    let rgb = twin.rgb.forward_mut((nn::Stream::<0, 8>.forward(x.clone()), mask.clone())).as_vec();
    let audio = twin.audio.forward_mut((nn::Stream::<8, 4>.forward(x), mask)).as_vec();
    let pooled: Vec<f64> =
        (0..3).flat_map(|v| [&rgb[v * 12..v * 12 + 12], &audio[v * 8..v * 8 + 8]].concat()).collect();
    let pooled: Tensor<(usize, Const<20>), f64, _> = dev.tensor_from_vec(pooled, (3, Const));
    let by_hand = twin.classifier.forward_mut(twin.gating.forward_mut(twin.hidden.forward_mut(pooled)));
    assert_eq!(y, by_hand.as_vec());
}
