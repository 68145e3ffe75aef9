//! Tensors as stored bytes (dtype, shape, little-endian row-major data), and safetensors files
//! of them: what the converters read and write before anything becomes a Burn tensor.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use crate::io::write_atomic_with;
use safetensors::{Dtype, SafeTensors, View};

use super::WeightsError;

/// A contiguous tensor in its stored element type.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (empty for a 0-d scalar).
    pub shape: Vec<usize>,
    /// `numel * element size` bytes, little-endian, row-major.
    pub data: Vec<u8>,
}

/// Bytes per element of a dtype (the sub-byte safetensors types are not supported here).
pub(crate) fn element_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::BOOL | Dtype::U8 | Dtype::I8 => Some(1),
        Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => Some(2),
        Dtype::I32 | Dtype::U32 | Dtype::F32 => Some(4),
        Dtype::I64 | Dtype::U64 | Dtype::F64 => Some(8),
        _ => None,
    }
}

impl RawTensor {
    /// A tensor from its parts; the byte length must match the shape and dtype.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> Result<Self, String> {
        let size = element_size(dtype).ok_or_else(|| format!("dtype {dtype:?} is not supported"))?;
        let want = shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        if want != Some(data.len()) {
            return Err(format!("{} bytes do not hold a {dtype:?} tensor of shape {shape:?}", data.len()));
        }
        Ok(Self { dtype, shape, data })
    }

    /// An f32 tensor from values.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self { dtype: Dtype::F32, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the dtype is a floating-point type this crate converts (F16, BF16, F32, F64).
    pub fn is_float(&self) -> bool {
        matches!(self.dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    /// The values as f32, for floating-point tensors (`None` otherwise).
    pub fn to_f32_values(&self) -> Option<Vec<f32>> {
        let d = &self.data;
        Some(match self.dtype {
            Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => d.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => d.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => d
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
                .collect(),
            _ => return None,
        })
    }

    /// The same tensor in f32 (floating-point tensors; others are returned unchanged).
    pub fn into_f32(self) -> Self {
        match self.to_f32_values() {
            Some(values) if self.dtype != Dtype::F32 => Self::from_f32(self.shape, &values),
            _ => self,
        }
    }

    /// The transpose of a 2-d tensor (`None` for other ranks).
    pub fn transposed(&self) -> Option<Self> {
        let &[rows, cols] = self.shape.as_slice() else { return None };
        let size = element_size(self.dtype)?;
        let mut out = vec![0u8; self.data.len()];
        for r in 0..rows {
            for c in 0..cols {
                let from = (r * cols + c) * size;
                let to = (c * rows + r) * size;
                out[to..to + size].copy_from_slice(&self.data[from..from + size]);
            }
        }
        Some(Self { dtype: self.dtype, shape: vec![cols, rows], data: out })
    }
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Tensors by name.
pub type TensorMap = BTreeMap<String, RawTensor>;

/// The content of a safetensors file.
#[derive(Debug, Clone)]
pub struct RawFile {
    /// Every tensor, in its stored dtype.
    pub tensors: TensorMap,
    /// The header's `__metadata__` (empty if none).
    pub metadata: HashMap<String, String>,
}

/// Every tensor of a safetensors file, in its stored dtype, plus the file's metadata.
pub fn read_safetensors_raw(path: &Path) -> Result<RawFile, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
    safetensors_raw_from_bytes(&bytes, path)
}

pub(crate) fn safetensors_raw_from_bytes(bytes: &[u8], path: &Path) -> Result<RawFile, WeightsError> {
    let format = |reason: String| WeightsError::Format { path: path.into(), reason };
    let explain = |e: safetensors::SafeTensorError| format(super::explain_format_error(bytes, e));
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(explain)?;
    let file = SafeTensors::deserialize(bytes).map_err(explain)?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let tensor = RawTensor::new(view.dtype(), view.shape().to_vec(), view.data().to_vec())
            .map_err(|reason| format(format!("tensor `{name}`: {reason}")))?;
        tensors.insert(name, tensor);
    }
    Ok(RawFile { tensors, metadata: metadata.metadata().clone().unwrap_or_default() })
}

/// Writes tensors to a safetensors file atomically (a temporary file in the same directory,
/// synced, then renamed over `path`): readers see the old file or the complete new one.
pub fn write_safetensors(
    path: &Path,
    tensors: &TensorMap,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), WeightsError> {
    let io = |source: std::io::Error| WeightsError::Io { path: path.into(), source };
    let views: Vec<(&str, &RawTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    write_atomic_with(path, |file| {
        let bytes = safetensors::serialize(views, metadata).map_err(std::io::Error::other)?;
        file.write_all(&bytes)
    })
    .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_and_conversion() {
        let t = RawTensor::from_f32(vec![2, 3], &[1., 2., 3., 4., 5., 6.]);
        let tt = t.transposed().unwrap();
        assert_eq!(tt.shape, [3, 2]);
        assert_eq!(tt.to_f32_values().unwrap(), [1., 4., 2., 5., 3., 6.]);
        let h = RawTensor::new(
            Dtype::F16,
            vec![2],
            [half::f16::from_f32(0.5), half::f16::from_f32(-2.0)].iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
        .unwrap();
        assert_eq!(h.clone().into_f32().to_f32_values().unwrap(), [0.5, -2.0]);
        assert!(RawTensor::new(Dtype::F32, vec![3], vec![0; 8]).is_err());
        assert!(RawTensor::new(Dtype::F32, vec![usize::MAX, 2], vec![]).is_err());
    }
}
