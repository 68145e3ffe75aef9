//! Where an output came from: the tool's version, the SHA-256 of the model file and of every
//! input image, the preprocessing, the backend and the seeds. Every file the casework, training
//! and evaluation calls write carries a [`Provenance`], so a result can be traced and checked
//! again later.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The tool and version recorded in every output, e.g. `handid 0.1.0`.
pub const TOOL: &str = concat!("handid ", env!("CARGO_PKG_VERSION"));

/// Lower-case hex SHA-256 of a file's bytes; the error names nothing (callers name the file).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    clip_burn::weights::download::sha256_file(path)
}

/// Lower-case hex SHA-256 of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What produced an output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The tool and its version ([`TOOL`]).
    pub tool: String,
    /// The model file as it was given.
    pub model: String,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// `clip` (CLIP weights, zero-shot image embedding) or `clip-handid` (an exported
    /// CLIP-HandID encoder, BN-neck feature).
    pub model_kind: String,
    /// The preprocessing, as JSON (`{"kind": "reid", "height": 224, "width": 224}`).
    pub preprocessing: serde_json::Value,
    /// Whether features are flip-summed (the image's feature plus its mirror image's).
    pub flip_sum: bool,
    /// The compute backend (Burn's name for it).
    pub backend: String,
    /// SHA-256 of the index file queried, for query results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_sha256: Option<String>,
    /// SHA-256 of the calibration file (`handid calibrate`) that turned scores into likelihood
    /// ratios, for outputs with likelihood ratios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_sha256: Option<String>,
    /// Seeds that determined the output, by purpose (empty for deterministic outputs).
    #[serde(default)]
    pub seeds: BTreeMap<String, u64>,
    /// Seconds since the Unix epoch when the output was made.
    pub created_unix: u64,
}

impl Provenance {
    /// A provenance record made now, without seeds or index.
    pub fn now(
        model: &Path,
        model_sha256: &str,
        model_kind: &str,
        preprocessing: serde_json::Value,
        flip_sum: bool,
        backend: &str,
    ) -> Self {
        let created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            tool: TOOL.to_string(),
            model: model.display().to_string(),
            model_sha256: model_sha256.to_string(),
            model_kind: model_kind.to_string(),
            preprocessing,
            flip_sum,
            backend: backend.to_string(),
            index_sha256: None,
            calibration_sha256: None,
            seeds: BTreeMap::new(),
            created_unix,
        }
    }
}

/// An input image and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashedImage {
    /// The path as given.
    pub path: String,
    /// SHA-256 of the file.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_the_published_test_vectors() {
        assert_eq!(sha256_bytes(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_bytes(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let dir = std::env::temp_dir().join(format!("handid-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("abc.txt");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(sha256_file(&file).unwrap(), sha256_bytes(b"abc"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
