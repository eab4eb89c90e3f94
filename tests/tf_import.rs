//! TensorFlow checkpoints written by the original training code (the paper's WILLOW
//! `train.py` and the YouTube-8M starter code, `tests/fixtures/tf-checkpoints/`) or with
//! the variables of Lin et al.'s released NeXtVLAD code (`nextvlad-2018`, written by
//! `tests/reference/make_nextvlad_checkpoint.py`), read and imported into models declared
//! here with `#[video_model]` or taken from the zoo: each predicts what the TensorFlow
//! graph predicted (`expected.npz`) to 1e-5 relative. Damaged
//! checkpoints and checkpoints of another architecture are typed errors naming the file,
//! entry and shapes.

mod common;

use std::path::{Path, PathBuf};

use common::npz::read_npz;
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::tf_checkpoint::{
    import_checkpoint, model_tensors, Convention, Mapping, Rule, TfCheckpoint, TfCheckpointError,
    TfImportError, Transform,
};
use loupe::video_model;

/// WILLOW `NetVLADModelLF` with the fixture's flags (folder README): 6 frames, 8 / 4
/// clusters, hidden 16, gating, MoE(2), probability gating, 20 classes.
#[video_model(
    frames = 6,
    streams = [
        rgb(features = 1024, pooling = netvlad(clusters = 8)),
        audio(features = 128, pooling = netvlad(clusters = 4)),
    ],
    hidden = 16,
    after_pooling = context_gating,
    classifier = moe(experts = 2, l2 = 1e-6),
    after_classifier = context_gating,
    classes = 20,
)]
pub struct WillowGatedNetVlad;

/// The starter code's video-level `MoeModel`, 2 mixtures, 20 classes.
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = moe(experts = 2, l2 = 1e-8),
    classes = 20,
)]
pub struct StarterMoe;

/// The starter code's video-level `LogisticModel`, 20 classes.
#[video_model(
    input = video_level,
    streams = [mean_rgb(features = 1024), mean_audio(features = 128)],
    classifier = logistic(l2 = 1e-8),
    classes = 20,
)]
pub struct StarterLogistic;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf-checkpoints").join(name)
}

/// A scratch copy of a fixture folder (to damage).
fn copy_fixture(name: &str, tag: &str) -> common::ScratchDir {
    let dir = common::scratch_dir(&format!("tf-import-{tag}"));
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn assert_relative(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let rel = (a - e).abs() / e.abs().max(1e-30);
        assert!(rel <= 1e-5, "{what}[{i}]: loupe {a}, TensorFlow {e} (relative {rel:e})");
    }
}

fn mapping_for<M: VideoModel<f32, Cpu>>(model: &M, convention: Convention) -> Mapping {
    let names: Vec<String> = model_tensors(model).into_iter().map(|t| t.name).collect();
    Mapping::builtin(convention, &M::describe(), &names)
}

/// Imports fixture `name` into a fresh `B` and returns the model with its import.
fn import<B>(name: &str, convention: Convention) -> (B::Built, loupe::tf_checkpoint::Imported<B::Built>)
where
    B: BuildOnDevice<Cpu, f32>,
    B::Built: VideoModel<f32, Cpu> + Clone,
{
    let dev = loupe::device::cpu_seeded(0);
    let mut model = dev.build_module::<B, f32>();
    let ckpt = TfCheckpoint::open(&fixture(name)).unwrap();
    let mapping = mapping_for(&model, convention);
    let imported = import_checkpoint(&ckpt, &mapping, &mut model).unwrap();
    (model, imported)
}

