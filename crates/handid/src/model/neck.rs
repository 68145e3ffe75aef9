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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;

    /// Training mode normalises with the biased batch variance but accumulates the unbiased
    /// one, as `torch.nn.BatchNorm1d` does; evaluation uses the running statistics.
    #[test]
    fn running_variance_is_unbiased_and_evaluation_uses_it() {
        let device = Default::default();
        let neck = BnNeck::<Autodiff<Flex>>::new(1, &device);
        let x = Tensor::<Autodiff<Flex>, 2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 6.0], [4, 1]), &device);
        let y: Vec<f32> = neck.forward(x).into_data().to_vec().unwrap();
        // mean 3, biased variance 3.5, unbiased 14/3
        let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 6.0].iter().map(|v| (v - 3.0) / (3.5f32 + 1e-5).sqrt()).collect();
        for (a, b) in y.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {expected:?}");
        }
        let mean: f32 = neck.running_mean.value_sync().into_scalar();
        let var: f32 = neck.running_var.value_sync().into_scalar();
        assert!((mean - 0.3).abs() < 1e-6, "{mean}");
        assert!((var - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-6, "{var}");

        let eval = neck.valid();
        let out: f32 = eval.forward(Tensor::from_data(TensorData::new(vec![2.0f32], [1, 1]), &device)).into_scalar();
        assert!((out - (2.0 - 0.3) / (var + 1e-5).sqrt()).abs() < 1e-5, "{out}");
    }
}
