//! Imports a TensorFlow checkpoint written by the paper's own training code (WILLOW's
//! `train.py`, `NetVLADModelLF` with gating and probability gating, at the small sizes
//! of `tests/fixtures/tf-checkpoints/willow-gated-netvlad/`) into a model declared with
//! `#[video_model]`, predicts the fixture's four videos and compares with what the
//! original TensorFlow graph predicted (`expected.npz`).
//!
//! ```sh
//! cargo run --example 03_import_tf_checkpoint [TF_CHECKPOINT_DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use loupe::dfdx::prelude::*;
use loupe::model::VideoModel;
use loupe::tf_checkpoint::{import_checkpoint, model_tensors, Convention, Mapping, TfCheckpoint};
use loupe::video_model;

#[path = "../tests/common/npz.rs"]
#[allow(dead_code)]
mod npz;

/// The fixture's architecture: its README gives the flags (`--netvlad_cluster_size=8`,
/// `--netvlad_hidden_size=16`, `--iterations=6`, `--gating`, `--moe_prob_gating`,
/// `--moe_num_mixtures=2`, 20 classes). `loupe import --print-spec DIR` prints it.
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
pub struct SmallGatedNetVlad;

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf-checkpoints/willow-gated-netvlad")
    });
    let dev = loupe::device::cpu();
    let mut model = dev.build_module::<SmallGatedNetVlad, f32>();

    // The checkpoint's index and shards, checked; WILLOW's names to the model's tensors.
    let ckpt = TfCheckpoint::open(&dir)?;
    let names: Vec<String> = model_tensors(&model).into_iter().map(|t| t.name).collect();
    let mapping =
        Mapping::builtin(Convention::Willow, &SmallGatedNetVladModel::<f32, Cpu>::describe(), &names);
    let imported = import_checkpoint(&ckpt, &mapping, &mut model)?;
    println!(
        "imported {} tensors from {} (step {}, Adam moments: {})",
        imported.plan.rows.len(),
        ckpt.prefix().display(),
        imported.step,
        imported.moments.is_some()
    );

    // The fixture's frames (the reader's dequantised rgb ++ audio, 6 per video).
    let inputs = npz::read_npz(&dir.join("inputs.npz"));
    let expected = npz::read_npz(&dir.join("expected.npz"))["predictions"].f32s();
    let frames = dev.tensor_from_vec(inputs["video_matrix"].f32s(), (4usize, Const::<6>, Const::<1152>));
    let predictions = model.try_forward_eval(frames)?.as_vec();
    let mut worst = 0f32;
    for (b, (ours, theirs)) in predictions.chunks(20).zip(expected.chunks(20)).enumerate() {
        let top = (0..20).max_by(|&i, &j| ours[i].total_cmp(&ours[j])).unwrap_or(0);
        println!("video {b}: top class {top} p = {:.6} (TensorFlow {:.6})", ours[top], theirs[top]);
        for (a, e) in ours.iter().zip(theirs) {
            worst = worst.max((a - e).abs() / e.abs());
        }
    }
    println!("largest relative difference from TensorFlow: {worst:e}");
    Ok(if worst <= 1e-5 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
