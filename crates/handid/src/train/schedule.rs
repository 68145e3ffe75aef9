//! The per-epoch learning-rate schedule (docs/METHOD.md section 3): linear warm-up, then steps.

use serde::{Deserialize, Serialize};

/// Warm-up from `warmup_factor x base` to `base` over `warmup_epochs`, then `base x gamma^k`
/// with `k` the number of milestones `<= epoch` (epochs 0-based).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Rate of the image encoder after warm-up.
    pub base_lr: f64,
    /// Epochs of linear warm-up.
    pub warmup_epochs: usize,
    /// Fraction of the base rate at epoch 0.
    pub warmup_factor: f64,
    /// Epochs at which the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// Step factor (0.5 in the authors' code).
    pub gamma: f64,
}

impl Default for LrSchedule {
    /// The paper's schedule: base 5e-6, 10 warm-up epochs from 0.01 x base, x0.5 at 40 and 60.
    fn default() -> Self {
        Self { base_lr: 5e-6, warmup_epochs: 10, warmup_factor: 0.01, milestones: vec![40, 60], gamma: 0.5 }
    }
}

impl LrSchedule {
    /// The base (image-encoder) rate at `epoch`.
    pub fn lr(&self, epoch: usize) -> f64 {
        if epoch < self.warmup_epochs {
            let progress = epoch as f64 / self.warmup_epochs as f64;
            return self.base_lr * (self.warmup_factor + (1.0 - self.warmup_factor) * progress);
        }
        let steps = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.base_lr * self.gamma.powi(steps as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of docs/METHOD.md section 3 (image-encoder rate for base 5e-6).
    #[test]
    fn matches_the_reference_table() {
        let schedule = LrSchedule::default();
        let table: &[(std::ops::RangeInclusive<usize>, f64)] = &[
            (0..=0, 5.0e-8),
            (1..=1, 5.45e-7),
            (2..=2, 1.04e-6),
            (9..=9, 4.505e-6),
            (10..=39, 5e-6),
            (40..=59, 2.5e-6),
            (60..=69, 1.25e-6),
        ];
        for (epochs, expected) in table {
            for epoch in epochs.clone() {
                let lr = schedule.lr(epoch);
                assert!((lr - expected).abs() <= 1e-12 * expected.max(1.0), "epoch {epoch}: {lr} != {expected}");
            }
        }
    }
}
