//! The sorted-string table of a checkpoint's `.index` file (LevelDB's table format, which
//! TensorFlow's `table_builder` writes).
//!
//! Layout: data blocks, a meta-index block, an index block, then a 48-byte footer: the
//! meta-index and index block handles (each a varint64 offset and a varint64 size),
//! zero padding to 40 bytes, and the 8-byte little-endian magic `0xdb4775248b80fb57`.
//! Every block is followed by a 5-byte trailer: a compression byte (0 none, 1 snappy)
//! and the masked CRC32C of the block's bytes and that byte. A block holds entries
//! (`shared` key bytes with the previous key, `unshared` bytes, value length, all
//! varint32, then the unshared key bytes and the value), then restart offsets (u32 each)
//! and their count (u32): at a restart point `shared` is 0. The index block maps each
//! data block's last key (or a separator) to the block's handle.

use std::path::Path;

use super::error::TfCheckpointError;

/// The footer's magic number.
pub const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Size of the footer.
pub const FOOTER_LEN: usize = 48;
/// Size of a block's trailer (compression byte + masked CRC32C).
pub const BLOCK_TRAILER_LEN: usize = 5;

/// LevelDB's (and TensorFlow's) masking of stored CRC32Cs.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Reads a varint (up to 64 bits) at `*pos`, advancing it; `None` when truncated or too long.
pub(crate) fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Where a block lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    fn decode(bytes: &[u8], pos: &mut usize) -> Option<BlockHandle> {
        Some(BlockHandle { offset: read_varint(bytes, pos)?, size: read_varint(bytes, pos)? })
    }
}

/// Every key and value of the table in `file` (the whole file's bytes), in file order.
pub fn read_table(path: &Path, file: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TfCheckpointError> {
    let table = |problem: String| TfCheckpointError::Table { path: path.to_path_buf(), problem };
    if file.len() < FOOTER_LEN {
        return Err(table(format!(
            "{} bytes, shorter than the {FOOTER_LEN}-byte footer (truncated?)",
            file.len()
        )));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[40..48].try_into().unwrap_or_default());
    if magic != TABLE_MAGIC {
        return Err(table(format!("bad magic {magic:#018x} at the end, expected {TABLE_MAGIC:#018x} (truncated or not an index file)")));
    }
    let mut pos = 0;
    let handles =
        BlockHandle::decode(footer, &mut pos).and_then(|m| Some((m, BlockHandle::decode(footer, &mut pos)?)));
    let Some((_meta_index, index)) = handles else {
        return Err(table("footer: undecodable block handles".to_string()));
    };
    let index_block = read_block(path, file, index, "index block")?;
    let mut entries = Vec::new();
    for (key, value) in block_entries(path, &index_block, index.offset)? {
        let mut pos = 0;
        let handle = BlockHandle::decode(&value, &mut pos).ok_or_else(|| {
            table(format!(
                "index block at {}: entry `{}` is not a block handle",
                index.offset,
                String::from_utf8_lossy(&key)
            ))
        })?;
        let block = read_block(path, file, handle, "data block")?;
        entries.extend(block_entries(path, &block, handle.offset)?);
    }
    Ok(entries)
}

/// The contents of the block at `handle`, checked against its trailer.
fn read_block(
    path: &Path,
    file: &[u8],
    handle: BlockHandle,
    what: &str,
) -> Result<Vec<u8>, TfCheckpointError> {
    let table = |problem: String| TfCheckpointError::Table { path: path.to_path_buf(), problem };
    let end = handle.offset.checked_add(handle.size).and_then(|e| e.checked_add(BLOCK_TRAILER_LEN as u64));
    let data_end = (file.len() - FOOTER_LEN) as u64;
    let Some(end) = end.filter(|&e| e <= data_end) else {
        return Err(table(format!(
            "{what} at offset {} of {} bytes runs past the table's data ({data_end} bytes; truncated?)",
            handle.offset, handle.size
        )));
    };
    let (start, len) = (handle.offset as usize, handle.size as usize);
    let contents = &file[start..start + len];
    let kind = file[start + len];
    let stored = u32::from_le_bytes(file[start + len + 1..end as usize].try_into().unwrap_or_default());
    let actual = mask_crc(crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]));
    if stored != actual {
        return Err(table(format!(
            "{what} at offset {}: CRC32C mismatch (stored {stored:#010x}, computed {actual:#010x})",
            handle.offset
        )));
    }
    match kind {
        0 => Ok(contents.to_vec()),
        1 => Err(table(format!(
            "{what} at offset {}: snappy-compressed blocks are not supported",
            handle.offset
        ))),
        k => Err(table(format!("{what} at offset {}: unknown compression type {k}", handle.offset))),
    }
}

/// The entries of one block (`offset`: where it lies in the file, for messages).
fn block_entries(
    path: &Path,
    block: &[u8],
    offset: u64,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TfCheckpointError> {
    let table = |problem: String| TfCheckpointError::Table {
        path: path.to_path_buf(),
        problem: format!("block at offset {offset}: {problem}"),
    };
    if block.len() < 4 {
        return Err(table(format!("{} bytes, too short for its restart count", block.len())));
    }
    let restarts = u32::from_le_bytes(block[block.len() - 4..].try_into().unwrap_or_default()) as usize;
    let restart_bytes = restarts.checked_mul(4).and_then(|r| r.checked_add(4)).filter(|&r| r <= block.len());
    let Some(restart_bytes) = restart_bytes else {
        return Err(table(format!("{restarts} restart points do not fit in {} bytes", block.len())));
    };
    let end = block.len() - restart_bytes;
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut pos = 0;
    while pos < end {
        let at = pos;
        let header = (|| {
            Some((
                read_varint(block, &mut pos)?,
                read_varint(block, &mut pos)?,
                read_varint(block, &mut pos)?,
            ))
        })();
        let Some((shared, unshared, value_len)) = header else {
            return Err(table(format!("entry at byte {at}: truncated header")));
        };
        if shared as usize > key.len() {
            return Err(table(format!(
                "entry at byte {at}: shares {shared} key bytes, the previous key has {}",
                key.len()
            )));
        }
        let key_end = pos.checked_add(unshared as usize);
        let value_end = key_end.and_then(|k| k.checked_add(value_len as usize)).filter(|&v| v <= end);
        let (Some(key_end), Some(value_end)) = (key_end, value_end) else {
            return Err(table(format!(
                "entry at byte {at}: key and value run past the block's {end} bytes of entries"
            )));
        };
        key.truncate(shared as usize);
        key.extend_from_slice(&block[pos..key_end]);
        entries.push((key.clone(), block[key_end..value_end].to_vec()));
        pos = value_end;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_matches_leveldb() {
        // LevelDB's crc32c_test: Unmask(Mask(x)) == x and Mask(x) != x.
        let crc = crc32c::crc32c(b"foo");
        assert_ne!(mask_crc(crc), crc);
        let unmasked = mask_crc(crc).wrapping_sub(0xa282_ead8).rotate_left(15);
        assert_eq!(unmasked, crc);
    }

    #[test]
    fn varints_decode_and_truncation_is_none() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0xac, 0x02], &mut pos), Some(300));
        assert_eq!(pos, 2);
        assert_eq!(read_varint(&[0xac], &mut 0), None);
    }
}
