//! Writing one vector per video to disk as it is computed, in bounded memory.
//!
//! Two formats, chosen by the output's extension:
//! - `.npy` (NumPy's format, version 1.0): a little-endian `float32` array of shape
//!   `(videos, size)`; the ids go to a text file next to it (`NAME.ids.txt`, one per line,
//!   in row order). The header is written first with room for any count and rewritten
//!   with the final count at the end (padded with spaces, as the format allows).
//! - `.safetensors`: tensors `embeddings` (`F32`, `[videos, size]`) and `ids` (`U8`, the
//!   ids joined by `\n`, UTF-8), and the metadata `layer` and `model`. Rows and ids are
//!   streamed to temporary files and copied behind the header at the end.
//!
//! Every output is written under a temporary name and renamed into place on
//! [`EmbeddingWriter::finish`], so a failed run leaves no partial file.
//!
//! The writer takes rows from anyone; a dataset's rows are computed and written by
//! [`crate::train::run::write_embeddings`] (one process) and
//! [`crate::train::run::embed_across`] (MPI ranks).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why embeddings could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("{path}: cannot write")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: unknown output format: expected a name ending in .npy or .safetensors")]
    Format { path: PathBuf },
    #[error("row of video `{id}` has {found} values, expected {expected}")]
    RowSize { id: String, expected: usize, found: usize },
    #[error("video id `{id}` holds a line break, which the id list cannot hold")]
    Id { id: String },
}

/// The output format of an [`EmbeddingWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFormat {
    /// `.npy` plus `.ids.txt`.
    Npy,
    /// `.safetensors`.
    Safetensors,
}

impl EmbeddingFormat {
    /// The format an output path asks for, by extension.
    pub fn of(path: &Path) -> Result<Self, EmbeddingError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(EmbeddingFormat::Npy),
            Some("safetensors") => Ok(EmbeddingFormat::Safetensors),
            _ => Err(EmbeddingError::Format { path: path.to_path_buf() }),
        }
    }
}

/// The id list written next to an `.npy` output: `NAME.npy` -> `NAME.ids.txt`.
pub fn ids_path(npy: &Path) -> PathBuf {
    npy.with_extension("ids.txt")
}

/// Bytes of the `.npy` header (magic to newline) this module writes: room for a count
/// of 20 digits, a multiple of 64 as NumPy recommends.
fn npy_header(rows: u64, size: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {size}), }}");
    let widest = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {size}), }}", u64::MAX);
    let total = (10 + widest.len() + 1).div_ceil(64) * 64;
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.resize(total - 1, b' ');
    header.push(b'\n');
    header
}

fn temporary(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

struct Part {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Part {
    fn create(path: PathBuf) -> Result<Self, EmbeddingError> {
        let file = File::create(&path).map_err(|source| EmbeddingError::Io { path: path.clone(), source })?;
        Ok(Part { path, out: BufWriter::new(file) })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), EmbeddingError> {
        self.out.write_all(bytes).map_err(|source| EmbeddingError::Io { path: self.path.clone(), source })
    }

    fn close(self) -> Result<(File, PathBuf), EmbeddingError> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| EmbeddingError::Io { path: path.clone(), source: e.into_error() })?;
        Ok((file, path))
    }
}

/// Writes `(id, vector)` rows of a fixed size as they come.
///
/// ```
/// use loupe_core::infer::embeddings::{ids_path, EmbeddingWriter};
///
/// let path = std::env::temp_dir().join(format!("loupe-doc-embeddings-{}.npy", std::process::id()));
/// let mut writer = EmbeddingWriter::create(&path, 2, &[("layer", "pooled")])?;
/// writer.push("video-a", &[1.0, 2.0])?;
/// writer.push("video-b", &[3.0, 4.0])?;
/// assert_eq!(writer.finish()?, 2);
/// assert_eq!(std::fs::read_to_string(ids_path(&path)).unwrap(), "video-a\nvideo-b\n");
/// let bytes = std::fs::read(&path).unwrap();
/// assert_eq!(bytes.len() % 64, 16); // a 64-byte aligned header, then 4 floats
/// assert!(String::from_utf8_lossy(&bytes[..128]).contains("'shape': (2, 2)"));
/// # std::fs::remove_file(&path).unwrap(); std::fs::remove_file(ids_path(&path)).unwrap();
/// # Ok::<(), loupe_core::infer::embeddings::EmbeddingError>(())
/// ```
pub struct EmbeddingWriter {
    path: PathBuf,
    format: EmbeddingFormat,
    size: usize,
    rows: u64,
    /// `.npy`: the array (header first); `.safetensors`: the rows. Taken by `finish`.
    data: Option<Part>,
    /// The ids, one per line. Taken by `finish`.
    ids: Option<Part>,
    id_bytes: u64,
    metadata: Vec<(String, String)>,
}

impl EmbeddingWriter {
    /// A writer of rows of `size` values to `path` (format by extension); `metadata`
    /// goes into a `.safetensors` header (`.npy` has no place for it).
    pub fn create(path: &Path, size: usize, metadata: &[(&str, &str)]) -> Result<Self, EmbeddingError> {
        let format = EmbeddingFormat::of(path)?;
        let mut data = Part::create(temporary(path, ".tmp"))?;
        if format == EmbeddingFormat::Npy {
            data.write(&npy_header(0, size))?;
        }
        let ids = Part::create(temporary(path, ".ids.tmp"))?;
        let metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(EmbeddingWriter {
            path: path.to_path_buf(),
            format,
            size,
            rows: 0,
            data: Some(data),
            ids: Some(ids),
            id_bytes: 0,
            metadata,
        })
    }

