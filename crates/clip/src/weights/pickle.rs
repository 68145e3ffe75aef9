//! A small, safe Python pickle interpreter for the pickles inside PyTorch files.
//!
//! It understands the opcodes of protocols 0 to 5 that `torch.save` and `torch.jit.save` emit
//! and builds a value tree without running any Python: a `GLOBAL` is only a name, `REDUCE` of a
//! few known torch callables builds tensors and dictionaries, and any other call is recorded as
//! an opaque [`Value::Object`]. Persistent ids of the form
//! `('storage', torch.<Type>Storage, key, location, numel)` become [`Value::Storage`].
//!
//! Every malformed input is an error, never a panic; mutable containers are shared through
//! `Rc<RefCell<..>>` as in Python, so a memoised object that is filled later is seen filled.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use safetensors::Dtype;

/// A value built by the interpreter.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(#[allow(dead_code)] f64),
    Str(Rc<str>),
    Bytes(#[allow(dead_code)] Rc<[u8]>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A `GLOBAL` reference `module.name` (never resolved to code).
    Global(Rc<(String, String)>),
    /// An instance built by `NEWOBJ`/`REDUCE` of an unknown class, with its `BUILD` state.
    Object(Rc<RefCell<Object>>),
    /// A torch storage named by a persistent id.
    Storage(Rc<Storage>),
    /// A tensor view into a storage.
    Tensor(Rc<TensorRef>),
}

/// An opaque instance: the class it names and the state `BUILD` gave it.
#[derive(Debug)]
pub(crate) struct Object {
    pub module: String,
    pub name: String,
    pub state: Option<Value>,
}

/// A torch storage: element type, the archive entry holding its bytes, and its length.
#[derive(Debug)]
pub(crate) struct Storage {
    pub dtype: Dtype,
    pub key: String,
    pub numel: u64,
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub storage: Rc<Storage>,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    /// The string, for dictionary keys and attribute names.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) if *i >= 0 => Some(*i as u64),
            Value::Bool(b) => Some(*b as u64),
            _ => None,
        }
    }
}

/// The element type of a legacy typed storage class (`torch.FloatStorage`, ...).
pub(crate) fn storage_dtype(name: &str) -> Option<Dtype> {
    Some(match name {
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "DoubleStorage" => Dtype::F64,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        _ => return None,
    })
}

