//! Image embedding for files on disk: decode and preprocess in parallel, encode in batches,
//! save as safetensors (written atomically).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use rayon::prelude::*;

use crate::clip::Clip;
use crate::clip::preprocess::{PixelArray, Transform, load_rgb};
use crate::io::write_atomic;

/// Errors of [`embed_images`] and [`save_embeddings`]; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// An image could not be read or decoded.
    #[error(transparent)]
    Image(#[from] crate::clip::preprocess::PreprocessError),
    /// The output could not be written.
    #[error("{path}: cannot write embeddings: {reason}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Nothing to embed.
    #[error("no images given")]
    NoImages,
    /// A setting that cannot work (batch size 0, a transform whose size the model cannot take).
    #[error("invalid embedding settings: {0}")]
    InvalidInput(String),
}

/// Stacks preprocessed images `[3, h, w]` into a batch tensor `[n, 3, h, w]`.
pub fn pixels_to_tensor<B: Backend>(images: &[PixelArray], device: &B::Device) -> Tensor<B, 4> {
    let (h, w) = (images[0].height, images[0].width);
    let data: Vec<f32> = images.iter().flat_map(|p| p.data.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [images.len(), 3, h, w]), device)
}

/// CLIP image embeddings `[n, embed_dim]` (row-major) of `paths`, preprocessed with
/// `transform`, encoded `batch_size` images at a time; `progress` is called after each batch
/// with the number of images done. A batch size of 0, or a transform whose output size is not
/// the model's input size, is an [`EmbedError::InvalidInput`].
pub fn embed_images<B: Backend>(
    model: &Clip<B>,
    paths: &[PathBuf],
    transform: &Transform,
    batch_size: usize,
    device: &B::Device,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<f32>, usize), EmbedError> {
    if paths.is_empty() {
        return Err(EmbedError::NoImages);
    }
    if batch_size == 0 {
        return Err(EmbedError::InvalidInput("the batch size must be at least 1".into()));
    }
    let (h, w) = transform.output_size();
    let [model_h, model_w] = model.visual.input_size();
    if (h, w) != (model_h, model_w) {
        return Err(EmbedError::InvalidInput(format!(
            "the transform gives {h}x{w} images but the model takes {model_h}x{model_w}"
        )));
    }
    let mut out = Vec::new();
    let mut dim = 0;
    for (i, chunk) in paths.chunks(batch_size).enumerate() {
        let pixels: Vec<PixelArray> =
            chunk.par_iter().map(|p| load_rgb(p).map(|img| transform.apply(&img))).collect::<Result<_, _>>()?;
        let embedding = model.encode_image(pixels_to_tensor(&pixels, device)); // [batch, embed_dim]
        dim = embedding.dims()[1];
        out.extend(embedding.into_data().convert::<f32>().to_vec::<f32>().expect("f32 embeddings"));
        progress((i * batch_size + chunk.len()).min(paths.len()));
    }
    Ok((out, dim))
}

/// Writes `embeddings` `[n, dim]` as tensor `embeddings` of a safetensors file, with the image
/// paths (JSON list under `images`) and `extra` in the metadata. The file is replaced atomically.
pub fn save_embeddings(
    path: &Path,
    embeddings: &[f32],
    dim: usize,
    images: &[PathBuf],
    extra: HashMap<String, String>,
) -> Result<(), EmbedError> {
    let write_err = |reason: String| EmbedError::Write { path: path.into(), reason };
    let bytes: Vec<u8> = embeddings.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![images.len(), dim], &bytes)
        .map_err(|e| write_err(e.to_string()))?;
    let mut metadata = extra;
    let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    metadata.insert("images".into(), serde_json::to_string(&names).map_err(|e| write_err(e.to_string()))?);
    let data = safetensors::serialize([("embeddings", view)], Some(metadata)).map_err(|e| write_err(e.to_string()))?;
    write_atomic(path, &data).map_err(|e| write_err(e.to_string()))
}
