//! Image preprocessing that reproduces torchvision transforms applied to PIL images.
//!
//! Two pipelines are provided through [`Transform`]:
//!
//! - [`Transform::Clip`]: OpenAI CLIP's zero-shot preprocessing, i.e. torchvision
//!   `Resize(size, interpolation=BICUBIC)` of the shorter side, `CenterCrop(size)`, `ToTensor()`
//!   and `Normalize` with [`CLIP_NORMALIZATION`].
//! - [`Transform::Reid`]: the re-identification preprocessing, i.e.
//!   `Resize((height, width), interpolation=BICUBIC)` (aspect ratio not kept), `ToTensor()` and
//!   `Normalize` with [`IMAGENET_NORMALIZATION`].
//!
//! The resampling ([`resize_bicubic`]) is an independent implementation of the algorithm of
//! Pillow's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB images: a separable convolution
//! with the bicubic kernel (a = -0.5) whose support is widened by the downscaling factor
//! (antialiasing), coefficients rounded to 22-bit fixed point, one pass per axis with the
//! intermediate image rounded and clamped to 8 bits, and a pass skipped when its axis keeps its
//! size. Pass order follows Pillow 13: horizontal first, unless the height shrinks by more than
//! twice as many pixels as the width does (see [`PassOrder`]). On 8-bit RGB input the result is
//! bit-identical to Pillow 13.0, and the normalised tensors are bit-identical to torchvision on
//! the CPU.
//!
//! Training-time augmentation (for instance resize to 256x256, random 224x224 crop, random
//! horizontal flip) is built from [`resize_bicubic`], [`crop`] / [`PixelArray::crop`] with
//! offsets drawn by the caller within [`random_crop_range`], and [`flip_horizontal`] /
//! [`PixelArray::flip_horizontal`].
//!
//! Images are read with [`load_rgb`], which decodes by content, refuses images declaring more
//! than [`MAX_PIXELS`] pixels before allocating them, and converts every supported pixel format
//! to 8-bit RGB.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};

/// Largest number of pixels (width times height) that [`load_rgb`] accepts.
///
/// An image whose header declares more is refused before its pixel buffer is allocated, which
/// guards against decompression bombs (a small file declaring a huge image).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Images above this many pixels must not declare more than [`MAX_PIXELS_PER_BYTE`] pixels per
/// byte of file.
pub const SPARSE_CHECK_PIXELS: u64 = 1 << 24;

/// Most pixels per byte of file that [`load_rgb`] accepts for an image of more than
/// [`SPARSE_CHECK_PIXELS`] pixels. A file of a few hundred bytes declaring tens of millions of
/// pixels (found by fuzzing: 857 bytes of JPEG declaring 16396 x 4105) would otherwise cost
/// seconds of decoding and hundreds of megabytes of pixels the file never held. Photographs
/// compress to well under 100 pixels per byte; only a flat image in a lossless format could
/// exceed the limit.
pub const MAX_PIXELS_PER_BYTE: u64 = 4096;

/// Per-channel normalisation applied after scaling pixel values to `[0, 1]`:
/// `(value / 255 - mean[c]) / std[c]`, as torchvision's `ToTensor()` followed by `Normalize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Mean of the red, green and blue channels, in `[0, 1]` units.
    pub mean: [f32; 3],
    /// Standard deviation of the red, green and blue channels, in `[0, 1]` units.
    pub std: [f32; 3],
}

/// OpenAI CLIP's normalisation (the statistics of its training set).
// The literals are the published values; they round to the same f32 as shorter ones.
#[allow(clippy::excessive_precision)]
pub const CLIP_NORMALIZATION: Normalization =
    Normalization { mean: [0.481_454_66, 0.457_827_5, 0.408_210_73], std: [0.268_629_54, 0.261_302_58, 0.275_777_11] };

/// The ImageNet normalisation used by the re-identification pipeline.
pub const IMAGENET_NORMALIZATION: Normalization =
    Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/// A preprocessed image: `f32` values laid out channel-major as `[3, height, width]`
/// (red plane, then green, then blue; each plane row by row).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelArray {
    /// The `3 * height * width` values; the value of channel `c` at row `y`, column `x` is at
    /// index `(c * height + y) * width + x`.
    pub data: Vec<f32>,
    /// Number of rows.
    pub height: usize,
    /// Number of columns.
    pub width: usize,
}

