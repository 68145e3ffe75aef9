//! The evaluation protocol end to end: a split manifest, a dataset root and a feature extractor
//! in, per-run and summarised metrics of every subset out (docs/METHOD.md sections 4 and 5).
//!
//! Features are computed once per distinct image of the runs' queries and galleries
//! ([`evaluation_paths`]); for every subset and Monte Carlo run, the queries are ranked against
//! the run's evaluation gallery (the combined gallery for 11k Hands, the subset's own gallery
//! otherwise) by cosine similarity, computed as one matrix product on the chosen backend, and
//! scored with [`evaluate`]; the runs are then summarised with [`summarize`] (mean and sample
//! standard deviation).
//!
//! ```no_run
//! use std::path::Path;
//! use burn::backend::Flex;
//! use clip_burn::Clip;
//! use clip_burn::preprocess::Transform;
//! use handid::data::{DatasetKind, SplitManifest};
//! use handid::eval::{FeatureOptions, ProtocolOptions, evaluate_manifest};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Default::default();
//! let root = Path::new("data/11k");
//! let manifest = SplitManifest::load(Path::new("splits.json"), root, DatasetKind::Hands11k)?;
//! let (clip, _) = Clip::<Flex>::from_safetensors("ViT-B-16.safetensors".as_ref(), &device)?;
//! let report = evaluate_manifest(
//!     &manifest, root, &clip, &Transform::Clip { size: 224 },
//!     &FeatureOptions::default(), &ProtocolOptions::default(), &device, |_| {},
//! )?;
//! for subset in &report.subsets {
//!     println!("{}: rank-1 {:.2}%", subset.name, 100.0 * subset.summary.rank1.mean);
//! }
//! report.save_json(Path::new("results.json"))?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use clip_burn::preprocess::Transform;
use serde::{Deserialize, Serialize};

use super::error::{EvalError, Result};
use super::features::{FeatureExtractor, FeatureMatrix, FeatureOptions, extract_features};
use super::metrics::{MetricSummary, RetrievalMetrics, Similarity, evaluate, identity_labels, summarize};
use super::output::write_json;
use crate::data::{DatasetKind, Entry, RunSplit, SplitManifest};

/// Which gallery of a run the queries are ranked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GalleryChoice {
    /// The gallery of the published numbers: the combined gallery where the manifest has one
    /// (11k Hands), the subset's own gallery otherwise.
    #[default]
    Evaluation,
    /// The subset's own gallery, distractors included (for 11k: without the other aspects).
    Own,
}

impl GalleryChoice {
    /// The gallery of `run` this choice picks.
    pub fn gallery<'a>(&self, run: &'a RunSplit) -> &'a [Entry] {
        match self {
            GalleryChoice::Evaluation => run.evaluation_gallery(),
            GalleryChoice::Own => &run.gallery,
        }
    }
}

/// Options of [`evaluate_manifest`] and [`evaluate_features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolOptions {
    /// Length of the reported CMC curve (the protocol reports ranks 1, 5 and 10; 10 by default).
    pub max_rank: usize,
    /// The gallery to rank against.
    pub gallery: GalleryChoice,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        Self { max_rank: 10, gallery: GalleryChoice::Evaluation }
    }
}

/// The results of one subset: one metric set per Monte Carlo run and their summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetReport {
    /// The subset's name (`dorsal_right`, `hd`, ...).
    pub name: String,
    /// Whether the combined 11k gallery was used (`false`: the subset's own gallery).
    pub combined_gallery: bool,
    /// Metrics of each run, in manifest order.
    pub runs: Vec<RetrievalMetrics>,
    /// Mean and sample standard deviation over the runs.
    pub summary: MetricSummary,
}

/// The results of evaluating a split manifest, serialisable as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolReport {
    /// The dataset of the manifest.
    pub dataset: DatasetKind,
    /// The manifest's seed (with the dataset, it identifies the exact split).
    pub seed: u64,
    /// The options used.
    pub options: ProtocolOptions,
    /// Number of distinct images whose features were used.
    pub n_images: usize,
    /// Feature dimension.
    pub feature_dim: usize,
    /// Per subset, in manifest order (subsets without runs are left out).
    pub subsets: Vec<SubsetReport>,
}

