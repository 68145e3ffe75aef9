//! The inversion network: image embedding -> one pseudo-word token S* (paper section III-B).

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu;

use super::dropout::SeededDropout;

/// `Linear(D, 4D), LN, GELU, Dropout(0.5), Linear(4D, 4D), LN, GELU, Dropout(0.5), Linear(4D, T), LN`
/// with `T` the text token width.
#[derive(Module, Debug)]
pub struct InversionNetwork<B: Backend> {
    /// First layer `D -> 4D`.
    pub fc1: Linear<B>,
    /// Norm after fc1.
    pub ln1: LayerNorm<B>,
    /// Second layer `4D -> 4D`.
    pub fc2: Linear<B>,
    /// Norm after fc2.
    pub ln2: LayerNorm<B>,
    /// Output layer `4D -> T`.
    pub fc3: Linear<B>,
    /// Output norm.
    pub ln3: LayerNorm<B>,
    /// Dropout 0.5 (active only on an autodiff backend), with masks that do not depend on the
    /// backend.
    pub dropout: SeededDropout,
}

impl<B: Backend> InversionNetwork<B> {
    /// A network from `input` (the projected image feature width) to `token_width`.
    pub fn new(input: usize, token_width: usize, device: &B::Device) -> Self {
        let hidden = 4 * input;
        Self {
            fc1: LinearConfig::new(input, hidden).init(device),
            ln1: LayerNormConfig::new(hidden).init(device),
            fc2: LinearConfig::new(hidden, hidden).init(device),
            ln2: LayerNormConfig::new(hidden).init(device),
            fc3: LinearConfig::new(hidden, token_width).init(device),
            ln3: LayerNormConfig::new(token_width).init(device),
            dropout: SeededDropout::new(0.5),
        }
    }

    /// `x` `[batch, D]` -> pseudo-tokens `[batch, T]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = self.dropout.forward(gelu(self.ln1.forward(self.fc1.forward(x)))); // [batch, 4D]
        let x = self.dropout.forward(gelu(self.ln2.forward(self.fc2.forward(x)))); // [batch, 4D]
        self.ln3.forward(self.fc3.forward(x)) // [batch, T]
    }
}
