//! The reproduction pipeline: validate everything, draw and save the splits, then train and
//! evaluate every cell of the table, writing each cell's results as soon as it is done.
//!
//! Output layout under the output directory:
//! - `splits/11k.json`, `splits/hd.json`: the split manifests;
//! - `<scenario>/<backbone>/<subset>/`: `results.json` (every Monte Carlo run and the summary),
//!   `runs.csv` (one line per run), `cell.json` (settings and mean scores) and, for the trained
//!   scenarios, `train/` (the training run: config, metrics and the selected model in `best/`;
//!   its resume checkpoints are removed once the cell is saved);
//! - `table.md` (the rendered table), `summary.json` and `summary.csv` (every cell), rewritten
//!   after each dataset of each row.
//!
//! A cell whose `cell.json` was written with the same settings (scenario, backbone, subset,
//! split, weights, seed, runs, epochs, batch size, text mode) is not computed again, and an
//! interrupted training run resumes from its last checkpoint: rerunning the same command after
//! a crash continues where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clip_burn::preprocess::Transform;
use clip_burn::tokenizer::CONTEXT_LENGTH;
use clip_burn::{Clip, ClipConfig, ClipError};
use serde::{Deserialize, Serialize};

use super::table::{CellScores, Table};
use super::{Backbone, Column, Scenario, published};
use crate::data::{DataError, DatasetKind, Hands11k, PolyuHd, SplitManifest, SubsetSplit};
use crate::eval::{
    EvalError, FeatureOptions, MetricSummary, ProtocolOptions, ProtocolReport, evaluate_manifest, evaluation_paths,
    write_atomic,
};
use crate::model::{HandIdModel, ModelError, TextMode};
use crate::progress::{Observer, Silent, counted};
use crate::train::{ImageRef, LabeledImages, TrainConfig, TrainError, TrainOptions, train_observed};

/// CLIP's vocabulary size: the prompt's token ids need the full vocabulary.
const CLIP_VOCAB: usize = 49408;

/// The weights file of one backbone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsSpec {
    /// The backbone the file is for.
    pub backbone: Backbone,
    /// An OpenAI-format CLIP checkpoint (safetensors from `handid fetch` / `handid convert`,
    /// or any format `Clip::from_file` reads).
    pub path: PathBuf,
}

/// What to reproduce and where to write it.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// 11k Hands root (`HandInfo.csv`, `Hands/`), if the 11k columns are wanted.
    pub root_11k: Option<PathBuf>,
    /// PolyU HD root (`1-501`, `502-712`), if the HD column is wanted.
    pub root_hd: Option<PathBuf>,
    /// The scenarios (rows) to run.
    pub scenarios: Vec<Scenario>,
    /// One weights file per backbone to run.
    pub weights: Vec<WeightsSpec>,
    /// Output directory.
    pub out: PathBuf,
    /// Seed of the splits and of training.
    pub seed: u64,
    /// Monte Carlo query/gallery runs (10 in the protocol).
    pub runs: usize,
    /// Training epochs instead of the paper's 70.
    pub epochs: Option<usize>,
    /// Training batch size instead of the paper's (20 for ViT-B/16, 4 for RN50).
    pub batch_size: Option<usize>,
    /// Text branch of CLIP-HandID.
    pub text_mode: TextMode,
    /// Go on when a dataset's split counts differ from the published ones (a warning instead of
    /// an error).
    pub allow_count_mismatch: bool,
}

