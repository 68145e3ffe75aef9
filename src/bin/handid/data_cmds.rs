//! `handid fetch`, `convert`, `splits`.

use std::path::PathBuf;

use clip_handid::clip::Clip;
use clip_handid::clip::VisionConfig;
use clip_handid::clip::weights::download::WEIGHTS_DIR_ENV;
use clip_handid::clip::weights::fetch::{self as weights_fetch, FetchOptions, plan};
use clip_handid::clip::weights::manifest::{Manifest, Source};
use clip_handid::clip::weights::{ConvertOptions, Precision, convert_to_safetensors};
use clip_handid::handid::data::{DatasetKind, DrawOptions, draw_split};
use clip_handid::terminal::{DownloadBar, Terminal};

/// Arguments of `handid fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Model name (RN50, ViT-B/16, ViT-B/32, ViT-L/14; `ViT-B-16` works too).
    #[arg(required_unless_present = "list")]
    model: Option<String>,
    /// Directory for the downloaded and converted files (default: $CLIP_HANDID_WEIGHTS_DIR, else
    /// the platform cache directory + clip-handid).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Which source of the manifest to use (default: OpenAI's archive).
    #[arg(long)]
    source: Option<String>,
    /// Accept a source whose SHA-256 is unknown to the manifest (the digest found is printed).
    #[arg(long)]
    allow_unverified: bool,
    /// Write f32 safetensors (default: keep the stored dtypes, mostly f16 for OpenAI's files).
    #[arg(long)]
    f32: bool,
    /// Skip loading the result into a CLIP model to check it.
    #[arg(long)]
    no_check: bool,
    /// List the models and sources of the manifest.
    #[arg(long)]
    list: bool,
}

/// Arguments of `handid convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Input: .pt TorchScript archive, torch.save file, or .safetensors (OpenAI or HF naming).
    #[arg(long)]
    from: PathBuf,
    /// Output .safetensors file (written atomically).
    #[arg(long)]
    to: PathBuf,
    /// Convert every floating-point tensor to f32 (default: keep the stored dtypes).
    #[arg(long)]
    f32: bool,
    /// In a torch.save checkpoint holding several dictionaries of tensors, the one to read.
    #[arg(long)]
    key: Option<String>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Skip loading the result into a CLIP model to check it.
    #[arg(long)]
    no_check: bool,
}

/// Arguments of `handid splits`.
#[derive(clap::Args, Debug)]
pub struct SplitsArgs {
    /// 11k, hd or folder.
    #[arg(long)]
    dataset: DatasetKind,
    /// The dataset's root directory.
    #[arg(long)]
    root: PathBuf,
    /// Seed of every draw (the same dataset and seed give a byte-identical file).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The manifest to write (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Monte Carlo query/gallery runs.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Folder datasets: fraction of the identities that train (the others are test identities).
    #[arg(long, default_value_t = 0.5)]
    train_fraction: f64,
    /// 11k and HD: write the splits even if the counts differ from the published ones.
    #[arg(long)]
    allow_count_mismatch: bool,
}

fn describe(source: &Source) -> String {
    let size = source.size.map_or_else(|| "size unknown".to_string(), |s| format!("{s} bytes"));
    let sha = source.sha256.as_deref().unwrap_or("unknown");
    format!("{} ({size}, SHA-256 {sha})", source.url)
}

