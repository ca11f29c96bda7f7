//! Decoding of AMQP 1.0 encoded values: [`decode`] (copying binaries),
//! [`decode_bytes`] (slicing binaries zero-copy out of a `Bytes`) and
//! [`skip`] (the size of the value at the front, without building it).
//!
//! Every legal form is accepted (all widths, `0x56` booleans, `list32` with
//! few items, zero-width array elements, ...). Hostile input is bounded:
//! nesting deeper than [`MAX_DEPTH`] is refused, pre-allocation is capped by
//! the bytes that remain, and arrays of zero-width elements (nulls, `true`,
//! `uint0`, ...; they cost no input bytes) may hold at most
//! [`MAX_ZERO_WIDTH_ELEMENTS`] elements in total per call.
//!
//! Decoded arrays carry the canonical element format code of their items
//! (see `encode`), so that equal values have equal encodings. Symbols are
//! accepted when they are valid UTF-8 (the spec asks senders for ASCII);
//! strings, symbols and chars that are not valid Unicode are refused.

use bytes::Bytes;

use super::encode;
use super::format_code as fc;
use super::value::{Array, Descriptor, Symbol, Value};
use crate::error::condition;

/// Described and compound values may nest at most this deep.
pub const MAX_DEPTH: usize = 64;

/// The total number of zero-width array elements one decode call accepts.
pub const MAX_ZERO_WIDTH_ELEMENTS: usize = 65_536;

/// Why the bytes at `offset` do not decode, naming the encoding that failed:
/// `"list32 at offset 3: size 4000 exceeds remaining 12 bytes"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at offset {offset}: {reason}")]
pub struct DecodeError {
    /// The encoding (`"list32"`, `"str8-utf8"`) or part (`"constructor"`)
    /// being decoded.
    pub what: &'static str,
    /// Offset of that encoding's constructor from the start of the input.
    pub offset: usize,
    pub reason: DecodeErrorReason,
}

/// What was wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorReason {
    #[error("needs {needed} bytes but only {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    #[error("size {size} exceeds remaining {remaining} bytes")]
    SizeExceedsRemaining { size: usize, remaining: usize },
    #[error("size {size} is smaller than its {width}-byte count field")]
    SizeBelowCountWidth { size: usize, width: usize },
    #[error("the elements occupy {used} bytes but the size declares {declared}")]
    SizeMismatch { used: usize, declared: usize },
    #[error("{0:#04x} is not a format code")]
    UnknownFormatCode(u8),
    #[error("{0:#04x} cannot be an array element constructor")]
    InvalidElementConstructor(u8),
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("{0:#x} is not a Unicode scalar value")]
    InvalidChar(u32),
    #[error("boolean byte {0:#04x} is neither 0x00 nor 0x01")]
    InvalidBoolean(u8),
    #[error("count {0} is odd")]
    OddMapCount(u32),
    #[error("nesting exceeds {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_ZERO_WIDTH_ELEMENTS} zero-width array elements")]
    TooManyElements,
}

impl DecodeError {
    /// The AMQP error condition a peer is told: `amqp:decode-error`.
    pub const CONDITION: &'static str = condition::DECODE_ERROR;

    /// The AMQP error condition as a symbol (see [`DecodeError::CONDITION`]).
    pub fn condition(&self) -> Symbol {
        Symbol::from(Self::CONDITION)
    }
}

/// Decodes one value from the front of `input`; returns it and the number of
/// bytes it occupied. Binary values are copied.
pub fn decode(input: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut d = Decoder::new(input, None);
    let v = d.value()?;
    Ok((v, d.pos))
}

/// Like [`decode`], but binary values are zero-copy slices of `input`.
pub fn decode_bytes(input: &Bytes) -> Result<(Value, usize), DecodeError> {
    let mut d = Decoder::new(input, Some(input));
    let v = d.value()?;
    Ok((v, d.pos))
}

/// The encoded size of the value at the front of `input`, without building
/// it. Checks only that the sizes fit the input and the format codes are
/// known; the contents of strings and compounds are not validated.
pub fn skip(input: &[u8]) -> Result<usize, DecodeError> {
    let mut d = Decoder::new(input, None);
    d.skip_value()?;
    Ok(d.pos)
}

impl Value {
    /// Decodes one value from the front of `input` (see [`decode`]).
    pub fn decode(input: &[u8]) -> Result<(Value, usize), DecodeError> {
        decode(input)
    }
}

