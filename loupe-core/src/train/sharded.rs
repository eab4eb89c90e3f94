//! Evaluation, prediction and embedding as one rank of a data-parallel job: each rank
//! reads every `world_size`-th file, and rank 0 puts the per-video results back in file
//! order, so metrics, submission rows and vectors are those of one process reading all
//! files.

use std::io::Write;
use std::path::Path;

use dfdx::prelude::*;

use crate::data::Dataset;
use crate::distributed::{Collective, Decoder, DistributedError, Encoder};
use crate::infer::embeddings::EmbeddingWriter;
use crate::infer::Predictor;
use crate::metrics::{top_k, EvaluationMetrics, MetricsSummary};
use crate::model::{Layer, VideoModel};
use crate::submission::SubmissionRow;
use crate::train::evaluation::{
    batches, evaluate_dataset, label_lists, predict, write_embeddings, write_rows,
};
use crate::train::run_error::RunError;

/// The indices into `dataset.files()` this rank reads: `rank`, `rank + world_size`, ...
fn my_files(dataset: &Dataset, collective: &dyn Collective) -> Vec<usize> {
    (collective.rank()..dataset.files().len()).step_by(collective.world_size()).collect()
}

/// Runs `per_file` on this rank's files, each as a dataset of its own, encoding each
/// file's videos with a count in front; gathers the encodings on rank 0 and returns, on
/// rank 0, a decoder per file in the order of `dataset.files()`.
/// `per_file` is a trait object so that this body is compiled once, not once per model
/// and caller (it was 1.3% of the `loupe` binary's LLVM IR).
fn sharded(
    dataset: &Dataset,
    collective: &dyn Collective,
    per_file: &mut dyn FnMut(&Dataset, &mut Encoder) -> Result<u32, RunError>,
) -> Result<Option<Vec<Vec<u8>>>, RunError> {
    let files = dataset.files();
    let mut out = Encoder::new();
    for i in my_files(dataset, collective) {
        let mut videos = Encoder::new();
        let count = per_file(&dataset.clone().with_files(vec![files[i].clone()]), &mut videos)?;
        let mut file = Encoder::new();
        file.u32(count);
        file.raw(&videos.finish());
        out.blob(&file.finish());
    }
    let Some(parts) = collective.gather_bytes(&out.finish()) else { return Ok(None) };
    // File i came from rank i % world as that rank's (i / world)-th part.
    let world = collective.world_size();
    let mut per_rank: Vec<Vec<Vec<u8>>> = Vec::with_capacity(world);
    for (rank, bytes) in parts.iter().enumerate() {
        let mut d = Decoder::new(bytes, rank);
        let mut blobs = Vec::new();
        while !d.is_empty() {
            blobs.push(d.blob()?);
        }
        per_rank.push(blobs);
    }
    let mut ordered = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let blob = per_rank.get_mut(i % world).and_then(|b| b.get_mut(i / world)).map(std::mem::take);
        ordered.push(blob.ok_or_else(|| DistributedError::Malformed {
            rank: i % world,
            what: format!("no results for {}", file.display()),
        })?);
    }
    Ok(Some(ordered))
}

/// [`evaluate_dataset`] as one rank of `collective`: every rank returns the metrics of all the
/// dataset's files (computed on rank 0 from the ranks' top-k predictions, added in file
/// order, then broadcast).
pub fn evaluate_across<M, D>(
    predictor: &Predictor<M, D>,
    dataset: &Dataset,
    k: usize,
    collective: &dyn Collective,
) -> Result<MetricsSummary, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    if collective.world_size() == 1 {
        return evaluate_dataset(predictor, dataset, k);
    }
    let results = sharded(dataset, collective, &mut |part, out| {
        let mut count = 0;
        for batch in batches(part)? {
            let batch = batch?;
            let scores = predictor.predict(&batch.frames, &batch.lengths)?;
            for (row, labels) in scores.chunks(M::CLASSES).zip(label_lists(&batch.labels, M::CLASSES)) {
                out.u32s(&labels);
                out.pairs(&top_k(row, k.max(labels.len())));
                count += 1;
            }
        }
        Ok(count)
    })?;
    let mut shared = [0.0f64; 5];
    if let Some(files) = results {
        let mut metrics = EvaluationMetrics::new(M::CLASSES, k);
        for (i, blob) in files.iter().enumerate() {
            let mut d = Decoder::new(blob, i % collective.world_size());
            for _ in 0..d.u32()? {
                let labels = d.u32s()?;
                metrics.add_top_k(&d.pairs()?, &labels);
            }
        }
        let m = metrics.summary();
        shared = [m.gap, m.hit_at_1, m.perr, m.map, m.videos as f64];
    }
    collective.broadcast_f64(&mut shared);
    let [gap, hit_at_1, perr, map, videos] = shared;
    Ok(MetricsSummary { gap, hit_at_1, perr, map, videos: videos as usize })
}

