//! Canonical encoding of a [`Value`]: every value in the smallest legal form
//! of AMQP 1.0 part 1 §1.6 (`uint0`, `smallulong`, `list0`, `list8` when size
//! and count fit a byte, ...).
//!
//! Arrays: every element shares one constructor, chosen from the items (the
//! narrowest form that holds all of them, e.g. `sym8` unless one symbol is
//! longer than 255 bytes). `Array::format_code` only decides the element type
//! of an *empty* array (normalised to the narrow form of its family). Inside
//! arrays the zero-width forms are not used: booleans use `0x56`, uints
//! `smalluint`/`uint`, ulongs `smallulong`/`ulong`, lists `list8`/`list32`.
//!
//! An array whose items do not share one type (or hold `Described` items, or
//! an empty array whose `format_code` is not an element constructor) has no
//! legal array encoding: [`try_encode`] reports it as an [`EncodeError`], and
//! the infallible [`encode`] writes such an array as a *list* of the same
//! items (each wrapped with the array's descriptor, if any), so the output is
//! always well-formed AMQP.
//!
//! Sizes and counts are written as 32-bit values; a single value of 4 GiB or
//! more cannot be represented by AMQP and is not checked for.

use bytes::{BufMut, BytesMut};

use super::format_code as fc;
use super::value::{Array, Descriptor, Value};

/// Why a value has no legal AMQP encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An array item's type differs from the first item's.
    #[error(
        "array item {index}: a {found} cannot share the element constructor {expected:#04x} of the array"
    )]
    ArrayItemMismatch {
        index: usize,
        expected: u8,
        found: &'static str,
    },
    /// An array item is `Described` (described elements share the array's
    /// `descriptor` instead) or is itself an ill-typed array.
    #[error("array item {index}: a {found} cannot be an array element")]
    ArrayItemNotAllowed { index: usize, found: &'static str },
    /// `Array::new` was given no items, so the element type is unknown.
    #[error("an empty array needs its element type (use Array::empty)")]
    EmptyArrayWithoutType,
    /// An empty array's `format_code` is not an element constructor.
    #[error("empty array: {0:#04x} is not an element format code")]
    InvalidArrayFormatCode(u8),
}

/// Appends the canonical encoding of `value` to `out`. Never fails: see the
/// module documentation for how an ill-typed array is written.
pub fn encode(value: &Value, out: &mut BytesMut) {
    let head = head(value);
    out.reserve(1 + head.body_len);
    write(value, head, out);
}

/// Like [`encode`], but refuses (writing nothing) a value holding an array
/// whose items do not share one type.
pub fn try_encode(value: &Value, out: &mut BytesMut) -> Result<(), EncodeError> {
    validate(value)?;
    encode(value, out);
    Ok(())
}

/// The number of bytes [`encode`] writes for `value`.
pub fn encoded_len(value: &Value) -> usize {
    1 + head(value).body_len
}

/// Checks that every array inside `value` has a legal encoding.
pub fn validate(value: &Value) -> Result<(), EncodeError> {
    match value {
        Value::Described(d) => {
            if let Descriptor::Other(v) = &d.0 {
                validate(v)?;
            }
            validate(&d.1)
        }
        Value::List(items) => items.iter().try_for_each(validate),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            validate(k)?;
            validate(v)
        }),
        Value::Array(a) => {
            element_code(a)?;
            if let Some(Descriptor::Other(v)) = &a.descriptor {
                validate(v)?;
            }
            a.items.iter().try_for_each(validate)
        }
        _ => Ok(()),
    }
}

impl Value {
    /// Appends the canonical encoding of this value to `out` (see [`encode`]).
    pub fn encode(&self, out: &mut BytesMut) {
        encode(self, out)
    }

    /// The number of bytes [`Value::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self)
    }
}

impl Array {
    /// An array of `items`, with the canonical element format code. Fails if
    /// the items do not share one type or if `items` is empty (use
    /// [`Array::empty`], which needs the element type).
    pub fn new(items: Vec<Value>) -> Result<Array, EncodeError> {
        if items.is_empty() {
            return Err(EncodeError::EmptyArrayWithoutType);
        }
        let mut array = Array {
            format_code: fc::NULL,
            descriptor: None,
            items,
        };
        array.format_code = element_code(&array)?;
        Ok(array)
    }

