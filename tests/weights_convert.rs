//! Reading PyTorch files in Rust: TorchScript archives and torch.save state dicts, checked
//! tensor by tensor against the state dicts PyTorch reports for them
//! (`scripts/fixtures/make_weight_fixtures.py`), conversion to safetensors, and clear errors
//! for files that cannot be read.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorData;
use clip_handid::clip::weights::torch::{TorchFormat, read_torch, read_torch_with_key};
use clip_handid::clip::weights::{
    ConvertOptions, FileFormat, Naming, Precision, RawTensor, WeightsError, convert_to_safetensors,
    read_safetensors_raw, read_tensors,
};
use clip_handid::clip::{Clip, ClipConfig, ClipError};
use safetensors::Dtype;

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-handid-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn expected(name: &str) -> BTreeMap<String, RawTensor> {
    read_safetensors_raw(&fixture(name)).unwrap_or_else(|e| panic!("{e}")).tensors
}

/// Every name, dtype, shape and byte equal.
fn assert_same(got: &BTreeMap<String, RawTensor>, want: &BTreeMap<String, RawTensor>, what: &str) {
    let got_names: Vec<&String> = got.keys().collect();
    let want_names: Vec<&String> = want.keys().collect();
    assert_eq!(got_names, want_names, "{what}: tensor names differ");
    for (name, w) in want {
        let g = &got[name];
        assert_eq!((g.dtype, &g.shape), (w.dtype, &w.shape), "{what}: {name}");
        assert!(g.data == w.data, "{what}: {name}: values differ");
    }
}

