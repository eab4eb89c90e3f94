//! TFRecord framing: `u64 length (LE) | u32 masked crc32c(length) | payload |
//! u32 masked crc32c(payload)` (docs/reference.md section 6). Both checksums are always
//! verified.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{DataError, RecordPart, Result};

/// Size of the header before the payload: length (8) and its masked CRC (4).
const HEADER_LEN: usize = 12;
/// Default upper bound on one record's length. YouTube-8M records are below 1 MiB;
/// the bound keeps a corrupt length from asking for gigabytes.
pub const DEFAULT_MAX_RECORD_LEN: u64 = 256 << 20;
/// The payload buffer grows by at most this much per read, so a truncated file that
/// claims a huge record never allocates more than it actually holds (plus one chunk).
const GROWTH_CHUNK: usize = 1 << 20;
/// The least size of the read buffer, and how far a read may run ahead of the record
/// being read: records smaller than this come many to a `read` call, larger ones are
/// read straight into place.
const READ_AHEAD: usize = 64 << 10;
/// Footer after the payload: its masked CRC.
const FOOTER_LEN: usize = 4;
/// The constant TensorFlow adds when masking a CRC.
const MASK_DELTA: u32 = 0xa282_ead8;

/// The masked CRC-32C (Castagnoli) of `bytes`, as stored in TFRecord files.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// The name used in errors for readers and writers that were given no path.
fn unnamed() -> PathBuf {
    PathBuf::from("<stream>")
}

/// Reads TFRecord records one at a time from any [`Read`] into one reused buffer, which
/// is also the read buffer: small records come many to a `read` call, and a record
/// larger than the read-ahead is read straight into place, so its bytes are copied
/// once (from the input) and never again. No allocation per record once the buffer
/// has grown to the largest record.
///
/// After a framing error (truncation, length CRC mismatch, oversized length) the
/// reader is finished and returns `Ok(None)`; after a payload CRC mismatch the framing
/// is intact and reading goes on with the next record.
///
/// ```
/// use loupe_core::data::{RecordReader, RecordWriter};
///
/// let mut writer = RecordWriter::new(Vec::new());
/// writer.write_record(b"first")?;
/// writer.write_record(b"second")?;
/// let bytes = writer.finish()?;
///
/// let mut reader = RecordReader::new(bytes.as_slice());
/// assert_eq!(reader.read_record()?, Some(&b"first"[..]));
/// assert_eq!(reader.read_record()?, Some(&b"second"[..]));
/// assert_eq!(reader.read_record()?, None);
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
pub struct RecordReader<R> {
    inner: R,
    path: PathBuf,
    /// Read buffer; `buf[pos..end]` is read but not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    next_index: u64,
    max_len: u64,
    finished: bool,
}

impl RecordReader<File> {
    /// Opens the TFRecord file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            action: "opening",
            source,
        })?;
        Ok(Self::with_path(file, path))
    }
}

impl<R: Read> RecordReader<R> {
    /// A reader over `inner`; errors name the source `<stream>`.
    pub fn new(inner: R) -> Self {
        Self::with_path(inner, unnamed())
    }

