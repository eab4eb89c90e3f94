//! A checkpoint as TensorFlow's `Saver` (V2) writes it: `PREFIX.index` (a [table](super::table)
//! whose empty key holds a `BundleHeaderProto` and every other key, a tensor's name, a
//! `BundleEntryProto`) and the shards `PREFIX.data-0000i-of-0000N` holding each tensor's
//! little-endian bytes at `offset..offset + size`, checked by a masked CRC32C.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;

use super::error::TfCheckpointError;
use super::proto::{BundleEntryProto, BundleHeaderProto};
use super::table::{mask_crc, read_table};

/// Element types loupe reads (`tensorflow.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TfDtype {
    Float32,
    Float64,
    Int32,
    Int64,
}

impl TfDtype {
    fn from_proto(code: i32) -> Option<TfDtype> {
        match code {
            1 => Some(TfDtype::Float32),
            2 => Some(TfDtype::Float64),
            3 => Some(TfDtype::Int32),
            9 => Some(TfDtype::Int64),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn width(self) -> usize {
        match self {
            TfDtype::Float32 | TfDtype::Int32 => 4,
            TfDtype::Float64 | TfDtype::Int64 => 8,
        }
    }

    /// The name TensorFlow prints (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TfDtype::Float32 => "float32",
            TfDtype::Float64 => "float64",
            TfDtype::Int32 => "int32",
            TfDtype::Int64 => "int64",
        }
    }
}

/// One tensor of a checkpoint, as the index describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TfEntry {
    pub name: String,
    pub dtype: TfDtype,
    pub shape: Vec<usize>,
    pub shard: usize,
    pub offset: u64,
    pub size: u64,
    /// Masked CRC32C of the bytes.
    pub crc32c: u32,
}

/// A tensor's values, converted to `f64` for floats or kept as integers.
#[derive(Debug, Clone, PartialEq)]
pub enum TfValues {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

impl TfValues {
    /// The values as `f64` (integers converted).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            TfValues::Float(v) => v.clone(),
            TfValues::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

/// A TensorFlow V2 checkpoint: its index read and checked; tensors read on demand.
///
/// ```no_run
/// use loupe_core::tf_checkpoint::TfCheckpoint;
/// let ckpt = TfCheckpoint::open("train_dir".as_ref())?; // or "train_dir/model.ckpt-150"
/// for entry in ckpt.entries() {
///     println!("{} {} {:?}", entry.name, entry.dtype.name(), entry.shape);
/// }
/// let weights = ckpt.read("hidden1_weights")?;
/// # Ok::<(), loupe_core::tf_checkpoint::TfCheckpointError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TfCheckpoint {
    prefix: PathBuf,
    num_shards: usize,
    entries: BTreeMap<String, TfEntry>,
}

impl TfCheckpoint {
    /// Opens the checkpoint at `path`: a prefix (`dir/model.ckpt-150`, whose
    /// `.index` exists), the `.index` file itself, or a directory with a `checkpoint` file
    /// (`model_checkpoint_path: "..."`, relative to the directory or absolute). Reads and
    /// checks the whole index; the shards are only checked to exist.
    pub fn open(path: &Path) -> Result<TfCheckpoint, TfCheckpointError> {
        let prefix = resolve_prefix(path)?;
        let index = index_path(&prefix);
        let bytes = fs::read(&index).map_err(TfCheckpointError::io(&index))?;
        let mut header = None;
        let mut entries = BTreeMap::new();
        for (key, value) in read_table(&index, &bytes)? {
            let name = String::from_utf8_lossy(&key).into_owned();
            let entry_error = |problem: String| TfCheckpointError::Entry {
                path: index.clone(),
                entry: name.clone(),
                problem,
            };
            if key.is_empty() {
                let h = BundleHeaderProto::decode(value.as_slice())
                    .map_err(|e| entry_error(format!("undecodable BundleHeaderProto: {e}")))?;
                header = Some(h);
                continue;
            }
            let proto = BundleEntryProto::decode(value.as_slice())
                .map_err(|e| entry_error(format!("undecodable BundleEntryProto: {e}")))?;
            entries.insert(name.clone(), entry_from_proto(&name, &proto).map_err(entry_error)?);
        }
        let header = header.ok_or_else(|| TfCheckpointError::Table {
            path: index.clone(),
            problem: "no header entry (empty key): not a tensor bundle index".to_string(),
        })?;
        if header.endianness != 0 {
            return Err(TfCheckpointError::Entry {
                path: index,
                entry: String::new(),
                problem: "big-endian bundles are not supported".to_string(),
            });
        }
        let num_shards = usize::try_from(header.num_shards).unwrap_or(0);
        for entry in entries.values() {
            if entry.shard >= num_shards.max(1) {
                return Err(TfCheckpointError::Entry {
                    path: index,
                    entry: entry.name.clone(),
                    problem: format!("shard {} of a bundle of {num_shards}", entry.shard),
                });
            }
        }
        let ckpt = TfCheckpoint { prefix, num_shards, entries };
        for shard in 0..num_shards {
            let path = ckpt.shard_path(shard);
            if !path.is_file() {
                let entry = ckpt
                    .entries
                    .values()
                    .find(|e| e.shard == shard)
                    .map_or(String::new(), |e| e.name.clone());
                return Err(TfCheckpointError::Shard {
                    path,
                    entry,
                    problem: "data shard missing".to_string(),
                });
            }
        }
        Ok(ckpt)
    }

