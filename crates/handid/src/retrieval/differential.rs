//! Differential performance in the evaluation report (ISO/IEC 19795-10 style): where the
//! evaluated images carry 11k Hands metadata (`HandInfo.csv`), the figures of
//! [`crate::lr::differential_performance`] per group (gender, age band, skin colour, nail
//! polish, irregularities, accessories), per subset of the manifest, with the counts behind
//! every figure; with a calibration, each group's Cllr. Where there is no metadata, the report
//! says why ([`Differential::Unavailable`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RetrievalError;
use super::likelihood::LoadedCalibration;
use crate::data::hands11k::{HAND_INFO_FILE, HandInfoRow};
use crate::data::{DatasetKind, SplitManifest, read_hand_info};
use crate::eval::{EvalError, FeatureMatrix};
use crate::lr::{DifferentialOptions, DifferentialReport, GroupLabels, differential_performance, hands11k_groups};
use crate::provenance::{HashedImage, sha256_file};

/// What [`evaluate_model`](super::evaluate_model) adds to the protocol's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluateOptions {
    /// An 11k Hands `HandInfo.csv` describing the evaluated images by file name (its
    /// `imageName`). `None`: `root/HandInfo.csv` for an 11k Hands manifest, none otherwise.
    pub metadata: Option<PathBuf>,
    /// A calibration of the model (`handid calibrate`): adds each group's Cllr. Refused when it
    /// was made with another model.
    pub calibration: Option<PathBuf>,
    /// Settings of the per-group figures.
    pub differential: DifferentialOptions,
}

/// The per-group figures of an evaluation, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Differential {
    /// The figures, per subset.
    Computed(DifferentialResults),
    /// No figures: the evaluated images carry no metadata.
    Unavailable {
        /// Why, in words.
        reason: String,
    },
}

/// The per-group figures of every subset of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifferentialResults {
    /// The metadata file and its SHA-256.
    pub metadata: HashedImage,
    /// The calibration behind the Cllr figures and its SHA-256; `None`: no Cllr.
    pub calibration: Option<HashedImage>,
    /// What applies to every group (no calibration, ...).
    pub notes: Vec<String>,
    /// Every subset of the manifest that has test images.
    pub subsets: Vec<SubsetDifferential>,
}

/// The per-group figures of one subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetDifferential {
    /// The subset (`dorsal_right`, ...).
    pub subset: String,
    /// Its images: the first Monte Carlo run's queries and own gallery (the subset's test
    /// images), compared with each other.
    pub images: usize,
    /// The figures per group.
    pub report: DifferentialReport,
}

/// The metadata file of an evaluation: `options.metadata`, or `root/HandInfo.csv` for an 11k
/// Hands manifest; `Err(reason)` when there is none.
fn metadata_file(manifest: &SplitManifest, root: &Path, metadata: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = metadata {
        return Ok(path.to_path_buf());
    }
    if manifest.dataset != DatasetKind::Hands11k {
        return Err(format!(
            "the manifest's dataset ({}) carries no per-image metadata; give an 11k Hands {HAND_INFO_FILE} that \
             describes the images by file name (--metadata) for the figures per group",
            manifest.dataset
        ));
    }
    let csv = root.join(HAND_INFO_FILE);
    if csv.is_file() {
        Ok(csv)
    } else {
        Err(format!("{} does not exist: no metadata for the figures per group", csv.display()))
    }
}

/// The images of every subset with their identities and group labels, matched with the
/// metadata before any feature is extracted ([`GroupPlan::new`]).
#[derive(Debug, Clone)]
pub struct GroupPlan {
    csv: PathBuf,
    subsets: Vec<PlannedSubset>,
}

#[derive(Debug, Clone)]
struct PlannedSubset {
    name: String,
    /// Row of each image in the evaluation's features.
    rows: Vec<usize>,
    identities: Vec<u64>,
    groups: Vec<GroupLabels>,
}

