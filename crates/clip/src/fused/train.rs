//! The fused kernels for training on `Autodiff<Flex>`: each is one autodiff operation whose
//! forward runs the flex kernel and whose backward pass is written out here, instead of the
//! graph of generic operations (and their saved intermediates) Burn would record for it.
//!
//! - attention from the packed projection: the forward keeps the softmax probabilities `P` of
//!   every `(image, head)`; the backward, per `(image, head)` on the rayon pool and through gemm
//!   with strides like the forward, is (`S = scale Q K^T`, `P = softmax(S)`, `O = P V`)
//!   `dV = P^T dO`, `dP = dO V^T`, `dS = P * (dP - rowsum(P * dP))`, `dQ = scale dS K`,
//!   `dK = scale dS^T Q`, written straight into the packed `[tokens, 3 width]` gradient;
//! - QuickGELU `y sigmoid(1.702 y)`: the forward keeps `y`; the backward is one pass,
//!   `dy = g (s + 1.702 y s (1 - s))` with `s = sigmoid(1.702 y)`.
//!
//! The tests compare values and gradients with the generic ops on the same inputs.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::product::{Threads, gemm_f32};
use super::{SharedMut, math};

/// The float primitive of `Autodiff<Flex>` (Burn does not export its name).
pub(super) type AutodiffFlexTensor = burn::tensor::ops::FloatTensor<Autodiff<Flex>>;

/// Whether `B` is `Autodiff<Flex>` (any checkpointing) and the fused kernels are on.
pub(super) fn is_autodiff_flex<B: Backend>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<AutodiffFlexTensor>() && !super::disabled()
}

/// The `Autodiff<Flex>` primitive inside `tensor`, if that is `B`'s and the tensor is f32 and
/// the fused kernels are on; the tensor back otherwise.
pub(super) fn into_autodiff_flex<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
) -> Result<AutodiffFlexTensor, Tensor<B, D>> {
    if tensor.dtype() != DType::F32 || !is_autodiff_flex::<B>() {
        return Err(tensor);
    }
    match super::downcast::<B, AutodiffFlexTensor, D>(tensor)? {
        tensor if tensor.primitive.dtype() == DType::F32 => Ok(tensor),
        tensor => Err(from_autodiff_flex(tensor)),
    }
}

/// `tensor` as a Burn tensor of `B`; only called with tensors from [`into_autodiff_flex`].
pub(super) fn from_autodiff_flex<B: Backend, const D: usize>(tensor: AutodiffFlexTensor) -> Tensor<B, D> {
    super::upcast(tensor)
}

/// [`super::attention_packed`] on `Autodiff<Flex>`, or `Err(qkv)` on any other backend.
pub(super) fn attention_packed<B: Backend>(
    qkv: Tensor<B, 3>,
    heads: usize,
    causal: bool,
) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    let [batch, tokens, packed] = qkv.dims();
    let qkv = into_autodiff_flex(qkv)?;
    let dims = AttentionDims { batch, tokens, width: packed / 3, heads, causal };
    let input = qkv.primitive.to_contiguous();
    let output = match AttentionBackward.prepare::<NoCheckpointing>([qkv.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let mut probabilities = vec![0.0f32; batch * heads * tokens * tokens];
            let out = super::attention::attention_flex(&input, dims, Some(&mut probabilities));
            prep.finish(AttentionState { qkv: input, probabilities, dims }, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(super::attention::attention_flex(&input, dims, None)),
    };
    Ok(from_autodiff_flex(output))
}

/// The shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttentionDims {
    /// Images or prompts.
    pub(crate) batch: usize,
    /// Tokens of each.
    pub(crate) tokens: usize,
    /// Model width (all heads).
    pub(crate) width: usize,
    /// Attention heads.
    pub(crate) heads: usize,
    /// Whether future tokens are masked.
    pub(crate) causal: bool,
}

#[derive(Debug)]
struct AttentionBackward;

/// What the backward pass needs: the packed input and the probabilities
/// `[batch, heads, tokens, tokens]`.
#[derive(Clone, Debug)]
struct AttentionState {
    qkv: FlexTensor,
    probabilities: Vec<f32>,
    dims: AttentionDims,
}

impl Backward<Flex, 1> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad: FlexTensor = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            let AttentionState { qkv, probabilities, dims } = ops.state;
            let d_qkv = attention_backward(&qkv, &probabilities, &grad.to_contiguous(), dims);
            grads.register::<Flex>(parent.id, d_qkv);
        }
    }
}

