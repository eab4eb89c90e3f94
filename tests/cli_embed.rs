//! `loupe embed` end to end (`.npy` + ids and `.safetensors`, read back here), MediaPipe
//! float feature files through `predict` and `embed`, and errors that print their cause
//! once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use loupe::data::proto::Message;
use loupe::data::proto::{Feature, FeatureList, FeatureLists, Features, SequenceExample};
use loupe::data::{DataFormat, RecordWriter, VideoDecoder, VideoReader};
use loupe::dfdx::prelude::*;
use loupe::infer::Predictor;
use loupe::zoo::SmallGatedNetVladModel;

fn loupe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loupe")).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Synthetic data (rgb 16 + audio 8, 10 classes, 50 validation videos) and a
/// `small-gated-netvlad` trained on it for a few steps.
struct Trained {
    dir: common::ScratchDir,
    validate: PathBuf,
    checkpoint: PathBuf,
}

fn trained(name: &str) -> Trained {
    let dir = common::scratch_dir(&format!("cli-embed-{name}"));
    let data = dir.join("data");
    ok(loupe(&[
        "synth",
        "--out",
        s(&data),
        "--seed",
        "5",
        "--classes",
        "10",
        "--train-videos",
        "128",
        "--validate-videos",
        "50",
        "--shards",
        "1",
        "--min-frames",
        "3",
        "--max-frames",
        "20",
        "--rgb-size",
        "16",
        "--audio-size",
        "8",
    ]));
    let frame = data.join("frame");
    let file = |prefix: &str| {
        let mut f: Vec<PathBuf> = std::fs::read_dir(&frame).unwrap().map(|e| e.unwrap().path()).collect();
        f.retain(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix));
        assert_eq!(f.len(), 1, "{f:?}");
        f.remove(0)
    };
    let (train, validate) = (file("train"), file("validate"));
    let run = dir.join("run");
    ok(loupe(&[
        "train",
        "--model",
        "small-gated-netvlad",
        "--train-data-pattern",
        s(&train),
        "--train-dir",
        s(&run),
        "--batch-size",
        "32",
        "--max-steps",
        "6",
        "--base-learning-rate",
        "0.01",
        "--quiet",
    ]));
    Trained { dir, validate, checkpoint: run.join("checkpoints") }
}

/// An `.npy` file's shape and float32 values (little-endian, C order), parsed by hand.
fn read_npy(path: &Path) -> ((usize, usize), Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': ("), "{header}");
    assert!(header.ends_with('\n') && (10 + header_len).is_multiple_of(64));
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let dims: Vec<usize> = shape.split(',').map(|d| d.trim().parse().unwrap()).collect();
    let values: Vec<f32> =
        bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values.len(), dims[0] * dims[1]);
    ((dims[0], dims[1]), values)
}