impl ProtocolReport {
    /// The report of the subset of that name.
    pub fn subset(&self, name: &str) -> Option<&SubsetReport> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// Writes the report as pretty JSON, atomically.
    pub fn save_json(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

/// The distinct relative paths of every run's queries and `gallery` entries, in order of first
/// appearance: the images whose features [`evaluate_features`] needs (training and validation
/// images are not included).
pub fn evaluation_paths(manifest: &SplitManifest, gallery: GalleryChoice) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut paths = Vec::new();
    for subset in &manifest.subsets {
        for run in &subset.runs {
            for entry in run.query.iter().chain(gallery.gallery(run)) {
                if seen.insert(entry.path.as_str()) {
                    paths.push(entry.path.clone());
                }
            }
        }
    }
    paths
}

/// Evaluates `manifest` with precomputed, L2-normalised features: row `i` of `features` is the
/// feature of the image `paths[i]` (relative to the dataset root, as in the manifest; for
/// instance [`evaluation_paths`] with the same gallery choice).
///
/// For every subset and run, the similarity of the queries to the chosen gallery is one matrix
/// product on `device`. Fails when `paths` and `features` differ in length, a path is listed
/// twice, an image of the manifest has no feature, or a run has no queries or no gallery.
pub fn evaluate_features<B: Backend>(
    manifest: &SplitManifest,
    paths: &[String],
    features: &FeatureMatrix,
    options: &ProtocolOptions,
    device: &B::Device,
) -> Result<ProtocolReport> {
    if paths.len() != features.rows() {
        return Err(EvalError::LabelCount {
            what: "feature paths",
            side: "feature",
            expected: features.rows(),
            got: paths.len(),
        });
    }
    let mut row_of: HashMap<&str, usize> = HashMap::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        if row_of.insert(p.as_str(), i).is_some() {
            return Err(EvalError::Protocol(format!("path {p:?} is listed twice among the feature rows")));
        }
    }
    let all = features.to_tensor::<B>(device);
    let mut subsets = Vec::new();
    for subset in manifest.subsets.iter().filter(|s| !s.runs.is_empty()) {
        // Feature rows of every run's queries and gallery.
        let mut run_rows = Vec::with_capacity(subset.runs.len());
        for (r, run) in subset.runs.iter().enumerate() {
            let gallery = options.gallery.gallery(run);
            if run.query.is_empty() || gallery.is_empty() {
                return Err(EvalError::Protocol(format!(
                    "subset {}, run {r}: {} queries and {} gallery images; both must be non-empty",
                    subset.name,
                    run.query.len(),
                    gallery.len()
                )));
            }
            let rows = |entries: &[Entry], what: &str| -> Result<Vec<usize>> {
                entries
                    .iter()
                    .map(|e| {
                        row_of.get(e.path.as_str()).copied().ok_or_else(|| {
                            EvalError::Protocol(format!(
                                "subset {}, run {r}: {what} image {:?} has no feature",
                                subset.name, e.path
                            ))
                        })
                    })
                    .collect()
            };
            run_rows.push((rows(&run.query, "query")?, rows(gallery, "gallery")?));
        }
        let scores = RunScores::compute(&all, &run_rows, device)?;
        let mut runs = Vec::with_capacity(subset.runs.len());
        for (r, run) in subset.runs.iter().enumerate() {
            let gallery = options.gallery.gallery(run);
            let similarity = Similarity::new(scores.run(r, &run_rows[r]), run.query.len(), gallery.len())?;
            let query_ids: Vec<_> = run.query.iter().map(|e| &e.identity).collect();
            let gallery_ids: Vec<_> = gallery.iter().map(|e| &e.identity).collect();
            let (query_labels, gallery_labels) = identity_labels(&query_ids, &gallery_ids);
            runs.push(evaluate(&similarity, &query_labels, &gallery_labels, options.max_rank)?);
        }
        let summary = summarize(&runs)?;
        let combined =
            options.gallery == GalleryChoice::Evaluation && subset.runs.iter().any(|r| !r.combined_gallery.is_empty());
        subsets.push(SubsetReport { name: subset.name.clone(), combined_gallery: combined, runs, summary });
    }
    if subsets.is_empty() {
        return Err(EvalError::Protocol("the manifest has no Monte Carlo runs to evaluate".into()));
    }
    Ok(ProtocolReport {
        dataset: manifest.dataset,
        seed: manifest.seed,
        options: *options,
        n_images: features.rows(),
        feature_dim: features.dim(),
        subsets,
    })
}

