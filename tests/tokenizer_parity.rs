//! CLIP tokenizer parity with open_clip's `tokenize` (docs/FIXTURES.md section 2): the committed
//! cases in `tests/fixtures/tokenizer/cases.json`, plus every JSON file named in the
//! colon-separated `CLIP_TOKENIZER_CASES`.

mod common;

use std::path::{Path, PathBuf};

use clip_handid::clip::tokenizer::{CONTEXT_LENGTH, ClipTokenizer};

/// One case: a text and the 77 ids open_clip gives it.
#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<i64>,
}

/// The committed case file plus the files named by `CLIP_TOKENIZER_CASES`.
fn case_files() -> Vec<PathBuf> {
    common::case_locations(
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/cases.json")],
        "CLIP_TOKENIZER_CASES",
    )
}

fn read_cases(path: &Path) -> Vec<Case> {
    common::read_json_cases(path, "tokenizer cases")
}

#[test]
fn tokenizer_matches_open_clip() {
    let tokenizer = ClipTokenizer::new().expect("the embedded CLIP vocabulary loads");
    let mut total = 0;
    let mut failures = Vec::new();
    for file in case_files() {
        let cases = read_cases(&file);
        assert!(!cases.is_empty(), "{} holds no cases", file.display());
        for (index, case) in cases.iter().enumerate() {
            total += 1;
            assert_eq!(
                case.ids.len(),
                CONTEXT_LENGTH,
                "{} case {index}: expected {CONTEXT_LENGTH} ids",
                file.display()
            );
            let actual: Vec<i64> = match tokenizer.tokenize(&case.text, CONTEXT_LENGTH) {
                Ok(ids) => ids.into_iter().map(i64::from).collect(),
                Err(e) => {
                    failures.push(format!("{} case {index}: text {:?}: error {e}", file.display(), case.text));
                    continue;
                }
            };
            if actual != case.ids {
                failures.push(format!(
                    "{} case {index}: text {:?}\n  expected {:?}\n  actual   {:?}",
                    file.display(),
                    case.text,
                    case.ids,
                    actual
                ));
            }
        }
    }
    println!("{total} tokenizer cases checked, {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {total} cases differ:\n{}", failures.len(), failures.join("\n"));
}
