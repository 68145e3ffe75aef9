//! Casework with a [`RetrievalModel`]: image files collected from files and folders, their
//! features saved with provenance, a gallery index built and queried, and ranked candidates
//! written as `hits.json` with the SHA-256 of the model, the index and every image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{RetrievalError, RetrievalModel};
use crate::data::has_image_extension;
use crate::eval::{GalleryIndex, IndexEntry, SearchOptions};
use crate::lr::Supports;
use crate::progress::{Observer, counted};
use crate::provenance::{HashedImage, Provenance, TOOL, sha256_file};

/// Image files among `inputs`: files as given (whatever their extension), folders searched
/// recursively for files with an image extension, in sorted order, hidden entries (names
/// starting with `.`) skipped. Fails, naming the path, on
/// an input that does not exist or a folder that cannot be listed, and when no image is found.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, RetrievalError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RetrievalError> {
        let list_err = |e: std::io::Error| RetrievalError::io(dir, format!("cannot list the folder: {e}"));
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(list_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(list_err)?;
        paths.sort();
        for path in paths {
            // Hidden entries (`.git`, macOS's `._photo.jpg` resource forks) are not images.
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(has_image_extension) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut images = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut images)?;
        } else if input.is_file() {
            images.push(input.clone());
        } else {
            return Err(RetrievalError::Missing { path: input.clone() });
        }
    }
    if images.is_empty() {
        let shown: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(RetrievalError::Io {
            path: PathBuf::from(shown.join(", ")),
            reason: "no image files found (looked for .jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp)".into(),
        });
    }
    Ok(images)
}

/// The SHA-256 of every file, in order, computed in parallel; errors name the file.
pub fn hash_files(paths: &[PathBuf]) -> Result<Vec<HashedImage>, RetrievalError> {
    paths
        .par_iter()
        .map(|p| {
            let sha256 = sha256_file(p).map_err(|e| RetrievalError::io(p, format!("cannot read the file: {e}")))?;
            Ok(HashedImage { path: p.display().to_string(), sha256 })
        })
        .collect()
}

/// Writes the features of `images` as a safetensors file: tensor `embeddings` `[n, dim]`
/// (L2-normalised, flip-summed) and, in the metadata, `images` (JSON list of path and SHA-256,
/// in row order) and `provenance` (JSON). The file is written atomically.
pub fn embed_to_file<B: Backend>(
    model: &RetrievalModel<B>,
    images: &[PathBuf],
    out: &Path,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Provenance, RetrievalError> {
    let needed = (images.len() * model.dim() * 4) as u64;
    clip_burn::io::check_output_file(out, needed)
        .map_err(|e| RetrievalError::io(out, format!("cannot write the embeddings there: {e}")))?;
    let hashed = hash_files(images)?;
    let features = counted(observer, "embedding", images.len(), |report| model.embed(images, device, report))?;
    let provenance = model.provenance(device);
    let write_err = |e: String| RetrievalError::io(out, format!("cannot write the embeddings: {e}"));
    let bytes: Vec<u8> = features.data().iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![features.rows(), features.dim()], &bytes)
            .map_err(|e| write_err(e.to_string()))?;
    let metadata = HashMap::from([
        ("format".to_string(), "clip-handid-embeddings/1".to_string()),
        ("images".to_string(), serde_json::to_string(&hashed).map_err(|e| write_err(e.to_string()))?),
        ("provenance".to_string(), serde_json::to_string(&provenance).map_err(|e| write_err(e.to_string()))?),
    ]);
    let data = safetensors::serialize([("embeddings", view)], Some(metadata)).map_err(|e| write_err(e.to_string()))?;
    clip_burn::io::write_atomic(out, &data).map_err(|e| write_err(e.to_string()))?;
    Ok(provenance)
}

