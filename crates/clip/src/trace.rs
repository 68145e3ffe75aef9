//! Optional capture of intermediate activations, to locate a numerical mismatch layer by layer.

use burn::prelude::*;
use burn::tensor::TensorData;

/// Named intermediate activations collected during a forward pass.
#[derive(Debug, Default)]
pub struct Trace {
    /// `(name, value)` in the order they were produced.
    pub entries: Vec<(String, TensorData)>,
}

impl Trace {
    /// Stores a copy of `tensor` under `name`.
    pub fn record<B: Backend, const D: usize>(&mut self, name: impl Into<String>, tensor: &Tensor<B, D>) {
        self.entries.push((name.into(), tensor.to_data()));
    }

    /// The value recorded under `name`, if any.
    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }
}
