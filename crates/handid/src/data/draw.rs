//! One call for any dataset's split: open it, check the published counts (11k, HD), draw the
//! seeded protocol and return the manifest.

use std::path::Path;

use super::{DataError, DatasetKind, FolderDataset, FolderSplitOptions, Hands11k, PolyuHd, SplitManifest};
use crate::progress::Observer;

/// Settings of [`draw_split`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawOptions {
    /// Seed of every draw.
    pub seed: u64,
    /// Monte Carlo query/gallery runs (10 in the protocol).
    pub runs: usize,
    /// Folder datasets: the fraction of identities that train (the rest are test identities).
    pub train_fraction: f64,
    /// 11k and HD: go on, with a warning to the observer, when the counts differ from the
    /// published ones (a partial copy of the data) instead of failing.
    pub allow_count_mismatch: bool,
}

impl Default for DrawOptions {
    /// Seed 42, 10 runs, half of a folder dataset's identities for training, counts checked.
    fn default() -> Self {
        Self { seed: 42, runs: 10, train_fraction: 0.5, allow_count_mismatch: false }
    }
}

/// The split manifest of the dataset of `kind` at `root`. For 11k Hands and PolyU HD the
/// subsets' counts are checked against the published ones; a mismatch is an error unless
/// `options.allow_count_mismatch`, when it is reported to `observer` as a warning.
pub fn draw_split(
    kind: DatasetKind,
    root: &Path,
    options: &DrawOptions,
    observer: &mut dyn Observer,
) -> Result<SplitManifest, DataError> {
    let mut counts = |result: Result<(), DataError>| match result {
        Ok(()) => {
            observer.message("counts match the published ones");
            Ok(())
        }
        Err(e) if options.allow_count_mismatch => {
            observer.message(&format!("warning: {e}"));
            Ok(())
        }
        Err(e) => Err(e),
    };
    match kind {
        DatasetKind::Hands11k => {
            let data = Hands11k::open(root)?;
            counts(data.check_published_counts())?;
            data.split(options.seed, options.runs)
        }
        DatasetKind::PolyuHd => {
            let data = PolyuHd::open(root)?;
            counts(data.check_published_counts())?;
            data.split(options.seed, options.runs)
        }
        DatasetKind::Folders => {
            let data = FolderDataset::open(root)?;
            let split = FolderSplitOptions { train_fraction: options.train_fraction, runs: options.runs };
            data.split(options.seed, &split)
        }
    }
}
