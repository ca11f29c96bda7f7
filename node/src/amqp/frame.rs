//! AMQP 1.0 framing (§2.2, §2.3): the protocol headers (AMQP 0, SASL 3,
//! TLS 2), the 8-byte frame header (size, doff, type, channel), empty frames
//! (heartbeats), and whole-frame encode/decode with max-frame-size enforced.
//!
//! Decoding takes whole frames off the front of a `BytesMut` and returns the
//! transfer payload as a zero-copy `Bytes` slice of it.

use bytes::{Bytes, BytesMut};

use super::performatives::Performative;
use super::sasl::SaslFrame;

/// `AMQP 0 1.0.0`: the AMQP protocol header.
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// `AMQP 3 1.0.0`: the SASL security layer header.
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// `AMQP 2 1.0.0`: the TLS security layer header.
pub const TLS_HEADER: [u8; 8] = *b"AMQP\x02\x01\x00\x00";

/// The spec's floor for max-frame-size (`MIN-MAX-FRAME-SIZE`).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// Frame type byte: 0x00 AMQP, 0x01 SASL.
pub const FRAME_TYPE_AMQP: u8 = 0x00;
pub const FRAME_TYPE_SASL: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    Amqp,
    Sasl,
    Tls,
}

/// What a frame carries.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameBody {
    /// An AMQP frame with a performative; `Frame::payload` holds the bytes
    /// after it (a transfer's message bytes; empty otherwise).
    Amqp(Performative),
    /// A SASL frame (channel is ignored).
    Sasl(SaslFrame),
    /// An AMQP frame with no body: a heartbeat.
    Empty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub channel: u16,
    pub body: FrameBody,
    pub payload: Bytes,
}

/// A framing or decoding failure, with the spec's error condition that the
/// connection must be closed with (`amqp:connection:framing-error`,
/// `amqp:decode-error`, `amqp:frame-size-too-small`, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{condition}: {description}")]
pub struct FrameError {
    pub condition: &'static str,
    pub description: String,
}
