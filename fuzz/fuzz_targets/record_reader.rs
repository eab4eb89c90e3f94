//! Arbitrary bytes as a TFRecord file: the reader returns records or errors, never
//! panics, and every record it returns passed both CRC checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loupe_core::data::{masked_crc32c, RecordReader};

fuzz_target!(|data: &[u8]| {
    let mut reader = RecordReader::new(data).with_max_record_len(1 << 20);
    for _ in 0..10_000 {
        match reader.read_record() {
            Ok(Some(payload)) => {
                let _ = masked_crc32c(payload);
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
});