/// Embeds `images` and adds them to `index` (a new one for `model` when `None`), each entry with
/// its SHA-256 and, with `identity_from_folder`, the name of the folder holding it as identity.
/// An existing index must have been built with the same model file ([`check_index_model`]).
pub fn build_index<B: Backend>(
    model: &RetrievalModel<B>,
    images: &[PathBuf],
    identity_from_folder: bool,
    index: Option<(&Path, GalleryIndex)>,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<GalleryIndex, RetrievalError> {
    let mut index = match index {
        Some((path, index)) => {
            check_index_model(path, &index, model)?;
            index
        }
        None => {
            let mut info = model.index_info();
            info.extra.insert("tool".into(), TOOL.into());
            info.extra.insert("backend".into(), B::name(device));
            GalleryIndex::new(info)
        }
    };
    let hashed = hash_files(images)?;
    let entries: Vec<IndexEntry> = images
        .iter()
        .zip(hashed)
        .map(|(p, h)| {
            let identity = identity_from_folder
                .then(|| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()))
                .flatten();
            IndexEntry { path: p.display().to_string(), identity, sha256: Some(h.sha256) }
        })
        .collect();
    let transform = model.transform();
    let options = model.feature_options();
    counted(observer, "indexing", entries.len(), |report| {
        index.add_images(model, entries, &transform, &options, device, report)
    })?;
    Ok(index)
}

/// Refuses an index whose embeddings were made with another model file than `model`'s, by the
/// SHA-256 recorded in the index (not the file's name or path).
pub fn check_index_model<B: Backend>(
    index_path: &Path,
    index: &GalleryIndex,
    model: &RetrievalModel<B>,
) -> Result<(), RetrievalError> {
    let stored = index.model().extra.get("model_sha256");
    match stored {
        Some(sha) if sha == model.sha256() => Ok(()),
        Some(sha) => Err(RetrievalError::Model {
            path: index_path.to_path_buf(),
            reason: format!(
                "was built with another model (SHA-256 {sha}, file {}) than {} (SHA-256 {}); its embeddings cannot be \
                 compared with this model's: query with the index's model or build a new index",
                index.model().weights.as_deref().unwrap_or("unknown"),
                model.path().display(),
                model.sha256()
            ),
        }),
        None => Err(RetrievalError::Model {
            path: index_path.to_path_buf(),
            reason: "records no model SHA-256, so it cannot be checked against this model; build it again with \
                     `handid index build`"
                .into(),
        }),
    }
}

/// One candidate of a query in `hits.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// 1-based rank.
    pub rank: usize,
    /// The gallery image's identity (its folder's name when indexed with identities), or null.
    pub identity: Option<String>,
    /// The gallery image's path as indexed.
    pub path: String,
    /// The gallery image's SHA-256 as indexed.
    pub sha256: Option<String>,
    /// Cosine similarity to the query.
    pub score: f32,
    /// With a calibration: the bounded log10 likelihood ratio of the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log10_lr: Option<f64>,
    /// With a calibration: the likelihood ratio, `10^log10_lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// With a calibration: the verbal strength of support (`"weak"`, ..., on the calibration's
    /// scale) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<String>,
    /// ... and the proposition it supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports: Option<Supports>,
}

/// One query's ranked candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryHits {
    /// The query image as given.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The best candidates, best first.
    pub candidates: Vec<Candidate>,
}

/// The result of [`query_index`], written as `hits.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryReport {
    /// What produced it: tool, model file and SHA-256, index SHA-256, preprocessing, backend.
    pub provenance: Provenance,
    /// One entry per query, in the order given.
    pub queries: Vec<QueryHits>,
}

impl QueryReport {
    /// Writes the report as pretty JSON, atomically.
    pub fn write_json(&self, path: &Path) -> Result<(), RetrievalError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| RetrievalError::io(path, e))?;
        bytes.push(b'\n');
        clip_burn::io::write_atomic(path, &bytes).map_err(|e| RetrievalError::io(path, e))
    }
}

