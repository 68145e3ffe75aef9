//! Retrieval features of image files: the hook where a model plugs in ([`FeatureExtractor`]) and
//! the protocol's flip-sum ([`extract_features`], docs/METHOD.md section 5).
//!
//! The evaluation feature of an image `x` is `normalize(f(x) + f(flip(x)))`: the model's feature
//! of the preprocessed image plus that of its horizontal mirror image, L2-normalised. Images are
//! decoded and preprocessed in parallel (rayon) while the backend works on the previous batch.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use clip_burn::Clip;
//! use clip_burn::preprocess::Transform;
//! use handid::eval::{FeatureOptions, extract_features};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Default::default();
//! let (clip, config) = Clip::<Flex>::from_safetensors("ViT-B-16.safetensors".as_ref(), &device)?;
//! let transform = Transform::Clip { size: config.vision.image_size() as u32 };
//! let paths = ["a.jpg", "b.jpg"];
//! // A `Clip` model extracts its image embedding; any closure `Fn(Tensor<B, 4>) -> Tensor<B, 2>`
//! // works as well.
//! let features = extract_features(&clip, &paths, &transform, &FeatureOptions::default(), &device, |_| {})?;
//! assert_eq!(features.rows(), 2);
//! # Ok(()) }
//! ```

use std::path::Path;

use burn::prelude::*;
use clip_burn::Clip;
use clip_burn::preprocess::{PixelArray, Transform, load_rgb};

use super::error::{EvalError, Result};
use crate::data::load_parallel;

/// A model that maps a batch of preprocessed images to feature vectors: the hook where a
/// retrieval model plugs into the evaluation.
///
/// `pixels` is `[batch, 3, height, width]`, normalised as the [`Transform`] in use does; the
/// result is `[batch, d]`, not necessarily normalised. Implemented for [`Clip`] (its image
/// embedding) and for every closure `Fn(Tensor<B, 4>) -> Tensor<B, 2>`.
pub trait FeatureExtractor<B: Backend> {
    /// The features of a batch of images: `[batch, 3, h, w]` -> `[batch, d]`.
    fn extract(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2>;
}

impl<B: Backend, F> FeatureExtractor<B> for F
where
    F: Fn(Tensor<B, 4>) -> Tensor<B, 2>,
{
    fn extract(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        self(pixels)
    }
}

impl<B: Backend> FeatureExtractor<B> for Clip<B> {
    /// The CLIP image embedding ([`Clip::encode_image`]): the zero-shot feature.
    fn extract(&self, pixels: Tensor<B, 4>) -> Tensor<B, 2> {
        self.encode_image(pixels)
    }
}

/// A dense row-major matrix of feature vectors on the CPU: `rows` vectors of dimension `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    data: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl FeatureMatrix {
    /// Wraps row-major values: row `i` is `data[i * dim..(i + 1) * dim]`. Fails when `dim` is 0
    /// or does not divide the number of values.
    pub fn new(data: Vec<f32>, dim: usize) -> Result<Self> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(EvalError::FeatureShape { which: "matrix", len: data.len(), dim });
        }
        Ok(Self { rows: data.len() / dim, data, dim })
    }

    /// A matrix with no rows, of dimension `dim` (which must be positive).
    pub fn empty(dim: usize) -> Result<Self> {
        Self::new(Vec::new(), dim)
    }

    /// Builds the matrix from one vector per row; all rows must have the same positive length.
    pub fn from_rows(rows: &[Vec<f32>]) -> Result<Self> {
        let dim = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * dim);
        for (row, values) in rows.iter().enumerate() {
            if values.len() != dim {
                return Err(EvalError::RaggedRows { row, len: values.len(), expected: dim });
            }
            data.extend_from_slice(values);
        }
        Self::new(data, dim)
    }

    /// Copies a `[rows, dim]` tensor from its device.
    pub fn from_tensor<B: Backend>(tensor: Tensor<B, 2>) -> Result<Self> {
        let [rows, dim] = tensor.dims();
        let data = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| EvalError::Protocol(format!("cannot read a feature tensor back: {e:?}")))?;
        if dim == 0 {
            return Err(EvalError::FeatureShape { which: "matrix", len: rows * dim, dim });
        }
        Self::new(data, dim)
    }

    /// The matrix as a `[rows, dim]` tensor on `device`.
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(self.data.clone(), [self.rows, self.dim]), device)
    }

    /// Rows `start..start + len` as a `[len, dim]` tensor on `device`.
    pub(crate) fn rows_tensor<B: Backend>(&self, start: usize, len: usize, device: &B::Device) -> Tensor<B, 2> {
        let values = self.data[start * self.dim..(start + len) * self.dim].to_vec();
        Tensor::from_data(TensorData::new(values, [len, self.dim]), device)
    }

    /// Number of rows (vectors).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Dimension of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Row `i`. Panics if `i >= rows`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Gives the row-major values back.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Appends the rows of `other`, which must have the same dimension.
    pub fn append(&mut self, other: &FeatureMatrix) -> Result<()> {
        if other.dim != self.dim {
            return Err(EvalError::Dimension { what: "appended rows".into(), expected: self.dim, got: other.dim });
        }
        self.data.extend_from_slice(&other.data);
        self.rows += other.rows;
        Ok(())
    }

    /// Scales every row to unit L2 norm (computed in double precision). Fails, naming the row
    /// with `name(row)`, when a row has a NaN or infinite value or is zero.
    pub fn normalize_rows(&mut self, name: impl Fn(usize) -> String) -> Result<()> {
        for (i, row) in self.data.chunks_exact_mut(self.dim).enumerate() {
            normalize(row).map_err(|reason| EvalError::BadFeature { what: name(i), reason })?;
        }
        Ok(())
    }
}

