//! Split protocols on generated look-alike datasets: counts, disjointness, one gallery image per
//! test identity per run, the combined 11k gallery, determinism, manifests, errors, loading.
//!
//! With `HANDID_11K_ROOT` / `HANDID_HD_ROOT` pointing at the real datasets, their published
//! counts (docs/METHOD.md section 4) are asserted too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use clip_handid::handid::data::hands11k::{HAND_INFO_FILE, HANDS_FOLDER, PUBLISHED_COMBINED_GALLERY};
use clip_handid::handid::data::polyu_hd::{HD_DISTRACTOR_FOLDER, HD_MAIN_FOLDER};
use clip_handid::handid::data::{
    Aspect, DataError, DatasetKind, Entry, FolderDataset, FolderSplitOptions, Hands11k, Identity, PolyuHd,
    SplitManifest, SubsetSplit, load_parallel, open_image, open_images,
};

/// A folder under the system temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("handid-splits-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny valid PNG, written for every look-alike image.
fn tiny_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 60, y as u8 * 80, 128]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn write_image(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

const HEADER: &str = "id,age,gender,skinColor,accessories,nailPolish,aspectOfHand,imageName,irregularities\n";

/// (train ids, test ids, queries) published per aspect, and the thresholds.
const ASPECTS: [(&str, u32, usize, usize, usize); 4] = [
    ("dorsal right", 1050, 72, 71, 971),
    ("dorsal left", 1037, 73, 73, 988),
    ("palmar right", 1051, 72, 71, 917),
    ("palmar left", 1042, 76, 75, 948),
];

/// A look-alike 11k Hands with the published counts: for each aspect, training ids just below
/// the threshold (2-4 images, one more with accessories), test ids just above it; one id with a
/// trailing space; a subject seen only with accessories.
fn make_11k(root: &Path) {
    let png = tiny_png();
    let mut csv = String::from(HEADER);
    let mut next = 0u32;
    let mut row = |csv: &mut String, id: &str, accessories: u32, aspect: &str| {
        let name = format!("Hand_{next:07}.jpg");
        next += 1;
        csv.push_str(&format!("{id},{},female,medium,{accessories},0,{aspect},{name},0\n", 18 + next % 50));
        if accessories == 0 {
            write_image(&root.join(HANDS_FOLDER).join(&name), &png);
        }
    };
    for (aspect, threshold, n_train, n_test, queries) in ASPECTS {
        for k in 0..n_train as u32 {
            let number = threshold - k;
            let id = if number == 1001 { format!("{number:07} ") } else { format!("{number:07}") };
            for _ in 0..2 + k % 3 {
                row(&mut csv, &id, 0, aspect);
            }
            row(&mut csv, &id, 1, aspect);
        }
        for k in 0..n_test {
            let id = format!("{:07}", threshold + 1 + k as u32);
            let n = 1 + queries / n_test + usize::from(k < queries % n_test);
            for _ in 0..n {
                row(&mut csv, &id, 0, aspect);
            }
        }
        row(&mut csv, "0008888", 1, aspect);
    }
    std::fs::write(root.join(HAND_INFO_FILE), csv).unwrap();
}

/// A look-alike HD with the published counts: ids 1..=502 in `1-501`, 503..=715 in `502-712`.
fn make_hd(root: &Path) {
    let png = tiny_png();
    for id in 1..=251u32 {
        for k in 1..=2 + id % 3 {
            write_image(&root.join(HD_MAIN_FOLDER).join(format!("{id}_{k}.jpg")), &png);
        }
    }
    for (j, id) in (252..=502u32).enumerate() {
        let n = 1 + 1992 / 251 + u32::from((j as u32) < 1992 % 251);
        for k in 1..=n {
            write_image(&root.join(HD_MAIN_FOLDER).join(format!("{id}_{k}.jpg")), &png);
        }
    }
    for (j, id) in (503..=715u32).enumerate() {
        let n = 1342 / 213 + u32::from((j as u32) < 1342 % 213);
        for k in 1..=n {
            write_image(&root.join(HD_DISTRACTOR_FOLDER).join(format!("{id}_{k}.jpg")), &png);
        }
    }
}

/// A look-alike folder dataset: `n` identities with 2-5 images each.
fn make_folders(root: &Path, n: usize) {
    let png = tiny_png();
    for i in 0..n {
        for k in 0..2 + i % 4 {
            write_image(&root.join(format!("subject_{i:03}")).join(format!("{k}.png")), &png);
        }
    }
}

fn identities(entries: &[Entry]) -> BTreeSet<&Identity> {
    entries.iter().map(|e| &e.identity).collect()
}

/// The protocol's invariants for one subset.
fn check_subset(subset: &SubsetSplit, runs: usize) {
    let train_ids = identities(&subset.train);
    let val_ids = identities(&subset.val);
    assert_eq!(val_ids, train_ids, "{}: one validation image per training identity", subset.name);
    assert_eq!(val_ids.len(), subset.val.len());
    let train_paths: BTreeSet<&str> = subset.train.iter().map(|e| e.path.as_str()).collect();
    assert!(subset.val.iter().all(|e| !train_paths.contains(e.path.as_str())), "validation images not trained on");
    assert_eq!(subset.runs.len(), runs);

    let first = &subset.runs[0];
    let test_ids = identities(&first.query);
    assert!(train_ids.is_disjoint(&test_ids), "{}: training and test identities are disjoint", subset.name);
    let all_test: BTreeSet<&str> = first.gallery.iter().chain(&first.query).map(|e| e.path.as_str()).collect();
    let mut galleries = BTreeSet::new();
    for run in &subset.runs {
        let mut per_identity: BTreeMap<&Identity, usize> = BTreeMap::new();
        for e in run.gallery.iter().filter(|e| test_ids.contains(&e.identity)) {
            *per_identity.entry(&e.identity).or_default() += 1;
        }
        assert_eq!(per_identity.len(), test_ids.len(), "every test identity is in the gallery");
        assert!(per_identity.values().all(|&c| c == 1), "one gallery image per test identity per run");
        let paths: BTreeSet<&str> = run.gallery.iter().chain(&run.query).map(|e| e.path.as_str()).collect();
        assert_eq!(paths, all_test, "gallery and queries partition the test images");
        assert_eq!(run.gallery.len() + run.query.len(), all_test.len());
        assert_eq!(identities(&run.query), test_ids);
        assert!(train_ids.is_disjoint(&identities(&run.gallery)));
        // Every query has exactly one true match in the gallery the published numbers use.
        let (q, g) = run.integer_labels();
        let mut gallery_count: BTreeMap<usize, usize> = BTreeMap::new();
        for label in g {
            *gallery_count.entry(label).or_default() += 1;
        }
        assert!(q.iter().all(|label| gallery_count.get(label) == Some(&1)));
        galleries.insert(run.gallery.iter().map(|e| e.path.clone()).collect::<Vec<_>>());
    }
    if runs > 1 {
        assert!(galleries.len() > 1, "{}: the runs draw different galleries", subset.name);
    }
}

#[test]
fn hands11k_lookalike_protocol() {
    let dir = TempDir::new("11k");
    let root = dir.path().join("11k");
    make_11k(&root);
    let data = Hands11k::open(&root).unwrap();
    data.check_published_counts().unwrap();
    let manifest = data.split(42, 10).unwrap();
    assert_eq!(manifest.dataset, DatasetKind::Hands11k);
    assert_eq!(manifest.subsets.len(), 4);
    for ((subset, aspect), (_, threshold, n_train, n_test, queries)) in
        manifest.subsets.iter().zip(Aspect::ALL).zip(ASPECTS)
    {
        assert_eq!(subset.name, aspect.name());
        check_subset(subset, 10);
        let s = subset.summary();
        assert_eq!((s.train_identities, s.test_identities, s.query_images), (n_train, n_test, queries));
        assert_eq!((s.gallery_images, s.combined_gallery_images), (n_test, PUBLISHED_COMBINED_GALLERY));
        for e in &subset.train {
            assert!(e.identity.id.parse::<u32>().unwrap() <= threshold && e.identity.group == aspect.name());
        }
        for run in &subset.runs {
            assert!(run.query.iter().all(|e| e.identity.id.parse::<u32>().unwrap() > threshold));
        }
    }
    // Combined gallery: the union of the four galleries of the run; identities of the other
    // subsets never match a query, although the same subject ids occur in several subsets.
    for r in 0..10 {
        let union: Vec<Entry> = manifest.subsets.iter().flat_map(|s| s.runs[r].gallery.clone()).collect();
        for (i, subset) in manifest.subsets.iter().enumerate() {
            let run = &subset.runs[r];
            assert_eq!(run.combined_gallery, union);
            assert_eq!(run.evaluation_gallery(), &union[..]);
            let query_ids = identities(&run.query);
            for (j, other) in manifest.subsets.iter().enumerate().filter(|(j, _)| *j != i) {
                assert!(query_ids.is_disjoint(&identities(&other.runs[r].gallery)), "subsets {i} and {j}");
                let shared_subjects =
                    other.runs[r].gallery.iter().filter(|g| query_ids.iter().any(|q| q.id == g.identity.id));
                assert!(shared_subjects.count() > 0, "the look-alike shares subject ids between subsets");
            }
            let (q, g) = run.integer_labels();
            assert_eq!(g.len(), PUBLISHED_COMBINED_GALLERY);
            let matches: usize = g.iter().filter(|l| q.contains(l)).count();
            assert_eq!(matches, subset.summary().test_identities);
        }
    }
    let ids: BTreeSet<&str> = manifest.subsets[0].train.iter().map(|e| e.identity.id.as_str()).collect();
    assert!(ids.contains("0001001"), "the id with a trailing space is trimmed");
    assert!(!manifest.entries().any(|e| e.identity.id == "0008888"), "accessory-only subject dropped");
    assert_deterministic(dir.path(), "11k", |seed| data.split(seed, 10).unwrap());

    // A test identity with a single image is an error naming the CSV and the identity.
    let mut text = std::fs::read_to_string(root.join(HAND_INFO_FILE)).unwrap();
    text.push_str("0001200,20,male,fair,0,0,palmar left,Extra_1.jpg,0\n");
    std::fs::write(root.join(HAND_INFO_FILE), text).unwrap();
    write_image(&root.join("Hands/Extra_1.jpg"), &tiny_png());
    let err = Hands11k::open(&root).unwrap().split(42, 10).unwrap_err();
    assert!(matches!(err, DataError::TooFewImages { role: "test", count: 1, .. }), "{err}");
    assert!(err.to_string().contains("palmar_left/0001200") && err.to_string().contains("HandInfo.csv"), "{err}");
}

#[test]
fn hd_lookalike_protocol() {
    let dir = TempDir::new("hd");
    let root = dir.path().join("hd");
    make_hd(&root);
    let data = PolyuHd::open(&root).unwrap();
    data.check_published_counts().unwrap();
    let counts = data.split_counts();
    assert_eq!((counts.paper.train_identities, counts.paper.test_identities), (251, 251));
    assert_eq!((counts.authors.train_identities, counts.authors.test_identities), (447, 55));
    assert_eq!((counts.paper.gallery_images, counts.paper.query_images), (1593, 1992));
    let manifest = data.split(7, 10).unwrap();
    let subset = &manifest.subsets[0];
    check_subset(subset, 10);
    let s = subset.summary();
    assert_eq!((s.gallery_images, s.query_images, s.distractor_images), (1593, 1992, 1342));
    let max_train: u32 = subset.train.iter().map(|e| e.identity.id.parse().unwrap()).max().unwrap();
    assert_eq!(max_train, 251, "first half of the numerically sorted identities trains");
    for run in &subset.runs {
        assert!(run.combined_gallery.is_empty());
        let distractors: Vec<&Entry> =
            run.gallery.iter().filter(|e| e.identity.group == HD_DISTRACTOR_FOLDER).collect();
        assert_eq!(distractors.len(), 1342, "all of 502-712 in every gallery");
        assert!(distractors.iter().all(|e| e.path.starts_with("502-712/")));
        assert!(identities(&run.query).iter().all(|q| q.group == HD_MAIN_FOLDER));
    }
    assert_deterministic(dir.path(), "hd", |seed| data.split(seed, 10).unwrap());
    manifest_round_trip_and_errors(dir.path(), &root);
}

#[test]
fn folders_lookalike_protocol() {
    let dir = TempDir::new("folders");
    let root = dir.path().join("folders");
    make_folders(&root, 20);
    let data = FolderDataset::open(&root).unwrap();
    let manifest = data.split(3, &FolderSplitOptions { train_fraction: 0.25, runs: 5 }).unwrap();
    let subset = &manifest.subsets[0];
    check_subset(subset, 5);
    assert_eq!(subset.summary().train_identities, 5);
    assert_eq!(subset.summary().test_identities, 15);
    let classes = subset.train_classes();
    assert_eq!(classes.identities.len(), 5);
    assert_eq!(classes.train.len(), subset.train.len());
    assert!(classes.val.iter().all(|&c| c < 5));
    assert_deterministic(dir.path(), "folders", |seed| data.split(seed, &FolderSplitOptions::default()).unwrap());
}

/// The same seed gives a byte-identical manifest file, another seed another split.
fn assert_deterministic(dir: &Path, name: &str, draw: impl Fn(u64) -> SplitManifest) {
    let files = ["a", "b", "c"].map(|k| dir.join(format!("{name}-{k}.json")));
    draw(42).save(&files[0]).unwrap();
    draw(42).save(&files[1]).unwrap();
    draw(43).save(&files[2]).unwrap();
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes, std::fs::read(&files[1]).unwrap(), "{name}: same seed, same bytes");
    assert_ne!(bytes, std::fs::read(&files[2]).unwrap(), "{name}: another seed, another split");
    assert_eq!(SplitManifest::read(&files[0]).unwrap(), draw(42), "{name}: round trip");
}

