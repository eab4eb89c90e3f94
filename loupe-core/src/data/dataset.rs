//! A streamed dataset over TFRecord shards: shard and record shuffling, epochs, frame
//! sampling, and batches assembled on a background thread.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::batch::{Assemble, FrameAssembler, FrameBatch, VideoAssembler, VideoBatch};
use super::error::{DataError, Result};
use super::features::DataFormat;
use super::reader::{expand_glob, SkipReport, VideoReader};
use super::sampling::FrameSampling;
use super::video::{DecodedVideo, VideoDecoder};

/// Order in which videos are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOrder {
    /// Shard order shuffled every epoch, then records shuffled through a buffer of
    /// `buffer` videos (as `tf.data`'s `shuffle`). The buffer is drained at the end of
    /// each epoch, so each epoch delivers every video exactly once before the next
    /// begins.
    Shuffled {
        /// Seeds shard shuffling, the buffer and [`FrameSampling::Random`].
        seed: u64,
        /// Videos held for shuffling (frame-level: at most ~340 KB each at 300 x 1152).
        buffer: usize,
    },
    /// Files in the given order, records in file order (evaluation).
    FileOrder,
}

/// A dataset over TFRecord shards, read as a stream (one shard open at a time, plus
/// the shuffle buffer and the prefetched batches in memory).
///
/// Batches end with a partial one when the stream ends (the last epoch), so no video
/// is dropped; a training loop that needs full batches can skip it.
///
/// ```no_run
/// use loupe_core::data::{DataFormat, Dataset, FrameSampling, VideoDecoder};
///
/// let decoder = VideoDecoder::youtube8m(DataFormat::FrameLevel);
/// let train = Dataset::from_glob("data/frame/train*.tfrecord", decoder.clone(), 3862)?
///     .with_batch_size(80)
///     .with_frames_per_video(300)
///     .with_shuffle(42, 1024)
///     .with_epochs(Some(5));
/// for batch in train.frame_batches()? {
///     let batch = batch?;
///     assert_eq!(batch.frames.len(), batch.len() * 300 * 1152);
/// }
///
/// // Deterministic evaluation: file order, every video once, same frames every run.
/// let eval = Dataset::evaluation(loupe_core::data::expand_glob("data/frame/validate*")?, decoder, 3862)
///     .with_sampling(FrameSampling::PerVideo { seed: 0 });
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dataset {
    files: Vec<PathBuf>,
    decoder: VideoDecoder,
    num_classes: usize,
    batch_size: usize,
    frames_per_video: usize,
    sampling: FrameSampling,
    order: ReadOrder,
    epochs: Option<usize>,
    prefetch: usize,
    skip_corrupt: bool,
    skipped: Arc<Mutex<SkipLog>>,
}

/// What the streams of a dataset (and of its clones) skipped, each problem counted once
/// however many epochs or evaluations meet it again.
#[derive(Debug, Default)]
struct SkipLog {
    report: SkipReport,
    /// The messages counted: each names its file and record.
    seen: HashSet<String>,
}

impl SkipLog {
    fn add(&mut self, error: &DataError) {
        if self.seen.insert(error.to_string()) {
            self.report.add(error);
        }
    }
}

impl Dataset {
    /// A training dataset over `files`: shuffled (seed 0, buffer 512), random frame
    /// sampling, one epoch, batch 80, 300 frames per video, 3 batches prefetched.
    /// Labels are checked against `num_classes`.
    pub fn training(files: Vec<PathBuf>, decoder: VideoDecoder, num_classes: usize) -> Self {
        Self {
            files,
            decoder: decoder.with_num_classes(num_classes),
            num_classes,
            batch_size: 80,
            frames_per_video: 300,
            sampling: FrameSampling::Random,
            order: ReadOrder::Shuffled { seed: 0, buffer: 512 },
            epochs: Some(1),
            prefetch: 3,
            skip_corrupt: false,
            skipped: Arc::default(),
        }
    }

    /// [`Dataset::training`] over the files matching `pattern`.
    pub fn from_glob(pattern: &str, decoder: VideoDecoder, num_classes: usize) -> Result<Self> {
        Ok(Self::training(expand_glob(pattern)?, decoder, num_classes))
    }

    /// An evaluation dataset: file order, per-video seeded sampling (seed 0), one epoch.
    pub fn evaluation(files: Vec<PathBuf>, decoder: VideoDecoder, num_classes: usize) -> Self {
        Self::training(files, decoder, num_classes)
            .in_file_order()
            .with_sampling(FrameSampling::PerVideo { seed: 0 })
    }

    /// Videos per batch.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// `T`, the frames sampled per video (frame-level batches).
    pub fn with_frames_per_video(mut self, frames: usize) -> Self {
        self.frames_per_video = frames;
        self
    }

