//! Property tests of the AMQP 1.0 codec: canonical encoding round-trips
//! through the decoder, sizes agree (`encoded_len`, consumed length, `skip`),
//! hostile bytes never panic, and every wider legal form of a value decodes
//! to the same value and re-encodes to the smallest form.

use bote_amqp::codec::{
    Array, Descriptor, Symbol, Value, decode, decode_bytes, encode, encoded_len, skip, validate,
};
use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

// ---- Comparing values (floats by bits, so NaN equals itself) -------------

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
        (Value::Described(x), Value::Described(y)) => {
            same_descriptor(&x.0, &y.0) && same(&x.1, &y.1)
        }
        (Value::List(x), Value::List(y)) => all_same(x, y),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.format_code == y.format_code
                && match (&x.descriptor, &y.descriptor) {
                    (None, None) => true,
                    (Some(d1), Some(d2)) => same_descriptor(d1, d2),
                    _ => false,
                }
                && all_same(&x.items, &y.items)
        }
        _ => a == b,
    }
}

fn all_same(x: &[Value], y: &[Value]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
}

fn same_descriptor(a: &Descriptor, b: &Descriptor) -> bool {
    match (a, b) {
        (Descriptor::Other(x), Descriptor::Other(y)) => same(x, y),
        _ => a == b,
    }
}

fn encoded(v: &Value) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(v, &mut out);
    out.to_vec()
}

// ---- Strategies ------------------------------------------------------------

/// Numbers concentrated on the encoding boundaries as well as anywhere.
fn arb_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 1u32..=255, Just(256u32), any::<u32>()]
}

fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..=255, Just(256u64), any::<u64>()]
}

fn arb_i32() -> impl Strategy<Value = i32> {
    prop_oneof![-128i32..=127, Just(128i32), Just(-129i32), any::<i32>()]
}

fn arb_i64() -> impl Strategy<Value = i64> {
    prop_oneof![-128i64..=127, Just(128i64), Just(-129i64), any::<i64>()]
}

fn arb_symbol() -> impl Strategy<Value = Symbol> {
    prop_oneof![
        8 => "[a-z:.-]{0,16}",
        1 => "[a-z]{250,300}",
    ]
    .prop_map(Symbol)
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "\\PC{0,12}",
        1 => "[a-zé]{250,300}",
    ]
}

fn arb_binary() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..16),
        1 => proptest::collection::vec(any::<u8>(), 250..300),
    ]
    .prop_map(Bytes::from)
}

fn arb_primitive() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u8>().prop_map(Value::Ubyte),
        any::<u16>().prop_map(Value::Ushort),
        arb_u32().prop_map(Value::Uint),
        arb_u64().prop_map(Value::Ulong),
        any::<i8>().prop_map(Value::Byte),
        any::<i16>().prop_map(Value::Short),
        arb_i32().prop_map(Value::Int),
        arb_i64().prop_map(Value::Long),
        any::<f32>().prop_map(Value::Float),
        any::<f64>().prop_map(Value::Double),
        any::<[u8; 4]>().prop_map(Value::Decimal32),
        any::<[u8; 8]>().prop_map(Value::Decimal64),
        any::<[u8; 16]>().prop_map(Value::Decimal128),
        any::<char>().prop_map(Value::Char),
        any::<i64>().prop_map(Value::Timestamp),
        any::<[u8; 16]>().prop_map(Value::Uuid),
        arb_binary().prop_map(Value::Binary),
        arb_string().prop_map(Value::String),
        arb_symbol().prop_map(Value::Symbol),
    ]
    .boxed()
}

/// Descriptors as they decode: `Other` never holds a ulong or a symbol
/// (those decode as `Code` and `Symbol`).
fn arb_descriptor() -> impl Strategy<Value = Descriptor> {
    prop_oneof![
        3 => arb_u64().prop_map(Descriptor::Code),
        2 => arb_symbol().prop_map(Descriptor::Symbol),
        1 => prop_oneof![
            arb_i32().prop_map(Value::Int),
            arb_string().prop_map(Value::String),
            Just(Value::Null),
        ]
        .prop_map(|v| Descriptor::Other(Box::new(v))),
    ]
}

/// An array from items of one type; `empty_code` is the element type used
/// when `items` is empty (in any width of its family).
fn make_array(items: Vec<Value>, empty_code: u8, descriptor: Option<Descriptor>) -> Value {
    let mut array = if items.is_empty() {
        let mut a = Array::empty(empty_code);
        // Empty arrays decode with the narrow code of their family.
        a.format_code = a.element_code().expect("element type of an empty array");
        a
    } else {
        Array::new(items).expect("items of one type")
    };
    array.descriptor = descriptor;
    Value::Array(array)
}

