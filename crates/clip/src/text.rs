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
    /// The last block runs for the end-of-text tokens alone
    /// ([`Transformer::forward_at`](crate::attention::Transformer::forward_at)).
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
    /// `end_positions` `[batch]` (the end-of-text token of each row); the last block runs for
    /// those tokens alone, as in [`forward`](Self::forward).
    pub fn forward_embeddings(&self, embeddings: Tensor<B, 3>, end_positions: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        self.forward_embeddings_traced(embeddings, end_positions, None)
    }

    fn forward_embeddings_traced(
        &self,
        embeddings: Tensor<B, 3>,
        end_positions: Tensor<B, 1, Int>,
        trace: Option<&mut Trace>,
    ) -> Tensor<B, 2> {
        let [batch, context, _] = embeddings.dims();
        let pos = self.positional_embedding.val().narrow(0, 0, context);
        // The table repeated for every prompt, then one same-shape addition: flex runs a `[1, ..]`
        // broadcast through its generic strided iterator on the calling thread.
        let x = embeddings + pos.unsqueeze::<3>().repeat_dim(0, batch); // [batch, context, width]
        let end = match trace {
            // Every token through every block, recorded.
            Some(t) => {
                t.record("text.embeddings", &x);
                let x = self.transformer.forward(x, true, "text", Some(&mut *t));
                let x = crate::fused::layer_norm(&self.ln_final, x);
                t.record("text.final", &x);
                crate::attention::rows_at(x, end_positions) // [batch, width]
            }
            // The last block for the end-of-text tokens alone (`Transformer::forward_at`); the
            // norm is per token, so it can follow the selection.
            None => crate::fused::layer_norm(&self.ln_final, self.transformer.forward_at(x, true, end_positions)),
        };
        end.matmul(self.text_projection.val()) // [batch, embed_dim]
    }
}
