//! Performance metrics of log10 LRs (`lir.metrics`) and the rates and strength of misleading
//! evidence.
//!
//! - **Cllr** (Brümmer and du Preez, "Application-independent evaluation of speaker detection",
//!   Computer Speech and Language 20, 2006): `Cllr = 1/2 [mean_Hp log2(1 + 1/LR) +
//!   mean_Hd log2(1 + LR)]`; 0 is perfect, 1 is a system that always says LR 1.
//! - **Cllr_min**: Cllr after prior-balanced PAV of the log10 LRs (the best any monotone
//!   recalibration could do: the discrimination loss); **Cllr_cal** = Cllr - Cllr_min (the
//!   calibration loss).
//! - **devPAV** (Vergeer et al. 2021, `lir.metrics.devpav`): the mean absolute vertical
//!   distance between the PAV transform of the log10 LRs and the identity line, over the range
//!   of log10 LRs where the PAV transform is finite (area between the piecewise-linear PAV curve
//!   and the diagonal divided by the width). Infinite when the PAV curve runs horizontally to an
//!   infinite LR, NaN when it is only infinite values; reported as `None` then.
//! - **EER** of the log10 LRs, with the decision rule `llr >= threshold` and the interpolation
//!   of [`crate::eval::verification`].
//! - **Misleading evidence**: LR > 1 for a different-source comparison, LR < 1 for a
//!   same-source one; counts, rates and how strong the misleading log10 LRs were.

use serde::{Deserialize, Serialize};

use super::error::{Result, check_counts, check_len};
use super::json;
use super::pav::pav_llrs;

/// `lir.metrics.cllr` with weights (1, 1). Infinite when a misleading LR is infinite.
pub fn cllr(llrs: &[f64], labels: &[bool]) -> Result<f64> {
    check_len("labels", llrs.len(), labels.len())?;
    check_counts(labels, None)?;
    let (mut sum1, mut n1, mut sum0, mut n0) = (0.0f64, 0usize, 0.0f64, 0usize);
    for (&llr, &l) in llrs.iter().zip(labels) {
        let lr = 10f64.powf(llr);
        if l {
            sum1 += (1.0 + 1.0 / lr).log2();
            n1 += 1;
        } else {
            sum0 += (1.0 + lr).log2();
            n0 += 1;
        }
    }
    Ok((sum0 / n0 as f64 + sum1 / n1 as f64) / 2.0)
}

/// `lir.metrics.cllr_min`: Cllr of the prior-balanced PAV transform of `llrs`.
pub fn cllr_min(llrs: &[f64], labels: &[bool]) -> Result<f64> {
    check_counts(labels, None)?;
    cllr(&pav_llrs(llrs, labels)?, labels)
}

/// `lir.metrics.devpav`. Infinite or NaN in `lir`'s pathological cases (see the module docs).
pub fn devpav(llrs: &[f64], labels: &[bool]) -> Result<f64> {
    check_counts(labels, None)?;
    let pav = pav_llrs(llrs, labels)?;
    // Work as lir does: on LRs (10^llr), sorted by (LR, PAV LR), duplicates dropped.
    let mut points: Vec<(f64, f64)> = llrs.iter().zip(&pav).map(|(&x, &y)| (10f64.powf(x), 10f64.powf(y))).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup();
    let (first, last) = (points[0], points[points.len() - 1]);
    let inf = f64::INFINITY;
    if (first.1 != 0.0 && last.1 != inf && last.0 == inf)
        || (first.1 != 0.0 && first.0 == 0.0 && last.1 == inf)
        || (first.1 == 0.0 && last.1 != inf && last.0 == inf)
    {
        return Ok(inf);
    }
    let finite: Vec<(f64, f64)> =
        points.iter().filter(|p| p.1 > 0.0 && p.1 < inf).map(|p| (p.0.log10(), p.1.log10())).collect();
    match finite.len() {
        0 => Ok(f64::NAN),
        1 => Ok((finite[0].0 - finite[0].1).abs()),
        _ => {
            let area: f64 = finite.windows(2).map(|w| area_to_diagonal(w[0], w[1])).sum();
            Ok(area / (finite[finite.len() - 1].0 - finite[0].0))
        }
    }
}

