//! The one-byte format codes of the AMQP 1.0 type system (part 1 §1.6), and
//! their spec names for error messages and logs.

/// Introduces a described type: `0x00 descriptor value`.
pub const DESCRIBED: u8 = 0x00;
pub const NULL: u8 = 0x40;
pub const BOOLEAN_TRUE: u8 = 0x41;
pub const BOOLEAN_FALSE: u8 = 0x42;
pub const UINT0: u8 = 0x43;
pub const ULONG0: u8 = 0x44;
pub const LIST0: u8 = 0x45;
pub const UBYTE: u8 = 0x50;
pub const BYTE: u8 = 0x51;
pub const SMALLUINT: u8 = 0x52;
pub const SMALLULONG: u8 = 0x53;
pub const SMALLINT: u8 = 0x54;
pub const SMALLLONG: u8 = 0x55;
/// A boolean carried in one following byte (0x00 false, 0x01 true).
pub const BOOLEAN: u8 = 0x56;
pub const USHORT: u8 = 0x60;
pub const SHORT: u8 = 0x61;
pub const UINT: u8 = 0x70;
pub const INT: u8 = 0x71;
pub const FLOAT: u8 = 0x72;
pub const CHAR: u8 = 0x73;
pub const DECIMAL32: u8 = 0x74;
pub const ULONG: u8 = 0x80;
pub const LONG: u8 = 0x81;
pub const DOUBLE: u8 = 0x82;
pub const TIMESTAMP: u8 = 0x83;
pub const DECIMAL64: u8 = 0x84;
pub const DECIMAL128: u8 = 0x94;
pub const UUID: u8 = 0x98;
pub const VBIN8: u8 = 0xa0;
pub const STR8: u8 = 0xa1;
pub const SYM8: u8 = 0xa3;
pub const VBIN32: u8 = 0xb0;
pub const STR32: u8 = 0xb1;
pub const SYM32: u8 = 0xb3;
pub const LIST8: u8 = 0xc0;
pub const MAP8: u8 = 0xc1;
pub const LIST32: u8 = 0xd0;
pub const MAP32: u8 = 0xd1;
pub const ARRAY8: u8 = 0xe0;
pub const ARRAY32: u8 = 0xf0;

/// The spec's name of a format code's encoding (`"list32"`, `"str8-utf8"`),
/// or `None` for a byte that is not a format code.
pub fn name(code: u8) -> Option<&'static str> {
    Some(match code {
        DESCRIBED => "described",
        NULL => "null",
        BOOLEAN_TRUE => "true",
        BOOLEAN_FALSE => "false",
        UINT0 => "uint0",
        ULONG0 => "ulong0",
        LIST0 => "list0",
        UBYTE => "ubyte",
        BYTE => "byte",
        SMALLUINT => "smalluint",
        SMALLULONG => "smallulong",
        SMALLINT => "smallint",
        SMALLLONG => "smalllong",
        BOOLEAN => "boolean",
        USHORT => "ushort",
        SHORT => "short",
        UINT => "uint",
        INT => "int",
        FLOAT => "float",
        CHAR => "char",
        DECIMAL32 => "decimal32",
        ULONG => "ulong",
        LONG => "long",
        DOUBLE => "double",
        TIMESTAMP => "timestamp",
        DECIMAL64 => "decimal64",
        DECIMAL128 => "decimal128",
        UUID => "uuid",
        VBIN8 => "vbin8",
        STR8 => "str8-utf8",
        SYM8 => "sym8",
        VBIN32 => "vbin32",
        STR32 => "str32-utf8",
        SYM32 => "sym32",
        LIST8 => "list8",
        MAP8 => "map8",
        LIST32 => "list32",
        MAP32 => "map32",
        ARRAY8 => "array8",
        ARRAY32 => "array32",
        _ => return None,
    })
}

/// How many bytes follow a fixed-width constructor, or `None` for the
/// variable-width and compound encodings (and for non-codes). Described
/// (0x00) is neither and also gives `None`.
pub fn fixed_width(code: u8) -> Option<usize> {
    match code {
        NULL | BOOLEAN_TRUE | BOOLEAN_FALSE | UINT0 | ULONG0 | LIST0 => Some(0),
        UBYTE | BYTE | SMALLUINT | SMALLULONG | SMALLINT | SMALLLONG | BOOLEAN => Some(1),
        USHORT | SHORT => Some(2),
        UINT | INT | FLOAT | CHAR | DECIMAL32 => Some(4),
        ULONG | LONG | DOUBLE | TIMESTAMP | DECIMAL64 => Some(8),
        DECIMAL128 | UUID => Some(16),
        _ => None,
    }
}
