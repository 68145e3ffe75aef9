//! The CLIP model (OpenAI `clip/model.py::CLIP`): image tower, text tower, logit scale.

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;

use crate::config::ClipConfig;
use crate::error::ClipError;
use crate::text::TextTransformer;
use crate::vision::{ImageEncoder, VisionOutput};
use crate::weights::{Checkpoint, KeyMap, WeightsError};

/// A CLIP model with OpenAI's parameter layout.
#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    /// Image encoder (`visual.*`).
    pub visual: ImageEncoder<B>,
    /// Text encoder (top-level `transformer.*`, `token_embedding`, ... in OpenAI's naming).
    pub text: TextTransformer<B>,
    /// Log of the contrastive temperature's inverse (unused by CLIP-HandID, kept for completeness).
    pub logit_scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> Clip<B> {
    /// Builds a model with default initialisation (load weights before use).
    pub fn new(config: &ClipConfig, device: &B::Device) -> Self {
        Self {
            visual: ImageEncoder::new(&config.vision, config.embed_dim, device),
            text: TextTransformer::new(&config.text, config.embed_dim, device),
            logit_scale: Param::from_tensor(Tensor::from_floats([(1.0f32 / 0.07).ln()], device)),
        }
    }

    /// Loads a safetensors file in OpenAI's naming (OpenAI's or open_clip's key names) or in
    /// Hugging Face transformers' CLIP naming, inferring the architecture from the tensor
    /// shapes as OpenAI's loader does. Same as [`from_file`](Self::from_file).
    pub fn from_safetensors(path: &Path, device: &B::Device) -> Result<(Self, ClipConfig), ClipError> {
        Self::from_file(path, device)
    }

    /// Loads any supported checkpoint file: safetensors (OpenAI or Hugging Face naming), an
    /// OpenAI TorchScript archive (`ViT-B-16.pt`) or a `torch.save` state dict, inferring the
    /// architecture from the tensor shapes (heads = width / 64, as OpenAI's loader does).
    pub fn from_file(path: &Path, device: &B::Device) -> Result<(Self, ClipConfig), ClipError> {
        let checkpoint = Checkpoint::read(path)?;
        let config = ClipConfig::infer(&checkpoint.shapes())
            .and_then(|config| config.validate().map(|()| config))
            .map_err(|reason| WeightsError::Architecture { path: path.into(), reason })?;
        let model = checkpoint.load_into(Self::new(&config, device), &KeyMap::openai())?;
        Ok((model, config))
    }

    /// Loads a checkpoint file (any format [`from_file`](Self::from_file) reads) into the
    /// architecture `config` (for checkpoints whose head counts do not follow OpenAI's
    /// width / 64 rule).
    pub fn from_safetensors_with_config(
        path: &Path,
        config: &ClipConfig,
        device: &B::Device,
    ) -> Result<Self, ClipError> {
        config.validate().map_err(|reason| ClipError::InvalidInput(format!("invalid CLIP configuration: {reason}")))?;
        let checkpoint = Checkpoint::read(path)?;
        Ok(checkpoint.load_into(Self::new(config, device), &KeyMap::openai())?)
    }

    /// The CLIP image embedding of normalised pixels `[batch, 3, h, w]` -> `[batch, embed_dim]`.
    pub fn encode_image(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        self.visual.forward(pixels).embedding
    }

    /// Image embedding and pre-projection feature.
    pub fn image_features(&self, pixels: Tensor<B, 4>) -> VisionOutput<B> {
        self.visual.forward(pixels)
    }

    /// The CLIP text embedding of token ids `[batch, context]` -> `[batch, embed_dim]`.
    pub fn encode_text(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.text.forward(ids)
    }
}
