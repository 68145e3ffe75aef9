//! Text transformer (OpenAI `clip/model.py::CLIP.encode_text`): token embedding plus position
//! embedding, causal transformer, `ln_final`, the end-of-text token projected.
//!
//! It also takes token *embeddings*, so that a learned pseudo-word can replace the embedding of
//! a placeholder token (CLIP-HandID's "A photo of a S* hand").

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use crate::attention::{Transformer, TransformerConfig};
use crate::config::TextConfig;
use crate::init::normal;
use crate::trace::Trace;

/// CLIP's text encoder.
#[derive(Module, Debug)]
pub struct TextTransformer<B: Backend> {
    /// BPE token embeddings `[vocab_size, width]`.
    pub token_embedding: Embedding<B>,
    /// Position embedding `[context_length, width]`.
    pub positional_embedding: Param<Tensor<B, 2>>,
    /// Causal transformer.
    pub transformer: Transformer<B>,
    /// Final norm.
    pub ln_final: LayerNorm<B>,
    /// Projection into the joint embedding space `[width, embed_dim]`.
    pub text_projection: Param<Tensor<B, 2>>,
}

impl<B: Backend> TextTransformer<B> {
    /// Builds an encoder with default initialisation.
    pub fn new(config: &TextConfig, embed_dim: usize, device: &B::Device) -> Self {
        let w = config.width;
        // open_clip's initialisation (`transformer.py::TextTransformer.init_parameters`).
        Self {
            token_embedding: EmbeddingConfig::new(config.vocab_size, w)
                .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
                .init(device),
            positional_embedding: normal([config.context_length, w], 0.01, device),
            transformer: TransformerConfig::new(w, config.layers, config.heads).init(device),
            ln_final: LayerNormConfig::new(w).init(device),
            text_projection: normal([w, embed_dim], (w as f64).powf(-0.5), device),
        }
    }

    /// Token embeddings of `ids` `[batch, context]` -> `[batch, context, width]`, before the
    /// position embedding is added (the place to substitute a pseudo-token).
    pub fn embed_tokens(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.token_embedding.forward(ids)
    }

    /// Encodes token ids `[batch, context]`; the end-of-text token is the largest id of each row.
    ///
    /// Only what the end-of-text tokens depend on is computed, the same values as running every
    /// token: under the causal mask the tokens after the batch's last end-of-text token (the
    /// padding) change no output and are left out, and the last block runs for the end-of-text
    /// tokens alone ([`Transformer::forward_at`](crate::attention::Transformer::forward_at)).
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.forward_traced(ids, None)
    }

    /// As [`forward`](Self::forward), recording `text.*` activations into `trace`; with a trace
    /// every token goes through every block, whose outputs are recorded.
    pub fn forward_traced(&self, ids: Tensor<B, 2, Int>, trace: Option<&mut Trace>) -> Tensor<B, 2> {
        let end_positions = ids.clone().argmax(1).reshape([-1]); // [batch]
        self.forward_embeddings_traced(self.embed_tokens(ids), end_positions, trace)
    }

    /// Encodes token embeddings `[batch, context, width]`, reading the output at
    /// `end_positions` `[batch]` (the end-of-text token of each row); as in
    /// [`forward`](Self::forward), only what those tokens depend on is computed.
    pub fn forward_embeddings(&self, embeddings: Tensor<B, 3>, end_positions: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        self.forward_embeddings_traced(embeddings, end_positions, None)
    }

    fn forward_embeddings_traced(
        &self,
        embeddings: Tensor<B, 3>,
        end_positions: Tensor<B, 1, Int>,
        trace: Option<&mut Trace>,
    ) -> Tensor<B, 2> {
        let context = embeddings.dims()[1];
        let Some(t) = trace else {
            // Causal attention: token `i` depends on tokens `0..=i` only, so the tokens after the
            // last end-of-text token of the batch (the padding) change no output. They are left
            // out, and the last block runs for the end-of-text tokens alone
            // (`Transformer::forward_at`); the final norm is per token, so it can follow.
            let tokens = used_tokens(&end_positions, context);
            let x = self.with_positions(embeddings.narrow(1, 0, tokens)); // [batch, tokens, width]
            let end = self.transformer.forward_at(x, true, end_positions); // [batch, width]
            return crate::fused::layer_norm(&self.ln_final, end).matmul(self.text_projection.val());
        };
        // Traced: every token through every block, recorded.
        let x = self.with_positions(embeddings); // [batch, context, width]
        t.record("text.embeddings", &x);
        let x = self.transformer.forward(x, true, "text", Some(&mut *t));
        let x = crate::fused::layer_norm(&self.ln_final, x);
        t.record("text.final", &x);
        let end = crate::attention::rows_at(x, end_positions); // [batch, width]
        end.matmul(self.text_projection.val()) // [batch, embed_dim]
    }

    /// `embeddings` `[batch, tokens, width]` plus the position embedding of their positions.
    fn with_positions(&self, embeddings: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, tokens, _] = embeddings.dims();
        let pos = self.positional_embedding.val().narrow(0, 0, tokens);
        // The table repeated for every prompt, then one same-shape addition: flex runs a `[1, ..]`
        // broadcast through its generic strided iterator on the calling thread.
        embeddings + pos.unsqueeze::<3>().repeat_dim(0, batch)
    }
}

