//! 2-d convolution on flex (inference) and `Autodiff<Flex>` (training) as one matrix product
//! per image, in NCHW layout, with its backward pass written out; the generic ops elsewhere.
//!
//! For an image `x` `[c_in, h, w]` the columns matrix `col` `[c_in kh kw, oh ow]` holds in row
//! `(c, i, j)` the input plane `c` shifted by kernel offset `(i, j)` (zero outside the padded
//! input), so that `y = W col` with the weight `[c_out, c_in, kh, kw]` read as its own
//! `[c_out, c_in kh kw]` matrix (no reordering). A 1x1 convolution with stride 1 and no padding
//! needs no `col`: it is the input plane matrix itself. The backward pass, with the incoming
//! gradient `dy` `[c_out, oh ow]` per image:
//! - `dW = sum over images of dy col^T` (the columns rebuilt from the kept input, not kept);
//! - `dcol = W^T dy`, and `dx` the sum of each `dcol` row added back at its shifted position
//!   (col2im).
//!
//! What this replaces on flex: burn-flex 0.21 converts every input to channels-last, builds the
//! columns in tiles of 512 output pixels with an allocation and a product per tile, and scatters
//! each tile's result into the output (about a third of a ModifiedResNet-50 batch outside the
//! products, `perf`); in training Burn's generic backward runs a transposed convolution and a
//! convolution with permuted operands on the same path. Here every product runs on one thread:
//! the forward pass is one task per image, or per band of output rows when the batch is smaller
//! than the thread pool; the backward pass is one task per image when there are at least as
//! many as threads, and otherwise one image at a time with the product split across the threads.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

use super::columns::{col2im, im2col};
use super::product::{Threads, Write, gemm_f32, gemm_f32_then};
use super::shifted;
use super::train::{AutodiffFlexTensor, from_autodiff_flex, into_autodiff_flex};
use super::{SharedMut, back, contiguous, from_flex, into_flex};

/// `conv.forward(x)` for `x` `[batch, c_in, h, w]`: through the kernels here on flex and
/// `Autodiff<Flex>` when the convolution has one group, no dilation and `Valid` or `Explicit`
/// padding; through the generic ops otherwise, with a 1x1 convolution (stride 1, no padding, one
/// group) as the matrix product it is.
///
/// Why the 1x1 product on the generic path: burn-cubecl 0.21's convolution returns wrong values
/// for some 1x1 shapes (found on `wgpu`: `[2, 8, 16, 16]` -> 32 channels, cosine 0.70 to the
/// right answer, while batches of 1 and 3 were right; `tests/embed.rs` and
/// `tests/clip_parity.rs` catch it on `CLIP_HANDID_TEST_BACKEND=wgpu`).
pub fn conv2d<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let Some(geometry) = Geometry::of(conv, x.dims()) else {
        return conv2d_generic(conv, x);
    };
    let y = match fused(x, conv.weight.val(), geometry) {
        Ok(y) => y,
        Err(x) => return conv2d_generic(conv, x),
    };
    match &conv.bias {
        // Per channel on the `[batch * c_out, oh * ow]` view (see `vision::batch_norm`).
        Some(bias) => {
            let Geometry { batch, c_out, oh, ow, .. } = geometry;
            let column = bias.val().reshape([1, c_out]).repeat_dim(0, batch).reshape([batch * c_out, 1]);
            (y.reshape([batch * c_out, oh * ow]) + column).reshape([batch, c_out, oh, ow])
        }
        None => y,
    }
}

