//! Benchmarks of the evaluation at the published protocol's sizes and of gallery search.
//!
//! ```text
//! cargo bench --bench evaluation                    # flex (CPU)
//! cargo bench --bench evaluation --features cuda    # the same on CUDA (wgpu likewise)
//! ```
//!
//! - `metrics/5x10`: CMC, both mAPs and mINP of 5 datasets x 10 Monte Carlo runs from
//!   precomputed similarity matrices (11k subsets: 971/988/917/948 queries vs the 290-image
//!   combined gallery; HD: 1992 queries vs 1593 gallery images), plus the summaries;
//! - `protocol/5x10`: the same from precomputed 1280-d features, similarities by matrix product
//!   on the backend ([`evaluate_features`]);
//! - `search/100k`: top-10 search of 1 and of 32 queries over 100,000 1280-d entries, with the
//!   gallery kept on the device ([`GalleryIndex::to_device`]) and uploaded per search.
//!
//! The backend is the fastest compiled in (`cuda`, then `wgpu`, else `flex`); its name is
//! printed first. Inputs are synthetic (deterministic pseudo-random).

use std::hint::black_box;
use std::time::Duration;

use burn::prelude::*;
use clip_handid::handid::data::{DatasetKind, Entry, Identity, RunSplit, SplitManifest, SubsetSplit};
use clip_handid::handid::eval::{
    FeatureMatrix, GalleryChoice, GalleryIndex, IndexEntry, ModelInfo, ProtocolOptions, SearchOptions, Similarity,
    evaluate, evaluate_features, evaluation_paths, summarize,
};
use criterion::{Criterion, criterion_group, criterion_main};

type B = clip_handid::backend::Fastest;

/// Feature dimension of the protocol and search benchmarks.
const DIM: usize = 1280;
/// Monte Carlo runs.
const RUNS: usize = 10;

/// 11k subsets: name, test identities, queries per run (docs/METHOD.md section 4).
const HANDS_11K: [(&str, usize, usize); 4] =
    [("dorsal_right", 71, 971), ("dorsal_left", 73, 988), ("palmar_right", 71, 917), ("palmar_left", 75, 948)];
/// PolyU HD: test identities, queries per run, distractor identities and images.
const HD: (usize, usize, usize, usize) = (251, 1992, 213, 1342);

/// Deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The images of `ids` identities of `group`, `total` images in all (spread evenly, at least two
/// each), as (path, identity) entries grouped by identity.
fn identities(group: &str, ids: usize, total: usize) -> Vec<Vec<Entry>> {
    (0..ids)
        .map(|i| {
            let count = total / ids + usize::from(i < total % ids);
            (0..count.max(2))
                .map(|k| Entry::new(format!("{group}/{i:04}_{k}.jpg"), Identity::new(group, format!("{i:04}"))))
                .collect()
        })
        .collect()
}

/// One subset's runs: each test identity gives one random image to the gallery, the rest are
/// queries; the distractor images join every gallery.
fn runs(rng: &mut Rng, test: &[Vec<Entry>], distractors: &[Entry]) -> Vec<RunSplit> {
    (0..RUNS)
        .map(|_| {
            let (mut gallery, mut query) = (Vec::new(), Vec::new());
            for images in test {
                let pick = rng.below(images.len());
                for (k, e) in images.iter().enumerate() {
                    if k == pick { gallery.push(e.clone()) } else { query.push(e.clone()) }
                }
            }
            gallery.extend_from_slice(distractors);
            RunSplit { gallery, combined_gallery: vec![], query }
        })
        .collect()
}

/// Synthetic manifests of the protocol's sizes: 11k (four subsets, combined gallery) and HD.
fn manifests() -> Vec<SplitManifest> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut subsets: Vec<SubsetSplit> = HANDS_11K
        .iter()
        .map(|&(name, ids, queries)| SubsetSplit {
            name: name.into(),
            train: vec![],
            val: vec![],
            runs: runs(&mut rng, &identities(name, ids, queries + ids), &[]),
        })
        .collect();
    for r in 0..RUNS {
        let combined: Vec<Entry> = subsets.iter().flat_map(|s| s.runs[r].gallery.clone()).collect();
        for s in &mut subsets {
            s.runs[r].combined_gallery = combined.clone();
        }
    }
    let hands = SplitManifest::new(DatasetKind::Hands11k, 0, None, subsets);
    let (ids, queries, distractor_ids, distractor_images) = HD;
    let distractors: Vec<Entry> = identities("502-712", distractor_ids, distractor_images).concat();
    let hd = SubsetSplit {
        name: "hd".into(),
        train: vec![],
        val: vec![],
        runs: runs(&mut rng, &identities("1-501", ids, queries + ids), &distractors),
    };
    let hd = SplitManifest::new(DatasetKind::PolyuHd, 0, None, vec![hd]);
    for m in [&hands, &hd] {
        for s in &m.subsets {
            let run = &s.runs[0];
            eprintln!(
                "  {:>12}: {} queries vs {} gallery images",
                s.name,
                run.query.len(),
                run.evaluation_gallery().len()
            );
        }
    }
    vec![hands, hd]
}

