//! Adam with coupled L2 weight decay (`torch.optim.Adam(weight_decay=...)`, Burn's
//! [`AdamConfig`]), computed in one pass over each parameter on flex.
//!
//! Burn's [`Adam`] updates a parameter with about fifteen tensor operations, most of them a new
//! tensor: for ViT-B/16's 86 M parameters that is over a second of memory traffic per step on two
//! cores, more than the backward pass outside the matrix products. On flex (the inner backend of
//! `Autodiff<Flex>`) [`FusedAdam`] reads the parameter, its gradient and both moments once and
//! writes the parameter and the moments in place; it performs the same f32 operations in the same
//! order as Burn's, so the results are the same to the bit (`fused_adam_is_burns_adam_to_the_bit`).
//! On every other backend it is Burn's [`Adam`]. Its state is [`AdamState`], so optimiser records
//! (the checkpoints of a run) are the same as with Burn's `Adam`.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::prelude::*;
use clip_burn::fused::{from_flex, into_flex};
use rayon::prelude::*;

/// Adam with coupled weight decay; fused on flex, Burn's [`Adam`] elsewhere (module docs).
#[derive(Clone)]
pub struct FusedAdam {
    generic: Adam,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: Option<f32>,
}

impl FusedAdam {
    /// Adam with `beta_1`, `beta_2`, `epsilon` and the L2 `weight_decay` penalty added to the
    /// gradient (none when `None`); the same as Burn's
    /// `AdamConfig::new().with_beta_1(beta_1)...with_weight_decay(..)` (no AMSGrad).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: Option<f32>) -> Self {
        let generic = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay.map(WeightDecayConfig::new))
            .build();
        Self { generic, beta_1, beta_2, epsilon, weight_decay }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        match self.fused_step(lr, tensor, grad, state) {
            Ok(done) => done,
            Err((tensor, grad, state)) => self.generic.step(lr, tensor, grad, state),
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        <Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

/// The parameter and state after a step.
type Stepped<B, const D: usize> = (Tensor<B, D>, Option<AdamState<B, D>>);

/// The inputs of a step handed back when the fused path does not apply.
type Unfused<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Option<AdamState<B, D>>);

/// The scalars of one Adam step, as Burn computes them (f32).
#[derive(Clone, Copy)]
struct Factors {
    beta_1: f32,
    one_minus_beta_1: f32,
    beta_2: f32,
    one_minus_beta_2: f32,
    penalty: Option<f32>,
    /// `sqrt(1 - beta_2^t) / (1 - beta_1^t)`.
    combined: f32,
    /// `epsilon sqrt(1 - beta_2^t)`.
    epsilon: f32,
    lr: f32,
    first: bool,
}

impl FusedAdam {
    fn fused_step<B: Backend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<AdamState<B, D>>,
    ) -> Result<Stepped<B, D>, Unfused<B, D>> {
        let shape = tensor.shape();
        if grad.shape() != shape || state.as_ref().is_some_and(|s| s.momentum.moment_1.shape() != shape) {
            return Err((tensor, grad, state));
        }
        let (mut p, g) = match (into_flex(tensor), into_flex(grad)) {
            (Ok(p), Ok(g)) => (p.to_contiguous(), g.to_contiguous()),
            (p, g) => {
                return Err((p.map(from_flex).unwrap_or_else(|t| t), g.map(from_flex).unwrap_or_else(|t| t), state));
            }
        };
        let (mut m, mut v, time) = match state {
            Some(state) => {
                let AdaptiveMomentumState { time, moment_1, moment_2, max_moment_2 } = state.momentum;
                debug_assert!(max_moment_2.is_none(), "no AMSGrad");
                match (into_flex(moment_1), into_flex(moment_2)) {
                    (Ok(m), Ok(v)) => (m.to_contiguous(), v.to_contiguous(), time + 1),
                    _ => unreachable!("the moments live on the parameter's backend, checked above"),
                }
            }
            None => (g.clone(), g.clone(), 1),
        };
        // Burn's AdaptiveMomentum::transform, in f32.
        let t = time as i32;
        let bias_correction2_sqrt = (1.0 - self.beta_2.powi(t)).sqrt();
        let factors = Factors {
            beta_1: self.beta_1,
            one_minus_beta_1: 1.0 - self.beta_1,
            beta_2: self.beta_2,
            one_minus_beta_2: 1.0 - self.beta_2,
            penalty: self.weight_decay,
            combined: bias_correction2_sqrt / (1.0 - self.beta_1.powi(t)),
            epsilon: self.epsilon * bias_correction2_sqrt,
            lr: lr as f32,
            first: time == 1,
        };
        {
            let g: &[f32] = g.storage();
            // Copy-on-write: the parameter and the moments are copied once if shared, then
            // updated in place.
            let (p, m, v): (&mut [f32], &mut [f32], &mut [f32]) = (p.storage_mut(), m.storage_mut(), v.storage_mut());
            const CHUNK: usize = 1 << 14;
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| update(p, m, v, g, factors));
        }
        let momentum =
            AdaptiveMomentumState { time, moment_1: from_flex(m), moment_2: from_flex(v), max_moment_2: None };
        Ok((from_flex(p), Some(AdamState::new(momentum))))
    }
}

