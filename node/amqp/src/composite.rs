//! Composite types (§1.4) as `Value`s: a described list whose fields are read
//! by position with the spec's defaults, and written with trailing nulls
//! left off (as Proton does). Definitions, performatives and SASL frames are
//! all built on these two helpers; the transfer hot path is not (see
//! `amqp::transfer`).

use bytes::Bytes;

use super::codec::{Array, Descriptor, Fields, Symbol, Value};
use super::error::{FrameError, decode_error};

/// The numeric code of a descriptor; symbolic descriptors are mapped through
/// `names` (pairs of `amqp:...:list` name and code).
pub(crate) fn descriptor_code(d: &Descriptor, names: &[(&str, u64)]) -> Option<u64> {
    match d {
        Descriptor::Code(c) => Some(*c),
        Descriptor::Symbol(s) => names
            .iter()
            .find(|(n, _)| *n == s.as_str())
            .map(|(_, c)| *c),
        Descriptor::Other(_) => None,
    }
}

/// Symbolic descriptor names of every composite this engine knows.
pub(crate) const DESCRIPTOR_NAMES: &[(&str, u64)] = &[
    ("amqp:open:list", 0x10),
    ("amqp:begin:list", 0x11),
    ("amqp:attach:list", 0x12),
    ("amqp:flow:list", 0x13),
    ("amqp:transfer:list", 0x14),
    ("amqp:disposition:list", 0x15),
    ("amqp:detach:list", 0x16),
    ("amqp:end:list", 0x17),
    ("amqp:close:list", 0x18),
    ("amqp:error:list", 0x1d),
    ("amqp:received:list", 0x23),
    ("amqp:accepted:list", 0x24),
    ("amqp:rejected:list", 0x25),
    ("amqp:released:list", 0x26),
    ("amqp:modified:list", 0x27),
    ("amqp:source:list", 0x28),
    ("amqp:target:list", 0x29),
    ("amqp:coordinator:list", 0x30),
    ("amqp:sasl-mechanisms:list", 0x40),
    ("amqp:sasl-init:list", 0x41),
    ("amqp:sasl-challenge:list", 0x42),
    ("amqp:sasl-response:list", 0x43),
    ("amqp:sasl-outcome:list", 0x44),
];

/// Splits a described value into its numeric descriptor code and its body.
pub(crate) fn split_described(v: Value, what: &str) -> Result<(u64, Value), FrameError> {
    match v {
        Value::Described(b) => {
            let (d, body) = *b;
            match descriptor_code(&d, DESCRIPTOR_NAMES) {
                Some(c) => Ok((c, body)),
                None => Err(decode_error(format!("{what}: unknown descriptor {d:?}"))),
            }
        }
        other => Err(decode_error(format!(
            "{what}: expected a described type, got {}",
            other.type_name()
        ))),
    }
}

/// The fields of a received composite that must be `expected` (the list of
/// `what`): an unknown or different descriptor is a decode error naming it.
pub(crate) fn read_composite(
    v: Value,
    what: &'static str,
    expected: u64,
) -> Result<ListReader, FrameError> {
    let (c, body) = split_described(v, what)?;
    if c != expected {
        return Err(decode_error(format!(
            "{what}: unexpected descriptor {c:#x}"
        )));
    }
    ListReader::new(what, body)
}

/// The fields of one received composite, read by position. Absent and null
/// fields read as `None` (or the spec default).
pub(crate) struct ListReader {
    name: &'static str,
    items: Vec<Value>,
}

impl ListReader {
    /// Reads the body of a composite named `name` (e.g. `"attach"`).
    pub(crate) fn new(name: &'static str, body: Value) -> Result<Self, FrameError> {
        match body {
            Value::List(items) => Ok(ListReader { name, items }),
            other => Err(decode_error(format!(
                "{name}: expected a list body, got {}",
                other.type_name()
            ))),
        }
    }

    fn take(&mut self, i: usize) -> Value {
        match self.items.get_mut(i) {
            Some(v) => std::mem::replace(v, Value::Null),
            None => Value::Null,
        }
    }

    fn wrong(&self, field: &str, expected: &str, got: &Value) -> FrameError {
        decode_error(format!(
            "{}.{field}: expected {expected}, got {}",
            self.name,
            got.type_name()
        ))
    }

    pub(crate) fn missing(&self, field: &str) -> FrameError {
        decode_error(format!("{}: mandatory field {field} is missing", self.name))
    }

    /// Any value; `None` for null.
    pub(crate) fn value(&mut self, i: usize) -> Option<Value> {
        match self.take(i) {
            Value::Null => None,
            v => Some(v),
        }
    }