/// The gradient of the packed projection `[batch, tokens, 3 width]` from the output's `d_out`
/// `[batch, tokens, width]` (formulas: the module docs).
fn attention_backward(qkv: &FlexTensor, probabilities: &[f32], d_out: &FlexTensor, dims: AttentionDims) -> FlexTensor {
    let AttentionDims { batch, tokens, width, heads, .. } = dims;
    let qkv: &[f32] = qkv.as_slice().expect("contiguous f32");
    let d_out: &[f32] = d_out.as_slice().expect("contiguous f32");
    assert_eq!(
        d_out.len(),
        batch * tokens * width,
        "attention backward: the output gradient is [batch, tokens, width]"
    );
    let head_dim = width / heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let (t, row, w) = (tokens as isize, 3 * width as isize, width as isize);
    let mut d_qkv = vec![0.0f32; batch * tokens * 3 * width];
    let dst = SharedMut(d_qkv.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each_init(
        || vec![0.0f32; tokens * tokens],
        |d_scores, task| {
            let (b, h) = (task / heads, task % heads);
            let base = b * tokens * 3 * width + h * head_dim;
            let (q, k, v) = (&qkv[base..], &qkv[base + width..], &qkv[base + 2 * width..]);
            let p = &probabilities[task * tokens * tokens..][..tokens * tokens];
            let d_o = &d_out[b * tokens * width + h * head_dim..];
            // SAFETY: the reads stay inside `qkv`, `p` and `d_out` (row strides of the packed and
            // merged layouts, this head's columns); the writes go to this (image, head)'s columns
            // of `d_qkv`, which no other task touches.
            unsafe {
                let dv = dst.get().add(base + 2 * width);
                // dV[j, :] = sum_i P[i, j] dO[i, :]
                gemm_f32(
                    [tokens, head_dim, tokens],
                    (dv, row, 1),
                    (p.as_ptr(), 1, t),
                    (d_o.as_ptr(), w, 1),
                    1.0,
                    false,
                    Threads::One,
                );
                // dP[i, j] = dO[i, :] . V[j, :]
                let ds = d_scores.as_mut_ptr();
                gemm_f32(
                    [tokens, tokens, head_dim],
                    (ds, t, 1),
                    (d_o.as_ptr(), w, 1),
                    (v.as_ptr(), 1, row),
                    1.0,
                    false,
                    Threads::One,
                );
            }
            for (d_row, p_row) in d_scores.chunks_exact_mut(tokens).zip(p.chunks_exact(tokens)) {
                math::softmax_backward_in_place(d_row, p_row);
            }
            unsafe {
                let (dq, dk) = (dst.get().add(base), dst.get().add(base + width));
                let ds = d_scores.as_ptr();
                // dQ[i, :] = scale sum_j dS[i, j] K[j, :]
                gemm_f32(
                    [tokens, head_dim, tokens],
                    (dq, row, 1),
                    (ds, t, 1),
                    (k.as_ptr(), row, 1),
                    scale,
                    false,
                    Threads::One,
                );
                // dK[j, :] = scale sum_i dS[i, j] Q[i, :]
                gemm_f32(
                    [tokens, head_dim, tokens],
                    (dk, row, 1),
                    (ds, 1, t),
                    (q.as_ptr(), row, 1),
                    scale,
                    false,
                    Threads::One,
                );
            }
        },
    );
    let shape = burn::tensor::Shape::new([batch, tokens, 3 * width]);
    FlexTensor::from_data(burn::tensor::TensorData::new(d_qkv, shape))
}

/// [`crate::attention::quick_gelu`] on `Autodiff<Flex>`, or `Err(x)` on any other backend.
pub(super) fn quick_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let x = into_autodiff_flex(x)?;
    let input = x.primitive.to_contiguous();
    // A new buffer: the input is kept for the backward pass.
    let mut values: Vec<f32> = input.as_slice::<f32>().expect("contiguous f32").to_vec();
    values.par_chunks_mut(1 << 16).for_each(math::quick_gelu_in_place);
    let out = FlexTensor::from_data(burn::tensor::TensorData::new(values, input.layout().shape().clone()));
    let output = match QuickGeluBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(input, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Ok(from_autodiff_flex(output))
}

#[derive(Debug)]
struct QuickGeluBackward;

impl Backward<Flex, 1> for QuickGeluBackward {
    /// The activation's input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad: FlexTensor = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            let y = ops.state;
            let y: &[f32] = y.as_slice().expect("contiguous f32");
            let grad = grad.to_contiguous();
            let mut d_y: Vec<f32> = grad.as_slice::<f32>().expect("contiguous f32").to_vec();
            d_y.par_chunks_mut(1 << 16)
                .zip(y.par_chunks(1 << 16))
                .for_each(|(g, y)| math::quick_gelu_backward_in_place(g, y));
            let d_y = FlexTensor::from_data(burn::tensor::TensorData::new(d_y, grad.layout().shape().clone()));
            grads.register::<Flex>(parent.id, d_y);
        }
    }
}

