//! A sans-I/O AMQP 1.0 engine. Nothing here touches a socket, a clock, tokio or
//! actix: bytes go in, bytes and events come out, and time is passed in as a
//! parameter (the shape of quinn-proto). The connection actors of `boted` are
//! the thin shell that drives it.
//!
//! - [`error`]: errors and the spec's error conditions (the leaf: the codec
//!   and everything above it use it, it uses nothing).
//! - [`codec`]: the type system and its encoding.
//! - [`definitions`]: the spec's restricted and composite types (roles,
//!   settle modes, outcomes, source, target, error).
//! - [`performatives`]: open, begin, attach, flow, transfer, disposition,
//!   detach, end, close.
//! - [`transfer`]: the hand-written transfer performative (the per-message path).
//! - [`sasl`]: the SASL security layer's frames.
//! - [`frame`]: protocol headers and frames.
//! - [`message`]: the zero-copy message view (sections, properties) and the
//!   message-annotations splice that never re-encodes the bare message.
//! - [`connection`], [`session`], [`link`]: the endpoint state machines;
//!   [`event`]: what they report to the application.

pub mod codec;
mod composite;
pub mod connection;
pub mod definitions;
mod delivery;
pub mod error;
pub mod event;
pub mod frame;
pub mod link;
pub mod message;
pub mod performatives;
pub mod sasl;
pub mod session;
pub mod transfer;
