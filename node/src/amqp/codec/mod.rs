//! The AMQP 1.0 type-system codec: [`Value`] and its canonical encoding
//! (smallest legal form), and a decoder that accepts every legal form.

mod value;
pub use value::{Array, Descriptor, Symbol, Value};
