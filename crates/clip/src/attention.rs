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

    /// `residual + self.forward(x, causal)` at one token per sequence: the rows `positions`
    /// `[batch]` of [`forward_residual`](Self::forward_residual), with `residual` `[batch, width]`
    /// those rows of its residual. Only those tokens' queries and output projections are
    /// computed; the keys and values come from every token.
    pub fn forward_residual_at(
        &self,
        x: Tensor<B, 3>,
        causal: bool,
        positions: Tensor<B, 1, Int>,
        residual: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let qkv = fused::linear(&self.in_proj, x); // [batch, tokens, 3 * width]
        let heads = fused::attention_at(qkv, positions, self.heads, causal); // [batch, width]
        fused::linear_residual(&self.out_proj, heads, residual)
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

    /// The block's output at one token per sequence, `positions` `[batch]` -> `[batch, width]`:
    /// the rows `positions` of [`forward`](Self::forward)'s output. The attention's keys and
    /// values come from every token; its queries, its output projection and the MLP are computed
    /// for those tokens only.
    pub fn forward_at(&self, x: Tensor<B, 3>, causal: bool, positions: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let residual = rows_at(x.clone(), positions.clone()); // [batch, width]
        let x = self.attn.forward_residual_at(fused::layer_norm(&self.ln_1, x), causal, positions, residual);
        let hidden = fused::linear_quick_gelu(&self.mlp.c_fc, fused::layer_norm(&self.ln_2, x.clone()));
        fused::linear_residual(&self.mlp.c_proj, hidden, x) // [batch, width]
    }
}

/// Row `positions[b]` of every sequence `b` of `x` `[batch, tokens, width]` -> `[batch, width]`.
pub fn rows_at<B: Backend>(x: Tensor<B, 3>, positions: Tensor<B, 1, Int>) -> Tensor<B, 2> {
    let [batch, _, width] = x.dims();
    let index = positions.reshape([batch, 1, 1]).expand([batch, 1, width]);
    x.gather(1, index).reshape([batch, width])
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

    /// The last block's output at one token per sequence, `[batch, width]`: the rows `positions`
    /// `[batch]` of [`forward`](Self::forward)'s output, for an encoder that keeps one token (the
    /// ViT's class token, the text's end-of-text token). Every block but the last runs on all
    /// tokens; the last one computes only what those tokens need
    /// ([`ResidualAttentionBlock::forward_at`]), which skips about a twelfth of a 12-block
    /// encoder's work.
    ///
    /// Only on the backends of [`fused::computes_only_what_is_kept`]; elsewhere every token goes
    /// through every block and the rows are taken afterwards.
    pub fn forward_at(&self, mut x: Tensor<B, 3>, causal: bool, positions: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let last = self.resblocks.split_last().filter(|_| fused::computes_only_what_is_kept::<B>());
        let Some((last, blocks)) = last else {
            return rows_at(self.forward(x, causal, "", None), positions);
        };
        for block in blocks {
            x = block.forward(x, causal);
        }
        last.forward_at(x, causal, positions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    /// `forward_at` against the rows of `forward`, on flex (the fused kernels) and on
    /// `Autodiff<Flex>` (the generic ops), causal or not, with three blocks.
    fn check<B: Backend>(causal: bool, positions: [i64; 3], tolerance: f32) {
        let device = Default::default();
        B::seed(&device, 11);
        let transformer = TransformerConfig::new(32, 3, 4).init::<B>(&device);
        let tokens = 13;
        let x = Tensor::<B, 3>::random([3, tokens, 32], Distribution::Normal(0.0, 1.0), &device);
        let at = || Tensor::<B, 1, Int>::from_data(TensorData::new(positions.to_vec(), [3]), &device);
        let all: Vec<f32> = transformer.forward(x.clone(), causal, "t", None).into_data().to_vec().unwrap();
        let got: Vec<f32> = transformer.forward_at(x, causal, at()).into_data().to_vec().unwrap();
        for (b, &p) in positions.iter().enumerate() {
            let want = &all[(b * tokens + p as usize) * 32..][..32];
            let worst = got[b * 32..][..32].iter().zip(want).map(|(a, w)| (a - w).abs()).fold(0.0f32, f32::max);
            assert!(worst <= tolerance, "{}: causal {causal}, sequence {b} at {p}: {worst:e}", B::name(&device));
        }
    }

    #[test]
    fn the_last_block_at_one_token_has_the_gradients_of_the_full_one() {
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        Ad::seed(&device, 13);
        let transformer = TransformerConfig::new(32, 2, 4).init::<Ad>(&device);
        let x = Tensor::<Flex, 3>::random([3, 9, 32], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<Ad, 2>::random([3, 32], Distribution::Normal(0.0, 1.0), &device);
        for (causal, positions) in [(false, [0i64, 0, 0]), (true, [8, 2, 5])] {
            let at = || Tensor::<Ad, 1, Int>::from_data(TensorData::new(positions.to_vec(), [3]), &device);
            let grads = |fast: bool| {
                let input = Tensor::<Ad, 3>::from_inner(x.clone()).require_grad();
                let out = if fast {
                    transformer.forward_at(input.clone(), causal, at())
                } else {
                    rows_at(transformer.forward(input.clone(), causal, "t", None), at())
                };
                let grads = (out * weights.clone()).sum().backward();
                let last = &transformer.resblocks[1];
                let of = |t: Tensor<Ad, 2>| t.grad(&grads).expect("a gradient").into_data().to_vec::<f32>().unwrap();
                [
                    input.grad(&grads).expect("a gradient").into_data().to_vec::<f32>().unwrap(),
                    of(last.attn.in_proj.weight.val()),
                    of(last.attn.out_proj.weight.val()),
                    of(last.mlp.c_proj.weight.val()),
                    of(transformer.resblocks[0].mlp.c_fc.weight.val()),
                ]
            };
            for (i, (full, fast)) in grads(false).iter().zip(&grads(true)).enumerate() {
                let worst = full.iter().zip(fast).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(worst <= 1e-5, "causal {causal}, gradient {i}: max |fast - full| = {worst:e}");
            }
        }
    }

    #[test]
    fn the_last_block_at_one_token_is_that_row_of_the_full_one() {
        for (causal, positions) in [(false, [0, 0, 0]), (true, [12, 0, 5]), (false, [3, 12, 7])] {
            check::<Flex>(causal, positions, 2e-5);
            check::<Autodiff<Flex>>(causal, positions, 2e-5);
        }
    }
}
