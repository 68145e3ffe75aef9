//! Running the `handid` binary from the integration tests of the command's likelihood-ratio
//! features: success with its stdout, failure with one `error:` line, fixture paths and JSON.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Small CLIP weights (a ModifiedResNet for 64 x 64 images, random parameters) and their
/// architecture (given with `--config`: their head count does not follow OpenAI's rule).
pub const WEIGHTS: &str = "tests/fixtures/clip/resnet_tiny/weights.safetensors";
/// The architecture of [`WEIGHTS`].
pub const CONFIG: &str = "tests/fixtures/clip/resnet_tiny/config.json";

/// `rel` under the repository root, as a string argument.
pub fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel).to_str().unwrap().to_string()
}

/// `handid args`, its status and output.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handid")).args(args).output().expect("the handid binary runs")
}

/// `handid args`, which must succeed; its stdout.
pub fn handid(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "handid {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs handid expecting exit code 1 with one line on stderr, no panic; returns the line.
pub fn fails(args: &[&str]) -> String {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "handid {}: {stderr}", args.join(" "));
    assert!(!stderr.contains("panicked"), "handid {} panicked: {stderr}", args.join(" "));
    assert!(stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1, "not one line: {stderr:?}");
    stderr
}

/// `path` as an argument.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// The JSON file at `path`.
pub fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"))).unwrap()
}
