//! A trained run's retrieval encoder as one safetensors file: the fine-tuned image encoder and
//! its BN necks under Burn's parameter names, with the architecture, the preprocessing and the
//! provenance in the file's metadata, so that the file is usable without the run directory.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn_store::{ModuleSnapshot, SafetensorsStore};
use serde::Serialize;

use super::{Preprocessing, RetrievalError};
use crate::model::{EncoderArchitecture, HandIdModel, ReidEncoder};
use crate::provenance::{TOOL, sha256_bytes, sha256_file};
use crate::train::{RUN_MODEL_FILE, RunModel};

/// The `format` metadata of an exported CLIP-HandID model.
pub const EXPORT_FORMAT: &str = "clip-handid-model/1";

/// Largest safetensors header read when telling model files apart.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// What [`export_run`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The model file.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// Dimension of the feature it computes.
    pub dim: usize,
    /// The encoder's architecture.
    pub architecture: EncoderArchitecture,
    /// Its preprocessing.
    pub preprocessing: Preprocessing,
}

/// The safetensors metadata of `path`, or `None` when the file is not safetensors (e.g. a
/// PyTorch archive) or has no metadata. Only the header is read.
pub(super) fn safetensors_metadata(path: &Path) -> Result<Option<HashMap<String, String>>, RetrievalError> {
    let mut file = std::fs::File::open(path).map_err(|e| RetrievalError::io(path, e))?;
    let mut len = [0u8; 8];
    if file.read_exact(&mut len).is_err() {
        return Ok(None);
    }
    let len = u64::from_le_bytes(len);
    let size = file.metadata().map_err(|e| RetrievalError::io(path, e))?.len();
    if len == 0 || len > MAX_HEADER_BYTES || len + 8 > size {
        return Ok(None);
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| RetrievalError::io(path, e))?;
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&header) else { return Ok(None) };
    let Some(metadata) = header.get("__metadata__").and_then(|m| m.as_object()) else { return Ok(None) };
    Ok(Some(metadata.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect()))
}

/// The metadata of an exported model file (`format`, `architecture`, `preprocessing`,
/// `feature_dim`, `provenance`); an error naming the file when it is not one.
pub fn read_export_metadata(path: &Path) -> Result<HashMap<String, String>, RetrievalError> {
    if !path.is_file() {
        return Err(RetrievalError::Missing { path: path.to_path_buf() });
    }
    match safetensors_metadata(path)? {
        Some(m) if m.get("format").map(String::as_str) == Some(EXPORT_FORMAT) => Ok(m),
        _ => Err(RetrievalError::Model {
            path: path.to_path_buf(),
            reason: format!("is not an exported CLIP-HandID model (no `format: {EXPORT_FORMAT}` in its metadata)"),
        }),
    }
}

fn metadata_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T, RetrievalError> {
    let fail = |reason: String| RetrievalError::Model { path: path.to_path_buf(), reason };
    let text = metadata.get(key).ok_or_else(|| fail(format!("its metadata lacks `{key}`")))?;
    serde_json::from_str(text).map_err(|e| fail(format!("its metadata's `{key}` is not valid: {e}")))
}

/// Rebuilds the encoder an exported file describes and loads its tensors.
pub(super) fn load_exported<B: Backend>(
    path: &Path,
    metadata: &HashMap<String, String>,
    device: &B::Device,
) -> Result<(ReidEncoder<B>, EncoderArchitecture, Preprocessing), RetrievalError> {
    let fail = |reason: String| RetrievalError::Model { path: path.to_path_buf(), reason };
    let architecture: EncoderArchitecture = metadata_json(path, metadata, "architecture")?;
    let preprocessing: Preprocessing = metadata_json(path, metadata, "preprocessing")?;
    // Building layers of impossible sizes would panic inside Burn: check them first.
    let config = clip_burn::ClipConfig {
        embed_dim: architecture.embed_dim,
        vision: architecture.vision.clone(),
        text: clip_burn::TextConfig::base(),
    };
    config.validate().map_err(|e| fail(format!("its architecture is impossible: {e}")))?;
    let mut encoder = ReidEncoder::<B>::new(&architecture, device)
        .map_err(|e| fail(format!("its architecture cannot be built: {e}")))?;
    let bytes = std::fs::read(path).map_err(|e| RetrievalError::io(path, e))?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = encoder.load_from(&mut store).map_err(|e| fail(format!("its tensors do not fit: {e}")))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(fail(format!(
            "its tensors do not fit its architecture (missing {:?}, errors {:?})",
            result.missing.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            result.errors
        )));
    }
    Ok((encoder, architecture, preprocessing))
}

