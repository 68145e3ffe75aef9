//! Retrieval metrics: CMC, the published (interpolated) mAP, the standard mAP and mINP.
//!
//! Conventions, all from docs/METHOD.md section 5 and docs/FIXTURES.md section 3:
//!
//! - Each query's gallery is ranked by similarity, **descending**; equal similarities keep the
//!   gallery order (the lower gallery index ranks first). No camera filtering, no re-ranking.
//! - Identities are `u64` labels; a gallery item is a *true match* of a query when the labels are
//!   equal. Distractors (another subset's identities, PolyU HD's extra subjects) must be given
//!   labels that no query has.
//! - Ranks are 0-based inside this module (`r = 0` is the top of the list); CMC is reported for
//!   `k = 1, 2, ...`.
//! - A query with no true match in the gallery is a miss at every rank of the CMC and contributes
//!   0 to every mean (mAP, mINP); it still counts in the denominators.
//!
//! Per query with `n` true matches at 0-based ranks `r_0 < r_1 < ... < r_{n-1}`:
//!
//! - precision at the `i`-th match `p_i = (i + 1) / (r_i + 1)`;
//! - **standard AP** (torchreid, fast-reid) `= (1/n) sum_i p_i`;
//! - **interpolated AP** (the published CLIP-HandID numbers) `= (1/n) sum_i (p_prev + p_i) / 2`
//!   with `p_prev = i / r_i`, and `p_prev = 1` when `r_i = 0`. With one gallery image per
//!   identity it is 1 for a rank-1 hit and `1 / (2 (r + 1))` otherwise;
//! - **INP** (inverse negative penalty, Ye et al. 2021) `= n / (r_{n-1} + 1)`: the number of true
//!   matches over the 1-based rank of the hardest (last) one;
//! - CMC at `k`: 1 when `r_0 < k`.
//!
//! All rates are fractions in `[0, 1]` (not percentages).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::Hash;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::{EvalError, Result};

/// A dense similarity matrix: one row per query, one column per gallery item, row-major.
///
/// Higher means more similar (cosine similarity of L2-normalised features in this project).
/// Values may be infinite but never NaN: the constructors reject NaN, so every row can be ranked.
#[derive(Debug, Clone, PartialEq)]
pub struct Similarity {
    data: Vec<f32>,
    n_query: usize,
    n_gallery: usize,
}

impl Similarity {
    /// Wraps row-major values: `data[q * n_gallery + g]` is the similarity of query `q` to
    /// gallery item `g`.
    ///
    /// Fails if `data.len() != n_query * n_gallery` or a value is NaN.
    pub fn new(data: Vec<f32>, n_query: usize, n_gallery: usize) -> Result<Self> {
        if n_query.checked_mul(n_gallery) != Some(data.len()) {
            return Err(EvalError::SimilarityShape { len: data.len(), n_query, n_gallery });
        }
        if let Some(i) = data.iter().position(|s| s.is_nan()) {
            return Err(EvalError::NotANumber { query: i / n_gallery, gallery: i % n_gallery });
        }
        Ok(Self { data, n_query, n_gallery })
    }

