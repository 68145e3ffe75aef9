//! The demo: CLIP-HandID end to end on synthetic hands, no download needed.
//!
//! Generates a folder-per-identity dataset of synthetic hands (identity: hand shape, tone,
//! creases, marks; per image: pose, light, background, noise), splits it with the real protocol
//! machinery (held-out test identities, one validation image per training identity, 10 Monte
//! Carlo gallery/query runs), builds a small CLIP-HandID model (tiny ModifiedResNet and text
//! tower, random initialisation), evaluates it untrained, trains it, evaluates it again with the
//! protocol's flip-sum features and metrics, and draws the ranked candidates of a few queries.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use handid::demo::{DemoOptions, run_demo};
//! use handid::progress::Silent;
//! # fn main() -> Result<(), String> {
//! let options = DemoOptions { epochs: 5, ..DemoOptions::default() };
//! let summary = run_demo::<Flex>(&options, &Default::default(), &mut Silent)?;
//! println!("held-out rank-1 {:.3} (untrained {:.3})", summary.rank1(), summary.rank1_untrained());
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::prelude::*;
use clip_burn::preprocess::Transform;
use clip_burn::{ClipConfig, ResNetConfig, TextConfig, VisionConfig, VitConfig};
use serde::Serialize;

use crate::data::{FolderDataset, FolderSplitOptions, SyntheticHands};
use crate::eval::MetricSummary;
use crate::model::HandIdModel;
use crate::progress::Observer;
use crate::retrieval::evaluate_extractor;
use crate::train::{ImageRef, LabeledImages, LrSchedule, Scenario, TrainConfig, TrainOptions, train_observed};

/// Side of the small models' images.
const SMALL_SIZE: usize = 64;

/// The demo's settings; the defaults are the documented run.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// Output directory (dataset, split manifest, training run, pictures, results).
    pub out: PathBuf,
    /// Number of synthetic identities (by default 76 train, 24 held out for the test).
    pub identities: usize,
    /// Images per identity.
    pub images_per_identity: usize,
    /// Training epochs (the paper's 70).
    pub epochs: usize,
    /// Image encoder: `resnet` or `vit` (small models, 64 x 64 images), or a CLIP preset such as
    /// `ViT-B-16` or `RN50` at its real shape and image size (random weights; meant for a GPU).
    pub backbone: String,
    /// Which losses run.
    pub scenario: Scenario,
    /// Adam's coupled L2 weight decay (the paper's 5e-4).
    pub weight_decay: f64,
    /// Base learning rate after warm-up (larger than the paper's 5e-6: nothing is pretrained).
    pub lr: f64,
    /// Learning rate of the new layers as a multiple of the image encoder's (the paper's 10).
    pub new_layer_lr_factor: f64,
    /// Colour jitter strength in training (the paper's 0.1).
    pub color_jitter: f64,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Fraction of the identities used for training; the others are held out for the test.
    pub train_fraction: f64,
    /// Seed of the data, the split, the initialisation and the training.
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("demo-output"),
            identities: 100,
            images_per_identity: 8,
            epochs: 70,
            backbone: "resnet".into(),
            scenario: Scenario::ClipHandId,
            weight_decay: 5e-4,
            lr: 1e-3,
            new_layer_lr_factor: 10.0,
            color_jitter: 0.1,
            batch_size: 16,
            train_fraction: 0.76,
            seed: 42,
        }
    }
}

/// What a demo run measured on the held-out identities (over the Monte Carlo runs).
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// The trained model's metrics.
    pub trained: MetricSummary,
    /// The same model's metrics before training.
    pub untrained: MetricSummary,
    /// Held-out identities.
    pub test_identities: usize,
    /// Training identities.
    pub train_identities: usize,
    /// The selected epoch (0-based) of `epochs`.
    pub selected_epoch: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// The training run's directory.
    pub run_dir: PathBuf,
    /// The ranked-candidate picture.
    pub rankings_png: PathBuf,
    /// Wall time of the whole run.
    pub seconds: f64,
}

