//! Kaggle submission files: `VideoId,LabelConfidencePairs`, one row per video with its
//! top labels as `label score label score ...` by descending score.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The header of a YouTube-8M Kaggle submission.
pub const SUBMISSION_HEADER: &str = "VideoId,LabelConfidencePairs";

/// One row of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRow {
    pub id: String,
    /// `(label, score)`, best first.
    pub predictions: Vec<(u32, f32)>,
}

/// Why a submission file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: empty file, expected the header `{SUBMISSION_HEADER}`")]
    Empty { path: PathBuf },
    #[error("{path}:1: expected the header `{SUBMISSION_HEADER}`, found `{found}`")]
    Header { path: PathBuf, found: String },
    #[error("{path}:{line}: {problem}")]
    Row { path: PathBuf, line: usize, problem: String },
}

/// Writes the header and one row per video; `names`, when given, adds a third column
/// `LabelNames` with the labels' names (for reading, not for upload).
pub fn write_submission<W: Write>(
    mut out: W,
    rows: impl IntoIterator<Item = SubmissionRow>,
    names: Option<&dyn Fn(u32) -> String>,
) -> std::io::Result<()> {
    match names {
        Some(_) => writeln!(out, "{SUBMISSION_HEADER},LabelNames")?,
        None => writeln!(out, "{SUBMISSION_HEADER}")?,
    }
    for row in rows {
        write!(out, "{},", row.id)?;
        for (i, (label, score)) in row.predictions.iter().enumerate() {
            if i > 0 {
                write!(out, " ")?;
            }
            write!(out, "{label} {score:.6}")?;
        }
        if let Some(names) = names {
            let joined: Vec<String> =
                row.predictions.iter().map(|(l, _)| names(*l).replace([',', '"'], " ")).collect();
            write!(out, ",{}", joined.join(" | "))?;
        }
        writeln!(out)?;
    }
    // A buffered writer's last block is written here, so its failure is reported.
    out.flush()
}

/// Reads a submission file, checking the header, every row's pairs, label range
/// (`< classes`) and duplicate ids; errors name the line.
pub fn read_submission(path: &Path, classes: usize) -> Result<Vec<SubmissionRow>, SubmissionError> {
    let io = |source| SubmissionError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = match lines.next() {
        None => return Err(SubmissionError::Empty { path: path.to_path_buf() }),
        Some(line) => line.map_err(io)?,
    };
    let header = header.trim_start_matches('\u{feff}').trim_end();
    if header != SUBMISSION_HEADER && header != format!("{SUBMISSION_HEADER},LabelNames") {
        return Err(SubmissionError::Header { path: path.to_path_buf(), found: header.to_string() });
    }
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in lines.enumerate() {
        let line_number = i + 2;
        let line = line.map_err(io)?;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let row = parse_row(line, classes).map_err(|problem| SubmissionError::Row {
            path: path.to_path_buf(),
            line: line_number,
            problem,
        })?;
        if !seen.insert(row.id.clone()) {
            return Err(SubmissionError::Row {
                path: path.to_path_buf(),
                line: line_number,
                problem: format!("video `{}` appears twice", row.id),
            });
        }
        rows.push(row);
    }
    Ok(rows)
}

fn parse_row(line: &str, classes: usize) -> Result<SubmissionRow, String> {
    let mut columns = line.splitn(3, ',');
    let id = columns.next().unwrap_or_default().to_string();
    if id.is_empty() {
        return Err("empty VideoId".to_string());
    }
    let pairs = columns.next().ok_or("expected `VideoId,LabelConfidencePairs`, found one column")?;
    let tokens: Vec<&str> = pairs.split_whitespace().collect();
    if !tokens.len().is_multiple_of(2) {
        return Err(format!("{} values: label/score pairs need an even count", tokens.len()));
    }
    let mut predictions = Vec::with_capacity(tokens.len() / 2);
    for pair in tokens.chunks(2) {
        let label: u32 =
            pair[0].parse().map_err(|_| format!("label `{}` is not a non-negative integer", pair[0]))?;
        if label as usize >= classes {
            return Err(format!("label {label} is out of range (classes: {classes})"));
        }
        let score: f32 =
            pair[1].parse().map_err(|_| format!("score `{}` of label {label} is not a number", pair[1]))?;
        if !score.is_finite() {
            return Err(format!("score of label {label} is {score}"));
        }
        predictions.push((label, score));
    }
    Ok(SubmissionRow { id, predictions })
}

/// Why a submission could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the submission has a row for video `{0}`, which is not in the ground truth")]
    UnknownVideo(String),
    #[error("{missing} of {total} ground-truth videos have no row in the submission (first: `{first}`); pass --allow-missing to score them as empty predictions")]
    MissingVideos { missing: usize, total: usize, first: String },
    #[error("the ground truth lists video `{0}` twice")]
    DuplicateTruth(String),
    #[error("no ground-truth videos")]
    NoTruth,
}

/// Scores `rows` against `truth` (`id -> labels`) with the competition metrics, keeping
/// each video's top `k` predictions. Every row must match a ground-truth video; videos
/// without a row are an error unless `allow_missing`, then they count with no predictions.
pub fn score_submission(
    rows: &[SubmissionRow],
    truth: &[(String, Vec<u32>)],
    classes: usize,
    k: usize,
    allow_missing: bool,
) -> Result<crate::metrics::MetricsSummary, ScoreError> {
    use std::collections::HashMap;
    if truth.is_empty() {
        return Err(ScoreError::NoTruth);
    }
    let mut labels: HashMap<&str, &[u32]> = HashMap::with_capacity(truth.len());
    for (id, l) in truth {
        if labels.insert(id.as_str(), l.as_slice()).is_some() {
            return Err(ScoreError::DuplicateTruth(id.clone()));
        }
    }
    let mut metrics = crate::metrics::EvaluationMetrics::new(classes, k);
    let mut scored = HashSet::with_capacity(rows.len());
    for row in rows {
        let Some(l) = labels.get(row.id.as_str()) else {
            return Err(ScoreError::UnknownVideo(row.id.clone()));
        };
        metrics.add_sparse_video(&row.predictions, l);
        scored.insert(row.id.as_str());
    }
    let missing: Vec<&(String, Vec<u32>)> =
        truth.iter().filter(|(id, _)| !scored.contains(id.as_str())).collect();
    if let Some((first, _)) = missing.first() {
        if !allow_missing {
            return Err(ScoreError::MissingVideos {
                missing: missing.len(),
                total: truth.len(),
                first: first.clone(),
            });
        }
        for (_, l) in &missing {
            metrics.add_sparse_video(&[], l);
        }
    }
    Ok(metrics.summary())
}
