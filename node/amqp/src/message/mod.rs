//! The zero-copy view of one encoded AMQP 1.0 message (the concatenated
//! payloads of a delivery's transfers), and the splice that rewrites its
//! annotations without touching the bare message.
//!
//! This is the router's per-message hot path. [`MessageView::parse`] makes one
//! pass over the sections (header, delivery-annotations, message-annotations,
//! properties, application-properties, body, footer) and records their byte
//! ranges; no section is decoded and the body is never looked into. The readers
//! ([`MessageView::to`], [`MessageView::priority`], ...) decode single fields on
//! demand with small hand-written decoders and borrow strings from the buffer.
//!
//! [`MessageView::splice`] builds the outgoing message as
//! `[header][delivery-annotations?][new message-annotations][bare message]`,
//! where the bare message (properties through footer) is the received bytes,
//! sliced, never re-encoded (AMQP 1.0 part 3.2: the bare message is immutable
//! and may be signed). [`MessageBuilder`] encodes canonical messages for tests
//! and tools, and [`primitive`] holds the few encoders both need.
//!
//! Every malformed input is an [`MessageError`] (condition
//! `amqp:decode-error`); decoding arbitrary bytes never panics.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// The AMQP error condition every [`MessageError`] maps to.
pub const DECODE_ERROR: &str = "amqp:decode-error";

/// Deepest nesting of described values the scanner follows.
const MAX_DEPTH: u8 = 32;

// ---------------------------------------------------------------------------
// Errors

/// A message that is not a well-formed AMQP 1.0 message, or a field of it
/// that does not hold the type the spec requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amqp:decode-error: {what} at offset {offset}: {problem}")]
pub struct MessageError {
    /// What was being decoded: a section (`"properties section"`) or a field
    /// (`"properties.to"`).
    pub what: &'static str,
    /// Byte offset in the message where the problem was found.
    pub offset: usize,
    pub problem: Problem,
}

impl MessageError {
    /// The AMQP error condition to report to the peer.
    pub fn condition(&self) -> &'static str {
        DECODE_ERROR
    }
}

/// What is wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("truncated")]
    Truncated,
    #[error("not a described section (format code 0x{0:02x})")]
    NotDescribed(u8),
    #[error("unknown section descriptor")]
    UnknownDescriptor,
    #[error("out of order: after the {after} section")]
    OutOfOrder { after: &'static str },
    #[error("invalid format code 0x{0:02x}")]
    InvalidFormatCode(u8),
    #[error("format code 0x{found:02x} where {expected} is required")]
    UnexpectedType { found: u8, expected: &'static str },
    #[error("size and count of a compound value disagree")]
    BadCompound,
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("described values nested too deep")]
    TooDeep,
    #[error("message larger than 4 GiB")]
    TooLarge,
}

/// A problem at an offset, before it is given a name.
#[derive(Debug, Clone, Copy)]
struct Fault {
    problem: Problem,
    offset: usize,
}

impl Fault {
    fn at(problem: Problem, offset: usize) -> Self {
        Fault { problem, offset }
    }
    fn named(self, what: &'static str) -> MessageError {
        MessageError {
            what,
            offset: self.offset,
            problem: self.problem,
        }
    }
}

// ---------------------------------------------------------------------------
// Low-level scanning

#[inline(always)]
fn byte_at(buf: &[u8], pos: usize) -> Result<u8, Fault> {
    match buf.get(pos) {
        Some(b) => Ok(*b),
        None => Err(Fault::at(Problem::Truncated, pos)),
    }
}

#[inline(always)]
fn u32_at(buf: &[u8], pos: usize) -> Result<u32, Fault> {
    match buf.get(pos..pos + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(Fault::at(Problem::Truncated, pos)),
    }
}

#[inline(always)]
fn u64_at(buf: &[u8], pos: usize) -> Result<u64, Fault> {
    match buf.get(pos..pos + 8) {
        Some(b) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_be_bytes(a))
        }
        None => Err(Fault::at(Problem::Truncated, pos)),
    }
}

/// `pos + n`, failing as truncated when it passes the end of `buf`.
#[inline(always)]
fn end_within(buf: &[u8], start: usize, pos: usize, n: usize) -> Result<usize, Fault> {
    match pos.checked_add(n) {
        Some(end) if end <= buf.len() => Ok(end),
        _ => Err(Fault::at(Problem::Truncated, start)),
    }
}

/// Checks a compound's size against its element count: `width` is 1 or 4,
/// `size` counts the count field and the elements.
#[inline(always)]
fn check_compound(
    code: u8,
    start: usize,
    size: usize,
    count: usize,
    width: usize,
) -> Result<(), Fault> {
    let bad = Fault::at(Problem::BadCompound, start);
    let elements = size.checked_sub(width).ok_or(bad)?;
    match code & 0x0f {
        // list: every element takes at least one byte
        0x0 if count > elements => Err(bad),
        // map: key/value pairs, one byte each at least
        0x1 if count > elements || !count.is_multiple_of(2) => Err(bad),
        _ => Ok(()),
    }
}

/// Returns the end offset of the encoded value starting at `pos`, checking
/// that it lies within `buf`. Compounds are skipped by their size without
/// looking at their elements.
#[inline(always)]
fn skip_value(buf: &[u8], pos: usize, depth: u8) -> Result<usize, Fault> {
    let code = byte_at(buf, pos)?;
    if code != 0x00 {
        return skip_undescribed(buf, pos, code);
    }
    skip_described(buf, pos, depth)
}

/// [`skip_value`] for a described value (`0x00` at `pos`).
#[inline(never)]
fn skip_described(buf: &[u8], pos: usize, depth: u8) -> Result<usize, Fault> {
    if depth >= MAX_DEPTH {
        return Err(Fault::at(Problem::TooDeep, pos));
    }
    let after_descriptor = skip_described_or_not(buf, pos + 1, depth + 1)?;
    skip_described_or_not(buf, after_descriptor, depth + 1)
}

fn skip_described_or_not(buf: &[u8], pos: usize, depth: u8) -> Result<usize, Fault> {
    let code = byte_at(buf, pos)?;
    if code != 0x00 {
        return skip_undescribed(buf, pos, code);
    }
    skip_described(buf, pos, depth)
}

/// [`skip_value`] for a value whose constructor `code` (at `pos`) is not
/// `0x00`: no recursion, so it inlines into the section scan.
#[inline(always)]
fn skip_undescribed(buf: &[u8], pos: usize, code: u8) -> Result<usize, Fault> {
    let p = pos + 1;
    match code {
        0x40..=0x45 => Ok(p),
        0x50..=0x56 => end_within(buf, pos, p, 1),
        0x60 | 0x61 => end_within(buf, pos, p, 2),
        0x70..=0x74 => end_within(buf, pos, p, 4),
        0x80..=0x84 => end_within(buf, pos, p, 8),
        0x94 | 0x98 => end_within(buf, pos, p, 16),
        0xa0 | 0xa1 | 0xa3 => {
            let size = byte_at(buf, p)? as usize;
            end_within(buf, pos, p + 1, size)
        }
        0xb0 | 0xb1 | 0xb3 => {
            let size = u32_at(buf, p)? as usize;
            end_within(buf, pos, p + 4, size)
        }
        0xc0 | 0xc1 | 0xe0 => {
            let size = byte_at(buf, p)? as usize;
            let end = end_within(buf, pos, p + 1, size)?;
            let count = if size >= 1 {
                byte_at(buf, p + 1)? as usize
            } else {
                0
            };
            check_compound(code, pos, size, count, 1)?;
            Ok(end)
        }
        0xd0 | 0xd1 | 0xf0 => {
            let size = u32_at(buf, p)? as usize;
            let end = end_within(buf, pos, p + 4, size)?;
            let count = if size >= 4 {
                u32_at(buf, p + 4)? as usize
            } else {
                0
            };
            check_compound(code, pos, size, count, 4)?;
            Ok(end)
        }
        other => Err(Fault::at(Problem::InvalidFormatCode(other), pos)),
    }
}

// ---------------------------------------------------------------------------
// Sections

