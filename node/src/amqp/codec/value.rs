//! The AMQP 1.0 type system as one Rust value: every primitive of the spec's
//! section 1.6, described types, and the compound types (list, map, array).
//!
//! `Value` is what the low-rate paths (performatives, management, tests) work
//! with. The transfer hot path never builds a `Value` for message content: it
//! scans encoded bytes in place (see `amqp::message`).

use bytes::Bytes;

/// An AMQP 1.0 symbol: an ASCII string used for names and error conditions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Symbol(pub String);

impl Symbol {
    pub fn new(s: impl Into<String>) -> Self {
        Symbol(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Symbol {
    fn from(s: &str) -> Self {
        Symbol(s.to_owned())
    }
}

impl std::fmt::Display for Symbol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The descriptor of a described type: a symbolic or numeric code
/// (e.g. `0x0000_0000_0000_0010` for `open`). Any other descriptor value is
/// legal AMQP and is kept as `Other`.
#[derive(Debug, Clone, PartialEq)]
pub enum Descriptor {
    Code(u64),
    Symbol(Symbol),
    Other(Box<Value>),
}

/// An AMQP array: every element shares one constructor. The element type is
/// kept explicitly so that an empty array still round-trips.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The element constructor's format code as it will be encoded (for
    /// example 0xa3 for sym8, 0xb3 for sym32). For described elements this is
    /// the format code of the underlying value and `descriptor` is set.
    pub format_code: u8,
    /// Descriptor shared by all elements when the array holds described values.
    pub descriptor: Option<Descriptor>,
    /// The elements, without their descriptor (it lives in `descriptor`).
    pub items: Vec<Value>,
}

/// One AMQP 1.0 value.
///
/// Floating point values compare bitwise-unequal when NaN, as in IEEE 754;
/// tests that round-trip floats compare `to_bits()`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Ubyte(u8),
    Ushort(u16),
    Uint(u32),
    Ulong(u64),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    /// IEEE 754-2008 decimal32, using the Binary Integer Decimal encoding, kept as raw bytes.
    Decimal32([u8; 4]),
    Decimal64([u8; 8]),
    Decimal128([u8; 16]),
    /// A UTF-32BE code point.
    Char(char),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
    Binary(Bytes),
    String(String),
    Symbol(Symbol),
    Described(Box<(Descriptor, Value)>),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Array(Array),
}

impl Value {
    pub fn described(descriptor: Descriptor, value: Value) -> Value {
        Value::Described(Box::new((descriptor, value)))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}