/// Saves and loads an HD manifest, then breaks it: wrong dataset, a missing file, bad JSON.
fn manifest_round_trip_and_errors(dir: &Path, root: &Path) {
    let root = root.to_path_buf();
    let manifest = PolyuHd::open(&root).unwrap().split(1, 3).unwrap();
    let out = dir.join("splits.json");
    manifest.save(&out).unwrap();
    let loaded = SplitManifest::load(&out, &root, DatasetKind::PolyuHd).unwrap();
    assert_eq!(loaded, manifest);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("\"dataset\": \"hd\"") && text.contains("\"seed\": 1") && text.contains("\"identity\":\"1-501/")
    );

    let err = SplitManifest::load(&out, &root, DatasetKind::Hands11k).unwrap_err();
    assert!(matches!(err, DataError::WrongDataset { .. }), "{err}");
    assert!(
        err.to_string().contains("splits.json") && err.to_string().contains("hd") && err.to_string().contains("11k")
    );

    let gone = manifest.subsets[0].runs[0].query[0].clone();
    std::fs::remove_file(gone.full_path(&root)).unwrap();
    let err = SplitManifest::load(&out, &root, DatasetKind::PolyuHd).unwrap_err();
    assert!(matches!(err, DataError::ManifestMissingFiles { count: 1, .. }), "{err}");
    assert!(err.to_string().contains(&gone.path) && err.to_string().contains("splits.json"), "{err}");

    std::fs::write(&out, &text[..text.len() / 2]).unwrap();
    let err = SplitManifest::load(&out, &root, DatasetKind::PolyuHd).unwrap_err();
    assert!(matches!(err, DataError::BadManifest { .. }) && err.to_string().contains("splits.json"), "{err}");
}

