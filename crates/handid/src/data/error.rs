//! The error type of the data module.

use std::path::PathBuf;

use super::manifest::DatasetKind;

/// What went wrong while reading a dataset, drawing its splits, reading or writing a split
/// manifest, or loading an image. Every message names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The dataset root does not exist or is not a directory.
    #[error("dataset root {} does not exist or is not a directory", path.display())]
    MissingRoot {
        /// The root that was given.
        path: PathBuf,
    },
    /// A file or folder that the dataset layout (or a manifest) requires is missing.
    #[error("{what} not found: {} does not exist", path.display())]
    MissingPath {
        /// The path that was expected.
        path: PathBuf,
        /// What it should have been, e.g. `"HandInfo.csv"` or `"image"`.
        what: &'static str,
    },
    /// Reading, writing or listing a file or folder failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done, e.g. `"read"`.
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CSV file lacks required columns.
    #[error("{} lacks the column(s) {} ({})", path.display(), missing.join(", "), describe_header(found))]
    MissingColumns {
        /// The CSV file.
        path: PathBuf,
        /// The required columns that are absent.
        missing: Vec<String>,
        /// The columns the header does have.
        found: Vec<String>,
    },
    /// A CSV row cannot be used.
    #[error("{}, line {line}: {message}", path.display())]
    BadRow {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What is wrong with the row.
        message: String,
    },
    /// An image name is listed twice.
    #[error("{}, line {line}: image {name} is listed again (first on line {first_line})", path.display())]
    DuplicateImage {
        /// The CSV file.
        path: PathBuf,
        /// The repeated image name.
        name: String,
        /// Line of the repetition.
        line: u64,
        /// Line of the first listing.
        first_line: u64,
    },
    /// An `aspectOfHand` value that is not one of the four aspects.
    #[error(
        "{}, line {line}: unknown aspectOfHand {value:?} (expected \"dorsal right\", \"dorsal left\", \"palmar right\" or \"palmar left\")",
        path.display()
    )]
    UnknownAspect {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The value found.
        value: String,
    },
    /// An image named by a CSV row does not exist.
    #[error("{}, line {line}: image {} does not exist", path.display(), image.display())]
    MissingImage {
        /// The CSV file naming the image.
        path: PathBuf,
        /// 1-based line number of the row.
        line: u64,
        /// Where the image was expected.
        image: PathBuf,
    },
    /// An identity has fewer images than the split protocol needs.
    #[error(
        "{}: identity {identity} has {count} usable image(s), but a {role} identity needs at least {needed} ({why})",
        path.display()
    )]
    TooFewImages {
        /// The file or folder the identity was read from.
        path: PathBuf,
        /// The identity, as `group/id`.
        identity: String,
        /// `"training"` or `"test"`.
        role: &'static str,
        /// How many images it has.
        count: usize,
        /// How many it needs.
        needed: usize,
        /// Why that many are needed.
        why: &'static str,
    },
    /// A folder holds no images.
    #[error("{} holds no images (looked for files ending in {})", path.display(), super::IMAGE_EXTENSIONS.join(", "))]
    NoImages {
        /// The folder.
        path: PathBuf,
    },
    /// The dataset's files do not have the expected layout (file or folder names, empty subsets, ...).
    #[error("{}: {message}", path.display())]
    Layout {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The dataset does not give the counts published for it (docs/METHOD.md section 4).
    #[error("{} does not give the published split counts: {}", path.display(), discrepancies.join("; "))]
    PublishedCounts {
        /// The dataset file or folder checked.
        path: PathBuf,
        /// One line per count that differs.
        discrepancies: Vec<String>,
    },
    /// A split manifest cannot be parsed or is inconsistent.
    #[error("split manifest {}: {message}", path.display())]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A split manifest was written for another dataset.
    #[error("split manifest {} was written for dataset {found}, not {expected}", path.display())]
    WrongDataset {
        /// The manifest file.
        path: PathBuf,
        /// The dataset it was loaded for.
        expected: DatasetKind,
        /// The dataset it names.
        found: DatasetKind,
    },
    /// A split manifest names files that do not exist under the dataset root.
    #[error(
        "split manifest {} names {count} file(s) missing under {}, e.g. {}",
        path.display(),
        root.display(),
        examples.join(", ")
    )]
    ManifestMissingFiles {
        /// The manifest file.
        path: PathBuf,
        /// The dataset root.
        root: PathBuf,
        /// How many distinct files are missing.
        count: usize,
        /// The first few missing paths, relative to the root.
        examples: Vec<String>,
    },
    /// An image file cannot be decoded (unknown format, truncated, corrupt).
    #[error("cannot decode image {}: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An option of a split is out of range.
    #[error("invalid split option: {0}")]
    InvalidOption(String),
}

/// The header a CSV file does have, quoted so that control characters in a damaged file are
/// shown escaped rather than sent to the terminal.
fn describe_header(found: &[String]) -> String {
    if found.iter().all(|h| h.is_empty()) {
        "the file has no header line".to_string()
    } else {
        let quoted: Vec<String> = found.iter().map(|h| format!("{h:?}")).collect();
        format!("its header has: {}", quoted.join(", "))
    }
}

impl DataError {
    /// An [`DataError::Io`] for `action` on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), action, source }
    }

    /// A [`DataError::Layout`] for `path`.
    pub(crate) fn layout(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Layout { path: path.into(), message: message.into() }
    }
}
