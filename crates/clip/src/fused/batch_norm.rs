//! Batch normalisation with batch statistics (training) on `Autodiff<Flex>` as one autodiff
//! operation, optionally followed by ReLU, with its backward pass written out.
//!
//! Per channel over the `n = batch h w` values: `mean`, `var = mean((x - mean)^2)` (biased, as
//! torch normalises), `s = sqrt(var + epsilon)`, `y = x scale + shift` with `scale = gamma / s`
//! and `shift = beta - mean scale` (the generic path's formula), then `max(y, 0)` with ReLU.
//! Backward, with `x^ = (x - mean) / s` and the incoming gradient `g` masked by `y > 0` under
//! ReLU: `d beta = sum g`, `d gamma = sum g x^`,
//! `dx = (gamma / s) (g - mean(g) - x^ mean(g x^))`: the gradient through the batch statistics
//! included, as the generic graph computes it.
//!
//! What it replaces: `vision::batch_norm`'s generic graph, about ten recorded operations of
//! which five (subtraction, square, product, sum, ReLU) allocate an activation-sized tensor in
//! the forward pass and more in the backward one; here one pass each way per channel, on the
//! rayon pool.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::SharedMut;
use super::train::{from_autodiff_flex, into_autodiff_flex};

/// The normalised (and rectified) activation with the batch's `(mean, biased variance)` per
/// channel (plain tensors, for the running statistics).
pub(crate) type Normalized<B> = (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>);

/// [`crate::vision`]'s training-mode BatchNorm2d on `Autodiff<Flex>` for `x`
/// `[batch, channels, h, w]`, or the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(crate) fn batch_norm_train<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    relu: bool,
) -> Result<Normalized<B>, (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>)> {
    let [batch, channels, h, w] = x.dims();
    let device = x.device();
    let (x, gamma, beta) = match (into_autodiff_flex(x), into_autodiff_flex(gamma), into_autodiff_flex(beta)) {
        (Ok(x), Ok(gamma), Ok(beta)) => (x, gamma, beta),
        (x, gamma, beta) => {
            let back = |t: Result<_, Tensor<B, 1>>| t.map(from_autodiff_flex).unwrap_or_else(|t| t);
            return Err((x.map(from_autodiff_flex).unwrap_or_else(|t| t), back(gamma), back(beta)));
        }
    };
    let dims = Dims { batch, channels, plane: h * w };
    let input = x.primitive.to_contiguous();
    let (g, b) = (gamma.primitive.to_contiguous(), beta.primitive.to_contiguous());
    let (values, gammas, betas): (&[f32], &[f32], &[f32]) =
        (input.as_slice().expect("f32"), g.as_slice().expect("f32"), b.as_slice().expect("f32"));
    let stats = statistics(values, dims, epsilon as f32);
    let y = normalize(values, gammas, betas, &stats, dims, relu);
    let y = FlexTensor::from_data(TensorData::new(y, input.layout().shape().clone()));
    let mean: Vec<f32> = stats.iter().map(|s| s.mean).collect();
    let var: Vec<f32> = stats.iter().map(|s| s.var).collect();
    let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
    let output = match BatchNormBackward.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(BatchNormState { x: input, gamma: g, beta: b, stats, dims, relu }, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    let vector = |v: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v, [channels]), &device);
    Ok((from_autodiff_flex(output), vector(mean), vector(var)))
}

/// The layout: `batch` images of `channels` planes of `plane` values.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Dims {
    /// The planes of channel `c`, one per image.
    fn planes(self, values: &[f32], c: usize) -> impl Iterator<Item = &[f32]> {
        (0..self.batch).map(move |b| &values[(b * self.channels + c) * self.plane..][..self.plane])
    }
}

/// One channel's batch statistics.
#[derive(Clone, Copy, Debug)]
struct Stats {
    mean: f32,
    /// Biased variance.
    var: f32,
    /// `sqrt(var + epsilon)`.
    std: f32,
}

