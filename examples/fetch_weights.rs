//! Downloads a published CLIP model, verifies it and converts it to OpenAI-named safetensors.
//!
//! ```text
//! cargo run --release --example fetch_weights -- ViT-B/16
//! cargo run --release --example fetch_weights -- RN50 --dir /data/weights
//! cargo run --release --example fetch_weights -- --list
//! ```
//! Sources, checksums and sizes come from `weights-manifest.toml`. The download resumes an
//! interrupted transfer (`<file>.part`), and the SHA-256 is checked before the file takes its
//! name; a mismatch deletes nothing. The directory is `--dir`, else `$CLIP_HANDID_WEIGHTS_DIR`,
//! else the platform cache directory + `clip-handid` (`~/.cache/clip-handid` on Linux).
//! Without network it says which file to bring and where to put it; run it again after.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use clip_handid::clip::Clip;
use clip_handid::clip::weights::download::{
    DownloadError, DownloadOptions, Progress, Target, WEIGHTS_DIR_ENV, default_weights_dir, download,
};
use clip_handid::clip::weights::manifest::{Manifest, ModelEntry, Source, SourceFormat};
use clip_handid::clip::weights::{ConvertOptions, Naming, Precision, convert_to_safetensors};
use indicatif::{ProgressBar, ProgressStyle};

/// Download, verify and convert CLIP weights.
#[derive(Parser, Debug)]
struct Args {
    /// Model name (RN50, ViT-B/16, ViT-B/32, ViT-L/14; `ViT-B-16` works too).
    #[arg(required_unless_present = "list")]
    model: Option<String>,
    /// Directory for the downloaded and converted files.
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

struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&mut self, total: Option<u64>, already: u64) {
        if let Some(total) = total {
            self.0.set_length(total);
        }
        self.0.set_position(already);
        if already > 0 {
            self.0.println(format!("resuming from byte {already}"));
        }
        self.0.set_message("downloading");
    }

    fn advance(&mut self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn retry(&mut self, attempt: u32, reason: &str) {
        self.0.println(format!("attempt {attempt} broke off ({reason}); resuming"));
    }

    fn verifying(&mut self) {
        self.0.set_message("verifying SHA-256");
    }
}

fn describe(source: &Source) -> String {
    let size = source.size.map_or_else(|| "size unknown".to_string(), |s| format!("{s} bytes"));
    let sha = source.sha256.as_deref().unwrap_or("unknown");
    format!("{} ({size}, SHA-256 {sha})", source.url)
}

fn list(manifest: &Manifest) {
    for model in &manifest.models {
        println!("{} (also: {})", model.name, model.aliases.join(", "));
        for s in &model.sources {
            let default = if s.id == model.default_source { " [default]" } else { "" };
            println!("  --source {:9} {}{default}", s.id, describe(s));
            println!("  {:19} format {:?}, naming {:?}, license: {}", "", s.format, s.naming, s.license);
        }
    }
}

fn offline_help(source: &Source, path: &Path) -> String {
    let sha = match &source.sha256 {
        Some(sha) => format!("SHA-256 {sha}"),
        None => "no SHA-256 is recorded for it".to_string(),
    };
    let size = source.size.map_or_else(String::new, |s| format!(", {s} bytes"));
    format!(
        "To install it by hand, download on a machine with network\n    {}\n({sha}{size}) and put it at\n    {}\n\
         then run this command again: the file will be verified and converted.",
        source.url,
        path.display()
    )
}

/// The converted file's name for this source (the OpenAI source gets the plain name).
fn output_file(model: &ModelEntry, source: &Source) -> String {
    let plain = model.safetensors_file();
    if source.id == model.default_source {
        plain
    } else {
        format!("{}.{}.safetensors", plain.trim_end_matches(".safetensors"), source.id)
    }
}

fn run(args: Args) -> Result<(), String> {
    let manifest = Manifest::embedded()?;
    if args.list {
        list(&manifest);
        return Ok(());
    }
    let model = manifest.model(args.model.as_deref().unwrap_or_default())?;
    let source = model.source(args.source.as_deref())?;
    if source.sha256.is_none() && !args.allow_unverified {
        return Err(format!(
            "the manifest records no SHA-256 for {} (source `{}` of {}), so the download could not be verified; \
             pass --allow-unverified to accept it (the digest found will be printed), or use the default source",
            source.url, source.id, model.name
        ));
    }
    let dir = match args.dir {
        Some(dir) => dir,
        None => default_weights_dir()?,
    };
    let raw = dir.join(&source.file);
    println!("{} from {}", model.name, describe(source));
    println!("into {} (set with --dir or {WEIGHTS_DIR_ENV})", dir.display());

    let bar = ProgressBar::new(source.size.unwrap_or(0)).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
            .expect("valid template"),
    );
    let mut progress = Bar(bar.clone());
    let target = Target { url: &source.url, sha256: source.sha256.as_deref(), dest: &raw };
    let fetched = download(&target, &DownloadOptions::default(), &mut progress);
    bar.finish_and_clear();
    let fetched = match fetched {
        Ok(f) => f,
        Err(e @ DownloadError::Unreachable { .. }) => return Err(format!("{e}\n\n{}", offline_help(source, &raw))),
        Err(e @ DownloadError::Interrupted { .. }) => {
            return Err(format!("{e}\n\nIf this keeps failing:\n{}", offline_help(source, &raw)));
        }
        Err(e) => return Err(e.to_string()),
    };
    match (fetched.already_present, fetched.verified) {
        (true, _) => println!("{} is already there (SHA-256 {} verified)", raw.display(), fetched.sha256),
        (false, true) => println!("downloaded {} bytes, SHA-256 verified", fetched.bytes),
        (false, false) => println!(
            "downloaded {} bytes, NOT verified: no SHA-256 is recorded in the manifest; found {}",
            fetched.bytes, fetched.sha256
        ),
    }

    let ready = if source.format == SourceFormat::Safetensors && source.naming == Naming::OpenAi {
        raw.clone()
    } else {
        let out = dir.join(output_file(model, source));
        if out.exists() {
            println!("{} already exists (delete it to convert again)", out.display());
        } else {
            let options =
                ConvertOptions { precision: if args.f32 { Precision::F32 } else { Precision::Keep }, key: None };
            let report = convert_to_safetensors(&raw, &out, &options).map_err(|e| e.to_string())?;
            let dtypes: Vec<String> = report.dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
            println!("converted {} tensors ({}) to {}", report.tensors, dtypes.join(", "), out.display());
        }
        out
    };
    if !args.no_check {
        let (_, config) = Clip::<burn::backend::Flex>::from_file(&ready, &Default::default())
            .map_err(|e| format!("{}: does not load as CLIP: {e}", ready.display()))?;
        let expected = clip_handid::clip::ClipConfig::preset(&model.architecture).map_err(|e| e.to_string())?;
        if config != expected {
            return Err(format!(
                "{} loads, but as {config:?}, not the {} architecture {expected:?}",
                ready.display(),
                model.name
            ));
        }
        println!("checked: loads as {} (input {}x{0})", model.name, config.vision.image_size());
    }
    println!("\nweights ready: {}", ready.display());
    println!(
        "use them with: cargo run --release --example embed -- --weights {} --out embeddings.safetensors IMAGES...",
        ready.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
