//! Prior-balanced PAV (isotonic regression) calibration, as `lir`'s `IsotonicCalibrator`.
//!
//! Fitting: every same-source comparison gets weight `n_d / n` and every different-source one
//! `n_s / n` (so both hypotheses weigh the same in total), the labels (1 for same source) are
//! sorted by score, tied scores (closer than `1e-15`, scikit-learn's rule) are pooled into their
//! weighted mean, and the pool-adjacent-violators algorithm makes the result non-decreasing.
//! Only the ends of each constant stretch are kept. Because the weights balance the priors, the
//! fitted value `p` is a posterior probability at even prior odds, so `log10 LR = log10 p -
//! log10 (1 - p)`: `+inf` where only same-source comparisons were pooled (top) and `-inf` where
//! only different-source ones were (bottom).
//!
//! Transforming: a score is clipped to the fitted range and interpolated linearly between the
//! kept points (exactly `numpy.interp`'s arithmetic, so values at fitted scores are exact).

use serde::{Deserialize, Serialize};

use super::error::{LrError, Result, check_counts, check_len};

/// scikit-learn's tie rule: values closer than `numpy.finfo(float64).resolution` are one value.
const TIE_EPS: f64 = 1e-15;

/// A fitted PAV calibrator: the kept points of the isotonic fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PavCalibrator {
    /// Scores of the kept points, increasing.
    pub scores: Vec<f64>,
    /// Fitted posterior probability of same source at even prior odds, non-decreasing.
    pub probabilities: Vec<f64>,
}

impl PavCalibrator {
    /// Fits the calibrator on scores (`NaN` is rejected; infinities are allowed, as `lir` allows
    /// them) and labels (`true` = same source). Needs at least one comparison of each kind here;
    /// the public entry points ask for two.
    pub fn fit(scores: &[f64], labels: &[bool]) -> Result<Self> {
        check_len("labels", scores.len(), labels.len())?;
        if let Some(index) = scores.iter().position(|s| s.is_nan()) {
            return Err(LrError::NotFinite { what: "scores".into(), index, value: f64::NAN });
        }
        let n1 = labels.iter().filter(|&&l| l).count();
        if n1 == 0 || n1 == labels.len() {
            check_counts(labels, Some("PAV needs both kinds of comparison".into()))?;
        }
        let prior = n1 as f64 / labels.len() as f64;
        let (w1, w0) = (1.0 - prior, prior);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // numpy.lexsort((y, X)): by score, then by label.
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(labels[a].cmp(&labels[b])));
        // Pool ties (scikit-learn's _make_unique).
        let (mut xs, mut ys, mut ws) = (Vec::new(), Vec::new(), Vec::new());
        let (mut cx, mut cy, mut cw) = (scores[order[0]], 0.0f64, 0.0f64);
        for &i in &order {
            let (x, w) = (scores[i], if labels[i] { w1 } else { w0 });
            let y = if labels[i] { 1.0 } else { 0.0 };
            if x - cx >= TIE_EPS {
                xs.push(cx);
                ys.push(cy / cw);
                ws.push(cw);
                (cx, cy, cw) = (x, y * w, w);
            } else {
                cw += w;
                cy += y * w;
            }
        }
        xs.push(cx);
        ys.push(cy / cw);
        ws.push(cw);
        let fitted = pava(&ys, &ws);
        // Keep the first and last point and every point that differs from a neighbour.
        let n = fitted.len();
        let keep = |i: usize| i == 0 || i + 1 == n || fitted[i] != fitted[i - 1] || fitted[i] != fitted[i + 1];
        let (scores, probabilities) = (0..n).filter(|&i| keep(i)).map(|i| (xs[i], fitted[i])).unzip();
        Ok(Self { scores, probabilities })
    }

    /// The fitted probability at `score` (clipped to the fitted range, linear in between).
    pub fn probability(&self, score: f64) -> f64 {
        let (xp, fp) = (&self.scores, &self.probabilities);
        let n = xp.len();
        if n == 1 || score.is_nan() {
            return if score.is_nan() { f64::NAN } else { fp[0] };
        }
        let x = score.clamp(xp[0], xp[n - 1]);
        if x >= xp[n - 1] {
            return fp[n - 1];
        }
        // The last j with xp[j] <= x.
        let j = xp.partition_point(|&v| v <= x).saturating_sub(1);
        if xp[j] == x {
            return fp[j];
        }
        let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
        let mut y = slope * (x - xp[j]) + fp[j];
        if y.is_nan() {
            y = slope * (x - xp[j + 1]) + fp[j + 1];
            if y.is_nan() && fp[j] == fp[j + 1] {
                y = fp[j];
            }
        }
        y
    }

    /// The log10 LR at `score`: `log10 p - log10 (1 - p)`, infinite at `p` 0 or 1.
    pub fn llr(&self, score: f64) -> f64 {
        let p = self.probability(score);
        p.log10() - (1.0 - p).log10()
    }
}