impl GroupPlan {
    /// Matches the images of `manifest` (under `root`; `paths[i]` is row `i` of the features
    /// to come) with the metadata: per subset, the first Monte Carlo run's queries and own
    /// gallery. `Ok(Err(reason))` when there is no metadata. Every image must have a row in the
    /// metadata file (matched by file name); two images with the same file name are refused
    /// (they cannot be told apart). Errors name the metadata file.
    pub fn new(
        manifest: &SplitManifest,
        root: &Path,
        paths: &[String],
        metadata: Option<&Path>,
    ) -> Result<Result<Self, String>, RetrievalError> {
        let csv = match metadata_file(manifest, root, metadata) {
            Ok(csv) => csv,
            Err(reason) => return Ok(Err(reason)),
        };
        let rows = read_hand_info(&csv).map_err(|e| RetrievalError::io(&csv, e))?;
        let by_name: HashMap<&str, &HandInfoRow> = rows.iter().map(|r| (r.image_name.as_str(), r)).collect();
        let row_of: HashMap<&str, usize> = paths.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
        let mut subsets = Vec::new();
        for subset in &manifest.subsets {
            let Some(run) = subset.runs.first() else { continue };
            let mut seen: HashMap<&str, &str> = HashMap::new();
            let mut planned =
                PlannedSubset { name: subset.name.clone(), rows: vec![], identities: vec![], groups: vec![] };
            let mut numbers: BTreeMap<String, u64> = BTreeMap::new();
            for entry in run.query.iter().chain(&run.gallery) {
                let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
                match seen.insert(name, entry.path.as_str()) {
                    Some(other) if other == entry.path => continue,
                    Some(other) => {
                        return Err(RetrievalError::io(
                            &csv,
                            format!(
                                "the images {other} and {} have the same file name: the metadata cannot tell them \
                                 apart",
                                entry.path
                            ),
                        ));
                    }
                    None => {}
                }
                let row = by_name.get(name).ok_or_else(|| {
                    RetrievalError::io(
                        &csv,
                        format!("has no row for the evaluated image {} (imageName {name})", entry.path),
                    )
                })?;
                let &i = row_of.get(entry.path.as_str()).ok_or_else(|| {
                    RetrievalError::Eval(EvalError::Protocol(format!(
                        "{} is not among the evaluated images",
                        entry.path
                    )))
                })?;
                planned.rows.push(i);
                let next = numbers.len() as u64;
                let identity = format!("{}/{}", entry.identity.group, entry.identity.id);
                planned.identities.push(*numbers.entry(identity).or_insert(next));
                planned.groups.push(hands11k_groups(row));
            }
            subsets.push(planned);
        }
        Ok(Ok(Self { csv, subsets }))
    }

    /// The metadata file.
    pub fn metadata(&self) -> &Path {
        &self.csv
    }

