//! The error type of the likelihood-ratio module.

use std::path::PathBuf;

/// Everything that can go wrong while pairing, calibrating, validating or reporting.
#[derive(Debug, thiserror::Error)]
pub enum LrError {
    /// Fewer than two comparisons of either kind: nothing can be calibrated or measured.
    #[error(
        "need at least two same-source and two different-source comparisons, got {same_source} same-source and \
         {different_source} different-source{}",
        context.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    TooFewPairs {
        /// Same-source (Hp) comparisons available.
        same_source: usize,
        /// Different-source (Hd) comparisons available.
        different_source: usize,
        /// Where it happened (a cross-validation fold, a group), if not the whole set.
        context: Option<String>,
    },
    /// A score, log10 LR or embedding value is NaN or infinite where a finite one is needed.
    #[error("{what}[{index}] is {value}, not a finite number")]
    NotFinite {
        /// What the values are (`"scores"`, `"embedding 3"`, ...).
        what: String,
        /// The 0-based position.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Two lists that describe the same items have different lengths.
    #[error("{what}: {got} entries, expected {expected}")]
    Length {
        /// What the list is.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The same-source and different-source scores do not overlap (perfect separation, or all
    /// scores equal): prior-balanced logistic regression has no finite maximum-likelihood
    /// solution. Use more calibration data or the PAV calibrator.
    #[error(
        "the scores are perfectly separated (highest different-source {max_different} vs lowest same-source \
         {min_same}): logistic regression has no finite optimum; use more data or the PAV calibrator"
    )]
    Separated {
        /// Highest different-source score.
        max_different: f64,
        /// Lowest same-source score.
        min_same: f64,
    },
    /// Newton's method did not reach the optimum.
    #[error("logistic regression did not converge in {iterations} Newton steps (gradient norm {gradient})")]
    NotConverged {
        /// Steps taken.
        iterations: usize,
        /// Norm of the gradient at the last step.
        gradient: f64,
    },
    /// An option is out of its valid range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A calibration file was made with a different model than the one in use.
    #[error(
        "calibration {} was made with the model of SHA-256 {found}, not with this model ({expected}): \
         calibrate this model first",
        path.display()
    )]
    ModelMismatch {
        /// The calibration file.
        path: PathBuf,
        /// SHA-256 of the model in use.
        expected: String,
        /// SHA-256 recorded in the file.
        found: String,
    },
    /// A calibration file is missing, unreadable, not valid JSON, or inconsistent.
    #[error("calibration file {}: {reason}", path.display())]
    CalibrationFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be hashed.
    #[error("cannot hash {}: {source}", path.display())]
    Hash {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an output (JSON or PNG) failed; nothing was left half-written.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
}

/// Shorthand for results of this module.
pub type Result<T, E = LrError> = std::result::Result<T, E>;

/// Fails with [`LrError::Length`] when `got != expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(LrError::Length { what, expected, got }) }
}

/// Fails with [`LrError::NotFinite`] at the first non-finite value.
pub(crate) fn check_finite(what: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(LrError::NotFinite { what: what.to_string(), index, value: values[index] }),
        None => Ok(()),
    }
}

/// Fails with [`LrError::TooFewPairs`] unless there are at least two labels of each kind.
pub(crate) fn check_counts(labels: &[bool], context: Option<String>) -> Result<(usize, usize)> {
    let same_source = labels.iter().filter(|&&l| l).count();
    let different_source = labels.len() - same_source;
    if same_source < 2 || different_source < 2 {
        return Err(LrError::TooFewPairs { same_source, different_source, context });
    }
    Ok((same_source, different_source))
}
