//! The residual attention block shared by the ViT and text towers
//! (OpenAI `clip/model.py::ResidualAttentionBlock`, open_clip `transformer.py`).

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::fused;
use crate::trace::Trace;

/// `x * sigmoid(1.702 x)`, the activation OpenAI trained CLIP with.
pub fn quick_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() * sigmoid(x.mul_scalar(1.702))
}

/// Configuration of a stack of residual attention blocks.
#[derive(Config, Debug)]
pub struct TransformerConfig {
    /// Token width.
    pub width: usize,
    /// Number of blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
}

/// Multi-head self-attention with torch's packed `in_proj` layout.
#[derive(Module, Debug)]
pub struct MultiHeadAttention<B: Backend> {
    /// Packed query, key and value projection, `d -> 3d` (torch `in_proj_weight`/`in_proj_bias`).
    pub in_proj: Linear<B>,
    /// Output projection.
    pub out_proj: Linear<B>,
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> MultiHeadAttention<B> {
    /// Self-attention over `x` `[batch, tokens, width]`; `causal` masks future tokens.
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        fused::linear(&self.out_proj, self.heads(x, causal))
    }

    /// `residual + self.forward(x, causal)`, the residual added as the output projection's pieces
    /// are finished (`fused::linear_residual`).
    pub fn forward_residual(&self, x: Tensor<B, 3>, causal: bool, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        fused::linear_residual(&self.out_proj, self.heads(x, causal), residual)
    }

    /// The merged heads before the output projection, `[batch, tokens, width]`.
    fn heads(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let qkv = fused::linear(&self.in_proj, x); // [batch, tokens, 3 * width]
        fused::attention_packed(qkv, self.heads, causal) // [batch, tokens, width]
    }
}

/// The block's two-layer MLP (`c_fc`, QuickGELU, `c_proj`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `width -> 4 width`.
    pub c_fc: Linear<B>,
    /// `4 width -> width`.
    pub c_proj: Linear<B>,
}

/// Pre-norm residual block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Module, Debug)]
pub struct ResidualAttentionBlock<B: Backend> {
    /// Norm before attention.
    pub ln_1: LayerNorm<B>,
    /// Self-attention.
    pub attn: MultiHeadAttention<B>,
    /// Norm before the MLP.
    pub ln_2: LayerNorm<B>,
    /// Feed-forward network.
    pub mlp: Mlp<B>,
}

impl<B: Backend> ResidualAttentionBlock<B> {
    /// `x` `[batch, tokens, width]` -> same shape.
    pub fn forward(&self, x: Tensor<B, 3>, causal: bool) -> Tensor<B, 3> {
        let x = self.attn.forward_residual(fused::layer_norm(&self.ln_1, x.clone()), causal, x);
        let hidden = fused::linear_quick_gelu(&self.mlp.c_fc, fused::layer_norm(&self.ln_2, x.clone()));
        fused::linear_residual(&self.mlp.c_proj, hidden, x)
    }
}

/// A stack of residual attention blocks (`transformer.resblocks.N`).
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// The blocks, in order.
    pub resblocks: Vec<ResidualAttentionBlock<B>>,
}

impl TransformerConfig {
    /// Initialises the stack with Burn's default initialisers (weights are loaded afterwards).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Transformer<B> {
        let w = self.width;
        let block = || ResidualAttentionBlock {
            ln_1: LayerNormConfig::new(w).init(device),
            attn: MultiHeadAttention {
                in_proj: LinearConfig::new(w, 3 * w).init(device),
                out_proj: LinearConfig::new(w, w).init(device),
                heads: self.heads,
            },
            ln_2: LayerNormConfig::new(w).init(device),
            mlp: Mlp {
                c_fc: LinearConfig::new(w, 4 * w).init(device),
                c_proj: LinearConfig::new(4 * w, w).init(device),
            },
        };
        Transformer { resblocks: (0..self.layers).map(|_| block()).collect() }
    }
}

impl<B: Backend> Transformer<B> {
    /// Runs every block; records each block's output as `{prefix}.block.{i}` when tracing.
    pub fn forward(
        &self,
        mut x: Tensor<B, 3>,
        causal: bool,
        prefix: &str,
        mut trace: Option<&mut Trace>,
    ) -> Tensor<B, 3> {
        for (i, block) in self.resblocks.iter().enumerate() {
            x = block.forward(x, causal);
            if let Some(trace) = trace.as_deref_mut() {
                trace.record(format!("{prefix}.block.{i}"), &x);
            }
        }
        x
    }
}
