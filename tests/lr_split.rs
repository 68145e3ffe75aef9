//! Likelihood ratios on a split manifest and differential performance, with the `handid`
//! command, on a generated 11k Hands look-alike (`HandInfo.csv` with gender, age, skin colour,
//! nail polish, irregularities and accessories; images of four aspects) and small random CLIP
//! weights:
//!
//! - `calibrate --split M.json --calibrator pav` records the calibrator, the manifest's and
//!   every image's SHA-256 and the pair counts; `compare --calibration` gives LR > 1 for an
//!   image and its mirror image and LR < 1 for the least similar different-identity pair; a
//!   missing or invalid manifest, or a subset it lacks, is refused with one line naming the
//!   file and nothing is written;
//! - `evaluate` gives the figures per group (counts checked against the manifest and the CSV
//!   here), with `--calibration` each group's Cllr, and says so where there is no metadata.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use clip_handid::handid::data::SyntheticHands;
use clip_handid::handid::provenance::sha256_file;
use common::TempDir;
use common::cli::{CONFIG, WEIGHTS, fails, fixture, handid, json, s};
use serde_json::Value;

/// Test subjects (above every aspect's training threshold) and their gender, age, skin colour.
const TEST_SUBJECTS: [(u32, &str, u32, &str); 6] = [
    (1060, "female", 18, "fair"),
    (1061, "female", 25, "dark"),
    (1062, "female", 33, "medium"),
    (1063, "male", 45, "fair"),
    (1064, "male", 27, "dark"),
    (1065, "male", 61, "fair"),
];
/// Training subjects (at or below every threshold).
const TRAIN_SUBJECTS: [u32; 2] = [1001, 1002];
/// Images per subject and aspect without accessories (one more with accessories is listed).
const IMAGES: usize = 4;
const ASPECTS: [&str; 4] = ["dorsal right", "dorsal left", "palmar right", "palmar left"];

/// Group labels of an image, as the test expects them (age bands written out here).
type Labels = BTreeMap<String, String>;

