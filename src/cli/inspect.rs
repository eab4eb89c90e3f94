//! `loupe inspect`: summarise TFRecord files.

use std::path::PathBuf;

use clap::Args;
use loupe::data::stats::{DatasetStats, StatsAccumulator};
use loupe::data::{
    detect_file_layout, expand_patterns, DataFormat, FeatureSpec, SkipReport, VideoDecoder, VideoReader,
    VideoSummary, Vocabulary,
};

use super::error::CliError;
use super::output::Output;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Files or glob patterns (quote them so the shell leaves them alone).
    #[arg(required = true)]
    patterns: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Print one JSON line per video (id, labels, frames, rated segments, mean_rgb,
    /// mean_audio) instead of the summary.
    #[arg(long)]
    per_video: bool,
    /// The files hold frame-level SequenceExamples (default: detected from the first record).
    #[arg(long, conflicts_with = "video_level")]
    frame_level: bool,
    /// The files hold video-level Examples (default: detected from the first record).
    #[arg(long)]
    video_level: bool,
    /// Skip corrupt records and files, and report how many, instead of failing.
    #[arg(long)]
    skip_corrupt: bool,
    /// Frames kept per video, as training reads them.
    #[arg(long, default_value_t = 300)]
    max_frames: usize,
    /// Fail on labels >= this many classes.
    #[arg(long)]
    num_classes: Option<usize>,
    /// How many of the most frequent labels to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// `vocabulary.csv` to name the most frequent labels.
    #[arg(long)]
    vocabulary: Option<PathBuf>,
}

pub fn run(args: InspectArgs, out: &mut Output) -> Result<(), CliError> {
    let files = expand_patterns(&args.patterns)?;
    let (detected, spec) = detect_file_layout(&files[0])?;
    let format = if args.frame_level {
        DataFormat::FrameLevel
    } else if args.video_level {
        DataFormat::VideoLevel
    } else {
        detected
    };
    let spec = if format == detected { spec } else { FeatureSpec::youtube8m(format) };
    let float_frames = loupe::data::detect_float_frames(&files[0])?;
    let mut decoder = VideoDecoder::new(format, spec.clone())
        .with_max_frames(args.max_frames)
        .with_float_frames(float_frames)
        .with_exact_streams(format == detected && !float_frames);
    if let Some(n) = args.num_classes {
        decoder = decoder.with_num_classes(n);
    }
    let vocabulary = args.vocabulary.as_ref().map(Vocabulary::load).transpose()?;

    let mut stats = StatsAccumulator::new(format);
    let mut skipped = SkipReport::default();
    for path in &files {
        let mut reader = match VideoReader::open(path, &decoder) {
            Ok(r) => r.skip_corrupt(args.skip_corrupt),
            Err(e) if args.skip_corrupt => {
                skipped.add(&e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        while let Some(video) = reader.next_decoded() {
            let video = video?;
            if args.per_video {
                let line = serde_json::to_string(&VideoSummary::of(&video, &spec))
                    .map_err(|e| CliError::context("serialising a video summary", e))?;
                out.line(line)?;
            }
            stats.add(&video);
        }
        skipped.merge(reader.skip_report());
    }
    for message in &skipped.messages {
        eprintln!("skipped: {message}");
    }
    let stats = stats.finish(files.len(), args.top, skipped);
    if args.per_video {
        return Ok(());
    }
    if args.json {
        let mut value =
            serde_json::to_value(&stats).map_err(|e| CliError::context("serialising the summary", e))?;
        value["streams"] = serde_json::to_value(spec.streams())
            .map_err(|e| CliError::context("serialising the streams", e))?;
        return out.line(value);
    }
    print_text(&stats, &spec, vocabulary.as_ref(), out)
}

fn print_text(
    stats: &DatasetStats,
    spec: &FeatureSpec,
    vocabulary: Option<&Vocabulary>,
    out: &mut Output,
) -> Result<(), CliError> {
    let streams: Vec<String> = spec.streams().iter().map(|s| format!("{} {}", s.name, s.size)).collect();
    out.line(format_args!("format: {} ({})", stats.format, streams.join(", ")))?;
    out.line(format_args!("files: {}", stats.files))?;
    out.line(format_args!("videos: {}", stats.videos))?;
    if let Some(f) = stats.frames {
        out.line(format_args!("frames per video: min {}, mean {:.1}, max {}", f.min, f.mean, f.max))?;
    }
    let l = stats.labels_per_video;
    out.line(format_args!(
        "labels per video: min {}, mean {:.2}, max {} ({} videos without labels)",
        l.min, l.mean, l.max, stats.videos_without_labels
    ))?;
    let max = stats.max_label.map_or_else(|| "-".to_string(), |m| m.to_string());
    out.line(format_args!("distinct labels: {} (largest index {max})", stats.distinct_labels))?;
    let top: Vec<String> = stats
        .top_labels
        .iter()
        .map(|c| match vocabulary.and_then(|v| v.name(c.label)) {
            Some(name) => format!("{} {name:?} ({})", c.label, c.videos),
            None => format!("{} ({})", c.label, c.videos),
        })
        .collect();
    out.line(format_args!("most frequent labels (videos): {}", top.join(", ")))?;
    let rated = stats.segments;
    if rated.rated_pairs > 0 {
        out.line(format_args!(
            "rated segments: {} (segment, class) pairs, {} positive, in {} videos, {} classes",
            rated.rated_pairs, rated.positive_pairs, rated.videos_rated, rated.rated_classes
        ))?;
    }
    if !stats.skipped.is_empty() {
        out.line(format_args!("{}", stats.skipped.summary()))?;
    }
    Ok(())
}
