//! Fused CPU kernels for the `flex` backend, for inference and for training, with the generic
//! Burn ops everywhere else.
//!
//! Each public function here takes Burn tensors of any backend. When the backend is `flex`
//! itself (inference: [`Module::valid`](burn::module::AutodiffModule::valid) models, the
//! `handid` command's embedding, search and evaluation), the tensors are f32 and the kernel
//! runs on their storage in one pass. When it is `Autodiff<Flex>` (training on the CPU), the
//! attention, QuickGELU and layer norm are each one autodiff operation whose forward is the
//! kernel and whose backward pass is written out (`train`), instead of the graph of generic
//! operations Burn would record. On every other backend (`wgpu`, `cuda`, autodiff over them) the
//! same result comes from the generic ops, differentiable as before. The choice is made by the
//! tensor's type, so there is no flag to forget and no silent change of results: the parity
//! tests run on flex and therefore through these kernels, at the tolerances they always had, and
//! the `train` tests compare values and gradients with the generic ops.
//!
//! `CLIP_BURN_FUSED=off` in the environment switches them off (the generic ops run on flex too),
//! to measure what they buy or to rule them out; it is read once per process.
//!
//! What they replace and why (docs/BENCHMARKS.md has the profile):
//! - [`attention_packed`]: flex's attention is single-threaded over `batch x heads`, and the
//!   head split and merge around it copy q, k, v and the output. Here each `(batch, head)` is a
//!   task on the rayon pool; the two matrix products read the packed `[tokens, 3 width]`
//!   projection in place through strides and write the merged `[tokens, width]` layout.
//! - [`attention_at`]: the last block of an encoder that keeps one token (the ViT's class
//!   token, the text's end-of-text token; `attention::Transformer::forward_at`) needs one query
//!   per sequence: one task per `(sequence, head)`, its keys and values read in place in the
//!   packed projection, the causal mask as the number of keys.
//! - [`linear_quick_gelu`], [`linear`], [`linear_residual`]: one 2-d product for all tokens of
//!   all images, on every backend: flex's batched matmul (what `Linear` runs on a 3-d input)
//!   packs the weight again for every image and runs each image's product on one thread, and in
//!   training the weight's gradient of a batched product is one product per image summed
//!   afterwards. On flex the product is cut into one piece per thread, and each thread adds the
//!   bias, applies QuickGELU (with an `exp` that vectorises) and adds the residual connection to
//!   its own piece right after computing it, while the piece is in its cache: the MLP's bias,
//!   `x * 1.702`, `sigmoid`, the product and the residual add were five passes over the
//!   activations, each on all threads.
//! - [`channel_affine`] and [`add_relu`]: the ModifiedResNet's BatchNorm (+ ReLU) in evaluation
//!   and its residual join, one pass each, in place.
//! - [`layer_norm`]: flex's own layer norm is already one pass; on `Autodiff<Flex>` the generic
//!   one is eight recorded operations (mean, subtraction, square, mean, sqrt, division, scale,
//!   shift) with their backward passes, here one operation each way.
//! - [`pool_tokens`] and [`pool_attention`]: the ModifiedResNet's attention pool outside its
//!   linears (`attention_pool`): its tokens were built through flex's strided iterator and its
//!   single query attended with flex's single-threaded attention over transposed views.
//! - [`conv2d`]: every convolution of the encoders (the ViT's patch embedding, the
//!   ModifiedResNet's) as one product per image in NCHW layout, forward and backward (`conv`):
//!   flex converts each input to channels-last and builds and multiplies the columns in tiles;
//!   the average pools with the window equal to the stride (`pool`) in one pass each way.
//! - training (`Autodiff<Flex>`): attention keeps its softmax probabilities and computes the
//!   gradient of the packed projection directly; QuickGELU's backward is one pass; the
//!   ModifiedResNet's BatchNorm with batch statistics (+ ReLU) is one operation each way
//!   (`batch_norm`).

mod attention;
mod attention_pool;
mod batch_norm;
mod columns;
mod conv;
mod math;
mod pool;
mod product;
mod shifted;
mod train;

pub use attention::{attention_at, attention_packed};
pub use attention_pool::{pool_attention, pool_tokens};
pub use conv::{conv2d, conv2d_affine};

pub(crate) use batch_norm::batch_norm_train;
pub(crate) use pool::avg_pool;

use product::Threads;

use std::any::{Any, TypeId};

use burn::backend::flex::FlexTensor;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use rayon::prelude::*;

