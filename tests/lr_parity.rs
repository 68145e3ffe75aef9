//! Likelihood-ratio parity with the Netherlands Forensic Institute's `lir` 1.3.1 and
//! scikit-learn (FIXTURES.md section 5): the committed cases in `tests/fixtures/lr/cases.json`
//! (written by `scripts/fixtures/make_lr_cases.py`), plus every JSON file named in the
//! colon-separated `HANDID_LR_CASES` (a named file that is missing or unreadable fails).
//!
//! Tolerances (FIXTURES.md): `cllr`, `cllr_min`, `devpav` and each finite `pav_llrs` within
//! 1e-6 (infinite ones equal); `slope_ln`, `intercept_ln` within 1e-4 relative and each
//! logistic llr within 1e-4; `elub` within one step (0.01), computed from this crate's own
//! logistic llrs.

mod common;

use std::path::{Path, PathBuf};

use clip_handid::handid::lr::{LogisticCalibrator, LrError, cllr, cllr_min, devpav, elub, pav_llrs};
use serde_json::Value;

const METRIC_TOLERANCE: f64 = 1e-6;
const LOGISTIC_RELATIVE: f64 = 1e-4;
const LOGISTIC_LLR: f64 = 1e-4;
const ELUB_STEP: f64 = 0.01;

#[derive(serde::Deserialize)]
struct Case {
    #[serde(default)]
    name: Option<String>,
    scores: Vec<Value>,
    labels: Vec<u8>,
    llrs: Vec<Value>,
    expected: Expected,
}

#[derive(serde::Deserialize)]
struct Expected {
    cllr: Value,
    cllr_min: Value,
    devpav: Option<f64>,
    pav_llrs: Vec<Value>,
    logistic: Option<Logistic>,
    elub: Option<[Value; 2]>,
}

#[derive(serde::Deserialize)]
struct Logistic {
    slope_ln: f64,
    intercept_ln: f64,
    llrs: Vec<Value>,
}

/// A JSON number, or one of the strings "inf" / "-inf".
fn number(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not an f64")),
        Value::String(s) if s == "inf" => Ok(f64::INFINITY),
        Value::String(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
        other => Err(format!("{other} is not a number")),
    }
}

fn numbers(values: &[Value]) -> Result<Vec<f64>, String> {
    values.iter().map(number).collect()
}

/// Equal when both are the same infinity, or both finite within `tol`.
fn close(actual: f64, expected: f64, tol: f64) -> bool {
    if expected.is_infinite() || actual.is_infinite() { actual == expected } else { (actual - expected).abs() <= tol }
}

fn case_files() -> Vec<PathBuf> {
    common::case_locations(
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lr/cases.json")],
        "HANDID_LR_CASES",
    )
}

/// The largest differences seen over all cases (printed with `--nocapture`).
#[derive(Default)]
struct Worst {
    metric: f64,
    pav: f64,
    logistic_relative: f64,
    logistic_llr: f64,
    elub: f64,
}

