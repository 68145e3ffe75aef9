//! The `handid` command end to end, as a user runs it on their own folder of hands: a generated
//! folder dataset of training identities and held-out identities -> `train` (tiny model, from
//! small CLIP weights) -> `export` -> `index build` with the exported model -> `index query`.
//! The hits' structure and every SHA-256 in them are checked, and the held-out identities'
//! rank-1 with the trained model must be above that of the weights training started from.

mod common;

use std::path::{Path, PathBuf};

use clip_handid::handid::data::SyntheticHands;
use clip_handid::handid::provenance::sha256_file;
use common::TempDir;
use common::cli::{CONFIG, WEIGHTS, handid, s};
use serde_json::Value;

/// Builds an index of the held-out gallery with `model`, queries it with the held-out queries
/// and returns the parsed `hits.json`.
fn query_heldout(dir: &TempDir, model: &[&str], tag: &str, gallery: &Path, queries: &[PathBuf]) -> Value {
    let index = dir.path(&format!("{tag}.safetensors"));
    let build =
        [&["index", "build", "--quiet"][..], model, &["--index", s(&index), "--identity-from-folder", s(gallery)]];
    handid(&build.concat());
    let hits = dir.path(&format!("{tag}-hits.json"));
    let mut args =
        [&["index", "query", "--quiet"][..], model, &["--index", s(&index), "-k", "3", "--out", s(&hits)]].concat();
    args.extend(queries.iter().map(|q| s(q)));
    handid(&args);
    let json: Value = serde_json::from_slice(&std::fs::read(&hits).unwrap()).unwrap();

    // Provenance: tool, model and index digests, preprocessing, backend.
    let p = &json["provenance"];
    assert!(p["tool"].as_str().unwrap().starts_with("handid "), "{p}");
    assert_eq!(p["model_sha256"].as_str().unwrap(), sha256_file(Path::new(model[1])).unwrap());
    assert_eq!(p["index_sha256"].as_str().unwrap(), sha256_file(&index).unwrap());
    assert!(p["preprocessing"]["kind"].is_string(), "{p}");
    assert!(!p["backend"].as_str().unwrap().is_empty(), "{p}");
    assert_eq!(p["flip_sum"], Value::Bool(true));

    let listed = json["queries"].as_array().unwrap();
    assert_eq!(listed.len(), queries.len());
    for (query, path) in listed.iter().zip(queries) {
        assert_eq!(query["path"].as_str().unwrap(), s(path));
        assert_eq!(query["sha256"].as_str().unwrap(), sha256_file(path).unwrap());
        let candidates = query["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), 3);
        let mut last = f64::INFINITY;
        for (i, c) in candidates.iter().enumerate() {
            assert_eq!(c["rank"].as_u64().unwrap(), i as u64 + 1);
            let file = Path::new(c["path"].as_str().unwrap());
            assert!(file.starts_with(gallery), "{file:?}");
            assert_eq!(c["sha256"].as_str().unwrap(), sha256_file(file).unwrap(), "{file:?}");
            let folder = file.parent().unwrap().file_name().unwrap().to_str().unwrap();
            assert_eq!(c["identity"].as_str().unwrap(), folder);
            let score = c["score"].as_f64().unwrap();
            assert!((-1.0001..=1.0001).contains(&score) && score <= last, "{c}");
            last = score;
        }
    }
    json
}

/// The share of queries whose best candidate shows the query's identity (its folder).
fn rank1(hits: &Value) -> f64 {
    let queries = hits["queries"].as_array().unwrap();
    let correct = queries
        .iter()
        .filter(|q| {
            let identity =
                Path::new(q["path"].as_str().unwrap()).parent().unwrap().file_name().unwrap().to_str().unwrap();
            q["candidates"][0]["identity"].as_str() == Some(identity)
        })
        .count();
    correct as f64 / queries.len() as f64
}

#[test]
fn train_export_index_query_on_a_folder_of_hands() {
    let dir = TempDir::new("cli-e2e");
    let (all, train, heldout) = (dir.path("all"), dir.path("train"), dir.path("heldout"));
    let (train_ids, heldout_ids, per_id) = (24usize, 8usize, 6usize);
    SyntheticHands { identities: train_ids + heldout_ids, images_per_identity: per_id, size: 64, seed: 3 }
        .write_folders(&all)
        .unwrap();
    std::fs::create_dir_all(&train).unwrap();
    std::fs::create_dir_all(&heldout).unwrap();
    for id in 0..train_ids + heldout_ids {
        let name = format!("id_{id:04}");
        let to = if id < train_ids { &train } else { &heldout };
        std::fs::rename(all.join(&name), to.join(&name)).unwrap();
    }
    // Held-out gallery: the first image of every held-out identity; queries: the others.
    let gallery = dir.path("gallery");
    let mut queries = Vec::new();
    for id in train_ids..train_ids + heldout_ids {
        let name = format!("id_{id:04}");
        std::fs::create_dir_all(gallery.join(&name)).unwrap();
        std::fs::rename(heldout.join(&name).join("img_00.png"), gallery.join(&name).join("img_00.png")).unwrap();
        queries.extend((1..per_id).map(|i| heldout.join(&name).join(format!("img_{i:02}.png"))));
    }

    let run = dir.path("run");
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join(WEIGHTS);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join(CONFIG);
    let train_args = [
        "train",
        "--quiet",
        "--data",
        s(&train),
        "--weights",
        s(&weights),
        "--config",
        s(&config),
        "--out",
        s(&run),
        "--epochs",
        "20",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--warmup-epochs",
        "2",
    ];
    handid(&train_args);
    for file in ["config.json", "model.json", "metrics.json", "best/model.mpk"] {
        assert!(run.join(file).is_file(), "the run lacks {file}");
    }
    // The run's config records the weights' and every image's SHA-256.
    let model_json: Value = serde_json::from_slice(&std::fs::read(run.join("model.json")).unwrap()).unwrap();
    assert_eq!(model_json["weights_sha256"].as_str().unwrap(), sha256_file(&weights).unwrap());
    let images = model_json["train_images"].as_array().unwrap();
    assert_eq!(images.len() + model_json["val_images"].as_array().unwrap().len(), train_ids * per_id);
    for image in images {
        let path = train.join(image["path"].as_str().unwrap());
        assert_eq!(image["sha256"].as_str().unwrap(), sha256_file(&path).unwrap());
    }
    // Rerunning the finished run resumes it: nothing left to train, same outputs.
    handid(&train_args);

    let model = dir.path("model.safetensors");
    handid(&["export", s(&run), "--out", s(&model)]);

    let trained = query_heldout(&dir, &["--model", s(&model)], "trained", &gallery, &queries);
    assert_eq!(trained["provenance"]["model_kind"], "clip-handid");
    let start = query_heldout(&dir, &["--model", s(&weights), "--config", s(&config)], "start", &gallery, &queries);
    assert_eq!(start["provenance"]["model_kind"], "clip");
    let (after, before) = (rank1(&trained), rank1(&start));
    println!("held-out rank-1: {before:.3} with the starting weights, {after:.3} after training");
    assert!(after > before, "held-out rank-1 {after} after training is not above {before} of the starting weights");

    // The protocol's figures for the exported model on a split of the held-out identities.
    let manifest = dir.path("heldout.json");
    handid(&[
        "splits",
        "--dataset",
        "folder",
        "--root",
        s(&heldout),
        "--train-fraction",
        "0",
        "--runs",
        "2",
        "--out",
        s(&manifest),
    ]);
    let eval = dir.path("eval");
    handid(&[
        "evaluate",
        "--quiet",
        "--model",
        s(&model),
        "--split",
        s(&manifest),
        "--root",
        s(&heldout),
        "--out",
        s(&eval),
    ]);
    let results: Value = serde_json::from_slice(&std::fs::read(eval.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["provenance"]["model_sha256"].as_str().unwrap(), sha256_file(&model).unwrap());
    assert_eq!(results["manifest_sha256"].as_str().unwrap(), sha256_file(&manifest).unwrap());
    let images = results["images"].as_array().unwrap();
    assert_eq!(images.len(), heldout_ids * (per_id - 1));
    for image in images {
        let path = heldout.join(image["path"].as_str().unwrap());
        assert_eq!(image["sha256"].as_str().unwrap(), sha256_file(&path).unwrap(), "{path:?}");
    }
    let summary = &results["results"]["subsets"][0]["summary"];
    for metric in ["rank1", "rank5", "rank10", "map_interpolated", "map_standard", "minp"] {
        let mean = summary[metric]["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&mean), "{metric} = {mean}");
    }
    for file in ["verification.json", "verification.png", "rankings.csv", "rankings.png"] {
        assert!(eval.join(file).is_file(), "evaluate did not write {file}");
    }

    // A score of one pair, and embeddings with their provenance.
    let out = handid(&["compare", "--quiet", "--model", s(&model), s(&queries[0]), s(&queries[1])]);
    let score: f64 = out.trim().parse().unwrap();
    assert!((-1.0001..=1.0001).contains(&score));
    let embeddings = dir.path("embeddings.safetensors");
    handid(&["embed", "--quiet", "--model", s(&model), "--out", s(&embeddings), s(&gallery)]);
    let bytes = std::fs::read(&embeddings).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    let listed: Value = serde_json::from_str(&metadata["images"]).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), heldout_ids);
    for image in listed.as_array().unwrap() {
        assert_eq!(image["sha256"].as_str().unwrap(), sha256_file(Path::new(image["path"].as_str().unwrap())).unwrap());
    }
    let provenance: Value = serde_json::from_str(&metadata["provenance"]).unwrap();
    assert_eq!(provenance["model_sha256"].as_str().unwrap(), sha256_file(&model).unwrap());
}