impl PixelArray {
    /// The shape `[3, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [3, self.height, self.width]
    }

    /// Converts an 8-bit RGB image with `ToTensor()` (division by 255) and `Normalize`.
    ///
    /// The arithmetic is the same as torchvision's in `f32` (`x / 255`, then `(x - mean) / std`,
    /// each step rounded to `f32`), so the values are bit-identical to torchvision on the CPU.
    pub fn from_rgb(img: &RgbImage, norm: &Normalization) -> PixelArray {
        let (width, height) = (img.width() as usize, img.height() as usize);
        let plane = width * height;
        let mut data = vec![0.0f32; 3 * plane];
        // One lookup table per channel: every u8 value maps to one normalised value.
        let mut table = [[0.0f32; 256]; 3];
        for (c, t) in table.iter_mut().enumerate() {
            for (v, out) in t.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - norm.mean[c]) / norm.std[c];
            }
        }
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            data[i] = table[0][px[0] as usize];
            data[plane + i] = table[1][px[1] as usize];
            data[2 * plane + i] = table[2][px[2] as usize];
        }
        PixelArray { data, height, width }
    }

    /// The image mirrored left to right (torchvision's `hflip`).
    pub fn flip_horizontal(&self) -> PixelArray {
        let mut data = Vec::with_capacity(self.data.len());
        if self.width > 0 {
            for row in self.data.chunks_exact(self.width) {
                data.extend(row.iter().rev());
            }
        }
        PixelArray { data, height: self.height, width: self.width }
    }

    /// The `height` x `width` window whose top-left corner is at row `top`, column `left`
    /// (torchvision's `crop(img, top, left, height, width)` for a window inside the image).
    ///
    /// # Panics
    ///
    /// If the window does not lie inside the array.
    pub fn crop(&self, top: usize, left: usize, height: usize, width: usize) -> PixelArray {
        assert!(
            top + height <= self.height && left + width <= self.width,
            "crop window {height}x{width} at (top {top}, left {left}) exceeds the {}x{} array",
            self.height,
            self.width
        );
        let mut data = Vec::with_capacity(3 * height * width);
        for c in 0..3 {
            for y in top..top + height {
                let start = (c * self.height + y) * self.width + left;
                data.extend_from_slice(&self.data[start..start + width]);
            }
        }
        PixelArray { data, height, width }
    }
}

/// A complete preprocessing pipeline, from an 8-bit RGB image to a normalised [`PixelArray`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// CLIP zero-shot preprocessing: bicubic resize of the shorter side to `size` (the longer
    /// side becomes `int(size * long / short)`), centre crop to `size` x `size`, normalisation
    /// with [`CLIP_NORMALIZATION`]. Output shape `[3, size, size]`.
    ///
    /// An image more than [`MAX_CLIP_ASPECT`] times longer than wide (or the reverse) is first
    /// centre-cropped to that aspect ratio: the centre crop keeps only the middle anyway, and
    /// resizing a 1 x 100,000 strip's shorter side to 224 would need gigabytes. Such images
    /// may then differ from torchvision's output by a rounding of the resampling step.
    Clip {
        /// Side of the square output, e.g. 224.
        size: u32,
    },
    /// Re-identification preprocessing: bicubic resize to exactly `height` x `width` (aspect
    /// ratio not kept), normalisation with [`IMAGENET_NORMALIZATION`].
    /// Output shape `[3, height, width]`.
    Reid {
        /// Output height in pixels.
        height: u32,
        /// Output width in pixels.
        width: u32,
    },
}

impl Transform {
    /// The normalisation this pipeline applies.
    pub fn normalization(&self) -> Normalization {
        match self {
            Transform::Clip { .. } => CLIP_NORMALIZATION,
            Transform::Reid { .. } => IMAGENET_NORMALIZATION,
        }
    }

    /// The output `(height, width)`.
    pub fn output_size(&self) -> (usize, usize) {
        match *self {
            Transform::Clip { size } => (size as usize, size as usize),
            Transform::Reid { height, width } => (height as usize, width as usize),
        }
    }

    /// Runs the pipeline on `img`.
    ///
    /// # Panics
    ///
    /// If `img` or the requested output size is empty (zero width or height).
    pub fn apply(&self, img: &RgbImage) -> PixelArray {
        match *self {
            Transform::Clip { size } => {
                let limited = limit_aspect(img, MAX_CLIP_ASPECT);
                let img = limited.as_ref().unwrap_or(img);
                let (w, h) = shorter_side_resize_dims(img.width(), img.height(), size);
                let resized = resize_bicubic(img, w, h);
                let cropped = center_crop(&resized, size, size);
                PixelArray::from_rgb(&cropped, &CLIP_NORMALIZATION)
            }
            Transform::Reid { height, width } => {
                let resized = resize_bicubic(img, width, height);
                PixelArray::from_rgb(&resized, &IMAGENET_NORMALIZATION)
            }
        }
    }
}

/// Largest ratio of the longer to the shorter side that [`Transform::Clip`] resizes as it is.
pub const MAX_CLIP_ASPECT: u32 = 16;

/// The centre of `img` cropped to at most `ratio` : 1, or `None` if it is within that already.
fn limit_aspect(img: &RgbImage, ratio: u32) -> Option<RgbImage> {
    let (w, h) = (img.width() as u64, img.height() as u64);
    let ratio = ratio as u64;
    if w > h * ratio {
        Some(center_crop(img, h as u32, (h * ratio) as u32))
    } else if h > w * ratio {
        Some(center_crop(img, (w * ratio) as u32, w as u32))
    } else {
        None
    }
}

/// The `(width, height)` that torchvision's `Resize(size)` (an `int` size) gives an image of
/// `width` x `height`: the shorter side becomes `size` and the longer side
/// `int(size * long / short)` (computed in double precision and truncated, as in Python).
///
/// # Panics
///
/// If `width` or `height` is zero.
pub fn shorter_side_resize_dims(width: u32, height: u32, size: u32) -> (u32, u32) {
    assert!(width > 0 && height > 0, "cannot resize an empty {width}x{height} image");
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // size * long is exact in f64 (both below 2^32), so this is Python's true division.
    let new_long = (size as f64 * long as f64 / short as f64) as u32;
    if width <= height { (size, new_long) } else { (new_long, size) }
}

