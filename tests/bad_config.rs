//! Settings that cannot work are refused with a message naming the setting (or file), before
//! any long work: impossible architectures and input sizes, batch size 0, a transform the
//! model cannot take, a backend this build lacks, and output locations that cannot be written.

mod common;

use std::path::Path;

use burn::backend::Flex;
use clip_handid::backend::BackendKind;
use clip_handid::clip::preprocess::Transform;
use clip_handid::clip::{Clip, ClipConfig, ClipError};
use clip_handid::embed::{EmbedError, embed_images};
use clip_handid::handid::model::{HandIdConfig, HandIdModel};
use common::TempDir;

type B = Flex;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip").join(name)
}

fn vit_tiny_config() -> ClipConfig {
    ClipConfig::from_json_file(&fixture("vit_tiny/config.json")).unwrap()
}

#[test]
fn impossible_architectures_in_config_files_are_refused() {
    let dir = TempDir::new("bad-config");
    let good = std::fs::read_to_string(fixture("vit_tiny/config.json")).unwrap();
    for (find, replace, expected) in [
        ("\"heads\": 4,\n  \"patch_size\"", "\"heads\": 0,\n  \"patch_size\"", "vision.heads must be at least 1"),
        ("\"heads\": 4,\n  \"patch_size\"", "\"heads\": 3,\n  \"patch_size\"", "not divisible by vision.heads 3"),
        ("\"image_size\": 32", "\"image_size\": 36", "vision.image_size 36 is not a multiple of vision.patch_size"),
        ("\"patch_size\": 8", "\"patch_size\": 0", "vision.patch_size must be at least 1"),
        ("\"vocab_size\": 49408", "\"vocab_size\": 4000000000", "text.vocab_size = 4000000000 exceeds the limit"),
        ("\"embed_dim\": 32", "\"embed_dim\": 0", "embed_dim must be at least 1"),
    ] {
        assert!(good.contains(find), "{find}");
        let path = dir.path("config.json");
        std::fs::write(&path, good.replacen(find, replace, 1)).unwrap();
        let err = ClipConfig::from_json_file(&path).unwrap_err();
        assert!(matches!(err, ClipError::Config { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("config.json") && message.contains(expected), "{message}");
    }
    // Built in code rather than read: refused where the model is built.
    let mut config = vit_tiny_config();
    config.text.heads = 5;
    let err =
        Clip::<B>::from_safetensors_with_config(&fixture("vit_tiny/weights.safetensors"), &config, &Default::default())
            .unwrap_err();
    assert!(err.to_string().contains("text.width 32 is not divisible by text.heads 5"), "{err}");
    let err = HandIdModel::<B>::new(&HandIdConfig::new(config, 4), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("text.heads 5"), "{err}");
}

#[test]
fn impossible_input_sizes_and_class_counts_are_refused() {
    let device = Default::default();
    let mut config = HandIdConfig::new(vit_tiny_config(), 4);
    config.input_size = [4, 4];
    let err = HandIdModel::<B>::new(&config, &device).unwrap_err().to_string();
    assert!(err.contains("8x8 patches") && err.contains("4x4"), "{err}");

    let mut resnet = HandIdConfig::new(ClipConfig::from_json_file(&fixture("resnet_tiny/config.json")).unwrap(), 4);
    resnet.input_size = [50, 64];
    let err = HandIdModel::<B>::new(&resnet, &device).unwrap_err().to_string();
    assert!(err.contains("multiples of 16 x stride (16)") && err.contains("50x64"), "{err}");

    let mut none = HandIdConfig::new(vit_tiny_config(), 0);
    none.input_size = [32, 32];
    let err = HandIdModel::<B>::new(&none, &device).unwrap_err().to_string();
    assert!(err.contains("num_classes"), "{err}");

    let mut tiny_vocab = HandIdConfig::new(vit_tiny_config(), 4);
    tiny_vocab.input_size = [32, 32];
    tiny_vocab.clip.text.vocab_size = 1000;
    let err = HandIdModel::<B>::new(&tiny_vocab, &device).unwrap_err().to_string();
    assert!(err.contains("outside the text vocabulary of 1000"), "{err}");
}

#[test]
fn embedding_refuses_batch_size_zero_and_a_mismatched_transform() {
    let device = Default::default();
    let model =
        Clip::<B>::from_safetensors_with_config(&fixture("vit_tiny/weights.safetensors"), &vit_tiny_config(), &device)
            .unwrap();
    let images: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .take(1)
        .collect();
    assert_eq!(images.len(), 1);
    let err = embed_images(&model, &images, &Transform::Clip { size: 32 }, 0, &device, |_| {}).unwrap_err();
    assert!(matches!(err, EmbedError::InvalidInput(_)) && err.to_string().contains("batch size"), "{err}");
    let err = embed_images(&model, &images, &Transform::Clip { size: 224 }, 4, &device, |_| {}).unwrap_err();
    assert!(err.to_string().contains("224x224 images but the model takes 32x32"), "{err}");
}

#[test]
fn a_backend_that_is_not_compiled_in_names_its_feature() {
    for kind in [BackendKind::Wgpu, BackendKind::Cuda] {
        if kind.is_compiled() {
            continue;
        }
        let result: Result<usize, String> = clip_handid::with_backend!(kind, |Bk, device| {
            burn::tensor::Tensor::<Bk, 1>::from_floats([1.0], &device).dims()[0]
        });
        let err = result.unwrap_err();
        assert!(err.contains(&format!("rebuild with `--features {kind}`")), "{err}");
    }
    let err = "metal".parse::<BackendKind>().unwrap_err();
    assert!(err.contains("unknown backend `metal`; expected flex, wgpu or cuda"), "{err}");
}

#[test]
fn output_locations_that_cannot_be_written_are_refused_up_front() {
    let dir = TempDir::new("unwritable");
    let file = dir.path("file.txt");
    std::fs::write(&file, b"a regular file").unwrap();
    // Below a regular file: fails even for root, who ignores permission bits.
    let err = clip_handid::io::check_output_file(&file.join("embeddings.safetensors"), 1024).unwrap_err();
    assert!(err.to_string().contains("file.txt is a file, not a directory"), "{err}");
    let err = clip_handid::io::check_output_dir(&file, 0).unwrap_err();
    assert!(err.to_string().contains("file.txt is a file, not a directory"), "{err}");

    // A read-only directory, where permissions are enforced (not as root).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.path("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        let enforced = std::fs::write(locked.join("try"), b"x").is_err();
        let _ = std::fs::remove_file(locked.join("try"));
        if enforced {
            let err = clip_handid::io::check_output_dir(&locked, 0).unwrap_err();
            assert!(err.to_string().contains("not writable"), "{err}");
        }
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // More space than any disk has.
    if cfg!(unix) {
        let err = clip_handid::io::check_output_dir(&dir.0, u64::MAX / 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("not enough free space"), "{err}");
    }
}
