//! The streamed dataset: seeded repeatability, epochs, evaluation order, labels,
//! frame sampling in batches, bounded prefetch.

mod data_common;

use std::collections::HashMap;
use std::path::PathBuf;

use data_common::{payload, scratch_dir, small_spec, small_video, write_records, ScratchDir};
use loupe::data::proto::Message;
use loupe::data::{
    dequantize, DataError, DataFormat, Dataset, FeatureSpec, FrameBatch, FrameSampling, Video, VideoDecoder,
};

const CLASSES: usize = 7;

/// Three shards of 7, 5 and 9 videos with 1..=12 frames; returns their directory (kept
/// while the guard lives), the files and each video's (labels, frames).
fn shards(name: &str) -> (ScratchDir, Vec<PathBuf>, HashMap<String, (Vec<u32>, usize)>) {
    let dir = scratch_dir(name);
    let mut files = Vec::new();
    let mut truth = HashMap::new();
    let mut n = 0u32;
    for (s, count) in [7, 5, 9].into_iter().enumerate() {
        let path = dir.join(format!("train{s:04}.tfrecord"));
        let mut payloads = Vec::new();
        for _ in 0..count {
            let id = format!("vid{n:03}");
            let labels: Vec<u32> = (0..(n % 3)).map(|k| (n + 2 * k) % CLASSES as u32).collect();
            let frames = (n as usize * 5) % 12 + 1;
            payloads.push(payload(&small_video(&id, &labels, frames)));
            truth.insert(id, (labels, frames));
            n += 1;
        }
        write_records(&path, &payloads);
        files.push(path);
    }
    (dir, files, truth)
}

fn decoder() -> VideoDecoder {
    VideoDecoder::new(DataFormat::FrameLevel, small_spec())
}

fn collect(dataset: &Dataset) -> Vec<FrameBatch> {
    dataset.frame_batches().unwrap().collect::<Result<_, _>>().unwrap()
}

fn ids(batches: &[FrameBatch]) -> Vec<String> {
    batches.iter().flat_map(|b| b.ids.clone()).collect()
}

/// The frame index a sampled row came from (small_video writes byte t*10 + d).
fn frame_of(row: &[f32]) -> usize {
    let byte = ((row[0] - dequantize(0)) * 255.0 / 4.0).round() as usize;
    byte / 10
}

#[test]
fn seeded_training_repeats_and_seeds_differ() {
    let (_dir, files, _) = shards("repeat");
    let make = |seed| {
        Dataset::training(files.clone(), decoder(), CLASSES)
            .with_batch_size(4)
            .with_frames_per_video(5)
            .with_shuffle(seed, 6)
            .with_epochs(Some(2))
    };
    let a = collect(&make(11));
    let b = collect(&make(11));
    assert_eq!(a, b, "same seed, same batches (ids, frames, labels)");
    let c = collect(&make(12));
    assert_ne!(ids(&a), ids(&c));
}

#[test]
fn every_video_exactly_once_per_epoch() {
    let (_dir, files, truth) = shards("epochs");
    let dataset = Dataset::training(files, decoder(), CLASSES)
        .with_batch_size(4)
        .with_frames_per_video(3)
        .with_shuffle(5, 4)
        .with_epochs(Some(3));
    let batches = collect(&dataset);
    let seen = ids(&batches);
    assert_eq!(seen.len(), 3 * 21, "the last partial batch is delivered");
    assert!(batches[..batches.len() - 1].iter().all(|b| b.len() == 4));
    let mut expected: Vec<String> = truth.keys().cloned().collect();
    expected.sort();
    for epoch in seen.chunks(21) {
        let mut epoch = epoch.to_vec();
        epoch.sort();
        assert_eq!(epoch, expected);
    }
    // The epochs come in different orders.
    assert_ne!(seen[..21], seen[21..42]);
}

#[test]
fn evaluation_is_in_file_order_complete_and_repeatable() {
    let (_dir, files, truth) = shards("eval");
    let eval = Dataset::evaluation(files, decoder(), CLASSES).with_batch_size(4).with_frames_per_video(6);
    let batches = collect(&eval);
    let expected: Vec<String> = (0..21).map(|n| format!("vid{n:03}")).collect();
    assert_eq!(ids(&batches), expected);
    assert_eq!(batches.last().unwrap().len(), 1);
    assert_eq!(collect(&eval), batches, "same frames every run");

    // Per-video sampling does not depend on the batch composition.
    let other = collect(&eval.clone().with_batch_size(3));
    let frames_of = |batches: &[FrameBatch]| -> HashMap<String, Vec<f32>> {
        batches
            .iter()
            .flat_map(|b| (0..b.len()).map(move |i| (b.ids[i].clone(), b.video_frames(i).to_vec())))
            .collect()
    };
    assert_eq!(frames_of(&batches), frames_of(&other));

    // Multi-hot labels and true frame counts.
    for batch in &batches {
        assert_eq!(batch.labels.len(), batch.len() * CLASSES);
        for i in 0..batch.len() {
            let (labels, frames) = &truth[&batch.ids[i]];
            let row = batch.video_labels(i);
            for (c, &x) in row.iter().enumerate() {
                assert_eq!(x, if labels.contains(&(c as u32)) { 1.0 } else { 0.0 });
            }
            assert_eq!(batch.num_frames[i], *frames);
            // Every sampled frame is a valid frame of the video.
            for row in batch.video_frames(i).chunks_exact(batch.feature_dim) {
                assert!(frame_of(row) < *frames);
            }
        }
    }
}

