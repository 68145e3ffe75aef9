//! Reading checkpoints, converting them, and loading them into a [`Clip`](crate::Clip) model.
//!
//! Nothing is skipped silently: a file whose tensors do not match the model exactly (missing,
//! unexpected or mis-shaped tensors) is refused with the list of offending names.
//!
//! Files read ([`Checkpoint::read`], [`read_tensors`]):
//! - safetensors in OpenAI's naming (`visual.*`, `transformer.resblocks.N.*`, ...: OpenAI's
//!   checkpoints, open_clip's `open_clip_model.safetensors`) or in Hugging Face transformers'
//!   CLIP naming ([`hf`], rewritten to OpenAI's);
//! - PyTorch files ([`torch`]): OpenAI's TorchScript archives (`RN50.pt`, `ViT-B-16.pt`) and
//!   `torch.save` state dicts.
//!
//! [`convert_to_safetensors`] writes any of them as an OpenAI-named safetensors file;
//! [`manifest`] lists where the published weights are, `download` (feature `download`)
//! fetches and verifies them, and `fetch` (same feature) does all of it in one call: name in,
//! verified and converted safetensors out.

#[cfg(feature = "download")]
pub mod download;
#[cfg(feature = "download")]
pub mod fetch;
pub mod hf;
mod loader;
pub mod manifest;
mod pickle;
mod raw;
pub mod torch;

pub use hf::NamingMap;
pub use loader::{KeyMap, Rewrite};
pub use raw::{RawFile, RawTensor, TensorMap, read_safetensors_raw, write_safetensors};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ParamId};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_store::{ModuleSnapshot, TensorSnapshot};
use safetensors::{Dtype, SafeTensors};

/// Errors reading a weights file or fitting it to a model.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read.
    #[error("{path}: cannot read weights: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (bad header, offsets or sizes).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A tensor has a dtype that cannot be a model parameter.
    #[error("{path}: tensor `{tensor}` has dtype {dtype}, expected a floating-point type (F32, F16, BF16 or F64)")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// The architecture could not be determined from the file.
    #[error("{path}: cannot determine the CLIP architecture: {reason}")]
    Architecture {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A PyTorch file (TorchScript archive or `torch.save` zip) that cannot be read.
    #[error("{path}: cannot read as a PyTorch file: {reason}")]
    Torch {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Tensor names that cannot be rewritten to OpenAI's naming (Hugging Face files).
    #[error("{path}: cannot map the tensor names to OpenAI's naming: {reason}")]
    Naming {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A conversion that would overwrite its own input.
    #[error("{path}: the output would overwrite the input")]
    SameFile {
        /// The file.
        path: PathBuf,
    },
    /// The file's tensors do not match the model.
    #[error("{path}: weights do not match the model:{}", mismatch_report(.missing, .unexpected, .mis_shaped))]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Tensors the model needs that the file lacks (checkpoint names).
        missing: Vec<String>,
        /// Tensors in the file the model has no place for.
        unexpected: Vec<String>,
        /// `name: expected [..], found [..]` for tensors of the wrong shape.
        mis_shaped: Vec<String>,
    },
}

fn mismatch_report(missing: &[String], unexpected: &[String], mis_shaped: &[String]) -> String {
    let mut out = String::new();
    for (title, items) in [("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)] {
        if !items.is_empty() {
            let shown: Vec<&str> = items.iter().take(20).map(String::as_str).collect();
            let more = if items.len() > 20 { format!(" ... and {} more", items.len() - 20) } else { String::new() };
            out.push_str(&format!("\n  {title} ({}): {}{more}", items.len(), shown.join(", ")));
        }
    }
    out
}

/// One tensor of a checkpoint, converted to f32.
#[derive(Debug, Clone)]
pub struct CheckpointTensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f32>,
}

/// All float tensors of a checkpoint file, by name, plus any non-float tensors' names.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The file the tensors were read from.
    pub path: PathBuf,
    /// Float tensors converted to f32.
    pub tensors: BTreeMap<String, CheckpointTensor>,
    /// Non-float tensors: `(name, dtype)`; they are errors unless the key map ignores them.
    pub other: Vec<(String, String)>,
}

