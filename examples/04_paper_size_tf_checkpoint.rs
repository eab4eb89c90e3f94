//! Writes a TensorFlow V2 checkpoint of the paper's Gated NetVLAD at its published sizes
//! (the released model: K = 256 rgb and 128 audio clusters, H = 1024, MoE with 2 experts,
//! 4716 classes), with WILLOW's variable names and Adam slots, to measure what importing
//! a paper-size checkpoint costs (docs/tf-checkpoints.md, "Memory").
//!
//! The variables are those of the small WILLOW fixture, each dimension scaled to the
//! paper's; the values are arbitrary (a fixed pattern), the format is TensorFlow's: one
//! data shard, and an index table with one data block (a restart at every entry), an
//! empty meta-index block, an index block and the footer.
//!
//! ```text
//! cargo run --example 04_paper_size_tf_checkpoint -- tests/fixtures/tf-checkpoints/willow-gated-netvlad OUT_DIR
//! /usr/bin/time -v loupe import --model gated-netvlad-2017 --tf-checkpoint OUT_DIR --train-dir RUN
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use loupe::tf_checkpoint::proto::{BundleEntryProto, BundleHeaderProto, Dim, TensorShapeProto, VersionDef};
use loupe::tf_checkpoint::table::{mask_crc, TABLE_MAGIC};
use loupe::tf_checkpoint::{TfCheckpoint, TfDtype};
use prost::Message;

/// A fixture dimension and the paper's: K_audio, K, H, C, C*M, C*(M+1), the pooled size.
const SCALE: [(usize, usize); 7] =
    [(4, 128), (8, 256), (16, 1024), (20, 4716), (40, 9432), (60, 14148), (8704, 1024 * 256 + 128 * 128)];

fn paper_size(dim: usize) -> usize {
    SCALE.iter().find(|(small, _)| *small == dim).map_or(dim, |(_, paper)| *paper)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `contents` as a block with its trailer (no compression) and returns its handle.
fn block(file: &mut Vec<u8>, contents: &[u8]) -> (u64, u64) {
    let offset = file.len() as u64;
    file.extend_from_slice(contents);
    file.push(0);
    let crc = mask_crc(crc32c::crc32c_append(crc32c::crc32c(contents), &[0]));
    file.extend_from_slice(&crc.to_le_bytes());
    (offset, contents.len() as u64)
}

/// A block of sorted `entries`, every one a restart point.
fn entries_block(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut restarts = Vec::new();
    for (key, value) in entries {
        restarts.push(out.len() as u32);
        varint(0, &mut out);
        varint(key.len() as u64, &mut out);
        varint(value.len() as u64, &mut out);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    if restarts.is_empty() {
        restarts.push(0);
    }
    for r in &restarts {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [fixture, out] = &args[..] else {
        return Err("usage: 04_paper_size_tf_checkpoint FIXTURE_CHECKPOINT OUT_DIR".into());
    };
    let small = TfCheckpoint::open(fixture)?;
    std::fs::create_dir_all(out)?;
    let prefix = out.join("model.ckpt-150");
    let data_path = Path::new(&format!("{}.data-00000-of-00001", prefix.display())).to_path_buf();
    let mut data = BufWriter::new(File::create(&data_path)?);
    let mut entries = vec![(
        Vec::new(),
        BundleHeaderProto {
            num_shards: 1,
            endianness: 0,
            version: Some(VersionDef { producer: 1, ..Default::default() }),
        }
        .encode_to_vec(),
    )];
    let (mut offset, mut total) = (0u64, 0u64);
    for entry in small.entries() {
        let shape: Vec<usize> = entry.shape.iter().map(|&d| paper_size(d)).collect();
        let count: usize = shape.iter().product();
        let bytes: Vec<u8> = match (entry.dtype, entry.name.as_str()) {
            (TfDtype::Int32, _) => (0..count).flat_map(|_| 150i32.to_le_bytes()).collect(),
            (_, n) if n.ends_with("beta1_power") => 0.9f32.powi(151).to_le_bytes().to_vec(),
            (_, n) if n.ends_with("beta2_power") => 0.999f32.powi(151).to_le_bytes().to_vec(),
            _ => (0..count).flat_map(|i| (0.5 + (i % 97) as f32 * 1e-3).to_le_bytes()).collect(),
        };
        data.write_all(&bytes)?;
        let proto = BundleEntryProto {
            dtype: if entry.dtype == TfDtype::Int32 { 3 } else { 1 },
            shape: Some(TensorShapeProto {
                dim: shape.iter().map(|&size| Dim { size: size as i64, name: String::new() }).collect(),
                unknown_rank: false,
            }),
            shard_id: 0,
            offset: offset as i64,
            size: bytes.len() as i64,
            crc32c: mask_crc(crc32c::crc32c(&bytes)),
            slices: Vec::new(),
        };
        entries.push((entry.name.as_bytes().to_vec(), proto.encode_to_vec()));
        offset += bytes.len() as u64;
        total += bytes.len() as u64;
    }
    data.flush()?;
    let mut index = Vec::new();
    let last_key = entries.last().map(|(k, _)| k.clone()).unwrap_or_default();
    let (data_offset, data_size) = block(&mut index, &entries_block(&entries));
    let meta = block(&mut index, &entries_block(&[]));
    let mut handle = Vec::new();
    varint(data_offset, &mut handle);
    varint(data_size, &mut handle);
    let index_handle = block(&mut index, &entries_block(&[(last_key, handle)]));
    let mut footer = Vec::new();
    for v in [meta.0, meta.1, index_handle.0, index_handle.1] {
        varint(v, &mut footer);
    }
    footer.resize(40, 0);
    footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
    index.extend_from_slice(&footer);
    std::fs::write(format!("{}.index", prefix.display()), index)?;
    std::fs::write(out.join("checkpoint"), "model_checkpoint_path: \"model.ckpt-150\"\n")?;
    println!("wrote {} tensors, {total} bytes of values, to {}", entries.len() - 1, prefix.display());
    Ok(())
}