/// The flex tensor inside `tensor`, if the backend is flex, the tensor is f32 and the fused
/// kernels are on; the tensor back otherwise. With [`from_flex`], the bridge for kernels outside
/// this crate (`handid`'s optimiser).
pub fn into_flex<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
    if tensor.dtype() != DType::F32 || !is_flex::<B>() {
        return Err(tensor);
    }
    downcast(tensor)
}

/// `tensor` as a Burn tensor of `B`, for `B` whose tensors [`into_flex`] opened.
///
/// # Panics
/// If `B`'s float tensors are not [`FlexTensor`]s (a programming error: call it only with a
/// backend for which [`into_flex`] returned `Ok`).
pub fn from_flex<B: Backend, const D: usize>(tensor: FlexTensor) -> Tensor<B, D> {
    upcast(tensor)
}

/// The float primitive of `tensor` as a `P`, if `P` is `B`'s float primitive; the tensor back
/// otherwise.
fn downcast<B: Backend, P: 'static, const D: usize>(tensor: Tensor<B, D>) -> Result<P, Tensor<B, D>> {
    match tensor.into_primitive() {
        TensorPrimitive::Float(primitive) => {
            let any: Box<dyn Any> = Box::new(primitive);
            any.downcast::<P>().map(|p| *p).map_err(|any| {
                let primitive = any.downcast::<B::FloatTensorPrimitive>().expect("the primitive just boxed");
                Tensor::from_primitive(TensorPrimitive::Float(*primitive))
            })
        }
        quantized => Err(Tensor::from_primitive(quantized)),
    }
}

/// The tensor again from what [`into_flex`] returned, whether it opened it or handed it back
/// (when a kernel falls back to the generic ops after opening only some of its operands).
fn back<B: Backend, const D: usize>(tensor: Result<FlexTensor, Tensor<B, D>>) -> Tensor<B, D> {
    tensor.map(from_flex).unwrap_or_else(|t| t)
}

/// `primitive` as a float tensor of `B`.
///
/// # Panics
/// If `P` is not `B`'s float primitive (only called with what [`downcast`] returned).
fn upcast<B: Backend, P: 'static, const D: usize>(primitive: P) -> Tensor<B, D> {
    let any: Box<dyn Any> = Box::new(primitive);
    let primitive = any.downcast::<B::FloatTensorPrimitive>().expect("upcast of B's own primitive");
    Tensor::from_primitive(TensorPrimitive::Float(*primitive))
}

/// The f32 values of a contiguous copy (or the tensor itself when it already is one).
fn contiguous(tensor: &FlexTensor) -> FlexTensor {
    tensor.to_contiguous()
}

/// A pointer that rayon tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every task writes a region no other task touches (see `attention_flex`).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Whether the fused kernels are switched off by `CLIP_BURN_FUSED=off` (read once), for
/// measuring what they buy and for ruling them out when a result looks wrong.
pub fn disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("CLIP_BURN_FUSED").is_ok_and(|v| v == "off" || v == "0"))
}

/// Whether the encoders compute only what their outputs depend on
/// ([`crate::attention::Transformer::forward_at`], the text without its padding): on flex and
/// `Autodiff<Flex>` with the fused kernels on, where it is tested against computing every token,
/// values and gradients. Other backends (`wgpu`, `cuda`) compute every token as before: the one
/// query of [`attention_at`]'s generic path makes vector-matrix products (`[.., 1, head_dim] x
/// [.., head_dim, tokens]`), and cubek-matmul 0.2's autotune on `wgpu` ran a kernel for them that
/// then refused the layout ("Vecmat plane parallel only supports col major rhs"), which brought
/// down the fusion stream (`backend_training` on lavapipe, docs/BENCHMARKS.md). Computing that
/// attention with element-wise products and sums instead passed `backend_training` there, but
/// `cuda` shares those kernels and has not been tested.
pub fn computes_only_what_is_kept<B: Backend>() -> bool {
    is_flex::<B>() || train::is_autodiff_flex::<B>()
}

/// Whether `B` is flex itself (its float tensors are [`FlexTensor`]s) and the fused kernels are
/// on.
fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<FlexTensor>() && !disabled()
}