/// Scales `v` to unit L2 norm; fails on a NaN or infinite value or a zero vector.
pub(crate) fn normalize(v: &mut [f32]) -> std::result::Result<(), &'static str> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err("has a NaN or infinite value");
    }
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err("is zero (or its norm overflows): it cannot be L2-normalised");
    }
    for x in v.iter_mut() {
        *x = (*x as f64 / norm) as f32;
    }
    Ok(())
}

/// Options of [`extract_features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureOptions {
    /// Images per forward pass (the flipped copies go through a second pass of the same size).
    pub batch_size: usize,
    /// Whether to add the feature of the horizontally flipped image (the protocol does).
    pub flip_sum: bool,
}

impl Default for FeatureOptions {
    /// Batches of 32, flip-sum on (the protocol's feature).
    fn default() -> Self {
        Self { batch_size: 32, flip_sum: true }
    }
}

/// Stacks preprocessed images `[3, h, w]` into a batch tensor `[n, 3, h, w]`.
fn pixels_to_tensor<B: Backend>(images: &[PixelArray], device: &B::Device) -> Tensor<B, 4> {
    let (h, w) = (images[0].height, images[0].width);
    let mut data = Vec::with_capacity(images.len() * 3 * h * w);
    for p in images {
        data.extend_from_slice(&p.data);
    }
    Tensor::from_data(TensorData::new(data, [images.len(), 3, h, w]), device)
}

/// The flip-summed feature tensor of a batch (left on the device; nothing waits for it).
fn batch_features<B: Backend, E: FeatureExtractor<B> + ?Sized>(
    extractor: &E,
    pixels: Tensor<B, 4>,
    flip_sum: bool,
) -> Tensor<B, 2> {
    if flip_sum {
        let flipped = pixels.clone().flip([3]);
        extractor.extract(pixels) + extractor.extract(flipped)
    } else {
        extractor.extract(pixels)
    }
}