#[test]
fn willow_gated_netvlad_predicts_what_tensorflow_predicted() {
    let (model, imported) = import::<WillowGatedNetVlad>("willow-gated-netvlad", Convention::Willow);
    assert_eq!(imported.step, 150);
    assert!(imported.plan.adam && imported.moments.is_some());
    let inputs = read_npz(&fixture("willow-gated-netvlad/inputs.npz"));
    let expected = read_npz(&fixture("willow-gated-netvlad/expected.npz"));
    let frames = &inputs["video_matrix"];
    assert_eq!(frames.shape, [4, 6, 1152]);
    let dev = loupe::device::cpu_seeded(0);
    let x: Tensor<(usize, Const<6>, Const<1152>), f32, _> =
        dev.tensor_from_vec(frames.f32s(), (4, Const, Const));
    let p = model.try_forward_eval(x).unwrap();
    assert_relative(&p.as_vec(), &expected["predictions"].f32s(), "predictions");
}

#[test]
fn starter_video_moe_and_logistic_predict_what_tensorflow_predicted() {
    let dev = loupe::device::cpu_seeded(0);
    for name in ["starter-video-moe", "starter-video-logistic"] {
        let inputs = read_npz(&fixture(&format!("{name}/inputs.npz")));
        let expected = read_npz(&fixture(&format!("{name}/expected.npz")));
        let x: Tensor<(usize, Const<1>, Const<1152>), f32, _> =
            dev.tensor_from_vec(inputs["video_matrix"].f32s(), (4, Const, Const));
        let p = if name.ends_with("moe") {
            let (model, imported) = import::<StarterMoe>(name, Convention::Starter);
            assert_eq!((imported.step, imported.moments.is_some()), (20, true));
            model.try_forward_eval(x).unwrap().as_vec()
        } else {
            let (model, imported) = import::<StarterLogistic>(name, Convention::Starter);
            assert_eq!((imported.step, imported.moments.is_some()), (20, true));
            model.try_forward_eval(x).unwrap().as_vec()
        };
        assert_relative(&p, &expected["predictions"].f32s(), name);
    }
}

/// The Adam slots land on the moments under the same transform as their variable: the
/// dummy gate's first moment is column `c * 3 + 2` of `gates/weights/Adam`.
#[test]
fn adam_moments_follow_their_variables() {
    let (_, imported) = import::<StarterMoe>("starter-video-moe", Convention::Starter);
    let (m, v) = imported.moments.unwrap();
    let ckpt = TfCheckpoint::open(&fixture("starter-video-moe")).unwrap();
    let slot = ckpt.read("tower/gates/weights/Adam").unwrap().to_f64();
    let dummy = m.classifier.dummy_gate_weight.as_vec();
    for (i, c) in [(0, 0), (5, 7), (1151, 19)] {
        assert_eq!(dummy[i * 20 + c], slot[i * 60 + c * 3 + 2] as f32);
    }
    let second = ckpt.read("tower/experts/biases/Adam_1").unwrap().to_f64();
    let got: Vec<f64> = v.classifier.expert_bias.as_vec().iter().map(|&x| x as f64).collect();
    assert_eq!(got, second.iter().map(|&x| x as f32 as f64).collect::<Vec<_>>());
}

#[test]
fn a_checkpoint_of_another_architecture_names_every_variable_with_both_shapes() {
    let dev = loupe::device::cpu_seeded(0);
    // WILLOW's checkpoint into the starter MoE: its gates exist (16 x 60, the model wants
    // 1152 inputs), everything else is unused.
    let mut model = dev.build_module::<StarterMoe, f32>();
    let ckpt = TfCheckpoint::open(&fixture("willow-gated-netvlad")).unwrap();
    let before = model.classifier.expert_bias.as_vec();
    let err = import_checkpoint(&ckpt, &mapping_for(&model, Convention::Willow), &mut model).unwrap_err();
    let TfImportError::Mismatch { problems, .. } = &err else { panic!("{err}") };
    let text = err.to_string();
    assert!(
        text.contains(
            "mis-shaped: TF `gates/weights` [16, 60] cannot fill `classifier.gate_weight` [1152, 20, 2]"
        ),
        "{text}"
    );
    assert!(text.contains("unused: TF variable `hidden1_weights` [8704, 16]"), "{text}");
    assert!(text.contains("unused: TF variable `input_bn/moving_mean` [1152]"), "{text}");
    assert!(!text.contains("/Adam"), "slots are reported with their variable: {text}");
    assert!(problems.len() >= 20, "{problems:?}");
    assert_eq!(model.classifier.expert_bias.as_vec(), before, "a failed import leaves the model unchanged");

    // The starter checkpoint into WILLOW's model: everything is missing.
    let mut model = dev.build_module::<WillowGatedNetVlad, f32>();
    let ckpt = TfCheckpoint::open(&fixture("starter-video-moe")).unwrap();
    let err = import_checkpoint(&ckpt, &mapping_for(&model, Convention::Willow), &mut model).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "missing: TF variable `video_VLAD/cluster_weights` (for `rgb.assignment.weights` [1024, 8])"
        ),
        "{text}"
    );
    assert!(text.contains("unused: TF variable `tower/experts/weights` [1152, 40]"), "{text}");
}

