//! The CLIP-HandID model (paper section III; docs/METHOD.md section 1): a CLIP image encoder in
//! its re-identification variant, BN necks and ID classifiers on the pre-projection and the
//! projected image features, and the text branch: an inversion network maps each image to a
//! pseudo-word S* that the frozen CLIP text encoder reads in "A photo of a S* hand".

mod dropout;
mod encoder;
mod inversion;
mod neck;
mod prompt;

pub use dropout::{MaskGenerator, SeededDropout};
pub use encoder::{EncoderArchitecture, ReidEncoder};
pub use inversion::InversionNetwork;
pub use neck::{BnNeck, classifier};
pub use prompt::{PLACEHOLDER, PROMPT, Prompt};

use burn::backend::Flex;
use burn::nn::Linear;
use burn::prelude::*;
use clip_burn::text::TextTransformer;
use clip_burn::tokenizer::ClipTokenizer;
use clip_burn::vision::ImageEncoder;
use clip_burn::{Clip, ClipConfig, ClipError};
use serde::{Deserialize, Serialize};

/// Errors building a CLIP-HandID model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The CLIP backbone could not be built or loaded.
    #[error(transparent)]
    Clip(#[from] ClipError),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] clip_burn::tokenizer::TokenizerError),
    /// The prompt has no usable placeholder.
    #[error("invalid prompt: {0}")]
    InvalidPrompt(String),
    /// An impossible configuration.
    #[error("invalid model configuration: {0}")]
    Config(String),
}

/// How the text branch is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextMode {
    /// The paper: S* replaces the placeholder embedding and gradients flow through the frozen
    /// text encoder into the inversion network and the image encoder.
    #[default]
    Paper,
    /// The authors' code: computed without gradient, with the *mean* of S* written into every
    /// slot of the placeholder embedding; the inversion network never learns.
    Reference,
}

/// Architecture and head settings of a CLIP-HandID model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandIdConfig {
    /// The CLIP backbone.
    pub clip: ClipConfig,
    /// Number of training identities (classifier outputs).
    pub num_classes: usize,
    /// Input `[height, width]` (224 x 224 in the paper).
    pub input_size: [usize; 2],
    /// ViT patch stride (the patch size means non-overlapping patches).
    pub vit_stride: usize,
    /// Stride of the ResNet's layer4 (1 for re-identification, 2 in CLIP).
    pub resnet_last_stride: usize,
    /// Whether the text branch is used (false: the fine-tune-only baseline).
    pub use_text: bool,
    /// Paper or reference text branch.
    pub text_mode: TextMode,
}

impl HandIdConfig {
    /// The paper's settings for a backbone: 224 x 224, ViT stride = patch size, ResNet layer4
    /// stride 1, text branch on in paper mode.
    pub fn new(clip: ClipConfig, num_classes: usize) -> Self {
        let vit_stride = match &clip.vision {
            clip_burn::VisionConfig::Vit(v) => v.patch_size,
            clip_burn::VisionConfig::ResNet(_) => 16,
        };
        Self {
            clip,
            num_classes,
            input_size: [224, 224],
            vit_stride,
            resnet_last_stride: 1,
            use_text: true,
            text_mode: TextMode::Paper,
        }
    }
}

/// Everything one training forward pass produces.
#[derive(Debug, Clone)]
pub struct HandIdOutput<B: Backend> {
    /// Projected image features before the BN neck `[batch, embed_dim]` (used by the
    /// contrastive losses).
    pub projected: Tensor<B, 2>,
    /// Logits of the classifier on the pre-projection feature `[batch, classes]`.
    pub logits_features: Tensor<B, 2>,
    /// Logits of the classifier on the projected feature `[batch, classes]`.
    pub logits_projected: Tensor<B, 2>,
    /// Text features of "A photo of a S* hand" per image `[batch, embed_dim]`, when the text
    /// branch is on.
    pub text: Option<Tensor<B, 2>>,
    /// Retrieval feature: both BN'd features concatenated `[batch, feature + embed_dim]`.
    pub retrieval: Tensor<B, 2>,
}

