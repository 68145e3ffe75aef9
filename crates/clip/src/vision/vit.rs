//! Vision Transformer image encoder (OpenAI `clip/model.py::VisionTransformer`, open_clip
//! `transformer.py::VisionTransformer`), with CLIP-ReID's configurable patch stride.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::{VisionOutput, resized_position_param};
use crate::attention::{Transformer, TransformerConfig};
use crate::config::VitConfig;
use crate::error::ClipError;
use crate::init::normal;
use crate::trace::Trace;

/// ViT image encoder.
#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    /// Patch embedding, `[width, 3, patch, patch]`, no bias.
    pub conv1: Conv2d<B>,
    /// Learned class token `[width]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// Position embedding `[1 + grid_height * grid_width, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// Norm before the transformer.
    pub ln_pre: LayerNorm<B>,
    /// Transformer blocks.
    pub transformer: Transformer<B>,
    /// Norm after the transformer.
    pub ln_post: LayerNorm<B>,
    /// Projection into the joint embedding space `[width, embed_dim]`.
    pub proj: Param<Tensor<B, 2>>,
    /// Patch rows the position embedding is laid out for.
    pub grid_height: usize,
    /// Patch columns the position embedding is laid out for.
    pub grid_width: usize,
}

/// Everything the ViT computes for a batch.
#[derive(Debug, Clone)]
pub struct VitTokens<B: Backend> {
    /// All tokens after `ln_post` `[batch, 1 + patches, width]`; token 0 is the class token.
    pub tokens: Tensor<B, 3>,
    /// The class token `[batch, width]`.
    pub pooled: Tensor<B, 2>,
    /// The class token projected `[batch, embed_dim]`.
    pub embedding: Tensor<B, 2>,
}

impl<B: Backend> VitTokens<B> {
    pub(crate) fn output(self) -> VisionOutput<B> {
        VisionOutput { features: self.pooled, embedding: self.embedding }
    }
}

impl<B: Backend> VisionTransformer<B> {
    /// Builds an encoder with default initialisation.
    pub fn new(config: &VitConfig, embed_dim: usize, device: &B::Device) -> Self {
        let (w, p) = (config.width, config.patch_size);
        let grid = config.image_size / p;
        let std = (w as f64).powf(-0.5); // open_clip `transformer.py::VisionTransformer`
        Self {
            conv1: Conv2dConfig::new([3, w], [p, p]).with_stride([p, p]).with_bias(false).init(device),
            class_embedding: normal([w], std, device),
            positional_embedding: normal([1 + grid * grid, w], std, device),
            ln_pre: LayerNormConfig::new(w).init(device),
            transformer: TransformerConfig::new(w, config.layers, config.heads).init(device),
            ln_post: LayerNormConfig::new(w).init(device),
            proj: normal([w, embed_dim], std, device),
            grid_height: grid,
            grid_width: grid,
        }
    }

    /// The re-identification variant (CLIP-ReID): patches taken every `stride` pixels from an
    /// input of `image_size = [height, width]`, with the position-embedding grid resized
    /// bilinearly to the new patch grid. At the checkpoint's own size and stride it is a no-op.
    pub fn into_reid(mut self, stride: usize, image_size: [usize; 2]) -> Result<Self, ClipError> {
        let patch = self.conv1.kernel_size[0];
        if stride == 0 || image_size[0] < patch || image_size[1] < patch {
            return Err(ClipError::InvalidInput(format!(
                "ViT with {patch}x{patch} patches needs a stride >= 1 and an input of at least {patch}x{patch}, \
                 got stride {stride} and {}x{}",
                image_size[0], image_size[1]
            )));
        }
        let grid = image_size.map(|side| (side - patch) / stride + 1);
        let from = [self.grid_height, self.grid_width];
        self.positional_embedding = resized_position_param(self.positional_embedding, from, grid);
        self.conv1.stride = [stride, stride];
        [self.grid_height, self.grid_width] = grid;
        Ok(self)
    }

    /// The smallest input height and width that produce this encoder's patch grid.
    pub fn input_size(&self) -> [usize; 2] {
        let [patch, stride] = [self.conv1.kernel_size[0], self.conv1.stride[0]];
        [self.grid_height, self.grid_width].map(|g| (g - 1) * stride + patch)
    }

    /// Projects tokens or features `[..., width]` into the embedding space.
    pub fn project<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        x.matmul(self.proj.val().unsqueeze())
    }

    /// Encodes normalised pixels `[batch, 3, height, width]`.
    pub fn forward(&self, pixels: Tensor<B, 4>) -> VitTokens<B> {
        self.forward_traced(pixels, None)
    }

    /// As [`forward`](Self::forward), recording `vision.*` activations into `trace`.
    pub fn forward_traced(&self, pixels: Tensor<B, 4>, mut trace: Option<&mut Trace>) -> VitTokens<B> {
        let x = self.tokens_pre(pixels, trace.as_deref_mut());
        let [batch, _, width] = x.dims();
        let x = self.transformer.forward(x, false, "vision", trace.as_deref_mut());
        let tokens = crate::fused::layer_norm(&self.ln_post, x);
        let pooled = tokens.clone().narrow(1, 0, 1).reshape([batch, width]); // [batch, width]
        let embedding = pooled.clone().matmul(self.proj.val()); // [batch, embed_dim]
        if let Some(t) = trace {
            t.record("vision.tokens_post", &tokens);
            t.record("vision.pooled", &pooled);
        }
        VitTokens { tokens, pooled, embedding }
    }

    /// The class token and its embedding only (what [`forward`](Self::forward) returns as
    /// `pooled` and `embedding`), with the last block computed for the class token alone
    /// ([`Transformer::forward_at`](crate::attention::Transformer::forward_at)): what
    /// [`ImageEncoder::forward`](super::ImageEncoder::forward) runs.
    pub fn embed(&self, pixels: Tensor<B, 4>) -> VisionOutput<B> {
        let x = self.tokens_pre(pixels, None);
        let [batch, _, _] = x.dims();
        let class = Tensor::<B, 1, Int>::zeros([batch], &x.device());
        let pooled = self.transformer.forward_at(x, false, class); // [batch, width]
        let features = crate::fused::layer_norm(&self.ln_post, pooled);
        let embedding = features.clone().matmul(self.proj.val()); // [batch, embed_dim]
        VisionOutput { features, embedding }
    }

    /// The transformer's input `[batch, 1 + patches, width]`: the class token and the patch
    /// embeddings, plus the position embedding, after `ln_pre`.
    fn tokens_pre(&self, pixels: Tensor<B, 4>, mut trace: Option<&mut Trace>) -> Tensor<B, 3> {
        let patches = crate::fused::conv2d(&self.conv1, pixels); // [batch, width, grid_h, grid_w]
        let [batch, width, grid_h, grid_w] = patches.dims();
        let patches = patches.reshape([batch, width, grid_h * grid_w]).swap_dims(1, 2); // [batch, patches, width]
        if let Some(t) = trace.as_deref_mut() {
            t.record("vision.patch_embeddings", &patches);
        }
        let class = self.class_embedding.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let x = Tensor::cat(vec![class, patches], 1) + self.positional_embedding.val().unsqueeze(); // [batch, tokens, width]
        let x = crate::fused::layer_norm(&self.ln_pre, x);
        if let Some(t) = trace {
            t.record("vision.tokens_pre", &x);
        }
        x
    }
}
