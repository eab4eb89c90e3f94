//! Command-line parsing (clap derive, one module per subcommand) and the error path:
//! a failure prints `error: ` and its whole cause chain on one line to stderr and
//! exits with 1; usage errors exit with 2 (clap's convention).

use std::error::Error;
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod embed;
mod ensemble;
mod eval;
mod import;
mod inspect;
mod inspect_checkpoint;
mod job;
mod models;
mod quickstart;
mod score;
mod segments;
mod synth;
mod train;

/// Video classification with learnable pooling (NetVLAD, NetFV, Context Gating).
#[derive(Debug, Parser)]
#[command(name = "loupe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing worth boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: synthetic data, a small Gated NetVLAD and a baseline trained and compared.
    Quickstart(quickstart::QuickstartArgs),
    /// Train a zoo model (checkpoints, TensorBoard events, curves.png).
    Train(train::TrainArgs),
    /// Evaluate a checkpoint: GAP@20, Hit@1, PERR, mAP.
    Eval(eval::EvalArgs),
    /// Write a Kaggle submission CSV of a checkpoint's predictions (or, with
    /// `--segments`, the 2019 segment submission).
    Predict(eval::PredictArgs),
    /// Write each video's vector at a layer (pooled, hidden, gated) of a checkpoint's model
    /// to a `.npy` (+ ids) or `.safetensors` file.
    Embed(embed::EmbedArgs),
    /// List the model zoo with parameter counts.
    Models(models::ModelsArgs),
    /// Write a synthetic YouTube-8M-format data set with learnable structure.
    Synth(synth::SynthArgs),
    /// Summarise YouTube-8M TFRecord files (frame- or video-level, auto-detected).
    Inspect(inspect::InspectArgs),
    /// Combine several models' predictions (files or checkpoints) into a weighted mean,
    /// optionally choosing members greedily on validation data; evaluate and write a submission.
    Ensemble(ensemble::EnsembleArgs),
    /// Score a Kaggle submission CSV against ground-truth TFRecords (GAP@20, Hit@1, PERR, mAP),
    /// or a segment submission (`--segments`, MAP@N of the 2019 task).
    Score(score::ScoreArgs),
    /// Time a zoo model: forward, forward + backward, training step; GFLOP/s and memory.
    Bench(bench::BenchArgs),
    /// Import a TensorFlow checkpoint (the paper's or the starter code's training code)
    /// into a loupe checkpoint of a zoo model; `--dry-run` prints the mapping,
    /// `--print-spec` the matching `#[video_model]` spec.
    Import(import::ImportArgs),
    /// List a TensorFlow or loupe checkpoint's tensors (name, dtype, shape).
    InspectCheckpoint(inspect_checkpoint::InspectCheckpointArgs),
}

/// A failure of a subcommand: a message and the error that caused it, if any.
#[derive(Debug)]
pub struct CliError {
    message: String,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl CliError {
    /// A failure described by `message` alone.
    pub fn message(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    /// A failure described by `message`, caused by `source`.
    pub fn context(message: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), source: Some(Box::new(source)) }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for CliError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl From<loupe::data::DataError> for CliError {
    fn from(error: loupe::data::DataError) -> Self {
        // The data error names file and record itself; keep it as the message and
        // let its own causes follow.
        Self { message: error.to_string(), source: error.source().map(|s| Box::new(ChainLink::of(s)) as _) }
    }
}

/// A cause chain copied into owned strings (the original sources borrow the error).
#[derive(Debug)]
struct ChainLink {
    message: String,
    next: Option<Box<ChainLink>>,
}

impl ChainLink {
    fn of(error: &(dyn Error + 'static)) -> Self {
        Self { message: error.to_string(), next: error.source().map(|s| Box::new(ChainLink::of(s))) }
    }
}

impl fmt::Display for ChainLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for ChainLink {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.next.as_deref().map(|e| e as &(dyn Error + 'static))
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

/// `error` and its causes joined by `: `.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Output to stdout that stops quietly when the reader goes away (`| head`).
pub struct Output {
    out: io::BufWriter<io::StdoutLock<'static>>,
    /// Set on every MPI rank but 0: their results are rank 0's.
    muted: bool,
}

impl Output {
    fn new(muted: bool) -> Self {
        Self { out: io::BufWriter::new(io::stdout().lock()), muted }
    }

    /// Writes one line (nothing on a muted output).
    pub fn line(&mut self, text: impl fmt::Display) -> Result<(), CliError> {
        if self.muted {
            return Ok(());
        }
        writeln!(self.out, "{text}").map_err(|e| CliError::context("writing to stdout", e))
    }

    fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush().map_err(|e| CliError::context("writing to stdout", e))
    }
}

fn is_broken_pipe(error: &CliError) -> bool {
    error
        .source
        .as_deref()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Whether `error` is a training run stopped by a signal after writing its checkpoint.
fn is_interrupted(error: &CliError) -> bool {
    error
        .source
        .as_deref()
        .and_then(|s| s.downcast_ref::<loupe::train::run::RunError>())
        .is_some_and(|e| matches!(e, loupe::train::run::RunError::Interrupted { .. }))
}

/// Parses the arguments, runs the subcommand, and turns the outcome into an exit code.
///
/// Launched as several MPI ranks (`mpirun -np N loupe train ...`), `train`, `eval`,
/// `predict`, `embed` and `bench` run as one job ([`loupe::distributed`]); only rank 0 prints, and an error
/// on any rank ends every rank (MPI_Abort) after printing it with the rank's number.
pub fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors: message and exit code 2
    let collective = match loupe::distributed::from_environment() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let collective = &*collective;
    let ranks = collective.world_size();
    let mut out = Output::new(!collective.is_root());
    let result = match cli.command {
        Command::Train(args) => train::run(args, &mut out, collective),
        Command::Eval(args) => eval::run_eval(args, &mut out, collective),
        Command::Predict(args) => eval::run_predict(args, &mut out, collective),
        Command::Embed(args) => embed::run(args, &mut out, collective),
        Command::Bench(args) => bench::run(args, &mut out, collective),
        _ if ranks > 1 => Err(CliError::message(format!(
            "launched as {ranks} MPI ranks: only `train`, `eval`, `predict`, `embed` and `bench` run across ranks; start this command as one process"
        ))),
        Command::Quickstart(args) => quickstart::run(args, &mut out),
        Command::Models(args) => models::run(args, &mut out),
        Command::Synth(args) => synth::run(args, &mut out),
        Command::Inspect(args) => inspect::run(args, &mut out),
        Command::Score(args) => score::run(args, &mut out),
        Command::Ensemble(args) => ensemble::run(args, &mut out),
        Command::Import(args) => import::run(args, &mut out),
        Command::InspectCheckpoint(args) => inspect_checkpoint::run(args, &mut out),
    }
    .and_then(|()| out.flush());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if is_interrupted(&e) => {
            // Every rank stopped after the same step (no abort needed); rank 0 says so.
            if collective.is_root() {
                eprintln!("{}", chain(&e));
            }
            ExitCode::from(loupe::train::interrupt::INTERRUPTED_EXIT_CODE as u8)
        }
        Err(e) if ranks > 1 => {
            eprintln!("error: rank {} of {ranks}: {}", collective.rank(), chain(&e));
            // The other ranks may be waiting for this one in a collective call.
            collective.abort(1)
        }
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
