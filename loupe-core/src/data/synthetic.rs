//! A deterministic generator of YouTube-8M-format shards with learnable structure.
//!
//! The structure rewards the paper's ideas:
//! - **visual classes** have two rgb prototypes; a video's frames are an unordered mix
//!   of its labels' prototypes, background "scene" frames and noise;
//! - **co-occurrence classes** are signalled by two prototypes `A = P + D` and
//!   `B = P - D` appearing together, where `P` is the prototype of another (visual)
//!   class: the average of their frames looks like that other class, so average
//!   pooling is confused while a set-based pooling (NetVLAD, NetFV, BoW) is not. `A`
//!   or `B` alone also appear as distractors in unrelated videos;
//! - **audio classes** are signalled only in the audio stream;
//! - **correlated labels**: some classes usually come with a partner class (what
//!   Context Gating after the classifier can exploit).
//!
//! With `rated_segments`, the validate videos carry segment ratings (the 2019 task,
//! [`super::ratings`]): their frames come in 5-frame blocks, each showing one of the
//! video's classes or only background, in temporal order, and every label of the video
//! is rated on every block, positive where the block shows it. Correlated labels make
//! hard negatives: a block showing a class is negative for its usual partner.
//!
//! Every video is generated from its own random stream (seed, split, index), so the
//! output bytes depend on the configuration only, not on timing or shard boundaries.

use std::path::{Path, PathBuf};

use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::error::{DataError, Result};
use super::features::{quantize, DataFormat, FeatureSpec};
use super::ratings::{RatedSegment, SEGMENT_FRAMES};
use super::sampling::id_hash;
use super::tfrecord::RecordWriter;
use super::video::{QuantizedVideo, Video};
use super::vocabulary::{Vocabulary, VocabularyEntry};

/// What to generate. The defaults (2000 train + 500 validate videos, 64 classes,
/// 20-60 frames of 1024 + 128 values) take a few seconds and about 120 MB of
/// frame-level files, small enough to train on with two cores in minutes.
///
/// ```no_run
/// use loupe_core::data::{generate, SynthConfig};
///
/// let config = SynthConfig { train_videos: 200, validate_videos: 50, rgb_size: 32, audio_size: 8, ..SynthConfig::default() };
/// let summary = generate("synthetic", &config)?;
/// println!("{} frame-level shards", summary.frame_files.len());
/// # Ok::<(), loupe_core::data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SynthConfig {
    /// Seeds everything.
    pub seed: u64,
    /// Number of classes (at least 2).
    pub num_classes: usize,
    /// Videos in the train split.
    pub train_videos: usize,
    /// Videos in the validate split.
    pub validate_videos: usize,
    /// Shards of the train split.
    pub train_shards: usize,
    /// Shards of the validate split.
    pub validate_shards: usize,
    /// Fewest frames per video (at least 1).
    pub min_frames: usize,
    /// Most frames per video.
    pub max_frames: usize,
    /// rgb values per frame.
    pub rgb_size: usize,
    /// audio values per frame.
    pub audio_size: usize,
    /// Also write the video-level (`Example`) shards.
    pub video_level: bool,
    /// Give the validate videos segment ratings (module docs); the train split is the
    /// same either way.
    pub rated_segments: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            num_classes: 64,
            train_videos: 2000,
            validate_videos: 500,
            train_shards: 4,
            validate_shards: 1,
            min_frames: 20,
            max_frames: 60,
            rgb_size: 1024,
            audio_size: 128,
            video_level: true,
            rated_segments: false,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SynthSummary {
    /// Frame-level shards (`frame/train0000.tfrecord`, ..., `frame/validate0000.tfrecord`, ...).
    pub frame_files: Vec<PathBuf>,
    /// Video-level shards (`video/...`), if requested.
    pub video_files: Vec<PathBuf>,
    /// `vocabulary.csv`.
    pub vocabulary: PathBuf,
    /// Videos in the train split.
    pub train_videos: usize,
    /// Videos in the validate split.
    pub validate_videos: usize,
    /// Frames over all videos.
    pub frames: u64,
}

/// How a class shows in the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassKind {
    /// Two rgb prototypes.
    Visual,
    /// rgb prototypes `A = P + D` and `B = P - D`, `P` the prototype of class `decoy`.
    CoOccurrence {
        /// The class whose prototype is the average of `A` and `B`.
        decoy: usize,
    },
    /// One audio prototype; rgb shows only background.
    Audio,
}