    /// An empty array of elements of type `format_code` (any width of the
    /// family, e.g. 0xa3 or 0xb3 for symbols).
    pub fn empty(format_code: u8) -> Array {
        Array {
            format_code,
            descriptor: None,
            items: Vec::new(),
        }
    }

    /// An array of symbols (the type of `offered-capabilities` and friends).
    pub fn symbols<S: Into<super::Symbol>>(symbols: impl IntoIterator<Item = S>) -> Array {
        let items: Vec<Value> = symbols
            .into_iter()
            .map(|s| Value::Symbol(s.into()))
            .collect();
        let format_code = if items.iter().all(|v| payload_len(v) <= 255) {
            fc::SYM8
        } else {
            fc::SYM32
        };
        Array {
            format_code,
            descriptor: None,
            items,
        }
    }

    /// The element constructor [`encode`] uses for this array, or why the
    /// array has none.
    pub fn element_code(&self) -> Result<u8, EncodeError> {
        element_code(self)
    }
}

/// A value's constructor and the number of bytes that follow it.
#[derive(Debug, Clone, Copy)]
struct Head {
    code: u8,
    body_len: usize,
}

/// The canonical constructor of a standalone value and its body length.
fn head(value: &Value) -> Head {
    let fixed = |code: u8| Head {
        code,
        body_len: fc::fixed_width(code).unwrap_or(0),
    };
    match value {
        Value::Null => fixed(fc::NULL),
        Value::Bool(true) => fixed(fc::BOOLEAN_TRUE),
        Value::Bool(false) => fixed(fc::BOOLEAN_FALSE),
        Value::Ubyte(_) => fixed(fc::UBYTE),
        Value::Ushort(_) => fixed(fc::USHORT),
        Value::Uint(0) => fixed(fc::UINT0),
        Value::Uint(n) if *n <= 0xff => fixed(fc::SMALLUINT),
        Value::Uint(_) => fixed(fc::UINT),
        Value::Ulong(0) => fixed(fc::ULONG0),
        Value::Ulong(n) if *n <= 0xff => fixed(fc::SMALLULONG),
        Value::Ulong(_) => fixed(fc::ULONG),
        Value::Byte(_) => fixed(fc::BYTE),
        Value::Short(_) => fixed(fc::SHORT),
        Value::Int(n) if i8::try_from(*n).is_ok() => fixed(fc::SMALLINT),
        Value::Int(_) => fixed(fc::INT),
        Value::Long(n) if i8::try_from(*n).is_ok() => fixed(fc::SMALLLONG),
        Value::Long(_) => fixed(fc::LONG),
        Value::Float(_) => fixed(fc::FLOAT),
        Value::Double(_) => fixed(fc::DOUBLE),
        Value::Decimal32(_) => fixed(fc::DECIMAL32),
        Value::Decimal64(_) => fixed(fc::DECIMAL64),
        Value::Decimal128(_) => fixed(fc::DECIMAL128),
        Value::Char(_) => fixed(fc::CHAR),
        Value::Timestamp(_) => fixed(fc::TIMESTAMP),
        Value::Uuid(_) => fixed(fc::UUID),
        Value::Binary(_) | Value::String(_) | Value::Symbol(_) => {
            let (narrow, wide) = match value {
                Value::Binary(_) => (fc::VBIN8, fc::VBIN32),
                Value::String(_) => (fc::STR8, fc::STR32),
                _ => (fc::SYM8, fc::SYM32),
            };
            let len = payload_len(value);
            if len <= 0xff {
                Head {
                    code: narrow,
                    body_len: 1 + len,
                }
            } else {
                Head {
                    code: wide,
                    body_len: 4 + len,
                }
            }
        }
        Value::Described(d) => Head {
            code: fc::DESCRIBED,
            body_len: descriptor_len(&d.0) + encoded_len(&d.1),
        },
        Value::List(items) if items.is_empty() => fixed(fc::LIST0),
        Value::List(items) => compound(fc::LIST8, items.len(), items_len(items)),
        Value::Map(entries) => {
            let len = entries
                .iter()
                .map(|(k, v)| encoded_len(k) + encoded_len(v))
                .sum();
            compound(fc::MAP8, entries.len().saturating_mul(2), len)
        }
        Value::Array(a) => match element_code(a) {
            Ok(code) => compound(fc::ARRAY8, a.items.len(), array_inner_len(a, code)),
            Err(_) if a.items.is_empty() => fixed(fc::LIST0),
            Err(_) => compound(fc::LIST8, a.items.len(), fallback_items_len(a)),
        },
    }
}