/// The kinds of section a message is made of, in the order the spec requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    Header,
    DeliveryAnnotations,
    MessageAnnotations,
    Properties,
    ApplicationProperties,
    Data,
    AmqpSequence,
    AmqpValue,
    Footer,
}

impl SectionKind {
    /// The section's numeric descriptor (`0x70` for header ... `0x78` for footer).
    pub fn code(self) -> u64 {
        match self {
            SectionKind::Header => 0x70,
            SectionKind::DeliveryAnnotations => 0x71,
            SectionKind::MessageAnnotations => 0x72,
            SectionKind::Properties => 0x73,
            SectionKind::ApplicationProperties => 0x74,
            SectionKind::Data => 0x75,
            SectionKind::AmqpSequence => 0x76,
            SectionKind::AmqpValue => 0x77,
            SectionKind::Footer => 0x78,
        }
    }

    /// The section's symbolic descriptor (`amqp:header:list`, ...).
    pub fn symbol(self) -> &'static str {
        match self {
            SectionKind::Header => "amqp:header:list",
            SectionKind::DeliveryAnnotations => "amqp:delivery-annotations:map",
            SectionKind::MessageAnnotations => "amqp:message-annotations:map",
            SectionKind::Properties => "amqp:properties:list",
            SectionKind::ApplicationProperties => "amqp:application-properties:map",
            SectionKind::Data => "amqp:data:binary",
            SectionKind::AmqpSequence => "amqp:amqp-sequence:list",
            SectionKind::AmqpValue => "amqp:amqp-value:*",
            SectionKind::Footer => "amqp:footer:map",
        }
    }

    /// The name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Header => "header",
            SectionKind::DeliveryAnnotations => "delivery-annotations",
            SectionKind::MessageAnnotations => "message-annotations",
            SectionKind::Properties => "properties",
            SectionKind::ApplicationProperties => "application-properties",
            SectionKind::Data => "data",
            SectionKind::AmqpSequence => "amqp-sequence",
            SectionKind::AmqpValue => "amqp-value",
            SectionKind::Footer => "footer",
        }
    }

    fn section_name(self) -> &'static str {
        match self {
            SectionKind::Header => "header section",
            SectionKind::DeliveryAnnotations => "delivery-annotations section",
            SectionKind::MessageAnnotations => "message-annotations section",
            SectionKind::Properties => "properties section",
            SectionKind::ApplicationProperties => "application-properties section",
            SectionKind::Data => "data section",
            SectionKind::AmqpSequence => "amqp-sequence section",
            SectionKind::AmqpValue => "amqp-value section",
            SectionKind::Footer => "footer section",
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0x70 => SectionKind::Header,
            0x71 => SectionKind::DeliveryAnnotations,
            0x72 => SectionKind::MessageAnnotations,
            0x73 => SectionKind::Properties,
            0x74 => SectionKind::ApplicationProperties,
            0x75 => SectionKind::Data,
            0x76 => SectionKind::AmqpSequence,
            0x77 => SectionKind::AmqpValue,
            0x78 => SectionKind::Footer,
            _ => return None,
        })
    }

    fn from_symbol(symbol: &[u8]) -> Option<Self> {
        Some(match symbol {
            b"amqp:header:list" => SectionKind::Header,
            b"amqp:delivery-annotations:map" => SectionKind::DeliveryAnnotations,
            b"amqp:message-annotations:map" => SectionKind::MessageAnnotations,
            b"amqp:properties:list" => SectionKind::Properties,
            b"amqp:application-properties:map" => SectionKind::ApplicationProperties,
            b"amqp:data:binary" => SectionKind::Data,
            b"amqp:amqp-sequence:list" => SectionKind::AmqpSequence,
            b"amqp:amqp-value:*" => SectionKind::AmqpValue,
            b"amqp:footer:map" => SectionKind::Footer,
            _ => return None,
        })
    }

    /// Position in the spec's order; the three body kinds share one.
    fn rank(self) -> u8 {
        match self {
            SectionKind::Header => 0,
            SectionKind::DeliveryAnnotations => 1,
            SectionKind::MessageAnnotations => 2,
            SectionKind::Properties => 3,
            SectionKind::ApplicationProperties => 4,
            SectionKind::Data | SectionKind::AmqpSequence | SectionKind::AmqpValue => 5,
            SectionKind::Footer => 6,
        }
    }
}

/// Where one section (or the run of body sections) lies in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// Offset of the section's `0x00` descriptor constructor.
    start: u32,
    /// Offset of the section value's constructor.
    value: u32,
    /// Offset just past the section.
    end: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
    fn value_range(self) -> Range<usize> {
        self.value as usize..self.end as usize
    }
}

/// The body sections of a message: one or more data sections, one or more
/// amqp-sequence sections, or one amqp-value section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    kind: SectionKind,
    count: u32,
    span: Span,
}

impl Body {
    /// [`SectionKind::Data`], [`SectionKind::AmqpSequence`] or [`SectionKind::AmqpValue`].
    pub fn kind(&self) -> SectionKind {
        self.kind
    }
    /// How many body sections there are.
    pub fn section_count(&self) -> usize {
        self.count as usize
    }
    /// Byte range of all body sections together.
    pub fn range(&self) -> Range<usize> {
        self.span.range()
    }
}

/// Reads a section descriptor at `pos` (just after the `0x00`).
#[inline(always)]
fn read_descriptor(buf: &[u8], pos: usize) -> Result<(SectionKind, usize), Fault> {
    let unknown = Fault::at(Problem::UnknownDescriptor, pos);
    match byte_at(buf, pos)? {
        0x53 => {
            let code = byte_at(buf, pos + 1)?;
            let kind = SectionKind::from_code(code as u64).ok_or(unknown)?;
            Ok((kind, pos + 2))
        }
        0x80 => {
            let code = u64_at(buf, pos + 1)?;
            let kind = SectionKind::from_code(code).ok_or(unknown)?;
            Ok((kind, pos + 9))
        }
        0xa3 => {
            let len = byte_at(buf, pos + 1)? as usize;
            let end = end_within(buf, pos, pos + 2, len)?;
            let kind = SectionKind::from_symbol(&buf[pos + 2..end]).ok_or(unknown)?;
            Ok((kind, end))
        }
        0xb3 => {
            let len = u32_at(buf, pos + 1)? as usize;
            let end = end_within(buf, pos, pos + 5, len)?;
            let kind = SectionKind::from_symbol(&buf[pos + 5..end]).ok_or(unknown)?;
            Ok((kind, end))
        }
        _ => Err(unknown),
    }
}

/// Skips a section's value at `pos`, checking it has the type its section requires.
#[inline(always)]
fn skip_section_value(kind: SectionKind, buf: &[u8], pos: usize) -> Result<usize, Fault> {
    let code = byte_at(buf, pos)?;
    let expected = match kind {
        SectionKind::Header | SectionKind::Properties | SectionKind::AmqpSequence => {
            if matches!(code, 0x45 | 0xc0 | 0xd0) {
                None
            } else {
                Some("a list")
            }
        }
        SectionKind::DeliveryAnnotations
        | SectionKind::MessageAnnotations
        | SectionKind::ApplicationProperties
        | SectionKind::Footer => {
            if matches!(code, 0xc1 | 0xd1) {
                None
            } else {
                Some("a map")
            }
        }
        SectionKind::Data => {
            if matches!(code, 0xa0 | 0xb0) {
                None
            } else {
                Some("binary")
            }
        }
        SectionKind::AmqpValue => None,
    };
    match expected {
        Some(expected) => Err(Fault::at(
            Problem::UnexpectedType {
                found: code,
                expected,
            },
            pos,
        )),
        None if code == 0x00 => skip_value(buf, pos, 0),
        None => skip_undescribed(buf, pos, code),
    }
}

// ---------------------------------------------------------------------------
// Encoded values

