//! Calibrators (score -> log10 LR), the bounded calibration that casework uses, and its file,
//! `calibration.json`.
//!
//! A [`Calibration`] is a fitted calibrator plus its ELUB bounds: `llr(score) =
//! clamp(calibrator(score), lower, upper)`. Its file records the model's SHA-256, the data's
//! hashes (as the caller computed them), the counts of each kind of pair and the validity
//! figures; [`Calibration::load`] refuses a file made with another model.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::elub::{ElubBounds, elub};
use super::error::{LrError, Result, check_counts, check_finite, check_len};
use super::logistic::LogisticCalibrator;
use super::metrics::LrMetrics;
use super::pairs::PairOptions;
use super::pav::PavCalibrator;
use super::verbal::{VERBAL_SCALE, VerbalEquivalent, verbal_equivalent};

/// The `format` of a calibration file written by this version.
pub const CALIBRATION_FORMAT: &str = "clip-handid-calibration/1";

/// Which calibrator to fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibratorKind {
    /// Prior-balanced unregularised logistic regression (the default): smooth, monotone, two
    /// parameters; fails when the scores are perfectly separated.
    #[default]
    Logistic,
    /// Prior-balanced PAV (isotonic regression): non-parametric, infinite LRs at the ends
    /// before bounding.
    Pav,
}

/// A fitted calibrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Calibrator {
    /// Logistic regression.
    Logistic(LogisticCalibrator),
    /// PAV.
    Pav(PavCalibrator),
}

impl Calibrator {
    /// Fits a calibrator of `kind` to scores and labels (`true` = same source). Needs at least
    /// two comparisons of each kind and finite scores.
    pub fn fit(kind: CalibratorKind, scores: &[f64], labels: &[bool]) -> Result<Self> {
        check_len("labels", scores.len(), labels.len())?;
        check_finite("scores", scores)?;
        check_counts(labels, None)?;
        Ok(match kind {
            CalibratorKind::Logistic => Self::Logistic(LogisticCalibrator::fit(scores, labels)?),
            CalibratorKind::Pav => Self::Pav(PavCalibrator::fit(scores, labels)?),
        })
    }

    /// The kind of this calibrator.
    pub fn kind(&self) -> CalibratorKind {
        match self {
            Self::Logistic(_) => CalibratorKind::Logistic,
            Self::Pav(_) => CalibratorKind::Pav,
        }
    }

    /// The (unbounded) log10 LR at `score`; PAV gives `+-inf` beyond its pure ends.
    pub fn llr(&self, score: f64) -> f64 {
        match self {
            Self::Logistic(c) => c.llr(score),
            Self::Pav(c) => c.llr(score),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        match self {
            Self::Logistic(c) if !(c.slope_ln.is_finite() && c.intercept_ln.is_finite()) => {
                Err("logistic parameters are not finite".into())
            }
            Self::Pav(c) => {
                let ok = !c.scores.is_empty()
                    && c.scores.len() == c.probabilities.len()
                    && c.scores.iter().all(|s| s.is_finite())
                    && c.scores.windows(2).all(|w| w[0] <= w[1])
                    && c.probabilities.iter().all(|p| (0.0..=1.0).contains(p))
                    && c.probabilities.windows(2).all(|w| w[0] <= w[1]);
                if ok {
                    Ok(())
                } else {
                    Err("PAV points are not non-decreasing scores with non-decreasing probabilities in [0, 1]".into())
                }
            }
            Self::Logistic(_) => Ok(()),
        }
    }
}

/// Settings of [`calibrate`](super::calibrate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationOptions {
    /// The calibrator. Default: logistic regression.
    pub calibrator: CalibratorKind,
    /// Cross-validation folds by identity for the validation report. Default 5.
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Misleading comparisons added on each side for the ELUB bounds. Default 1 (lir's).
    pub elub_add_misleading: usize,
    /// Step of the ELUB threshold search in log10 LR. Default 0.01 (lir's).
    pub elub_step: f64,
    /// Which comparisons to make from the embeddings.
    pub pairs: PairOptions,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        Self {
            calibrator: CalibratorKind::Logistic,
            folds: 5,
            seed: 0,
            elub_add_misleading: 1,
            elub_step: 0.01,
            pairs: PairOptions::default(),
        }
    }
}

