//! CLIP model parity with open_clip (docs/FIXTURES.md section 1): the committed tiny ViT and
//! ModifiedResNet fixtures, plus every directory in `CLIP_PARITY_DIRS`, on the backend that
//! `CLIP_HANDID_TEST_BACKEND` names (`flex` by default; `wgpu` and `cuda` need their features).
//!
//! Every intermediate activation the fixture stores is compared too, in forward order, so a
//! failure names the first layer that diverges.

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use clip_handid::clip::vision::{ImageEncoder, VisionOutput};
use clip_handid::clip::weights::Checkpoint;
use clip_handid::clip::{Clip, ClipConfig, Trace, VisionConfig};
use common::{RefTensor, RowStats, case_locations, compare_rows, read_tensors};

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip");
    let committed = vec![root.join("vit_tiny"), root.join("resnet_tiny")];
    case_locations(committed, "CLIP_PARITY_DIRS")
}

fn pixels<B: Backend>(t: &RefTensor, device: &B::Device) -> Tensor<B, 4> {
    let s = &t.shape;
    Tensor::from_data(TensorData::new(t.floats.clone(), [s[0], s[1], s[2], s[3]]), device)
}

/// Compares one output and every recorded intermediate that the reference also has.
fn check<B: Backend>(
    dir: &Path,
    what: &str,
    actual: Tensor<B, 2>,
    trace: &Trace,
    reference: &std::collections::BTreeMap<String, RefTensor>,
    key: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, data) in &trace.entries {
        if let Some(expected) = reference.get(name) {
            assert_eq!(data.shape.to_vec(), expected.shape, "{}: shape of {name}", dir.display());
            let stats = compare_rows(&data.to_vec::<f32>().unwrap(), &expected.floats, expected.shape[0]);
            report(dir, &format!("{what} {name}"), &stats, &mut failures);
        }
    }
    let expected = &reference[key];
    let stats = compare_rows(&actual.to_data().to_vec::<f32>().unwrap(), &expected.floats, expected.shape[0]);
    report(dir, &format!("{what} {key}"), &stats, &mut failures);
    failures
}

/// The untraced encoder's output (what users run, with the ViT's last block for the class token
/// alone): its embedding against `image_features`, and its features, where the reference has
/// them, against the ViT's class token (`vision.pooled`) or the ResNet's pooled map
/// (`vision.layer4_gap`; the ResNet's `vision.pooled` is its embedding).
fn check_untraced<B: Backend>(
    dir: &Path,
    what: &str,
    encoder: &ImageEncoder<B>,
    pixels: Tensor<B, 4>,
    reference: &std::collections::BTreeMap<String, RefTensor>,
) -> Vec<String> {
    let what = format!("{what} (untraced)");
    let output: VisionOutput<B> = encoder.forward(pixels);
    let mut failures = check(dir, &what, output.embedding, &Trace::default(), reference, "image_features");
    let features = match encoder {
        ImageEncoder::Vit(_) => "vision.pooled",
        ImageEncoder::ResNet(_) => "vision.layer4_gap",
    };
    if reference.contains_key(features) {
        failures.extend(check(dir, &what, output.features, &Trace::default(), reference, features));
    }
    failures
}

fn report(dir: &Path, name: &str, stats: &RowStats, failures: &mut Vec<String>) {
    let line = format!(
        "{}: {name}: worst cosine 1 - {:.1e}, worst max|err| {:.3e} ({:.3} of the allowed error)",
        dir.display(),
        1.0 - stats.worst_cosine,
        stats.worst_error,
        stats.worst_ratio
    );
    println!("{line}");
    if !stats.passes() {
        failures.push(line);
    }
}

