//! A gallery index for casework: embeddings of known images (each with its path and, if known,
//! its identity), saved as a safetensors file plus a JSON sidecar, queried top-k by cosine
//! similarity.
//!
//! Search is exact: the similarity of the queries to every entry is a matrix product on the
//! chosen Burn backend. The gallery goes to the device in chunks of
//! [`SearchOptions::chunk_rows`] rows (65,536 by default: 335 MB at d = 1280), so a million
//! 1280-d entries never need one 5 GB allocation; each chunk's scores are reduced to the running
//! top k of every query on the CPU while the device computes the next product. Ties rank by
//! entry order, as everywhere in this crate. [`GalleryIndex::to_device`] keeps the chunks on the
//! device for repeated searches; [`GalleryIndex::search`] uploads them for one search.
//!
//! Files: `gallery.safetensors` holds the L2-normalised `[n, d]` matrix as tensor `embeddings`
//! (f32), and its metadata the format and a checksum of the matrix; `gallery.safetensors.json`
//! holds the format, `count`, `dim`, the same checksum, the model information and the entries
//! (one per line). Both are written atomically (the embeddings first); loading checks that the
//! two files agree and that the matrix is intact.
//!
//! ```no_run
//! use std::path::Path;
//! use burn::backend::Flex;
//! use handid::eval::{FeatureMatrix, GalleryIndex, IndexEntry, ModelInfo, SearchOptions};
//! # fn main() -> Result<(), handid::eval::EvalError> {
//! let device = Default::default();
//! let mut index = GalleryIndex::new(ModelInfo { name: "CLIP ViT-B/16 image embedding".into(), ..Default::default() });
//! index.add_embedding(IndexEntry::new("known/a.jpg", Some("person-17".into())), &[0.6, 0.8, 0.0])?;
//! index.add_embedding(IndexEntry::new("known/b.jpg", None), &[0.0, 1.0, 0.0])?;
//! index.save(Path::new("gallery.safetensors"))?;
//! let index = GalleryIndex::load(Path::new("gallery.safetensors"))?;
//! let queries = FeatureMatrix::from_rows(&[vec![0.0, 0.9, 0.1]])?;
//! let hits = index.search::<Flex>(&queries, 5, &SearchOptions::default(), &device)?;
//! assert_eq!(hits[0][0].path, "known/b.jpg");
//! # Ok(()) }
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use clip_burn::preprocess::Transform;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{EvalError, Result};
use super::features::{FeatureExtractor, FeatureMatrix, FeatureOptions, extract_features, normalize};
use super::output::{write_atomic, write_atomic_with};

/// The `format` of the index files this version writes and reads.
pub const INDEX_FORMAT: &str = "clip-handid-index/1";

/// Default number of gallery rows per device chunk.
pub const DEFAULT_CHUNK_ROWS: usize = 65_536;

/// Name of the embedding tensor in the safetensors file.
const TENSOR_NAME: &str = "embeddings";

/// Largest safetensors header accepted (the index header is a few hundred bytes).
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Largest deviation of a stored row's norm from 1.
const NORM_TOLERANCE: f64 = 1e-3;

/// One gallery item: where its image is and, if known, whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The image's path (as given when it was added).
    pub path: String,
    /// The identity shown, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// SHA-256 of the image file, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl IndexEntry {
    /// An entry from a path and an optional identity (no SHA-256 recorded).
    pub fn new(path: impl Into<String>, identity: Option<String>) -> Self {
        Self { path: path.into(), identity, sha256: None }
    }
}

/// What produced the embeddings, so that queries are embedded the same way.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model, e.g. `CLIP ViT-B/16 image embedding` or `CLIP-HandID ViT-B/16`.
    pub name: String,
    /// The weights file or checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// The preprocessing, e.g. `Clip { size: 224 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<String>,
    /// Whether the embeddings are flip-summed.
    #[serde(default)]
    pub flip_sum: bool,
    /// Anything else worth recording.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// Options of [`GalleryIndex::search`] and [`GalleryIndex::to_device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOptions {
    /// Gallery rows per device chunk (bounds the largest device allocation).
    pub chunk_rows: usize,
    /// Queries per matrix product (the score block is `query_batch x chunk_rows`).
    pub query_batch: usize,
}