    /// The figures per group of every subset, from the features (row `i` the feature of
    /// `paths[i]` given to [`new`](Self::new)); with a calibration, each group's Cllr.
    pub fn compute(
        &self,
        features: &FeatureMatrix,
        calibration: Option<&LoadedCalibration>,
        options: &DifferentialOptions,
    ) -> Result<Differential, RetrievalError> {
        let mut subsets = Vec::with_capacity(self.subsets.len());
        for planned in &self.subsets {
            let mut data = Vec::with_capacity(planned.rows.len() * features.dim());
            for &i in &planned.rows {
                data.extend_from_slice(features.row(i));
            }
            let subset_features = FeatureMatrix::new(data, features.dim())?;
            let report = differential_performance(
                &subset_features,
                &planned.identities,
                &planned.groups,
                calibration.map(|c| &c.calibration),
                options,
            )?;
            subsets.push(SubsetDifferential { subset: planned.name.clone(), images: planned.rows.len(), report });
        }
        let sha256 = sha256_file(&self.csv).map_err(|e| RetrievalError::io(&self.csv, e))?;
        let mut notes = Vec::new();
        if calibration.is_none() {
            notes.push("no calibration given (--calibration): no Cllr".to_string());
        }
        Ok(Differential::Computed(DifferentialResults {
            metadata: HashedImage { path: self.csv.display().to_string(), sha256 },
            calibration: calibration
                .map(|c| HashedImage { path: c.path.display().to_string(), sha256: c.sha256.clone() }),
            notes,
            subsets,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::TempDir;
    use crate::data::{Entry, Identity, RunSplit, SubsetSplit};

    const HEADER: &str = "id,age,gender,skinColor,accessories,nailPolish,aspectOfHand,imageName,irregularities\n";

    /// A folder-dataset manifest whose one run holds `paths` (identity: the folder).
    fn manifest(dataset: DatasetKind, paths: &[&str]) -> (SplitManifest, Vec<String>) {
        let entries: Vec<Entry> =
            paths.iter().map(|p| Entry::new(*p, Identity::new("folders", p.split('/').next().unwrap()))).collect();
        let run = RunSplit { gallery: entries[..1].to_vec(), combined_gallery: vec![], query: entries[1..].to_vec() };
        let subset = SubsetSplit { name: "folders".into(), train: vec![], val: vec![], runs: vec![run] };
        (SplitManifest::new(dataset, 1, None, vec![subset]), paths.iter().map(|p| p.to_string()).collect())
    }

    fn write_csv(path: &Path, names: &[&str]) {
        let rows: String = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{:07},{},female,fair,0,0,dorsal right,{n},0\n", 1000 + i, 20 + 10 * i))
            .collect();
        std::fs::write(path, format!("{HEADER}{rows}")).unwrap();
    }

    #[test]
    fn no_metadata_is_said_not_omitted() {
        let dir = TempDir::new("differential-none");
        let (folders, paths) = manifest(DatasetKind::Folders, &["a/1.jpg", "a/2.jpg"]);
        let reason = GroupPlan::new(&folders, dir.path(), &paths, None).unwrap().unwrap_err();
        assert!(reason.contains("no per-image metadata") && reason.contains("--metadata"), "{reason}");
        // An 11k manifest whose root has no HandInfo.csv: the reason names the file.
        let (hands, paths) = manifest(DatasetKind::Hands11k, &["a/1.jpg", "a/2.jpg"]);
        let reason = GroupPlan::new(&hands, dir.path(), &paths, None).unwrap().unwrap_err();
        assert!(reason.contains(HAND_INFO_FILE) && reason.contains("does not exist"), "{reason}");
    }

    #[test]
    fn images_are_matched_by_file_name_and_ambiguity_is_refused() {
        let dir = TempDir::new("differential-match");
        let csv = dir.path().join("Info.csv");
        write_csv(&csv, &["1.jpg", "2.jpg", "3.jpg", "4.jpg"]);
        let (m, paths) = manifest(DatasetKind::Folders, &["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.jpg"]);
        let plan = GroupPlan::new(&m, dir.path(), &paths, Some(&csv)).unwrap().unwrap();
        assert_eq!(plan.metadata(), csv);
        let features =
            FeatureMatrix::from_rows(&[vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0], vec![0.1, 0.9]]).unwrap();
        let Differential::Computed(results) = plan.compute(&features, None, &DifferentialOptions::default()).unwrap()
        else {
            panic!("no figures")
        };
        assert_eq!(results.metadata.sha256, sha256_file(&csv).unwrap());
        assert!(results.notes[0].contains("no Cllr"));
        let groups = &results.subsets[0].report.groups;
        let female = groups.iter().find(|g| g.attribute == "gender" && g.value == "female").unwrap();
        assert_eq!((female.images, female.identities, female.same_source, female.different_source), (4, 2, 2, 4));
        assert_eq!(female.eer, Some(0.0));
        // Ages 20, 30, 40, 50: one image in each band.
        let bands: Vec<(&str, usize)> =
            groups.iter().filter(|g| g.attribute == "age").map(|g| (g.value.as_str(), g.images)).collect();
        assert_eq!(bands, [("20-29", 1), ("30-39", 1), ("40+", 2)]);

        // An image the metadata lacks, and two images with the same file name.
        let (m, paths) = manifest(DatasetKind::Folders, &["a/1.jpg", "a/5.jpg"]);
        let e = GroupPlan::new(&m, dir.path(), &paths, Some(&csv)).unwrap_err().to_string();
        assert!(e.contains("Info.csv") && e.contains("a/5.jpg"), "{e}");
        let (m, paths) = manifest(DatasetKind::Folders, &["a/1.jpg", "b/1.jpg"]);
        let e = GroupPlan::new(&m, dir.path(), &paths, Some(&csv)).unwrap_err().to_string();
        assert!(e.contains("Info.csv") && e.contains("a/1.jpg") && e.contains("b/1.jpg"), "{e}");
        // A metadata file that does not exist.
        let e = GroupPlan::new(&m, dir.path(), &paths, Some(&dir.path().join("none.csv"))).unwrap_err().to_string();
        assert!(e.contains("none.csv"), "{e}");
    }
}