/// One encoded AMQP value inside a message, with small decoders for the types
/// the router reads. Strings and binaries are borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Encoded<'a> {
    /// Checks that `bytes` holds exactly one encoded value.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MessageError> {
        let end = skip_value(bytes, 0, 0).map_err(|f| f.named("encoded value"))?;
        if end != bytes.len() {
            return Err(Fault::at(Problem::BadCompound, end).named("encoded value"));
        }
        Ok(Encoded { bytes, offset: 0 })
    }

    /// The value's encoding, constructor included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Offset of the value in the message it was read from.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Byte range of the value in the message it was read from.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.bytes.len()
    }
    /// The constructor's format code (`0x00` for a described value).
    pub fn format_code(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0x40)
    }
    pub fn is_null(&self) -> bool {
        self.format_code() == 0x40
    }

    fn mismatch(&self, expected: &'static str) -> Fault {
        Fault::at(
            Problem::UnexpectedType {
                found: self.format_code(),
                expected,
            },
            self.offset,
        )
    }

    /// The payload of a variable-width value (binary, string, symbol).
    fn variable_payload(&self) -> &'a [u8] {
        let skip = if self.format_code() & 0xf0 == 0xa0 {
            2
        } else {
            5
        };
        self.bytes.get(skip..).unwrap_or(&[])
    }

    fn fixed<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(b) = self.bytes.get(1..1 + N) {
            out.copy_from_slice(b);
        }
        out
    }

    fn utf8(&self, payload: &'a [u8]) -> Result<&'a str, Fault> {
        // Addresses are short and ASCII; std's validator is slow to start.
        if payload.len() <= 256 && payload.iter().all(|b| b.is_ascii()) {
            // SAFETY: every byte is ASCII (checked just above), and ASCII is
            // valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(payload) });
        }
        std::str::from_utf8(payload).map_err(|_| Fault::at(Problem::InvalidUtf8, self.offset))
    }

    fn try_string(&self) -> Result<&'a str, Fault> {
        match self.format_code() {
            0xa1 | 0xb1 => self.utf8(self.variable_payload()),
            _ => Err(self.mismatch("a string")),
        }
    }
    fn try_symbol(&self) -> Result<&'a str, Fault> {
        match self.format_code() {
            0xa3 | 0xb3 => self.utf8(self.variable_payload()),
            _ => Err(self.mismatch("a symbol")),
        }
    }
    fn try_text(&self) -> Result<&'a str, Fault> {
        match self.format_code() {
            0xa1 | 0xb1 | 0xa3 | 0xb3 => self.utf8(self.variable_payload()),
            _ => Err(self.mismatch("a string or symbol")),
        }
    }
    fn try_binary(&self) -> Result<&'a [u8], Fault> {
        match self.format_code() {
            0xa0 | 0xb0 => Ok(self.variable_payload()),
            _ => Err(self.mismatch("binary")),
        }
    }
    fn try_bool(&self) -> Result<bool, Fault> {
        match self.format_code() {
            0x41 => Ok(true),
            0x42 => Ok(false),
            0x56 => Ok(self.fixed::<1>()[0] != 0),
            _ => Err(self.mismatch("a boolean")),
        }
    }
    fn try_ubyte(&self) -> Result<u8, Fault> {
        match self.format_code() {
            0x50 => Ok(self.fixed::<1>()[0]),
            _ => Err(self.mismatch("a ubyte")),
        }
    }
    fn try_uint(&self) -> Result<u32, Fault> {
        match self.format_code() {
            0x43 => Ok(0),
            0x52 => Ok(self.fixed::<1>()[0] as u32),
            0x70 => Ok(u32::from_be_bytes(self.fixed::<4>())),
            _ => Err(self.mismatch("a uint")),
        }
    }
    fn try_ulong(&self) -> Result<u64, Fault> {
        match self.format_code() {
            0x44 => Ok(0),
            0x53 => Ok(self.fixed::<1>()[0] as u64),
            0x80 => Ok(u64::from_be_bytes(self.fixed::<8>())),
            _ => Err(self.mismatch("a ulong")),
        }
    }
    fn try_timestamp(&self) -> Result<i64, Fault> {
        match self.format_code() {
            0x83 => Ok(i64::from_be_bytes(self.fixed::<8>())),
            _ => Err(self.mismatch("a timestamp")),
        }
    }
    fn try_message_id(&self) -> Result<MessageId<'a>, Fault> {
        match self.format_code() {
            0x44 | 0x53 | 0x80 => self.try_ulong().map(MessageId::Ulong),
            0x98 => Ok(MessageId::Uuid(self.fixed::<16>())),
            0xa0 | 0xb0 => Ok(MessageId::Binary(self.variable_payload())),
            0xa1 | 0xb1 => self.try_string().map(MessageId::String),
            _ => Err(self.mismatch("a message-id (ulong, uuid, binary or string)")),
        }
    }
    fn try_items(&self) -> Result<Items<'a>, Fault> {
        Items::of(self.bytes, 0, self.bytes.len(), self.offset, "list item")
    }

    /// A string (str8/str32).
    pub fn as_string(&self) -> Result<&'a str, MessageError> {
        self.try_string().map_err(|f| f.named("string value"))
    }
    /// A symbol (sym8/sym32).
    pub fn as_symbol(&self) -> Result<&'a str, MessageError> {
        self.try_symbol().map_err(|f| f.named("symbol value"))
    }
    /// A string or a symbol.
    pub fn as_text(&self) -> Result<&'a str, MessageError> {
        self.try_text().map_err(|f| f.named("string value"))
    }
    pub fn as_binary(&self) -> Result<&'a [u8], MessageError> {
        self.try_binary().map_err(|f| f.named("binary value"))
    }
    pub fn as_bool(&self) -> Result<bool, MessageError> {
        self.try_bool().map_err(|f| f.named("boolean value"))
    }
    pub fn as_uint(&self) -> Result<u32, MessageError> {
        self.try_uint().map_err(|f| f.named("uint value"))
    }
    pub fn as_ulong(&self) -> Result<u64, MessageError> {
        self.try_ulong().map_err(|f| f.named("ulong value"))
    }
    pub fn as_timestamp(&self) -> Result<i64, MessageError> {
        self.try_timestamp().map_err(|f| f.named("timestamp value"))
    }
    /// The elements of a list (list0/list8/list32).
    pub fn as_list(&self) -> Result<Items<'a>, MessageError> {
        match self.format_code() {
            0x45 | 0xc0 | 0xd0 => self.try_items().map_err(|f| f.named("list value")),
            _ => Err(self.mismatch("a list").named("list value")),
        }
    }
    /// The entries of a map (map8/map32).
    pub fn as_map(&self) -> Result<Entries<'a>, MessageError> {
        match self.format_code() {
            0xc1 | 0xd1 => Ok(Entries {
                items: self.try_items().map_err(|f| f.named("map value"))?,
            }),
            _ => Err(self.mismatch("a map").named("map value")),
        }
    }
}

/// The elements of an encoded list or map, each an [`Encoded`] value.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    /// Ends where the compound ends, so no element can run past it.
    buf: &'a [u8],
    pos: usize,
    remaining: u32,
    /// Offset of `buf[0]` in the message, for errors and ranges.
    base: usize,
    what: &'static str,
}

impl<'a> Items<'a> {
    /// The elements of the list or map encoded at `buf[start..end]`.
    fn of(
        buf: &'a [u8],
        start: usize,
        end: usize,
        base: usize,
        what: &'static str,
    ) -> Result<Self, Fault> {
        let buf = buf
            .get(..end)
            .ok_or(Fault::at(Problem::Truncated, base + start))?;
        let (pos, remaining) = match byte_at(buf, start)? {
            0x45 => (start + 1, 0),
            0xc0 | 0xc1 => (start + 3, byte_at(buf, start + 2)? as u32),
            0xd0 | 0xd1 => (start + 9, u32_at(buf, start + 5)?),
            other => {
                return Err(Fault::at(
                    Problem::UnexpectedType {
                        found: other,
                        expected: "a list or map",
                    },
                    base + start,
                ));
            }
        };
        Ok(Items {
            buf,
            pos,
            remaining,
            base,
            what,
        })
    }

