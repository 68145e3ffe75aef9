//! Image encoders: the Vision Transformer and OpenAI's ModifiedResNet.

mod batch_norm;
mod resnet;
mod vit;

pub use batch_norm::BatchNorm2d;
pub use resnet::{AttentionPool2d, Bottleneck, Downsample, ModifiedResNet};
pub use vit::VisionTransformer;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::config::VisionConfig;
use crate::trace::Trace;

/// What an image encoder returns for a batch.
#[derive(Debug, Clone)]
pub struct VisionOutput<B: Backend> {
    /// Pre-projection image feature `[batch, feature_width]`: the ViT class token after
    /// `ln_post`, or the global average pool of the ResNet's layer4 map.
    pub features: Tensor<B, 2>,
    /// The CLIP image embedding `[batch, embed_dim]` (ViT: `features @ proj`; ResNet: attention-pool token 0).
    pub embedding: Tensor<B, 2>,
}

/// The image tower of a CLIP model.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ImageEncoder<B: Backend> {
    /// Vision Transformer.
    Vit(VisionTransformer<B>),
    /// ModifiedResNet with attention pooling.
    ResNet(ModifiedResNet<B>),
}

impl<B: Backend> ImageEncoder<B> {
    /// Builds the encoder described by `config` with default initialisation.
    pub fn new(config: &VisionConfig, embed_dim: usize, device: &B::Device) -> Self {
        match config {
            VisionConfig::Vit(c) => Self::Vit(VisionTransformer::new(c, embed_dim, device)),
            VisionConfig::ResNet(c) => Self::ResNet(ModifiedResNet::new(c, embed_dim, device)),
        }
    }

    /// Encodes normalised pixels `[batch, 3, height, width]`. The ViT computes its last block
    /// for the class token alone ([`VisionTransformer::embed`]).
    pub fn forward(&self, pixels: Tensor<B, 4>) -> VisionOutput<B> {
        self.forward_traced(pixels, None)
    }

    /// As [`forward`](Self::forward), recording intermediate activations into `trace`; with a
    /// trace the ViT's last block runs on every token, whose activations are recorded.
    pub fn forward_traced(&self, pixels: Tensor<B, 4>, trace: Option<&mut Trace>) -> VisionOutput<B> {
        match (self, trace) {
            (Self::Vit(vit), None) => vit.embed(pixels),
            (Self::Vit(vit), Some(trace)) => vit.forward_traced(pixels, Some(trace)).output(),
            (Self::ResNet(resnet), trace) => resnet.forward_traced(pixels, trace),
        }
    }

    /// The input height and width this encoder is currently set up for.
    pub fn input_size(&self) -> [usize; 2] {
        match self {
            Self::Vit(vit) => vit.input_size(),
            Self::ResNet(resnet) => resnet.input_size(),
        }
    }
}

/// Resizes the grid part of a position embedding `[1 + from_h * from_w, C]` to `to` with
/// bilinear interpolation (align_corners = false, as `torch.nn.functional.interpolate`'s
/// default, which CLIP-ReID's `resize_pos_embed` uses); row 0 (class / mean token) is kept.
pub fn resize_position_embedding<B: Backend>(pos: Tensor<B, 2>, from: [usize; 2], to: [usize; 2]) -> Tensor<B, 2> {
    if from == to {
        return pos;
    }
    let [rows, channels] = pos.dims();
    let first = pos.clone().narrow(0, 0, 1); // [1, C]
    let grid = pos.narrow(0, 1, rows - 1).reshape([1, from[0], from[1], channels]).permute([0, 3, 1, 2]); // [1, C, h, w]
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
    let resized = interpolate(grid, to, options).permute([0, 2, 3, 1]).reshape([to[0] * to[1], channels]);
    Tensor::cat(vec![first, resized], 0) // [1 + to_h * to_w, C]
}

/// A position-embedding parameter resized to the grid `to` (see [`resize_position_embedding`])
/// as a new leaf of the autodiff graph, with the same id and the same trainability.
///
/// The resize happens once, when a model is turned into its re-identification variant: the
/// result is what gets trained, so it must not stay attached to the graph of the checkpoint's
/// embedding. Left attached, every backward pass would run the interpolation's backward (which
/// burn-cubecl, and so `wgpu` and `cuda`, does not have) and the optimiser would find no
/// gradient for the parameter.
pub(crate) fn resized_position_param<B: Backend>(
    param: Param<Tensor<B, 2>>,
    from: [usize; 2],
    to: [usize; 2],
) -> Param<Tensor<B, 2>> {
    if from == to {
        return param;
    }
    param.map(|pos| {
        let trainable = pos.is_require_grad();
        resize_position_embedding(pos, from, to).detach().set_require_grad(trainable)
    })
}
