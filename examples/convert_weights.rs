//! Converts a CLIP checkpoint brought by hand to an OpenAI-named safetensors file.
//!
//! ```text
//! cargo run --release --example convert_weights -- --from ViT-B-16.pt --to ViT-B-16.safetensors
//! ```
//! Reads OpenAI's TorchScript archives (`RN50.pt`, `ViT-B-16.pt`), `torch.save` state dicts
//! (also checkpoints holding one, e.g. `{"state_dict": ..., "epoch": ...}`; `--key` picks the
//! dictionary), and safetensors in OpenAI's or Hugging Face transformers' naming. Tensors keep
//! their stored dtype unless `--f32` is given; the loader converts f16 to f32 either way.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clip_handid::clip::weights::{ConvertOptions, Precision, convert_to_safetensors};
use clip_handid::clip::{Clip, VisionConfig};

/// Convert a CLIP checkpoint to safetensors with OpenAI's tensor names.
#[derive(Parser, Debug)]
struct Args {
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

fn run(args: Args) -> Result<(), String> {
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
            let (_, loaded) = Clip::<burn::backend::Flex>::from_file(&args.to, &Default::default())
                .map_err(|e| format!("the converted file does not load as CLIP: {e}"))?;
            debug_assert_eq!(&loaded, config);
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

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