impl ClassKind {
    /// The kind of class `c` among `num_classes`: one in eight is audio-only, one in
    /// eight a co-occurrence class whose decoy is the preceding class.
    pub fn of(c: usize, num_classes: usize) -> Self {
        match c % 8 {
            3 => ClassKind::CoOccurrence { decoy: c - 1 },
            7 if num_classes > 2 => ClassKind::Audio,
            _ => ClassKind::Visual,
        }
    }

    fn vertical(self) -> &'static str {
        match self {
            ClassKind::Visual => "Visual",
            ClassKind::CoOccurrence { .. } => "Co-occurrence",
            ClassKind::Audio => "Audio",
        }
    }
}

/// The class whose label usually comes with class `c` (for classes `c % 8 == 0`, the
/// next one), and how often.
fn partner(c: usize, num_classes: usize) -> Option<usize> {
    (c.is_multiple_of(8) && c + 1 < num_classes).then_some(c + 1)
}
const PARTNER_PROBABILITY: f64 = 0.7;
const SCENES: usize = 12;
const PROTOTYPE_STD: f32 = 0.6;
const NOISE_STD: f32 = 0.3;
const SIGNAL_FRACTION: f64 = 0.5;
const HALF_PAIR_DISTRACTOR_PROBABILITY: f64 = 0.15;
/// Probability that a block of a rated video shows one of its classes.
const BLOCK_SIGNAL_PROBABILITY: f64 = 0.6;

/// The prototypes of every class and the background scenes.
struct World {
    config: SynthConfig,
    kinds: Vec<ClassKind>,
    /// Per class: its rgb prototypes (2 for visual and co-occurrence, 0 for audio).
    rgb: Vec<Vec<Vec<f32>>>,
    /// Per class: its audio prototype (audio classes only).
    audio: Vec<Option<Vec<f32>>>,
    scene_rgb: Vec<Vec<f32>>,
    scene_audio: Vec<Vec<f32>>,
    /// Zipf-like label popularity weights.
    popularity: Vec<f64>,
}

fn gaussian(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n).map(|_| rng.sample::<f32, _>(StandardNormal) * std).collect()
}

impl World {
    fn new(config: &SynthConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = config.num_classes;
        let kinds: Vec<ClassKind> = (0..n).map(|c| ClassKind::of(c, n)).collect();
        let mut rgb: Vec<Vec<Vec<f32>>> = Vec::with_capacity(n);
        let mut audio = Vec::with_capacity(n);
        for (c, kind) in kinds.iter().enumerate() {
            match *kind {
                ClassKind::Visual => {
                    rgb.push(vec![
                        gaussian(&mut rng, config.rgb_size, PROTOTYPE_STD),
                        gaussian(&mut rng, config.rgb_size, PROTOTYPE_STD),
                    ]);
                    audio.push(None);
                }
                ClassKind::CoOccurrence { decoy } => {
                    let p = rgb[decoy][0].clone();
                    let d = gaussian(&mut rng, config.rgb_size, PROTOTYPE_STD);
                    let a = p.iter().zip(&d).map(|(p, d)| p + d).collect();
                    let b = p.iter().zip(&d).map(|(p, d)| p - d).collect();
                    debug_assert!(decoy < c);
                    rgb.push(vec![a, b]);
                    audio.push(None);
                }
                ClassKind::Audio => {
                    rgb.push(Vec::new());
                    audio.push(Some(gaussian(&mut rng, config.audio_size, PROTOTYPE_STD * 1.5)));
                }
            }
        }
        let scene_rgb = (0..SCENES).map(|_| gaussian(&mut rng, config.rgb_size, PROTOTYPE_STD)).collect();
        let scene_audio = (0..SCENES).map(|_| gaussian(&mut rng, config.audio_size, PROTOTYPE_STD)).collect();
        let mut popularity: Vec<f64> = (0..n).map(|rank| 1.0 / (rank as f64 + 4.0).powf(0.8)).collect();
        popularity.shuffle(&mut rng);
        Self { config: config.clone(), kinds, rgb, audio, scene_rgb, scene_audio, popularity }
    }