/// The CLIP-HandID model.
#[derive(Module, Debug)]
pub struct HandIdModel<B: Backend> {
    /// CLIP image encoder (re-identification variant), fine-tuned.
    pub image_encoder: ImageEncoder<B>,
    /// CLIP text encoder, frozen.
    pub text_encoder: TextTransformer<B>,
    /// Image embedding -> pseudo-token.
    pub inversion: InversionNetwork<B>,
    /// BN neck on the pre-projection feature.
    pub neck_features: BnNeck<B>,
    /// BN neck on the projected feature.
    pub neck_projected: BnNeck<B>,
    /// ID classifier on the BN'd pre-projection feature.
    pub classifier_features: Linear<B>,
    /// ID classifier on the BN'd projected feature.
    pub classifier_projected: Linear<B>,
    /// The tokenized prompt.
    #[module(skip)]
    pub prompt: Prompt,
    /// Text branch settings.
    #[module(skip)]
    pub text_mode: TextMode,
    /// Whether the text branch runs.
    pub use_text: bool,
}

/// The layers CLIP-HandID adds to CLIP, freshly initialised.
#[derive(Module, Debug)]
struct NewLayers<B: Backend> {
    inversion: InversionNetwork<B>,
    necks: (BnNeck<B>, BnNeck<B>),
    classifiers: (Linear<B>, Linear<B>),
}

impl<B: Backend> NewLayers<B> {
    /// The inversion network, the BN necks and the classifiers for `config`.
    fn new(config: &HandIdConfig, device: &B::Device) -> Self {
        let (embed, features, classes) =
            (config.clip.embed_dim, config.clip.vision.feature_width(), config.num_classes);
        Self {
            inversion: InversionNetwork::new(embed, config.clip.text.width, device),
            necks: (BnNeck::new(features, device), BnNeck::new(embed, device)),
            classifiers: (classifier(features, classes, device), classifier(embed, classes, device)),
        }
    }
}

impl<B: Backend> HandIdModel<B> {
    /// Builds the model around a CLIP model (pretrained or not): the image encoder is turned
    /// into its re-identification variant, the text encoder is frozen, new layers initialised.
    pub fn from_clip(clip: Clip<B>, config: &HandIdConfig, device: &B::Device) -> Result<Self, ModelError> {
        Self::with_new_layers(clip, config, NewLayers::new(config, device))
    }

    /// The model around `clip` with the given new layers.
    fn with_new_layers(clip: Clip<B>, config: &HandIdConfig, layers: NewLayers<B>) -> Result<Self, ModelError> {
        if config.num_classes == 0 {
            return Err(ModelError::Config("num_classes must be at least 1".into()));
        }
        let image_encoder = match clip.visual {
            ImageEncoder::Vit(vit) => ImageEncoder::Vit(vit.into_reid(config.vit_stride, config.input_size)?),
            ImageEncoder::ResNet(resnet) => {
                ImageEncoder::ResNet(resnet.into_reid(config.resnet_last_stride, config.input_size)?)
            }
        };
        let prompt = Prompt::hand(&ClipTokenizer::new()?)?;
        if prompt.ids.len() > config.clip.text.context_length {
            return Err(ModelError::Config("the prompt is longer than the text context".into()));
        }
        if let Some(&id) = prompt.ids.iter().find(|&&id| id as usize >= config.clip.text.vocab_size) {
            return Err(ModelError::Config(format!(
                "the prompt's token id {id} is outside the text vocabulary of {}",
                config.clip.text.vocab_size
            )));
        }
        let NewLayers { inversion, necks: (neck_features, neck_projected), classifiers } = layers;
        let (classifier_features, classifier_projected) = classifiers;
        Ok(Self {
            image_encoder,
            text_encoder: clip.text.no_grad(),
            inversion,
            neck_features,
            neck_projected,
            classifier_features,
            classifier_projected,
            prompt,
            text_mode: config.text_mode,
            use_text: config.use_text,
        })
    }

    /// A randomly initialised model drawn from the backend's own generator (tests,
    /// synthetic-data demos); [`seeded`](Self::seeded) gives the same weights on every backend.
    pub fn new(config: &HandIdConfig, device: &B::Device) -> Result<Self, ModelError> {
        // Building layers of impossible sizes would panic inside Burn.
        config.clip.validate().map_err(|e| ModelError::Config(format!("invalid CLIP configuration: {e}")))?;
        Self::from_clip(Clip::new(&config.clip, device), config, device)
    }