impl Default for SearchOptions {
    /// Chunks of [`DEFAULT_CHUNK_ROWS`] rows, 256 queries per product.
    fn default() -> Self {
        Self { chunk_rows: DEFAULT_CHUNK_ROWS, query_batch: 256 }
    }
}

impl SearchOptions {
    fn check(&self) -> Result<()> {
        if self.chunk_rows == 0 || self.query_batch == 0 {
            return Err(EvalError::InvalidOption(format!(
                "search chunk rows ({}) and query batch ({}) must be at least 1",
                self.chunk_rows, self.query_batch
            )));
        }
        Ok(())
    }
}

/// One candidate of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// 1-based rank.
    pub rank: usize,
    /// 0-based position of the entry in the index.
    pub index: usize,
    /// The entry's image path.
    pub path: String,
    /// The entry's identity, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// A searchable collection of L2-normalised embeddings with their entries.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryIndex {
    model: ModelInfo,
    entries: Vec<IndexEntry>,
    /// Row-major `[entries.len(), dim]`, every row of unit norm.
    embeddings: Vec<f32>,
    /// 0 until the first embedding fixes it (or as loaded).
    dim: usize,
}

/// The JSON sidecar.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    format: String,
    count: usize,
    dim: usize,
    checksum: String,
    model: ModelInfo,
    entries: Vec<IndexEntry>,
}

impl GalleryIndex {
    /// An empty index; its dimension is fixed by the first embedding added.
    pub fn new(model: ModelInfo) -> Self {
        Self { model, entries: Vec::new(), embeddings: Vec::new(), dim: 0 }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The embedding dimension (0 while an index built with [`new`](Self::new) is empty).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// What produced the embeddings.
    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    /// The entries, in index order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The normalised embedding of entry `i`. Panics if `i >= len()`.
    pub fn embedding(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }

    /// All embeddings, row-major `[len(), dim()]`, each of unit norm.
    pub fn embeddings(&self) -> &[f32] {
        &self.embeddings
    }

    /// Checks `dim` against the index's and fixes it on an empty index.
    fn check_dim(&self, what: impl FnOnce() -> String, dim: usize) -> Result<()> {
        if dim == 0 {
            return Err(EvalError::Dimension { what: what(), expected: self.dim.max(1), got: 0 });
        }
        if self.dim != 0 && dim != self.dim {
            return Err(EvalError::Dimension { what: what(), expected: self.dim, got: dim });
        }
        Ok(())
    }

    /// Adds one entry; the embedding is L2-normalised. Fails (leaving the index unchanged) on
    /// a dimension other than the index's, or a NaN, infinite or zero embedding.
    pub fn add_embedding(&mut self, entry: IndexEntry, embedding: &[f32]) -> Result<()> {
        self.check_dim(|| format!("embedding of {}", entry.path), embedding.len())?;
        let mut row = embedding.to_vec();
        normalize(&mut row).map_err(|reason| EvalError::BadFeature { what: entry.path.clone(), reason })?;
        self.dim = embedding.len();
        self.embeddings.extend(row);
        self.entries.push(entry);
        Ok(())
    }

    /// Adds one entry per row of `embeddings` (L2-normalised). Fails, leaving the index
    /// unchanged, when the counts differ, on a dimension other than the index's, or on a NaN,
    /// infinite or zero row (named by its entry's path).
    pub fn add_embeddings(&mut self, entries: Vec<IndexEntry>, embeddings: &FeatureMatrix) -> Result<()> {
        if entries.len() != embeddings.rows() {
            return Err(EvalError::Index(format!(
                "{} entries given for {} embeddings",
                entries.len(),
                embeddings.rows()
            )));
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.check_dim(|| "embeddings".into(), embeddings.dim())?;
        let mut rows = embeddings.clone();
        rows.normalize_rows(|i| entries[i].path.clone())?;
        self.dim = rows.dim();
        self.embeddings.extend(rows.into_data());
        self.entries.extend(entries);
        Ok(())
    }

    /// Embeds the images named by the entries' paths with `extractor` (see
    /// [`extract_features`]; flip-summed when `options.flip_sum`) and adds them. `progress`
    /// receives the number of images done. Fails, leaving the index unchanged, on an unreadable
    /// image (named in the error) or a feature of the wrong dimension.
    #[allow(clippy::too_many_arguments)]
    pub fn add_images<B, E>(
        &mut self,
        extractor: &E,
        entries: Vec<IndexEntry>,
        transform: &Transform,
        options: &FeatureOptions,
        device: &B::Device,
        progress: impl FnMut(usize),
    ) -> Result<()>
    where
        B: Backend,
        E: FeatureExtractor<B> + ?Sized,
    {
        if entries.is_empty() {
            return Ok(());
        }
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let features = extract_features(extractor, &paths, transform, options, device, progress)?;
        self.add_embeddings(entries, &features)
    }

    /// The sidecar file of an index saved at `path`: `path` with `.json` appended.
    pub fn sidecar_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".json");
        PathBuf::from(name)
    }

