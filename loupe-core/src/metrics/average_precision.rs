//! Average precision of a ranked list against a total positive count.

/// `sum_i precision@i * is_positive_i / positives` over a ranking (best first), where
/// `positives` counts **all** true labels, including those that never made the list.
/// Returns 0 when there are no positives.
///
/// ```
/// // ranks 1 and 3 are positive; a third positive was never predicted.
/// let ap = loupe_core::metrics::average_precision([true, false, true], 3);
/// assert!((ap - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
/// ```
pub fn average_precision(ranked: impl IntoIterator<Item = bool>, positives: u64) -> f64 {
    if positives == 0 {
        return 0.0;
    }
    let mut seen = 0u64;
    let mut sum = 0.0;
    for (i, positive) in ranked.into_iter().enumerate() {
        if positive {
            seen += 1;
            sum += seen as f64 / (i + 1) as f64;
        }
    }
    sum / positives as f64
}
