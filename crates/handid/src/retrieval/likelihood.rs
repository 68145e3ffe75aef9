//! Likelihood ratios with a [`RetrievalModel`]: a model's comparison scores calibrated on
//! identities it was not trained on ([`calibrate_model`], `handid calibrate`), and casework
//! comparisons reported with their calibrated, bounded likelihood ratio ([`compare_images`],
//! `handid compare --calibration`). The arithmetic is [`crate::lr`]'s (`docs/LR.md`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{RetrievalError, RetrievalModel, cosine, hash_files};
use crate::data::{FolderDataset, SplitManifest};
use crate::eval::EvalError;
use crate::lr::{
    Calibration, CalibrationOptions, CalibrationOutputs, CalibratorKind, Evidence, LrMetrics, PairCounts,
    ValidationReport, write_calibration_outputs,
};
use crate::progress::{Observer, counted};
use crate::provenance::{HashedImage, Provenance, sha256_file};

/// The images a calibration is made on. They must show identities the model was not trained on
/// (held-out identities), in conditions like the case's.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationData {
    /// `root/<identity>/<images>`: every image, its identity the name of its folder.
    Folder(PathBuf),
    /// The test identities of a split manifest's subset (the images of its first Monte Carlo
    /// run's queries and gallery, distractors included), under the dataset root `root`.
    Split {
        /// The manifest (`handid splits`).
        manifest: PathBuf,
        /// The dataset root its paths are relative to.
        root: PathBuf,
        /// The subset; the first when `None`.
        subset: Option<String>,
    },
}

impl CalibrationData {
    /// The image files and their identities; fails, naming the folder or manifest, when it
    /// cannot be read or has no test identities.
    pub fn images(&self) -> Result<(Vec<PathBuf>, Vec<String>), RetrievalError> {
        let data_err = |path: &Path, e: &dyn std::fmt::Display| RetrievalError::io(path, e.to_string());
        match self {
            Self::Folder(root) => {
                let dataset = FolderDataset::open(root).map_err(|e| data_err(root, &e))?;
                let mut files = Vec::new();
                let mut identities = Vec::new();
                for identity in dataset.identities() {
                    for image in &identity.images {
                        files.push(root.join(image));
                        identities.push(identity.identity.id.clone());
                    }
                }
                Ok((files, identities))
            }
            Self::Split { manifest, root, subset } => {
                let split = SplitManifest::read(manifest).map_err(|e| data_err(manifest, &e))?;
                split.check_files(root, manifest).map_err(|e| data_err(manifest, &e))?;
                let names: Vec<&str> = split.subsets.iter().map(|s| s.name.as_str()).collect();
                let chosen = match subset {
                    Some(name) => split.subset(name).ok_or_else(|| {
                        data_err(manifest, &format!("has no subset {name:?} (it has {})", names.join(", ")))
                    })?,
                    None => split.subsets.first().ok_or_else(|| data_err(manifest, &"has no subsets"))?,
                };
                let Some(run) = chosen.runs.first() else {
                    return Err(data_err(
                        manifest,
                        &format!(
                            "subset {} has no test identities to calibrate on (a calibration needs identities the \
                             model was not trained on)",
                            chosen.name
                        ),
                    ));
                };
                let mut seen = HashSet::new();
                let (mut files, mut identities) = (Vec::new(), Vec::new());
                for entry in run.query.iter().chain(&run.gallery) {
                    if seen.insert(entry.path.as_str()) {
                        files.push(entry.full_path(root));
                        identities.push(format!("{}/{}", entry.identity.group, entry.identity.id));
                    }
                }
                Ok((files, identities))
            }
        }
    }

    /// The folder or manifest, as given.
    pub fn source(&self) -> &Path {
        match self {
            Self::Folder(root) => root,
            Self::Split { manifest, .. } => manifest,
        }
    }
}

/// What [`calibrate_model`] made and wrote.
#[derive(Debug, Clone)]
pub struct ModelCalibration {
    /// The calibration, as saved in `calibration.json`.
    pub calibration: Calibration,
    /// The validation report, as saved in `validation.json` and the figures.
    pub report: ValidationReport,
    /// The files written.
    pub outputs: CalibrationOutputs,
}

