//! The zero-copy view of one message: [`MessageView::parse`] records where
//! the sections lie; the readers decode single fields on demand.

use std::ops::Range;

use bytes::Bytes;

use super::encoded::{Encoded, Entries, Items, MessageId};
use super::scan::{
    Body, SectionKind, Sections, Span, byte_at, list_field, read_descriptor, skip_section_value,
    skip_value,
};
use super::{Fault, MessageError, Problem};
use crate::codec::format_code as fc;

/// A parsed AMQP 1.0 message: the bytes and where each section lies.
///
/// Cloning is cheap (the `Bytes` is reference counted).
#[derive(Debug, Clone)]
pub struct MessageView {
    pub(super) bytes: Bytes,
    pub(super) sections: Sections,
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
            if buf[pos] != fc::DESCRIBED {
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

    pub(super) fn encoded(&self, span: Span) -> Encoded<'_> {
        Encoded {
            bytes: &self.bytes[span.value_range()],
            offset: span.value as usize,
        }
    }

    /// The elements of a list section's value (header, properties).
    pub(super) fn fields(&self, span: Span, what: &'static str) -> Result<Items<'_>, Fault> {
        Items::of(&self.bytes, span.value as usize, span.end as usize, 0, what)
    }

    /// Field `index` of a list section, `None` when the section or the field is
    /// absent or null.
    #[inline]
    pub(super) fn field(
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

    pub(super) fn property<T>(
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
}

/// The payloads of a message's data sections.
#[derive(Debug, Clone)]
pub struct DataSections<'a> {
    pub(super) bytes: &'a Bytes,
    pub(super) pos: usize,
    pub(super) end: usize,
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
        let header = if byte_at(buf, value).ok()? == fc::VBIN8 {
            2
        } else {
            5
        };
        self.pos = end;
        Some(self.bytes.slice(value + header..end))
    }
}
