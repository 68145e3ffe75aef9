//! Prior-balanced, unregularised logistic regression of the label on the score.
//!
//! With `n_s` same-source and `n_d` different-source comparisons (`n` in all), each comparison
//! is weighted `0.5 n / n_class` (both hypotheses weigh the same), and the weighted
//! log-likelihood of `P(same | s) = 1 / (1 + exp(-(a s + b)))` is maximised. At even prior odds
//! the posterior log-odds is the log LR: `ln LR(s) = a s + b`, `log10 LR = (a s + b) / ln 10`.
//! This is scikit-learn's `LogisticRegression(C=inf)` with those sample weights, solved here
//! by Newton's method (IRLS) in `f64` with a backtracking line search on standardised scores.
//!
//! When the two kinds of score do not overlap (`max different <= min same`, or the reverse) the
//! likelihood keeps growing as the slope grows: there is no finite optimum, and
//! [`LogisticCalibrator::fit`] fails with [`LrError::Separated`].

use serde::{Deserialize, Serialize};

use super::error::{LrError, Result, check_counts, check_finite, check_len};

/// `ln(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// `1 / (1 + exp(-z))` without overflow.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 { 1.0 / (1.0 + (-z).exp()) } else { z.exp() / (1.0 + z.exp()) }
}

/// A fitted logistic-regression calibrator: `ln LR = slope_ln * score + intercept_ln`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticCalibrator {
    /// Slope of the natural-log LR in the score.
    pub slope_ln: f64,
    /// Intercept of the natural-log LR.
    pub intercept_ln: f64,
}