/// Compares one case; returns the differences found.
fn check(case: &Case, worst: &mut Worst) -> Result<(), String> {
    let scores = numbers(&case.scores)?;
    let llrs = numbers(&case.llrs)?;
    if let Some(bad) = case.labels.iter().find(|&&l| l > 1) {
        return Err(format!("label {bad} is neither 0 nor 1"));
    }
    let labels: Vec<bool> = case.labels.iter().map(|&l| l == 1).collect();
    if scores.len() != labels.len() || llrs.len() != labels.len() {
        return Err(format!("{} scores, {} llrs, {} labels", scores.len(), llrs.len(), labels.len()));
    }
    let e = &case.expected;
    let mut problems = Vec::new();
    let mut scalar = |name: &str, actual: f64, expected: f64| {
        if actual.is_finite() && expected.is_finite() {
            worst.metric = worst.metric.max((actual - expected).abs());
        }
        if !close(actual, expected, METRIC_TOLERANCE) {
            problems.push(format!("{name}: {actual} vs expected {expected}"));
        }
    };
    scalar("cllr", cllr(&llrs, &labels).map_err(|e| e.to_string())?, number(&e.cllr)?);
    scalar("cllr_min", cllr_min(&llrs, &labels).map_err(|e| e.to_string())?, number(&e.cllr_min)?);
    let dev = devpav(&llrs, &labels).map_err(|e| e.to_string())?;
    match e.devpav {
        None if dev.is_finite() => problems.push(format!("devpav: {dev}, expected no finite value")),
        None => {}
        Some(x) => scalar("devpav", dev, x),
    }
    let pav = pav_llrs(&scores, &labels).map_err(|e| e.to_string())?;
    let expected_pav = numbers(&e.pav_llrs)?;
    if expected_pav.len() != pav.len() {
        problems.push(format!("pav_llrs: {} values, expected {}", pav.len(), expected_pav.len()));
    }
    for (a, x) in pav.iter().zip(&expected_pav) {
        if a.is_finite() && x.is_finite() {
            worst.pav = worst.pav.max((a - x).abs());
        }
    }
    let bad: Vec<String> = pav
        .iter()
        .zip(&expected_pav)
        .enumerate()
        .filter(|(_, (a, x))| !close(**a, **x, METRIC_TOLERANCE))
        .map(|(i, (a, x))| format!("[{i}] {a} vs {x}"))
        .collect();
    if !bad.is_empty() {
        problems.push(format!(
            "pav_llrs differ at {} of {}: {}",
            bad.len(),
            pav.len(),
            bad[..bad.len().min(5)].join(", ")
        ));
    }
    let fit = LogisticCalibrator::fit(&scores, &labels);
    match (&e.logistic, fit) {
        (None, Err(LrError::Separated { .. })) => {
            if e.elub.is_some() {
                problems.push("elub given without logistic".into());
            }
        }
        (None, Ok(f)) => problems.push(format!("logistic: fitted {f:?}, expected no finite optimum")),
        (None, Err(other)) => problems.push(format!("logistic: error {other}, expected separation")),
        (Some(_), Err(err)) => problems.push(format!("logistic: {err}")),
        (Some(x), Ok(f)) => {
            for (name, a, b) in [("slope_ln", f.slope_ln, x.slope_ln), ("intercept_ln", f.intercept_ln, x.intercept_ln)]
            {
                worst.logistic_relative = worst.logistic_relative.max((a - b).abs() / b.abs());
                if (a - b).abs() > LOGISTIC_RELATIVE * b.abs() {
                    problems.push(format!("{name}: {a} vs expected {b}"));
                }
            }
            let ours: Vec<f64> = scores.iter().map(|&s| f.llr(s)).collect();
            let expected_llrs = numbers(&x.llrs)?;
            if expected_llrs.len() != ours.len() {
                problems.push(format!("logistic llrs: {} values, expected {}", ours.len(), expected_llrs.len()));
            }
            let largest = ours.iter().zip(&expected_llrs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            worst.logistic_llr = worst.logistic_llr.max(largest);
            if largest.is_nan() || largest > LOGISTIC_LLR {
                problems.push(format!("logistic llrs: worst difference {largest}"));
            }
            match &e.elub {
                None => problems.push("elub missing while logistic is given".into()),
                Some([lo, hi]) => {
                    let b = elub(&ours, &labels, 1, 0.01).map_err(|e| e.to_string())?;
                    let (lo, hi) = (number(lo)?, number(hi)?);
                    // One step exactly, as differences of decimals: 1.13 - 1.12 is 0.010000000000000009.
                    let within = |a: f64, b: f64| (a - b).abs() <= ELUB_STEP * (1.0 + 1e-9);
                    worst.elub = worst.elub.max((b.lower - lo).abs()).max((b.upper - hi).abs());
                    if !(within(b.lower, lo) && within(b.upper, hi)) {
                        problems.push(format!("elub: [{}, {}] vs expected [{lo}, {hi}]", b.lower, b.upper));
                    }
                }
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

#[test]
fn lr_matches_lir_and_sklearn() {
    let mut total = 0;
    let mut failures = Vec::new();
    let mut worst = Worst::default();
    for file in case_files() {
        let cases: Vec<Case> = common::read_json_cases(&file, "likelihood-ratio cases");
        assert!(!cases.is_empty(), "{} holds no cases", file.display());
        for (index, case) in cases.iter().enumerate() {
            total += 1;
            if let Err(problem) = check(case, &mut worst) {
                let name = case.name.as_deref().unwrap_or("");
                failures.push(format!("{} case {index} {name}: {problem}", file.display()));
            }
        }
    }
    println!("{total} likelihood-ratio cases checked, {} failed", failures.len());
    println!(
        "largest differences: metrics {:e}, finite PAV llrs {:e}, logistic parameters {:e} relative, logistic llrs \
         {:e}, ELUB {:e}",
        worst.metric, worst.pav, worst.logistic_relative, worst.logistic_llr, worst.elub
    );
    assert!(failures.is_empty(), "{} of {total} cases differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_named_file_that_is_missing_fails() {
    // The rule of `common::case_locations`: exercised here without touching the environment.
    let result = std::panic::catch_unwind(|| {
        common::read_json_cases::<Case>(Path::new("/nonexistent/lr-cases.json"), "likelihood-ratio cases")
    });
    assert!(result.is_err());
}
