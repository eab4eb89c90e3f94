//! Ensembles: the weighted mean of several models' predictions, evaluated against the
//! true labels, with members and weights chosen greedily on a validation set
//! (docs/reference.md section 8; the paper's winning entry averaged 7 models this way).
//!
//! | concern | module |
//! |---|---|
//! | one member's per-video scores (prediction files, dense outputs) | [`predictions`] |
//! | a member from a model's probabilities on a dataset | [`model`] |
//! | true labels read from TFRecord shards | [`truth`] |
//! | weighted mean, evaluation, missing-video policy | [`combine`] |
//! | greedy forward selection, weight search | [`greedy`] |
//!
//! **Missing labels** score 0: a member keeps each video's best labels only ([`Keep`]),
//! as a top-20 prediction file does, and the mean counts the others as 0, as the
//! released averaging script did. Dense model outputs keep 100 labels by default.
//!
//! **Missing videos** are an error by default ([`MissingVideos::Error`]): members must
//! predict the same videos, and evaluation needs exactly the ground truth's.
//! [`MissingVideos::Empty`] counts a missing video as predicting nothing instead.
//!
//! ```
//! use loupe_core::ensemble::{greedy_selection, score_predictions, weighted_mean};
//! use loupe_core::ensemble::{GroundTruth, Keep, MissingVideos, Predictions, SelectionOptions};
//!
//! let truth = GroundTruth::new(Some(3), [("a".to_string(), vec![0]), ("b".to_string(), vec![2])])?;
//! let ids = vec!["a".to_string(), "b".to_string()];
//! let m1 = Predictions::from_dense("m1", 3, ids.clone(), &[0.9, 0.2, 0.1, 0.1, 0.8, 0.5], Keep::default())?;
//! let m2 = Predictions::from_dense("m2", 3, ids, &[0.4, 0.7, 0.0, 0.0, 0.1, 0.9], Keep::default())?;
//! let members = [m1, m2];
//! let selection = greedy_selection(&members, &truth, &SelectionOptions::default())?;
//! let ensemble = weighted_mean(&members, &selection.weights, MissingVideos::Error)?;
//! assert_eq!(score_predictions(&ensemble, &truth, 20, MissingVideos::Error)?, selection.metrics);
//! let rows = ensemble.to_rows(20); // for loupe_core::submission::write_submission
//! # Ok::<(), loupe_core::ensemble::EnsembleError>(())
//! ```

pub mod combine;
mod error;
pub mod greedy;
pub mod model;
pub mod predictions;
pub mod truth;

pub use combine::{score_predictions, weighted_mean, MissingVideos};
pub use error::EnsembleError;
pub use greedy::{greedy_selection, search_weights, Selection, SelectionOptions, SelectionStep};
pub use model::model_predictions;
pub use predictions::{Keep, Predictions};
pub use truth::GroundTruth;