    /// How frames are sampled.
    pub fn with_sampling(mut self, sampling: FrameSampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Shuffles shards and records with `seed` through a buffer of `buffer` videos.
    pub fn with_shuffle(mut self, seed: u64, buffer: usize) -> Self {
        self.order = ReadOrder::Shuffled { seed, buffer };
        self
    }

    /// Reads files in the given order and records in file order.
    pub fn in_file_order(mut self) -> Self {
        self.order = ReadOrder::FileOrder;
        self
    }

    /// Passes over the data; `None` repeats forever.
    pub fn with_epochs(mut self, epochs: Option<usize>) -> Self {
        self.epochs = epochs;
        self
    }

    /// Batches assembled ahead of the consumer (at least 1).
    pub fn with_prefetch(mut self, batches: usize) -> Self {
        self.prefetch = batches;
        self
    }

    /// Skips corrupt records and files instead of failing; see [`Batches::skip_report`].
    pub fn with_skip_corrupt(mut self, skip: bool) -> Self {
        self.skip_corrupt = skip;
        self
    }

    /// The same dataset over other shard files (e.g. one rank's share).
    pub fn with_files(mut self, files: Vec<PathBuf>) -> Self {
        self.files = files;
        self
    }

    /// What `skip_corrupt` skipped in all the batch streams of this dataset and of its
    /// clones so far, each bad record (or abandoned file) counted once: a second epoch or
    /// evaluation over the same files does not count it again.
    pub fn skip_report(&self) -> SkipReport {
        self.skipped.lock().unwrap_or_else(PoisonError::into_inner).report.clone()
    }

    /// The shard files.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The decoder (format, streams, max frames).
    pub fn decoder(&self) -> &VideoDecoder {
        &self.decoder
    }

    /// Frame-level batches, assembled on a background thread.
    pub fn frame_batches(&self) -> Result<Batches<FrameBatch>> {
        self.check(DataFormat::FrameLevel)?;
        if self.frames_per_video == 0 {
            return Err(DataError::Config("frames per video must be at least 1".into()));
        }
        let assembler = FrameAssembler::new(
            self.batch_size,
            self.num_classes,
            self.frames_per_video,
            self.decoder.feature_dim(),
            self.sampling,
        );
        Ok(self.spawn(assembler))
    }

    /// Video-level batches, assembled on a background thread.
    pub fn video_batches(&self) -> Result<Batches<VideoBatch>> {
        self.check(DataFormat::VideoLevel)?;
        let assembler = VideoAssembler::new(self.num_classes, self.decoder.feature_dim());
        Ok(self.spawn(assembler))
    }

    fn check(&self, format: DataFormat) -> Result<()> {
        if self.decoder.format() != format {
            return Err(DataError::Config(format!(
                "{format} batches requested from a {} decoder",
                self.decoder.format()
            )));
        }
        if self.files.is_empty() {
            return Err(DataError::Config("the dataset has no file".into()));
        }
        if self.batch_size == 0 || self.num_classes == 0 {
            return Err(DataError::Config("batch size and number of classes must be at least 1".into()));
        }
        if let ReadOrder::Shuffled { buffer: 0, .. } = self.order {
            return Err(DataError::Config("the shuffle buffer must hold at least 1 video".into()));
        }
        Ok(())
    }

    fn spawn<A: Assemble>(&self, assembler: A) -> Batches<A::Batch> {
        let (sender, receiver) = sync_channel(self.prefetch.max(1));
        let produced = Arc::new(AtomicUsize::new(0));
        let report = Arc::new(Mutex::new(SkipReport::default()));
        let worker = Worker {
            dataset: self.clone(),
            assembler,
            sender,
            produced: Arc::clone(&produced),
            report: Arc::clone(&report),
        };
        let handle = std::thread::Builder::new().name("loupe-data".into()).spawn(move || worker.run());
        match handle {
            Ok(handle) => Batches { receiver: Some(receiver), handle: Some(handle), produced, report },
            Err(source) => {
                // No thread: hand the error out as the only item.
                let (sender, receiver) = sync_channel(1);
                let _ = sender.send(Err(DataError::Io {
                    path: PathBuf::from("<data loader thread>"),
                    action: "spawning",
                    source,
                }));
                Batches { receiver: Some(receiver), handle: None, produced, report }
            }
        }
    }
}

/// Batches arriving from the background loader. Dropping it stops the loader.
pub struct Batches<B> {
    receiver: Option<Receiver<Result<B>>>,
    handle: Option<JoinHandle<()>>,
    produced: Arc<AtomicUsize>,
    report: Arc<Mutex<SkipReport>>,
}

impl<B> Batches<B> {
    /// Batches the loader has finished so far (delivered, queued, or waiting to be
    /// queued): at most `delivered + prefetch + 1`.
    pub fn produced(&self) -> usize {
        self.produced.load(Ordering::Acquire)
    }

