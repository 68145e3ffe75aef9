//! Reproduces the paper's Table I: zero-shot, fine-tune-only and CLIP-HandID with ViT-B/16 and
//! RN50 on 11k Hands (four aspects, combined gallery) and PolyU HD, over the seeded protocol.
//!
//! ```text
//! cargo run --release --features cuda --example reproduce -- \
//!     --root-11k data/11k --root-hd data/HD --weights-dir ~/.cache/clip-handid --out table1
//! ```
//! The same library call as `handid reproduce` ([`handid::reproduce::reproduce_observed`]) with
//! the same arguments: prints the table (ours beside the published numbers, and the standard
//! mAP) and writes the split manifests, per-cell results, `table.md`, `summary.json` and
//! `summary.csv` under `--out`. A rerun skips finished cells and resumes interrupted training.

use std::process::ExitCode;

use burn::backend::Autodiff;
use clap::Parser;
use clip_handid::args::ReproduceArgs;
use clip_handid::terminal::Terminal;

/// Reproduce Table I of the CLIP-HandID paper.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    reproduce: ReproduceArgs,
}

fn run(args: &ReproduceArgs) -> Result<(), String> {
    let options = args.options()?;
    let backend = args.backend.ensure_compiled()?;
    let report = clip_handid::with_backend!(backend, |B, device| {
        clip_handid::handid::reproduce::reproduce_observed::<Autodiff<B>>(&options, &device, &mut Terminal::new(false))
            .map_err(|e| e.to_string())
    })??;
    println!("{}", report.table.render());
    println!("table {}; summary {}", report.table_path.display(), report.summary_path.display());
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse().reproduce) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