#[test]
fn a_user_mapping_can_transpose_and_must_cover_every_tensor() {
    let dev = loupe::device::cpu_seeded(0);
    let mut model = dev.build_module::<StarterLogistic, f32>();
    let ckpt = TfCheckpoint::open(&fixture("starter-video-logistic")).unwrap();
    // A transpose of a [1152, 20] variable cannot fill a [1152, 20] tensor; the bias is unmapped.
    let mapping = Mapping {
        map: vec![Rule {
            tf: "tower/fully_connected/weights".into(),
            loupe: "classifier.weight".into(),
            transform: Transform::Transpose,
        }],
    };
    let text = import_checkpoint(&ckpt, &mapping, &mut model).unwrap_err().to_string();
    assert!(text.contains("TF `tower/fully_connected/weights` [1152, 20] cannot fill `classifier.weight` [1152, 20] (transpose)"), "{text}");
    assert!(text.contains("missing: no TF variable is mapped to `classifier.bias` [20]"), "{text}");
    assert!(text.contains("unused: TF variable `tower/fully_connected/biases` [20]"), "{text}");
}

/// `small-nextvlad-2018` with the input stage of the other frame-level models (L2 + input
/// batch norm): the released code has no `input_bn`.
#[video_model(
    frames = 10,
    frame_mask = true,
    streams = [
        rgb(features = 16, pooling = nextvlad(clusters = 4, groups = 4, expansion = 2)),
        audio(features = 8, pooling = nextvlad(clusters = 2, groups = 2, expansion = 2)),
    ],
    dropout = 0.5,
    hidden = fc(size = 32, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 8),
    classifier = logistic(l2 = 1e-5),
    classes = 10,
)]
pub struct NormalisedNeXtVlad2018;

/// `small-nextvlad-2018` with 8 rgb clusters instead of 4.
#[video_model(
    input = raw_frames,
    frames = 10,
    frame_mask = true,
    streams = [
        rgb(features = 16, pooling = nextvlad(clusters = 8, groups = 4, expansion = 2)),
        audio(features = 8, pooling = nextvlad(clusters = 2, groups = 2, expansion = 2)),
    ],
    dropout = 0.5,
    hidden = fc(size = 32, batch_norm = true, relu6 = false),
    after_pooling = context_gating(reduction = 8),
    classifier = logistic(l2 = 1e-5),
    classes = 10,
)]
pub struct WiderNeXtVlad2018;

/// `max |a - e| <= 1e-5 max |e|`: for intermediate layers, whose values cross zero.
fn assert_scaled(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    let scale = expected.iter().fold(0f32, |m, e| m.max(e.abs()));
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= 1e-5 * scale, "{what}[{i}]: loupe {a}, TensorFlow {e} (scale {scale})");
    }
}

