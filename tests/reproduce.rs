//! Table I reproduction end to end on tiny look-alike datasets (11k Hands: CSV and images of
//! four aspects; HD: `1-501` and `502-712` folders) with tiny random CLIP weights saved as
//! OpenAI-named safetensors: every scenario and backbone, the split manifests, per-run results,
//! the table, resuming finished cells, and errors raised before any long work.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::store::ModuleSnapshot;
use clip_handid::clip::weights::KeyMap;
use clip_handid::clip::{Clip, ClipConfig, ResNetConfig, TextConfig, VisionConfig, VitConfig};
use clip_handid::handid::data::{DatasetKind, SplitManifest, SyntheticHands};
use clip_handid::handid::eval::ProtocolReport;
use clip_handid::handid::model::TextMode;
use clip_handid::handid::reproduce::{
    Backbone, CellRecord, CellScores, Column, ReproduceOptions, Scenario, Table, WeightsSpec, published, reproduce,
};
use common::TempDir;

type B = Autodiff<Flex>;

const IMAGE_SIZE: u32 = 40;

/// Writes image `k` of synthetic identity `identity` as a JPEG.
fn write_hand(path: &Path, identity: usize, k: usize) {
    let hands = SyntheticHands { identities: 1000, images_per_identity: 8, size: IMAGE_SIZE, seed: 3 };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    hands.render(identity, k).save(path).unwrap();
}

/// An 11k-like root: per aspect, subjects 1001-1003 train (at or below every aspect's
/// threshold) and 1060-1062 test (above every threshold), 3 images each, plus one image with
/// accessories, which the protocol drops.
fn make_11k(root: &Path) {
    let mut csv =
        String::from("id,age,gender,skinColor,accessories,nailPolish,aspectOfHand,imageName,irregularities\n");
    let mut n = 0;
    for (a, aspect) in ["dorsal right", "dorsal left", "palmar right", "palmar left"].iter().enumerate() {
        for (p, id) in [1001u32, 1002, 1003, 1060, 1061, 1062].iter().enumerate() {
            for k in 0..4 {
                let name = format!("Hand_{n:07}.jpg");
                n += 1;
                let accessories = u32::from(k == 3);
                csv.push_str(&format!("{id:07},23,male,fair,{accessories},0,{aspect},{name},0\n"));
                if accessories == 0 {
                    write_hand(&root.join("Hands").join(&name), p * 4 + a, k);
                }
            }
        }
    }
    std::fs::write(root.join("HandInfo.csv"), csv).unwrap();
}

/// An HD-like root: identities 1-6 in `1-501` (first half train, second half test), 3 images
/// each; two distractor subjects in `502-712`.
fn make_hd(root: &Path) {
    for id in 1..=6usize {
        for k in 1..=3 {
            write_hand(&root.join("1-501").join(format!("{id}_{k}.jpg")), 100 + id, k);
        }
    }
    for id in [600usize, 601] {
        for k in 1..=2 {
            write_hand(&root.join("502-712").join(format!("{id}_{k}.jpg")), 100 + id, k);
        }
    }
}

/// Tiny CLIP architectures whose head counts follow OpenAI's width / 64 rule, so that the
/// architecture inferred from the saved file is the one built here.
fn tiny(backbone: Backbone) -> ClipConfig {
    let vision = match backbone {
        Backbone::VitB16 => {
            VisionConfig::Vit(VitConfig { layers: 1, width: 64, heads: 1, patch_size: 8, image_size: 32 })
        }
        Backbone::Rn50 => {
            VisionConfig::ResNet(ResNetConfig { layers: [1, 1, 1, 1], width: 8, heads: 4, image_size: 64 })
        }
    };
    let text = TextConfig { context_length: 77, vocab_size: 49408, width: 64, heads: 1, layers: 1 };
    ClipConfig { embed_dim: 32, vision, text }
}