/// `x` `[.., in]` as one `[rows, in]` matrix, and the dimensions of `linear`'s output for `x`.
///
/// Every backend gets the 2-d product: flex's batched matmul (what `Linear` runs on a 3-d input)
/// packs the weight again for every image and runs each image's product on one thread (`kernels`
/// bench, `matmul/vit-b-16-mlp` against `matmul/vit-b-16-mlp-batched`), and in training the
/// weight's gradient of a batched product is one `[in, out]` product per image summed
/// afterwards, where the 2-d one is a single product.
fn flatten<B: Backend, const D: usize>(linear: &Linear<B>, x: Tensor<B, D>) -> (Tensor<B, 2>, [usize; D]) {
    let dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let mut out_dims = dims;
    out_dims[D - 1] = linear.weight.dims()[1];
    (x.reshape([rows, dims[D - 1]]), out_dims)
}

/// What follows a linear's product on flex, applied by each thread to the piece of the output
/// it just computed (`product::gemm_f32_then`), while the piece is in its cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activation {
    /// `x W + b`.
    None,
    /// `quick_gelu(x W + b)`.
    QuickGelu,
}

/// `residual + activation(x W + bias)` for flex f32 `x` `[rows, in]`, `weight` `[in, out]`,
/// `bias` `[out]` and `residual` `[rows, out]`, with one piece of the product per thread
/// (`product`: gemm's own threading is slower on these shapes), each finished with its bias,
/// activation and residual by the thread that computed it. The sums are the generic ops' in
/// their order, `(x W + b) + residual`, so the values are theirs.
fn linear_flex<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    activation: Activation,
    residual: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    let ([rows, inner], [_, out]) = (x.dims(), weight.dims());
    let (x, weight) = (flex_f32(x), flex_f32(weight));
    let (bias, residual) = (bias.map(flex_f32), residual.map(flex_f32));
    let (a, w) = (f32s(&x), f32s(&weight));
    let (bias, residual) = (bias.as_ref().map(f32s), residual.as_ref().map(f32s));
    assert_eq!((a.len(), w.len()), (rows * inner, inner * out), "linear: [rows, in] x [in, out]");
    assert!(bias.is_none_or(|b| b.len() == out), "linear: the bias is [out]");
    assert!(residual.is_none_or(|r| r.len() == rows * out), "linear: the residual is [rows, out]");
    // Initialised piece by piece on the threads that compute it (`Write::Uninitialised`).
    let mut y: Vec<f32> = Vec::with_capacity(rows * out);
    let dst = SharedMut(y.as_mut_ptr());
    let finish = |(piece_rows, cols): product::Piece| {
        for r in piece_rows {
            // SAFETY: `gemm_f32_then` hands each piece to one thread, after writing it; the row's
            // columns `cols` are inside `y` (`r < rows`, `cols.end <= out`).
            let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(r * out + cols.start), cols.len()) };
            match (bias, activation) {
                (Some(b), Activation::None) => math::bias_add_in_place(row, &b[cols.clone()]),
                (Some(b), Activation::QuickGelu) => math::bias_quick_gelu_in_place(row, &b[cols.clone()]),
                (None, Activation::QuickGelu) => math::quick_gelu_in_place(row),
                (None, Activation::None) => {}
            }
            if let Some(residual) = residual {
                math::add_in_place(row, &residual[r * out..][cols.clone()]);
            }
        }
    };
    // SAFETY: the three row-major matrices are exactly the slices' extents; `finish` writes only
    // the piece it is given.
    unsafe {
        product::gemm_f32_then(
            [rows, out, inner],
            (y.as_mut_ptr(), out as isize, 1),
            (a.as_ptr(), inner as isize, 1),
            (w.as_ptr(), out as isize, 1),
            1.0,
            product::Write::Uninitialised,
            Threads::All,
            &finish,
        );
        // SAFETY: `Write::Uninitialised` initialised every element of the `rows x out` matrix.
        y.set_len(rows * out);
    }
    from_flex(FlexTensor::from_data(TensorData::new(y, [rows, out])))
}

/// The contiguous flex tensor inside `tensor`, which the caller checked is a flex f32 tensor.
fn flex_f32<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FlexTensor {
    contiguous(&into_flex(tensor).unwrap_or_else(|_| unreachable!("a flex f32 tensor, checked by the caller")))
}

/// The values of a contiguous f32 flex tensor.
fn f32s(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice().expect("contiguous f32")
}