/// Writes the selected model of the training run in `run_dir` (its `best/` model) as one
/// safetensors file at `out`: the image encoder and both BN necks, with the architecture, the
/// preprocessing and the provenance (tool, the run's source weights and their SHA-256, the
/// run's `model.json` SHA-256) in the metadata. The file is written atomically.
///
/// Fails, naming the path, when `run_dir` is missing, is not a training run (no `model.json`)
/// or holds no trained model yet (no `best/model.mpk`), or when `out` cannot be written.
pub fn export_run<B: Backend>(run_dir: &Path, out: &Path, device: &B::Device) -> Result<ExportReport, RetrievalError> {
    if !run_dir.is_dir() {
        return Err(RetrievalError::Missing { path: run_dir.to_path_buf() });
    }
    let run_err = |reason: &str| RetrievalError::Run { path: run_dir.to_path_buf(), reason: reason.to_string() };
    let model_json = run_dir.join(RUN_MODEL_FILE);
    if !model_json.is_file() {
        return Err(run_err("is not a training run directory (no model.json); train one with `handid train`"));
    }
    let best = run_dir.join("best").join("model.mpk");
    if !best.is_file() {
        return Err(run_err("holds no trained model yet (no best/model.mpk): no training epoch has finished"));
    }
    let run = RunModel::read(&model_json).map_err(|e| RetrievalError::io(&model_json, e))?;
    let model = HandIdModel::<B>::new(&run.model, device)
        .map_err(|e| RetrievalError::Run { path: model_json.clone(), reason: e.to_string() })?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let model = model.load_file(best.with_extension(""), &recorder, device).map_err(|e| RetrievalError::Run {
        path: best.clone(),
        reason: format!("cannot load the trained model: {e}"),
    })?;
    let architecture = EncoderArchitecture::of(&run.model);
    let [height, width] = run.model.input_size;
    let preprocessing = Preprocessing::Reid { height: height as u32, width: width as u32 };
    let encoder = model.into_reid_encoder();
    let provenance = serde_json::json!({
        "tool": TOOL,
        "run_model_sha256": sha256_file(&model_json).map_err(|e| RetrievalError::io(&model_json, e))?,
        "source_weights": run.weights,
        "source_weights_sha256": run.weights_sha256,
        "identities": run.identities.len(),
        "seed": run.seed,
        "backend": run.backend,
    });
    let architecture_json = serde_json::to_string(&architecture)
        .map_err(|e| RetrievalError::io(out, format!("cannot serialise the architecture: {e}")))?;
    let mut store = SafetensorsStore::from_bytes(None)
        .metadata("format", EXPORT_FORMAT)
        .metadata("architecture", architecture_json)
        .metadata("preprocessing", preprocessing.to_json().to_string())
        .metadata("feature", "concat(bn_neck(pre-projection feature), bn_neck(projected embedding))")
        .metadata("feature_dim", architecture.feature_dim().to_string())
        .metadata("provenance", provenance.to_string());
    encoder.save_into(&mut store).map_err(|e| RetrievalError::io(out, format!("cannot serialise the model: {e}")))?;
    let bytes = store.get_bytes().map_err(|e| RetrievalError::io(out, format!("cannot serialise the model: {e}")))?;
    clip_burn::io::check_output_file(out, bytes.len() as u64)
        .map_err(|e| RetrievalError::io(out, format!("cannot write the model there: {e}")))?;
    clip_burn::io::write_atomic(out, &bytes).map_err(|e| RetrievalError::io(out, e))?;
    Ok(ExportReport {
        path: out.to_path_buf(),
        sha256: sha256_bytes(&bytes),
        dim: architecture.feature_dim(),
        architecture,
        preprocessing,
    })
}
