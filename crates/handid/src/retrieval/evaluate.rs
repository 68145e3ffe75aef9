//! The protocol's figures for any model on a split manifest, in one call: CMC rank-1/5/10, both
//! mAPs and mINP over the Monte Carlo runs, the verification figures (genuine and impostor
//! scores, ROC, EER) and the ranked candidates of the first run, as JSON, CSV and PNG; with
//! [`evaluate_model`], the figures per group of images where the images carry metadata
//! ([`Differential`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use clip_burn::preprocess::Transform;
use serde::Serialize;

use super::differential::{Differential, EvaluateOptions, GroupPlan};
use super::hash_files;
use super::likelihood::load_calibration;
use super::{RetrievalError, RetrievalModel};
use crate::data::{Entry, SplitManifest};
use crate::eval::{
    ContactSheetOptions, FeatureExtractor, FeatureMatrix, FeatureOptions, ProtocolOptions, ProtocolReport, RankedLists,
    ScoreSets, Similarity, VerificationOptions, VerificationReport, evaluate_features, evaluation_paths,
    extract_features, identity_labels, write_contact_sheet,
};
use crate::progress::{Observer, counted};
use crate::provenance::{HashedImage, Provenance, sha256_file};

/// Everything one evaluation measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Retrieval metrics per run and subset, with their mean and standard deviation.
    pub report: ProtocolReport,
    /// Verification figures of the first subset's first run; `None` when it has no impostor
    /// comparisons (a single test identity) or no genuine ones.
    pub verification: Option<VerificationReport>,
    /// The ranked candidates (top 5) of the first subset's first run.
    pub rankings: RankedLists,
    /// The images whose features were used, relative to the dataset root.
    pub images: Vec<String>,
    /// The figures per group of images, or why there are none ([`evaluate_model`]); `None`:
    /// not asked for ([`evaluate_extractor`]).
    pub differential: Option<Differential>,
}

/// `results.json`: the metrics and what produced them.
#[derive(Serialize)]
struct Results<'a> {
    provenance: &'a Provenance,
    manifest: &'a str,
    manifest_sha256: &'a str,
    images: Vec<HashedImage>,
    results: &'a ProtocolReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    differential_performance: Option<&'a Differential>,
}

impl Evaluation {
    /// Writes `results.json` (the metrics with `provenance`, the manifest's SHA-256 and every
    /// evaluated image's, and the figures per group under `differential_performance` when they
    /// were asked for),
    /// `verification.json` and `verification.png` (when there are verification figures), `rankings.csv` and `rankings.png` (six
    /// queries with their five best candidates; images found under `root`) into `out`, and
    /// returns the files written.
    pub fn write(
        &self,
        out: &Path,
        root: &Path,
        manifest: &Path,
        provenance: &Provenance,
    ) -> Result<Vec<PathBuf>, RetrievalError> {
        let manifest_sha256 = sha256_file(manifest).map_err(|e| RetrievalError::io(manifest, e))?;
        let results = out.join("results.json");
        let files: Vec<PathBuf> = self.images.iter().map(|p| under(root, p)).collect();
        let mut images = hash_files(&files)?;
        for (image, rel) in images.iter_mut().zip(&self.images) {
            image.path = rel.clone();
        }
        let body = Results {
            provenance,
            manifest: &manifest.display().to_string(),
            manifest_sha256: &manifest_sha256,
            images,
            results: &self.report,
            differential_performance: self.differential.as_ref(),
        };
        let mut bytes = serde_json::to_vec_pretty(&body).map_err(|e| RetrievalError::io(&results, e))?;
        bytes.push(b'\n');
        clip_burn::io::write_atomic(&results, &bytes).map_err(|e| RetrievalError::io(&results, e))?;
        let files = self.write_figures(out, root)?;
        Ok([vec![results], files].concat())
    }

    /// Writes the verification and ranking outputs of [`write`](Self::write) only.
    pub fn write_figures(&self, out: &Path, root: &Path) -> Result<Vec<PathBuf>, RetrievalError> {
        let mut files = Vec::new();
        if let Some(verification) = &self.verification {
            let (json, png) = (out.join("verification.json"), out.join("verification.png"));
            verification.write_json(&json)?;
            verification.write_png(&png)?;
            files.extend([json, png]);
        }
        let (rc, rp) = (out.join("rankings.csv"), out.join("rankings.png"));
        self.rankings.write_csv(&rc)?;
        let queries = &self.rankings.queries;
        let shown: Vec<_> = queries.iter().step_by((queries.len() / 6).max(1)).take(6).collect();
        let options = ContactSheetOptions { top_k: 5, thumb_width: 96, thumb_height: 96, frame: 4 };
        write_contact_sheet(&shown, root, &rp, &options)?;
        files.extend([rc, rp]);
        Ok(files)
    }
}

/// The file of a manifest path (`/`-separated, relative) under `root`.
fn under(root: &Path, relative: &str) -> PathBuf {
    let mut full = root.to_path_buf();
    full.extend(relative.split('/'));
    full
}