fn array_of<S>(items: S, empty_code: u8) -> BoxedStrategy<Value>
where
    S: Strategy<Value = Value> + 'static,
{
    (
        proptest::collection::vec(items, 0..6),
        proptest::option::weighted(0.2, arb_descriptor()),
    )
        .prop_map(move |(items, d)| make_array(items, empty_code, d))
        .boxed()
}

fn arb_primitive_array() -> BoxedStrategy<Value> {
    prop_oneof![
        array_of(Just(Value::Null), 0x40),
        array_of(any::<bool>().prop_map(Value::Bool), 0x56),
        array_of(any::<u8>().prop_map(Value::Ubyte), 0x50),
        array_of(arb_u32().prop_map(Value::Uint), 0x70),
        array_of(arb_u64().prop_map(Value::Ulong), 0x53),
        array_of(arb_i32().prop_map(Value::Int), 0x71),
        array_of(arb_i64().prop_map(Value::Long), 0x55),
        array_of(any::<f64>().prop_map(Value::Double), 0x82),
        array_of(any::<char>().prop_map(Value::Char), 0x73),
        array_of(any::<i64>().prop_map(Value::Timestamp), 0x83),
        array_of(any::<[u8; 16]>().prop_map(Value::Uuid), 0x98),
        array_of(any::<[u8; 8]>().prop_map(Value::Decimal64), 0x84),
        array_of(arb_binary().prop_map(Value::Binary), 0xb0),
        array_of(arb_string().prop_map(Value::String), 0xa1),
        array_of(arb_symbol().prop_map(Value::Symbol), 0xb3),
    ]
    .boxed()
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![4 => arb_primitive(), 1 => arb_primitive_array()];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            (arb_descriptor(), inner.clone()).prop_map(|(d, v)| Value::described(d, v)),
            array_of(
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::List),
                0xc0
            ),
            array_of(
                proptest::collection::vec((inner.clone(), inner), 0..2).prop_map(Value::Map),
                0xd1
            ),
            array_of(arb_primitive_array(), 0xe0),
        ]
    })
}

// ---- A deliberately wide (non-canonical but legal) encoder -----------------

/// Encodes every value in its widest legal form: `uint` as 0x70, lists and
/// maps as 32-bit compounds, strings as str32, booleans as 0x56, arrays as
/// array32 with wide element constructors.
fn wide(v: &Value, out: &mut BytesMut) {
    let code = wide_code(v);
    out.put_u8(code);
    if let Value::Described(d) = v {
        wide_descriptor(&d.0, out);
        wide(&d.1, out);
    } else {
        wide_body(v, code, out);
    }
}

fn wide_descriptor(d: &Descriptor, out: &mut BytesMut) {
    match d {
        Descriptor::Code(n) => wide(&Value::Ulong(*n), out),
        Descriptor::Symbol(s) => wide(&Value::Symbol(s.clone()), out),
        Descriptor::Other(v) => wide(v, out),
    }
}

fn wide_code(v: &Value) -> u8 {
    match v {
        Value::Null => 0x40,
        Value::Bool(_) => 0x56,
        Value::Ubyte(_) => 0x50,
        Value::Ushort(_) => 0x60,
        Value::Uint(_) => 0x70,
        Value::Ulong(_) => 0x80,
        Value::Byte(_) => 0x51,
        Value::Short(_) => 0x61,
        Value::Int(_) => 0x71,
        Value::Long(_) => 0x81,
        Value::Float(_) => 0x72,
        Value::Double(_) => 0x82,
        Value::Decimal32(_) => 0x74,
        Value::Decimal64(_) => 0x84,
        Value::Decimal128(_) => 0x94,
        Value::Char(_) => 0x73,
        Value::Timestamp(_) => 0x83,
        Value::Uuid(_) => 0x98,
        Value::Binary(_) => 0xb0,
        Value::String(_) => 0xb1,
        Value::Symbol(_) => 0xb3,
        Value::Described(_) => 0x00,
        Value::List(_) => 0xd0,
        Value::Map(_) => 0xd1,
        Value::Array(_) => 0xf0,
    }
}

