//! A sans-I/O AMQP 1.0 engine. Nothing here touches a socket, a clock, tokio or
//! actix: bytes go in, bytes and events come out, and time is passed in as a
//! parameter (the shape of quinn-proto). The connection actors of `boted` are
//! the thin shell that drives it.
//!
//! - [`codec`]: the type system and its encoding.
//! - [`definitions`]: the spec's restricted and composite types (roles,
//!   settle modes, outcomes, source, target, error).
//! - [`performatives`]: open, begin, attach, flow, transfer, disposition,
//!   detach, end, close.
//! - [`sasl`]: the SASL security layer's frames.
//! - [`frame`]: protocol headers and frames.

pub mod codec;
pub mod definitions;
pub mod frame;
pub mod performatives;
pub mod sasl;
