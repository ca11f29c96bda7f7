//! Encoded values inside a message, read on demand: [`Encoded`] with small
//! decoders for the types the router reads (strings and binaries borrowed
//! from the message), the elements of lists and maps ([`Items`],
//! [`Entries`]), and message ids ([`MessageId`]).

use std::ops::Range;

use bytes::BufMut;

use super::primitive;
use super::scan::{byte_at, skip_value, u32_at};
use super::{Fault, MessageError, Problem};
use crate::codec::format_code as fc;

/// One encoded AMQP value inside a message, with small decoders for the types
/// the router reads. Strings and binaries are borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) offset: usize,
}

impl<'a> Encoded<'a> {
    /// Checks that `bytes` holds exactly one encoded value.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MessageError> {
        let end = skip_value(bytes, 0, 0).map_err(|f| f.named("encoded value"))?;
        if end != bytes.len() {
            return Err(Fault::at(Problem::BadCompound, end).named("encoded value"));
        }
        Ok(Encoded { bytes, offset: 0 })
    }

    /// The value's encoding, constructor included.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Offset of the value in the message it was read from.
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Byte range of the value in the message it was read from.
    #[inline]
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.bytes.len()
    }
    /// The constructor's format code (`0x00` for a described value).
    #[inline]
    pub fn format_code(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(fc::NULL)
    }
    #[inline]
    pub fn is_null(&self) -> bool {
        self.format_code() == fc::NULL
    }

    #[inline]
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
    #[inline]
    pub(super) fn variable_payload(&self) -> &'a [u8] {
        let skip = if matches!(self.format_code(), fc::VBIN8 | fc::STR8 | fc::SYM8) {
            2
        } else {
            5
        };
        self.bytes.get(skip..).unwrap_or(&[])
    }

    #[inline]
    fn fixed<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(b) = self.bytes.get(1..1 + N) {
            out.copy_from_slice(b);
        }
        out
    }

    #[inline]
    fn utf8(&self, payload: &'a [u8]) -> Result<&'a str, Fault> {
        // Addresses are short and ASCII; std's validator is slow to start.
        if payload.len() <= 256 && payload.iter().all(|b| b.is_ascii()) {
            // SAFETY: every byte is ASCII (checked just above), and ASCII is
            // valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(payload) });
        }
        std::str::from_utf8(payload).map_err(|_| Fault::at(Problem::InvalidUtf8, self.offset))
    }

    #[inline]
    pub(super) fn try_string(&self) -> Result<&'a str, Fault> {
        match self.format_code() {
            fc::STR8 | fc::STR32 => self.utf8(self.variable_payload()),
            _ => Err(self.mismatch("a string")),
        }
    }
    #[inline]
    pub(super) fn try_symbol(&self) -> Result<&'a str, Fault> {
        match self.format_code() {
            fc::SYM8 | fc::SYM32 => self.utf8(self.variable_payload()),
            _ => Err(self.mismatch("a symbol")),
        }
    }
    #[inline]
    pub(super) fn try_text(&self) -> Result<&'a str, Fault> {
        match self.format_code() {
            fc::STR8 | fc::STR32 | fc::SYM8 | fc::SYM32 => self.utf8(self.variable_payload()),
            _ => Err(self.mismatch("a string or symbol")),
        }
    }
    #[inline]
    pub(super) fn try_binary(&self) -> Result<&'a [u8], Fault> {
        match self.format_code() {
            fc::VBIN8 | fc::VBIN32 => Ok(self.variable_payload()),
            _ => Err(self.mismatch("binary")),
        }
    }
    #[inline]
    pub(super) fn try_bool(&self) -> Result<bool, Fault> {
        match self.format_code() {
            fc::BOOLEAN_TRUE => Ok(true),
            fc::BOOLEAN_FALSE => Ok(false),
            fc::BOOLEAN => Ok(self.fixed::<1>()[0] != 0),
            _ => Err(self.mismatch("a boolean")),
        }
    }
    #[inline]
    pub(super) fn try_ubyte(&self) -> Result<u8, Fault> {
        match self.format_code() {
            fc::UBYTE => Ok(self.fixed::<1>()[0]),
            _ => Err(self.mismatch("a ubyte")),
        }
    }
    #[inline]
    pub(super) fn try_uint(&self) -> Result<u32, Fault> {
        match self.format_code() {
            fc::UINT0 => Ok(0),
            fc::SMALLUINT => Ok(self.fixed::<1>()[0] as u32),
            fc::UINT => Ok(u32::from_be_bytes(self.fixed::<4>())),
            _ => Err(self.mismatch("a uint")),
        }
    }
    #[inline]
    fn try_ulong(&self) -> Result<u64, Fault> {
        match self.format_code() {
            fc::ULONG0 => Ok(0),
            fc::SMALLULONG => Ok(self.fixed::<1>()[0] as u64),
            fc::ULONG => Ok(u64::from_be_bytes(self.fixed::<8>())),
            _ => Err(self.mismatch("a ulong")),
        }
    }
    #[inline]
    pub(super) fn try_timestamp(&self) -> Result<i64, Fault> {
        match self.format_code() {
            fc::TIMESTAMP => Ok(i64::from_be_bytes(self.fixed::<8>())),
            _ => Err(self.mismatch("a timestamp")),
        }
    }
    #[inline]
    pub(super) fn try_message_id(&self) -> Result<MessageId<'a>, Fault> {
        match self.format_code() {
            fc::ULONG0 | fc::SMALLULONG | fc::ULONG => self.try_ulong().map(MessageId::Ulong),
            fc::UUID => Ok(MessageId::Uuid(self.fixed::<16>())),
            fc::VBIN8 | fc::VBIN32 => Ok(MessageId::Binary(self.variable_payload())),
            fc::STR8 | fc::STR32 => self.try_string().map(MessageId::String),
            _ => Err(self.mismatch("a message-id (ulong, uuid, binary or string)")),
        }
    }
    #[inline]
    fn try_items(&self) -> Result<Items<'a>, Fault> {
        Items::of(self.bytes, 0, self.bytes.len(), self.offset, "list item")
    }

    /// A string (str8/str32).
    #[inline]
    pub fn as_string(&self) -> Result<&'a str, MessageError> {
        self.try_string().map_err(|f| f.named("string value"))
    }
    /// A symbol (sym8/sym32).
    #[inline]
    pub fn as_symbol(&self) -> Result<&'a str, MessageError> {
        self.try_symbol().map_err(|f| f.named("symbol value"))
    }
    /// A string or a symbol.
    #[inline]
    pub fn as_text(&self) -> Result<&'a str, MessageError> {
        self.try_text().map_err(|f| f.named("string value"))
    }
    #[inline]
    pub fn as_binary(&self) -> Result<&'a [u8], MessageError> {
        self.try_binary().map_err(|f| f.named("binary value"))
    }
    #[inline]
    pub fn as_bool(&self) -> Result<bool, MessageError> {
        self.try_bool().map_err(|f| f.named("boolean value"))
    }
    #[inline]
    pub fn as_uint(&self) -> Result<u32, MessageError> {
        self.try_uint().map_err(|f| f.named("uint value"))
    }
    #[inline]
    pub fn as_ulong(&self) -> Result<u64, MessageError> {
        self.try_ulong().map_err(|f| f.named("ulong value"))
    }
    #[inline]
    pub fn as_timestamp(&self) -> Result<i64, MessageError> {
        self.try_timestamp().map_err(|f| f.named("timestamp value"))
    }
    /// The elements of a list (list0/list8/list32).
    #[inline]
    pub fn as_list(&self) -> Result<Items<'a>, MessageError> {
        match self.format_code() {
            fc::LIST0 | fc::LIST8 | fc::LIST32 => {
                self.try_items().map_err(|f| f.named("list value"))
            }
            _ => Err(self.mismatch("a list").named("list value")),
        }
    }
    /// The entries of a map (map8/map32).
    #[inline]
    pub fn as_map(&self) -> Result<Entries<'a>, MessageError> {
        match self.format_code() {
            fc::MAP8 | fc::MAP32 => Ok(Entries {
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
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) remaining: u32,
    /// Offset of `buf[0]` in the message, for errors and ranges.
    pub(super) base: usize,
    pub(super) what: &'static str,
}

impl<'a> Items<'a> {
    /// The elements of the list or map encoded at `buf[start..end]`.
    #[inline]
    pub(super) fn of(
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
            fc::LIST0 => (start + 1, 0),
            fc::LIST8 | fc::MAP8 => (start + 3, byte_at(buf, start + 2)? as u32),
            fc::LIST32 | fc::MAP32 => (start + 9, u32_at(buf, start + 5)?),
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

    #[inline]
    pub(super) fn next_fault(&mut self) -> Option<Result<Encoded<'a>, Fault>> {
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
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let what = self.what;
        self.next_fault().map(|r| r.map_err(|f| f.named(what)))
    }
}

/// The key/value entries of an encoded map.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    pub(super) items: Items<'a>,
}