/// A file the calibration data came from, with its SHA-256 as the caller computed it: the
/// record of every other output's input images ([`crate::provenance::HashedImage`]).
pub type FileHash = crate::provenance::HashedImage;

/// Where a calibration came from: strings supplied by the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The model (path or name as given).
    pub model: String,
    /// Lower-case hex SHA-256 of the model file; loading a calibration checks it.
    pub model_sha256: String,
    /// The calibration data (a dataset folder or a split manifest, as given).
    pub data: String,
    /// Hashes of the data's files (the split manifest, the images, ...).
    #[serde(default)]
    pub data_hashes: Vec<FileHash>,
    /// What computed the scores, as in every other output of the crate (tool, model kind,
    /// preprocessing, flip-sum, backend, seeds), when the calibration was made from a model's
    /// features ([`crate::retrieval::calibrate_model`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_by: Option<crate::provenance::Provenance>,
}

/// Lower-case hex SHA-256 of a file, for callers that need one for [`Provenance`].
pub fn sha256_file(path: &Path) -> Result<String> {
    crate::provenance::sha256_file(path).map_err(|source| LrError::Hash { path: path.to_path_buf(), source })
}

/// How many comparisons a calibration is built on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCounts {
    /// Images compared.
    pub images: usize,
    /// Distinct identities among them.
    pub identities: usize,
    /// Same-source comparisons used for fitting.
    pub same_source: usize,
    /// Different-source comparisons used for fitting.
    pub different_source: usize,
    /// Same-source comparisons available before any subsampling.
    pub same_source_available: u64,
    /// Different-source comparisons available before any subsampling.
    pub different_source_available: u64,
}

/// A fitted, bounded calibration: what `calibration.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// [`CALIBRATION_FORMAT`].
    pub format: String,
    /// The crate version that wrote it.
    pub software: String,
    /// The calibrator and its parameters.
    pub calibrator: Calibrator,
    /// ELUB bounds applied to every log10 LR, from the calibrator's log10 LRs on its own
    /// fitting comparisons.
    pub bounds: ElubBounds,
    /// The comparisons it was fitted on.
    pub counts: PairCounts,
    /// The options used.
    pub options: CalibrationOptions,
    /// Model and data provenance.
    pub provenance: Provenance,
    /// Validity figures of cross-validated (by identity), bounded log10 LRs on comparisons not
    /// used for fitting; `None` when no validation was run.
    pub validity: Option<LrMetrics>,
    /// The verbal scale used for casework ([`VERBAL_SCALE`]).
    pub verbal_scale: String,
}

/// One comparison's evidence, for a casework report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The comparison score (cosine similarity).
    pub score: f64,
    /// The calibrator's log10 LR before bounding (may be infinite for PAV).
    #[serde(with = "super::json::ext")]
    pub llr_unbounded: f64,
    /// The reported log10 LR, within the ELUB bounds.
    pub llr: f64,
    /// The reported LR, `10^llr`.
    pub lr: f64,
    /// `true` when the bound limited the LR (the data cannot support a stronger one).
    pub at_bound: bool,
    /// The bounds.
    pub bounds: ElubBounds,
    /// The verbal equivalent of `llr`.
    pub verbal: VerbalEquivalent,
}

impl Calibration {
    /// Fits the calibrator of `options.calibrator` to `scores` / `labels` and bounds it with
    /// ELUB on its own log10 LRs. `counts.same_source` / `different_source` are set from the
    /// labels; the caller fills in the rest of `counts` and `validity`.
    pub fn fit(
        scores: &[f64],
        labels: &[bool],
        options: &CalibrationOptions,
        provenance: Provenance,
        counts: PairCounts,
    ) -> Result<Self> {
        let calibrator = Calibrator::fit(options.calibrator, scores, labels)?;
        let llrs: Vec<f64> = scores.iter().map(|&s| calibrator.llr(s)).collect();
        let bounds = elub(&llrs, labels, options.elub_add_misleading, options.elub_step)?;
        let (same_source, different_source) = check_counts(labels, None)?;
        Ok(Self {
            format: CALIBRATION_FORMAT.to_string(),
            software: format!("handid {}", env!("CARGO_PKG_VERSION")),
            calibrator,
            bounds,
            counts: PairCounts { same_source, different_source, ..counts },
            options: options.clone(),
            provenance,
            validity: None,
            verbal_scale: VERBAL_SCALE.to_string(),
        })
    }

