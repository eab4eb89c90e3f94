//! `loupe ensemble`: the weighted mean of several models' predictions, with members and
//! weights chosen greedily on validation data, evaluated and written as a submission.

use std::path::{Path, PathBuf};

use clap::Args;
use loupe::data::expand_patterns;
use loupe::ensemble::{
    greedy_selection, score_predictions, search_weights, weighted_mean, GroundTruth, Keep, MissingVideos,
    Predictions, Selection, SelectionOptions,
};
use loupe::jobs;
use loupe::metrics::MetricsSummary;
use loupe::submission::write_submission;
use loupe::train::checkpoint::read_meta;

use super::error::CliError;
use super::job::{known, zoo_name_of, DeviceArgs};
use super::output::Output;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("members").required(true).multiple(true).args(["predictions", "checkpoints"]))]
pub struct EnsembleArgs {
    /// Prediction files (`VideoId,LabelConfidencePairs`, as `loupe predict` writes them).
    #[arg(long, num_args = 1..)]
    predictions: Vec<PathBuf>,
    /// Checkpoint directories (or sidecars) of zoo models: each predicts the `--data`
    /// videos. Members are ordered: prediction files first, then checkpoints.
    #[arg(long, num_args = 1..)]
    checkpoints: Vec<PathBuf>,
    /// TFRecord files or glob patterns the checkpoints predict (default: `--validation`).
    #[arg(long, num_args = 1..)]
    data: Vec<String>,
    /// Ground-truth TFRecord files or glob patterns: the ensemble is evaluated on them,
    /// and `--greedy` selects on them.
    #[arg(long, num_args = 1..)]
    validation: Vec<String>,
    /// One weight per member, in member order (default: equal weights).
    #[arg(long, num_args = 1.., conflicts_with = "greedy")]
    weights: Vec<f64>,
    /// Choose members and integer weights by greedy forward selection (with replacement)
    /// on `--validation`.
    #[arg(long, requires = "validation")]
    greedy: bool,
    /// Then refine the weights by a coordinate search on `--validation` (fits it more
    /// closely: check on held-out data).
    #[arg(long, requires = "validation")]
    search_weights: bool,
    /// Most members, counted with repetition, that `--greedy` selects.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    max_members: u64,
    /// Labels kept per video per member (a top-20 file keeps at most 20; the others score 0).
    #[arg(long, default_value_t = 100, conflicts_with = "keep_all")]
    keep: usize,
    /// Keep every label a member gives.
    #[arg(long)]
    keep_all: bool,
    /// Labels per video written and evaluated (20 in the competition).
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    /// Number of classes; default: the checkpoints' models', else inferred from the labels seen.
    #[arg(long)]
    classes: Option<usize>,
    /// A video missing from a member (or from the predictions, vs the ground truth)
    /// counts as predicting nothing, instead of being an error.
    #[arg(long)]
    allow_missing: bool,
    /// Write the ensemble's submission CSV here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object: `gap`, `hit_at_1`, `perr`, `map` (null without
    /// `--validation`), `videos`, `members` (name, weight, gap), `steps`.
    #[arg(long)]
    json: bool,
    /// Where the checkpoints predict.
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: EnsembleArgs, out: &mut Output) -> Result<(), CliError> {
    let keep = if args.keep_all { Keep::All } else { Keep::Top(args.keep) };
    let missing = if args.allow_missing { MissingVideos::Empty } else { MissingVideos::Error };

    let truth_files = (!args.validation.is_empty()).then(|| expand_patterns(&args.validation)).transpose()?;
    let mut members = Vec::new();
    for path in &args.predictions {
        let member = Predictions::read_csv(path, args.classes, keep)
            .map_err(|e| CliError::context(format!("reading predictions {}", path.display()), e))?;
        members.push(member);
    }
    if !args.checkpoints.is_empty() {
        let data = match (&args.data, &truth_files) {
            (data, _) if !data.is_empty() => expand_patterns(data)?,
            (_, Some(files)) => files.clone(),
            _ => return Err(CliError::message("--checkpoints need --data (or --validation) to predict")),
        };
        for path in &args.checkpoints {
            members.push(checkpoint_member(path, &data, keep, &args.device)?);
        }
    }

    // Prediction files without --classes know only their largest label: widen every
    // member and the truth to the largest class count seen.
    let truth = truth_files
        .map(|files| GroundTruth::read(&files, args.classes))
        .transpose()
        .map_err(|e| CliError::context("reading the ground truth", e))?;
    let classes = args.classes.unwrap_or_else(|| {
        let seen = members.iter().map(Predictions::classes).chain(truth.iter().map(GroundTruth::classes));
        seen.max().unwrap_or(1).max(1)
    });
    // A model's class count is its own: it must match, not be widened.
    if let Some(model) = members[args.predictions.len()..].iter().find(|m| m.classes() != classes) {
        return Err(CliError::message(format!(
            "checkpoint {} predicts {} classes but the other members, the ground truth or --classes need {classes}",
            model.name(),
            model.classes()
        )));
    }
    let members = members
        .into_iter()
        .map(|m| m.with_classes(classes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::context("members", e))?;
    let truth = truth
        .map(|t| t.with_classes(classes))
        .transpose()
        .map_err(|e| CliError::context("ground truth", e))?;

    let options = SelectionOptions { max_members: args.max_members as usize, top_k: args.top_k, missing };
    let context = |e| CliError::context("ensembling", e);
    let mut selection: Option<Selection> = None;
    let mut weights = if args.weights.is_empty() { vec![1.0; members.len()] } else { args.weights.clone() };
    if let Some(truth) = &truth {
        if args.greedy {
            let s = greedy_selection(&members, truth, &options).map_err(context)?;
            weights = s.weights.clone();
            selection = Some(s);
        }
        if args.search_weights {
            let s = search_weights(&members, truth, &weights, &options).map_err(context)?;
            weights = s.weights.clone();
            selection = Some(match selection {
                Some(greedy) => Selection { steps: [greedy.steps, s.steps].concat(), ..s },
                None => s,
            });
        }
    }
    let ensemble = weighted_mean(&members, &weights, missing).map_err(context)?;
    let metrics = truth
        .as_ref()
        .map(|t| score_predictions(&ensemble, t, args.top_k, missing))
        .transpose()
        .map_err(context)?;
    let member_metrics: Vec<Option<MetricsSummary>> = match (&selection, &truth) {
        (Some(s), _) => s.member_metrics.iter().copied().map(Some).collect(),
        (None, Some(t)) => members
            .iter()
            .map(|m| score_predictions(m, t, args.top_k, missing).map(Some))
            .collect::<Result<_, _>>()
            .map_err(context)?,
        (None, None) => vec![None; members.len()],
    };

    if let Some(path) = &args.out {
        // Written next to the target and renamed, so a failed run leaves no half file.
        let tmp = path.with_extension("csv.tmp");
        let file = std::fs::File::create(&tmp)
            .map_err(|e| CliError::context(format!("creating {}", tmp.display()), e))?;
        write_submission(std::io::BufWriter::new(file), ensemble.to_rows(args.top_k), None)
            .map_err(|e| CliError::context(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| CliError::context(format!("{}", path.display()), e))?;
    }

    let gap = |m: &Option<MetricsSummary>| m.map(|m| m.gap);
    if args.json {
        let members_json: Vec<serde_json::Value> = members
            .iter()
            .zip(&weights)
            .zip(&member_metrics)
            .map(|((m, w), metrics)| serde_json::json!({"name": m.name(), "weight": w, "gap": gap(metrics)}))
            .collect();
        let steps: Vec<serde_json::Value> = selection
            .iter()
            .flat_map(|s| &s.steps)
            .map(
                |s| serde_json::json!({"member": members[s.member].name(), "weight": s.weight, "gap": s.gap}),
            )
            .collect();
        return out.line(serde_json::json!({
            "gap": metrics.map(|m| m.gap),
            "hit_at_1": metrics.map(|m| m.hit_at_1),
            "perr": metrics.map(|m| m.perr),
            "map": metrics.map(|m| m.map),
            "videos": metrics.map_or(ensemble.len(), |m| m.videos),
            "members": members_json,
            "steps": steps,
            "out": args.out,
        }));
    }
    for ((member, weight), metrics) in members.iter().zip(&weights).zip(&member_metrics) {
        match gap(metrics) {
            Some(gap) => out.line(format_args!("weight {weight:>6.3}  GAP {gap:.4}  {}", member.name()))?,
            None => out.line(format_args!("weight {weight:>6.3}  {}", member.name()))?,
        }
    }
    match metrics {
        Some(m) => out.line(format_args!(
            "ensemble: GAP {:.4}  Hit@1 {:.4}  PERR {:.4}  mAP {:.4}  ({} videos)",
            m.gap, m.hit_at_1, m.perr, m.map, m.videos
        ))?,
        None => {
            out.line(format_args!("ensemble of {} videos (no --validation: not evaluated)", ensemble.len()))?
        }
    }
    if let Some(path) = &args.out {
        out.line(format_args!("wrote {}", path.display()))?;
    }
    Ok(())
}

/// Predicts `data` with the zoo model the checkpoint was trained as, on `device`.
fn checkpoint_member(
    path: &Path,
    data: &[PathBuf],
    keep: Keep,
    device: &DeviceArgs,
) -> Result<Predictions, CliError> {
    let what = || format!("checkpoint {}", path.display());
    let (_, meta) = read_meta(path).map_err(|e| CliError::context(format!("reading {}", what()), e))?;
    let name = zoo_name_of(&meta).map_err(|e| CliError::context(what(), e))?;
    let decoder = loupe::data::detect_decoder(&data[0])?;
    known(&name, jobs::member_predictions(&name, device.build()?, path, data, decoder, keep))?
        .map_err(|e| CliError::context(what(), e))
}
