//! The reference's staircase learning-rate decay.

/// `lr = base * decay ^ floor(examples_seen / decay_examples)` (docs/reference.md section 5;
/// the paper: 2e-4, 0.8 every 4,000,000 examples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearningRateSchedule {
    /// Learning rate at the start.
    pub base: f64,
    /// Factor applied at each staircase step.
    pub decay: f64,
    /// Examples (videos) between two steps.
    pub decay_examples: u64,
}

impl Default for LearningRateSchedule {
    fn default() -> Self {
        LearningRateSchedule { base: 2e-4, decay: 0.8, decay_examples: 4_000_000 }
    }
}

impl LearningRateSchedule {
    /// The learning rate after `examples_seen` training examples.
    ///
    /// ```
    /// let s = loupe_core::train::LearningRateSchedule::default();
    /// assert_eq!(s.learning_rate(3_999_999), 2e-4);
    /// assert!((s.learning_rate(8_000_000) - 2e-4 * 0.64).abs() < 1e-18);
    /// ```
    pub fn learning_rate(&self, examples_seen: u64) -> f64 {
        let steps = examples_seen / self.decay_examples.max(1);
        self.base * self.decay.powi(steps.min(i32::MAX as u64) as i32)
    }
}