/// A cursor over the input. `end` is the end of the innermost enclosing
/// compound (or of the input).
struct Decoder<'a> {
    buf: &'a [u8],
    /// The `Bytes` that `buf` views, for zero-copy binaries.
    owner: Option<&'a Bytes>,
    pos: usize,
    end: usize,
    depth: usize,
    zero_width_budget: usize,
}

/// A list, map or array being decoded: where it started and the `end` of
/// its enclosing compound.
struct Compound {
    what: &'static str,
    offset: usize,
    /// Offset just after the size field (sizes count from there).
    body_start: usize,
    outer_end: usize,
    count: usize,
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

fn what(code: u8) -> &'static str {
    fc::name(code).unwrap_or("value")
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], owner: Option<&'a Bytes>) -> Self {
        Decoder {
            buf,
            owner,
            pos: 0,
            end: buf.len(),
            depth: 0,
            zero_width_budget: MAX_ZERO_WIDTH_ELEMENTS,
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str, offset: usize) -> Result<&'a [u8]> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(DecodeError {
                what,
                offset,
                reason: DecodeErrorReason::Truncated {
                    needed: n,
                    remaining,
                },
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    fn fixed<const N: usize>(&mut self, what: &'static str, offset: usize) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what, offset)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str, offset: usize) -> Result<u8> {
        Ok(self.fixed::<1>(what, offset)?[0])
    }

    fn u32(&mut self, what: &'static str, offset: usize) -> Result<u32> {
        Ok(u32::from_be_bytes(self.fixed(what, offset)?))
    }

    /// Reads a 1- or 4-byte length/size field.
    fn len_field(&mut self, wide: bool, what: &'static str, offset: usize) -> Result<usize> {
        if wide {
            Ok(self.u32(what, offset)? as usize)
        } else {
            Ok(usize::from(self.u8(what, offset)?))
        }
    }

    fn err(what: &'static str, offset: usize, reason: DecodeErrorReason) -> DecodeError {
        DecodeError {
            what,
            offset,
            reason,
        }
    }

    fn enter(&mut self, what: &'static str, offset: usize) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(Self::err(what, offset, DecodeErrorReason::TooDeep));
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn value(&mut self) -> Result<Value> {
        let offset = self.pos;
        let code = self.u8("constructor", offset)?;
        if code == fc::DESCRIBED {
            self.enter("described", offset)?;
            let descriptor = self.descriptor()?;
            let value = self.value()?;
            self.leave();
            return Ok(Value::described(descriptor, value));
        }
        self.body(code, offset)
    }

    fn descriptor(&mut self) -> Result<Descriptor> {
        Ok(match self.value()? {
            Value::Ulong(n) => Descriptor::Code(n),
            Value::Symbol(s) => Descriptor::Symbol(s),
            other => Descriptor::Other(Box::new(other)),
        })
    }

    /// Decodes what follows the constructor `code` (found at `offset`).
    fn body(&mut self, code: u8, offset: usize) -> Result<Value> {
        let w = what(code);
        Ok(match code {
            fc::NULL => Value::Null,
            fc::BOOLEAN_TRUE => Value::Bool(true),
            fc::BOOLEAN_FALSE => Value::Bool(false),
            fc::BOOLEAN => match self.u8(w, offset)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Self::err(w, offset, DecodeErrorReason::InvalidBoolean(b))),
            },
            fc::UINT0 => Value::Uint(0),
            fc::ULONG0 => Value::Ulong(0),
            fc::LIST0 => Value::List(Vec::new()),
            fc::UBYTE => Value::Ubyte(self.u8(w, offset)?),
            fc::BYTE => Value::Byte(i8::from_be_bytes(self.fixed(w, offset)?)),
            fc::SMALLUINT => Value::Uint(u32::from(self.u8(w, offset)?)),
            fc::SMALLULONG => Value::Ulong(u64::from(self.u8(w, offset)?)),
            fc::SMALLINT => Value::Int(i32::from(i8::from_be_bytes(self.fixed(w, offset)?))),
            fc::SMALLLONG => Value::Long(i64::from(i8::from_be_bytes(self.fixed(w, offset)?))),
            fc::USHORT => Value::Ushort(u16::from_be_bytes(self.fixed(w, offset)?)),
            fc::SHORT => Value::Short(i16::from_be_bytes(self.fixed(w, offset)?)),
            fc::UINT => Value::Uint(u32::from_be_bytes(self.fixed(w, offset)?)),
            fc::INT => Value::Int(i32::from_be_bytes(self.fixed(w, offset)?)),
            fc::FLOAT => Value::Float(f32::from_bits(u32::from_be_bytes(self.fixed(w, offset)?))),
            fc::CHAR => {
                let n = u32::from_be_bytes(self.fixed(w, offset)?);
                Value::Char(
                    char::from_u32(n)
                        .ok_or_else(|| Self::err(w, offset, DecodeErrorReason::InvalidChar(n)))?,
                )
            }
            fc::DECIMAL32 => Value::Decimal32(self.fixed(w, offset)?),
            fc::ULONG => Value::Ulong(u64::from_be_bytes(self.fixed(w, offset)?)),
            fc::LONG => Value::Long(i64::from_be_bytes(self.fixed(w, offset)?)),
            fc::DOUBLE => Value::Double(f64::from_bits(u64::from_be_bytes(self.fixed(w, offset)?))),
            fc::TIMESTAMP => Value::Timestamp(i64::from_be_bytes(self.fixed(w, offset)?)),
            fc::DECIMAL64 => Value::Decimal64(self.fixed(w, offset)?),
            fc::DECIMAL128 => Value::Decimal128(self.fixed(w, offset)?),
            fc::UUID => Value::Uuid(self.fixed(w, offset)?),
            fc::VBIN8 | fc::VBIN32 => {
                let len = self.len_field(code == fc::VBIN32, w, offset)?;
                let start = self.pos;
                let bytes = self.take(len, w, offset)?;
                Value::Binary(match self.owner {
                    Some(owner) => owner.slice(start..start + len),
                    None => Bytes::copy_from_slice(bytes),
                })
            }
            fc::STR8 | fc::STR32 | fc::SYM8 | fc::SYM32 => {
                let len = self.len_field(matches!(code, fc::STR32 | fc::SYM32), w, offset)?;
                let bytes = self.take(len, w, offset)?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|_| Self::err(w, offset, DecodeErrorReason::InvalidUtf8))?
                    .to_owned();
                if matches!(code, fc::STR8 | fc::STR32) {
                    Value::String(s)
                } else {
                    Value::Symbol(Symbol(s))
                }
            }
            fc::LIST8 | fc::LIST32 | fc::MAP8 | fc::MAP32 => {
                let wide = matches!(code, fc::LIST32 | fc::MAP32);
                let is_map = matches!(code, fc::MAP8 | fc::MAP32);
                let compound = self.open_compound(wide, w, offset)?;
                let count = compound.count;
                let v = if is_map {
                    if count % 2 != 0 {
                        return Err(Self::err(
                            w,
                            offset,
                            DecodeErrorReason::OddMapCount(count as u32),
                        ));
                    }
                    let mut entries = Vec::with_capacity((count / 2).min(self.remaining() / 2));
                    for _ in 0..count / 2 {
                        let k = self.value()?;
                        let v = self.value()?;
                        entries.push((k, v));
                    }
                    Value::Map(entries)
                } else {
                    let mut items = Vec::with_capacity(count.min(self.remaining()));
                    for _ in 0..count {
                        items.push(self.value()?);
                    }
                    Value::List(items)
                };
                self.close_compound(compound)?;
                v
            }
            fc::ARRAY8 | fc::ARRAY32 => {
                let compound = self.open_compound(code == fc::ARRAY32, w, offset)?;
                let count = compound.count;
                let ctor_offset = self.pos;
                let mut element = self.u8(w, offset)?;
                let descriptor = if element == fc::DESCRIBED {
                    self.enter(w, ctor_offset)?;
                    let d = self.descriptor()?;
                    self.leave();
                    element = self.u8(w, offset)?;
                    Some(d)
                } else {
                    None
                };
                let Some(canonical) = encode::narrow_element_code(element) else {
                    return Err(Self::err(
                        w,
                        ctor_offset,
                        DecodeErrorReason::InvalidElementConstructor(element),
                    ));
                };
                let capacity = match fc::fixed_width(element) {
                    Some(0) => {
                        if count > self.zero_width_budget {
                            return Err(Self::err(w, offset, DecodeErrorReason::TooManyElements));
                        }
                        self.zero_width_budget -= count;
                        count
                    }
                    Some(width) => count.min(self.remaining() / width),
                    None => count.min(self.remaining()),
                };
                let mut items = Vec::with_capacity(capacity);
                for _ in 0..count {
                    let item_offset = self.pos;
                    items.push(self.body(element, item_offset)?);
                }
                self.close_compound(compound)?;
                let mut array = Array {
                    format_code: canonical,
                    descriptor,
                    items,
                };
                if let Ok(code) = array.element_code() {
                    array.format_code = code;
                }
                Value::Array(array)
            }
            other => {
                return Err(Self::err(
                    "constructor",
                    offset,
                    DecodeErrorReason::UnknownFormatCode(other),
                ));
            }
        })
    }

    /// Reads a compound's size and count, checks the size against the
    /// input, enters one nesting level and narrows `end` to the compound.
    fn open_compound(&mut self, wide: bool, w: &'static str, offset: usize) -> Result<Compound> {
        let width = if wide { 4 } else { 1 };
        let size = self.len_field(wide, w, offset)?;
        let remaining = self.remaining();
        if size > remaining {
            return Err(Self::err(
                w,
                offset,
                DecodeErrorReason::SizeExceedsRemaining { size, remaining },
            ));
        }
        if size < width {
            return Err(Self::err(
                w,
                offset,
                DecodeErrorReason::SizeBelowCountWidth { size, width },
            ));
        }
        self.enter(w, offset)?;
        let compound = Compound {
            what: w,
            offset,
            body_start: self.pos,
            outer_end: self.end,
            count: 0,
        };
        self.end = self.pos + size;
        let count = self.len_field(wide, w, offset)?;
        Ok(Compound { count, ..compound })
    }

    /// Checks that a compound's elements filled its declared size exactly,
    /// and restores the enclosing `end`.
    fn close_compound(&mut self, c: Compound) -> Result<()> {
        if self.pos != self.end {
            return Err(Self::err(
                c.what,
                c.offset,
                DecodeErrorReason::SizeMismatch {
                    used: self.pos - c.body_start,
                    declared: self.end - c.body_start,
                },
            ));
        }
        self.end = c.outer_end;
        self.leave();
        Ok(())
    }

    fn skip_value(&mut self) -> Result<()> {
        let offset = self.pos;
        let code = self.u8("constructor", offset)?;
        if code == fc::DESCRIBED {
            self.enter("described", offset)?;
            self.skip_value()?;
            self.skip_value()?;
            self.leave();
            return Ok(());
        }
        let w = what(code);
        if let Some(width) = fc::fixed_width(code) {
            self.take(width, w, offset)?;
            return Ok(());
        }
        match code {
            fc::VBIN8 | fc::STR8 | fc::SYM8 | fc::VBIN32 | fc::STR32 | fc::SYM32 => {
                let len = self.len_field(code >= fc::VBIN32, w, offset)?;
                self.take(len, w, offset)?;
            }
            fc::LIST8 | fc::MAP8 | fc::ARRAY8 | fc::LIST32 | fc::MAP32 | fc::ARRAY32 => {
                let wide = matches!(code, fc::LIST32 | fc::MAP32 | fc::ARRAY32);
                let size = self.len_field(wide, w, offset)?;
                let width = if wide { 4 } else { 1 };
                if size < width {
                    return Err(Self::err(
                        w,
                        offset,
                        DecodeErrorReason::SizeBelowCountWidth { size, width },
                    ));
                }
                let remaining = self.remaining();
                if size > remaining {
                    return Err(Self::err(
                        w,
                        offset,
                        DecodeErrorReason::SizeExceedsRemaining { size, remaining },
                    ));
                }
                self.pos += size;
            }
            other => {
                return Err(Self::err(
                    "constructor",
                    offset,
                    DecodeErrorReason::UnknownFormatCode(other),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &[u8]) -> Value {
        let (v, used) = decode(input).unwrap_or_else(|e| panic!("{input:02x?}: {e}"));
        assert_eq!(used, input.len(), "consumed length of {input:02x?}");
        assert_eq!(skip(input), Ok(input.len()), "skip of {input:02x?}");
        v
    }

    fn reason(input: &[u8]) -> DecodeErrorReason {
        match decode(input) {
            Err(e) => e.reason,
            Ok((v, _)) => panic!("{input:02x?} decoded to {v:?}"),
        }
    }

    #[test]
    fn every_width_of_every_number_decodes() {
        assert_eq!(ok(&[0x40]), Value::Null);
        assert_eq!(ok(&[0x41]), Value::Bool(true));
        assert_eq!(ok(&[0x42]), Value::Bool(false));
        assert_eq!(ok(&[0x56, 0x01]), Value::Bool(true));
        assert_eq!(ok(&[0x56, 0x00]), Value::Bool(false));
        assert_eq!(ok(&[0x50, 9]), Value::Ubyte(9));
        assert_eq!(ok(&[0x60, 1, 2]), Value::Ushort(0x0102));
        assert_eq!(ok(&[0x43]), Value::Uint(0));
        assert_eq!(ok(&[0x52, 7]), Value::Uint(7));
        assert_eq!(ok(&[0x70, 0, 0, 0, 7]), Value::Uint(7));
        assert_eq!(ok(&[0x44]), Value::Ulong(0));
        assert_eq!(ok(&[0x53, 0x10]), Value::Ulong(0x10));
        assert_eq!(ok(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0x10]), Value::Ulong(0x10));
        assert_eq!(ok(&[0x51, 0xff]), Value::Byte(-1));
        assert_eq!(ok(&[0x61, 0xff, 0xfe]), Value::Short(-2));
        assert_eq!(ok(&[0x54, 0xfd]), Value::Int(-3));
        assert_eq!(ok(&[0x71, 0xff, 0xff, 0xff, 0xfd]), Value::Int(-3));
        assert_eq!(ok(&[0x55, 0xfc]), Value::Long(-4));
        assert_eq!(
            ok(&[0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc]),
            Value::Long(-4)
        );
        assert_eq!(
            ok(&[0x72, 0x40, 0x49, 0x0f, 0xdb]),
            Value::Float(std::f32::consts::PI)
        );
        assert_eq!(
            ok(&[0x82, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
            Value::Double(1.0)
        );
        assert_eq!(ok(&[0x74, 9, 8, 7, 6]), Value::Decimal32([9, 8, 7, 6]));
        assert_eq!(
            ok(&[0x84, 1, 1, 1, 1, 1, 1, 1, 1]),
            Value::Decimal64([1; 8])
        );
        let mut d128 = vec![0x94];
        d128.extend_from_slice(&[2; 16]);
        assert_eq!(ok(&d128), Value::Decimal128([2; 16]));
        assert_eq!(ok(&[0x73, 0, 0, 0, b'A']), Value::Char('A'));
        assert_eq!(ok(&[0x83, 0, 0, 0, 0, 0, 0, 1, 0]), Value::Timestamp(256));
        let mut uuid = vec![0x98];
        uuid.extend_from_slice(&[3; 16]);
        assert_eq!(ok(&uuid), Value::Uuid([3; 16]));
    }

    #[test]
    fn variable_width_values_decode_in_both_widths() {
        assert_eq!(ok(&[0xa0, 1, 0xff]), Value::binary(vec![0xff]));
        assert_eq!(ok(&[0xb0, 0, 0, 0, 1, 0xff]), Value::binary(vec![0xff]));
        assert_eq!(ok(&[0xa1, 2, b'o', b'k']), Value::string("ok"));
        assert_eq!(ok(&[0xb1, 0, 0, 0, 2, b'o', b'k']), Value::string("ok"));
        assert_eq!(ok(&[0xa3, 1, b's']), Value::symbol("s"));
        assert_eq!(ok(&[0xb3, 0, 0, 0, 1, b's']), Value::symbol("s"));
    }

    #[test]
    fn compounds_decode_in_every_width() {
        assert_eq!(ok(&[0x45]), Value::List(vec![]));
        assert_eq!(ok(&[0xc0, 1, 0]), Value::List(vec![]));
        assert_eq!(
            ok(&[0xc0, 3, 2, 0x41, 0x40]),
            Value::List(vec![Value::Bool(true), Value::Null])
        );
        assert_eq!(
            ok(&[0xd0, 0, 0, 0, 6, 0, 0, 0, 1, 0x52, 5]),
            Value::List(vec![Value::Uint(5)])
        );
        assert_eq!(
            ok(&[0xc1, 5, 2, 0xa3, 1, b'k', 0x42]),
            Value::Map(vec![(Value::symbol("k"), Value::Bool(false))])
        );
        assert_eq!(
            ok(&[0xd1, 0, 0, 0, 7, 0, 0, 0, 2, 0x44, 0x56, 1]),
            Value::Map(vec![(Value::Ulong(0), Value::Bool(true))])
        );
        let array = ok(&[
            0xf0, 0, 0, 0, 14, 0, 0, 0, 2, 0xb3, 0, 0, 0, 1, b'a', 0, 0, 0, 0,
        ]);
        assert_eq!(
            array,
            Value::Array(Array {
                format_code: 0xa3,
                descriptor: None,
                items: vec![Value::symbol("a"), Value::symbol("")],
            }),
            "array32 of sym32 decodes with the canonical element code sym8"
        );
        assert_eq!(
            ok(&[0xe0, 10, 2, 0x70, 0, 0, 0, 1, 0, 0, 0, 2]),
            Value::Array(Array::new(vec![Value::Uint(1), Value::Uint(2)]).expect("uints")),
            "array8 of uint decodes with the canonical element code smalluint"
        );
    }

    #[test]
    fn arrays_of_zero_width_elements_decode_each_element() {
        assert_eq!(
            ok(&[0xe0, 2, 3, 0x41]),
            Value::Array(Array::new(vec![Value::Bool(true); 3]).expect("booleans"))
        );
        assert_eq!(
            ok(&[0xe0, 2, 2, 0x43]),
            Value::Array(Array::new(vec![Value::Uint(0); 2]).expect("uints"))
        );
        assert_eq!(
            ok(&[0xe0, 2, 2, 0x45]),
            Value::Array(Array::new(vec![Value::List(vec![]); 2]).expect("lists"))
        );
        assert_eq!(
            reason(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]),
            DecodeErrorReason::TooManyElements
        );
    }

    #[test]
    fn described_values_and_described_arrays_decode() {
        assert_eq!(
            ok(&[0x00, 0x53, 0x10, 0xc0, 2, 1, 0x40]),
            Value::described(Descriptor::Code(0x10), Value::List(vec![Value::Null]))
        );
        assert_eq!(
            ok(&[0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x13, 0x45]),
            Value::described(Descriptor::Code(0x13), Value::List(vec![]))
        );
        assert_eq!(
            ok(&[0x00, 0xa3, 1, b'x', 0x40]),
            Value::described(Descriptor::Symbol(Symbol::from("x")), Value::Null)
        );
        assert_eq!(
            ok(&[0xe0, 7, 2, 0x00, 0x53, 0x24, 0x52, 1, 2]),
            Value::Array(Array {
                format_code: 0x52,
                descriptor: Some(Descriptor::Code(0x24)),
                items: vec![Value::Uint(1), Value::Uint(2)],
            })
        );
    }

    #[test]
    fn decode_consumes_only_the_first_value() {
        assert_eq!(decode(&[0x52, 1, 0x40]), Ok((Value::Uint(1), 2)));
        assert_eq!(skip(&[0xc0, 1, 0, 0x40]), Ok(3));
    }

    #[test]
    fn decode_bytes_slices_binaries_without_copying() {
        let input = Bytes::from_static(&[0xc0, 5, 1, 0xa0, 2, 0xaa, 0xbb]);
        let (v, used) = decode_bytes(&input).expect("list of binary");
        assert_eq!(used, 7);
        let Some([Value::Binary(b)]) = v.as_list() else {
            panic!("expected a list of one binary, got {v:?}");
        };
        assert_eq!(b.as_ref(), [0xaa, 0xbb]);
        assert_eq!(
            b.as_ptr(),
            input[5..].as_ptr(),
            "binary points into the input"
        );
    }

    #[test]
    fn errors_name_the_encoding_offset_and_problem() {
        let err = decode(&[0xd0, 0, 0, 0x0f, 0xa0, 0, 0, 0, 1]).expect_err("oversized list32");
        assert_eq!(
            err.to_string(),
            "list32 at offset 0: size 4000 exceeds remaining 4 bytes"
        );
        let nested = [0xc0, 9, 1, 0xd0, 0, 0, 0x0f, 0xa0, 0x40, 0x40, 0x40];
        let err = decode(&nested).expect_err("oversized inner list32");
        assert_eq!(err.what, "list32");
        assert_eq!(err.offset, 3);
        assert_eq!(err.condition(), Symbol::from("amqp:decode-error"));
        assert_eq!(DecodeError::CONDITION, "amqp:decode-error");
    }

    #[test]
    fn malformed_input_is_refused_with_a_reason() {
        assert_eq!(
            reason(&[]),
            DecodeErrorReason::Truncated {
                needed: 1,
                remaining: 0
            }
        );
        assert_eq!(
            reason(&[0x70, 0, 0]),
            DecodeErrorReason::Truncated {
                needed: 4,
                remaining: 2
            }
        );
        assert_eq!(reason(&[0x01]), DecodeErrorReason::UnknownFormatCode(0x01));
        assert_eq!(reason(&[0x56, 2]), DecodeErrorReason::InvalidBoolean(2));
        assert_eq!(
            reason(&[0x73, 0, 0, 0xd8, 0]),
            DecodeErrorReason::InvalidChar(0xd800)
        );
        assert_eq!(reason(&[0xa1, 1, 0xff]), DecodeErrorReason::InvalidUtf8);
        assert_eq!(
            reason(&[0xc1, 2, 1, 0x40]),
            DecodeErrorReason::OddMapCount(1)
        );
        assert_eq!(
            reason(&[0xc0, 3, 1, 0x40, 0x40]),
            DecodeErrorReason::SizeMismatch {
                used: 2,
                declared: 3
            }
        );
        assert_eq!(
            reason(&[0xc0, 2, 2, 0x40]),
            DecodeErrorReason::Truncated {
                needed: 1,
                remaining: 0
            },
            "an item may not run past its list's size"
        );
        assert_eq!(
            reason(&[0xc0, 0]),
            DecodeErrorReason::SizeBelowCountWidth { size: 0, width: 1 }
        );
        assert_eq!(
            reason(&[0xe0, 2, 1, 0x00]),
            DecodeErrorReason::Truncated {
                needed: 1,
                remaining: 0
            }
        );
        assert_eq!(
            reason(&[0xe0, 4, 1, 0x00, 0x44, 0x00]),
            DecodeErrorReason::InvalidElementConstructor(0x00)
        );
        assert_eq!(
            skip(&[0xb0, 0, 0, 1, 0, 1]).map_err(|e| e.what),
            Err("vbin32")
        );
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_without_overflowing_the_stack() {
        let mut ok_depth = Vec::new();
        for _ in 0..MAX_DEPTH {
            ok_depth.extend_from_slice(&[0x00, 0x44]);
        }
        ok_depth.push(0x45);
        assert!(decode(&ok_depth).is_ok());
        let deep: Vec<u8> = std::iter::repeat_n([0x00, 0x44], MAX_DEPTH + 1)
            .flatten()
            .chain([0x40])
            .collect();
        assert_eq!(
            decode(&deep).map_err(|e| e.reason),
            Err(DecodeErrorReason::TooDeep)
        );
        assert_eq!(
            skip(&deep).map_err(|e| e.reason),
            Err(DecodeErrorReason::TooDeep)
        );
        let hostile = vec![0x00; 1_000_000];
        assert!(decode(&hostile).is_err());
        assert!(skip(&hostile).is_err());
        // 1000 well-formed nested list32s, each holding the next.
        let mut lists = vec![0x45];
        for _ in 0..1000 {
            let size = (4 + lists.len()) as u32;
            let mut outer = vec![0xd0];
            outer.extend_from_slice(&size.to_be_bytes());
            outer.extend_from_slice(&1u32.to_be_bytes());
            outer.extend_from_slice(&lists);
            lists = outer;
        }
        assert_eq!(
            skip(&lists),
            Ok(lists.len()),
            "skip does not descend into lists"
        );
        assert_eq!(
            decode(&lists).map_err(|e| e.reason),
            Err(DecodeErrorReason::TooDeep)
        );
    }

    #[test]
    fn huge_declared_counts_do_not_allocate_before_failing() {
        // list32 declaring 4 billion items in a 9-byte input.
        let input = [0xd0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            reason(&input),
            DecodeErrorReason::Truncated {
                needed: 1,
                remaining: 0
            }
        );
        let input = [0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x70];
        assert_eq!(
            reason(&input),
            DecodeErrorReason::Truncated {
                needed: 4,
                remaining: 0
            }
        );
    }
}
