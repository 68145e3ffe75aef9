//! OpenAI's ModifiedResNet (`clip/model.py::ModifiedResNet`, `Bottleneck`, `AttentionPool2d`):
//! a three-convolution stem, anti-aliased strided convolutions (average pool before the 1x1
//! convolution) and attention pooling in place of global average pooling.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::batch_norm::BatchNorm2d;
use super::{VisionOutput, resized_position_param};
use crate::config::ResNetConfig;
use crate::error::ClipError;
use crate::init::normal;
use crate::trace::Trace;

fn conv<B: Backend>(channels: [usize; 2], kernel: usize, stride: usize, device: &B::Device) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

fn pool<B: Backend>(x: Tensor<B, 4>, stride: usize) -> Tensor<B, 4> {
    // avg_pool2d(x, stride, stride, padding 0, count_include_pad, floor), as torch's AvgPool2d(stride).
    crate::fused::avg_pool(x, stride)
}

/// The shortcut of a bottleneck whose shape changes: average pool, 1x1 conv, BN
/// (torch keys `downsample.0`, `downsample.1`; the pool `downsample.-1` has no weights).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// 1x1 convolution.
    pub conv: Conv2d<B>,
    /// Batch norm.
    pub bn: BatchNorm2d<B>,
}

/// Bottleneck block with expansion 4; the stride is applied by an average pool after conv2.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// 1x1 reduction.
    pub conv1: Conv2d<B>,
    /// BN after conv1.
    pub bn1: BatchNorm2d<B>,
    /// 3x3 convolution.
    pub conv2: Conv2d<B>,
    /// BN after conv2.
    pub bn2: BatchNorm2d<B>,
    /// 1x1 expansion.
    pub conv3: Conv2d<B>,
    /// BN after conv3.
    pub bn3: BatchNorm2d<B>,
    /// Shortcut projection when the stride or channel count changes.
    pub downsample: Option<Downsample<B>>,
    /// Spatial stride (1 or 2).
    pub stride: usize,
}

impl<B: Backend> Bottleneck<B> {
    fn new(inplanes: usize, planes: usize, stride: usize, device: &B::Device) -> Self {
        let out = planes * 4;
        let downsample = (stride > 1 || inplanes != out)
            .then(|| Downsample { conv: conv([inplanes, out], 1, 1, device), bn: BatchNorm2d::new(out, device) });
        Self {
            conv1: conv([inplanes, planes], 1, 1, device),
            bn1: BatchNorm2d::new(planes, device),
            conv2: conv([planes, planes], 3, 1, device),
            bn2: BatchNorm2d::new(planes, device),
            conv3: conv([planes, out], 1, 1, device),
            bn3: BatchNorm2d::new(out, device),
            downsample,
            stride,
        }
    }

    /// `x` `[batch, inplanes, h, w]` -> `[batch, 4 planes, h / stride, w / stride]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = self.bn1.after_conv(&self.conv1, x.clone(), true);
        let out = self.bn2.after_conv(&self.conv2, out, true);
        let identity = match &self.downsample {
            Some(down) => down.bn.after_conv(&down.conv, pool(x, self.stride), false),
            None => x,
        };
        self.bn3.after_conv_residual(&self.conv3, pool(out, self.stride), identity)
    }
}

/// Multi-head attention of the mean token over `[mean, positions]`, projected by `c_proj`.
#[derive(Module, Debug)]
pub struct AttentionPool2d<B: Backend> {
    /// `[1 + grid_height * grid_width, channels]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// Query projection.
    pub q_proj: Linear<B>,
    /// Key projection.
    pub k_proj: Linear<B>,
    /// Value projection.
    pub v_proj: Linear<B>,
    /// Output projection `channels -> embed_dim`.
    pub c_proj: Linear<B>,
    /// Attention heads.
    pub heads: usize,
    /// Rows of the feature map the position embedding is laid out for.
    pub grid_height: usize,
    /// Columns of the feature map the position embedding is laid out for.
    pub grid_width: usize,
}

impl<B: Backend> AttentionPool2d<B> {
    /// `x` `[batch, channels, h, w]` -> token 0 of the attention output `[batch, embed_dim]`.
    /// Only token 0 is queried: it is the only one CLIP uses, and attention rows are independent.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [batch, channels, _, _] = x.dims();
        // [mean, positions] + positional_embedding: [batch, 1 + h*w, channels]
        let tokens = crate::fused::pool_tokens(x, self.positional_embedding.val());
        let q = crate::fused::linear(&self.q_proj, tokens.clone().narrow(1, 0, 1)).reshape([batch, channels]);
        let k = crate::fused::linear(&self.k_proj, tokens.clone()); // [batch, 1 + h*w, channels]
        let v = crate::fused::linear(&self.v_proj, tokens);
        let out = crate::fused::pool_attention(q, k, v, self.heads); // [batch, channels], heads merged
        crate::fused::linear(&self.c_proj, out) // [batch, embed_dim]
    }
}

/// ModifiedResNet image encoder.
#[derive(Module, Debug)]
pub struct ModifiedResNet<B: Backend> {
    /// Stem conv 3 -> width/2, stride 2.
    pub conv1: Conv2d<B>,
    /// Stem BN 1.
    pub bn1: BatchNorm2d<B>,
    /// Stem conv width/2 -> width/2.
    pub conv2: Conv2d<B>,
    /// Stem BN 2.
    pub bn2: BatchNorm2d<B>,
    /// Stem conv width/2 -> width.
    pub conv3: Conv2d<B>,
    /// Stem BN 3.
    pub bn3: BatchNorm2d<B>,
    /// Stage 1 (stride 1).
    pub layer1: Vec<Bottleneck<B>>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<Bottleneck<B>>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<Bottleneck<B>>,
    /// Stage 4 (stride 2; 1 in the re-identification variant).
    pub layer4: Vec<Bottleneck<B>>,
    /// Attention pooling.
    pub attnpool: AttentionPool2d<B>,
}

