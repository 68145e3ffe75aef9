//! The casework gallery index: exact top-k search against brute force, save/load round trip,
//! and clear errors for files that are corrupt or do not belong together.

mod common;

use common::{Rng, TempDir};
use std::path::Path;

use burn::backend::Flex;
use clip_handid::clip::preprocess::Transform;
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::handid::eval::{
    EvalError, FeatureMatrix, FeatureOptions, GalleryIndex, IndexEntry, ModelInfo, SearchOptions, extract_features,
};

type B = Flex;

fn matrix(rng: &mut Rng, rows: usize, dim: usize) -> FeatureMatrix {
    FeatureMatrix::new((0..rows * dim).map(|_| rng.next()).collect(), dim).unwrap()
}

fn model_info() -> ModelInfo {
    ModelInfo {
        name: "test vectors".into(),
        weights: Some("none".into()),
        preprocessing: None,
        flip_sum: true,
        extra: [("note".to_string(), "made by a test".to_string())].into(),
    }
}

fn random_index(n: usize, dim: usize, seed: u64) -> GalleryIndex {
    let mut index = GalleryIndex::new(model_info());
    let entries = (0..n)
        .map(|i| IndexEntry::new(format!("gallery/{i:05}.jpg"), (i % 3 != 0).then(|| format!("person-{}", i % 17))))
        .collect();
    index.add_embeddings(entries, &matrix(&mut Rng(seed), n, dim)).unwrap();
    index
}

/// Brute force: every cosine on the CPU, full sort (score descending, then entry order).
fn brute_force(index: &GalleryIndex, queries: &FeatureMatrix, k: usize) -> Vec<Vec<(usize, f32)>> {
    (0..queries.rows())
        .map(|q| {
            let row = queries.row(q);
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            let mut scored: Vec<(usize, f32)> = (0..index.len())
                .map(|i| (i, index.embedding(i).iter().zip(row).map(|(a, b)| a * b / norm).sum::<f32>()))
                .collect();
            scored.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            scored.truncate(k);
            scored
        })
        .collect()
}

#[test]
fn top_k_equals_brute_force_in_every_chunking() {
    let device = Default::default();
    let index = random_index(1000, 48, 0x5eed_1234_abcd_0001);
    let queries = matrix(&mut Rng(77), 13, 48);
    for k in [1, 10, 57] {
        let expected = brute_force(&index, &queries, k);
        for options in [
            SearchOptions::default(),
            SearchOptions { chunk_rows: 97, query_batch: 5 },
            SearchOptions { chunk_rows: 1, query_batch: 13 },
            SearchOptions { chunk_rows: 1000, query_batch: 1 },
        ] {
            let hits = index.search::<B>(&queries, k, &options, &device).unwrap();
            let device_gallery = index.to_device::<B>(&options, &device).unwrap();
            assert_eq!(device_gallery.n_chunks(), 1000usize.div_ceil(options.chunk_rows));
            let kept = device_gallery.search(&queries, k).unwrap();
            assert_eq!(hits, kept);
            for (q, (got, want)) in hits.iter().zip(&expected).enumerate() {
                let got_ids: Vec<usize> = got.iter().map(|h| h.index).collect();
                let want_ids: Vec<usize> = want.iter().map(|w| w.0).collect();
                assert_eq!(got_ids, want_ids, "query {q}, k {k}, {options:?}");
                for (rank, (h, w)) in got.iter().zip(want).enumerate() {
                    assert_eq!(h.rank, rank + 1);
                    assert!((h.score - w.1).abs() < 1e-5);
                    assert_eq!(h.path, index.entries()[h.index].path);
                    assert_eq!(h.identity, index.entries()[h.index].identity);
                }
            }
        }
    }
    // k beyond the index size gives every entry; k = 0 gives nothing.
    let all = index.search::<B>(&queries, 5000, &SearchOptions { chunk_rows: 333, query_batch: 4 }, &device).unwrap();
    assert!(all.iter().all(|h| h.len() == 1000));
    assert_eq!(
        all[0].iter().map(|h| h.index).collect::<Vec<_>>(),
        brute_force(&index, &queries, 1000)[0].iter().map(|w| w.0).collect::<Vec<_>>()
    );
    let none = index.search::<B>(&queries, 0, &SearchOptions::default(), &device).unwrap();
    assert!(none.iter().all(Vec::is_empty) && none.len() == 13);
}

