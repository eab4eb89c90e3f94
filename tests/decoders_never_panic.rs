//! Every decoder of outside input answers arbitrary bytes, and mutations of valid inputs,
//! with a value or an error: never a panic, never an allocation the input does not
//! justify (issue 18).
//!
//! Decoders: TFRecord framing, the `tf.train` protobuf messages (through the video
//! decoder's fast path and its prost path), the submission CSVs (video and segment),
//! `vocabulary.csv`, the `loupe train --config` TOML file, and checkpoint sidecars (with
//! the tensor files they describe). Valid inputs are TF-written fixtures where there is
//! one. Each property runs a fixed number of cases (proptest's default seed handling:
//! a failure is saved and replayed), so the file runs in seconds in CI.
//!
//! The bounded-allocation tests count the bytes this thread allocates (a thread-local
//! counter in a counting global allocator, so tests running in parallel do not disturb
//! each other's counts).
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use loupe::config::TrainFile;
use loupe::data::proto::{Example, Message, SequenceExample};
use loupe::data::{
    detect_format, masked_crc32c, DataError, DataFormat, RecordLocation, RecordReader, VideoDecoder,
    VideoReader, Vocabulary,
};
use loupe::model::{AfterClassifier, AfterPooling, ClassifierKind, Fusion, InputKind, ModelDescription};
use loupe::segment_submission::read_segment_submission;
use loupe::submission::read_submission;
use loupe::train::checkpoint::{
    load_checkpoint, read_meta, save_checkpoint, CheckpointMeta, CHECKPOINT_FORMAT,
};
use loupe::train::{Adam, AdamConfig};
use proptest::prelude::*;
use proptest::test_runner::Config;

// ---------------------------------------------------------------------------------------
// A global allocator counting, per thread, the bytes live and the peak since a reset.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the counters may be gone while the thread is being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and
// only updates two thread-local counters (const-initialised `Cell`s, which neither
// allocate nor register a destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it had allocated at once (on
/// this thread, above what was live before).
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let value = f();
    let peak = PEAK.with(Cell::get);
    (value, (peak - before).max(0) as usize)
}

// ---------------------------------------------------------------------------------------
// Inputs.

const CASES: u32 = 192;
/// Fewer cases for decoders that go through a file.
const FILE_CASES: u32 = 64;

