//! The crate's error type: every variant names the file or input at fault.

use std::path::Path;

/// Errors from building, loading or running a CLIP model.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is malformed.
    #[error("{path}: invalid CLIP configuration: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A model name that is not one of the presets.
    #[error("unknown CLIP model `{name}`; known models: {known}")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The accepted names.
        known: String,
    },
    /// A weights file is unreadable or does not fit the model.
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    /// An input is not valid for this model (shape, size, stride).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ClipError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}