/// The area between the segment from `(x1, y1)` to `(x2, y2)` and the line `y = x`:
/// the integral of `|y(x) - x|` over `[x1, x2]`, `y` linear.
fn area_to_diagonal((x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> f64 {
    let (d1, d2, width) = (y1 - x1, y2 - x2, x2 - x1);
    if d1 * d2 >= 0.0 {
        width * (d1.abs() + d2.abs()) / 2.0
    } else {
        // The segment crosses the diagonal: two triangles.
        width * (d1 * d1 + d2 * d2) / (2.0 * (d1.abs() + d2.abs()))
    }
}

/// The equal error rate of `llrs` as scores (decision: same source when `llr >= threshold`).
pub fn eer(llrs: &[f64], labels: &[bool]) -> Result<f64> {
    check_len("labels", llrs.len(), labels.len())?;
    let (n1, n0) = check_counts(labels, None)?;
    let mut order: Vec<usize> = (0..llrs.len()).collect();
    order.sort_by(|&a, &b| llrs[b].total_cmp(&llrs[a]));
    let (mut acc1, mut acc0, mut i) = (0usize, 0usize, 0usize);
    let (mut prev_far, mut prev_frr) = (0.0f64, 1.0f64);
    while i < order.len() {
        let t = llrs[order[i]];
        while i < order.len() && llrs[order[i]] == t {
            if labels[order[i]] {
                acc1 += 1;
            } else {
                acc0 += 1;
            }
            i += 1;
        }
        let (far, frr) = (acc0 as f64 / n0 as f64, (n1 - acc1) as f64 / n1 as f64);
        if far >= frr {
            let (d_prev, d) = (prev_far - prev_frr, far - frr);
            let alpha = d_prev / (d_prev - d);
            return Ok(prev_far + alpha * (far - prev_far));
        }
        (prev_far, prev_frr) = (far, frr);
    }
    Ok(0.0)
}

/// Misleading evidence under one hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Misleading {
    /// Comparisons under this hypothesis.
    pub comparisons: usize,
    /// Comparisons whose LR points the wrong way (LR > 1 under Hd, LR < 1 under Hp).
    pub misleading: usize,
    /// `misleading / comparisons`.
    pub rate: f64,
    /// The most misleading log10 LR (largest under Hd, smallest under Hp); `None` without any.
    #[serde(default)]
    pub strongest_llr: Option<f64>,
    /// Median log10 LR of the misleading comparisons.
    #[serde(default)]
    pub median_llr: Option<f64>,
    /// The misleading log10 LR that 95 % of the misleading ones do not exceed in strength
    /// (linear-interpolated quantile of `|log10 LR|`, with its sign).
    #[serde(default)]
    pub p95_llr: Option<f64>,
}

/// Linear-interpolated quantile (numpy's default) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    if lo == hi { sorted[lo] } else { sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo]) }
}

impl Misleading {
    fn of(llrs: &[f64], labels: &[bool], same_source: bool) -> Self {
        let values: Vec<f64> = llrs.iter().zip(labels).filter(|(_, l)| **l == same_source).map(|(v, _)| *v).collect();
        let sign = if same_source { -1.0 } else { 1.0 };
        // Strengths |llr| of the misleading ones, ascending.
        let mut strengths: Vec<f64> = values.iter().map(|v| v * sign).filter(|s| *s > 0.0).collect();
        strengths.sort_by(f64::total_cmp);
        let pick = |q: f64| (!strengths.is_empty()).then(|| sign * quantile(&strengths, q));
        Self {
            comparisons: values.len(),
            misleading: strengths.len(),
            rate: strengths.len() as f64 / values.len().max(1) as f64,
            strongest_llr: strengths.last().map(|s| sign * s),
            median_llr: pick(0.5),
            p95_llr: pick(0.95),
        }
    }
}

