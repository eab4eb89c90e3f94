//! `loupe score`: scores any Kaggle submission file against ground-truth TFRecords.

use std::path::PathBuf;

use clap::Args;
use loupe::data::{expand_patterns, read_labels};
use loupe::submission::{read_submission, score_submission};

use super::{print_metrics, CliError, Output};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The submission CSV (`VideoId,LabelConfidencePairs`).
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
    /// Print one JSON object (`gap`, `hit_at_1`, `perr`, `map`, `videos`).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ScoreArgs, out: &mut Output) -> Result<(), CliError> {
    let files = expand_patterns(&args.truth)?;
    let (truth, skipped) = read_labels(&files, args.skip_corrupt)?;
    if !skipped.is_empty() {
        eprintln!("warning: skipped {} corrupt records and {} files in the ground truth", skipped.skipped_records, skipped.abandoned_files);
    }
    let rows = read_submission(&args.submission, args.classes.unwrap_or(u32::MAX as usize))
        .map_err(|e| CliError::context("reading the submission", e))?;
    let classes = args.classes.unwrap_or_else(|| {
        let truth_max = truth.iter().flat_map(|(_, l)| l.iter().copied()).max();
        let sub_max = rows.iter().flat_map(|r| r.predictions.iter().map(|p| p.0)).max();
        truth_max.max(sub_max).map_or(1, |m| m as usize + 1)
    });
    if let Some(bad) = truth.iter().find(|(_, l)| l.iter().any(|&c| c as usize >= classes)) {
        return Err(CliError::message(format!("ground-truth video `{}` has a label >= --classes {classes}", bad.0)));
    }
    let summary = score_submission(&rows, &truth, classes, args.top_k, args.allow_missing)
        .map_err(|e| CliError::context(format!("scoring {}", args.submission.display()), e))?;
    print_metrics(out, &summary, args.json)
}