/// How a file's tensors are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A safetensors file.
    Safetensors,
    /// A TorchScript archive (`torch.jit.save`, OpenAI's `.pt` files).
    TorchScript,
    /// A `torch.save` zip file holding a state dict.
    TorchSave,
}

/// How a file's tensors are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// OpenAI's `clip/model.py` names (also open_clip's for the OpenAI models).
    OpenAi,
    /// Hugging Face transformers' `CLIPModel` names.
    HfTransformers,
}

/// The tensors of a checkpoint file in OpenAI's naming, in their stored dtypes.
#[derive(Debug, Clone)]
pub struct SourceTensors {
    /// How the file stored them.
    pub format: FileFormat,
    /// How the file named them (they are renamed to OpenAI's naming).
    pub naming: Naming,
    /// Tensors by OpenAI name.
    pub tensors: BTreeMap<String, RawTensor>,
    /// What was done beyond plain reading (a checkpoint key descended into, a prefix removed,
    /// tensors dropped), for the user to see.
    pub notes: Vec<String>,
}

/// Reads any supported checkpoint file (detected from its first bytes: a zip archive is a
/// PyTorch file, anything else must be safetensors) and renames its tensors to OpenAI's naming.
pub fn read_tensors(path: &Path) -> Result<SourceTensors, WeightsError> {
    read_tensors_with_key(path, None)
}

/// As [`read_tensors`]; `key` names the dictionary to read inside a `torch.save` checkpoint
/// (see [`torch::read_torch_with_key`]); it is ignored for other formats.
pub fn read_tensors_with_key(path: &Path, key: Option<&str>) -> Result<SourceTensors, WeightsError> {
    let (format, tensors, mut notes) = if torch::is_zip(path)? {
        let file = torch::read_torch_with_key(path, key)?;
        let format = match file.format {
            torch::TorchFormat::TorchScript => FileFormat::TorchScript,
            torch::TorchFormat::StateDict => FileFormat::TorchSave,
        };
        (format, file.tensors, file.notes)
    } else {
        (FileFormat::Safetensors, read_safetensors_raw(path)?.tensors, Vec::new())
    };
    if hf::is_hf_naming(tensors.keys()) {
        let before = tensors.len();
        let tensors = NamingMap::hf_transformers()
            .apply(tensors)
            .map_err(|reason| WeightsError::Naming { path: path.into(), reason })?;
        notes.push(format!(
            "renamed {before} tensors from Hugging Face transformers' naming to OpenAI's ({} after packing q/k/v \
             and dropping position_ids)",
            tensors.len()
        ));
        return Ok(SourceTensors { format, naming: Naming::HfTransformers, tensors, notes });
    }
    Ok(SourceTensors { format, naming: Naming::OpenAi, tensors, notes })
}

/// Precision of the tensors written by [`convert_to_safetensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Keep each tensor's stored dtype (OpenAI's archives: mostly f16). The loader converts
    /// to f32 on load; this is the smallest file and loses nothing.
    #[default]
    Keep,
    /// Convert every floating-point tensor to f32 (integer tensors are kept).
    F32,
}

/// Options of [`convert_to_safetensors`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Output precision.
    pub precision: Precision,
    /// The dictionary to read inside a `torch.save` checkpoint (see
    /// [`torch::read_torch_with_key`]).
    pub key: Option<String>,
}

/// What [`convert_to_safetensors`] did.
#[derive(Debug, Clone)]
pub struct ConversionReport {
    /// The input's storage format.
    pub format: FileFormat,
    /// The input's naming.
    pub naming: Naming,
    /// Number of tensors written.
    pub tensors: usize,
    /// Tensors written per dtype.
    pub dtypes: BTreeMap<String, usize>,
    /// The CLIP architecture inferred from the written shapes, or why none could be.
    pub architecture: Result<crate::ClipConfig, String>,
    /// Notes from reading (see [`SourceTensors::notes`]).
    pub notes: Vec<String>,
}

