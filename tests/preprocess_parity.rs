//! Image preprocessing parity with torchvision on PIL images.
//!
//! `tests/fixtures/preprocess/expected.safetensors` (written by
//! `scripts/fixtures/make_preprocess_fixtures.py` with Pillow 13.0.0, torchvision 0.29.2,
//! torch 2.15.0) holds, for each `tests/fixtures/preprocess/<stem>.png`, the f32 `[3, H, W]`
//! output of torchvision's transforms on `PIL.Image.open(path).convert("RGB")`:
//!
//! - `clip64/<stem>`, `clip224/<stem>`: `Resize(n, BICUBIC)`, `CenterCrop(n)`, `ToTensor()`,
//!   `Normalize(CLIP mean/std)`, i.e. [`Transform::Clip`];
//! - `reid64x48/<stem>`, `reid224/<stem>`: `Resize((h, w), BICUBIC)`, `ToTensor()`,
//!   `Normalize(ImageNet mean/std)`, i.e. [`Transform::Reid`].
//!
//! The Rust resampler reproduces Pillow's fixed-point bicubic resampling bit for bit, and the
//! normalisation does torchvision's f32 arithmetic in the same order, so the bound is exact
//! equality: measured maximum absolute difference 0 for every tensor (0/255 in pixel units).

use std::path::{Path, PathBuf};

use clip_handid::clip::preprocess::*;
use safetensors::{Dtype, SafeTensors};

/// Largest allowed absolute difference between our output and torchvision's.
/// Measured: 0.0 on every fixture tensor (bit-identical), so nothing is allowed.
const MAX_ABS_DIFF: f32 = 0.0;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

/// The pipeline a fixture key names: `clip<N>`, `reid<H>x<W>` or `reid<N>` (square).
fn transform_for(prefix: &str) -> Transform {
    if let Some(n) = prefix.strip_prefix("clip") {
        Transform::Clip { size: n.parse().unwrap_or_else(|_| panic!("bad fixture key prefix {prefix}")) }
    } else if let Some(dims) = prefix.strip_prefix("reid") {
        let (h, w) = dims.split_once('x').unwrap_or((dims, dims));
        let parse = |s: &str| s.parse().unwrap_or_else(|_| panic!("bad fixture key prefix {prefix}"));
        Transform::Reid { height: parse(h), width: parse(w) }
    } else {
        panic!("unknown fixture key prefix {prefix}")
    }
}

#[test]
fn preprocessing_matches_torchvision() {
    let dir = fixture_dir();
    let path = dir.join("expected.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Some(m) = meta.metadata() {
        println!(
            "fixtures from Pillow {} / torchvision {}",
            m.get("pillow").map_or("?", String::as_str),
            m.get("torchvision").map_or("?", String::as_str)
        );
    }
    let file = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let mut names = file.names();
    names.sort();
    assert!(names.len() >= 10, "expected at least 10 reference tensors, found {}", names.len());
    let mut worst = 0.0f32;
    let mut failures = Vec::new();
    for name in names {
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32, "{name}: not f32");
        let expected: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let (prefix, stem) = name.split_once('/').unwrap_or_else(|| panic!("bad fixture key {name}"));
        let transform = transform_for(prefix);
        let image_path = dir.join(format!("{stem}.png"));
        let img = load_rgb(&image_path).unwrap_or_else(|e| panic!("{e}"));
        let actual = transform.apply(&img);
        assert_eq!(actual.shape().to_vec(), view.shape(), "{name}: shape");

        let norm = transform.normalization();
        let plane = actual.height * actual.width;
        let (mut max_diff, mut max_pixels, mut differing) = (0.0f32, 0.0f32, 0usize);
        for (i, (&a, &e)) in actual.data.iter().zip(&expected).enumerate() {
            let d = (a - e).abs();
            if d > 0.0 {
                differing += 1;
            }
            max_diff = max_diff.max(d);
            // The same difference in 8-bit pixel units (before normalisation).
            max_pixels = max_pixels.max(d * norm.std[i / plane] * 255.0);
        }
        println!(
            "{name:24} {:?} max |diff| {max_diff:e} ({max_pixels:.3}/255), {differing} of {} values differ",
            actual.shape(),
            expected.len()
        );
        worst = worst.max(max_diff);
        if max_diff > MAX_ABS_DIFF {
            failures.push(format!("{name}: max |diff| {max_diff:e} > {MAX_ABS_DIFF:e}"));
        }
    }
    println!("worst max |diff| over all tensors: {worst:e}");
    assert!(failures.is_empty(), "preprocessing differs from torchvision:\n{}", failures.join("\n"));
}

#[test]
fn fixture_images_load_as_written() {
    // The fixture PNGs are 8-bit RGB named img_<W>x<H>; loading must keep their size.
    let dir = fixture_dir();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "png") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let dims = stem.strip_prefix("img_").and_then(|d| d.split_once('x'));
            let img = load_rgb(&path).unwrap_or_else(|e| panic!("{e}"));
            if let Some((w, h)) = dims {
                assert_eq!((img.width().to_string(), img.height().to_string()), (w.into(), h.into()), "{stem}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 4, "expected the fixture images in {}, found {seen}", dir.display());
}
