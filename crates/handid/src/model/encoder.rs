//! The part of a trained CLIP-HandID model that retrieval needs: the image encoder and its two
//! BN necks. Its output is the feature the method evaluates with, both BN'd features
//! concatenated (`[bn(f), bn(v)]`, see docs/METHOD.md).

use burn::prelude::*;
use clip_burn::ClipError;
use clip_burn::vision::ImageEncoder;
use serde::{Deserialize, Serialize};

use super::{BnNeck, HandIdModel};

/// The architecture of a [`ReidEncoder`]: enough to rebuild it before its weights are loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderArchitecture {
    /// The CLIP image encoder's configuration (ViT or ModifiedResNet).
    pub vision: clip_burn::VisionConfig,
    /// Width of the projected embedding.
    pub embed_dim: usize,
    /// Input `[height, width]`.
    pub input_size: [usize; 2],
    /// ViT patch stride (ignored for a ResNet).
    pub vit_stride: usize,
    /// Stride of the ResNet's layer4 (ignored for a ViT).
    pub resnet_last_stride: usize,
}

impl EncoderArchitecture {
    /// The architecture of a CLIP-HandID model built with `config`.
    pub fn of(config: &super::HandIdConfig) -> Self {
        Self {
            vision: config.clip.vision.clone(),
            embed_dim: config.clip.embed_dim,
            input_size: config.input_size,
            vit_stride: config.vit_stride,
            resnet_last_stride: config.resnet_last_stride,
        }
    }

    /// Width of the retrieval feature: the pre-projection width plus the embedding width.
    pub fn feature_dim(&self) -> usize {
        self.vision.feature_width() + self.embed_dim
    }
}

/// Image encoder (re-identification variant) with the BN necks of both its features.
#[derive(Module, Debug)]
pub struct ReidEncoder<B: Backend> {
    /// CLIP image encoder, fine-tuned.
    pub image_encoder: ImageEncoder<B>,
    /// BN neck on the pre-projection feature.
    pub neck_features: BnNeck<B>,
    /// BN neck on the projected feature.
    pub neck_projected: BnNeck<B>,
}

impl<B: Backend> ReidEncoder<B> {
    /// An encoder of `architecture` with freshly initialised weights, to load weights into.
    pub fn new(architecture: &EncoderArchitecture, device: &B::Device) -> Result<Self, ClipError> {
        let a = architecture;
        let image_encoder = match ImageEncoder::new(&a.vision, a.embed_dim, device) {
            ImageEncoder::Vit(vit) => ImageEncoder::Vit(vit.into_reid(a.vit_stride, a.input_size)?),
            ImageEncoder::ResNet(resnet) => ImageEncoder::ResNet(resnet.into_reid(a.resnet_last_stride, a.input_size)?),
        };
        Ok(Self {
            image_encoder,
            neck_features: BnNeck::new(a.vision.feature_width(), device),
            neck_projected: BnNeck::new(a.embed_dim, device),
        })
    }

    /// The retrieval feature of normalised pixels `[batch, 3, h, w]` -> `[batch, feature + embed]`.
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        let vision = self.image_encoder.forward(pixels);
        let bn_features = self.neck_features.forward(vision.features);
        let bn_projected = self.neck_projected.forward(vision.embedding);
        Tensor::cat(vec![bn_features, bn_projected], 1)
    }
}

impl<B: Backend> HandIdModel<B> {
    /// The image encoder and its BN necks, without the text branch and the classifiers.
    pub fn into_reid_encoder(self) -> ReidEncoder<B> {
        ReidEncoder {
            image_encoder: self.image_encoder,
            neck_features: self.neck_features,
            neck_projected: self.neck_projected,
        }
    }
}