    /// Builds the matrix from one `Vec` per query row; all rows must have the same length.
    pub fn from_rows(rows: &[Vec<f32>]) -> Result<Self> {
        let n_gallery = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * n_gallery);
        for (row, values) in rows.iter().enumerate() {
            if values.len() != n_gallery {
                return Err(EvalError::RaggedRows { row, len: values.len(), expected: n_gallery });
            }
            data.extend_from_slice(values);
        }
        Self::new(data, rows.len(), n_gallery)
    }

    /// Dot products of row-major query features `[n_query x dim]` with row-major gallery
    /// features `[n_gallery x dim]`; this is the cosine similarity when the features are
    /// L2-normalised, as the evaluation protocol's features are. Rows are computed in parallel.
    pub fn from_features(query: &[f32], gallery: &[f32], dim: usize) -> Result<Self> {
        for (which, values) in [("query", query), ("gallery", gallery)] {
            if dim == 0 || !values.len().is_multiple_of(dim) {
                return Err(EvalError::FeatureShape { which, len: values.len(), dim });
            }
        }
        let (n_query, n_gallery) = (query.len() / dim, gallery.len() / dim);
        let mut data = vec![0.0f32; n_query * n_gallery];
        // Blocks of query rows share each gallery row while it is in cache.
        const BLOCK: usize = 8;
        if n_gallery > 0 {
            data.par_chunks_mut(BLOCK * n_gallery).zip(query.par_chunks(BLOCK * dim)).for_each(|(out, qs)| {
                for (gi, g) in gallery.chunks_exact(dim).enumerate() {
                    for (qi, q) in qs.chunks_exact(dim).enumerate() {
                        out[qi * n_gallery + gi] = dot(q, g);
                    }
                }
            });
        }
        Self::new(data, n_query, n_gallery)
    }

    /// Number of query rows.
    pub fn n_query(&self) -> usize {
        self.n_query
    }

    /// Number of gallery columns.
    pub fn n_gallery(&self) -> usize {
        self.n_gallery
    }

    /// The row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Gives the row-major values back.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// The similarities of query `q` to every gallery item. Panics if `q >= n_query`.
    pub fn row(&self, q: usize) -> &[f32] {
        &self.data[q * self.n_gallery..(q + 1) * self.n_gallery]
    }

    /// The similarity of query `q` to gallery item `g`. Panics if out of range.
    pub fn get(&self, q: usize, g: usize) -> f32 {
        assert!(g < self.n_gallery, "gallery index {g} out of range ({} items)", self.n_gallery);
        self.data[q * self.n_gallery + g]
    }

    /// The full ranking of query `q`: gallery indices, most similar first, ties by gallery index.
    pub fn ranking(&self, q: usize) -> Vec<usize> {
        let row = self.row(q);
        let mut order: Vec<usize> = (0..self.n_gallery).collect();
        order.sort_unstable_by(|&a, &b| rank_cmp(row, a, b));
        order
    }

    /// The first `k` entries of [`ranking`](Self::ranking) (all of them when `k >= n_gallery`),
    /// found without sorting the whole row.
    pub fn top_k(&self, q: usize, k: usize) -> Vec<usize> {
        let row = self.row(q);
        let mut order: Vec<usize> = (0..self.n_gallery).collect();
        if k < order.len() {
            if k == 0 {
                return Vec::new();
            }
            order.select_nth_unstable_by(k - 1, |&a, &b| rank_cmp(row, a, b));
            order.truncate(k);
        }
        order.sort_unstable_by(|&a, &b| rank_cmp(row, a, b));
        order
    }
}

/// Dot product with eight independent accumulators (lets the compiler vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The ranking order of gallery items `a` and `b` in `row`: `Less` when `a` ranks first.
/// NaN never occurs (rejected by [`Similarity::new`]).
fn rank_cmp(row: &[f32], a: usize, b: usize) -> Ordering {
    row[b].partial_cmp(&row[a]).unwrap_or(Ordering::Equal).then(a.cmp(&b))
}

/// Whether gallery item `a` (similarity `sa`) ranks strictly before item `b` (similarity `sb`).
#[inline]
fn precedes(sa: f32, a: usize, sb: f32, b: usize) -> bool {
    sa > sb || (sa == sb && a < b)
}

/// What one query contributes to the metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryOutcome {
    /// Number of true matches of the query in the gallery.
    pub n_matches: usize,
    /// 0-based rank of the first true match; `None` without any.
    pub first_match_rank: Option<usize>,
    /// 0-based rank of the last (hardest) true match; `None` without any.
    pub last_match_rank: Option<usize>,
    /// Interpolated (published) average precision; 0 without a true match.
    pub ap_interpolated: f64,
    /// Standard average precision; 0 without a true match.
    pub ap_standard: f64,
    /// Inverse negative penalty; 0 without a true match.
    pub inp: f64,
}

