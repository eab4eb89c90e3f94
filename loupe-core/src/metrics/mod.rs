//! The YouTube-8M competition metrics: GAP@k, Hit@1, PERR and mAP; and MAP@N of the
//! 2019 segment task ([`segments`]).
//!
//! Definitions follow docs/reference.md section 7 (the official evaluation code's behaviour).
//! [`EvaluationMetrics`] accumulates them over a whole evaluation set video by video,
//! keeping only each video's top `k` (score, label) pairs: memory is `k` pairs per video,
//! whatever the number of classes.
//!
//! **Ties.** The official code orders tied scores arbitrarily. loupe breaks ties by class
//! index (lower first) when choosing a video's top `k`, and, in the pooled ranking, by
//! class index then by the order videos were added. Results agree with the official code
//! exactly whenever there are no tied scores.

mod average_precision;
pub mod segments;
mod top_k;

pub use average_precision::average_precision;
pub use top_k::top_k;

/// Metrics of a whole evaluation set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsSummary {
    /// Global average precision over the pooled top-`k` predictions of all videos.
    pub gap: f64,
    /// Fraction of videos whose top prediction is a true label.
    pub hit_at_1: f64,
    /// Precision at equal recall rate, averaged over videos.
    pub perr: f64,
    /// Mean over classes with positives of their average precision.
    pub map: f64,
    /// Number of videos evaluated.
    pub videos: usize,
}

/// One pooled prediction: a (score, class) pair of one video and whether it is true.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pair {
    pub score: f32,
    pub class: u32,
    pub positive: bool,
}

/// Accumulates the competition metrics over videos, in `O(k)` memory per video.
///
/// ```
/// use loupe_core::metrics::EvaluationMetrics;
/// let mut metrics = EvaluationMetrics::new(3, 20);
/// metrics.add_video(&[0.9, 0.1, 0.5], &[0]);
/// metrics.add_video(&[0.2, 0.7, 0.1], &[2]);
/// let summary = metrics.summary();
/// assert_eq!(summary.videos, 2);
/// assert_eq!(summary.hit_at_1, 0.5);
/// ```
#[derive(Debug, Clone)]
pub struct EvaluationMetrics {
    classes: usize,
    k: usize,
    pairs: Vec<Pair>,
    positives: u64,
    positives_per_class: Vec<u64>,
    hits: u64,
    perr_sum: f64,
    videos: usize,
}

impl EvaluationMetrics {
    /// Metrics over `classes` classes keeping each video's top `k` predictions (20 in the
    /// competition).
    pub fn new(classes: usize, k: usize) -> Self {
        EvaluationMetrics {
            classes,
            k,
            pairs: Vec::new(),
            positives: 0,
            positives_per_class: vec![0; classes],
            hits: 0,
            perr_sum: 0.0,
            videos: 0,
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Adds one video from its dense scores (one per class) and its true labels.
    ///
    /// Labels `>= classes` must have been rejected by the caller (the readers do).
    pub fn add_video(&mut self, scores: &[f32], labels: &[u32]) {
        debug_assert_eq!(scores.len(), self.classes);
        // PERR needs the top n = |labels| predictions, which may exceed k.
        let top = top_k(scores, self.k.max(labels.len()));
        self.add_ranked(&top, labels);
    }

    /// Adds one video from its sparse predictions (e.g. a submission row), any order.
    /// Classes not listed count as score 0.
    pub fn add_sparse_video(&mut self, predictions: &[(u32, f32)], labels: &[u32]) {
        let mut ranked = predictions.to_vec();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.dedup_by_key(|p| p.0);
        self.add_ranked(&ranked, labels);
    }

    /// Adds one video from its top `max(k, labels.len())` predictions as [`top_k`]
    /// returns them for its dense scores: the same as [`Self::add_video`] on those scores
    /// (how results computed elsewhere, e.g. on other ranks, are added).
    pub fn add_top_k(&mut self, top: &[(u32, f32)], labels: &[u32]) {
        self.add_ranked(top, labels);
    }

    /// `ranked`: predictions sorted by descending score, ties by class index.
    fn add_ranked(&mut self, ranked: &[(u32, f32)], labels: &[u32]) {
        let is_label = |c: u32| labels.contains(&c);
        self.videos += 1;
        self.positives += labels.len() as u64;
        for &l in labels {
            if let Some(count) = self.positives_per_class.get_mut(l as usize) {
                *count += 1;
            }
        }
        if let Some(&(class, _)) = ranked.first() {
            if is_label(class) {
                self.hits += 1;
            }
        }
        // PERR: precision among the top n = |labels| predictions with score > 0. With no
        // labels the official code takes all classes and finds no positive: 0.
        if !labels.is_empty() {
            let n = labels.len();
            let correct = ranked.iter().take(n).filter(|(c, s)| *s > 0.0 && is_label(*c)).count();
            self.perr_sum += correct as f64 / n as f64;
        }
        for &(class, score) in ranked.iter().take(self.k) {
            self.pairs.push(Pair { score, class, positive: is_label(class) });
        }
    }

    /// The metrics so far. Sorting is done here, so call it once at the end.
    pub fn summary(&self) -> MetricsSummary {
        let mut order: Vec<u32> = (0..self.pairs.len() as u32).collect();
        // Stable sort: equal (score, class) keep the order videos were added.
        order.sort_by(|&a, &b| {
            let (a, b) = (&self.pairs[a as usize], &self.pairs[b as usize]);
            b.score.total_cmp(&a.score).then(a.class.cmp(&b.class))
        });
        let ranked = order.iter().map(|&i| self.pairs[i as usize].positive);
        let gap = average_precision(ranked, self.positives);

        let mut per_class: Vec<Vec<bool>> = vec![Vec::new(); self.classes];
        for &i in &order {
            let p = &self.pairs[i as usize];
            if let Some(list) = per_class.get_mut(p.class as usize) {
                list.push(p.positive);
            }
        }
        let aps: Vec<f64> = per_class
            .iter()
            .zip(&self.positives_per_class)
            .filter(|(_, &positives)| positives > 0)
            .map(|(ranked, &positives)| average_precision(ranked.iter().copied(), positives))
            .collect();
        let map = if aps.is_empty() { 0.0 } else { aps.iter().sum::<f64>() / aps.len() as f64 };

        let videos = self.videos.max(1) as f64;
        MetricsSummary {
            gap,
            hit_at_1: self.hits as f64 / videos,
            perr: self.perr_sum / videos,
            map,
            videos: self.videos,
        }
    }
}
