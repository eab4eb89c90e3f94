//! TensorBoard event files: TFRecord framing with valid CRCs and `Event` messages as
//! TensorBoard's reader expects them.

mod common;

use loupe::data::proto::Message;
use loupe::data::RecordReader;
use loupe::report::{Event, EventWriter};

#[test]
fn event_files_hold_a_version_event_then_scalars() {
    let dir = common::scratch_dir("events");
    let mut writer = EventWriter::create(&dir).unwrap();
    writer.scalars(1, &[("loss", 0.75), ("learning_rate", 2e-4)]).unwrap();
    writer.scalars(2, &[("loss", 0.5)]).unwrap();
    let path = writer.path().to_path_buf();
    assert!(path.file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));

    // Readable while the writer is still open: every event is flushed.
    let mut reader = RecordReader::open(&path).unwrap();
    let mut events = Vec::new();
    while let Some(record) = reader.read_record().unwrap() {
        events.push(Event::decode(record).unwrap());
    }
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    assert!(events[0].wall_time > 1.6e9);
    assert_eq!(events[1].step, 1);
    let values = &events[1].summary.as_ref().unwrap().value;
    assert_eq!(values[0].tag, "loss");
    assert_eq!(values[0].simple_value, Some(0.75));
    assert_eq!(values[1].tag, "learning_rate");
    assert_eq!(values[1].simple_value, Some(2e-4));
    assert_eq!(events[2].summary.as_ref().unwrap().value[0].simple_value, Some(0.5));
    drop(writer);
}