impl QueryOutcome {
    /// The outcome from the 0-based ranks of the true matches, in increasing order.
    pub fn from_match_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len();
        if n == 0 {
            return Self {
                n_matches: 0,
                first_match_rank: None,
                last_match_rank: None,
                ap_interpolated: 0.0,
                ap_standard: 0.0,
                inp: 0.0,
            };
        }
        let (mut interpolated, mut standard) = (0.0f64, 0.0f64);
        for (i, &r) in ranks.iter().enumerate() {
            let p = (i + 1) as f64 / (r + 1) as f64;
            let p_prev = if r == 0 { 1.0 } else { i as f64 / r as f64 };
            interpolated += (p_prev + p) / 2.0;
            standard += p;
        }
        let last = ranks[n - 1];
        Self {
            n_matches: n,
            first_match_rank: Some(ranks[0]),
            last_match_rank: Some(last),
            ap_interpolated: interpolated / n as f64,
            ap_standard: standard / n as f64,
            inp: n as f64 / (last + 1) as f64,
        }
    }
}

/// Retrieval metrics of one query set against one gallery (one Monte Carlo run of one subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Number of queries (the denominator of every mean).
    pub n_query: usize,
    /// Number of gallery items.
    pub n_gallery: usize,
    /// Number of queries without any true match in the gallery (counted as misses).
    pub n_query_without_match: usize,
    /// CMC at rank 1: fraction of queries whose first true match is the top candidate.
    pub rank1: f64,
    /// CMC at rank 5 (the fraction of queries with any match when the gallery is smaller).
    pub rank5: f64,
    /// CMC at rank 10 (the fraction of queries with any match when the gallery is smaller).
    pub rank10: f64,
    /// CMC at ranks `1..=min(max_rank, n_gallery)`.
    pub cmc: Vec<f64>,
    /// Mean interpolated AP: the mAP of the published CLIP-HandID numbers.
    pub map_interpolated: f64,
    /// Mean standard (non-interpolated) AP, as torchreid and fast-reid compute it.
    pub map_standard: f64,
    /// Mean inverse negative penalty.
    pub minp: f64,
}

impl RetrievalMetrics {
    /// Aggregates per-query outcomes; the CMC is cut at `min(max_rank, n_gallery)` ranks.
    pub fn from_outcomes(outcomes: &[QueryOutcome], n_gallery: usize, max_rank: usize) -> Result<Self> {
        let n_query = outcomes.len();
        if n_query == 0 || n_gallery == 0 {
            return Err(EvalError::Empty { n_query, n_gallery });
        }
        let n_ranks = max_rank.min(n_gallery);
        // first_hits[r] = number of queries whose first true match is at rank r.
        let mut first_hits = vec![0usize; n_gallery.max(10)];
        let last = first_hits.len() - 1;
        let (mut interpolated, mut standard, mut inp) = (0.0f64, 0.0f64, 0.0f64);
        let mut without = 0;
        for o in outcomes {
            match o.first_match_rank {
                Some(r) => first_hits[r.min(last)] += 1,
                None => without += 1,
            }
            interpolated += o.ap_interpolated;
            standard += o.ap_standard;
            inp += o.inp;
        }
        let n = n_query as f64;
        let mut cumulative = Vec::with_capacity(first_hits.len());
        let mut hits = 0usize;
        for h in &first_hits {
            hits += h;
            cumulative.push(hits as f64 / n);
        }
        Ok(Self {
            n_query,
            n_gallery,
            n_query_without_match: without,
            rank1: cumulative[0],
            rank5: cumulative[4],
            rank10: cumulative[9],
            cmc: cumulative[..n_ranks].to_vec(),
            map_interpolated: interpolated / n,
            map_standard: standard / n,
            minp: inp / n,
        })
    }
}

/// Maps identities of any type (for example `data::Identity`, or strings) to the `u64` labels the
/// metrics use: equal identities get equal labels, in order of first appearance (gallery first).
pub fn identity_labels<T: Hash + Eq>(query: &[T], gallery: &[T]) -> (Vec<u64>, Vec<u64>) {
    let mut table: HashMap<&T, u64> = HashMap::with_capacity(gallery.len());
    let mut label = |id| {
        let next = table.len() as u64;
        *table.entry(id).or_insert(next)
    };
    let gallery_labels: Vec<u64> = gallery.iter().map(&mut label).collect();
    let query_labels = query.iter().map(&mut label).collect();
    (query_labels, gallery_labels)
}

