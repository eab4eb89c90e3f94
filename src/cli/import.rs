//! `loupe import`: a TensorFlow checkpoint of the paper's or the starter code's training
//! code into a loupe checkpoint of a zoo model (docs/tf-checkpoints.md).

use std::path::{Path, PathBuf};

use clap::Args;
use loupe::model::VideoModel;
use loupe::tf_checkpoint::{
    import_checkpoint, infer_spec, model_tensors, plan, Convention, Mapping, Plan, TfCheckpoint,
    TfImportError,
};
use loupe::train::checkpoint::{
    load_checkpoint, resolve_checkpoint, save_checkpoint, CheckpointMeta, CHECKPOINT_FORMAT,
};
use loupe::train::{Adam, AdamConfig, RngState, TrainingDescription};

use super::error::CliError;
use super::job::{on_model, DeviceArgs, Job, JobDevice};
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

struct ImportJob<'o> {
    name: String,
    ckpt: TfCheckpoint,
    mapping: Option<Mapping>,
    convention: Option<Convention>,
    train_dir: Option<PathBuf>,
    out: &'o mut Output,
}

impl ImportJob<'_> {
    fn mapping_for<M: VideoModel<f32, D>, D: JobDevice>(&self, model: &M) -> Mapping {
        let names: Vec<String> = model_tensors(model).into_iter().map(|t| t.name).collect();
        match &self.mapping {
            Some(m) => m.clone().with_update_counts(&names),
            None => {
                let convention = self
                    .convention
                    .unwrap_or_else(|| Convention::detect(self.ckpt.entries().map(|e| e.name.as_str())));
                Mapping::builtin(convention, &M::describe(), &names)
            }
        }
    }

    fn print_plan(&mut self, plan: &Plan) -> Result<(), CliError> {
        let shape = |s: &[usize]| format!("{s:?}");
        for row in &plan.rows {
            let tf = if !row.transform.reads_variable() {
                format!("({})", row.transform.name())
            } else {
                format!("{} {}", row.tf, shape(&row.tf_shape))
            };
            self.out.line(format!(
                "{tf} -> {} {} ({})",
                row.loupe,
                shape(&row.loupe_shape),
                row.transform.name()
            ))?;
        }
        let adam = if plan.adam {
            "Adam moments: imported".to_string()
        } else if plan.missing_slots.is_empty() {
            "Adam moments: none in the checkpoint".to_string()
        } else {
            format!("Adam moments: not imported, no slots for {}", plan.missing_slots.join(", "))
        };
        self.out.line(format!("step {}; {adam}", plan.step))?;
        for p in &plan.problems {
            self.out.line(format!("problem: {p}"))?;
        }
        Ok(())
    }
}

impl Job for ImportJob<'_> {
    type Output = Result<(), CliError>;
    fn run<M, D>(mut self, device: D) -> Self::Output
    where
        D: JobDevice,
        M: VideoModel<f32, D> + loupe::dfdx::nn::BuildModule<D, f32> + Clone,
    {
        let mut model = M::try_build(&device)
            .map_err(|e| CliError::message(format!("building `{}`: {e:?}", self.name)))?;
        let mapping = self.mapping_for::<M, D>(&model);
        let prefix = self.ckpt.prefix().to_path_buf();
        let Some(train_dir) = self.train_dir.clone() else {
            let plan = plan(&self.ckpt, &mapping, &model_tensors(&model))
                .map_err(|e| CliError::context("dry run", e))?;
            self.print_plan(&plan)?;
            if plan.problems.is_empty() {
                return Ok(());
            }
            return Err(CliError::context(
                "dry run",
                TfImportError::Mismatch { prefix, problems: plan.problems },
            ));
        };
        let checkpoints = train_dir.join("checkpoints");
        if resolve_checkpoint(&checkpoints).is_ok() {
            return Err(CliError::message(format!(
                "{}: already holds a checkpoint; import into a new --train-dir",
                checkpoints.display()
            )));
        }
        let imported = import_checkpoint(&self.ckpt, &mapping, &mut model)
            .map_err(|e| CliError::context(format!("importing into `{}`", self.name), e))?;
        let adam = Adam { config: AdamConfig::default(), step: imported.step, moments: imported.moments };
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT,
            model: M::describe(),
            dtype: "f32".into(),
            training: TrainingDescription {
                model: Some(self.name.to_string()),
                imported_from: Some(prefix.display().to_string()),
                seed: Some(0),
                ..TrainingDescription::default()
            },
            step: imported.step,
            examples_seen: 0,
            metrics: None,
            vocabulary_size: M::CLASSES,
            rng_state: RngState { seed: Some(0), batches_consumed: Some(0), ranks: Some(1) },
            files: Vec::new(),
        };
        let sidecar = save_checkpoint(&checkpoints, &model, &adam, &meta, 1)
            .map_err(|e| CliError::context("writing the loupe checkpoint", e))?;
        let tensors = imported.plan.rows.iter().filter(|r| !r.tf.is_empty()).count();
        let adam_note =
            if adam.moments.is_some() { ", with Adam's moments" } else { ", without Adam's moments" };
        // The verification below builds a second model and optimiser: free these first.
        drop((model, adam));
        // Read back as `eval` and `train --resume` will: sizes, checksums, shapes.
        let mut check = M::try_build(&device).map_err(|e| CliError::message(format!("{e:?}")))?;
        let mut check_adam = Adam::new(AdamConfig::default());
        load_checkpoint(&sidecar, &M::describe(), &mut check, Some(&mut check_adam))
            .map_err(|e| CliError::context("verifying the written checkpoint", e))?;
        self.out.line(format!(
            "imported {tensors} tensors of {} into `{}` at step {}{adam_note}: {}",
            prefix.display(),
            self.name,
            imported.step,
            sidecar.display()
        ))
    }
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
    let job = ImportJob { name: name.clone(), ckpt, mapping, convention: args.convention, train_dir, out };
    on_model(&name, args.device.build()?, job)?
}