    /// A randomly initialised model whose weights depend only on `seed`: drawn on the CPU
    /// backend and copied to `device`, so that `flex`, `wgpu` and `cuda` start from the same
    /// model (see [`clip_burn::init::seeded`]).
    pub fn seeded(config: &HandIdConfig, seed: u64, device: &B::Device) -> Result<Self, ModelError> {
        config.clip.validate().map_err(|e| ModelError::Config(format!("invalid CLIP configuration: {e}")))?;
        let clip =
            clip_burn::init::seeded(seed, |cpu| Clip::new(&config.clip, cpu), || Clip::new(&config.clip, device))?;
        Self::from_clip_seeded(clip, config, seed, device)
    }

    /// As [`from_clip`](Self::from_clip), with the new layers (inversion network, BN necks,
    /// classifiers) initialised from `seed` the same way on every backend.
    pub fn from_clip_seeded(
        clip: Clip<B>,
        config: &HandIdConfig,
        seed: u64,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        // Another stream than the one a seeded CLIP model was drawn from.
        let layers = clip_burn::init::seeded(
            seed ^ 0x9e37_79b9_7f4a_7c15,
            |cpu| NewLayers::<Flex>::new(config, cpu),
            || NewLayers::new(config, device),
        )?;
        Self::with_new_layers(clip, config, layers)
    }

    /// Restarts the dropout masks' stream at `seed`: the masks drawn afterwards depend only on
    /// `seed`, not on the backend (the trainer calls it once per epoch).
    pub fn seed_dropout(&self, seed: u64) {
        self.inversion.dropout.reseed(seed);
    }

    /// The training forward pass on normalised pixels `[batch, 3, h, w]`.
    pub fn forward(&self, pixels: Tensor<B, 4>) -> HandIdOutput<B> {
        let vision = self.image_encoder.forward(pixels);
        let bn_features = self.neck_features.forward(vision.features); // [batch, feature]
        let bn_projected = self.neck_projected.forward(vision.embedding.clone()); // [batch, embed]
        let text = self.use_text.then(|| self.text_features(vision.embedding.clone()));
        HandIdOutput {
            logits_features: self.classifier_features.forward(bn_features.clone()),
            logits_projected: self.classifier_projected.forward(bn_projected.clone()),
            retrieval: Tensor::cat(vec![bn_features, bn_projected], 1),
            projected: vision.embedding,
            text,
        }
    }

    /// The retrieval feature (both BN'd features concatenated), without the text branch.
    pub fn retrieval_features(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        let vision = self.image_encoder.forward(pixels);
        let bn_features = self.neck_features.forward(vision.features);
        let bn_projected = self.neck_projected.forward(vision.embedding);
        Tensor::cat(vec![bn_features, bn_projected], 1) // [batch, feature + embed]
    }

    /// Logits of the projected-feature classifier (used for validation accuracy).
    pub fn classify(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        let projected = self.image_encoder.forward(pixels).embedding;
        self.classifier_projected.forward(self.neck_projected.forward(projected)) // [batch, classes]
    }

    /// Text features of the prompt with each image's pseudo-token, from projected image
    /// features `[batch, embed]` -> `[batch, embed]`.
    pub fn text_features(&self, projected: Tensor<B, 2>) -> Tensor<B, 2> {
        let device = projected.device();
        let batch = projected.dims()[0];
        let prompt = &self.prompt;
        let embeddings = prompt.embeddings(&self.text_encoder, &device); // [1, context, width]
        let end = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![prompt.end as i64; batch], [batch]), &device);
        let tokens = self.inversion.forward(projected); // [batch, width]
        match self.text_mode {
            TextMode::Paper => self.text_encoder.forward_embeddings(prompt.substitute(embeddings, tokens), end),
            TextMode::Reference => {
                let width = tokens.dims()[1];
                let mean = tokens.detach().mean_dim(1).expand([batch, width]); // the scalar mean in every slot
                let substituted = prompt.substitute(embeddings.detach(), mean);
                self.text_encoder.forward_embeddings(substituted, end).detach()
            }
        }
    }
}
