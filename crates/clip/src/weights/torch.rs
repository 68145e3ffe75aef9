//! Reading PyTorch files without Python: TorchScript archives (`torch.jit.save`, the format of
//! OpenAI's `RN50.pt` / `ViT-B-16.pt`) and `torch.save` zip files holding a state dict.
//!
//! Both are zip archives with `<name>/data.pkl`, a pickle whose tensors are persistent
//! references `('storage', torch.<Type>Storage, key, location, numel)` rebuilt through
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, and the storages'
//! bytes in `<name>/data/<key>`.
//!
//! - In a **TorchScript archive** the pickle is the module tree: `__torch__.*` objects whose
//!   attributes are parameters, buffers, submodules and plain values. Which attributes are the
//!   module's state is declared in the archive's `code/` (`__parameters__` and `__buffers__` of
//!   each class), and the reader follows it, so the result is exactly what
//!   `torch.jit.load(f).state_dict()` returns (names dotted: `visual.conv1.weight`). A class
//!   whose code is absent contributes every tensor attribute.
//! - A **`torch.save` file** pickles a dictionary: a state dict itself, or a checkpoint with one
//!   inside (`{"state_dict": ..., "epoch": ...}`); see [`read_torch_with_key`]. A `module.`
//!   prefix on every key (`DataParallel`) is removed.
//!
//! Tensors are returned contiguous, in their stored dtype (OpenAI's archives are mostly f16),
//! with storage offsets and strides applied. The pre-1.6 (non-zip) `torch.save` format, whole
//! pickled Python models, quantized and sparse tensors are refused with a message that says so.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use safetensors::Dtype;

use super::WeightsError;
use super::pickle::{self, Object, TensorRef, Value};
use super::raw::{RawTensor, element_size};

/// Which kind of PyTorch file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchFormat {
    /// A `torch.jit.save` archive (module tree with code).
    TorchScript,
    /// A `torch.save` file holding a dictionary of tensors.
    StateDict,
}

/// The tensors of a PyTorch file.
#[derive(Debug, Clone)]
pub struct TorchFile {
    /// What the file was.
    pub format: TorchFormat,
    /// Every tensor of the state dict, by dotted name, contiguous, in its stored dtype.
    pub tensors: BTreeMap<String, RawTensor>,
    /// What the reader did beyond plain reading (a checkpoint key it descended into, a prefix
    /// it removed), for the user to see.
    pub notes: Vec<String>,
}

/// The first bytes of a zip archive (local file header).
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";
/// Output tensors may be larger than their storage (expanded views), but not without bound.
const EXPANSION_LIMIT: u64 = 16;

/// Whether a file starts like a zip archive (a PyTorch file rather than safetensors).
pub fn is_zip(path: &Path) -> Result<bool, WeightsError> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
    let mut read = 0;
    while read < 4 {
        match file.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(source) => return Err(WeightsError::Io { path: path.into(), source }),
        }
    }
    Ok(read == 4 && magic == ZIP_MAGIC)
}

/// Reads a TorchScript archive or a `torch.save` zip file (see the module documentation).
pub fn read_torch(path: &Path) -> Result<TorchFile, WeightsError> {
    read_torch_with_key(path, None)
}

