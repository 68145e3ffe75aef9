//! Comparison pairs from embeddings, and cross-validation folds by identity.
//!
//! Every unordered pair of distinct images is one comparison: **same source** (Hp) when both
//! images have the same identity, **different source** (Hd) otherwise. Its score is the cosine
//! similarity of the two embeddings (the embeddings are L2-normalised here, so rows need not
//! be). With many images the different-source pairs grow quadratically: [`PairOptions`] caps
//! either kind by a uniform random subsample without replacement, deterministic for a seed.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::{LrError, Result, check_counts, check_len};
use crate::eval::FeatureMatrix;

/// Which comparisons to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairOptions {
    /// At most this many same-source pairs (a seeded uniform subsample); `None`: all.
    pub max_same_source: Option<usize>,
    /// At most this many different-source pairs; `None`: all. Default 200 000.
    pub max_different_source: Option<usize>,
    /// Seed of the subsampling.
    pub seed: u64,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self { max_same_source: None, max_different_source: Some(200_000), seed: 0 }
    }
}

/// Comparisons: image indices, scores and labels, in the order of the pairs `(a, b)` with
/// `a < b` (row-major over the upper triangle).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairSet {
    /// The two images of each comparison (`a < b`, indices into the embeddings).
    pub pairs: Vec<(usize, usize)>,
    /// Cosine similarity of each comparison.
    pub scores: Vec<f64>,
    /// `true` for same source (Hp), `false` for different sources (Hd).
    pub labels: Vec<bool>,
    /// All same-source pairs there were before any subsampling.
    pub same_source_available: u64,
    /// All different-source pairs there were before any subsampling.
    pub different_source_available: u64,
}

impl PairSet {
    /// Builds a set from scores and labels alone (no image indices).
    pub fn from_scores(scores: Vec<f64>, labels: Vec<bool>) -> Result<Self> {
        check_len("labels", scores.len(), labels.len())?;
        let same = labels.iter().filter(|&&l| l).count() as u64;
        let different = labels.len() as u64 - same;
        Ok(Self {
            pairs: Vec::new(),
            scores,
            labels,
            same_source_available: same,
            different_source_available: different,
        })
    }

    /// Number of same-source comparisons.
    pub fn same_source(&self) -> usize {
        self.labels.iter().filter(|&&l| l).count()
    }

    /// Number of different-source comparisons.
    pub fn different_source(&self) -> usize {
        self.labels.len() - self.same_source()
    }
}

/// Cosine similarities of L2-normalised rows; checks finiteness and non-zero rows.
fn normalised_rows(embeddings: &FeatureMatrix) -> Result<Vec<Vec<f64>>> {
    (0..embeddings.rows())
        .map(|i| {
            let row = embeddings.row(i);
            if let Some(k) = row.iter().position(|v| !v.is_finite()) {
                return Err(LrError::NotFinite { what: format!("embedding {i}"), index: k, value: row[k] as f64 });
            }
            let norm = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Err(LrError::InvalidOption(format!("embedding {i} is zero: it has no direction")));
            }
            Ok(row.iter().map(|&v| v as f64 / norm).collect())
        })
        .collect()
}

