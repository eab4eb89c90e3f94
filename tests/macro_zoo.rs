//! Every model of the zoo builds and trains: the small and quick-start ones run a
//! forward/backward pass here; the paper-size ones have their parameters counted from
//! their types, Gated NetVLAD is built for real, and their forward/backward test is
//! `#[ignore]`d (several GB and seconds per step on a CPU).

use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::zoo::{self, ModelVisitor, ZooModel};

/// Builds the model, runs a training step's forward and backward (loss: the summed
/// probabilities plus the classifier's L2 term) on `batch` random videos and an
/// evaluation pass; returns the parameter count.
struct Step<'a> {
    dev: &'a Cpu,
    batch: usize,
}

impl ModelVisitor<f32, Cpu> for Step<'_> {
    type Output = usize;
    fn visit<M: ZooModel<f32, Cpu>>(self) -> usize {
        let mut model = self.dev.build_module::<M, f32>();
        let shape = (self.batch, Default::default(), Default::default());
        #[allow(clippy::type_complexity)]
        let x: Tensor<(usize, <M::Model as VideoModel<f32, Cpu>>::Frames, _), f32, Cpu> =
            self.dev.sample_uniform_like(&shape);
        let y = model.try_forward_train(x.clone().traced(model.alloc_grads())).unwrap();
        assert_eq!(y.shape().0, self.batch);
        let probabilities = y.as_vec();
        assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)), "{probabilities:?}");
        let penalty = model.try_l2_penalty().unwrap();
        let (loss, tape) = y.sum().split_tape();
        let loss = loss.put_tape(tape).try_add(penalty).unwrap();
        let grads = loss.backward();
        let _ = grads;
        let eval = model.try_forward_eval(x).unwrap();
        assert!(eval.as_vec().iter().all(|p| p.is_finite()));
        model.num_params()
    }
}

/// Counts a model's parameters from its type, without allocating.
struct Count;

impl ModelVisitor<f32, Cpu> for Count {
    type Output = usize;
    fn visit<M: ZooModel<f32, Cpu>>(self) -> usize {
        loupe::model::count_params::<f32, Cpu, M::Model>()
    }
}

/// The variants sized for tests and the quick start.
fn is_small(name: &str) -> bool {
    name.starts_with("small-") || name.starts_with("quickstart-") || name.starts_with("fixture-")
}

fn small() -> impl Iterator<Item = &'static str> {
    zoo::NAMES.iter().copied().filter(|n| is_small(n))
}

fn paper() -> impl Iterator<Item = &'static str> {
    zoo::NAMES.iter().copied().filter(|n| !is_small(n))
}

#[test]
fn small_models_train_and_evaluate() {
    let dev = loupe::device::cpu_seeded(1);
    for name in small() {
        let params = zoo::visit(name, Step { dev: &dev, batch: 3 }).unwrap();
        assert!(params > 0, "{name}");
    }
}

#[test]
fn every_name_is_registered_once_and_describes_itself() {
    struct Describe;
    impl ModelVisitor<f32, Cpu> for Describe {
        type Output = loupe::model::ModelDescription;
        fn visit<M: ZooModel<f32, Cpu>>(self) -> Self::Output {
            M::Model::describe()
        }
    }
    let mut seen = std::collections::HashSet::new();
    for name in zoo::NAMES {
        assert!(seen.insert(*name), "{name} registered twice");
        let d = zoo::visit::<f32, Cpu, _>(name, Describe).unwrap();
        let features: usize = d.streams.iter().map(|s| s.features).sum();
        assert_eq!(features, if name.starts_with("small-") { 24 } else { 1152 }, "{name}");
    }
    assert!(zoo::visit::<f32, Cpu, _>("gated-netvald", Describe).is_none());
    assert_eq!(paper().count(), 27);
}

