//! `loupe models`: the zoo with parameter counts.

use clap::Args;
use loupe::model::{InputKind, ModelDescription};

use super::error::CliError;
use super::job::describe;
use super::output::Output;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// One JSON line per model (name, parameters, description).
    #[arg(long)]
    json: bool,
}

/// `fc 1024`, `fc 32 + bn + relu6`.
fn hidden(size: usize, d: &ModelDescription) -> String {
    let bn = if d.hidden_batch_norm { " + bn" } else { "" };
    let relu6 = if d.hidden_relu6 { " + relu6" } else { "" };
    format!("fc {size}{bn}{relu6}")
}

pub fn run(args: ModelsArgs, out: &mut Output) -> Result<(), CliError> {
    if !args.json {
        out.line(format!(
            "{:<24} {:>13}  {:<5} {:<40} {}",
            "name", "parameters", "fusion", "pooling", "head"
        ))?;
    }
    for name in loupe::zoo::NAMES {
        let (d, params) = describe(name)?;
        if args.json {
            let description = serde_json::to_value(&d).map_err(|e| CliError::context("serialising", e))?;
            out.line(serde_json::json!({"name": name, "parameters": params, "description": description}))?;
        } else {
            let head = format!(
                "{}{} -> {}{} -> {} ({} classes, {})",
                d.hidden.map_or(String::new(), |h| format!("{} -> ", hidden(h, &d))),
                d.after_pooling,
                d.classifier,
                if d.experts > 0 { format!("({})", d.experts) } else { String::new() },
                d.after_classifier,
                d.classes,
                if d.input == InputKind::VideoLevel {
                    "video-level".to_string()
                } else {
                    format!("{} frames", d.frames)
                }
            );
            out.line(format!("{name:<24} {params:>13}  {:<5} {:<40} {head}", d.fusion, d.pooling_summary()))?;
        }
    }
    Ok(())
}
