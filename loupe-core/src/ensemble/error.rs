//! The one error type of ensembling.

use crate::data::DataError;
use crate::submission::SubmissionError;
use crate::train::run_error::RunError;

/// Why predictions could not be read, combined, evaluated or selected.
///
/// Video-coverage errors name one offending video and how many there are in all, so a
/// prediction file made on the wrong split is recognised at once.
#[derive(Debug, thiserror::Error)]
pub enum EnsembleError {
    /// A prediction file could not be read.
    #[error(transparent)]
    Submission(#[from] SubmissionError),

    /// Ground-truth shards could not be read.
    #[error(transparent)]
    Data(Box<DataError>),

    /// A model could not predict its member's scores.
    #[error(transparent)]
    Run(Box<RunError>),

    /// Nothing to combine.
    #[error("no ensemble member given")]
    NoMembers,

    /// A member holds no video.
    #[error("member `{member}` holds no video")]
    EmptyMember { member: String },

    /// A member's predictions are malformed (duplicate video or label, label out of
    /// range, score not finite, dense scores of the wrong length).
    #[error("member `{member}`: {problem}")]
    Member { member: String, problem: String },

    /// Two members, or a member and the ground truth, disagree on the class count.
    #[error("member `{member}` predicts {classes} classes but {other} has {expected}")]
    ClassMismatch { member: String, classes: usize, other: String, expected: usize },

    /// `weights` does not have one weight per member.
    #[error("{weights} weights given for {members} members")]
    WeightCount { weights: usize, members: usize },

    /// A weight is negative or not finite, or all are zero.
    #[error(
        "weight {weight} of member `{member}`: weights must be finite and non-negative, and not all zero"
    )]
    BadWeight { member: String, weight: f64 },

    /// A video predicted by one member is missing from another (policy
    /// [`MissingVideos::Error`](super::MissingVideos::Error)).
    #[error(
        "video `{id}` is predicted by `{present}` but not by `{member}` ({count} such videos); \
         allow missing videos to count them as predicting nothing"
    )]
    MissingVideo { member: String, present: String, id: String, count: usize },

    /// A ground-truth video has no prediction in a member (policy
    /// [`MissingVideos::Error`](super::MissingVideos::Error)).
    #[error(
        "video `{id}` of the ground truth is not predicted by `{member}` ({count} such videos); \
         allow missing videos to count them as predicting nothing"
    )]
    NotPredicted { member: String, id: String, count: usize },

    /// A member predicts a video the ground truth does not hold (policy
    /// [`MissingVideos::Error`](super::MissingVideos::Error)): probably another split.
    #[error("video `{id}` predicted by `{member}` is not in the ground truth ({count} such videos)")]
    UnknownVideo { member: String, id: String, count: usize },

    /// The ground truth is malformed (duplicate video, label out of range, no video).
    #[error("ground truth: {0}")]
    Truth(String),
}

// Boxed: they are large, and every `Result` of this module would carry their size.
impl From<DataError> for EnsembleError {
    fn from(error: DataError) -> Self {
        EnsembleError::Data(Box::new(error))
    }
}

impl From<RunError> for EnsembleError {
    fn from(error: RunError) -> Self {
        EnsembleError::Run(Box::new(error))
    }
}
