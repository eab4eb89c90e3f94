//! One ensemble member: a model's per-video label scores, keyed by video id.

use std::collections::HashMap;
use std::path::Path;

use crate::metrics::top_k;
use crate::submission::{read_submission, SubmissionRow};

use super::EnsembleError;

/// How many of a video's labels a member keeps (the best by score).
///
/// Labels not kept count as score 0 when members are averaged, as in the released
/// averaging script (docs/reference.md section 8). A top-20 submission file has already lost
/// all but 20 labels; dense model outputs can keep more, which makes the average closer
/// to the true mean of probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every label given.
    All,
    /// The `n` best labels of each video (ties to the lower class index).
    Top(usize),
}

impl Default for Keep {
    /// [`Keep::Top`]`(100)`: five times the competition's 20, a few hundred bytes a video.
    fn default() -> Self {
        Keep::Top(100)
    }
}

impl Keep {
    fn limit(self) -> usize {
        match self {
            Keep::All => usize::MAX,
            Keep::Top(n) => n,
        }
    }
}

/// Per-video sparse label scores of one model (or of an ensemble), keyed by video id.
///
/// Each video holds `(label, score)` pairs; labels not held score 0. Videos keep the
/// order they were given in.
///
/// ```
/// use loupe_core::ensemble::{Keep, Predictions};
///
/// let ids = vec!["a".to_string(), "b".to_string()];
/// let dense = [0.9, 0.1, 0.5, /* b: */ 0.2, 0.7, 0.0];
/// let p = Predictions::from_dense("model", 3, ids, &dense, Keep::Top(2))?;
/// assert_eq!(p.get("a"), Some(&[(0, 0.9), (2, 0.5)][..]));
/// assert_eq!(p.top("b", 1), vec![(1, 0.7)]);
/// # Ok::<(), loupe_core::ensemble::EnsembleError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    name: String,
    classes: usize,
    ids: Vec<String>,
    index: HashMap<String, usize>,
    /// Per video, `(label, score)` sorted by label.
    scores: Vec<Vec<(u32, f32)>>,
}

impl Predictions {
    /// Predictions of `classes` classes from sparse per-video pairs (any order), keeping
    /// each video's best `keep`. Checks labels `< classes`, finite scores, no label or
    /// video twice.
    pub fn from_sparse(
        name: impl Into<String>,
        classes: usize,
        videos: impl IntoIterator<Item = (String, Vec<(u32, f32)>)>,
        keep: Keep,
    ) -> Result<Self, EnsembleError> {
        let mut predictions = Self::empty(name.into(), classes);
        for (id, pairs) in videos {
            predictions.push(id, pairs, keep)?;
        }
        Ok(predictions)
    }

    /// Predictions from submission rows (e.g. a prediction CSV already read).
    pub fn from_rows(
        name: impl Into<String>,
        classes: usize,
        rows: impl IntoIterator<Item = SubmissionRow>,
        keep: Keep,
    ) -> Result<Self, EnsembleError> {
        Self::from_sparse(name, classes, rows.into_iter().map(|r| (r.id, r.predictions)), keep)
    }

    /// Predictions from dense probabilities: `ids.len() x classes`, row-major, as
    /// [`Trainer::predict`](crate::train::Trainer::predict) returns them.
    pub fn from_dense(
        name: impl Into<String>,
        classes: usize,
        ids: Vec<String>,
        probabilities: &[f32],
        keep: Keep,
    ) -> Result<Self, EnsembleError> {
        let mut predictions = Self::empty(name.into(), classes);
        predictions.extend_dense(ids, probabilities, keep)?;
        Ok(predictions)
    }

    /// Adds the videos of one batch of dense probabilities (see [`Predictions::from_dense`]).
    pub fn extend_dense(
        &mut self,
        ids: Vec<String>,
        probabilities: &[f32],
        keep: Keep,
    ) -> Result<(), EnsembleError> {
        if classes_mismatch(probabilities.len(), ids.len(), self.classes) {
            return Err(self.problem(format!(
                "{} scores for {} videos of {} classes",
                probabilities.len(),
                ids.len(),
                self.classes
            )));
        }
        for (id, row) in ids.into_iter().zip(probabilities.chunks(self.classes.max(1))) {
            self.push(id, top_k(row, keep.limit()), keep)?;
        }
        Ok(())
    }

    /// Reads a prediction file in the Kaggle submission format. `classes: None` takes
    /// one more than the largest label in the file (widen it with
    /// [`Predictions::with_classes`]). The member is named after the file.
    pub fn read_csv(path: &Path, classes: Option<usize>, keep: Keep) -> Result<Self, EnsembleError> {
        let limit = classes.unwrap_or(u32::MAX as usize + 1);
        let rows = read_submission(path, limit)?;
        let classes = classes.unwrap_or_else(|| {
            rows.iter().flat_map(|r| r.predictions.iter()).map(|&(l, _)| l as usize + 1).max().unwrap_or(0)
        });
        Self::from_rows(path.display().to_string(), classes, rows, keep)
    }

    fn empty(name: String, classes: usize) -> Self {
        Predictions { name, classes, ids: Vec::new(), index: HashMap::new(), scores: Vec::new() }
    }

    fn problem(&self, problem: String) -> EnsembleError {
        EnsembleError::Member { member: self.name.clone(), problem }
    }

