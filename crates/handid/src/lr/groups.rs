//! Differential performance: the figures per group of images (ISO/IEC 19795-10 style), so that
//! an examiner knows where the system is weaker, with the counts behind every figure.
//!
//! Each image carries group labels, `attribute -> value` (for 11k Hands: gender, age band, skin
//! colour, nail polish, irregularities; [`hands11k_groups`]). For every attribute value:
//!
//! - **comparisons**: the pairs of [`comparison_pairs`] whose two images are both in the group;
//! - **EER** and **TAR at FAR** of those comparisons, as [`crate::eval::VerificationReport`]
//!   defines them;
//! - **rank-1**: each image of the group that has at least one other image of its identity is a
//!   query against every other image of the whole set (leave one out); a hit when its best
//!   same-identity score is strictly above its best different-identity score (ties are misses);
//! - **Cllr** of the comparisons' bounded log10 LRs, when a calibration is given (it should have
//!   been fitted on other data).
//!
//! A figure that the group's data cannot give (fewer than two comparisons of a kind, no
//! queries) is `None`, with the reason in `notes`.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::calibration::Calibration;
use super::error::{Result, check_len};
use super::metrics::cllr;
use super::pairs::{PairOptions, comparison_pairs};
use crate::data::hands11k::HandInfoRow;
use crate::eval::{FeatureMatrix, ScoreSets, TarAtFar, VerificationOptions, VerificationReport};

/// Group labels of one image: attribute name -> value.
pub type GroupLabels = BTreeMap<String, String>;

/// Settings of [`differential_performance`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifferentialOptions {
    /// FAR targets of the TAR figures. Default `[1e-2, 1e-3]`.
    pub far_targets: Vec<f64>,
    /// Which comparisons to make.
    pub pairs: PairOptions,
}

impl Default for DifferentialOptions {
    fn default() -> Self {
        Self { far_targets: vec![1e-2, 1e-3], pairs: PairOptions::default() }
    }
}

/// The figures of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupFigures {
    /// The attribute (`"gender"`, ...).
    pub attribute: String,
    /// Its value (`"female"`, ...).
    pub value: String,
    /// Images in the group.
    pub images: usize,
    /// Distinct identities among them.
    pub identities: usize,
    /// Same-source comparisons within the group.
    pub same_source: usize,
    /// Different-source comparisons within the group.
    pub different_source: usize,
    /// Equal error rate of the comparisons.
    pub eer: Option<f64>,
    /// TAR at each FAR target (with the FAR achieved and the sample-size flag).
    pub tar_at_far: Vec<TarAtFar>,
    /// Rank-1 identification rate of the group's queries.
    pub rank1: Option<f64>,
    /// Queries behind `rank1`.
    pub rank1_queries: usize,
    /// Cllr of the comparisons' bounded log10 LRs (with a calibration).
    pub cllr: Option<f64>,
    /// Why a figure is missing.
    pub notes: Vec<String>,
}

/// Figures per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifferentialReport {
    /// The definitions used, in words.
    pub definitions: BTreeMap<String, String>,
    /// Every group, ordered by attribute then value.
    pub groups: Vec<GroupFigures>,
}

impl DifferentialReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(crate::eval::output::encode_json(std::path::Path::new("differential.json"), self)?)
    }
}

