//! Embedding image files end to end: decode, preprocess, encode in batches, save, read back.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use clip_handid::clip::preprocess::{Transform, load_rgb};
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::embed::{EmbedError, embed_images, pixels_to_tensor, save_embeddings};

type B = Flex;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny_vit() -> Clip<B> {
    let dir = root().join("clip/vit_tiny");
    let config = ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
    Clip::from_safetensors_with_config(&dir.join("weights.safetensors"), &config, &Default::default()).unwrap()
}

fn images() -> Vec<PathBuf> {
    ["img_97x131.png", "img_300x200.png", "img_64x48.png", "img_225x225.png"]
        .iter()
        .map(|n| root().join("preprocess").join(n))
        .collect()
}

#[test]
fn batched_embeddings_equal_one_forward_pass_and_survive_a_round_trip() {
    let device = Default::default();
    let model = tiny_vit();
    let transform = Transform::Clip { size: 32 };
    let paths = images();
    let mut reported = Vec::new();
    let (embeddings, dim) = embed_images(&model, &paths, &transform, 3, &device, |done| reported.push(done)).unwrap();
    assert_eq!((embeddings.len(), dim), (4 * 32, 32));
    assert_eq!(reported, [3, 4]);

    let pixels: Vec<_> = paths.iter().map(|p| transform.apply(&load_rgb(p).unwrap())).collect();
    let direct = model.encode_image(pixels_to_tensor::<B>(&pixels, &device)).into_data().to_vec::<f32>().unwrap();
    let stats = common::compare_rows(&embeddings, &direct, 4);
    assert!(stats.worst_error <= 1e-5, "batching changed the embeddings: {stats:?}");

    let out = std::env::temp_dir().join(format!("clip-handid-embed-{}.safetensors", std::process::id()));
    save_embeddings(&out, &embeddings, dim, &paths, HashMap::from([("backend".into(), "flex".into())])).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    let names: Vec<String> = serde_json::from_str(&metadata["images"]).unwrap();
    assert_eq!(names, paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
    assert_eq!(metadata["backend"], "flex");
    let stored = common::read_tensors(&out);
    assert_eq!(stored["embeddings"].shape, [4, 32]);
    assert_eq!(stored["embeddings"].floats, embeddings);
    std::fs::remove_file(out).unwrap();
}

#[test]
fn bad_images_are_named() {
    let device = Default::default();
    let model = tiny_vit();
    let transform = Transform::Clip { size: 32 };

    let missing = vec![images()[0].clone(), PathBuf::from("/no/such/hand.jpg")];
    let err = embed_images(&model, &missing, &transform, 8, &device, |_| {}).unwrap_err().to_string();
    assert!(err.contains("/no/such/hand.jpg"), "{err}");

    let not_image = std::env::temp_dir().join(format!("clip-handid-not-image-{}.jpg", std::process::id()));
    std::fs::write(&not_image, b"definitely not a jpeg").unwrap();
    let err = embed_images(&model, std::slice::from_ref(&not_image), &transform, 8, &device, |_| {}).unwrap_err();
    assert!(err.to_string().contains(&not_image.display().to_string()), "{err}");
    std::fs::remove_file(not_image).unwrap();

    assert!(matches!(embed_images(&model, &[], &transform, 8, &device, |_| {}), Err(EmbedError::NoImages)));
}

/// The same two images embedded on the backend that `CLIP_HANDID_TEST_BACKEND` names and on
/// `flex`, with the tiny ViT and ModifiedResNet fixtures, agree within FIXTURES.md section 1's
/// tolerance (cosine >= 0.99999, max |diff| <= 1e-3 * max(1, max |flex|)).
#[test]
fn embeddings_on_the_test_backend_match_flex() {
    let paths = images()[..2].to_vec();
    for name in ["vit_tiny", "resnet_tiny"] {
        let dir = root().join("clip").join(name);
        let config = ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
        let transform = Transform::Clip { size: config.vision.image_size() as u32 };
        let weights = dir.join("weights.safetensors");
        let cpu = Clip::<B>::from_safetensors_with_config(&weights, &config, &Default::default()).unwrap();
        let (expected, _) = embed_images(&cpu, &paths, &transform, 2, &Default::default(), |_| {}).unwrap();
        let (actual, dim) = common::on_test_backend!(|G, device| {
            let model = Clip::<G>::from_safetensors_with_config(&weights, &config, &device).unwrap();
            embed_images(&model, &paths, &transform, 2, &device, |_| {}).unwrap()
        });
        assert_eq!(actual.len(), 2 * dim);
        let stats = common::compare_rows(&actual, &expected, 2);
        println!("{name} on {}: {stats:?}", common::test_backend());
        assert!(stats.passes(), "{name}: embeddings on {} differ from flex: {stats:?}", common::test_backend());
    }
}