    fn next_fault(&mut self) -> Option<Result<Encoded<'a>, Fault>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match skip_value(self.buf, self.pos, 0) {
            Ok(end) => {
                let item = Encoded {
                    bytes: &self.buf[self.pos..end],
                    offset: self.base + self.pos,
                };
                self.pos = end;
                Some(Ok(item))
            }
            Err(f) => {
                self.remaining = 0;
                Some(Err(Fault::at(f.problem, self.base + f.offset)))
            }
        }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Encoded<'a>, MessageError>;
    fn next(&mut self) -> Option<Self::Item> {
        let what = self.what;
        self.next_fault().map(|r| r.map_err(|f| f.named(what)))
    }
}

/// The key/value entries of an encoded map.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    items: Items<'a>,
}

impl<'a> Entries<'a> {
    fn next_fault(&mut self) -> Option<Result<(Encoded<'a>, Encoded<'a>), Fault>> {
        let key = match self.items.next_fault()? {
            Ok(key) => key,
            Err(f) => return Some(Err(f)),
        };
        match self.items.next_fault() {
            Some(Ok(value)) => Some(Ok((key, value))),
            Some(Err(f)) => Some(Err(f)),
            None => Some(Err(Fault::at(Problem::BadCompound, key.offset))),
        }
    }

    /// The value under a string or symbol key equal to `key`.
    fn find_fault(mut self, key: &str) -> Result<Option<Encoded<'a>>, Fault> {
        while let Some(entry) = self.next_fault() {
            let (k, v) = entry?;
            if matches!(k.format_code(), 0xa1 | 0xb1 | 0xa3 | 0xb3)
                && k.variable_payload() == key.as_bytes()
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The value under a string or symbol key equal to `key`.
    pub fn find(self, key: &str) -> Result<Option<Encoded<'a>>, MessageError> {
        let what = self.items.what;
        self.find_fault(key).map_err(|f| f.named(what))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(Encoded<'a>, Encoded<'a>), MessageError>;
    fn next(&mut self) -> Option<Self::Item> {
        let what = self.items.what;
        self.next_fault().map(|r| r.map_err(|f| f.named(what)))
    }
}

/// A message-id or correlation-id: the four types the spec allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageId<'a> {
    Ulong(u64),
    Uuid([u8; 16]),
    Binary(&'a [u8]),
    String(&'a str),
}

impl MessageId<'_> {
    /// Appends this id's canonical encoding.
    pub fn encode<B: BufMut + ?Sized>(&self, out: &mut B) {
        match *self {
            MessageId::Ulong(v) => primitive::ulong(out, v),
            MessageId::Uuid(v) => primitive::uuid(out, &v),
            MessageId::Binary(v) => primitive::binary(out, v),
            MessageId::String(v) => primitive::string(out, v),
        }
    }
}

// ---------------------------------------------------------------------------
// The view

/// A parsed AMQP 1.0 message: the bytes and where each section lies.
///
/// Cloning is cheap (the `Bytes` is reference counted).
#[derive(Debug, Clone)]
pub struct MessageView {
    bytes: Bytes,
    sections: Sections,
}

/// Where the sections of a message lie: what [`MessageView::parse`] records.
#[derive(Debug, Clone, Copy, Default)]
struct Sections {
    header: Option<Span>,
    delivery_annotations: Option<Span>,
    message_annotations: Option<Span>,
    properties: Option<Span>,
    application_properties: Option<Span>,
    body: Option<Body>,
    footer: Option<Span>,
}

/// Whether a splice keeps the received delivery-annotations section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryAnnotations {
    Keep,
    Drop,
}

/// What a splice puts in the outgoing message-annotations section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageAnnotations<'a> {
    /// The received section, as received (none if there was none).
    Keep,
    /// No message-annotations section.
    Remove,
    /// This already-encoded section (descriptor included), or none if empty.
    /// Not checked: the caller encodes it (e.g. with [`encode_message_annotations`]).
    Replace(Bytes),
    /// The received entries with these `(symbol key, encoded value)` entries
    /// merged in: a received entry whose key is given here is replaced by the
    /// new one, other received entries are kept in order and byte for byte,
    /// the new entries follow. Keys must be distinct.
    Merge(&'a [(&'a str, &'a [u8])]),
}

/// An outgoing message as three chunks for a vectored write: the header and
/// kept delivery-annotations (sliced from the input), the new
/// message-annotations, and the bare message (sliced from the input). Any
/// chunk may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spliced {
    pub head: Bytes,
    pub message_annotations: Bytes,
    pub bare: Bytes,
}

impl Spliced {
    pub fn len(&self) -> usize {
        self.head.len() + self.message_annotations.len() + self.bare.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The chunks in order, for a vectored write.
    pub fn chunks(&self) -> [&Bytes; 3] {
        [&self.head, &self.message_annotations, &self.bare]
    }
    /// The message as one contiguous buffer (copies).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for chunk in self.chunks() {
            out.extend_from_slice(chunk);
        }
        out.freeze()
    }
}

impl Sections {
    /// The one pass over the message that finds its sections.
    #[inline]
    fn scan(buf: &[u8]) -> Result<Sections, MessageError> {
        let mut s = Sections::default();
        if buf.len() > u32::MAX as usize {
            return Err(Fault::at(Problem::TooLarge, 0).named("message"));
        }
        let mut pos = 0usize;
        let mut last: Option<SectionKind> = None;
        while pos < buf.len() {
            let start = pos;
            let first = buf[pos];
            if first != 0x00 {
                let what = match last {
                    Some(kind) => section_after(kind),
                    None => "first section",
                };
                return Err(Fault::at(Problem::NotDescribed(first), pos).named(what));
            }
            let (kind, value) = read_descriptor(buf, pos + 1).map_err(|f| {
                f.named(match last {
                    Some(kind) => section_after(kind),
                    None => "first section",
                })
            })?;
            if let Some(prev) = last {
                let repeat_ok =
                    prev == kind && matches!(kind, SectionKind::Data | SectionKind::AmqpSequence);
                if kind.rank() < prev.rank() || (kind.rank() == prev.rank() && !repeat_ok) {
                    return Err(Fault::at(
                        Problem::OutOfOrder {
                            after: prev.section_name(),
                        },
                        start,
                    )
                    .named(kind.section_name()));
                }
            }
            let end =
                skip_section_value(kind, buf, value).map_err(|f| f.named(kind.section_name()))?;
            let span = Span {
                start: start as u32,
                value: value as u32,
                end: end as u32,
            };
            match kind {
                SectionKind::Header => s.header = Some(span),
                SectionKind::DeliveryAnnotations => s.delivery_annotations = Some(span),
                SectionKind::MessageAnnotations => s.message_annotations = Some(span),
                SectionKind::Properties => s.properties = Some(span),
                SectionKind::ApplicationProperties => s.application_properties = Some(span),
                SectionKind::Footer => s.footer = Some(span),
                SectionKind::Data | SectionKind::AmqpSequence | SectionKind::AmqpValue => {
                    match &mut s.body {
                        Some(body) => {
                            body.count += 1;
                            body.span.end = span.end;
                        }
                        None => {
                            s.body = Some(Body {
                                kind,
                                count: 1,
                                span,
                            })
                        }
                    }
                }
            }
            last = Some(kind);
            pos = end;
        }
        Ok(s)
    }
}

impl MessageView {
    /// Locates the sections of the message in `bytes`, in one pass, without
    /// decoding them. Fails if a section is malformed at its outer level
    /// (descriptor, constructor, size), unknown, or out of the spec's order.
    /// A message with no body section is accepted (its body is `None`).
    pub fn parse(bytes: Bytes) -> Result<Self, MessageError> {
        let sections = Sections::scan(&bytes)?;
        Ok(MessageView { bytes, sections })
    }

