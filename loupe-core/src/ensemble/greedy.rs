//! Choosing members and weights on a validation set: greedy forward selection (the
//! paper's, section 8 of docs/reference.md) and a coordinate search over weights.

use crate::metrics::MetricsSummary;

use super::combine::{align, check_members, check_weights, evaluate_aligned};
use super::{EnsembleError, GroundTruth, MissingVideos, Predictions};

/// Settings of [`greedy_selection`] and [`search_weights`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectionOptions {
    /// Most members in the ensemble, counted with repetition (the sum of the greedy
    /// weights).
    pub max_members: usize,
    /// Labels per video scored (20 in the competition).
    pub top_k: usize,
    /// Whether videos missing from a member or the truth are errors.
    pub missing: MissingVideos,
}

impl Default for SelectionOptions {
    /// At most 10 members, GAP@20, missing videos are errors.
    fn default() -> Self {
        SelectionOptions { max_members: 10, top_k: 20, missing: MissingVideos::Error }
    }
}

/// One accepted change: a member's weight set, and the validation GAP it gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectionStep {
    /// Index of the member in the slice given.
    pub member: usize,
    /// Its weight after the step.
    pub weight: f64,
    /// Validation GAP of the ensemble after the step.
    pub gap: f64,
}

/// The outcome of a selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// One weight per member, 0 for a member left out (greedy: how often it was added).
    pub weights: Vec<f64>,
    /// Validation metrics of the selected ensemble.
    pub metrics: MetricsSummary,
    /// Validation metrics of each member alone, in member order.
    pub member_metrics: Vec<MetricsSummary>,
    /// The changes accepted, in order (greedy: the first is the best single member).
    pub steps: Vec<SelectionStep>,
}

/// Greedy forward selection with replacement: start from the member with the best
/// validation GAP, then repeatedly add the member (possibly one already in) whose
/// addition most improves the ensemble's GAP, until none improves it or the ensemble
/// holds `max_members`. Adding a member twice doubles its weight, so the weights are
/// integers. Ties go to the lower member index.
///
/// The selection is fitted to `truth`: its GAP on `truth` is optimistic, and at least
/// the best member's by construction. Apply the weights to other predictions (the
/// test set) with [`weighted_mean`](super::weighted_mean).
///
/// ```
/// use loupe_core::ensemble::{greedy_selection, GroundTruth, Keep, Predictions, SelectionOptions};
///
/// let truth = GroundTruth::new(Some(2), [("u".to_string(), vec![0]), ("v".to_string(), vec![1])])?;
/// // `a` ranks a wrong label above u's, `b` one above v's; their mean ranks both right.
/// let a = Predictions::from_sparse("a", 2, [("u".to_string(), vec![(0, 0.3), (1, 0.5)]), ("v".to_string(), vec![(1, 0.9)])], Keep::All)?;
/// let b = Predictions::from_sparse("b", 2, [("u".to_string(), vec![(0, 0.9)]), ("v".to_string(), vec![(1, 0.3), (0, 0.5)])], Keep::All)?;
/// let selection = greedy_selection(&[a, b], &truth, &SelectionOptions::default())?;
/// assert_eq!(selection.weights, vec![1.0, 1.0]);
/// assert!(selection.metrics.gap > selection.member_metrics[0].gap.max(selection.member_metrics[1].gap));
/// # Ok::<(), loupe_core::ensemble::EnsembleError>(())
/// ```
pub fn greedy_selection(
    members: &[Predictions],
    truth: &GroundTruth,
    options: &SelectionOptions,
) -> Result<Selection, EnsembleError> {
    let classes = check_members(members)?;
    let aligned = align(members, truth, options.missing)?;
    let gap_of = |weights: &[f64]| evaluate_aligned(&aligned, weights, truth, classes, options.top_k);
    let member_metrics: Vec<MetricsSummary> =
        (0..members.len()).map(|i| gap_of(&one_hot(members.len(), i))).collect();

    let best = argmax(member_metrics.iter().map(|m| m.gap)).unwrap_or(0);
    let mut weights = one_hot(members.len(), best);
    let mut metrics = member_metrics[best];
    let mut steps = vec![SelectionStep { member: best, weight: 1.0, gap: metrics.gap }];
    while (steps.len()) < options.max_members {
        let candidates: Vec<MetricsSummary> = (0..members.len())
            .map(|i| {
                let mut w = weights.clone();
                w[i] += 1.0;
                gap_of(&w)
            })
            .collect();
        let Some(i) = argmax(candidates.iter().map(|m| m.gap)) else { break };
        if candidates[i].gap <= metrics.gap {
            break;
        }
        weights[i] += 1.0;
        metrics = candidates[i];
        steps.push(SelectionStep { member: i, weight: weights[i], gap: metrics.gap });
    }
    Ok(Selection { weights, metrics, member_metrics, steps })
}

