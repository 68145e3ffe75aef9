//! An exported CLIP-HandID model computes exactly the retrieval feature of the run's selected
//! model, loads without the run directory, and is told apart from CLIP weights by its metadata.

mod common;

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use clip_handid::backend::Cpu;
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::handid::eval::FeatureExtractor;
use clip_handid::handid::model::HandIdModel;
use clip_handid::handid::provenance::{TOOL, sha256_file};
use clip_handid::handid::retrieval::{EXPORT_FORMAT, ModelKind, RetrievalModel, export_run, read_export_metadata};
use clip_handid::handid::train::{RUN_FORMAT, RunModel, Scenario, TrainConfig};
use common::TempDir;

/// Small CLIP weights and their architecture (their head counts do not follow OpenAI's rule).
const WEIGHTS: &str = "tests/fixtures/clip/resnet_tiny/weights.safetensors";
const CONFIG: &str = "tests/fixtures/clip/resnet_tiny/config.json";

#[test]
fn the_exported_encoder_gives_the_run_model_s_retrieval_feature() {
    let dir = TempDir::new("export");
    let device = Default::default();
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join(WEIGHTS);
    let clip_config = ClipConfig::from_json_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(CONFIG)).unwrap();
    let clip = Clip::<Cpu>::from_safetensors_with_config(&weights, &clip_config, &device).unwrap();
    let mut train = TrainConfig::paper(4);
    train.scenario = Scenario::ClipHandId;
    let config = train.model_config(clip_config.clone(), 3, [64, 64]);
    let model = HandIdModel::from_clip(clip, &config, &device).unwrap();
    // Running statistics away from their initial values, so that the necks' state is checked.
    model.neck_features.running_mean.update(Tensor::random(
        [config.clip.vision.feature_width()],
        burn::tensor::Distribution::Default,
        &device,
    ));
    model.neck_projected.running_var.update(Tensor::random(
        [config.clip.embed_dim],
        burn::tensor::Distribution::Uniform(0.5, 2.0),
        &device,
    ));

    let run = dir.path("run");
    std::fs::create_dir_all(run.join("best")).unwrap();
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    model.clone().save_file(run.join("best").join("model"), &recorder).unwrap();
    let description = RunModel {
        format: RUN_FORMAT.into(),
        tool: TOOL.into(),
        model: config.clone(),
        identities: vec!["folders/a".into(), "folders/b".into(), "folders/c".into()],
        weights: weights.display().to_string(),
        weights_sha256: sha256_file(&weights).unwrap(),
        manifest: None,
        train_images: Vec::new(),
        val_images: Vec::new(),
        backend: "flex".into(),
        seed: 42,
    };
    std::fs::write(run.join("model.json"), serde_json::to_vec(&description).unwrap()).unwrap();

    let out = dir.path("model.safetensors");
    let report = export_run::<Cpu>(&run, &out, &device).unwrap();
    assert_eq!(report.sha256, sha256_file(&out).unwrap());
    let metadata = read_export_metadata(&out).unwrap();
    assert_eq!(metadata["format"], EXPORT_FORMAT);
    let provenance: serde_json::Value = serde_json::from_str(&metadata["provenance"]).unwrap();
    assert_eq!(provenance["source_weights_sha256"].as_str().unwrap(), description.weights_sha256);

    // Loaded from the file alone (the run directory gone).
    std::fs::remove_dir_all(&run).unwrap();
    let loaded = RetrievalModel::<Cpu>::load(&out, &device).unwrap();
    assert_eq!(loaded.kind(), ModelKind::ClipHandid);
    assert_eq!(loaded.dim(), config.clip.vision.feature_width() + config.clip.embed_dim);
    assert_eq!(loaded.sha256(), report.sha256);
    let pixels = Tensor::<Cpu, 4>::random([2, 3, 64, 64], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let expected: Vec<f32> = model.retrieval_features(pixels.clone()).into_data().to_vec().unwrap();
    let got: Vec<f32> = loaded.extract(pixels).into_data().to_vec().unwrap();
    assert_eq!(got.len(), expected.len());
    let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "the exported encoder differs from the run's model by {worst}");

    // CLIP weights load as CLIP, and are no exported model.
    let clip = RetrievalModel::<Cpu>::load_with_config(&weights, Some(&clip_config), &device).unwrap();
    assert_eq!(clip.kind(), ModelKind::Clip);
    assert!(read_export_metadata(&weights).unwrap_err().to_string().contains("not an exported CLIP-HandID model"));
}
