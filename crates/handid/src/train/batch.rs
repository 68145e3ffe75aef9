//! Training samples, the re-ID augmentation and deterministic batching.
//!
//! Data order and augmentation are functions of `(seed, epoch, sample)`, so that a resumed
//! run draws exactly what an uninterrupted run would have drawn.

use std::path::PathBuf;
use std::sync::Arc;

use burn::prelude::*;
use clip_burn::preprocess::{IMAGENET_NORMALIZATION, PixelArray, load_rgb, resize_bicubic};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::TrainError;
use super::config::AugmentConfig;

/// Where a sample's image comes from.
#[derive(Debug, Clone)]
pub enum ImageRef {
    /// A file, decoded when needed.
    Path(PathBuf),
    /// An image already in memory (e.g. generated).
    Memory(Arc<RgbImage>),
}

impl ImageRef {
    /// The decoded image.
    pub fn load(&self) -> Result<RgbImage, TrainError> {
        match self {
            Self::Path(path) => load_rgb(path).map_err(|e| TrainError::Data(e.to_string())),
            Self::Memory(image) => Ok((**image).clone()),
        }
    }
}

/// Images with class labels in `0..num_classes`.
#[derive(Debug, Clone, Default)]
pub struct LabeledImages {
    /// The images.
    pub images: Vec<ImageRef>,
    /// One label per image.
    pub labels: Vec<usize>,
}

impl LabeledImages {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Number of classes (largest label + 1).
    pub fn num_classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |m| m + 1)
    }
}

fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((epoch as u64) << 32) | index as u64);
    rng
}

/// Shuffled sample indices of `epoch`, cut into full batches (the incomplete last batch dropped).
pub fn epoch_batches(len: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = sample_rng(seed, epoch, usize::MAX >> 32);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order.chunks_exact(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Re-ID training transform: resize, random crop, random flip, optional colour jitter,
/// ImageNet normalisation.
pub fn augment(image: &RgbImage, config: &AugmentConfig, rng: &mut impl Rng) -> PixelArray {
    let [rh, rw] = config.resize;
    let [ch, cw] = config.crop;
    let mut resized = resize_bicubic(image, rw, rh);
    if config.color_jitter > 0.0 {
        jitter(&mut resized, config.color_jitter, rng);
    }
    let top = rng.random_range(0..=(rh - ch) as usize);
    let left = rng.random_range(0..=(rw - cw) as usize);
    let pixels = PixelArray::from_rgb(&resized, &IMAGENET_NORMALIZATION).crop(top, left, ch as usize, cw as usize);
    if rng.random_bool(config.flip_probability) { pixels.flip_horizontal() } else { pixels }
}

/// Brightness, contrast and saturation each scaled by a factor drawn from `[1 - s, 1 + s]`.
fn jitter(image: &mut RgbImage, strength: f64, rng: &mut impl Rng) {
    let mut factor = || rng.random_range(1.0 - strength..=1.0 + strength) as f32;
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    let mean = image.pixels().map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).sum::<f32>()
        / (image.width() * image.height()).max(1) as f32;
    for p in image.pixels_mut() {
        let gray = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
        for c in 0..3 {
            let mut v = p[c] as f32 * brightness;
            v = (v - mean * brightness) * contrast + mean * brightness;
            v = gray * brightness + (v - gray * brightness) * saturation;
            p[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// The augmented pixels `[batch, 3, h, w]` and labels of one batch, decoded in parallel.
pub fn training_batch<B: Backend>(
    data: &LabeledImages,
    indices: &[usize],
    config: &AugmentConfig,
    seed: u64,
    epoch: usize,
    device: &B::Device,
) -> Result<(Tensor<B, 4>, Tensor<B, 1, Int>), TrainError> {
    let pixels: Vec<PixelArray> = indices
        .par_iter()
        .map(|&i| data.images[i].load().map(|img| augment(&img, config, &mut sample_rng(seed, epoch, i))))
        .collect::<Result<_, _>>()?;
    let labels: Vec<i64> = indices.iter().map(|&i| data.labels[i] as i64).collect();
    Ok((stack(&pixels, device), Tensor::from_data(TensorData::new(labels, [indices.len()]), device)))
}

/// Stacks `[3, h, w]` arrays into `[n, 3, h, w]`.
pub fn stack<B: Backend>(pixels: &[PixelArray], device: &B::Device) -> Tensor<B, 4> {
    let (h, w) = (pixels[0].height, pixels[0].width);
    let data: Vec<f32> = pixels.iter().flat_map(|p| p.data.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [pixels.len(), 3, h, w]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_full_disjoint_and_reproducible() {
        let a = epoch_batches(23, 4, 7, 3);
        assert_eq!(a.len(), 5);
        assert!(a.iter().all(|b| b.len() == 4));
        let mut seen: Vec<usize> = a.concat();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 20);
        assert_eq!(a, epoch_batches(23, 4, 7, 3));
        assert_ne!(a, epoch_batches(23, 4, 7, 4));
    }

    #[test]
    fn augmentation_has_the_crop_size_and_is_reproducible() {
        let image = RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 77]));
        let config = AugmentConfig { resize: [32, 32], crop: [28, 24], flip_probability: 0.5, color_jitter: 0.1 };
        let a = augment(&image, &config, &mut sample_rng(1, 2, 3));
        assert_eq!((a.height, a.width, a.data.len()), (28, 24, 3 * 28 * 24));
        assert_eq!(a.data, augment(&image, &config, &mut sample_rng(1, 2, 3)).data);
    }
}