fn check_dir<B: Backend>(dir: &Path, device: &B::Device) -> Vec<String> {
    let config = ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
    let model = Clip::<B>::from_safetensors_with_config(&dir.join("weights.safetensors"), &config, device)
        .unwrap_or_else(|e| panic!("{e}"));
    let io = read_tensors(&dir.join("io.safetensors"));
    let mut failures = Vec::new();
    // Checkpoints that follow OpenAI's head-count rule must also load without a config.
    let follows_rule = config.text.heads == config.text.width / 64
        && match &config.vision {
            VisionConfig::Vit(v) => v.heads == v.width / 64,
            VisionConfig::ResNet(r) => r.heads == r.width * 32 / 64,
        };
    if follows_rule {
        let checkpoint = Checkpoint::read_safetensors(&dir.join("weights.safetensors")).unwrap();
        assert_eq!(ClipConfig::infer(&checkpoint.shapes()).unwrap(), config, "{}: inferred config", dir.display());
    }

    let mut trace = Trace::default();
    let image = model.visual.forward_traced(pixels(&io["pixel_values"], device), Some(&mut trace));
    failures.extend(check(dir, "image", image.embedding, &trace, &io, "image_features"));
    // What users run: without a trace the ViT's last block computes the class token alone.
    failures.extend(check_untraced(dir, "image", &model.visual, pixels(&io["pixel_values"], device), &io));

    let ids = &io["input_ids"];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.ints.clone(), [ids.shape[0], ids.shape[1]]), device);
    let mut trace = Trace::default();
    let text = model.text.forward_traced(ids.clone(), Some(&mut trace));
    failures.extend(check(dir, "text", text, &trace, &io, "text_features"));
    // Without a trace the last block computes the end-of-text tokens alone.
    failures.extend(check(dir, "text (untraced)", model.text.forward(ids), &Trace::default(), &io, "text_features"));

    let reid_json = dir.join("reid.json");
    if reid_json.exists() {
        failures.extend(check_reid(dir, &reid_json, model.visual, &config, device));
    }
    failures
}

/// The re-identification variant: other input size, ViT patch stride, ResNet layer4 stride 1,
/// position embeddings resized bilinearly.
fn check_reid<B: Backend>(
    dir: &Path,
    reid_json: &Path,
    visual: ImageEncoder<B>,
    config: &ClipConfig,
    device: &B::Device,
) -> Vec<String> {
    let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reid_json).unwrap()).unwrap();
    let size = spec["image_size"].as_array().unwrap();
    let size = [size[0].as_u64().unwrap() as usize, size[1].as_u64().unwrap() as usize];
    let io = read_tensors(&dir.join("reid_io.safetensors"));
    let mut trace = Trace::default();
    let pixel_values = pixels(&io["pixel_values"], device);
    let mut failures = Vec::new();
    match (visual, &config.vision) {
        (ImageEncoder::Vit(vit), VisionConfig::Vit(_)) => {
            let stride = spec["stride"].as_u64().unwrap() as usize;
            let vit = vit.into_reid(stride, size).unwrap();
            assert!(vit.input_size()[0] <= size[0] && vit.input_size()[1] <= size[1]);
            trace.record("vision.positional_embedding", &vit.positional_embedding.val());
            let out = vit.forward_traced(pixel_values.clone(), Some(&mut trace));
            trace.record("vision.tokens_projected", &vit.project(out.tokens));
            failures.extend(check(dir, "reid image", out.embedding, &trace, &io, "image_features"));
            failures.extend(check_untraced(dir, "reid image", &ImageEncoder::Vit(vit), pixel_values, &io));
        }
        (ImageEncoder::ResNet(resnet), VisionConfig::ResNet(_)) => {
            let stride = spec["layer4_stride"].as_u64().unwrap() as usize;
            let resnet = resnet.into_reid(stride, size).unwrap();
            assert_eq!(resnet.input_size(), size);
            trace.record("vision.attnpool_positional_embedding", &resnet.attnpool.positional_embedding.val());
            let out = resnet.forward_traced(pixel_values.clone(), Some(&mut trace));
            failures.extend(check(dir, "reid image", out.embedding, &trace, &io, "image_features"));
            failures.extend(check_untraced(dir, "reid image", &ImageEncoder::ResNet(resnet), pixel_values, &io));
        }
        _ => panic!("{}: config and model disagree on the vision kind", dir.display()),
    }
    failures
}

#[test]
fn clip_matches_open_clip() {
    let dirs = fixture_dirs();
    let failures = common::on_test_backend!(|B, device| {
        println!("backend: {}", B::name(&device));
        dirs.iter().flat_map(|dir| check_dir::<B>(dir, &device)).collect::<Vec<_>>()
    });
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}