/// Evaluates `extractor` on `manifest` (images under `root`, preprocessed with `transform`,
/// flip-summed): each image's feature is extracted once, then the metrics of every run, the
/// verification figures and the rankings of the first run are computed from them.
pub fn evaluate_extractor<B, E>(
    extractor: &E,
    transform: &Transform,
    manifest: &SplitManifest,
    root: &Path,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Evaluation, RetrievalError>
where
    B: Backend,
    E: FeatureExtractor<B> + ?Sized,
{
    Ok(evaluate_with_features(extractor, transform, manifest, root, device, observer)?.0)
}

/// [`evaluate_extractor`], also returning the features of [`Evaluation::images`] (row `i` is
/// image `i`'s).
fn evaluate_with_features<B, E>(
    extractor: &E,
    transform: &Transform,
    manifest: &SplitManifest,
    root: &Path,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<(Evaluation, FeatureMatrix), RetrievalError>
where
    B: Backend,
    E: FeatureExtractor<B> + ?Sized,
{
    let options = ProtocolOptions::default();
    let paths = evaluation_paths(manifest, options.gallery);
    let Some(run) = manifest.subsets.iter().find_map(|s| s.runs.first()) else {
        return Err(RetrievalError::Eval(crate::eval::EvalError::Protocol(
            "the manifest has no Monte Carlo runs to evaluate (no test identities)".into(),
        )));
    };
    let files: Vec<PathBuf> = paths.iter().map(|p| under(root, p)).collect();
    let features = counted(observer, "evaluation features", files.len(), |report| {
        extract_features(extractor, &files, transform, &FeatureOptions::default(), device, report)
    })?;
    let report = evaluate_features::<B>(manifest, &paths, &features, &options, device)?;

    let row: HashMap<&str, usize> = paths.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
    let gallery = options.gallery.gallery(run);
    let rows = |entries: &[Entry]| -> Result<FeatureMatrix, RetrievalError> {
        let mut data = Vec::with_capacity(entries.len() * features.dim());
        for e in entries {
            data.extend_from_slice(features.row(row[e.path.as_str()]));
        }
        Ok(FeatureMatrix::new(data, features.dim())?)
    };
    let (queries, gallery_features) = (rows(&run.query)?, rows(gallery)?);
    let similarity = Similarity::from_features(queries.data(), gallery_features.data(), features.dim())?;
    let ids = |entries: &[Entry]| entries.iter().map(|e| e.identity.clone()).collect::<Vec<_>>();
    let (query_ids, gallery_ids) = (ids(&run.query), ids(gallery));
    let (query_labels, gallery_labels) = identity_labels(&query_ids, &gallery_ids);
    let scores = ScoreSets::from_similarity(&similarity, &query_labels, &gallery_labels)?;
    let verification = if scores.genuine.is_empty() || scores.impostor.is_empty() {
        None
    } else {
        Some(VerificationReport::compute(&scores, &VerificationOptions::default())?)
    };
    // Thumbnails are labelled with the identity's id alone (the group is the same for all).
    let short = |entries: &[Entry]| entries.iter().map(|e| e.identity.id.clone()).collect::<Vec<_>>();
    let rel = |entries: &[Entry]| entries.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    let rankings =
        RankedLists::compute(&similarity, &short(&run.query), &short(gallery), &rel(&run.query), &rel(gallery), 5)?;
    Ok((Evaluation { report, verification, rankings, images: paths, differential: None }, features))
}

/// [`evaluate_extractor`] with a loaded model and its own preprocessing, on the manifest file
/// `manifest_path` (its files checked under `root` first), plus the figures per group of
/// images where they carry metadata ([`EvaluateOptions::metadata`]; with
/// [`EvaluateOptions::calibration`], each group's Cllr), with every output written into `out`
/// by [`Evaluation::write`] with the model's provenance (and the calibration's SHA-256). A
/// calibration made with another model, or metadata that does not describe every evaluated
/// image, is refused before any image is embedded, naming the file.
pub fn evaluate_model<B: Backend>(
    model: &RetrievalModel<B>,
    manifest_path: &Path,
    root: &Path,
    out: &Path,
    options: &EvaluateOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<(Evaluation, Vec<PathBuf>), RetrievalError> {
    let manifest = SplitManifest::read(manifest_path).map_err(|e| RetrievalError::io(manifest_path, e))?;
    manifest.check_files(root, manifest_path).map_err(|e| RetrievalError::io(manifest_path, e))?;
    clip_burn::io::check_output_dir(out, 16 << 20)
        .map_err(|e| RetrievalError::io(out, format!("cannot write the results there: {e}")))?;
    let calibration = options.calibration.as_deref().map(|path| load_calibration(model, path)).transpose()?;
    // The metadata is matched with the manifest before the long work.
    let paths = evaluation_paths(&manifest, ProtocolOptions::default().gallery);
    let plan = GroupPlan::new(&manifest, root, &paths, options.metadata.as_deref())?;
    let (mut evaluation, features) =
        evaluate_with_features(model, &model.transform(), &manifest, root, device, observer)?;
    debug_assert_eq!(evaluation.images, paths);
    evaluation.differential = Some(match plan {
        Ok(plan) => {
            observer.message("figures per group");
            plan.compute(&features, calibration.as_ref(), &options.differential)?
        }
        Err(reason) => Differential::Unavailable { reason },
    });
    let mut provenance = model.provenance(device);
    provenance.seeds.insert("split".into(), manifest.seed);
    provenance.calibration_sha256 = calibration.map(|c| c.sha256);
    if matches!(evaluation.differential, Some(Differential::Computed(_))) {
        provenance.seeds.insert("differential_pairs".into(), options.differential.pairs.seed);
    }
    let files = evaluation.write(out, root, manifest_path, &provenance)?;
    Ok((evaluation, files))
}
