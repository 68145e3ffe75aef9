//! Weights that do not fit the model are refused with the offending tensors named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use clip_handid::clip::weights::WeightsError;
use clip_handid::clip::{Clip, ClipConfig, ClipError};
use safetensors::{Dtype, tensor::TensorView};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-handid-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Rewrites the tiny ViT's weights through `edit` (name -> (dtype, shape, bytes)).
fn edited_weights(name: &str, edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let bytes = std::fs::read(fixture("vit_tiny").join("weights.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> =
        file.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let path = scratch(name);
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

fn load(path: &Path) -> Result<Clip<B>, ClipError> {
    let config = ClipConfig::from_json_file(&fixture("vit_tiny").join("config.json")).unwrap();
    Clip::<B>::from_safetensors_with_config(path, &config, &Default::default())
}

#[test]
fn missing_unexpected_and_mis_shaped_tensors_are_listed() {
    let path = edited_weights("mismatch.safetensors", |t| {
        t.remove("visual.ln_post.weight");
        let (d, _, b) = t["visual.proj"].clone();
        t.insert("visual.extra_tensor".into(), (d, vec![b.len() / 4], b));
        let (d, s, b) = t.remove("visual.class_embedding").unwrap();
        t.insert("visual.class_embedding".into(), (d, vec![s[0] / 2, 2], b));
    });
    let err = load(&path).unwrap_err();
    let ClipError::Weights(WeightsError::Mismatch { missing, unexpected, mis_shaped, .. }) = &err else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(missing, &["visual.ln_post.weight"]);
    assert_eq!(unexpected, &["visual.extra_tensor"]);
    assert_eq!(mis_shaped.len(), 1, "{mis_shaped:?}");
    assert!(mis_shaped[0].starts_with("visual.class_embedding: expected [64], found [32, 2]"), "{}", mis_shaped[0]);
    let message = err.to_string();
    assert!(message.contains("mismatch.safetensors") && message.contains("missing (1)"), "{message}");
}

#[test]
fn a_transposed_linear_weight_is_reported_in_checkpoint_layout() {
    let path = edited_weights("transposed.safetensors", |t| {
        let key = "visual.transformer.resblocks.0.mlp.c_fc.weight";
        let (d, s, b) = t.remove(key).unwrap();
        t.insert(key.into(), (d, vec![s[1], s[0]], b));
    });
    let message = load(&path).unwrap_err().to_string();
    assert!(
        message.contains("visual.transformer.resblocks.0.mlp.c_fc.weight: expected [256, 64], found [64, 256]"),
        "{message}"
    );
}

#[test]
fn integer_tensors_and_half_precision() {
    let path = edited_weights("int.safetensors", |t| {
        let (_, s, b) = t.remove("visual.proj").unwrap();
        t.insert("visual.proj".into(), (Dtype::I32, s, b));
    });
    let message = load(&path).unwrap_err().to_string();
    assert!(message.contains("`visual.proj` has dtype I32"), "{message}");

    // An f16 checkpoint loads (converted to f32).
    let path = edited_weights("half.safetensors", |t| {
        for (dtype, _, bytes) in t.values_mut() {
            if *dtype == Dtype::F32 {
                *bytes = bytes
                    .chunks_exact(4)
                    .flat_map(|c| half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
                    .collect();
                *dtype = Dtype::F16;
            }
        }
    });
    load(&path).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn files_that_are_not_safetensors() {
    let missing = load(Path::new("/nonexistent/w.safetensors")).unwrap_err().to_string();
    assert!(missing.contains("/nonexistent/w.safetensors") && missing.contains("cannot read"), "{missing}");

    let garbage = scratch("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    let message = load(&garbage).unwrap_err().to_string();
    assert!(message.contains("garbage.safetensors: not a valid safetensors file"), "{message}");

    let bytes = std::fs::read(fixture("vit_tiny").join("weights.safetensors")).unwrap();
    let truncated = scratch("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = load(&truncated).unwrap_err().to_string();
    assert!(message.contains("truncated.safetensors: not a valid safetensors file"), "{message}");
}

#[test]
fn architecture_is_inferred_from_shapes_or_refused() {
    // The tiny fixtures do not follow OpenAI's heads = width / 64 rule, but every shape-derived
    // field must be inferred exactly.
    for name in ["vit_tiny", "resnet_tiny"] {
        let dir = fixture(name);
        let given = ClipConfig::from_json_file(&dir.join("config.json")).unwrap();
        let checkpoint =
            clip_handid::clip::weights::Checkpoint::read_safetensors(&dir.join("weights.safetensors")).unwrap();
        let inferred = ClipConfig::infer(&checkpoint.shapes()).unwrap();
        assert_eq!(inferred.embed_dim, given.embed_dim, "{name}");
        assert_eq!(inferred.vision.image_size(), given.vision.image_size(), "{name}");
        assert_eq!(inferred.vision.feature_width(), given.vision.feature_width(), "{name}");
        assert_eq!(
            (inferred.text.context_length, inferred.text.vocab_size, inferred.text.width, inferred.text.layers),
            (given.text.context_length, given.text.vocab_size, given.text.width, given.text.layers)
        );
        match (&inferred.vision, &given.vision) {
            (clip_handid::clip::VisionConfig::Vit(a), clip_handid::clip::VisionConfig::Vit(b)) => {
                assert_eq!((a.layers, a.width, a.patch_size), (b.layers, b.width, b.patch_size))
            }
            (clip_handid::clip::VisionConfig::ResNet(a), clip_handid::clip::VisionConfig::ResNet(b)) => {
                assert_eq!((a.layers, a.width), (b.layers, b.width))
            }
            _ => panic!("{name}: wrong vision kind inferred"),
        }
    }
    let path = edited_weights("novisual.safetensors", |t| t.retain(|k, _| !k.starts_with("visual.")));
    let err = Clip::<B>::from_safetensors(&path, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("novisual.safetensors: cannot determine the CLIP architecture"), "{err}");
}

/// A safetensors file: `header_len` as stored (the real length if `None`), then `header`, then `data`.
fn raw_safetensors(name: &str, header: &str, header_len: Option<u64>, data: &[u8]) -> PathBuf {
    let mut bytes = header_len.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn headers_that_lie_about_sizes_or_offsets_are_refused() {
    let one = r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let cases = [
        // The length prefix claims more header than the file holds, or an absurd amount.
        raw_safetensors("long_prefix.safetensors", one, Some(1 << 20), &[0; 8]),
        raw_safetensors("huge_prefix.safetensors", one, Some(u64::MAX), &[0; 8]),
        // Offsets past the end of the data.
        raw_safetensors(
            "past_end.safetensors",
            r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4000]}}"#,
            None,
            &[0; 8],
        ),
        // Offsets that do not span shape x dtype bytes.
        raw_safetensors(
            "wrong_span.safetensors",
            r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
            None,
            &[0; 8],
        ),
        // Two tensors sharing bytes.
        raw_safetensors(
            "overlap.safetensors",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            None,
            &[0; 12],
        ),
        // A shape whose element count overflows.
        raw_safetensors(
            "overflow.safetensors",
            r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
            None,
            &[0; 8],
        ),
        // Not JSON, and an unknown dtype.
        raw_safetensors("not_json.safetensors", "{\"t\": [1, 2", None, &[]),
        raw_safetensors(
            "dtype.safetensors",
            r#"{"t":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#,
            None,
            &[0; 16],
        ),
    ];
    for path in cases {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, ClipError::Weights(WeightsError::Format { .. })), "{name}: {err}");
        assert!(err.to_string().contains(&format!("{name}: not a valid safetensors file")), "{err}");
    }
}

#[test]
fn an_inferred_architecture_that_cannot_be_built_is_refused() {
    // The tiny ViT's text width is 32: OpenAI's rule (heads = width / 64) gives no heads.
    let err = Clip::<B>::from_file(&fixture("vit_tiny").join("weights.safetensors"), &Default::default()).unwrap_err();
    assert!(matches!(err, ClipError::Weights(WeightsError::Architecture { .. })), "{err}");
    assert!(err.to_string().contains("text.heads must be at least 1"), "{err}");
}

/// The tiny ViT with `ln_final.weight` and `visual.conv1.weight` replaced by zero-sized
/// tensors whose first dimension (the inferred text and image widths) is `width`: no bytes in
/// the file, but a large model.
fn zero_sized_widths(name: &str, width: usize) -> PathBuf {
    edited_weights(name, |t| {
        for key in ["ln_final.weight", "visual.conv1.weight"] {
            let (d, s, _) = t.remove(key).unwrap();
            let mut shape = vec![width, 0];
            shape.extend_from_slice(&s[1..].iter().skip(1).copied().collect::<Vec<_>>());
            t.insert(key.into(), (d, shape, Vec::new()));
        }
    })
}

/// Peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

#[test]
fn zero_sized_tensors_claiming_a_huge_architecture_allocate_nothing() {
    // Width 2^20: the text MLP alone would have 2^42 elements; refused by the size limits.
    let err = Clip::<B>::from_file(&zero_sized_widths("huge.safetensors", 1 << 20), &Default::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ClipError::Weights(WeightsError::Architecture { .. })), "{message}");
    assert!(message.contains("huge.safetensors") && message.contains("more than the limit of 134217728"), "{message}");

    // Width 2048 is within the limits but makes a model of about 1.2 GB: the shapes must be
    // compared before any parameter is initialised, so nothing of that size is allocated.
    let path = zero_sized_widths("wide.safetensors", 2048);
    let before = peak_rss_mib();
    let err = Clip::<B>::from_file(&path, &Default::default()).unwrap_err();
    let grown = peak_rss_mib().saturating_sub(before);
    let message = err.to_string();
    assert!(matches!(err, ClipError::Weights(WeightsError::Mismatch { .. })), "{message}");
    assert!(message.contains("wide.safetensors") && message.contains("ln_final.weight"), "{message}");
    assert!(grown < 300, "refusing the file raised peak memory by {grown} MiB");
}

#[test]
fn files_that_are_plainly_something_else_say_what_they_look_like() {
    let html = scratch("page.safetensors");
    std::fs::write(&html, b"<html><body>404 Not Found</body></html>").unwrap();
    let message = load(&html).unwrap_err().to_string();
    assert!(message.contains("page.safetensors") && message.contains("a web page or error message"), "{message}");
    let legacy = scratch("legacy.pt");
    std::fs::write(&legacy, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]).unwrap();
    let message = Clip::<B>::from_file(&legacy, &Default::default()).unwrap_err().to_string();
    assert!(message.contains("legacy.pt") && message.contains("legacy (pre-1.6, non-zip) torch.save"), "{message}");
}