    /// The prefix (`dir/model.ckpt-150`).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Every tensor, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &TfEntry> {
        self.entries.values()
    }

    /// The entry called `name`.
    pub fn entry(&self, name: &str) -> Option<&TfEntry> {
        self.entries.get(name)
    }

    /// Path of shard `i`.
    pub fn shard_path(&self, shard: usize) -> PathBuf {
        let mut name = self.prefix.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".data-{shard:05}-of-{:05}", self.num_shards));
        self.prefix.with_file_name(name)
    }

    /// The bytes of the tensor called `name`, read from its shard and checked against its
    /// size and CRC32C.
    fn read_bytes(&self, name: &str) -> Result<(&TfEntry, Vec<u8>), TfCheckpointError> {
        let entry = self.entries.get(name).ok_or_else(|| TfCheckpointError::Entry {
            path: index_path(&self.prefix),
            entry: name.to_string(),
            problem: "no such tensor in the checkpoint".to_string(),
        })?;
        let path = self.shard_path(entry.shard);
        let shard_error = |problem: String| TfCheckpointError::Shard {
            path: path.clone(),
            entry: name.to_string(),
            problem,
        };
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(shard_error("data shard missing".to_string()))
            }
            Err(e) => return Err(TfCheckpointError::Io { path, source: e }),
        };
        let len = file.metadata().map_err(TfCheckpointError::io(&path))?.len();
        if entry.offset.checked_add(entry.size).is_none_or(|end| end > len) {
            return Err(shard_error(format!(
                "bytes {}..{} lie past the end of the {len}-byte shard (truncated?)",
                entry.offset,
                entry.offset.saturating_add(entry.size)
            )));
        }
        file.seek(SeekFrom::Start(entry.offset)).map_err(TfCheckpointError::io(&path))?;
        let mut bytes = vec![0u8; entry.size as usize];
        file.read_exact(&mut bytes).map_err(TfCheckpointError::io(&path))?;
        let crc = mask_crc(crc32c::crc32c(&bytes));
        if crc != entry.crc32c {
            return Err(shard_error(format!(
                "CRC32C mismatch at bytes {}..{} (index records {:#010x}, data gives {crc:#010x}): the shard is damaged",
                entry.offset,
                entry.offset + entry.size,
                entry.crc32c
            )));
        }
        Ok((entry, bytes))
    }

    /// Reads the tensor called `name` from its shard, checking its size and CRC32C.
    pub fn read(&self, name: &str) -> Result<TfValues, TfCheckpointError> {
        let (entry, bytes) = self.read_bytes(name)?;
        let chunks = bytes.chunks_exact(entry.dtype.width());
        Ok(match entry.dtype {
            TfDtype::Float32 => TfValues::Float(
                chunks.map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default()))).collect(),
            ),
            TfDtype::Float64 => TfValues::Float(
                chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
            ),
            TfDtype::Int32 => TfValues::Int(
                chunks.map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or_default()))).collect(),
            ),
            TfDtype::Int64 => {
                TfValues::Int(chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
            }
        })
    }

    /// Reads the tensor called `name` as [`read`](Self::read) does, converted to `f32`
    /// (float32 kept as is, float64 and integers rounded): half the memory of `f64`
    /// values, what importing into an `f32` model needs.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, TfCheckpointError> {
        let (entry, bytes) = self.read_bytes(name)?;
        let chunks = bytes.chunks_exact(entry.dtype.width());
        Ok(match entry.dtype {
            TfDtype::Float32 => {
                chunks.map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default())).collect()
            }
            TfDtype::Float64 => {
                chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32).collect()
            }
            TfDtype::Int32 => {
                chunks.map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as f32).collect()
            }
            TfDtype::Int64 => {
                chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()) as f32).collect()
            }
        })
    }

    /// `global_step` when the checkpoint has one (a scalar integer).
    pub fn global_step(&self) -> Result<Option<u64>, TfCheckpointError> {
        if !self.entries.contains_key("global_step") {
            return Ok(None);
        }
        Ok(self.read("global_step")?.to_f64().first().map(|&s| s.max(0.0) as u64))
    }
}

