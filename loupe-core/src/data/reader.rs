//! Reading the videos of one file, detecting a file's format, streams and frame encoding
//! from its first record, finding shard files, and counting what `skip_corrupt` skipped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{DataError, RecordLocation, Result};
use super::features::{DataFormat, FeatureSpec};
use super::mediapipe::{holds_float_frames, AUDIO_FEATURE, RGB_FEATURE};
use super::tfrecord::RecordReader;
use super::video::{detect_format, DecodedVideo, Video, VideoDecoder};

/// How many skipped-record messages a [`SkipReport`] keeps verbatim.
pub const SKIP_MESSAGES_KEPT: usize = 32;

/// What `skip_corrupt` skipped.
///
/// ```
/// use loupe_core::data::{DataError, SkipReport};
///
/// let mut report = SkipReport::default();
/// report.add(&DataError::EmptyFile { path: "train0000.tfrecord".into() });
/// assert_eq!(report.abandoned_files, 1);
/// assert_eq!(report.reasons["empty_file"], 1);
/// assert_eq!(report.summary(), "skipped 0 records, abandoned 1 file (empty_file 1)");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkipReport {
    /// Records skipped whose framing was intact (bad payload CRC, bad protobuf, bad
    /// feature): reading went on with the next record.
    pub skipped_records: u64,
    /// Files whose remainder was abandoned (truncation, length CRC mismatch, not
    /// TFRecord, I/O error) or that held no record at all.
    pub abandoned_files: u64,
    /// Skipped records and abandoned files per kind of problem
    /// ([`DataError::skip_reason`]).
    pub reasons: BTreeMap<String, u64>,
    /// The first [`SKIP_MESSAGES_KEPT`] error messages.
    pub messages: Vec<String>,
}

impl SkipReport {
    /// Whether nothing was skipped.
    pub fn is_empty(&self) -> bool {
        self.skipped_records == 0 && self.abandoned_files == 0
    }

    /// Adds the counts and messages of `other`.
    pub fn merge(&mut self, other: &SkipReport) {
        self.skipped_records += other.skipped_records;
        self.abandoned_files += other.abandoned_files;
        for (reason, n) in &other.reasons {
            *self.reasons.entry(reason.clone()).or_default() += n;
        }
        for m in &other.messages {
            if self.messages.len() < SKIP_MESSAGES_KEPT {
                self.messages.push(m.clone());
            }
        }
    }

    /// Counts `error`: a skipped record when it is record-local
    /// ([`DataError::is_record_local`]), else an abandoned file.
    pub fn add(&mut self, error: &DataError) {
        if error.is_record_local() {
            self.skipped_records += 1;
        } else {
            self.abandoned_files += 1;
        }
        *self.reasons.entry(error.skip_reason().to_string()).or_default() += 1;
        if self.messages.len() < SKIP_MESSAGES_KEPT {
            self.messages.push(error.to_string());
        }
    }

    /// One line for a run's summary: `skipped 3 records, abandoned 1 file (crc 1, ...)`.
    pub fn summary(&self) -> String {
        let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let reasons: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let mut line = format!(
            "skipped {}, abandoned {}",
            plural(self.skipped_records, "record"),
            plural(self.abandoned_files, "file")
        );
        if !reasons.is_empty() {
            line.push_str(&format!(" ({})", reasons.join(", ")));
        }
        line
    }
}

/// The videos of one TFRecord file, in file order.
///
/// Without `skip_corrupt` the first error ends the iteration (after being yielded);
/// with it, corrupt records are skipped and counted in [`VideoReader::skip_report`].
/// A file without any record is an error ([`DataError::EmptyFile`]): a shard that
/// should hold videos and holds none is almost always a failed download or write.
///
/// ```no_run
/// use loupe_core::data::{DataFormat, VideoDecoder, VideoReader};
///
/// let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel).with_num_classes(3862);
/// for video in VideoReader::open("train0000.tfrecord", &decoder)? {
///     let video = video?;
///     println!("{}: {} frames, labels {:?}", video.id, video.num_frames, video.labels);
/// }
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
pub struct VideoReader<R> {
    records: RecordReader<R>,
    path: PathBuf,
    decoder: VideoDecoder,
    skip_corrupt: bool,
    report: SkipReport,
    on_skip: Option<Box<dyn FnMut(&DataError) + Send>>,
    saw_record_or_error: bool,
    done: bool,
}

