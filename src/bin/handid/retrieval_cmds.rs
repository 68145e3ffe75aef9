//! `handid embed`, `index build`, `index query`, `compare`, `evaluate`.

use std::path::PathBuf;

use clap::Subcommand;
use clip_handid::clip::ClipConfig;
use clip_handid::handid::eval::GalleryIndex;
use clip_handid::handid::progress::Observer;
use clip_handid::handid::retrieval::{
    RetrievalModel, build_index, collect_images, embed_to_file, evaluate_model, query_index,
};
use clip_handid::terminal::Terminal;

use crate::RunArgs;

/// The model option of every retrieval command.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArg {
    /// CLIP weights (`handid fetch`) or an exported CLIP-HandID model (`handid export`); which one
    /// is read from the file.
    #[arg(long)]
    model: PathBuf,
    /// For CLIP weights whose head counts do not follow OpenAI's rule: their architecture as
    /// config.json (by default it is inferred from the tensor shapes).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Arguments of `handid embed`.
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The safetensors file to write (tensor `embeddings` [N, D]).
    #[arg(long)]
    out: PathBuf,
    /// Image files, or folders searched recursively for images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// `handid index` subcommands.
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Embed images and save them as a gallery index (replacing it, unless --append).
    #[command(
        after_help = "Example:\n  handid index build --model my-model.safetensors --index gallery.safetensors --identity-from-folder known/"
    )]
    Build {
        #[command(flatten)]
        model: ModelArg,
        /// The index: its embeddings file (the JSON sidecar is written next to it, `.json` appended).
        #[arg(long)]
        index: PathBuf,
        /// Add to the existing index instead of replacing it (it must have been built with the same model).
        #[arg(long)]
        append: bool,
        /// Take each image's identity from the name of the folder holding it.
        #[arg(long)]
        identity_from_folder: bool,
        /// Image files, or folders searched recursively for images.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Rank the index's images for each query image; refused if the index was built with another
    /// model file (by SHA-256).
    #[command(
        after_help = "Example:\n  handid index query --model my-model.safetensors --index gallery.safetensors -k 10 --out hits.json questioned.jpg"
    )]
    Query {
        #[command(flatten)]
        model: ModelArg,
        /// The index's embeddings file.
        #[arg(long)]
        index: PathBuf,
        /// Candidates per query.
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Write the ranked candidates with their provenance as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Query image files, or folders searched recursively for images.
        #[arg(required = true)]
        queries: Vec<PathBuf>,
    },
}

/// Arguments of `handid compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The first image.
    a: PathBuf,
    /// The second image.
    b: PathBuf,
}

/// Arguments of `handid evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    #[command(flatten)]
    model: ModelArg,
    /// The split manifest (`handid splits`).
    #[arg(long)]
    split: PathBuf,
    /// The dataset root the manifest's paths are relative to.
    #[arg(long)]
    root: PathBuf,
    /// Output directory (results.json, verification.json/png, rankings.csv/png).
    #[arg(long)]
    out: PathBuf,
}

/// Loads the model on the chosen backend and runs `body` with it.
macro_rules! with_model {
    ($arg:expr, |$model:ident, $device:ident, $observer:ident| $body:expr) => {{
        let backend = $arg.run.backend.ensure_compiled()?;
        let mut terminal = Terminal::new($arg.run.quiet);
        clip_handid::with_backend!(backend, |B, device| {
            let $device = device;
            let $observer: &mut dyn Observer = &mut terminal;
            $observer.message(&format!("loading {}", $arg.model.display()));
            let config = match &$arg.config {
                Some(path) => Some(ClipConfig::from_json_file(path).map_err(|e| e.to_string())?),
                None => None,
            };
            let $model = RetrievalModel::<B>::load_with_config(&$arg.model, config.as_ref(), &$device)
                .map_err(|e| e.to_string())?;
            $observer.message(&format!("{}, SHA-256 {}", $model.name(), $model.sha256()));
            $body
        })?
    }};
}

pub fn embed(args: &EmbedArgs) -> Result<(), String> {
    let images = collect_images(&args.images).map_err(|e| e.to_string())?;
    with_model!(args.model, |model, device, observer| {
        embed_to_file(&model, &images, &args.out, &device, observer).map_err(|e| e.to_string())?;
        println!("wrote the features of {} images (dimension {}) to {}", images.len(), model.dim(), args.out.display());
        Ok(())
    })
}

pub fn index(command: &IndexCommand) -> Result<(), String> {
    match command {
        IndexCommand::Build { model: arg, index, append, identity_from_folder, inputs } => {
            let images = collect_images(inputs).map_err(|e| e.to_string())?;
            with_model!(arg, |model, device, observer| {
                let needed = (images.len() * model.dim() * 4) as u64;
                clip_handid::io::check_output_file(index, needed)
                    .map_err(|e| format!("{}: cannot write the index there: {e}", index.display()))?;
                let existing = if *append {
                    Some((index.as_path(), GalleryIndex::load(index).map_err(|e| e.to_string())?))
                } else {
                    None
                };
                let built = build_index(&model, &images, *identity_from_folder, existing, &device, observer)
                    .map_err(|e| e.to_string())?;
                built.save(index).map_err(|e| e.to_string())?;
                println!(
                    "indexed {} images ({} in all, dimension {}) in {}",
                    images.len(),
                    built.len(),
                    built.dim(),
                    index.display()
                );
                Ok(())
            })
        }
        IndexCommand::Query { model: arg, index, k, out, queries } => {
            let queries = collect_images(queries).map_err(|e| e.to_string())?;
            if let Some(out) = out {
                clip_handid::io::check_output_file(out, 0)
                    .map_err(|e| format!("{}: cannot write the ranked candidates there: {e}", out.display()))?;
            }
            with_model!(arg, |model, device, observer| {
                let report = query_index(&model, index, &queries, *k, &device, observer).map_err(|e| e.to_string())?;
                for query in &report.queries {
                    println!("{}", query.path);
                    for c in &query.candidates {
                        println!(
                            "  {:>4}  {:.4}  {}  {}",
                            c.rank,
                            c.score,
                            c.identity.as_deref().unwrap_or("-"),
                            c.path
                        );
                    }
                }
                if let Some(out) = out {
                    report.write_json(out).map_err(|e| e.to_string())?;
                    println!("wrote the ranked candidates to {}", out.display());
                }
                Ok(())
            })
        }
    }
}

pub fn compare(args: &CompareArgs) -> Result<(), String> {
    with_model!(args.model, |model, device, _observer| {
        let score = model.compare(&args.a, &args.b, &device).map_err(|e| e.to_string())?;
        println!("{score:.6}");
        Ok(())
    })
}

pub fn evaluate(args: &EvaluateArgs) -> Result<(), String> {
    with_model!(args.model, |model, device, observer| {
        let (evaluation, files) =
            evaluate_model(&model, &args.split, &args.root, &args.out, &device, observer).map_err(|e| e.to_string())?;
        for subset in &evaluation.report.subsets {
            let s = &subset.summary;
            println!(
                "{}: rank-1 {:.4} rank-5 {:.4} rank-10 {:.4} mAP {:.4} (standard {:.4}) mINP {:.4} over {} runs",
                subset.name,
                s.rank1.mean,
                s.rank5.mean,
                s.rank10.mean,
                s.map_interpolated.mean,
                s.map_standard.mean,
                s.minp.mean,
                s.n_runs
            );
        }
        if let Some(verification) = &evaluation.verification {
            println!("EER {:.4} (first run)", verification.eer.rate);
        }
        for file in files {
            println!("wrote {}", file.display());
        }
        Ok(())
    })
}
