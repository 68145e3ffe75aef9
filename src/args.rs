//! Command-line arguments shared by the `handid` command and the examples that wrap the same
//! library calls (`quickstart`, `reproduce`), so that both parse and default alike.

use std::path::PathBuf;

use clap::Args;
use handid::demo::DemoOptions;
use handid::model::TextMode;
use handid::reproduce::{Backbone, ReproduceOptions, Scenario, WeightsSpec};

use crate::backend::BackendKind;

/// The demo's settings (`handid demo`, the `quickstart` example).
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Output directory (dataset, split manifest, training run, pictures, results).
    #[arg(long, default_value = "demo-output")]
    pub out: PathBuf,
    /// Number of synthetic identities (by default 76 train, 24 held out for the test).
    #[arg(long, default_value_t = 100)]
    pub identities: usize,
    /// Images per identity.
    #[arg(long, default_value_t = 8)]
    pub images_per_identity: usize,
    /// Training epochs (the paper's 70).
    #[arg(long, default_value_t = 70)]
    pub epochs: usize,
    /// Image encoder: resnet or vit (small models, 64 x 64 images), or a CLIP preset such as
    /// ViT-B-16 or RN50 at its real shape and image size (random weights; meant for a GPU).
    #[arg(long, default_value = "resnet")]
    pub backbone: String,
    /// Losses: clip-handid (ID + image-text contrastive) or fine-tune (ID only).
    #[arg(long, default_value = "clip-handid")]
    pub scenario: handid::train::Scenario,
    /// Adam's coupled L2 weight decay (the paper's 5e-4).
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Base learning rate after warm-up (the paper's 5e-6 is for fine-tuning pretrained CLIP;
    /// this model is trained from scratch).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning rate of the new layers (necks, classifiers, inversion network) as a multiple of
    /// the image encoder's: the paper's 10.
    #[arg(long, default_value_t = 10.0)]
    pub new_layer_lr_factor: f64,
    /// Colour jitter strength in training: brightness, contrast and saturation (the paper's 0.1).
    #[arg(long, default_value_t = 0.1)]
    pub color_jitter: f64,
    /// Images per optimiser step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Fraction of the identities used for training; the others are held out for the test.
    #[arg(long, default_value_t = 0.76)]
    pub train_fraction: f64,
    /// Seed of the data, the split, the initialisation and the training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Backend: flex (CPU), wgpu or cuda (the latter two need the Cargo feature of that name).
    #[arg(long, default_value_t = BackendKind::default_compiled())]
    pub backend: BackendKind,
}

impl DemoArgs {
    /// The library's options.
    pub fn options(&self) -> DemoOptions {
        DemoOptions {
            out: self.out.clone(),
            identities: self.identities,
            images_per_identity: self.images_per_identity,
            epochs: self.epochs,
            backbone: self.backbone.clone(),
            scenario: self.scenario,
            weight_decay: self.weight_decay,
            lr: self.lr,
            new_layer_lr_factor: self.new_layer_lr_factor,
            color_jitter: self.color_jitter,
            batch_size: self.batch_size,
            train_fraction: self.train_fraction,
            seed: self.seed,
        }
    }
}

/// Table I's settings (`handid reproduce`, the `reproduce` example).
#[derive(Args, Debug, Clone)]
pub struct ReproduceArgs {
    /// 11k Hands root (HandInfo.csv and Hands/).
    #[arg(long)]
    pub root_11k: Option<PathBuf>,
    /// PolyU HD root (folders 1-501 and 502-712).
    #[arg(long)]
    pub root_hd: Option<PathBuf>,
    /// zero-shot, fine-tune, clip-handid or all.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// vit-b-16, rn50 or all.
    #[arg(long, default_value = "all")]
    pub backbone: String,
    /// ViT-B/16 weights (safetensors from `handid fetch` / `handid convert`).
    #[arg(long)]
    pub weights_vit_b_16: Option<PathBuf>,
    /// RN50 weights (safetensors from `handid fetch` / `handid convert`).
    #[arg(long)]
    pub weights_rn50: Option<PathBuf>,
    /// Directory holding ViT-B-16.safetensors and RN50.safetensors (as `handid fetch` names
    /// them), for the backbones without their own flag.
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "reproduce-output")]
    pub out: PathBuf,
    /// Seed of the splits and of training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Monte Carlo query/gallery runs.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Training epochs (default: the paper's 70).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training batch size (default: the paper's 20 for ViT-B/16, 4 for RN50).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// CLIP-HandID text branch: paper (gradients through the frozen text encoder) or reference
    /// (the authors' code).
    #[arg(long, default_value = "paper")]
    pub text_mode: TextMode,
    /// Go on when the split counts differ from the published ones (e.g. a partial copy).
    #[arg(long)]
    pub allow_count_mismatch: bool,
    /// Backend: flex (CPU), wgpu or cuda (the latter two need the Cargo feature of that name).
    #[arg(long, default_value_t = BackendKind::default_compiled())]
    pub backend: BackendKind,
}

fn choices<T: std::str::FromStr<Err = String> + Copy>(value: &str, all: &[T]) -> Result<Vec<T>, String> {
    if value == "all" { Ok(all.to_vec()) } else { Ok(vec![value.parse()?]) }
}

impl ReproduceArgs {
    /// The library's options; an error names the missing weights flag.
    pub fn options(&self) -> Result<ReproduceOptions, String> {
        let scenarios = choices(&self.scenario, &Scenario::ALL)?;
        let backbones = choices(&self.backbone, &Backbone::ALL)?;
        let mut weights = Vec::new();
        for backbone in backbones {
            let (flag, given) = match backbone {
                Backbone::VitB16 => ("--weights-vit-b-16", &self.weights_vit_b_16),
                Backbone::Rn50 => ("--weights-rn50", &self.weights_rn50),
            };
            let path = match (given, &self.weights_dir) {
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
            root_11k: self.root_11k.clone(),
            root_hd: self.root_hd.clone(),
            scenarios,
            weights,
            out: self.out.clone(),
            seed: self.seed,
            runs: self.runs,
            epochs: self.epochs,
            batch_size: self.batch_size,
            text_mode: self.text_mode,
            allow_count_mismatch: self.allow_count_mismatch,
        })
    }
}
