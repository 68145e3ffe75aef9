//! The fuzz targets' bodies, shared by `fuzz/` (cargo-fuzz, nightly) and `tests/fuzz_corpus.rs`
//! (plain `cargo test`, which replays the committed corpus). Each feeds arbitrary bytes to the
//! project's own public entry points; errors are expected, a panic or an abort is a bug.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clip_handid::clip::preprocess::{Transform, decode_rgb};
use clip_handid::clip::tokenizer::ClipTokenizer;
use clip_handid::clip::weights::{Checkpoint, KeyMap, read_tensors, torch::read_torch};
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::handid::data::{SplitManifest, read_hand_info};

type B = burn::backend::Flex;

/// The targets, by the names of their corpus folders.
pub const TARGETS: [&str; 6] = ["tokenizer", "safetensors", "torch", "hand_info", "manifest", "image"];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "tokenizer" => tokenizer(data),
        "safetensors" => safetensors(data),
        "torch" => torch(data),
        "hand_info" => hand_info(data),
        "manifest" => manifest(data),
        "image" => image(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// A scratch file private to this process and thread (the readers under test take paths);
/// on tmpfs where there is one, so that fuzzing does not wear a disk.
fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let path = base.join(format!("clip-handid-fuzz-{}-{thread}-{name}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("scratch file");
    file.write_all(data).expect("scratch write");
    path
}

/// CLIP's tokenizer on any text (invalid UTF-8 replaced, as a caller reading bytes would).
pub fn tokenizer(data: &[u8]) {
    static TOKENIZER: OnceLock<ClipTokenizer> = OnceLock::new();
    let tok = TOKENIZER.get_or_init(|| ClipTokenizer::new().expect("embedded vocabulary"));
    let text = String::from_utf8_lossy(data);
    let ids = tok.tokenize(&text, 77).expect("tokenize never fails with a context of 77");
    assert_eq!(ids.len(), 77);
    let encoded = tok.encode(&text).expect("encode");
    let _ = tok.decode(&encoded);
}

/// A safetensors checkpoint: parsed from bytes, read as a file (format detection, naming), its
/// architecture inferred and, when one is, loaded into a model of that architecture.
pub fn safetensors(data: &[u8]) {
    let name = Path::new("fuzz.safetensors");
    if let Ok(checkpoint) = Checkpoint::from_safetensors_bytes(data, name)
        && let Ok(config) = ClipConfig::infer(&checkpoint.shapes())
        && config.validate().is_ok()
    {
        let _ = checkpoint.load_into(Clip::<B>::new(&config, &Default::default()), &KeyMap::openai());
    }
    let path = scratch("weights", data);
    let _ = read_tensors(&path);
    let _ = std::fs::remove_file(path);
}

/// The PyTorch reader. The first byte chooses what the rest is: a whole file (odd), or the
/// `data.pkl` pickle of a TorchScript archive (even, 2 mod 4) or of a `torch.save` file
/// (0 mod 4), packed into a copy of a fixture archive. Zip entries carry checksums, so a pickle
/// mutated inside a whole archive would rarely get past the zip reader.
pub fn torch(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode % 2 == 1 {
        rest.to_vec()
    } else {
        let template = if mode % 4 == 2 { "vit_ts_fp16.pt" } else { "views.pt" };
        with_pickle(template, rest)
    };
    let path = scratch("torch.pt", &bytes);
    let _ = read_torch(&path);
    let _ = std::fs::remove_file(path);
}

/// The entries of a fixture archive, read once.
fn template_entries(name: &'static str) -> &'static [(String, Vec<u8>)] {
    static VIT: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    static VIEWS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    let cell = if name == "views.pt" { &VIEWS } else { &VIT };
    cell.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights").join(name);
        let path = if path.exists() {
            path
        } else {
            // Built from fuzz/, whose manifest directory is one level down.
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/weights").join(name)
        };
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).expect("fixture archive")).expect("zip");
        (0..zip.len())
            .map(|i| {
                let mut entry = zip.by_index(i).expect("entry");
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).expect("entry bytes");
                (entry.name().to_string(), bytes)
            })
            .collect()
    })
}

/// A fixture archive with its `data.pkl` replaced by `pickle`.
fn with_pickle(template: &'static str, pickle: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in template_entries(template) {
        writer.start_file(name.as_str(), options).expect("zip entry");
        writer.write_all(if name.ends_with("data.pkl") { pickle } else { bytes }).expect("zip write");
    }
    writer.finish().expect("zip finish");
    out.into_inner()
}

/// `HandInfo.csv` (11k Hands' metadata).
pub fn hand_info(data: &[u8]) {
    let path = scratch("HandInfo.csv", data);
    let _ = read_hand_info(&path);
    let _ = std::fs::remove_file(path);
}

/// A split manifest: parsed, then checked against an empty dataset root and summarised.
pub fn manifest(data: &[u8]) {
    let path = scratch("splits.json", data);
    if let Ok(manifest) = SplitManifest::read(&path) {
        let _ = manifest.check_files(&std::env::temp_dir(), &path);
        let _ = manifest.summaries();
        for subset in &manifest.subsets {
            let _ = subset.train_classes();
            for run in &subset.runs {
                let _ = run.integer_labels();
            }
        }
        let again: SplitManifest = serde_json::from_slice(&manifest.to_json()).expect("a manifest re-reads itself");
        assert_eq!(again, manifest);
    }
    let _ = std::fs::remove_file(path);
}

/// Image decoding as every image of the project is read, then both preprocessing pipelines
/// (at small output sizes: resampling cost is not what is being tested).
pub fn image(data: &[u8]) {
    if let Ok(img) = decode_rgb(data, Path::new("fuzz.img")) {
        let clip = Transform::Clip { size: 16 }.apply(&img);
        assert_eq!(clip.shape(), [3, 16, 16]);
        let reid = Transform::Reid { height: 16, width: 8 }.apply(&img);
        assert_eq!(reid.shape(), [3, 16, 8]);
    }
}