#[test]
fn dataset_errors() {
    let dir = TempDir::new("errors");
    let root = dir.path();
    let msg = |e: DataError| e.to_string();

    // Missing root and missing CSV.
    assert!(matches!(Hands11k::open(&root.join("absent")), Err(DataError::MissingRoot { .. })));
    let err = Hands11k::open(root).unwrap_err();
    assert!(matches!(err, DataError::MissingPath { .. }) && msg(err).contains("HandInfo.csv"));

    let png = tiny_png();
    write_image(&root.join("Hands/a.jpg"), &png);
    write_image(&root.join("Hands/b.jpg"), &png);
    let csv = root.join(HAND_INFO_FILE);
    let write_csv = |body: &str| std::fs::write(&csv, body).unwrap();

    // Missing columns, named.
    write_csv("id,age,gender,accessories,aspectOfHand,imageName\n0000001,20,male,0,dorsal right,a.jpg\n");
    let err = Hands11k::open(root).unwrap_err();
    assert!(matches!(err, DataError::MissingColumns { .. }));
    assert!(msg(err).contains("skinColor, nailPolish, irregularities"));

    // A bad row, with its line number.
    write_csv(&format!(
        "{HEADER}0000001,20,male,fair,0,0,dorsal right,a.jpg,0\n0000001,20,male,fair,maybe,0,dorsal right,b.jpg,0\n"
    ));
    let err = Hands11k::open(root).unwrap_err();
    assert!(matches!(err, DataError::BadRow { line: 3, .. }), "{err}");
    assert!(msg(err).contains("HandInfo.csv, line 3"));

    // Duplicate image names.
    write_csv(&format!(
        "{HEADER}0000001,20,male,fair,0,0,dorsal right,a.jpg,0\n0000002,20,male,fair,0,0,dorsal left,a.jpg,0\n"
    ));
    assert!(matches!(Hands11k::open(root), Err(DataError::DuplicateImage { line: 3, first_line: 2, .. })));

    // Unknown aspect.
    write_csv(&format!("{HEADER}0000001,20,male,fair,0,0,lateral right,a.jpg,0\n"));
    let err = Hands11k::open(root).unwrap_err();
    assert!(matches!(err, DataError::UnknownAspect { line: 2, .. }) && msg(err).contains("lateral right"));

    // A listed image that does not exist.
    write_csv(&format!("{HEADER}0000001,20,male,fair,0,0,dorsal right,zzz.jpg,0\n"));
    let err = Hands11k::open(root).unwrap_err();
    assert!(matches!(err, DataError::MissingImage { line: 2, .. }) && msg(err).contains("zzz.jpg"));

    // Folders with no images.
    let folders = root.join("folders");
    make_folders(&folders, 3);
    std::fs::create_dir_all(folders.join("nobody")).unwrap();
    let err = FolderDataset::open(&folders).unwrap_err();
    assert!(matches!(err, DataError::NoImages { .. }) && msg(err).contains("nobody"));
    let empty_hd = root.join("hd");
    std::fs::create_dir_all(empty_hd.join(HD_MAIN_FOLDER)).unwrap();
    let err = PolyuHd::open(&empty_hd).unwrap_err();
    assert!(matches!(err, DataError::NoImages { .. }) && msg(err).contains("1-501"));
}