/// A convolution followed by a per-channel `y scale[c] + shift[c]` (an evaluation-mode batch
/// norm), plus `residual` when given (a ResNet bottleneck's join), then ReLU when `relu`:
/// `relu?(channel_affine(conv2d(conv, x), scale, shift) + residual?)`. On flex, for the
/// convolutions [`conv2d`] computes itself and without a bias, this is applied to each band of
/// the output on the thread that just computed it, while the band is in its cache, instead of
/// in further passes over the whole output; the same per-element arithmetic as
/// [`super::channel_affine`] and [`super::add_relu`], so the values are identical.
pub fn conv2d_affine<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    let geometry = Geometry::of(conv, x.dims()).filter(|g| {
        conv.bias.is_none()
            && scale.dims() == [g.c_out]
            && residual.as_ref().is_none_or(|r| Shape::from(r.dims()) == g.output_shape())
    });
    let (Some(g), Ok(flex_x)) = (geometry, into_flex(x.clone())) else {
        return separate(conv2d(conv, x), scale, shift, residual, relu);
    };
    let residual = residual.map(into_flex);
    match (into_flex(conv.weight.val()), into_flex(scale), into_flex(shift), residual) {
        (Ok(weight), Ok(scale), Ok(shift), residual @ (None | Some(Ok(_)))) => {
            let (scale, shift) = (contiguous(&scale), contiguous(&shift));
            let residual = residual.map(|r| contiguous(&r.expect("flex (matched)")));
            let affine = Affine {
                scale: scale.as_slice().expect("contiguous f32"),
                shift: shift.as_slice().expect("contiguous f32"),
                residual: residual.as_ref().map(|r| r.as_slice().expect("contiguous f32")),
                relu,
            };
            let y = forward(&contiguous(&flex_x), &contiguous(&weight), g, Some(affine));
            from_flex(FlexTensor::from_data(TensorData::new(y, g.output_shape())))
        }
        (_, scale, shift, residual) => separate(conv2d(conv, x), back(scale), back(shift), residual.map(back), relu),
    }
}

/// [`conv2d_affine`]'s steps one after the other, on the convolution's output `y`.
fn separate<B: Backend>(
    y: Tensor<B, 4>,
    scale: Tensor<B, 1>,
    shift: Tensor<B, 1>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    match residual {
        None => super::channel_affine(y, scale, shift, relu),
        Some(r) if relu => super::add_relu(super::channel_affine(y, scale, shift, false), r),
        Some(r) => super::channel_affine(y, scale, shift, false) + r,
    }
}

/// What [`conv2d_affine`] applies to each output channel: `y scale[c] + shift[c]`, plus the
/// residual, then ReLU.
#[derive(Clone, Copy)]
pub(super) struct Affine<'a> {
    pub(super) scale: &'a [f32],
    pub(super) shift: &'a [f32],
    /// Of the whole output, or of one image's after [`Affine::image`].
    pub(super) residual: Option<&'a [f32]>,
    pub(super) relu: bool,
}

impl Affine<'_> {
    /// The same affine with the residual of image `b` alone, each image's output `len` long.
    pub(super) fn image(self, b: usize, len: usize) -> Self {
        Self { residual: self.residual.map(|r| &r[b * len..][..len]), ..self }
    }

    /// Applies channel `c`'s affine to `values`, which start at element `at` of the output
    /// (of the image, after [`Affine::image`]), in place.
    pub(super) fn apply(&self, c: usize, at: usize, values: &mut [f32]) {
        let (scale, shift) = (self.scale[c], self.shift[c]);
        match self.residual {
            None => super::math::affine_in_place(values, scale, shift, self.relu),
            Some(r) => super::math::affine_add_in_place(values, scale, shift, &r[at..][..values.len()], self.relu),
        }
    }
}

/// The convolution without bias through the kernels here on `Autodiff<Flex>` or flex, or
/// `Err(x)` on any other backend.
fn fused<B: Backend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, g: Geometry) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let (x, weight): (Tensor<B, 4>, Tensor<B, 4>) = match (into_autodiff_flex(x), into_autodiff_flex(weight)) {
        (Ok(x), Ok(weight)) => return Ok(from_autodiff_flex(conv2d_autodiff(x, weight, g))),
        (x, weight) => {
            (x.map(from_autodiff_flex).unwrap_or_else(|t| t), weight.map(from_autodiff_flex).unwrap_or_else(|t| t))
        }
    };
    match (into_flex(x), into_flex(weight)) {
        (Ok(x), Ok(weight)) => {
            let y = forward(&contiguous(&x), &contiguous(&weight), g, None);
            Ok(from_flex(FlexTensor::from_data(TensorData::new(y, g.output_shape()))))
        }
        (x, _) => Err(back(x)),
    }
}