/// Normalised features for `paths`: an identity's images scatter around its own direction.
fn features(rng: &mut Rng, paths: &[String]) -> FeatureMatrix {
    let mut centres: std::collections::HashMap<String, Vec<f32>> = Default::default();
    let mut data = Vec::with_capacity(paths.len() * DIM);
    for p in paths {
        let identity = p.rsplit_once('_').map_or(p.as_str(), |(id, _)| id).to_string();
        let centre = centres.entry(identity).or_insert_with(|| (0..DIM).map(|_| rng.uniform()).collect()).clone();
        data.extend(centre.iter().map(|c| 0.5 * c + rng.uniform()));
    }
    let mut m = FeatureMatrix::new(data, DIM).expect("whole rows");
    m.normalize_rows(|i| paths[i].clone()).expect("non-zero features");
    m
}

/// Precomputed similarity matrices and labels of every subset and run.
type Precomputed = Vec<Vec<(Similarity, Vec<u64>, Vec<u64>)>>;

fn similarities(rng: &mut Rng, manifests: &[SplitManifest]) -> Precomputed {
    manifests
        .iter()
        .flat_map(|m| &m.subsets)
        .map(|s| {
            s.runs
                .iter()
                .map(|run| {
                    let gallery = run.evaluation_gallery();
                    let q: Vec<&Identity> = run.query.iter().map(|e| &e.identity).collect();
                    let g: Vec<&Identity> = gallery.iter().map(|e| &e.identity).collect();
                    let (ql, gl) = clip_handid::handid::eval::identity_labels(&q, &g);
                    let mut values = Vec::with_capacity(ql.len() * gl.len());
                    for &a in &ql {
                        values.extend(gl.iter().map(|&b| rng.uniform() + if a == b { 0.8 } else { 0.0 }));
                    }
                    (Similarity::new(values, ql.len(), gl.len()).expect("finite"), ql, gl)
                })
                .collect()
        })
        .collect()
}

fn bench_evaluation(c: &mut Criterion) {
    let device = Default::default();
    eprintln!("backend: {}", <B as Backend>::name(&device));
    let manifests = manifests();
    let mut rng = Rng(12345);

    let precomputed = similarities(&mut rng, &manifests);
    let mut group = c.benchmark_group("metrics");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.bench_function("5x10 from similarities", |b| {
        b.iter(|| {
            for subset in &precomputed {
                let runs: Vec<_> =
                    subset.iter().map(|(s, q, g)| evaluate(s, q, g, 10).expect("valid inputs")).collect();
                black_box(summarize(&runs).expect("runs"));
            }
        })
    });
    group.finish();

    let inputs: Vec<(SplitManifest, Vec<String>, FeatureMatrix)> = manifests
        .into_iter()
        .map(|m| {
            let paths = evaluation_paths(&m, GalleryChoice::Evaluation);
            let f = features(&mut rng, &paths);
            (m, paths, f)
        })
        .collect();
    let options = ProtocolOptions::default();
    let mut group = c.benchmark_group("protocol");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    group.bench_function("5x10 from 1280-d features", |b| {
        b.iter(|| {
            for (m, paths, f) in &inputs {
                black_box(evaluate_features::<B>(m, paths, f, &options, &device).expect("valid inputs"));
            }
        })
    });
    group.finish();
}

fn bench_search(c: &mut Criterion) {
    let device: burn::tensor::Device<B> = Default::default();
    const N: usize = 100_000;
    let mut rng = Rng(777);
    let mut index = GalleryIndex::new(ModelInfo { name: "random".into(), ..Default::default() });
    let entries = (0..N).map(|i| IndexEntry::new(format!("g/{i}.jpg"), None)).collect();
    let embeddings = FeatureMatrix::new((0..N * DIM).map(|_| rng.uniform()).collect(), DIM).expect("whole rows");
    index.add_embeddings(entries, &embeddings).expect("valid embeddings");
    drop(embeddings);
    let options = SearchOptions::default();
    let on_device = index.to_device::<B>(&options, &device).expect("valid options");
    let one = FeatureMatrix::new((0..DIM).map(|_| rng.uniform()).collect(), DIM).expect("one row");
    let many = FeatureMatrix::new((0..32 * DIM).map(|_| rng.uniform()).collect(), DIM).expect("32 rows");

    let mut group = c.benchmark_group("search/100k x 1280");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    group.bench_function("1 query, top-10, on device", |b| b.iter(|| black_box(on_device.search(&one, 10).unwrap())));
    group.bench_function("32 queries, top-10, on device", |b| {
        b.iter(|| black_box(on_device.search(&many, 10).unwrap()))
    });
    group.bench_function("1 query, top-10, upload per search", |b| {
        b.iter(|| black_box(index.search::<B>(&one, 10, &options, &device).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench_evaluation, bench_search);
criterion_main!(benches);