/// Whether the fused path applies to `linear` and `x`: flex, and every tensor f32.
fn fused_linear<B: Backend>(linear: &Linear<B>, x: &Tensor<B, 2>) -> bool {
    let bias = linear.bias.as_ref().map(|b| b.val().dtype()).unwrap_or(DType::F32);
    is_flex::<B>() && [bias, x.dtype(), linear.weight.val().dtype()].iter().all(|&d| d == DType::F32)
}

/// `residual + activation(linear.forward(x))` for `x` `[.., in]`, computed as one 2-d product
/// (why: the module docs): on flex by [`linear_flex`], elsewhere with the generic ops in the same
/// order.
fn linear_then<B: Backend, const D: usize>(
    linear: &Linear<B>,
    x: Tensor<B, D>,
    activation: Activation,
    residual: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    let (x, out_dims) = flatten(linear, x);
    let fused =
        fused_linear(linear, &x) && residual.as_ref().is_none_or(|r| r.dims() == out_dims && r.dtype() == DType::F32);
    if fused {
        let residual = residual.map(|r| r.reshape([x.dims()[0], out_dims[D - 1]]));
        let bias = linear.bias.as_ref().map(|b| b.val());
        return linear_flex(x, linear.weight.val(), bias, activation, residual).reshape(out_dims);
    }
    let y = linear.forward(x);
    let y = match activation {
        Activation::None => y,
        Activation::QuickGelu => quick_gelu(y),
    };
    let y = y.reshape(out_dims);
    match residual {
        Some(residual) => residual + y,
        None => y,
    }
}

/// `linear.forward(x)` for `x` `[.., in]`, computed as one 2-d product (why: the module docs); on
/// flex the bias is added to each piece of the product as it is finished.
pub fn linear<B: Backend, const D: usize>(linear: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    linear_then(linear, x, Activation::None, None)
}

/// `residual + linear.forward(x)` (a residual connection after a projection); on flex the bias and
/// the residual are added to each piece of the product as it is finished, in the order of the
/// generic ops.
pub fn linear_residual<B: Backend, const D: usize>(
    linear: &Linear<B>,
    x: Tensor<B, D>,
    residual: Tensor<B, D>,
) -> Tensor<B, D> {
    linear_then(linear, x, Activation::None, Some(residual))
}

/// `quick_gelu(linear(x))`, the CLIP MLP's first half: `y = x W + b`, then `y * sigmoid(1.702 y)`;
/// on flex the bias and the activation are applied to each piece of the product as it is
/// finished.
pub fn linear_quick_gelu<B: Backend, const D: usize>(linear: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    linear_then(linear, x, Activation::QuickGelu, None)
}

/// `ln.forward(x)`; on `Autodiff<Flex>` one operation with its own backward pass (`train`)
/// instead of the eight generic operations Burn records for a layer norm. Flex itself runs its
/// own fused layer norm (`ln.forward`).
pub fn layer_norm<B: Backend, const D: usize>(ln: &LayerNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    if !train::is_autodiff_flex::<B>() {
        return ln.forward(x);
    }
    let (Some(beta), Some(epsilon)) = (ln.beta.as_ref(), layer_norm_epsilon(ln)) else {
        return ln.forward(x);
    };
    match train::layer_norm(x, ln.gamma.val(), beta.val(), epsilon) {
        Ok(y) => y,
        Err((x, _, _)) => ln.forward(x),
    }
}