/// Errors of [`reproduce`]; each names the file, folder or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    /// An impossible option or combination of options.
    #[error("{0}")]
    Invalid(String),
    /// A dataset could not be read or split.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A weights file could not be loaded.
    #[error("{backbone} weights {}: {source}", path.display())]
    Weights {
        /// The backbone label.
        backbone: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (boxed: CLIP's errors are large).
        source: Box<ClipError>,
    },
    /// The model could not be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Training failed.
    #[error("{cell}: {source}")]
    Train {
        /// The cell being trained.
        cell: String,
        /// Why.
        source: TrainError,
    },
    /// Evaluation failed.
    #[error("{cell}: {source}")]
    Eval {
        /// The cell being evaluated.
        cell: String,
        /// Why.
        source: EvalError,
    },
    /// An output file could not be written or read.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn io_error(path: &Path, reason: impl std::fmt::Display) -> ReproduceError {
    ReproduceError::Io { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Everything a cell's result depends on; a saved cell is reused only when they are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSettings {
    /// The row's scenario.
    pub scenario: Scenario,
    /// The row's backbone.
    pub backbone: Backbone,
    /// The column.
    pub column: Column,
    /// The dataset root.
    pub root: String,
    /// FNV-1a hash of the subset's split (train, validation, every run), as hex.
    pub split_hash: String,
    /// The weights file and its size in bytes.
    pub weights: String,
    /// Size of the weights file.
    pub weights_bytes: u64,
    /// Seed of the split and of training.
    pub seed: u64,
    /// Monte Carlo runs.
    pub runs: usize,
    /// Training epochs (trained scenarios).
    pub epochs: Option<usize>,
    /// Training batch size (trained scenarios).
    pub batch_size: Option<usize>,
    /// Text branch mode (CLIP-HandID).
    pub text_mode: Option<TextMode>,
}

/// The result of one cell, saved as `cell.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// What was computed.
    pub settings: CellSettings,
    /// Means over the runs (fractions).
    pub scores: CellScores,
    /// Mean and standard deviation of every metric over the runs.
    pub summary: MetricSummary,
    /// Published rank-1 and interpolated mAP, in percent.
    pub published: Option<(f64, f64)>,
    /// The epoch whose model was evaluated (best validation accuracy; trained scenarios).
    pub selected_epoch: Option<usize>,
    /// Wall time of training and evaluation, seconds (of the evaluation of the whole dataset
    /// for zero-shot, whose subsets share one feature extraction).
    pub seconds: f64,
}

/// What [`reproduce`] produced.
#[derive(Debug, Clone)]
pub struct ReproduceReport {
    /// Every cell, in table order.
    pub cells: Vec<CellRecord>,
    /// The filled table.
    pub table: Table,
    /// The split manifests written.
    pub manifests: Vec<PathBuf>,
    /// `table.md`.
    pub table_path: PathBuf,
    /// `summary.json`.
    pub summary_path: PathBuf,
}

/// A dataset, split.
struct PreparedDataset {
    kind: DatasetKind,
    root: PathBuf,
    manifest: SplitManifest,
}

/// A backbone's weights, checked.
struct PreparedBackbone {
    backbone: Backbone,
    path: PathBuf,
    bytes: u64,
    config: ClipConfig,
}

/// Runs the reproduction: checks every input first (dataset roots parse and split, weights
/// load and fit their backbone, output directory writable, enough training images per batch),
/// writes the split manifests, then trains and evaluates every (scenario, backbone, subset)
/// cell and writes the table. `B` is an autodiff backend; evaluation runs on its inner backend.
pub fn reproduce<B: AutodiffBackend>(
    options: &ReproduceOptions,
    device: &B::Device,
) -> Result<ReproduceReport, ReproduceError> {
    reproduce_observed::<B>(options, device, &mut Silent)
}