    /// Parses only the sections that come before the bare message (header,
    /// delivery-annotations, message-annotations) at the start of `bytes`,
    /// which may be a whole message or only its first part (a streamed
    /// delivery): the view covers exactly those sections, so its
    /// [`MessageView::bare_message_start`] is where the bare message starts
    /// in `bytes`, and a splice of it followed by the rest of `bytes` (and
    /// of the message) is the whole outgoing message. Fails if those
    /// sections are malformed or do not end within `bytes`.
    pub fn parse_head(bytes: &Bytes) -> Result<Self, MessageError> {
        let buf: &[u8] = bytes;
        let mut pos = 0usize;
        while pos < buf.len() {
            if buf[pos] != 0x00 {
                return Err(Fault::at(Problem::NotDescribed(buf[pos]), pos).named("section"));
            }
            let (kind, value) = read_descriptor(buf, pos + 1).map_err(|f| f.named("section"))?;
            if kind.rank() > SectionKind::MessageAnnotations.rank() {
                break;
            }
            pos = skip_section_value(kind, buf, value).map_err(|f| f.named(kind.section_name()))?;
        }
        MessageView::parse(bytes.slice(..pos))
    }

    /// The whole message as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Byte range of a non-body section (use [`MessageView::body`] for the body).
    pub fn section(&self, kind: SectionKind) -> Option<Range<usize>> {
        let span = match kind {
            SectionKind::Header => self.sections.header,
            SectionKind::DeliveryAnnotations => self.sections.delivery_annotations,
            SectionKind::MessageAnnotations => self.sections.message_annotations,
            SectionKind::Properties => self.sections.properties,
            SectionKind::ApplicationProperties => self.sections.application_properties,
            SectionKind::Footer => self.sections.footer,
            SectionKind::Data | SectionKind::AmqpSequence | SectionKind::AmqpValue => {
                return match self.sections.body {
                    Some(body) if body.kind == kind => Some(body.range()),
                    _ => None,
                };
            }
        };
        span.map(Span::range)
    }

    /// The body sections, if there are any.
    pub fn body(&self) -> Option<Body> {
        self.sections.body
    }

    /// Offset where the bare message (properties .. footer) starts: the end of
    /// the annotations, or the end of the message if there is nothing after them.
    pub fn bare_message_start(&self) -> usize {
        self.sections
            .message_annotations
            .or(self.sections.delivery_annotations)
            .or(self.sections.header)
            .map_or(0, |s| s.end as usize)
    }

    /// The bare message (properties through footer, as the splice forwards it),
    /// sliced without copying.
    pub fn bare_message(&self) -> Bytes {
        self.bytes.slice(self.bare_message_start()..)
    }