    /// Saves the embeddings to `path` (safetensors) and the entries and model information to
    /// [`sidecar_path`](Self::sidecar_path)`(path)`, each atomically (embeddings first).
    pub fn save(&self, path: &Path) -> Result<()> {
        let checksum = format!("{:016x}", checksum(&self.embeddings));
        let (n, d) = (self.len(), self.dim);
        let header = serde_json::json!({
            "__metadata__": { "format": INDEX_FORMAT, "checksum": checksum },
            TENSOR_NAME: { "dtype": "F32", "shape": [n, d], "data_offsets": [0, n * d * 4] },
        });
        let mut header = serde_json::to_vec(&header)
            .map_err(|e| EvalError::Encode { path: path.to_path_buf(), reason: e.to_string() })?;
        while header.len() % 8 != 0 {
            header.push(b' ');
        }
        write_atomic_with(path, |file| {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            out.write_all(&(header.len() as u64).to_le_bytes())?;
            out.write_all(&header)?;
            let mut buf = Vec::with_capacity(1 << 18);
            for chunk in self.embeddings.chunks(1 << 16) {
                buf.clear();
                buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                out.write_all(&buf)?;
            }
            out.flush()
        })?;
        let sidecar_path = Self::sidecar_path(path);
        let json = |v: &dyn erased_json::Json| {
            v.to_json().map_err(|e| EvalError::Encode { path: sidecar_path.clone(), reason: e.to_string() })
        };
        let mut text = String::with_capacity(256 + 64 * n);
        text.push_str(&format!("{{\n  \"format\": {},\n", json(&INDEX_FORMAT)?));
        text.push_str(&format!("  \"count\": {n},\n  \"dim\": {d},\n  \"checksum\": {},\n", json(&checksum)?));
        text.push_str(&format!("  \"model\": {},\n  \"entries\": [", json(&self.model)?));
        for (i, entry) in self.entries.iter().enumerate() {
            text.push_str(if i == 0 { "\n    " } else { ",\n    " });
            text.push_str(&json(entry)?);
        }
        text.push_str(if n == 0 { "]\n}\n" } else { "\n  ]\n}\n" });
        write_atomic(&sidecar_path, text.as_bytes())
    }

