//! Importing a TensorFlow checkpoint into a loupe checkpoint of a zoo model.

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::model::VideoModel;
use crate::tf_checkpoint::{
    import_checkpoint, model_tensors, plan, Convention, Mapping, Plan, TfCheckpoint, TfCheckpointError,
    TfImportError,
};
use crate::train::checkpoint::{
    load_checkpoint, resolve_checkpoint, save_checkpoint, CheckpointMeta, CHECKPOINT_FORMAT,
};
use crate::train::{Adam, AdamConfig, RngState, TrainingDescription};

use super::dispatch::{on_model, Job, JobDevice, JobModel, RunDevice};

/// What to import: a TF checkpoint into the zoo model `model`.
pub struct ImportRequest {
    /// The zoo model's name.
    pub model: String,
    pub checkpoint: TfCheckpoint,
    /// A mapping of the user's; `None`: the built-in one of `convention`.
    pub mapping: Option<Mapping>,
    /// The variable names' convention; `None`: detected from the names.
    pub convention: Option<Convention>,
    /// Where to write (`DIR/checkpoints/`); `None`: a dry run, which only plans.
    pub train_dir: Option<PathBuf>,
}

/// What [`import`] did.
pub enum ImportOutcome {
    /// A dry run: the mapping and its problems (none: the import would succeed).
    Planned(Plan),
    /// The checkpoint written and read back.
    Written {
        /// TF variables read.
        tensors: usize,
        /// The training step the TF checkpoint was at.
        step: u64,
        /// Whether Adam's moments came along.
        adam_moments: bool,
        /// The written checkpoint's sidecar.
        sidecar: PathBuf,
    },
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("building `{model}`: {problem}")]
    Build { model: String, problem: String },
    #[error("dry run")]
    Plan(#[source] TfCheckpointError),
    #[error("{}: already holds a checkpoint; import into a new --train-dir", .0.display())]
    Occupied(PathBuf),
    #[error("importing into `{model}`")]
    Import {
        model: String,
        #[source]
        source: TfImportError,
    },
    #[error("writing the loupe checkpoint")]
    Write(#[source] CheckpointError),
    #[error("verifying the written checkpoint")]
    Verify(#[source] CheckpointError),
}

impl ImportRequest {
    fn mapping_for<M: VideoModel<f32, D>, D: JobDevice>(&self, model: &M) -> Mapping {
        let names: Vec<String> = model_tensors(model).into_iter().map(|t| t.name).collect();
        match &self.mapping {
            Some(m) => m.clone().with_update_counts(&names),
            None => {
                let convention = self.convention.unwrap_or_else(|| {
                    Convention::detect(self.checkpoint.entries().map(|e| e.name.as_str()))
                });
                Mapping::builtin(convention, &M::describe(), &names)
            }
        }
    }
}

impl Job for ImportRequest {
    type Output = Result<ImportOutcome, ImportError>;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output {
        let build = || {
            M::try_build(&device)
                .map_err(|e| ImportError::Build { model: self.model.clone(), problem: format!("{e:?}") })
        };
        let mut model = build()?;
        let mapping = self.mapping_for::<M, D>(&model);
        let prefix = self.checkpoint.prefix().to_path_buf();
        let Some(train_dir) = self.train_dir.clone() else {
            return Ok(ImportOutcome::Planned(
                plan(&self.checkpoint, &mapping, &model_tensors(&model)).map_err(ImportError::Plan)?,
            ));
        };
        let checkpoints = train_dir.join("checkpoints");
        if resolve_checkpoint(&checkpoints).is_ok() {
            return Err(ImportError::Occupied(checkpoints));
        }
        let imported = import_checkpoint(&self.checkpoint, &mapping, &mut model)
            .map_err(|source| ImportError::Import { model: self.model.clone(), source })?;
        let adam = Adam { config: AdamConfig::default(), step: imported.step, moments: imported.moments };
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT,
            model: M::describe(),
            dtype: "f32".into(),
            training: TrainingDescription {
                model: Some(self.model.clone()),
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
        let sidecar = save_checkpoint(&checkpoints, &model, &adam, &meta, 1).map_err(ImportError::Write)?;
        let tensors = imported.plan.rows.iter().filter(|r| !r.tf.is_empty()).count();
        let adam_moments = adam.moments.is_some();
        // The verification below builds a second model and optimiser: free these first.
        drop((model, adam));
        // Read back as `eval` and `train --resume` will: sizes, checksums, shapes.
        let mut check = build()?;
        let mut check_adam = Adam::new(AdamConfig::default());
        load_checkpoint(&sidecar, &M::describe(), &mut check, Some(&mut check_adam))
            .map_err(ImportError::Verify)?;
        Ok(ImportOutcome::Written { tensors, step: imported.step, adam_moments, sidecar })
    }
}

/// Imports `request`'s TF checkpoint into its zoo model on `device` and writes it (as
/// `loupe train` would) with the mapping's Adam moments when the checkpoint holds them,
/// then reads it back; a dry run only plans. `None` for a name not in the zoo.
pub fn import(request: ImportRequest, device: RunDevice) -> Option<Result<ImportOutcome, ImportError>> {
    let name = request.model.clone();
    on_model(&name, device, request)
}
