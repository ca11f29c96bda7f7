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
//!
//! - [`scan`]: the one pass that finds the sections, and the low-level
//!   scanning (value sizes, section descriptors) everything else builds on;
//! - [`view`]: [`MessageView`], reading header and properties fields and
//!   annotations on demand, as [`Encoded`] values ([`encoded`]);
//! - [`splice`]: the outgoing message with new message-annotations;
//! - [`primitive`] encoders, and [`MessageBuilder`] ([`builder`]) for tests
//!   and tools.

mod builder;
mod encoded;
pub mod primitive;
mod scan;
mod splice;
mod view;

pub use builder::MessageBuilder;
pub use encoded::{Encoded, Entries, Items, MessageId};
pub use scan::{Body, SectionKind};
pub use splice::{DeliveryAnnotations, MessageAnnotations, Spliced, encode_message_annotations};
pub use view::{DataSections, MessageView};

/// `header.priority` of an encoded message (or of its first part), read by
/// peeking at its first bytes: `None` when the message does not start with
/// a header, the header has no priority, or the header is not in one of the
/// compact forms senders write (`list0`, `list8`, `list32` with a boolean
/// or null `durable` first). Never fails and never scans further; the
/// router's per-delivery priority comes from here (the full reader is
/// [`MessageView::priority`]).
pub fn header_priority(message: &[u8]) -> Option<u8> {
    let rest = match message {
        [0x00, 0x53, 0x70, rest @ ..] => rest,
        [0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x70, rest @ ..] => rest,
        _ => return None,
    };
    let (count, fields) = match rest {
        [0xc0, _size, count, fields @ ..] => (u32::from(*count), fields),
        [0xd0, _, _, _, _, c0, c1, c2, c3, fields @ ..] => {
            (u32::from_be_bytes([*c0, *c1, *c2, *c3]), fields)
        }
        _ => return None,
    };
    if count < 2 {
        return None;
    }
    let after_durable = match fields {
        // null, true, false
        [0x40..=0x42, rest @ ..] => rest,
        [0x56, _, rest @ ..] => rest,
        _ => return None,
    };
    match after_durable {
        [0x50, p, ..] => Some(*p),
        _ => None,
    }
}

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
        crate::error::condition::DECODE_ERROR
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
