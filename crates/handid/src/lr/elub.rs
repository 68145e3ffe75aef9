//! Empirical lower and upper bounds of log10 LRs (ELUB; Vergeer, van Es, de Jongh, Alberink and
//! Stoel, "Numerical likelihood ratios outputted by LR systems are often based on
//! extrapolation: when to stop extrapolating?", Science and Justice 56 (2016) 482-491), as
//! `lir.algorithms.bayeserror.elub`.
//!
//! For a threshold LR `t`, a decision maker who accepts Hp when `LR > t` has the expected
//! utility `EU(t) = P(reject | Hp) + t P(accept | Hd)`. `add_misleading` misleading comparisons
//! are added to each side (an Hp comparison that is never accepted and an Hd comparison that is
//! always accepted). The system is worth using at `t` when `EU_neutral(t) / EU_system(t) >= 1`,
//! with the neutral system giving LR 1 to everything. Thresholds `log10 t` run in steps of
//! `step` from `min(0, floor(lo / step))` to `max(0, floor(hi / step) + 1)` steps, where `lo`
//! and `hi` are the smallest and largest log10 LRs (clipped to `[-9, 9]`, and limited to
//! `-log10(n_s + 1)` and `log10(n_d + 1)`). The lower bound is one step above the highest
//! non-positive threshold where the ratio is below 1 (the first threshold if none), the upper
//! bound one step below the lowest non-negative such threshold (the last if none); the lower
//! bound is at most 0 and the upper at least 0.

use serde::{Deserialize, Serialize};

use super::error::{LrError, Result, check_counts, check_len};

/// ELUB bounds on log10 LRs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElubBounds {
    /// Lowest log10 LR the data supports (`<= 0`).
    pub lower: f64,
    /// Highest log10 LR the data supports (`>= 0`).
    pub upper: f64,
}

impl ElubBounds {
    /// `llr` clipped to the bounds (infinities included; NaN stays NaN).
    pub fn apply(&self, llr: f64) -> f64 {
        if llr.is_nan() { llr } else { llr.clamp(self.lower, self.upper) }
    }
}

/// Python's (and numpy's) floor division of floats.
fn floor_divide(a: f64, b: f64) -> f64 {
    let mut m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m += b;
            div -= 1.0;
        }
    } else {
        m = 0f64.copysign(b);
    }
    let _ = m;
    if div != 0.0 {
        let mut f = div.floor();
        if div - f > 0.5 {
            f += 1.0;
        }
        f
    } else {
        0f64.copysign(a / b)
    }
}

/// `numpy.linspace(start, stop, num)`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// The ELUB bounds of `llrs` (log10 LRs; infinities allowed) with `labels` (`true` = same
/// source). `lir`'s defaults are `add_misleading = 1`, `step = 0.01`.
pub fn elub(llrs: &[f64], labels: &[bool], add_misleading: usize, step: f64) -> Result<ElubBounds> {
    check_len("labels", llrs.len(), labels.len())?;
    if !(step > 0.0 && step.is_finite()) {
        return Err(LrError::InvalidOption(format!("ELUB step {step} must be positive")));
    }
    if let Some(index) = llrs.iter().position(|l| l.is_nan()) {
        return Err(LrError::NotFinite { what: "log10 LRs".into(), index, value: f64::NAN });
    }
    let (n1, n0) = check_counts(labels, Some("ELUB bounds".into()))?;
    let llrs: Vec<f64> = llrs.iter().map(|l| l.clamp(-9.0, 9.0)).collect();
    let lo = llrs.iter().copied().fold(f64::INFINITY, f64::min).max(-((n1 + 1) as f64).log10());
    let hi = llrs.iter().copied().fold(f64::NEG_INFINITY, f64::max).min(((n0 + 1) as f64).log10());
    let steps_min = floor_divide(lo, step).min(0.0) as i64;
    let steps_max = (floor_divide(hi, step) + 1.0).max(0.0) as i64;
    let thresholds = linspace(steps_min as f64 * step, steps_max as f64 * step, (steps_max - steps_min + 1) as usize);
    let lrs: Vec<f64> = llrs.iter().map(|&l| 10f64.powf(l)).collect();
    let m = add_misleading as f64;
    let (mut lower, mut upper) = (thresholds[0], thresholds[thresholds.len() - 1]);
    let mut any_left = false;
    let mut any_right = false;
    let mut best_left = f64::NEG_INFINITY;
    let mut best_right = f64::INFINITY;
    for &t in &thresholds {
        let tlr = 10f64.powf(t);
        let neutral_accept = if 1.0 > tlr { 1.0 } else { 0.0 };
        let eu_neutral = 1.0 - neutral_accept + tlr * neutral_accept;
        let (mut acc1, mut acc0) = (0usize, 0usize);
        for (&lr, &l) in lrs.iter().zip(labels) {
            if lr > tlr {
                if l {
                    acc1 += 1;
                } else {
                    acc0 += 1;
                }
            }
        }
        let eu_system = 1.0 - acc1 as f64 / (n1 as f64 + m) + tlr * ((acc0 as f64 + m) / (n0 as f64 + m));
        if eu_neutral / eu_system < 1.0 {
            if t <= 0.0 {
                any_left = true;
                best_left = best_left.max(t + step);
            }
            if t >= 0.0 {
                any_right = true;
                best_right = best_right.min(t - step);
            }
        }
    }
    if any_left {
        lower = lower.max(best_left);
    }
    if any_right {
        upper = upper.min(best_right);
    }
    Ok(ElubBounds { lower: lower.min(0.0), upper: upper.max(0.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_helpers() {
        assert_eq!(floor_divide(0.35, 0.01), 34.0); // Python: 0.35 // 0.01 == 34.0
        assert_eq!(floor_divide(-0.35, 0.01), -35.0);
        assert_eq!(floor_divide(1.0, 0.01), 99.0); // Python: 1.0 // 0.01 == 99.0
        assert_eq!(linspace(-1.0, 1.0, 3), vec![-1.0, 0.0, 1.0]);
    }

    #[test]
    fn bounds_are_limited_by_the_sample_size() {
        // A perfect system on 9 Hp and 9 Hd comparisons: bounds within +-log10(10) = 1.
        let llrs: Vec<f64> = (0..18).map(|i| if i < 9 { 5.0 } else { -5.0 }).collect();
        let labels: Vec<bool> = (0..18).map(|i| i < 9).collect();
        let b = elub(&llrs, &labels, 1, 0.01).unwrap();
        assert!(b.lower >= -1.0 - 1e-9 && b.lower < 0.0, "{b:?}");
        assert!(b.upper <= 1.0 + 1e-9 && b.upper > 0.0, "{b:?}");
        assert_eq!(b.apply(f64::INFINITY), b.upper);
        assert_eq!(b.apply(-7.0), b.lower);
        assert_eq!(b.apply(0.1), 0.1);
    }
}