/// Centre crop to `height` x `width`, as torchvision's `CenterCrop`: the top offset is
/// `round((image_height - height) / 2)` with Python's round-half-to-even, likewise the left one.
/// Where the crop is larger than the image, the image is first padded with black as torchvision
/// does (`(crop - size) // 2` before, the rest after).
///
/// # Panics
///
/// If `height` or `width` is zero.
pub fn center_crop(img: &RgbImage, height: u32, width: u32) -> RgbImage {
    assert!(height > 0 && width > 0, "cannot crop to an empty {height}x{width} window");
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let (cw, ch) = (width as i64, height as i64);
    if cw == iw && ch == ih {
        return img.clone();
    }
    // Offset of the crop in the (virtually) padded image, expressed in image coordinates.
    let offset = |image: i64, crop: i64| -> i64 {
        if crop > image { -((crop - image) / 2) } else { ((image - crop) as f64 / 2.0).round_ties_even() as i64 }
    };
    let left = offset(iw, cw);
    let top = offset(ih, ch);
    let mut out = RgbImage::new(width, height);
    for y in 0..ch {
        let sy = top + y;
        if sy < 0 || sy >= ih {
            continue;
        }
        for x in 0..cw {
            let sx = left + x;
            if sx < 0 || sx >= iw {
                continue;
            }
            out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
        }
    }
    out
}

/// The `height` x `width` window whose top-left corner is at row `top`, column `left`
/// (torchvision's `crop(img, top, left, height, width)`); with offsets drawn uniformly within
/// [`random_crop_range`] this is `RandomCrop`.
///
/// # Panics
///
/// If the window does not lie inside the image.
pub fn crop(img: &RgbImage, top: u32, left: u32, height: u32, width: u32) -> RgbImage {
    let (iw, ih) = (img.width() as u64, img.height() as u64);
    assert!(
        top as u64 + height as u64 <= ih && left as u64 + width as u64 <= iw,
        "crop window {height}x{width} at (top {top}, left {left}) exceeds the {ih}x{iw} image"
    );
    let src = img.as_raw();
    let row_bytes = iw as usize * 3;
    let mut data = Vec::with_capacity(height as usize * width as usize * 3);
    for y in top as usize..(top + height) as usize {
        let start = y * row_bytes + left as usize * 3;
        data.extend_from_slice(&src[start..start + width as usize * 3]);
    }
    RgbImage::from_raw(width, height, data).expect("buffer has the crop's size")
}

/// The largest valid `(top, left)` offsets of a `crop_height` x `crop_width` window inside an
/// `image_height` x `image_width` image; torchvision's `RandomCrop` draws `top` uniformly from
/// `0..=max_top` and `left` from `0..=max_left`. `None` if the window does not fit.
pub fn random_crop_range(image_height: u32, image_width: u32, crop_height: u32, crop_width: u32) -> Option<(u32, u32)> {
    Some((image_height.checked_sub(crop_height)?, image_width.checked_sub(crop_width)?))
}

/// The image mirrored left to right (torchvision's `hflip`).
pub fn flip_horizontal(img: &RgbImage) -> RgbImage {
    image::imageops::flip_horizontal(img)
}

// ---------------------------------------------------------------------------------------------
// Resampling
// ---------------------------------------------------------------------------------------------

/// Fractional bits of the fixed-point filter coefficients (32 bits less 8 for the pixel value
/// and 2 of headroom for the negative lobes and sums above 1).
const PRECISION_BITS: u32 = 22;

/// Order of the two one-dimensional passes of [`resize_bicubic_with_order`].
///
/// The 8-bit rounding and clamping between the passes makes the order visible in the result:
/// on random noise images the two orders differed by up to 31/255 on some pixels, so parity
/// with a given Pillow release needs its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassOrder {
    /// Pillow 13: the horizontal pass first, unless the height shrinks by more than twice as
    /// many pixels as the width does (`in_h - out_h > 0` and `in_h - out_h > 2 * (in_w - out_w)`),
    /// in which case the vertical pass runs first.
    #[default]
    Pillow13,
    /// Always the horizontal pass first, as in Pillow 12.3 and earlier (checked bit for bit
    /// against Pillow 12.0, 12.2 and 12.3).
    HorizontalFirst,
}

/// Resize an 8-bit RGB image to `width` x `height` with bicubic resampling, reproducing
/// Pillow's `Image.resize((width, height), Image.BICUBIC)` (Pillow 13) bit for bit.
///
/// When downscaling, the filter is stretched by the scale factor, so every source pixel
/// contributes (antialiasing). A same-size request returns a copy.
///
/// # Panics
///
/// If the input or the requested size is empty.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_bicubic_with_order(img, width, height, PassOrder::Pillow13)
}

