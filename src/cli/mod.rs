//! Command-line parsing (clap derive, one module per subcommand) and the error path:
//! a failure prints `error: ` and its whole cause chain on one line to stderr and
//! exits with 1; usage errors exit with 2 (clap's convention).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod embed;
mod ensemble;
mod error;
mod eval;
mod import;
mod inspect;
mod inspect_checkpoint;
mod job;
mod models;
mod output;
mod quickstart;
mod score;
mod segments;
mod synth;
mod train;

use error::{chain, is_broken_pipe, is_interrupted, CliError};
use output::Output;

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
    if let Err(e) = loupe::kernels::gemm::TileKind::from_environment() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
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
