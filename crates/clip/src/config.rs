//! Architecture descriptions: presets for the published checkpoints and inference of a
//! configuration from the tensor shapes of an OpenAI-format state dict.
//!
//! The shape rules follow OpenAI's `clip/model.py::build_model`, which is how OpenAI's own
//! loader decides the architecture of a checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ClipError;

/// Largest width, vocabulary, context length or image side that [`ClipConfig::validate`]
/// accepts (ViT-L/14 at 336 px uses at most 49,408).
pub const MAX_DIMENSION: usize = 1 << 20;
/// Largest number of elements of any one weight tensor that [`ClipConfig::validate`] accepts
/// (2^27; OpenAI's largest, ViT-L/14's token embedding, has 38 million).
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 27;
/// Largest number of transformer blocks (or ResNet bottlenecks) per tower that
/// [`ClipConfig::validate`] accepts.
pub const MAX_LAYERS: usize = 1024;

/// A complete CLIP architecture: image tower, text tower and the shared embedding size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Dimension of the joint image/text embedding space.
    pub embed_dim: usize,
    /// The image encoder.
    pub vision: VisionConfig,
    /// The text encoder.
    pub text: TextConfig,
}

/// Which image encoder a CLIP model uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VisionConfig {
    /// Vision Transformer (`ViT-B/16`, ...).
    Vit(VitConfig),
    /// OpenAI's ModifiedResNet with attention pooling (`RN50`, ...).
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
}

/// Vision Transformer hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Token width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Side of the square patches (and the default stride).
    pub patch_size: usize,
    /// Side of the square input the position embedding was trained for.
    pub image_size: usize,
}

/// ModifiedResNet hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Bottleneck blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Width of the stem; stage `i` has `width * 2^i` bottleneck channels.
    pub width: usize,
    /// Heads of the attention pool.
    pub heads: usize,
    /// Side of the square input the attention-pool position embedding was trained for.
    pub image_size: usize,
}

/// Text transformer hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Maximum number of tokens (77 for every OpenAI model).
    pub context_length: usize,
    /// Size of the BPE vocabulary (49408).
    pub vocab_size: usize,
    /// Token width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
}

impl ResNetConfig {
    /// Channels entering the attention pool (`width * 32`).
    pub fn embed_width(&self) -> usize {
        self.width * 32
    }
}

impl VisionConfig {
    /// Width of the pre-projection image feature (ViT: token width; ResNet: layer4 channels).
    pub fn feature_width(&self) -> usize {
        match self {
            VisionConfig::Vit(c) => c.width,
            VisionConfig::ResNet(c) => c.embed_width(),
        }
    }

    /// Attention heads (ViT blocks, or the ResNet's attention pool).
    pub fn heads(&self) -> usize {
        match self {
            VisionConfig::Vit(c) => c.heads,
            VisionConfig::ResNet(c) => c.heads,
        }
    }

    /// Side of the square input the checkpoint was trained on.
    pub fn image_size(&self) -> usize {
        match self {
            VisionConfig::Vit(c) => c.image_size,
            VisionConfig::ResNet(c) => c.image_size,
        }
    }
}

impl TextConfig {
    /// The text tower shared by every OpenAI CLIP model of base size.
    pub fn base() -> Self {
        Self { context_length: 77, vocab_size: 49408, width: 512, heads: 8, layers: 12 }
    }
}

/// Names of the presets accepted by [`ClipConfig::preset`].
pub const PRESETS: [&str; 5] = ["RN50", "RN101", "ViT-B/32", "ViT-B/16", "ViT-L/14"];

impl ClipConfig {
    /// `RN50` (`clip/model.py`, `_MODELS["RN50"]`).
    pub fn rn50() -> Self {
        Self::resnet([3, 4, 6, 3], 1024, TextConfig::base())
    }

    /// `RN101`.
    pub fn rn101() -> Self {
        Self::resnet([3, 4, 23, 3], 512, TextConfig::base())
    }

    /// `ViT-B/32`.
    pub fn vit_b_32() -> Self {
        Self::vit(12, 768, 32, 512, TextConfig::base())
    }

    /// `ViT-B/16`.
    pub fn vit_b_16() -> Self {
        Self::vit(12, 768, 16, 512, TextConfig::base())
    }

    /// `ViT-L/14` (text width 768, 12 heads).
    pub fn vit_l_14() -> Self {
        let text = TextConfig { width: 768, heads: 12, ..TextConfig::base() };
        Self::vit(24, 1024, 14, 768, text)
    }

