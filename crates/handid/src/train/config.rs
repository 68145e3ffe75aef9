//! Every training hyper-parameter in one place, saved with each run.

use serde::{Deserialize, Serialize};

use super::schedule::LrSchedule;
use crate::model::TextMode;

/// What is trained (the paper's scenarios besides zero-shot, which needs no training).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// CLIP-FT: the two ID losses only.
    FineTune,
    /// CLIP-HandID: ID losses plus image-to-text and text-to-image contrastive losses.
    ClipHandId,
}

/// Training-time augmentation (docs/METHOD.md section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Resize to `[height, width]` (bicubic, aspect not kept) before cropping.
    pub resize: [u32; 2],
    /// Random crop `[height, width]` (the model input).
    pub crop: [u32; 2],
    /// Probability of a horizontal flip.
    pub flip_probability: f64,
    /// Colour jitter strength for brightness, contrast and saturation (0 = off, the
    /// authors' default; the paper names 0.1).
    pub color_jitter: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { resize: [256, 256], crop: [224, 224], flip_probability: 0.5, color_jitter: 0.0 }
    }
}

/// All hyper-parameters of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Which losses are used.
    pub scenario: Scenario,
    /// Text branch mode (CLIP-HandID only).
    pub text_mode: TextMode,
    /// Epochs.
    pub epochs: usize,
    /// Images per optimiser step (20 for ViT-B/16, 4 for RN50); the incomplete last batch is dropped.
    pub batch_size: usize,
    /// Learning-rate schedule of the image encoder.
    pub schedule: LrSchedule,
    /// Rate multiplier of the new layers (necks, classifiers, inversion network).
    pub new_layer_lr_factor: f64,
    /// Adam's coupled L2 weight decay.
    pub weight_decay: f64,
    /// Adam beta1.
    pub beta_1: f32,
    /// Adam beta2.
    pub beta_2: f32,
    /// Adam epsilon.
    pub epsilon: f32,
    /// Label smoothing of the ID losses.
    pub label_smoothing: f64,
    /// Augmentation.
    pub augment: AugmentConfig,
    /// Seed of data order, augmentation and dropout.
    pub seed: u64,
}

impl TrainConfig {
    /// The paper's settings for a batch size (20 for ViT-B/16, 4 for RN50).
    pub fn paper(batch_size: usize) -> Self {
        Self {
            scenario: Scenario::ClipHandId,
            text_mode: TextMode::Paper,
            epochs: 70,
            batch_size,
            schedule: LrSchedule::default(),
            new_layer_lr_factor: 10.0,
            weight_decay: 5e-4,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            label_smoothing: 0.1,
            augment: AugmentConfig::default(),
            seed: 42,
        }
    }

    /// The model configuration that goes with these settings: the text branch runs exactly in
    /// the CLIP-HandID scenario, in this config's text mode, on `input_size` images. The one
    /// place where scenario and text mode decide which parts of the model run.
    pub fn model_config(
        &self,
        clip: clip_burn::ClipConfig,
        num_classes: usize,
        input_size: [usize; 2],
    ) -> crate::model::HandIdConfig {
        let mut config = crate::model::HandIdConfig::new(clip, num_classes);
        config.input_size = input_size;
        config.use_text = self.scenario == Scenario::ClipHandId;
        config.text_mode = self.text_mode;
        config
    }

    /// The paper's augmentation for `size` x `size` inputs: resize by 256/224 of the side, then
    /// random crop back to `size` (256 -> 224 in the paper).
    pub fn set_input_size(&mut self, size: u32) {
        let resize = (size * 256 + 112) / 224;
        self.augment.resize = [resize, resize];
        self.augment.crop = [size, size];
    }

    /// Rejects settings that cannot run, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let a = &self.augment;
        let checks = [
            (self.epochs == 0, "epochs must be at least 1"),
            (self.batch_size < 2, "batch_size must be at least 2 (batch statistics and contrastive pairs)"),
            (a.crop.contains(&0) || a.resize.contains(&0), "augment sizes must be positive"),
            (a.crop[0] > a.resize[0] || a.crop[1] > a.resize[1], "augment.crop must fit inside augment.resize"),
            (!(0.0..=1.0).contains(&a.flip_probability), "augment.flip_probability must be in [0, 1]"),
            (!(0.0..1.0).contains(&a.color_jitter), "augment.color_jitter must be in [0, 1)"),
            (!(0.0..1.0).contains(&self.label_smoothing), "label_smoothing must be in [0, 1)"),
            (!(self.schedule.base_lr > 0.0 && self.schedule.base_lr.is_finite()), "schedule.base_lr must be positive"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, message)) => Err(message.to_string()),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    /// `clip-handid` or `fine-tune`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "clip-handid" => Ok(Self::ClipHandId),
            "fine-tune" => Ok(Self::FineTune),
            other => Err(format!("unknown scenario `{other}`; expected clip-handid or fine-tune")),
        }
    }
}

impl std::str::FromStr for TextMode {
    type Err = String;
    /// `paper` or `reference`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "paper" => Ok(Self::Paper),
            "reference" => Ok(Self::Reference),
            other => Err(format!("unknown text mode `{other}`; expected paper or reference")),
        }
    }
}