impl VideoReader<File> {
    /// Opens `path` for decoding with `decoder`.
    pub fn open(path: impl AsRef<Path>, decoder: &VideoDecoder) -> Result<Self> {
        Ok(Self::new(RecordReader::open(path)?, decoder))
    }
}

impl<R: Read> VideoReader<R> {
    /// Decodes the records of `records` with `decoder`.
    pub fn new(records: RecordReader<R>, decoder: &VideoDecoder) -> Self {
        Self {
            path: records.path().to_path_buf(),
            records,
            decoder: decoder.clone(),
            skip_corrupt: false,
            report: SkipReport::default(),
            on_skip: None,
            saw_record_or_error: false,
            done: false,
        }
    }

    /// Skips corrupt records (and an empty file) instead of failing; see
    /// [`VideoReader::skip_report`].
    pub fn skip_corrupt(mut self, skip: bool) -> Self {
        self.skip_corrupt = skip;
        self
    }

    /// Calls `f` with each problem skipped (after counting it in the report), e.g. to
    /// collect the reports of many files as they happen.
    pub fn on_skip(mut self, f: impl FnMut(&DataError) + Send + 'static) -> Self {
        self.on_skip = Some(Box::new(f));
        self
    }

    /// What was skipped so far.
    pub fn skip_report(&self) -> &SkipReport {
        &self.report
    }

    /// The next video with frame-level features still quantised.
    pub fn next_decoded(&mut self) -> Option<Result<DecodedVideo>> {
        while !self.done {
            let record = self.records.next_index();
            let error = match self.records.read_record() {
                Ok(Some(payload)) => {
                    self.saw_record_or_error = true;
                    let at = RecordLocation { path: &self.path, record };
                    match self.decoder.decode_record(payload, at) {
                        Ok(video) => return Some(Ok(video)),
                        Err(e) => e,
                    }
                }
                Ok(None) => {
                    self.done = true;
                    if self.saw_record_or_error {
                        return None;
                    }
                    DataError::EmptyFile { path: self.path.clone() }
                }
                Err(e) => {
                    self.saw_record_or_error = true;
                    e
                }
            };
            if !self.skip_corrupt {
                self.done = true;
                return Some(Err(error));
            }
            if !error.is_record_local() {
                self.done = true;
            }
            self.report.add(&error);
            if let Some(f) = &mut self.on_skip {
                f(&error);
            }
        }
        None
    }
}

impl<R: Read> Iterator for VideoReader<R> {
    type Item = Result<Video>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_decoded().map(|r| r.map(DecodedVideo::into_video))
    }
}

/// The files matching a glob pattern, sorted; an error if none match.
pub fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>> {
    let paths =
        glob::glob(pattern).map_err(|source| DataError::Pattern { pattern: pattern.to_string(), source })?;
    let mut files = Vec::new();
    for entry in paths {
        match entry {
            Ok(path) if path.is_file() => files.push(path),
            Ok(_) => {}
            Err(e) => {
                let path = e.path().to_path_buf();
                return Err(DataError::Io { path, action: "listing", source: e.into() });
            }
        }
    }
    if files.is_empty() {
        return Err(DataError::NoMatch { pattern: pattern.to_string() });
    }
    files.sort();
    Ok(files)
}

