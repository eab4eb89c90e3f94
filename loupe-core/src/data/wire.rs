//! A borrowing walk over the protobuf wire format of a frame-level `SequenceExample`,
//! the hot path of decoding (no allocation per frame: frame bytes are copied straight
//! from the payload into the video's buffer).
//!
//! It only handles the regular case and answers `None` for anything else (a repeated
//! message that protobuf would merge, a duplicate key, an unexpected list type, a size
//! mismatch, malformed bytes): the caller then decodes with the prost messages, which
//! give the authoritative result or error. So this walk never changes what a record
//! decodes to; tests and the fuzz target check it against prost.

use super::features::{FeatureSpec, ID_KEYS};
use super::proto::{Feature, FeatureList, Message};
use super::ratings::SEGMENT_KEYS;

/// A protobuf field: number and borrowed value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Fields<'a> {
    buf: &'a [u8],
}

/// Reads a varint; `None` if truncated or longer than ten bytes (or overflowing).
#[inline(always)]
fn varint(buf: &mut &[u8]) -> Option<u64> {
    // Keys and lengths of YouTube-8M records take one or two bytes.
    match **buf {
        [b0, ..] if b0 < 0x80 => {
            *buf = &buf[1..];
            Some(u64::from(b0))
        }
        [b0, b1, ..] if b1 < 0x80 => {
            *buf = &buf[2..];
            Some(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
        }
        _ => varint_long(buf),
    }
}

#[inline(never)]
fn varint_long(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            // The tenth byte may only carry the top bit.
            return (i < 9 || byte <= 1).then_some(value);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    /// `None` inside: malformed.
    type Item = Option<(u32, Value<'a>)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    #[inline]
    fn field(&mut self) -> Option<(u32, Value<'a>)> {
        let key = varint(&mut self.buf)?;
        let number = u32::try_from(key >> 3).ok().filter(|&n| n > 0 && n < (1 << 29))?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut self.buf)?),
            1 => {
                self.buf = self.buf.get(8..)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(varint(&mut self.buf)?).ok()?;
                if len > self.buf.len() {
                    return None;
                }
                let (bytes, rest) = self.buf.split_at(len);
                self.buf = rest;
                Value::Bytes(bytes)
            }
            5 => {
                self.buf = self.buf.get(4..)?;
                Value::Fixed
            }
            _ => return None, // groups: leave them to prost
        };
        Some((number, value))
    }
}

/// The single length-delimited field `number` of `message`; `None` if it is absent
/// (returned as `Some(None)`), repeated or malformed. Other fields must be well formed.
fn single_bytes(message: &[u8], number: u32) -> Option<Option<&[u8]>> {
    let mut found = None;
    for field in Fields::new(message) {
        match field? {
            (n, Value::Bytes(b)) if n == number && found.replace(b).is_some() => {
                return None;
            }
            (n, _) if n == number => return None,
            _ => {}
        }
    }
    Some(found)
}

/// The (key, value) entries of a `map<string, message>` field 1 of `message`, with
/// distinct UTF-8 keys.
fn map_entries(message: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    let mut entries: Vec<(&str, &[u8])> = Vec::new();
    for field in Fields::new(message) {
        match field? {
            (1, Value::Bytes(entry)) => {
                let key = single_bytes(entry, 1)?.unwrap_or(&[]);
                let key = std::str::from_utf8(key).ok()?;
                let value = single_bytes(entry, 2)?.unwrap_or(&[]);
                if entries.iter().any(|(k, _)| *k == key) {
                    return None;
                }
                entries.push((key, value));
            }
            (1, _) => return None,
            _ => {}
        }
    }
    Some(entries)
}

/// The byte values of a `Feature` holding a `BytesList`, visited in order; the total
/// length.
fn bytes_values<'a>(feature: &'a [u8], mut visit: impl FnMut(&'a [u8])) -> Option<usize> {
    let mut list = None;
    for field in Fields::new(feature) {
        match field? {
            (1, Value::Bytes(b)) if list.is_none() => list = Some(b),
            (1..=3, _) => return None, // another kind, or a merged repeat
            _ => {}
        }
    }
    let mut total = 0;
    for field in Fields::new(list?) {
        match field? {
            (1, Value::Bytes(b)) => {
                total += b.len();
                visit(b);
            }
            (1, _) => return None,
            _ => {}
        }
    }
    Some(total)
}

/// The values of a `Feature` holding an `Int64List` (packed or not).
fn int64_values(feature: &[u8]) -> Option<Vec<i64>> {
    let mut list = None;
    for field in Fields::new(feature) {
        match field? {
            (3, Value::Bytes(b)) if list.is_none() => list = Some(b),
            (1..=3, _) => return None,
            _ => {}
        }
    }
    let mut values = Vec::new();
    for field in Fields::new(list?) {
        match field? {
            (1, Value::Varint(v)) => values.push(v as i64),
            (1, Value::Bytes(mut packed)) => {
                while !packed.is_empty() {
                    values.push(varint(&mut packed)? as i64);
                }
            }
            (1, Value::Fixed) => return None,
            _ => {}
        }
    }
    Some(values)
}

/// The next frame (a `Feature` message: field 1 of a `FeatureList`) of `list`;
/// `Some(None)` at its end, `None` if malformed or of another wire type.
#[inline]
fn next_frame<'a>(list: &mut Fields<'a>) -> Option<Option<&'a [u8]>> {
    for field in list.by_ref() {
        match field? {
            (1, Value::Bytes(frame)) => return Some(Some(frame)),
            (1, _) => return None,
            _ => {}
        }
    }
    Some(None)
}