/// As [`read_torch`]; for a `torch.save` checkpoint whose top level is a dictionary holding
/// several dictionaries of tensors, `key` names the one to read. Without it, a lone one is
/// taken, else `state_dict`, `model` or `model_state_dict`, else the file is refused with the
/// candidates listed.
pub fn read_torch_with_key(path: &Path, key: Option<&str>) -> Result<TorchFile, WeightsError> {
    let fail = |reason: String| WeightsError::Torch { path: path.into(), reason };
    let file = File::open(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
    if !is_zip(path)? {
        let mut head = [0u8; 16];
        let n = File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
        return Err(fail(if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
            "this is the legacy (pre-1.6, non-zip) torch.save format, which is not supported; \
             re-save it with a recent PyTorch: torch.save(torch.load(f), f2)"
                .into()
        } else {
            "not a PyTorch file: it is not a zip archive".into()
        }));
    }
    let zip = zip::ZipArchive::new(file).map_err(|e| fail(format!("corrupt zip archive: {e}")))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pickles: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.strip_suffix("data.pkl").is_some_and(|p| p.is_empty() || p.matches('/').count() == 1 && p.ends_with('/'))
        })
        .collect();
    let prefix = match pickles.as_slice() {
        [one] => one.strip_suffix("data.pkl").unwrap_or_default().to_string(),
        [] => return Err(fail("no data.pkl in the archive: not a PyTorch file".into())),
        many => return Err(fail(format!("several data.pkl in the archive: {many:?}"))),
    };
    let mut archive = Archive { zip, prefix, path, code: HashMap::new() };
    if let Some(order) = archive.read_text("byteorder")?
        && order.trim() != "little"
    {
        return Err(fail(format!("byte order `{}` is not supported (only little-endian)", order.trim())));
    }
    let program = archive.read_entry(&format!("{}data.pkl", archive.prefix), None)?;
    let root = pickle::load(&program).map_err(|e| fail(format!("data.pkl: {e}")))?;
    let torchscript = names.iter().any(|n| {
        n.strip_prefix(archive.prefix.as_str()).is_some_and(|rest| rest.starts_with("code/") || rest == "constants.pkl")
    });

    let mut notes = Vec::new();
    let mut refs = Vec::new();
    let format = match &root {
        Value::Object(obj) if obj.borrow().module.starts_with("__torch__") => {
            let mut budget = 1_000_000usize;
            archive.walk_module(obj, "", 0, &mut budget, &mut refs)?;
            TorchFormat::TorchScript
        }
        Value::Object(obj) => {
            let obj = obj.borrow();
            return Err(fail(format!(
                "the file pickles a Python object of class {}.{} (a whole model?), not a state dict; \
                 save model.state_dict() instead",
                obj.module, obj.name
            )));
        }
        Value::Dict(_) => {
            refs = state_dict(&root, key, &mut notes).map_err(fail)?;
            TorchFormat::StateDict
        }
        other => return Err(fail(format!("data.pkl holds a {}, not a state dict or a module", kind_name(other)))),
    };
    if format == TorchFormat::TorchScript && !torchscript {
        notes.push("module tree without code/: every tensor attribute was taken".into());
    }
    if format == TorchFormat::StateDict && refs.len() > 1 && refs.iter().all(|(n, _)| n.starts_with("module.")) {
        for (name, _) in &mut refs {
            *name = name["module.".len()..].to_string();
        }
        notes.push("removed the `module.` prefix (DataParallel) from every name".into());
    }
    let tensors = archive.materialize(refs)?;
    Ok(TorchFile { format, tensors, notes })
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Dict(_) => "dict",
        Value::List(_) => "list",
        Value::Tuple(_) => "tuple",
        Value::Tensor(_) => "single tensor",
        Value::Object(_) => "object",
        _ => "plain value",
    }
}

/// Tensor views by name.
type Named = Vec<(String, Rc<TensorRef>)>;