/// Checks that a label list matches one side of the matrix.
pub(crate) fn check_len(what: &'static str, side: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(EvalError::LabelCount { what, side, expected, got }) }
}

/// The gallery indices of every identity, in increasing index order.
fn gallery_index(gallery_ids: &[u64]) -> HashMap<u64, Vec<usize>> {
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for (g, &id) in gallery_ids.iter().enumerate() {
        index.entry(id).or_default().push(g);
    }
    index
}

/// The 0-based ranks, in increasing order, of the gallery items `matches` (ascending indices)
/// in `row`, without sorting the row: `O(n_gallery log n_matches)`.
fn match_ranks(row: &[f32], matches: &[usize]) -> Vec<usize> {
    match matches {
        [] => Vec::new(),
        &[m] => {
            let s = row[m];
            // Items ranked before m: strictly more similar, or as similar with a lower index.
            let above = row.iter().filter(|&&x| x > s).count();
            let tied_before = row[..m].iter().filter(|&&x| x == s).count();
            vec![above + tied_before]
        }
        _ => {
            let mut sorted = matches.to_vec();
            sorted.sort_unstable_by(|&a, &b| rank_cmp(row, a, b));
            // Every gallery item g precedes a suffix of the sorted matches, starting at
            // start(g) = number of matches ranked before g or equal to g. Count items per start.
            let mut starts = vec![0usize; sorted.len() + 1];
            for (g, &s) in row.iter().enumerate() {
                let start = sorted.partition_point(|&m| m == g || precedes(row[m], m, s, g));
                starts[start] += 1;
            }
            // rank(sorted[j]) = number of items whose suffix includes j.
            let mut ranks = Vec::with_capacity(sorted.len());
            let mut before = 0;
            for &count in &starts[..sorted.len()] {
                before += count;
                ranks.push(before);
            }
            ranks
        }
    }
}

/// Per-query outcomes, computed in parallel across queries.
///
/// `query_ids[q]` and `gallery_ids[g]` label the rows and columns of `similarity`.
pub fn evaluate_queries(similarity: &Similarity, query_ids: &[u64], gallery_ids: &[u64]) -> Result<Vec<QueryOutcome>> {
    check_len("query_ids", "query", similarity.n_query(), query_ids.len())?;
    check_len("gallery_ids", "gallery", similarity.n_gallery(), gallery_ids.len())?;
    let index = gallery_index(gallery_ids);
    let none: &[usize] = &[];
    Ok((0..similarity.n_query())
        .into_par_iter()
        .with_min_len(32)
        .map(|q| {
            let matches = index.get(&query_ids[q]).map_or(none, Vec::as_slice);
            QueryOutcome::from_match_ranks(&match_ranks(similarity.row(q), matches))
        })
        .collect())
}

/// CMC, both mAP variants and mINP of one query set against one gallery.
///
/// `query_ids[q]` and `gallery_ids[g]` are the identities of the rows and columns of
/// `similarity`; the CMC is reported for ranks `1..=min(max_rank, n_gallery)` (the protocol uses
/// `max_rank = 10`). Fails on label lists of the wrong length or an empty matrix.
pub fn evaluate(
    similarity: &Similarity,
    query_ids: &[u64],
    gallery_ids: &[u64],
    max_rank: usize,
) -> Result<RetrievalMetrics> {
    let outcomes = evaluate_queries(similarity, query_ids, gallery_ids)?;
    RetrievalMetrics::from_outcomes(&outcomes, similarity.n_gallery(), max_rank)
}

/// A mean and a standard deviation over Monte Carlo runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Arithmetic mean over the runs.
    pub mean: f64,
    /// **Sample** standard deviation over the runs (Bessel-corrected, divisor `runs - 1`): the
    /// runs are a sample of the possible random splits. 0 for a single run.
    pub std: f64,
}

impl MeanStd {
    /// Mean and sample standard deviation of `values` (mean NaN when empty).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self { mean, std }
    }
}

