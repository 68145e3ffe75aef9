//! Retrieval evaluation and casework outputs.
//!
//! - [`metrics`]: CMC, the published interpolated mAP, the standard mAP and mINP of a similarity
//!   matrix, and their mean and standard deviation over Monte Carlo runs
//!   (docs/METHOD.md section 5);
//! - [`verification`]: genuine and impostor score distributions, ROC, EER and TAR at fixed FAR
//!   (ISO/IEC 19795-1 terms), as JSON and PNG;
//! - [`ranking`]: ranked candidate lists per query as CSV and JSON, and PNG contact sheets;
//! - [`features`]: the hook where a model plugs in ([`FeatureExtractor`], implemented for CLIP
//!   and closures) and the protocol's flip-summed, L2-normalised features of image files;
//! - [`protocol`]: a split manifest evaluated end to end, per run and summarised over runs;
//! - [`index`]: a gallery index for casework, saved as safetensors plus a JSON sidecar and
//!   searched top-k by cosine on the chosen backend.
//!
//! The metrics take identities as `u64` labels (a gallery item is a true match of a query when
//! the labels are equal); [`identity_labels`] maps identities of any type, such as the data
//! module's `group/id` identities, to such labels. Ranked lists keep the identities themselves. Every file is written atomically (temporary file, then rename).
//!
//! ```
//! # use handid::eval::{Similarity, evaluate};
//! // Two queries (identities 1 and 2) against three gallery items (identities 2, 1, 3).
//! let similarity = Similarity::from_rows(&[vec![0.2, 0.9, 0.1], vec![0.3, 0.8, 0.4]])?;
//! let metrics = evaluate(&similarity, &[1, 2], &[2, 1, 3], 10)?;
//! assert_eq!(metrics.rank1, 0.5);
//! // Query 2's only match is at rank 3: interpolated AP 1/(2*3), standard AP 1/3.
//! assert!((metrics.map_interpolated - (1.0 + 1.0 / 6.0) / 2.0).abs() < 1e-12);
//! assert!((metrics.map_standard - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
//! # Ok::<(), handid::eval::EvalError>(())
//! ```

mod error;
pub mod features;
pub mod index;
pub mod metrics;
pub(crate) mod output;
pub(crate) mod plot;
pub mod protocol;
pub mod ranking;
pub mod verification;

pub use error::{EvalError, Result};
pub use features::{FeatureExtractor, FeatureMatrix, FeatureOptions, extract_features};
pub use index::{DeviceGallery, GalleryIndex, IndexEntry, ModelInfo, SearchHit, SearchOptions};
pub use metrics::{
    MeanStd, MetricSummary, QueryOutcome, RetrievalMetrics, Similarity, evaluate, evaluate_queries, identity_labels,
    summarize,
};
pub use output::write_atomic;
pub use protocol::{
    GalleryChoice, ProtocolOptions, ProtocolReport, SubsetReport, evaluate_features, evaluate_manifest,
    evaluation_paths,
};
pub use ranking::{Candidate, ContactSheetOptions, QueryRanking, RankedLists, contact_sheet, write_contact_sheet};
pub use verification::{
    Eer, RocPoint, ScoreHistogram, ScoreSets, ScoreStats, TarAtFar, VerificationOptions, VerificationReport,
};
