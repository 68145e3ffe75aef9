//! Calibration with a validation report: cross-validation by identity, so that every
//! validated log10 LR comes from a calibrator that saw neither of the two identities compared.
//!
//! The distinct identities are shuffled (seeded) and dealt into `k` folds. For fold `f`, the
//! calibrator and its ELUB bounds are fitted on the comparisons in which neither image belongs
//! to fold `f`, and applied to the comparisons in which both do. Comparisons between two
//! different folds are used for fitting (in the other folds) but never validated. The final
//! calibration is fitted on all comparisons.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calibration::{Calibration, CalibrationOptions, CalibratorKind, PairCounts, Provenance};
use super::elub::ElubBounds;
use super::error::{LrError, Result, check_counts};
use super::metrics::LrMetrics;
use super::pairs::{PairSet, comparison_pairs, identity_folds};
use super::pav::pav_llrs;
use super::verbal::VERBAL_SCALE;
use crate::eval::FeatureMatrix;

/// One cross-validation fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    /// The fold (0-based).
    pub fold: usize,
    /// Identities held out.
    pub identities: usize,
    /// Same-source comparisons fitted on.
    pub fit_same_source: usize,
    /// Different-source comparisons fitted on.
    pub fit_different_source: usize,
    /// Same-source comparisons validated.
    pub test_same_source: usize,
    /// Different-source comparisons validated.
    pub test_different_source: usize,
    /// The fold's ELUB bounds.
    pub bounds: ElubBounds,
}

/// Empirical cross-entropy (Ramos, Gonzalez-Rodriguez, Zadora and Aitken, "Information-theoretical
/// assessment of the performance of likelihood ratio computation methods", Journal of Forensic
/// Sciences 58, 2013) against the prior log10 odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EceCurve {
    /// Prior log10 odds of the same-source proposition.
    pub prior_log10_odds: Vec<f64>,
    /// ECE of the validated LRs (bits).
    pub system: Vec<f64>,
    /// ECE of the validated LRs after PAV (the best calibration of the same discrimination).
    pub pav: Vec<f64>,
    /// ECE of a neutral system (LR 1 always): the prior entropy.
    pub neutral: Vec<f64>,
}

/// `log2(1 + 10^x)` without overflow.
fn log2_1p_exp10(x: f64) -> f64 {
    let z = x * std::f64::consts::LN_10;
    (z.max(0.0) + (-z.abs()).exp().ln_1p()) / std::f64::consts::LN_2
}

impl EceCurve {
    /// The ECE of `llrs` at prior log10 odds from `-range` to `range` in `points` steps:
    /// `ECE = P(Hp) mean_Hp log2(1 + 1/(LR O)) + P(Hd) mean_Hd log2(1 + LR O)` with
    /// `O = 10^prior_log10_odds`, `P(Hp) = O / (1 + O)`.
    pub fn compute(llrs: &[f64], labels: &[bool], range: f64, points: usize) -> Result<Self> {
        check_counts(labels, Some("ECE".into()))?;
        let pav = pav_llrs(llrs, labels)?;
        let ece = |values: &[f64], theta: f64| {
            let p = 1.0 / (1.0 + 10f64.powf(-theta));
            let (mut s1, mut n1, mut s0, mut n0) = (0.0, 0usize, 0.0, 0usize);
            for (&l, &same) in values.iter().zip(labels) {
                if same {
                    s1 += log2_1p_exp10(-(l + theta));
                    n1 += 1;
                } else {
                    s0 += log2_1p_exp10(l + theta);
                    n0 += 1;
                }
            }
            p * s1 / n1 as f64 + (1.0 - p) * s0 / n0 as f64
        };
        let zeros = vec![0.0; llrs.len()];
        let prior: Vec<f64> =
            (0..points.max(2)).map(|i| -range + 2.0 * range * i as f64 / (points.max(2) - 1) as f64).collect();
        Ok(Self {
            system: prior.iter().map(|&t| ece(llrs, t)).collect(),
            pav: prior.iter().map(|&t| ece(&pav, t)).collect(),
            neutral: prior.iter().map(|&t| ece(&zeros, t)).collect(),
            prior_log10_odds: prior,
        })
    }
}

