//! Calibrated likelihood ratios for hand comparisons, validated as forensic practice asks
//! (ENFSI guideline for evaluative reporting 2015; `docs/LR.md`).
//!
//! Log-likelihood ratios are base 10 throughout (`llr = log10 LR`), as in the Netherlands
//! Forensic Institute's `lir` package, whose numbers (version 1.3.1) and scikit-learn's this
//! module reproduces (`tests/lr_parity.rs`).
//!
//! - [`pav`]: prior-balanced PAV (isotonic) calibration;
//! - [`logistic`]: prior-balanced unregularised logistic-regression calibration;
//! - [`elub`](mod@elub): empirical lower and upper bounds of log10 LRs;
//! - [`metrics`]: Cllr, Cllr_min, Cllr_cal, devPAV, EER, misleading evidence;
//! - [`pairs`]: same-source and different-source comparisons of embeddings, folds by identity;
//! - [`calibration`]: the bounded calibration that casework uses and its `calibration.json`;
//! - [`validation`]: cross-validation by identity and the validation report (JSON + PNG with
//!   [`write_calibration_outputs`]);
//! - [`verbal`]: the ENFSI 2015 verbal scale;
//! - [`groups`]: differential performance, the figures per group of images (11k Hands metadata).
//!
//! The command-line program needs one call per command: [`calibrate`] then
//! [`write_calibration_outputs`] (`handid calibrate`); [`Calibration::load`] then
//! [`Calibration::evidence`] (`handid compare --calibration`, `index query --calibration`).
//!
//! ```
//! use handid::lr::{Calibration, CalibrationOptions, PairCounts, Provenance, Supports};
//! // Comparison scores with their ground truth (true = same person).
//! let scores = [0.1, 0.35, 0.4, 0.5, 0.2, 0.6, 0.55, 0.8, 0.9, 0.45, 0.3, 0.7];
//! let labels = [false, false, true, false, false, true, false, true, true, true, false, true];
//! let provenance = Provenance { model_sha256: "ab12".into(), ..Default::default() };
//! let options = CalibrationOptions::default(); // logistic regression, ELUB bounds
//! let calibration = Calibration::fit(&scores, &labels, &options, provenance, PairCounts::default())?;
//! let evidence = calibration.evidence(0.85)?;
//! assert!(evidence.lr > 1.0 && evidence.llr <= calibration.bounds.upper);
//! assert_eq!(evidence.verbal.supports, Supports::SameSource);
//! # Ok::<(), handid::lr::LrError>(())
//! ```

pub mod calibration;
pub mod elub;
mod error;
pub mod groups;
mod json;
pub mod logistic;
pub mod metrics;
mod outputs;
pub mod pairs;
pub mod pav;
mod plots;
pub mod validation;
pub mod verbal;

pub use calibration::{
    CALIBRATION_FORMAT, Calibration, CalibrationOptions, Calibrator, CalibratorKind, Evidence, FileHash, PairCounts,
    Provenance, sha256_file,
};
pub use elub::{ElubBounds, elub};
pub use error::{LrError, Result};
pub use groups::{
    DifferentialOptions, DifferentialReport, GroupFigures, GroupLabels, differential_performance, hands11k_groups,
};
pub use logistic::LogisticCalibrator;
pub use metrics::{LrMetrics, Misleading, cllr, cllr_min, devpav, eer};
pub use outputs::{CalibrationOutputs, write_calibration_outputs};
pub use pairs::{PairOptions, PairSet, comparison_pairs, identity_folds};
pub use pav::{PavCalibrator, pav_llrs};
pub use validation::{EceCurve, FoldSummary, ValidationReport, calibrate, calibrate_pairs, cross_validate};
pub use verbal::{Supports, VERBAL_SCALE, VerbalEquivalent, verbal_equivalent};