/// The tensors of a dictionary whose values are all tensors (or `None`); `None` if it is not one.
fn tensor_dict(value: &Value) -> Option<Named> {
    let Value::Dict(dict) = value else { return None };
    let mut out = Vec::new();
    for (k, v) in dict.borrow().iter() {
        match (k.as_str(), v) {
            (Some(name), Value::Tensor(t)) => out.push((name.to_string(), t.clone())),
            (Some(_), Value::None) => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

fn state_dict(root: &Value, key: Option<&str>, notes: &mut Vec<String>) -> Result<Named, String> {
    let Value::Dict(dict) = root else { return Err("the pickle does not hold a dictionary".into()) };
    if key.is_none()
        && let Some(tensors) = tensor_dict(root)
    {
        return Ok(tensors);
    }
    let dict = dict.borrow();
    let keys: Vec<String> =
        dict.iter().map(|(k, _)| k.as_str().map_or_else(|| "<non-string>".into(), str::to_string)).collect();
    let candidates: Vec<(&str, Named)> =
        dict.iter().filter_map(|(k, v)| Some((k.as_str()?, tensor_dict(v)?))).collect();
    let chosen = if let Some(key) = key {
        match candidates.into_iter().find(|(k, _)| *k == key) {
            Some(c) => c,
            None => {
                return Err(format!(
                    "the top-level key `{key}` does not hold a dictionary of tensors; top-level keys: {}",
                    keys.join(", ")
                ));
            }
        }
    } else if candidates.len() == 1 {
        candidates.into_iter().next().expect("one candidate")
    } else if let Some(pos) = ["state_dict", "model", "model_state_dict"]
        .iter()
        .find_map(|want| candidates.iter().position(|(k, _)| k == want))
    {
        candidates.into_iter().nth(pos).expect("position is valid")
    } else if candidates.is_empty() {
        return Err(format!(
            "no dictionary of tensors found (neither at the top level nor one level down); top-level keys: {}",
            keys.join(", ")
        ));
    } else {
        let names: Vec<&str> = candidates.iter().map(|(k, _)| *k).collect();
        return Err(format!("several dictionaries of tensors ({}); name the one to read", names.join(", ")));
    };
    notes.push(format!("read the tensors under the top-level key `{}`", chosen.0));
    Ok(chosen.1)
}

struct Archive<'p> {
    zip: zip::ZipArchive<File>,
    prefix: String,
    path: &'p Path,
    /// `code/` file -> class name -> (parameters, buffers)
    code: HashMap<String, Option<HashMap<String, Vec<String>>>>,
}

impl Archive<'_> {
    fn fail(&self, reason: String) -> WeightsError {
        WeightsError::Torch { path: self.path.into(), reason }
    }

    /// Reads an entry, at most `limit` bytes when given (more is an error).
    fn read_entry(&mut self, name: &str, limit: Option<u64>) -> Result<Vec<u8>, WeightsError> {
        let path = self.path;
        let fail = |reason: String| WeightsError::Torch { path: path.into(), reason };
        let mut entry = self.zip.by_name(name).map_err(|e| fail(format!("{name}: {e}")))?;
        let declared = entry.size();
        if let Some(limit) = limit
            && declared < limit
        {
            return Err(fail(format!("{name} holds {declared} bytes, {limit} needed")));
        }
        let want = limit.unwrap_or(declared);
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(want as usize)
            .map_err(|_| fail(format!("{name}: {want} bytes do not fit in memory")))?;
        (&mut entry).take(want).read_to_end(&mut bytes).map_err(|e| fail(format!("{name}: {e}")))?;
        if (bytes.len() as u64) < want {
            return Err(fail(format!("{name} is truncated: {} of {want} bytes", bytes.len())));
        }
        Ok(bytes)
    }

    fn read_text(&mut self, name: &str) -> Result<Option<String>, WeightsError> {
        let full = format!("{}{name}", self.prefix);
        if self.zip.index_for_name(&full).is_none() {
            return Ok(None);
        }
        let bytes = self.read_entry(&full, None)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// `(parameters, buffers)` declared for a TorchScript class, if its code is in the archive.
    fn class_state(&mut self, module: &str, class: &str) -> Result<Option<Vec<String>>, WeightsError> {
        let file = format!("code/{}.py", module.replace('.', "/"));
        if !self.code.contains_key(&file) {
            let parsed = self.read_text(&file)?.map(|text| parse_class_state(&text));
            self.code.insert(file.clone(), parsed);
        }
        Ok(self.code[&file].as_ref().and_then(|classes| classes.get(class).cloned()))
    }

    fn walk_module(
        &mut self,
        obj: &Rc<std::cell::RefCell<Object>>,
        prefix: &str,
        depth: usize,
        budget: &mut usize,
        out: &mut Named,
    ) -> Result<(), WeightsError> {
        if depth > 64 {
            return Err(self.fail(format!("module tree deeper than 64 levels at `{prefix}`")));
        }
        let (module, class, state) = {
            let o = obj.borrow();
            (o.module.clone(), o.name.clone(), o.state.clone())
        };
        let declared = self.class_state(&module, &class)?;
        let Some(Value::Dict(attributes)) = state else {
            return Err(self.fail(format!("module `{prefix}` ({module}.{class}) has no attribute dictionary")));
        };
        let attributes = attributes.borrow().clone();
        for (name, value) in attributes {
            *budget = budget.checked_sub(1).ok_or_else(|| self.fail("module tree too large".into()))?;
            let Some(name) = name.as_str() else { continue };
            let full = format!("{prefix}{name}");
            let is_state = declared.as_ref().is_none_or(|d| d.iter().any(|n| n == name));
            match value {
                Value::Tensor(t) if is_state => out.push((full, t)),
                Value::Object(child) if child.borrow().module.starts_with("__torch__") => {
                    self.walk_module(&child, &format!("{full}."), depth + 1, budget, out)?;
                }
                Value::Object(other) if is_state && declared.is_some() => {
                    let o = other.borrow();
                    return Err(self.fail(format!(
                        "`{full}` is a {}.{}, not a plain tensor (quantized or sparse tensors are not supported)",
                        o.module, o.name
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn materialize(&mut self, refs: Named) -> Result<BTreeMap<String, RawTensor>, WeightsError> {
        let mut by_storage: BTreeMap<String, Named> = BTreeMap::new();
        for (name, t) in refs {
            by_storage.entry(t.storage.key.clone()).or_default().push((name, t));
        }
        let mut out = BTreeMap::new();
        for (key, tensors) in by_storage {
            let storage = tensors[0].1.storage.clone();
            let element =
                element_size(storage.dtype).ok_or_else(|| self.fail(format!("storage {key}: unsupported dtype")))?;
            if tensors.iter().any(|(_, t)| t.storage.dtype != storage.dtype || t.storage.numel != storage.numel) {
                return Err(self.fail(format!("storage {key} is declared with two different types or sizes")));
            }
            let bytes_needed = storage
                .numel
                .checked_mul(element as u64)
                .ok_or_else(|| self.fail(format!("storage {key}: size overflows")))?;
            let bytes = self.read_entry(&format!("{}data/{key}", self.prefix), Some(bytes_needed))?;
            for (name, t) in tensors {
                let tensor = view(&t, &bytes, element).map_err(|e| self.fail(format!("tensor `{name}`: {e}")))?;
                if out.insert(name.clone(), tensor).is_some() {
                    return Err(self.fail(format!("tensor `{name}` appears twice")));
                }
            }
        }
        Ok(out)
    }
}

/// Copies a strided view out of a storage into a contiguous tensor.
fn view(t: &TensorRef, storage: &[u8], element: usize) -> Result<RawTensor, String> {
    let dtype: Dtype = t.storage.dtype;
    let available = (storage.len() / element) as u64;
    let shape: Vec<usize> = t
        .size
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d} too large")))
        .collect::<Result<_, _>>()?;
    let numel = t.size.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or("element count overflows")?;
    if numel == 0 {
        return RawTensor::new(dtype, shape, Vec::new());
    }
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&size, &stride)| acc.checked_add((size - 1).checked_mul(stride)?))
        .ok_or("offset overflows")?;
    if last >= available {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a storage of {available}",
            t.offset, t.size, t.stride
        ));
    }
    let out_bytes = numel.checked_mul(element as u64).ok_or("byte count overflows")?;
    if out_bytes > EXPANSION_LIMIT * (storage.len() as u64).max(1 << 22) {
        return Err(format!("view of {numel} elements is far larger than its storage ({available} elements)"));
    }
    let mut data = Vec::new();
    data.try_reserve_exact(out_bytes as usize).map_err(|_| format!("{out_bytes} bytes do not fit in memory"))?;
    // strides of a row-major contiguous tensor of this shape
    let rank = t.size.len();
    let mut contiguous = true;
    let mut expect = 1u64;
    for d in (0..rank).rev() {
        if t.size[d] != 1 && t.stride[d] != expect {
            contiguous = false;
        }
        expect *= t.size[d];
    }
    if contiguous {
        let start = t.offset as usize * element;
        data.extend_from_slice(&storage[start..start + out_bytes as usize]);
    } else {
        let mut index = vec![0u64; rank];
        let mut at = t.offset;
        loop {
            let from = at as usize * element;
            data.extend_from_slice(&storage[from..from + element]);
            // advance the multi-index, last dimension fastest
            let mut d = rank;
            loop {
                if d == 0 {
                    return RawTensor::new(dtype, shape, data);
                }
                d -= 1;
                index[d] += 1;
                at += t.stride[d];
                if index[d] < t.size[d] {
                    break;
                }
                at -= t.stride[d] * t.size[d];
                index[d] = 0;
            }
        }
    }
    RawTensor::new(dtype, shape, data)
}

/// For each `class NAME(Module):` of a TorchScript code file, its `__parameters__` followed by
/// its `__buffers__`.
fn parse_class_state(code: &str) -> HashMap<String, Vec<String>> {
    let mut classes = HashMap::new();
    let mut current: Option<String> = None;
    for line in code.lines() {
        if let Some(rest) = line.strip_prefix("class ") {
            let name = rest.split(['(', ':']).next().unwrap_or("").trim().to_string();
            classes.insert(name.clone(), Vec::new());
            current = Some(name);
            continue;
        }
        let trimmed = line.trim_start();
        let list = trimmed.strip_prefix("__parameters__ = [").or_else(|| trimmed.strip_prefix("__buffers__ = ["));
        if let (Some(list), Some(class)) = (list, &current) {
            let names = list.split(']').next().unwrap_or("");
            let entry: &mut Vec<String> = classes.get_mut(class).expect("class inserted above");
            entry.extend(names.split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()));
        }
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_state_from_code() {
        let code = "class A(Module):\n  __parameters__ = [\"weight\", \"bias\", ]\n  __buffers__ = [\"mask\", ]\n  weight : Tensor\n\
                    class B(Module):\n  __parameters__ = []\n  __buffers__ = []\n";
        let classes = parse_class_state(code);
        assert_eq!(classes["A"], ["weight", "bias", "mask"]);
        assert!(classes["B"].is_empty());
    }

    /// Damaged pickles (flipped bytes, truncations) give errors or odd-but-valid results, never a
    /// panic or a hang.
    #[test]
    fn damaged_archives_never_panic() {
        use std::io::Write;
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/weights/vit_ts_fp16.pt");
        let mut source = zip::ZipArchive::new(File::open(&fixture).unwrap()).unwrap();
        let mut entries = Vec::new();
        for i in 0..source.len() {
            let mut e = source.by_index(i).unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            entries.push((e.name().to_string(), bytes));
        }
        let dir = std::env::temp_dir().join(format!("clip-burn-damaged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("damaged.pt");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut ok, mut failed) = (0, 0);
        for round in 0..300 {
            let mut writer = zip::ZipWriter::new(File::create(&path).unwrap());
            let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
            for (name, bytes) in &entries {
                let mut bytes = bytes.clone();
                if name.ends_with("/data.pkl") {
                    if round % 5 == 4 {
                        bytes.truncate((next() as usize) % bytes.len());
                    } else {
                        for _ in 0..1 + round % 3 {
                            let at = (next() as usize) % bytes.len();
                            bytes[at] = next() as u8;
                        }
                    }
                }
                writer.start_file(name.as_str(), options).unwrap();
                writer.write_all(&bytes).unwrap();
            }
            writer.finish().unwrap();
            match read_torch(&path) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(e.to_string().contains("damaged.pt"), "{e}");
                    failed += 1;
                }
            }
        }
        assert!(failed > 100, "{ok} read, {failed} refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strided_views() {
        let storage: Vec<u8> = (0..12u8).collect(); // 12 one-byte elements
        let storage_ref = Rc::new(pickle::Storage { dtype: Dtype::U8, key: "0".into(), numel: 12 });
        let t = |offset, size: &[u64], stride: &[u64]| TensorRef {
            storage: storage_ref.clone(),
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        };
        // [3, 4] transposed -> [4, 3]
        assert_eq!(view(&t(0, &[4, 3], &[1, 4]), &storage, 1).unwrap().data, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        assert_eq!(view(&t(5, &[2, 2], &[4, 1]), &storage, 1).unwrap().data, [5, 6, 9, 10]);
        assert_eq!(view(&t(1, &[2, 3], &[0, 2]), &storage, 1).unwrap().data, [1, 3, 5, 1, 3, 5]);
        assert_eq!(view(&t(7, &[], &[]), &storage, 1).unwrap().data, [7]);
        assert!(view(&t(0, &[0, 5], &[5, 1]), &storage, 1).unwrap().data.is_empty());
        let err = view(&t(4, &[3, 3], &[4, 1]), &storage, 1).unwrap_err();
        assert!(err.contains("reaches element 14"), "{err}");
    }
}
