//! The evaluation protocol end to end: split manifest + features (or images and a model) in,
//! per-run and summarised metrics out.

mod common;

use common::Rng;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use clip_handid::clip::preprocess::Transform;
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::handid::data::{DatasetKind, Entry, Identity, RunSplit, SplitManifest, SubsetSplit};
use clip_handid::handid::eval::{
    EvalError, FeatureMatrix, FeatureOptions, GalleryChoice, ProtocolOptions, ProtocolReport, Similarity, evaluate,
    evaluate_features, evaluate_manifest, evaluation_paths, extract_features, identity_labels, summarize,
};

type B = Flex;

fn entry(path: &str, group: &str, id: &str) -> Entry {
    Entry::new(path, Identity::new(group, id))
}

/// Two 11k-like subsets (`a`, `b`) with 3 identities each and 2 runs; each run's combined
/// gallery is the union of both subsets' galleries, so identity `a/1` never matches `b/1`.
fn manifest() -> SplitManifest {
    let mut subsets = Vec::new();
    for group in ["a", "b"] {
        let mut runs = Vec::new();
        for run in 0..2 {
            let mut gallery = Vec::new();
            let mut query = Vec::new();
            for id in 0..3 {
                for k in 0..3 {
                    let e = entry(&format!("{group}/{id}_{k}.png"), group, &id.to_string());
                    if k == run { gallery.push(e) } else { query.push(e) }
                }
            }
            runs.push(RunSplit { gallery, combined_gallery: vec![], query });
        }
        subsets.push(SubsetSplit { name: group.into(), train: vec![], val: vec![], runs });
    }
    for r in 0..2 {
        let combined: Vec<Entry> = subsets.iter().flat_map(|s| s.runs[r].gallery.clone()).collect();
        for s in &mut subsets {
            s.runs[r].combined_gallery = combined.clone();
        }
    }
    SplitManifest::new(DatasetKind::Hands11k, 7, None, subsets)
}

fn normalised_features(n: usize, dim: usize, seed: u64) -> FeatureMatrix {
    let mut rng = Rng(seed);
    let mut m = FeatureMatrix::new((0..n * dim).map(|_| rng.next()).collect(), dim).unwrap();
    m.normalize_rows(|i| format!("row {i}")).unwrap();
    m
}

/// The metrics of one run computed on the CPU, independently of the glue.
fn expected_run(
    run: &RunSplit,
    gallery: &[Entry],
    paths: &[String],
    features: &FeatureMatrix,
) -> clip_handid::handid::eval::RetrievalMetrics {
    let rows = |entries: &[Entry]| -> Vec<f32> {
        entries.iter().flat_map(|e| features.row(paths.iter().position(|p| *p == e.path).unwrap()).to_vec()).collect()
    };
    let similarity = Similarity::from_features(&rows(&run.query), &rows(gallery), features.dim()).unwrap();
    let q: Vec<&Identity> = run.query.iter().map(|e| &e.identity).collect();
    let g: Vec<&Identity> = gallery.iter().map(|e| &e.identity).collect();
    let (ql, gl) = identity_labels(&q, &g);
    evaluate(&similarity, &ql, &gl, 10).unwrap()
}

fn assert_metrics_close(
    a: &clip_handid::handid::eval::RetrievalMetrics,
    b: &clip_handid::handid::eval::RetrievalMetrics,
) {
    assert_eq!((a.n_query, a.n_gallery, a.cmc.len()), (b.n_query, b.n_gallery, b.cmc.len()));
    for (x, y) in [
        (a.rank1, b.rank1),
        (a.rank5, b.rank5),
        (a.map_interpolated, b.map_interpolated),
        (a.map_standard, b.map_standard),
        (a.minp, b.minp),
    ] {
        assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
    }
}

