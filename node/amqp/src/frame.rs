//! AMQP 1.0 framing (§2.2, §2.3): the protocol headers (AMQP 0, SASL 3,
//! TLS 2), the 8-byte frame header (size, doff, type, channel), empty frames
//! (heartbeats), and whole-frame encode/decode with max-frame-size enforced.
//!
//! Decoding takes whole frames off the front of a `BytesMut` and returns the
//! transfer payload as a zero-copy `Bytes` slice of it.

use bytes::{Buf, Bytes, BytesMut};

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
// Frames are taken apart at once by the engine; boxing the performative
// would cost an allocation per frame for nothing.
#[allow(clippy::large_enum_variant)]
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

// Every frame is moved a few times between its decoding and its handling:
// the rare large performatives are boxed to keep it small
// ([`Performative`]).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Frame>() <= 184);

// ---- Encoding and decoding ----

use bytes::BufMut;

use super::codec;
pub use super::error::FrameError;
use super::performatives::Transfer;
use super::transfer::{
    decode_transfer, encode_transfer, encoded_transfer_len, peek_descriptor_code,
};

/// The frame header's size: 4 bytes size, doff, type, 2 bytes channel.
pub const FRAME_HEADER_SIZE: usize = 8;

impl ProtocolHeader {
    /// The eight bytes of this header.
    pub fn bytes(self) -> [u8; 8] {
        match self {
            ProtocolHeader::Amqp => AMQP_HEADER,
            ProtocolHeader::Sasl => SASL_HEADER,
            ProtocolHeader::Tls => TLS_HEADER,
        }
    }
}

/// Reads a protocol header from the front of `buf` (it is not consumed; it is
/// always 8 bytes). `Ok(None)` while fewer than 8 bytes have arrived and they
/// still could be a header; anything else is an
/// `amqp:connection:framing-error` naming the bytes received.
pub fn decode_protocol_header(buf: &[u8]) -> Result<Option<ProtocolHeader>, FrameError> {
    let n = buf.len().min(8);
    let unexpected = || {
        FrameError::framing(format!(
            "expected an AMQP protocol header, received \"{}\"",
            buf[..n].escape_ascii()
        ))
    };
    if buf[..n.min(4)] != b"AMQP"[..n.min(4)] {
        return Err(unexpected());
    }
    if n < 8 {
        return Ok(None);
    }
    let header = match buf[4] {
        0 => ProtocolHeader::Amqp,
        2 => ProtocolHeader::Tls,
        3 => ProtocolHeader::Sasl,
        _ => return Err(unexpected()),
    };
    if buf[5..8] != [1, 0, 0] {
        return Err(FrameError::framing(format!(
            "unsupported AMQP version {}.{}.{} in protocol header \"{}\" (only 1.0.0)",
            buf[5],
            buf[6],
            buf[7],
            buf[..8].escape_ascii()
        )));
    }
    Ok(Some(header))
}

pub fn encode_protocol_header(h: ProtocolHeader, out: &mut BytesMut) {
    out.put_slice(&h.bytes());
}

/// Takes one whole frame off the front of `buf`. `Ok(None)` while it is
/// incomplete (nothing is consumed). A transfer's payload is a zero-copy
/// slice of the received bytes. The header is checked as soon as its 8 bytes
/// are in, so an oversized frame fails before its body arrives.
pub fn decode_frame(buf: &mut BytesMut, max_frame_size: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < FRAME_HEADER_SIZE {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let doff = buf[4];
    let frame_type = buf[5];
    let channel = u16::from_be_bytes([buf[6], buf[7]]);
    if size < FRAME_HEADER_SIZE as u32 {
        return Err(FrameError::framing(format!(
            "frame size {size} is smaller than the 8-byte frame header"
        )));
    }
    if size > max_frame_size {
        return Err(FrameError::framing(format!(
            "frame size {size} exceeds max-frame-size {max_frame_size}"
        )));
    }
    if doff < 2 {
        return Err(FrameError::framing(format!(
            "frame data offset {doff} is below the minimum 2"
        )));
    }
    if u32::from(doff) * 4 > size {
        return Err(FrameError::framing(format!(
            "frame data offset {doff} ({} bytes) is beyond the frame size {size}",
            u32::from(doff) * 4
        )));
    }
    if frame_type != FRAME_TYPE_AMQP && frame_type != FRAME_TYPE_SASL {
        return Err(FrameError::framing(format!(
            "unknown frame type {frame_type:#04x}"
        )));
    }
    let size = size as usize;
    if buf.len() < size {
        // No reserve here: a peer's size claim is not a reason to allocate.
        return Ok(None);
    }
    let start = usize::from(doff) * 4;
    if frame_type == FRAME_TYPE_AMQP
        && matches!(
            peek_descriptor_code(&buf[start..size]),
            Some((super::performatives::code::TRANSFER, _))
        )
    {
        // A message frame, the hot path: the transfer is read in place and
        // the payload is the only slice taken of the read buffer (one
        // reference-count increment per frame, where freezing the frame and
        // slicing body and payload out of it took three).
        let (t, n) = decode_transfer(&buf[start..size])?;
        buf.advance(start + n);
        let rest = size - start - n;
        let payload = if rest == 0 {
            Bytes::new()
        } else {
            buf.split_to(rest).freeze()
        };
        return Ok(Some(Frame {
            channel,
            body: FrameBody::Amqp(Performative::Transfer(t)),
            payload,
        }));
    }
    let frame = buf.split_to(size).freeze();
    let body = frame.slice(start..);
    if frame_type == FRAME_TYPE_SASL {
        if body.is_empty() {
            return Err(FrameError::decode("sasl frame: empty body"));
        }
        let (v, n) = codec::decode_bytes(&body)
            .map_err(|e| FrameError::decode(format!("sasl frame body: {e}")))?;
        return Ok(Some(Frame {
            channel,
            body: FrameBody::Sasl(SaslFrame::from_value(v)?),
            payload: body.slice(n..),
        }));
    }
    if body.is_empty() {
        return Ok(Some(Frame {
            channel,
            body: FrameBody::Empty,
            payload: Bytes::new(),
        }));
    }
    let (v, n) =
        codec::decode_bytes(&body).map_err(|e| FrameError::decode(format!("frame body: {e}")))?;
    let performative = Performative::from_value(v)?;
    Ok(Some(Frame {
        channel,
        body: FrameBody::Amqp(performative),
        payload: body.slice(n..),
    }))
}

fn put_header(out: &mut BytesMut, frame_type: u8, channel: u16) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(2);
    out.put_u8(frame_type);
    out.put_u16(channel);
    start
}