/// [`conv2d`] with Burn's generic ops (the 1x1 case as a product, see there).
fn conv2d_generic<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let pointwise = conv.kernel_size == [1, 1]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(
            conv.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Same | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
    if !pointwise {
        return conv.forward(x);
    }
    let [batch, channels, h, w] = x.dims();
    let weight = conv.weight.val(); // [out, in, 1, 1]
    let out = weight.dims()[0];
    let y = weight.reshape([1, out, channels]).matmul(x.reshape([batch, channels, h * w])); // [batch, out, h * w]
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, out, 1]),
        None => y,
    };
    y.reshape([batch, out, h, w])
}

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    pub(super) batch: usize,
    pub(super) c_in: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c_out: usize,
    /// Kernel height and width.
    pub(super) kernel: [usize; 2],
    /// Stride along height and width.
    pub(super) stride: [usize; 2],
    /// Zero rows above and zero columns left of the input (those below and right only bound
    /// the output size).
    pub(super) pad: [usize; 2],
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geometry {
    /// The geometry of `conv` on an input of `dims`, if the kernels here cover it (one group, no
    /// dilation, `Valid` or `Explicit` padding, input channels matching the weight, a non-empty
    /// output).
    fn of<B: Backend>(conv: &Conv2d<B>, dims: [usize; 4]) -> Option<Self> {
        let [batch, c_in, h, w] = dims;
        let [c_out, weight_in, kh, kw] = conv.weight.dims();
        let (top, left, bottom, right) = match conv.padding {
            PaddingConfig2d::Valid => (0, 0, 0, 0),
            PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
            PaddingConfig2d::Same => return None,
        };
        let supported =
            conv.groups == 1 && conv.dilation == [1, 1] && weight_in == c_in && conv.stride.iter().all(|&s| s > 0);
        let (padded_h, padded_w) = (h + top + bottom, w + left + right);
        if !supported || padded_h < kh || padded_w < kw || batch == 0 || kh == 0 || kw == 0 {
            return None;
        }
        let [sy, sx] = conv.stride;
        Some(Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kernel: [kh, kw],
            stride: conv.stride,
            pad: [top, left],
            oh: (padded_h - kh) / sy + 1,
            ow: (padded_w - kw) / sx + 1,
        })
    }

    /// Rows of the columns matrix: `c_in kh kw`.
    fn rows(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels per image: `oh ow`.
    pub(super) fn pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1x1 kernel with stride 1 and no padding: the input plane matrix is the columns matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0] && (self.oh, self.ow) == (self.h, self.w)
    }

    fn output_shape(&self) -> Shape {
        Shape::new([self.batch, self.c_out, self.oh, self.ow])
    }

    /// Whether the images run in parallel (each product on one thread) rather than one at a
    /// time with the product on all threads.
    fn images_in_parallel(&self) -> bool {
        self.batch >= rayon::current_num_threads()
    }
}

/// Scratch of one forward task: the columns matrix, or [`shifted`]'s buffers.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    shifted: shifted::Scratch,
}

