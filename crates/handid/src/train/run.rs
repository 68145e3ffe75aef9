//! A training run from files, in one call: CLIP weights and a folder-per-identity dataset (one
//! validation image per identity held out automatically) or a split manifest, trained with the
//! paper's settings unless overridden, into a run directory that [`export_run`] turns into a
//! retrieval model. Rerunning with the same directory resumes.
//!
//! The run directory holds, besides the trainer's files (`config.json`, `metrics.*`,
//! `checkpoints/`, `best/`), `model.json` ([`RunModel`]): the model configuration, the class
//! identities and the provenance (tool, weights file and its SHA-256, every training and
//! validation image with its SHA-256, backend, seed).
//!
//! [`export_run`]: crate::retrieval::export_run

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use clip_burn::Clip;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{EpochMetrics, ImageRef, LabeledImages, LrSchedule, Scenario, TrainConfig, TrainError, TrainOptions};
use crate::data::{DataError, FolderDataset, FolderSplitOptions, SplitManifest, SubsetSplit};
use crate::model::{HandIdConfig, HandIdModel, TextMode};
use crate::progress::Observer;
use crate::provenance::{HashedImage, TOOL, sha256_file};

/// Name of the run's model description in the run directory.
pub const RUN_MODEL_FILE: &str = "model.json";

/// The `format` of [`RunModel`] files.
pub const RUN_FORMAT: &str = "clip-handid-run/1";

/// Where the training images come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainData {
    /// `root/<identity>/<images>`: every identity trains, one image of each (a seeded draw)
    /// validates. Needs two identities or more, each with two images or more.
    Folder(PathBuf),
    /// A split manifest's training and validation images, under the dataset root `root`.
    Split {
        /// The manifest (`handid splits`).
        manifest: PathBuf,
        /// The dataset root its paths are relative to.
        root: PathBuf,
        /// The subset to train on; the first when `None`.
        subset: Option<String>,
    },
}

/// Everything a training run from files needs. `None` means the paper's value.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRequest {
    /// The training images.
    pub data: TrainData,
    /// CLIP weights to start from (any format `Clip::from_file` reads); they also give the
    /// architecture and the input size.
    pub weights: PathBuf,
    /// The weights' architecture as `config.json` (docs/FIXTURES.md section 1 format), for
    /// checkpoints whose head counts do not follow OpenAI's rule; inferred from the tensor
    /// shapes when `None`.
    pub config: Option<PathBuf>,
    /// The run directory (created; an existing run with the same settings is resumed).
    pub out: PathBuf,
    /// Epochs (the paper's 70).
    pub epochs: Option<usize>,
    /// Batch size (the paper's 20 for a ViT, 4 for a ResNet).
    pub batch_size: Option<usize>,
    /// Base learning rate of the image encoder (the paper's 5e-6; new layers get 10x).
    pub lr: Option<f64>,
    /// Warm-up epochs (the paper's 10).
    pub warmup_epochs: Option<usize>,
    /// Which losses run.
    pub scenario: Scenario,
    /// The text branch's mode.
    pub text_mode: TextMode,
    /// Seed of the validation draw, the new layers' initialisation and the training.
    pub seed: u64,
}

impl TrainRequest {
    /// A request with the paper's settings: CLIP-HandID, paper text mode, seed 42.
    pub fn new(data: TrainData, weights: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            data,
            weights: weights.into(),
            config: None,
            out: out.into(),
            epochs: None,
            batch_size: None,
            lr: None,
            warmup_epochs: None,
            scenario: Scenario::ClipHandId,
            text_mode: TextMode::Paper,
            seed: 42,
        }
    }
}

/// The description of a run's model saved as `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunModel {
    /// [`RUN_FORMAT`].
    pub format: String,
    /// The tool that trained it.
    pub tool: String,
    /// The model configuration.
    pub model: HandIdConfig,
    /// The class identities, in classifier order.
    pub identities: Vec<String>,
    /// The CLIP weights file the run started from.
    pub weights: String,
    /// Its SHA-256.
    pub weights_sha256: String,
    /// The split manifest and its SHA-256, when trained from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<HashedImage>,
    /// Every training image with its SHA-256.
    pub train_images: Vec<HashedImage>,
    /// Every validation image with its SHA-256.
    pub val_images: Vec<HashedImage>,
    /// The backend it was trained on.
    pub backend: String,
    /// The seed.
    pub seed: u64,
}