/// Evaluates `manifest` end to end: extracts the (flip-summed, normalised) feature of every
/// distinct query and gallery image under `root` once, with [`extract_features`], then
/// [`evaluate_features`]. `progress` receives the number of images whose features are done
/// (out of [`evaluation_paths`]`(manifest, options.gallery).len()`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_manifest<B, E>(
    manifest: &SplitManifest,
    root: &Path,
    extractor: &E,
    transform: &Transform,
    feature_options: &FeatureOptions,
    options: &ProtocolOptions,
    device: &B::Device,
    progress: impl FnMut(usize),
) -> Result<ProtocolReport>
where
    B: Backend,
    E: FeatureExtractor<B> + ?Sized,
{
    let paths = evaluation_paths(manifest, options.gallery);
    if paths.is_empty() {
        return Err(EvalError::Protocol("the manifest has no Monte Carlo runs to evaluate".into()));
    }
    let files: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            let mut full = root.to_path_buf();
            full.extend(p.split('/'));
            full
        })
        .collect();
    let features = extract_features(extractor, &files, transform, feature_options, device, progress)?;
    evaluate_features::<B>(manifest, &paths, &features, options, device)
}

/// Largest union similarity block (values) [`RunScores`] computes at once: 256 MB of f32.
const UNION_LIMIT: usize = 64 << 20;

/// The similarities of one subset's runs, computed by the cheaper of two plans: one matrix
/// product per run, or a single product of the union of the runs' query rows with the union of
/// their gallery rows, from which every run's block is gathered. The union wins when runs share
/// most images (PolyU HD: the same test images and distractors in every run, about 5 times
/// fewer products than per run).
enum RunScores {
    /// `[query rows x gallery rows]` of each run.
    PerRun(Vec<Vec<f32>>),
    /// The union block and each feature row's position in its query and gallery union.
    Union { values: Vec<f32>, n_cols: usize, query_pos: HashMap<usize, usize>, gallery_pos: HashMap<usize, usize> },
}

impl RunScores {
    fn compute<B: Backend>(all: &Tensor<B, 2>, runs: &[(Vec<usize>, Vec<usize>)], device: &B::Device) -> Result<Self> {
        let positions = |rows: &mut dyn Iterator<Item = usize>| {
            let mut order = Vec::new();
            let mut pos = HashMap::new();
            for r in rows {
                pos.entry(r).or_insert_with(|| {
                    order.push(r);
                    order.len() - 1
                });
            }
            (order, pos)
        };
        let (union_q, query_pos) = positions(&mut runs.iter().flat_map(|(q, _)| q.iter().copied()));
        let (union_g, gallery_pos) = positions(&mut runs.iter().flat_map(|(_, g)| g.iter().copied()));
        let per_run: usize = runs.iter().map(|(q, g)| q.len() * g.len()).sum();
        let union = union_q.len() * union_g.len();
        if union < per_run && union <= UNION_LIMIT {
            let values = block(all, &union_q, &union_g, device)?;
            Ok(Self::Union { values, n_cols: union_g.len(), query_pos, gallery_pos })
        } else {
            Ok(Self::PerRun(runs.iter().map(|(q, g)| block(all, q, g, device)).collect::<Result<_>>()?))
        }
    }

    /// The row-major similarities of run `r`, whose feature rows are `rows`.
    fn run(&self, r: usize, rows: &(Vec<usize>, Vec<usize>)) -> Vec<f32> {
        match self {
            Self::PerRun(blocks) => blocks[r].clone(),
            Self::Union { values, n_cols, query_pos, gallery_pos } => {
                let cols: Vec<usize> = rows.1.iter().map(|g| gallery_pos[g]).collect();
                let mut out = Vec::with_capacity(rows.0.len() * cols.len());
                for q in &rows.0 {
                    let row = &values[query_pos[q] * n_cols..(query_pos[q] + 1) * n_cols];
                    out.extend(cols.iter().map(|&c| row[c]));
                }
                out
            }
        }
    }
}

/// `features[rows] @ features[cols]^T` on the device, read back row-major.
fn block<B: Backend>(all: &Tensor<B, 2>, rows: &[usize], cols: &[usize], device: &B::Device) -> Result<Vec<f32>> {
    let index = |ids: &[usize]| {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let n = ids.len();
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [n]), device)
    };
    let q = all.clone().select(0, index(rows));
    let g = all.clone().select(0, index(cols));
    Ok(FeatureMatrix::from_tensor(q.matmul(g.transpose()))?.into_data())
}