impl DemoSummary {
    /// Mean rank-1 of the trained model.
    pub fn rank1(&self) -> f64 {
        self.trained.rank1.mean
    }

    /// Mean rank-1 before training.
    pub fn rank1_untrained(&self) -> f64 {
        self.untrained.rank1.mean
    }

    /// The results as a small text table (untrained and trained; rank-1 and both mAPs, mean
    /// and standard deviation over the runs), with the selected epoch and the output paths.
    pub fn table(&self) -> String {
        let mut text = format!(
            "synthetic hands, {} held-out identities, {} Monte Carlo runs (mean +- std):\n",
            self.test_identities, self.trained.n_runs
        );
        text.push_str(&format!("  {:<10} {:>16} {:>16} {:>16}\n", "", "rank-1", "mAP (published)", "mAP (standard)"));
        for (name, s) in [("untrained", &self.untrained), ("trained", &self.trained)] {
            text.push_str(&format!(
                "  {name:<10} {:>7.3} +- {:.3} {:>7.3} +- {:.3} {:>7.3} +- {:.3}\n",
                s.rank1.mean,
                s.rank1.std,
                s.map_interpolated.mean,
                s.map_interpolated.std,
                s.map_standard.mean,
                s.map_standard.std
            ));
        }
        text.push_str(&format!(
            "selected epoch {} of {}; run directory {}\nranked candidates: {} (green = same identity)",
            self.selected_epoch + 1,
            self.epochs,
            self.run_dir.display(),
            self.rankings_png.display()
        ));
        text
    }

    /// The JSON line the command prints last: `rank1`, `map`, `rank1_untrained`, `seconds`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "rank1": self.rank1(),
            "map": self.trained.map_interpolated.mean,
            "rank1_untrained": self.rank1_untrained(),
            "seconds": self.seconds,
        })
    }
}

/// The model behind `backbone`: `resnet` and `vit` are small CLIPs for 64 x 64 images with a
/// one-layer text tower over the real vocabulary; a preset name gives that CLIP at its real
/// shape and image size, randomly initialised.
pub fn demo_model_config(backbone: &str) -> Result<ClipConfig, String> {
    let vision = match backbone {
        "resnet" => {
            VisionConfig::ResNet(ResNetConfig { layers: [1, 1, 1, 1], width: 16, heads: 8, image_size: SMALL_SIZE })
        }
        "vit" => VisionConfig::Vit(VitConfig { layers: 3, width: 96, heads: 4, patch_size: 8, image_size: SMALL_SIZE }),
        preset => {
            return ClipConfig::preset(preset)
                .map_err(|e| format!("unknown backbone `{preset}`: expected resnet, vit or a CLIP preset ({e})"));
        }
    };
    let text = TextConfig { context_length: 77, vocab_size: 49408, width: 64, heads: 2, layers: 1 };
    Ok(ClipConfig { embed_dim: 64, vision, text })
}

