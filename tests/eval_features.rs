//! Flip-summed retrieval features of image files (docs/METHOD.md section 5) with the tiny CLIP ViT
//! fixture and with closures.

mod common;

use common::TempDir;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use clip_handid::clip::preprocess::{PixelArray, Transform, load_rgb};
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::handid::eval::{EvalError, FeatureMatrix, FeatureOptions, extract_features};

type B = Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny_vit() -> Clip<B> {
    let dir = fixtures().join("clip/vit_tiny");
    let config = ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
    Clip::from_safetensors_with_config(&dir.join("weights.safetensors"), &config, &Default::default()).unwrap()
}

fn images() -> Vec<PathBuf> {
    ["img_97x131.png", "img_300x200.png", "img_64x48.png", "img_225x225.png"]
        .iter()
        .map(|n| fixtures().join("preprocess").join(n))
        .collect()
}

fn batch(pixels: &[PixelArray]) -> Tensor<B, 4> {
    let (h, w) = (pixels[0].height, pixels[0].width);
    let data: Vec<f32> = pixels.iter().flat_map(|p| p.data.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [pixels.len(), 3, h, w]), &Default::default())
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol, "max |difference| {worst} > {tol}");
}

fn assert_unit_rows(m: &FeatureMatrix) {
    for i in 0..m.rows() {
        let norm = m.row(i).iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "row {i} has norm {norm}");
    }
}

