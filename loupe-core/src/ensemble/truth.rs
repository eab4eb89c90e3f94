//! The true labels of an evaluation set, keyed by video id.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::data::read_labels;

use super::EnsembleError;

/// The true labels of the videos an ensemble is selected and evaluated on.
///
/// ```
/// use loupe_core::ensemble::GroundTruth;
///
/// let truth = GroundTruth::new(Some(4), [("a".to_string(), vec![3]), ("b".to_string(), vec![])])?;
/// assert_eq!(truth.labels("a"), Some(&[3][..]));
/// assert_eq!(truth.len(), 2);
/// # Ok::<(), loupe_core::ensemble::EnsembleError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    classes: usize,
    ids: Vec<String>,
    index: HashMap<String, usize>,
    labels: Vec<Vec<u32>>,
}

impl GroundTruth {
    /// The truth of `(id, labels)` videos. `classes: None` takes one more than the
    /// largest label. Errors on an empty set, a video twice, a label `>= classes`.
    pub fn new(
        classes: Option<usize>,
        videos: impl IntoIterator<Item = (String, Vec<u32>)>,
    ) -> Result<Self, EnsembleError> {
        let mut ids = Vec::new();
        let mut index = HashMap::new();
        let mut labels = Vec::new();
        for (id, mut video_labels) in videos {
            if index.insert(id.clone(), ids.len()).is_some() {
                return Err(EnsembleError::Truth(format!("video `{id}` appears twice")));
            }
            let out_of_range =
                classes.and_then(|c| video_labels.iter().find(|&&l| l as usize >= c).map(|&l| (l, c)));
            if let Some((label, classes)) = out_of_range {
                return Err(EnsembleError::Truth(format!(
                    "video `{id}`: label {label} is out of range (classes: {classes})"
                )));
            }
            video_labels.sort_unstable();
            video_labels.dedup();
            ids.push(id);
            labels.push(video_labels);
        }
        if ids.is_empty() {
            return Err(EnsembleError::Truth("no video".into()));
        }
        let classes =
            classes.unwrap_or_else(|| labels.iter().flatten().map(|&l| l as usize + 1).max().unwrap_or(0));
        Ok(GroundTruth { classes, ids, index, labels })
    }

    /// The ids and labels of the videos in YouTube-8M TFRecord shards (frame- or
    /// video-level, detected per file), in file order, as
    /// [`crate::data::read_labels`] reads them. Labels are checked against
    /// `classes` when given.
    pub fn read(files: &[PathBuf], classes: Option<usize>) -> Result<Self, EnsembleError> {
        if files.is_empty() {
            return Err(EnsembleError::Truth("no file".into()));
        }
        let (videos, _) = read_labels(files, false)?;
        Self::new(classes, videos)
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of videos.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false: a ground truth holds at least one video.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Video ids, in the order given.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Video `id`'s labels, sorted.
    pub fn labels(&self, id: &str) -> Option<&[u32]> {
        self.index.get(id).map(|&i| self.labels[i].as_slice())
    }

    /// Whether video `id` is in the set.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// `(id, labels)` of every video, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u32])> {
        self.ids.iter().map(String::as_str).zip(self.labels.iter().map(Vec::as_slice))
    }

    /// The same truth as a set of `classes >= self.classes()` classes.
    pub fn with_classes(mut self, classes: usize) -> Result<Self, EnsembleError> {
        if let Some(label) = self.labels.iter().flatten().find(|&&l| l as usize >= classes) {
            return Err(EnsembleError::Truth(format!("label {label} is out of range (classes: {classes})")));
        }
        self.classes = classes;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_truth_is_an_error() {
        let text = |r: Result<GroundTruth, EnsembleError>| r.unwrap_err().to_string();
        assert_eq!(text(GroundTruth::new(Some(3), [])), "ground truth: no video");
        assert_eq!(
            text(GroundTruth::new(Some(3), [("a".to_string(), vec![3])])),
            "ground truth: video `a`: label 3 is out of range (classes: 3)"
        );
        assert_eq!(
            text(GroundTruth::new(None, [("a".to_string(), vec![]), ("a".to_string(), vec![])])),
            "ground truth: video `a` appears twice"
        );
        assert_eq!(GroundTruth::new(None, [("a".to_string(), vec![7, 2])]).unwrap().classes(), 8);
    }
}