/// All validity figures of a set of log10 LRs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrMetrics {
    /// Same-source comparisons.
    pub same_source: usize,
    /// Different-source comparisons.
    pub different_source: usize,
    /// Log-likelihood-ratio cost (bits; 0 perfect, 1 uninformative).
    #[serde(with = "json::ext")]
    pub cllr: f64,
    /// Cllr after PAV: the discrimination loss.
    pub cllr_min: f64,
    /// `cllr - cllr_min`: the calibration loss.
    #[serde(with = "json::ext")]
    pub cllr_cal: f64,
    /// devPAV; `None` where it has no finite value.
    pub devpav: Option<f64>,
    /// Equal error rate with the log10 LRs as scores.
    pub eer: f64,
    /// Misleading evidence for different sources (LR > 1).
    pub misleading_different_source: Misleading,
    /// Misleading evidence for the same source (LR < 1).
    pub misleading_same_source: Misleading,
}

impl LrMetrics {
    /// Computes every figure. Needs at least two comparisons of each kind; `NaN` log10 LRs are
    /// rejected, infinite ones are allowed.
    pub fn compute(llrs: &[f64], labels: &[bool]) -> Result<Self> {
        check_len("labels", llrs.len(), labels.len())?;
        if let Some(index) = llrs.iter().position(|v| v.is_nan()) {
            return Err(super::LrError::NotFinite { what: "log10 LRs".into(), index, value: f64::NAN });
        }
        let (same_source, different_source) = check_counts(labels, None)?;
        let cllr = cllr(llrs, labels)?;
        let cllr_min = cllr_min(llrs, labels)?;
        let devpav = Some(devpav(llrs, labels)?).filter(|d| d.is_finite());
        Ok(Self {
            same_source,
            different_source,
            cllr,
            cllr_min,
            cllr_cal: cllr - cllr_min,
            devpav,
            eer: eer(llrs, labels)?,
            misleading_different_source: Misleading::of(llrs, labels, false),
            misleading_same_source: Misleading::of(llrs, labels, true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cllr_of_neutral_and_perfect_systems() {
        let labels = [true, true, false, false];
        assert!((cllr(&[0.0; 4], &labels).unwrap() - 1.0).abs() < 1e-12);
        assert!(cllr(&[300.0, 300.0, -300.0, -300.0], &labels).unwrap() < 1e-12);
        assert_eq!(cllr(&[f64::NEG_INFINITY, 1.0, -1.0, -1.0], &labels).unwrap(), f64::INFINITY);
        // Perfectly separated LLRs: PAV makes them infinite and correct.
        assert_eq!(cllr_min(&[1.0, 2.0, -1.0, -2.0], &labels).unwrap(), 0.0);
    }

    #[test]
    fn area_is_the_integral_of_the_distance() {
        assert!((area_to_diagonal((0.0, 1.0), (2.0, 3.0)) - 2.0).abs() < 1e-12);
        // Crossing at x = 1: two triangles of area 1/2.
        assert!((area_to_diagonal((0.0, 1.0), (2.0, 1.0)) - 1.0).abs() < 1e-12);
        // The worked example y from -1 to 0.5 over [0, 2]: 2.5.
        assert!((area_to_diagonal((0.0, -1.0), (2.0, 0.5)) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn eer_and_misleading() {
        let llrs = [2.0, 0.5, -0.3, -1.0, 0.7, -2.0];
        let labels = [true, true, true, false, false, false];
        let m = LrMetrics::compute(&llrs, &labels).unwrap();
        assert_eq!(m.misleading_same_source.misleading, 1);
        assert_eq!(m.misleading_same_source.strongest_llr, Some(-0.3));
        assert_eq!(m.misleading_different_source.strongest_llr, Some(0.7));
        assert!((m.misleading_different_source.rate - 1.0 / 3.0).abs() < 1e-12);
        // Descending: 2 (Hp) 0.7 (Hd) 0.5 (Hp) -0.3 (Hp): FAR 1/3 = FRR 1/3 at 0.5.
        assert!((m.eer - 1.0 / 3.0).abs() < 1e-12, "{}", m.eer);
        assert!((m.cllr_cal - (m.cllr - m.cllr_min)).abs() < 1e-15);
        assert!(LrMetrics::compute(&[1.0, f64::NAN, 0.0, 0.0], &[true, true, false, false]).is_err());
        assert!(LrMetrics::compute(&[1.0, 0.0, 0.0], &[true, false, false]).is_err());
    }
}