    /// The bounded log10 LR of a score.
    pub fn llr(&self, score: f64) -> f64 {
        self.bounds.apply(self.calibrator.llr(score))
    }

    /// The evidence of one comparison score. Fails on a non-finite score.
    pub fn evidence(&self, score: f64) -> Result<Evidence> {
        check_finite("score", &[score])?;
        let llr_unbounded = self.calibrator.llr(score);
        let llr = self.bounds.apply(llr_unbounded);
        Ok(Evidence {
            score,
            llr_unbounded,
            llr,
            lr: 10f64.powf(llr),
            at_bound: llr != llr_unbounded,
            bounds: self.bounds,
            verbal: verbal_equivalent(llr),
        })
    }

    /// The JSON text of the file.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(crate::eval::output::encode_json(Path::new("calibration.json"), self)?)
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(crate::eval::write_atomic(path, &self.to_json()?)?)
    }

    /// Reads a calibration file and checks that it was made with the model whose SHA-256 is
    /// `model_sha256` (case-insensitive). Fails with [`LrError::ModelMismatch`] otherwise, and
    /// with [`LrError::CalibrationFile`] for a missing, unreadable or inconsistent file.
    pub fn load(path: &Path, model_sha256: &str) -> Result<Self> {
        let file_error = |reason: String| LrError::CalibrationFile { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let calibration: Self = serde_json::from_str(&text).map_err(|e| file_error(format!("not valid: {e}")))?;
        if calibration.format != CALIBRATION_FORMAT {
            return Err(file_error(format!("format {:?}, expected {CALIBRATION_FORMAT:?}", calibration.format)));
        }
        calibration.calibrator.check().map_err(file_error)?;
        let b = calibration.bounds;
        if !(b.lower.is_finite() && b.upper.is_finite() && b.lower <= 0.0 && b.upper >= 0.0) {
            return Err(file_error(format!("bounds [{}, {}] do not enclose 0", b.lower, b.upper)));
        }
        if !calibration.provenance.model_sha256.eq_ignore_ascii_case(model_sha256) {
            return Err(LrError::ModelMismatch {
                path: path.to_path_buf(),
                expected: model_sha256.to_ascii_lowercase(),
                found: calibration.provenance.model_sha256.clone(),
            });
        }
        Ok(calibration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (Vec<f64>, Vec<bool>) {
        let scores = vec![0.1, 0.35, 0.4, 0.5, 0.2, 0.6, 0.55, 0.8, 0.9, 0.45, 0.3, 0.7];
        let labels = vec![false, false, true, false, false, true, false, true, true, true, false, true];
        (scores, labels)
    }

    #[test]
    fn save_load_and_model_check() {
        let (scores, labels) = toy();
        let provenance = Provenance { model_sha256: "ABC123".into(), ..Default::default() };
        for kind in [CalibratorKind::Logistic, CalibratorKind::Pav] {
            let options = CalibrationOptions { calibrator: kind, ..Default::default() };
            let cal = Calibration::fit(&scores, &labels, &options, provenance.clone(), PairCounts::default()).unwrap();
            let dir = std::env::temp_dir().join(format!("handid-lr-cal-{}-{kind:?}", std::process::id()));
            let path = dir.join("calibration.json");
            cal.save(&path).unwrap();
            let back = Calibration::load(&path, "abc123").unwrap();
            // serde_json parses decimals to within an ulp (no float_roundtrip feature here).
            assert_eq!((back.calibrator.kind(), back.counts, &back.provenance), (kind, cal.counts, &cal.provenance));
            for s in [0.0, 0.33, 0.52, 0.9] {
                assert!((back.llr(s) - cal.llr(s)).abs() < 1e-12);
            }
            let err = Calibration::load(&path, "def456").unwrap_err();
            assert!(matches!(err, LrError::ModelMismatch { .. }));
            assert!(err.to_string().contains("calibration.json"), "{err}");
            let e = cal.evidence(0.95).unwrap();
            assert!(e.llr <= cal.bounds.upper && e.lr > 1.0);
            assert!(cal.evidence(f64::NAN).is_err());
            std::fs::write(&path, "{\"format\": 1").unwrap();
            assert!(matches!(Calibration::load(&path, "abc123"), Err(LrError::CalibrationFile { .. })));
            assert!(matches!(
                Calibration::load(&dir.join("missing.json"), "abc123"),
                Err(LrError::CalibrationFile { .. })
            ));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