/// [`resize_bicubic`] with an explicit [`PassOrder`], for parity with other Pillow releases.
///
/// # Panics
///
/// If the input or the requested size is empty.
pub fn resize_bicubic_with_order(img: &RgbImage, width: u32, height: u32, order: PassOrder) -> RgbImage {
    let (in_w, in_h) = (img.width(), img.height());
    assert!(in_w > 0 && in_h > 0, "cannot resize an empty {in_w}x{in_h} image");
    assert!(width > 0 && height > 0, "cannot resize to an empty {width}x{height} image");

    let need_h = width != in_w;
    let need_v = height != in_h;
    if !need_h && !need_v {
        return img.clone();
    }
    let horizontal_first = match order {
        PassOrder::HorizontalFirst => true,
        PassOrder::Pillow13 => {
            let dh = in_h as i64 - height as i64;
            let dw = in_w as i64 - width as i64;
            !(dh > 0 && dh > dw * 2)
        }
    };

    let src = img.as_raw();
    let in_w = in_w as usize;
    let in_h = in_h as usize;
    let (out_w, out_h) = (width as usize, height as usize);

    let out = if horizontal_first {
        if need_h {
            let hk = Coefficients::bicubic(in_w, out_w);
            // Only the source rows that the vertical pass reads need a horizontal pass.
            let mut vk = Coefficients::bicubic(in_h, out_h);
            let first = vk.bounds[0].0;
            let (last_min, last_len) = vk.bounds[out_h - 1];
            let last = last_min + last_len;
            for b in &mut vk.bounds {
                b.0 -= first;
            }
            let tmp = horizontal_pass(src, in_w, first..last, &hk);
            if need_v { vertical_pass(&tmp, out_w, &vk) } else { tmp }
        } else {
            vertical_pass(src, in_w, &Coefficients::bicubic(in_h, out_h))
        }
    } else {
        // Only reached when the height changes.
        let tmp = vertical_pass(src, in_w, &Coefficients::bicubic(in_h, out_h));
        if need_h { horizontal_pass(&tmp, in_w, 0..out_h, &Coefficients::bicubic(in_w, out_w)) } else { tmp }
    };
    RgbImage::from_raw(width, height, out).expect("buffer has the output's size")
}

/// The bicubic convolution kernel with a = -0.5 (Keys), support [-2, 2].
fn bicubic_kernel(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point filter weights of one axis: for output index `i`, source indices
/// `bounds[i].0 .. bounds[i].0 + bounds[i].1` with weights `weights[i * stride ..]`.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    stride: usize,
    weights: Vec<i32>,
}

impl Coefficients {
    fn bicubic(in_size: usize, out_size: usize) -> Coefficients {
        const SUPPORT: f64 = 2.0;
        // The source box is [0, in_size] given as single-precision floats.
        let span = in_size as f32 as f64;
        let scale = span / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = SUPPORT * filter_scale;
        let stride = support.ceil() as usize * 2 + 1;
        let inv_filter_scale = 1.0 / filter_scale;

        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * stride];
        let mut w = vec![0.0f64; stride];
        for (i, kk) in weights.chunks_exact_mut(stride).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            // Truncation toward zero, as C's (int) cast.
            let min = ((center - support + 0.5) as i64).max(0);
            let max = ((center + support + 0.5) as i64).min(in_size as i64);
            let len = (max - min).max(0) as usize;
            let mut total = 0.0f64;
            for (x, wx) in w.iter_mut().enumerate().take(len) {
                let v = bicubic_kernel(((x as i64 + min) as f64 - center + 0.5) * inv_filter_scale);
                *wx = v;
                total += v;
            }
            for (wx, k) in w.iter().zip(kk.iter_mut()).take(len) {
                let v = if total != 0.0 { wx / total } else { *wx };
                let fixed = v * (1u32 << PRECISION_BITS) as f64;
                *k = if v < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
            }
            bounds.push((min as usize, len));
        }
        Coefficients { bounds, stride, weights }
    }
}

/// Rounds an accumulator (which started at one half) to an 8-bit value, clamping.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples rows `rows` of an RGB buffer `in_w` pixels wide along x; returns the new buffer,
/// `rows.len()` rows of `k.bounds.len()` pixels.
fn horizontal_pass(src: &[u8], in_w: usize, rows: std::ops::Range<usize>, k: &Coefficients) -> Vec<u8> {
    let out_w = k.bounds.len();
    let mut out = vec![0u8; rows.len() * out_w * 3];
    for (out_row, y) in out.chunks_exact_mut(out_w * 3).zip(rows) {
        let in_row = &src[y * in_w * 3..(y + 1) * in_w * 3];
        for (x, px) in out_row.chunks_exact_mut(3).enumerate() {
            let (min, len) = k.bounds[x];
            let weights = &k.weights[x * k.stride..x * k.stride + len];
            let taps = &in_row[min * 3..(min + len) * 3];
            let half = 1i32 << (PRECISION_BITS - 1);
            let (mut r, mut g, mut b) = (half, half, half);
            for (&w, p) in weights.iter().zip(taps.chunks_exact(3)) {
                r += p[0] as i32 * w;
                g += p[1] as i32 * w;
                b += p[2] as i32 * w;
            }
            px[0] = clip8(r);
            px[1] = clip8(g);
            px[2] = clip8(b);
        }
    }
    out
}