/// One Adam step for a chunk, element by element, with Burn's operations in Burn's order:
/// `g += penalty p` (as `p penalty + g`), `m = m beta_1 + g (1 - beta_1)`,
/// `v = v beta_2 + g^2 (1 - beta_2)` (the first step without the old moments),
/// `p = p - lr (m combined) / (sqrt(v) + epsilon)`.
fn update(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], f: Factors) {
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let g = match f.penalty {
            Some(penalty) => *p * penalty + g,
            None => g,
        };
        if f.first {
            *m = g * f.one_minus_beta_1;
            *v = (g * g) * f.one_minus_beta_2;
        } else {
            *m = *m * f.beta_1 + g * f.one_minus_beta_1;
            *v = *v * f.beta_2 + (g * g) * f.one_minus_beta_2;
        }
        let step = (*m * f.combined) / (v.sqrt() + f.epsilon);
        *p -= step * f.lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    /// Deterministic values in about [-2, 2] (no global RNG: the tests run in parallel).
    fn random(shape: [usize; 2], seed: u64) -> TensorData {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect();
        TensorData::new(values, shape)
    }

    /// Five steps of `optim` from the same parameter and gradients; the parameters and the
    /// moments after each step.
    fn run<B: Backend, O: SimpleOptimizer<B, State<2> = AdamState<B, 2>>>(optim: &O) -> Vec<[TensorData; 3]> {
        let device = Default::default();
        let mut p = Tensor::<B, 2>::from_data(random([37, 53], 1), &device);
        let mut state = None;
        let mut out = Vec::new();
        for step in 0..5 {
            let g = Tensor::<B, 2>::from_data(random([37, 53], 10 + step), &device);
            let (next, next_state) = optim.step(1e-3 * (step + 1) as f64, p, g, state);
            let s = next_state.expect("Adam keeps a state");
            out.push([
                next.clone().into_data(),
                s.momentum.moment_1.clone().into_data(),
                s.momentum.moment_2.clone().into_data(),
            ]);
            (p, state) = (next, Some(s));
        }
        out
    }

    #[test]
    fn fused_adam_is_burns_adam_to_the_bit() {
        // The paper's settings, and a large epsilon and decay so that every term shows.
        for (decay, epsilon) in [(Some(5e-4), 1e-8), (None, 1e-8), (Some(0.1), 0.5)] {
            let config = AdamConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.999)
                .with_epsilon(epsilon)
                .with_weight_decay(decay.map(WeightDecayConfig::new));
            let fused = run::<Flex, _>(&FusedAdam::new(0.9, 0.999, epsilon, decay));
            let generic = run::<Flex, _>(&config.build());
            assert_eq!(fused.len(), generic.len());
            for (step, (f, g)) in fused.iter().zip(&generic).enumerate() {
                for (what, (a, b)) in ["parameter", "moment 1", "moment 2"].iter().zip(f.iter().zip(g)) {
                    assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap(), "step {step}: {what}");
                }
            }
        }
    }

    #[test]
    fn the_parameter_is_updated_and_a_shared_copy_is_not() {
        let device = Default::default();
        let optim = FusedAdam::new(0.9, 0.999, 1e-5, None);
        let p = Tensor::<Flex, 2>::from_data(random([4, 5], 3), &device);
        let kept = p.clone();
        let before = kept.clone().into_data();
        let g = Tensor::<Flex, 2>::from_data(random([4, 5], 4), &device);
        let (next, _) = optim.step(0.1, p, g, None);
        assert_eq!(kept.into_data(), before, "a clone of the parameter is left alone");
        assert_ne!(next.into_data(), before, "the parameter moved");
    }

    #[test]
    fn other_backends_get_burns_adam() {
        // Autodiff<Flex> is not flex: the generic path, the same numbers.
        let config = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(1e-2)));
        let fused = run::<Autodiff<Flex>, _>(&FusedAdam::new(0.9, 0.999, 1e-5, Some(1e-2)));
        let generic = run::<Autodiff<Flex>, _>(&config.build());
        assert_eq!(fused, generic);
    }
}
