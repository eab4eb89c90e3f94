//! The weighted mean of members' probabilities, and its evaluation against the truth.

use std::collections::HashSet;

use crate::metrics::{EvaluationMetrics, MetricsSummary};

use super::{EnsembleError, GroundTruth, Keep, Predictions};

/// What a video that some member does not predict means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingVideos {
    /// An error: every member must predict the same videos and, when evaluated, exactly
    /// the ground truth's. A member made on another split is a mistake worth stopping
    /// for.
    #[default]
    Error,
    /// The member predicts nothing for it (every label scores 0; its weight still counts
    /// in the mean). Evaluation covers the ground truth's videos: a video no member
    /// predicts still counts its positives, and predicted videos outside the truth are
    /// ignored.
    Empty,
}

/// The weighted mean of the members' scores, per video and label: `sum_m w_m s_m / sum_m
/// w_m`, a label a member does not hold counting as 0 (docs/reference.md section 8). The
/// result holds every label any member kept, under the name `ensemble`; videos come in
/// the first member's order, then those only later members predict.
///
/// ```
/// use loupe_core::ensemble::{weighted_mean, Keep, MissingVideos, Predictions};
///
/// let a = Predictions::from_sparse("a", 3, [("v".to_string(), vec![(0, 0.75), (1, 0.25)])], Keep::All)?;
/// let b = Predictions::from_sparse("b", 3, [("v".to_string(), vec![(1, 0.5)])], Keep::All)?;
/// let mean = weighted_mean(&[a, b], &[1.0, 3.0], MissingVideos::Error)?;
/// // label 0: 0.75 / 4; label 1: (0.25 + 3 * 0.5) / 4; label 2: held by neither.
/// assert_eq!(mean.get("v"), Some(&[(0, 0.1875), (1, 0.4375)][..]));
/// # Ok::<(), loupe_core::ensemble::EnsembleError>(())
/// ```
pub fn weighted_mean(
    members: &[Predictions],
    weights: &[f64],
    missing: MissingVideos,
) -> Result<Predictions, EnsembleError> {
    let classes = check_members(members)?;
    let total = check_weights(members, weights)?;
    let ids = video_union(members, missing)?;
    let mut mixer = Mixer::new(classes);
    let videos = ids.into_iter().map(|id| {
        let lists = members.iter().zip(weights).map(|(m, &w)| (w, m.get(&id)));
        let mut pairs = Vec::new();
        mixer.mean(lists, total, &mut pairs);
        (id, pairs)
    });
    Predictions::from_sparse("ensemble", classes, videos.collect::<Vec<_>>(), Keep::All)
}

/// The competition metrics of `predictions` on `truth`, scoring each video's `top_k`
/// labels (20 in the competition). `missing` says whether videos predicted but not in
/// the truth, or in the truth but not predicted, are errors.
pub fn score_predictions(
    predictions: &Predictions,
    truth: &GroundTruth,
    top_k: usize,
    missing: MissingVideos,
) -> Result<MetricsSummary, EnsembleError> {
    let members = std::slice::from_ref(predictions);
    let classes = check_members(members)?;
    let aligned = align(members, truth, missing)?;
    Ok(evaluate_aligned(&aligned, &[1.0], truth, classes, top_k))
}

/// Checks the members are non-empty and agree on the class count; returns it.
pub(crate) fn check_members(members: &[Predictions]) -> Result<usize, EnsembleError> {
    let first = members.first().ok_or(EnsembleError::NoMembers)?;
    for member in members {
        if member.is_empty() {
            return Err(EnsembleError::EmptyMember { member: member.name().to_string() });
        }
        if member.classes() != first.classes() {
            return Err(EnsembleError::ClassMismatch {
                member: member.name().to_string(),
                classes: member.classes(),
                other: format!("`{}`", first.name()),
                expected: first.classes(),
            });
        }
    }
    Ok(first.classes())
}

/// Checks one finite non-negative weight per member, not all zero; returns their sum.
pub(crate) fn check_weights(members: &[Predictions], weights: &[f64]) -> Result<f64, EnsembleError> {
    if weights.len() != members.len() {
        return Err(EnsembleError::WeightCount { weights: weights.len(), members: members.len() });
    }
    for (member, &weight) in members.iter().zip(weights) {
        if !weight.is_finite() || weight < 0.0 {
            return Err(EnsembleError::BadWeight { member: member.name().to_string(), weight });
        }
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(EnsembleError::BadWeight { member: members[0].name().to_string(), weight: weights[0] });
    }
    Ok(total)
}

