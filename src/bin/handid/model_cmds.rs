//! `handid demo`, `train`, `export`, `reproduce`.

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use clip_handid::args::{DemoArgs, ReproduceArgs};
use clip_handid::handid::model::TextMode;
use clip_handid::handid::retrieval::export_run;
use clip_handid::handid::train::{Scenario, TrainData, TrainRequest, train_run};
use clip_handid::terminal::Terminal;

use crate::RunArgs;

/// Arguments of `handid train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The dataset: a folder per identity (`DIR/<identity>/<images>`), or with --split the
    /// dataset root the manifest's paths are relative to.
    #[arg(long)]
    data: PathBuf,
    /// Train on a split manifest's training images (`handid splits`) instead of the whole folder.
    #[arg(long)]
    split: Option<PathBuf>,
    /// With --split: the subset to train on (default: the manifest's first).
    #[arg(long, requires = "split")]
    subset: Option<String>,
    /// CLIP weights to start from (`handid fetch`); they also give the architecture and input size.
    #[arg(long)]
    weights: PathBuf,
    /// The weights' architecture as config.json, for checkpoints whose head counts do not follow
    /// OpenAI's rule (by default it is inferred from the tensor shapes).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The run directory (config, metrics, checkpoints, selected model); rerunning resumes.
    #[arg(long)]
    out: PathBuf,
    /// Epochs (default: the paper's 70).
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per step (default: the paper's 20 for a ViT, 4 for a ResNet).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate of the image encoder (default: the paper's 5e-6; new layers 10x).
    #[arg(long)]
    lr: Option<f64>,
    /// Warm-up epochs (default: the paper's 10).
    #[arg(long)]
    warmup_epochs: Option<usize>,
    /// Losses: clip-handid (ID + image-text contrastive) or fine-tune (ID only).
    #[arg(long, default_value = "clip-handid")]
    scenario: Scenario,
    /// Text branch: paper or reference (the authors' code).
    #[arg(long, default_value = "paper")]
    text_mode: TextMode,
    /// Seed of the validation draw, the initialisation and the training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    run: RunArgs,
}

pub fn demo(args: &DemoArgs, quiet: bool) -> Result<(), String> {
    let backend = args.backend.ensure_compiled()?;
    let options = args.options();
    let summary = clip_handid::with_backend!(backend, |B, device| {
        clip_handid::handid::demo::run_demo::<B>(&options, &device, &mut Terminal::new(quiet))
    })??;
    println!("{}", summary.table());
    println!("{}", summary.json());
    Ok(())
}

pub fn train(args: &TrainArgs) -> Result<(), String> {
    let backend = args.run.backend.ensure_compiled()?;
    let data = match &args.split {
        Some(manifest) => {
            TrainData::Split { manifest: manifest.clone(), root: args.data.clone(), subset: args.subset.clone() }
        }
        None => TrainData::Folder(args.data.clone()),
    };
    let mut request = TrainRequest::new(data, &args.weights, &args.out);
    request.config = args.config.clone();
    request.epochs = args.epochs;
    request.batch_size = args.batch_size;
    request.lr = args.lr;
    request.warmup_epochs = args.warmup_epochs;
    request.scenario = args.scenario;
    request.text_mode = args.text_mode;
    request.seed = args.seed;
    let summary = clip_handid::with_backend!(backend, |B, device| {
        train_run::<Autodiff<B>>(&request, &device, &mut Terminal::new(args.run.quiet)).map_err(|e| e.to_string())
    })??;
    let best = summary.history.get(summary.selected_epoch).and_then(|m| m.val_accuracy);
    println!(
        "trained {} identities ({} images, {} for validation); selected epoch {} of {}{}",
        summary.identities,
        summary.train_images,
        summary.val_images,
        summary.selected_epoch + 1,
        summary.config.epochs,
        best.map_or(String::new(), |a| format!(" (validation accuracy {a:.3})"))
    );
    if summary.resumed_epochs > 0 {
        println!("resumed after epoch {}", summary.resumed_epochs);
    }
    println!(
        "run directory {}; next: handid export {} --out MODEL.safetensors",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

pub fn export(run: &Path, out: &Path, args: &RunArgs) -> Result<(), String> {
    let backend = args.backend.ensure_compiled()?;
    let report = clip_handid::with_backend!(backend, |B, device| {
        export_run::<B>(run, out, &device).map_err(|e| e.to_string())
    })??;
    println!(
        "wrote {} (feature dimension {}, input {:?}, SHA-256 {})",
        report.path.display(),
        report.dim,
        report.architecture.input_size,
        report.sha256
    );
    Ok(())
}

pub fn reproduce(args: &ReproduceArgs, quiet: bool) -> Result<(), String> {
    let options = args.options()?;
    let backend = args.backend.ensure_compiled()?;
    let report = clip_handid::with_backend!(backend, |B, device| {
        clip_handid::handid::reproduce::reproduce_observed::<Autodiff<B>>(&options, &device, &mut Terminal::new(quiet))
            .map_err(|e| e.to_string())
    })??;
    println!("{}", report.table.render());
    println!(
        "split manifests: {}",
        report.manifests.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    println!(
        "per-run results under {}; table {}; summary {}",
        options.out.display(),
        report.table_path.display(),
        report.summary_path.display()
    );
    Ok(())
}
