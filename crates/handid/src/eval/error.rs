//! The error type of the evaluation module.

use std::path::PathBuf;

/// Everything that can go wrong while evaluating, reporting or drawing.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The similarity values do not fill an `n_query x n_gallery` matrix.
    #[error("similarity matrix has {len} values, expected {n_query} x {n_gallery}")]
    SimilarityShape {
        /// Number of values given.
        len: usize,
        /// Number of query rows declared.
        n_query: usize,
        /// Number of gallery columns declared.
        n_gallery: usize,
    },
    /// A similarity row has a different length from the first row.
    #[error("similarity row {row} has {len} values, row 0 has {expected}")]
    RaggedRows {
        /// The 0-based row.
        row: usize,
        /// Its length.
        len: usize,
        /// The length of row 0.
        expected: usize,
    },
    /// Feature matrices whose sizes do not fit the declared dimension.
    #[error("feature matrix {which} has {len} values, not a multiple of the dimension {dim}")]
    FeatureShape {
        /// `"query"` or `"gallery"`.
        which: &'static str,
        /// Number of values given.
        len: usize,
        /// The declared feature dimension.
        dim: usize,
    },
    /// A similarity value is NaN (it cannot be ranked).
    #[error("similarity[{query}][{gallery}] is NaN")]
    NotANumber {
        /// The 0-based query row.
        query: usize,
        /// The 0-based gallery column.
        gallery: usize,
    },
    /// A list of labels or paths has a different length from the matrix side it describes.
    #[error("{what}: {got} entries for {expected} {side} items")]
    LabelCount {
        /// What the list is (`"query_ids"`, `"gallery_paths"`, ...).
        what: &'static str,
        /// `"query"` or `"gallery"`.
        side: &'static str,
        /// Number of rows or columns of the matrix.
        expected: usize,
        /// Number of entries given.
        got: usize,
    },
    /// Metrics were asked of a matrix without queries or without gallery items.
    #[error("cannot evaluate an empty matrix ({n_query} queries x {n_gallery} gallery items)")]
    Empty {
        /// Number of queries.
        n_query: usize,
        /// Number of gallery items.
        n_gallery: usize,
    },
    /// [`summarize`](super::summarize) was given no runs, or runs that cannot be averaged.
    #[error("cannot summarise runs: {0}")]
    Runs(String),
    /// Verification needs both genuine and impostor comparisons, with finite scores.
    #[error("cannot compute verification figures: {0}")]
    Scores(String),
    /// An option is out of its valid range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// An output file could not be written (or its directory created).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An output could not be encoded (JSON, CSV or PNG).
    #[error("cannot encode {}: {reason}", path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An image could not be read, decoded or preprocessed for feature extraction (the error
    /// names the file).
    #[error(transparent)]
    Preprocess(#[from] clip_burn::preprocess::PreprocessError),
    /// The feature extractor returned a matrix of the wrong shape.
    #[error("the feature extractor returned shape {got:?} for a batch of {batch} images (expected [{batch}, d] with d > 0{})", match expected_dim { Some(d) => format!(", d = {d} as for the earlier batches"), None => String::new() })]
    ExtractorShape {
        /// Number of images in the batch.
        batch: usize,
        /// The shape returned.
        got: [usize; 2],
        /// The feature dimension of the earlier batches, if any.
        expected_dim: Option<usize>,
    },
    /// A feature vector has a NaN or infinite value, or is zero (it cannot be L2-normalised).
    #[error("the feature of {what} {reason}")]
    BadFeature {
        /// The image or item (its path, or its position).
        what: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Vectors of the wrong dimension.
    #[error("{what}: dimension {got}, expected {expected}")]
    Dimension {
        /// What the vectors are (`"queries"`, `"embedding of a.jpg"`, ...).
        what: String,
        /// The dimension required.
        expected: usize,
        /// The dimension given.
        got: usize,
    },
    /// A split manifest cannot be evaluated with the given features or options.
    #[error("cannot evaluate the split manifest: {0}")]
    Protocol(String),
    /// A gallery index operation that cannot be done (an empty index, entries and embeddings of
    /// different counts, ...).
    #[error("gallery index: {0}")]
    Index(String),
    /// A gallery index file (embeddings or JSON sidecar) is missing, unreadable, corrupt, or does
    /// not belong with its partner file.
    #[error("gallery index file {}: {reason}", path.display())]
    IndexFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Shorthand for results of this module.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