    /// The payloads of the data sections, sliced without copying.
    pub fn data_sections(&self) -> DataSections<'_> {
        let (pos, end) = match self.sections.body {
            Some(body) if body.kind == SectionKind::Data => {
                (body.span.start as usize, body.span.end as usize)
            }
            _ => (0, 0),
        };
        DataSections {
            bytes: &self.bytes,
            pos,
            end,
        }
    }

    /// The single amqp-value section's value.
    pub fn amqp_value(&self) -> Option<Encoded<'_>> {
        match self.sections.body {
            Some(body) if body.kind == SectionKind::AmqpValue => Some(self.encoded(body.span)),
            _ => None,
        }
    }

    fn encoded(&self, span: Span) -> Encoded<'_> {
        Encoded {
            bytes: &self.bytes[span.value_range()],
            offset: span.value as usize,
        }
    }

    /// The elements of a list section's value (header, properties).
    fn fields(&self, span: Span, what: &'static str) -> Result<Items<'_>, Fault> {
        Items::of(&self.bytes, span.value as usize, span.end as usize, 0, what)
    }

    /// Field `index` of a list section, `None` when the section or the field is
    /// absent or null.
    #[inline]
    fn field(
        &self,
        span: Option<Span>,
        index: usize,
        what: &'static str,
    ) -> Result<Option<Encoded<'_>>, MessageError> {
        let Some(span) = span else { return Ok(None) };
        match list_field(&self.bytes[..span.end as usize], span.value as usize, index) {
            Ok(Some(range)) => Ok(Some(Encoded {
                offset: range.start,
                bytes: &self.bytes[range],
            })),
            Ok(None) => Ok(None),
            Err(f) => Err(f.named(what)),
        }
    }

    fn map_section(&self, span: Option<Span>, what: &'static str) -> Entries<'_> {
        let items = match span.map(|s| self.fields(s, what)) {
            Some(Ok(items)) => items,
            // the scan checked the map header, so this is only the empty case
            _ => Items {
                buf: &[],
                pos: 0,
                remaining: 0,
                base: 0,
                what,
            },
        };
        Entries { items }
    }

    // --- header -----------------------------------------------------------

    /// header.durable (default false).
    pub fn durable(&self) -> Result<bool, MessageError> {
        let what = "header.durable";
        self.field(self.sections.header, 0, what)?
            .map_or(Ok(false), |f| f.try_bool().map_err(|e| e.named(what)))
    }
    /// header.priority (default 4).
    pub fn priority(&self) -> Result<u8, MessageError> {
        let what = "header.priority";
        self.field(self.sections.header, 1, what)?
            .map_or(Ok(4), |f| f.try_ubyte().map_err(|e| e.named(what)))
    }
    /// header.ttl in milliseconds.
    pub fn ttl(&self) -> Result<Option<u32>, MessageError> {
        let what = "header.ttl";
        self.field(self.sections.header, 2, what)?
            .map(|f| f.try_uint().map_err(|e| e.named(what)))
            .transpose()
    }
    /// header.first-acquirer (default false).
    pub fn first_acquirer(&self) -> Result<bool, MessageError> {
        let what = "header.first-acquirer";
        self.field(self.sections.header, 3, what)?
            .map_or(Ok(false), |f| f.try_bool().map_err(|e| e.named(what)))
    }
    /// header.delivery-count (default 0).
    pub fn delivery_count(&self) -> Result<u32, MessageError> {
        let what = "header.delivery-count";
        self.field(self.sections.header, 4, what)?
            .map_or(Ok(0), |f| f.try_uint().map_err(|e| e.named(what)))
    }

    // --- properties -------------------------------------------------------

    fn property<T>(
        &self,
        index: usize,
        what: &'static str,
        read: impl FnOnce(&Encoded<'_>) -> Result<T, Fault>,
    ) -> Result<Option<T>, MessageError> {
        match self.field(self.sections.properties, index, what)? {
            Some(f) => read(&f).map(Some).map_err(|e| e.named(what)),
            None => Ok(None),
        }
    }

    /// properties.message-id.
    pub fn message_id(&self) -> Result<Option<MessageId<'_>>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 0, "properties.message-id")? else {
            return Ok(None);
        };
        f.try_message_id()
            .map(Some)
            .map_err(|e| e.named("properties.message-id"))
    }
    /// properties.user-id.
    pub fn user_id(&self) -> Result<Option<&[u8]>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 1, "properties.user-id")? else {
            return Ok(None);
        };
        f.try_binary()
            .map(Some)
            .map_err(|e| e.named("properties.user-id"))
    }
    /// properties.to (a string; a symbol is accepted too).
    #[inline]
    pub fn to(&self) -> Result<Option<&str>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 2, "properties.to")? else {
            return Ok(None);
        };
        f.try_text().map(Some).map_err(|e| e.named("properties.to"))
    }
    /// properties.subject.
    pub fn subject(&self) -> Result<Option<&str>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 3, "properties.subject")? else {
            return Ok(None);
        };
        f.try_string()
            .map(Some)
            .map_err(|e| e.named("properties.subject"))
    }
    /// properties.reply-to (a string; a symbol is accepted too).
    pub fn reply_to(&self) -> Result<Option<&str>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 4, "properties.reply-to")? else {
            return Ok(None);
        };
        f.try_text()
            .map(Some)
            .map_err(|e| e.named("properties.reply-to"))
    }
    /// properties.correlation-id.
    pub fn correlation_id(&self) -> Result<Option<MessageId<'_>>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 5, "properties.correlation-id")? else {
            return Ok(None);
        };
        f.try_message_id()
            .map(Some)
            .map_err(|e| e.named("properties.correlation-id"))
    }
    /// properties.content-type.
    pub fn content_type(&self) -> Result<Option<&str>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 6, "properties.content-type")? else {
            return Ok(None);
        };
        f.try_symbol()
            .map(Some)
            .map_err(|e| e.named("properties.content-type"))
    }
    /// properties.content-encoding.
    pub fn content_encoding(&self) -> Result<Option<&str>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 7, "properties.content-encoding")?
        else {
            return Ok(None);
        };
        f.try_symbol()
            .map(Some)
            .map_err(|e| e.named("properties.content-encoding"))
    }
    /// properties.absolute-expiry-time, milliseconds since the Unix epoch.
    pub fn absolute_expiry_time(&self) -> Result<Option<i64>, MessageError> {
        self.property(8, "properties.absolute-expiry-time", |f| f.try_timestamp())
    }
    /// properties.creation-time, milliseconds since the Unix epoch.
    pub fn creation_time(&self) -> Result<Option<i64>, MessageError> {
        self.property(9, "properties.creation-time", |f| f.try_timestamp())
    }
    /// properties.group-id.
    pub fn group_id(&self) -> Result<Option<&str>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 10, "properties.group-id")? else {
            return Ok(None);
        };
        f.try_string()
            .map(Some)
            .map_err(|e| e.named("properties.group-id"))
    }
    /// properties.group-sequence.
    pub fn group_sequence(&self) -> Result<Option<u32>, MessageError> {
        self.property(11, "properties.group-sequence", |f| f.try_uint())
    }
    /// properties.reply-to-group-id.
    pub fn reply_to_group_id(&self) -> Result<Option<&str>, MessageError> {
        let Some(f) = self.field(self.sections.properties, 12, "properties.reply-to-group-id")?
        else {
            return Ok(None);
        };
        f.try_string()
            .map(Some)
            .map_err(|e| e.named("properties.reply-to-group-id"))
    }

    // --- maps -------------------------------------------------------------

    /// The entries of the delivery-annotations section (empty if absent).
    pub fn delivery_annotations(&self) -> Entries<'_> {
        self.map_section(
            self.sections.delivery_annotations,
            "delivery-annotations entry",
        )
    }
    /// The entries of the message-annotations section (empty if absent).
    pub fn message_annotations(&self) -> Entries<'_> {
        self.map_section(
            self.sections.message_annotations,
            "message-annotations entry",
        )
    }
    /// The entries of the application-properties section (empty if absent).
    pub fn application_properties(&self) -> Entries<'_> {
        self.map_section(
            self.sections.application_properties,
            "application-properties entry",
        )
    }
    /// The entries of the footer section (empty if absent).
    pub fn footer(&self) -> Entries<'_> {
        self.map_section(self.sections.footer, "footer entry")
    }
    /// The encoded value of the message annotation with symbol key `key`
    /// (e.g. `x-opt-qd.to`, `x-opt-qpid-tracestate`).
    pub fn message_annotation(&self, key: &str) -> Result<Option<Encoded<'_>>, MessageError> {
        self.message_annotations().find(key)
    }
    /// The encoded value of the application property with string key `key`.
    pub fn application_property(&self, key: &str) -> Result<Option<Encoded<'_>>, MessageError> {
        self.application_properties().find(key)
    }

    // --- splice -----------------------------------------------------------

    fn head_end(&self, delivery_annotations: DeliveryAnnotations) -> usize {
        let kept = match delivery_annotations {
            DeliveryAnnotations::Keep => {
                self.sections.delivery_annotations.or(self.sections.header)
            }
            DeliveryAnnotations::Drop => self.sections.header,
        };
        kept.map_or(0, |s| s.end as usize)
    }

    /// Writes the outgoing message-annotations section into `out`.
    fn write_annotations(
        &self,
        edit: &MessageAnnotations<'_>,
        out: &mut BytesMut,
    ) -> Result<(), MessageError> {
        match edit {
            MessageAnnotations::Keep => {
                if let Some(s) = self.sections.message_annotations {
                    out.extend_from_slice(&self.bytes[s.range()]);
                }
                Ok(())
            }
            MessageAnnotations::Remove => Ok(()),
            MessageAnnotations::Replace(section) => {
                out.extend_from_slice(section);
                Ok(())
            }
            MessageAnnotations::Merge(entries) => {
                merge_annotations(self.message_annotations(), entries, out)
                    .map_err(|f| f.named("message-annotations entry"))
            }
        }
    }

    /// The outgoing message as one buffer: header, delivery-annotations (kept
    /// or dropped), the message-annotations `message_annotations` describes,
    /// and the bare message exactly as received.
    pub fn splice(
        &self,
        delivery_annotations: DeliveryAnnotations,
        message_annotations: &MessageAnnotations<'_>,
    ) -> Result<Bytes, MessageError> {
        let mut out = BytesMut::new();
        self.splice_into(delivery_annotations, message_annotations, &mut out)?;
        Ok(out.freeze())
    }

    /// [`MessageView::splice`] appending to `out` (e.g. a connection's reused
    /// write buffer), so that no allocation is needed once it has grown.
    /// On error `out` is left as it was.
    pub fn splice_into(
        &self,
        delivery_annotations: DeliveryAnnotations,
        message_annotations: &MessageAnnotations<'_>,
        out: &mut BytesMut,
    ) -> Result<(), MessageError> {
        let head_end = self.head_end(delivery_annotations);
        let bare = self.bare_message_start();
        let old_ma = self
            .sections
            .message_annotations
            .map_or(0, |s| (s.end - s.start) as usize);
        let extra = match message_annotations {
            MessageAnnotations::Replace(b) => b.len(),
            MessageAnnotations::Merge(entries) => {
                16 + entries
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 5)
                    .sum::<usize>()
            }
            _ => 0,
        };
        let initial = out.len();
        out.reserve(head_end + old_ma + extra + self.bytes.len() - bare);
        out.extend_from_slice(&self.bytes[..head_end]);
        if let Err(e) = self.write_annotations(message_annotations, out) {
            out.truncate(initial);
            return Err(e);
        }
        out.extend_from_slice(&self.bytes[bare..]);
        Ok(())
    }

    /// The outgoing message as chunks for a vectored write: like
    /// [`MessageView::splice`], but header and bare message are slices of the
    /// received bytes and only the message-annotations are newly written.
    pub fn splice_chunks(
        &self,
        delivery_annotations: DeliveryAnnotations,
        message_annotations: &MessageAnnotations<'_>,
    ) -> Result<Spliced, MessageError> {
        let head = self.bytes.slice(..self.head_end(delivery_annotations));
        let annotations = match message_annotations {
            MessageAnnotations::Keep => match self.sections.message_annotations {
                Some(s) => self.bytes.slice(s.range()),
                None => Bytes::new(),
            },
            MessageAnnotations::Remove => Bytes::new(),
            MessageAnnotations::Replace(b) => b.clone(),
            MessageAnnotations::Merge(_) => {
                let mut out = BytesMut::new();
                self.write_annotations(message_annotations, &mut out)?;
                out.freeze()
            }
        };
        Ok(Spliced {
            head,
            message_annotations: annotations,
            bare: self.bare_message(),
        })
    }
}

/// The byte range of element `index` of the list encoded at `pos` (which
/// ends at `buf.len()`), or `None` if the list is shorter or the element null.
#[inline(always)]
fn list_field(buf: &[u8], pos: usize, index: usize) -> Result<Option<Range<usize>>, Fault> {
    let (mut p, count) = match byte_at(buf, pos)? {
        0x45 => return Ok(None),
        0xc0 => (pos + 3, byte_at(buf, pos + 2)? as usize),
        0xd0 => (pos + 9, u32_at(buf, pos + 5)? as usize),
        other => {
            return Err(Fault::at(
                Problem::UnexpectedType {
                    found: other,
                    expected: "a list",
                },
                pos,
            ));
        }
    };
    if index >= count {
        return Ok(None);
    }
    for _ in 0..index {
        p = match byte_at(buf, p)? {
            0x40 => p + 1,
            _ => skip_value(buf, p, 0)?,
        };
    }
    match byte_at(buf, p)? {
        0x40 => Ok(None),
        _ => Ok(Some(p..skip_value(buf, p, 0)?)),
    }
}