/// Coordinate search over the weights from `start` (e.g. the greedy weights): for each
/// member in turn, try scaling its weight by 0, 1/2, 3/4, 3/2 and 2 (a left-out member:
/// setting it to 1/4, 1/2 or 1 of the mean weight), keep the best change if it improves
/// the validation GAP; repeat while a pass over the members improves it, at most 5
/// passes. Finer weights fit the validation set more closely than greedy's integers, so
/// check them on held-out data before trusting the gain.
pub fn search_weights(
    members: &[Predictions],
    truth: &GroundTruth,
    start: &[f64],
    options: &SelectionOptions,
) -> Result<Selection, EnsembleError> {
    const PASSES: usize = 5;
    let classes = check_members(members)?;
    check_weights(members, start)?;
    let aligned = align(members, truth, options.missing)?;
    let gap_of = |weights: &[f64]| evaluate_aligned(&aligned, weights, truth, classes, options.top_k);
    let member_metrics: Vec<MetricsSummary> =
        (0..members.len()).map(|i| gap_of(&one_hot(members.len(), i))).collect();

    let mut weights = start.to_vec();
    let mut metrics = gap_of(&weights);
    let mut steps = Vec::new();
    for _ in 0..PASSES {
        let mut improved = false;
        for i in 0..members.len() {
            let used: Vec<f64> = weights.iter().copied().filter(|&w| w > 0.0).collect();
            let mean = used.iter().sum::<f64>() / used.len().max(1) as f64;
            let tries: Vec<f64> = if weights[i] > 0.0 {
                [0.0, 0.5, 0.75, 1.5, 2.0].iter().map(|f| f * weights[i]).collect()
            } else {
                [0.25, 0.5, 1.0].iter().map(|f| f * mean).collect()
            };
            let mut best: Option<(f64, MetricsSummary)> = None;
            for w in tries {
                let mut trial = weights.clone();
                trial[i] = w;
                if trial.iter().all(|&t| t <= 0.0) {
                    continue;
                }
                let m = gap_of(&trial);
                if m.gap > best.map_or(metrics.gap, |b| b.1.gap) {
                    best = Some((w, m));
                }
            }
            if let Some((w, m)) = best {
                weights[i] = w;
                metrics = m;
                steps.push(SelectionStep { member: i, weight: w, gap: m.gap });
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
    Ok(Selection { weights, metrics, member_metrics, steps })
}

fn one_hot(n: usize, i: usize) -> Vec<f64> {
    let mut w = vec![0.0; n];
    w[i] = 1.0;
    w
}

/// Index of the largest value, the first among equals.
fn argmax(values: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::{score_predictions, weighted_mean, Keep};

    /// Six videos, one label each (video i has label i % 3), and four members:
    /// - `good` ranks the truth first in videos 0-3 and confidently misses 4-5;
    /// - `complement` ranks the truth first in 4-5 only, and misses 0-3 unconfidently;
    /// - `noise` is never right;
    /// - `copy` is `good` again, as good alone and adding nothing.
    fn example() -> (Vec<Predictions>, GroundTruth) {
        let ids: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
        let truth = GroundTruth::new(
            Some(3),
            ids.iter().enumerate().map(|(i, id)| (id.clone(), vec![(i % 3) as u32])),
        )
        .unwrap();
        // `right(i)`: whether the member ranks video i's label first; `miss`: the score
        // of the wrong label it ranks first otherwise.
        let member = |name: &str, right: &dyn Fn(usize) -> bool, miss: f32| {
            let videos = ids.iter().enumerate().map(|(i, id)| {
                let label = (i % 3) as u32;
                let wrong = (label + 1) % 3;
                let pairs = if right(i) {
                    vec![(label, 0.9), (wrong, 0.1)]
                } else {
                    vec![(label, 0.05), (wrong, miss)]
                };
                (id.clone(), pairs)
            });
            Predictions::from_sparse(name, 3, videos, Keep::All).unwrap()
        };
        let members = vec![
            member("noise", &|_| false, 0.5),
            member("complement", &|i| i >= 4, 0.15),
            member("good", &|i| i < 4, 0.5),
            member("copy", &|i| i < 4, 0.5),
        ];
        (members, truth)
    }

    #[test]
    fn greedy_starts_from_the_best_and_adds_the_complement() {
        let (members, truth) = example();
        let selection = greedy_selection(&members, &truth, &SelectionOptions::default()).unwrap();
        assert_eq!(
            selection.steps[0].member, 2,
            "the best single member, first of the equal `good` and `copy`"
        );
        assert_eq!(selection.steps[1].member, 1, "the complement is added");
        // Their mean ranks every true label above every wrong one: nothing to add after.
        assert_eq!(selection.weights, vec![0.0, 1.0, 1.0, 0.0]);
        assert_eq!(selection.metrics.gap, 1.0);
        let best_single = selection.member_metrics.iter().map(|m| m.gap).fold(0.0, f64::max);
        assert!(best_single < 0.9, "{best_single}");
        // The reported metrics are those of the weighted mean.
        let mean = weighted_mean(&members, &selection.weights, MissingVideos::Error).unwrap();
        assert_eq!(score_predictions(&mean, &truth, 20, MissingVideos::Error).unwrap(), selection.metrics);
        for pair in selection.steps.windows(2) {
            assert!(pair[1].gap > pair[0].gap);
        }
    }

    #[test]
    fn greedy_stops_at_max_members() {
        let (members, truth) = example();
        let options = SelectionOptions { max_members: 1, ..SelectionOptions::default() };
        let selection = greedy_selection(&members, &truth, &options).unwrap();
        assert_eq!(selection.weights, vec![0.0, 0.0, 1.0, 0.0]);
        assert_eq!(selection.metrics, selection.member_metrics[2]);
    }

    #[test]
    fn weight_search_never_loses_gap() {
        let (members, truth) = example();
        let options = SelectionOptions::default();
        let equal = search_weights(&members, &truth, &[1.0; 4], &options).unwrap();
        let start = weighted_mean(&members, &[1.0; 4], MissingVideos::Error).unwrap();
        let start = score_predictions(&start, &truth, 20, MissingVideos::Error).unwrap();
        assert!(equal.metrics.gap >= start.gap);
        let mean = weighted_mean(&members, &equal.weights, MissingVideos::Error).unwrap();
        assert_eq!(score_predictions(&mean, &truth, 20, MissingVideos::Error).unwrap(), equal.metrics);
        assert!(search_weights(&members, &truth, &[1.0; 3], &options).is_err());
    }
}