/// Metrics averaged over Monte Carlo runs, each with its sample standard deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// Number of runs averaged.
    pub n_runs: usize,
    /// Mean number of queries per run.
    pub n_query: f64,
    /// CMC rank-1.
    pub rank1: MeanStd,
    /// CMC rank-5.
    pub rank5: MeanStd,
    /// CMC rank-10.
    pub rank10: MeanStd,
    /// CMC per rank, over the ranks every run reports.
    pub cmc: Vec<MeanStd>,
    /// Interpolated (published) mAP.
    pub map_interpolated: MeanStd,
    /// Standard mAP.
    pub map_standard: MeanStd,
    /// mINP.
    pub minp: MeanStd,
}

/// Mean and sample standard deviation of every metric over Monte Carlo runs (the protocol's
/// final numbers are the means over its 10 runs).
///
/// The CMC curve is averaged over the ranks that every run reports (the shortest run's length).
/// Fails when `runs` is empty.
pub fn summarize(runs: &[RetrievalMetrics]) -> Result<MetricSummary> {
    if runs.is_empty() {
        return Err(EvalError::Runs("no runs given".into()));
    }
    let of = |f: &dyn Fn(&RetrievalMetrics) -> f64| MeanStd::of(&runs.iter().map(f).collect::<Vec<_>>());
    let n_ranks = runs.iter().map(|r| r.cmc.len()).min().unwrap_or(0);
    Ok(MetricSummary {
        n_runs: runs.len(),
        n_query: of(&|r| r.n_query as f64).mean,
        rank1: of(&|r| r.rank1),
        rank5: of(&|r| r.rank5),
        rank10: of(&|r| r.rank10),
        cmc: (0..n_ranks).map(|k| of(&|r| r.cmc[k])).collect(),
        map_interpolated: of(&|r| r.map_interpolated),
        map_standard: of(&|r| r.map_standard),
        minp: of(&|r| r.minp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Brute force: full sort, then the formulas.
    fn brute(row: &[f32], qid: u64, gids: &[u64]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
        order.iter().enumerate().filter(|&(_, &g)| gids[g] == qid).map(|(r, _)| r).collect()
    }

    #[test]
    fn hand_computed_case() {
        // Query 0 (id 1): ranking by similarity is g2 (id 1), g0 (id 2), g3 (id 1), g1 (id 3):
        // matches at ranks 0 and 2.
        // Query 1 (id 3): ranking g0 (2), g1 (3), g2 (1), g3 (1): one match at rank 1.
        // Query 2 (id 9): no match.
        let sim =
            Similarity::from_rows(&[vec![0.8, 0.1, 0.9, 0.5], vec![0.7, 0.6, 0.2, 0.1], vec![0.1, 0.2, 0.3, 0.4]])
                .unwrap();
        let m = evaluate(&sim, &[1, 3, 9], &[2, 3, 1, 1], 10).unwrap();
        // Query 0: p = 1/1, 2/3. standard AP = (1 + 2/3)/2 = 5/6.
        //          interpolated: i=0,r=0: (1+1)/2 = 1; i=1,r=2: (1/2 + 2/3)/2 = 7/12 -> AP = 19/24.
        //          INP = 2/3.
        // Query 1: standard AP = 1/2; interpolated = (0 + 1/2)/2 = 1/4; INP = 1/2.
        assert_eq!(m.n_query, 3);
        assert_eq!(m.n_query_without_match, 1);
        assert_eq!(m.cmc.len(), 4);
        assert!(close(m.cmc[0], 1.0 / 3.0) && close(m.cmc[1], 2.0 / 3.0));
        assert!(close(m.cmc[2], 2.0 / 3.0) && close(m.cmc[3], 2.0 / 3.0));
        assert!(close(m.rank1, 1.0 / 3.0) && close(m.rank5, 2.0 / 3.0) && close(m.rank10, 2.0 / 3.0));
        assert!(close(m.map_standard, (5.0 / 6.0 + 0.5) / 3.0));
        assert!(close(m.map_interpolated, (19.0 / 24.0 + 0.25) / 3.0));
        assert!(close(m.minp, (2.0 / 3.0 + 0.5) / 3.0));
    }

    #[test]
    fn one_gallery_image_per_identity_identity() {
        // docs/METHOD.md section 5: AP = 1 for a rank-1 hit and 1/(2(r+1)) otherwise; standard AP 1/(r+1).
        let n = 7;
        for r in 0..n {
            let o = QueryOutcome::from_match_ranks(&[r]);
            let expected = if r == 0 { 1.0 } else { 1.0 / (2.0 * (r as f64 + 1.0)) };
            assert!(close(o.ap_interpolated, expected), "rank {r}");
            assert!(close(o.ap_standard, 1.0 / (r as f64 + 1.0)));
            assert!(close(o.inp, 1.0 / (r as f64 + 1.0)));
        }
        // And through a matrix: query q's match is placed at rank q.
        let gids: Vec<u64> = (0..n as u64).collect();
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|q| {
                // Gallery g gets score by position; the match (id q) goes to position q.
                let mut order: Vec<usize> = (0..n).filter(|&g| g != q).collect();
                order.insert(q, q);
                let mut row = vec![0.0; n];
                for (pos, &g) in order.iter().enumerate() {
                    row[g] = 1.0 - pos as f32 * 0.1;
                }
                row
            })
            .collect();
        let m = evaluate(&Similarity::from_rows(&rows).unwrap(), &gids, &gids, 10).unwrap();
        let expected: f64 = (0..n).map(|r| if r == 0 { 1.0 } else { 0.5 / (r as f64 + 1.0) }).sum::<f64>() / n as f64;
        assert!(close(m.map_interpolated, expected));
        assert!(close(m.rank1, 1.0 / n as f64));
        // R1 <= mAP <= R1 + (1 - R1)/4.
        assert!(m.rank1 <= m.map_interpolated && m.map_interpolated <= m.rank1 + (1.0 - m.rank1) / 4.0);
    }

    #[test]
    fn ties_break_by_gallery_index() {
        // All scores equal: the ranking is the gallery order.
        let sim = Similarity::new(vec![0.5; 5], 1, 5).unwrap();
        assert_eq!(sim.ranking(0), vec![0, 1, 2, 3, 4]);
        assert_eq!(sim.top_k(0, 2), vec![0, 1]);
        let o = evaluate_queries(&sim, &[7], &[1, 7, 2, 7, 3]).unwrap();
        assert_eq!(o[0].first_match_rank, Some(1));
        assert_eq!(o[0].last_match_rank, Some(3));
        let single = evaluate_queries(&sim, &[3], &[1, 7, 2, 7, 3]).unwrap();
        assert_eq!(single[0].first_match_rank, Some(4));
    }

    #[test]
    fn fast_ranks_match_brute_force() {
        // Deterministic pseudo-random rows with deliberate ties.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for trial in 0..200 {
            let n_gallery = 1 + (next() % 40) as usize;
            let n_ids = 1 + (next() % 8);
            let gids: Vec<u64> = (0..n_gallery).map(|_| next() % n_ids).collect();
            let levels = if trial % 2 == 0 { 5 } else { 1000 };
            let row: Vec<f32> = (0..n_gallery).map(|_| (next() % levels) as f32 / levels as f32).collect();
            let qid = next() % (n_ids + 1);
            let matches: Vec<usize> = (0..n_gallery).filter(|&g| gids[g] == qid).collect();
            assert_eq!(match_ranks(&row, &matches), brute(&row, qid, &gids), "trial {trial}");
            let sim = Similarity::new(row.clone(), 1, n_gallery).unwrap();
            let full = sim.ranking(0);
            for k in [0, 1, 3, n_gallery, n_gallery + 2] {
                assert_eq!(sim.top_k(0, k), full[..k.min(n_gallery)].to_vec());
            }
        }
    }

    #[test]
    fn small_gallery_cmc_and_ranks() {
        // Two gallery items: CMC has 2 ranks, rank5/rank10 saturate at the fraction with a match.
        let sim = Similarity::from_rows(&[vec![0.1, 0.9], vec![0.9, 0.1], vec![0.3, 0.2]]).unwrap();
        let m = evaluate(&sim, &[5, 5, 8], &[5, 6], 10).unwrap();
        assert_eq!(m.cmc.len(), 2);
        assert!(close(m.cmc[0], 1.0 / 3.0) && close(m.cmc[1], 2.0 / 3.0));
        assert!(close(m.rank5, 2.0 / 3.0) && close(m.rank10, 2.0 / 3.0));
        let m3 = evaluate(&sim, &[5, 5, 8], &[5, 6], 1).unwrap();
        assert_eq!(m3.cmc, vec![1.0 / 3.0]);
    }

    #[test]
    fn errors_are_reported() {
        assert!(matches!(Similarity::new(vec![0.0; 5], 2, 3), Err(EvalError::SimilarityShape { .. })));
        assert!(matches!(
            Similarity::new(vec![0.0, f32::NAN, 0.0, 0.0], 2, 2),
            Err(EvalError::NotANumber { query: 0, gallery: 1 })
        ));
        assert!(matches!(
            Similarity::from_rows(&[vec![0.0, 1.0], vec![0.0]]),
            Err(EvalError::RaggedRows { row: 1, len: 1, expected: 2 })
        ));
        let sim = Similarity::new(vec![0.0; 4], 2, 2).unwrap();
        assert!(matches!(evaluate(&sim, &[1], &[1, 2], 10), Err(EvalError::LabelCount { what: "query_ids", .. })));
        let empty = Similarity::new(Vec::new(), 0, 3).unwrap();
        assert!(matches!(evaluate(&empty, &[], &[1, 2, 3], 10), Err(EvalError::Empty { .. })));
        assert!(matches!(summarize(&[]), Err(EvalError::Runs(_))));
        assert!(matches!(Similarity::from_features(&[0.0; 5], &[0.0; 4], 2), Err(EvalError::FeatureShape { .. })));
    }

    #[test]
    fn features_give_dot_products() {
        let q = [1.0, 0.0, 0.0, 0.6, 0.8, 0.0];
        let g: Vec<f32> = (0..3 * 11).map(|i| (i as f32 * 0.37).sin()).collect();
        let sim = Similarity::from_features(&q, &g[..33], 3).unwrap();
        assert_eq!((sim.n_query(), sim.n_gallery()), (2, 11));
        for qi in 0..2 {
            for gi in 0..11 {
                let expected: f32 = (0..3).map(|d| q[qi * 3 + d] * g[gi * 3 + d]).sum();
                assert!((sim.get(qi, gi) - expected).abs() < 1e-6);
            }
        }
        // Long vectors exercise the 8-lane loop and its remainder.
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let expected: f32 = a.iter().map(|x| x * x).sum();
        assert!((dot(&a, &a) - expected).abs() < 1e-3);
    }

    #[test]
    fn identities_become_labels() {
        let (q, g) = identity_labels(&["b/2", "x/9", "a/1"], &["a/1", "b/2", "a/1", "c/3"]);
        assert_eq!(g, vec![0, 1, 0, 2]);
        assert_eq!(q, vec![1, 3, 0]);
    }

    #[test]
    fn summary_uses_sample_std() {
        let sim = Similarity::from_rows(&[vec![0.9, 0.1]]).unwrap();
        let hit = evaluate(&sim, &[1], &[1, 2], 10).unwrap();
        let miss = evaluate(&sim, &[2], &[1, 2], 10).unwrap();
        let s = summarize(&[hit.clone(), miss]).unwrap();
        assert_eq!(s.n_runs, 2);
        assert!(close(s.rank1.mean, 0.5));
        // Sample std of {1, 0}: sqrt(((0.5)^2 + (0.5)^2) / 1).
        assert!(close(s.rank1.std, 0.5f64.sqrt()));
        assert!(close(s.map_interpolated.mean, (1.0 + 0.25) / 2.0));
        assert_eq!(s.cmc.len(), 2);
        let one = summarize(&[hit]).unwrap();
        assert_eq!(one.rank1, MeanStd { mean: 1.0, std: 0.0 });
    }
}
