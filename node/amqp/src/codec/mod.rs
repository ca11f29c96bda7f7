//! The AMQP 1.0 type-system codec: [`Value`] and its canonical encoding
//! (smallest legal form), and a decoder that accepts every legal form.
//!
//! - [`encode()`] / [`Value::encode`]: canonical encoding into a `BytesMut`.
//! - [`decode()`] / [`decode_bytes`]: one value from the front of a buffer
//!   (the latter slices binaries zero-copy).
//! - [`skip`]: the size of the value at the front, without building it.
//! - [`format_code`]: the spec's format codes and their names.

mod decode;
mod encode;
pub mod format_code;
mod value;

pub use decode::{
    DecodeError, DecodeErrorReason, MAX_DEPTH, MAX_ZERO_WIDTH_ELEMENTS, decode, decode_bytes, skip,
};
pub use encode::{EncodeError, encode, encoded_len, try_encode, validate};
pub use value::{Array, Descriptor, Fields, Symbol, Value};
