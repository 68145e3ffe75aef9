//! Replays the committed fuzzing corpus (`tests/fuzz_corpus/<target>/`): inputs that the
//! cargo-fuzz targets in `fuzz/` found interesting, including any that once crashed. Every file
//! goes through the same entry point as in fuzzing; errors are fine, a panic fails the test.
//! No nightly compiler or cargo-fuzz is needed.

mod fuzz_harness;

use std::path::Path;

#[test]
fn every_committed_fuzz_input_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut total = 0;
    for target in fuzz_harness::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no inputs", dir.display());
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| fuzz_harness::run(target, &data));
            assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
        }
        total += files.len();
    }
    eprintln!("replayed {total} inputs");
}
