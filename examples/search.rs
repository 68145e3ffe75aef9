//! Builds a gallery index of hand images with a CLIP image encoder and searches it.
//!
//! ```text
//! # index every image under known/ (recursively); the folder holding an image names its identity
//! cargo run --release --example search -- build --weights ViT-B-16.safetensors \
//!     --index gallery.safetensors --identity-from-folder known/
//! # the 10 most similar gallery images of each query
//! cargo run --release --example search -- query --weights ViT-B-16.safetensors \
//!     --index gallery.safetensors -k 10 --out hits.json questioned1.jpg questioned2.jpg
//! ```
//! Features are the protocol's: the CLIP image embedding of the image plus that of its mirror
//! image, L2-normalised. The index (`gallery.safetensors` and `gallery.safetensors.json`)
//! records the architecture, the preprocessing and the weights file; a query with another
//! architecture or preprocessing is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use clip_handid::backend::BackendKind;
use clip_handid::clip::preprocess::Transform;
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::handid::data::has_image_extension;
use clip_handid::handid::eval::{
    FeatureOptions, GalleryIndex, IndexEntry, ModelInfo, SearchHit, SearchOptions, extract_features, write_atomic,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Build or search a gallery index of hand images.
#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The model and device options shared by both commands.
#[derive(clap::Args, Debug)]
struct ModelArgs {
    /// OpenAI-format CLIP weights (.safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// Architecture as `config.json`, for checkpoints whose head counts do not follow OpenAI's
    /// rule; by default it is inferred from the tensor shapes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The index: its embeddings file (the JSON sidecar sits next to it, `.json` appended).
    #[arg(long)]
    index: PathBuf,
    /// Backend: flex (CPU), wgpu or cuda (the latter two need the Cargo feature of that name).
    #[arg(long, default_value_t = BackendKind::default_compiled())]
    backend: BackendKind,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Use the embedding of the image alone, without adding that of its mirror image.
    #[arg(long)]
    no_flip: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Embed images and save them as an index (replacing it, unless --append).
    Build {
        #[command(flatten)]
        model: ModelArgs,
        /// Add to the existing index instead of replacing it.
        #[arg(long)]
        append: bool,
        /// Take each image's identity from the name of the folder holding it.
        #[arg(long)]
        identity_from_folder: bool,
        /// Image files, or folders searched recursively for images.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Rank the index's entries for each query image.
    Query {
        #[command(flatten)]
        model: ModelArgs,
        /// Candidates per query.
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Also write the ranked candidates as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Query image files.
        #[arg(required = true)]
        queries: Vec<PathBuf>,
    },
}

/// The ranked candidates of one query, as written to `--out`.
#[derive(Serialize)]
struct QueryHits<'a> {
    query: String,
    candidates: &'a [SearchHit],
}

/// Image files among `inputs`: files as given, folders searched recursively (sorted).
fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let read = std::fs::read_dir(dir).map_err(|e| format!("cannot list folder {}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = read
            .map(|e| e.map(|e| e.path()).map_err(|e| format!("cannot list folder {}: {e}", dir.display())))
            .collect::<Result<_, _>>()?;
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(has_image_extension) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut images = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut images)?;
        } else if input.is_file() {
            images.push(input.clone());
        } else {
            return Err(format!("{} does not exist", input.display()));
        }
    }
    if images.is_empty() {
        return Err("no image files found (looked for .jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp)".into());
    }
    Ok(images)
}

fn progress_bar(len: usize) -> ProgressBar {
    ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {elapsed_precise} eta {eta}")
            .expect("valid template"),
    )
}

/// The model information an index records for `config`, `transform` and `args`.
fn model_info(config: &ClipConfig, transform: &Transform, args: &ModelArgs) -> Result<ModelInfo, String> {
    let vision = serde_json::to_string(&config.vision).map_err(|e| e.to_string())?;
    Ok(ModelInfo {
        name: format!("CLIP image embedding (dimension {})", config.embed_dim),
        weights: Some(args.weights.display().to_string()),
        preprocessing: Some(format!("{transform:?}")),
        flip_sum: !args.no_flip,
        extra: BTreeMap::from([("vision".to_string(), vision)]),
    })
}