/// Head of a list, map or array given its narrow code, its count and the
/// length of what follows the count field.
fn compound(narrow: u8, count: usize, inner_len: usize) -> Head {
    if count <= 0xff && inner_len < 0xff {
        Head {
            code: narrow,
            body_len: 2 + inner_len,
        }
    } else {
        Head {
            code: narrow + 0x10,
            body_len: 8 + inner_len,
        }
    }
}

fn items_len(items: &[Value]) -> usize {
    items.iter().map(encoded_len).sum()
}

/// Length of the element constructor plus the elements of an array.
fn array_inner_len(a: &Array, code: u8) -> usize {
    let constructor = match &a.descriptor {
        Some(d) => 2 + descriptor_len(d),
        None => 1,
    };
    constructor
        + a.items
            .iter()
            .map(|item| element_body_len(item, code))
            .sum::<usize>()
}

/// Length of the items of an ill-typed array written as a list.
fn fallback_items_len(a: &Array) -> usize {
    let per_item = a.descriptor.as_ref().map_or(0, |d| 1 + descriptor_len(d));
    items_len(&a.items) + per_item * a.items.len()
}

/// Length of a string, symbol or binary payload (0 for anything else).
fn payload_len(value: &Value) -> usize {
    match value {
        Value::Binary(b) => b.len(),
        Value::String(s) => s.len(),
        Value::Symbol(s) => s.0.len(),
        _ => 0,
    }
}

fn descriptor_len(d: &Descriptor) -> usize {
    match d {
        Descriptor::Code(0) => 1,
        Descriptor::Code(n) if *n <= 0xff => 2,
        Descriptor::Code(_) => 9,
        Descriptor::Symbol(s) if s.0.len() <= 0xff => 2 + s.0.len(),
        Descriptor::Symbol(s) => 5 + s.0.len(),
        Descriptor::Other(v) => encoded_len(v),
    }
}

/// Length of an array element's body when written with element constructor
/// `code` (which [`element_code`] chose to fit it).
fn element_body_len(value: &Value, code: u8) -> usize {
    if let Some(width) = fc::fixed_width(code) {
        return width;
    }
    match (code, value) {
        (fc::VBIN8 | fc::STR8 | fc::SYM8, v) => 1 + payload_len(v),
        (fc::VBIN32 | fc::STR32 | fc::SYM32, v) => 4 + payload_len(v),
        (fc::LIST8 | fc::LIST32 | fc::MAP8 | fc::MAP32 | fc::ARRAY8 | fc::ARRAY32, v) => {
            let h = head(v);
            // The head's own width must agree with the array's: element_code
            // picked the wide form if any item needed it.
            let narrow_body = matches!(code, fc::LIST8 | fc::MAP8 | fc::ARRAY8);
            let inner = if h.code == fc::LIST0 {
                0
            } else if matches!(h.code, fc::LIST8 | fc::MAP8 | fc::ARRAY8) {
                h.body_len - 2
            } else {
                h.body_len - 8
            };
            if narrow_body { 2 + inner } else { 8 + inner }
        }
        _ => 0,
    }
}

