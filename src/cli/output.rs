//! What subcommands print to stdout ([`Output`]: one line at a time, muted on MPI ranks
//! other than 0, quiet when the reader goes away) and the lines several of them share:
//! metrics, and what `--skip-corrupt` skipped (to stderr).

use std::fmt;
use std::io::{self, Write};

use super::error::CliError;

/// Output to stdout that stops quietly when the reader goes away (`| head`).
pub struct Output {
    out: io::BufWriter<io::StdoutLock<'static>>,
    /// Set on every MPI rank but 0: their results are rank 0's.
    muted: bool,
}

impl Output {
    pub(super) fn new(muted: bool) -> Self {
        Self { out: io::BufWriter::new(io::stdout().lock()), muted }
    }

    /// Writes one line (nothing on a muted output).
    pub fn line(&mut self, text: impl fmt::Display) -> Result<(), CliError> {
        if self.muted {
            return Ok(());
        }
        writeln!(self.out, "{text}").map_err(|e| CliError::context("writing to stdout", e))
    }

    pub(super) fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush().map_err(|e| CliError::context("writing to stdout", e))
    }
}

/// Prints evaluation metrics as one JSON object or as a line of text.
pub fn print_metrics(
    out: &mut Output,
    m: &loupe::metrics::MetricsSummary,
    json: bool,
) -> Result<(), CliError> {
    if json {
        out.line(serde_json::to_value(m).map_err(|e| CliError::context("serialising metrics", e))?)
    } else {
        out.line(format!(
            "GAP {:.4}  Hit@1 {:.4}  PERR {:.4}  mAP {:.4}  ({} videos)",
            m.gap, m.hit_at_1, m.perr, m.map, m.videos
        ))
    }
}

/// Prints what `--skip-corrupt` skipped to stderr: one line per kept message, then
/// `<what>: skipped N records, abandoned M files (reason count, ...)`. Nothing when
/// nothing was skipped.
pub fn report_skipped(what: &str, skipped: &loupe::data::SkipReport) {
    if skipped.is_empty() {
        return;
    }
    for message in &skipped.messages {
        eprintln!("skipped: {message}");
    }
    eprintln!("{what}: {}", skipped.summary());
}