/// `cases` per property, or `LOUPE_DECODER_CASES` times as many for a longer hunt
/// (e.g. `LOUPE_DECODER_CASES=100`).
fn budget(cases: u32) -> Config {
    let factor = std::env::var("LOUPE_DECODER_CASES").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
    Config { cases: cases.saturating_mul(factor.max(1)), ..Config::default() }
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The first record's payload of a fixture file.
fn first_payload(rel: &str) -> Vec<u8> {
    let bytes = read(rel);
    let mut records = RecordReader::new(bytes.as_slice());
    records.read_record().unwrap().unwrap().to_vec()
}

/// The first file of a fixture directory, by name.
fn first_file(dir: &str) -> String {
    let mut names: Vec<String> = std::fs::read_dir(fixture(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tfrecord"))
        .collect();
    names.sort();
    format!("{dir}/{}", names[0])
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Copies a span over another place (duplicated length prefixes, tags, ...).
    Splice {
        from: usize,
        to: usize,
        len: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        3 => (any::<usize>(), prop_oneof![Just(0u8), Just(0xff), Just(0x80), any::<u8>()]).prop_map(|(at, byte)| Edit::Set { at, byte }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        2 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Remove { at, len }),
        1 => any::<usize>().prop_map(|at| Edit::Truncate { at }),
        1 => (any::<usize>(), any::<usize>(), 1usize..32).prop_map(|(from, to, len)| Edit::Splice { from, to, len }),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..6)
}

/// `valid` with `edits` applied (positions taken modulo the current length).
fn mutate(valid: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for e in edits {
        let n = bytes.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % n };
        match e {
            Edit::Flip { at, bit } if n > 0 => bytes[pos(*at)] ^= 1 << bit,
            Edit::Set { at, byte } if n > 0 => bytes[pos(*at)] = *byte,
            Edit::Insert { at, bytes: new } => {
                let at = if n == 0 { 0 } else { at % (n + 1) };
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Remove { at, len } if n > 0 => {
                let at = pos(*at);
                bytes.drain(at..(at + len).min(n));
            }
            Edit::Truncate { at } => bytes.truncate(if n == 0 { 0 } else { at % n }),
            Edit::Splice { from, to, len } if n > 0 => {
                let (from, to) = (pos(*from), pos(*to));
                let len = (*len).min(n - from).min(n - to);
                bytes.copy_within(from..from + len, to);
            }
            _ => {}
        }
    }
    bytes
}

/// Arbitrary bytes, or a valid input's bytes mutated.
fn bytes_like(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        3 => edits().prop_map(move |e| mutate(&valid, &e)),
    ]
}

/// Text: arbitrary characters, or a valid text with its bytes mutated (read lossily).
fn text_like(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => ".{0,200}",
        3 => edits().prop_map(move |e| String::from_utf8_lossy(&mutate(valid.as_bytes(), &e)).into_owned()),
    ]
}

/// A scratch directory unique to this process and `name`.
fn scratch(name: &str) -> common::ScratchDir {
    common::scratch_dir(&format!("never-panic-{name}"))
}

// ---------------------------------------------------------------------------------------
// TFRecord framing and the protobuf messages.

/// Every record of `bytes` through `decoder`, as the training reader does, with and
/// without skipping; the number of items is bounded by the records the bytes can hold.
fn read_all(bytes: &[u8], decoder: &VideoDecoder) {
    for skip in [false, true] {
        let records = RecordReader::with_path(Cursor::new(bytes), "mutated.tfrecord");
        let mut reader = VideoReader::new(records, decoder).skip_corrupt(skip);
        let mut items = 0;
        while let Some(item) = reader.next_decoded() {
            items += 1;
            assert!(items <= bytes.len() / 16 + 1, "more items than records");
            if let Ok(video) = item {
                let _ = video.into_video();
            }
        }
        let report = reader.skip_report();
        assert!(report.reasons.values().sum::<u64>() == report.skipped_records + report.abandoned_files);
    }
}

/// One payload through every decoder path: both formats, fast and prost frame paths,
/// exact streams, a small frame limit, format detection.
fn decode_payload(payload: &[u8]) {
    let at = RecordLocation { path: Path::new("mutated.tfrecord"), record: 7 };
    for format in [DataFormat::FrameLevel, DataFormat::VideoLevel] {
        let decoders = [
            VideoDecoder::youtube8m(format),
            VideoDecoder::youtube8m(format)
                .with_num_classes(3862)
                .with_exact_streams(true)
                .with_max_frames(3),
        ];
        for decoder in &decoders {
            let _ = decoder.decode_record(payload, at);
        }
    }
    let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel);
    let fast = decoder.decode_frames(payload, at).ok();
    let prost = decoder.decode_frames_prost(payload, at).ok();
    // Where both accept the record they agree (the fast path is only an optimisation).
    if let (Some(fast), Some(prost)) = (fast, prost) {
        assert_eq!(fast, prost);
    }
    let _ = detect_format(payload);
    let _ = SequenceExample::decode(payload);
    let _ = Example::decode(payload);
}

proptest! {
    #![proptest_config(budget(CASES))]

    #[test]
    fn tfrecord_files_of_frames(bytes in bytes_like(read("tf-written/frame/video_id_2017.tfrecord"))) {
        read_all(&bytes, &VideoDecoder::youtube8m(DataFormat::FrameLevel).with_num_classes(3862));
    }

    #[test]
    fn tfrecord_files_of_videos(bytes in bytes_like(read("tf-written/video/video_id_2017.tfrecord"))) {
        read_all(&bytes, &VideoDecoder::youtube8m(DataFormat::VideoLevel).with_exact_streams(true));
    }

    #[test]
    fn frame_level_payloads(bytes in bytes_like(first_payload("tf-written/frame/validate0000.tfrecord"))) {
        decode_payload(&bytes);
    }

    #[test]
    fn frame_level_payloads_with_rated_segments(bytes in bytes_like(first_payload(&first_file("yt8m-2019-segments/validate")))) {
        decode_payload(&bytes);
    }

    #[test]
    fn video_level_payloads(bytes in bytes_like(first_payload("tf-written/video/validate0000.tfrecord"))) {
        decode_payload(&bytes);
    }

    #[test]
    fn vocabulary_csv(text in text_like(VOCABULARY)) {
        let _ = Vocabulary::parse(&text, "vocabulary.csv");
    }

    #[test]
    fn train_config_toml(text in text_like(TRAIN_TOML)) {
        let _ = TrainFile::parse(&text);
    }
}