/// Calibrates `model`'s comparison scores into likelihood ratios on `data`, in one call: the
/// images are hashed and embedded (flip-summed, L2-normalised), every pair of them compared,
/// the calibrator fitted and validated by cross-validation by identity ([`crate::lr::calibrate`]),
/// and `calibration.json`, `validation.json` and the figures written into `out`
/// ([`write_calibration_outputs`]). The calibration records the model's SHA-256, the SHA-256 of
/// the manifest (with [`CalibrationData::Split`]) and of every image, and the provenance of the
/// features. Errors name the file at fault; nothing is written before everything is computed.
pub fn calibrate_model<B: Backend>(
    model: &RetrievalModel<B>,
    data: &CalibrationData,
    options: &CalibrationOptions,
    out: &Path,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<ModelCalibration, RetrievalError> {
    clip_burn::io::check_output_dir(out, 8 << 20)
        .map_err(|e| RetrievalError::io(out, format!("cannot write the calibration there: {e}")))?;
    let (files, names) = data.images()?;
    let mut data_hashes = Vec::with_capacity(files.len() + 1);
    if let CalibrationData::Split { manifest, .. } = data {
        let sha256 = sha256_file(manifest).map_err(|e| RetrievalError::io(manifest, e))?;
        data_hashes.push(HashedImage { path: manifest.display().to_string(), sha256 });
    }
    data_hashes.extend(hash_files(&files)?);
    let mut numbers = BTreeMap::new();
    let identities: Vec<u64> = names
        .iter()
        .map(|name| {
            let next = numbers.len() as u64;
            *numbers.entry(name.as_str()).or_insert(next)
        })
        .collect();
    let features =
        counted(observer, "calibration features", files.len(), |report| model.embed(&files, device, report))?;
    let mut produced_by = model.provenance(device);
    produced_by.seeds.insert("calibration_folds".into(), options.seed);
    produced_by.seeds.insert("calibration_pairs".into(), options.pairs.seed);
    let provenance = crate::lr::Provenance {
        model: model.path().display().to_string(),
        model_sha256: model.sha256().to_string(),
        data: data.source().display().to_string(),
        data_hashes,
        produced_by: Some(produced_by),
    };
    observer.message("fitting and validating the calibration");
    let (calibration, report) = crate::lr::calibrate(&features, &identities, options, provenance)?;
    let outputs = write_calibration_outputs(out, &calibration, &report)?;
    Ok(ModelCalibration { calibration, report, outputs })
}

/// A calibration file loaded for a model: checked to have been made with that model's file.
#[derive(Debug, Clone)]
pub struct LoadedCalibration {
    /// The calibration.
    pub calibration: Calibration,
    /// The file, as given.
    pub path: PathBuf,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// Loads the calibration at `path` and refuses it ([`crate::lr::LrError::ModelMismatch`],
/// naming the file) unless it was made with `model`'s file (by SHA-256).
pub fn load_calibration<B: Backend>(
    model: &RetrievalModel<B>,
    path: &Path,
) -> Result<LoadedCalibration, RetrievalError> {
    let calibration = Calibration::load(path, model.sha256())?;
    let sha256 = sha256_file(path).map_err(|e| RetrievalError::io(path, e))?;
    Ok(LoadedCalibration { calibration, path: path.to_path_buf(), sha256 })
}

/// What a casework report says about the calibration behind a likelihood ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    /// The calibration file, as given.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The calibrator.
    pub calibrator: CalibratorKind,
    /// The calibration data (folder or manifest), as recorded.
    pub data: String,
    /// The comparisons it was fitted on.
    pub counts: PairCounts,
    /// Its validity figures (cross-validated by identity), when it was validated.
    pub validity: Option<LrMetrics>,
    /// The verbal scale of the evidence.
    pub verbal_scale: String,
}

impl LoadedCalibration {
    /// The summary of this calibration for a report.
    pub fn summary(&self) -> CalibrationSummary {
        let c = &self.calibration;
        CalibrationSummary {
            path: self.path.display().to_string(),
            sha256: self.sha256.clone(),
            calibrator: c.calibrator.kind(),
            data: c.provenance.data.clone(),
            counts: c.counts,
            validity: c.validity.clone(),
            verbal_scale: c.verbal_scale.clone(),
        }
    }
}

/// The comparison of two images: score, and with a calibration the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// What produced it: the model's SHA-256 and, with a calibration, the calibration's.
    pub provenance: Provenance,
    /// The two images, with their SHA-256.
    pub images: Vec<HashedImage>,
    /// Cosine similarity of their features.
    pub score: f32,
    /// The calibrated, bounded likelihood ratio and its verbal equivalent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// The calibration behind `evidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationSummary>,
}

/// Compares two images with `model` and, with a `calibration` file (checked first to have been
/// made with `model`), gives the evidence of the score. Errors name the file at fault.
pub fn compare_images<B: Backend>(
    model: &RetrievalModel<B>,
    a: &Path,
    b: &Path,
    calibration: Option<&Path>,
    device: &B::Device,
) -> Result<Comparison, RetrievalError> {
    let calibration = calibration.map(|path| load_calibration(model, path)).transpose()?;
    let paths = [a.to_path_buf(), b.to_path_buf()];
    for path in &paths {
        if !path.is_file() {
            return Err(RetrievalError::Missing { path: path.clone() });
        }
    }
    let images = hash_files(&paths)?;
    let features = model.embed(&paths, device, |_| {})?;
    let score = cosine(features.row(0), features.row(1));
    let mut provenance = model.provenance(device);
    let evidence = match &calibration {
        Some(c) => {
            provenance.calibration_sha256 = Some(c.sha256.clone());
            Some(c.calibration.evidence(f64::from(score)).map_err(|e| {
                RetrievalError::Eval(EvalError::Protocol(format!("{} and {}: {e}", a.display(), b.display())))
            })?)
        }
        None => None,
    };
    Ok(Comparison { provenance, images, score, evidence, calibration: calibration.as_ref().map(|c| c.summary()) })
}