/// The evaluation features of image files: for each image `x`, `f(x) + f(flip(x))`
/// L2-normalised (only `f(x)` normalised when `options.flip_sum` is off), as a
/// `[paths.len(), d]` matrix in the order of `paths`.
///
/// Images are read with [`load_rgb`] and preprocessed with `transform` on rayon's pool, one batch
/// ahead of the extractor; `progress` is called after each batch with the number of images
/// done. Errors name the image at fault: a missing, truncated or undecodable file (the first in
/// list order within a batch), a feature with a NaN or infinite value or a zero feature (which
/// cannot be normalised); and the extractor returning a shape other than `[batch, d]`.
pub fn extract_features<B, E, P>(
    extractor: &E,
    paths: &[P],
    transform: &Transform,
    options: &FeatureOptions,
    device: &B::Device,
    mut progress: impl FnMut(usize),
) -> Result<FeatureMatrix>
where
    B: Backend,
    E: FeatureExtractor<B> + ?Sized,
    P: AsRef<Path> + Sync,
{
    if options.batch_size == 0 {
        return Err(EvalError::InvalidOption("the feature batch size must be at least 1".into()));
    }
    let (h, w) = transform.output_size();
    if h == 0 || w == 0 {
        return Err(EvalError::InvalidOption(format!("the transform's output size {h}x{w} is empty")));
    }
    let decode = |chunk: &[P]| -> Result<Vec<PixelArray>> {
        load_parallel(chunk, |p| load_rgb(p).map(|img| transform.apply(&img))).map_err(|e| e.error.into())
    };
    let batches: Vec<&[P]> = paths.chunks(options.batch_size).collect();
    let mut data: Vec<f32> = Vec::new();
    let mut dim: Option<usize> = None;
    let mut done = 0;
    let mut next = match batches.first() {
        Some(first) => Some(decode(first)?),
        None => None,
    };
    for (b, batch) in batches.iter().enumerate() {
        let pixels = next.take().expect("decoded ahead");
        let features = batch_features(extractor, pixels_to_tensor::<B>(&pixels, device), options.flip_sum);
        drop(pixels);
        // Decode the next batch while the backend computes this one (asynchronous backends).
        if let Some(following) = batches.get(b + 1) {
            next = Some(decode(following)?);
        }
        let [n, d] = features.dims();
        if n != batch.len() || d == 0 || dim.is_some_and(|e| e != d) {
            return Err(EvalError::ExtractorShape { batch: batch.len(), got: [n, d], expected_dim: dim });
        }
        dim = Some(d);
        let mut values = FeatureMatrix::from_tensor(features)?;
        values.normalize_rows(|i| format!("image {}", batch[i].as_ref().display()))?;
        data.extend(values.into_data());
        done += batch.len();
        progress(done);
    }
    match dim {
        Some(d) => FeatureMatrix::new(data, d),
        None => Err(EvalError::InvalidOption("no images given to extract features from".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_shapes_and_normalisation() {
        assert!(matches!(FeatureMatrix::new(vec![0.0; 5], 2), Err(EvalError::FeatureShape { .. })));
        assert!(matches!(FeatureMatrix::new(vec![], 0), Err(EvalError::FeatureShape { .. })));
        assert!(matches!(FeatureMatrix::from_rows(&[vec![1.0], vec![1.0, 2.0]]), Err(EvalError::RaggedRows { .. })));
        let mut m = FeatureMatrix::from_rows(&[vec![3.0, 4.0], vec![0.0, -2.0]]).unwrap();
        assert_eq!((m.rows(), m.dim()), (2, 2));
        m.normalize_rows(|i| format!("row {i}")).unwrap();
        assert_eq!(m.row(0), &[0.6, 0.8]);
        assert_eq!(m.row(1), &[0.0, -1.0]);
        let mut zero = FeatureMatrix::from_rows(&[vec![1.0, 0.0], vec![0.0, 0.0]]).unwrap();
        let err = zero.normalize_rows(|i| format!("row {i}")).unwrap_err();
        assert!(err.to_string().contains("row 1") && err.to_string().contains("zero"), "{err}");
        let mut nan = FeatureMatrix::from_rows(&[vec![f32::NAN, 0.0]]).unwrap();
        assert!(nan.normalize_rows(|i| format!("row {i}")).unwrap_err().to_string().contains("NaN"));
        let mut a = FeatureMatrix::empty(2).unwrap();
        a.append(&m).unwrap();
        assert_eq!(a, m);
        assert!(a.append(&FeatureMatrix::empty(3).unwrap()).is_err());
    }
}