    /// A preset by its OpenAI name (`RN50`, `ViT-B/16`, ...; `ViT-B-16` is accepted too).
    pub fn preset(name: &str) -> Result<Self, ClipError> {
        match name.replace('-', "/").as_str() {
            "RN50" => Ok(Self::rn50()),
            "RN101" => Ok(Self::rn101()),
            "ViT/B/32" => Ok(Self::vit_b_32()),
            "ViT/B/16" => Ok(Self::vit_b_16()),
            "ViT/L/14" => Ok(Self::vit_l_14()),
            _ => Err(ClipError::UnknownModel { name: name.to_string(), known: PRESETS.join(", ") }),
        }
    }

    fn vit(layers: usize, width: usize, patch: usize, embed_dim: usize, text: TextConfig) -> Self {
        let vision = VitConfig { layers, width, heads: width / 64, patch_size: patch, image_size: 224 };
        Self { embed_dim, vision: VisionConfig::Vit(vision), text }
    }

    fn resnet(layers: [usize; 4], embed_dim: usize, text: TextConfig) -> Self {
        let vision = ResNetConfig { layers, width: 64, heads: 32, image_size: 224 };
        Self { embed_dim, vision: VisionConfig::ResNet(vision), text }
    }

    /// Reads a `config.json` in the format of `docs/FIXTURES.md` section 1 and checks it with
    /// [`validate`](Self::validate).
    pub fn from_json_file(path: &Path) -> Result<Self, ClipError> {
        let text = std::fs::read_to_string(path).map_err(|e| ClipError::io(path, e))?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|e| ClipError::Config { path: path.display().to_string(), reason: e.to_string() })?;
        config.validate().map_err(|reason| ClipError::Config { path: path.display().to_string(), reason })?;
        Ok(config)
    }

    /// Rejects an architecture that cannot be built or run, naming the field: a zero size, a
    /// width that its head count does not divide, an input side that is not a whole number of
    /// patches (ViT) or of 32 pixels (ResNet), a size beyond [`MAX_DIMENSION`] or
    /// [`MAX_LAYERS`], or a weight tensor beyond [`MAX_TENSOR_ELEMENTS`] (no CLIP comes near
    /// these; such values come from damaged or hostile files).
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut positive = |name: &str, value: usize| {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            } else if value > MAX_DIMENSION {
                problems.push(format!("{name} = {value} exceeds the limit of {MAX_DIMENSION}"));
            }
        };
        positive("embed_dim", self.embed_dim);
        let t = &self.text;
        for (name, value) in [
            ("text.context_length", t.context_length),
            ("text.vocab_size", t.vocab_size),
            ("text.width", t.width),
            ("text.heads", t.heads),
        ] {
            positive(name, value);
        }
        let (image_size, unit, unit_name) = match &self.vision {
            VisionConfig::Vit(v) => {
                for (name, value) in [
                    ("vision.width", v.width),
                    ("vision.heads", v.heads),
                    ("vision.patch_size", v.patch_size),
                    ("vision.image_size", v.image_size),
                ] {
                    positive(name, value);
                }
                (v.image_size, v.patch_size, "vision.patch_size")
            }
            VisionConfig::ResNet(r) => {
                for (name, value) in [
                    ("vision.width", r.width),
                    ("vision.heads", r.heads),
                    ("vision.image_size", r.image_size),
                    ("vision.layers[0]", r.layers[0]),
                    ("vision.layers[1]", r.layers[1]),
                    ("vision.layers[2]", r.layers[2]),
                    ("vision.layers[3]", r.layers[3]),
                ] {
                    positive(name, value);
                }
                (r.image_size, 32, "the ResNet's reduction 32")
            }
        };
        let layers = match &self.vision {
            VisionConfig::Vit(v) => v.layers,
            VisionConfig::ResNet(r) => r.layers.iter().sum(),
        };
        for (name, value) in [("text.layers", t.layers), ("vision.layers", layers)] {
            if value > MAX_LAYERS {
                problems.push(format!("{name} = {value} exceeds the limit of {MAX_LAYERS}"));
            }
        }
        if t.heads > 0 && !t.width.is_multiple_of(t.heads) {
            problems.push(format!("text.width {} is not divisible by text.heads {}", t.width, t.heads));
        }
        let (width, heads) = (self.vision.feature_width(), self.vision.heads());
        if heads > 0 && !width.is_multiple_of(heads) {
            problems.push(format!("the image feature width {width} is not divisible by vision.heads {heads}"));
        }
        if unit > 0 && image_size > 0 && !image_size.is_multiple_of(unit) {
            problems.push(format!("vision.image_size {image_size} is not a multiple of {unit_name} ({unit})"));
        }
        // Some parameters are drawn when the model is built, before any weights are compared:
        // bound every large tensor so that a hostile file cannot make that cost gigabytes.
        let (tw, vw, embed) = (t.width as u128, self.vision.feature_width() as u128, self.embed_dim as u128);
        let grid = match &self.vision {
            VisionConfig::Vit(v) if v.patch_size > 0 => (v.image_size / v.patch_size) as u128,
            VisionConfig::ResNet(r) => (r.image_size / 32) as u128,
            VisionConfig::Vit(_) => 0,
        };
        for (name, elements) in [
            ("the token embedding (text.vocab_size x text.width)", t.vocab_size as u128 * tw),
            ("the text position embedding (text.context_length x text.width)", t.context_length as u128 * tw),
            ("a text MLP weight (text.width x 4 text.width)", tw * 4 * tw),
            ("the text projection (text.width x embed_dim)", tw * embed),
            ("the image position embedding", (grid * grid + 1) * vw),
            ("an image MLP or attention-pool weight", vw * 4 * vw),
            ("the image projection", vw * embed),
        ] {
            if elements > MAX_TENSOR_ELEMENTS as u128 {
                problems.push(format!(
                    "{name} would have {elements} elements, more than the limit of {MAX_TENSOR_ELEMENTS}"
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    /// Infers the architecture from the shapes of an OpenAI-format state dict, with the rules
    /// of OpenAI's `build_model` (heads = width / 64, ResNet attention-pool heads = width * 32 / 64).
    pub fn infer(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, String> {
        let dims = |key: &str| shapes.get(key).ok_or_else(|| format!("missing tensor `{key}`"));
        let dim = |key: &str, axis: usize| -> Result<usize, String> {
            let shape = dims(key)?;
            shape.get(axis).copied().ok_or_else(|| format!("tensor `{key}` has shape {shape:?}"))
        };
        let count_distinct = |prefix: &str| {
            let mut indices: Vec<&str> = shapes
                .keys()
                .filter_map(|k| k.strip_prefix(prefix))
                .filter_map(|rest| rest.split('.').next())
                .collect();
            indices.sort_unstable();
            indices.dedup();
            indices.len()
        };
        let grid_side = |tokens: usize| {
            let side = ((tokens.saturating_sub(1)) as f64).sqrt().round() as usize;
            if side * side + 1 == tokens {
                Ok(side)
            } else {
                Err(format!("position embedding with {tokens} rows is not a square grid plus one"))
            }
        };

        let vision = if shapes.contains_key("visual.proj") {
            let width = dim("visual.conv1.weight", 0)?;
            let patch_size = dim("visual.conv1.weight", 3)?;
            let grid = grid_side(dim("visual.positional_embedding", 0)?)?;
            let layers = count_distinct("visual.transformer.resblocks.");
            VisionConfig::Vit(VitConfig { layers, width, heads: width / 64, patch_size, image_size: grid * patch_size })
        } else if shapes.contains_key("visual.attnpool.positional_embedding") {
            let layers = [1, 2, 3, 4].map(|stage| count_distinct(&format!("visual.layer{stage}.")));
            let width = dim("visual.layer1.0.conv1.weight", 0)?;
            let grid = grid_side(dim("visual.attnpool.positional_embedding", 0)?)?;
            VisionConfig::ResNet(ResNetConfig { layers, width, heads: width * 32 / 64, image_size: grid * 32 })
        } else {
            return Err("neither `visual.proj` (ViT) nor `visual.attnpool.positional_embedding` (ResNet) is present: \
                        not an OpenAI-format CLIP state dict"
                .to_string());
        };
        let width = dim("ln_final.weight", 0)?;
        let text = TextConfig {
            context_length: dim("positional_embedding", 0)?,
            vocab_size: dim("token_embedding.weight", 0)?,
            width,
            heads: width / 64,
            layers: count_distinct("transformer.resblocks."),
        };
        Ok(Self { embed_dim: dim("text_projection", 1)?, vision, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_name() {
        assert_eq!(ClipConfig::preset("ViT-B-16").unwrap(), ClipConfig::vit_b_16());
        assert_eq!(ClipConfig::preset("RN50").unwrap().embed_dim, 1024);
        let err = ClipConfig::preset("RN51").unwrap_err().to_string();
        assert!(err.contains("RN51") && err.contains("RN50"), "{err}");
    }

    #[test]
    fn fixture_json_format_parses() {
        let json = r#"{"embed_dim": 1024,
          "vision": {"kind": "resnet", "layers": [3,4,6,3], "width": 64, "heads": 32, "image_size": 224},
          "text": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#;
        let config: ClipConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config, ClipConfig::rn50());
    }
}
