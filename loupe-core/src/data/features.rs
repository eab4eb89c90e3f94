//! Which feature streams a record holds, and YouTube-8M's uint8 quantisation.

use super::error::{DataError, Result};

/// Dequantisation scale: `value = byte * 4/255 + (4/512 - 2)` (docs/reference.md section 6).
pub const DEQUANTIZE_SCALE: f32 = 4.0 / 255.0;
/// Dequantisation bias: byte 0 maps to -1.9921875.
pub const DEQUANTIZE_BIAS: f32 = 4.0 / 512.0 - 2.0;
/// YouTube-8M readers keep at most this many frames per video.
pub const DEFAULT_MAX_FRAMES: usize = 300;
/// The id keys accepted, in order: `id` (2018 and later) and `video_id` (2017).
pub const ID_KEYS: [&str; 2] = ["id", "video_id"];

/// The float value a quantised byte stands for.
#[inline]
pub fn dequantize(byte: u8) -> f32 {
    f32::from(byte) * DEQUANTIZE_SCALE + DEQUANTIZE_BIAS
}

/// Dequantises `bytes` into `out` (same length).
#[inline]
pub fn dequantize_into(bytes: &[u8], out: &mut [f32]) {
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = dequantize(b);
    }
}

/// The byte YouTube-8M stores for `value`: the inverse of [`dequantize`], rounded to
/// the nearest level and clamped to `0..=255` (non-finite values clamp too; NaN -> 0).
#[inline]
pub fn quantize(value: f32) -> u8 {
    let level = ((value - DEQUANTIZE_BIAS) / DEQUANTIZE_SCALE).round();
    // `as` saturates and maps NaN to 0, which is the clamp we want.
    level.clamp(0.0, 255.0) as u8
}

/// Whether a file holds frame-level `SequenceExample`s or video-level `Example`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// `tf.train.SequenceExample`, one quantised bytes value per frame and stream.
    FrameLevel,
    /// `tf.train.Example`, one float list per stream (the means over frames).
    VideoLevel,
}

impl std::fmt::Display for DataFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataFormat::FrameLevel => "frame-level",
            DataFormat::VideoLevel => "video-level",
        })
    }
}

/// One named feature stream and its size per frame (or per video).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureStream {
    /// The feature (list) key in the record, e.g. `rgb` or `mean_rgb`.
    pub name: String,
    /// Values per frame (frame-level) or per video (video-level).
    pub size: usize,
}

/// The streams to read, in the order they are concatenated per row.
///
/// ```
/// use loupe_core::data::{DataFormat, FeatureSpec};
///
/// let spec = FeatureSpec::youtube8m(DataFormat::FrameLevel);
/// assert_eq!(spec.feature_dim(), 1152);
/// let rgb_only = FeatureSpec::new([("rgb", 1024)])?;
/// assert_eq!(rgb_only.feature_dim(), 1024);
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSpec {
    streams: Vec<FeatureStream>,
}

impl FeatureSpec {
    /// A spec from `(name, size)` pairs; names must be distinct and sizes non-zero.
    pub fn new<S: Into<String>>(streams: impl IntoIterator<Item = (S, usize)>) -> Result<Self> {
        let streams: Vec<FeatureStream> =
            streams.into_iter().map(|(name, size)| FeatureStream { name: name.into(), size }).collect();
        if streams.is_empty() {
            return Err(DataError::Config("a feature spec needs at least one stream".into()));
        }
        for (i, s) in streams.iter().enumerate() {
            if s.size == 0 {
                return Err(DataError::Config(format!("feature `{}` has size 0", s.name)));
            }
            if streams[..i].iter().any(|t| t.name == s.name) {
                return Err(DataError::Config(format!("feature `{}` is listed twice", s.name)));
            }
        }
        Ok(Self { streams })
    }

    /// YouTube-8M's streams: `rgb` 1024 + `audio` 128 per frame, or `mean_rgb` 1024 +
    /// `mean_audio` 128 per video.
    pub fn youtube8m(format: DataFormat) -> Self {
        Self::youtube8m_sized(format, 1024, 128)
    }

    /// YouTube-8M's stream names with other sizes (the synthetic data's small sizes).
    pub fn youtube8m_sized(format: DataFormat, rgb: usize, audio: usize) -> Self {
        let (r, a) = match format {
            DataFormat::FrameLevel => ("rgb", "audio"),
            DataFormat::VideoLevel => ("mean_rgb", "mean_audio"),
        };
        Self {
            streams: vec![
                FeatureStream { name: r.into(), size: rgb.max(1) },
                FeatureStream { name: a.into(), size: audio.max(1) },
            ],
        }
    }

    /// The streams in concatenation order.
    pub fn streams(&self) -> &[FeatureStream] {
        &self.streams
    }

    /// Values per row: the sum of the stream sizes.
    pub fn feature_dim(&self) -> usize {
        self.streams.iter().map(|s| s.size).sum()
    }

    /// Each stream with its offset inside a row.
    pub fn offsets(&self) -> impl Iterator<Item = (usize, &FeatureStream)> {
        self.streams.iter().scan(0, |offset, s| {
            let start = *offset;
            *offset += s.size;
            Some((start, s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantize_matches_the_reference_formula() {
        assert_eq!(dequantize(0), -1.9921875);
        assert!((dequantize(255) - 2.0078125).abs() < 1e-6);
    }

    #[test]
    fn quantize_inverts_dequantize_and_clamps() {
        for b in 0..=255u8 {
            assert_eq!(quantize(dequantize(b)), b);
        }
        assert_eq!(quantize(-100.0), 0);
        assert_eq!(quantize(100.0), 255);
        assert_eq!(quantize(f32::NAN), 0);
        assert_eq!(quantize(f32::INFINITY), 255);
    }

    #[test]
    fn spec_rejects_duplicates_and_zero_sizes() {
        assert!(FeatureSpec::new([("rgb", 4), ("rgb", 4)]).is_err());
        assert!(FeatureSpec::new([("rgb", 0)]).is_err());
        let spec = FeatureSpec::new([("a", 3), ("b", 5)]).unwrap();
        let offsets: Vec<_> = spec.offsets().map(|(o, s)| (o, s.size)).collect();
        assert_eq!(offsets, vec![(0, 3), (3, 5)]);
    }
}