    /// Loads an index saved by [`save`](Self::save); `path` is the embeddings file (its sidecar
    /// path, ending in `.json`, is accepted too).
    ///
    /// Fails with an error naming the file when either file is missing or unreadable, is not
    /// of this format, or is corrupt (a truncated or malformed safetensors file, a checksum
    /// that does not match the data, a row that is not unit-norm), and when the two files do
    /// not belong together (different counts, dimensions or checksums).
    pub fn load(path: &Path) -> Result<Self> {
        let (path, sidecar_path) = match path.to_str().and_then(|s| s.strip_suffix(".json")) {
            Some(stem) => (PathBuf::from(stem), path.to_path_buf()),
            None => (path.to_path_buf(), Self::sidecar_path(path)),
        };
        let sidecar = read_sidecar(&sidecar_path, &path)?;
        let (shape, stored_checksum, embeddings) = read_embeddings(&path)?;
        let fail = |reason: String| EvalError::IndexFile { path: path.clone(), reason };
        if shape != [sidecar.count, sidecar.dim] {
            return Err(fail(format!(
                "holds a {} x {} matrix but its sidecar {} describes {} entries of dimension {}: the two files do \
                 not belong together",
                shape[0],
                shape[1],
                sidecar_path.display(),
                sidecar.count,
                sidecar.dim
            )));
        }
        let actual = format!("{:016x}", checksum(&embeddings));
        if let Some(stored) = stored_checksum
            && stored != actual
        {
            return Err(fail(format!(
                "the embedding data is corrupt: its checksum is {actual}, the file's header says {stored}"
            )));
        }
        if sidecar.checksum != actual {
            return Err(fail(format!(
                "its embeddings (checksum {actual}) are not those its sidecar {} was saved with (checksum {}): the \
                 two files come from different saves",
                sidecar_path.display(),
                sidecar.checksum
            )));
        }
        if sidecar.dim > 0 {
            for (i, row) in embeddings.chunks_exact(sidecar.dim).enumerate() {
                let norm = row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
                if !norm.is_finite() || (norm - 1.0).abs() > NORM_TOLERANCE {
                    return Err(fail(format!(
                        "row {i} ({}) has norm {norm}, not 1: the stored embeddings must be L2-normalised",
                        sidecar.entries[i].path
                    )));
                }
            }
        }
        Ok(Self { model: sidecar.model, entries: sidecar.entries, embeddings, dim: sidecar.dim })
    }

    /// The `k` entries most similar to each query (row of `queries`, normalised here), best
    /// first; fewer when the index has fewer entries. The gallery is uploaded to `device` one
    /// chunk at a time; for repeated searches, keep it there with [`to_device`](Self::to_device).
    ///
    /// Fails on an empty index, queries of another dimension, or a NaN, infinite or zero query.
    pub fn search<B: Backend>(
        &self,
        queries: &FeatureMatrix,
        k: usize,
        options: &SearchOptions,
        device: &B::Device,
    ) -> Result<Vec<Vec<SearchHit>>> {
        options.check()?;
        let starts: Vec<usize> = (0..self.len()).step_by(options.chunk_rows).collect();
        let chunk = |c: usize| {
            let start = starts[c];
            let rows = options.chunk_rows.min(self.len() - start);
            (start, self.rows_tensor::<B>(start, rows, device))
        };
        search_chunks(self, queries, k, options.query_batch, starts.len(), chunk, device)
    }

    /// Uploads the embeddings to `device` in chunks of `options.chunk_rows` rows, for repeated
    /// searches without uploading again.
    pub fn to_device<B: Backend>(&self, options: &SearchOptions, device: &B::Device) -> Result<DeviceGallery<'_, B>> {
        options.check()?;
        let chunks = (0..self.len())
            .step_by(options.chunk_rows)
            .map(|start| {
                let rows = options.chunk_rows.min(self.len() - start);
                (start, self.rows_tensor::<B>(start, rows, device))
            })
            .collect();
        Ok(DeviceGallery { index: self, chunks, query_batch: options.query_batch, device: device.clone() })
    }

    fn rows_tensor<B: Backend>(&self, start: usize, rows: usize, device: &B::Device) -> Tensor<B, 2> {
        let values = self.embeddings[start * self.dim..(start + rows) * self.dim].to_vec();
        Tensor::from_data(TensorData::new(values, [rows, self.dim]), device)
    }
}

