//! Likelihood ratios with the `handid` command end to end: a generated folder dataset ->
//! a brief `train` (small CLIP weights) and `export` -> `calibrate` on held-out identities ->
//! the report files, with the model's and every image's
//! SHA-256 -> `compare --calibration` on a same-identity pair (an image and its mirror image,
//! whose flip-summed features are the same) gives LR > 1 and on the least similar
//! different-identity pair LR < 1 -> `index query --calibration` adds the LR to every
//! candidate -> a calibration made with another model and an image that is not one are refused
//! with one line naming the file, and nothing is written.

mod common;

use std::path::{Path, PathBuf};

use clip_handid::handid::data::SyntheticHands;
use clip_handid::handid::provenance::sha256_file;
use common::TempDir;
use common::cli::{CONFIG, WEIGHTS, fails, fixture, handid, json, s};
use serde_json::Value;

/// The rows of `handid embed`'s output with the image path of each.
fn embeddings(file: &Path) -> Vec<(PathBuf, Vec<f32>)> {
    let bytes = std::fs::read(file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor("embeddings").unwrap();
    let dim = view.shape()[1];
    let values: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let images: Value = serde_json::from_str(&metadata.metadata().clone().unwrap()["images"]).unwrap();
    images
        .as_array()
        .unwrap()
        .iter()
        .zip(values.chunks_exact(dim))
        .map(|(image, row)| (PathBuf::from(image["path"].as_str().unwrap()), row.to_vec()))
        .collect()
}

fn identity(path: &Path) -> &str {
    path.parent().unwrap().file_name().unwrap().to_str().unwrap()
}

#[test]
fn calibrate_then_compare_and_query_with_likelihood_ratios() {
    let dir = TempDir::new("lr-cli");
    // Training identities and held-out ones for the calibration (a calibration must be made on
    // identities the model was not trained on).
    let (all, train, data) = (dir.path("all"), dir.path("train"), dir.path("calibration-hands"));
    let (train_ids, identities, per_identity) = (24usize, 12usize, 5usize);
    SyntheticHands { identities: train_ids + identities, images_per_identity: per_identity, size: 64, seed: 21 }
        .write_folders(&all)
        .unwrap();
    std::fs::create_dir_all(&train).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    for id in 0..train_ids + identities {
        let name = format!("id_{id:04}");
        std::fs::rename(all.join(&name), if id < train_ids { &train } else { &data }.join(&name)).unwrap();
    }
    // The random starting weights do not tell the identities apart: train briefly.
    let (weights, config) = (fixture(WEIGHTS), fixture(CONFIG));
    let run = dir.path("run");
    handid(&[
        "train",
        "--quiet",
        "--data",
        s(&train),
        "--weights",
        &weights,
        "--config",
        &config,
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
    ]);
    let trained = dir.path("model.safetensors");
    handid(&["export", s(&run), "--out", s(&trained)]);
    let model = ["--model", s(&trained)];

    let out = dir.path("cal");
    let printed = handid(&[&["calibrate", "--quiet"][..], &model, &["--data", s(&data), "--out", s(&out)]].concat());
    for figure in ["Cllr", "Cllr_min", "EER", "misleading evidence", "calibration.json"] {
        assert!(printed.contains(figure), "calibrate did not print {figure}:\n{printed}");
    }
    for file in ["calibration.json", "validation.json", "tippett.png", "ece.png", "pav.png", "llr_histograms.png"] {
        assert!(out.join(file).is_file(), "calibrate did not write {file}");
    }
    for png in ["tippett.png", "ece.png", "pav.png", "llr_histograms.png"] {
        image::open(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
    }
    let calibration_file = out.join("calibration.json");
    let calibration = json(&calibration_file);
    let provenance = &calibration["provenance"];
    assert_eq!(provenance["model_sha256"].as_str().unwrap(), sha256_file(&trained).unwrap());
    assert_eq!(provenance["produced_by"]["model_kind"], "clip-handid");
    let hashes = provenance["data_hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), identities * per_identity);
    for hash in hashes {
        let path = Path::new(hash["path"].as_str().unwrap());
        assert_eq!(hash["sha256"].as_str().unwrap(), sha256_file(path).unwrap(), "{path:?}");
    }
    let counts = &calibration["counts"];
    let n = identities * per_identity;
    let same = identities * per_identity * (per_identity - 1) / 2;
    assert_eq!(counts["images"].as_u64().unwrap(), n as u64);
    assert_eq!(counts["identities"].as_u64().unwrap(), identities as u64);
    assert_eq!(counts["same_source"].as_u64().unwrap(), same as u64);
    assert_eq!(counts["different_source"].as_u64().unwrap(), (n * (n - 1) / 2 - same) as u64);
    let validation = json(&out.join("validation.json"));
    assert!(validation["metrics"]["cllr"].as_f64().unwrap().is_finite(), "{}", validation["metrics"]);

    // A same-identity pair: an image and its mirror image (the same flip-summed features).
    let image = data.join("id_0027").join("img_01.png");
    let mirror = dir.path("mirror.png");
    image::imageops::flip_horizontal(&image::open(&image).unwrap().to_rgb8()).save(&mirror).unwrap();
    // A different-identity pair: the least similar two images of different identities.
    let features = dir.path("features.safetensors");
    handid(&[&["embed", "--quiet"][..], &model, &["--out", s(&features), s(&data)]].concat());
    let rows = embeddings(&features);
    assert_eq!(rows.len(), n);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut least = (f32::INFINITY, 0, 0);
    for i in 0..n {
        for j in i + 1..n {
            let score = dot(&rows[i].1, &rows[j].1);
            if identity(&rows[i].0) != identity(&rows[j].0) && score < least.0 {
                least = (score, i, j);
            }
        }
    }
    let (a, b) = (&rows[least.1].0, &rows[least.2].0);

    let compare = |x: &Path, y: &Path| -> Value {
        let args = [&["compare", "--quiet", "--json"][..], &model, &["--calibration", s(&calibration_file)]];
        serde_json::from_str(&handid(&[&args.concat()[..], &[s(x), s(y)]].concat())).unwrap()
    };
    let same_pair = compare(&image, &mirror);
    let e = &same_pair["evidence"];
    assert!(same_pair["score"].as_f64().unwrap() > 0.999, "{same_pair}");
    assert!(e["lr"].as_f64().unwrap() > 1.0 && e["llr"].as_f64().unwrap() > 0.0, "same identity: {e}");
    assert_eq!(e["verbal"]["supports"], "same_source", "{e}");
    assert!(e["verbal"]["scale"].as_str().unwrap().contains("ENFSI"), "{e}");
    let different_pair = compare(a, b);
    let e = &different_pair["evidence"];
    assert!(e["lr"].as_f64().unwrap() < 1.0 && e["llr"].as_f64().unwrap() < 0.0, "different identities: {e}");
    assert_eq!(e["verbal"]["supports"], "different_source", "{e}");
    // The provenance of every input.
    let p = &different_pair["provenance"];
    assert_eq!(p["model_sha256"].as_str().unwrap(), sha256_file(&trained).unwrap());
    assert_eq!(p["calibration_sha256"].as_str().unwrap(), sha256_file(&calibration_file).unwrap());
    assert_eq!(different_pair["calibration"]["sha256"], p["calibration_sha256"]);
    assert!(different_pair["calibration"]["validity"]["cllr"].is_number(), "{different_pair}");
    let listed = different_pair["images"].as_array().unwrap();
    for (image, path) in listed.iter().zip([a, b]) {
        assert_eq!(image["sha256"].as_str().unwrap(), sha256_file(path).unwrap());
    }
    // The text output says the same, with the scale's name and the validity figures.
    let text = handid(
        &[&["compare", "--quiet"][..], &model, &["--calibration", s(&calibration_file), s(&image), s(&mirror)]]
            .concat(),
    );
    for part in ["log10 LR", "LR ", "support", "ENFSI", "Cllr", "EER", "SHA-256"] {
        assert!(text.contains(part), "compare --calibration did not print {part}:\n{text}");
    }

    // index query --calibration: every candidate with its LR, the calibration in the provenance.
    let index = dir.path("gallery.safetensors");
    let gallery = data.join("id_0030");
    handid(
        &[&["index", "build", "--quiet"][..], &model, &["--index", s(&index), "--identity-from-folder", s(&data)]]
            .concat(),
    );
    let hits = dir.path("hits.json");
    let query = gallery.join("img_00.png");
    let args = [&["index", "query", "--quiet"][..], &model, &["--index", s(&index), "-k", "5", "--out", s(&hits)]];
    handid(&[&args.concat()[..], &["--calibration", s(&calibration_file), s(&query)]].concat());
    let hits = json(&hits);
    assert_eq!(hits["provenance"]["calibration_sha256"].as_str().unwrap(), sha256_file(&calibration_file).unwrap());
    let candidates = hits["queries"][0]["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 5);
    let mut last = f64::INFINITY;
    for c in candidates {
        let (llr, lr) = (c["log10_lr"].as_f64().unwrap(), c["lr"].as_f64().unwrap());
        assert!((lr - 10f64.powf(llr)).abs() <= 1e-9 * lr.max(1.0) && llr <= last, "{c}");
        assert!(c["strength"].is_string() && c["supports"].is_string(), "{c}");
        last = llr;
    }
    // The query image itself is in the index: its score is 1 and its LR the highest.
    assert_eq!(candidates[0]["path"].as_str().unwrap(), s(&query));
    assert!(candidates[0]["lr"].as_f64().unwrap() > 1.0, "{}", candidates[0]);

    // A calibration made with another model (here: the weights training started from) is
    // refused, naming the file.
    let other_model = ["--model", weights.as_str(), "--config", config.as_str()];
    let err = fails(
        &[&["compare", "--quiet"][..], &other_model, &["--calibration", s(&calibration_file), s(&image), s(&mirror)]]
            .concat(),
    );
    assert!(err.contains("calibration.json") && err.contains("not with this model"), "{err}");
    let other_index = dir.path("other.safetensors");
    handid(&[&["index", "build", "--quiet"][..], &other_model, &["--index", s(&other_index), s(&gallery)]].concat());
    let err = fails(
        &[
            &["index", "query", "--quiet"][..],
            &other_model,
            &["--index", s(&other_index), "--calibration", s(&calibration_file), s(&query)],
        ]
        .concat(),
    );
    assert!(err.contains("calibration.json") && err.contains("not with this model"), "{err}");

    // An image that is not one: refused, naming it, and nothing is written.
    let bad = dir.path("bad-hands");
    SyntheticHands { identities: 3, images_per_identity: 3, size: 64, seed: 2 }.write_folders(&bad).unwrap();
    std::fs::write(bad.join("id_0001").join("notes.png"), b"not an image").unwrap();
    let bad_out = dir.path("bad-cal");
    let err = fails(&[&["calibrate", "--quiet"][..], &model, &["--data", s(&bad), "--out", s(&bad_out)]].concat());
    assert!(err.contains("notes.png"), "{err}");
    assert!(!bad_out.join("calibration.json").exists(), "a refused calibration wrote calibration.json");
    let err = fails(
        &[
            &["compare", "--quiet"][..],
            &model,
            &["--calibration", s(&calibration_file), s(&image), s(&bad.join("id_0001").join("notes.png"))],
        ]
        .concat(),
    );
    assert!(err.contains("notes.png"), "{err}");
}