pub fn fetch(args: &FetchArgs) -> Result<(), String> {
    let manifest = Manifest::embedded()?;
    if args.list {
        for model in &manifest.models {
            println!("{} (also: {})", model.name, model.aliases.join(", "));
            for s in &model.sources {
                let default = if s.id == model.default_source { " [default]" } else { "" };
                println!("  --source {:9} {}{default}", s.id, describe(s));
                println!("  {:19} format {:?}, naming {:?}, license: {}", "", s.format, s.naming, s.license);
            }
        }
        return Ok(());
    }
    let options = FetchOptions {
        dir: args.dir.clone(),
        source: args.source.clone(),
        allow_unverified: args.allow_unverified,
        precision: if args.f32 { Precision::F32 } else { Precision::Keep },
        check: !args.no_check,
        ..FetchOptions::default()
    };
    let name = args.model.as_deref().unwrap_or_default();
    let (model, source, dir) = plan(&manifest, name, &options)?;
    println!("{} from {}", model.name, describe(source));
    println!("into {} (set with --dir or {WEIGHTS_DIR_ENV})", dir.display());
    let mut bar = DownloadBar::new(source.size.unwrap_or(0));
    let fetched = weights_fetch::fetch::<burn::backend::Flex>(&manifest, name, &options, &Default::default(), &mut bar);
    bar.finish();
    let fetched = fetched?;
    let d = &fetched.download;
    match (d.already_present, d.verified) {
        (true, _) => println!("{} is already there (SHA-256 {} verified)", d.path.display(), d.sha256),
        (false, true) => println!("downloaded {} bytes, SHA-256 verified", d.bytes),
        (false, false) => println!(
            "downloaded {} bytes, NOT verified: no SHA-256 is recorded in the manifest; found {}",
            d.bytes, d.sha256
        ),
    }
    if let Some(report) = &fetched.conversion {
        let dtypes: Vec<String> = report.dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
        println!("converted {} tensors ({}) to {}", report.tensors, dtypes.join(", "), fetched.ready.display());
    }
    if let Some(config) = &fetched.checked {
        println!("checked: loads as {} (input {}x{0})", fetched.model.name, config.vision.image_size());
    }
    println!("weights ready: {}", fetched.ready.display());
    println!("next: handid train --data HANDS/ --weights {} --out run", fetched.ready.display());
    Ok(())
}

pub fn convert(args: &ConvertArgs) -> Result<(), String> {
    if args.to.exists() && !args.force {
        return Err(format!("{} exists; pass --force to replace it", args.to.display()));
    }
    let options =
        ConvertOptions { precision: if args.f32 { Precision::F32 } else { Precision::Keep }, key: args.key.clone() };
    let report = convert_to_safetensors(&args.from, &args.to, &options).map_err(|e| e.to_string())?;
    println!("read {} ({:?}, {:?} naming)", args.from.display(), report.format, report.naming);
    for note in &report.notes {
        println!("  note: {note}");
    }
    let dtypes: Vec<String> = report.dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    println!("wrote {} tensors ({}) to {}", report.tensors, dtypes.join(", "), args.to.display());
    match &report.architecture {
        Ok(config) if !args.no_check => {
            Clip::<burn::backend::Flex>::from_file(&args.to, &Default::default())
                .map_err(|e| format!("{}: the converted file does not load as CLIP: {e}", args.to.display()))?;
            let vision = match &config.vision {
                VisionConfig::Vit(v) => format!("ViT {} layers, width {}, patch {}", v.layers, v.width, v.patch_size),
                VisionConfig::ResNet(r) => format!("ModifiedResNet {:?}, width {}", r.layers, r.width),
            };
            println!(
                "checked: loads as CLIP ({vision}, input {}, embedding {})",
                config.vision.image_size(),
                config.embed_dim
            );
        }
        Ok(_) => {}
        Err(reason) => println!("note: not a complete OpenAI CLIP state dict ({reason}); written as is"),
    }
    Ok(())
}

pub fn splits(args: &SplitsArgs) -> Result<(), String> {
    let options = DrawOptions {
        seed: args.seed,
        runs: args.runs,
        train_fraction: args.train_fraction,
        allow_count_mismatch: args.allow_count_mismatch,
    };
    let manifest = draw_split(args.dataset, &args.root, &options, &mut Terminal::new(false)).map_err(|e| {
        if args.allow_count_mismatch { e.to_string() } else { format!("{e} (pass --allow-count-mismatch to go on)") }
    })?;
    manifest.save(&args.out).map_err(|e| e.to_string())?;
    println!(
        "{:<14} {:>9} {:>10} {:>5} {:>8} {:>8} {:>11} {:>9} {:>8} {:>5}",
        "subset", "train ids", "train imgs", "val", "test ids", "gallery", "distractors", "combined", "queries", "runs"
    );
    for s in manifest.summaries() {
        println!(
            "{:<14} {:>9} {:>10} {:>5} {:>8} {:>8} {:>11} {:>9} {:>8} {:>5}",
            s.name,
            s.train_identities,
            s.train_images,
            s.val_images,
            s.test_identities,
            s.gallery_images,
            s.distractor_images,
            s.combined_gallery_images,
            s.query_images,
            s.runs
        );
    }
    println!("dataset {}, seed {}; gallery and query counts are per run", manifest.dataset, manifest.seed);
    println!("wrote {}", args.out.display());
    Ok(())
}
