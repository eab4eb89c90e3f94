//! `loupe import`: a TensorFlow checkpoint of the paper's or the starter code's training
//! code into a loupe checkpoint of a zoo model (docs/tf-checkpoints.md).

use std::path::{Path, PathBuf};

use clap::Args;
use loupe::jobs::{self, ImportOutcome, ImportRequest};
use loupe::tf_checkpoint::{infer_spec, Convention, Mapping, Plan, TfCheckpoint, TfImportError};

use super::error::CliError;
use super::job::{known, DeviceArgs};
use super::output::Output;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The zoo model to import into (`loupe models`; `gated-netvlad-2017` for the paper's
    /// released Gated NetVLAD).
    #[arg(long, required_unless_present = "print_spec")]
    model: Option<String>,
    /// The TF checkpoint: its prefix (`DIR/model.ckpt-N`) or a directory with a
    /// `checkpoint` file.
    #[arg(long, required_unless_present = "print_spec")]
    tf_checkpoint: Option<PathBuf>,
    /// Where to write the loupe checkpoint (`DIR/checkpoints/`, as `loupe train` does).
    #[arg(long, required_unless_present_any = ["print_spec", "dry_run"])]
    train_dir: Option<PathBuf>,
    /// Variable names as written by `willow` (the paper's code) or `starter` (the
    /// YouTube-8M starter code and code built on it, such as Lin et al.'s NeXtVLAD, under
    /// `tower/`); default: detected from the names.
    #[arg(long, value_parser = parse_convention, conflicts_with = "mapping")]
    convention: Option<Convention>,
    /// A mapping file of your own (TOML, or JSON if it ends in `.json`): `[[map]]` tables
    /// with `tf`, `loupe` and an optional `transform` (`identity`, `reshape`,
    /// `transpose`, `moe_gates`, `moe_dummy_gate`).
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Print the mapping (TF name, shape -> loupe name, shape, transform) and every
    /// problem; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the `#[video_model(...)]` spec whose shapes match this TF checkpoint.
    #[arg(long, value_name = "CKPT", conflicts_with_all = ["model", "tf_checkpoint", "train_dir", "dry_run"])]
    print_spec: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

fn parse_convention(s: &str) -> Result<Convention, String> {
    match s {
        "willow" => Ok(Convention::Willow),
        "starter" => Ok(Convention::Starter),
        _ => Err(format!("`{s}`: expected `willow` or `starter`")),
    }
}

/// Reads a user's mapping file.
fn read_mapping(path: &Path) -> Result<Mapping, TfImportError> {
    let problem = |problem: String| TfImportError::MappingFile { path: path.to_path_buf(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| problem(e.to_string()))
    } else {
        toml::from_str(&text).map_err(|e| problem(e.to_string()))
    }
}

/// Prints the mapping, row by row, and its problems.
fn print_plan(out: &mut Output, plan: &Plan) -> Result<(), CliError> {
    let shape = |s: &[usize]| format!("{s:?}");
    for row in &plan.rows {
        let tf = if !row.transform.reads_variable() {
            format!("({})", row.transform.name())
        } else {
            format!("{} {}", row.tf, shape(&row.tf_shape))
        };
        out.line(format!("{tf} -> {} {} ({})", row.loupe, shape(&row.loupe_shape), row.transform.name()))?;
    }
    let adam = if plan.adam {
        "Adam moments: imported".to_string()
    } else if plan.missing_slots.is_empty() {
        "Adam moments: none in the checkpoint".to_string()
    } else {
        format!("Adam moments: not imported, no slots for {}", plan.missing_slots.join(", "))
    };
    out.line(format!("step {}; {adam}", plan.step))?;
    for p in &plan.problems {
        out.line(format!("problem: {p}"))?;
    }
    Ok(())
}

pub fn run(args: ImportArgs, out: &mut Output) -> Result<(), CliError> {
    if let Some(path) = &args.print_spec {
        let ckpt = TfCheckpoint::open(path).map_err(|e| CliError::context("--print-spec", e))?;
        let spec = infer_spec(&ckpt, "ImportedModel")
            .map_err(|e| CliError::message(format!("{}: {e}", ckpt.prefix().display())))?;
        return out.line(spec);
    }
    let (Some(name), Some(tf)) = (args.model, args.tf_checkpoint) else {
        return Err(CliError::message("give --model and --tf-checkpoint (or --print-spec)"));
    };
    let ckpt = TfCheckpoint::open(&tf).map_err(|e| CliError::context("--tf-checkpoint", e))?;
    let mapping = args
        .mapping
        .as_deref()
        .map(read_mapping)
        .transpose()
        .map_err(|e| CliError::context("--mapping", e))?;
    let train_dir = if args.dry_run { None } else { args.train_dir };
    let prefix = ckpt.prefix().to_path_buf();
    let request = ImportRequest {
        model: name.clone(),
        checkpoint: ckpt,
        mapping,
        convention: args.convention,
        train_dir,
    };
    match known(&name, jobs::import(request, args.device.build()?))?? {
        ImportOutcome::Planned(plan) => {
            print_plan(out, &plan)?;
            if plan.problems.is_empty() {
                return Ok(());
            }
            Err(CliError::context("dry run", TfImportError::Mismatch { prefix, problems: plan.problems }))
        }
        ImportOutcome::Written { tensors, step, adam_moments, sidecar } => {
            let adam = if adam_moments { ", with Adam's moments" } else { ", without Adam's moments" };
            out.line(format!(
                "imported {tensors} tensors of {} into `{name}` at step {step}{adam}: {}",
                prefix.display(),
                sidecar.display()
            ))
        }
    }
}