    fn push(&mut self, id: String, mut pairs: Vec<(u32, f32)>, keep: Keep) -> Result<(), EnsembleError> {
        if let Some(&(label, _)) = pairs.iter().find(|&&(l, _)| l as usize >= self.classes) {
            return Err(self.problem(format!(
                "video `{id}`: label {label} is out of range (classes: {})",
                self.classes
            )));
        }
        if let Some(&(label, score)) = pairs.iter().find(|p| !p.1.is_finite()) {
            return Err(self.problem(format!("video `{id}`: score of label {label} is {score}")));
        }
        pairs.sort_by_key(|&(label, _)| label);
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(self.problem(format!("video `{id}`: label {} appears twice", w[0].0)));
        }
        if pairs.len() > keep.limit() {
            // The best (ties to the lower label), as top_k picks them.
            pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            pairs.truncate(keep.limit());
            pairs.sort_by_key(|&(label, _)| label);
        }
        if self.index.contains_key(&id) {
            return Err(self.problem(format!("video `{id}` appears twice")));
        }
        self.index.insert(id.clone(), self.ids.len());
        self.ids.push(id);
        self.scores.push(pairs);
        Ok(())
    }

    /// The same predictions under another name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same predictions as a member of `classes >= self.classes()` classes (e.g. a
    /// prediction file whose class count was inferred, joining models that know theirs).
    pub fn with_classes(mut self, classes: usize) -> Result<Self, EnsembleError> {
        if classes < self.classes {
            if let Some(label) =
                self.scores.iter().flatten().map(|&(l, _)| l).find(|&l| l as usize >= classes)
            {
                return Err(self.problem(format!("label {label} is out of range (classes: {classes})")));
            }
        }
        self.classes = classes;
        Ok(self)
    }

    /// The member's name (a file path, a checkpoint, `ensemble`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of videos.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no video.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Video ids, in the order given.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Whether video `id` is predicted.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Video `id`'s kept `(label, score)` pairs, sorted by label.
    pub fn get(&self, id: &str) -> Option<&[(u32, f32)]> {
        self.index.get(id).map(|&i| self.scores[i].as_slice())
    }

    /// Video `id`'s `k` best `(label, score)` pairs, best first, ties to the lower label
    /// (empty for an unknown video).
    pub fn top(&self, id: &str, k: usize) -> Vec<(u32, f32)> {
        let mut pairs = self.get(id).unwrap_or_default().to_vec();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        pairs.truncate(k);
        pairs
    }

    /// `(id, pairs sorted by label)` of every video, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[(u32, f32)])> {
        self.ids.iter().map(String::as_str).zip(self.scores.iter().map(Vec::as_slice))
    }

    /// Submission rows with each video's `k` best labels, in video order.
    pub fn to_rows(&self, k: usize) -> Vec<SubmissionRow> {
        self.ids.iter().map(|id| SubmissionRow { id: id.clone(), predictions: self.top(id, k) }).collect()
    }
}

fn classes_mismatch(values: usize, videos: usize, classes: usize) -> bool {
    videos.checked_mul(classes) != Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_labels_and_sorts_by_label() {
        let p = Predictions::from_sparse(
            "m",
            5,
            [("v".to_string(), vec![(4, 0.1), (0, 0.3), (2, 0.9)])],
            Keep::Top(2),
        )
        .unwrap();
        assert_eq!(p.get("v"), Some(&[(0, 0.3), (2, 0.9)][..]));
        assert_eq!(p.top("v", 5), vec![(2, 0.9), (0, 0.3)]);
        assert_eq!(p.to_rows(1), vec![SubmissionRow { id: "v".into(), predictions: vec![(2, 0.9)] }]);
    }

    #[test]
    fn dense_ties_go_to_the_lower_label() {
        let p = Predictions::from_dense("m", 3, vec!["v".into()], &[0.5, 0.5, 0.5], Keep::Top(2)).unwrap();
        assert_eq!(p.get("v"), Some(&[(0, 0.5), (1, 0.5)][..]));
    }

    #[test]
    fn malformed_members_are_errors() {
        let bad =
            |pairs: Vec<(u32, f32)>| Predictions::from_sparse("m", 3, [("v".to_string(), pairs)], Keep::All);
        let text = |r: Result<Predictions, EnsembleError>| r.unwrap_err().to_string();
        assert_eq!(text(bad(vec![(3, 0.5)])), "member `m`: video `v`: label 3 is out of range (classes: 3)");
        assert_eq!(text(bad(vec![(1, f32::NAN)])), "member `m`: video `v`: score of label 1 is NaN");
        assert_eq!(text(bad(vec![(1, 0.5), (1, 0.2)])), "member `m`: video `v`: label 1 appears twice");
        let twice = Predictions::from_sparse(
            "m",
            3,
            [("v".to_string(), vec![]), ("v".to_string(), vec![])],
            Keep::All,
        );
        assert_eq!(text(twice), "member `m`: video `v` appears twice");
        let dense = Predictions::from_dense("m", 3, vec!["v".into()], &[0.5; 4], Keep::All);
        assert_eq!(text(dense), "member `m`: 4 scores for 1 videos of 3 classes");
    }

    #[test]
    fn classes_widen_but_do_not_cut_labels() {
        let p = Predictions::from_sparse("m", 3, [("v".to_string(), vec![(2, 0.5)])], Keep::All).unwrap();
        assert_eq!(p.clone().with_classes(10).unwrap().classes(), 10);
        assert!(p.with_classes(2).is_err());
    }
}
