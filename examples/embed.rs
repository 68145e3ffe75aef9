//! Writes the CLIP image embeddings of the given images to a safetensors file.
//!
//! ```text
//! cargo run --release --example embed -- --weights ViT-B-16.safetensors --out emb.safetensors a.jpg b.jpg
//! ```
//! The output holds tensor `embeddings` `[N, E]` (not normalised) and, in its metadata, the
//! image paths in order (`images`, a JSON list), the weights file and the backend.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clip_handid::backend::BackendKind;
use clip_handid::clip::preprocess::Transform;
use clip_handid::clip::{Clip, ClipConfig};
use clip_handid::embed::{embed_images, save_embeddings};
use indicatif::{ProgressBar, ProgressStyle};

/// Embed images with a CLIP image encoder.
#[derive(Parser, Debug)]
struct Args {
    /// OpenAI-format CLIP weights (.safetensors); see `fetch_weights` / `convert_weights`.
    #[arg(long)]
    weights: PathBuf,
    /// Architecture as `config.json` (FIXTURES.md format), for checkpoints whose head counts do
    /// not follow OpenAI's rule; by default it is inferred from the tensor shapes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// Backend: flex (CPU), wgpu or cuda (the latter two need the Cargo feature of that name).
    #[arg(long, default_value_t = BackendKind::default_compiled())]
    backend: BackendKind,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

fn run(args: Args) -> Result<(), String> {
    let backend = args.backend.ensure_compiled()?;
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    clip_handid::with_backend!(backend, |B, device| {
        let (model, config) = match &args.config {
            Some(path) => {
                let config = ClipConfig::from_json_file(path).map_err(|e| e.to_string())?;
                (
                    Clip::<B>::from_safetensors_with_config(&args.weights, &config, &device)
                        .map_err(|e| e.to_string())?,
                    config,
                )
            }
            None => Clip::<B>::from_safetensors(&args.weights, &device).map_err(|e| e.to_string())?,
        };
        // Refuse an unwritable or full destination before embedding, not after.
        let needed = (args.images.len() * config.embed_dim * 4) as u64;
        clip_handid::io::check_output_file(&args.out, needed)
            .map_err(|e| format!("{}: cannot write the embeddings there: {e}", args.out.display()))?;
        let transform = Transform::Clip { size: config.vision.image_size() as u32 };
        let bar = ProgressBar::new(args.images.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images {elapsed_precise} eta {eta}")
                .expect("valid template"),
        );
        let (embeddings, dim) = embed_images(&model, &args.images, &transform, args.batch_size, &device, |done| {
            bar.set_position(done as u64)
        })
        .map_err(|e| e.to_string())?;
        bar.finish();
        let extra = HashMap::from([
            ("weights".to_string(), args.weights.display().to_string()),
            ("backend".to_string(), backend.to_string()),
        ]);
        save_embeddings(&args.out, &embeddings, dim, &args.images, extra).map_err(|e| e.to_string())?;
        println!("wrote {} embeddings of dimension {dim} to {}", args.images.len(), args.out.display());
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