impl RunModel {
    /// Reads a `model.json`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("not a run's model.json: {e}"))
    }

    /// Whether `other` describes the same training (all but the tool and backend).
    fn same_training(&self, other: &Self) -> bool {
        (&self.model, &self.identities, &self.weights_sha256, &self.train_images, &self.val_images, self.seed)
            == (
                &other.model,
                &other.identities,
                &other.weights_sha256,
                &other.train_images,
                &other.val_images,
                other.seed,
            )
    }
}

/// What [`train_run`] did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Training identities (classes).
    pub identities: usize,
    /// Training images.
    pub train_images: usize,
    /// Validation images.
    pub val_images: usize,
    /// The settings used.
    pub config: TrainConfig,
    /// Every epoch's figures (an earlier, interrupted run's included).
    pub history: Vec<EpochMetrics>,
    /// The epoch of the selected model (best validation accuracy).
    pub selected_epoch: usize,
    /// Epochs an earlier run had already done.
    pub resumed_epochs: usize,
}

/// The training and validation split of `data`.
fn training_split(data: &TrainData, seed: u64) -> Result<(SubsetSplit, PathBuf, Option<PathBuf>), TrainError> {
    let data_err = |e: DataError| TrainError::Data(e.to_string());
    match data {
        TrainData::Folder(root) => {
            let dataset = FolderDataset::open(root).map_err(data_err)?;
            if dataset.identities().len() < 2 {
                return Err(TrainError::Data(format!(
                    "{}: holds {} identity folder; training needs at least two identities",
                    root.display(),
                    dataset.identities().len()
                )));
            }
            let options = FolderSplitOptions { train_fraction: 1.0, runs: 1 };
            let manifest = dataset.split(seed, &options).map_err(data_err)?;
            let subset = manifest.subsets.into_iter().next().expect("a folder split has one subset");
            Ok((subset, root.clone(), None))
        }
        TrainData::Split { manifest, root, subset } => {
            let split = SplitManifest::read(manifest).map_err(data_err)?;
            split.check_files(root, manifest).map_err(data_err)?;
            let names: Vec<String> = split.subsets.iter().map(|s| s.name.clone()).collect();
            let chosen = match subset {
                Some(name) => split.subsets.into_iter().find(|s| &s.name == name).ok_or_else(|| {
                    TrainError::Data(format!(
                        "{}: has no subset {name:?} (it has {})",
                        manifest.display(),
                        names.join(", ")
                    ))
                })?,
                None => split
                    .subsets
                    .into_iter()
                    .next()
                    .ok_or_else(|| TrainError::Data(format!("{}: has no subsets", manifest.display())))?,
            };
            Ok((chosen, root.clone(), Some(manifest.clone())))
        }
    }
}

fn hash_images(root: &Path, entries: &[crate::data::Entry]) -> Result<Vec<HashedImage>, TrainError> {
    entries
        .par_iter()
        .map(|e| {
            let path = e.full_path(root);
            let sha256 = sha256_file(&path).map_err(|err| TrainError::Io {
                path: path.clone(),
                reason: format!("cannot read the image: {err}"),
            })?;
            Ok(HashedImage { path: e.path.clone(), sha256 })
        })
        .collect()
}