#[test]
fn clip_flip_sum_equals_manual_computation() {
    let device = Default::default();
    let model = tiny_vit();
    let transform = Transform::Clip { size: 32 };
    let paths = images();
    let mut reported = Vec::new();
    let options = FeatureOptions { batch_size: 3, flip_sum: true };
    let features = extract_features(&model, &paths, &transform, &options, &device, |done| reported.push(done)).unwrap();
    assert_eq!((features.rows(), features.dim()), (4, 32));
    assert_eq!(reported, [3, 4]);
    assert_unit_rows(&features);

    // By hand: f(x) + f(flip(x)) with the mirror image made on the CPU, then normalised.
    let pixels: Vec<PixelArray> = paths.iter().map(|p| transform.apply(&load_rgb(p).unwrap())).collect();
    let mirrored: Vec<PixelArray> = pixels.iter().map(PixelArray::flip_horizontal).collect();
    let plain = model.encode_image(batch(&pixels)).into_data().to_vec::<f32>().unwrap();
    let flipped = model.encode_image(batch(&mirrored)).into_data().to_vec::<f32>().unwrap();
    for i in 0..4 {
        let sum: Vec<f32> = (0..32).map(|j| plain[i * 32 + j] + flipped[i * 32 + j]).collect();
        assert_close(features.row(i), &unit(&sum), 1e-5);
        // The flip changes the embedding (otherwise the test would prove little).
        assert!(plain[i * 32..(i + 1) * 32].iter().zip(&flipped[i * 32..]).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    // Without flip-sum: the normalised embedding; the batch size changes nothing.
    let single = extract_features(
        &model,
        &paths,
        &transform,
        &FeatureOptions { batch_size: 1, flip_sum: false },
        &device,
        |_| {},
    )
    .unwrap();
    for i in 0..4 {
        assert_close(single.row(i), &unit(&plain[i * 32..(i + 1) * 32]), 1e-5);
    }
    let big = extract_features(
        &model,
        &paths,
        &transform,
        &FeatureOptions { batch_size: 64, flip_sum: true },
        &device,
        |_| {},
    )
    .unwrap();
    assert_close(big.data(), features.data(), 1e-5);
}

#[test]
fn closures_are_extractors_and_the_flip_mirrors_columns() {
    let device = Default::default();
    let transform = Transform::Reid { height: 6, width: 5 };
    let paths = images();
    // Feature: the red channel's first row (5 values). Its mirror is that row reversed.
    let first_row = |x: Tensor<B, 4>| {
        let [n, _, _, w] = x.dims();
        x.slice([0..n, 0..1, 0..1, 0..w]).reshape([n, w])
    };
    let features = extract_features(
        &first_row,
        &paths,
        &transform,
        &FeatureOptions { batch_size: 3, flip_sum: true },
        &device,
        |_| {},
    )
    .unwrap();
    assert_unit_rows(&features);
    for (i, path) in paths.iter().enumerate() {
        let p = transform.apply(&load_rgb(path).unwrap());
        let row = &p.data[..5];
        let sum: Vec<f32> = (0..5).map(|j| row[j] + row[4 - j]).collect();
        assert_close(features.row(i), &unit(&sum), 1e-6);
    }
}

#[test]
fn bad_inputs_give_errors_naming_the_file() {
    let device = Default::default();
    let transform = Transform::Clip { size: 32 };
    let model = tiny_vit();
    let options = FeatureOptions::default();
    let dir = TempDir::new("eval-features");
    let missing = dir.0.join("missing.png");
    let garbage = dir.0.join("garbage.jpg");
    std::fs::write(&garbage, b"this is not an image").unwrap();
    let good = images()[0].clone();

    for bad in [&missing, &garbage] {
        let paths = vec![good.clone(), bad.clone()];
        let err = extract_features(&model, &paths, &transform, &options, &device, |_| {}).unwrap_err();
        assert!(matches!(err, EvalError::Preprocess(_)), "{err:?}");
        let name = bad.file_name().unwrap().to_str().unwrap();
        assert!(err.to_string().contains(name), "{err}");
    }
    // A failure in a later batch is found too (decoded ahead of the model).
    let paths = vec![good.clone(), good.clone(), missing.clone()];
    let err = extract_features(
        &model,
        &paths,
        &transform,
        &FeatureOptions { batch_size: 2, flip_sum: true },
        &device,
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.png"), "{err}");

    // An extractor that drops a row, or changes its dimension between batches.
    let drops_a_row = |x: Tensor<B, 4>| Tensor::<B, 2>::ones([1, 4], &x.device());
    let two = vec![good.clone(), good.clone()];
    let err = extract_features(&drops_a_row, &two, &transform, &options, &device, |_| {}).unwrap_err();
    assert!(matches!(err, EvalError::ExtractorShape { batch: 2, got: [1, 4], .. }), "{err:?}");
    let calls = std::cell::Cell::new(0usize);
    let changing = |x: Tensor<B, 4>| {
        calls.set(calls.get() + 1);
        Tensor::<B, 2>::ones([x.dims()[0], 2 + calls.get()], &x.device())
    };
    let err = extract_features(
        &changing,
        &two,
        &transform,
        &FeatureOptions { batch_size: 1, flip_sum: false },
        &device,
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, EvalError::ExtractorShape { expected_dim: Some(3), .. }), "{err:?}");

    // A zero or NaN feature cannot be normalised: the error names the image.
    let zero = |x: Tensor<B, 4>| Tensor::<B, 2>::zeros([x.dims()[0], 3], &x.device());
    let err = extract_features(&zero, &two, &transform, &options, &device, |_| {}).unwrap_err();
    assert!(matches!(err, EvalError::BadFeature { .. }), "{err:?}");
    assert!(err.to_string().contains("img_97x131.png") && err.to_string().contains("zero"), "{err}");
    let nan = |x: Tensor<B, 4>| Tensor::<B, 2>::full([x.dims()[0], 3], f32::NAN, &x.device());
    let err = extract_features(&nan, &two, &transform, &options, &device, |_| {}).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");

    // Options and empty input.
    let err =
        extract_features(&model, &two, &transform, &FeatureOptions { batch_size: 0, flip_sum: true }, &device, |_| {})
            .unwrap_err();
    assert!(matches!(err, EvalError::InvalidOption(_)), "{err:?}");
    let none: Vec<PathBuf> = Vec::new();
    assert!(matches!(
        extract_features(&model, &none, &transform, &options, &device, |_| {}),
        Err(EvalError::InvalidOption(_))
    ));
}