/// [`reproduce`], reporting to `observer`: notes and warnings, each cell's result line, the
/// training epochs and the feature extraction of every cell.
pub fn reproduce_observed<B: AutodiffBackend>(
    options: &ReproduceOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<ReproduceReport, ReproduceError> {
    let started = Instant::now();
    check_options(options)?;
    prepare_output(&options.out)?;
    let datasets = prepare_datasets(options, observer)?;
    let backbones = prepare_backbones::<B>(options, device, observer)?;
    check_batches(options, &datasets, &backbones)?;

    let mut manifests = Vec::new();
    for d in &datasets {
        let path = options.out.join("splits").join(format!("{}.json", d.kind.name()));
        create_dir(path.parent().unwrap_or(&options.out))?;
        d.manifest.save(&path)?;
        manifests.push(path);
    }
    let columns: Vec<Column> = datasets.iter().flat_map(|d| Column::of_dataset(d.kind)).collect();
    let backbone_list: Vec<Backbone> = backbones.iter().map(|b| b.backbone).collect();
    let mut table = Table::new(&options.scenarios, &backbone_list, &columns);
    let mut cells = Vec::new();

    for prepared in &backbones {
        let mut clip: Option<Clip<B>> = None;
        for scenario in Scenario::ALL.into_iter().filter(|s| options.scenarios.contains(s)) {
            for dataset in &datasets {
                let done = match scenario {
                    Scenario::ZeroShot => zero_shot_cells(options, dataset, prepared, &mut clip, device, observer)?,
                    _ => {
                        let mut done = Vec::new();
                        for subset in &dataset.manifest.subsets {
                            done.push(trained_cell(
                                options, dataset, subset, prepared, scenario, &mut clip, device, observer,
                            )?);
                        }
                        done
                    }
                };
                for cell in done {
                    let s = &cell.settings;
                    table.insert(s.scenario, s.backbone, s.column, cell.scores);
                    observer.message(&format!(
                        "{} {} {}: rank-1 {:.2} %, mAP {:.2} % (standard {:.2} %){}",
                        s.scenario.label(),
                        s.backbone.label(),
                        s.column,
                        100.0 * cell.scores.rank1,
                        100.0 * cell.scores.map_interpolated,
                        100.0 * cell.scores.map_standard,
                        cell.published.map_or(String::new(), |(r, m)| format!("; published {r:.2} / {m:.2}"))
                    ));
                    cells.push(cell);
                }
                // Written after every dataset, so that a long run shows its table so far.
                write_outputs(options, &table, &cells, &manifests, started)?;
            }
        }
    }

    let (table_path, summary_path) = write_outputs(options, &table, &cells, &manifests, started)?;
    Ok(ReproduceReport { cells, table, manifests, table_path, summary_path })
}

/// Writes `table.md`, `summary.json` and `summary.csv` of the cells done so far; returns the
/// paths of the first two.
fn write_outputs(
    options: &ReproduceOptions,
    table: &Table,
    cells: &[CellRecord],
    manifests: &[PathBuf],
    started: Instant,
) -> Result<(PathBuf, PathBuf), ReproduceError> {
    let table_path = options.out.join("table.md");
    write_atomic(&table_path, table.render().as_bytes()).map_err(|e| io_error(&table_path, e))?;
    let summary_path = options.out.join("summary.json");
    let summary = serde_json::json!({
        "seed": options.seed,
        "runs": options.runs,
        "seconds": started.elapsed().as_secs_f64(),
        "manifests": manifests,
        "cells": cells,
    });
    write_json(&summary_path, &summary)?;
    let csv_path = options.out.join("summary.csv");
    write_atomic(&csv_path, summary_csv(cells).as_bytes()).map_err(|e| io_error(&csv_path, e))?;
    Ok((table_path, summary_path))
}

fn check_options(options: &ReproduceOptions) -> Result<(), ReproduceError> {
    let invalid = |m: &str| Err(ReproduceError::Invalid(m.to_string()));
    if options.root_11k.is_none() && options.root_hd.is_none() {
        return invalid("no dataset: give the 11k Hands root, the HD root or both");
    }
    if options.scenarios.is_empty() {
        return invalid("no scenario to run");
    }
    if options.weights.is_empty() {
        return invalid("no backbone to run: give the weights of ViT-B/16, RN50 or both");
    }
    for (i, w) in options.weights.iter().enumerate() {
        if options.weights[..i].iter().any(|v| v.backbone == w.backbone) {
            return Err(ReproduceError::Invalid(format!("two weights files for {}", w.backbone.label())));
        }
    }
    if options.runs == 0 {
        return invalid("the number of Monte Carlo runs must be at least 1");
    }
    if options.epochs == Some(0) {
        return invalid("the number of epochs must be at least 1");
    }
    if options.batch_size.is_some_and(|b| b < 2) {
        return invalid("the batch size must be at least 2 (batch statistics and contrastive pairs)");
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), ReproduceError> {
    std::fs::create_dir_all(path).map_err(|e| io_error(path, format!("cannot create the directory: {e}")))
}

/// Creates the output directory and checks that it is writable, before any long work.
fn prepare_output(out: &Path) -> Result<(), ReproduceError> {
    create_dir(out)?;
    let probe = out.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| io_error(out, format!("the output directory is not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

fn prepare_datasets(
    options: &ReproduceOptions,
    observer: &mut dyn Observer,
) -> Result<Vec<PreparedDataset>, ReproduceError> {
    let mut counts = |result: Result<(), DataError>| match result {
        Ok(()) => Ok(()),
        Err(e) if options.allow_count_mismatch => {
            observer.message(&format!("warning: {e}"));
            Ok(())
        }
        Err(e) => Err(ReproduceError::Invalid(format!(
            "{e}\n(the published numbers need the full dataset; pass --allow-count-mismatch to go on anyway)"
        ))),
    };
    let mut out = Vec::new();
    if let Some(root) = &options.root_11k {
        let data = Hands11k::open(root)?;
        counts(data.check_published_counts())?;
        let manifest = data.split(options.seed, options.runs)?;
        out.push(PreparedDataset { kind: DatasetKind::Hands11k, root: root.clone(), manifest });
    }
    if let Some(root) = &options.root_hd {
        let data = PolyuHd::open(root)?;
        counts(data.check_published_counts())?;
        let manifest = data.split(options.seed, options.runs)?;
        out.push(PreparedDataset { kind: DatasetKind::PolyuHd, root: root.clone(), manifest });
    }
    Ok(out)
}

/// Loads every weights file once (the whole file: a truncated or mis-shaped one fails here,
/// not hours later) and checks that it fits its backbone.
fn prepare_backbones<B: AutodiffBackend>(
    options: &ReproduceOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Vec<PreparedBackbone>, ReproduceError> {
    let trains = options.scenarios.iter().any(|s| s.training().is_some());
    let mut out = Vec::new();
    for backbone in Backbone::ALL {
        let Some(spec) = options.weights.iter().find(|w| w.backbone == backbone) else { continue };
        let path = &spec.path;
        let fail = |source: ClipError| ReproduceError::Weights {
            backbone: backbone.label(),
            path: path.clone(),
            source: Box::new(source),
        };
        let bytes = std::fs::metadata(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ReproduceError::Invalid(format!(
                    "{} weights {} do not exist (see `handid fetch`)",
                    backbone.label(),
                    path.display()
                )),
                _ => io_error(path, e),
            })?
            .len();
        let (clip, config) = Clip::<B::InnerBackend>::from_file(path, device).map_err(fail)?;
        drop(clip);
        if !backbone.same_kind(&config.vision) {
            return Err(ReproduceError::Invalid(format!(
                "{} weights {} hold a {} image encoder",
                backbone.label(),
                path.display(),
                match config.vision {
                    clip_burn::VisionConfig::Vit(_) => "ViT",
                    clip_burn::VisionConfig::ResNet(_) => "ResNet",
                }
            )));
        }
        if trains && (config.text.vocab_size != CLIP_VOCAB || config.text.context_length != CONTEXT_LENGTH) {
            return Err(ReproduceError::Invalid(format!(
                "{} weights {}: the text tower has a vocabulary of {} and a context of {}; the prompt needs \
                 CLIP's {CLIP_VOCAB} and {CONTEXT_LENGTH}",
                backbone.label(),
                path.display(),
                config.text.vocab_size,
                config.text.context_length
            )));
        }
        if config != backbone.preset() {
            observer.message(&format!(
                "note: {} holds a smaller or different architecture than the published {} (image size {}); \
                 its numbers are not comparable with the paper's",
                path.display(),
                backbone.label(),
                config.vision.image_size()
            ));
        }
        out.push(PreparedBackbone { backbone, path: path.clone(), bytes, config });
    }
    Ok(out)
}

fn batch_size(options: &ReproduceOptions, backbone: Backbone) -> usize {
    options.batch_size.unwrap_or(backbone.batch_size())
}

/// Every trained subset needs at least one full batch (the incomplete last batch is dropped).
fn check_batches(
    options: &ReproduceOptions,
    datasets: &[PreparedDataset],
    backbones: &[PreparedBackbone],
) -> Result<(), ReproduceError> {
    if !options.scenarios.iter().any(|s| s.training().is_some()) {
        return Ok(());
    }
    for b in backbones {
        let batch = batch_size(options, b.backbone);
        for d in datasets {
            if let Some(subset) = d.manifest.subsets.iter().find(|s| s.train.len() < batch) {
                return Err(ReproduceError::Invalid(format!(
                    "{}: subset {} has {} training images, fewer than one {} batch of {batch} (--batch-size)",
                    d.root.display(),
                    subset.name,
                    subset.train.len(),
                    b.backbone.label()
                )));
            }
        }
    }
    Ok(())
}

/// The 64-bit FNV-1a hash of `bytes`, as 16 hex digits (stable across platforms and versions).
fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

fn settings(
    options: &ReproduceOptions,
    dataset: &PreparedDataset,
    subset: &SubsetSplit,
    prepared: &PreparedBackbone,
    scenario: Scenario,
) -> Result<CellSettings, ReproduceError> {
    let column = Column::from_subset(&subset.name).ok_or_else(|| {
        ReproduceError::Invalid(format!(
            "{}: subset {} is not a column of Table I",
            dataset.root.display(),
            subset.name
        ))
    })?;
    let split = serde_json::to_vec(subset).map_err(|e| io_error(&dataset.root, e))?;
    let trained = scenario.training().is_some();
    Ok(CellSettings {
        scenario,
        backbone: prepared.backbone,
        column,
        root: dataset.root.display().to_string(),
        split_hash: fnv1a(&split),
        weights: prepared.path.display().to_string(),
        weights_bytes: prepared.bytes,
        seed: options.seed,
        runs: options.runs,
        epochs: trained.then(|| options.epochs.unwrap_or(TrainConfig::paper(2).epochs)),
        batch_size: trained.then(|| batch_size(options, prepared.backbone)),
        text_mode: (scenario == Scenario::ClipHandId).then_some(options.text_mode),
    })
}

fn cell_dir(out: &Path, settings: &CellSettings) -> PathBuf {
    out.join(settings.scenario.name()).join(settings.backbone.name()).join(settings.column.subset())
}

/// The saved record of a cell computed with the same settings, if any.
fn saved_cell(out: &Path, settings: &CellSettings) -> Option<CellRecord> {
    let path = cell_dir(out, settings).join("cell.json");
    let record: CellRecord = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (record.settings == *settings).then_some(record)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ReproduceError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| io_error(path, e))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|e| io_error(path, e))
}

/// Writes `results.json`, `runs.csv` and, last (it marks the cell as done), `cell.json`.
fn save_cell(
    out: &Path,
    settings: CellSettings,
    report: &ProtocolReport,
    selected_epoch: Option<usize>,
    seconds: f64,
) -> Result<CellRecord, ReproduceError> {
    let subset = report.subset(settings.column.subset()).ok_or_else(|| {
        ReproduceError::Invalid(format!("the evaluation has no results for subset {}", settings.column.subset()))
    })?;
    let dir = cell_dir(out, &settings);
    create_dir(&dir)?;
    let single = ProtocolReport { subsets: vec![subset.clone()], ..report.clone() };
    let results = dir.join("results.json");
    single.save_json(&results).map_err(|e| io_error(&results, e))?;
    let mut csv = String::from(
        "scenario,backbone,column,subset,run,n_query,n_gallery,rank1,rank5,rank10,map_interpolated,map_standard,minp\n",
    );
    for (r, m) in subset.runs.iter().enumerate() {
        csv.push_str(&format!(
            "{},{},{},{},{r},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
            settings.scenario,
            settings.backbone,
            settings.column,
            subset.name,
            m.n_query,
            m.n_gallery,
            m.rank1,
            m.rank5,
            m.rank10,
            m.map_interpolated,
            m.map_standard,
            m.minp
        ));
    }
    let runs = dir.join("runs.csv");
    write_atomic(&runs, csv.as_bytes()).map_err(|e| io_error(&runs, e))?;
    let summary = subset.summary.clone();
    let scores = CellScores {
        rank1: summary.rank1.mean,
        map_interpolated: summary.map_interpolated.mean,
        map_standard: summary.map_standard.mean,
    };
    let published = published(settings.scenario, settings.backbone, settings.column).map(|p| (p.rank1, p.map));
    let record = CellRecord { settings, scores, summary, published, selected_epoch, seconds };
    write_json(&dir.join("cell.json"), &record)?;
    Ok(record)
}

fn summary_csv(cells: &[CellRecord]) -> String {
    let mut csv = String::from(
        "scenario,backbone,column,runs,rank1,rank1_std,map_interpolated,map_interpolated_std,map_standard,\
         map_standard_std,published_rank1,published_map\n",
    );
    for c in cells {
        let s = &c.summary;
        // Published numbers are percentages; written as fractions like ours.
        let (pr, pm) = c.published.map_or((String::new(), String::new()), |(r, m)| {
            (format!("{:.4}", r / 100.0), format!("{:.4}", m / 100.0))
        });
        csv.push_str(&format!(
            "{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{pr},{pm}\n",
            c.settings.scenario,
            c.settings.backbone,
            c.settings.column,
            s.n_runs,
            s.rank1.mean,
            s.rank1.std,
            s.map_interpolated.mean,
            s.map_interpolated.std,
            s.map_standard.mean,
            s.map_standard.std
        ));
    }
    csv
}

/// The pretrained CLIP of a backbone, loaded on first use and kept for the backbone's cells.
fn pretrained<'a, B: AutodiffBackend>(
    slot: &'a mut Option<Clip<B>>,
    prepared: &PreparedBackbone,
    device: &B::Device,
) -> Result<&'a Clip<B>, ReproduceError> {
    if slot.is_none() {
        let clip =
            Clip::<B>::from_safetensors_with_config(&prepared.path, &prepared.config, device).map_err(|source| {
                ReproduceError::Weights {
                    backbone: prepared.backbone.label(),
                    path: prepared.path.clone(),
                    source: Box::new(source),
                }
            })?;
        *slot = Some(clip);
    }
    Ok(slot.as_ref().expect("just loaded"))
}

/// Zero-shot: the pretrained CLIP, its own preprocessing, all subsets of a dataset at once.
fn zero_shot_cells<B: AutodiffBackend>(
    options: &ReproduceOptions,
    dataset: &PreparedDataset,
    prepared: &PreparedBackbone,
    clip: &mut Option<Clip<B>>,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Vec<CellRecord>, ReproduceError> {
    let all: Vec<CellSettings> = dataset
        .manifest
        .subsets
        .iter()
        .map(|s| settings(options, dataset, s, prepared, Scenario::ZeroShot))
        .collect::<Result<_, _>>()?;
    let saved: Vec<Option<CellRecord>> = all.iter().map(|s| saved_cell(&options.out, s)).collect();
    if saved.iter().all(Option::is_some) {
        return Ok(saved.into_iter().flatten().collect());
    }
    let started = Instant::now();
    let name = format!("{} {} {}", Scenario::ZeroShot.label(), prepared.backbone.label(), dataset.kind);
    let model = pretrained(clip, prepared, device)?.valid();
    let size = prepared.config.vision.image_size() as u32;
    let total = evaluation_paths(&dataset.manifest, ProtocolOptions::default().gallery).len();
    let report = counted(observer, &name, total, |report| {
        evaluate_manifest(
            &dataset.manifest,
            &dataset.root,
            &model,
            &Transform::Clip { size },
            &FeatureOptions::default(),
            &ProtocolOptions::default(),
            device,
            report,
        )
    })
    .map_err(|source| ReproduceError::Eval { cell: name.clone(), source })?;
    let seconds = started.elapsed().as_secs_f64();
    all.into_iter().map(|s| save_cell(&options.out, s, &report, None, seconds)).collect()
}

/// A trained scenario on one subset: train from the pretrained CLIP (resuming a run that was
/// interrupted), then evaluate the subset's runs with the selected model.
#[allow(clippy::too_many_arguments)]
fn trained_cell<B: AutodiffBackend>(
    options: &ReproduceOptions,
    dataset: &PreparedDataset,
    subset: &SubsetSplit,
    prepared: &PreparedBackbone,
    scenario: Scenario,
    clip: &mut Option<Clip<B>>,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<CellRecord, ReproduceError> {
    let settings = settings(options, dataset, subset, prepared, scenario)?;
    if let Some(saved) = saved_cell(&options.out, &settings) {
        return Ok(saved);
    }
    let started = Instant::now();
    let name = format!("{} {} {}", scenario.label(), prepared.backbone.label(), settings.column);
    let train_scenario = scenario.training().expect("a trained scenario");
    let size = prepared.config.vision.image_size();
    let classes = subset.train_classes();
    let images = |entries: &[crate::data::Entry]| -> Vec<ImageRef> {
        entries.iter().map(|e| ImageRef::Path(e.full_path(&dataset.root))).collect()
    };
    let train_data = LabeledImages { images: images(&subset.train), labels: classes.train.clone() };
    let val_data = LabeledImages { images: images(&subset.val), labels: classes.val.clone() };

    let mut train_config = TrainConfig::paper(batch_size(options, prepared.backbone));
    train_config.scenario = train_scenario;
    train_config.text_mode = options.text_mode;
    train_config.epochs = settings.epochs.unwrap_or(train_config.epochs);
    train_config.seed = options.seed;
    // The paper resizes to 256 and crops 224; other input sizes keep that ratio.
    train_config.set_input_size(size as u32);
    let config = train_config.model_config(prepared.config.clone(), classes.identities.len(), [size, size]);
    // The new layers are drawn from the cell's seed, the same on every backend and whatever ran
    // before the cell.
    let model =
        HandIdModel::from_clip_seeded(pretrained(clip, prepared, device)?.clone(), &config, options.seed, device)?;
    let dir = cell_dir(&options.out, &settings);
    observer.message(&format!(
        "{name}: training on {} images of {} identities ({} epochs, batch {})",
        train_data.len(),
        classes.identities.len(),
        train_config.epochs,
        train_config.batch_size
    ));
    let train_options = TrainOptions { output_dir: dir.join("train"), stop_after_epochs: None };
    let outcome = train_observed(model, &train_data, &val_data, &train_config, &train_options, device, observer)
        .map_err(|source| ReproduceError::Train { cell: name.clone(), source })?;
    let model = outcome.model.valid();

    let single = SplitManifest { subsets: vec![subset.clone()], ..dataset.manifest.clone() };
    let total = evaluation_paths(&single, ProtocolOptions::default().gallery).len();
    let extractor = |pixels: Tensor<B::InnerBackend, 4>| model.retrieval_features(pixels);
    let report = counted(observer, &name, total, |report| {
        evaluate_manifest(
            &single,
            &dataset.root,
            &extractor,
            &Transform::Reid { height: size as u32, width: size as u32 },
            &FeatureOptions::default(),
            &ProtocolOptions::default(),
            device,
            report,
        )
    })
    .map_err(|source| ReproduceError::Eval { cell: name.clone(), source })?;
    let record =
        save_cell(&options.out, settings, &report, Some(outcome.selected_epoch), started.elapsed().as_secs_f64())?;
    // The resume checkpoints (model and optimiser state, gigabytes for ViT-B/16) are not needed
    // once the cell is saved; the selected model stays in `train/best`.
    let _ = std::fs::remove_dir_all(dir.join("train").join("checkpoints"));
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), "cbf29ce484222325");
        assert_eq!(fnv1a(b"a"), "af63dc4c8601ec8c");
    }
}
