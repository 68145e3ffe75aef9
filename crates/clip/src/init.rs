//! open_clip's parameter initialisation for the parameters Burn's modules do not own, so that
//! an untrained model is usable (pretrained weights replace these values).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;

/// A parameter drawn from `normal(0, std)`.
pub(crate) fn normal<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(shape, Distribution::Normal(0.0, std), device))
}
