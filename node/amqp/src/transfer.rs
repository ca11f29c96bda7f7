//! The transfer hot path: the `transfer` performative (§2.7.5) decoded and
//! encoded directly over bytes, without building a `Value` tree, because it
//! runs once per message frame. Only the rare `state` field goes through the
//! general codec. `Performative::from_value`/`to_value` remain the reference
//! that tests compare this path against.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec;
use super::definitions::{DeliveryState, DeliveryTag, ReceiverSettleMode};
use super::error::FrameError;
use super::error::decode_error;
use super::performatives::{Transfer, code};

// Format codes used by the transfer's fields (§1.6).
const NULL: u8 = 0x40;
const TRUE: u8 = 0x41;
const FALSE: u8 = 0x42;
const BOOLEAN: u8 = 0x56;
const UINT0: u8 = 0x43;
const SMALLUINT: u8 = 0x52;
const UINT: u8 = 0x70;
const UBYTE: u8 = 0x50;
const USHORT: u8 = 0x60;
const VBIN8: u8 = 0xa0;
const VBIN32: u8 = 0xb0;
const LIST0: u8 = 0x45;
const LIST8: u8 = 0xc0;
const LIST32: u8 = 0xd0;
const DESCRIBED: u8 = 0x00;
const SMALLULONG: u8 = 0x53;
const ULONG: u8 = 0x80;

/// If `body` starts with a numeric descriptor (`0x00 0x53 c` or
/// `0x00 0x80 cccccccc`), its code and length in bytes.
pub(crate) fn peek_descriptor_code(body: &[u8]) -> Option<(u64, usize)> {
    match body {
        [DESCRIBED, SMALLULONG, c, ..] => Some((u64::from(*c), 3)),
        [DESCRIBED, ULONG, rest @ ..] if rest.len() >= 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rest[..8]);
            Some((u64::from_be_bytes(b), 10))
        }
        _ => None,
    }
}

