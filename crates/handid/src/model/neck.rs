//! BN neck and ID classifier (CLIP-ReID `make_model.py`: `bottleneck` + `classifier`).

use burn::module::{Param, RunningState};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

/// BatchNorm1d whose bias is frozen at 0 (the "BNNeck" of re-identification), updating its
/// running variance with the *unbiased* batch variance as PyTorch does (Burn's `BatchNorm`
/// uses the biased one; the difference is 5 % at batch 20 and shows in evaluation).
///
/// Like Burn's `BatchNorm`, it uses batch statistics on an autodiff backend (training) and the
/// running statistics otherwise (`model.valid()`).
#[derive(Module, Debug)]
pub struct BnNeck<B: Backend> {
    /// Scale, initialised to 1.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift, 0 and frozen.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (unbiased) variance.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Weight of the new batch in the running statistics (PyTorch convention).
    pub momentum: f64,
    /// Added to the variance.
    pub epsilon: f64,
}

impl<B: Backend> BnNeck<B> {
    /// A neck over `channels` features: weight 1, bias 0 (frozen), momentum 0.1, eps 1e-5.
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)).set_require_grad(false),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }

    /// `x` `[batch, channels]` -> normalised `[batch, channels]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, channels] = x.dims();
        let (mean, var) = if B::ad_enabled(&x.device()) {
            let mean = x.clone().mean_dim(0); // [1, channels]
            let var = (x.clone() - mean.clone()).square().mean_dim(0); // biased, for normalising
            let unbiased = var.clone().detach().mul_scalar(batch as f64 / (batch.max(2) - 1) as f64);
            let m = self.momentum;
            let running_mean = self.running_mean.value_sync().mul_scalar(1.0 - m)
                + mean.clone().detach().reshape([channels]).mul_scalar(m);
            let running_var =
                self.running_var.value_sync().mul_scalar(1.0 - m) + unbiased.reshape([channels]).mul_scalar(m);
            self.running_mean.update(running_mean.detach());
            self.running_var.update(running_var.detach());
            (mean, var)
        } else {
            (self.running_mean.value().reshape([1, channels]), self.running_var.value().reshape([1, channels]))
        };
        let normalised = (x - mean) / var.add_scalar(self.epsilon).sqrt();
        normalised * self.weight.val().reshape([1, channels]) + self.bias.val().reshape([1, channels])
    }
}

/// Bias-free ID classifier initialised with normal(0, 0.001).
pub fn classifier<B: Backend>(features: usize, classes: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(features, classes)
        .with_bias(false)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.001 })
        .init(device)
}
