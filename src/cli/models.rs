//! `loupe models`: the zoo with parameter counts.

use clap::Args;
use loupe::model::ModelDescription;

use super::job::describe;
use super::{CliError, Output};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// One JSON line per model (name, parameters, description).
    #[arg(long)]
    json: bool,
}

fn pooling(d: &ModelDescription) -> String {
    d.streams
        .iter()
        .map(|s| match s.clusters {
            Some(k) => format!("{} {}({k})", s.name, s.pooling),
            None => format!("{} {}", s.name, s.pooling),
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

pub fn run(args: ModelsArgs, out: &mut Output) -> Result<(), CliError> {
    if !args.json {
        out.line(format!("{:<22} {:>13}  {:<5} {:<40} {}", "name", "parameters", "fusion", "pooling", "head"))?;
    }
    for name in loupe::zoo::NAMES {
        let (d, params) = describe(name)?;
        if args.json {
            let description = serde_json::to_value(&d).map_err(|e| CliError::context("serialising", e))?;
            out.line(serde_json::json!({"name": name, "parameters": params, "description": description}))?;
        } else {
            let head = format!(
                "{}{} -> {}{} -> {}{} ({} classes, {} frames)",
                d.hidden.map_or(String::new(), |h| format!("fc {h} -> ")),
                d.after_pooling,
                d.classifier,
                if d.experts > 0 { format!("({})", d.experts) } else { String::new() },
                d.after_classifier,
                "",
                d.classes,
                d.frames
            );
            out.line(format!("{name:<22} {params:>13}  {:<5} {:<40} {head}", d.fusion, pooling(&d)))?;
        }
    }
    Ok(())
}