fn section_after(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Header => "section after the header",
        SectionKind::DeliveryAnnotations => "section after the delivery-annotations",
        SectionKind::MessageAnnotations => "section after the message-annotations",
        SectionKind::Properties => "section after the properties",
        SectionKind::ApplicationProperties => "section after the application-properties",
        SectionKind::Data => "section after a data section",
        SectionKind::AmqpSequence => "section after an amqp-sequence section",
        SectionKind::AmqpValue => "section after the amqp-value",
        SectionKind::Footer => "section after the footer",
    }
}

/// The payloads of a message's data sections.
#[derive(Debug, Clone)]
pub struct DataSections<'a> {
    bytes: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Iterator for DataSections<'_> {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        if self.pos >= self.end {
            return None;
        }
        // The scan already validated these sections; a failure here ends the
        // iteration rather than panicking.
        let buf: &[u8] = &self.bytes[..self.end];
        let (_, value) = read_descriptor(buf, self.pos + 1).ok()?;
        let end = skip_value(buf, value, 0).ok()?;
        let header = if byte_at(buf, value).ok()? == 0xa0 {
            2
        } else {
            5
        };
        self.pos = end;
        Some(self.bytes.slice(value + header..end))
    }
}

// ---------------------------------------------------------------------------
// Annotations encoding

/// Length of a symbol's encoding.
fn symbol_len(s: &str) -> usize {
    s.len() + if s.len() <= 255 { 2 } else { 5 }
}

/// Writes a message-annotations section holding `kept` bytes of already
/// encoded entries (`kept_count` elements) and then `entries`.
fn write_annotations_section(
    kept: &[&[u8]],
    kept_count: usize,
    entries: &[(&str, &[u8])],
    out: &mut BytesMut,
) {
    let body_len: usize = kept.iter().map(|k| k.len()).sum::<usize>()
        + entries
            .iter()
            .map(|(k, v)| symbol_len(k) + v.len())
            .sum::<usize>();
    let count = kept_count + 2 * entries.len();
    out.reserve(body_len + 12);
    out.put_slice(&[0x00, 0x53, 0x72]);
    if body_len < 255 && count <= 255 {
        out.put_slice(&[0xc1, (body_len + 1) as u8, count as u8]);
    } else {
        out.put_u8(0xd1);
        out.put_u32((body_len + 4) as u32);
        out.put_u32(count as u32);
    }
    for k in kept {
        out.put_slice(k);
    }
    for (k, v) in entries {
        primitive::symbol(out, k);
        out.put_slice(v);
    }
}

/// Encodes a message-annotations section (descriptor included) from
/// `(symbol key, encoded value)` entries, choosing map8 when it fits.
pub fn encode_message_annotations(entries: &[(&str, &[u8])], out: &mut BytesMut) {
    write_annotations_section(&[], 0, entries, out);
}

/// Writes the received `existing` entries, minus those `entries` override,
/// then `entries`, as one message-annotations section.
fn merge_annotations(
    mut existing: Entries<'_>,
    entries: &[(&str, &[u8])],
    out: &mut BytesMut,
) -> Result<(), Fault> {
    // The kept entries are runs of adjacent bytes of the received map; entry
    // offsets are offsets into `source` (the message).
    let source = existing.items.buf;
    let mut runs: Vec<&[u8]> = Vec::new();
    let mut run: Option<Range<usize>> = None;
    let mut kept_count = 0usize;
    while let Some(entry) = existing.next_fault() {
        let (k, v) = entry?;
        let overridden = matches!(k.format_code(), 0xa3 | 0xb3 | 0xa1 | 0xb1)
            && entries
                .iter()
                .any(|(key, _)| key.as_bytes() == k.variable_payload());
        if overridden {
            if let Some(r) = run.take() {
                runs.push(source.get(r).unwrap_or(&[]));
            }
            continue;
        }
        kept_count += 2;
        let entry = k.offset..v.offset + v.bytes.len();
        run = Some(match run {
            Some(r) if r.end == entry.start => r.start..entry.end,
            Some(r) => {
                runs.push(source.get(r).unwrap_or(&[]));
                entry
            }
            None => entry,
        });
    }
    if let Some(r) = run {
        runs.push(source.get(r).unwrap_or(&[]));
    }
    write_annotations_section(&runs, kept_count, entries, out);
    Ok(())
}

// ---------------------------------------------------------------------------
// Primitive encoders

/// Canonical (smallest) encodings of the primitives messages and annotations
/// are built from. Each appends one encoded value to `out`.
pub mod primitive {
    use bytes::BufMut;

    pub fn null<B: BufMut + ?Sized>(out: &mut B) {
        out.put_u8(0x40);
    }
    pub fn boolean<B: BufMut + ?Sized>(out: &mut B, v: bool) {
        out.put_u8(if v { 0x41 } else { 0x42 });
    }
    pub fn ubyte<B: BufMut + ?Sized>(out: &mut B, v: u8) {
        out.put_slice(&[0x50, v]);
    }
    pub fn uint<B: BufMut + ?Sized>(out: &mut B, v: u32) {
        match v {
            0 => out.put_u8(0x43),
            1..=255 => out.put_slice(&[0x52, v as u8]),
            _ => {
                out.put_u8(0x70);
                out.put_u32(v);
            }
        }
    }
    pub fn ulong<B: BufMut + ?Sized>(out: &mut B, v: u64) {
        match v {
            0 => out.put_u8(0x44),
            1..=255 => out.put_slice(&[0x53, v as u8]),
            _ => {
                out.put_u8(0x80);
                out.put_u64(v);
            }
        }
    }
    pub fn long<B: BufMut + ?Sized>(out: &mut B, v: i64) {
        if (-128..=127).contains(&v) {
            out.put_slice(&[0x55, v as i8 as u8]);
        } else {
            out.put_u8(0x81);
            out.put_i64(v);
        }
    }
    /// Milliseconds since the Unix epoch.
    pub fn timestamp<B: BufMut + ?Sized>(out: &mut B, v: i64) {
        out.put_u8(0x83);
        out.put_i64(v);
    }
    pub fn uuid<B: BufMut + ?Sized>(out: &mut B, v: &[u8; 16]) {
        out.put_u8(0x98);
        out.put_slice(v);
    }
    fn variable<B: BufMut + ?Sized>(out: &mut B, code8: u8, v: &[u8]) {
        if v.len() <= 255 {
            out.put_slice(&[code8, v.len() as u8]);
        } else {
            out.put_u8(code8 + 0x10);
            out.put_u32(v.len() as u32);
        }
        out.put_slice(v);
    }
    pub fn binary<B: BufMut + ?Sized>(out: &mut B, v: &[u8]) {
        variable(out, 0xa0, v);
    }
    pub fn string<B: BufMut + ?Sized>(out: &mut B, v: &str) {
        variable(out, 0xa1, v.as_bytes());
    }
    pub fn symbol<B: BufMut + ?Sized>(out: &mut B, v: &str) {
        variable(out, 0xa3, v.as_bytes());
    }
    fn compound<B: BufMut + ?Sized>(out: &mut B, code8: u8, count: usize, items: &[&[u8]]) {
        let len: usize = items.iter().map(|i| i.len()).sum();
        if count == 0 && code8 == 0xc0 {
            out.put_u8(0x45);
            return;
        }
        if len < 255 && count <= 255 {
            out.put_slice(&[code8, (len + 1) as u8, count as u8]);
        } else {
            out.put_u8(code8 + 0x10);
            out.put_u32((len + 4) as u32);
            out.put_u32(count as u32);
        }
        for i in items {
            out.put_slice(i);
        }
    }
    /// A list of already-encoded elements (list0 when empty).
    pub fn list<B: BufMut + ?Sized>(out: &mut B, items: &[&[u8]]) {
        compound(out, 0xc0, items.len(), items);
    }
    /// A map of already-encoded keys and values.
    pub fn map<B: BufMut + ?Sized>(out: &mut B, entries: &[(&[u8], &[u8])]) {
        let flat: Vec<&[u8]> = entries.iter().flat_map(|(k, v)| [*k, *v]).collect();
        compound(out, 0xc1, flat.len(), &flat);
    }
    /// A list of strings (e.g. the router's `x-opt-qd.trace`).
    pub fn string_list<B: BufMut + ?Sized>(out: &mut B, items: &[&str]) {
        let encoded: Vec<Vec<u8>> = items
            .iter()
            .map(|s| {
                let mut v = Vec::with_capacity(s.len() + 5);
                string(&mut v, s);
                v
            })
            .collect();
        let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        list(out, &refs);
    }
    /// Encodes one value with `f` into a new vector.
    pub fn to_vec(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }
}