/// The files of several patterns (each must match), in pattern order, duplicates
/// removed. A pattern without glob metacharacters names a file that must exist.
pub fn expand_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        for path in expand_glob(pattern.as_ref())? {
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        return Err(DataError::NoMatch { pattern: String::new() });
    }
    Ok(files)
}

/// Detects whether the file at `path` is frame-level or video-level from its first
/// record.
pub fn detect_file_format(path: impl AsRef<Path>) -> Result<DataFormat> {
    let path = path.as_ref();
    let mut records = RecordReader::open(path)?;
    let payload = records.read_record()?.ok_or_else(|| DataError::EmptyFile { path: path.to_path_buf() })?;
    detect_format(payload).ok_or_else(|| DataError::UnknownFormat { path: path.to_path_buf() })
}

/// Detects the format of the file at `path` and the streams its first record holds:
/// YouTube-8M's `rgb`/`audio` (or `mean_rgb`/`mean_audio`) first in that order, then
/// any other byte feature lists (frame-level) or float features (video-level) by name.
/// Sizes are those of the first record (its first frame, for frame-level data).
pub fn detect_file_layout(path: impl AsRef<Path>) -> Result<(DataFormat, FeatureSpec)> {
    use super::proto::{feature::Kind, SequenceExample};
    use prost::Message;

    let path = path.as_ref();
    let format = detect_file_format(path)?;
    let mut records = RecordReader::open(path)?;
    let payload = records.read_record()?.ok_or_else(|| DataError::EmptyFile { path: path.to_path_buf() })?;
    let example = SequenceExample::decode(payload).map_err(|source| DataError::Decode {
        path: path.to_path_buf(),
        record: 0,
        message: "SequenceExample",
        source,
    })?;
    let mut streams: Vec<(String, usize)> = match format {
        DataFormat::FrameLevel => example
            .feature_lists
            .unwrap_or_default()
            .feature_list
            .into_iter()
            .filter_map(|(name, list)| match list.feature.first().and_then(|f| f.kind.as_ref()) {
                Some(Kind::BytesList(b)) => Some((name, b.value.iter().map(Vec::len).sum())),
                // MediaPipe's feature files: one float list per frame ([`super::mediapipe`]).
                Some(Kind::FloatList(f)) => Some((name, f.value.len())),
                _ => None,
            })
            .collect(),
        DataFormat::VideoLevel => example
            .context
            .unwrap_or_default()
            .feature
            .into_iter()
            .filter_map(|(name, f)| match f.kind {
                Some(Kind::FloatList(l)) => Some((name, l.value.len())),
                _ => None,
            })
            .collect(),
    };
    let rank = |name: &str| match name {
        "rgb" | "mean_rgb" | RGB_FEATURE => 0,
        "audio" | "mean_audio" | AUDIO_FEATURE => 1,
        _ => 2,
    };
    streams.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(a.0.cmp(&b.0)));
    let spec =
        FeatureSpec::new(streams).map_err(|_| DataError::UnknownFormat { path: path.to_path_buf() })?;
    Ok((format, spec))
}

/// Whether the first record of `path` stores float frames
/// ([`super::mediapipe::holds_float_frames`]): a MediaPipe feature
/// file.
pub fn detect_float_frames(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let mut records = RecordReader::open(path)?;
    let payload = records.read_record()?.ok_or_else(|| DataError::EmptyFile { path: path.to_path_buf() })?;
    Ok(holds_float_frames(payload))
}

/// The decoder for `path`: format and streams detected from its first record
/// ([`detect_file_layout`]), float frames read as floats ([`detect_float_frames`]).
///
/// ```no_run
/// let decoder = loupe_core::data::detect_decoder("features.tfrecord")?;
/// assert!(decoder.float_frames());
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
pub fn detect_decoder(path: impl AsRef<Path>) -> Result<VideoDecoder> {
    let (format, spec) = detect_file_layout(path.as_ref())?;
    Ok(VideoDecoder::new(format, spec).with_float_frames(detect_float_frames(path)?))
}