/// How many leading tokens the outputs at `end_positions` depend on under a causal mask: one
/// more than the largest position, at most `context` (a position beyond the context is left to
/// the gather, which reports it as before); `context` on the backends that compute every token
/// ([`crate::fused::computes_only_what_is_kept`]).
fn used_tokens<B: Backend>(end_positions: &Tensor<B, 1, Int>, context: usize) -> usize {
    if end_positions.dims()[0] == 0 || !crate::fused::computes_only_what_is_kept::<B>() {
        return context;
    }
    let last: i64 = end_positions.clone().max().into_scalar().elem();
    (last.max(0) as usize + 1).min(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    /// `forward` (padding left out, last block at the end tokens) against `forward_traced` (every
    /// token through every block), on flex and on `Autodiff<Flex>` (the generic ops).
    fn check<B: Backend>(ends: [usize; 3]) {
        let device = Default::default();
        B::seed(&device, 5);
        let config = TextConfig { context_length: 20, vocab_size: 50, width: 32, heads: 4, layers: 2 };
        let text = TextTransformer::<B>::new(&config, 16, &device);
        // Ids below 49 with the end-of-text token (49, the largest) at `ends[row]`.
        let ids: Vec<i64> =
            (0..3 * 20).map(|i| if i % 20 == ends[i / 20] { 49 } else { (i as i64 * 7) % 49 }).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [3, 20]), &device);
        let full: Vec<f32> =
            text.forward_traced(ids.clone(), Some(&mut Trace::default())).into_data().to_vec().unwrap();
        let fast: Vec<f32> = text.forward(ids).into_data().to_vec().unwrap();
        let worst = full.iter().zip(&fast).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{}: ends {ends:?}: max |fast - full| = {worst:e}", B::name(&device));
    }

    #[test]
    fn the_untraced_encoding_has_the_gradients_of_running_every_token() {
        // What training needs (CLIP-HandID's pseudo-word reaches the loss through the text
        // encoder): the gradients of the input embeddings and of every parameter.
        type Ad = Autodiff<Flex>;
        let device = Default::default();
        Ad::seed(&device, 9);
        let config = TextConfig { context_length: 20, vocab_size: 50, width: 32, heads: 4, layers: 2 };
        let text = TextTransformer::<Ad>::new(&config, 16, &device);
        let embeddings = Tensor::<Flex, 3>::random([3, 20, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let ends = || Tensor::<Ad, 1, Int>::from_data(TensorData::new(vec![4i64, 9, 2], [3]), &device);
        let weights = Tensor::<Ad, 2>::random([3, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let grads = |traced: bool| {
            let x = Tensor::<Ad, 3>::from_inner(embeddings.clone()).require_grad();
            let mut trace = Trace::default();
            let out = text.forward_embeddings_traced(x.clone(), ends(), traced.then_some(&mut trace));
            let grads = (out * weights.clone()).sum().backward();
            let of = |t: Tensor<Ad, 2>| t.grad(&grads).expect("a gradient").into_data().to_vec::<f32>().unwrap();
            let block = &text.transformer.resblocks[1];
            [
                x.grad(&grads).expect("a gradient").into_data().to_vec::<f32>().unwrap(),
                text.positional_embedding.val().grad(&grads).expect("a gradient").into_data().to_vec().unwrap(),
                of(block.attn.in_proj.weight.val()),
                of(block.mlp.c_fc.weight.val()),
                of(text.text_projection.val()),
            ]
        };
        let (full, fast) = (grads(true), grads(false));
        for (i, (full, fast)) in full.iter().zip(&fast).enumerate() {
            let worst = full.iter().zip(fast).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "gradient {i}: max |fast - full| = {worst:e}");
        }
    }

    #[test]
    fn the_untraced_encoding_equals_running_every_token() {
        // Short prompts (most of the context left out), the longest at the context's end (none
        // left out), one token.
        for ends in [[3, 7, 5], [19, 2, 4], [0, 0, 0]] {
            check::<Flex>(ends);
            check::<Autodiff<Flex>>(ends);
        }
    }
}