/// The videos of all members, in the first member's order, then new ones in member
/// order; with [`MissingVideos::Error`], an error unless all members predict the same.
fn video_union(members: &[Predictions], missing: MissingVideos) -> Result<Vec<String>, EnsembleError> {
    let first = &members[0];
    if missing == MissingVideos::Error {
        for member in &members[1..] {
            for (a, b) in [(first, member), (member, first)] {
                let absent: Vec<&String> = a.ids().iter().filter(|id| !b.contains(id)).collect();
                if let Some(id) = absent.first() {
                    return Err(EnsembleError::MissingVideo {
                        member: b.name().to_string(),
                        present: a.name().to_string(),
                        id: id.to_string(),
                        count: absent.len(),
                    });
                }
            }
        }
        return Ok(first.ids().to_vec());
    }
    let mut seen = HashSet::new();
    Ok(members.iter().flat_map(|m| m.ids()).filter(|id| seen.insert(id.as_str())).cloned().collect())
}

/// Per member, per ground-truth video (truth order): the member's pairs for the video,
/// `None` when it does not predict it.
pub(crate) type Aligned<'a> = Vec<Vec<Option<&'a [(u32, f32)]>>>;

/// The members aligned on the truth's videos. Checks the coverage `missing` asks for and
/// the class counts.
pub(crate) fn align<'a>(
    members: &'a [Predictions],
    truth: &GroundTruth,
    missing: MissingVideos,
) -> Result<Aligned<'a>, EnsembleError> {
    let mut aligned = Vec::with_capacity(members.len());
    for member in members {
        if truth.classes() > member.classes() {
            return Err(EnsembleError::ClassMismatch {
                member: member.name().to_string(),
                classes: member.classes(),
                other: "the ground truth".into(),
                expected: truth.classes(),
            });
        }
        let lists: Vec<Option<&[(u32, f32)]>> = truth.ids().iter().map(|id| member.get(id)).collect();
        if missing == MissingVideos::Error {
            let unpredicted: Vec<&String> = truth.ids().iter().filter(|id| !member.contains(id)).collect();
            if let Some(id) = unpredicted.first() {
                return Err(EnsembleError::NotPredicted {
                    member: member.name().to_string(),
                    id: id.to_string(),
                    count: unpredicted.len(),
                });
            }
            let unknown: Vec<&String> = member.ids().iter().filter(|id| !truth.contains(id)).collect();
            if let Some(id) = unknown.first() {
                return Err(EnsembleError::UnknownVideo {
                    member: member.name().to_string(),
                    id: id.to_string(),
                    count: unknown.len(),
                });
            }
        }
        aligned.push(lists);
    }
    Ok(aligned)
}

/// The metrics of the `weights`-mean of aligned members (weights checked by the caller).
pub(crate) fn evaluate_aligned(
    aligned: &Aligned<'_>,
    weights: &[f64],
    truth: &GroundTruth,
    classes: usize,
    top_k: usize,
) -> MetricsSummary {
    let total: f64 = weights.iter().sum();
    let mut metrics = EvaluationMetrics::new(classes, top_k);
    let mut mixer = Mixer::new(classes);
    let mut pairs = Vec::new();
    for (v, (_, labels)) in truth.iter().enumerate() {
        let lists = aligned.iter().zip(weights).map(|(member, &w)| (w, member[v]));
        mixer.mean(lists, total, &mut pairs);
        metrics.add_sparse_video(&pairs, labels);
    }
    metrics.summary()
}

/// Sums weighted sparse scores of one video in a dense scratch buffer.
struct Mixer {
    sums: Vec<f64>,
    touched: Vec<bool>,
    labels: Vec<u32>,
}

impl Mixer {
    fn new(classes: usize) -> Self {
        Mixer { sums: vec![0.0; classes], touched: vec![false; classes], labels: Vec::new() }
    }

    /// `out` = `sum w * score / total` over `lists` with `w > 0`, sorted by label. Sums
    /// in f64 in member order, so the same weights give the same bits wherever called.
    fn mean<'a>(
        &mut self,
        lists: impl Iterator<Item = (f64, Option<&'a [(u32, f32)]>)>,
        total: f64,
        out: &mut Vec<(u32, f32)>,
    ) {
        for (weight, list) in lists {
            if weight <= 0.0 {
                continue;
            }
            for &(label, score) in list.unwrap_or_default() {
                let l = label as usize;
                if !self.touched[l] {
                    self.touched[l] = true;
                    self.labels.push(label);
                }
                self.sums[l] += weight * score as f64;
            }
        }
        self.labels.sort_unstable();
        out.clear();
        for &label in &self.labels {
            let l = label as usize;
            out.push((label, (self.sums[l] / total) as f32));
            self.sums[l] = 0.0;
            self.touched[l] = false;
        }
        self.labels.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, videos: &[(&str, &[(u32, f32)])]) -> Predictions {
        Predictions::from_sparse(
            name,
            4,
            videos.iter().map(|(id, p)| (id.to_string(), p.to_vec())),
            Keep::All,
        )
        .unwrap()
    }

    #[test]
    fn missing_labels_count_as_zero() {
        let a = member("a", &[("v", &[(0, 0.8), (1, 0.4)])]);
        let b = member("b", &[("v", &[(1, 0.2), (3, 0.6)])]);
        let mean = weighted_mean(&[a, b], &[1.0, 1.0], MissingVideos::Error).unwrap();
        assert_eq!(mean.get("v"), Some(&[(0, 0.4), (1, 0.3), (3, 0.3)][..]));
        assert_eq!(mean.name(), "ensemble");
    }

