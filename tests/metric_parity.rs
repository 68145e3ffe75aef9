//! Retrieval metric parity with an independent numpy implementation of the published formulas
//! (docs/FIXTURES.md section 3): the committed cases in `tests/fixtures/metrics/cases.json`
//! (written by `scripts/fixtures/make_metric_cases.py`), plus every JSON file named in the
//! colon-separated `HANDID_METRIC_CASES`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip_handid::handid::eval::{Similarity, evaluate};

/// Tolerance of every compared value (docs/FIXTURES.md).
const TOLERANCE: f64 = 1e-6;

/// One case. Identities may be JSON integers or strings; they are mapped to `u64` labels.
#[derive(serde::Deserialize)]
struct Case {
    #[serde(default)]
    name: Option<String>,
    similarity: Vec<Vec<f32>>,
    query_ids: Vec<serde_json::Value>,
    gallery_ids: Vec<serde_json::Value>,
    cmc: Vec<f64>,
    map_interpolated: f64,
    map_standard: f64,
    minp: f64,
}

/// The committed case file plus the files named by `HANDID_METRIC_CASES`.
fn case_files() -> Vec<PathBuf> {
    common::case_locations(
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/cases.json")],
        "HANDID_METRIC_CASES",
    )
}

fn read_cases(path: &Path) -> Vec<Case> {
    common::read_json_cases(path, "metric cases")
}

/// Maps JSON identities (numbers or strings) to dense `u64` labels; equal values, equal labels.
fn labels(ids: &[serde_json::Value], table: &mut HashMap<String, u64>) -> Vec<u64> {
    ids.iter()
        .map(|v| {
            let key = match v {
                serde_json::Value::String(s) => format!("s:{s}"),
                other => format!("v:{other}"),
            };
            let next = table.len() as u64;
            *table.entry(key).or_insert(next)
        })
        .collect()
}

/// Compares one case; returns the differences found.
fn check(case: &Case) -> Result<(), String> {
    let mut table = HashMap::new();
    let query_ids = labels(&case.query_ids, &mut table);
    let gallery_ids = labels(&case.gallery_ids, &mut table);
    let similarity = Similarity::from_rows(&case.similarity).map_err(|e| e.to_string())?;
    let metrics = evaluate(&similarity, &query_ids, &gallery_ids, 10).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if metrics.cmc.len() != case.cmc.len() {
        problems.push(format!("cmc has {} ranks, expected {}", metrics.cmc.len(), case.cmc.len()));
    }
    for (k, (a, e)) in metrics.cmc.iter().zip(&case.cmc).enumerate() {
        if (a - e).abs() > TOLERANCE {
            problems.push(format!("cmc rank-{}: {a} vs expected {e}", k + 1));
        }
    }
    for (name, a, e) in [
        ("map_interpolated", metrics.map_interpolated, case.map_interpolated),
        ("map_standard", metrics.map_standard, case.map_standard),
        ("minp", metrics.minp, case.minp),
    ] {
        if (a - e).abs() > TOLERANCE {
            problems.push(format!("{name}: {a} vs expected {e}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

#[test]
fn metrics_match_reference_cases() {
    let mut total = 0;
    let mut failures = Vec::new();
    for file in case_files() {
        let cases = read_cases(&file);
        assert!(!cases.is_empty(), "{} holds no cases", file.display());
        for (index, case) in cases.iter().enumerate() {
            total += 1;
            if let Err(problem) = check(case) {
                let name = case.name.as_deref().unwrap_or("");
                failures.push(format!("{} case {index} {name}: {problem}", file.display()));
            }
        }
    }
    println!("{total} metric cases checked, {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {total} cases differ:\n{}", failures.len(), failures.join("\n"));
}
