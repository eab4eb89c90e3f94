//! YouTube-8M data: TFRecord framing, `tf.train` protobuf messages, decoded videos,
//! frame sampling, streamed and shuffled batches, the vocabulary, and a synthetic data
//! generator with learnable structure.
//!
//! Nothing here depends on dfdx: batches are plain row-major `Vec<f32>` buffers.
//!
//! | concern | module |
//! |---|---|
//! | errors, where a record came from | [`error`] |
//! | record framing and CRCs | [`tfrecord`] |
//! | protobuf messages | [`proto`] |
//! | feature streams, (de)quantisation | [`features`] |
//! | record -> video | [`video`] |
//! | MediaPipe's float frames | [`mediapipe`] |
//! | one file's videos, globbing, format detection, skip reports | [`reader`] |
//! | which frames are pooled | [`sampling`] |
//! | batch layout | [`batch`] |
//! | shuffling, epochs, background loading | [`dataset`] |
//! | `vocabulary.csv` | [`vocabulary`] |
//! | synthetic shards | [`synthetic`] |
//! | summary statistics (`loupe inspect`) | [`stats`] |
//! | ground-truth labels (`loupe score`) | [`labels`] |
//! | one record's rated segments (2019 task) | [`ratings`] |
//! | segment frames, ratings of whole files, class whitelist | [`segments`] |

pub mod batch;
pub mod dataset;
pub mod error;
pub mod features;
pub mod labels;
pub mod mediapipe;
pub mod proto;
pub mod ratings;
pub mod reader;
pub mod sampling;
pub mod segments;
pub mod stats;
pub mod synthetic;
pub mod tfrecord;
pub mod video;
pub mod vocabulary;
mod wire;

pub use batch::{FrameBatch, VideoBatch};
pub use dataset::{Batches, Dataset, ReadOrder};
pub use error::{DataError, RecordLocation, RecordPart, Result, SegmentProblem, VideoContext};
pub use features::{dequantize, quantize, DataFormat, FeatureSpec, FeatureStream, DEFAULT_MAX_FRAMES};
pub use labels::read_labels;
pub use ratings::{RatedSegment, SEGMENT_FRAMES};
pub use reader::{
    detect_decoder, detect_file_format, detect_file_layout, detect_float_frames, expand_glob,
    expand_patterns, SkipReport, VideoReader,
};
pub use sampling::{valid_rows, FrameOrder, FrameSampling};
pub use segments::{read_segment_classes, read_segment_ratings, VideoRatings};
pub use stats::{DatasetStats, StatsAccumulator, VideoSummary};
pub use synthetic::{generate, SynthConfig, SynthSummary};
pub use tfrecord::{masked_crc32c, RecordReader, RecordWriter};
pub use video::{detect_format, DecodedVideo, QuantizedVideo, Video, VideoDecoder};
pub use vocabulary::{Vocabulary, VocabularyEntry};
