//! A folder-per-identity dataset for one's own images: `root/<identity>/<images>`.
//!
//! Every non-hidden sub-folder of the root is an identity; its image files (by extension, see
//! [`IMAGE_EXTENSIONS`](super::IMAGE_EXTENSIONS); sub-folders are not searched) are its images.
//! Identities are labelled `folders/<folder name>`. A seeded draw sends a fraction of the
//! identities to training, the rest to test; then the same protocol as the published datasets
//! runs (one validation image per training identity, Monte Carlo query/gallery runs).

use std::path::{Path, PathBuf};

use super::error::DataError;
use super::manifest::{DatasetKind, SplitManifest};
use super::split::{DEFAULT_RUNS, Identity, IdentityImages, SubsetPlan, draw_subset, protocol_rng, shuffle};
use super::{has_image_extension, utf8_file_name};

/// The group of folder identities and the name of the single subset.
pub const FOLDERS_GROUP: &str = "folders";
/// Generator stream of the identity draw (the protocol uses stream 0).
const IDENTITY_STREAM: u64 = 1;

/// How a folder dataset is split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FolderSplitOptions {
    /// Fraction of the identities drawn for training, in `[0, 1]`; the number of training
    /// identities is `round(fraction * identities)`. 0 makes every identity a test identity
    /// (evaluation only), 1 every identity a training identity (no runs).
    pub train_fraction: f64,
    /// Monte Carlo query/gallery runs.
    pub runs: usize,
}

impl Default for FolderSplitOptions {
    /// Half the identities for training, 10 runs.
    fn default() -> Self {
        FolderSplitOptions { train_fraction: 0.5, runs: DEFAULT_RUNS }
    }
}

/// A folder-per-identity dataset, listed.
#[derive(Clone, Debug)]
pub struct FolderDataset {
    root: PathBuf,
    identities: Vec<IdentityImages>,
}

