//! Average pooling with the window equal to the stride and no padding (the ModifiedResNet's
//! stem pool and anti-aliased downsampling), on flex and `Autodiff<Flex>`; generic elsewhere.
//!
//! burn-flex 0.21 pools with a scalar loop per output pixel that recomputes the window's bounds
//! and count (about 7 % of a ModifiedResNet-50 image, `perf`). With the window equal to the stride
//! every input pixel belongs to at most one window, so each output row is the sum of `s` input
//! rows folded by `s`, and the backward pass spreads `g / s^2` back over the window.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::avg_pool2d;
use rayon::prelude::*;

use super::train::{from_autodiff_flex, into_autodiff_flex};
use super::{contiguous, from_flex, into_flex};

/// `avg_pool2d(x, [s, s], [s, s], [0, 0], count_include_pad, ceil_mode = false)` for `x`
/// `[batch, channels, h, w]`: `[batch, channels, h / s, w / s]` (rounded down), each the mean of
/// its `s x s` window.
pub(crate) fn avg_pool<B: Backend>(x: Tensor<B, 4>, stride: usize) -> Tensor<B, 4> {
    let [batch, channels, h, w] = x.dims();
    if stride == 1 {
        return x;
    }
    let dims = PoolDims { planes: batch * channels, h, w, s: stride };
    if stride == 0 || h < stride || w < stride {
        return avg_pool2d(x, [stride, stride], [stride, stride], [0, 0], true, false);
    }
    let x = match into_autodiff_flex(x) {
        Ok(x) => {
            let input = x.primitive.to_contiguous();
            let y =
                flex_tensor(forward(input.as_slice().expect("f32"), dims), [batch, channels, h / stride, w / stride]);
            let output = match PoolBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(dims, y),
                OpsKind::UnTracked(prep) => prep.finish(y),
            };
            return from_autodiff_flex(output);
        }
        Err(x) => x,
    };
    match into_flex(x) {
        Ok(x) => {
            let input = contiguous(&x);
            from_flex(flex_tensor(
                forward(input.as_slice().expect("f32"), dims),
                [batch, channels, h / stride, w / stride],
            ))
        }
        Err(x) => avg_pool2d(x, [stride, stride], [stride, stride], [0, 0], true, false),
    }
}

fn flex_tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `planes` planes of `h x w`, pooled by `s`.
#[derive(Clone, Copy, Debug)]
struct PoolDims {
    planes: usize,
    h: usize,
    w: usize,
    s: usize,
}

impl PoolDims {
    fn out(self) -> (usize, usize) {
        (self.h / self.s, self.w / self.s)
    }
}

fn forward(x: &[f32], d: PoolDims) -> Vec<f32> {
    let (oh, ow) = d.out();
    let scale = 1.0 / (d.s * d.s) as f32;
    let mut y = vec![0.0f32; d.planes * oh * ow];
    y.par_chunks_mut(oh * ow).zip(x.par_chunks(d.h * d.w)).for_each(|(out, plane)| {
        for (oy, line) in out.chunks_exact_mut(ow).enumerate() {
            for i in 0..d.s {
                let row = &plane[(oy * d.s + i) * d.w..][..ow * d.s];
                for (o, window) in line.iter_mut().zip(row.chunks_exact(d.s)) {
                    *o += window.iter().sum::<f32>();
                }
            }
            line.iter_mut().for_each(|o| *o *= scale);
        }
    });
    y
}

fn backward(g: &[f32], d: PoolDims) -> Vec<f32> {
    let (oh, ow) = d.out();
    let scale = 1.0 / (d.s * d.s) as f32;
    let mut dx = vec![0.0f32; d.planes * d.h * d.w];
    dx.par_chunks_mut(d.h * d.w).zip(g.par_chunks(oh * ow)).for_each(|(plane, g)| {
        for (oy, line) in g.chunks_exact(ow).enumerate() {
            for i in 0..d.s {
                let row = &mut plane[(oy * d.s + i) * d.w..][..ow * d.s];
                for (window, &v) in row.chunks_exact_mut(d.s).zip(line) {
                    window.iter_mut().for_each(|x| *x = v * scale);
                }
            }
        }
    });
    dx
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = PoolDims;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad: FlexTensor = grads.consume::<Flex>(&ops.node).to_contiguous();
        if let Some(parent) = parent {
            let d = ops.state;
            let shape = grad.layout().shape().clone();
            let dx = backward(grad.as_slice().expect("f32"), d);
            grads.register::<Flex>(parent.id, flex_tensor(dx, [shape[0], shape[1], d.h, d.w]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;

    type Ad = Autodiff<Flex>;

    #[test]
    fn values_and_gradients_match_burns_pooling() {
        // Even sides, odd sides (the last row and column are dropped), and a stride of 3.
        let device = Default::default();
        for (shape, s) in [([2, 3, 8, 6], 2), ([1, 2, 7, 5], 2), ([2, 2, 9, 7], 3)] {
            let len: usize = shape.iter().product();
            let values: Vec<f32> = (0..len).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
            let run = |fused: bool| {
                let x = Tensor::<Ad, 4>::from_data(TensorData::new(values.clone(), shape), &device).require_grad();
                let y = if fused {
                    avg_pool(x.clone(), s)
                } else {
                    avg_pool2d(x.clone(), [s, s], [s, s], [0, 0], true, false)
                };
                let dims = y.dims();
                let n: usize = dims.iter().product();
                let g = Tensor::<Ad, 4>::from_data(
                    TensorData::new((0..n).map(|i| i as f32 - 3.0).collect::<Vec<f32>>(), dims),
                    &device,
                );
                let grads = (y.clone() * g).sum().backward();
                (y.into_data(), x.grad(&grads).unwrap().into_data())
            };
            let (ours, theirs) = (run(true), run(false));
            ours.0.assert_approx_eq::<f32>(&theirs.0, burn::tensor::Tolerance::absolute(1e-6));
            ours.1.assert_approx_eq::<f32>(&theirs.1, burn::tensor::Tolerance::absolute(1e-6));
            // And on flex itself.
            let x = Tensor::<Flex, 4>::from_data(TensorData::new(values.clone(), shape), &device);
            avg_pool(x, s).into_data().assert_approx_eq::<f32>(&theirs.0, burn::tensor::Tolerance::absolute(1e-6));
        }
    }
}