/// Lin et al.'s NeXtVLADModel (their variable names under `tower/`, the starter
/// convention) into the zoo's `small-nextvlad-2018`: the frames as they are, masked past
/// each length, per-stream NeXtVLADs, hidden + batch norm, SE Context Gating, logistic.
/// Every layer agrees with TensorFlow's evaluation forward: f32 on both sides, summed in
/// other orders (numpy in float64 agrees with TF to 1.6e-7 relative: the script checks
/// it); 1e-5 leaves room for the batch norms' amplification of rounding.
#[test]
fn nextvlad_2018_predicts_what_tensorflow_predicted() {
    use loupe::model::Layer;
    use loupe::zoo::SmallNeXtVlad2018;
    let ckpt = TfCheckpoint::open(&fixture("nextvlad-2018")).unwrap();
    assert_eq!(Convention::detect(ckpt.entries().map(|e| e.name.as_str())), Convention::Starter);
    let (model, imported) = import::<SmallNeXtVlad2018>("nextvlad-2018", Convention::Starter);
    assert_eq!((imported.step, imported.moments.is_some()), (3, true));
    let row = |loupe: &str| imported.plan.rows.iter().find(|r| r.loupe == loupe).unwrap().clone();
    let expansion = row("rgb.expansion_weights");
    assert_eq!(
        (expansion.tf.as_str(), expansion.tf_shape.as_slice()),
        ("tower/video_VLAD/fully_connected/weights", &[16, 32][..])
    );
    assert_eq!(row("audio.attention_bias").tf, "tower/audio_VLAD/fully_connected_1/biases");
    assert_eq!(
        (row("audio.centers").tf_shape, row("audio.centers").transform),
        (vec![1, 8, 2], Transform::Reshape)
    );
    assert_eq!(row("gating.squeeze_weight").tf, "tower/gating_weights_1");
    assert_eq!(row("classifier.weight").tf, "tower/fully_connected/weights");
    // The dropout has no TF variable: its pass count continues from the step, its seed
    // stays the one it was built with.
    assert_eq!(
        (row("dropout.steps").transform, row("dropout.seed").transform),
        (Transform::Step, Transform::Keep)
    );
    let built = loupe::device::cpu_seeded(0).build_module::<SmallNeXtVlad2018, f32>();
    assert_eq!(model.dropout.steps.as_vec(), [3.0]);
    assert_eq!(model.dropout.seed.as_vec(), built.dropout.seed.as_vec());

    let inputs = read_npz(&fixture("nextvlad-2018/inputs.npz"));
    let expected = read_npz(&fixture("nextvlad-2018/expected.npz"));
    assert_eq!(inputs["video_matrix"].shape, [4, 10, 24]);
    let lengths: Vec<usize> = inputs["num_frames"].values.iter().map(|&n| n as usize).collect();
    assert_eq!(lengths, [10, 7, 3, 1]);
    let dev = loupe::device::cpu_seeded(0);
    let x: Tensor<(usize, Const<10>, Const<24>), f32, _> =
        dev.tensor_from_vec(inputs["video_matrix"].f32s(), (4, Const, Const));
    let p = model.try_forward_eval_lengths(x.clone(), &lengths).unwrap();
    assert_relative(&p.as_vec(), &expected["predictions"].f32s(), "predictions");
    for (layer, key) in [(Layer::Pooled, "pooled"), (Layer::Hidden, "hidden"), (Layer::Gated, "gated")] {
        let got = model.try_representation(x.clone(), &lengths, layer).unwrap().unwrap();
        assert_scaled(&got.as_vec(), &expected[key].f32s(), key);
    }
    // The frames past each length carry noise in the fixture: without the lengths (every
    // frame valid) the predictions differ.
    let unmasked = model.try_forward_eval(x).unwrap().as_vec();
    assert!(unmasked.iter().zip(expected["predictions"].f32s()).any(|(a, e)| (a - e).abs() > 1e-3));
}