#[test]
fn features_give_the_metrics_of_every_run_and_their_summary() {
    let device = Default::default();
    let manifest = manifest();
    let paths = evaluation_paths(&manifest, GalleryChoice::Evaluation);
    assert_eq!(paths.len(), 18, "each image once");
    let features = normalised_features(paths.len(), 16, 0x1234_5678_9abc_def1);

    for choice in [GalleryChoice::Evaluation, GalleryChoice::Own] {
        let options = ProtocolOptions { max_rank: 10, gallery: choice };
        let report = evaluate_features::<B>(&manifest, &paths, &features, &options, &device).unwrap();
        assert_eq!(
            (report.dataset, report.seed, report.n_images, report.feature_dim),
            (DatasetKind::Hands11k, 7, 18, 16)
        );
        assert_eq!(report.subsets.len(), 2);
        for (subset, split) in report.subsets.iter().zip(&manifest.subsets) {
            assert_eq!(subset.name, split.name);
            assert_eq!(subset.combined_gallery, choice == GalleryChoice::Evaluation);
            assert_eq!(subset.runs.len(), 2);
            for (metrics, run) in subset.runs.iter().zip(&split.runs) {
                let gallery = choice.gallery(run);
                assert_eq!(metrics.n_gallery, if choice == GalleryChoice::Evaluation { 6 } else { 3 });
                assert_metrics_close(metrics, &expected_run(run, gallery, &paths, &features));
            }
            assert_eq!(subset.summary, summarize(&subset.runs).unwrap());
        }
        // JSON round trip (serde_json may change a float's last bit).
        let json = serde_json::to_string(&report).unwrap();
        let back: ProtocolReport = serde_json::from_str(&json).unwrap();
        assert_eq!((back.options, back.subsets.len()), (report.options, 2));
        for (x, y) in back.subsets.iter().zip(&report.subsets) {
            assert_eq!((&x.name, x.runs.len()), (&y.name, y.runs.len()));
            assert_metrics_close(&x.runs[1], &y.runs[1]);
            assert!((x.summary.map_interpolated.mean - y.summary.map_interpolated.mean).abs() < 1e-12);
        }
    }
}

/// PolyU-HD-like: every run shares the distractors and most images, so the similarities are
/// gathered from one product of the runs' unions; the metrics must not change.
#[test]
fn runs_sharing_images_give_the_same_metrics() {
    let device = Default::default();
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let distractors: Vec<Entry> = (0..10).map(|i| entry(&format!("x/{i}.png"), "x", &i.to_string())).collect();
    let runs: Vec<RunSplit> = (0..6)
        .map(|_| {
            let (mut gallery, mut query) = (Vec::new(), Vec::new());
            for id in 0..3 {
                let pick = (rng.next().abs() * 4.0) as usize % 4;
                for k in 0..4 {
                    let e = entry(&format!("t/{id}_{k}.png"), "t", &id.to_string());
                    if k == pick { gallery.push(e) } else { query.push(e) }
                }
            }
            gallery.extend(distractors.clone());
            RunSplit { gallery, combined_gallery: vec![], query }
        })
        .collect();
    let subset = SubsetSplit { name: "hd".into(), train: vec![], val: vec![], runs };
    let manifest = SplitManifest::new(DatasetKind::PolyuHd, 3, None, vec![subset]);
    let paths = evaluation_paths(&manifest, GalleryChoice::Evaluation);
    assert_eq!(paths.len(), 22);
    let features = normalised_features(paths.len(), 8, 5);
    let report = evaluate_features::<B>(&manifest, &paths, &features, &ProtocolOptions::default(), &device).unwrap();
    let subset = &report.subsets[0];
    assert!(!subset.combined_gallery);
    for (metrics, run) in subset.runs.iter().zip(&manifest.subsets[0].runs) {
        assert_eq!((metrics.n_query, metrics.n_gallery), (9, 13));
        assert_metrics_close(metrics, &expected_run(run, &run.gallery, &paths, &features));
    }
}

#[test]
fn the_combined_gallery_adds_distractors_that_never_match() {
    // Identity `1` of subset `b` has the *same* feature as identity `1` of subset `a`: with the
    // combined gallery it outranks nothing it should match, it only competes as a distractor.
    let device = Default::default();
    let manifest = manifest();
    let paths = evaluation_paths(&manifest, GalleryChoice::Evaluation);
    let dim = 6;
    let mut data = Vec::new();
    for p in &paths {
        let id: usize = p[2..3].parse().unwrap();
        let mut v = vec![0.0f32; dim];
        v[id] = 1.0; // same direction for a/id and b/id
        data.extend(v);
    }
    let features = FeatureMatrix::new(data, dim).unwrap();
    let own = evaluate_features::<B>(
        &manifest,
        &paths,
        &features,
        &ProtocolOptions { gallery: GalleryChoice::Own, ..Default::default() },
        &device,
    )
    .unwrap();
    assert!(own.subsets.iter().all(|s| s.summary.rank1.mean == 1.0));
    let combined = evaluate_features::<B>(&manifest, &paths, &features, &ProtocolOptions::default(), &device).unwrap();
    // In subset b, every query ties with a's gallery image of the same id, which comes first
    // in the combined gallery (ties rank by gallery order): the true match is at rank 2.
    let b = combined.subset("b").unwrap();
    assert_eq!(b.summary.rank1.mean, 0.0);
    assert_eq!(b.summary.rank5.mean, 1.0);
    assert_eq!(combined.subset("a").unwrap().summary.rank1.mean, 1.0);
}