fn patch_size(out: &mut BytesMut, start: usize) {
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends one AMQP frame: header, performative, then `payload` (a
/// transfer's message bytes; empty for the other performatives). The caller
/// keeps the frame within the peer's max-frame-size (see
/// [`transfer_frame_overhead`]).
pub fn encode_frame(channel: u16, performative: &Performative, payload: &[u8], out: &mut BytesMut) {
    let start = put_header(out, FRAME_TYPE_AMQP, channel);
    match performative {
        Performative::Transfer(t) => {
            out.reserve(64 + payload.len());
            encode_transfer(t, out)
        }
        other => codec::encode(&other.to_value(), out),
    }
    out.put_slice(payload);
    patch_size(out, start);
}

/// Appends one SASL frame (type 0x01, channel 0).
pub fn encode_sasl_frame(frame: &SaslFrame, out: &mut BytesMut) {
    let start = put_header(out, FRAME_TYPE_SASL, 0);
    codec::encode(&frame.to_value(), out);
    patch_size(out, start);
}

/// Appends an empty AMQP frame (a heartbeat).
pub fn encode_empty_frame(out: &mut BytesMut) {
    out.put_slice(&[0, 0, 0, 8, 2, FRAME_TYPE_AMQP, 0, 0]);
}

/// Bytes of a transfer frame that are not payload: the 8-byte header and the
/// encoded performative. It depends on the fields set; `more: true` gives an
/// upper bound for every frame of a multi-frame delivery with the same other
/// fields.
pub fn transfer_frame_overhead(t: &Transfer) -> usize {
    FRAME_HEADER_SIZE + encoded_transfer_len(t)
}

/// How many payload bytes fit in one transfer frame carrying `t` when the
/// peer's max-frame-size is `max_frame_size` (0 if not even the header fits).
pub fn max_transfer_payload(max_frame_size: u32, t: &Transfer) -> usize {
    (max_frame_size as usize).saturating_sub(transfer_frame_overhead(t))
}

/// The most a transfer performative without a delivery state encodes to,
/// besides its delivery tag: descriptor 3, list32 header 9, handle,
/// delivery-id and message-format 5 each, the tag's vbin32 header 5,
/// settled 1, more 1, rcv-settle-mode 2, state (null) 1, resume, aborted
/// and batchable 1 each.
const TRANSFER_STATELESS_MAX: usize = 3 + 9 + 5 + 5 + 5 + 5 + 1 + 1 + 2 + 1 + 1 + 1 + 1;

/// At most [`max_transfer_payload`], without laying the performative out:
/// `None` when `t` carries a delivery state (whose size only encoding
/// tells). A payload that fits within it fits the frame, so a sender asks
/// for the exact room only for payloads larger than this.
pub fn transfer_payload_lower_bound(max_frame_size: u32, t: &Transfer) -> Option<usize> {
    if t.state.is_some() {
        return None;
    }
    let tag = t
        .delivery_tag
        .as_ref()
        .map_or(0, |tag| tag.as_slice().len());
    Some((max_frame_size as usize).saturating_sub(FRAME_HEADER_SIZE + TRANSFER_STATELESS_MAX + tag))
}