impl FolderDataset {
    /// Lists the identity folders of `root` and their images. Errors on an identity folder
    /// without images, and on a root without identity folders.
    pub fn open(root: &Path) -> Result<Self, DataError> {
        if !root.is_dir() {
            return Err(DataError::MissingRoot { path: root.to_path_buf() });
        }
        let mut folders = Vec::new();
        let mut loose_images = 0usize;
        for item in std::fs::read_dir(root).map_err(|e| DataError::io(root, "list", e))? {
            let path = item.map_err(|e| DataError::io(root, "list", e))?.path();
            let name = utf8_file_name(&path)?;
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                folders.push((name, path));
            } else if has_image_extension(&name) {
                loose_images += 1;
            }
        }
        if folders.is_empty() {
            let hint = if loose_images > 0 {
                format!(
                    "; it holds {loose_images} image(s) directly, is it a single identity's folder? Give its parent"
                )
            } else {
                String::new()
            };
            return Err(DataError::layout(
                root,
                format!("no identity folders found (expected root/<identity>/<images>){hint}"),
            ));
        }
        folders.sort();
        let mut identities = Vec::with_capacity(folders.len());
        for (name, dir) in folders {
            let mut images = Vec::new();
            for item in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, "list", e))? {
                let path = item.map_err(|e| DataError::io(&dir, "list", e))?.path();
                let file = utf8_file_name(&path)?;
                if !file.starts_with('.') && has_image_extension(&file) && path.is_file() {
                    images.push(format!("{name}/{file}"));
                }
            }
            if images.is_empty() {
                return Err(DataError::NoImages { path: dir });
            }
            images.sort();
            identities.push(IdentityImages { identity: Identity::new(FOLDERS_GROUP, name), images, origin: dir });
        }
        Ok(FolderDataset { root: root.to_path_buf(), identities })
    }

    /// The dataset root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The identities, in folder-name order.
    pub fn identities(&self) -> &[IdentityImages] {
        &self.identities
    }

    /// The training/test identity draw (generator stream 1 of `seed`): the identities are
    /// shuffled and the first `round(fraction * n)` are training identities.
    pub fn plan(&self, seed: u64, train_fraction: f64) -> Result<SubsetPlan, DataError> {
        if !(0.0..=1.0).contains(&train_fraction) {
            return Err(DataError::InvalidOption(format!("train fraction {train_fraction} is not in [0, 1]")));
        }
        let mut order: Vec<usize> = (0..self.identities.len()).collect();
        shuffle(&mut protocol_rng(seed, IDENTITY_STREAM), &mut order);
        let n_train = (train_fraction * self.identities.len() as f64).round() as usize;
        let pick = |indices: &[usize]| indices.iter().map(|&i| self.identities[i].clone()).collect::<Vec<_>>();
        Ok(SubsetPlan {
            name: FOLDERS_GROUP.to_string(),
            train: pick(&order[..n_train]),
            test: pick(&order[n_train..]),
            distractors: Vec::new(),
        })
    }

    /// Draws the split: identities by [`plan`](Self::plan), then validation images and the
    /// query/gallery runs (generator stream 0 of `seed`).
    pub fn split(&self, seed: u64, options: &FolderSplitOptions) -> Result<SplitManifest, DataError> {
        if options.runs == 0 {
            return Err(DataError::InvalidOption("the number of Monte Carlo runs must be at least 1".into()));
        }
        let plan = self.plan(seed, options.train_fraction)?;
        let subset = draw_subset(&plan, options.runs, &mut protocol_rng(seed, 0))?;
        Ok(SplitManifest::new(DatasetKind::Folders, seed, Some(options.train_fraction), vec![subset]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{TempDir, touch};
    use std::collections::BTreeSet;

    fn make(root: &Path, identities: usize, images: usize) {
        for i in 0..identities {
            for k in 0..images {
                touch(&root.join(format!("person{i:02}")).join(format!("img{k}.png")));
            }
        }
    }

    #[test]
    fn split_by_fraction() {
        let dir = TempDir::new("folders");
        make(dir.path(), 10, 4);
        touch(&dir.path().join("person00/readme.txt"));
        touch(&dir.path().join(".hidden/a.jpg"));
        touch(&dir.path().join("index.csv"));
        let data = FolderDataset::open(dir.path()).unwrap();
        assert_eq!(data.identities().len(), 10);
        assert_eq!(
            data.identities()[0].images,
            ["person00/img0.png", "person00/img1.png", "person00/img2.png", "person00/img3.png"]
        );
        let options = FolderSplitOptions { train_fraction: 0.3, runs: 3 };
        let manifest = data.split(11, &options).unwrap();
        let s = &manifest.subsets[0];
        let summary = s.summary();
        assert_eq!((summary.train_identities, summary.test_identities, summary.runs), (3, 7, 3));
        assert_eq!((summary.gallery_images, summary.query_images, summary.val_images), (7, 21, 3));
        let train_ids: BTreeSet<_> = s.train.iter().map(|e| &e.identity).collect();
        let test_ids: BTreeSet<_> = s.runs[0].query.iter().map(|e| &e.identity).collect();
        assert!(train_ids.is_disjoint(&test_ids));
        assert_eq!(manifest.train_fraction, Some(0.3));
        assert_eq!(manifest, data.split(11, &options).unwrap());
        assert_ne!(data.plan(11, 0.3).unwrap().train, data.plan(12, 0.3).unwrap().train);

        let all_test = data.split(1, &FolderSplitOptions { train_fraction: 0.0, runs: 2 }).unwrap();
        assert_eq!(all_test.subsets[0].summary().test_identities, 10);
        assert!(all_test.subsets[0].train.is_empty());
        let all_train = data.split(1, &FolderSplitOptions { train_fraction: 1.0, runs: 2 }).unwrap();
        assert!(all_train.subsets[0].runs.is_empty());
        assert_eq!(all_train.subsets[0].val.len(), 10);

        for bad in [-0.1, 1.5, f64::NAN] {
            let err = data.split(1, &FolderSplitOptions { train_fraction: bad, runs: 2 }).unwrap_err();
            assert!(matches!(err, DataError::InvalidOption(_)), "{err}");
        }
        assert!(data.split(1, &FolderSplitOptions { train_fraction: 0.5, runs: 0 }).is_err());
    }

    #[test]
    fn folder_errors() {
        let dir = TempDir::new("folders-errors");
        assert!(matches!(FolderDataset::open(&dir.path().join("x")), Err(DataError::MissingRoot { .. })));
        touch(&dir.path().join("a.jpg"));
        let err = FolderDataset::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Layout { .. }) && err.to_string().contains("1 image(s) directly"), "{err}");
        make(dir.path(), 3, 2);
        std::fs::create_dir(dir.path().join("empty_person")).unwrap();
        touch(&dir.path().join("empty_person/notes.txt"));
        let err = FolderDataset::open(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::NoImages { .. }) && err.to_string().contains("empty_person"), "{err}");
        std::fs::remove_dir_all(dir.path().join("empty_person")).unwrap();
        touch(&dir.path().join("lonely/only.jpg"));
        let data = FolderDataset::open(dir.path()).unwrap();
        let err = data.split(3, &FolderSplitOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::TooFewImages { count: 1, .. }), "{err}");
        assert!(err.to_string().contains("lonely"), "{err}");
    }
}