/// Refuses an index made with another architecture, preprocessing or flip setting; warns when
/// only the weights file's name differs.
fn check_same_model(index: &Path, stored: &ModelInfo, ours: &ModelInfo) -> Result<(), String> {
    let same = stored.name == ours.name
        && stored.preprocessing == ours.preprocessing
        && stored.flip_sum == ours.flip_sum
        && stored.extra.get("vision") == ours.extra.get("vision");
    if !same {
        return Err(format!(
            "the index {} was made with another model or preprocessing ({:?}, {:?}, flip-sum {}) than this one \
             ({:?}, {:?}, flip-sum {}); its embeddings cannot be compared with these",
            index.display(),
            stored.name,
            stored.preprocessing,
            stored.flip_sum,
            ours.name,
            ours.preprocessing,
            ours.flip_sum
        ));
    }
    if stored.weights != ours.weights {
        eprintln!(
            "warning: the index was made with weights {:?}, this run uses {:?}",
            stored.weights.as_deref().unwrap_or("(unknown)"),
            ours.weights.as_deref().unwrap_or("(unknown)")
        );
    }
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    let model_args = match &args.command {
        Command::Build { model, .. } | Command::Query { model, .. } => model,
    };
    let backend = model_args.backend.ensure_compiled()?;
    if model_args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let options = FeatureOptions { batch_size: model_args.batch_size, flip_sum: !model_args.no_flip };
    clip_handid::with_backend!(backend, |B, device| {
        let (model, config) = match &model_args.config {
            Some(path) => {
                let config = ClipConfig::from_json_file(path).map_err(|e| e.to_string())?;
                let model = Clip::<B>::from_safetensors_with_config(&model_args.weights, &config, &device)
                    .map_err(|e| e.to_string())?;
                (model, config)
            }
            None => Clip::<B>::from_safetensors(&model_args.weights, &device).map_err(|e| e.to_string())?,
        };
        let transform = Transform::Clip { size: config.vision.image_size() as u32 };
        let info = model_info(&config, &transform, model_args)?;
        match &args.command {
            Command::Build { append, identity_from_folder, inputs, .. } => {
                let images = collect_images(inputs)?;
                let needed = (images.len() * (config.vision.feature_width() + config.embed_dim) * 4) as u64;
                clip_handid::io::check_output_file(&model_args.index, needed)
                    .map_err(|e| format!("{}: cannot write the index there: {e}", model_args.index.display()))?;
                let mut index = if *append {
                    let index = GalleryIndex::load(&model_args.index).map_err(|e| e.to_string())?;
                    check_same_model(&model_args.index, index.model(), &info)?;
                    index
                } else {
                    GalleryIndex::new(info)
                };
                let entries: Vec<IndexEntry> = images
                    .iter()
                    .map(|p| {
                        let identity = identity_from_folder
                            .then(|| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()))
                            .flatten();
                        IndexEntry::new(p.display().to_string(), identity)
                    })
                    .collect();
                let bar = progress_bar(entries.len());
                index
                    .add_images(&model, entries, &transform, &options, &device, |done| bar.set_position(done as u64))
                    .map_err(|e| e.to_string())?;
                bar.finish();
                index.save(&model_args.index).map_err(|e| e.to_string())?;
                println!(
                    "indexed {} image{} ({} in all, dimension {}) in {}",
                    images.len(),
                    if images.len() == 1 { "" } else { "s" },
                    index.len(),
                    index.dim(),
                    model_args.index.display()
                );
            }
            Command::Query { k, out, queries, .. } => {
                let index = GalleryIndex::load(&model_args.index).map_err(|e| e.to_string())?;
                check_same_model(&model_args.index, index.model(), &info)?;
                if let Some(out) = out {
                    clip_handid::io::check_output_file(out, 0)
                        .map_err(|e| format!("{}: cannot write the ranked candidates there: {e}", out.display()))?;
                }
                let bar = progress_bar(queries.len());
                let features = extract_features(&model, queries, &transform, &options, &device, |done| {
                    bar.set_position(done as u64)
                })
                .map_err(|e| e.to_string())?;
                bar.finish();
                let hits =
                    index.search::<B>(&features, *k, &SearchOptions::default(), &device).map_err(|e| e.to_string())?;
                for (query, candidates) in queries.iter().zip(&hits) {
                    println!("{}", query.display());
                    for hit in candidates {
                        let identity = hit.identity.as_deref().unwrap_or("-");
                        println!("  {:>4}  {:.4}  {identity}  {}", hit.rank, hit.score, hit.path);
                    }
                }
                if let Some(out) = out {
                    let lists: Vec<QueryHits> = queries
                        .iter()
                        .zip(&hits)
                        .map(|(q, c)| QueryHits { query: q.display().to_string(), candidates: c })
                        .collect();
                    let mut json = serde_json::to_vec_pretty(&lists).map_err(|e| e.to_string())?;
                    json.push(b'\n');
                    write_atomic(out, &json).map_err(|e| e.to_string())?;
                    println!("wrote the ranked candidates to {}", out.display());
                }
            }
        }
        Ok::<(), String>(())
    })?
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
