//! Models for retrieval, loaded from one file: CLIP weights (the zero-shot image embedding) or
//! a CLIP-HandID model exported from a training run (the image encoder with its BN necks, the
//! feature the method evaluates with). The two are told apart by the file's metadata, and both
//! implement [`FeatureExtractor`], so everything that takes an extractor (feature extraction,
//! the protocol evaluation, the gallery index) takes either.
//!
//! ```no_run
//! use std::path::Path;
//! use burn::backend::Flex;
//! use handid::retrieval::RetrievalModel;
//! # fn main() -> Result<(), handid::retrieval::RetrievalError> {
//! let device = Default::default();
//! // CLIP weights or a file written by `handid export`: the same call.
//! let model = RetrievalModel::<Flex>::load(Path::new("model.safetensors"), &device)?;
//! let score = model.compare(Path::new("a.jpg"), Path::new("b.jpg"), &device)?;
//! println!("cosine similarity {score:.3} ({} model, SHA-256 {})", model.kind(), model.sha256());
//! # Ok(()) }
//! ```

mod casework;
mod differential;
mod evaluate;
mod export;
mod likelihood;

pub use casework::{
    Candidate, QueryHits, QueryReport, build_index, check_index_model, collect_images, embed_to_file, hash_files,
    query_index, query_index_calibrated,
};
pub use differential::{Differential, DifferentialResults, EvaluateOptions, GroupPlan, SubsetDifferential};
pub use evaluate::{Evaluation, evaluate_extractor, evaluate_model};
pub use export::{EXPORT_FORMAT, ExportReport, export_run, read_export_metadata};
pub use likelihood::{
    CalibrationData, CalibrationSummary, Comparison, LoadedCalibration, ModelCalibration, calibrate_model,
    compare_images, load_calibration,
};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use clip_burn::preprocess::Transform;
use clip_burn::vision::ImageEncoder;
use clip_burn::{Clip, ClipConfig, ClipError};
use serde::{Deserialize, Serialize};

use crate::eval::{EvalError, FeatureExtractor, FeatureMatrix, FeatureOptions, ModelInfo, extract_features};
use crate::model::ReidEncoder;
use crate::provenance::{Provenance, sha256_file};

/// Errors of loading, exporting and using a retrieval model; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// A file or directory that must exist does not.
    #[error("{} does not exist", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is not a model this crate can use, or does not fit its own description.
    #[error("{}: {reason}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A training run directory lacks what it needs.
    #[error("{}: {reason}", path.display())]
    Run {
        /// The run directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// CLIP weights could not be loaded (the error names the file).
    #[error(transparent)]
    Clip(#[from] ClipError),
    /// Feature extraction or the index failed (the error names the image or file).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Calibration or likelihood ratios failed: too few comparisons, a calibration file made
    /// with another model or unreadable (the error names the file).
    #[error(transparent)]
    Lr(#[from] crate::lr::LrError),
}

impl RetrievalError {
    pub(crate) fn io(path: &Path, e: impl fmt::Display) -> Self {
        Self::Io { path: path.to_path_buf(), reason: e.to_string() }
    }
}

/// The preprocessing of a model's input images, as recorded in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Preprocessing {
    /// CLIP's: shorter side resized to `size`, centre crop, CLIP normalisation.
    Clip {
        /// Side of the square input.
        size: u32,
    },
    /// Re-identification: resized to exactly `height` x `width`, ImageNet normalisation.
    Reid {
        /// Input height.
        height: u32,
        /// Input width.
        width: u32,
    },
}

impl Preprocessing {
    /// The transform that applies it.
    pub fn transform(&self) -> Transform {
        match *self {
            Self::Clip { size } => Transform::Clip { size },
            Self::Reid { height, width } => Transform::Reid { height, width },
        }
    }

    /// As JSON (`{"kind": "reid", "height": 224, "width": 224}`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Which kind of model a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// CLIP weights: the feature is the CLIP image embedding.
    Clip,
    /// An exported CLIP-HandID encoder: the feature is both BN'd image features concatenated.
    ClipHandid,
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Clip => "clip",
            Self::ClipHandid => "clip-handid",
        })
    }
}

enum Encoder<B: Backend> {
    Clip(Box<ImageEncoder<B>>),
    HandId(Box<ReidEncoder<B>>),
}

/// A model loaded for retrieval from one file, with what identifies it: its kind, its
/// preprocessing, the feature's dimension and the SHA-256 of the file.
pub struct RetrievalModel<B: Backend> {
    encoder: Encoder<B>,
    kind: ModelKind,
    path: PathBuf,
    sha256: String,
    preprocessing: Preprocessing,
    dim: usize,
    name: String,
}

impl<B: Backend> fmt::Debug for RetrievalModel<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetrievalModel")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("preprocessing", &self.preprocessing)
            .field("dim", &self.dim)
            .finish()
    }
}