/// A `.safetensors` file's header and its tensors' bytes, parsed by hand.
fn read_safetensors(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// The rows of `loupe predict`'s CSV: id and its (class, score) pairs.
fn predictions(csv: &str) -> Vec<(String, Vec<(u32, f32)>)> {
    csv.lines()
        .skip(1)
        .map(|line| {
            let (id, pairs) = line.split_once(',').unwrap();
            let values: Vec<&str> = pairs.split(' ').collect();
            let pairs = values.chunks(2).map(|p| (p[0].parse().unwrap(), p[1].parse().unwrap())).collect();
            (id.to_string(), pairs)
        })
        .collect()
}

#[test]
fn embed_writes_every_videos_vector_as_npy_and_safetensors() {
    let t = trained("main");
    let npy = t.dir.join("gated.npy");
    let base = [
        "embed",
        "--checkpoint",
        s(&t.checkpoint),
        "--input-data-pattern",
        s(&t.validate),
        "--batch-size",
        "7",
    ];
    ok(loupe(&[&base[..], &["--layer", "gated", "--output", s(&npy)]].concat()));
    let ((rows, size), gated) = read_npy(&npy);
    assert_eq!((rows, size), (50, 32));
    let ids: Vec<String> =
        std::fs::read_to_string(t.dir.join("gated.ids.txt")).unwrap().lines().map(String::from).collect();

    // The ids and order are prediction's, and the gated vectors carried through the
    // model's classifier and probability gating give its predicted labels and scores.
    let predicted = predictions(&ok(loupe(&[
        "predict",
        "--checkpoint",
        s(&t.checkpoint),
        "--input-data-pattern",
        s(&t.validate),
        "--top-k",
        "3",
    ])));
    assert_eq!(predicted.iter().map(|p| p.0.clone()).collect::<Vec<_>>(), ids);
    type M = SmallGatedNetVladModel<f32, Cpu>;
    let (predictor, _) = Predictor::<M, Cpu>::load(Cpu::default(), &t.checkpoint).unwrap();
    let m = &predictor.model;
    let dev = Cpu::default();
    let head = m
        .output_gating
        .forward(m.classifier.forward(dev.tensor_from_vec(gated.clone(), (rows, Const::<32>))));
    for ((_, top), row) in predicted.iter().zip(head.as_vec().chunks(10)) {
        for &(class, score) in top {
            assert!(
                (row[class as usize] - score).abs() < 1e-5,
                "class {class}: {} vs {score}",
                row[class as usize]
            );
        }
    }

    // Safetensors, the pooled layer: gating(hidden(pooled)) is the gated file's rows.
    let st = t.dir.join("pooled.safetensors");
    ok(loupe(&[&base[..], &["--layer", "pooled", "--output", s(&st)]].concat()));
    let (header, data) = read_safetensors(&st);
    assert_eq!(header["embeddings"]["dtype"], "F32");
    assert_eq!(header["embeddings"]["shape"], serde_json::json!([50, 160]));
    assert_eq!(header["__metadata__"]["layer"], "pooled");
    let [a, b] = [0, 1].map(|i| header["ids"]["data_offsets"][i].as_u64().unwrap() as usize);
    let st_ids: Vec<&str> = std::str::from_utf8(&data[a..b]).unwrap().lines().collect();
    assert_eq!(st_ids, ids);
    let pooled: Vec<f32> =
        data[..50 * 160 * 4].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let again =
        m.gating.forward(m.hidden.forward(dev.tensor_from_vec(pooled, (rows, Const::<160>)))).as_vec();
    for (x, y) in again.iter().zip(&gated) {
        assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
    }

    let out = loupe(&[&base[..], &["--layer", "gated", "--output", s(&t.dir.join("vectors.csv"))]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a name ending in .npy or .safetensors"));
    let out = loupe(&[&base[..], &["--layer", "logits", "--output", s(&npy)]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Rewrites `from` (YouTube-8M's quantised frames) as MediaPipe writes its features:
/// float lists under `RGB/feature/floats` and `AUDIO/feature/floats` (the dequantised
/// values), timestamps beside them, no labels; the first video keeps no `id`, only
/// MediaPipe's `clip/data_path`, and the last one's audio is a frame short.
fn write_mediapipe(from: &Path, to: &Path) -> Vec<String> {
    let decoder = VideoDecoder::new(
        DataFormat::FrameLevel,
        loupe::data::FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, 16, 8),
    );
    let mut writer = RecordWriter::create(to).unwrap();
    let mut ids = Vec::new();
    for (i, video) in VideoReader::open(from, &decoder).unwrap().enumerate() {
        let video = video.unwrap();
        // The last video's audio ends a frame early, as MediaPipe's may.
        let audio_frames = if i == 49 { video.num_frames - 1 } else { video.num_frames };
        let stream = |start: usize, size: usize, frames: usize| FeatureList {
            feature: video
                .features
                .chunks(24)
                .take(frames)
                .map(|f| Feature::floats(f[start..start + size].to_vec()))
                .collect(),
        };
        let mut context = Features::default();
        let id = if i == 0 {
            let path = format!("videos/{}.mp4", video.id);
            context.feature.insert("clip/data_path".into(), Feature::bytes(vec![path.clone().into_bytes()]));
            path
        } else {
            context.feature.insert("id".into(), Feature::bytes(vec![video.id.clone().into_bytes()]));
            video.id.clone()
        };
        ids.push(id);
        let mut lists = FeatureLists::default();
        lists.feature_list.insert("RGB/feature/floats".into(), stream(0, 16, video.num_frames));
        lists.feature_list.insert("AUDIO/feature/floats".into(), stream(16, 8, audio_frames));
        let stamps = (0..video.num_frames as i64).map(|t| Feature::int64s(vec![t * 1_000_000])).collect();
        lists.feature_list.insert("RGB/feature/timestamp".into(), FeatureList { feature: stamps });
        let example = SequenceExample { context: Some(context), feature_lists: Some(lists) };
        writer.write_record(&example.encode_to_vec()).unwrap();
    }
    writer.finish().unwrap();
    ids
}

#[test]
fn mediapipe_float_features_predict_and_embed_as_the_dataset_s() {
    let t = trained("mediapipe");
    let mediapipe = t.dir.join("mediapipe.tfrecord");
    let ids = write_mediapipe(&t.validate, &mediapipe);
    let predict = |data: &Path, extra: &[&str]| {
        let args =
            [&["predict", "--checkpoint", s(&t.checkpoint), "--input-data-pattern", s(data)][..], extra]
                .concat();
        predictions(&ok(loupe(&args)))
    };
    let quantised = predict(&t.validate, &[]);
    let floats = predict(&mediapipe, &[]);
    let named = predict(
        &mediapipe,
        &["--feature-names", "RGB/feature/floats,AUDIO/feature/floats", "--feature-sizes", "16,8"],
    );
    assert_eq!(floats, named);
    assert_eq!(floats.iter().map(|p| p.0.clone()).collect::<Vec<_>>(), ids);
    // Same frames, same sampling (seeded by the id: the first video's differs; the last
    // one has a frame less).
    assert_eq!(floats[1..49], quantised[1..49]);
    assert_eq!(floats.len(), 50);

    let (a, b) = (t.dir.join("a.npy"), t.dir.join("b.npy"));
    for (data, out) in [(&t.validate, &a), (&mediapipe, &b)] {
        ok(loupe(&[
            "embed",
            "--checkpoint",
            s(&t.checkpoint),
            "--input-data-pattern",
            s(data),
            "--layer",
            "hidden",
            "--output",
            s(out),
        ]));
    }
    let ((_, size), from_bytes) = read_npy(&a);
    let (_, from_floats) = read_npy(&b);
    assert_eq!(from_bytes[size..49 * size], from_floats[size..49 * size]);

    // `inspect` reads them too.
    let summary: serde_json::Value =
        serde_json::from_str(&ok(loupe(&["inspect", s(&mediapipe), "--json"]))).unwrap();
    assert_eq!(summary["videos"], 50, "{summary}");
}

#[test]
fn a_missing_file_names_its_os_cause_once() {
    let missing =
        std::env::temp_dir().join(format!("loupe-missing-{}", std::process::id())).join("step-00000001.json");
    let out = loupe(&["eval", "--checkpoint", s(&missing), "--eval-data-pattern", "nothing*.tfrecord"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cause = std::io::Error::from(std::io::ErrorKind::NotFound);
    let cause = std::fs::read(&missing).err().map(|e| e.to_string()).unwrap_or(cause.to_string());
    assert_eq!(stderr.matches(&cause).count(), 1, "{stderr}");
    assert!(stderr.contains(s(&missing)), "{stderr}");

    let classes = missing.with_file_name("segment_label_ids.csv");
    let out = loupe(&[
        "predict",
        "--segments",
        "--segment-classes",
        s(&classes),
        "--checkpoint",
        s(&missing),
        "--input-data-pattern",
        "x",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), stderr.matches(&cause).count()), (Some(1), 1), "{stderr}");
}