/// `y` `[batch, c_out, oh, ow]` of the convolution of contiguous f32 `x` `[batch, c_in, h, w]`
/// with `weight` `[c_out, c_in, kh, kw]`, no bias, then `affine` per channel if given.
fn forward(x: &FlexTensor, weight: &FlexTensor, g: Geometry, affine: Option<Affine>) -> Vec<f32> {
    let (x, weight): (&[f32], &[f32]) =
        (x.as_slice().expect("contiguous f32"), weight.as_slice().expect("contiguous f32"));
    let (k, n, image_len) = (g.rows(), g.pixels(), g.c_in * g.h * g.w);
    assert_eq!(x.len(), g.batch * image_len, "conv2d: the input is [batch, c_in, h, w]");
    assert_eq!(weight.len(), g.c_out * k, "conv2d: the weight is [c_out, c_in, kh, kw]");
    // Initialised band by band by the tasks below (`Write::Uninitialised`, or the copy out of
    // `shifted`'s wide rows): the bands of every image cover its rows, each for all channels.
    let mut y: Vec<f32> = Vec::with_capacity(g.batch * g.c_out * n);
    let out = SharedMut(y.as_mut_ptr());
    // One task per (image, band of output rows): a batch smaller than the pool is cut into
    // bands so that every thread has a product of its own (gemm's own threading splits these
    // shapes into many synchronised pieces: `product`).
    let threads = rayon::current_num_threads();
    let bands = if g.batch >= threads { 1 } else { threads.div_ceil(g.batch).min(g.oh) };
    let band_rows = g.oh.div_ceil(bands);
    let by_shifts = shifted::pays(&g);
    (0..g.batch * bands).into_par_iter().for_each_init(Scratch::default, |scratch, task| {
        let (b, band) = (task / bands, task % bands);
        let rows = band * band_rows..((band + 1) * band_rows).min(g.oh);
        if rows.is_empty() {
            return;
        }
        let (first, pixels) = (rows.start * g.ow, rows.len() * g.ow);
        let image = &x[b * image_len..][..image_len];
        let affine = affine.map(|a| a.image(b, g.c_out * n));
        if by_shifts {
            // SAFETY: image b's output [c_out, n]; this task alone writes its rows `rows`.
            unsafe {
                shifted::band(image, weight, &g, rows, &mut scratch.shifted, out.get().add(b * g.c_out * n), affine)
            };
            return;
        }
        let col = &mut scratch.col;
        let (columns, stride) = if g.is_pointwise() {
            (&image[first..], n)
        } else {
            col.resize(k * pixels, 0.0);
            im2col(image, &g, rows, col, false);
            (col.as_slice(), pixels)
        };
        // SAFETY: W [c_out, k] and the columns [k, pixels] (row stride `stride`) are inside
        // their slices; this band of image b's output [c_out, pixels] (row stride n) is written
        // by this task only.
        unsafe {
            let dst = out.get().add(b * g.c_out * n + first);
            let band_out = SharedMut(dst);
            gemm_f32_then(
                [g.c_out, pixels, k],
                (dst, n as isize, 1),
                (weight.as_ptr(), k as isize, 1),
                (columns.as_ptr(), stride as isize, 1),
                1.0,
                Write::Uninitialised,
                Threads::One,
                &|(channels, cols): super::product::Piece| {
                    let Some(affine) = &affine else { return };
                    let dst = band_out.get();
                    for c in channels {
                        // SAFETY: channel c's part of the piece just written, this task's.
                        let line = std::slice::from_raw_parts_mut(dst.add(c * n + cols.start), cols.len());
                        affine.apply(c, first + c * n + cols.start, line);
                    }
                },
            );
        }
    });
    // SAFETY: the tasks initialised every element (above).
    unsafe { y.set_len(g.batch * g.c_out * n) };
    y
}