fn entry_from_proto(name: &str, proto: &BundleEntryProto) -> Result<TfEntry, String> {
    let _ = name;
    let dtype = TfDtype::from_proto(proto.dtype).ok_or_else(|| {
        format!(
            "unsupported dtype {} (tensorflow.DataType; loupe reads float32, float64, int32, int64)",
            proto.dtype
        )
    })?;
    if !proto.slices.is_empty() {
        return Err(format!("a partitioned variable ({} slices); save it unpartitioned", proto.slices.len()));
    }
    let shape_proto = proto.shape.clone().unwrap_or_default();
    if shape_proto.unknown_rank {
        return Err("unknown rank".to_string());
    }
    let shape = shape_proto
        .dim
        .iter()
        .map(|d| usize::try_from(d.size).map_err(|_| format!("dimension {}", d.size)))
        .collect::<Result<Vec<_>, _>>()?;
    let (offset, size) = (u64::try_from(proto.offset), u64::try_from(proto.size));
    let (Ok(offset), Ok(size)) = (offset, size) else {
        return Err(format!("negative offset {} or size {}", proto.offset, proto.size));
    };
    let expected = shape.iter().product::<usize>() as u64 * dtype.width() as u64;
    if size != expected {
        return Err(format!(
            "{size} bytes for a {} tensor of shape {shape:?} ({expected} bytes)",
            dtype.name()
        ));
    }
    let shard = usize::try_from(proto.shard_id).map_err(|_| format!("shard {}", proto.shard_id))?;
    Ok(TfEntry { name: name.to_string(), dtype, shape, shard, offset, size, crc32c: proto.crc32c })
}

fn index_path(prefix: &Path) -> PathBuf {
    let mut name = prefix.file_name().unwrap_or_default().to_os_string();
    name.push(".index");
    prefix.with_file_name(name)
}

/// The prefix a path designates (see [`TfCheckpoint::open`]).
pub fn resolve_prefix(path: &Path) -> Result<PathBuf, TfCheckpointError> {
    let not_found = |problem: String| TfCheckpointError::NotFound { path: path.to_path_buf(), problem };
    if path.is_dir() {
        let state = path.join("checkpoint");
        let text = match fs::read_to_string(&state) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_found(
                    "a directory without a `checkpoint` file; give the prefix (`DIR/model.ckpt-N`)"
                        .to_string(),
                ))
            }
            Err(e) => return Err(TfCheckpointError::Io { path: state, source: e }),
        };
        let latest = text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("model_checkpoint_path:")?.trim();
            Some(rest.trim_matches('"').to_string())
        });
        let Some(latest) = latest.filter(|l| !l.is_empty()) else {
            return Err(TfCheckpointError::NotFound {
                path: state,
                problem: "no `model_checkpoint_path: \"...\"` line".to_string(),
            });
        };
        let prefix = Path::new(&latest);
        let prefix = if prefix.is_absolute() { prefix.to_path_buf() } else { path.join(prefix) };
        // A `checkpoint` file copied along with its checkpoint still names the old
        // absolute path: fall back to the same file name next to it.
        if !index_path(&prefix).is_file() {
            let local = path.join(prefix.file_name().unwrap_or_default());
            if index_path(&local).is_file() {
                return Ok(local);
            }
            return Err(TfCheckpointError::NotFound {
                path: index_path(&prefix),
                problem: format!("{state:?} names this checkpoint, whose index is missing"),
            });
        }
        return Ok(prefix);
    }
    let text = path.to_string_lossy();
    let prefix = match text.strip_suffix(".index") {
        Some(p) => PathBuf::from(p),
        None => path.to_path_buf(),
    };
    if index_path(&prefix).is_file() {
        Ok(prefix)
    } else {
        Err(not_found(format!("no {:?}", index_path(&prefix))))
    }
}