impl LogisticCalibrator {
    /// Fits the calibrator. Fails on fewer than two comparisons of either kind, non-finite
    /// scores, perfectly separated scores ([`LrError::Separated`]) or no convergence.
    pub fn fit(scores: &[f64], labels: &[bool]) -> Result<Self> {
        check_len("labels", scores.len(), labels.len())?;
        check_finite("scores", scores)?;
        let (n1, n0) = check_counts(labels, None)?;
        let fold = |same: bool, init: f64, f: fn(f64, f64) -> f64| {
            scores.iter().zip(labels).filter(|(_, l)| **l == same).fold(init, |m, (s, _)| f(m, *s))
        };
        let (min_same, max_same) = (fold(true, f64::INFINITY, f64::min), fold(true, f64::NEG_INFINITY, f64::max));
        let (min_diff, max_diff) = (fold(false, f64::INFINITY, f64::min), fold(false, f64::NEG_INFINITY, f64::max));
        if max_diff <= min_same || max_same <= min_diff {
            return Err(LrError::Separated { max_different: max_diff, min_same });
        }
        let n = scores.len() as f64;
        let (w1, w0) = (0.5 * n / n1 as f64, 0.5 * n / n0 as f64);
        let mean = scores.iter().sum::<f64>() / n;
        let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
        let x: Vec<f64> = scores.iter().map(|s| (s - mean) / sd).collect();
        let weight = |l: bool| if l { w1 } else { w0 };
        // Mean weighted negative log-likelihood at (a, b) on the standardised scores.
        let loss = |a: f64, b: f64| {
            x.iter()
                .zip(labels)
                .map(|(&xi, &l)| {
                    let z = a * xi + b;
                    weight(l) * if l { softplus(-z) } else { softplus(z) }
                })
                .sum::<f64>()
                / n
        };
        let (mut a, mut b) = (0.0f64, 0.0f64);
        let mut current = loss(a, b);
        let (mut gradient_norm, mut converged) = (f64::INFINITY, false);
        const MAX_STEPS: usize = 200;
        for _ in 0..MAX_STEPS {
            let (mut g, mut h) = ([0.0f64; 2], [0.0f64; 3]);
            for (&xi, &l) in x.iter().zip(labels) {
                let p = sigmoid(a * xi + b);
                let w = weight(l) / n;
                let r = w * (p - if l { 1.0 } else { 0.0 });
                let v = w * p * (1.0 - p);
                g[0] += r * xi;
                g[1] += r;
                h[0] += v * xi * xi;
                h[1] += v * xi;
                h[2] += v;
            }
            gradient_norm = g[0].hypot(g[1]);
            let det = h[0] * h[2] - h[1] * h[1];
            if gradient_norm < 1e-14 {
                converged = true;
                break;
            }
            if det.is_nan() || det <= 0.0 {
                break;
            }
            let da = (h[2] * g[0] - h[1] * g[1]) / det;
            let db = (h[0] * g[1] - h[1] * g[0]) / det;
            let size = da.abs().max(db.abs()) / (1.0 + a.abs().max(b.abs()));
            if size < 1e-12 {
                // Quadratic convergence: the remaining error is far below the step.
                (a, b) = (a - da, b - db);
                converged = true;
                break;
            }
            // Backtracking on the loss; differences within rounding count as no increase.
            let slack = 1e-14 * current.abs().max(1e-300);
            let mut t = 1.0;
            let mut accepted = false;
            while t > 1e-10 {
                let trial = loss(a - t * da, b - t * db);
                if trial <= current + slack {
                    (a, b, current) = (a - t * da, b - t * db, trial);
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                // No descent left at the precision of the loss: converged if the step is tiny.
                converged = size < 1e-7;
                break;
            }
        }
        if !converged || !a.is_finite() || !b.is_finite() {
            return Err(LrError::NotConverged { iterations: MAX_STEPS, gradient: gradient_norm });
        }
        // Back to raw scores: a x + b = (a / sd) s + (b - a mean / sd).
        Ok(Self { slope_ln: a / sd, intercept_ln: b - a * mean / sd })
    }

    /// The log10 LR at `score`.
    pub fn llr(&self, score: f64) -> f64 {
        (self.slope_ln * score + self.intercept_ln) / std::f64::consts::LN_10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimum_has_zero_gradient_and_balances_priors() {
        let scores = [0.1, 0.35, 0.4, 0.5, 0.2, 0.6, 0.55, 0.8, 0.9, 0.45];
        let labels = [false, false, true, false, false, true, false, true, true, true];
        let fit = LogisticCalibrator::fit(&scores, &labels).unwrap();
        assert!(fit.slope_ln > 0.0);
        // Weighted score equations: sum w (p - y) = 0 and sum w (p - y) s = 0.
        let (n, n1) = (10.0, 5.0);
        let (mut g0, mut g1) = (0.0, 0.0);
        for (&s, &l) in scores.iter().zip(&labels) {
            let w = if l { 0.5 * n / n1 } else { 0.5 * n / (n - n1) };
            let r = w * (sigmoid(fit.slope_ln * s + fit.intercept_ln) - if l { 1.0 } else { 0.0 });
            g0 += r;
            g1 += r * s;
        }
        assert!(g0.abs() < 1e-10 && g1.abs() < 1e-10, "{g0} {g1}");
    }

    #[test]
    fn separation_is_an_error() {
        let err = LogisticCalibrator::fit(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]).unwrap_err();
        assert!(matches!(err, LrError::Separated { .. }), "{err}");
        // Touching at one score is still no finite optimum.
        assert!(LogisticCalibrator::fit(&[0.1, 0.5, 0.5, 0.9], &[false, false, true, true]).is_err());
        assert!(matches!(
            LogisticCalibrator::fit(&[0.1, 0.5, 0.9], &[false, true, true]),
            Err(LrError::TooFewPairs { .. })
        ));
        assert!(matches!(
            LogisticCalibrator::fit(&[0.1, f64::NAN, 0.4, 0.9], &[false, false, true, true]),
            Err(LrError::NotFinite { .. })
        ));
    }

    #[test]
    fn stable_helpers() {
        assert_eq!(softplus(1000.0), 1000.0);
        assert!(softplus(-1000.0) >= 0.0 && softplus(-1000.0) < 1e-300);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }
}