/// Converts any supported checkpoint (see [`read_tensors`]) to a safetensors file with OpenAI's
/// tensor names, written atomically. The output must not be the input.
pub fn convert_to_safetensors(
    from: &Path,
    to: &Path,
    options: &ConvertOptions,
) -> Result<ConversionReport, WeightsError> {
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(from), std::fs::canonicalize(to))
        && a == b
    {
        return Err(WeightsError::SameFile { path: to.into() });
    }
    let source = read_tensors_with_key(from, options.key.as_deref())?;
    let tensors: BTreeMap<String, RawTensor> = match options.precision {
        Precision::Keep => source.tensors,
        Precision::F32 => source.tensors.into_iter().map(|(k, t)| (k, t.into_f32())).collect(),
    };
    let mut dtypes = BTreeMap::new();
    for t in tensors.values() {
        *dtypes.entry(format!("{:?}", t.dtype)).or_insert(0) += 1;
    }
    let shapes = tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let architecture = crate::ClipConfig::infer(&shapes);
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert("converted_by".to_string(), format!("clip-burn {}", env!("CARGO_PKG_VERSION")));
    if let Some(name) = from.file_name() {
        metadata.insert("source".to_string(), name.to_string_lossy().into_owned());
    }
    write_safetensors(to, &tensors, Some(metadata))?;
    Ok(ConversionReport {
        format: source.format,
        naming: source.naming,
        tensors: tensors.len(),
        dtypes,
        architecture,
        notes: source.notes,
    })
}

impl Checkpoint {
    /// Reads any supported checkpoint file (see [`read_tensors`]) in OpenAI's naming; floating
    /// point tensors are converted to f32.
    pub fn read(path: &Path) -> Result<Self, WeightsError> {
        Ok(Self::from_raw(path, read_tensors(path)?.tensors))
    }

    /// A checkpoint from stored tensors; `path` is only used in error messages.
    pub fn from_raw(path: &Path, tensors: BTreeMap<String, RawTensor>) -> Self {
        let mut floats = BTreeMap::new();
        let mut other = Vec::new();
        for (name, tensor) in tensors {
            match tensor.to_f32_values() {
                Some(values) => {
                    floats.insert(name, CheckpointTensor { shape: tensor.shape, values });
                }
                None => other.push((name, format!("{:?}", tensor.dtype))),
            }
        }
        Self { path: path.into(), tensors: floats, other }
    }

    /// Reads a safetensors file; f16, bf16 and f64 tensors are converted to f32.
    pub fn read_safetensors(path: &Path) -> Result<Self, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
        Self::from_safetensors_bytes(&bytes, path)
    }

    /// Parses safetensors bytes; `path` is only used in error messages.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path) -> Result<Self, WeightsError> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| WeightsError::Format { path: path.into(), reason: explain_format_error(bytes, e) })?;
        let mut tensors = BTreeMap::new();
        let mut other = Vec::new();
        for (name, view) in file.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                Dtype::F64 => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
                dtype => {
                    other.push((name, format!("{dtype:?}")));
                    continue;
                }
            };
            tensors.insert(name, CheckpointTensor { shape: view.shape().to_vec(), values });
        }
        Ok(Self { path: path.into(), tensors, other })
    }

    /// Tensor shapes by name.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect()
    }

    /// Loads every tensor into `module` through `map`, refusing any mismatch.
    pub fn load_into<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
        &self,
        mut module: M,
        map: &KeyMap,
    ) -> Result<M, WeightsError> {
        if let Some((tensor, dtype)) = self.other.iter().find(|(name, _)| !map.is_ignored(name)) {
            return Err(WeightsError::Dtype { path: self.path.clone(), tensor: tensor.clone(), dtype: dtype.clone() });
        }
        // What the model expects, keyed by Burn path. Read from the parameters' declared shapes
        // without initialising them: an architecture inferred from a lying file (a zero-sized
        // `[1000000000, 0]` tensor) would otherwise allocate gigabytes before the mismatch is seen.
        let mut shapes = LazyShapes::default();
        module.visit(&mut shapes);
        let mut expected = shapes.shapes;

        let mut unexpected = Vec::new();
        let mut mis_shaped = Vec::new();
        let mut snapshots = Vec::new();
        for (key, tensor) in &self.tensors {
            if map.is_ignored(key) {
                continue;
            }
            let (path, transpose) = map.to_burn(key);
            let Some(want) = expected.remove(&path) else {
                unexpected.push(key.clone());
                continue;
            };
            let (values, shape) = to_burn_layout(tensor, transpose);
            // A torch 0-d scalar (`logit_scale`) fills a one-element Burn parameter.
            let fits = shape == want || (tensor.shape.is_empty() && want == [1]);
            if !fits {
                let want_ckpt = if transpose { want.iter().rev().copied().collect() } else { want.clone() };
                mis_shaped.push(format!("{key}: expected {want_ckpt:?}, found {:?}", tensor.shape));
                continue;
            }
            let data = TensorData::new(values, want);
            let stack: Vec<String> = path.split('.').map(str::to_string).collect();
            snapshots.push(TensorSnapshot::from_data(data, stack, vec![], ParamId::new()));
        }
        let missing: Vec<String> = expected.keys().map(|p| map.to_checkpoint(p)).collect();
        if !(missing.is_empty() && unexpected.is_empty() && mis_shaped.is_empty()) {
            return Err(WeightsError::Mismatch { path: self.path.clone(), missing, unexpected, mis_shaped });
        }
        let count = snapshots.len();
        let result = module.apply(snapshots, None, None, true);
        if result.applied.len() != count || !result.errors.is_empty() {
            return Err(WeightsError::Mismatch {
                path: self.path.clone(),
                missing: result.missing.into_iter().map(|(p, _)| map.to_checkpoint(&p)).collect(),
                unexpected: result.unused,
                mis_shaped: result.errors.iter().map(|e| format!("{e:?}")).collect(),
            });
        }
        Ok(module)
    }
}