/// A [`GalleryIndex`] whose embeddings stay on a device, in chunks, for repeated searches.
#[derive(Debug)]
pub struct DeviceGallery<'a, B: Backend> {
    index: &'a GalleryIndex,
    /// First row and `[rows, dim]` tensor of each chunk.
    chunks: Vec<(usize, Tensor<B, 2>)>,
    query_batch: usize,
    device: B::Device,
}

impl<B: Backend> DeviceGallery<'_, B> {
    /// Number of device chunks.
    pub fn n_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// As [`GalleryIndex::search`], on the chunks already on the device.
    pub fn search(&self, queries: &FeatureMatrix, k: usize) -> Result<Vec<Vec<SearchHit>>> {
        let chunk = |c: usize| self.chunks[c].clone();
        search_chunks(self.index, queries, k, self.query_batch, self.chunks.len(), chunk, &self.device)
    }
}

/// A candidate in a running top-k. Ordered so that the *worse* candidate is greater (the heap's
/// top is the worst kept): lower score, or equal score and later entry.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    index: usize,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Scores are never NaN here (skipped on entry), so `partial_cmp` is total.
        other.score.partial_cmp(&self.score).unwrap_or(Ordering::Equal).then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// The best `k` candidates seen so far.
struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// Offers the score of entry `index`.
    #[inline]
    fn offer(&mut self, score: f32, index: usize) {
        if score.is_nan() {
            return;
        }
        let candidate = Candidate { score, index };
        if self.heap.len() < self.k {
            self.heap.push(candidate);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate < *worst
        {
            *worst = candidate;
        }
    }

    /// Best first.
    fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

/// The search loop shared by [`GalleryIndex::search`] and [`DeviceGallery::search`]:
/// `chunk(c)` gives the first row and the `[rows, dim]` device tensor of chunk `c`.
fn search_chunks<B: Backend>(
    index: &GalleryIndex,
    queries: &FeatureMatrix,
    k: usize,
    query_batch: usize,
    n_chunks: usize,
    mut chunk: impl FnMut(usize) -> (usize, Tensor<B, 2>),
    device: &B::Device,
) -> Result<Vec<Vec<SearchHit>>> {
    if index.is_empty() {
        return Err(EvalError::Index("the index is empty; add images or embeddings before searching".into()));
    }
    if queries.dim() != index.dim() {
        return Err(EvalError::Dimension { what: "queries".into(), expected: index.dim(), got: queries.dim() });
    }
    let mut queries = queries.clone();
    queries.normalize_rows(|i| format!("query {i}"))?;
    let k = k.min(index.len());
    let mut tops: Vec<TopK> = (0..queries.rows()).map(|_| TopK::new(k)).collect();
    if k > 0 && !queries.is_empty() {
        let batches: Vec<(usize, Tensor<B, 2>)> = (0..queries.rows())
            .step_by(query_batch)
            .map(|start| {
                let rows = query_batch.min(queries.rows() - start);
                (start, queries.rows_tensor::<B>(start, rows, device).transpose())
            })
            .collect();
        // Scores of (first query, first entry) waiting to be read while the next product runs.
        // A block is `[entries, queries]`: the gallery chunk times the query batch transposed,
        // the faster orientation on the CPU backend (a tall, thin product).
        let mut pending: Option<(usize, usize, Tensor<B, 2>)> = None;
        let mut reduce = |(q0, g0, scores): (usize, usize, Tensor<B, 2>)| -> Result<()> {
            let [_, n_q] = scores.dims();
            let values = FeatureMatrix::from_tensor(scores)?.into_data();
            // Each task keeps the top k of 16 adjacent queries (one cache line of every row).
            tops[q0..q0 + n_q].par_chunks_mut(16).enumerate().for_each(|(block, tops)| {
                let j0 = block * 16;
                for (r, row) in values.chunks_exact(n_q).enumerate() {
                    for (top, &score) in tops.iter_mut().zip(&row[j0..]) {
                        top.offer(score, g0 + r);
                    }
                }
            });
            Ok(())
        };
        for c in 0..n_chunks {
            let (g0, gallery) = chunk(c);
            for (q0, q) in &batches {
                let scores = gallery.clone().matmul(q.clone());
                if let Some(ready) = pending.replace((*q0, g0, scores)) {
                    reduce(ready)?;
                }
            }
        }
        if let Some(ready) = pending.take() {
            reduce(ready)?;
        }
    }
    Ok(tops
        .into_iter()
        .map(|top| {
            top.into_sorted()
                .into_iter()
                .enumerate()
                .map(|(r, c)| {
                    let entry = &index.entries[c.index];
                    SearchHit {
                        rank: r + 1,
                        index: c.index,
                        path: entry.path.clone(),
                        identity: entry.identity.clone(),
                        score: c.score,
                    }
                })
                .collect()
        })
        .collect())
}

/// A 64-bit checksum of the values' bits (FNV-1a over 32-bit words, per block of 65,536 values
/// in parallel, then over the blocks' sums): detects corrupt or mismatched files, not tampering.
fn checksum(values: &[f32]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let blocks: Vec<u64> = values
        .par_chunks(1 << 16)
        .map(|block| block.iter().fold(OFFSET, |h, v| (h ^ v.to_bits() as u64).wrapping_mul(PRIME)))
        .collect();
    blocks.into_iter().fold(OFFSET ^ values.len() as u64, |h, b| (h ^ b).wrapping_mul(PRIME).rotate_left(31))
}

/// Reads and checks the sidecar.
fn read_sidecar(path: &Path, embeddings_path: &Path) -> Result<Sidecar> {
    let fail = |reason: String| EvalError::IndexFile { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(format!(
            "does not exist (an index is a safetensors file plus this JSON sidecar; is {} an index?)",
            embeddings_path.display()
        )),
        _ => fail(format!("cannot be read: {e}")),
    })?;
    let sidecar: Sidecar =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("is not a valid index sidecar: {e}")))?;
    if sidecar.format != INDEX_FORMAT {
        return Err(fail(format!("has format {:?}; this version reads {INDEX_FORMAT:?}", sidecar.format)));
    }
    if sidecar.entries.len() != sidecar.count {
        return Err(fail(format!("lists {} entries but says count = {}", sidecar.entries.len(), sidecar.count)));
    }
    if sidecar.count > 0 && sidecar.dim == 0 {
        return Err(fail("says dim = 0 for a non-empty index".into()));
    }
    Ok(sidecar)
}

