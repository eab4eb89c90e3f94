//! `loupe inspect-checkpoint`: the tensors of a TF or a loupe checkpoint.

use std::path::PathBuf;

use clap::Args;
use loupe::tf_checkpoint::TfCheckpoint;
use loupe::train::checkpoint::checkpoint_tensors;

use super::error::CliError;
use super::output::Output;

#[derive(Debug, Args)]
pub struct InspectCheckpointArgs {
    /// A TF checkpoint (prefix, `.index` file, or directory with a `checkpoint` file) or
    /// a loupe one (a `checkpoints/` directory, a training directory, or a sidecar `.json`).
    path: PathBuf,
    /// One JSON object per tensor (`name`, `dtype`, `shape`).
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectCheckpointArgs, out: &mut Output) -> Result<(), CliError> {
    let path = &args.path;
    let is_tf = path.join("checkpoint").is_file()
        || path.extension().is_some_and(|e| e == "index")
        || loupe::tf_checkpoint::resolve_prefix(path).is_ok();
    let tensors: Vec<(String, String, Vec<usize>)> = if is_tf {
        let ckpt = TfCheckpoint::open(path).map_err(|e| CliError::context("inspect-checkpoint", e))?;
        ckpt.entries().map(|e| (e.name.clone(), e.dtype.name().to_string(), e.shape.clone())).collect()
    } else {
        let dir = if path.join("checkpoints").is_dir() { path.join("checkpoints") } else { path.clone() };
        checkpoint_tensors(&dir).map_err(|e| CliError::context("inspect-checkpoint", e))?
    };
    for (name, dtype, shape) in tensors {
        if args.json {
            out.line(serde_json::json!({"name": name, "dtype": dtype, "shape": shape}))?;
        } else {
            out.line(format!("{name} {dtype} {shape:?}"))?;
        }
    }
    Ok(())
}
