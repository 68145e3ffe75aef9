//! Reproduces the paper's Table I: zero-shot, fine-tune-only and CLIP-HandID with ViT-B/16 and
//! RN50 on 11k Hands (four aspects, combined gallery) and PolyU HD, over the seeded protocol.
//!
//! ```text
//! cargo run --release --features cuda --example reproduce -- \
//!     --root-11k data/11k --root-hd data/HD --weights-dir ~/.cache/clip-handid --out table1
//! cargo run --release --example reproduce -- --root-hd data/HD --scenario zero-shot \
//!     --backbone rn50 --weights-rn50 RN50.safetensors --out zs-rn50
//! ```
//! Prints the table (ours beside the published numbers, and the standard mAP) and writes, under
//! `--out`: the split manifests (`splits/`), per cell `results.json` and `runs.csv` (every Monte
//! Carlo run) with the training run, and `table.md`, `summary.json`, `summary.csv`. Every input
//! is checked before any long work. Rerunning the same command after an interruption skips the
//! finished cells and resumes the interrupted training from its last checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::backend::Autodiff;
use clap::Parser;
use clip_handid::backend::BackendKind;
use clip_handid::handid::model::TextMode;
use clip_handid::handid::reproduce::{Backbone, ReproduceOptions, Scenario, WeightsSpec, reproduce};

/// Reproduce Table I of the CLIP-HandID paper.
#[derive(Parser, Debug)]
struct Args {
    /// 11k Hands root (HandInfo.csv and Hands/).
    #[arg(long)]
    root_11k: Option<PathBuf>,
    /// PolyU HD root (folders 1-501 and 502-712).
    #[arg(long)]
    root_hd: Option<PathBuf>,
    /// zero-shot, fine-tune, clip-handid or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// vit-b-16, rn50 or all.
    #[arg(long, default_value = "all")]
    backbone: String,
    /// ViT-B/16 weights (safetensors from fetch_weights / convert_weights).
    #[arg(long)]
    weights_vit_b_16: Option<PathBuf>,
    /// RN50 weights (safetensors from fetch_weights / convert_weights).
    #[arg(long)]
    weights_rn50: Option<PathBuf>,
    /// Directory holding ViT-B-16.safetensors and RN50.safetensors (as fetch_weights names
    /// them), for the backbones without their own flag.
    #[arg(long)]
    weights_dir: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "reproduce-output")]
    out: PathBuf,
    /// Seed of the splits and of training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Monte Carlo query/gallery runs.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Training epochs (default: the paper's 70).
    #[arg(long)]
    epochs: Option<usize>,
    /// Training batch size (default: the paper's 20 for ViT-B/16, 4 for RN50).
    #[arg(long)]
    batch_size: Option<usize>,
    /// CLIP-HandID text branch: paper (gradients through the frozen text encoder) or reference
    /// (the authors' code).
    #[arg(long, default_value = "paper")]
    text_mode: String,
    /// Go on when the split counts differ from the published ones (e.g. a partial copy).
    #[arg(long)]
    allow_count_mismatch: bool,
    /// Backend: flex (CPU), wgpu or cuda (the latter two need the Cargo feature of that name).
    #[arg(long, default_value_t = BackendKind::default_compiled())]
    backend: BackendKind,
}

fn choices<T: std::str::FromStr<Err = String> + Copy>(value: &str, all: &[T]) -> Result<Vec<T>, String> {
    if value == "all" { Ok(all.to_vec()) } else { Ok(vec![value.parse()?]) }
}

fn options(args: &Args) -> Result<ReproduceOptions, String> {
    let scenarios = choices(&args.scenario, &Scenario::ALL)?;
    let backbones = choices(&args.backbone, &Backbone::ALL)?;
    let text_mode = match args.text_mode.as_str() {
        "paper" => TextMode::Paper,
        "reference" => TextMode::Reference,
        other => return Err(format!("unknown text mode `{other}`; expected paper or reference")),
    };
    let mut weights = Vec::new();
    for backbone in backbones {
        let (flag, given) = match backbone {
            Backbone::VitB16 => ("--weights-vit-b-16", &args.weights_vit_b_16),
            Backbone::Rn50 => ("--weights-rn50", &args.weights_rn50),
        };
        let path = match (given, &args.weights_dir) {
            (Some(path), _) => path.clone(),
            (None, Some(dir)) => dir.join(backbone.weights_file_name()),
            (None, None) => {
                return Err(format!(
                    "no weights for {}: pass {flag} PATH or --weights-dir DIR (holding {}), or choose another \
                     --backbone",
                    backbone.label(),
                    backbone.weights_file_name()
                ));
            }
        };
        weights.push(WeightsSpec { backbone, path });
    }
    Ok(ReproduceOptions {
        root_11k: args.root_11k.clone(),
        root_hd: args.root_hd.clone(),
        scenarios,
        weights,
        out: args.out.clone(),
        seed: args.seed,
        runs: args.runs,
        epochs: args.epochs,
        batch_size: args.batch_size,
        text_mode,
        allow_count_mismatch: args.allow_count_mismatch,
        progress: true,
    })
}

fn run(args: &Args) -> Result<(), String> {
    let options = options(args)?;
    let backend = args.backend.ensure_compiled()?;
    let report = clip_handid::with_backend!(backend, |B, device| {
        reproduce::<Autodiff<B>>(&options, &device).map_err(|e| e.to_string())
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

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
