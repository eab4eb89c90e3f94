//! A video's top-k predictions.

/// The `k` highest scores as `(class, score)`, best first; ties go to the lower class
/// index. NaN scores rank last.
///
/// ```
/// let top = loupe_core::metrics::top_k(&[0.1, 0.7, 0.7, 0.2], 3);
/// assert_eq!(top, vec![(1, 0.7), (2, 0.7), (3, 0.2)]);
/// ```
pub fn top_k(scores: &[f32], k: usize) -> Vec<(u32, f32)> {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let better = |a: &(u32, f32), b: &(u32, f32)| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0));
    let mut all: Vec<(u32, f32)> = scores.iter().enumerate().map(|(c, &s)| (c as u32, s)).collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    if k < all.len() {
        all.select_nth_unstable_by(k - 1, better);
        all.truncate(k);
    }
    all.sort_by(better);
    all
}