/// The value of the usual frame encoding, `Feature { bytes_list: BytesList { value:
/// [bytes] } }` with nothing else, without walking the general way: `None` for any
/// other layout, which [`bytes_values`] then decides.
#[inline]
fn single_frame_value(feature: &[u8]) -> Option<&[u8]> {
    let mut buf = feature;
    (buf.first() == Some(&0x0a)).then_some(())?;
    buf = &buf[1..];
    let len = varint(&mut buf)?;
    (len == buf.len() as u64 && buf.first() == Some(&0x0a)).then_some(())?;
    buf = &buf[1..];
    let len = varint(&mut buf)?;
    (len == buf.len() as u64).then_some(buf)
}

/// Appends the bytes of one frame (a `Feature` holding a `BytesList`) to `out`.
#[inline]
fn push_frame(out: &mut Vec<u8>, feature: &[u8]) -> Option<()> {
    match single_frame_value(feature) {
        Some(value) => out.extend_from_slice(value),
        None => {
            bytes_values(feature, |b| out.extend_from_slice(b))?;
        }
    }
    Some(())
}

/// The byte length of one frame (a `Feature` holding a `BytesList`).
#[inline]
fn frame_size(feature: &[u8]) -> Option<usize> {
    match single_frame_value(feature) {
        Some(value) => Some(value.len()),
        None => bytes_values(feature, |_| {}),
    }
}

/// At least the number of well-formed frames of the right size that the shortest of
/// `lists` can hold: each frame takes its bytes plus at least six bytes of framing
/// (key and length of the frame, of its `BytesList`, and of one value).
fn frames_upper_bound(spec: &FeatureSpec, lists: &[&[u8]]) -> usize {
    spec.streams().iter().zip(lists).map(|(stream, list)| list.len() / (stream.size + 6)).min().unwrap_or(0)
}

/// What the fast walk extracted from a regular frame-level record.
pub(crate) struct RegularFrames {
    pub id: String,
    /// Raw labels, to be range-checked by the caller.
    pub labels: Vec<i64>,
    /// The `segment_*` context features found (in [`SEGMENT_KEYS`] order), to be
    /// checked by the caller; small, so decoded with prost.
    pub segment_features: [Option<Feature>; 4],
    /// Frames stored in the record (before truncation to `max_frames`).
    pub stored_frames: usize,
    pub num_frames: usize,
    pub frames: Vec<u8>,
}

/// Decodes a regular frame-level record, keeping up to `max_frames` frames; `None`
/// means "not regular: decode with prost". With `exact_streams`, a feature list the spec
/// does not name is irregular.
pub(crate) fn decode_regular_frames(
    payload: &[u8],
    spec: &FeatureSpec,
    max_frames: usize,
    exact_streams: bool,
) -> Option<RegularFrames> {
    let context = single_bytes(payload, 1)?.unwrap_or(&[]);
    let lists = single_bytes(payload, 2)?.unwrap_or(&[]);

    let context = map_entries(context)?;
    let find = |key: &str| context.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let id_key = *ID_KEYS.iter().find(|k| find(k).is_some())?;
    let id_feature = find(id_key)?;
    let mut id_values = Vec::new();
    bytes_values(id_feature, |b| id_values.push(b))?;
    let [id] = id_values[..] else { return None };
    let id = std::str::from_utf8(id).ok()?.to_string();
    let labels = match find("labels") {
        Some(f) => int64_values(f)?,
        None => Vec::new(),
    };
    // Context features this walk does not use must still be valid protobuf.
    let mut segment_features: [Option<Feature>; 4] = Default::default();
    for (key, value) in &context {
        if *key == id_key || *key == "labels" {
            continue;
        }
        let feature = Feature::decode(*value).ok()?;
        if let Some(i) = SEGMENT_KEYS.iter().position(|k| k == key) {
            segment_features[i] = Some(feature);
        }
    }

    let lists = map_entries(lists)?;
    let mut streams = Vec::with_capacity(spec.streams().len());
    for stream in spec.streams() {
        streams.push(lists.iter().find(|(k, _)| *k == stream.name)?.1);
    }
    for (key, value) in &lists {
        if !spec.streams().iter().any(|s| s.name == *key)
            && (exact_streams || FeatureList::decode(*value).is_err())
        {
            return None;
        }
    }
    // One pass over the streams in lockstep: every frame of every stream must be a
    // bytes list of the stream's size, and all streams must hold as many frames; the
    // kept frames are appended row by row (no zero-filling, no per-frame allocation).
    // Anything irregular abandons the partly filled buffer and answers `None`.
    let dim = spec.feature_dim();
    let mut frames = Vec::with_capacity(frames_upper_bound(spec, &streams).min(max_frames) * dim);
    let mut cursors: Vec<Fields<'_>> = streams.iter().map(|list| Fields::new(list)).collect();
    let mut stored = 0;
    loop {
        let mut ended = 0;
        for (stream, cursor) in spec.streams().iter().zip(&mut cursors) {
            let Some(frame) = next_frame(cursor)? else {
                ended += 1;
                continue;
            };
            if stored < max_frames {
                let start = frames.len();
                push_frame(&mut frames, frame)?;
                (frames.len() - start == stream.size).then_some(())?;
            } else {
                (frame_size(frame)? == stream.size).then_some(())?;
            }
        }
        match ended {
            0 => stored += 1,
            n if n == cursors.len() => break,
            _ => return None, // the streams hold different frame counts
        }
    }
    if stored == 0 {
        return None;
    }
    let num_frames = stored.min(max_frames);
    debug_assert_eq!(frames.len(), num_frames * dim);
    Some(RegularFrames { id, labels, segment_features, stored_frames: stored, num_frames, frames })
}