/// Weighted pool-adjacent-violators: the non-decreasing fit of `y` with weights `w`.
fn pava(y: &[f64], w: &[f64]) -> Vec<f64> {
    // Blocks: (weighted sum of y, total weight, number of points).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(y.len());
    for (&yi, &wi) in y.iter().zip(w) {
        blocks.push((yi * wi, wi, 1));
        while blocks.len() >= 2 {
            let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            if a.0 / a.1 >= b.0 / b.1 {
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
            } else {
                break;
            }
        }
    }
    blocks.iter().flat_map(|&(sum_wy, sum_w, count)| std::iter::repeat_n(sum_wy / sum_w, count)).collect()
}

/// `lir.IsotonicCalibrator().fit(scores, labels).transform(scores)`: prior-balanced PAV log10
/// LRs of the fitting comparisons themselves.
pub fn pav_llrs(scores: &[f64], labels: &[bool]) -> Result<Vec<f64>> {
    let calibrator = PavCalibrator::fit(scores, labels)?;
    Ok(scores.iter().map(|&s| calibrator.llr(s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pava_pools_violators() {
        let y = [5.0, 3.0, 1.0, 2.0, 8.0, 10.0, 7.0, 9.0, 6.0, 4.0];
        let fit = pava(&y, &[1.0; 10]);
        // scikit-learn's doc example: 2.75 x 4, 7.33 x 6.
        assert!(fit[..4].iter().all(|&v| (v - 2.75).abs() < 1e-12));
        assert!(fit[4..].iter().all(|&v| (v - 44.0 / 6.0).abs() < 1e-12));
    }

    #[test]
    fn separated_scores_give_infinite_ends() {
        let scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9];
        let labels = [false, false, false, true, true, true];
        let llrs = pav_llrs(&scores, &labels).unwrap();
        assert!(llrs[..3].iter().all(|&l| l == f64::NEG_INFINITY));
        assert!(llrs[3..].iter().all(|&l| l == f64::INFINITY));
        // In between, linear in the probability: halfway is p = 0.5, LR 1.
        let cal = PavCalibrator::fit(&scores, &labels).unwrap();
        assert!((cal.llr(0.5)).abs() < 1e-12);
    }

    #[test]
    fn ties_are_pooled_and_balanced() {
        // One Hp and one Hd at the same score, with 1 Hp and 3 Hd elsewhere.
        let scores = [0.5, 0.5, 0.1, 0.2, 0.3, 0.9];
        let labels = [true, false, false, false, false, true];
        let cal = PavCalibrator::fit(&scores, &labels).unwrap();
        // Weights: Hp 4/6, Hd 2/6: the tie is p = (4/6) / (4/6 + 2/6) = 2/3, LR = 2 (even
        // priors: 1 Hp of 2 against 1 Hd of 4).
        assert!((cal.llr(0.5) - 2f64.log10()).abs() < 1e-12);
        assert!(PavCalibrator::fit(&[0.1, 0.2], &[true, true]).is_err());
        assert!(PavCalibrator::fit(&[f64::NAN, 0.2], &[true, false]).is_err());
    }
}