    /// What `skip_corrupt` skipped so far.
    pub fn skip_report(&self) -> SkipReport {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl<B> Iterator for Batches<B> {
    type Item = Result<B>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.as_ref()?.recv().ok()
    }
}

impl<B> Drop for Batches<B> {
    fn drop(&mut self) {
        // Closing the channel makes the loader's next send fail, which ends it.
        drop(self.receiver.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Seeds the frame-sampling stream apart from the shuffling one, so that changing the
/// sampling does not change the order.
const SAMPLING_STREAM: u64 = 0x5eed_f4a3_e5a3_91e5;

struct Worker<A: Assemble> {
    dataset: Dataset,
    assembler: A,
    sender: SyncSender<Result<A::Batch>>,
    produced: Arc<AtomicUsize>,
    report: Arc<Mutex<SkipReport>>,
}

/// The loader stops early: the consumer went away, or an error was handed out.
struct Stop;

impl<A: Assemble> Worker<A> {
    fn run(mut self) {
        let _ = self.stream();
    }

    fn stream(&mut self) -> std::result::Result<(), Stop> {
        let seed = match self.dataset.order {
            ReadOrder::Shuffled { seed, .. } => seed,
            ReadOrder::FileOrder => 0,
        };
        let mut order_rng = StdRng::seed_from_u64(seed);
        let mut sample_rng = StdRng::seed_from_u64(seed ^ SAMPLING_STREAM);
        let mut epoch = 0;
        while self.dataset.epochs.is_none_or(|e| epoch < e) {
            match self.epoch(&mut order_rng, &mut sample_rng)? {
                // An epoch without a single video (everything skipped) would spin forever.
                0 => break,
                _ => epoch += 1,
            }
        }
        if self.assembler.len() > 0 {
            let batch = self.assembler.take();
            self.send(Ok(batch))?;
        }
        Ok(())
    }

    /// One pass over all files; returns the videos delivered.
    fn epoch(&mut self, order_rng: &mut StdRng, sample_rng: &mut StdRng) -> std::result::Result<usize, Stop> {
        let mut files = self.dataset.files.clone();
        let capacity = match self.dataset.order {
            ReadOrder::Shuffled { buffer, .. } => {
                files.shuffle(order_rng);
                buffer
            }
            ReadOrder::FileOrder => 0,
        };
        let mut buffer: Vec<DecodedVideo> = Vec::with_capacity(capacity.min(4096));
        let mut delivered = 0;
        for path in &files {
            let mut reader = match VideoReader::open(path, &self.dataset.decoder) {
                Ok(r) => {
                    let (report, log) = (Arc::clone(&self.report), Arc::clone(&self.dataset.skipped));
                    r.skip_corrupt(self.dataset.skip_corrupt).on_skip(move |e| note_skip(&report, &log, e))
                }
                Err(e) if self.dataset.skip_corrupt => {
                    self.note_skip(&e);
                    continue;
                }
                Err(e) => return self.fail(e),
            };
            while let Some(item) = reader.next_decoded() {
                let video = match item {
                    Ok(v) => v,
                    Err(e) => return self.fail(e),
                };
                let out = if capacity == 0 {
                    video
                } else if buffer.len() < capacity {
                    buffer.push(video);
                    continue;
                } else {
                    let i = order_rng.gen_range(0..capacity);
                    std::mem::replace(&mut buffer[i], video)
                };
                self.deliver(out, sample_rng)?;
                delivered += 1;
            }
        }
        while !buffer.is_empty() {
            let i = order_rng.gen_range(0..buffer.len());
            let video = buffer.swap_remove(i);
            self.deliver(video, sample_rng)?;
            delivered += 1;
        }
        Ok(delivered)
    }

    fn deliver(&mut self, video: DecodedVideo, sample_rng: &mut StdRng) -> std::result::Result<(), Stop> {
        if let Err(e) = self.assembler.push(video, sample_rng) {
            self.fail(e)?;
        }
        if self.assembler.len() >= self.dataset.batch_size {
            let batch = self.assembler.take();
            self.send(Ok(batch))?;
        }
        Ok(())
    }

    /// Sends `error` and stops the loader (an error ends the stream).
    fn fail<T>(&mut self, error: DataError) -> std::result::Result<T, Stop> {
        let _ = self.sender.send(Err(error));
        Err(Stop)
    }

    fn send(&mut self, item: Result<A::Batch>) -> std::result::Result<(), Stop> {
        self.produced.fetch_add(1, Ordering::AcqRel);
        self.sender.send(item).map_err(|_| Stop)
    }

    fn note_skip(&self, error: &DataError) {
        note_skip(&self.report, &self.dataset.skipped, error);
    }
}

/// Counts a skipped problem in a stream's report and in its dataset's log.
fn note_skip(report: &Mutex<SkipReport>, log: &Mutex<SkipLog>, error: &DataError) {
    report.lock().unwrap_or_else(PoisonError::into_inner).add(error);
    log.lock().unwrap_or_else(PoisonError::into_inner).add(error);
}