    fn pick_class(&self, rng: &mut StdRng) -> usize {
        let total: f64 = self.popularity.iter().sum();
        let mut x = rng.gen::<f64>() * total;
        for (c, w) in self.popularity.iter().enumerate() {
            if x < *w {
                return c;
            }
            x -= w;
        }
        self.popularity.len() - 1
    }

    fn labels(&self, rng: &mut StdRng) -> Vec<u32> {
        let n = self.config.num_classes;
        let mut labels = vec![self.pick_class(rng)];
        while labels.len() < 4 && rng.gen_bool(0.4) {
            labels.push(self.pick_class(rng));
        }
        for i in 0..labels.len() {
            if let Some(p) = partner(labels[i], n) {
                if rng.gen_bool(PARTNER_PROBABILITY) {
                    labels.push(p);
                }
            }
        }
        let mut labels: Vec<u32> = labels.into_iter().map(|c| c as u32).collect();
        labels.sort_unstable();
        labels.dedup();
        labels
    }

    /// One video: its labels and quantised frames.
    fn video(&self, id: String, rng: &mut StdRng) -> QuantizedVideo {
        let cfg = &self.config;
        let labels = self.labels(rng);
        let num_frames = rng.gen_range(cfg.min_frames..=cfg.max_frames);
        // The rgb prototypes that must show (both halves of a co-occurrence class), and
        // the audio prototypes.
        let mut rgb_parts: Vec<&[f32]> = Vec::new();
        let mut audio_parts: Vec<&[f32]> = Vec::new();
        for &l in &labels {
            let l = l as usize;
            match self.kinds[l] {
                ClassKind::Visual => rgb_parts.push(&self.rgb[l][rng.gen_range(0..2)]),
                ClassKind::CoOccurrence { .. } => {
                    rgb_parts.push(&self.rgb[l][0]);
                    rgb_parts.push(&self.rgb[l][1]);
                }
                ClassKind::Audio => {}
            }
            if let Some(a) = &self.audio[l] {
                audio_parts.push(a);
            }
        }
        // Half of a co-occurrence pair as a distractor: presence of `A` alone is not enough.
        let pair_classes: Vec<usize> = (0..cfg.num_classes)
            .filter(|&c| {
                matches!(self.kinds[c], ClassKind::CoOccurrence { .. }) && !labels.contains(&(c as u32))
            })
            .collect();
        let mut distractors: Vec<&[f32]> = self.scene_rgb.iter().map(Vec::as_slice).collect();
        if !pair_classes.is_empty() && rng.gen_bool(HALF_PAIR_DISTRACTOR_PROBABILITY) {
            let c = pair_classes[rng.gen_range(0..pair_classes.len())];
            distractors.push(&self.rgb[c][rng.gen_range(0..2)]);
        }

        let mut rgb_choice: Vec<&[f32]> = Vec::with_capacity(num_frames);
        let mut audio_choice: Vec<&[f32]> = Vec::with_capacity(num_frames);
        let scene = rng.gen_range(0..SCENES);
        for t in 0..num_frames {
            // Every required part shows at least once, then a random mix.
            let rgb = if t < rgb_parts.len() {
                rgb_parts[t]
            } else if !rgb_parts.is_empty() && rng.gen_bool(SIGNAL_FRACTION) {
                rgb_parts[rng.gen_range(0..rgb_parts.len())]
            } else {
                distractors[rng.gen_range(0..distractors.len())]
            };
            let audio = if t < audio_parts.len() {
                audio_parts[t]
            } else if !audio_parts.is_empty() && rng.gen_bool(SIGNAL_FRACTION) {
                audio_parts[rng.gen_range(0..audio_parts.len())]
            } else if rng.gen_bool(0.5) {
                &self.scene_audio[scene]
            } else {
                &self.scene_audio[rng.gen_range(0..SCENES)]
            };
            rgb_choice.push(rgb);
            audio_choice.push(audio);
        }
        // An unordered mix: the signal is in the set of frames, not their order.
        let mut order: Vec<usize> = (0..num_frames).collect();
        order.shuffle(rng);

        let dim = cfg.rgb_size + cfg.audio_size;
        let mut frames = vec![0u8; num_frames * dim];
        for (row, &t) in frames.chunks_exact_mut(dim).zip(&order) {
            let (r, a) = row.split_at_mut(cfg.rgb_size);
            for (out, &p) in r.iter_mut().zip(rgb_choice[t]) {
                *out = quantize(p + rng.sample::<f32, _>(StandardNormal) * NOISE_STD);
            }
            for (out, &p) in a.iter_mut().zip(audio_choice[t]) {
                *out = quantize(p + rng.sample::<f32, _>(StandardNormal) * NOISE_STD);
            }
        }
        QuantizedVideo { id, labels, num_frames, frames, segments: Vec::new() }
    }
}