#[test]
fn torchscript_archives_hold_exactly_their_state_dicts() {
    for name in ["vit_ts", "vit_ts_fp16", "resnet_ts"] {
        let file = read_torch(&fixture(&format!("{name}.pt"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.format, TorchFormat::TorchScript, "{name}");
        assert!(file.notes.is_empty(), "{name}: {:?}", file.notes);
        let want = expected(&format!("{name}.state.safetensors"));
        assert_same(&file.tensors, &want, name);
    }
    // the fp16 archive is mixed precision, as OpenAI's are
    let file = read_torch(&fixture("vit_ts_fp16.pt")).unwrap();
    assert_eq!(file.tensors["visual.conv1.weight"].dtype, Dtype::F16);
    assert_eq!(file.tensors["visual.ln_pre.weight"].dtype, Dtype::F32);
    // BatchNorm bookkeeping comes through as integers
    let file = read_torch(&fixture("resnet_ts.pt")).unwrap();
    assert_eq!(file.tensors["visual.bn1.num_batches_tracked"].dtype, Dtype::I64);
}

#[test]
fn torch_save_state_dicts() {
    let mut want = expected("resnet_ts.state.safetensors");
    want.remove("attn_mask"); // a non-persistent buffer: only TorchScript lists it
    let file = read_torch(&fixture("resnet_state_dict.pt")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.format, TorchFormat::StateDict);
    assert_same(&file.tensors, &want, "resnet_state_dict.pt");

    // {"epoch": 7, "state_dict": {"module.<name>": ...}}
    let mut want = expected("vit_ts.state.safetensors");
    want.remove("attn_mask");
    let file = read_torch(&fixture("nested_checkpoint.pt")).unwrap_or_else(|e| panic!("{e}"));
    assert_same(&file.tensors, &want, "nested_checkpoint.pt");
    let notes = file.notes.join("; ");
    assert!(notes.contains("`state_dict`") && notes.contains("`module.`"), "{notes}");
    let err = read_torch_with_key(&fixture("nested_checkpoint.pt"), Some("model")).unwrap_err().to_string();
    assert!(err.contains("nested_checkpoint.pt") && err.contains("top-level keys: epoch, state_dict"), "{err}");
}

#[test]
fn views_offsets_strides_and_dtypes() {
    let file = read_torch(&fixture("views.pt")).unwrap_or_else(|e| panic!("{e}"));
    let want = expected("views.safetensors");
    let dtypes: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(fixture("views.json")).unwrap()).unwrap();
    assert_eq!(file.tensors.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (name, w) in &want {
        let g = &file.tensors[name];
        let torch_dtype = match g.dtype {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::F64 => "float64",
            Dtype::I64 => "int64",
            Dtype::BOOL => "bool",
            other => panic!("{name}: unexpected {other:?}"),
        };
        assert_eq!(torch_dtype, dtypes[name], "{name}");
        assert_eq!(g.shape, w.shape, "{name}");
        if g.dtype == Dtype::BF16 {
            assert_eq!(g.to_f32_values(), w.to_f32_values(), "{name}");
        } else {
            assert!(g.data == w.data, "{name}: values differ");
        }
    }
    assert_eq!(file.tensors["scalar"].shape, Vec::<usize>::new());
    assert_eq!(file.tensors["transposed"].shape, [6, 4]);
}

#[test]
fn burn_store_reader_agrees_on_a_plain_state_dict() {
    // An independent reader of the same format (burn-store's PyTorch reader).
    let reader = burn_store_reader(&fixture("resnet_state_dict.pt"));
    let ours = read_torch(&fixture("resnet_state_dict.pt")).unwrap().tensors;
    assert_eq!(reader.len(), ours.len());
    for (name, values) in reader {
        let mine = ours[&name].clone().into_f32();
        match mine.to_f32_values() {
            Some(v) => assert_eq!(v, values, "{name}"),
            None => assert_eq!(ours[&name].dtype, Dtype::I64, "{name}"),
        }
    }
}

fn burn_store_reader(path: &Path) -> BTreeMap<String, Vec<f32>> {
    use burn::store::pytorch::PytorchReader;
    let reader = PytorchReader::new(path).unwrap_or_else(|e| panic!("burn-store: {e}"));
    reader
        .tensors()
        .iter()
        .map(|(name, snapshot)| {
            let data = snapshot.to_data().unwrap();
            let values = data.convert::<f32>().to_vec::<f32>().unwrap();
            (name.clone(), values)
        })
        .collect()
}

#[test]
fn conversion_keeps_or_widens_dtypes_and_loads() {
    let out = scratch("vit_fp16.safetensors");
    let report = convert_to_safetensors(&fixture("vit_ts_fp16.pt"), &out, &ConvertOptions::default()).unwrap();
    assert_eq!((report.format, report.naming), (FileFormat::TorchScript, Naming::OpenAi));
    assert!(report.dtypes.contains_key("F16") && report.dtypes.contains_key("F32"), "{:?}", report.dtypes);
    let config = report.architecture.as_ref().unwrap();
    assert_eq!(config.embed_dim, 16);
    assert_same(&read_safetensors_raw(&out).unwrap().tensors, &expected("vit_ts_fp16.state.safetensors"), "keep");

    let out32 = scratch("vit_f32.safetensors");
    let report = convert_to_safetensors(
        &fixture("vit_ts_fp16.pt"),
        &out32,
        &ConvertOptions { precision: Precision::F32, key: None },
    )
    .unwrap();
    assert_eq!(report.dtypes.keys().collect::<Vec<_>>(), ["F32"]);
    let widened = read_safetensors_raw(&out32).unwrap().tensors;
    for (name, t) in expected("vit_ts_fp16.state.safetensors") {
        assert_eq!(widened[&name].to_f32_values(), t.to_f32_values(), "{name}");
    }

    // the converted file and the archive itself load into the model
    let config = ClipConfig::from_json_file(&fixture("vit_ts.config.json")).unwrap();
    let device = Default::default();
    Clip::<B>::from_safetensors_with_config(&out, &config, &device).unwrap_or_else(|e| panic!("{e}"));
    let rn_config = ClipConfig::from_json_file(&fixture("resnet_ts.config.json")).unwrap();
    for file in ["resnet_ts.pt", "resnet_state_dict.pt"] {
        Clip::<B>::from_safetensors_with_config(&fixture(file), &rn_config, &device)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }

    // no overwriting the input
    let copy = scratch("copy.pt");
    std::fs::copy(fixture("vit_ts.pt"), &copy).unwrap();
    let err = convert_to_safetensors(&copy, &copy, &ConvertOptions::default()).unwrap_err();
    assert!(matches!(err, WeightsError::SameFile { .. }), "{err}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(fixture("vit_ts.pt")).unwrap());
}

#[test]
fn an_archive_embeds_like_pytorch() {
    let config = ClipConfig::from_json_file(&fixture("vit_ts.config.json")).unwrap();
    let device = Default::default();
    let model = Clip::<B>::from_safetensors_with_config(&fixture("vit_ts.pt"), &config, &device).unwrap();
    let io = common::read_tensors(&fixture("vit_ts.io.safetensors"));
    let px = &io["pixel_values"];
    let s = &px.shape;
    let pixels = Tensor::<B, 4>::from_data(TensorData::new(px.floats.clone(), [s[0], s[1], s[2], s[3]]), &device);
    let ids = &io["input_ids"];
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.ints.clone(), [ids.shape[0], ids.shape[1]]), &device);
    for (name, got) in [("image_features", model.encode_image(pixels)), ("text_features", model.encode_text(ids))] {
        let want = &io[name];
        let got: Vec<f32> = got.into_data().to_vec().unwrap();
        let stats = common::compare_rows(&got, &want.floats, want.shape[0]);
        assert!(stats.passes(), "{name}: {stats:?}");
    }
}

/// Rewrites a zip archive, changing entries through `edit` (name -> bytes; `None` drops it).
fn edited_archive(from: &Path, name: &str, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> PathBuf {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let out = scratch(name);
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&out).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let entry_name = entry.name().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if let Some(bytes) = edit(&entry_name, bytes) {
            writer.start_file(entry_name, options).unwrap();
            writer.write_all(&bytes).unwrap();
        }
    }
    writer.finish().unwrap();
    out
}

