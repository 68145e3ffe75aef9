//! `handid`: identify people from images of their hands with CLIP-HandID.
//!
//! Argument parsing and printing around the library's calls (`handid::retrieval`,
//! `handid::train`, `handid::data`, `handid::demo`, `handid::reproduce`, `clip_burn::weights`).
//! Bad input ends the program with one line naming the file and the problem and exit code 1;
//! wrong usage exits with code 2.

mod data_cmds;
mod model_cmds;
mod retrieval_cmds;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use clip_handid::args::{DemoArgs, ReproduceArgs};
use clip_handid::backend::BackendKind;

/// Identify people from images of their hands: fine-tune CLIP-HandID on your own images, export
/// the model, index known hands and rank candidates for questioned ones, with the SHA-256 of the
/// model and of every image in every output.
#[derive(Parser, Debug)]
#[command(name = "handid", version, propagate_version = true)]
#[command(after_help = "The whole sequence on your own hands (see README, \"Your own hands\"):
  handid fetch ViT-B/16
  handid train --data hands/ --weights ViT-B-16.safetensors --out run
  handid export run --out my-model.safetensors
  handid index build --model my-model.safetensors --index gallery.safetensors --identity-from-folder known/
  handid index query --model my-model.safetensors --index gallery.safetensors -k 10 --out hits.json questioned.jpg
  handid calibrate --model my-model.safetensors --data calibration-hands/ --out cal
  handid compare --model my-model.safetensors --calibration cal/calibration.json questioned.jpg known.jpg")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by the commands that run a model.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Backend: flex (CPU), wgpu or cuda (the latter two need the Cargo feature of that name).
    #[arg(long, default_value_t = BackendKind::default_compiled())]
    pub backend: BackendKind,
    /// Show no progress bars or messages (results are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// CLIP-HandID end to end on synthetic hands, no download needed: data, split, training,
    /// evaluation before and after, ranked candidates. The last line printed is JSON.
    #[command(after_help = "Example:\n  handid demo --out demo-output\n  handid demo --epochs 10 --identities 40")]
    Demo {
        #[command(flatten)]
        args: DemoArgs,
        /// Show no progress bars or messages.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Download a published CLIP model, verify its SHA-256 and convert it to safetensors.
    #[command(
        after_help = "Example:\n  handid fetch ViT-B/16\n  handid fetch RN50 --dir weights/\n  handid fetch --list"
    )]
    Fetch(data_cmds::FetchArgs),
    /// Convert CLIP weights (TorchScript, torch.save, Hugging Face safetensors) to OpenAI-named
    /// safetensors.
    #[command(after_help = "Example:\n  handid convert --from ViT-B-16.pt --to ViT-B-16.safetensors")]
    Convert(data_cmds::ConvertArgs),
    /// Draw the seeded protocol split of 11k Hands, PolyU HD or a folder-per-identity dataset
    /// and write it as a JSON manifest.
    #[command(
        after_help = "Example:\n  handid splits --dataset 11k --root data/11k --seed 42 --out 11k.json\n  handid splits --dataset folder --root hands/ --train-fraction 0.5 --out mine.json"
    )]
    Splits(data_cmds::SplitsArgs),
    /// Fine-tune CLIP-HandID from CLIP weights on a folder per identity (one validation image
    /// per identity held out automatically) or on a split manifest's training images.
    #[command(
        after_help = "Example:\n  handid train --data hands/ --weights ViT-B-16.safetensors --out run\n  handid train --data data/11k --split 11k.json --subset dorsal_right --weights RN50.safetensors --out run-rn50\nRerunning with the same --out resumes the run."
    )]
    Train(model_cmds::TrainArgs),
    /// Export a training run's selected model (image encoder and BN necks) as one safetensors
    /// file usable without the run directory.
    #[command(after_help = "Example:\n  handid export run --out my-model.safetensors")]
    Export {
        /// The training run directory (`handid train --out`).
        run: PathBuf,
        /// The model file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        run_args: RunArgs,
    },
    /// Write the features of images (L2-normalised, flip-summed) to a safetensors file, with
    /// every image's SHA-256 and the model's in its metadata.
    #[command(
        after_help = "Example:\n  handid embed --model my-model.safetensors --out features.safetensors a.jpg b.jpg"
    )]
    Embed(retrieval_cmds::EmbedArgs),
    /// Build or query a gallery index of hand images.
    #[command(subcommand)]
    Index(retrieval_cmds::IndexCommand),
    /// The similarity score (cosine, -1 to 1) of two images under a model; with a calibration,
    /// the likelihood ratio, its verbal equivalent and the provenance of every input.
    #[command(
        after_help = "Example:\n  handid compare --model my-model.safetensors questioned.jpg known.jpg\n  handid compare --model my-model.safetensors --calibration cal/calibration.json questioned.jpg known.jpg"
    )]
    Compare(retrieval_cmds::CompareArgs),
    /// Calibrate a model's comparison scores into likelihood ratios on identities it was not
    /// trained on, with a validation report (Cllr, EER, misleading evidence; Tippett, ECE, PAV
    /// plots). See docs/LR.md.
    #[command(
        after_help = "Example:\n  handid calibrate --model my-model.safetensors --data calibration-hands/ --out cal\n  handid calibrate --model my-model.safetensors --data hands/ --split mine.json --calibrator pav --out cal"
    )]
    Calibrate(retrieval_cmds::CalibrateArgs),
    /// The protocol's figures for a model on a split manifest: CMC rank-1/5/10, both mAPs, mINP,
    /// verification ROC/EER, ranked candidates (JSON, CSV and PNG); on 11k Hands (HandInfo.csv)
    /// the EER, TAR at FAR 1e-2 and 1e-3, rank-1 and (with --calibration) Cllr per group of
    /// images, with the counts behind each figure.
    #[command(
        after_help = "Example:\n  handid evaluate --model my-model.safetensors --split mine.json --root hands/ --out eval\n  handid evaluate --model my-model.safetensors --split 11k.json --root data/11k --calibration cal/calibration.json --out eval"
    )]
    Evaluate(retrieval_cmds::EvaluateArgs),
    /// Reproduce the paper's Table I on 11k Hands and PolyU HD (ours beside the published
    /// numbers); a rerun skips finished cells.
    #[command(
        after_help = "Example:\n  handid reproduce --root-11k data/11k --root-hd data/HD --weights-dir ~/.cache/clip-handid --out table1"
    )]
    Reproduce {
        #[command(flatten)]
        args: ReproduceArgs,
        /// Show no progress bars or messages.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Demo { args, quiet } => model_cmds::demo(&args, quiet),
        Command::Fetch(args) => data_cmds::fetch(&args),
        Command::Convert(args) => data_cmds::convert(&args),
        Command::Splits(args) => data_cmds::splits(&args),
        Command::Train(args) => model_cmds::train(&args),
        Command::Export { run, out, run_args } => model_cmds::export(&run, &out, &run_args),
        Command::Embed(args) => retrieval_cmds::embed(&args),
        Command::Index(command) => retrieval_cmds::index(&command),
        Command::Compare(args) => retrieval_cmds::compare(&args),
        Command::Calibrate(args) => retrieval_cmds::calibrate(&args),
        Command::Evaluate(args) => retrieval_cmds::evaluate(&args),
        Command::Reproduce { args, quiet } => model_cmds::reproduce(&args, quiet),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the message's own line breaks (hints) are kept out of the first line's way.
            eprintln!("error: {}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