/// The epsilon of `ln`, which Burn 0.21 keeps private but prints (`LayerNorm {d_model: .., epsilon:
/// .., ..}`); `None` if that ever changes, and then [`layer_norm`] runs `ln.forward`: the same
/// numbers, only slower (`layer_norm_epsilon_is_read` fails first).
fn layer_norm_epsilon<B: Backend>(ln: &LayerNorm<B>) -> Option<f64> {
    let text = format!("{ln}");
    let start = text.find("epsilon: ")? + "epsilon: ".len();
    let rest = &text[start..];
    let end = rest.find(|c: char| c == ',' || c == '}' || c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `x * sigmoid(1.702 x)` ([`crate::attention::quick_gelu`]); on `Autodiff<Flex>` one operation
/// with its own backward pass (`train`), elsewhere the generic ops.
fn quick_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match train::quick_gelu(x) {
        Ok(y) => y,
        Err(x) => crate::attention::quick_gelu(x),
    }
}

/// `relu?(x * scale[c] + shift[c])` for every channel `c` of `x` `[batch, channels, h, w]` (a
/// BatchNorm in evaluation, with the ReLU after it when `relu`); on flex in place, in one pass.
pub fn channel_affine<B: Backend>(
    x: Tensor<B, 4>,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
    relu: bool,
) -> Tensor<B, 4> {
    let [batch, channels, h, w] = x.dims();
    match (into_flex(x), into_flex(scale), into_flex(shift)) {
        (Ok(x), Ok(scale), Ok(shift)) => {
            let (scale, shift) = (contiguous(&scale), contiguous(&shift));
            let (scale, shift): (&[f32], &[f32]) =
                (scale.as_slice().expect("contiguous f32"), shift.as_slice().expect("contiguous f32"));
            let mut x = contiguous(&{ x });
            let plane = h * w;
            let values: &mut [f32] = x.storage_mut();
            let planes_per_task = ((1 << 16) / plane.max(1)).max(1);
            values.par_chunks_mut(planes_per_task * plane).enumerate().for_each(|(task, chunk)| {
                for (i, p) in chunk.chunks_exact_mut(plane).enumerate() {
                    let c = (task * planes_per_task + i) % channels;
                    math::affine_in_place(p, scale[c], shift[c], relu);
                }
            });
            from_flex(x)
        }
        (x, scale, shift) => {
            let (x, scale, shift): (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) = (back(x), back(scale), back(shift));
            // Per channel on the `[batch * channels, h * w]` view with a column: a `[1, C, 1, 1]`
            // broadcast is about 40x slower on flex (`kernels` bench, `channel_affine`).
            let per_row =
                |v: Tensor<B, 1>| v.reshape([1, channels]).repeat_dim(0, batch).reshape([batch * channels, 1]);
            let y = (x.reshape([batch * channels, h * w]) * per_row(scale) + per_row(shift))
                .reshape([batch, channels, h, w]);
            if relu { burn::tensor::activation::relu(y) } else { y }
        }
    }
}

/// `relu(a + b)` (the residual join of a ResNet bottleneck); on flex in place on `a`.
pub fn add_relu<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if a.dims() != b.dims() {
        return burn::tensor::activation::relu(a + b);
    }
    match (into_flex(a), into_flex(b)) {
        (Ok(a), Ok(b)) => {
            let b = contiguous(&b);
            let b: &[f32] = b.as_slice().expect("contiguous f32");
            let mut a = contiguous(&{ a });
            let values: &mut [f32] = a.storage_mut();
            values.par_chunks_mut(1 << 16).zip(b.par_chunks(1 << 16)).for_each(|(a, b)| math::add_relu_in_place(a, b));
            from_flex(a)
        }
        (a, b) => burn::tensor::activation::relu(back(a) + back(b)),
    }
}

#[cfg(test)]
mod tests {
    //! Each kernel on flex against the generic ops (called directly, or on `Autodiff<Flex>`,
    //! which takes no fused path for these). `train` tests the training side.
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    type Generic = Autodiff<Flex>;

    /// Standard normal values of `shape`, reproducibly from `seed`.
    pub(super) fn random<const D: usize>(shape: [usize; D], seed: u64) -> TensorData {
        let device = Default::default();
        Flex::seed(&device, seed);
        Tensor::<Flex, D>::random(shape, Distribution::Normal(0.0, 1.0), &device).into_data()
    }

