//! The scanner: the one pass over a message that records where its
//! sections lie ([`Sections::scan`]), and the low-level reading it is built
//! on: the size of an encoded value without decoding it, a section's
//! descriptor, the type each section must hold.

use std::ops::Range;

use super::{Fault, MessageError, Problem};
use crate::codec::format_code as fc;

/// Deepest nesting of described values the scanner follows.
const MAX_DEPTH: u8 = 32;

#[inline(always)]
pub(super) fn byte_at(buf: &[u8], pos: usize) -> Result<u8, Fault> {
    match buf.get(pos) {
        Some(b) => Ok(*b),
        None => Err(Fault::at(Problem::Truncated, pos)),
    }
}

#[inline(always)]
pub(super) fn u32_at(buf: &[u8], pos: usize) -> Result<u32, Fault> {
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
    match code {
        // list (and array, which this checks alike): every element takes
        // at least one byte
        fc::LIST8 | fc::LIST32 | fc::ARRAY8 | fc::ARRAY32 if count > elements => Err(bad),
        // map: key/value pairs, one byte each at least
        fc::MAP8 | fc::MAP32 if count > elements || !count.is_multiple_of(2) => Err(bad),
        _ => Ok(()),
    }
}

/// Returns the end offset of the encoded value starting at `pos`, checking
/// that it lies within `buf`. Compounds are skipped by their size without
/// looking at their elements.
#[inline(always)]
pub(super) fn skip_value(buf: &[u8], pos: usize, depth: u8) -> Result<usize, Fault> {
    let code = byte_at(buf, pos)?;
    if code != fc::DESCRIBED {
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
    if code != fc::DESCRIBED {
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
        fc::NULL..=fc::LIST0 => Ok(p),
        fc::UBYTE..=fc::BOOLEAN => end_within(buf, pos, p, 1),
        fc::USHORT | fc::SHORT => end_within(buf, pos, p, 2),
        fc::UINT..=fc::DECIMAL32 => end_within(buf, pos, p, 4),
        fc::ULONG..=fc::DECIMAL64 => end_within(buf, pos, p, 8),
        fc::DECIMAL128 | fc::UUID => end_within(buf, pos, p, 16),
        fc::VBIN8 | fc::STR8 | fc::SYM8 => {
            let size = byte_at(buf, p)? as usize;
            end_within(buf, pos, p + 1, size)
        }
        fc::VBIN32 | fc::STR32 | fc::SYM32 => {
            let size = u32_at(buf, p)? as usize;
            end_within(buf, pos, p + 4, size)
        }
        fc::LIST8 | fc::MAP8 | fc::ARRAY8 => {
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
        fc::LIST32 | fc::MAP32 | fc::ARRAY32 => {
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

    pub(super) fn section_name(self) -> &'static str {
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
    pub(super) fn rank(self) -> u8 {
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
pub(super) struct Span {
    /// Offset of the section's `0x00` descriptor constructor.
    pub(super) start: u32,
    /// Offset of the section value's constructor.
    pub(super) value: u32,
    /// Offset just past the section.
    pub(super) end: u32,
}

impl Span {
    pub(super) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
    pub(super) fn value_range(self) -> Range<usize> {
        self.value as usize..self.end as usize
    }
}

/// The body sections of a message: one or more data sections, one or more
/// amqp-sequence sections, or one amqp-value section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    pub(super) kind: SectionKind,
    pub(super) count: u32,
    pub(super) span: Span,
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
pub(super) fn read_descriptor(buf: &[u8], pos: usize) -> Result<(SectionKind, usize), Fault> {
    let unknown = Fault::at(Problem::UnknownDescriptor, pos);
    match byte_at(buf, pos)? {
        fc::SMALLULONG => {
            let code = byte_at(buf, pos + 1)?;
            let kind = SectionKind::from_code(code as u64).ok_or(unknown)?;
            Ok((kind, pos + 2))
        }
        fc::ULONG => {
            let code = u64_at(buf, pos + 1)?;
            let kind = SectionKind::from_code(code).ok_or(unknown)?;
            Ok((kind, pos + 9))
        }
        fc::SYM8 => {
            let len = byte_at(buf, pos + 1)? as usize;
            let end = end_within(buf, pos, pos + 2, len)?;
            let kind = SectionKind::from_symbol(&buf[pos + 2..end]).ok_or(unknown)?;
            Ok((kind, end))
        }
        fc::SYM32 => {
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
pub(super) fn skip_section_value(
    kind: SectionKind,
    buf: &[u8],
    pos: usize,
) -> Result<usize, Fault> {
    let code = byte_at(buf, pos)?;
    let expected = match kind {
        SectionKind::Header | SectionKind::Properties | SectionKind::AmqpSequence => {
            if matches!(code, fc::LIST0 | fc::LIST8 | fc::LIST32) {
                None
            } else {
                Some("a list")
            }
        }
        SectionKind::DeliveryAnnotations
        | SectionKind::MessageAnnotations
        | SectionKind::ApplicationProperties
        | SectionKind::Footer => {
            if matches!(code, fc::MAP8 | fc::MAP32) {
                None
            } else {
                Some("a map")
            }
        }
        SectionKind::Data => {
            if matches!(code, fc::VBIN8 | fc::VBIN32) {
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
        None if code == fc::DESCRIBED => skip_value(buf, pos, 0),
        None => skip_undescribed(buf, pos, code),
    }
}

/// Where the sections of a message lie: what [`MessageView::parse`] records.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sections {
    pub(super) header: Option<Span>,
    pub(super) delivery_annotations: Option<Span>,
    pub(super) message_annotations: Option<Span>,
    pub(super) properties: Option<Span>,
    pub(super) application_properties: Option<Span>,
    pub(super) body: Option<Body>,
    pub(super) footer: Option<Span>,
}

impl Sections {
    /// The one pass over the message that finds its sections.
    #[inline]
    pub(super) fn scan(buf: &[u8]) -> Result<Sections, MessageError> {
        let mut s = Sections::default();
        if buf.len() > u32::MAX as usize {
            return Err(Fault::at(Problem::TooLarge, 0).named("message"));
        }
        let mut pos = 0usize;
        let mut last: Option<SectionKind> = None;
        while pos < buf.len() {
            let start = pos;
            let first = buf[pos];
            if first != fc::DESCRIBED {
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

/// The byte range of element `index` of the list encoded at `pos` (which
/// ends at `buf.len()`), or `None` if the list is shorter or the element null.
#[inline(always)]
pub(super) fn list_field(
    buf: &[u8],
    pos: usize,
    index: usize,
) -> Result<Option<Range<usize>>, Fault> {
    let (mut p, count) = match byte_at(buf, pos)? {
        fc::LIST0 => return Ok(None),
        fc::LIST8 => (pos + 3, byte_at(buf, pos + 2)? as usize),
        fc::LIST32 => (pos + 9, u32_at(buf, pos + 5)? as usize),
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
            fc::NULL => p + 1,
            _ => skip_value(buf, p, 0)?,
        };
    }
    match byte_at(buf, p)? {
        fc::NULL => Ok(None),
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