/// Saves a randomly initialised CLIP in OpenAI's naming and layout (torch `nn.Linear` weights
/// `[out, in]`), as `fetch_weights` would.
fn save_random_clip(config: &ClipConfig, path: &Path) {
    let clip = Clip::<Flex>::new(config, &Default::default());
    let map = KeyMap::openai();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for snapshot in clip.collect(None, None, true) {
        let key = map.to_checkpoint(&snapshot.full_path());
        let data = snapshot.to_data().unwrap();
        let shape = data.shape.to_vec();
        let values: Vec<f32> = data.to_vec().unwrap();
        let (values, shape) = match (map.to_burn(&key).1, shape.as_slice()) {
            (true, &[rows, cols]) => {
                let mut t = vec![0.0f32; rows * cols];
                for r in 0..rows {
                    for c in 0..cols {
                        t[c * rows + r] = values[r * cols + c];
                    }
                }
                (t, vec![cols, rows])
            }
            _ => (values, shape),
        };
        tensors.push((key, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, s, b)| {
            (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

struct Fixture {
    _dir: TempDir,
    root_11k: PathBuf,
    root_hd: PathBuf,
    vit: PathBuf,
    rn50: PathBuf,
    out: PathBuf,
}

fn fixture(tag: &str) -> Fixture {
    let dir = TempDir::new(tag);
    let (root_11k, root_hd) = (dir.path("11k"), dir.path("hd"));
    make_11k(&root_11k);
    make_hd(&root_hd);
    let (vit, rn50) = (dir.path("ViT-B-16.safetensors"), dir.path("RN50.safetensors"));
    save_random_clip(&tiny(Backbone::VitB16), &vit);
    save_random_clip(&tiny(Backbone::Rn50), &rn50);
    let out = dir.path("out");
    Fixture { _dir: dir, root_11k, root_hd, vit, rn50, out }
}

fn options(f: &Fixture) -> ReproduceOptions {
    ReproduceOptions {
        root_11k: Some(f.root_11k.clone()),
        root_hd: Some(f.root_hd.clone()),
        scenarios: Scenario::ALL.to_vec(),
        weights: vec![
            WeightsSpec { backbone: Backbone::VitB16, path: f.vit.clone() },
            WeightsSpec { backbone: Backbone::Rn50, path: f.rn50.clone() },
        ],
        out: f.out.clone(),
        seed: 7,
        runs: 2,
        epochs: Some(1),
        batch_size: Some(4),
        text_mode: TextMode::Paper,
        allow_count_mismatch: true,
    }
}

fn in_unit_interval(what: &str, v: f64) {
    assert!((0.0..=1.0).contains(&v), "{what} = {v} is not in [0, 1]");
}

#[test]
fn every_scenario_and_backbone_runs_end_to_end_and_fills_the_table() {
    let f = fixture("reproduce-e2e");
    let report = reproduce::<B>(&options(&f), &Default::default()).unwrap();

    // The split manifests, loadable and complete.
    for (name, root, kind) in [("11k", &f.root_11k, DatasetKind::Hands11k), ("hd", &f.root_hd, DatasetKind::PolyuHd)] {
        let path = f.out.join("splits").join(format!("{name}.json"));
        assert!(report.manifests.contains(&path), "{path:?} not reported");
        let manifest = SplitManifest::load(&path, root, kind).unwrap();
        assert!(manifest.subsets.iter().all(|s| s.runs.len() == 2));
    }

    // One cell per scenario, backbone and subset, each with its files and sane numbers.
    assert_eq!(report.cells.len(), 3 * 2 * 5);
    for scenario in Scenario::ALL {
        for backbone in Backbone::ALL {
            for column in Column::ALL {
                let dir = f.out.join(scenario.name()).join(backbone.name()).join(column.subset());
                let cell: CellRecord = serde_json::from_slice(&std::fs::read(dir.join("cell.json")).unwrap()).unwrap();
                assert_eq!(
                    (cell.settings.scenario, cell.settings.backbone, cell.settings.column),
                    (scenario, backbone, column)
                );
                let results: ProtocolReport =
                    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
                assert_eq!(results.subsets.len(), 1);
                let subset = &results.subsets[0];
                assert_eq!((subset.name.as_str(), subset.runs.len()), (column.subset(), 2));
                // 11k: the combined gallery of the four aspects (3 test subjects each).
                assert_eq!(subset.combined_gallery, column != Column::Hd);
                let gallery = if column == Column::Hd { 3 + 4 } else { 12 };
                for m in &subset.runs {
                    assert_eq!((m.n_query, m.n_gallery), (6, gallery));
                    for (what, v) in [("rank1", m.rank1), ("mAP", m.map_interpolated), ("standard mAP", m.map_standard)]
                    {
                        in_unit_interval(what, v);
                    }
                    assert!(m.rank1 <= m.map_interpolated + 1e-12);
                }
                let csv = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
                assert_eq!(csv.lines().count(), 1 + 2, "{csv}");
                let s = cell.scores;
                for v in [s.rank1, s.map_interpolated, s.map_standard] {
                    in_unit_interval("mean", v);
                }
                let expected = published(scenario, backbone, column).map(|p| (p.rank1, p.map));
                assert_eq!(cell.published, expected);
                let trained = scenario != Scenario::ZeroShot;
                assert_eq!(dir.join("train/metrics.csv").is_file(), trained, "{dir:?}");
                assert_eq!(dir.join("train/best/model.mpk").is_file(), trained, "{dir:?}");
                assert!(!dir.join("train/checkpoints").exists(), "resume checkpoints of a finished cell are removed");
                assert_eq!(cell.selected_epoch.is_some(), trained);
            }
        }
    }

    // The table: every row and column, ours beside the published numbers, both mAP variants.
    let table = std::fs::read_to_string(&report.table_path).unwrap();
    assert_eq!(table, report.table.render());
    for column in Column::ALL {
        assert!(table.lines().nth(2).unwrap().contains(&format!(" {} ", column.label())), "{table}");
    }
    for cell in &report.cells {
        let s = &cell.settings;
        let row = format!("| {} {}", s.scenario.label(), s.backbone.label());
        let p = cell.published.unwrap();
        let text = format!(
            "{:.2} / {:.2} ({:.2} / {:.2})",
            100.0 * cell.scores.rank1,
            100.0 * cell.scores.map_interpolated,
            p.0,
            p.1
        );
        let lines: Vec<&str> = table.lines().filter(|l| l.starts_with(&format!("{row} "))).collect();
        assert_eq!(lines.len(), 2, "{row}: a Table I line and a standard-mAP line\n{table}");
        assert!(lines[0].contains(&text), "{text} missing from {}", lines[0]);
        assert!(lines[1].contains(&format!("{:.2}", 100.0 * cell.scores.map_standard)), "{}", lines[1]);
    }
    for method in ["GPA-Net", "MBA-Net"] {
        assert!(table.contains(&format!("| {method} ")), "{table}");
    }
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&report.summary_path).unwrap()).unwrap();
    assert_eq!(summary["cells"].as_array().unwrap().len(), 30);
    let csv = std::fs::read_to_string(f.out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31);

    // The same command again reuses every finished cell: same numbers, no new training.
    let metrics = f.out.join("clip-handid/rn50/hd/train/metrics.csv");
    let before = std::fs::metadata(&metrics).unwrap().modified().unwrap();
    let again = reproduce::<B>(&options(&f), &Default::default()).unwrap();
    assert_eq!(again.table.render(), report.table.render());
    assert_eq!(std::fs::metadata(&metrics).unwrap().modified().unwrap(), before);
}

#[test]
fn bad_inputs_fail_before_any_work_with_the_file_named() {
    let f = fixture("reproduce-errors");
    let device = Default::default();
    let err = |o: ReproduceOptions| reproduce::<B>(&o, &device).unwrap_err().to_string();

    let mut o = options(&f);
    o.root_hd = Some(f.out.join("no-such-hd"));
    let e = err(o);
    assert!(e.contains("no-such-hd"), "{e}");

    let mut o = options(&f);
    o.allow_count_mismatch = false;
    let e = err(o);
    assert!(e.contains("allow-count-mismatch") && e.contains("HandInfo.csv"), "{e}");

    let mut o = options(&f);
    o.weights[1].path = f.out.join("missing.safetensors");
    let e = err(o);
    assert!(e.contains("missing.safetensors") && e.contains("RN50"), "{e}");

    let mut o = options(&f);
    o.weights[0].path = f.rn50.clone();
    o.weights.truncate(1);
    let e = err(o);
    assert!(e.contains("RN50.safetensors") && e.contains("ResNet"), "{e}");

    let corrupt = f.out.with_file_name("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a safetensors file").unwrap();
    let mut o = options(&f);
    o.weights[0].path = corrupt;
    let e = err(o);
    assert!(e.contains("corrupt.safetensors"), "{e}");

    let blocked = f.out.with_file_name("blocked");
    std::fs::write(&blocked, b"a file").unwrap();
    let mut o = options(&f);
    o.out = blocked.join("out");
    let e = err(o);
    assert!(e.contains("blocked"), "{e}");

    let mut o = options(&f);
    o.batch_size = Some(64);
    let e = err(o);
    assert!(e.contains("fewer than one") && e.contains("dorsal_right"), "{e}");

    let mut o = options(&f);
    o.root_11k = None;
    o.root_hd = None;
    assert!(err(o).contains("no dataset"));
    // Nothing was trained or evaluated.
    assert!(!f.out.join("zero-shot").exists());
}

#[test]
fn table_rendering_matches_the_expected_layout() {
    let mut table = Table::new(
        &[Scenario::ClipHandId, Scenario::ZeroShot],
        &[Backbone::VitB16],
        &[Column::Hd, Column::DorsalRight],
    );
    table.insert(
        Scenario::ZeroShot,
        Backbone::VitB16,
        Column::DorsalRight,
        CellScores { rank1: 0.5, map_interpolated: 0.625, map_standard: 0.583333 },
    );
    table.insert(
        Scenario::ClipHandId,
        Backbone::VitB16,
        Column::Hd,
        CellScores { rank1: 1.0, map_interpolated: 1.0, map_standard: 1.0 },
    );
    let expected = "\
Table I: rank-1 / mAP (%), ours (published); mAP = interpolated AP, as published

| method               | D-r                           | HD                              |
|----------------------|-------------------------------|---------------------------------|
| GPA-Net              | - (94.80 / 95.72)             | - (94.64 / 95.08)               |
| MBA-Net              | - (97.45 / 97.98)             | - (95.12 / 95.54)               |
| CLIP-ZS ViT-B/16     | 50.00 / 62.50 (70.44 / 74.31) | - (81.23 / 83.51)               |
| CLIP-HandID ViT-B/16 | - (95.68 / 96.53)             | 100.00 / 100.00 (95.51 / 95.87) |

Standard mAP (%), ours (not published)

| method               | D-r   | HD     |
|----------------------|-------|--------|
| CLIP-ZS ViT-B/16     | 58.33 | -      |
| CLIP-HandID ViT-B/16 | -     | 100.00 |
";
    assert_eq!(table.render(), expected);
}