/// The safetensors parser's complaint, plus what the file looks like when it is plainly not
/// safetensors (a web page saved by a failed download, an old PyTorch pickle, a cut-off file).
pub(crate) fn explain_format_error(bytes: &[u8], error: impl std::fmt::Display) -> String {
    let hint = if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        "it looks like a legacy (pre-1.6, non-zip) torch.save pickle, which is not supported; re-save it with a \
         recent PyTorch"
            .to_string()
    } else if bytes.len() < 8 {
        format!("the file has only {} bytes", bytes.len())
    } else if bytes.iter().take(64).all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) && bytes[0] != b'{' {
        let head: String = bytes.iter().take(32).map(|&b| b as char).collect();
        format!("it starts with text ({head:?}): a web page or error message saved in place of the weights?")
    } else {
        let declared = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        let available = bytes.len() as u64 - 8;
        if declared > available {
            format!("its first 8 bytes declare a {declared}-byte header, but only {available} bytes follow")
        } else {
            return error.to_string();
        }
    };
    format!("{error} ({hint})")
}

/// Parameter shapes by dotted path (enum variant names left out, as `collect(.., true)` does),
/// read without initialising lazily initialised parameters.
#[derive(Default)]
struct LazyShapes {
    path: Vec<String>,
    /// Whether each entered module added a path component.
    pushed: Vec<bool>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl LazyShapes {
    fn record(&mut self, shape: burn::tensor::Shape) {
        self.shapes.insert(self.path.join("."), shape.to_vec());
    }
}

impl<B: Backend> burn::module::ModuleVisitor<B> for LazyShapes {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        let push = !container_type.starts_with("Enum:");
        if push {
            self.path.push(name.to_string());
        }
        self.pushed.push(push);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        if self.pushed.pop() == Some(true) {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        self.record(param.lazy_shape());
    }

    fn visit_int<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D, Int>>) {
        self.record(param.lazy_shape());
    }

    fn visit_bool<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D, Bool>>) {
        self.record(param.lazy_shape());
    }
}

/// Values and shape in Burn's layout: torch `nn.Linear` weights `[out, in]` become `[in, out]`.
fn to_burn_layout(tensor: &CheckpointTensor, transpose: bool) -> (Vec<f32>, Vec<usize>) {
    match (transpose, tensor.shape.as_slice()) {
        (true, &[rows, cols]) => {
            let mut out = vec![0.0f32; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = tensor.values[r * cols + c];
                }
            }
            (out, vec![cols, rows])
        }
        _ => (tensor.values.clone(), tensor.shape.clone()),
    }
}
