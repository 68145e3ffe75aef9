//! Helpers shared by the parity tests: reading reference tensors and comparing rows.
#![allow(dead_code)]

pub mod cli;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clip_handid::backend::BackendKind;
use safetensors::{Dtype, SafeTensors};

/// The variable that names the backend the parity and training tests run on.
pub const TEST_BACKEND_VARIABLE: &str = "CLIP_HANDID_TEST_BACKEND";

/// The backend named by `CLIP_HANDID_TEST_BACKEND`: `flex` (the default), `wgpu` or `cuda`. An
/// unknown name fails the test; so does, in [`on_test_backend!`], a backend that is named but
/// not compiled in or that has no device.
pub fn test_backend() -> BackendKind {
    match std::env::var(TEST_BACKEND_VARIABLE) {
        Ok(name) if !name.is_empty() => name.parse().unwrap_or_else(|e| panic!("{TEST_BACKEND_VARIABLE}={name}: {e}")),
        _ => BackendKind::Flex,
    }
}

/// Runs `$body` with `$B` bound to the (non-autodiff) backend of [`test_backend`] and `$device`
/// to its default device; a backend that is not compiled in or has no device fails the test
/// with the reason instead of skipping it.
#[allow(unused_macros)]
macro_rules! on_test_backend {
    (|$B:ident, $device:ident| $body:expr) => {{
        let kind = $crate::common::test_backend();
        clip_handid::with_backend!(kind, |$B, $device| $body)
            .unwrap_or_else(|e| panic!("{}={kind}: {e}", $crate::common::TEST_BACKEND_VARIABLE))
    }};
}
#[allow(unused_imports)]
pub(crate) use on_test_backend;

/// A reference tensor: shape and values (f32, or ids widened to i64).
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
}

/// Reads every tensor of a safetensors file (f32 and i64/i32 supported).
pub fn read_tensors(path: &Path) -> BTreeMap<String, RefTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let (floats, ints) = match view.dtype() {
                Dtype::F32 => {
                    (data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(), vec![])
                }
                Dtype::I64 => {
                    (vec![], data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect())
                }
                Dtype::I32 => {
                    (vec![], data.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect())
                }
                other => panic!("{}: tensor {name} has unsupported dtype {other:?}", path.display()),
            };
            (name, RefTensor { shape: view.shape().to_vec(), floats, ints })
        })
        .collect()
}

/// The committed case locations plus those named by a colon-separated environment variable.
/// A location named by the variable that does not exist is an error, not a skip.
pub fn case_locations(committed: Vec<PathBuf>, variable: &str) -> Vec<PathBuf> {
    let mut all = committed;
    if let Ok(extra) = std::env::var(variable) {
        for location in extra.split(':').filter(|s| !s.is_empty()) {
            let path = PathBuf::from(location);
            assert!(path.exists(), "{variable} names {location}, which does not exist");
            all.push(path);
        }
    }
    all
}

/// Row-wise comparison as docs/FIXTURES.md section 1 defines it.
#[derive(Debug, Clone, Copy)]
pub struct RowStats {
    pub worst_cosine: f64,
    pub worst_error: f64,
    /// Allowed error: 1e-3 * max(1, max |ref|) of the worst row.
    pub worst_ratio: f64,
}

impl RowStats {
    pub fn passes(&self) -> bool {
        self.worst_cosine >= 0.99999 && self.worst_ratio <= 1.0
    }
}

/// Compares `actual` with `expected`, both split into `rows` equal rows.
pub fn compare_rows(actual: &[f32], expected: &[f32], rows: usize) -> RowStats {
    assert_eq!(actual.len(), expected.len(), "element count differs");
    let per_row = expected.len() / rows.max(1);
    let mut stats = RowStats { worst_cosine: 1.0, worst_error: 0.0, worst_ratio: 0.0 };
    for r in 0..rows {
        let a = &actual[r * per_row..(r + 1) * per_row];
        let e = &expected[r * per_row..(r + 1) * per_row];
        let (mut dot, mut na, mut ne, mut max_err, mut max_ref) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (&x, &y) in a.iter().zip(e) {
            let (x, y) = (x as f64, y as f64);
            dot += x * y;
            na += x * x;
            ne += y * y;
            max_err = max_err.max((x - y).abs());
            max_ref = max_ref.max(y.abs());
        }
        let cosine = if na == 0.0 && ne == 0.0 { 1.0 } else { dot / (na.sqrt() * ne.sqrt()).max(f64::MIN_POSITIVE) };
        let allowed = 1e-3 * max_ref.max(1.0);
        stats.worst_cosine = stats.worst_cosine.min(if cosine.is_nan() { -1.0 } else { cosine });
        stats.worst_error = stats.worst_error.max(if max_err.is_nan() { f64::INFINITY } else { max_err });
        stats.worst_ratio = stats.worst_ratio.max(if max_err.is_nan() { f64::INFINITY } else { max_err / allowed });
    }
    stats
}

/// Reads a JSON array of cases; any problem is a test failure naming the file.
pub fn read_json_cases<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Vec<T> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {what} {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what} {} are not valid: {e}", path.display()))
}

/// Deterministic pseudo-random numbers in [-1, 1) (xorshift), for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("clip-handid-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