/// Trains CLIP-HandID from CLIP weights as `request` says, reporting to `observer`, into the
/// run directory `request.out`: the trainer's files (`config.json`, `metrics.*`, `checkpoints/`,
/// `best/`) and `model.json` ([`RunModel`]). Rerunning with the same directory resumes. `B` is
/// an autodiff backend.
///
/// Everything is checked before training starts: the data (at least two identities, each with
/// a validation image and a training image; every file present), the weights, the settings and
/// the run directory (writable; an existing run there must have the same settings and data).
pub fn train_run<B: AutodiffBackend>(
    request: &TrainRequest,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<TrainSummary, TrainError> {
    let (subset, root, manifest) = training_split(&request.data, request.seed)?;
    let classes = subset.train_classes();
    if !request.weights.is_file() {
        return Err(TrainError::Io { path: request.weights.clone(), reason: "the weights file does not exist".into() });
    }
    let weights_sha256 = sha256_file(&request.weights).map_err(|e| TrainError::Io {
        path: request.weights.clone(),
        reason: format!("cannot read the weights: {e}"),
    })?;
    let weights_err = |e: clip_burn::ClipError| TrainError::Io { path: request.weights.clone(), reason: e.to_string() };
    let (clip, clip_config) = match &request.config {
        Some(path) => {
            let config = clip_burn::ClipConfig::from_json_file(path)
                .map_err(|e| TrainError::Io { path: path.clone(), reason: e.to_string() })?;
            (Clip::<B>::from_safetensors_with_config(&request.weights, &config, device).map_err(weights_err)?, config)
        }
        None => Clip::<B>::from_file(&request.weights, device).map_err(weights_err)?,
    };
    let size = clip_config.vision.image_size();

    let mut config = TrainConfig::paper(request.batch_size.unwrap_or(match clip_config.vision {
        clip_burn::VisionConfig::Vit(_) => 20,
        clip_burn::VisionConfig::ResNet(_) => 4,
    }));
    config.scenario = request.scenario;
    config.text_mode = request.text_mode;
    config.seed = request.seed;
    config.epochs = request.epochs.unwrap_or(config.epochs);
    let default_schedule = LrSchedule::default();
    config.schedule.base_lr = request.lr.unwrap_or(default_schedule.base_lr);
    config.schedule.warmup_epochs = request.warmup_epochs.unwrap_or(default_schedule.warmup_epochs);
    config.set_input_size(size as u32);
    config.validate().map_err(TrainError::Config)?;
    let model_config = config.model_config(clip_config, classes.identities.len(), [size, size]);

    let run = RunModel {
        format: RUN_FORMAT.to_string(),
        tool: TOOL.to_string(),
        model: model_config.clone(),
        identities: classes.identities.iter().map(|i| i.to_string()).collect(),
        weights: request.weights.display().to_string(),
        weights_sha256,
        manifest: match &manifest {
            Some(path) => Some(HashedImage {
                path: path.display().to_string(),
                sha256: sha256_file(path).map_err(|e| TrainError::Io { path: path.clone(), reason: e.to_string() })?,
            }),
            None => None,
        },
        train_images: hash_images(&root, &subset.train)?,
        val_images: hash_images(&root, &subset.val)?,
        backend: B::name(device),
        seed: request.seed,
    };
    write_run_model(&request.out, &run)?;

    observer.message(&format!(
        "training on {} images of {} identities ({} validation images), {} epochs, batch {}, input {size} x {size}",
        subset.train.len(),
        classes.identities.len(),
        subset.val.len(),
        config.epochs,
        config.batch_size
    ));
    // The new layers are drawn from the seed, the same on every backend.
    let model = HandIdModel::from_clip_seeded(clip, &model_config, request.seed, device)
        .map_err(|e| TrainError::Config(format!("cannot build the model: {e}")))?;
    let images = |entries: &[crate::data::Entry]| entries.iter().map(|e| ImageRef::Path(e.full_path(&root))).collect();
    let train_data = LabeledImages { images: images(&subset.train), labels: classes.train.clone() };
    let val_data = LabeledImages { images: images(&subset.val), labels: classes.val.clone() };
    let options = TrainOptions { output_dir: request.out.clone(), stop_after_epochs: None };
    let outcome = super::train_observed(model, &train_data, &val_data, &config, &options, device, observer)?;
    Ok(TrainSummary {
        run_dir: request.out.clone(),
        identities: classes.identities.len(),
        train_images: train_data.len(),
        val_images: val_data.len(),
        config,
        history: outcome.history,
        selected_epoch: outcome.selected_epoch,
        resumed_epochs: outcome.resumed_epochs,
    })
}

/// Writes `model.json`, or checks that an existing one describes the same training.
fn write_run_model(dir: &Path, run: &RunModel) -> Result<(), TrainError> {
    clip_burn::io::check_output_dir(dir, 0)
        .map_err(|e| TrainError::Io { path: dir.to_path_buf(), reason: format!("cannot write the run there: {e}") })?;
    let path = dir.join(RUN_MODEL_FILE);
    if path.exists() {
        let saved = RunModel::read(&path).map_err(|reason| TrainError::Io { path: path.clone(), reason })?;
        if !saved.same_training(run) {
            return Err(TrainError::ConfigMismatch { path });
        }
        return Ok(());
    }
    let mut bytes =
        serde_json::to_vec_pretty(run).map_err(|e| TrainError::Io { path: path.clone(), reason: e.to_string() })?;
    bytes.push(b'\n');
    crate::eval::write_atomic(&path, &bytes).map_err(|e| TrainError::Io { path, reason: e.to_string() })
}