    /// A reader over `inner` whose errors name `path`.
    pub fn with_path(inner: R, path: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            path: path.into(),
            buf: Vec::new(),
            pos: 0,
            end: 0,
            next_index: 0,
            max_len: DEFAULT_MAX_RECORD_LEN,
            finished: false,
        }
    }

    /// Sets the largest record length accepted (default [`DEFAULT_MAX_RECORD_LEN`]).
    pub fn with_max_record_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// The path (or `<stream>`) errors name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index the next record will have; equals the number of records attempted.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Reads the next record's payload. `Ok(None)` at the end of the input, or after
    /// a framing error.
    pub fn read_record(&mut self) -> Result<Option<&[u8]>> {
        if self.finished {
            return Ok(None);
        }
        let index = self.next_index;
        let len = match self.read_header(index) {
            Ok(Some(len)) => len,
            Ok(None) => {
                self.finished = true;
                return Ok(None);
            }
            Err(e) => {
                self.finished = true;
                return Err(e);
            }
        };
        self.next_index += 1;
        // The whole record, header and footer included, in one piece of the buffer.
        let Some(record_len) = len.checked_add(HEADER_LEN + FOOTER_LEN) else {
            self.finished = true;
            return Err(DataError::RecordTooLarge {
                path: self.path.clone(),
                record: index,
                length: len as u64,
                limit: (usize::MAX - HEADER_LEN - FOOTER_LEN) as u64,
            });
        };
        let found = match self.fill(record_len) {
            Ok(found) => found,
            Err(e) => {
                self.finished = true;
                return Err(self.io(e));
            }
        };
        if found < record_len {
            self.finished = true;
            return Err(DataError::Truncated {
                path: self.path.clone(),
                record: index,
                part: RecordPart::Payload,
                expected: (len + FOOTER_LEN) as u64,
                found: (found - HEADER_LEN) as u64,
            });
        }
        let start = self.pos + HEADER_LEN;
        let (payload, footer) = self.buf[start..start + len + FOOTER_LEN].split_at(len);
        let stored = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
        let computed = masked_crc32c(payload);
        // The framing is intact either way: the next record follows.
        self.pos += record_len;
        if stored != computed {
            return Err(DataError::CrcMismatch {
                path: self.path.clone(),
                record: index,
                part: RecordPart::Payload,
                stored,
                computed,
            });
        }
        Ok(Some(&self.buf[start..start + len]))
    }

    /// Reads and checks the 12-byte header at the front of the unread bytes, leaving
    /// it there; `Ok(None)` at a clean end of input.
    fn read_header(&mut self, index: u64) -> Result<Option<usize>> {
        let found = self.fill(HEADER_LEN).map_err(|e| self.io(e))?;
        if found == 0 {
            return Ok(None);
        }
        if found < HEADER_LEN {
            if index == 0 {
                return Err(DataError::NotTfRecord {
                    path: self.path.clone(),
                    reason: format!("header needs {HEADER_LEN} bytes but the file holds only {found}"),
                });
            }
            return Err(DataError::Truncated {
                path: self.path.clone(),
                record: index,
                part: RecordPart::Length,
                expected: HEADER_LEN as u64,
                found: found as u64,
            });
        }
        let header = &self.buf[self.pos..self.pos + HEADER_LEN];
        let (len_bytes, crc_bytes) = header.split_at(8);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        let computed = masked_crc32c(len_bytes);
        let mut len = [0u8; 8];
        len.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(len);
        if stored != computed {
            if index == 0 {
                return Err(DataError::NotTfRecord {
                    path: self.path.clone(),
                    reason: format!(
                        "length checksum does not match (stored {stored:#010x}, computed {computed:#010x})"
                    ),
                });
            }
            return Err(DataError::CrcMismatch {
                path: self.path.clone(),
                record: index,
                part: RecordPart::Length,
                stored,
                computed,
            });
        }
        if len > self.max_len {
            return Err(DataError::RecordTooLarge {
                path: self.path.clone(),
                record: index,
                length: len,
                limit: self.max_len,
            });
        }
        // `max_len` fits in memory by construction; on 32-bit targets refuse larger.
        usize::try_from(len).map(Some).map_err(|_| DataError::RecordTooLarge {
            path: self.path.clone(),
            record: index,
            length: len,
            limit: usize::MAX as u64,
        })
    }

    /// Makes `need` unread bytes available at `buf[pos..]`, reading as needed; returns
    /// how many are available (fewer than `need` only at the end of the input).
    ///
    /// The buffer grows by at most [`GROWTH_CHUNK`] past the bytes actually read, and
    /// a read asks for at most [`READ_AHEAD`] bytes past `need`, so a record larger
    /// than that lands in place and the next one starts at the front of the buffer.
    fn fill(&mut self, need: usize) -> io::Result<usize> {
        if self.end - self.pos >= need {
            return Ok(self.end - self.pos);
        }
        if need > self.buf.len() - self.pos {
            // Not enough room after `pos`: move the unread bytes to the front.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end - self.pos < need {
            let want = self.pos + need;
            if self.buf.len() < want {
                let target = want.min(self.end + GROWTH_CHUNK).max(READ_AHEAD);
                if self.buf.len() < target {
                    self.buf.resize(target, 0);
                }
            }
            let limit = self.buf.len().min(want.max(self.end + READ_AHEAD));
            match self.inner.read(&mut self.buf[self.end..limit]) {
                Ok(0) => break,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end - self.pos)
    }

    fn io(&self, source: io::Error) -> DataError {
        DataError::Io { path: self.path.clone(), action: "reading", source }
    }
}

/// Writes TFRecord records to any [`Write`]. Call [`RecordWriter::finish`] to flush and
/// see the last write error; dropping the writer flushes silently.
///
/// ```no_run
/// use loupe_core::data::RecordWriter;
///
/// let mut writer = RecordWriter::create("out/train0000.tfrecord")?;
/// writer.write_record(b"payload")?;
/// writer.finish()?;
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
pub struct RecordWriter<W: Write> {
    inner: W,
    path: PathBuf,
    records: u64,
}

impl RecordWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            action: "creating",
            source,
        })?;
        Ok(Self::with_path(BufWriter::with_capacity(256 << 10, file), path))
    }
}

