//! Frame-level decoding throughput: TFRecord framing with both CRCs checked, protobuf
//! decoding and feature extraction, on records of the paper's size (200 frames of
//! 1024 + 128 bytes). Run: `cargo bench --bench data_decode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loupe::data::proto::Message;
use loupe::data::{DataFormat, FeatureSpec, QuantizedVideo, RecordLocation, RecordReader, RecordWriter, VideoDecoder};

const RECORDS: usize = 64;
const FRAMES: usize = 200;

fn shard() -> Vec<u8> {
    let spec = FeatureSpec::youtube8m(DataFormat::FrameLevel);
    let mut writer = RecordWriter::new(Vec::new());
    for r in 0..RECORDS {
        let video = QuantizedVideo {
            id: format!("video{r:06}"),
            labels: vec![r as u32 % 3862, 7, 1000],
            num_frames: FRAMES,
            frames: (0..FRAMES * 1152).map(|i| (i * 31 + r) as u8).collect(),
        };
        writer.write_record(&video.to_sequence_example(&spec, "id").encode_to_vec()).unwrap();
    }
    writer.finish().unwrap()
}

fn decode(c: &mut Criterion) {
    let bytes = shard();
    let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel).with_num_classes(3862);
    let mut group = c.benchmark_group("data_decode_cpu");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("frame_level_quantized", |b| {
        b.iter(|| {
            let mut reader = RecordReader::new(bytes.as_slice());
            let mut frames = 0;
            while let Some(payload) = reader.read_record().unwrap() {
                let at = RecordLocation { path: std::path::Path::new("bench"), record: 0 };
                frames += decoder.decode_frames(payload, at).unwrap().num_frames;
            }
            assert_eq!(frames, RECORDS * FRAMES);
        })
    });
    group.bench_function("frame_level_dequantized", |b| {
        b.iter(|| {
            let mut reader = RecordReader::new(bytes.as_slice());
            let mut values = 0;
            while let Some(payload) = reader.read_record().unwrap() {
                let at = RecordLocation { path: std::path::Path::new("bench"), record: 0 };
                values += decoder.decode(payload, at).unwrap().features.len();
            }
            assert_eq!(values, RECORDS * FRAMES * 1152);
        })
    });
    group.bench_function("framing_and_crc_only", |b| {
        b.iter(|| {
            let mut reader = RecordReader::new(bytes.as_slice());
            let mut n = 0;
            while reader.read_record().unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, RECORDS);
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