    /// Values per row.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Appends one video's row.
    pub fn push(&mut self, id: &str, row: &[f32]) -> Result<(), EmbeddingError> {
        if row.len() != self.size {
            return Err(EmbeddingError::RowSize {
                id: id.to_string(),
                expected: self.size,
                found: row.len(),
            });
        }
        if id.contains('\n') {
            return Err(EmbeddingError::Id { id: id.to_string() });
        }
        let (Some(data), Some(ids)) = (&mut self.data, &mut self.ids) else {
            unreachable!("taken only by finish")
        };
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.write(&bytes)?;
        ids.write(id.as_bytes())?;
        ids.write(b"\n")?;
        self.id_bytes += id.len() as u64 + 1;
        self.rows += 1;
        Ok(())
    }

    /// Completes the output (header with the final count) and moves it into place;
    /// returns the number of rows.
    pub fn finish(mut self) -> Result<u64, EmbeddingError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| EmbeddingError::Io { path, source }
        };
        let (Some(data), Some(ids)) = (self.data.take(), self.ids.take()) else {
            unreachable!("taken only here")
        };
        let (mut data, data_path) = data.close()?;
        let (ids, ids_path_tmp) = ids.close()?;
        match self.format {
            EmbeddingFormat::Npy => {
                data.seek(SeekFrom::Start(0)).map_err(io(&data_path))?;
                data.write_all(&npy_header(self.rows, self.size)).map_err(io(&data_path))?;
                data.sync_all().map_err(io(&data_path))?;
                ids.sync_all().map_err(io(&ids_path_tmp))?;
                std::fs::rename(&ids_path_tmp, ids_path(&self.path)).map_err(io(&self.path))?;
                std::fs::rename(&data_path, &self.path).map_err(io(&self.path))?;
            }
            EmbeddingFormat::Safetensors => {
                drop((data, ids));
                let floats = self.rows * self.size as u64 * 4;
                let mut metadata = serde_json::Map::new();
                for (k, v) in &self.metadata {
                    metadata.insert(k.clone(), serde_json::Value::String(v.clone()));
                }
                let header = serde_json::json!({
                    "__metadata__": metadata,
                    "embeddings": {"dtype": "F32", "shape": [self.rows, self.size], "data_offsets": [0, floats]},
                    "ids": {"dtype": "U8", "shape": [self.id_bytes], "data_offsets": [floats, floats + self.id_bytes]},
                });
                let mut header = header.to_string().into_bytes();
                header.resize(header.len().div_ceil(8) * 8, b' ');
                let out_tmp = temporary(&self.path, ".out.tmp");
                let mut out = Part::create(out_tmp.clone())?;
                out.write(&(header.len() as u64).to_le_bytes())?;
                out.write(&header)?;
                for part in [&data_path, &ids_path_tmp] {
                    let mut file = File::open(part).map_err(io(part))?;
                    std::io::copy(&mut file, &mut out.out).map_err(io(&out_tmp))?;
                }
                let (file, _) = out.close()?;
                file.sync_all().map_err(io(&out_tmp))?;
                std::fs::rename(&out_tmp, &self.path).map_err(io(&self.path))?;
                let _ = std::fs::remove_file(&data_path);
                let _ = std::fs::remove_file(&ids_path_tmp);
            }
        }
        Ok(self.rows)
    }
}

/// A writer dropped before [`EmbeddingWriter::finish`] (an error while computing the rows)
/// removes its temporary files.
impl Drop for EmbeddingWriter {
    fn drop(&mut self) {
        for part in [self.data.take(), self.ids.take()].into_iter().flatten() {
            let path = part.path.clone();
            drop(part);
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loupe-embeddings-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_writer_dropped_unfinished_leaves_no_file() {
        let dir = scratch("dropped");
        let mut writer = EmbeddingWriter::create(&dir.join("x.safetensors"), 2, &[]).unwrap();
        writer.push("a", &[1.0, 2.0]).unwrap();
        assert!(matches!(
            writer.push("b", &[1.0]),
            Err(EmbeddingError::RowSize { expected: 2, found: 1, .. })
        ));
        assert!(matches!(writer.push("c\nd", &[1.0, 2.0]), Err(EmbeddingError::Id { .. })));
        drop(writer);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert!(matches!(
            EmbeddingWriter::create(&dir.join("x.csv"), 2, &[]),
            Err(EmbeddingError::Format { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn safetensors_holds_rows_ids_and_metadata_in_order() {
        let dir = scratch("st");
        let path = dir.join("x.safetensors");
        let mut writer = EmbeddingWriter::create(&path, 3, &[("layer", "hidden")]).unwrap();
        for (i, id) in ["v0", "vid-1", "v2"].iter().enumerate() {
            writer.push(id, &[i as f32, 0.5, -1.0]).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 3);
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0);
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["embeddings"]["shape"], serde_json::json!([3, 3]));
        assert_eq!(header["ids"]["data_offsets"], serde_json::json!([36, 36 + 12]));
        assert_eq!(header["__metadata__"]["layer"], "hidden");
        let data = &bytes[8 + n..];
        assert_eq!(data.len(), 36 + 12);
        assert_eq!(f32::from_le_bytes(data[24..28].try_into().unwrap()), 2.0);
        assert_eq!(&data[36..], b"v0\nvid-1\nv2\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "temporary files removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
