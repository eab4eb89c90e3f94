//! `loupe score`: scores any Kaggle submission file against ground-truth TFRecords, or
//! (`--segments`) a 2019 segment submission against the rated segments.

use std::path::PathBuf;

use clap::Args;
use loupe::data::{expand_patterns, read_labels, read_segment_ratings};
use loupe::metrics::segments::{segment_map, SegmentTruth};
use loupe::segment_submission::{read_segment_submission, SEGMENT_SUBMISSION_HEADER};
use loupe::submission::{read_submission, score_submission, SubmissionError};

use super::error::CliError;
use super::output::{print_metrics, Output};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The submission CSV (`VideoId,LabelConfidencePairs`; with `--segments`, `Class,Segments`).
    #[arg(long)]
    submission: PathBuf,
    /// Ground-truth TFRecord files or glob patterns (frame- or video-level).
    #[arg(long, required = true, num_args = 1..)]
    truth: Vec<String>,
    /// Number of classes (labels must be below it); default: inferred from the labels seen.
    #[arg(long)]
    classes: Option<usize>,
    /// Predictions per video that count (20 in the competition).
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    /// Score ground-truth videos without a submission row as empty predictions instead of failing.
    #[arg(long)]
    allow_missing: bool,
    /// Skip corrupt ground-truth records instead of failing.
    #[arg(long)]
    skip_corrupt: bool,
    /// Print one JSON object (`gap`, `hit_at_1`, `perr`, `map`, `videos`; with
    /// `--segments`: `map`, `top_n`, `per_class`, and the classes left out).
    #[arg(long)]
    json: bool,
    /// Score a 2019 segment submission (`Class,Segments`) with MAP@N against the rated
    /// segments of the ground truth (frame-level validate files).
    #[arg(long)]
    segments: bool,
    /// With `--segments`: entries per class row that count (0: all; Kaggle used 100000).
    #[arg(long, default_value_t = 100_000, requires = "segments")]
    top_n: usize,
}

pub fn run(args: ScoreArgs, out: &mut Output) -> Result<(), CliError> {
    if args.segments {
        return run_segments(args, out);
    }
    let files = expand_patterns(&args.truth)?;
    let (truth, skipped) = read_labels(&files, args.skip_corrupt)?;
    if !skipped.is_empty() {
        eprintln!("warning: in the ground truth, {}", skipped.summary());
    }
    let rows = read_submission(&args.submission, args.classes.unwrap_or(u32::MAX as usize)).map_err(|e| {
        let segments =
            matches!(&e, SubmissionError::Header { found, .. } if found == SEGMENT_SUBMISSION_HEADER);
        CliError::context(
            if segments {
                "reading the submission (a segment submission: score it with --segments)"
            } else {
                "reading the submission"
            },
            e,
        )
    })?;
    let classes = args.classes.unwrap_or_else(|| {
        let truth_max = truth.iter().flat_map(|(_, l)| l.iter().copied()).max();
        let sub_max = rows.iter().flat_map(|r| r.predictions.iter().map(|p| p.0)).max();
        truth_max.max(sub_max).map_or(1, |m| m as usize + 1)
    });
    if let Some(bad) = truth.iter().find(|(_, l)| l.iter().any(|&c| c as usize >= classes)) {
        return Err(CliError::message(format!(
            "ground-truth video `{}` has a label >= --classes {classes}",
            bad.0
        )));
    }
    let summary = score_submission(&rows, &truth, classes, args.top_k, args.allow_missing)
        .map_err(|e| CliError::context(format!("scoring {}", args.submission.display()), e))?;
    print_metrics(out, &summary, args.json)
}

/// `--segments`: MAP@N of a segment submission.
fn run_segments(args: ScoreArgs, out: &mut Output) -> Result<(), CliError> {
    let files = expand_patterns(&args.truth)?;
    let (ratings, skipped) = read_segment_ratings(&files, args.skip_corrupt)?;
    if !skipped.is_empty() {
        eprintln!("warning: in the ground truth, {}", skipped.summary());
    }
    let mut truth = SegmentTruth::new();
    for video in &ratings {
        truth.add_video(&video.id, &video.segments);
    }
    if truth.rated_pairs() == 0 {
        return Err(CliError::message(format!(
            "the ground truth ({} videos) holds no rated segment: expected the segment_* lists of the 2019 validate files",
            ratings.len()
        )));
    }
    let rows = read_segment_submission(&args.submission)
        .map_err(|e| CliError::context("reading the segment submission", e))?;
    let metrics = segment_map(&truth, &rows, args.top_n)
        .map_err(|e| CliError::context(format!("scoring {}", args.submission.display()), e))?;
    let list = |classes: &[u32]| classes.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    if !metrics.skipped_without_positives.is_empty() {
        eprintln!(
            "note: rows of classes without positive ratings are not averaged: {}",
            list(&metrics.skipped_without_positives)
        );
    }
    if !metrics.classes_without_row.is_empty() {
        eprintln!(
            "warning: classes with positive ratings but no row are not averaged: {}",
            list(&metrics.classes_without_row)
        );
    }
    if args.json {
        return out
            .line(serde_json::to_value(&metrics).map_err(|e| CliError::context("serialising metrics", e))?);
    }
    let n = if metrics.top_n == 0 { "all".to_string() } else { metrics.top_n.to_string() };
    out.line(format!("MAP@{n} {:.6}  ({} classes averaged)", metrics.map, metrics.per_class.len()))
}