/// [`super::layer_norm`] on `Autodiff<Flex>` over the last dimension of `x`, with `gamma` and
/// `beta` `[width]`, or the inputs back on any other backend.
#[allow(clippy::type_complexity)]
pub(super) fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, 1>, Tensor<B, 1>)> {
    let (x, gamma, beta) = match (into_autodiff_flex(x), into_autodiff_flex(gamma), into_autodiff_flex(beta)) {
        (Ok(x), Ok(gamma), Ok(beta)) => (x, gamma, beta),
        (x, gamma, beta) => {
            let back = |t: Result<AutodiffFlexTensor, Tensor<B, 1>>| t.map(from_autodiff_flex).unwrap_or_else(|t| t);
            return Err((x.map(from_autodiff_flex).unwrap_or_else(|t| t), back(gamma), back(beta)));
        }
    };
    let input = x.primitive.to_contiguous();
    let (g, b) = (gamma.primitive.to_contiguous(), beta.primitive.to_contiguous());
    let width = g.layout().shape().num_elements();
    let (y, stats) =
        layer_norm_forward(&input, g.as_slice().expect("f32"), b.as_slice().expect("f32"), width, epsilon as f32);
    let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
    let output = match LayerNormBackward.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(LayerNormState { x: input, gamma: g, stats, width }, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Ok(from_autodiff_flex(output))
}

/// Rows normalised at a time by one task.
const NORM_ROWS_PER_TASK: usize = 32;

/// `y = ((x - mean) / sqrt(var + epsilon)) gamma + beta` per row of `width` values (the generic
/// ops' formula and order), with each row's `(mean, sqrt(var + epsilon))`.
fn layer_norm_forward(
    x: &FlexTensor,
    gamma: &[f32],
    beta: &[f32],
    width: usize,
    epsilon: f32,
) -> (FlexTensor, Vec<[f32; 2]>) {
    let values: &[f32] = x.as_slice().expect("contiguous f32");
    let rows = values.len() / width;
    let mut y = vec![0.0f32; values.len()];
    let mut stats = vec![[0.0f32; 2]; rows];
    y.par_chunks_mut(NORM_ROWS_PER_TASK * width)
        .zip(values.par_chunks(NORM_ROWS_PER_TASK * width))
        .zip(stats.par_chunks_mut(NORM_ROWS_PER_TASK))
        .for_each(|((y, x), stats)| {
            for ((y, x), stat) in y.chunks_exact_mut(width).zip(x.chunks_exact(width)).zip(stats) {
                let mean = x.iter().sum::<f32>() / width as f32;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
                let denom = (var + epsilon).sqrt();
                for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                    *y = ((x - mean) / denom) * g + b;
                }
                *stat = [mean, denom];
            }
        });
    (FlexTensor::from_data(burn::tensor::TensorData::new(y, x.layout().shape().clone())), stats)
}

#[derive(Debug)]
struct LayerNormBackward;

/// One task's rows in the backward pass: input, incoming gradient, row statistics, `dx`.
type NormChunk<'a> = (((&'a [f32], &'a [f32]), &'a [[f32; 2]]), &'a mut [f32]);

/// The input, `gamma`, and each row's `(mean, sqrt(var + epsilon))`.
#[derive(Clone, Debug)]
struct LayerNormState {
    x: FlexTensor,
    gamma: FlexTensor,
    stats: Vec<[f32; 2]>,
    width: usize,
}

impl Backward<Flex, 3> for LayerNormBackward {
    type State = LayerNormState;