/// The narrowest array element constructor that can hold `value`, or `None`
/// for a described value or an ill-typed array.
fn item_code(value: &Value) -> Option<u8> {
    Some(match value {
        Value::Null => fc::NULL,
        Value::Bool(_) => fc::BOOLEAN,
        Value::Ubyte(_) => fc::UBYTE,
        Value::Ushort(_) => fc::USHORT,
        Value::Uint(n) if *n <= 0xff => fc::SMALLUINT,
        Value::Uint(_) => fc::UINT,
        Value::Ulong(n) if *n <= 0xff => fc::SMALLULONG,
        Value::Ulong(_) => fc::ULONG,
        Value::Byte(_) => fc::BYTE,
        Value::Short(_) => fc::SHORT,
        Value::Int(n) if i8::try_from(*n).is_ok() => fc::SMALLINT,
        Value::Int(_) => fc::INT,
        Value::Long(n) if i8::try_from(*n).is_ok() => fc::SMALLLONG,
        Value::Long(_) => fc::LONG,
        Value::Float(_) => fc::FLOAT,
        Value::Double(_) => fc::DOUBLE,
        Value::Decimal32(_) => fc::DECIMAL32,
        Value::Decimal64(_) => fc::DECIMAL64,
        Value::Decimal128(_) => fc::DECIMAL128,
        Value::Char(_) => fc::CHAR,
        Value::Timestamp(_) => fc::TIMESTAMP,
        Value::Uuid(_) => fc::UUID,
        Value::Binary(_) | Value::String(_) | Value::Symbol(_) => head(value).code,
        Value::List(items) if items.is_empty() => fc::LIST8,
        Value::Array(a) if element_code(a).is_err() => return None,
        Value::List(_) | Value::Map(_) | Value::Array(_) => head(value).code,
        Value::Described(_) => return None,
    })
}

/// The wide member of a format code's family (0x52 -> 0x70, 0xa3 -> 0xb3),
/// or the code itself.
fn widen(code: u8) -> u8 {
    match code {
        fc::SMALLUINT | fc::UINT0 => fc::UINT,
        fc::SMALLULONG | fc::ULONG0 => fc::ULONG,
        fc::SMALLINT => fc::INT,
        fc::SMALLLONG => fc::LONG,
        fc::BOOLEAN_TRUE | fc::BOOLEAN_FALSE => fc::BOOLEAN,
        fc::LIST0 => fc::LIST32,
        fc::VBIN8 | fc::STR8 | fc::SYM8 | fc::LIST8 | fc::MAP8 | fc::ARRAY8 => code + 0x10,
        _ => code,
    }
}

/// The narrow array element constructor of a format code's family
/// (0x70 -> 0x52, 0xb3 -> 0xa3, 0x45 -> 0xc0), or `None` if `code` cannot be
/// an element constructor.
pub(crate) fn narrow_element_code(code: u8) -> Option<u8> {
    Some(match widen(code) {
        fc::UINT => fc::SMALLUINT,
        fc::ULONG => fc::SMALLULONG,
        fc::INT => fc::SMALLINT,
        fc::LONG => fc::SMALLLONG,
        fc::VBIN32 | fc::STR32 | fc::SYM32 | fc::LIST32 | fc::MAP32 | fc::ARRAY32 => {
            widen(code) - 0x10
        }
        fc::DESCRIBED => return None,
        other if fc::fixed_width(other).is_some() => other,
        _ => return None,
    })
}

/// The element constructor of an array: for a non-empty array, the narrowest
/// form of the items' common family that holds every item; for an empty one,
/// the narrow form of `format_code`'s family.
fn element_code(a: &Array) -> Result<u8, EncodeError> {
    let Some(first) = a.items.first() else {
        return narrow_element_code(a.format_code)
            .ok_or(EncodeError::InvalidArrayFormatCode(a.format_code));
    };
    let first_code = item_code(first).ok_or(EncodeError::ArrayItemNotAllowed {
        index: 0,
        found: first.type_name(),
    })?;
    let family = widen(first_code);
    let mut code = first_code;
    for (index, item) in a.items.iter().enumerate().skip(1) {
        let c = item_code(item).ok_or(EncodeError::ArrayItemNotAllowed {
            index,
            found: item.type_name(),
        })?;
        if widen(c) != family {
            return Err(EncodeError::ArrayItemMismatch {
                index,
                expected: first_code,
                found: item.type_name(),
            });
        }
        code = code.max(c);
    }
    Ok(code)
}

/// Writes a nested value (the outermost [`encode`] reserved the space).
fn write_value(value: &Value, out: &mut BytesMut) {
    write(value, head(value), out);
}

fn write(value: &Value, head: Head, out: &mut BytesMut) {
    out.put_u8(head.code);
    if head.code == fc::DESCRIBED {
        if let Value::Described(d) = value {
            write_descriptor(&d.0, out);
            write_value(&d.1, out);
        }
        return;
    }
    if let Value::Array(a) = value
        && matches!(head.code, fc::LIST0 | fc::LIST8 | fc::LIST32)
    {
        // Ill-typed array written as a list (see the module documentation).
        write_size_count(head, a.items.len(), out);
        for item in &a.items {
            if let Some(d) = &a.descriptor {
                out.put_u8(fc::DESCRIBED);
                write_descriptor(d, out);
            }
            write_value(item, out);
        }
        return;
    }
    write_body(value, head, out);
}