/// Resamples an RGB buffer `width` pixels wide along y; returns `k.bounds.len()` rows.
fn vertical_pass(src: &[u8], width: usize, k: &Coefficients) -> Vec<u8> {
    let row_len = width * 3;
    let mut out = vec![0u8; k.bounds.len() * row_len];
    let mut acc = vec![0i32; row_len];
    for (y, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (min, len) = k.bounds[y];
        let weights = &k.weights[y * k.stride..y * k.stride + len];
        acc.fill(1i32 << (PRECISION_BITS - 1));
        // Integer sums do not depend on the order of the terms: accumulate row by row.
        for (i, &w) in weights.iter().enumerate() {
            let in_row = &src[(min + i) * row_len..(min + i + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(in_row) {
                *a += p as i32 * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Why an image could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file does not exist.
    #[error("image file {} does not exist", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, a directory, an I/O error).
    #[error("cannot read image file {}: {source}", path.display())]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not in any supported image format (JPEG, PNG, BMP, TIFF, WebP).
    #[error(
        "{} is not an image in a supported format (JPEG, PNG, BMP, TIFF, WebP): {reason}",
        path.display()
    )]
    NotAnImage {
        /// The path given.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The file ends before the image data does.
    #[error("image file {} is truncated: {reason}", path.display())]
    Truncated {
        /// The path given.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// The file is in a recognised format but its data is invalid.
    #[error("image file {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The path given.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// The file uses a feature of its format that the decoder does not support.
    #[error("image file {} uses an unsupported feature: {reason}", path.display())]
    Unsupported {
        /// The path given.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// The image is larger than [`MAX_PIXELS`] or needs more memory than allowed to decode
    /// (possibly a decompression bomb); nothing of its size was allocated.
    #[error("image file {} is too large to decode: {reason}", path.display())]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// The declared size or the limit hit.
        reason: String,
    },
}

impl PreprocessError {
    /// What is wrong, without the file name, for callers whose own message names the file.
    pub fn reason(&self) -> String {
        match self {
            Self::Missing { .. } => "the file does not exist".into(),
            Self::Unreadable { source, .. } => source.to_string(),
            Self::NotAnImage { reason, .. } => {
                format!("not an image in a supported format (JPEG, PNG, BMP, TIFF, WebP): {reason}")
            }
            Self::Truncated { reason, .. } => format!("truncated: {reason}"),
            Self::Corrupt { reason, .. } => format!("corrupt: {reason}"),
            Self::Unsupported { reason, .. } => format!("uses an unsupported feature: {reason}"),
            Self::TooLarge { reason, .. } => format!("too large to decode: {reason}"),
        }
    }
}

/// Reads an image file and converts it to 8-bit RGB.
///
/// The format is recognised from the content, not the file name. Grayscale is replicated to
/// three channels and alpha is dropped (as PIL's `convert("RGB")`); 16-bit samples keep their
/// high byte (as PIL does when it opens 16-bit RGB(A) PNGs; for 16-bit grayscale PIL instead
/// saturates values above 255); floating-point samples are clamped to `[0, 1]` and scaled to
/// `0..=255`. CMYK JPEGs are converted to RGB.
///
/// The EXIF orientation (JPEG, PNG, TIFF, WebP) is applied, so the pixels are upright as a
/// photo viewer shows them. This departs from PIL's `Image.open` (and so from the reference
/// pipeline), which ignores it: a hand photographed with the phone turned would otherwise reach
/// the model lying on its side. An unreadable EXIF block is ignored rather than refused.
///
/// Images declaring more than [`MAX_PIXELS`] pixels, or more than [`MAX_PIXELS_PER_BYTE`] pixels
/// per byte of file above [`SPARSE_CHECK_PIXELS`] pixels, are refused without decoding them, and a
/// file cut short is an error ([`PreprocessError::Truncated`]), as in PIL, even where the
/// decoder could fill in the missing part (JPEG without its end-of-image marker, WebP shorter
/// than its header declares).
///
/// JPEG is decoded by `zune-jpeg`, not libjpeg-turbo as in PIL: decoded pixels can differ by a
/// few units, mostly through chroma upsampling of 4:2:0 files. PNG (8- and 16-bit, gray,
/// palette, alpha), BMP, TIFF and WebP (lossless and lossy) decoded to the same pixels as PIL
/// in our checks.
pub fn load_rgb(path: &Path) -> Result<RgbImage, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PreprocessError::Missing { path: path.to_path_buf() }
        } else {
            PreprocessError::Unreadable { path: path.to_path_buf(), source }
        }
    })?;
    decode_rgb(&bytes, path)
}

/// Decodes an image held in memory, as [`load_rgb`] does for a file; `name` is only used in
/// error messages.
pub fn decode_rgb(bytes: &[u8], name: &Path) -> Result<RgbImage, PreprocessError> {
    decode_image(bytes, name).map(to_rgb8)
}

/// Decodes an image held in memory in its stored pixel format, with the checks of
/// [`load_rgb`] (size limit, truncation) and its EXIF orientation applied; `name` is only used
/// in error messages.
pub fn decode_image(bytes: &[u8], name: &Path) -> Result<DynamicImage, PreprocessError> {
    let path = || name.to_path_buf();
    if bytes.is_empty() {
        return Err(PreprocessError::NotAnImage { path: path(), reason: "the file is empty".into() });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| PreprocessError::Unreadable { path: path(), source })?;
    if reader.format().is_none() {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(PreprocessError::NotAnImage {
            path: path(),
            reason: format!("unrecognised leading bytes {}", head.join(" ")),
        });
    }
    // Some decoders quietly fill in what a cut-off file lacks; PIL refuses such files.
    if let Some(reason) = truncation(reader.format(), bytes) {
        return Err(PreprocessError::Truncated { path: path(), reason });
    }
    let mut limits = Limits::default();
    // Room for the largest accepted image in the widest pixel format (RGBA, 32-bit float)
    // plus the decoders' own buffers.
    limits.max_alloc = Some(MAX_PIXELS * 16 + (256 << 20));
    let mut reader = reader;
    reader.limits(limits.clone());
    let map = |e: ImageError| image_error(e, name);
    let decoder = reader.into_decoder().map_err(map)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(PreprocessError::Corrupt { path: path(), reason: format!("it declares an empty {w}x{h} image") });
    }
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(PreprocessError::TooLarge {
            path: path(),
            reason: format!(
                "it declares {w}x{h} = {} pixels, more than the limit of {MAX_PIXELS}",
                w as u64 * h as u64
            ),
        });
    }
    let pixels = w as u64 * h as u64;
    if pixels > SPARSE_CHECK_PIXELS && pixels > bytes.len() as u64 * MAX_PIXELS_PER_BYTE {
        return Err(PreprocessError::TooLarge {
            path: path(),
            reason: format!(
                "it declares {w}x{h} = {pixels} pixels in only {} bytes, more than {MAX_PIXELS_PER_BYTE} pixels per \
                 byte (a damaged or crafted file: a real photograph that size is far larger)",
                bytes.len()
            ),
        });
    }
    limits.reserve(decoder.total_bytes()).map_err(map)?;
    let mut decoder = decoder;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(map)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Why a JPEG or WebP file is cut short, if it is; `None` for other formats (whose decoders
/// report truncation themselves) and for malformed files (left to the decoder to judge).
///
/// A JPEG must reach its end-of-image marker: the marker segments are walked from the start,
/// skipping entropy-coded data (where a 0xFF byte is followed by 0x00 stuffing or a restart
/// marker). A WebP file must be as long as its RIFF header declares.
fn truncation(format: Option<image::ImageFormat>, b: &[u8]) -> Option<String> {
    match format? {
        image::ImageFormat::Jpeg => {
            let cut = || Some(format!("the JPEG data ends after {} bytes, before its end-of-image marker", b.len()));
            if !b.starts_with(&[0xFF, 0xD8]) {
                return None;
            }
            let mut i = 2;
            loop {
                if i >= b.len() {
                    return cut();
                }
                if b[i] != 0xFF {
                    return None;
                }
                while i < b.len() && b[i] == 0xFF {
                    i += 1;
                }
                let Some(&marker) = b.get(i) else { return cut() };
                i += 1;
                match marker {
                    0xD9 => return None,
                    0x01 | 0xD0..=0xD8 => continue,
                    _ => {
                        let Some(len) = b.get(i..i + 2) else { return cut() };
                        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                        if len < 2 {
                            return None;
                        }
                        i += len;
                        if i > b.len() {
                            return cut();
                        }
                        if marker == 0xDA {
                            // Entropy-coded data runs to the next marker other than a restart.
                            loop {
                                if i + 1 >= b.len() {
                                    return cut();
                                }
                                let next = b[i + 1];
                                if b[i] == 0xFF && next != 0x00 && next != 0xFF && !(0xD0..=0xD7).contains(&next) {
                                    break;
                                }
                                i += 1;
                            }
                        }
                    }
                }
            }
        }
        image::ImageFormat::WebP => {
            let declared = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?) as u64 + 8;
            (b.starts_with(b"RIFF") && (b.len() as u64) < declared)
                .then(|| format!("the WebP header declares {declared} bytes but the file has {}", b.len()))
        }
        _ => None,
    }
}