/// The released checkpoint into a model it does not fit: an input batch norm the release
/// has not (missing variables), 8 rgb clusters where it has 4 (wrong shapes, both named).
#[test]
fn nextvlad_2018_into_another_architecture_names_variable_and_shapes() {
    let dev = loupe::device::cpu_seeded(0);
    let ckpt = TfCheckpoint::open(&fixture("nextvlad-2018")).unwrap();
    let mut model = dev.build_module::<NormalisedNeXtVlad2018, f32>();
    let err = import_checkpoint(&ckpt, &mapping_for(&model, Convention::Starter), &mut model).unwrap_err();
    let TfImportError::Mismatch { problems, .. } = &err else { panic!("{err}") };
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert_eq!(
        problems[0],
        "missing: TF variable `tower/input_bn/gamma` (for `input.bn.scale` [24]) is not in the checkpoint"
    );
    assert!(problems.iter().all(|p| p.starts_with("missing: TF variable `tower/input_bn/")), "{problems:?}");

    let mut model = dev.build_module::<WiderNeXtVlad2018, f32>();
    let before = model.rgb.centers.as_vec();
    let text = import_checkpoint(&ckpt, &mapping_for(&model, Convention::Starter), &mut model)
        .unwrap_err()
        .to_string();
    for problem in [
        "mis-shaped: TF `tower/video_VLAD/cluster_weights` [32, 16] cannot fill `rgb.assignment_weights` [32, 32] (identity)",
        "mis-shaped: TF `tower/video_VLAD/cluster_bn/gamma` [16] cannot fill `rgb.assignment_bn.scale` [32] (identity)",
        "mis-shaped: TF `tower/video_VLAD/cluster_weights2` [1, 8, 4] cannot fill `rgb.centers` [64] (reshape)",
        "mis-shaped: TF `tower/video_VLAD/vlad_bn/beta` [32] cannot fill `rgb.vlad_bn.shift` [64] (identity)",
        "mis-shaped: TF `tower/hidden1_weights` [48, 32] cannot fill `hidden.weight` [80, 32] (identity)",
    ] {
        assert!(text.contains(problem), "no `{problem}` in {text}");
    }
    assert_eq!(model.rgb.centers.as_vec(), before, "a failed import leaves the model unchanged");
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_checkpoints_are_typed_errors_naming_file_and_entry() {
    // A flipped byte in the index's first data block: its CRC32C fails.
    let dir = copy_fixture("starter-video-moe", "index");
    let index = dir.join("model.ckpt-20.index");
    flip_byte(&index, 12);
    let err = TfCheckpoint::open(&dir).unwrap_err();
    assert!(matches!(err, TfCheckpointError::Table { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("model.ckpt-20.index") && text.contains("CRC32C mismatch"), "{text}");

    // A truncated index: no footer magic.
    let bytes = std::fs::read(fixture("starter-video-moe/model.ckpt-20.index")).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() - 10]).unwrap();
    let text = TfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(text.contains("bad magic"), "{text}");
    std::fs::write(&index, &bytes[..20]).unwrap();
    let text = TfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(text.contains("shorter than the 48-byte footer"), "{text}");

    // A flipped byte in the data shard: the tensor holding it fails its CRC32C; its
    // neighbours still read.
    let dir = copy_fixture("starter-video-moe", "shard");
    let ckpt = TfCheckpoint::open(&dir).unwrap();
    let entry = ckpt.entry("tower/experts/weights").unwrap().clone();
    flip_byte(&ckpt.shard_path(0), entry.offset as usize + 100);
    let err = ckpt.read("tower/experts/weights").unwrap_err();
    assert!(matches!(err, TfCheckpointError::Shard { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("model.ckpt-20.data-00000-of-00001")
            && text.contains("`tower/experts/weights`")
            && text.contains("CRC32C mismatch"),
        "{text}"
    );
    assert!(ckpt.read("tower/experts/biases").is_ok());
    let mut model = loupe::device::cpu_seeded(0).build_module::<StarterMoe, f32>();
    let mapping = mapping_for(&model, Convention::Starter);
    let text = import_checkpoint(&ckpt, &mapping, &mut model).unwrap_err().to_string();
    assert!(text.contains("CRC32C mismatch"), "{text}");

    // A truncated shard: entries past its end.
    let shard = ckpt.shard_path(0);
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::write(&shard, &std::fs::read(&shard).unwrap()[..(len / 2) as usize]).unwrap();
    let last = ckpt.entries().max_by_key(|e| e.offset).unwrap().name.clone();
    let text = ckpt.read(&last).unwrap_err().to_string();
    assert!(text.contains("past the end of the") && text.contains(&format!("`{last}`")), "{text}");

    // A missing shard.
    std::fs::remove_file(&shard).unwrap();
    let err = TfCheckpoint::open(&dir).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TfCheckpointError::Shard { .. }) && text.contains("data shard missing"), "{text}");
    assert!(text.contains("model.ckpt-20.data-00000-of-00001"), "{text}");

    // No checkpoint at all.
    let text = TfCheckpoint::open(&dir.join("nothing")).unwrap_err().to_string();
    assert!(text.contains("not a TensorFlow checkpoint"), "{text}");
}

/// Every entry of each fixture is listed with the dtype and shape TensorFlow reported
/// (`variables.json`, from `tf.train.list_variables`), and each reads with its CRC32C.
#[test]
fn every_variable_reads_with_the_listed_dtype_and_shape() {
    for name in ["willow-gated-netvlad", "starter-video-moe", "starter-video-logistic", "nextvlad-2018"] {
        let listed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("{name}/variables.json"))).unwrap(),
        )
        .unwrap();
        let ckpt = TfCheckpoint::open(&fixture(name)).unwrap();
        let vars = listed["variables"].as_array().unwrap();
        assert_eq!(ckpt.entries().count(), vars.len(), "{name}");
        for v in vars {
            let entry = ckpt.entry(v["name"].as_str().unwrap()).unwrap();
            assert_eq!(entry.dtype.name(), v["dtype"].as_str().unwrap());
            let shape: Vec<usize> =
                v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            assert_eq!(entry.shape, shape, "{}", entry.name);
            assert_eq!(ckpt.read(&entry.name).unwrap().to_f64().len(), shape.iter().product::<usize>());
        }
        assert_eq!(ckpt.global_step().unwrap(), listed["global_step"].as_u64());
    }
}