impl World {
    /// A validate video with segment ratings (module docs).
    fn rated_video(&self, id: String, rng: &mut StdRng) -> QuantizedVideo {
        let cfg = &self.config;
        let labels = self.labels(rng);
        let num_frames = rng.gen_range(cfg.min_frames..=cfg.max_frames);
        let scene = rng.gen_range(0..SCENES);
        let dim = cfg.rgb_size + cfg.audio_size;
        let mut frames = vec![0u8; num_frames * dim];
        let mut shown_in_blocks = Vec::new();
        for (block, rows) in frames.chunks_mut(SEGMENT_FRAMES * dim).enumerate() {
            let shown = rng
                .gen_bool(BLOCK_SIGNAL_PROBABILITY)
                .then(|| labels[rng.gen_range(0..labels.len())] as usize);
            shown_in_blocks.push(shown);
            for (t, row) in rows.chunks_exact_mut(dim).enumerate() {
                let background = &self.scene_rgb[rng.gen_range(0..SCENES)];
                let rgb: &[f32] = match shown.map(|c| (c, self.kinds[c])) {
                    Some((c, ClassKind::Visual)) => &self.rgb[c][block % 2],
                    // Both halves of the pair within the block.
                    Some((c, ClassKind::CoOccurrence { .. })) => &self.rgb[c][t % 2],
                    Some((_, ClassKind::Audio)) | None => background,
                };
                let audio: &[f32] = match shown.and_then(|c| self.audio[c].as_ref()) {
                    Some(a) => a,
                    None => &self.scene_audio[scene],
                };
                let (r, a) = row.split_at_mut(cfg.rgb_size);
                for (out, &p) in r.iter_mut().zip(rgb) {
                    *out = quantize(p + rng.sample::<f32, _>(StandardNormal) * NOISE_STD);
                }
                for (out, &p) in a.iter_mut().zip(audio) {
                    *out = quantize(p + rng.sample::<f32, _>(StandardNormal) * NOISE_STD);
                }
            }
        }
        let segments = labels
            .iter()
            .flat_map(|&label| {
                shown_in_blocks.iter().enumerate().map(move |(block, &shown)| {
                    let start = (block * SEGMENT_FRAMES) as u32;
                    let score = if shown == Some(label as usize) { 1.0 } else { 0.0 };
                    RatedSegment { label, start, end: start + SEGMENT_FRAMES as u32, score }
                })
            })
            .collect();
        QuantizedVideo { id, labels, num_frames, frames, segments }
    }
}

/// The per-video mean row of a quantised video, as the video-level files store it
/// (float32 means of the dequantised frames).
fn video_level(video: &QuantizedVideo) -> Video {
    let dim = video.feature_dim();
    let mut sums = vec![0u64; dim];
    for row in video.frames.chunks_exact(dim) {
        for (s, &b) in sums.iter_mut().zip(row) {
            *s += u64::from(b);
        }
    }
    let n = video.num_frames.max(1) as f64;
    let features =
        sums.iter().map(|&s| (s as f64 / n * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)) as f32).collect();
    Video { id: video.id.clone(), labels: video.labels.clone(), num_frames: 1, features }
}

fn video_id(split: &str, index: usize, rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let tail: String = (0..5).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("{}{index:05}{tail}", &split[..1])
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        action: "creating the directory",
        source,
    })
}