    /// Fails unless `fused` and `generic` have one shape and differ by at most `tolerance`.
    pub(super) fn assert_close(fused: TensorData, generic: TensorData, tolerance: f32, what: &str) {
        assert_eq!(fused.shape, generic.shape, "{what}: shape");
        let (a, b): (Vec<f32>, Vec<f32>) = (fused.to_vec().unwrap(), generic.to_vec().unwrap());
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= tolerance, "{what}: max |fused - generic| = {worst:e} > {tolerance:e}");
    }

    #[test]
    fn the_fused_path_is_taken_on_flex_only() {
        assert!(is_flex::<Flex>() || disabled());
        assert!(!is_flex::<Generic>());
    }

    #[test]
    fn layer_norm_epsilon_is_read() {
        let device = Default::default();
        for epsilon in [1e-5, 1e-6, 0.25] {
            let ln = burn::nn::LayerNormConfig::new(8).with_epsilon(epsilon).init::<Flex>(&device);
            assert_eq!(layer_norm_epsilon(&ln), Some(epsilon));
        }
    }

    #[test]
    fn linear_and_quick_gelu_match_the_generic_ops() {
        let device = Default::default();
        let x = random([2, 5, 24], 7);
        let generic = LinearConfig::new(24, 40).init::<Generic>(&device);
        let flex = generic.valid();
        let fused = linear(&flex, Tensor::<Flex, 3>::from_data(x.clone(), &device));
        let reference = generic.forward(Tensor::<Generic, 3>::from_data(x.clone(), &device));
        assert_close(fused.into_data(), reference.clone().into_data(), 1e-6, "linear");
        let fused = linear_quick_gelu(&flex, Tensor::<Flex, 3>::from_data(x, &device));
        let reference = crate::attention::quick_gelu(reference);
        assert_close(fused.into_data(), reference.into_data(), 1e-6, "linear + QuickGELU");
    }

    #[test]
    fn split_linears_with_bias_activation_and_residual_match_the_generic_ops() {
        // Large enough to be split into pieces (`product`), along the columns ([2 x 40, 64] x
        // [64, 200]) and along the rows ([2 x 150, 64] x [64, 48]), on pools of 1, 2 and 3
        // threads; with and without a bias. The values must be the generic ops' to the bit: the
        // same products (gemm either way) and the same sums in the same order.
        let device = Default::default();
        for (tokens, out) in [(40, 200), (150, 48)] {
            for bias in [true, false] {
                let x = random([2, tokens, 64], tokens as u64);
                let residual = random([2, tokens, out], 3);
                let generic = LinearConfig::new(64, out).with_bias(bias).init::<Generic>(&device);
                let flex = generic.valid();
                let input = || Tensor::<Generic, 3>::from_data(x.clone(), &device);
                let y = generic.forward(input());
                let want_linear = y.clone().into_data();
                let want_gelu = crate::attention::quick_gelu(y.clone()).into_data();
                let want_residual = (Tensor::<Generic, 3>::from_data(residual.clone(), &device) + y).into_data();
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
                    let what = format!("[2, {tokens}, 64] -> {out}, bias {bias}, {threads} threads");
                    let input = || Tensor::<Flex, 3>::from_data(x.clone(), &device);
                    let (got_linear, got_gelu, got_residual) = pool.install(|| {
                        let residual = Tensor::<Flex, 3>::from_data(residual.clone(), &device);
                        (
                            linear(&flex, input()).into_data(),
                            linear_quick_gelu(&flex, input()).into_data(),
                            linear_residual(&flex, input(), residual).into_data(),
                        )
                    });
                    assert_close(got_linear, want_linear.clone(), 0.0, &format!("linear {what}"));
                    assert_close(got_residual, want_residual.clone(), 0.0, &format!("linear + residual {what}"));
                    // QuickGELU: this module's `exp` against the generic sigmoid's.
                    assert_close(got_gelu, want_gelu.clone(), 1e-6, &format!("linear + QuickGELU {what}"));
                }
            }
        }
    }

    #[test]
    fn channel_affine_and_add_relu_match_the_generic_ops() {
        let device = Default::default();
        let (x, y) = (random([2, 3, 5, 7], 1), random([2, 3, 5, 7], 2));
        let (scale, shift) = (random([3], 3), random([3], 4));
        for relu in [false, true] {
            let fused = channel_affine(
                Tensor::<Flex, 4>::from_data(x.clone(), &device),
                Tensor::from_data(scale.clone(), &device),
                Tensor::from_data(shift.clone(), &device),
                relu,
            );
            let generic = channel_affine(
                Tensor::<Generic, 4>::from_data(x.clone(), &device),
                Tensor::from_data(scale.clone(), &device),
                Tensor::from_data(shift.clone(), &device),
                relu,
            );
            assert_close(fused.into_data(), generic.into_data(), 0.0, &format!("channel affine relu={relu}"));
        }
        let fused = add_relu(Tensor::<Flex, 4>::from_data(x.clone(), &device), Tensor::from_data(y.clone(), &device));
        let generic = add_relu(Tensor::<Generic, 4>::from_data(x, &device), Tensor::from_data(y, &device));
        assert_close(fused.into_data(), generic.into_data(), 0.0, "add + ReLU");
    }

    #[test]
    fn a_shared_input_is_not_overwritten() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::from_data(random([1, 2, 3, 3], 5), &device);
        let before = x.clone().into_data();
        let scale = Tensor::from_floats([2.0, 3.0], &device);
        let shift = Tensor::from_floats([1.0, -1.0], &device);
        let _ = channel_affine(x.clone(), scale, shift, true);
        let _ = add_relu(x.clone(), x.clone());
        assert_eq!(x.into_data(), before);
    }
}
