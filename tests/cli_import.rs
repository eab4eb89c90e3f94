//! `loupe import` and `loupe inspect-checkpoint` end to end on the TensorFlow fixtures
//! (`tests/fixtures/tf-checkpoints/`): the imported loupe checkpoint predicts what
//! TensorFlow predicted through `loupe predict` (video-level models; the Gated NetVLAD
//! with `--frame-sampling in-order`, the fixture's identity sampling, also through
//! `loupe embed` and through the written files), `train --resume` continues from it, and
//! damaged checkpoints exit with 1 and a message naming file and tensor.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::npz::read_npz;
use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;

fn loupe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loupe")).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The exit code and stderr of a failing command.
fn fails(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {} stderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf-checkpoints").join(name)
}

fn scratch(name: &str) -> common::ScratchDir {
    common::scratch_dir(&format!("cli-import-{name}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn import(model: &str, fixture_name: &str, train_dir: &Path) -> String {
    ok(loupe(&[
        "import",
        "--model",
        model,
        "--tf-checkpoint",
        s(&fixture(fixture_name)),
        "--train-dir",
        s(train_dir),
    ]))
}

/// `loupe predict` of the imported starter models on `inputs.tfrecord` gives TensorFlow's
/// probabilities (the CSV has 6 decimals: within 1e-5 relative or its rounding).
#[test]
fn imported_starter_models_predict_tensorflows_probabilities() {
    for (model, name) in
        [("fixture-video-moe", "starter-video-moe"), ("fixture-video-logistic", "starter-video-logistic")]
    {
        let dir = scratch(name);
        let said = import(model, name, &dir);
        assert!(said.contains("at step 20, with Adam's moments"), "{said}");
        let csv = dir.join("out.csv");
        let data = fixture(&format!("{name}/inputs.tfrecord"));
        ok(loupe(&[
            "predict",
            "--checkpoint",
            s(&dir.join("checkpoints")),
            "--input-data-pattern",
            s(&data),
            "--output-file",
            s(&csv),
            "--top-k",
            "20",
        ]));
        let worst = csv_error(name, &csv);
        assert!(worst <= 1.0, "{name}: {worst} times the tolerance");
        // eval runs on the same records (labels included).
        let metrics = ok(loupe(&[
            "eval",
            "--checkpoint",
            s(&dir.join("checkpoints")),
            "--eval-data-pattern",
            s(&data),
            "--json",
        ]));
        assert!(metrics.contains("\"videos\":4"), "{metrics}");
    }
}

/// The Gated NetVLAD written by `loupe import` holds TensorFlow's weights: loaded from
/// its files, it predicts the fixture's probabilities from the fixture's frames; `eval`
/// and `predict` run it on `inputs.tfrecord` (2017 `video_id` keys, 6 frames each).
#[test]
fn imported_gated_netvlad_checkpoint_holds_tensorflows_model() {
    let dir = scratch("willow");
    let said = import("fixture-gated-netvlad", "willow-gated-netvlad", &dir);
    assert!(said.contains("at step 150, with Adam's moments"), "{said}");
    let dev = common::device();
    let mut model = dev.build_module::<loupe::zoo::FixtureGatedNetVlad, f32>();
    let meta = loupe::train::checkpoint::load_checkpoint(
        &dir.join("checkpoints"),
        &<loupe::zoo::FixtureGatedNetVladModel<f32, Cpu> as VideoModel<f32, Cpu>>::describe(),
        &mut model,
        None,
    )
    .unwrap();
    assert_eq!((meta.step, meta.vocabulary_size), (150, 20));
    let inputs = read_npz(&fixture("willow-gated-netvlad/inputs.npz"));
    let expected = read_npz(&fixture("willow-gated-netvlad/expected.npz"))["predictions"].f32s();
    let x: Tensor<(usize, Const<6>, Const<1152>), f32, _> =
        dev.tensor_from_vec(inputs["video_matrix"].f32s(), (4, Const, Const));
    for (i, (a, e)) in model.try_forward_eval(x).unwrap().as_vec().iter().zip(&expected).enumerate() {
        assert!((a - e).abs() <= 1e-5 * e.abs(), "prediction {i}: {a} vs TF {e}");
    }
    let data = fixture("willow-gated-netvlad/inputs.tfrecord");
    let metrics = ok(loupe(&[
        "eval",
        "--checkpoint",
        s(&dir.join("checkpoints")),
        "--eval-data-pattern",
        s(&data),
        "--json",
    ]));
    assert!(metrics.contains("\"videos\":4"), "{metrics}");

    // inspect-checkpoint lists both sides.
    let tf = ok(loupe(&["inspect-checkpoint", s(&fixture("willow-gated-netvlad"))]));
    assert!(tf.lines().any(|l| l == "hidden1_weights float32 [8704, 16]"), "{tf}");
    assert!(tf.lines().any(|l| l == "global_step int32 []"), "{tf}");
    assert_eq!(tf.lines().count(), 76);
    let ours = ok(loupe(&["inspect-checkpoint", s(&dir)]));
    assert!(ours.lines().any(|l| l == "hidden.weight F32 [8704, 16]"), "{ours}");
    assert!(ours.lines().any(|l| l == "adam.0.classifier.gate_weight F32 [16, 20, 2]"), "{ours}");

    // A second import into the same directory is refused.
    let again = fails(loupe(&[
        "import",
        "--model",
        "fixture-gated-netvlad",
        "--tf-checkpoint",
        s(&fixture("willow-gated-netvlad")),
        "--train-dir",
        s(&dir),
    ]));
    assert!(again.contains("already holds a checkpoint"), "{again}");
}

/// The CSV of `loupe predict --top-k 20` against the fixture's TensorFlow `predictions`
/// (4 videos, 20 classes): the largest error of a score in units of the tolerance
/// (1e-5 relative, plus half the CSV's 6th decimal); every video and class present.
fn csv_error(name: &str, csv: &Path) -> f32 {
    let expected = read_npz(&fixture(&format!("{name}/expected.npz")))["predictions"].f32s();
    let ids = read_npz(&fixture(&format!("{name}/inputs.npz")))["video_id"].text.clone();
    assert_eq!(ids.len(), 4);
    let text = std::fs::read_to_string(csv).unwrap();
    let mut rows = 0;
    let mut worst = 0f32;
    for line in text.lines().skip(1) {
        let (id, pairs) = line.split_once(',').unwrap();
        let b = ids.iter().position(|i| *i == id).unwrap_or_else(|| panic!("unknown id {id} in {text}"));
        let tokens: Vec<&str> = pairs.split_whitespace().collect();
        assert_eq!(tokens.len(), 40, "{line}");
        for pair in tokens.chunks(2) {
            let (class, score): (usize, f32) = (pair[0].parse().unwrap(), pair[1].parse().unwrap());
            let e = expected[b * 20 + class];
            worst = worst.max((score - e).abs() / (5e-7 + 1e-5 * e.abs()));
        }
        rows += 1;
    }
    assert_eq!(rows, 4, "{text}");
    worst
}

/// An `.npy` file's float32 rows (version 1 header, little-endian, C order).
fn npy_rows(path: &Path) -> (usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..start]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let rows = header.split("'shape': (").nth(1).and_then(|d| d.split(',').next()).unwrap();
    let values = bytes[start..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (rows.trim().parse().unwrap(), values)
}

/// The released-model path: `loupe import`, then `loupe predict --frame-sampling in-order`
/// on `inputs.tfrecord` gives TensorFlow's probabilities for every video and class (the
/// fixture's eval graph fed each video's 6 frames in order), `loupe embed` with it gives
/// TensorFlow's `pooled` and `hidden` (gated) tensors, and `loupe eval` accepts it. The default
/// sampling (uniform with replacement, seeded per video) does not reproduce them.
#[test]
fn imported_gated_netvlad_reproduces_tensorflow_through_the_cli_in_order() {
    let name = "willow-gated-netvlad";
    let dir = scratch("willow-in-order");
    import("fixture-gated-netvlad", name, &dir);
    let checkpoint = dir.join("checkpoints");
    let data = fixture(&format!("{name}/inputs.tfrecord"));
    let predict = |csv: &Path, sampling: &[&str]| {
        let args = [
            &["predict", "--checkpoint", s(&checkpoint), "--input-data-pattern", s(&data)][..],
            &["--output-file", s(csv), "--top-k", "20", "--batch-size", "3"],
            sampling,
        ];
        ok(loupe(&args.concat()));
    };
    let in_order = dir.join("in-order.csv");
    predict(&in_order, &["--frame-sampling", "in-order"]);
    let worst = csv_error(name, &in_order);
    assert!(worst <= 1.0, "in order: {worst} times the tolerance");
    let default = dir.join("default.csv");
    predict(&default, &[]);
    let worst = csv_error(name, &default);
    assert!(worst > 10.0, "the default sampling matched TF's in-order outputs ({worst})");

    let expected = read_npz(&fixture(&format!("{name}/expected.npz")));
    let ids = read_npz(&fixture(&format!("{name}/inputs.npz")))["video_id"].text.clone();
    // TF's `hidden` is the MoE input, after Context Gating: loupe's `gated` layer.
    for (layer, size, tf) in [("pooled", 8704, "pooled"), ("gated", 16, "hidden")] {
        let npy = dir.join(format!("{layer}.npy"));
        ok(loupe(&[
            "embed",
            "--checkpoint",
            s(&checkpoint),
            "--input-data-pattern",
            s(&data),
            "--layer",
            layer,
            "--output",
            s(&npy),
            "--frame-sampling",
            "in-order",
        ]));
        let (rows, got) = npy_rows(&npy);
        assert_eq!((rows, got.len()), (4, 4 * size));
        let written = std::fs::read_to_string(dir.join(format!("{layer}.ids.txt"))).unwrap();
        assert_eq!(written.lines().collect::<Vec<_>>(), ids, "{layer}: ids in file order");
        let want = expected[tf].f32s();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, e)) in got.iter().zip(&want).enumerate() {
            assert!((a - e).abs() <= 1e-5 * scale, "{layer}[{}][{}]: {a} vs TF {e}", i / size, i % size);
        }
    }
    let metrics = ok(loupe(&[
        "eval",
        "--checkpoint",
        s(&checkpoint),
        "--eval-data-pattern",
        s(&data),
        "--frame-sampling",
        "in-order",
        "--json",
    ]));
    assert!(metrics.contains("\"videos\":4"), "{metrics}");
    let refused = loupe(&[
        "predict",
        "--checkpoint",
        s(&checkpoint),
        "--input-data-pattern",
        s(&data),
        "--frame-sampling",
        "sorted",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`in-order` or `random`"));
}

/// Lin et al.'s NeXtVLAD variables (`nextvlad-2018`) into the zoo's `small-nextvlad-2018`:
/// `--dry-run` shows each TF name against its loupe tensor, the dropout's rows without a
/// variable; the import writes a checkpoint at the TF step with Adam's moments.
#[test]
fn nextvlad_2018_imports_into_the_zoo_model() {
    let ckpt = fixture("nextvlad-2018");
    let plan =
        ok(loupe(&["import", "--model", "small-nextvlad-2018", "--tf-checkpoint", s(&ckpt), "--dry-run"]));
    for line in [
        "tower/video_VLAD/fully_connected/weights [16, 32] -> rgb.expansion_weights [16, 32] (identity)",
        "tower/audio_VLAD/fully_connected_1/biases [2] -> audio.attention_bias [2] (identity)",
        "tower/video_VLAD/cluster_weights2 [1, 8, 4] -> rgb.centers [32] (reshape)",
        "tower/audio_VLAD/vlad_bn/moving_variance [16] -> audio.vlad_bn.running_var [16] (identity)",
        "tower/gating_weights_1 [32, 4] -> gating.squeeze_weight [32, 4] (identity)",
        "tower/gating_weights_2 [4, 32] -> gating.excite_weight [4, 32] (identity)",
        "tower/fully_connected/weights [32, 10] -> classifier.weight [32, 10] (identity)",
        "(step) -> dropout.steps [1] (step)",
        "(keep) -> dropout.seed [1] (keep)",
        "step 3; Adam moments: imported",
    ] {
        assert!(plan.lines().any(|l| l == line), "no `{line}` in\n{plan}");
    }
    assert!(!plan.contains("problem"), "{plan}");
    let dir = scratch("nextvlad-2018");
    let said = import("small-nextvlad-2018", "nextvlad-2018", &dir);
    assert!(said.contains("at step 3, with Adam's moments"), "{said}");
    // Into the normalised-input NeXtVLAD of the zoo (early fusion, MoE): refused, exit 1.
    let err =
        fails(loupe(&["import", "--model", "small-nextvlad", "--tf-checkpoint", s(&ckpt), "--dry-run"]));
    assert!(err.contains("missing: TF variable `tower/input_bn/gamma` (for `input.bn.scale` [24])"), "{err}");
}

#[test]
fn dry_run_prints_the_mapping_and_print_spec_the_matching_spec() {
    let willow = fixture("willow-gated-netvlad");
    let plan = ok(loupe(&[
        "import",
        "--model",
        "fixture-gated-netvlad",
        "--tf-checkpoint",
        s(&willow),
        "--dry-run",
    ]));
    for line in [
        "gates/weights [16, 60] -> classifier.gate_weight [16, 20, 2] (moe_gates)",
        "gates/weights [16, 60] -> classifier.dummy_gate_weight [16, 20] (moe_dummy_gate)",
        "video_VLAD/cluster_weights2 [1, 1024, 8] -> rgb.centers [1024, 8] (reshape)",
        "input_bn/moving_variance [1152] -> input.bn.running_var [1152] (identity)",
        "(step) -> gating.bn.updates [1] (step)",
        "step 150; Adam moments: imported",
    ] {
        assert!(plan.lines().any(|l| l == line), "no `{line}` in\n{plan}");
    }
    // Into a model of other sizes: every problem listed, exit code 1.
    let err = fails(loupe(&[
        "import",
        "--model",
        "small-gated-netvlad",
        "--tf-checkpoint",
        s(&willow),
        "--dry-run",
    ]));
    assert!(err.contains("cannot fill `rgb.assignment.weights` [16, 8]"), "{err}");

    let spec = ok(loupe(&["import", "--print-spec", s(&willow)]));
    for part in [
        "rgb(features = 1024, pooling = netvlad(clusters = 8)),",
        "audio(features = 128, pooling = netvlad(clusters = 4)),",
        "hidden = 16,",
        "after_pooling = context_gating,",
        "classifier = moe(experts = 2)",
        "after_classifier = context_gating,",
        "classes = 20,",
    ] {
        assert!(spec.contains(part), "no `{part}` in\n{spec}");
    }
    let spec = ok(loupe(&["import", "--print-spec", s(&fixture("starter-video-logistic"))]));
    assert!(
        spec.contains("input = video_level")
            && spec.contains("classifier = logistic")
            && spec.contains("classes = 20,"),
        "{spec}"
    );
}

/// Adam's moments and the step come along: `train --resume` continues at step 21.
#[test]
fn train_resume_continues_from_an_imported_checkpoint() {
    let dir = scratch("resume");
    import("fixture-video-moe", "starter-video-moe", &dir);
    let data = fixture("starter-video-moe/inputs.tfrecord");
    let out = ok(loupe(&[
        "train",
        "--model",
        "fixture-video-moe",
        "--train-data-pattern",
        s(&data),
        "--train-dir",
        s(&dir),
        "--resume",
        "--max-steps",
        "21",
        "--batch-size",
        "4",
        "--quiet",
        "--json",
    ]));
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["steps"], 21, "{out}");
    assert!(dir.join("checkpoints/step-00000021.json").is_file());
}

fn damaged(tag: &str, damage: impl Fn(&Path)) -> String {
    let dir = scratch(tag);
    for entry in std::fs::read_dir(fixture("starter-video-moe")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    damage(&dir);
    fails(loupe(&[
        "import",
        "--model",
        "fixture-video-moe",
        "--tf-checkpoint",
        s(&dir),
        "--train-dir",
        s(&dir.join("out")),
    ]))
}

#[test]
fn damaged_checkpoints_exit_with_a_message_naming_file_and_tensor() {
    let flip = |path: PathBuf, at: u64| {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    };
    let err = damaged("index", |d| flip(d.join("model.ckpt-20.index"), 12));
    assert!(
        err.contains("model.ckpt-20.index: index table: block at offset 0")
            || err.contains("CRC32C mismatch"),
        "{err}"
    );
    let err = damaged("shard", |d| flip(d.join("model.ckpt-20.data-00000-of-00001"), 4000));
    assert!(
        err.contains("model.ckpt-20.data-00000-of-00001: tensor `") && err.contains("CRC32C mismatch"),
        "{err}"
    );
    let err =
        damaged("missing", |d| std::fs::remove_file(d.join("model.ckpt-20.data-00000-of-00001")).unwrap());
    assert!(err.contains("data shard missing"), "{err}");
    let err = damaged("truncated", |d| {
        let p = d.join("model.ckpt-20.index");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(err.contains("model.ckpt-20.index: index table: bad magic"), "{err}");
}

/// A mapping file of the user's own (TOML) fills the model like the built-in one; a
/// wrong transform or an unreadable file is an error naming it.
#[test]
fn a_users_mapping_file_imports_and_bad_ones_are_named() {
    let dir = scratch("mapping");
    let ckpt = fixture("starter-video-logistic");
    let mapping = dir.join("mapping.toml");
    std::fs::write(
        &mapping,
        "[[map]]\ntf = \"tower/fully_connected/weights\"\nloupe = \"classifier.weight\"\n\n\
         [[map]]\ntf = \"tower/fully_connected/biases\"\nloupe = \"classifier.bias\"\ntransform = \"identity\"\n",
    )
    .unwrap();
    let train_dir = dir.join("run");
    let said = ok(loupe(&[
        "import",
        "--model",
        "fixture-video-logistic",
        "--tf-checkpoint",
        s(&ckpt),
        "--mapping",
        s(&mapping),
        "--train-dir",
        s(&train_dir),
    ]));
    assert!(said.contains("imported 2 tensors"), "{said}");
    let data = fixture("starter-video-logistic/inputs.tfrecord");
    let csv = dir.join("out.csv");
    ok(loupe(&[
        "predict",
        "--checkpoint",
        s(&train_dir.join("checkpoints")),
        "--input-data-pattern",
        s(&data),
        "--output-file",
        s(&csv),
        "--top-k",
        "1",
    ]));
    let expected = read_npz(&fixture("starter-video-logistic/expected.npz"))["predictions"].f32s();
    let ids = read_npz(&fixture("starter-video-logistic/inputs.npz"))["video_id"].text.clone();
    let text = std::fs::read_to_string(&csv).unwrap();
    for (b, id) in ids.iter().enumerate() {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{id},")))
            .unwrap_or_else(|| panic!("{id} in {text}"));
        let best = expected[b * 20..(b + 1) * 20].iter().cloned().fold(f32::MIN, f32::max);
        assert!(row.ends_with(&format!(" {best:.6}")), "{row} vs TF's best {best}");
    }

    std::fs::write(&mapping, "[[map]]\ntf = \"tower/fully_connected/weights\"\nloupe = \"classifier.weight\"\ntransform = \"transpose\"\n").unwrap();
    let err = fails(loupe(&[
        "import",
        "--model",
        "fixture-video-logistic",
        "--tf-checkpoint",
        s(&ckpt),
        "--mapping",
        s(&mapping),
        "--dry-run",
    ]));
    assert!(err.contains("[1152, 20] cannot fill `classifier.weight` [1152, 20] (transpose)"), "{err}");
    assert!(err.contains("missing: no TF variable is mapped to `classifier.bias` [20]"), "{err}");
    std::fs::write(&mapping, "[[map]]\ntf = 3\n").unwrap();
    let err = fails(loupe(&[
        "import",
        "--model",
        "fixture-video-logistic",
        "--tf-checkpoint",
        s(&ckpt),
        "--mapping",
        s(&mapping),
        "--dry-run",
    ]));
    assert!(err.contains("mapping.toml: mapping file:"), "{err}");
}