impl<W: Write> RecordWriter<W> {
    /// A writer over `inner`; errors name the sink `<stream>`.
    pub fn new(inner: W) -> Self {
        Self::with_path(inner, unnamed())
    }

    /// A writer over `inner` whose errors name `path`.
    pub fn with_path(inner: W, path: impl Into<PathBuf>) -> Self {
        Self { inner, path: path.into(), records: 0 }
    }

    /// Number of records written so far.
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// Appends one record holding `payload`.
    pub fn write_record(&mut self, payload: &[u8]) -> Result<()> {
        let len = (payload.len() as u64).to_le_bytes();
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&len);
        header[8..].copy_from_slice(&masked_crc32c(&len).to_le_bytes());
        let footer = masked_crc32c(payload).to_le_bytes();
        self.inner
            .write_all(&header)
            .and_then(|()| self.inner.write_all(payload))
            .and_then(|()| self.inner.write_all(&footer))
            .map_err(|source| DataError::Io { path: self.path.clone(), action: "writing", source })?;
        self.records += 1;
        Ok(())
    }

    /// Flushes buffered records to the inner writer (e.g. after each TensorBoard event).
    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(|source| DataError::Io {
            path: self.path.clone(),
            action: "flushing",
            source,
        })
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> Vec<u8> {
        let mut w = RecordWriter::new(Vec::new());
        w.write_record(b"hello").unwrap();
        w.write_record(&[7u8; 3000]).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn masked_crc_matches_tensorflow_for_empty_input() {
        // crc32c("") = 0, so the masked value is the mask delta itself.
        assert_eq!(masked_crc32c(b""), MASK_DELTA);
    }

    #[test]
    fn round_trip_and_clean_end() {
        let bytes = two_records();
        assert_eq!(bytes.len(), 2 * 16 + 5 + 3000);
        let mut r = RecordReader::new(bytes.as_slice());
        assert_eq!(r.read_record().unwrap().unwrap(), b"hello");
        assert_eq!(r.read_record().unwrap().unwrap(), &[7u8; 3000][..]);
        assert!(r.read_record().unwrap().is_none());
        assert_eq!(r.next_index(), 2);
    }

    #[test]
    fn payload_crc_mismatch_keeps_framing() {
        let mut bytes = two_records();
        bytes[12] ^= 1; // first payload byte
        let mut r = RecordReader::new(bytes.as_slice());
        match r.read_record() {
            Err(DataError::CrcMismatch { record: 0, part: RecordPart::Payload, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(r.read_record().unwrap().unwrap().len(), 3000);
    }

    #[test]
    fn truncated_payload_is_reported() {
        let bytes = two_records();
        let cut = &bytes[..bytes.len() - 10];
        let mut r = RecordReader::new(cut);
        r.read_record().unwrap();
        match r.read_record() {
            Err(DataError::Truncated { record: 1, part: RecordPart::Payload, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(r.read_record().unwrap().is_none());
    }

    /// Hands out at most `step` bytes per `read`, as pipes and sockets may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn records_around_the_read_ahead_size_survive_any_read_split() {
        let sizes = [0, 5, READ_AHEAD - 20, 3 * READ_AHEAD + 7, 1, READ_AHEAD, 2 * READ_AHEAD, 9, 0];
        let payloads: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(r, &n)| (0..n).map(|i| (i * 7 + r) as u8).collect()).collect();
        let mut w = RecordWriter::new(Vec::new());
        for p in &payloads {
            w.write_record(p).unwrap();
        }
        let bytes = w.finish().unwrap();
        for step in [1, 13, 4096, READ_AHEAD + 3, usize::MAX] {
            let mut r = RecordReader::new(Trickle { bytes: &bytes, step });
            for p in &payloads {
                assert_eq!(r.read_record().unwrap().unwrap(), &p[..], "step {step}");
            }
            assert!(r.read_record().unwrap().is_none());
            assert!(r.buf.len() <= 3 * READ_AHEAD + 7 + HEADER_LEN + FOOTER_LEN + READ_AHEAD);
        }
    }

    #[test]
    fn huge_claimed_length_in_short_file_does_not_allocate_it() {
        let len = (DEFAULT_MAX_RECORD_LEN).to_le_bytes();
        let mut bytes = len.to_vec();
        bytes.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        bytes.extend_from_slice(b"tiny");
        let mut r = RecordReader::new(bytes.as_slice());
        assert!(matches!(r.read_record(), Err(DataError::Truncated { found: 4, .. })));
        assert!(r.buf.capacity() <= 2 * GROWTH_CHUNK);
    }
}