/// Mean and variance per channel, two passes, accumulated in f64.
fn statistics(values: &[f32], dims: Dims, epsilon: f32) -> Vec<Stats> {
    let n = (dims.batch * dims.plane) as f64;
    (0..dims.channels)
        .into_par_iter()
        .map(|c| {
            let mean = dims.planes(values, c).flatten().map(|&v| v as f64).sum::<f64>() / n;
            let var = dims.planes(values, c).flatten().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let (mean, var) = (mean as f32, var as f32);
            Stats { mean, var, std: (var + epsilon).sqrt() }
        })
        .collect()
}

/// `y = x scale + shift` per channel, rectified when `relu`.
fn normalize(values: &[f32], gamma: &[f32], beta: &[f32], stats: &[Stats], dims: Dims, relu: bool) -> Vec<f32> {
    let mut y = vec![0.0f32; values.len()];
    let out = SharedMut(y.as_mut_ptr());
    (0..dims.channels).into_par_iter().for_each(|c| {
        let scale = gamma[c] / stats[c].std;
        let shift = beta[c] - stats[c].mean * scale;
        for b in 0..dims.batch {
            let at = (b * dims.channels + c) * dims.plane;
            // SAFETY: the planes of channel c belong to this task alone.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(at), dims.plane) };
            for (d, &v) in dst.iter_mut().zip(&values[at..at + dims.plane]) {
                let t = v * scale + shift;
                *d = if relu { t.max(0.0) } else { t };
            }
        }
    });
    y
}

#[derive(Debug)]
struct BatchNormBackward;

/// The input, `gamma` and `beta` (the ReLU mask is recomputed from them) and the statistics.
#[derive(Clone, Debug)]
struct BatchNormState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    stats: Vec<Stats>,
    dims: Dims,
    relu: bool,
}

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad: FlexTensor = grads.consume::<Flex>(&ops.node).to_contiguous();
        let BatchNormState { x, gamma, beta, stats, dims, relu } = ops.state;
        let (values, gamma, beta, g): (&[f32], &[f32], &[f32], &[f32]) = (
            x.as_slice().expect("f32"),
            gamma.as_slice().expect("f32"),
            beta.as_slice().expect("f32"),
            grad.as_slice().expect("f32"),
        );
        let want_x = x_node.is_some();
        let mut dx = vec![0.0f32; if want_x { values.len() } else { 0 }];
        let out = SharedMut(dx.as_mut_ptr());
        let n = (dims.batch * dims.plane) as f64;
        let sums: Vec<[f32; 2]> = (0..dims.channels)
            .into_par_iter()
            .map(|c| {
                let Stats { mean, std, .. } = stats[c];
                let scale = gamma[c] / std;
                let shift = beta[c] - mean * scale;
                // The incoming gradient, zero where the ReLU was off.
                let masked = |v: f32, g: f32| if relu && v * scale + shift <= 0.0 { 0.0 } else { g };
                let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
                for (xs, gs) in dims.planes(values, c).zip(dims.planes(g, c)) {
                    for (&v, &g) in xs.iter().zip(gs) {
                        let g = masked(v, g) as f64;
                        sum_g += g;
                        sum_gx += g * ((v - mean) / std) as f64;
                    }
                }
                if want_x {
                    let (mean_g, mean_gx) = ((sum_g / n) as f32, (sum_gx / n) as f32);
                    for b in 0..dims.batch {
                        let at = (b * dims.channels + c) * dims.plane;
                        // SAFETY: the planes of channel c belong to this task alone.
                        let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(at), dims.plane) };
                        for ((d, &v), &g) in dst.iter_mut().zip(&values[at..][..dims.plane]).zip(&g[at..][..dims.plane])
                        {
                            let x_hat = (v - mean) / std;
                            *d = scale * (masked(v, g) - mean_g - x_hat * mean_gx);
                        }
                    }
                }
                [sum_gx as f32, sum_g as f32]
            })
            .collect();
        let vector = |i: usize| {
            FlexTensor::from_data(TensorData::new(sums.iter().map(|s| s[i]).collect::<Vec<f32>>(), [dims.channels]))
        };
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, x.layout().shape().clone())));
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, vector(0));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, vector(1));
        }
    }
}