/// The validation report of a calibration: JSON data, and the figures of
/// [`write_calibration_outputs`](super::write_calibration_outputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The definitions used, in words.
    pub definitions: BTreeMap<String, String>,
    /// The calibrator validated.
    pub calibrator: CalibratorKind,
    /// The folds.
    pub folds: Vec<FoldSummary>,
    /// Figures of the validated, bounded log10 LRs.
    pub metrics: LrMetrics,
    /// The ECE curve of the validated LRs.
    pub ece: EceCurve,
    /// The verbal scale used for casework.
    pub verbal_scale: String,
    /// The validated comparisons' scores (same order as `llrs`).
    pub scores: Vec<f64>,
    /// The validated, bounded log10 LRs.
    pub llrs: Vec<f64>,
    /// `true` for same source.
    pub labels: Vec<bool>,
}

fn definitions() -> BTreeMap<String, String> {
    [
        ("llr", "log10 likelihood ratio: log10 P(score | same person) / P(score | different people)"),
        (
            "validation",
            "k-fold cross-validation by identity: each validated comparison's LR comes from a calibrator (and ELUB \
             bounds) fitted without either identity",
        ),
        ("cllr", "Brummer and du Preez 2006: 1/2 [mean_Hp log2(1 + 1/LR) + mean_Hd log2(1 + LR)], bits"),
        ("cllr_min", "Cllr after prior-balanced PAV of the LLRs (discrimination loss)"),
        ("cllr_cal", "cllr - cllr_min (calibration loss)"),
        ("devpav", "lir.metrics.devpav: mean |PAV(llr) - llr| over the finite part of the PAV curve"),
        ("eer", "equal error rate of the LLRs as scores (same person when llr >= threshold)"),
        ("misleading", "LR > 1 for different people, LR < 1 for the same person; strength as log10 LR"),
        ("elub", "Vergeer et al. 2016 empirical lower and upper bounds (lir, add_misleading 1, step 0.01)"),
        ("ece", "Ramos et al. 2013 empirical cross-entropy against prior log10 odds"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Cross-validation by identity of `pairs` (made by [`comparison_pairs`] from images with
/// these `identities`), with `options.folds` folds dealt by `options.seed`. Returns the indices
/// (into `pairs`) of the validated comparisons, i.e. those whose two images lie in the same
/// fold, their bounded log10 LRs from the calibrator fitted without that fold, and a summary of
/// each fold. Fails when a fold leaves fewer than two fitting comparisons of either kind, or
/// when the fitting fails (for example [`LrError::Separated`]).
pub fn cross_validate(
    pairs: &PairSet,
    identities: &[u64],
    options: &CalibrationOptions,
) -> Result<(Vec<usize>, Vec<f64>, Vec<FoldSummary>)> {
    if pairs.pairs.len() != pairs.scores.len() {
        return Err(LrError::InvalidOption("cross-validation needs the image pairs of each comparison".into()));
    }
    if let Some(&(_, b)) = pairs.pairs.iter().max_by_key(|p| p.1)
        && b >= identities.len()
    {
        return Err(LrError::Length { what: "identities", expected: b + 1, got: identities.len() });
    }
    let image_folds = identity_folds(identities, options.folds, options.seed)?;
    let k = options.folds;
    let (mut tested, mut llrs, mut folds) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..k {
        let (mut fit_scores, mut fit_labels, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &(a, b)) in pairs.pairs.iter().enumerate() {
            let (fa, fb) = (image_folds[a], image_folds[b]);
            if fa != f && fb != f {
                fit_scores.push(pairs.scores[i]);
                fit_labels.push(pairs.labels[i]);
            } else if fa == f && fb == f {
                test.push(i);
            }
        }
        let context = |what: &str| Some(format!("{what} comparisons of cross-validation fold {f}"));
        check_counts(&fit_labels, context("fitting"))?;
        let test_labels: Vec<bool> = test.iter().map(|&i| pairs.labels[i]).collect();
        let test_same = test_labels.iter().filter(|&&l| l).count();
        let cal = Calibration::fit(&fit_scores, &fit_labels, options, Provenance::default(), PairCounts::default())
            .map_err(|e| match e {
                LrError::TooFewPairs { same_source, different_source, .. } => {
                    LrError::TooFewPairs { same_source, different_source, context: context("fitting") }
                }
                other => other,
            })?;
        let held: std::collections::HashSet<u64> =
            identities.iter().zip(&image_folds).filter(|(_, g)| **g == f).map(|(id, _)| *id).collect();
        folds.push(FoldSummary {
            fold: f,
            identities: held.len(),
            fit_same_source: cal.counts.same_source,
            fit_different_source: cal.counts.different_source,
            test_same_source: test_same,
            test_different_source: test.len() - test_same,
            bounds: cal.bounds,
        });
        for i in test {
            tested.push(i);
            llrs.push(cal.llr(pairs.scores[i]));
        }
    }
    Ok((tested, llrs, folds))
}

/// Calibrates on embeddings of images with identity labels: makes the comparisons, fits the
/// calibration on all of them, and validates it by cross-validation by identity. Returns the
/// calibration (with its validity figures) and the validation report.
pub fn calibrate(
    embeddings: &FeatureMatrix,
    identities: &[u64],
    options: &CalibrationOptions,
    provenance: Provenance,
) -> Result<(Calibration, ValidationReport)> {
    let pairs = comparison_pairs(embeddings, identities, &options.pairs)?;
    calibrate_pairs(&pairs, identities, options, provenance)
}

/// [`calibrate`] on comparisons already made (by [`comparison_pairs`], or any [`PairSet`] whose
/// `pairs` index images with these `identities`).
pub fn calibrate_pairs(
    pairs: &PairSet,
    identities: &[u64],
    options: &CalibrationOptions,
    provenance: Provenance,
) -> Result<(Calibration, ValidationReport)> {
    // Checked before anything is fitted: a fold count the identities cannot fill.
    identity_folds(identities, options.folds, options.seed)?;
    let mut distinct = identities.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let counts = PairCounts {
        images: identities.len(),
        identities: distinct.len(),
        same_source_available: pairs.same_source_available,
        different_source_available: pairs.different_source_available,
        ..Default::default()
    };
    let mut calibration = Calibration::fit(&pairs.scores, &pairs.labels, options, provenance, counts)?;
    let (tested, llrs, fold_summaries) = cross_validate(pairs, identities, options)?;
    let labels: Vec<bool> = tested.iter().map(|&i| pairs.labels[i]).collect();
    check_counts(&labels, Some("validated comparisons (within one fold)".into()))?;
    let metrics = LrMetrics::compute(&llrs, &labels)?;
    let report = ValidationReport {
        definitions: definitions(),
        calibrator: options.calibrator,
        folds: fold_summaries,
        ece: EceCurve::compute(&llrs, &labels, 3.0, 121)?,
        metrics: metrics.clone(),
        verbal_scale: VERBAL_SCALE.to_string(),
        scores: tested.iter().map(|&i| pairs.scores[i]).collect(),
        llrs,
        labels,
    };
    calibration.validity = Some(metrics);
    Ok((calibration, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_matches_lir() {
        // lir.plotting.expected_calibration_error.calculate_ece at prior log10 odds -1, 0, 1.
        let llrs = [1.2, -0.8, 0.4, -1.5, 0.1, -0.2, -0.6];
        let labels = [true, false, true, false, false, true, false];
        let e = EceCurve::compute(&llrs, &labels, 1.0, 3).unwrap();
        for (a, b) in e.system.iter().zip([0.26825817, 0.54315389, 0.25102317]) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
        for (a, b) in e.pav.iter().zip([0.13459863, 0.28735821, 0.11891949]) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
    }

    #[test]
    fn ece_of_the_neutral_system_is_the_prior_entropy() {
        let labels = [true, true, false, false];
        let e = EceCurve::compute(&[0.0; 4], &labels, 2.0, 5).unwrap();
        assert!((e.neutral[2] - 1.0).abs() < 1e-12);
        assert!(e.system.iter().zip(&e.neutral).all(|(a, b)| (a - b).abs() < 1e-12));
        // Perfectly separated LLRs: PAV makes them infinite and the ECE 0.
        let e = EceCurve::compute(&[1.0, 2.0, -1.0, -2.0], &labels, 2.0, 5).unwrap();
        assert!(e.pav.iter().all(|&v| v.abs() < 1e-12));
        assert!(e.system.iter().zip(&e.neutral).all(|(a, b)| a < b));
    }
}
