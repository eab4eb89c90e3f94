//! A little-endian byte encoding for the per-video results ranks send to rank 0
//! (labels, top-k predictions, video ids): no schema, read back in the order written.

use super::DistributedError;

/// Appends values to a byte buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f32(&mut self, v: f32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A length-prefixed list of `u32`.
    pub fn u32s(&mut self, values: &[u32]) {
        self.u32(values.len() as u32);
        values.iter().for_each(|&v| self.u32(v));
    }

    /// A length-prefixed list of `(class, score)` pairs.
    pub fn pairs(&mut self, values: &[(u32, f32)]) {
        self.u32(values.len() as u32);
        for &(c, s) in values {
            self.u32(c);
            self.f32(s);
        }
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.bytes.extend_from_slice(s.as_bytes());
    }

    /// Bytes as they are (their reader knows their layout).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// A length-prefixed block of bytes.
    pub fn blob(&mut self, bytes: &[u8]) {
        self.u32(bytes.len() as u32);
        self.raw(bytes);
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads what an [`Encoder`] wrote; errors name the sending rank.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    rank: usize,
}

impl<'a> Decoder<'a> {
    /// Reads `bytes`, which rank `rank` sent.
    pub fn new(bytes: &'a [u8], rank: usize) -> Self {
        Decoder { bytes, rank }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DistributedError> {
        if self.bytes.len() < n {
            return Err(DistributedError::Malformed {
                rank: self.rank,
                what: format!("{n} more bytes expected, {} left", self.bytes.len()),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32, DistributedError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn f32(&mut self) -> Result<f32, DistributedError> {
        Ok(f32::from_bits(self.u32()?))
    }

    /// A list length, checked against the bytes left (`size` bytes per element).
    fn len(&mut self, size: usize) -> Result<usize, DistributedError> {
        let n = self.u32()? as usize;
        if n * size > self.bytes.len() {
            return Err(DistributedError::Malformed {
                rank: self.rank,
                what: format!("a list of {n} exceeds the {} bytes left", self.bytes.len()),
            });
        }
        Ok(n)
    }

    pub fn u32s(&mut self) -> Result<Vec<u32>, DistributedError> {
        let n = self.len(4)?;
        (0..n).map(|_| self.u32()).collect()
    }

    pub fn pairs(&mut self) -> Result<Vec<(u32, f32)>, DistributedError> {
        let n = self.len(8)?;
        (0..n).map(|_| Ok((self.u32()?, self.f32()?))).collect()
    }

    pub fn blob(&mut self) -> Result<Vec<u8>, DistributedError> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }

    pub fn str(&mut self) -> Result<String, DistributedError> {
        let n = self.len(1)?;
        let rank = self.rank;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| DistributedError::Malformed { rank, what: "a video id is not UTF-8".into() })
    }
}