#[test]
fn in_order_sampling_cycles_the_valid_frames() {
    let (_dir, files, truth) = shards("in-order");
    let eval = Dataset::evaluation(files, decoder(), CLASSES)
        .with_batch_size(5)
        .with_frames_per_video(8)
        .with_sampling(FrameSampling::InOrder);
    for batch in collect(&eval) {
        assert_eq!(batch.frames.len(), batch.len() * 8 * 8);
        for i in 0..batch.len() {
            let n = truth[&batch.ids[i]].1;
            let order: Vec<usize> = batch.video_frames(i).chunks_exact(8).map(frame_of).collect();
            let expected: Vec<usize> = (0..8).map(|t| t % n).collect();
            assert_eq!(order, expected);
        }
    }
}

#[test]
fn random_sampling_draws_valid_frames_with_replacement() {
    let (_dir, files, truth) = shards("random");
    let train = Dataset::training(files, decoder(), CLASSES).with_batch_size(21).with_frames_per_video(40);
    let batch = collect(&train).remove(0);
    for i in 0..batch.len() {
        let n = truth[&batch.ids[i]].1;
        let picked: Vec<usize> = batch.video_frames(i).chunks_exact(8).map(frame_of).collect();
        assert!(picked.iter().all(|&t| t < n));
        if n == 1 {
            assert!(picked.iter().all(|&t| t == 0));
        }
    }
}

#[test]
fn prefetch_is_bounded() {
    let (_dir, files, _) = shards("prefetch");
    let train = Dataset::training(files, decoder(), CLASSES)
        .with_batch_size(1)
        .with_frames_per_video(2)
        .with_prefetch(2)
        .with_epochs(None);
    let mut batches = train.frame_batches().unwrap();
    batches.next().unwrap().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let produced = batches.produced();
    // One delivered, two queued, one finished and waiting to be queued.
    assert!(produced <= 1 + 2 + 1, "produced {produced}");
    assert!(produced >= 3, "the loader works ahead ({produced})");
    // Infinite epochs keep going; dropping the iterator stops the loader.
    assert_eq!(batches.by_ref().take(50).count(), 50);
    drop(batches);
}

#[test]
fn video_level_batches() {
    let dir = scratch_dir("video-level");
    let spec = FeatureSpec::youtube8m_sized(DataFormat::VideoLevel, 3, 2);
    let path = dir.join("v.tfrecord");
    let payloads: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            Video { id: format!("m{i}"), labels: vec![i], num_frames: 1, features: vec![i as f32; 5] }
                .to_example(&spec, "video_id")
                .encode_to_vec()
        })
        .collect();
    write_records(&path, &payloads);
    let eval = Dataset::evaluation(vec![path], VideoDecoder::new(DataFormat::VideoLevel, spec), CLASSES)
        .with_batch_size(2);
    let batches: Vec<_> = eval.video_batches().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(batches[1].features, [2.0; 5].iter().chain(&[3.0; 5]).copied().collect::<Vec<_>>());
    assert_eq!(batches[2].labels, [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    // Asking for the other kind of batch is a configuration error.
    assert!(matches!(eval.frame_batches(), Err(DataError::Config(_))));
}

#[test]
fn errors_reach_the_consumer_and_skipping_goes_on() {
    let (_dir, mut files, _) = shards("errors");
    let bad = files[0].with_file_name("bad.tfrecord");
    std::fs::write(&bad, "not a tfrecord").unwrap();
    files.insert(1, bad);
    let eval = Dataset::evaluation(files.clone(), decoder(), CLASSES).with_batch_size(4);
    let results: Vec<_> = eval.frame_batches().unwrap().collect();
    let error = results.iter().find_map(|r| r.as_ref().err()).expect("an error");
    assert!(matches!(error, DataError::NotTfRecord { .. }));
    assert!(results.last().unwrap().is_err(), "the error ends the stream");

    let skipping = eval.with_skip_corrupt(true);
    let mut batches = skipping.frame_batches().unwrap();
    let seen: usize = batches.by_ref().map(|b| b.unwrap().len()).sum();
    assert_eq!(seen, 21);
    assert_eq!(batches.skip_report().abandoned_files, 1);
}