/// Writes an 11k look-alike under `root` (`HandInfo.csv`, images in `Hands/`) and returns the
/// expected group labels of every image without accessories, by file name.
fn make_11k(root: &Path) -> HashMap<String, Labels> {
    let hands = SyntheticHands { identities: 64, images_per_identity: IMAGES, size: 64, seed: 5 };
    let mut csv =
        String::from("id,age,gender,skinColor,accessories,nailPolish,aspectOfHand,imageName,irregularities\n");
    let mut labels = HashMap::new();
    let mut n = 0;
    let subjects: Vec<(u32, &str, u32, &str)> =
        TRAIN_SUBJECTS.iter().map(|&id| (id, "male", 30, "fair")).chain(TEST_SUBJECTS).collect();
    for (a, aspect) in ASPECTS.iter().enumerate() {
        for (p, &(id, gender, age, skin)) in subjects.iter().enumerate() {
            for k in 0..=IMAGES {
                let name = format!("Hand_{n:07}.jpg");
                n += 1;
                let accessories = u32::from(k == IMAGES);
                // Nail polish on one image per subject, an irregularity on one image of 1060.
                let nail = u32::from(k == 0);
                let irregular = u32::from(id == 1060 && k == 1);
                csv.push_str(&format!(
                    "{id:07},{age},{gender},{skin},{accessories},{nail},{aspect},{name},{irregular}\n"
                ));
                if accessories == 1 {
                    continue;
                }
                let path = root.join("Hands").join(&name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                hands.render(p * ASPECTS.len() + a, k).save(&path).unwrap();
                let band = match age {
                    0..20 => "<20",
                    20..30 => "20-29",
                    30..40 => "30-39",
                    _ => "40+",
                };
                let l: Labels = [
                    ("gender", gender.to_string()),
                    ("age", band.to_string()),
                    ("skin_color", skin.to_string()),
                    ("nail_polish", nail.to_string()),
                    ("irregularities", irregular.to_string()),
                    ("accessories", "0".to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                labels.insert(name, l);
            }
        }
    }
    std::fs::write(root.join("HandInfo.csv"), csv).unwrap();
    labels
}

/// The test images of a subset's first run (queries then own gallery) as (path, identity).
fn subset_images(manifest: &Value, subset: &str) -> Vec<(String, String)> {
    let subset = manifest["subsets"].as_array().unwrap().iter().find(|s| s["name"] == subset).unwrap();
    let run = &subset["runs"][0];
    let mut seen = BTreeSet::new();
    let mut images = Vec::new();
    for entry in run["query"].as_array().unwrap().iter().chain(run["gallery"].as_array().unwrap()) {
        let path = entry["path"].as_str().unwrap().to_string();
        if seen.insert(path.clone()) {
            images.push((path, entry["identity"].as_str().unwrap().to_string()));
        }
    }
    images
}

/// A dataset with its split and the model's arguments.
struct Setup {
    dir: TempDir,
    root: PathBuf,
    manifest: PathBuf,
    labels: HashMap<String, Labels>,
    model: Vec<String>,
}

fn setup(tag: &str) -> Setup {
    let dir = TempDir::new(tag);
    let root = dir.path("11k");
    let labels = make_11k(&root);
    let manifest = dir.path("split.json");
    handid(&[
        "splits",
        "--dataset",
        "11k",
        "--root",
        s(&root),
        "--seed",
        "7",
        "--runs",
        "2",
        "--allow-count-mismatch",
        "--out",
        s(&manifest),
    ]);
    let model = vec!["--model".to_string(), fixture(WEIGHTS), "--config".to_string(), fixture(CONFIG)];
    Setup { dir, root, manifest, labels, model }
}

impl Setup {
    fn model(&self) -> Vec<&str> {
        self.model.iter().map(String::as_str).collect()
    }

    /// `calibrate --split` with PAV on a subset.
    fn calibrate(&self, out: &Path, subset: &str) -> String {
        let args = ["--data", s(&self.root), "--split", s(&self.manifest), "--subset", subset];
        handid(
            &[&["calibrate", "--quiet"][..], &self.model(), &args, &["--calibrator", "pav", "--out", s(out)]].concat(),
        )
    }
}

#[test]
fn calibrate_on_a_split_with_pav_then_compare() {
    let f = setup("lr-split");
    let manifest = json(&f.manifest);
    let images = subset_images(&manifest, "dorsal_right");
    assert_eq!(images.len(), TEST_SUBJECTS.len() * IMAGES);
    let out = f.dir.path("cal");
    let printed = f.calibrate(&out, "dorsal_right");
    assert!(printed.contains("Pav") && printed.contains("calibration.json"), "{printed}");

    let calibration_file = out.join("calibration.json");
    let calibration = json(&calibration_file);
    assert_eq!(calibration["calibrator"]["kind"], "pav", "{}", calibration["calibrator"]);
    assert_eq!(calibration["options"]["calibrator"], "pav");
    let provenance = &calibration["provenance"];
    assert_eq!(provenance["model_sha256"].as_str().unwrap(), sha256_file(Path::new(&fixture(WEIGHTS))).unwrap());
    assert_eq!(provenance["data"].as_str().unwrap(), s(&f.manifest));
    // The manifest's SHA-256 first, then every image's.
    let hashes = provenance["data_hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 1 + images.len());
    assert_eq!(hashes[0]["path"].as_str().unwrap(), s(&f.manifest));
    assert_eq!(hashes[0]["sha256"].as_str().unwrap(), sha256_file(&f.manifest).unwrap());
    let hashed: BTreeSet<String> = hashes[1..]
        .iter()
        .map(|h| {
            let path = Path::new(h["path"].as_str().unwrap());
            assert_eq!(h["sha256"].as_str().unwrap(), sha256_file(path).unwrap(), "{path:?}");
            path.file_name().unwrap().to_str().unwrap().to_string()
        })
        .collect();
    let expected: BTreeSet<String> = images.iter().map(|(p, _)| p.rsplit('/').next().unwrap().to_string()).collect();
    assert_eq!(hashed, expected);
    let counts = &calibration["counts"];
    let n = images.len();
    let same = TEST_SUBJECTS.len() * IMAGES * (IMAGES - 1) / 2;
    assert_eq!(counts["images"].as_u64().unwrap(), n as u64);
    assert_eq!(counts["identities"].as_u64().unwrap(), TEST_SUBJECTS.len() as u64);
    assert_eq!(counts["same_source"].as_u64().unwrap(), same as u64);
    assert_eq!(counts["different_source"].as_u64().unwrap(), (n * (n - 1) / 2 - same) as u64);
    // The data supports LRs both ways (else every LR would be 1 and the comparisons below moot).
    let (lower, upper) =
        (calibration["bounds"]["lower"].as_f64().unwrap(), calibration["bounds"]["upper"].as_f64().unwrap());
    assert!(lower < 0.0 && upper > 0.0, "ELUB bounds [{lower}, {upper}]");
    for file in ["validation.json", "tippett.png", "ece.png", "pav.png", "llr_histograms.png"] {
        assert!(out.join(file).is_file(), "calibrate did not write {file}");
    }

    // compare --calibration: an image and its mirror image (the same flip-summed features), and
    // the least similar pair of images of two different identities of the subset.
    let model = f.model();
    let image = f.root.join(&images[0].0);
    let mirror = f.dir.path("mirror.png");
    image::imageops::flip_horizontal(&image::open(&image).unwrap().to_rgb8()).save(&mirror).unwrap();
    let features = f.dir.path("features.safetensors");
    let files: Vec<PathBuf> = images.iter().map(|(p, _)| f.root.join(p)).collect();
    let file_args: Vec<&str> = files.iter().map(|p| s(p)).collect();
    handid(&[&["embed", "--quiet"][..], &model, &["--out", s(&features)], &file_args].concat());
    let by_path = embeddings(&features);
    assert_eq!(by_path.len(), n);
    let rows: Vec<&Vec<f32>> = files.iter().map(|p| &by_path[p]).collect();
    let mut least = (f32::INFINITY, 0, 0);
    for i in 0..n {
        for j in i + 1..n {
            let score: f32 = rows[i].iter().zip(rows[j]).map(|(a, b)| a * b).sum();
            if images[i].1 != images[j].1 && score < least.0 {
                least = (score, i, j);
            }
        }
    }
    let compare = |x: &Path, y: &Path| -> Value {
        let args = [&["compare", "--quiet", "--json"][..], &model, &["--calibration", s(&calibration_file)]];
        serde_json::from_str(&handid(&[&args.concat()[..], &[s(x), s(y)]].concat())).unwrap()
    };
    let same_pair = compare(&image, &mirror);
    let e = &same_pair["evidence"];
    assert!(same_pair["score"].as_f64().unwrap() > 0.999, "{same_pair}");
    assert!(e["lr"].as_f64().unwrap() > 1.0 && e["llr"].as_f64().unwrap() > 0.0, "same identity: {e}");
    assert_eq!(same_pair["calibration"]["calibrator"], "pav", "{same_pair}");
    let different_pair = compare(&files[least.1], &files[least.2]);
    let e = &different_pair["evidence"];
    assert!(e["lr"].as_f64().unwrap() < 1.0 && e["llr"].as_f64().unwrap() < 0.0, "different identities: {e}");

    // Bad --split: a manifest that does not exist, one that is not a manifest, a subset it
    // lacks: one line naming the file, exit code 1, nothing written.
    let missing = f.dir.path("no-such-split.json");
    let garbage = f.dir.path("garbage.json");
    std::fs::write(&garbage, b"{ this is not a manifest").unwrap();
    for (manifest, subset, names) in [
        (&missing, None, "no-such-split.json"),
        (&garbage, None, "garbage.json"),
        (&f.manifest, Some("sideways"), "split.json"),
    ] {
        let bad_out = f.dir.path("bad-cal");
        let mut args =
            [&["calibrate", "--quiet"][..], &model, &["--data", s(&f.root), "--split", s(manifest)]].concat();
        if let Some(subset) = subset {
            args.extend(["--subset", subset]);
        }
        args.extend(["--out", s(&bad_out)]);
        let err = fails(&args);
        assert!(err.contains(names), "{err}");
        if subset.is_some() {
            assert!(err.contains("sideways") && err.contains("dorsal_right"), "{err}");
        }
        for file in ["calibration.json", "validation.json", "tippett.png"] {
            assert!(!bad_out.join(file).exists(), "a refused calibration wrote {file}");
        }
    }
}

/// The rows of `handid embed`'s output, by image path.
fn embeddings(file: &Path) -> HashMap<PathBuf, Vec<f32>> {
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

/// The counts of one group, computed here from the manifest and the labels.
#[derive(Debug, PartialEq)]
struct Counts {
    images: usize,
    identities: usize,
    genuine: usize,
    impostor: usize,
    queries: usize,
}

fn expected_counts(
    images: &[(String, String)],
    labels: &HashMap<String, Labels>,
) -> BTreeMap<(String, String), Counts> {
    let label = |path: &str| &labels[path.rsplit('/').next().unwrap()];
    let mut per_identity: HashMap<&str, usize> = HashMap::new();
    for (_, id) in images {
        *per_identity.entry(id).or_default() += 1;
    }
    let mut groups: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, _) in images {
        groups.extend(label(path).iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    groups
        .into_iter()
        .map(|(attribute, value)| {
            let inside: Vec<&(String, String)> =
                images.iter().filter(|(p, _)| label(p).get(&attribute) == Some(&value)).collect();
            let (mut genuine, mut impostor) = (0, 0);
            for i in 0..inside.len() {
                for j in i + 1..inside.len() {
                    if inside[i].1 == inside[j].1 { genuine += 1 } else { impostor += 1 }
                }
            }
            let identities = inside.iter().map(|(_, id)| id).collect::<BTreeSet<_>>().len();
            let queries = inside.iter().filter(|(_, id)| per_identity[id.as_str()] >= 2).count();
            ((attribute, value), Counts { images: inside.len(), identities, genuine, impostor, queries })
        })
        .collect()
}

fn unit(v: &Value, what: &str) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && (0.0..=1.0).contains(&x), "{what} = {x} is not in [0, 1]");
    x
}

#[test]
fn evaluate_gives_the_figures_per_group_with_their_counts() {
    let f = setup("lr-groups");
    let manifest = json(&f.manifest);
    let model = f.model();
    let cal = f.dir.path("cal");
    f.calibrate(&cal, "dorsal_right");
    let calibration_file = cal.join("calibration.json");

    for with_calibration in [false, true] {
        let out = f.dir.path(if with_calibration { "eval-cal" } else { "eval" });
        let mut args =
            [&["evaluate", "--quiet"][..], &model, &["--split", s(&f.manifest), "--root", s(&f.root)]].concat();
        if with_calibration {
            args.extend(["--calibration", s(&calibration_file)]);
        }
        args.extend(["--out", s(&out)]);
        let printed = handid(&args);
        let results = json(&out.join("results.json"));
        let differential = &results["differential_performance"];
        assert_eq!(differential["status"], "computed", "{differential}");
        assert_eq!(differential["metadata"]["path"].as_str().unwrap(), s(&f.root.join("HandInfo.csv")));
        assert_eq!(
            differential["metadata"]["sha256"].as_str().unwrap(),
            sha256_file(&f.root.join("HandInfo.csv")).unwrap()
        );
        if with_calibration {
            assert_eq!(
                differential["calibration"]["sha256"].as_str().unwrap(),
                sha256_file(&calibration_file).unwrap()
            );
            assert_eq!(results["provenance"]["calibration_sha256"], differential["calibration"]["sha256"]);
        } else {
            assert!(differential["calibration"].is_null(), "{differential}");
            assert!(differential["notes"][0].as_str().unwrap().contains("no Cllr"), "{differential}");
        }
        assert!(printed.contains("figures per group") && printed.contains("TAR@FAR1e-3"), "{printed}");
        let subsets = differential["subsets"].as_array().unwrap();
        let names: Vec<&str> = subsets.iter().map(|s| s["subset"].as_str().unwrap()).collect();
        assert_eq!(names, ["dorsal_right", "dorsal_left", "palmar_right", "palmar_left"]);
        let mut checked_figures = 0;
        for subset in subsets {
            let images = subset_images(&manifest, subset["subset"].as_str().unwrap());
            assert_eq!(subset["images"].as_u64().unwrap(), images.len() as u64);
            let expected = expected_counts(&images, &f.labels);
            let groups = subset["report"]["groups"].as_array().unwrap();
            let found: BTreeMap<(String, String), Counts> = groups
                .iter()
                .map(|g| {
                    let n = |k: &str| g[k].as_u64().unwrap() as usize;
                    (
                        (g["attribute"].as_str().unwrap().to_string(), g["value"].as_str().unwrap().to_string()),
                        Counts {
                            images: n("images"),
                            identities: n("identities"),
                            genuine: n("same_source"),
                            impostor: n("different_source"),
                            queries: n("rank1_queries"),
                        },
                    )
                })
                .collect();
            assert_eq!(found, expected, "subset {}", subset["subset"]);
            for g in groups {
                let what = format!("{} {}={}", subset["subset"], g["attribute"], g["value"]);
                let (genuine, impostor) = (g["same_source"].as_u64().unwrap(), g["different_source"].as_u64().unwrap());
                if genuine >= 2 && impostor >= 2 {
                    unit(&g["eer"], &format!("{what} EER"));
                    let tars = g["tar_at_far"].as_array().unwrap();
                    let targets: Vec<f64> = tars.iter().map(|t| t["far_target"].as_f64().unwrap()).collect();
                    assert_eq!(targets, [1e-2, 1e-3], "{what}");
                    for t in tars {
                        unit(&t["tar"], &format!("{what} TAR"));
                        assert!(t["far"].as_f64().unwrap() <= t["far_target"].as_f64().unwrap(), "{what}: {t}");
                    }
                    if with_calibration {
                        let cllr = g["cllr"].as_f64().unwrap_or_else(|| panic!("{what}: no Cllr: {g}"));
                        assert!(cllr.is_finite() && cllr >= 0.0, "{what}: Cllr {cllr}");
                    } else {
                        assert!(g["cllr"].is_null(), "{what}: {g}");
                    }
                    checked_figures += 1;
                } else {
                    // Nail polish or an irregularity (no same-source comparison), an age band or a
                    // skin colour of one subject (no different-source comparison).
                    assert!(g["eer"].is_null() && g["cllr"].is_null(), "{what}: {g}");
                    assert!(g["tar_at_far"].as_array().unwrap().is_empty(), "{what}: {g}");
                    assert!(g["notes"][0].as_str().unwrap().contains("two of each"), "{what}: {g}");
                }
                if g["rank1_queries"].as_u64().unwrap() > 0 {
                    unit(&g["rank1"], &format!("{what} rank-1"));
                }
                // The printed table has the group's line with its counts.
                let counts: Vec<String> = ["images", "identities", "same_source", "different_source"]
                    .iter()
                    .map(|k| g[*k].to_string())
                    .collect();
                let (attribute, value) = (g["attribute"].as_str().unwrap(), g["value"].as_str().unwrap());
                assert!(
                    printed.lines().any(|line| {
                        let t: Vec<&str> = line.split_whitespace().collect();
                        t.len() >= 6 && t[0] == attribute && t[1] == value && t[2..6] == counts[..]
                    }),
                    "no line for {what} with counts {counts:?}:\n{printed}"
                );
            }
        }
        // Groups with figures in every subset: both genders, the age bands 20-29 and 40+, the
        // skin colours fair and dark, nail polish 0, irregularities 0, accessories 0.
        assert_eq!(checked_figures, 4 * 9, "groups with figures");
    }

    // Metadata that lacks an evaluated image: refused before any work, naming the file and the
    // image; nothing written.
    let csv = std::fs::read_to_string(f.root.join("HandInfo.csv")).unwrap();
    let images = subset_images(&manifest, "dorsal_right");
    let dropped = images[0].0.rsplit('/').next().unwrap().to_string();
    let partial = f.dir.path("Partial.csv");
    std::fs::write(&partial, csv.lines().filter(|l| !l.contains(&dropped)).collect::<Vec<_>>().join("\n")).unwrap();
    let bad_out = f.dir.path("eval-bad");
    let args = ["--split", s(&f.manifest), "--root", s(&f.root), "--metadata", s(&partial), "--out", s(&bad_out)];
    let err = fails(&[&["evaluate", "--quiet"][..], &model, &args].concat());
    assert!(err.contains("Partial.csv") && err.contains(&dropped), "{err}");
    assert!(!bad_out.join("results.json").exists(), "a refused evaluation wrote results.json");
    let missing = f.dir.path("NoSuchInfo.csv");
    let args = ["--split", s(&f.manifest), "--root", s(&f.root), "--metadata", s(&missing), "--out", s(&bad_out)];
    let err = fails(&[&["evaluate", "--quiet"][..], &model, &args].concat());
    assert!(err.contains("NoSuchInfo.csv"), "{err}");

    // A folder dataset has no metadata: the report says so.
    let folders = f.dir.path("folders");
    SyntheticHands { identities: 4, images_per_identity: 3, size: 64, seed: 9 }.write_folders(&folders).unwrap();
    let folder_split = f.dir.path("folders.json");
    handid(&["splits", "--dataset", "folder", "--root", s(&folders), "--out", s(&folder_split)]);
    let out = f.dir.path("eval-folders");
    let printed = handid(
        &[
            &["evaluate", "--quiet"][..],
            &model,
            &["--split", s(&folder_split), "--root", s(&folders), "--out", s(&out)],
        ]
        .concat(),
    );
    let differential = &json(&out.join("results.json"))["differential_performance"];
    assert_eq!(differential["status"], "unavailable", "{differential}");
    assert!(differential["reason"].as_str().unwrap().contains("no per-image metadata"), "{differential}");
    assert!(printed.contains("no figures per group"), "{printed}");
}