#[test]
fn ties_rank_by_entry_order() {
    let device = Default::default();
    let mut index = GalleryIndex::new(ModelInfo::default());
    for (i, v) in [[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [5.0, 0.0]].iter().enumerate() {
        index.add_embedding(IndexEntry::new(format!("{i}.png"), None), v).unwrap();
    }
    let queries = FeatureMatrix::from_rows(&[vec![7.0, 0.0]]).unwrap();
    for chunk_rows in [1, 2, 5] {
        let hits = index.search::<B>(&queries, 4, &SearchOptions { chunk_rows, query_batch: 1 }, &device).unwrap();
        let order: Vec<usize> = hits[0].iter().map(|h| h.index).collect();
        assert_eq!(order, [0, 2, 4, 1]);
        assert_eq!(hits[0][0].score, 1.0);
    }
}

#[test]
fn save_and_load_round_trip() {
    let dir = TempDir::new("eval-index-roundtrip");
    let index = random_index(300, 24, 42);
    let path = dir.path("cases/gallery.safetensors");
    index.save(&path).unwrap();
    let sidecar = GalleryIndex::sidecar_path(&path);
    assert_eq!(sidecar, dir.path("cases/gallery.safetensors.json"));
    let files: Vec<_> = std::fs::read_dir(dir.path("cases")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 2, "no temporary files left behind: {files:?}");

    let loaded = GalleryIndex::load(&path).unwrap();
    assert_eq!(loaded, index);
    assert_eq!(loaded.model(), &model_info());
    assert_eq!(GalleryIndex::load(&sidecar).unwrap(), index, "the sidecar path is accepted too");

    // A standard safetensors reader sees a [n, d] f32 tensor named `embeddings`.
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensor = file.tensor("embeddings").unwrap();
    assert_eq!((tensor.dtype(), tensor.shape()), (safetensors::Dtype::F32, &[300usize, 24][..]));
    let values: Vec<f32> = tensor.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(values, index.embeddings());
    // The sidecar lists one entry per line.
    let text = std::fs::read_to_string(&sidecar).unwrap();
    assert!(text.contains("\n    {\"path\":\"gallery/00001.jpg\",\"identity\":\"person-1\"}"), "{text}");
    assert!(text.contains("\n    {\"path\":\"gallery/00000.jpg\"}"), "{text}");

    // Saving again replaces both files; an empty index round-trips as well.
    let smaller = random_index(5, 24, 43);
    smaller.save(&path).unwrap();
    assert_eq!(GalleryIndex::load(&path).unwrap(), smaller);
    let empty = GalleryIndex::new(ModelInfo::default());
    empty.save(&dir.path("empty.safetensors")).unwrap();
    let loaded = GalleryIndex::load(&dir.path("empty.safetensors")).unwrap();
    assert!(loaded.is_empty());
}

fn load_error(path: &Path) -> String {
    let err = GalleryIndex::load(path).unwrap_err();
    assert!(matches!(err, EvalError::IndexFile { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn damaged_or_mismatched_files_are_refused_with_the_file_named() {
    let dir = TempDir::new("eval-index-errors");
    let path = dir.path("g.safetensors");
    let sidecar = GalleryIndex::sidecar_path(&path);
    let index = random_index(50, 8, 1);
    let save = || index.save(&path).unwrap();

    // Missing files.
    let err = load_error(&dir.path("absent.safetensors"));
    assert!(err.contains("absent.safetensors.json") && err.contains("does not exist"), "{err}");
    save();
    std::fs::remove_file(&path).unwrap();
    let err = load_error(&path);
    assert!(err.contains("g.safetensors:") && err.contains("does not exist"), "{err}");

    // Truncated, padded, garbage.
    save();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = load_error(&path);
    assert!(err.contains("g.safetensors") && err.contains("truncated"), "{err}");
    std::fs::write(&path, [&bytes[..], &[0u8; 4]].concat()).unwrap();
    assert!(load_error(&path).contains("truncated or padded"));
    std::fs::write(&path, b"definitely not safetensors").unwrap();
    assert!(load_error(&path).contains("not a valid safetensors file"));
    std::fs::write(&path, [&8u64.to_le_bytes()[..], b"{garbage"].concat()).unwrap();
    assert!(load_error(&path).contains("not valid JSON"));

    let huge = br#"{"embeddings":{"dtype":"F32","shape":[1,1],"data_offsets":[0,18446744073709551615]}}"#;
    std::fs::write(&path, [&(huge.len() as u64).to_le_bytes()[..], huge].concat()).unwrap();
    assert!(load_error(&path).contains("truncated or padded"));

    // A flipped bit in the data: the checksum catches it.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    let err = load_error(&path);
    assert!(err.contains("corrupt") && err.contains("checksum"), "{err}");

    // Files from two different saves (same size): the sidecar does not belong to the data.
    save();
    let other = random_index(50, 8, 2);
    let other_path = dir.path("other.safetensors");
    other.save(&other_path).unwrap();
    std::fs::copy(GalleryIndex::sidecar_path(&other_path), &sidecar).unwrap();
    let err = load_error(&path);
    assert!(err.contains("different saves"), "{err}");
    // Different sizes.
    random_index(49, 8, 2).save(&other_path).unwrap();
    std::fs::copy(GalleryIndex::sidecar_path(&other_path), &sidecar).unwrap();
    let err = load_error(&path);
    assert!(err.contains("do not belong together") && err.contains("49"), "{err}");

    // A damaged sidecar.
    save();
    let text = std::fs::read_to_string(&sidecar).unwrap();
    std::fs::write(&sidecar, &text[..text.len() / 2]).unwrap();
    let err = load_error(&path);
    assert!(err.contains("g.safetensors.json") && err.contains("not a valid index sidecar"), "{err}");
    std::fs::write(&sidecar, text.replace("clip-handid-index/1", "clip-handid-index/9")).unwrap();
    assert!(load_error(&path).contains("this version reads"));
    std::fs::write(&sidecar, text.replace("\"count\": 50", "\"count\": 51")).unwrap();
    assert!(load_error(&path).contains("lists 50 entries"));

    // A tensor of another dtype or rank, written by a standard writer.
    let raw: Vec<u8> = vec![0; 50 * 8 * 2];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![50, 8], &raw).unwrap();
    std::fs::write(&path, safetensors::serialize([("embeddings", view)], None).unwrap()).unwrap();
    std::fs::write(&sidecar, &text).unwrap();
    assert!(load_error(&path).contains("dtype \"F16\""));
    let raw: Vec<u8> = vec![0; 400 * 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![400], &raw).unwrap();
    std::fs::write(&path, safetensors::serialize([("embeddings", view)], None).unwrap()).unwrap();
    assert!(load_error(&path).contains("[count, dim]"));
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![400], &raw).unwrap();
    std::fs::write(&path, safetensors::serialize([("other", view)], None).unwrap()).unwrap();
    assert!(load_error(&path).contains("no tensor named"));
}

#[test]
fn adding_and_searching_check_their_inputs() {
    let device = Default::default();
    let mut index = GalleryIndex::new(ModelInfo::default());
    let queries = FeatureMatrix::from_rows(&[vec![1.0, 0.0, 0.0]]).unwrap();
    let err = index.search::<B>(&queries, 3, &SearchOptions::default(), &device).unwrap_err();
    assert!(matches!(err, EvalError::Index(_)) && err.to_string().contains("empty"), "{err}");

    index.add_embedding(IndexEntry::new("a.jpg", None), &[1.0, 2.0, 2.0]).unwrap();
    assert_eq!(index.dim(), 3);
    assert_eq!(index.embedding(0), &[1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
    let err = index.add_embedding(IndexEntry::new("b.jpg", None), &[1.0, 2.0]).unwrap_err();
    assert!(
        matches!(err, EvalError::Dimension { expected: 3, got: 2, .. }) && err.to_string().contains("b.jpg"),
        "{err}"
    );
    let err = index.add_embedding(IndexEntry::new("zero.jpg", None), &[0.0; 3]).unwrap_err();
    assert!(err.to_string().contains("zero.jpg"), "{err}");
    let err = index.add_embedding(IndexEntry::new("nan.jpg", None), &[f32::NAN, 0.0, 1.0]).unwrap_err();
    assert!(err.to_string().contains("nan.jpg") && err.to_string().contains("NaN"), "{err}");
    let two = FeatureMatrix::from_rows(&[vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 0.0]]).unwrap();
    let err = index.add_embeddings(vec![IndexEntry::new("c.jpg", None)], &two).unwrap_err();
    assert!(err.to_string().contains("1 entries given for 2 embeddings"), "{err}");
    let err =
        index.add_embeddings(vec![IndexEntry::new("c.jpg", None), IndexEntry::new("d.jpg", None)], &two).unwrap_err();
    assert!(err.to_string().contains("d.jpg"), "{err}");
    assert_eq!(index.len(), 1, "failed additions leave the index unchanged");

    let wrong = FeatureMatrix::from_rows(&[vec![1.0, 0.0]]).unwrap();
    let err = index.search::<B>(&wrong, 3, &SearchOptions::default(), &device).unwrap_err();
    assert!(matches!(err, EvalError::Dimension { expected: 3, got: 2, .. }), "{err:?}");
    let zero = FeatureMatrix::from_rows(&[vec![0.0, 0.0, 0.0]]).unwrap();
    let err = index.search::<B>(&zero, 3, &SearchOptions::default(), &device).unwrap_err();
    assert!(err.to_string().contains("query 0"), "{err}");
    let err = index.search::<B>(&queries, 3, &SearchOptions { chunk_rows: 0, query_batch: 1 }, &device).unwrap_err();
    assert!(matches!(err, EvalError::InvalidOption(_)), "{err:?}");
}

#[test]
fn images_added_with_clip_find_themselves() {
    let device = Default::default();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = fixtures.join("clip/vit_tiny");
    let config = ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
    let clip = Clip::<B>::from_safetensors_with_config(&dir.join("weights.safetensors"), &config, &device).unwrap();
    let transform = Transform::Clip { size: 32 };
    let options = FeatureOptions { batch_size: 2, flip_sum: true };
    let names = ["img_97x131.png", "img_300x200.png", "img_64x48.png", "img_225x225.png"];
    let paths: Vec<String> =
        names.iter().map(|n| fixtures.join("preprocess").join(n).to_str().unwrap().to_string()).collect();
    let entries: Vec<IndexEntry> =
        paths.iter().zip(names).map(|(p, n)| IndexEntry::new(p.clone(), Some(n.into()))).collect();
    let mut index = GalleryIndex::new(ModelInfo { name: "tiny ViT".into(), flip_sum: true, ..Default::default() });
    let mut done = Vec::new();
    index.add_images(&clip, entries, &transform, &options, &device, |n| done.push(n)).unwrap();
    assert_eq!(done, [2, 4]);
    let features = extract_features(&clip, &paths, &transform, &options, &device, |_| {}).unwrap();
    assert_eq!(index.embeddings(), features.data());

    let hits = index.search::<B>(&features, 1, &SearchOptions::default(), &device).unwrap();
    for (q, h) in hits.iter().enumerate() {
        assert_eq!(h[0].index, q);
        assert!((h[0].score - 1.0).abs() < 1e-5);
        assert_eq!(h[0].identity.as_deref(), Some(names[q]));
    }

    // A missing image leaves the index unchanged and is named.
    let before = index.clone();
    let err = index
        .add_images(&clip, vec![IndexEntry::new("/nonexistent/x.png", None)], &transform, &options, &device, |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.png"), "{err}");
    assert_eq!(index, before);
}