/// The gradients `(dx, dW)` of the convolution from `dy` `[batch, c_out, oh, ow]`, each only
/// when asked for.
fn backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    d_y: &FlexTensor,
    g: Geometry,
    want: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (x, weight, d_y): (&[f32], &[f32], &[f32]) = (
        x.as_slice().expect("contiguous f32"),
        weight.as_slice().expect("contiguous f32"),
        d_y.as_slice().expect("contiguous f32"),
    );
    let [want_x, want_w] = want;
    let (k, n, image_len) = (g.rows(), g.pixels(), g.c_in * g.h * g.w);
    assert_eq!(d_y.len(), g.batch * g.c_out * n, "conv2d backward: the output gradient is [batch, c_out, oh, ow]");
    let mut d_x = vec![0.0f32; if want_x { g.batch * image_len } else { 0 }];
    let dx_out = SharedMut(d_x.as_mut_ptr());
    let parallel_images = g.images_in_parallel();
    let threads = if parallel_images { Threads::One } else { Threads::All };
    let pointwise = g.is_pointwise();
    // One image: its input gradient written into `d_x`, its weight gradient added to `d_w`.
    let one = |b: usize, (d_w, col, d_col): &mut (Vec<f32>, Vec<f32>, Vec<f32>)| {
        let image = &x[b * image_len..][..image_len];
        let dy = d_y[b * g.c_out * n..].as_ptr();
        if want_w {
            let columns = if pointwise {
                image
            } else {
                col.resize(k * n, 0.0);
                im2col(image, &g, 0..g.oh, col, !parallel_images);
                col.as_slice()
            };
            d_w.resize(g.c_out * k, 0.0);
            // SAFETY: dy [c_out, n], the columns read transposed [n, k], d_w [c_out, k] owned
            // by this task.
            unsafe {
                gemm_f32(
                    [g.c_out, k, n],
                    (d_w.as_mut_ptr(), k as isize, 1),
                    (dy, n as isize, 1),
                    (columns.as_ptr(), 1, n as isize),
                    1.0,
                    true,
                    threads,
                );
            }
        }
        if want_x {
            // SAFETY: image b's part of d_x is written by this task only.
            let d_image = unsafe { std::slice::from_raw_parts_mut(dx_out.get().add(b * image_len), image_len) };
            let dst = if pointwise {
                d_image.as_mut_ptr()
            } else {
                d_col.resize(k * n, 0.0);
                d_col.as_mut_ptr()
            };
            // SAFETY: W read transposed [k, c_out], dy [c_out, n], dst [k, n] owned by this task.
            unsafe {
                gemm_f32(
                    [k, n, g.c_out],
                    (dst, n as isize, 1),
                    (weight.as_ptr(), 1, k as isize),
                    (dy, n as isize, 1),
                    1.0,
                    false,
                    threads,
                );
            }
            if !pointwise {
                col2im(d_col, &g, d_image, !parallel_images);
            }
        }
    };
    let d_w = if parallel_images {
        (0..g.batch)
            .into_par_iter()
            .fold(
                || (Vec::new(), Vec::new(), Vec::new()),
                |mut scratch, b| {
                    one(b, &mut scratch);
                    scratch
                },
            )
            .map(|(d_w, _, _)| d_w)
            .reduce(Vec::new, |mut a, b| {
                if a.is_empty() {
                    return b;
                }
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
    } else {
        let mut scratch = (Vec::new(), Vec::new(), Vec::new());
        (0..g.batch).for_each(|b| one(b, &mut scratch));
        scratch.0
    };
    (want_x.then_some(d_x), want_w.then_some(d_w))
}

/// The convolution as one autodiff operation on `Autodiff<Flex>` (no bias).
fn conv2d_autodiff(x: AutodiffFlexTensor, weight: AutodiffFlexTensor, g: Geometry) -> AutodiffFlexTensor {
    let input = x.primitive.to_contiguous();
    let kernel = weight.primitive.to_contiguous();
    let y = FlexTensor::from_data(TensorData::new(forward(&input, &kernel, g, None), g.output_shape()));
    match Conv2dBackward.prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(Conv2dState { x: input, weight: kernel, geometry: g }, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[derive(Debug)]
struct Conv2dBackward;

/// The input and the weight (the columns are rebuilt from the input in the backward pass).
#[derive(Clone, Debug)]
struct Conv2dState {
    x: FlexTensor,
    weight: FlexTensor,
    geometry: Geometry,
}

impl Backward<Flex, 2> for Conv2dBackward {
    type State = Conv2dState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [x_node, weight_node] = ops.parents;
        let grad: FlexTensor = grads.consume::<Flex>(&ops.node).to_contiguous();
        let Conv2dState { x, weight, geometry: g } = ops.state;
        let want = [x_node.is_some(), weight_node.is_some()];
        let (d_x, d_w) = backward(&x, &weight, &grad, g, want);
        if let (Some(node), Some(d_x)) = (x_node, d_x) {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(d_x, x.layout().shape().clone())));
        }
        if let (Some(node), Some(d_w)) = (weight_node, d_w) {
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(d_w, weight.layout().shape().clone())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! Values and gradients against Burn's own convolution (flex's kernels and Burn's autodiff
    //! backward for it) on the same inputs, over the geometries the encoders use and edge cases.
    use super::*;
    use burn::backend::Autodiff;
    use burn::nn::conv::Conv2dConfig;

    type Ad = Autodiff<Flex>;

    /// Deterministic values in [-1, 1) (a local generator: Flex::seed is process-global and
    /// races across parallel tests).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn data(shape: [usize; 4], seed: u64) -> TensorData {
        TensorData::new(values(shape.iter().product(), seed), shape)
    }

    fn worst(a: &TensorData, b: &TensorData) -> f32 {
        assert_eq!(a.shape, b.shape);
        let (a, b): (Vec<f32>, Vec<f32>) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
    }

    /// The cases: (input dims, c_out, kernel, stride, padding (top, left, bottom, right), bias).
    type Case = ([usize; 4], usize, [usize; 2], [usize; 2], (usize, usize, usize, usize), bool);

    const CASES: [Case; 10] = [
        ([3, 4, 9, 9], 5, [3, 3], [1, 1], (1, 1, 1, 1), false), // ResNet 3x3, images in parallel
        ([1, 4, 9, 9], 5, [3, 3], [1, 1], (1, 1, 1, 1), true),  // one image, product on all threads
        ([2, 3, 11, 10], 6, [3, 3], [2, 2], (1, 1, 1, 1), false), // the stem's strided conv
        ([2, 6, 7, 7], 8, [1, 1], [1, 1], (0, 0, 0, 0), true),  // pointwise: no columns
        ([1, 6, 7, 7], 8, [1, 1], [1, 1], (0, 0, 0, 0), false), // pointwise, one image
        ([2, 3, 12, 8], 4, [4, 4], [4, 4], (0, 0, 0, 0), false), // ViT patches
        ([2, 2, 6, 9], 3, [2, 3], [1, 2], (0, 2, 1, 0), true),  // non-square, asymmetric
        ([1, 2, 5, 5], 3, [1, 1], [2, 2], (0, 0, 0, 0), false), // strided 1x1
        ([2, 16, 10, 17], 5, [3, 3], [1, 1], (1, 1, 1, 1), false), // 3x3 by shifted products
        ([1, 17, 7, 24], 3, [2, 3], [1, 1], (0, 2, 1, 0), true), // the same, asymmetric
    ];

    fn conv<B: Backend>(case: &Case, seed: u64, device: &B::Device) -> Conv2d<B> {
        let (dims, c_out, kernel, stride, (t, l, b, r), bias) = *case;
        let mut conv = Conv2dConfig::new([dims[1], c_out], kernel)
            .with_stride(stride)
            .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
            .with_bias(bias)
            .init::<B>(device);
        conv.weight = burn::module::Param::from_tensor(Tensor::from_data(
            data([c_out, dims[1], kernel[0], kernel[1]], seed),
            device,
        ));
        conv
    }

    /// Burn's convolution of `conv` (what the kernels here replace).
    fn reference<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let options = burn::tensor::ops::ConvOptions::new(conv.stride, [0, 0], conv.dilation, conv.groups);
        let PaddingConfig2d::Explicit(t, l, b, r) = conv.padding else { unreachable!("the cases are explicit") };
        // Asymmetric padding as an explicit zero border, then a valid convolution.
        let [batch, c, h, w] = x.dims();
        let padded = Tensor::zeros([batch, c, h + t + b, w + l + r], &x.device())
            .slice_assign([0..batch, 0..c, t..t + h, l..l + w], x);
        burn::tensor::module::conv2d(padded, conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), options)
    }

    #[test]
    fn the_kernels_cover_what_they_claim() {
        let device = Default::default();
        let case = CASES[0];
        assert!(Geometry::of(&conv::<Flex>(&case, 1, &device), case.0).is_some());
        let same = Conv2dConfig::new([4, 5], [3, 3]).with_padding(PaddingConfig2d::Same).init::<Flex>(&device);
        assert!(Geometry::of(&same, [1, 4, 9, 9]).is_none());
        let grouped = Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).init::<Flex>(&device);
        assert!(Geometry::of(&grouped, [1, 4, 9, 9]).is_none());
        let dilated = Conv2dConfig::new([4, 4], [3, 3]).with_dilation([2, 2]).init::<Flex>(&device);
        assert!(Geometry::of(&dilated, [1, 4, 9, 9]).is_none());
        for (i, case) in CASES.iter().enumerate() {
            let g = Geometry::of(&conv::<Flex>(case, 1, &device), case.0).expect("covered");
            assert_eq!(shifted::pays(&g), i >= 8, "case {i}: by shifted products");
        }
        let g = Geometry::of(&conv::<Flex>(&CASES[2], 1, &device), CASES[2].0).unwrap();
        assert_eq!((g.oh, g.ow), (6, 5), "torch: floor((11 + 2 - 3) / 2) + 1, floor((10 + 2 - 3) / 2) + 1");
    }

    #[test]
    fn flex_values_match_burns_convolution() {
        let device = Default::default();
        for (i, case) in CASES.iter().enumerate() {
            let conv = conv::<Flex>(case, 10 + i as u64, &device);
            let x = Tensor::<Flex, 4>::from_data(data(case.0, 20 + i as u64), &device);
            let ours = conv2d(&conv, x.clone()).into_data();
            let theirs = reference(&conv, x).into_data();
            let scale = (case.0[1] * case.2[0] * case.2[1]) as f32;
            assert!(worst(&ours, &theirs) <= 1e-6 * scale, "case {i} {case:?}: {}", worst(&ours, &theirs));
        }
    }

    #[test]
    fn the_affine_inside_the_convolution_is_the_affine_after_it() {
        // Same per-element arithmetic: equal to the bit, on every path (columns, pointwise,
        // shifted products, bias or not, one image or several), with and without a residual,
        // with and without ReLU. On three threads, so that the smaller batches are cut into
        // bands of rows (`forward`), whatever the machine's core count.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a thread pool");
        pool.install(affine_inside_matches_after);
    }

    fn affine_inside_matches_after() {
        let device = Default::default();
        for (i, case) in CASES.iter().enumerate() {
            let conv = conv::<Flex>(case, 70 + i as u64, &device);
            let x = Tensor::<Flex, 4>::from_data(data(case.0, 80 + i as u64), &device);
            let scale = Tensor::<Flex, 1>::from_data(TensorData::new(values(case.1, 90 + i as u64), [case.1]), &device);
            let shift = Tensor::<Flex, 1>::from_data(TensorData::new(values(case.1, 95 + i as u64), [case.1]), &device);
            let y = conv2d(&conv, x.clone());
            let residual = Tensor::<Flex, 4>::from_data(data(y.dims(), 85 + i as u64), &device);
            for (with_residual, relu) in [(false, false), (false, true), (true, false), (true, true)] {
                let r = with_residual.then(|| residual.clone());
                let what = format!("case {i} residual {with_residual} relu {relu}");
                let ours = conv2d_affine(&conv, x.clone(), scale.clone(), shift.clone(), r.clone(), relu).into_data();
                let affine = crate::fused::channel_affine(y.clone(), scale.clone(), shift.clone(), relu && r.is_none());
                let separate = match &r {
                    Some(r) if relu => crate::fused::add_relu(affine, r.clone()),
                    Some(r) => affine + r.clone(),
                    None => affine,
                };
                let generic = reference(&conv, x.clone()) * scale.clone().reshape([1, case.1, 1, 1])
                    + shift.clone().reshape([1, case.1, 1, 1]);
                let generic = match r {
                    Some(r) => generic + r,
                    None => generic,
                };
                let generic = if relu { burn::tensor::activation::relu(generic) } else { generic };
                assert_eq!(ours, separate.into_data(), "{what}: fused and separate");
                let scale_bound = (case.0[1] * case.2[0] * case.2[1]) as f32;
                assert!(worst(&ours, &generic.into_data()) <= 2e-6 * scale_bound, "{what}: Burn's");
            }
        }
    }

    #[test]
    fn a_residual_of_another_shape_is_added_as_burn_adds_it() {
        // Not the output's shape: no fused path, Burn's broadcasting sum.
        let device = Default::default();
        let case = &CASES[0];
        let conv = conv::<Flex>(case, 71, &device);
        let x = Tensor::<Flex, 4>::from_data(data(case.0, 81), &device);
        let scale = Tensor::<Flex, 1>::ones([case.1], &device);
        let shift = Tensor::<Flex, 1>::zeros([case.1], &device);
        let [batch, c_out, oh, ow] = conv2d(&conv, x.clone()).dims();
        let row = Tensor::<Flex, 4>::from_data(data([1, c_out, oh, ow], 86), &device);
        let ours = conv2d_affine(&conv, x.clone(), scale, shift, Some(row.clone()), false);
        assert_eq!(ours.dims(), [batch, c_out, oh, ow]);
        let theirs = conv2d(&conv, x) + row;
        assert!(worst(&ours.into_data(), &theirs.into_data()) <= 1e-6);
    }

    /// A convolution to compare.
    type ConvFn = dyn Fn(&Conv2d<Ad>, Tensor<Ad, 4>) -> Tensor<Ad, 4>;

    /// Values and the gradients of input, weight and bias of case `i` against Burn's.
    fn check_autodiff(i: usize, case: &Case) {
        let device = Default::default();
        let conv = conv::<Ad>(case, 30 + i as u64, &device);
        let input = data(case.0, 40 + i as u64);
        let run = |op: &ConvFn| {
            let x = Tensor::<Ad, 4>::from_data(input.clone(), &device).require_grad();
            let y = op(&conv, x.clone());
            let dims = y.dims();
            let weights = Tensor::<Ad, 4>::from_data(data(dims, 50 + i as u64), &device);
            let grads = (y.clone() * weights).sum().backward();
            let bias = conv.bias.as_ref().map(|b| b.grad(&grads).expect("bias gradient").into_data());
            (
                y.into_data(),
                x.grad(&grads).expect("input gradient").into_data(),
                conv.weight.grad(&grads).expect("weight gradient").into_data(),
                bias,
            )
        };
        let ours = run(&|c, x| conv2d(c, x));
        let theirs = run(&|c, x| reference(c, x));
        let scale = (case.0[1] * case.2[0] * case.2[1]) as f32;
        assert!(worst(&ours.0, &theirs.0) <= 1e-6 * scale, "case {i}: values");
        assert!(worst(&ours.1, &theirs.1) <= 1e-6 * (case.1 * case.2[0] * case.2[1]) as f32, "case {i}: dx");
        let pixels = (case.0[0] * case.0[2] * case.0[3]) as f32;
        assert!(worst(&ours.2, &theirs.2) <= 1e-6 * pixels, "case {i}: dW {}", worst(&ours.2, &theirs.2));
        if let (Some(a), Some(b)) = (&ours.3, &theirs.3) {
            assert!(worst(a, b) <= 1e-6 * pixels, "case {i}: d bias");
        }
    }

    #[test]
    fn autodiff_values_and_gradients_match_burns_convolution() {
        for (i, case) in CASES.iter().enumerate() {
            check_autodiff(i, case);
        }
    }

    #[test]
    fn both_schedules_match_on_one_and_on_more_threads_than_images() {
        // One thread: all images of a batch in one task (the weight gradient accumulates);
        // five: a batch of three one image at a time, each product on all threads.
        for threads in [1, 5] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
            pool.install(|| {
                for i in [0, 2, 3, 6, 8, 9] {
                    let mut case = CASES[i];
                    case.0[0] = 3;
                    check_autodiff(i, &case);
                    let g = Geometry::of(&conv::<Flex>(&case, 1, &Default::default()), case.0).expect("covered");
                    assert_eq!(g.images_in_parallel(), threads == 1);
                }
            });
        }
    }

    #[test]
    fn no_input_gradient_is_computed_for_an_input_without_one() {
        // The first convolution of an encoder sees the pixels, which need no gradient: only the
        // weight's is computed, and it matches.
        let device = Default::default();
        let case = CASES[2];
        let conv = conv::<Ad>(&case, 60, &device);
        let x = Tensor::<Ad, 4>::from_data(data(case.0, 61), &device);
        let grads = conv2d(&conv, x.clone()).sum().backward();
        let ours = conv.weight.grad(&grads).expect("weight gradient").into_data();
        let grads = reference(&conv, x.clone()).sum().backward();
        let theirs = conv.weight.grad(&grads).expect("weight gradient").into_data();
        assert!(x.grad(&grads).is_none());
        assert!(worst(&ours, &theirs) <= 1e-6 * 200.0);
    }
}
