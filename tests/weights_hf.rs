//! Hugging Face transformers CLIP weights: a tiny random `CLIPModel` (quick_gelu), written by
//! `scripts/fixtures/make_weight_fixtures.py`, loads through the key map and reproduces
//! transformers' `get_image_features` / `get_text_features` (docs/FIXTURES.md section 1 tolerance).

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorData;
use clip_handid::clip::weights::{
    ConvertOptions, FileFormat, Naming, RawTensor, WeightsError, convert_to_safetensors, read_safetensors_raw,
    write_safetensors,
};
use clip_handid::clip::{Clip, ClipConfig, ClipError};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/hf_tiny").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-handid-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn config() -> ClipConfig {
    ClipConfig::from_json_file(&fixture("clip_config.json")).unwrap()
}

fn check_outputs(model: &Clip<B>, what: &str) {
    let device = Default::default();
    let io = common::read_tensors(&fixture("io.safetensors"));
    let px = &io["pixel_values"];
    let s = &px.shape;
    let pixels = Tensor::<B, 4>::from_data(TensorData::new(px.floats.clone(), [s[0], s[1], s[2], s[3]]), &device);
    let ids = &io["input_ids"];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.ints.clone(), [ids.shape[0], ids.shape[1]]), &device);
    for (name, got) in [("image_features", model.encode_image(pixels)), ("text_features", model.encode_text(ids))] {
        let want = &io[name];
        assert_eq!(got.dims().to_vec(), want.shape, "{what}: {name}");
        let got: Vec<f32> = got.into_data().to_vec().unwrap();
        let stats = common::compare_rows(&got, &want.floats, want.shape[0]);
        assert!(stats.passes(), "{what}: {name}: {stats:?}");
    }
}

#[test]
fn hugging_face_weights_match_transformers() {
    let device = Default::default();
    let model = Clip::<B>::from_safetensors_with_config(&fixture("model.safetensors"), &config(), &device)
        .unwrap_or_else(|e| panic!("{e}"));
    check_outputs(&model, "direct");

    // converted to OpenAI naming, the file loads the same
    let out = scratch("hf_converted.safetensors");
    let report = convert_to_safetensors(&fixture("model.safetensors"), &out, &ConvertOptions::default()).unwrap();
    assert_eq!((report.format, report.naming), (FileFormat::Safetensors, Naming::HfTransformers));
    let converted = read_safetensors_raw(&out).unwrap().tensors;
    assert!(converted.keys().all(|k| !k.contains("position_ids")), "position_ids must be dropped");
    assert_eq!(converted["visual.proj"].shape, [32, 16]);
    assert_eq!(converted["text_projection"].shape, [16, 16]);
    assert_eq!(converted["transformer.resblocks.1.attn.in_proj_bias"].shape, [48]);
    let model = Clip::<B>::from_safetensors_with_config(&out, &config(), &device).unwrap();
    check_outputs(&model, "converted");
}

#[test]
fn incomplete_hugging_face_files_are_refused_by_name() {
    let mut tensors = read_safetensors_raw(&fixture("model.safetensors")).unwrap().tensors;
    tensors.remove("vision_model.encoder.layers.1.self_attn.k_proj.weight");
    tensors.insert("vision_model.encoder.layers.0.extra.weight".into(), RawTensor::from_f32(vec![1], &[1.0]));
    let path = scratch("hf_broken.safetensors");
    write_safetensors(&path, &tensors, None).unwrap();
    let err = Clip::<B>::from_safetensors_with_config(&path, &config(), &Default::default()).unwrap_err();
    assert!(matches!(err, ClipError::Weights(WeightsError::Naming { .. })), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("hf_broken.safetensors") && message.contains("vision_model.encoder.layers.0.extra.weight"),
        "{message}"
    );
    tensors.remove("vision_model.encoder.layers.0.extra.weight");
    write_safetensors(&path, &tensors, None).unwrap();
    let message =
        Clip::<B>::from_safetensors_with_config(&path, &config(), &Default::default()).unwrap_err().to_string();
    assert!(message.contains("missing vision_model.encoder.layers.1.self_attn.k_proj.weight"), "{message}");
}
