//! Dropout whose masks come from a seeded generator on the CPU, so that a training run draws the
//! same masks on every backend (each backend's own generator gives other numbers for one seed).

use std::sync::{Arc, Mutex};

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator behind [`SeededDropout`]; clones of a module share it.
#[derive(Clone, Debug)]
pub struct MaskGenerator(Arc<Mutex<ChaCha8Rng>>);

impl MaskGenerator {
    /// A generator at the start of `seed`'s stream.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))))
    }

    /// Restarts the stream at `seed` (every module sharing the generator sees it).
    pub fn reseed(&self, seed: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = ChaCha8Rng::seed_from_u64(seed);
    }
}

/// Dropout with probability `prob`, active on an autodiff backend (training) and the identity
/// otherwise, as Burn's `Dropout`: kept elements are scaled by `1 / (1 - prob)`.
#[derive(Module, Clone, Debug)]
pub struct SeededDropout {
    /// Probability that an element is zeroed.
    pub prob: f64,
    /// Where the masks come from.
    #[module(skip)]
    pub masks: MaskGenerator,
}

impl SeededDropout {
    /// Dropout with probability `prob`, its generator at seed 0 until [`reseed`](Self::reseed).
    pub fn new(prob: f64) -> Self {
        Self { prob, masks: MaskGenerator::new(0) }
    }

    /// Restarts the mask stream at `seed`.
    pub fn reseed(&self, seed: u64) {
        self.masks.reseed(seed);
    }

    /// Applies dropout to `x` (any shape) when training.
    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if self.prob == 0.0 || !B::ad_enabled(&x.device()) {
            return x;
        }
        let keep = 1.0 - self.prob;
        let scale = (1.0 / keep) as f32;
        let shape = x.shape();
        let mask: Vec<f32> = {
            let mut rng = self.masks.0.lock().unwrap_or_else(|p| p.into_inner());
            (0..shape.num_elements()).map(|_| if rng.random::<f64>() < keep { scale } else { 0.0 }).collect()
        };
        let mask = Tensor::<B, D>::from_data(TensorData::new(mask, shape), &x.device());
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    #[test]
    fn drops_about_prob_scales_the_rest_repeats_after_a_reseed_and_is_off_in_evaluation() {
        let device = Default::default();
        let dropout = SeededDropout::new(0.5);
        let x = Tensor::<Autodiff<Flex>, 2>::ones([40, 50], &device);
        let first: Vec<f32> = dropout.forward(x.clone()).into_data().to_vec().unwrap();
        let zeros = first.iter().filter(|&&v| v == 0.0).count();
        assert!((800..1200).contains(&zeros), "{zeros} of 2000 dropped at p = 0.5");
        assert!(first.iter().all(|&v| v == 0.0 || v == 2.0));
        let second: Vec<f32> = dropout.forward(x.clone()).into_data().to_vec().unwrap();
        assert_ne!(first, second, "consecutive masks must differ");
        dropout.reseed(0);
        let again: Vec<f32> = dropout.forward(x).into_data().to_vec().unwrap();
        assert_eq!(first, again, "a reseed repeats the stream");
        let eval = dropout.forward(Tensor::<Flex, 2>::ones([4, 5], &device));
        assert_eq!(eval.into_data().to_vec::<f32>().unwrap(), vec![1.0; 20]);
    }
}