#[test]
fn parallel_loading_of_a_split() {
    let dir = TempDir::new("loading");
    make_folders(dir.path(), 6);
    let manifest = FolderDataset::open(dir.path())
        .unwrap()
        .split(5, &FolderSplitOptions { train_fraction: 0.0, runs: 1 })
        .unwrap();
    let run = &manifest.subsets[0].runs[0];
    let paths: Vec<PathBuf> = run.query.iter().map(|e| e.full_path(dir.path())).collect();
    let sizes = load_parallel(&paths, |p| open_image(p).map(|img| (img.width(), img.height()))).unwrap();
    assert_eq!(sizes, vec![(4, 3); paths.len()]);
    assert_eq!(open_images(&paths).unwrap().len(), paths.len());

    std::fs::write(&paths[2], b"\x89PNG\r\n\x1a\n truncated").unwrap();
    std::fs::remove_file(&paths[4]).unwrap();
    let err = load_parallel(&paths, open_image).unwrap_err();
    assert_eq!(err.index, 2);
    assert!(err.to_string().contains(&*paths[2].to_string_lossy()), "{err}");
}

#[test]
fn real_datasets_give_published_counts() {
    match std::env::var_os("HANDID_11K_ROOT") {
        Some(root) => {
            let data = Hands11k::open(Path::new(&root)).unwrap();
            data.check_published_counts().unwrap();
            for subset in &data.split(42, 10).unwrap().subsets {
                check_subset(subset, 10);
            }
        }
        None => eprintln!("HANDID_11K_ROOT not set: real 11k counts not checked"),
    }
    match std::env::var_os("HANDID_HD_ROOT") {
        Some(root) => {
            let data = PolyuHd::open(Path::new(&root)).unwrap();
            let counts = data.split_counts();
            eprintln!("HD: paper split {:?}; authors' int(ID) <= 447 split {:?}", counts.paper, counts.authors);
            data.check_published_counts().unwrap();
            check_subset(&data.split(42, 10).unwrap().subsets[0], 10);
        }
        None => eprintln!("HANDID_HD_ROOT not set: real HD counts not checked"),
    }
}