const VOCABULARY: &str =
    "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n\
0,378135,/m/03bt1gh,Game,https://en.wikipedia.org/wiki/Game,Games,,,\"A game, \"\"played\"\".\"\n\
1,200813,/m/01mw1,Video game,https://en.wikipedia.org/wiki/Video_game,Games,,,Electronic\n";

const TRAIN_TOML: &str = "model = \"small-average\"\ntrain_data_pattern = [\"data/train*.tfrecord\"]\n\
batch_size = 8\nbase_learning_rate = 0.01\nnum_epochs = 2\nframe_order = \"random\"\nseed = 3\n";

// ---------------------------------------------------------------------------------------
// Decoders that read a file.

const SUBMISSION: &str = "VideoId,LabelConfidencePairs\nabcd,3 0.9 7 0.25 1 0.000001\nefgh,0 1\nijkl,\n";

proptest! {
    #![proptest_config(budget(FILE_CASES))]

    #[test]
    fn submission_csv(text in text_like(SUBMISSION)) {
        let dir = scratch("submission");
        let path = dir.join("submission.csv");
        std::fs::write(&path, &text).unwrap();
        let _ = read_submission(&path, 10);
    }

    #[test]
    fn segment_submission_csv(bytes in bytes_like(read("yt8m-2019-segments/submission.csv")[..600].to_vec())) {
        let dir = scratch("segment-submission");
        let path = dir.join("submission.csv");
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_segment_submission(&path);
    }
}

type Tiny = (Linear<3, 4>, Linear<4, 2>);

fn tiny_description() -> ModelDescription {
    ModelDescription {
        name: "Tiny".into(),
        input: InputKind::Frames,
        streams: vec![],
        fusion: Fusion::Late,
        early_pooling: None,
        frames: 1,
        hidden: Some(4),
        hidden_batch_norm: false,
        hidden_relu6: false,
        frame_mask: false,
        dropout: 0.0,
        after_pooling: AfterPooling::None,
        gating_reduction: None,
        classifier: ClassifierKind::Logistic,
        experts: 0,
        after_classifier: AfterClassifier::None,
        classes: 2,
        classifier_l2: 1e-8,
    }
}

/// A checkpoint of the tiny model with Adam moments, in `dir`; returns the sidecar path.
fn tiny_checkpoint(dir: &Path) -> PathBuf {
    let dev = loupe::device::cpu_seeded(5);
    let model = dev.build_module::<Tiny, f32>();
    let mut adam = Adam::new(AdamConfig::default());
    adam.moments = Some((model.clone(), model.clone()));
    adam.step = 1;
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT,
        model: tiny_description(),
        dtype: "f32".into(),
        training: loupe::train::TrainingDescription { batch_size: Some(4), ..Default::default() },
        step: 1,
        examples_seen: 4,
        metrics: None,
        vocabulary_size: 2,
        rng_state: loupe::train::RngState { seed: Some(0), ..Default::default() },
        files: Vec::new(),
    };
    save_checkpoint(dir, &model, &adam, &meta, 2).unwrap()
}

/// Reads and loads the checkpoint in `dir` into a fresh tiny model and Adam state.
fn load_tiny(dir: &Path) {
    let _ = read_meta(dir);
    let dev = loupe::device::cpu_seeded(6);
    let mut model = dev.build_module::<Tiny, f32>();
    let mut adam = Adam::new(AdamConfig::default());
    let _ = load_checkpoint(dir, &tiny_description(), &mut model, Some(&mut adam));
}

proptest! {
    #![proptest_config(budget(FILE_CASES))]

    /// A sidecar of arbitrary or mutated bytes next to intact tensor files.
    #[test]
    fn checkpoint_sidecar_json(edits in edits(), arbitrary in prop::collection::vec(any::<u8>(), 0..256), raw in any::<bool>()) {
        let dir = scratch("sidecar");
        let sidecar = tiny_checkpoint(&dir);
        let valid = std::fs::read(&sidecar).unwrap();
        std::fs::write(&sidecar, if raw { arbitrary } else { mutate(&valid, &edits) }).unwrap();
        load_tiny(&dir);
    }

    /// Tensor files of mutated bytes under a sidecar without checksums (as written before
    /// checksums existed, which load unchecked), so the bytes reach the tensor reader.
    #[test]
    fn checkpoint_tensor_files(edits in edits(), adam in any::<bool>()) {
        let dir = scratch("tensors");
        let sidecar = tiny_checkpoint(&dir);
        let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
        meta.as_object_mut().unwrap().remove("files");
        std::fs::write(&sidecar, serde_json::to_vec(&meta).unwrap()).unwrap();
        let tensors = sidecar.with_extension(if adam { "adam.safetensors" } else { "safetensors" });
        let valid = std::fs::read(&tensors).unwrap();
        std::fs::write(&tensors, mutate(&valid, &edits)).unwrap();
        load_tiny(&dir);
    }
}