impl<'a> Entries<'a> {
    #[inline]
    pub(super) fn next_fault(&mut self) -> Option<Result<(Encoded<'a>, Encoded<'a>), Fault>> {
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
    #[inline]
    fn find_fault(mut self, key: &str) -> Result<Option<Encoded<'a>>, Fault> {
        while let Some(entry) = self.next_fault() {
            let (k, v) = entry?;
            if matches!(k.format_code(), fc::STR8 | fc::STR32 | fc::SYM8 | fc::SYM32)
                && k.variable_payload() == key.as_bytes()
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The value under a string or symbol key equal to `key`.
    #[inline]
    pub fn find(self, key: &str) -> Result<Option<Encoded<'a>>, MessageError> {
        let what = self.items.what;
        self.find_fault(key).map_err(|f| f.named(what))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(Encoded<'a>, Encoded<'a>), MessageError>;
    #[inline]
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
    #[inline]
    pub fn encode<B: BufMut + ?Sized>(&self, out: &mut B) {
        match *self {
            MessageId::Ulong(v) => primitive::ulong(out, v),
            MessageId::Uuid(v) => primitive::uuid(out, &v),
            MessageId::Binary(v) => primitive::binary(out, v),
            MessageId::String(v) => primitive::string(out, v),
        }
    }
}