// ---------------------------------------------------------------------------
// Builder

/// Encodes a message canonically (smallest encodings, trailing null fields
/// omitted). For tests and tools; the router never re-encodes a message.
#[derive(Debug, Clone, Default)]
pub struct MessageBuilder {
    header: [Option<Vec<u8>>; 5],
    delivery_annotations: Vec<(String, Vec<u8>)>,
    message_annotations: Vec<(String, Vec<u8>)>,
    properties: [Option<Vec<u8>>; 13],
    application_properties: Vec<(String, Vec<u8>)>,
    body: Vec<(SectionKind, Vec<u8>)>,
    footer: Vec<(String, Vec<u8>)>,
}

impl MessageBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn header_field(mut self, index: usize, v: Vec<u8>) -> Self {
        self.header[index] = Some(v);
        self
    }
    fn property(mut self, index: usize, v: Vec<u8>) -> Self {
        self.properties[index] = Some(v);
        self
    }

    pub fn durable(self, v: bool) -> Self {
        self.header_field(0, primitive::to_vec(|o| primitive::boolean(o, v)))
    }
    pub fn priority(self, v: u8) -> Self {
        self.header_field(1, primitive::to_vec(|o| primitive::ubyte(o, v)))
    }
    pub fn ttl(self, millis: u32) -> Self {
        self.header_field(2, primitive::to_vec(|o| primitive::uint(o, millis)))
    }
    pub fn first_acquirer(self, v: bool) -> Self {
        self.header_field(3, primitive::to_vec(|o| primitive::boolean(o, v)))
    }
    pub fn delivery_count(self, v: u32) -> Self {
        self.header_field(4, primitive::to_vec(|o| primitive::uint(o, v)))
    }
    pub fn message_id(self, id: MessageId<'_>) -> Self {
        self.property(0, primitive::to_vec(|o| id.encode(o)))
    }
    pub fn user_id(self, v: &[u8]) -> Self {
        self.property(1, primitive::to_vec(|o| primitive::binary(o, v)))
    }
    pub fn to(self, address: &str) -> Self {
        self.property(2, primitive::to_vec(|o| primitive::string(o, address)))
    }
    pub fn subject(self, v: &str) -> Self {
        self.property(3, primitive::to_vec(|o| primitive::string(o, v)))
    }
    pub fn reply_to(self, address: &str) -> Self {
        self.property(4, primitive::to_vec(|o| primitive::string(o, address)))
    }
    pub fn correlation_id(self, id: MessageId<'_>) -> Self {
        self.property(5, primitive::to_vec(|o| id.encode(o)))
    }
    pub fn content_type(self, v: &str) -> Self {
        self.property(6, primitive::to_vec(|o| primitive::symbol(o, v)))
    }
    pub fn absolute_expiry_time(self, millis: i64) -> Self {
        self.property(8, primitive::to_vec(|o| primitive::timestamp(o, millis)))
    }
    pub fn creation_time(self, millis: i64) -> Self {
        self.property(9, primitive::to_vec(|o| primitive::timestamp(o, millis)))
    }
    pub fn group_id(self, v: &str) -> Self {
        self.property(10, primitive::to_vec(|o| primitive::string(o, v)))
    }

    /// Adds a delivery annotation: symbol key, already-encoded value.
    pub fn delivery_annotation(mut self, key: &str, value: Vec<u8>) -> Self {
        self.delivery_annotations.push((key.to_owned(), value));
        self
    }
    /// Adds a message annotation: symbol key, already-encoded value.
    pub fn message_annotation(mut self, key: &str, value: Vec<u8>) -> Self {
        self.message_annotations.push((key.to_owned(), value));
        self
    }
    /// Adds an application property: string key, already-encoded value.
    pub fn application_property(mut self, key: &str, value: Vec<u8>) -> Self {
        self.application_properties.push((key.to_owned(), value));
        self
    }
    /// Adds an application property with a string value.
    pub fn application_property_str(self, key: &str, value: &str) -> Self {
        self.application_property(key, primitive::to_vec(|o| primitive::string(o, value)))
    }
    /// Adds a footer annotation: symbol key, already-encoded value.
    pub fn footer(mut self, key: &str, value: Vec<u8>) -> Self {
        self.footer.push((key.to_owned(), value));
        self
    }
    /// Appends a data section (call repeatedly for several).
    pub fn data(mut self, payload: &[u8]) -> Self {
        let v = primitive::to_vec(|o| primitive::binary(o, payload));
        self.body.push((SectionKind::Data, v));
        self
    }
    /// Appends an amqp-sequence section of already-encoded elements.
    pub fn amqp_sequence(mut self, items: &[&[u8]]) -> Self {
        let v = primitive::to_vec(|o| primitive::list(o, items));
        self.body.push((SectionKind::AmqpSequence, v));
        self
    }
    /// Sets an amqp-value body holding an already-encoded value.
    pub fn amqp_value(mut self, value: Vec<u8>) -> Self {
        self.body.push((SectionKind::AmqpValue, value));
        self
    }
    /// Sets an amqp-value body holding a string.
    pub fn amqp_value_str(self, value: &str) -> Self {
        self.amqp_value(primitive::to_vec(|o| primitive::string(o, value)))
    }

    /// The encoded message.
    pub fn build(&self) -> Bytes {
        let mut out = BytesMut::new();
        fn described(out: &mut BytesMut, kind: SectionKind) {
            out.put_slice(&[0x00, 0x53, kind.code() as u8]);
        }
        fn list_fields(out: &mut BytesMut, fields: &[Option<Vec<u8>>]) {
            let used = fields
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |i| i + 1);
            let items: Vec<&[u8]> = fields[..used]
                .iter()
                .map(|f| f.as_deref().unwrap_or(&[0x40]))
                .collect();
            primitive::list(out, &items);
        }
        fn symbol_map(out: &mut BytesMut, entries: &[(String, Vec<u8>)], symbol_keys: bool) {
            let keys: Vec<Vec<u8>> = entries
                .iter()
                .map(|(k, _)| {
                    primitive::to_vec(|o| {
                        if symbol_keys {
                            primitive::symbol(o, k)
                        } else {
                            primitive::string(o, k)
                        }
                    })
                })
                .collect();
            let pairs: Vec<(&[u8], &[u8])> = keys
                .iter()
                .zip(entries)
                .map(|(k, (_, v))| (k.as_slice(), v.as_slice()))
                .collect();
            primitive::map(out, &pairs);
        }
        if self.header.iter().any(Option::is_some) {
            described(&mut out, SectionKind::Header);
            list_fields(&mut out, &self.header);
        }
        if !self.delivery_annotations.is_empty() {
            described(&mut out, SectionKind::DeliveryAnnotations);
            symbol_map(&mut out, &self.delivery_annotations, true);
        }
        if !self.message_annotations.is_empty() {
            described(&mut out, SectionKind::MessageAnnotations);
            symbol_map(&mut out, &self.message_annotations, true);
        }
        if self.properties.iter().any(Option::is_some) {
            described(&mut out, SectionKind::Properties);
            list_fields(&mut out, &self.properties);
        }
        if !self.application_properties.is_empty() {
            described(&mut out, SectionKind::ApplicationProperties);
            symbol_map(&mut out, &self.application_properties, false);
        }
        for (kind, value) in &self.body {
            described(&mut out, *kind);
            out.put_slice(value);
        }
        if !self.footer.is_empty() {
            described(&mut out, SectionKind::Footer);
            symbol_map(&mut out, &self.footer, true);
        }
        out.freeze()
    }
}