/// The 11k Hands groups of one image: gender, age band (`<20`, `20-29`, `30-39`, `40+`), skin
/// colour, nail polish, irregularities, accessories (the raw values of `HandInfo.csv` otherwise).
pub fn hands11k_groups(row: &HandInfoRow) -> GroupLabels {
    let age = match row.age.trim().parse::<u32>() {
        Ok(a) if a < 20 => "<20".to_string(),
        Ok(a) if a < 30 => "20-29".to_string(),
        Ok(a) if a < 40 => "30-39".to_string(),
        Ok(_) => "40+".to_string(),
        Err(_) => format!("unknown ({})", row.age),
    };
    [
        ("gender", row.gender.clone()),
        ("age", age),
        ("skin_color", row.skin_color.clone()),
        ("nail_polish", row.nail_polish.clone()),
        ("irregularities", row.irregularities.clone()),
        ("accessories", row.accessories.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn definitions() -> BTreeMap<String, String> {
    [
        ("comparisons", "pairs of distinct images both in the group; same source when the identities are equal"),
        ("eer", "equal error rate of the group's comparisons (as verification.json)"),
        ("tar_at_far", "TAR at the most permissive threshold with FAR <= target (as verification.json)"),
        (
            "rank1",
            "queries: the group's images with another image of their identity; gallery: every other image of the \
             set; hit when the best same-identity score is strictly above the best different-identity score",
        ),
        ("cllr", "Cllr of the bounded log10 LRs of the group's comparisons under the given calibration"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Computes the figures of every group. `groups[i]` are image `i`'s labels.
pub fn differential_performance(
    embeddings: &FeatureMatrix,
    identities: &[u64],
    groups: &[GroupLabels],
    calibration: Option<&Calibration>,
    options: &DifferentialOptions,
) -> Result<DifferentialReport> {
    check_len("groups", identities.len(), groups.len())?;
    let pairs = comparison_pairs(embeddings, identities, &options.pairs)?;
    let n = identities.len();
    // Rank-1 outcome of every image that has a mate (leave one out over the whole set).
    let norms: Vec<f64> =
        (0..n).map(|i| embeddings.row(i).iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt()).collect();
    let mut mates: HashMap<u64, usize> = HashMap::new();
    for id in identities {
        *mates.entry(*id).or_default() += 1;
    }
    let hit: Vec<Option<bool>> = (0..n)
        .into_par_iter()
        .map(|q| {
            if mates[&identities[q]] < 2 {
                return None;
            }
            let (mut best_same, mut best_diff) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
            for g in (0..n).filter(|&g| g != q) {
                let dot: f64 =
                    embeddings.row(q).iter().zip(embeddings.row(g)).map(|(&a, &b)| a as f64 * b as f64).sum();
                let s = dot / (norms[q] * norms[g]);
                if identities[g] == identities[q] {
                    best_same = best_same.max(s);
                } else {
                    best_diff = best_diff.max(s);
                }
            }
            Some(best_same > best_diff)
        })
        .collect();
    let mut members: BTreeMap<(String, String), Vec<bool>> = BTreeMap::new();
    for (i, labels) in groups.iter().enumerate() {
        for (k, v) in labels {
            members.entry((k.clone(), v.clone())).or_insert_with(|| vec![false; n])[i] = true;
        }
    }
    let verification = VerificationOptions { far_targets: options.far_targets.clone(), ..Default::default() };
    let mut out = Vec::new();
    for ((attribute, value), inside) in members {
        let mut notes = Vec::new();
        let (mut scores, mut labels) = (Vec::new(), Vec::new());
        for (i, &(a, b)) in pairs.pairs.iter().enumerate() {
            if inside[a] && inside[b] {
                scores.push(pairs.scores[i]);
                labels.push(pairs.labels[i]);
            }
        }
        let same = labels.iter().filter(|&&l| l).count();
        let different = labels.len() - same;
        let mut ids: Vec<u64> = (0..n).filter(|&i| inside[i]).map(|i| identities[i]).collect();
        let images = ids.len();
        ids.sort_unstable();
        ids.dedup();
        let (mut eer, mut tar_at_far, mut group_cllr) = (None, Vec::new(), None);
        if same >= 2 && different >= 2 {
            let sets = ScoreSets {
                genuine: scores.iter().zip(&labels).filter(|(_, l)| **l).map(|(s, _)| *s as f32).collect(),
                impostor: scores.iter().zip(&labels).filter(|(_, l)| !**l).map(|(s, _)| *s as f32).collect(),
            };
            let report = VerificationReport::compute(&sets, &verification)?;
            eer = Some(report.eer.rate);
            tar_at_far = report.tar_at_far;
            if let Some(c) = calibration {
                let llrs: Vec<f64> = scores.iter().map(|&s| c.llr(s)).collect();
                group_cllr = Some(cllr(&llrs, &labels)?);
            }
        } else {
            notes.push(format!(
                "{same} same-source and {different} different-source comparisons: EER, TAR and Cllr need two of each"
            ));
        }
        let outcomes: Vec<bool> = (0..n).filter(|&i| inside[i]).filter_map(|i| hit[i]).collect();
        let rank1 =
            (!outcomes.is_empty()).then(|| outcomes.iter().filter(|&&h| h).count() as f64 / outcomes.len() as f64);
        if rank1.is_none() {
            notes.push("no image of the group has another image of its identity: no rank-1".into());
        }
        out.push(GroupFigures {
            attribute,
            value,
            images,
            identities: ids.len(),
            same_source: same,
            different_source: different,
            eer,
            tar_at_far,
            rank1,
            rank1_queries: outcomes.len(),
            cllr: group_cllr,
            notes,
        });
    }
    Ok(DifferentialReport { definitions: definitions(), groups: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_per_group_with_counts() {
        // Identities 0 and 1 are "a" (easy: far apart), 2 and 3 are "b" (close together).
        let rows: Vec<Vec<f32>> = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.99, 0.1, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.1, 0.99, 0.0],
            vec![0.0, 0.0, 1.0],
            vec![0.0, 0.3, 0.95],
            vec![0.0, 0.25, 0.97],
            vec![0.0, 0.05, 1.0],
        ];
        let m = FeatureMatrix::from_rows(&rows).unwrap();
        let ids = [0, 0, 1, 1, 2, 2, 3, 3];
        let groups: Vec<GroupLabels> = (0..8)
            .map(|i| [("set".to_string(), if i < 4 { "a" } else { "b" }.to_string())].into_iter().collect())
            .collect();
        let r = differential_performance(&m, &ids, &groups, None, &DifferentialOptions::default()).unwrap();
        assert_eq!(r.groups.len(), 2);
        let (a, b) = (&r.groups[0], &r.groups[1]);
        assert_eq!((a.images, a.identities, a.same_source, a.different_source), (4, 2, 2, 4));
        assert_eq!(a.eer, Some(0.0));
        assert_eq!(a.rank1, Some(1.0));
        assert_eq!(a.rank1_queries, 4);
        // In "b", image 5's best match is image 6 (another identity): rank-1 below 1.
        assert!(b.rank1.unwrap() < 1.0);
        assert!(a.cllr.is_none());
        assert!(differential_performance(&m, &ids, &groups[..3], None, &DifferentialOptions::default()).is_err());
    }

    #[test]
    fn hands11k_labels() {
        let row = HandInfoRow {
            line: 2,
            id: "0000000".into(),
            id_number: 0,
            age: "27".into(),
            gender: "female".into(),
            skin_color: "fair".into(),
            accessories: 0,
            nail_polish: "1".into(),
            aspect: crate::data::hands11k::Aspect::DorsalRight,
            image_name: "Hand_0000002.jpg".into(),
            irregularities: "0".into(),
        };
        let g = hands11k_groups(&row);
        assert_eq!(g["age"], "20-29");
        assert_eq!(g["gender"], "female");
        assert_eq!(g["nail_polish"], "1");
        assert_eq!(g.len(), 6);
    }
}