/// Trainable parameters of the paper-size models (batch norm running averages excluded).
/// Gated NetVLAD: hidden 278528x1024 + 1024 = 285.2M, MoE 1024x3862x(2+3) = 19.8M,
/// probability gating 3862^2 = 14.9M, Context Gating 1M, NetVLADs 0.56M, input BN 2304.
/// A change here changes checkpoints.
const PAPER_PARAMS: &[(&str, usize)] = &[
    ("avg-logistic", 4_455_190),
    ("avg-moe-cg", 23_584_556),
    // Two LSTM layers (1152+1024)x4096 + 4096 and 2048x4096 + 4096, MoE on 4096.
    ("lstm", 96_411_180),
    // Two GRU layers 3x1200x(1152+1200) + 3600 and 3x1200x2400 + 3600, MoE on 2400.
    ("gru", 63_466_124),
    ("soft-bow", 28_772_140),
    ("netfv", 305_415_340),
    ("netrvlad", 305_276_460),
    ("netvlad", 305_554_988),
    ("gated-soft-bow", 44_745_532),
    ("gated-netfv", 321_388_732),
    ("gated-netrvlad", 321_249_852),
    ("gated-netvlad", 321_528_380),
    ("netvlad-128", 162_669_740),
    ("netvlad-128-cg", 163_720_364),
    ("netvlad-128-glu", 164_768_940),
    ("netvlad-128-moe-cg", 177_592_508),
    ("gated-netvlad-128", 178_643_132),
    ("gated-netvlad-early", 338_338_108),
    ("netvlad-128-early", 171_074_604),
    // Lin et al. 2018: raw frames (no input batch norm), NeXtVLADs 4,313,096 (rgb) +
    // 112,388 (audio), hidden 36864x2048 + batch norm 2x2048, SE gating 2x2048x256 + 2x256,
    // logistic 2048x3862 + 3862.
    ("nextvlad", 88_889_378),
    // The final single model: K 112 / 56, reduction 16 ("79M", section 4.4).
    ("nextvlad-112", 78_643_170),
    // The starter code's video-level models: no input batch norm, nothing pooled.
    // Logistic 1152x3862 + 3862; MoE gates 1152x3862x3 (no bias), experts 1152x3862x2 + bias.
    ("video-logistic", 4_452_886),
    ("video-moe", 22_252_844),
    // Plus Context Gating on the 1152 inputs: 1152^2 + batch norm 2x1152.
    ("video-moe-cg", 23_582_252),
    // The 2017 vocabulary, C = 4716: gated-netvlad's count with the MoE's 1024 x C x 5 + 2C
    // and probability gating's C^2 + 2C at 4716 instead of 3862 classes.
    (
        "gated-netvlad-2017",
        321_528_380 + 1024 * 854 * 5 + 2 * 854 + (4716 * 4716 + 2 * 4716) - (3862 * 3862 + 2 * 3862),
    ),
    ("video-logistic-2017", 1152 * 4716 + 4716),
    ("video-moe-2017", 1152 * 4716 * 5 + 2 * 4716),
];

/// Counts every paper-size model's parameters from its type.
#[test]
fn paper_models_have_the_paper_sizes() {
    let names: Vec<&str> = paper().collect();
    let listed: Vec<&str> = PAPER_PARAMS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed);
    for (name, expected) in PAPER_PARAMS {
        let params = zoo::visit(name, Count).unwrap();
        assert_eq!(params, *expected, "{name}");
    }
}

/// The released architecture really builds at paper size (321.5M parameters, 1.3 GB of
/// `f32`), and the built count agrees with the count from the type.
#[test]
fn gated_netvlad_builds_at_paper_size() {
    let dev = loupe::device::cpu_seeded(2);
    let model = dev.build_module::<zoo::GatedNetVlad, f32>();
    assert_eq!(model.num_params(), 321_528_380);
}

#[test]
#[ignore = "paper sizes: several GB and minutes on a CPU; run with --ignored"]
fn paper_models_train_and_evaluate() {
    let dev = loupe::device::cpu_seeded(3);
    for name in paper() {
        zoo::visit(name, Step { dev: &dev, batch: 2 }).unwrap();
    }
}