/// Runs a pickle program and returns the value it leaves (what `pickle.loads` would return).
pub(crate) fn load(data: &[u8]) -> Result<Value, String> {
    Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }.run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            format!("truncated pickle: {n} bytes needed at offset {}, {} left", self.pos, self.data.len() - self.pos)
        })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn len(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n).map_err(|_| format!("length {n} does not fit in memory"))
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("truncated pickle: unterminated text argument")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "text argument is not UTF-8".to_string())
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("pickle pops across a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "pickle stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("pickle has no MARK to pop to")?;
        if mark > self.stack.len() {
            return Err("pickle MARK is above the stack".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&self, index: u64) -> Result<Value, String> {
        self.memo.get(&index).cloned().ok_or_else(|| format!("pickle reads memo slot {index}, which was never set"))
    }

    fn memo_put(&mut self, index: u64) -> Result<(), String> {
        let value = self.stack.last().cloned().ok_or("pickle memoises an empty stack")?;
        self.memo.insert(index, value);
        Ok(())
    }

    fn push_str(&mut self, bytes: &[u8]) -> Result<(), String> {
        let s = std::str::from_utf8(bytes).map_err(|_| "pickle string is not UTF-8".to_string())?;
        self.stack.push(Value::Str(s.into()));
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            self.step(op).map_err(|e| format!("{e} (opcode 0x{op:02x} at offset {at})"))?;
            if op == b'.' {
                let value = self.stack.pop().ok_or("pickle ends with an empty stack")?;
                return Ok(value);
            }
        }
    }

    fn step(&mut self, op: u8) -> Result<(), String> {
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.u64()?; // FRAME: a length hint
            }
            b'.' => {}
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            // constants and numbers
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'J' => {
                let v = self.u32()? as i32;
                self.stack.push(Value::Int(v as i64));
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(Value::Int(v as i64));
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a { self.u8()? as u64 } else { self.u32()? as u64 };
                let n = self.len(n)?;
                let bytes = self.take(n)?;
                self.stack.push(Value::Int(long_from_bytes(bytes)?));
            }
            b'I' => {
                let text = self.line()?;
                let value = match text {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    t => Value::Int(t.trim().parse().map_err(|_| format!("bad INT argument `{t}`"))?),
                };
                self.stack.push(value);
            }
            b'L' => {
                let text = self.line()?;
                let digits = text.trim().trim_end_matches('L');
                self.stack.push(Value::Int(digits.parse().map_err(|_| format!("bad LONG argument `{text}`"))?));
            }
            b'F' => {
                let text = self.line()?;
                self.stack.push(Value::Float(text.trim().parse().map_err(|_| format!("bad FLOAT argument `{text}`"))?));
            }
            b'G' => {
                let b = self.take(8)?;
                self.stack.push(Value::Float(f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])));
            }
            // strings and bytes
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.u32()? as u64,
                    0x8c => self.u8()? as u64,
                    _ => self.u64()?,
                };
                let n = self.len(n)?;
                let bytes = self.take(n)?;
                self.push_str(bytes)?;
            }
            b'V' => {
                let text = self.line()?;
                self.stack.push(Value::Str(text.into()));
            }
            b'T' | b'U' => {
                // Python 2 `str`: read as text where it is UTF-8 (names), else bytes.
                let n = if op == b'T' { self.u32()? as u64 } else { self.u8()? as u64 };
                let n = self.len(n)?;
                let bytes = self.take(n)?;
                match std::str::from_utf8(bytes) {
                    Ok(s) => self.stack.push(Value::Str(s.into())),
                    Err(_) => self.stack.push(Value::Bytes(bytes.into())),
                }
            }
            b'S' => {
                let text = self.line()?;
                let inner = text
                    .strip_prefix('\'')
                    .and_then(|t| t.strip_suffix('\''))
                    .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
                    .ok_or_else(|| format!("bad STRING argument `{text}`"))?;
                if inner.contains('\\') {
                    return Err("escaped STRING arguments are not supported".into());
                }
                self.stack.push(Value::Str(inner.into()));
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = match op {
                    b'B' => self.u32()? as u64,
                    b'C' => self.u8()? as u64,
                    _ => self.u64()?,
                };
                let n = self.len(n)?;
                let bytes = self.take(n)?;
                self.stack.push(Value::Bytes(bytes.into()));
            }
            // containers
            b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if self.stack.len() < n || self.marks.last().is_some_and(|&m| m > self.stack.len() - n) {
                    return Err("pickle stack underflow".into());
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            b']' => self.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'a' => {
                let item = self.pop()?;
                self.extend(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend(items)?;
            }
            b'}' => self.stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![(key, value)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                self.set_items(pairs)?;
            }
            0x8f => self.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            0x90 => {
                let items = self.pop_mark()?;
                self.extend(items)?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            // memo
            b'p' => {
                let index = self.line()?.trim().parse().map_err(|_| "bad PUT argument".to_string())?;
                self.memo_put(index)?;
            }
            b'q' => {
                let index = self.u8()? as u64;
                self.memo_put(index)?;
            }
            b'r' => {
                let index = self.u32()? as u64;
                self.memo_put(index)?;
            }
            0x94 => {
                let index = self.memo.len() as u64;
                self.memo_put(index)?;
            }
            b'g' => {
                let index = self.line()?.trim().parse().map_err(|_| "bad GET argument".to_string())?;
                let value = self.memo_get(index)?;
                self.stack.push(value);
            }
            b'h' => {
                let index = self.u8()? as u64;
                let value = self.memo_get(index)?;
                self.stack.push(value);
            }
            b'j' => {
                let index = self.u32()? as u64;
                let value = self.memo_get(index)?;
                self.stack.push(value);
            }
            // classes, calls and objects
            b'c' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.stack.push(Value::Global(Rc::new((module, name))));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.as_str(), name.as_str()) {
                    (Some(m), Some(n)) => self.stack.push(Value::Global(Rc::new((m.to_string(), n.to_string())))),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let value = reduce(&callable, &args)?;
                self.stack.push(value);
            }
            0x81 => {
                let _args = self.pop()?;
                let class = self.pop()?;
                self.stack.push(new_object(&class)?);
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let _args = self.pop()?;
                let class = self.pop()?;
                self.stack.push(new_object(&class)?);
            }
            b'b' => {
                let state = self.pop()?;
                match self.top()? {
                    Value::Object(obj) => obj.borrow_mut().state = Some(state),
                    // OrderedDict's `_metadata`, tensor hooks: nothing the weights need.
                    Value::Dict(_) | Value::Tensor(_) | Value::List(_) => {}
                    other => return Err(format!("BUILD on a {}", other.kind())),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let storage = persistent_load(&pid)?;
                self.stack.push(storage);
            }
            b'P' => return Err("text persistent ids (PERSID) are not used by PyTorch files".into()),
            b'i' | b'o' => return Err("old-style instance opcodes (INST/OBJ) are not supported".into()),
            0x82..=0x84 => return Err("extension registry opcodes (EXT1/2/4) are not supported".into()),
            0x97 | 0x98 => return Err("out-of-band buffers (protocol 5) are not supported".into()),
            other => return Err(format!("unknown pickle opcode 0x{other:02x}")),
        }
        Ok(())
    }

    fn extend(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.top()? {
            Value::List(list) => {
                list.borrow_mut().extend(items);
                Ok(())
            }
            // list subclasses built by REDUCE: their items carry no weights
            Value::Object(_) => Ok(()),
            other => Err(format!("APPEND to a {}", other.kind())),
        }
    }

    fn set_items(&mut self, new: Vec<(Value, Value)>) -> Result<(), String> {
        match self.top()? {
            Value::Dict(dict) => {
                let mut dict = dict.borrow_mut();
                for (key, value) in new {
                    // Python semantics: a repeated key replaces the earlier value.
                    match dict.iter_mut().find(|(k, _)| same_key(k, &key)) {
                        Some(slot) => slot.1 = value,
                        None => dict.push((key, value)),
                    }
                }
                Ok(())
            }
            Value::Object(obj) => {
                // a dict subclass built by REDUCE/NEWOBJ: keep the items as its state
                let mut obj = obj.borrow_mut();
                let state = obj.state.get_or_insert_with(|| Value::Dict(Rc::new(RefCell::new(Vec::new()))));
                if let Value::Dict(dict) = state {
                    dict.borrow_mut().extend(new);
                }
                Ok(())
            }
            other => Err(format!("SETITEM on a {}", other.kind())),
        }
    }
}

fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => false,
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn long_from_bytes(bytes: &[u8]) -> Result<i64, String> {
    if bytes.is_empty() {
        return Ok(0);
    }
    if bytes.len() > 8 {
        // only accept wider encodings of values that fit in i64 (sign extension bytes)
        let sign = if bytes[7] & 0x80 != 0 { 0xff } else { 0 };
        if bytes[8..].iter().any(|&b| b != sign) {
            return Err("integer wider than 64 bits".into());
        }
    }
    let mut buf = [if bytes[bytes.len().min(8) - 1] & 0x80 != 0 { 0xff } else { 0 }; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    Ok(i64::from_le_bytes(buf))
}

fn global_name(value: &Value) -> Option<(&str, &str)> {
    match value {
        Value::Global(g) => Some((g.0.as_str(), g.1.as_str())),
        _ => None,
    }
}

fn new_object(class: &Value) -> Result<Value, String> {
    let (module, name) = global_name(class).ok_or_else(|| format!("NEWOBJ of a {}", class.kind()))?;
    if (module, name) == ("collections", "OrderedDict") {
        return Ok(Value::Dict(Rc::new(RefCell::new(Vec::new()))));
    }
    Ok(Value::Object(Rc::new(RefCell::new(Object { module: module.into(), name: name.into(), state: None }))))
}

/// `callable(*args)` for the callables PyTorch files use; anything else becomes an opaque object.
fn reduce(callable: &Value, args: &Value) -> Result<Value, String> {
    let (module, name) =
        global_name(callable).ok_or_else(|| format!("REDUCE with a {} as callable", callable.kind()))?;
    let args = args.items().ok_or_else(|| format!("REDUCE of {module}.{name} with a {} as arguments", args.kind()))?;
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => rebuild_tensor(&args),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            args.into_iter().next().ok_or_else(|| "_rebuild_parameter without arguments".to_string())
        }
        ("torch._tensor", "_rebuild_from_type_v2") => {
            // (func, new_type, func_args, state): a tensor subclass; the data is func(*func_args)
            match args.as_slice() {
                [func, _new_type, func_args, ..] => reduce(func, func_args),
                _ => Err("_rebuild_from_type_v2 with too few arguments".into()),
            }
        }
        ("collections", "OrderedDict") => {
            let mut items = Vec::new();
            if let Some(Value::List(list)) = args.first() {
                for pair in list.borrow().iter() {
                    match pair.items().as_deref() {
                        Some([k, v]) => items.push((k.clone(), v.clone())),
                        _ => return Err("OrderedDict built from something other than pairs".into()),
                    }
                }
            }
            Ok(Value::Dict(Rc::new(RefCell::new(items))))
        }
        _ => Ok(Value::Object(Rc::new(RefCell::new(Object { module: module.into(), name: name.into(), state: None })))),
    }
}

fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err("_rebuild_tensor_v2 with too few arguments".into());
    };
    let Value::Storage(storage) = storage else {
        return Err(format!("_rebuild_tensor_v2 of a {} instead of a storage", storage.kind()));
    };
    let offset = offset.as_u64().ok_or("tensor storage offset is not a non-negative integer")?;
    let ints = |v: &Value, what: &str| -> Result<Vec<u64>, String> {
        v.items()
            .ok_or_else(|| format!("tensor {what} is a {}", v.kind()))?
            .iter()
            .map(|x| x.as_u64().ok_or_else(|| format!("tensor {what} holds a negative or non-integer value")))
            .collect()
    };
    let (size, stride) = (ints(size, "size")?, ints(stride, "stride")?);
    if size.len() != stride.len() {
        return Err(format!("tensor size {size:?} and stride {stride:?} differ in rank"));
    }
    Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, size, stride })))
}

fn persistent_load(pid: &Value) -> Result<Value, String> {
    let items = pid.items().ok_or_else(|| format!("persistent id is a {}, expected a tuple", pid.kind()))?;
    match items.as_slice() {
        [tag, storage_type, key, _location, numel, ..] if tag.as_str() == Some("storage") => {
            let (module, name) = global_name(storage_type).ok_or("storage type is not a class name")?;
            let dtype = storage_dtype(name)
                .filter(|_| module == "torch")
                .ok_or_else(|| format!("unsupported storage type {module}.{name}"))?;
            let key = match key {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                other => return Err(format!("storage key is a {}", other.kind())),
            };
            if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
                return Err(format!("storage key `{key}` is not a plain name"));
            }
            let numel = numel.as_u64().ok_or("storage size is not a non-negative integer")?;
            Ok(Value::Storage(Rc::new(Storage { dtype, key, numel })))
        }
        _ => Err("persistent id is not ('storage', type, key, location, numel)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_programs() {
        // protocol 2: {'a': [1, -2, 300], 'b': (True, None, 1.5)}
        let program: Vec<u8> = [
            &[0x80, 2, b'}', b'q', 0, b'('][..],
            &[b'X', 1, 0, 0, 0, b'a', b']', b'(', b'K', 1, b'J'],
            &(-2i32).to_le_bytes(),
            &[b'M', 0x2c, 0x01, b'e', b'X', 1, 0, 0, 0, b'b', 0x88, b'N', b'G'],
            &1.5f64.to_be_bytes(),
            &[0x87, b'u', b'.'],
        ]
        .concat();
        let Value::Dict(d) = load(&program).unwrap() else { panic!("not a dict") };
        let d = d.borrow();
        assert_eq!(d[0].0.as_str(), Some("a"));
        let Value::List(l) = &d[0].1 else { panic!() };
        let ints: Vec<u64> =
            l.borrow().iter().filter_map(|v| if let Value::Int(i) = v { Some(*i as u64) } else { None }).collect();
        assert_eq!(ints, [1, (-2i64) as u64, 300]);
        let Value::Tuple(t) = &d[1].1 else { panic!() };
        assert!(
            matches!(t[0], Value::Bool(true))
                && matches!(t[1], Value::None)
                && matches!(t[2], Value::Float(f) if f == 1.5)
        );
    }

    #[test]
    fn malformed_programs_are_errors() {
        for (program, needle) in [
            (&b""[..], "truncated"),
            (&[0x80, 9][..], "protocol 9"),
            (&[b'h', 3][..], "memo slot 3"),
            (&[b'0'][..], "underflow"),
            (&[b'X', 0xff, 0xff, 0xff, 0x7f, b'a'][..], "truncated"),
            (&[0xff][..], "unknown pickle opcode"),
            (&[b'K', 1, b'(', b'K', 1, b'K', 2, b'u'][..], "SETITEM"),
            (&[b'N', b'N', b'R', b'.'][..], "REDUCE"),
        ] {
            let err = load(program).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn longs() {
        assert_eq!(long_from_bytes(&[0xff]).unwrap(), -1);
        assert_eq!(long_from_bytes(&[0x00, 0x01]).unwrap(), 256);
        assert_eq!(long_from_bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(), 1);
        assert!(long_from_bytes(&[0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }
}
