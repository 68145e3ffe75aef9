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
//! - [`metrics`]: Cllr, Cllr_min, Cllr_cal, devPAV, EER, misleading evidence.

mod error;
pub mod elub;
mod json;
pub mod logistic;
pub mod metrics;
pub mod pav;

pub use elub::{ElubBounds, elub};
pub use error::{LrError, Result};
pub use logistic::LogisticCalibrator;
pub use metrics::{LrMetrics, Misleading, cllr, cllr_min, devpav, eer};
pub use pav::{PavCalibrator, pav_llrs};