fn torch_error(path: &Path) -> String {
    let err = read_torch(path).unwrap_err();
    assert!(matches!(err, WeightsError::Torch { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    message
}

#[test]
fn unreadable_archives_are_refused_clearly() {
    let source = fixture("vit_ts.pt");
    let bytes = std::fs::read(&source).unwrap();

    let truncated = scratch("truncated.pt");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(torch_error(&truncated).contains("corrupt zip archive"));

    let no_pickle = edited_archive(&source, "no_pickle.pt", |n, b| (!n.ends_with("data.pkl")).then_some(b));
    assert!(torch_error(&no_pickle).contains("no data.pkl"));

    let cut_pickle = edited_archive(&source, "cut_pickle.pt", |n, b| {
        Some(if n.ends_with("/data.pkl") { b[..b.len() / 3].to_vec() } else { b })
    });
    assert!(torch_error(&cut_pickle).contains("data.pkl: truncated pickle"));

    let no_storage = edited_archive(&source, "no_storage.pt", |n, b| (!n.ends_with("/data/3")).then_some(b));
    assert!(torch_error(&no_storage).contains("data/3"));

    let short_storage = edited_archive(&source, "short_storage.pt", |n, b| {
        Some(if n.ends_with("/data/0") { b[..b.len() - 4].to_vec() } else { b })
    });
    let message = torch_error(&short_storage);
    assert!(message.contains("data/0 holds") && message.contains("needed"), "{message}");

    let big_endian = edited_archive(&source, "big_endian.pt", |n, b| {
        Some(if n.ends_with("/byteorder") { b"big".to_vec() } else { b })
    });
    assert!(torch_error(&big_endian).contains("byte order `big`"));

    let legacy = scratch("legacy.pt");
    std::fs::write(&legacy, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19])
        .unwrap();
    assert!(torch_error(&legacy).contains("legacy (pre-1.6"));

    // through the model loader: the same error, no panic
    let config = ClipConfig::from_json_file(&fixture("vit_ts.config.json")).unwrap();
    let err = Clip::<B>::from_safetensors_with_config(&short_storage, &config, &Default::default()).unwrap_err();
    assert!(matches!(err, ClipError::Weights(WeightsError::Torch { .. })), "{err}");
}

#[test]
fn read_tensors_detects_format_and_naming() {
    let s = read_tensors(&fixture("vit_ts.pt")).unwrap();
    assert_eq!((s.format, s.naming), (FileFormat::TorchScript, Naming::OpenAi));
    let s = read_tensors(&fixture("resnet_state_dict.pt")).unwrap();
    assert_eq!(s.format, FileFormat::TorchSave);
    let s = read_tensors(&fixture("hf_tiny/model.safetensors")).unwrap();
    assert_eq!((s.format, s.naming), (FileFormat::Safetensors, Naming::HfTransformers));
    assert!(s.tensors.contains_key("visual.transformer.resblocks.1.attn.in_proj_weight"));
}