fn stage<B: Backend>(
    inplanes: &mut usize,
    planes: usize,
    blocks: usize,
    stride: usize,
    device: &B::Device,
) -> Vec<Bottleneck<B>> {
    (0..blocks)
        .map(|i| {
            let block = Bottleneck::new(*inplanes, planes, if i == 0 { stride } else { 1 }, device);
            *inplanes = planes * 4;
            block
        })
        .collect()
}

impl<B: Backend> ModifiedResNet<B> {
    /// Builds an encoder with default initialisation.
    pub fn new(config: &ResNetConfig, embed_dim: usize, device: &B::Device) -> Self {
        let w = config.width;
        let mut inplanes = w;
        let channels = config.embed_width();
        let grid = config.image_size / 32;
        let linear = |d_out| LinearConfig::new(channels, d_out).init(device);
        Self {
            conv1: conv([3, w / 2], 3, 2, device),
            bn1: BatchNorm2d::new(w / 2, device),
            conv2: conv([w / 2, w / 2], 3, 1, device),
            bn2: BatchNorm2d::new(w / 2, device),
            conv3: conv([w / 2, w], 3, 1, device),
            bn3: BatchNorm2d::new(w, device),
            layer1: stage(&mut inplanes, w, config.layers[0], 1, device),
            layer2: stage(&mut inplanes, w * 2, config.layers[1], 2, device),
            layer3: stage(&mut inplanes, w * 4, config.layers[2], 2, device),
            layer4: stage(&mut inplanes, w * 8, config.layers[3], 2, device),
            attnpool: AttentionPool2d {
                positional_embedding: normal([grid * grid + 1, channels], (channels as f64).powf(-0.5), device),
                q_proj: linear(channels),
                k_proj: linear(channels),
                v_proj: linear(channels),
                c_proj: linear(embed_dim),
                heads: config.heads,
                grid_height: grid,
                grid_width: grid,
            },
        }
    }

    /// The re-identification variant (CLIP-ReID): layer4 with stride `last_stride` and the
    /// attention-pool position embedding resized bilinearly to the layer4 grid of an input of
    /// `image_size = [height, width]`.
    pub fn into_reid(mut self, last_stride: usize, image_size: [usize; 2]) -> Result<Self, ClipError> {
        let reduction = 16 * last_stride;
        if !(1..=2).contains(&last_stride) || image_size.iter().any(|&s| s < reduction || s % reduction != 0) {
            return Err(ClipError::InvalidInput(format!(
                "ModifiedResNet needs layer4 stride 1 or 2 and an input whose sides are multiples of \
                 16 x stride ({reduction}), got stride {last_stride} and {}x{}",
                image_size[0], image_size[1]
            )));
        }
        if let Some(first) = self.layer4.first_mut() {
            first.stride = last_stride;
        }
        let grid = image_size.map(|s| s / reduction);
        let pool = &mut self.attnpool;
        let from = [pool.grid_height, pool.grid_width];
        pool.positional_embedding = resized_position_param(pool.positional_embedding.clone(), from, grid);
        [pool.grid_height, pool.grid_width] = grid;
        Ok(self)
    }

    /// The input height and width matching the attention-pool grid.
    pub fn input_size(&self) -> [usize; 2] {
        let reduction = 16 * self.layer4.first().map_or(2, |b| b.stride);
        [self.attnpool.grid_height, self.attnpool.grid_width].map(|g| g * reduction)
    }

    /// The layer4 feature map `[batch, channels, h / (16 stride), w / (16 stride)]`.
    pub fn feature_map(&self, pixels: Tensor<B, 4>, mut trace: Option<&mut Trace>) -> Tensor<B, 4> {
        let x = self.bn1.after_conv(&self.conv1, pixels, true);
        let x = self.bn2.after_conv(&self.conv2, x, true);
        let x = self.bn3.after_conv(&self.conv3, x, true);
        let mut x = pool(x, 2); // [batch, width, h/4, w/4]
        if let Some(t) = trace.as_deref_mut() {
            t.record("vision.stem", &x);
        }
        for (i, layer) in [&self.layer1, &self.layer2, &self.layer3, &self.layer4].into_iter().enumerate() {
            x = layer.iter().fold(x, |x, block| block.forward(x));
            if let Some(t) = trace.as_deref_mut() {
                t.record(format!("vision.layer{}", i + 1), &x);
            }
        }
        x
    }

    /// Encodes normalised pixels `[batch, 3, height, width]`.
    pub fn forward(&self, pixels: Tensor<B, 4>) -> VisionOutput<B> {
        self.forward_traced(pixels, None)
    }

    /// As [`forward`](Self::forward), recording `vision.*` activations into `trace`.
    pub fn forward_traced(&self, pixels: Tensor<B, 4>, mut trace: Option<&mut Trace>) -> VisionOutput<B> {
        let map = self.feature_map(pixels, trace.as_deref_mut()); // [batch, channels, h, w]
        let [batch, channels, _, _] = map.dims();
        let features = map.clone().mean_dims(&[2, 3]).reshape([batch, channels]); // [batch, channels]
        let embedding = self.attnpool.forward(map); // [batch, embed_dim]
        if let Some(t) = trace {
            t.record("vision.layer4_gap", &features);
            t.record("vision.pooled", &embedding);
        }
        VisionOutput { features, embedding }
    }
}