/// Rewrites the first data block of `index` (`len` bytes at offset 0) with `edit` and a
/// valid trailer, so that only the edited content is wrong.
fn edit_first_block(index: &Path, len: usize, edit: impl Fn(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(index).unwrap();
    edit(&mut bytes);
    // The trailer's CRC32C covers the block and its compression byte.
    let scratch = index.with_extension("crc");
    std::fs::write(&scratch, &bytes[..len + 1]).unwrap();
    let crc = loupe::train::checkpoint::FileDigest::of_file(&scratch).unwrap().crc32c;
    bytes[len + 1..len + 5].copy_from_slice(&loupe::tf_checkpoint::table::mask_crc(crc).to_le_bytes());
    std::fs::write(index, bytes).unwrap();
}

#[test]
fn unsupported_dtypes_and_compressed_blocks_are_named() {
    // starter-video-logistic's index: one data block of 288 bytes at offset 0, whose second
    // entry is `beta1_power` with its dtype byte (1, float) at 24.
    let dir = copy_fixture("starter-video-logistic", "dtype");
    let index = dir.join("model.ckpt-20.index");
    let original = std::fs::read(&index).unwrap();
    assert_eq!(
        (&original[12..23], original[23], original[24], original[288]),
        (&b"beta1_power"[..], 8, 1, 0)
    );
    edit_first_block(&index, 288, |b| b[24] = 7); // DT_STRING
    let err = TfCheckpoint::open(&dir).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TfCheckpointError::Entry { .. }), "{text}");
    assert!(text.contains("entry `beta1_power`: unsupported dtype 7"), "{text}");

    std::fs::write(&index, &original).unwrap();
    edit_first_block(&index, 288, |b| b[288] = 1); // snappy
    let text = TfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(text.contains("data block at offset 0: snappy-compressed blocks are not supported"), "{text}");
}
