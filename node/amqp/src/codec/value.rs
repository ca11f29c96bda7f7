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

/// `fields` (transport §2.8.13): a map keyed by symbol, in the order
/// received.
pub type Fields = Vec<(Symbol, Value)>;

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

    /// The AMQP type name of the value (`"uint"`, `"list"`, ...), for error
    /// messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Ubyte(_) => "ubyte",
            Value::Ushort(_) => "ushort",
            Value::Uint(_) => "uint",
            Value::Ulong(_) => "ulong",
            Value::Byte(_) => "byte",
            Value::Short(_) => "short",
            Value::Int(_) => "int",
            Value::Long(_) => "long",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Decimal32(_) => "decimal32",
            Value::Decimal64(_) => "decimal64",
            Value::Decimal128(_) => "decimal128",
            Value::Char(_) => "char",
            Value::Timestamp(_) => "timestamp",
            Value::Uuid(_) => "uuid",
            Value::Binary(_) => "binary",
            Value::String(_) => "string",
            Value::Symbol(_) => "symbol",
            Value::Described(_) => "described",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Array(_) => "array",
        }
    }
}

/// Constructors and accessors. The `as_*` accessors return `None` for any
/// other variant; the unsigned ones widen the narrower unsigned types
/// (`as_u32` accepts `Ubyte`, `Ushort` and `Uint`), as a field typed `uint`
/// may legally arrive from a lenient peer in no other form.
impl Value {
    /// `Value::Symbol` from a string.
    pub fn symbol(s: impl Into<String>) -> Value {
        Value::Symbol(Symbol(s.into()))
    }

    /// `Value::String` from a string.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// `Value::Binary` from anything convertible to `Bytes`.
    pub fn binary(b: impl Into<Bytes>) -> Value {
        Value::Binary(b.into())
    }