/// Writes the size and count fields of a compound whose head is `head`
/// (nothing for `list0`).
fn write_size_count(head: Head, count: usize, out: &mut BytesMut) {
    match head.code {
        fc::LIST8 | fc::MAP8 | fc::ARRAY8 => {
            out.put_u8((head.body_len - 1) as u8);
            out.put_u8(count as u8);
        }
        fc::LIST32 | fc::MAP32 | fc::ARRAY32 => {
            out.put_u32((head.body_len - 4) as u32);
            out.put_u32(count as u32);
        }
        _ => {}
    }
}

fn write_descriptor(d: &Descriptor, out: &mut BytesMut) {
    match d {
        Descriptor::Code(n) => write_value(&Value::Ulong(*n), out),
        Descriptor::Symbol(s) => {
            let len = s.0.len();
            if len <= 0xff {
                out.put_u8(fc::SYM8);
                out.put_u8(len as u8);
            } else {
                out.put_u8(fc::SYM32);
                out.put_u32(len as u32);
            }
            out.put_slice(s.0.as_bytes());
        }
        Descriptor::Other(v) => write_value(v, out),
    }
}

/// Writes what follows the constructor `head.code` for `value` (standalone
/// or as an array element; `head.body_len` is the body's length).
fn write_body(value: &Value, head: Head, out: &mut BytesMut) {
    let code = head.code;
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            if code == fc::BOOLEAN {
                out.put_u8(u8::from(*b));
            }
        }
        Value::Ubyte(n) => out.put_u8(*n),
        Value::Ushort(n) => out.put_u16(*n),
        Value::Uint(n) => match code {
            fc::SMALLUINT => out.put_u8(*n as u8),
            fc::UINT => out.put_u32(*n),
            _ => {}
        },
        Value::Ulong(n) => match code {
            fc::SMALLULONG => out.put_u8(*n as u8),
            fc::ULONG => out.put_u64(*n),
            _ => {}
        },
        Value::Byte(n) => out.put_i8(*n),
        Value::Short(n) => out.put_i16(*n),
        Value::Int(n) => match code {
            fc::SMALLINT => out.put_i8(*n as i8),
            _ => out.put_i32(*n),
        },
        Value::Long(n) => match code {
            fc::SMALLLONG => out.put_i8(*n as i8),
            _ => out.put_i64(*n),
        },
        Value::Float(x) => out.put_u32(x.to_bits()),
        Value::Double(x) => out.put_u64(x.to_bits()),
        Value::Decimal32(b) => out.put_slice(b),
        Value::Decimal64(b) => out.put_slice(b),
        Value::Decimal128(b) => out.put_slice(b),
        Value::Char(c) => out.put_u32(u32::from(*c)),
        Value::Timestamp(t) => out.put_i64(*t),
        Value::Uuid(u) => out.put_slice(u),
        Value::Binary(_) | Value::String(_) | Value::Symbol(_) => {
            let bytes: &[u8] = match value {
                Value::Binary(b) => b,
                Value::String(s) => s.as_bytes(),
                Value::Symbol(s) => s.0.as_bytes(),
                _ => &[],
            };
            if matches!(code, fc::VBIN8 | fc::STR8 | fc::SYM8) {
                out.put_u8(bytes.len() as u8);
            } else {
                out.put_u32(bytes.len() as u32);
            }
            out.put_slice(bytes);
        }
        Value::Described(d) => {
            // Only reached for standalone values (arrays refuse described items).
            write_descriptor(&d.0, out);
            write_value(&d.1, out);
        }
        Value::List(items) => {
            write_size_count(head, items.len(), out);
            for item in items {
                write_value(item, out);
            }
        }
        Value::Map(entries) => {
            write_size_count(head, entries.len() * 2, out);
            for (k, v) in entries {
                write_value(k, out);
                write_value(v, out);
            }
        }
        Value::Array(a) => {
            write_size_count(head, a.items.len(), out);
            let Ok(element) = element_code(a) else {
                return;
            };
            if let Some(d) = &a.descriptor {
                out.put_u8(fc::DESCRIBED);
                write_descriptor(d, out);
            }
            out.put_u8(element);
            for item in &a.items {
                let body_len = element_body_len(item, element);
                write_body(
                    item,
                    Head {
                        code: element,
                        body_len,
                    },
                    out,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::{Symbol, decode};

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(v, &mut out);
        assert_eq!(out.len(), encoded_len(v), "encoded_len of {v:?}");
        out.to_vec()
    }

    fn assert_encodes(v: Value, expected: &[u8]) {
        assert_eq!(enc(&v), expected, "encoding of {v:?}");
        let (decoded, used) = decode(expected).expect("canonical bytes decode");
        assert_eq!(used, expected.len());
        assert_eq!(decoded, v, "decoding of {expected:02x?}");
    }

    #[test]
    fn null_and_booleans_use_their_one_byte_forms() {
        assert_encodes(Value::Null, &[0x40]);
        assert_encodes(Value::Bool(true), &[0x41]);
        assert_encodes(Value::Bool(false), &[0x42]);
    }

    #[test]
    fn unsigned_integers_use_the_smallest_form() {
        assert_encodes(Value::Ubyte(0xfe), &[0x50, 0xfe]);
        assert_encodes(Value::Ushort(0x1234), &[0x60, 0x12, 0x34]);
        assert_encodes(Value::Uint(0), &[0x43]);
        assert_encodes(Value::Uint(7), &[0x52, 0x07]);
        assert_encodes(Value::Uint(255), &[0x52, 0xff]);
        assert_encodes(Value::Uint(256), &[0x70, 0, 0, 1, 0]);
        assert_encodes(Value::Ulong(0), &[0x44]);
        assert_encodes(Value::Ulong(0x10), &[0x53, 0x10]);
        assert_encodes(Value::Ulong(0x1_0000_0000), &[0x80, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn signed_integers_use_the_smallest_form() {
        assert_encodes(Value::Byte(-2), &[0x51, 0xfe]);
        assert_encodes(Value::Short(-2), &[0x61, 0xff, 0xfe]);
        assert_encodes(Value::Int(-128), &[0x54, 0x80]);
        assert_encodes(Value::Int(127), &[0x54, 0x7f]);
        assert_encodes(Value::Int(128), &[0x71, 0, 0, 0, 0x80]);
        assert_encodes(Value::Int(0), &[0x54, 0x00]);
        assert_encodes(Value::Long(-1), &[0x55, 0xff]);
        assert_encodes(
            Value::Long(-129),
            &[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        );
    }

    #[test]
    fn floats_decimals_char_timestamp_and_uuid_are_fixed_width_big_endian() {
        assert_encodes(Value::Float(1.0), &[0x72, 0x3f, 0x80, 0, 0]);
        assert_encodes(Value::Double(-2.0), &[0x82, 0xc0, 0, 0, 0, 0, 0, 0, 0]);
        assert_encodes(Value::Decimal32([1, 2, 3, 4]), &[0x74, 1, 2, 3, 4]);
        assert_encodes(
            Value::Decimal64([1, 2, 3, 4, 5, 6, 7, 8]),
            &[0x84, 1, 2, 3, 4, 5, 6, 7, 8],
        );
        let d128: [u8; 16] = std::array::from_fn(|i| i as u8);
        let mut expected = vec![0x94];
        expected.extend_from_slice(&d128);
        assert_encodes(Value::Decimal128(d128), &expected);
        assert_encodes(Value::Char('€'), &[0x73, 0, 0, 0x20, 0xac]);
        assert_encodes(
            Value::Timestamp(0x0102_0304_0506),
            &[0x83, 0, 0, 1, 2, 3, 4, 5, 6],
        );
        let uuid: [u8; 16] = std::array::from_fn(|i| 0xf0 | i as u8);
        let mut expected = vec![0x98];
        expected.extend_from_slice(&uuid);
        assert_encodes(Value::Uuid(uuid), &expected);
    }

    #[test]
    fn binary_string_and_symbol_use_8_bit_lengths_up_to_255_bytes() {
        assert_encodes(
            Value::binary(Bytes::from_static(b"\x00\x01")),
            &[0xa0, 2, 0, 1],
        );
        assert_encodes(Value::string("hi"), &[0xa1, 2, b'h', b'i']);
        assert_encodes(Value::symbol("amqp"), &[0xa3, 4, b'a', b'm', b'q', b'p']);
        assert_encodes(Value::string(""), &[0xa1, 0]);

        let long = "x".repeat(256);
        let mut expected = vec![0xb1, 0, 0, 1, 0];
        expected.extend_from_slice(long.as_bytes());
        assert_encodes(Value::string(long.clone()), &expected);
        expected[0] = 0xb3;
        assert_encodes(Value::symbol(long.clone()), &expected);
        expected[0] = 0xb0;
        assert_encodes(Value::binary(long.into_bytes()), &expected);
        let exactly_255 = "y".repeat(255);
        assert_eq!(enc(&Value::string(exactly_255))[..2], [0xa1, 255]);
    }

    #[test]
    fn lists_are_list0_list8_or_list32() {
        assert_encodes(Value::List(vec![]), &[0x45]);
        assert_encodes(
            Value::List(vec![Value::Uint(1), Value::Null]),
            &[0xc0, 4, 2, 0x52, 1, 0x40],
        );
        // 254 bytes of items still fit list8 (size byte = 255).
        let items = vec![Value::Null; 254];
        let bytes = enc(&Value::List(items));
        assert_eq!(bytes[..3], [0xc0, 255, 254]);
        // 256 items do not fit a one-byte count.
        let items = vec![Value::Null; 256];
        let bytes = enc(&Value::List(items.clone()));
        assert_eq!(bytes[..9], [0xd0, 0, 0, 1, 4, 0, 0, 1, 0]);
        assert_eq!(decode(&bytes).map(|(v, _)| v), Ok(Value::List(items)));
        // 255 bytes of items need list32 although the count is small.
        let items = vec![Value::string("z".repeat(253))];
        let bytes = enc(&Value::List(items));
        assert_eq!(bytes[..9], [0xd0, 0, 0, 1, 3, 0, 0, 0, 1]);
    }

    #[test]
    fn maps_count_keys_and_values() {
        assert_encodes(Value::Map(vec![]), &[0xc1, 1, 0]);
        assert_encodes(
            Value::Map(vec![(Value::symbol("k"), Value::Bool(true))]),
            &[0xc1, 5, 2, 0xa3, 1, b'k', 0x41],
        );
        let entries: Vec<_> = (0..128).map(|i| (Value::Uint(i), Value::Null)).collect();
        let bytes = enc(&Value::Map(entries));
        assert_eq!(bytes[0], 0xd1);
        assert_eq!(bytes[5..9], [0, 0, 1, 0]);
    }

    #[test]
    fn described_values_encode_descriptor_then_value() {
        assert_encodes(
            Value::described(Descriptor::Code(0x10), Value::List(vec![])),
            &[0x00, 0x53, 0x10, 0x45],
        );
        assert_encodes(
            Value::described(Descriptor::Symbol(Symbol::from("a:b")), Value::Null),
            &[0x00, 0xa3, 3, b'a', b':', b'b', 0x40],
        );
        assert_encodes(
            Value::described(Descriptor::Code(0), Value::Uint(0)),
            &[0x00, 0x44, 0x43],
        );
        assert_encodes(
            Value::described(Descriptor::Other(Box::new(Value::Int(3))), Value::Null),
            &[0x00, 0x54, 3, 0x40],
        );
    }

    #[test]
    fn arrays_share_the_narrowest_constructor_that_fits_every_item() {
        let a = Array::symbols(["a", "bc"]);
        assert_eq!(a.format_code, 0xa3);
        assert_eq!(Array::new(vec![]), Err(EncodeError::EmptyArrayWithoutType));
        assert_encodes(Value::Array(a), &[0xe0, 7, 2, 0xa3, 1, b'a', 2, b'b', b'c']);
        let a = Array::new(vec![Value::Uint(1), Value::Uint(300)]).expect("uints");
        assert_eq!(a.format_code, 0x70);
        assert_encodes(
            Value::Array(a),
            &[0xe0, 10, 2, 0x70, 0, 0, 0, 1, 0, 0, 1, 0x2c],
        );
        let a = Array::new(vec![Value::Uint(0), Value::Uint(9)]).expect("small uints");
        assert_eq!(a.format_code, 0x52);
        assert_encodes(Value::Array(a), &[0xe0, 4, 2, 0x52, 0, 9]);
        let a = Array::new(vec![Value::Bool(true), Value::Bool(false)]).expect("booleans");
        assert_encodes(Value::Array(a), &[0xe0, 4, 2, 0x56, 1, 0]);
        let a = Array::new(vec![Value::Null, Value::Null]).expect("nulls");
        assert_encodes(Value::Array(a), &[0xe0, 2, 2, 0x40]);
    }

    #[test]
    fn arrays_widen_to_sym32_when_one_symbol_is_long() {
        let long = "s".repeat(300);
        let a = Array::new(vec![Value::symbol("a"), Value::symbol(long.clone())]).expect("syms");
        assert_eq!(a.format_code, 0xb3);
        let bytes = enc(&Value::Array(a.clone()));
        assert_eq!(bytes[0], 0xf0);
        assert_eq!(bytes[9], 0xb3);
        assert_eq!(bytes[10..15], [0, 0, 0, 1, b'a']);
        assert_eq!(decode(&bytes).map(|(v, _)| v), Ok(Value::Array(a)));
    }

    #[test]
    fn empty_arrays_keep_their_element_type_in_its_narrow_form() {
        assert_encodes(Value::Array(Array::empty(0xa3)), &[0xe0, 2, 0, 0xa3]);
        assert_eq!(enc(&Value::Array(Array::empty(0xb3))), [0xe0, 2, 0, 0xa3]);
        assert_eq!(enc(&Value::Array(Array::empty(0x70))), [0xe0, 2, 0, 0x52]);
    }

    #[test]
    fn described_arrays_put_the_descriptor_in_the_element_constructor() {
        let a = Array {
            format_code: 0xa1,
            descriptor: Some(Descriptor::Code(0x77)),
            items: vec![Value::string("x")],
        };
        assert_encodes(
            Value::Array(a),
            &[0xe0, 7, 1, 0x00, 0x53, 0x77, 0xa1, 1, b'x'],
        );
    }

    #[test]
    fn arrays_of_lists_and_arrays_encode_element_bodies_without_constructors() {
        let a =
            Array::new(vec![Value::List(vec![]), Value::List(vec![Value::Null])]).expect("lists");
        assert_eq!(a.format_code, 0xc0);
        assert_encodes(Value::Array(a), &[0xe0, 7, 2, 0xc0, 1, 0, 2, 1, 0x40]);
        let inner = Value::Array(Array::symbols(["q"]));
        let a = Array::new(vec![inner.clone(), inner]).expect("arrays");
        assert_encodes(
            Value::Array(a),
            &[0xe0, 12, 2, 0xe0, 4, 1, 0xa3, 1, b'q', 4, 1, 0xa3, 1, b'q'],
        );
    }

    #[test]
    fn ill_typed_arrays_are_refused_by_try_encode_and_written_as_lists_by_encode() {
        let bad = Value::Array(Array {
            format_code: 0xa3,
            descriptor: None,
            items: vec![Value::symbol("a"), Value::Uint(1)],
        });
        let mut out = BytesMut::new();
        assert_eq!(
            try_encode(&bad, &mut out),
            Err(EncodeError::ArrayItemMismatch {
                index: 1,
                expected: 0xa3,
                found: "uint"
            })
        );
        assert!(out.is_empty());
        assert_eq!(enc(&bad), [0xc0, 6, 2, 0xa3, 1, b'a', 0x52, 1]);
        let described_items = Value::Array(Array {
            format_code: 0x40,
            descriptor: Some(Descriptor::Code(1)),
            items: vec![Value::described(Descriptor::Code(2), Value::Null)],
        });
        assert!(matches!(
            validate(&described_items),
            Err(EncodeError::ArrayItemNotAllowed { index: 0, .. })
        ));
        assert_eq!(
            enc(&described_items),
            [0xc0, 8, 1, 0x00, 0x53, 1, 0x00, 0x53, 2, 0x40]
        );
        assert_eq!(
            try_encode(&Value::Array(Array::empty(0x00)), &mut out),
            Err(EncodeError::InvalidArrayFormatCode(0x00))
        );
    }
}
