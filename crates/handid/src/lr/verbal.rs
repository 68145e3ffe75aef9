//! Verbal equivalents of likelihood ratios for casework: the scale of the ENFSI Guideline for
//! Evaluative Reporting in Forensic Science (European Network of Forensic Science Institutes,
//! 2015), applied symmetrically to LRs below 1 (support for the different-source proposition).
//!
//! | LR (or 1/LR)        | support        |
//! |---------------------|----------------|
//! | 1                   | neither proposition (no support) |
//! | above 1, below 10   | weak           |
//! | 10 to below 100     | moderate       |
//! | 100 to below 1000   | moderately strong |
//! | 1000 to below 10^4  | strong         |
//! | 10^4 to below 10^6  | very strong    |
//! | 10^6 and above      | extremely strong |

use serde::{Deserialize, Serialize};

/// The name of the scale, as written into every output that uses it.
pub const VERBAL_SCALE: &str =
    "ENFSI Guideline for Evaluative Reporting in Forensic Science (2015), verbal equivalents, symmetric for LR < 1";

/// The same-source proposition, in words.
pub const PROPOSITION_SAME: &str = "the two hand images show the same person";
/// The different-source proposition, in words.
pub const PROPOSITION_DIFFERENT: &str = "the two hand images show two different people";

/// Which proposition a likelihood ratio supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Supports {
    /// LR > 1: the same-source proposition (Hp).
    SameSource,
    /// LR < 1: the different-source proposition (Hd).
    DifferentSource,
    /// LR = 1: neither.
    Neither,
}

/// The verbal equivalent of one LR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerbalEquivalent {
    /// The scale used ([`VERBAL_SCALE`]).
    pub scale: String,
    /// Which proposition the LR supports.
    pub supports: Supports,
    /// The strength of support: `"no"`, `"weak"`, `"moderate"`, `"moderately strong"`,
    /// `"strong"`, `"very strong"` or `"extremely strong"`.
    pub strength: String,
    /// The sentence for a report.
    pub statement: String,
}

/// The verbal equivalent of a log10 LR on the ENFSI 2015 scale. `NaN` is treated as LR 1.
pub fn verbal_equivalent(llr: f64) -> VerbalEquivalent {
    let magnitude = llr.abs();
    let strength = if llr.is_nan() || llr == 0.0 {
        "no"
    } else if magnitude < 1.0 {
        "weak"
    } else if magnitude < 2.0 {
        "moderate"
    } else if magnitude < 3.0 {
        "moderately strong"
    } else if magnitude < 4.0 {
        "strong"
    } else if magnitude < 6.0 {
        "very strong"
    } else {
        "extremely strong"
    };
    let (supports, statement) = if strength == "no" {
        (
            Supports::Neither,
            format!(
                "The findings support neither proposition: they are as probable if {PROPOSITION_SAME} as if \
                 {PROPOSITION_DIFFERENT}."
            ),
        )
    } else if llr > 0.0 {
        (
            Supports::SameSource,
            format!(
                "The findings provide {strength} support for the proposition that {PROPOSITION_SAME}, rather than \
                 that {PROPOSITION_DIFFERENT}."
            ),
        )
    } else {
        (
            Supports::DifferentSource,
            format!(
                "The findings provide {strength} support for the proposition that {PROPOSITION_DIFFERENT}, rather \
                 than that {PROPOSITION_SAME}."
            ),
        )
    };
    VerbalEquivalent { scale: VERBAL_SCALE.to_string(), supports, strength: strength.to_string(), statement }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_boundaries() {
        let s = |llr: f64| verbal_equivalent(llr).strength;
        assert_eq!(s(0.0), "no");
        assert_eq!(s(0.5), "weak");
        assert_eq!(s(1.0), "moderate");
        assert_eq!(s(2.5), "moderately strong");
        assert_eq!(s(3.0), "strong");
        assert_eq!(s(5.9), "very strong");
        assert_eq!(s(6.0), "extremely strong");
        assert_eq!(s(-1.5), "moderate");
        assert_eq!(verbal_equivalent(-1.5).supports, Supports::DifferentSource);
        assert_eq!(verbal_equivalent(2.0).supports, Supports::SameSource);
        assert!(verbal_equivalent(2.0).statement.contains("moderately strong support"));
    }
}