/// [`predict`] as one rank of `collective`: rank 0 writes the rows of all the dataset's
/// files to `out`, in file order; every rank returns the number of videos written.
pub fn predict_across<M, D, W: Write>(
    predictor: &Predictor<M, D>,
    dataset: &Dataset,
    k: usize,
    out: W,
    names: Option<&dyn Fn(u32) -> String>,
    collective: &dyn Collective,
) -> Result<usize, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    if collective.world_size() == 1 {
        return predict(predictor, dataset, k, out, names);
    }
    let results = sharded(dataset, collective, &mut |part, out| {
        let mut count = 0;
        for batch in batches(part)? {
            let batch = batch?;
            for (id, top) in
                batch.ids.iter().zip(predictor.predict_top_k(&batch.frames, &batch.lengths, k)?)
            {
                out.str(id);
                out.pairs(&top);
                count += 1;
            }
        }
        Ok(count)
    })?;
    let mut written = 0;
    if let Some(files) = results {
        let mut rows = Vec::new();
        for (i, blob) in files.iter().enumerate() {
            let mut d = Decoder::new(blob, i % collective.world_size());
            for _ in 0..d.u32()? {
                rows.push(SubmissionRow { id: d.str()?, predictions: d.pairs()? });
            }
        }
        written = rows.len();
        write_rows(out, rows, names)?;
    }
    let mut shared = [written as f64];
    collective.broadcast_f64(&mut shared);
    Ok(shared[0] as usize)
}

/// [`write_embeddings`] as one rank of `collective`: each rank computes the vectors of its
/// files at `layer`; rank 0 writes all of them to `path` in file order (the other ranks
/// write nothing). Every rank returns the number of vectors written. Rank 0 holds the
/// gathered vectors in memory before writing (as [`predict_across`] holds its rows).
pub fn embed_across<M, D>(
    predictor: &Predictor<M, D>,
    dataset: &Dataset,
    layer: Layer,
    path: &Path,
    collective: &dyn Collective,
) -> Result<u64, RunError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    let description = M::describe();
    let size = match description.representation_size(layer) {
        Some(size) if collective.world_size() > 1 => size,
        // One process, or a layer the model lacks (the same error on every rank).
        _ => return write_embeddings(predictor, dataset, layer, path),
    };
    let results = sharded(dataset, collective, &mut |part, out| {
        let mut count = 0;
        for batch in batches(part)? {
            let batch = batch?;
            let rows = predictor.represent(&batch.frames, &batch.lengths, layer)?;
            for (id, row) in batch.ids.iter().zip(rows.chunks(size)) {
                out.str(id);
                row.iter().for_each(|&v| out.f32(v));
                count += 1;
            }
        }
        Ok(count)
    })?;
    let mut written = 0;
    if let Some(files) = results {
        let metadata = [("layer", layer.name()), ("model", description.name.as_str())];
        let mut writer = EmbeddingWriter::create(path, size, &metadata)?;
        for (i, blob) in files.iter().enumerate() {
            let mut d = Decoder::new(blob, i % collective.world_size());
            for _ in 0..d.u32()? {
                let id = d.str()?;
                let row = (0..size).map(|_| d.f32()).collect::<Result<Vec<f32>, _>>()?;
                writer.push(&id, &row)?;
            }
        }
        written = writer.finish()?;
    }
    let mut shared = [written as f64];
    collective.broadcast_f64(&mut shared);
    Ok(shared[0] as u64)
}