// ---------------------------------------------------------------------------------------
// Claimed lengths far beyond the input allocate nothing near them.

/// A TFRecord header (length and its masked CRC) claiming `len` bytes, then `tail`.
fn header_claiming(len: u64, tail: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend_from_slice(&masked_crc32c(&len.to_le_bytes()).to_le_bytes());
    bytes.extend_from_slice(tail);
    bytes
}

/// The most a reader may allocate for a record it cannot hold: its buffer grows by at
/// most 1 MiB past the bytes actually read.
const BOUND: usize = 4 << 20;

#[test]
fn a_record_claiming_2_pow_40_bytes_is_an_error_without_a_large_allocation() {
    // The counter sees what this thread allocates.
    let (_, peak) = peak_allocation(|| std::hint::black_box(vec![1u8; 2 * BOUND]).len());
    assert!(peak >= 2 * BOUND, "the counting allocator saw {peak} bytes");
    let bytes = header_claiming(1 << 40, &[7; 100]);
    let (result, peak) =
        peak_allocation(|| RecordReader::new(bytes.as_slice()).read_record().map(|r| r.map(<[u8]>::len)));
    assert!(
        matches!(result, Err(DataError::RecordTooLarge { record: 0, length, .. }) if length == 1 << 40),
        "{result:?}"
    );
    assert!(peak < BOUND, "allocated {peak} bytes");

    // Without a length limit the claim meets the end of the input instead.
    let (result, peak) = peak_allocation(|| {
        RecordReader::new(bytes.as_slice())
            .with_max_record_len(u64::MAX)
            .read_record()
            .map(|r| r.map(<[u8]>::len))
    });
    assert!(matches!(result, Err(DataError::Truncated { record: 0, found: 100, .. })), "{result:?}");
    assert!(peak < BOUND, "allocated {peak} bytes");

    // The same after a good record, from a file: the error names the file and record 1.
    let dir = scratch("huge");
    let path = dir.join("huge.tfrecord");
    let good = std::fs::read(fixture("tf-written/video/video_id_2017.tfrecord")).unwrap();
    let mut first = RecordReader::new(good.as_slice());
    let payload = first.read_record().unwrap().unwrap().to_vec();
    let mut file = header_claiming(payload.len() as u64, &payload);
    file.extend_from_slice(&masked_crc32c(&payload).to_le_bytes());
    file.extend_from_slice(&header_claiming(1 << 40, &[0; 64]));
    std::fs::write(&path, &file).unwrap();
    let decoder = VideoDecoder::youtube8m(DataFormat::VideoLevel);
    let (items, peak) = peak_allocation(|| VideoReader::open(&path, &decoder).unwrap().collect::<Vec<_>>());
    assert!(peak < BOUND, "allocated {peak} bytes");
    assert!(items[0].is_ok() && items.len() == 2, "{items:?}");
    let error = items[1].as_ref().unwrap_err().to_string();
    assert!(
        error.contains(&format!("{}: record 1: declared length 1099511627776 exceeds", path.display())),
        "{error}"
    );
}

#[test]
fn a_protobuf_field_claiming_2_pow_40_bytes_is_an_error_without_a_large_allocation() {
    // Field 1 (context / features), wire type 2, length varint 2^40, then a few bytes.
    let mut payload = vec![0x0a];
    let mut len: u64 = 1 << 40;
    while len >= 0x80 {
        payload.push((len as u8) | 0x80);
        len >>= 7;
    }
    payload.push(len as u8);
    payload.extend_from_slice(&[1, 2, 3, 4]);
    let (_, peak) = peak_allocation(|| decode_payload(&payload));
    assert!(peak < BOUND, "allocated {peak} bytes");
    let at = RecordLocation { path: Path::new("huge.tfrecord"), record: 3 };
    for format in [DataFormat::FrameLevel, DataFormat::VideoLevel] {
        let error = VideoDecoder::youtube8m(format).decode_record(&payload, at).unwrap_err();
        assert!(matches!(error, DataError::Decode { record: 3, .. }), "{error:?}");
    }
}