/// The description names every architectural choice, so that `loupe models` can show it
/// and a checkpoint of another variant is refused: the early fusion's pooling, the hidden
/// layer's batch norm and ReLU6, video-level input.
#[test]
fn descriptions_name_early_fusion_pooling_hidden_options_and_input() {
    use loupe::model::{Fusion, InputKind, PoolingDescription, PoolingKind};
    let d = <zoo::GatedNetVladEarly as BuildOnDevice<Cpu, f32>>::Built::describe();
    assert_eq!(d.fusion, Fusion::Early);
    let netvlad = PoolingDescription {
        kind: PoolingKind::NetVlad,
        clusters: Some(256),
        size: None,
        output: 256 * 1152,
    };
    assert_eq!(d.early_pooling, Some(netvlad));
    assert_eq!(d.pooling_summary(), "rgb + audio netvlad(256)");
    assert!(d.streams.iter().all(|s| s.pooling == PoolingKind::None));
    assert_eq!(
        (d.input, d.hidden, d.hidden_batch_norm, d.hidden_relu6),
        (InputKind::Frames, Some(1024), false, false)
    );

    let d = <zoo::SmallLstm as BuildOnDevice<Cpu, f32>>::Built::describe();
    let lstm = PoolingDescription { kind: PoolingKind::Lstm, clusters: None, size: Some(8), output: 32 };
    assert_eq!(d.early_pooling, Some(lstm));
    assert_eq!(d.pooling_summary(), "rgb + audio lstm(8)");

    let d = <zoo::SmallSoftBow as BuildOnDevice<Cpu, f32>>::Built::describe();
    assert_eq!((&d.early_pooling, d.hidden_batch_norm, d.hidden_relu6), (&None, true, true));
    assert_eq!(d.pooling_summary(), "rgb soft_bow(32) + audio soft_bow(4)");

    let d = <zoo::VideoMoe as BuildOnDevice<Cpu, f32>>::Built::describe();
    assert_eq!(
        (d.input, d.fusion, d.frames, &d.early_pooling),
        (InputKind::VideoLevel, Fusion::None, 1, &None)
    );
    assert_eq!(d.pooling_summary(), "mean_rgb + mean_audio, not pooled");
    assert_eq!(d.classifier_l2, 1e-8);
}

/// The README's table of what each pooling costs ("The model zoo and what each pooling
/// costs"), formula by formula, against the parameters counted from the layers' types, at
/// D = 24 features, K = 4 clusters, H = 3 cells, G = 4 groups, expansion 2.
#[test]
fn readme_pooling_costs_match_the_layers() {
    use loupe::model::count_params;
    use loupe::nn;
    let (d, k, h, g, l) = (24usize, 4usize, 3usize, 4usize, 2usize);
    let rows: [(&str, usize, usize); 8] = [
        ("netvlad", count_params::<f32, Cpu, nn::NetVladPooling<24, 4, 96, f32, Cpu>>(), 2 * d * k + 2 * k),
        ("netrvlad", count_params::<f32, Cpu, nn::NetRvladPooling<24, 4, 96, f32, Cpu>>(), d * k + 2 * k),
        ("netfv", count_params::<f32, Cpu, nn::NetFvPooling<24, 4, 192, f32, Cpu>>(), 3 * d * k + 2 * k),
        ("soft_bow", count_params::<f32, Cpu, nn::SoftBowPooling<24, 4, f32, Cpu>>(), d * k + 2 * k),
        ("average", count_params::<f32, Cpu, nn::AveragePooling<24>>(), 0),
        (
            "lstm",
            count_params::<f32, Cpu, nn::LstmPooling<24, 3, 12, f32, Cpu>>(),
            4 * h * (d + h) + 4 * h + 8 * h * h + 4 * h,
        ),
        (
            "gru",
            count_params::<f32, Cpu, nn::GruPooling<24, 3, 6, f32, Cpu>>(),
            3 * h * (d + h) + 3 * h + 6 * h * h + 3 * h,
        ),
        (
            "nextvlad",
            count_params::<f32, Cpu, nn::NeXtVladPooling<24, 48, 4, 4, 16, 48, f32, Cpu>>(),
            l * d * d
                + l * d
                + g * (l * d + 1)
                + l * d * g * k
                + 2 * g * k
                + (l * d / g) * k
                + 2 * (l * d / g) * k,
        ),
    ];
    for (kind, counted, readme) in rows {
        assert_eq!(counted, readme, "{kind}");
    }
}

/// Every zoo model describes itself as `loupe models --json` did before the description's
/// kinds were enums (its output, committed): same values, same JSON.
#[test]
fn descriptions_serialise_as_before_the_kinds_were_enums() {
    struct Describe;
    impl ModelVisitor<f32, Cpu> for Describe {
        type Output = loupe::model::ModelDescription;
        fn visit<M: ZooModel<f32, Cpu>>(self) -> Self::Output {
            M::Model::describe()
        }
    }
    let lines = include_str!("fixtures/sidecars/models_main.jsonl");
    let mut names = Vec::new();
    for line in lines.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = entry["name"].as_str().unwrap();
        let ours = zoo::visit::<f32, Cpu, _>(name, Describe).unwrap();
        let theirs: loupe::model::ModelDescription =
            serde_json::from_value(entry["description"].clone()).unwrap();
        assert_eq!(ours, theirs, "{name}");
        assert_eq!(serde_json::to_value(&ours).unwrap(), entry["description"], "{name}");
        names.push(name.to_string());
    }
    assert_eq!(names, zoo::NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>());
}