fn wide_body(v: &Value, code: u8, out: &mut BytesMut) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.put_u8(u8::from(*b)),
        Value::Ubyte(n) => out.put_u8(*n),
        Value::Ushort(n) => out.put_u16(*n),
        Value::Uint(n) => out.put_u32(*n),
        Value::Ulong(n) => out.put_u64(*n),
        Value::Byte(n) => out.put_i8(*n),
        Value::Short(n) => out.put_i16(*n),
        Value::Int(n) => out.put_i32(*n),
        Value::Long(n) => out.put_i64(*n),
        Value::Float(x) => out.put_u32(x.to_bits()),
        Value::Double(x) => out.put_u64(x.to_bits()),
        Value::Decimal32(b) => out.put_slice(b),
        Value::Decimal64(b) => out.put_slice(b),
        Value::Decimal128(b) => out.put_slice(b),
        Value::Char(c) => out.put_u32(u32::from(*c)),
        Value::Timestamp(t) => out.put_i64(*t),
        Value::Uuid(u) => out.put_slice(u),
        Value::Binary(b) => {
            out.put_u32(b.len() as u32);
            out.put_slice(b);
        }
        Value::String(s) => {
            out.put_u32(s.len() as u32);
            out.put_slice(s.as_bytes());
        }
        Value::Symbol(s) => {
            out.put_u32(s.0.len() as u32);
            out.put_slice(s.0.as_bytes());
        }
        Value::Described(_) => unreachable!("arrays never hold described items"),
        Value::List(items) => compound32(out, items.len(), |out| {
            items.iter().for_each(|i| wide(i, out))
        }),
        Value::Map(entries) => compound32(out, entries.len() * 2, |out| {
            for (k, v) in entries {
                wide(k, out);
                wide(v, out);
            }
        }),
        Value::Array(a) => {
            assert_eq!(code, 0xf0);
            let element = match a.items.first() {
                Some(first) => wide_code(first),
                None => widen_code(a.format_code),
            };
            compound32(out, a.items.len(), |out| {
                if let Some(d) = &a.descriptor {
                    out.put_u8(0x00);
                    wide_descriptor(d, out);
                }
                out.put_u8(element);
                for item in &a.items {
                    wide_body(item, element, out);
                }
            })
        }
    }
}

fn widen_code(code: u8) -> u8 {
    match code {
        0x52 => 0x70,
        0x53 => 0x80,
        0x54 => 0x71,
        0x55 => 0x81,
        0xa0 | 0xa1 | 0xa3 | 0xc0 | 0xc1 | 0xe0 => code + 0x10,
        other => other,
    }
}

/// Writes a 32-bit size, a 32-bit count and the body.
fn compound32(out: &mut BytesMut, count: usize, body: impl FnOnce(&mut BytesMut)) {
    let size_at = out.len();
    out.put_u32(0);
    out.put_u32(count as u32);
    body(out);
    let size = (out.len() - size_at - 4) as u32;
    out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
}

// ---- Properties ------------------------------------------------------------

proptest! {
    #[test]
    fn decoding_the_encoding_gives_back_the_value(v in arb_value()) {
        prop_assert_eq!(validate(&v), Ok(()));
        let bytes = encoded(&v);
        let (decoded, used) = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same(&decoded, &v), "{v:?} decoded as {decoded:?}");
        prop_assert_eq!(used, bytes.len());
        let shared = Bytes::from(bytes.clone());
        let (zero_copy, used) =
            decode_bytes(&shared).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same(&zero_copy, &v));
        prop_assert_eq!(used, bytes.len());
    }

    #[test]
    fn encoded_len_consumed_len_and_skip_agree(v in arb_value(), trailer in proptest::collection::vec(any::<u8>(), 0..4)) {
        let mut bytes = encoded(&v);
        let len = bytes.len();
        prop_assert_eq!(encoded_len(&v), len);
        prop_assert_eq!(v.encoded_len(), len);
        bytes.extend_from_slice(&trailer);
        prop_assert_eq!(decode(&bytes).map(|(_, used)| used), Ok(len));
        prop_assert_eq!(skip(&bytes), Ok(len));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_skip_agrees_with_decode(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let decoded = decode(&bytes);
        let skipped = skip(&bytes);
        if let Ok((_, used)) = decoded {
            prop_assert_eq!(skipped, Ok(used));
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        v in arb_value(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encoded(&v);
        for (at, x) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Ok((decoded, used)) = decode(&bytes) {
            prop_assert_eq!(skip(&bytes), Ok(used));
            let again = encoded(&decoded);
            let (twice, _) = decode(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(same(&twice, &decoded));
        }
        let truncated = &bytes[..cut.index(bytes.len() + 1)];
        let _ = decode(truncated);
        let _ = skip(truncated);
    }

    #[test]
    fn wide_forms_decode_to_the_same_value_and_reencode_canonically(v in arb_value()) {
        let mut wide_bytes = BytesMut::new();
        wide(&v, &mut wide_bytes);
        let (decoded, used) =
            decode(&wide_bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(used, wide_bytes.len());
        prop_assert_eq!(skip(&wide_bytes), Ok(wide_bytes.len()));
        prop_assert!(same(&decoded, &v), "{v:?} decoded from wide form as {decoded:?}");
        let canonical = encoded(&v);
        prop_assert_eq!(encoded(&decoded), canonical.clone());
        prop_assert!(canonical.len() <= wide_bytes.len());
    }
}

#[test]
fn nan_floats_round_trip_bit_for_bit() {
    let nan = f32::from_bits(0x7fc0_1234);
    let bytes = encoded(&Value::Float(nan));
    let (decoded, _) = decode(&bytes).expect("float");
    assert!(same(&decoded, &Value::Float(nan)));
    assert!(!same(&Value::Float(nan), &Value::Float(f32::NAN)));
}