#[test]
fn inconsistent_inputs_are_refused() {
    let device = Default::default();
    let manifest = manifest();
    let paths = evaluation_paths(&manifest, GalleryChoice::Evaluation);
    let features = normalised_features(paths.len(), 4, 99);
    let options = ProtocolOptions::default();

    let err = evaluate_features::<B>(&manifest, &paths[1..], &features, &options, &device).unwrap_err();
    assert!(matches!(err, EvalError::LabelCount { .. }), "{err:?}");

    let mut renamed = paths.clone();
    renamed[3] = "elsewhere.png".into();
    let err = evaluate_features::<B>(&manifest, &renamed, &features, &options, &device).unwrap_err();
    assert!(err.to_string().contains(&paths[3]) && err.to_string().contains("no feature"), "{err}");

    let mut twice = paths.clone();
    twice[3] = paths[0].clone();
    let err = evaluate_features::<B>(&manifest, &twice, &features, &options, &device).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");

    let mut no_runs = manifest.clone();
    for s in &mut no_runs.subsets {
        s.runs.clear();
    }
    assert!(matches!(
        evaluate_features::<B>(&no_runs, &paths, &features, &options, &device),
        Err(EvalError::Protocol(_))
    ));
    let mut no_queries = manifest.clone();
    no_queries.subsets[1].runs[1].query.clear();
    let err = evaluate_features::<B>(&no_queries, &paths, &features, &options, &device).unwrap_err();
    assert!(err.to_string().contains("subset b, run 1"), "{err}");
}

/// An image's mirror image has the same flip-summed feature, whatever the model: with each
/// identity made of an image and its mirror, every query finds its match first.
#[test]
fn manifest_with_images_and_clip_end_to_end() {
    let device = Default::default();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let root = std::env::temp_dir().join(format!("clip-handid-eval-protocol-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("imgs")).unwrap();
    let names = ["img_97x131", "img_300x200", "img_64x48", "img_225x225"];
    let mut gallery = Vec::new();
    let mut query = Vec::new();
    for name in names {
        let img = image::open(fixtures.join("preprocess").join(format!("{name}.png"))).unwrap().to_rgb8();
        img.save(root.join("imgs").join(format!("{name}.png"))).unwrap();
        image::imageops::flip_horizontal(&img).save(root.join("imgs").join(format!("{name}_m.png"))).unwrap();
        gallery.push(entry(&format!("imgs/{name}.png"), "folders", name));
        query.push(entry(&format!("imgs/{name}_m.png"), "folders", name));
    }
    let subset = SubsetSplit {
        name: "folders".into(),
        train: vec![],
        val: vec![],
        runs: vec![RunSplit { gallery, combined_gallery: vec![], query }],
    };
    let manifest = SplitManifest::new(DatasetKind::Folders, 1, Some(0.5), vec![subset]);
    let dir = fixtures.join("clip/vit_tiny");
    let config = ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
    let clip = Clip::<B>::from_safetensors_with_config(&dir.join("weights.safetensors"), &config, &device).unwrap();
    let transform = Transform::Reid { height: 32, width: 32 };
    let feature_options = FeatureOptions { batch_size: 3, flip_sum: true };
    let mut done = Vec::new();
    let report = evaluate_manifest(
        &manifest,
        &root,
        &clip,
        &transform,
        &feature_options,
        &ProtocolOptions::default(),
        &device,
        |n| done.push(n),
    )
    .unwrap();
    assert_eq!(done, [3, 6, 8]);
    let metrics = &report.subsets[0].runs[0];
    assert_eq!((metrics.n_query, metrics.n_gallery), (4, 4));
    assert_eq!(metrics.rank1, 1.0);
    assert_eq!(metrics.map_interpolated, 1.0);

    // The same as extracting the features and evaluating them.
    let paths = evaluation_paths(&manifest, GalleryChoice::Evaluation);
    let files: Vec<PathBuf> = paths.iter().map(|p| root.join(p)).collect();
    let features = extract_features(&clip, &files, &transform, &feature_options, &device, |_| {}).unwrap();
    let again = evaluate_features::<B>(&manifest, &paths, &features, &ProtocolOptions::default(), &device).unwrap();
    assert_eq!(again, report);

    // A missing image is named.
    std::fs::remove_file(root.join("imgs/img_64x48_m.png")).unwrap();
    let err = evaluate_manifest(
        &manifest,
        &root,
        &clip,
        &transform,
        &feature_options,
        &ProtocolOptions::default(),
        &device,
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("img_64x48_m.png"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
