//! TensorBoard event files: scalar summaries TensorBoard itself reads.
//!
//! An event file is a TFRecord file of `tensorflow.Event` protobuf messages (TensorFlow's
//! `event.proto` and `summary.proto`): a first event with `file_version = "brain.Event:2"`,
//! then one event per (step, scalars). Files are named `events.out.tfevents.<secs>.loupe`
//! so TensorBoard picks them up from the log directory.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::data::{DataError, RecordWriter};

/// `tensorflow.Event` (the fields loupe writes).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value`.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// Writes scalar summaries to an event file, flushing after every event so that a
/// running TensorBoard sees them and a crash loses nothing already logged.
pub struct EventWriter {
    writer: RecordWriter<std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl EventWriter {
    /// Creates `logdir` if needed and a new event file in it.
    pub fn create(logdir: &Path) -> Result<Self, DataError> {
        std::fs::create_dir_all(logdir).map_err(|source| DataError::Io {
            path: logdir.to_path_buf(),
            action: "creating",
            source,
        })?;
        let wall_time = now();
        let path = logdir.join(format!("events.out.tfevents.{}.loupe", wall_time as u64));
        let writer = RecordWriter::create(&path)?;
        let mut this = EventWriter { writer, path };
        this.write(&Event { wall_time, step: 0, file_version: Some("brain.Event:2".into()), summary: None })?;
        Ok(this)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logs `scalars` (tag, value) at `step`.
    pub fn scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), DataError> {
        let value = scalars
            .iter()
            .map(|(tag, v)| SummaryValue { tag: tag.to_string(), simple_value: Some(*v as f32) })
            .collect();
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary { value }),
        })
    }

    fn write(&mut self, event: &Event) -> Result<(), DataError> {
        self.writer.write_record(&event.encode_to_vec())?;
        self.writer.flush()
    }
}