    /// With `x^ = (x - mean) / s` and the incoming gradient `g`: `d beta = sum_rows g`,
    /// `d gamma = sum_rows g x^`, and with `h = g gamma`,
    /// `dx = (h - mean(h) - x^ mean(h x^)) / s` per row.
    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad: FlexTensor = grads.consume::<Flex>(&ops.node).to_contiguous();
        let LayerNormState { x, gamma, stats, width } = ops.state;
        let (values, gamma, g): (&[f32], &[f32], &[f32]) =
            (x.as_slice().expect("f32"), gamma.as_slice().expect("f32"), grad.as_slice().expect("f32"));
        let want_x = x_node.is_some();
        let mut dx = vec![0.0f32; if want_x { values.len() } else { 0 }];
        let chunk = NORM_ROWS_PER_TASK * width;
        let task = |(((x, g), stats), dx): NormChunk<'_>| {
            let (mut d_gamma, mut d_beta) = (vec![0.0f32; width], vec![0.0f32; width]);
            let mut h = vec![0.0f32; width];
            for (r, (x, g)) in x.chunks_exact(width).zip(g.chunks_exact(width)).enumerate() {
                let [mean, s] = stats[r];
                let (mut mean_h, mut mean_hx) = (0.0f32, 0.0f32);
                for j in 0..width {
                    let x_hat = (x[j] - mean) / s;
                    d_beta[j] += g[j];
                    d_gamma[j] += g[j] * x_hat;
                    h[j] = g[j] * gamma[j];
                    mean_h += h[j];
                    mean_hx += h[j] * x_hat;
                }
                if want_x {
                    let (mean_h, mean_hx) = (mean_h / width as f32, mean_hx / width as f32);
                    for (j, dx) in dx[r * width..][..width].iter_mut().enumerate() {
                        let x_hat = (x[j] - mean) / s;
                        *dx = (h[j] - mean_h - x_hat * mean_hx) / s;
                    }
                }
            }
            (d_gamma, d_beta)
        };
        let sum = |(mut a, mut b): (Vec<f32>, Vec<f32>), (c, d): (Vec<f32>, Vec<f32>)| {
            a.iter_mut().zip(c).for_each(|(a, c)| *a += c);
            b.iter_mut().zip(d).for_each(|(b, d)| *b += d);
            (a, b)
        };
        let parts = values.par_chunks(chunk).zip(g.par_chunks(chunk)).zip(stats.par_chunks(NORM_ROWS_PER_TASK));
        let (d_gamma, d_beta) = if want_x {
            parts.zip(dx.par_chunks_mut(chunk)).map(task).reduce(|| (vec![0.0; width], vec![0.0; width]), sum)
        } else {
            parts.map(|p| task((p, &mut [][..]))).reduce(|| (vec![0.0; width], vec![0.0; width]), sum)
        };
        let vector = |v: Vec<f32>| FlexTensor::from_data(burn::tensor::TensorData::new(v, [width]));
        if let Some(node) = x_node {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(burn::tensor::TensorData::new(dx, x.layout().shape().clone())),
            );
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, vector(d_gamma));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, vector(d_beta));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Values and gradients of each operation against the generic ops on the same inputs, and
    //! a check that the operations are the ones that run.
    use super::*;
    use burn::tensor::Distribution;

    type Ad = Autodiff<Flex>;

    fn random<const D: usize>(shape: [usize; D], seed: u64) -> TensorData {
        let device = Default::default();
        Flex::seed(&device, seed);
        Tensor::<Flex, D>::random(shape, Distribution::Normal(0.0, 1.0), &device).into_data()
    }

    fn worst(a: TensorData, b: TensorData) -> f32 {
        assert_eq!(a.shape, b.shape);
        let (a, b): (Vec<f32>, Vec<f32>) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
    }

    /// The output of `op` on `input` and the gradient of `sum(output * weights)` for `input`.
    fn value_and_grad<const D: usize>(
        op: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, D>,
        input: &TensorData,
        weights: &TensorData,
    ) -> (TensorData, TensorData) {
        let device = Default::default();
        let x = Tensor::<Ad, D>::from_data(input.clone(), &device).require_grad();
        let y = op(x.clone());
        let grads = (y.clone() * Tensor::from_data(weights.clone(), &device)).sum().backward();
        (y.into_data(), x.grad(&grads).expect("x has a gradient").into_data())
    }

    #[test]
    fn the_operations_run_on_autodiff_flex_only() {
        let device = Default::default();
        let x = Tensor::<Ad, 3>::zeros([1, 2, 6], &device);
        assert_eq!(attention_packed(x.clone(), 2, false).is_ok(), !crate::fused::disabled());
        assert_eq!(quick_gelu(x).is_ok(), !crate::fused::disabled());
        assert!(quick_gelu(Tensor::<Flex, 3>::zeros([1, 2, 6], &device)).is_err());
    }

    #[test]
    fn attention_values_and_gradients_match_the_generic_ops() {
        for (causal, tokens) in [(false, 197), (true, 77), (false, 1), (true, 9)] {
            let qkv = random([2, tokens, 3 * 48], tokens as u64);
            let weights = random([2, tokens, 48], 1000 + tokens as u64);
            let fused = |x: Tensor<Ad, 3>| attention_packed(x, 4, causal).expect("the fused operation");
            let generic = |x: Tensor<Ad, 3>| crate::fused::attention::attention_generic(x, 4, causal);
            let (y_fused, g_fused) = value_and_grad(fused, &qkv, &weights);
            let (y_generic, g_generic) = value_and_grad(generic, &qkv, &weights);
            let what = format!("attention causal={causal} tokens={tokens}");
            let (dy, dg) = (worst(y_fused, y_generic), worst(g_fused, g_generic.clone()));
            assert!(dy <= 2e-6, "{what}: output off by {dy:e}");
            let scale = worst(g_generic.clone(), TensorData::zeros::<f32, _>(g_generic.shape.clone())).max(1.0);
            assert!(dg <= 1e-5 * scale, "{what}: gradient off by {dg:e} (largest {scale:e})");
        }
    }

    #[test]
    fn quick_gelu_values_and_gradients_match_the_generic_ops() {
        let mut x = random([3, 7, 40], 11);
        // Large magnitudes too, where sigmoid saturates.
        x = Tensor::<Flex, 3>::from_data(x, &Default::default()).mul_scalar(4.0).into_data();
        let weights = random([3, 7, 40], 12);
        let fused = |x: Tensor<Ad, 3>| quick_gelu(x).expect("the fused operation");
        let (y_fused, g_fused) = value_and_grad(fused, &x, &weights);
        let (y_generic, g_generic) = value_and_grad(crate::attention::quick_gelu::<Ad, 3>, &x, &weights);
        let (dy, dg) = (worst(y_fused, y_generic), worst(g_fused, g_generic));
        assert!(dy <= 1e-5, "QuickGELU output off by {dy:e}");
        assert!(dg <= 1e-5, "QuickGELU gradient off by {dg:e}");
    }

    #[test]
    fn layer_norm_values_and_gradients_match_the_generic_ops() {
        use burn::module::Param;
        let device = Default::default();
        // Rows with an offset much larger than their spread too (cancellation in the variance).
        for (rows, width, offset) in [(2 * 197, 48, 0.0), (5, 768, 30.0), (70, 8, 0.0)] {
            let mut ln = burn::nn::LayerNormConfig::new(width).init::<Ad>(&device);
            ln.gamma = Param::from_data(random([width], 1), &device);
            ln.beta = Some(Param::from_data(random([width], 2), &device));
            let x = Tensor::<Flex, 2>::from_data(random([rows, width], 3), &device).add_scalar(offset).into_data();
            let weights = random([rows, width], 4);
            let run = |fused: bool| {
                let x = Tensor::<Ad, 2>::from_data(x.clone(), &device).require_grad();
                let y = if fused {
                    let beta = ln.beta.as_ref().unwrap().val();
                    layer_norm(x.clone(), ln.gamma.val(), beta, 1e-5).map_err(|_| ()).expect("the fused operation")
                } else {
                    ln.forward(x.clone())
                };
                let grads = (y.clone() * Tensor::from_data(weights.clone(), &device)).sum().backward();
                let beta = ln.beta.as_ref().unwrap().val();
                [
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    ln.gamma.val().grad(&grads).unwrap().unsqueeze(),
                    beta.grad(&grads).unwrap().unsqueeze(),
                ]
                .map(|t: Tensor<Flex, 2>| t.into_data())
            };
            let (fused, generic) = (run(true), run(false));
            for (what, (a, b)) in ["output", "d x", "d gamma", "d beta"].iter().zip(fused.into_iter().zip(generic)) {
                let largest = worst(b.clone(), TensorData::zeros::<f32, _>(b.shape.clone())).max(1.0);
                let off = worst(a, b);
                assert!(
                    off <= 2e-5 * largest,
                    "layer norm {rows}x{width}+{offset}: {what} off by {off:e} (largest {largest:e})"
                );
            }
        }
    }

    #[test]
    fn gradients_flow_through_to_the_parameters_before_the_operations() {
        // A tracked input behind an untracked-by-itself path: `w * x`, with only `w` requiring
        // grad, must still get its gradient through both operations.
        let device = Default::default();
        let w = Tensor::<Ad, 3>::from_data(random([1, 5, 3 * 8], 21), &device).require_grad();
        let x = Tensor::<Ad, 3>::from_data(random([1, 5, 3 * 8], 22), &device);
        let attended: Tensor<Ad, 3> = attention_packed(w.clone() * x, 2, true).expect("fused");
        let y: Tensor<Ad, 3> = quick_gelu(attended).expect("fused");
        let grads = y.sum().backward();
        let g = w.grad(&grads).expect("w has a gradient").into_data();
        assert!(g.to_vec::<f32>().unwrap().iter().any(|v| *v != 0.0));
    }
}