/// Sorted indices of a uniform subsample of `k` of `n` items (all when `k >= n`).
fn subsample(n: u64, k: Option<usize>, rng: &mut ChaCha8Rng) -> Option<Vec<u64>> {
    let k = k? as u64;
    if k >= n {
        return None;
    }
    // Floyd's algorithm: k distinct values in 0..n with O(k) memory.
    let mut chosen = std::collections::HashSet::with_capacity(k as usize);
    for j in (n - k)..n {
        let t = rand::Rng::random_range(rng, 0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    let mut v: Vec<u64> = chosen.into_iter().collect();
    v.sort_unstable();
    Some(v)
}

/// Every comparison of distinct images (or the capped subsample), with cosine scores.
/// Fails on mismatched lengths, non-finite or zero embeddings, and fewer than two comparisons
/// of either kind.
pub fn comparison_pairs(embeddings: &FeatureMatrix, identities: &[u64], options: &PairOptions) -> Result<PairSet> {
    check_len("identities", embeddings.rows(), identities.len())?;
    let rows = normalised_rows(embeddings)?;
    let n = rows.len();
    let mut counts = std::collections::HashMap::new();
    for &id in identities {
        *counts.entry(id).or_insert(0u64) += 1;
    }
    let same_total: u64 = counts.values().map(|&c| c * c.saturating_sub(1) / 2).sum();
    let all = (n as u64) * (n as u64).saturating_sub(1) / 2;
    let different_total = all - same_total;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let keep_same = subsample(same_total, options.max_same_source, &mut rng);
    let keep_diff = subsample(different_total, options.max_different_source, &mut rng);
    let mut set = PairSet {
        same_source_available: same_total,
        different_source_available: different_total,
        ..Default::default()
    };
    let (mut seen_same, mut seen_diff) = (0u64, 0u64);
    let (mut next_same, mut next_diff) = (0usize, 0usize);
    let take = |keep: &Option<Vec<u64>>, seen: u64, next: &mut usize| match keep {
        None => true,
        Some(v) if v.get(*next) == Some(&seen) => {
            *next += 1;
            true
        }
        Some(_) => false,
    };
    for a in 0..n {
        for b in (a + 1)..n {
            let same = identities[a] == identities[b];
            let keep = if same {
                let k = take(&keep_same, seen_same, &mut next_same);
                seen_same += 1;
                k
            } else {
                let k = take(&keep_diff, seen_diff, &mut next_diff);
                seen_diff += 1;
                k
            };
            if keep {
                let score: f64 = rows[a].iter().zip(&rows[b]).map(|(x, y)| x * y).sum();
                set.pairs.push((a, b));
                set.scores.push(score);
                set.labels.push(same);
            }
        }
    }
    check_counts(&set.labels, Some("comparisons of the embeddings".into()))?;
    Ok(set)
}

/// Assigns every distinct identity to one of `folds` folds (seeded shuffle, then round robin)
/// and returns the fold of each image. Fails unless `2 <= folds <= number of identities`.
pub fn identity_folds(identities: &[u64], folds: usize, seed: u64) -> Result<Vec<usize>> {
    let mut distinct: Vec<u64> = identities.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if folds < 2 || folds > distinct.len() {
        return Err(LrError::InvalidOption(format!(
            "{folds} cross-validation folds for {} identities (need 2 <= folds <= identities)",
            distinct.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rand::seq::SliceRandom::shuffle(distinct.as_mut_slice(), &mut rng);
    let fold_of: std::collections::HashMap<u64, usize> =
        distinct.iter().enumerate().map(|(i, &id)| (id, i % folds)).collect();
    Ok(identities.iter().map(|id| fold_of[id]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: &[[f32; 2]]) -> FeatureMatrix {
        FeatureMatrix::from_rows(&rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn pairs_and_scores() {
        let m = matrix(&[[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 1.0]]);
        let set = comparison_pairs(&m, &[1, 1, 2, 2, 3], &PairOptions::default()).unwrap();
        assert_eq!(set.pairs.len(), 10);
        assert_eq!((set.same_source(), set.different_source()), (2, 8));
        assert_eq!(set.pairs[0], (0, 1));
        assert!((set.scores[0] - 1.0).abs() < 1e-12 && set.labels[0]);
        assert!(set.scores[1].abs() < 1e-12 && !set.labels[1]);
        let capped = PairOptions { max_different_source: Some(3), seed: 7, ..Default::default() };
        let a = comparison_pairs(&m, &[1, 1, 2, 2, 3], &capped).unwrap();
        let b = comparison_pairs(&m, &[1, 1, 2, 2, 3], &capped).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.same_source(), a.different_source(), a.different_source_available), (2, 3, 8));
    }

    #[test]
    fn bad_embeddings_and_too_few_pairs() {
        let m = matrix(&[[1.0, 0.0], [f32::NAN, 0.0], [0.0, 1.0]]);
        assert!(matches!(comparison_pairs(&m, &[1, 1, 2], &PairOptions::default()), Err(LrError::NotFinite { .. })));
        let m = matrix(&[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]);
        assert!(matches!(comparison_pairs(&m, &[1, 1, 2], &PairOptions::default()), Err(LrError::TooFewPairs { .. })));
        assert!(comparison_pairs(&m, &[1, 1], &PairOptions::default()).is_err());
    }

    #[test]
    fn folds_split_identities() {
        let ids = [5, 5, 6, 7, 7, 8, 9, 9];
        let f = identity_folds(&ids, 3, 1).unwrap();
        assert_eq!(f[0], f[1]);
        assert_eq!(f[3], f[4]);
        let mut used: Vec<usize> = f.clone();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used, vec![0, 1, 2]);
        assert!(identity_folds(&ids, 6, 1).is_err());
        assert!(identity_folds(&ids, 1, 1).is_err());
    }
}