fn validate(config: &SynthConfig) -> Result<()> {
    let problem = if config.num_classes < 2 {
        Some("at least 2 classes are needed".to_string())
    } else if config.min_frames == 0 || config.min_frames > config.max_frames {
        Some(format!("frames must satisfy 1 <= min ({}) <= max ({})", config.min_frames, config.max_frames))
    } else if config.rgb_size == 0 || config.audio_size == 0 {
        Some("rgb and audio sizes must be at least 1".to_string())
    } else if config.train_shards == 0 || config.validate_shards == 0 {
        Some("each split needs at least 1 shard".to_string())
    } else if config.train_videos < config.train_shards || config.validate_videos < config.validate_shards {
        Some("each shard needs at least 1 video (videos >= shards)".to_string())
    } else {
        None
    };
    problem.map_or(Ok(()), |p| Err(DataError::Config(p)))
}

/// Writes the synthetic data set under `out`: `frame/{train,validate}NNNN.tfrecord`,
/// `video/...` (if `config.video_level`) and `vocabulary.csv`. Deterministic: the same
/// configuration always writes the same bytes.
pub fn generate(out: impl AsRef<Path>, config: &SynthConfig) -> Result<SynthSummary> {
    validate(config)?;
    let out = out.as_ref();
    let frame_dir = out.join("frame");
    let video_dir = out.join("video");
    create_dir(&frame_dir)?;
    if config.video_level {
        create_dir(&video_dir)?;
    }
    let world = World::new(config);
    let frame_spec = FeatureSpec::youtube8m_sized(DataFormat::FrameLevel, config.rgb_size, config.audio_size);
    let video_spec = FeatureSpec::youtube8m_sized(DataFormat::VideoLevel, config.rgb_size, config.audio_size);
    let mut summary = SynthSummary {
        frame_files: Vec::new(),
        video_files: Vec::new(),
        vocabulary: out.join("vocabulary.csv"),
        train_videos: config.train_videos,
        validate_videos: config.validate_videos,
        frames: 0,
    };
    let mut train_counts = vec![0u64; config.num_classes];
    for (split, videos, shards) in [
        ("train", config.train_videos, config.train_shards),
        ("validate", config.validate_videos, config.validate_shards),
    ] {
        for shard in 0..shards {
            let name = format!("{split}{shard:04}.tfrecord");
            let frame_path = frame_dir.join(&name);
            let mut frames = RecordWriter::create(&frame_path)?;
            let mut means = match config.video_level {
                true => Some(RecordWriter::create(video_dir.join(&name))?),
                false => None,
            };
            // Contiguous blocks of videos per shard.
            for index in shard * videos / shards..(shard + 1) * videos / shards {
                let mut rng = StdRng::seed_from_u64(
                    config.seed
                        ^ id_hash(split).rotate_left(17)
                        ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                );
                let id = video_id(split, index, &mut rng);
                let video = match split {
                    "validate" if config.rated_segments => world.rated_video(id, &mut rng),
                    _ => world.video(id, &mut rng),
                };
                summary.frames += video.num_frames as u64;
                if split == "train" {
                    for &l in &video.labels {
                        train_counts[l as usize] += 1;
                    }
                }
                frames.write_record(&video.to_sequence_example(&frame_spec, "id").encode_to_vec())?;
                if let Some(writer) = means.as_mut() {
                    writer
                        .write_record(&video_level(&video).to_example(&video_spec, "id").encode_to_vec())?;
                }
            }
            frames.finish()?;
            summary.frame_files.push(frame_path);
            if let Some(writer) = means {
                writer.finish()?;
                summary.video_files.push(video_dir.join(&name));
            }
        }
    }
    let vocabulary = Vocabulary::from_entries((0..config.num_classes).map(|c| VocabularyEntry {
        index: c as u32,
        train_video_count: train_counts[c],
        knowledge_graph_id: format!("/m/synth{c:04}"),
        name: format!("Synthetic {} {c}", world.kinds[c].vertical().to_lowercase()),
        vertical: world.kinds[c].vertical().to_string(),
    }));
    let csv = vocabulary.to_csv(|e| match world.kinds[e.index as usize] {
        ClassKind::Visual => "Frames near one of two rgb prototypes, mixed with scenes and noise.".into(),
        ClassKind::CoOccurrence { decoy } => format!(
            "Frames near prototypes A and B together; their average, P, is the prototype of class {decoy}."
        ),
        ClassKind::Audio => "Signalled in the audio stream only, \"silent\" in rgb.".into(),
    });
    std::fs::write(&summary.vocabulary, csv).map_err(|source| DataError::Io {
        path: summary.vocabulary.clone(),
        action: "writing",
        source,
    })?;
    Ok(summary)
}