    pub(crate) fn uint(&mut self, i: usize, field: &str) -> Result<Option<u32>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Uint(v) => Ok(Some(v)),
            Value::Ushort(v) => Ok(Some(v.into())),
            Value::Ubyte(v) => Ok(Some(v.into())),
            other => Err(self.wrong(field, "uint", &other)),
        }
    }

    pub(crate) fn req_uint(&mut self, i: usize, field: &str) -> Result<u32, FrameError> {
        self.uint(i, field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn ushort(&mut self, i: usize, field: &str) -> Result<Option<u16>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Ushort(v) => Ok(Some(v)),
            Value::Ubyte(v) => Ok(Some(v.into())),
            other => Err(self.wrong(field, "ushort", &other)),
        }
    }

    pub(crate) fn ubyte(&mut self, i: usize, field: &str) -> Result<Option<u8>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Ubyte(v) => Ok(Some(v)),
            other => Err(self.wrong(field, "ubyte", &other)),
        }
    }

    pub(crate) fn ulong(&mut self, i: usize, field: &str) -> Result<Option<u64>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Ulong(v) => Ok(Some(v)),
            Value::Uint(v) => Ok(Some(v.into())),
            Value::Ushort(v) => Ok(Some(v.into())),
            Value::Ubyte(v) => Ok(Some(v.into())),
            other => Err(self.wrong(field, "ulong", &other)),
        }
    }

    pub(crate) fn boolean(&mut self, i: usize, field: &str) -> Result<Option<bool>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Bool(v) => Ok(Some(v)),
            other => Err(self.wrong(field, "boolean", &other)),
        }
    }

    pub(crate) fn bool_or(
        &mut self,
        i: usize,
        field: &str,
        default: bool,
    ) -> Result<bool, FrameError> {
        Ok(self.boolean(i, field)?.unwrap_or(default))
    }

    pub(crate) fn string(&mut self, i: usize, field: &str) -> Result<Option<String>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.wrong(field, "string", &other)),
        }
    }

    pub(crate) fn symbol(&mut self, i: usize, field: &str) -> Result<Option<Symbol>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Symbol(s) => Ok(Some(s)),
            other => Err(self.wrong(field, "symbol", &other)),
        }
    }

    pub(crate) fn binary(&mut self, i: usize, field: &str) -> Result<Option<Bytes>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Binary(b) => Ok(Some(b)),
            other => Err(self.wrong(field, "binary", &other)),
        }
    }

    /// A `multiple="true"` symbol field: a single symbol or an array of them.
    pub(crate) fn symbols(
        &mut self,
        i: usize,
        field: &str,
    ) -> Result<Option<Vec<Symbol>>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Symbol(s) => Ok(Some(vec![s])),
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.items.len());
                for item in a.items {
                    match item {
                        Value::Symbol(s) => out.push(s),
                        other => return Err(self.wrong(field, "array of symbol", &other)),
                    }
                }
                Ok(Some(out))
            }
            other => Err(self.wrong(field, "symbol or array of symbol", &other)),
        }
    }

    /// A map of any keys and values.
    pub(crate) fn map(
        &mut self,
        i: usize,
        field: &str,
    ) -> Result<Option<Vec<(Value, Value)>>, FrameError> {
        match self.take(i) {
            Value::Null => Ok(None),
            Value::Map(m) => Ok(Some(m)),
            other => Err(self.wrong(field, "map", &other)),
        }
    }

    /// `fields` (and other symbol-keyed maps such as `filter-set`).
    pub(crate) fn fields(&mut self, i: usize, field: &str) -> Result<Option<Fields>, FrameError> {
        let Some(m) = self.map(i, field)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            match k {
                Value::Symbol(s) => out.push((s, v)),
                other => return Err(self.wrong(field, "map keyed by symbol", &other)),
            }
        }
        Ok(Some(out))
    }
}

/// Builds the list of one composite; `finish` drops trailing nulls.
pub(crate) struct ListWriter {
    items: Vec<Value>,
}

impl ListWriter {
    pub(crate) fn new() -> Self {
        ListWriter {
            items: Vec::with_capacity(14),
        }
    }

    pub(crate) fn push(&mut self, v: Value) {
        self.items.push(v);
    }

    pub(crate) fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(T) -> Value) {
        self.items.push(v.map_or(Value::Null, f));
    }

    /// A field with a spec default: written as null when it equals it.
    pub(crate) fn defaulted<T: PartialEq>(&mut self, v: T, default: T, f: impl FnOnce(T) -> Value) {
        self.items
            .push(if v == default { Value::Null } else { f(v) });
    }

    pub(crate) fn finish(mut self, code: u64) -> Value {
        while matches!(self.items.last(), Some(Value::Null)) {
            self.items.pop();
        }
        Value::described(Descriptor::Code(code), Value::List(self.items))
    }
}

/// A `multiple="true"` symbol field: always written as an array of sym8/sym32
/// (a single-element array rather than a bare symbol).
pub(crate) fn symbols_value(v: Vec<Symbol>) -> Value {
    let long = v.iter().any(|s| s.as_str().len() > 255);
    Value::Array(Array {
        format_code: if long { 0xb3 } else { 0xa3 },
        descriptor: None,
        items: v.into_iter().map(Value::Symbol).collect(),
    })
}

/// `fields`: a map keyed by symbol.
pub(crate) fn fields_value(v: Fields) -> Value {
    Value::Map(v.into_iter().map(|(k, v)| (Value::Symbol(k), v)).collect())
}