/// Loads the index at `index_path`, checks that it was built with `model`'s file, embeds the
/// queries and returns each one's `k` best candidates with the provenance of the whole.
pub fn query_index<B: Backend>(
    model: &RetrievalModel<B>,
    index_path: &Path,
    queries: &[PathBuf],
    k: usize,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<QueryReport, RetrievalError> {
    query_index_calibrated(model, index_path, queries, k, None, device, observer)
}

/// [`query_index`], and with a `calibration` file (loaded and checked to have been made with
/// `model` before anything is embedded) each candidate's bounded log10 LR, LR and verbal
/// strength, with the calibration's SHA-256 in the provenance.
pub fn query_index_calibrated<B: Backend>(
    model: &RetrievalModel<B>,
    index_path: &Path,
    queries: &[PathBuf],
    k: usize,
    calibration: Option<&Path>,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<QueryReport, RetrievalError> {
    let calibration = calibration.map(|path| super::load_calibration(model, path)).transpose()?;
    if k == 0 {
        return Err(RetrievalError::Model {
            path: index_path.to_path_buf(),
            reason: "cannot be queried for 0 candidates (k must be at least 1)".into(),
        });
    }
    if !index_path.is_file() {
        return Err(RetrievalError::Missing { path: index_path.to_path_buf() });
    }
    let index = GalleryIndex::load(index_path)?;
    check_index_model(index_path, &index, model)?;
    let index_sha256 = sha256_file(index_path).map_err(|e| RetrievalError::io(index_path, e))?;
    let hashed = hash_files(queries)?;
    let features = counted(observer, "queries", queries.len(), |report| model.embed(queries, device, report))?;
    let hits = index.search::<B>(&features, k, &SearchOptions::default(), device)?;
    let mut provenance = model.provenance(device);
    provenance.index_sha256 = Some(index_sha256);
    provenance.calibration_sha256 = calibration.as_ref().map(|c| c.sha256.clone());
    let queries = hashed
        .into_iter()
        .zip(hits)
        .map(|(query, hits)| {
            let candidates = hits
                .into_iter()
                .map(|h| {
                    let evidence =
                        calibration.as_ref().map(|c| c.calibration.evidence(f64::from(h.score))).transpose()?;
                    Ok(Candidate {
                        rank: h.rank,
                        identity: h.identity,
                        sha256: index.entries()[h.index].sha256.clone(),
                        path: h.path,
                        score: h.score,
                        log10_lr: evidence.as_ref().map(|e| e.llr),
                        lr: evidence.as_ref().map(|e| e.lr),
                        strength: evidence.as_ref().map(|e| e.verbal.strength.clone()),
                        supports: evidence.as_ref().map(|e| e.verbal.supports),
                    })
                })
                .collect::<Result<Vec<_>, RetrievalError>>()?;
            Ok(QueryHits { path: query.path, sha256: query.sha256, candidates })
        })
        .collect::<Result<Vec<_>, RetrievalError>>()?;
    Ok(QueryReport { provenance, queries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_collected_from_files_and_folders_in_order() {
        let dir = std::env::temp_dir().join(format!("handid-collect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for file in ["b/2.png", "b/1.JPG", "a/x/3.webp", "a/notes.txt", "a/.hidden/4.png", "a/._5.png"] {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        let loose = dir.join("loose.bin");
        std::fs::write(&loose, b"x").unwrap();
        let found = collect_images(&[dir.join("b"), loose.clone(), dir.join("a")]).unwrap();
        let names: Vec<PathBuf> = found.iter().map(|p| p.strip_prefix(&dir).unwrap().to_path_buf()).collect();
        // Folders sorted and searched recursively for image extensions, hidden entries skipped;
        // files taken as given.
        let expected = ["b/1.JPG", "b/2.png", "loose.bin", "a/x/3.webp"];
        assert_eq!(names, expected.iter().map(PathBuf::from).collect::<Vec<_>>());

        let missing = dir.join("missing.png");
        let err = collect_images(&[dir.join("a"), missing.clone()]).unwrap_err();
        assert!(matches!(&err, RetrievalError::Missing { path } if *path == missing), "{err}");
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        let err = collect_images(&[dir.join("empty")]).unwrap_err();
        assert!(err.to_string().contains("no image files found"), "{err}");

        let hashed = hash_files(&[loose]).unwrap();
        assert_eq!(hashed[0].sha256, crate::provenance::sha256_bytes(b"x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