impl<B: Backend> RetrievalModel<B> {
    /// Loads CLIP weights (any format [`Clip::from_file`] reads) or a model written by
    /// [`export_run`], told apart by the file's safetensors metadata (`format` =
    /// [`EXPORT_FORMAT`]). The file is hashed (SHA-256) as it is loaded.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, RetrievalError> {
        Self::load_with_config(path, None, device)
    }

    /// [`load`](Self::load), with CLIP weights read into the architecture `clip_config` instead
    /// of the one inferred from the tensor shapes (for checkpoints whose head counts do not
    /// follow OpenAI's width / 64 rule). An exported model carries its own architecture: giving
    /// one for it is an error.
    pub fn load_with_config(
        path: &Path,
        clip_config: Option<&ClipConfig>,
        device: &B::Device,
    ) -> Result<Self, RetrievalError> {
        if !path.is_file() {
            return Err(if path.exists() {
                RetrievalError::Model { path: path.to_path_buf(), reason: "is not a file".into() }
            } else {
                RetrievalError::Missing { path: path.to_path_buf() }
            });
        }
        let sha256 = sha256_file(path).map_err(|e| RetrievalError::io(path, e))?;
        if let Some(metadata) = export::safetensors_metadata(path)?
            && metadata.get("format").map(String::as_str) == Some(EXPORT_FORMAT)
        {
            if clip_config.is_some() {
                return Err(RetrievalError::Model {
                    path: path.to_path_buf(),
                    reason: "is an exported CLIP-HandID model, which carries its own architecture; a CLIP \
                             architecture (--config) applies to CLIP weights only"
                        .into(),
                });
            }
            let (encoder, architecture, preprocessing) = export::load_exported::<B>(path, &metadata, device)?;
            let name = format!("CLIP-HandID {} (BN-neck feature)", vision_label(&architecture.vision));
            return Ok(Self {
                encoder: Encoder::HandId(Box::new(encoder)),
                kind: ModelKind::ClipHandid,
                path: path.to_path_buf(),
                sha256,
                preprocessing,
                dim: architecture.feature_dim(),
                name,
            });
        }
        let (clip, config) = match clip_config {
            Some(config) => (Clip::<B>::from_safetensors_with_config(path, config, device)?, config.clone()),
            None => Clip::<B>::from_file(path, device)?,
        };
        let size = config.vision.image_size() as u32;
        Ok(Self {
            encoder: Encoder::Clip(Box::new(clip.visual)),
            kind: ModelKind::Clip,
            path: path.to_path_buf(),
            sha256,
            preprocessing: Preprocessing::Clip { size },
            dim: config.embed_dim,
            name: format!("CLIP {} image embedding", vision_label(&config.vision)),
        })
    }

    /// CLIP weights or an exported CLIP-HandID model.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lower-case hex SHA-256 of the model file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// A description such as `CLIP-HandID ResNet (BN-neck feature)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How input images are preprocessed.
    pub fn preprocessing(&self) -> Preprocessing {
        self.preprocessing
    }

    /// The transform of [`preprocessing`](Self::preprocessing).
    pub fn transform(&self) -> Transform {
        self.preprocessing.transform()
    }

    /// Dimension of the feature.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The feature options of retrieval with this model: the protocol's flip-sum.
    pub fn feature_options(&self) -> FeatureOptions {
        FeatureOptions::default()
    }

    /// What produced features of this model on `device`, for the outputs' records.
    pub fn provenance(&self, device: &B::Device) -> Provenance {
        Provenance::now(
            &self.path,
            &self.sha256,
            &self.kind.to_string(),
            self.preprocessing.to_json(),
            self.feature_options().flip_sum,
            &B::name(device),
        )
    }

    /// The model information a gallery index records: name, file, SHA-256, preprocessing,
    /// flip-sum. Two models give the same information exactly when their files are the same.
    pub fn index_info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            weights: Some(self.path.display().to_string()),
            preprocessing: Some(self.preprocessing.to_json().to_string()),
            flip_sum: self.feature_options().flip_sum,
            extra: BTreeMap::from([
                ("model_sha256".to_string(), self.sha256.clone()),
                ("model_kind".to_string(), self.kind.to_string()),
            ]),
        }
    }

    /// The L2-normalised, flip-summed features of image files, `[paths.len(), dim]`; `progress`
    /// receives the number of images done. Errors name the image at fault.
    pub fn embed<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
        device: &B::Device,
        progress: impl FnMut(usize),
    ) -> Result<FeatureMatrix, RetrievalError> {
        Ok(extract_features(self, paths, &self.transform(), &self.feature_options(), device, progress)?)
    }

    /// The cosine similarity of two images' features (in `[-1, 1]`; higher is more alike).
    pub fn compare(&self, a: &Path, b: &Path, device: &B::Device) -> Result<f32, RetrievalError> {
        let features = self.embed(&[a, b], device, |_| {})?;
        Ok(cosine(features.row(0), features.row(1)))
    }
}

impl<B: Backend> FeatureExtractor<B> for RetrievalModel<B> {
    /// The CLIP image embedding, or the exported model's BN-neck feature.
    fn extract(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        match &self.encoder {
            Encoder::Clip(visual) => visual.forward(pixels).embedding,
            Encoder::HandId(encoder) => encoder.forward(pixels),
        }
    }
}

fn vision_label(vision: &clip_burn::VisionConfig) -> &'static str {
    match vision {
        clip_burn::VisionConfig::Vit(_) => "ViT",
        clip_burn::VisionConfig::ResNet(_) => "ResNet",
    }
}

/// Cosine similarity of two feature vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert!((cosine(&[3.0, 4.0], &[6.0, 8.0]) - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn preprocessing_round_trips_through_json() {
        let p = Preprocessing::Reid { height: 224, width: 112 };
        assert_eq!(p.to_json(), serde_json::json!({"kind": "reid", "height": 224, "width": 112}));
        let back: Preprocessing = serde_json::from_value(p.to_json()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.transform(), Transform::Reid { height: 224, width: 112 });
    }
}