    /// The text of a `String` or `Symbol`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Symbol(s) => Some(&s.0),
            _ => None,
        }
    }

    pub fn as_symbol(&self) -> Option<&Symbol> {
        match self {
            Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u8(&self) -> Option<u8> {
        match self {
            Value::Ubyte(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_u16(&self) -> Option<u16> {
        match self {
            Value::Ubyte(n) => Some(u16::from(*n)),
            Value::Ushort(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::Ubyte(n) => Some(u32::from(*n)),
            Value::Ushort(n) => Some(u32::from(*n)),
            Value::Uint(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Ubyte(n) => Some(u64::from(*n)),
            Value::Ushort(n) => Some(u64::from(*n)),
            Value::Uint(n) => Some(u64::from(*n)),
            Value::Ulong(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Byte(n) => Some(i64::from(*n)),
            Value::Short(n) => Some(i64::from(*n)),
            Value::Int(n) => Some(i64::from(*n)),
            Value::Long(n) => Some(*n),
            _ => None,
        }
    }

    /// Milliseconds since the Unix epoch of a `Timestamp`.
    pub fn as_timestamp(&self) -> Option<i64> {
        match self {
            Value::Timestamp(t) => Some(*t),
            _ => None,
        }
    }

    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The descriptor and value of a described type.
    pub fn as_described(&self) -> Option<(&Descriptor, &Value)> {
        match self {
            Value::Described(d) => Some((&d.0, &d.1)),
            _ => None,
        }
    }

    /// The numeric descriptor code of a described type (`0x10` for `open`).
    pub fn descriptor_code(&self) -> Option<u64> {
        match self {
            Value::Described(d) => d.0.code(),
            _ => None,
        }
    }

    /// Takes the items of a `List`, or gives the value back.
    pub fn into_list(self) -> Result<Vec<Value>, Value> {
        match self {
            Value::List(items) => Ok(items),
            other => Err(other),
        }
    }
}

impl Descriptor {
    /// The numeric code, for `Code` descriptors.
    pub fn code(&self) -> Option<u64> {
        match self {
            Descriptor::Code(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<u64> for Descriptor {
    fn from(code: u64) -> Self {
        Descriptor::Code(code)
    }
}

impl From<Symbol> for Descriptor {
    fn from(s: Symbol) -> Self {
        Descriptor::Symbol(s)
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v)
            }
        })*
    };
}

value_from! {
    bool => Bool,
    u8 => Ubyte,
    u16 => Ushort,
    u32 => Uint,
    u64 => Ulong,
    i8 => Byte,
    i16 => Short,
    i32 => Int,
    i64 => Long,
    f32 => Float,
    f64 => Double,
    char => Char,
    String => String,
    Symbol => Symbol,
    Bytes => Binary,
    Array => Array,
    Vec<Value> => List,
    Vec<(Value, Value)> => Map,
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

/// `None` is `null`, as for every optional field of the spec.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A compact, one-line rendering for logs, close to qpid-proton's:
/// `@0x10 ["container", null, 65536u32]`, `:symbol`, `b"\x00ab"`,
/// `{:key="value"}`, `@smalluint[1u32, 2u32]`.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn seq<'v>(
            f: &mut std::fmt::Formatter<'_>,
            items: impl Iterator<Item = &'v Value>,
        ) -> std::fmt::Result {
            for (i, item) in items.enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Ubyte(n) => write!(f, "{n}u8"),
            Value::Ushort(n) => write!(f, "{n}u16"),
            Value::Uint(n) => write!(f, "{n}u32"),
            Value::Ulong(n) => write!(f, "{n}u64"),
            Value::Byte(n) => write!(f, "{n}i8"),
            Value::Short(n) => write!(f, "{n}i16"),
            Value::Int(n) => write!(f, "{n}i32"),
            Value::Long(n) => write!(f, "{n}i64"),
            Value::Float(x) => write!(f, "{x:?}f32"),
            Value::Double(x) => write!(f, "{x:?}"),
            Value::Decimal32(b) => write!(f, "decimal32(0x{})", Hex(b)),
            Value::Decimal64(b) => write!(f, "decimal64(0x{})", Hex(b)),
            Value::Decimal128(b) => write!(f, "decimal128(0x{})", Hex(b)),
            Value::Char(c) => write!(f, "{c:?}"),
            Value::Timestamp(t) => write!(f, "timestamp({t})"),
            Value::Uuid(u) => write!(
                f,
                "uuid({}-{}-{}-{}-{})",
                Hex(&u[0..4]),
                Hex(&u[4..6]),
                Hex(&u[6..8]),
                Hex(&u[8..10]),
                Hex(&u[10..16])
            ),
            Value::Binary(b) => write!(f, "b\"{}\"", b.escape_ascii()),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Symbol(s) => write!(f, ":{}", s.0.escape_debug()),
            Value::Described(d) => write!(f, "{} {}", d.0, d.1),
            Value::List(items) => {
                f.write_str("[")?;
                seq(f, items.iter())?;
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
            Value::Array(a) => {
                f.write_str("@")?;
                if let Some(d) = &a.descriptor {
                    write!(f, "{d} ")?;
                }
                let name = super::format_code::name(a.format_code).unwrap_or("?");
                write!(f, "{name}[")?;
                seq(f, a.items.iter())?;
                f.write_str("]")
            }
        }
    }
}

/// `@0x10` for numeric descriptors, `@name` for symbolic ones.
impl std::fmt::Display for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Descriptor::Code(n) => write!(f, "@{n:#x}"),
            Descriptor::Symbol(s) => write!(f, "@{}", s.0.escape_debug()),
            Descriptor::Other(v) => write!(f, "@({v})"),
        }
    }
}

/// Lower-case hex digits of a byte slice.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_renders_one_line_for_logs() {
        let open = Value::described(
            Descriptor::Code(0x10),
            Value::List(vec![
                Value::string("container"),
                Value::Null,
                Value::Uint(65536),
            ]),
        );
        assert_eq!(open.to_string(), r#"@0x10 ["container", null, 65536u32]"#);
        let map = Value::Map(vec![(Value::symbol("key"), Value::string("value"))]);
        assert_eq!(map.to_string(), r#"{:key="value"}"#);
        assert_eq!(Value::binary(&b"\x00ab"[..]).to_string(), r#"b"\x00ab""#);
        let array = Array {
            format_code: 0x52,
            descriptor: None,
            items: vec![Value::Uint(1), Value::Uint(2)],
        };
        assert_eq!(Value::Array(array).to_string(), "@smalluint[1u32, 2u32]");
        assert_eq!(
            Value::Uuid(std::array::from_fn(|i| i as u8)).to_string(),
            "uuid(00010203-0405-0607-0809-0a0b0c0d0e0f)"
        );
    }

    #[test]
    fn accessors_widen_unsigned_integers_and_reject_other_types() {
        assert_eq!(Value::Ushort(7).as_u32(), Some(7));
        assert_eq!(Value::Uint(7).as_u64(), Some(7));
        assert_eq!(Value::Ulong(7).as_u32(), None);
        assert_eq!(Value::symbol("s").as_str(), Some("s"));
        assert_eq!(Value::from(None::<u32>), Value::Null);
        assert_eq!(Value::from(Some(3u32)), Value::Uint(3));
        assert_eq!(
            Value::described(Descriptor::Code(0x14), Value::Null).descriptor_code(),
            Some(0x14)
        );
    }
}