/// Reads the `embeddings` tensor of a safetensors file without holding the file in memory
/// twice: its shape, the checksum in the metadata (if any) and the values.
#[allow(clippy::type_complexity)]
fn read_embeddings(path: &Path) -> Result<([usize; 2], Option<String>, Vec<f32>)> {
    let fail = |reason: String| EvalError::IndexFile { path: path.to_path_buf(), reason };
    let io = |e: std::io::Error| fail(format!("cannot be read: {e}"));
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("does not exist".into()),
        _ => fail(format!("cannot be opened: {e}")),
    })?;
    let file_len = file.metadata().map_err(io)?.len();
    let corrupt = |what: String| fail(format!("is not a valid safetensors file: {what}"));
    if file_len < 8 {
        return Err(corrupt(format!("only {file_len} bytes long")));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(corrupt(format!("header length {header_len} does not fit a {file_len}-byte file")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("the header is not valid JSON: {e}")))?;
    let tensors = header.as_object().ok_or_else(|| corrupt("the header is not a JSON object".into()))?;
    // Every tensor's extent, to check that the data section is exactly covered.
    let mut data_end = 0u64;
    let mut found = None;
    for (name, info) in tensors.iter().filter(|(name, _)| name.as_str() != "__metadata__") {
        let offsets = info
            .get("data_offsets")
            .and_then(|o| serde_json::from_value::<[u64; 2]>(o.clone()).ok())
            .filter(|[a, b]| a <= b)
            .ok_or_else(|| corrupt(format!("tensor {name:?} has no valid data_offsets")))?;
        data_end = data_end.max(offsets[1]);
        if name == TENSOR_NAME {
            found = Some((info, offsets));
        }
    }
    if 8u64.checked_add(header_len).and_then(|n| n.checked_add(data_end)) != Some(file_len) {
        return Err(corrupt(format!(
            "the header describes {} bytes of tensor data but the file holds {} (truncated or padded)",
            data_end,
            file_len - 8 - header_len
        )));
    }
    let (info, [begin, end]) = found.ok_or_else(|| fail(format!("has no tensor named {TENSOR_NAME:?}")))?;
    let dtype = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
    if dtype != "F32" {
        return Err(fail(format!("tensor {TENSOR_NAME:?} has dtype {dtype:?}; an index stores F32")));
    }
    let shape = info
        .get("shape")
        .and_then(|s| serde_json::from_value::<Vec<usize>>(s.clone()).ok())
        .ok_or_else(|| corrupt(format!("tensor {TENSOR_NAME:?} has no valid shape")))?;
    let [n, d] = shape[..] else {
        return Err(fail(format!("tensor {TENSOR_NAME:?} has shape {shape:?}; an index stores a [count, dim] matrix")));
    };
    let values = n.checked_mul(d).filter(|v| v.checked_mul(4).is_some_and(|b| b as u64 == end - begin));
    let Some(values) = values else {
        return Err(corrupt(format!(
            "tensor {TENSOR_NAME:?} of shape [{n}, {d}] spans {} bytes, not {n} x {d} x 4",
            end - begin
        )));
    };
    let checksum =
        tensors.get("__metadata__").and_then(|m| m.get("checksum")).and_then(|c| c.as_str()).map(str::to_string);
    file.seek(SeekFrom::Start(8 + header_len + begin)).map_err(io)?;
    let mut out = Vec::with_capacity(values);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = values * 4;
    while left > 0 {
        let take = left.min(buf.len());
        file.read_exact(&mut buf[..take]).map_err(io)?;
        out.extend(buf[..take].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        left -= take;
    }
    Ok(([n, d], checksum, out))
}

/// JSON encoding of the sidecar's parts through one function signature.
mod erased_json {
    /// A value that can be written as compact JSON.
    pub(super) trait Json {
        fn to_json(&self) -> serde_json::Result<String>;
    }

    impl<T: serde::Serialize + ?Sized> Json for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_with_ties_by_index() {
        let mut top = TopK::new(3);
        for (i, score) in [0.5, 0.9, 0.5, f32::NAN, 0.5, 0.1, 0.95].into_iter().enumerate() {
            top.offer(score, i);
        }
        let kept: Vec<(usize, f32)> = top.into_sorted().iter().map(|c| (c.index, c.score)).collect();
        assert_eq!(kept, vec![(6, 0.95), (1, 0.9), (0, 0.5)]);
    }

    #[test]
    fn checksum_sees_every_value_and_the_length() {
        let a: Vec<f32> = (0..200_000).map(|i| i as f32).collect();
        let mut b = a.clone();
        b[150_000] = -b[150_000];
        assert_ne!(checksum(&a), checksum(&b));
        assert_ne!(checksum(&a[..10]), checksum(&a[..11]));
        assert_eq!(checksum(&a), checksum(&a.clone()));
    }
}