/// Runs the whole demo on backend `B` (training on `Autodiff<B>`), reporting to `observer`;
/// writes into `options.out` the data, `splits.json`, the run, `results.json`, the
/// verification figures and `rankings.csv` / `rankings.png`.
pub fn run_demo<B: Backend>(
    options: &DemoOptions,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<DemoSummary, String> {
    let started = Instant::now();
    let out = &options.out;
    // Settings and the output directory are checked before minutes of work, not after. The
    // default run writes about 20 MB (images, checkpoints, pictures).
    let clip_config = demo_model_config(&options.backbone)?;
    let size = clip_config.vision.image_size();
    let side = size as u32;
    let test_transform = Transform::Reid { height: side, width: side };
    clip_burn::io::check_output_dir(out, 64 << 20)
        .map_err(|e| format!("{}: cannot write the results there: {e}", out.display()))?;
    let data_root = out.join("data");
    let synthetic = SyntheticHands {
        identities: options.identities,
        images_per_identity: options.images_per_identity,
        size: side,
        seed: options.seed,
    };
    observer.message(&format!(
        "generating {} identities x {} synthetic hands in {}",
        options.identities,
        options.images_per_identity,
        data_root.display()
    ));
    let _ = std::fs::remove_dir_all(&data_root);
    synthetic.write_folders(&data_root).map_err(|e| e.to_string())?;

    let dataset = FolderDataset::open(&data_root).map_err(|e| e.to_string())?;
    let manifest = dataset
        .split(options.seed, &FolderSplitOptions { train_fraction: options.train_fraction, runs: 10 })
        .map_err(|e| e.to_string())?;
    manifest.save(&out.join("splits.json")).map_err(|e| e.to_string())?;
    let subset = &manifest.subsets[0];
    let classes = subset.train_classes();
    let images =
        |entries: &[crate::data::Entry]| entries.iter().map(|e| ImageRef::Path(e.full_path(&data_root))).collect();
    let train_data = LabeledImages { images: images(&subset.train), labels: classes.train.clone() };
    let val_data = LabeledImages { images: images(&subset.val), labels: classes.val.clone() };
    let summary = subset.summary();
    observer.message(&format!(
        "split: {} training identities ({} images, {} for validation); held-out: {} gallery / {} query images per run, 10 runs",
        classes.identities.len(),
        train_data.len(),
        val_data.len(),
        summary.gallery_images,
        summary.query_images
    ));

    let mut train_config = TrainConfig::paper(options.batch_size);
    train_config.epochs = options.epochs;
    // Trained from scratch, not fine-tuned: larger rates than the paper's 5e-6.
    train_config.schedule = LrSchedule {
        base_lr: options.lr,
        warmup_epochs: 3,
        warmup_factor: 0.1,
        milestones: vec![options.epochs * 2 / 3],
        gamma: 0.2,
    };
    train_config.new_layer_lr_factor = options.new_layer_lr_factor;
    // Resize by 1/8 of the side, then crop back (the paper: 256 -> 224).
    let resize = side + side / 8;
    train_config.augment.resize = [resize, resize];
    train_config.augment.crop = [side, side];
    train_config.augment.color_jitter = options.color_jitter;
    train_config.seed = options.seed;
    train_config.weight_decay = options.weight_decay;
    train_config.scenario = options.scenario;
    train_config.validate()?;

    type AD<B> = Autodiff<B>;
    let config = train_config.model_config(clip_config, classes.identities.len(), [size, size]);
    // The same seed gives the same initial model on every backend.
    let model = HandIdModel::<AD<B>>::seeded(&config, options.seed, device).map_err(|e| e.to_string())?;

    let untrained = {
        let valid = model.valid();
        let extractor = |pixels: Tensor<B, 4>| valid.retrieval_features(pixels);
        evaluate_extractor(&extractor, &test_transform, &manifest, &data_root, device, observer)
            .map_err(|e| e.to_string())?
    };
    let u = untrained.report.subsets[0].summary.clone();
    observer.message(&format!(
        "untrained: rank-1 {:.3}, mAP {:.3} (held-out identities)",
        u.rank1.mean, u.map_interpolated.mean
    ));

    let run_dir = out.join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    let train_options = TrainOptions { output_dir: run_dir.clone(), stop_after_epochs: None };
    let outcome = train_observed(model, &train_data, &val_data, &train_config, &train_options, device, observer)
        .map_err(|e| e.to_string())?;

    let trained_model = outcome.model.valid();
    let extractor = |pixels: Tensor<B, 4>| trained_model.retrieval_features(pixels);
    let trained = evaluate_extractor(&extractor, &test_transform, &manifest, &data_root, device, observer)
        .map_err(|e| e.to_string())?;
    trained.report.save_json(&out.join("results.json")).map_err(|e| e.to_string())?;
    trained.write_figures(out, &data_root).map_err(|e| e.to_string())?;
    Ok(DemoSummary {
        trained: trained.report.subsets[0].summary.clone(),
        untrained: u,
        test_identities: summary.test_identities,
        train_identities: classes.identities.len(),
        selected_epoch: outcome.selected_epoch,
        epochs: options.epochs,
        run_dir,
        rankings_png: out.join("rankings.png"),
        seconds: started.elapsed().as_secs_f64(),
    })
}