    #[test]
    fn zero_weight_members_do_not_count() {
        let a = member("a", &[("v", &[(0, 0.8)])]);
        let b = member("b", &[("v", &[(1, 0.2)])]);
        let mean = weighted_mean(&[a, b], &[0.0, 2.0], MissingVideos::Error).unwrap();
        assert_eq!(mean.get("v"), Some(&[(1, 0.2)][..]));
    }

    #[test]
    fn missing_videos_are_an_error_or_predict_nothing() {
        let a = member("a", &[("v", &[(0, 0.8)]), ("w", &[(1, 0.6)])]);
        let b = member("b", &[("v", &[(0, 0.4)])]);
        let members = [a, b];
        let error = weighted_mean(&members, &[1.0, 1.0], MissingVideos::Error).unwrap_err();
        assert!(
            matches!(&error, EnsembleError::MissingVideo { member, id, count: 1, .. } if member == "b" && id == "w")
        );
        let mean = weighted_mean(&members, &[1.0, 1.0], MissingVideos::Empty).unwrap();
        assert_eq!(mean.ids(), ["v", "w"]);
        assert_eq!(mean.get("w"), Some(&[(1, 0.3)][..]));
    }

    #[test]
    fn bad_members_and_weights_are_errors() {
        let a = member("a", &[("v", &[(0, 0.8)])]);
        let wide = Predictions::from_sparse("wide", 5, [("v".to_string(), vec![])], Keep::All).unwrap();
        let empty = Predictions::from_sparse("empty", 4, [], Keep::All).unwrap();
        let text = |members: &[Predictions], weights: &[f64]| {
            weighted_mean(members, weights, MissingVideos::Error).unwrap_err().to_string()
        };
        assert_eq!(text(&[], &[]), "no ensemble member given");
        assert_eq!(text(&[a.clone(), empty], &[1.0, 1.0]), "member `empty` holds no video");
        assert_eq!(text(&[a.clone(), wide], &[1.0, 1.0]), "member `wide` predicts 5 classes but `a` has 4");
        let a = std::slice::from_ref(&a);
        assert_eq!(text(a, &[1.0, 1.0]), "2 weights given for 1 members");
        assert!(text(a, &[-1.0]).starts_with("weight -1 of member `a`"));
        assert!(text(a, &[0.0]).starts_with("weight 0 of member `a`"));
    }

    #[test]
    fn evaluation_checks_coverage_of_the_truth() {
        let truth =
            GroundTruth::new(Some(4), [("v".to_string(), vec![0]), ("w".to_string(), vec![1])]).unwrap();
        let partial = member("p", &[("v", &[(0, 0.9)])]);
        let error = score_predictions(&partial, &truth, 20, MissingVideos::Error).unwrap_err();
        assert_eq!(
            error.to_string(),
            "video `w` of the ground truth is not predicted by `p` (1 such videos); allow missing videos to count them as predicting nothing"
        );
        // Predicting nothing for `w` leaves its positive unfound: GAP 1/2.
        let m = score_predictions(&partial, &truth, 20, MissingVideos::Empty).unwrap();
        assert_eq!((m.gap, m.hit_at_1, m.videos), (0.5, 0.5, 2));

        let extra = member("x", &[("v", &[(0, 0.9)]), ("w", &[(1, 0.9)]), ("z", &[])]);
        let error = score_predictions(&extra, &truth, 20, MissingVideos::Error).unwrap_err();
        assert!(matches!(error, EnsembleError::UnknownVideo { id, count: 1, .. } if id == "z"));
        assert_eq!(score_predictions(&extra, &truth, 20, MissingVideos::Empty).unwrap().gap, 1.0);

        let wide_truth = GroundTruth::new(Some(9), [("v".to_string(), vec![])]).unwrap();
        let error = score_predictions(&partial, &wide_truth, 20, MissingVideos::Empty).unwrap_err();
        assert_eq!(error.to_string(), "member `p` predicts 4 classes but the ground truth has 9");
    }

    #[test]
    fn evaluation_matches_the_metrics_on_the_same_scores() {
        let truth =
            GroundTruth::new(Some(4), [("v".to_string(), vec![0, 3]), ("w".to_string(), vec![2])]).unwrap();
        let p = member("p", &[("v", &[(0, 0.9), (1, 0.5), (3, 0.1)]), ("w", &[(1, 0.7), (2, 0.6)])]);
        let mut expected = EvaluationMetrics::new(4, 20);
        expected.add_video(&[0.9, 0.5, 0.0, 0.1], &[0, 3]);
        expected.add_video(&[0.0, 0.7, 0.6, 0.0], &[2]);
        assert_eq!(score_predictions(&p, &truth, 20, MissingVideos::Error).unwrap(), expected.summary());
    }
}