/// A cursor over one list's fields.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl Fields<'_> {
    fn byte(&mut self, field: &str) -> Result<u8, FrameError> {
        if self.pos >= self.end {
            return Err(truncated(field));
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&[u8], FrameError> {
        if n > self.end - self.pos {
            return Err(truncated(field));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be_u32(&mut self, field: &str) -> Result<u32, FrameError> {
        let s = self.take(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn uint(&mut self, field: &str) -> Result<Option<u32>, FrameError> {
        match self.byte(field)? {
            NULL => Ok(None),
            UINT0 => Ok(Some(0)),
            SMALLUINT | UBYTE => Ok(Some(u32::from(self.byte(field)?))),
            USHORT => {
                let s = self.take(2, field)?;
                Ok(Some(u32::from(u16::from_be_bytes([s[0], s[1]]))))
            }
            UINT => Ok(Some(self.be_u32(field)?)),
            other => Err(wrong(field, "uint", other)),
        }
    }

    fn boolean(&mut self, field: &str) -> Result<Option<bool>, FrameError> {
        match self.byte(field)? {
            NULL => Ok(None),
            TRUE => Ok(Some(true)),
            FALSE => Ok(Some(false)),
            BOOLEAN => match self.byte(field)? {
                0 => Ok(Some(false)),
                1 => Ok(Some(true)),
                v => Err(decode_error(format!(
                    "transfer.{field}: invalid boolean byte {v:#04x}"
                ))),
            },
            other => Err(wrong(field, "boolean", other)),
        }
    }

    fn ubyte(&mut self, field: &str) -> Result<Option<u8>, FrameError> {
        match self.byte(field)? {
            NULL => Ok(None),
            UBYTE => Ok(Some(self.byte(field)?)),
            other => Err(wrong(field, "ubyte", other)),
        }
    }

    /// A binary field copied out as a [`DeliveryTag`]: no slice of the
    /// frame, so no reference count touched.
    fn tag(&mut self, field: &str) -> Result<Option<DeliveryTag>, FrameError> {
        let len = match self.byte(field)? {
            NULL => return Ok(None),
            VBIN8 => usize::from(self.byte(field)?),
            VBIN32 => self.be_u32(field)? as usize,
            other => return Err(wrong(field, "binary", other)),
        };
        if len > self.end - self.pos {
            return Err(truncated(field));
        }
        let t = DeliveryTag::from_slice(&self.buf[self.pos..self.pos + len]);
        self.pos += len;
        Ok(Some(t))
    }

    fn state(&mut self) -> Result<Option<DeliveryState>, FrameError> {
        if self.pos >= self.end {
            return Err(truncated("state"));
        }
        if self.buf[self.pos] == NULL {
            self.pos += 1;
            return Ok(None);
        }
        let (v, n) = codec::decode(&self.buf[self.pos..self.end])
            .map_err(|e| decode_error(format!("transfer.state: {e}")))?;
        self.pos += n;
        DeliveryState::from_value(v).map(Some)
    }
}

#[cold]
#[inline(never)]
fn truncated(field: &str) -> FrameError {
    decode_error(format!("transfer.{field}: truncated"))
}

#[cold]
#[inline(never)]
fn wrong(field: &str, expected: &str, code: u8) -> FrameError {
    decode_error(format!(
        "transfer.{field}: expected {expected}, got format code {code:#04x}"
    ))
}

/// Decodes a `transfer` performative at the start of `body` (a frame body,
/// starting at its descriptor) straight from the bytes. Returns the transfer
/// and the number of bytes it took; the message payload follows. The
/// delivery tag is copied out ([`DeliveryTag`] keeps it inline).
pub fn decode_transfer(body: &[u8]) -> Result<(Transfer, usize), FrameError> {
    let Some((c, dlen)) = peek_descriptor_code(body) else {
        return Err(decode_error("transfer: expected a numeric descriptor"));
    };
    if c != code::TRANSFER {
        return Err(decode_error(format!(
            "transfer: unexpected descriptor {c:#x}"
        )));
    }
    let rest = &body[dlen..];
    // List header: (header length, size after the size field, count).
    let (hlen, size, count) = match rest {
        [LIST0, ..] => (1usize, 0usize, 0usize),
        [LIST8, size, count, ..] => (2, usize::from(*size), usize::from(*count)),
        [LIST32, a, b, c, d, e, f, g, h, ..] => (
            5,
            u32::from_be_bytes([*a, *b, *c, *d]) as usize,
            u32::from_be_bytes([*e, *f, *g, *h]) as usize,
        ),
        [LIST8 | LIST32, ..] => return Err(decode_error("transfer: truncated list header")),
        [other, ..] => {
            return Err(decode_error(format!(
                "transfer: expected a list body, got format code {other:#04x}"
            )));
        }
        [] => return Err(decode_error("transfer: missing list body")),
    };
    let start = dlen + hlen;
    let end = match start.checked_add(size) {
        Some(end) if end <= body.len() => end,
        _ => {
            return Err(decode_error(format!(
                "transfer: list size {size} exceeds the frame body ({} bytes)",
                body.len() - start
            )));
        }
    };
    // The count is inside the list size for list8/list32.
    let first = match rest[0] {
        LIST8 => start + 1,
        LIST32 => start + 4,
        _ => start,
    };
    if first > end {
        return Err(decode_error("transfer: list size too small for its count"));
    }
    let mut f = Fields {
        buf: body,
        pos: first,
        end,
    };
    let mut t = Transfer::default();
    let n = count.min(11);
    if n == 0 {
        return Err(decode_error("transfer: mandatory field handle is missing"));
    }
    t.handle = f
        .uint("handle")?
        .ok_or_else(|| decode_error("transfer: mandatory field handle is missing"))?;
    // Straight-line, one test per field: this runs once per message frame.
    if n > 1 {
        t.delivery_id = f.uint("delivery-id")?;
    }
    if n > 2 {
        t.delivery_tag = f.tag("delivery-tag")?;
    }
    if n > 3 {
        t.message_format = f.uint("message-format")?;
    }
    if n > 4 {
        t.settled = f.boolean("settled")?;
    }
    if n > 5 {
        t.more = f.boolean("more")?.unwrap_or(false);
    }
    if n > 6 {
        t.rcv_settle_mode = f
            .ubyte("rcv-settle-mode")?
            .map(ReceiverSettleMode::from_u8)
            .transpose()?;
    }
    if n > 7 {
        t.state = f.state()?;
    }
    if n > 8 {
        t.resume = f.boolean("resume")?.unwrap_or(false);
    }
    if n > 9 {
        t.aborted = f.boolean("aborted")?.unwrap_or(false);
    }
    if n > 10 {
        t.batchable = f.boolean("batchable")?.unwrap_or(false);
    }
    // Fields beyond the eleven of the spec are ignored (the list size says
    // where the performative ends).
    Ok((t, end))
}

fn uint_len(v: u32) -> usize {
    match v {
        0 => 1,
        1..=255 => 2,
        _ => 5,
    }
}

fn put_uint(out: &mut BytesMut, v: u32) {
    match v {
        0 => out.put_u8(UINT0),
        1..=255 => {
            out.put_u8(SMALLUINT);
            out.put_u8(v as u8);
        }
        _ => {
            out.put_u8(UINT);
            out.put_u32(v);
        }
    }
}

fn binary_len(b: &[u8]) -> usize {
    if b.len() <= 255 {
        2 + b.len()
    } else {
        5 + b.len()
    }
}

/// The list count and the encoded length of the transfer's fields (not
/// counting descriptor and list header). `state` is the encoded state.
fn layout(t: &Transfer, state: &[u8]) -> (usize, usize) {
    let present = [
        true,
        t.delivery_id.is_some(),
        t.delivery_tag.is_some(),
        t.message_format.is_some(),
        t.settled.is_some(),
        t.more,
        t.rcv_settle_mode.is_some(),
        t.state.is_some(),
        t.resume,
        t.aborted,
        t.batchable,
    ];
    let count = present.iter().rposition(|p| *p).map_or(0, |i| i + 1);
    let mut len = uint_len(t.handle);
    for (i, _) in present.iter().enumerate().take(count).skip(1) {
        len += match i {
            1 => t.delivery_id.map_or(1, uint_len),
            2 => t.delivery_tag.as_deref().map_or(1, binary_len),
            3 => t.message_format.map_or(1, uint_len),
            6 => t.rcv_settle_mode.map_or(1, |_| 2),
            7 => state.len().max(1),
            // The booleans: one byte each (true, false or null).
            _ => 1,
        };
    }
    (count, len)
}

fn encoded_state(t: &Transfer) -> BytesMut {
    let mut s = BytesMut::new();
    if let Some(state) = &t.state {
        codec::encode(&state.to_value(), &mut s);
    }
    s
}

fn list_header_len(count: usize, len: usize) -> usize {
    if count == 0 {
        1
    } else if len < 255 {
        3
    } else {
        9
    }
}

/// The encoded size of the transfer performative (descriptor, list header
/// and fields), as [`encode_transfer`] writes it.
pub fn encoded_transfer_len(t: &Transfer) -> usize {
    let state = encoded_state(t);
    let (count, len) = layout(t, &state);
    3 + list_header_len(count, len) + len
}

/// Writes a `transfer` performative (descriptor and list) straight into
/// `out`, smallest encodings, trailing defaults and nulls left off.
pub fn encode_transfer(t: &Transfer, out: &mut BytesMut) {
    let state = encoded_state(t);
    let (count, len) = layout(t, &state);
    out.reserve(3 + 9 + len);
    out.put_slice(&[DESCRIBED, SMALLULONG, code::TRANSFER as u8]);
    match list_header_len(count, len) {
        1 => {
            out.put_u8(LIST0);
            return;
        }
        3 => {
            out.put_u8(LIST8);
            out.put_u8((len + 1) as u8);
            out.put_u8(count as u8);
        }
        _ => {
            out.put_u8(LIST32);
            out.put_u32((len + 4) as u32);
            out.put_u32(count as u32);
        }
    }
    put_uint(out, t.handle);
    let put_bool = |out: &mut BytesMut, b: Option<bool>| {
        out.put_u8(match b {
            None => NULL,
            Some(true) => TRUE,
            Some(false) => FALSE,
        })
    };
    let flag = |b: bool| if b { Some(true) } else { None };
    for i in 1..count {
        match i {
            1 => match t.delivery_id {
                Some(v) => put_uint(out, v),
                None => out.put_u8(NULL),
            },
            2 => match &t.delivery_tag {
                Some(b) if b.len() <= 255 => {
                    out.put_u8(VBIN8);
                    out.put_u8(b.len() as u8);
                    out.put_slice(b);
                }
                Some(b) => {
                    out.put_u8(VBIN32);
                    out.put_u32(b.len() as u32);
                    out.put_slice(b);
                }
                None => out.put_u8(NULL),
            },
            3 => match t.message_format {
                Some(v) => put_uint(out, v),
                None => out.put_u8(NULL),
            },
            4 => put_bool(out, t.settled),
            5 => put_bool(out, flag(t.more)),
            6 => match t.rcv_settle_mode {
                Some(m) => {
                    out.put_u8(UBYTE);
                    out.put_u8(m.as_u8());
                }
                None => out.put_u8(NULL),
            },
            7 => {
                if state.is_empty() {
                    out.put_u8(NULL)
                } else {
                    out.put_slice(&state)
                }
            }
            8 => put_bool(out, flag(t.resume)),
            9 => put_bool(out, flag(t.aborted)),
            _ => put_bool(out, flag(t.batchable)),
        }
    }
}

/// Decodes a transfer through the general `Value` path (the reference the
/// hand-written path is tested against).
pub fn decode_transfer_via_value(body: &Bytes) -> Result<Transfer, FrameError> {
    let (v, _) = codec::decode_bytes(body).map_err(|e| decode_error(format!("transfer: {e}")))?;
    match super::performatives::Performative::from_value(v)? {
        super::performatives::Performative::Transfer(t) => Ok(t),
        other => Err(decode_error(format!(
            "transfer: got a {} performative",
            other.name()
        ))),
    }
}
