//! A member straight from a model: its dense probabilities on a dataset.

use dfdx::prelude::*;

use crate::data::Dataset;
use crate::infer::Predictor;
use crate::model::VideoModel;
use crate::train::evaluation::batches;

use super::{EnsembleError, Keep, Predictions};

/// The predictions of `predictor`'s model on every video of `dataset`
/// (e.g. [`evaluation_dataset`](crate::train::run::evaluation_dataset)), keeping each
/// video's best `keep` probabilities: more than a top-20 prediction file holds, so the
/// mean is closer to the mean of the full probability vectors.
pub fn model_predictions<M, D>(
    predictor: &Predictor<M, D>,
    dataset: &Dataset,
    name: impl Into<String>,
    keep: Keep,
) -> Result<Predictions, EnsembleError>
where
    D: Device<f32>,
    M: VideoModel<f32, D>,
{
    let mut predictions = Predictions::from_sparse(name, M::CLASSES, [], keep)?;
    for batch in batches(dataset)? {
        let batch = batch.map_err(crate::train::run_error::RunError::from)?;
        let probabilities = predictor
            .predict(&batch.frames, &batch.lengths)
            .map_err(crate::train::run_error::RunError::from)?;
        predictions.extend_dense(batch.ids, &probabilities, keep)?;
    }
    Ok(predictions)
}