/// Converts any decoded pixel format to 8-bit RGB.
fn to_rgb8(image: DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let from_u16 = |samples: &[u16], channels: usize| -> RgbImage {
        let mut data = Vec::with_capacity(w as usize * h as usize * 3);
        for px in samples.chunks_exact(channels) {
            if channels < 3 {
                let v = (px[0] >> 8) as u8;
                data.extend_from_slice(&[v, v, v]);
            } else {
                data.extend(px[..3].iter().map(|&s| (s >> 8) as u8));
            }
        }
        RgbImage::from_raw(w, h, data).expect("buffer has the image's size")
    };
    match image {
        DynamicImage::ImageRgb8(img) => img,
        DynamicImage::ImageLuma16(img) => from_u16(img.as_raw(), 1),
        DynamicImage::ImageLumaA16(img) => from_u16(img.as_raw(), 2),
        DynamicImage::ImageRgb16(img) => from_u16(img.as_raw(), 3),
        DynamicImage::ImageRgba16(img) => from_u16(img.as_raw(), 4),
        other => other.to_rgb8(),
    }
}

/// Maps a decoder error to a [`PreprocessError`] naming the file.
fn image_error(e: ImageError, name: &Path) -> PreprocessError {
    let path = name.to_path_buf();
    match e {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            PreprocessError::Truncated { path, reason: io.to_string() }
        }
        ImageError::IoError(source) => PreprocessError::Unreadable { path, source },
        ImageError::Limits(l) => PreprocessError::TooLarge { path, reason: l.to_string() },
        ImageError::Unsupported(u) => PreprocessError::Unsupported { path, reason: u.to_string() },
        ImageError::Decoding(d) => {
            let reason = d.to_string();
            let lower = reason.to_lowercase();
            if lower.contains("eof")
                || lower.contains("end of file")
                || lower.contains("truncat")
                || lower.contains("unexpected end")
                || lower.contains("no more bytes")
                || lower.contains("not enough")
            {
                PreprocessError::Truncated { path, reason }
            } else {
                PreprocessError::Corrupt { path, reason }
            }
        }
        other => PreprocessError::Corrupt { path, reason: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 37 + y * 11) as u8, ((x * 5) ^ (y * 93)) as u8, ((x + 3) * (y + 7) * 13) as u8])
        })
    }

    /// A path in the temporary directory, unique to this process, removed when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> TempPath {
            TempPath(std::env::temp_dir().join(format!("clip_preprocess_{}_{name}", std::process::id())))
        }
    }

    impl std::ops::Deref for TempPath {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl AsRef<Path> for TempPath {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn identity_resize_is_a_copy() {
        let img = pattern(17, 9);
        assert_eq!(resize_bicubic(&img, 17, 9), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        for &(w, h, ow, oh) in &[(10, 10, 3, 7), (5, 8, 40, 21), (300, 2, 7, 1), (1, 1, 9, 4)] {
            let img = RgbImage::from_pixel(w, h, image::Rgb([200, 3, 77]));
            let out = resize_bicubic(&img, ow, oh);
            assert_eq!((out.width(), out.height()), (ow, oh));
            assert!(out.pixels().all(|p| p.0 == [200, 3, 77]), "{w}x{h} -> {ow}x{oh}");
        }
        let img = RgbImage::from_pixel(40, 30, image::Rgb([255, 0, 128]));
        let px = Transform::Clip { size: 16 }.apply(&img);
        assert_eq!(px.shape(), [3, 16, 16]);
        let n = &CLIP_NORMALIZATION;
        let expect =
            [(1.0 - n.mean[0]) / n.std[0], (0.0 - n.mean[1]) / n.std[1], (128.0 / 255.0 - n.mean[2]) / n.std[2]];
        for (c, &e) in expect.iter().enumerate() {
            assert!(px.data[c * 256..(c + 1) * 256].iter().all(|&v| v == e));
        }
    }

    #[test]
    fn one_axis_unchanged_keeps_that_axis() {
        // Height unchanged: every column of the output is a function of its own row only.
        let img = RgbImage::from_fn(12, 5, |_, y| image::Rgb([y as u8 * 40, 0, 255]));
        let out = resize_bicubic(&img, 31, 5);
        for (x, y, p) in out.enumerate_pixels() {
            assert_eq!(p.0, [y as u8 * 40, 0, 255], "({x}, {y})");
        }
    }

    #[test]
    fn pass_orders_agree_when_only_one_pass_runs() {
        let img = pattern(23, 40);
        for &(w, h) in &[(23, 7), (5, 40), (23, 100)] {
            assert_eq!(
                resize_bicubic_with_order(&img, w, h, PassOrder::Pillow13),
                resize_bicubic_with_order(&img, w, h, PassOrder::HorizontalFirst)
            );
        }
    }

    #[test]
    fn shorter_side_dims_truncate() {
        assert_eq!(shorter_side_resize_dims(640, 480, 224), (298, 224));
        assert_eq!(shorter_side_resize_dims(480, 640, 224), (224, 298));
        assert_eq!(shorter_side_resize_dims(100, 100, 64), (64, 64));
        assert_eq!(shorter_side_resize_dims(3, 1000, 224), (224, 74666));
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        // (7 - 4) / 2 = 1.5 -> 2; (5 - 4) / 2 = 0.5 -> 0.
        let img = pattern(7, 5);
        let out = center_crop(&img, 4, 4);
        assert_eq!(out.get_pixel(0, 0), img.get_pixel(2, 0));
        assert_eq!(out.get_pixel(3, 3), img.get_pixel(5, 3));
        // Larger than the image: zero padding, (6 - 5) // 2 = 0 rows above.
        let out = center_crop(&img, 6, 7);
        assert_eq!(out.get_pixel(0, 0), img.get_pixel(0, 0));
        assert_eq!(out.get_pixel(0, 5).0, [0, 0, 0]);
    }

    #[test]
    fn crop_offsets() {
        let img = pattern(10, 8);
        let out = crop(&img, 3, 2, 4, 5);
        assert_eq!((out.width(), out.height()), (5, 4));
        for (x, y, p) in out.enumerate_pixels() {
            assert_eq!(p, img.get_pixel(x + 2, y + 3));
        }
        assert_eq!(random_crop_range(256, 256, 224, 224), Some((32, 32)));
        assert_eq!(random_crop_range(8, 10, 8, 11), None);
        let full = PixelArray::from_rgb(&img, &IMAGENET_NORMALIZATION);
        assert_eq!(full.crop(3, 2, 4, 5), PixelArray::from_rgb(&out, &IMAGENET_NORMALIZATION));
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn crop_outside_panics() {
        crop(&pattern(10, 8), 5, 0, 4, 4);
    }

    #[test]
    fn flip() {
        let img = pattern(6, 3);
        let f = flip_horizontal(&img);
        for (x, y, p) in f.enumerate_pixels() {
            assert_eq!(p, img.get_pixel(5 - x, y));
        }
        let a = PixelArray::from_rgb(&img, &CLIP_NORMALIZATION);
        assert_eq!(a.flip_horizontal(), PixelArray::from_rgb(&f, &CLIP_NORMALIZATION));
        assert_eq!(a.flip_horizontal().flip_horizontal(), a);
    }

    #[test]
    fn pixel_array_layout() {
        let img = pattern(4, 3);
        let a = PixelArray::from_rgb(&img, &IMAGENET_NORMALIZATION);
        assert_eq!(a.data.len(), 36);
        let p = img.get_pixel(2, 1);
        let v = (p[1] as f32 / 255.0 - 0.456) / 0.224;
        assert_eq!(a.data[(3 + 1) * 4 + 2], v);
    }

    #[test]
    fn reid_shape() {
        let px = Transform::Reid { height: 32, width: 16 }.apply(&pattern(50, 70));
        assert_eq!(px.shape(), [3, 32, 16]);
        assert_eq!(px.data.len(), 3 * 32 * 16);
    }

    #[test]
    fn missing_file_is_named() {
        let p = TempPath::new("does_not_exist.png");
        let e = load_rgb(&p).unwrap_err();
        assert!(matches!(e, PreprocessError::Missing { .. }), "{e:?}");
        assert!(e.to_string().contains("does_not_exist.png"), "{e}");
    }

    #[test]
    fn non_image_bytes_are_refused() {
        let p = TempPath::new("notes.png");
        std::fs::write(&p, b"this is plain text, not a picture").unwrap();
        let e = load_rgb(&p).unwrap_err();
        assert!(matches!(e, PreprocessError::NotAnImage { .. }), "{e:?}");
        assert!(e.to_string().contains("notes.png"), "{e}");
        let p = TempPath::new("empty.jpg");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(load_rgb(&p), Err(PreprocessError::NotAnImage { .. })));
    }

    #[test]
    fn directory_is_unreadable() {
        let p = TempPath::new("a_directory");
        std::fs::create_dir_all(&p).unwrap();
        let e = load_rgb(&p).unwrap_err();
        assert!(matches!(e, PreprocessError::Unreadable { .. }), "{e:?}");
    }

    fn encode_png(img: DynamicImage) -> Vec<u8> {
        let mut buf = Vec::new();
        img.write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Png).unwrap();
        buf
    }

    #[test]
    fn decodes_by_content_and_converts() {
        let rgb = pattern(9, 4);
        // A PNG named .jpg is still read as PNG.
        let p = TempPath::new("really_a_png.jpg");
        std::fs::write(&p, encode_png(DynamicImage::ImageRgb8(rgb.clone()))).unwrap();
        assert_eq!(load_rgb(&p).unwrap(), rgb);

        let gray = image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(x * 50 + y) as u8]));
        let got = decode_rgb(&encode_png(DynamicImage::ImageLuma8(gray.clone())), &p).unwrap();
        for (x, y, px) in got.enumerate_pixels() {
            let v = gray.get_pixel(x, y)[0];
            assert_eq!(px.0, [v, v, v]);
        }

        let rgba = image::RgbaImage::from_fn(3, 2, |x, y| image::Rgba([x as u8, y as u8, 9, 17]));
        let got = decode_rgb(&encode_png(DynamicImage::ImageRgba8(rgba)), &p).unwrap();
        assert_eq!(got.get_pixel(2, 1).0, [2, 1, 9]);

        let rgb16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(2, 2, |x, _| {
            image::Rgb([0xABCD, 0x00FF, 0xFF00 + x as u16])
        });
        let got = decode_rgb(&encode_png(DynamicImage::ImageRgb16(rgb16)), &p).unwrap();
        assert_eq!(got.get_pixel(1, 0).0, [0xAB, 0x00, 0xFF]);
    }

    #[test]
    fn truncated_file_is_reported() {
        let bytes = encode_png(DynamicImage::ImageRgb8(pattern(64, 64)));
        let p = TempPath::new("cut.png");
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = load_rgb(&p).unwrap_err();
        assert!(matches!(e, PreprocessError::Truncated { .. }), "{e:?}");
        assert!(e.to_string().contains("cut.png"), "{e}");
    }

    #[test]
    fn truncated_jpeg_and_webp_are_reported() {
        let img = pattern(64, 48);
        for format in [image::ImageFormat::Jpeg, image::ImageFormat::WebP] {
            let mut bytes = Vec::new();
            DynamicImage::ImageRgb8(img.clone()).write_to(&mut Cursor::new(&mut bytes), format).unwrap();
            let name = Path::new("photo.bin");
            let full = decode_rgb(&bytes, name).unwrap();
            assert_eq!(full.dimensions(), (64, 48));
            for cut in [bytes.len() / 3, bytes.len() - 2] {
                let e = decode_rgb(&bytes[..cut], name).unwrap_err();
                assert!(matches!(e, PreprocessError::Truncated { .. }), "{format:?} cut at {cut}: {e:?}");
                assert!(e.to_string().contains("photo.bin"), "{e}");
            }
        }
    }

    /// A PNG with a valid header declaring `w` x `h` pixels and a few bytes of pixel data.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = 0xFFFF_FFFFu32;
            for &b in data {
                crc ^= b as u32;
                for _ in 0..8 {
                    crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
                }
            }
            !crc
        }
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
        chunk(&mut out, b"IHDR", &ihdr);
        // A zlib stream of a few zero bytes.
        chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let p = TempPath::new("bomb.png");
        std::fs::write(&p, png_header_only(20_000, 20_000)).unwrap();
        let e = load_rgb(&p).unwrap_err();
        assert!(matches!(e, PreprocessError::TooLarge { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("bomb.png") && msg.contains("20000x20000"), "{msg}");
    }
}
