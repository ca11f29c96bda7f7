//! The splice: the outgoing message as header, delivery-annotations (kept
//! or dropped), new message-annotations and the bare message exactly as
//! received (AMQP 1.0 part 3.2: the bare message is immutable).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::encoded::Entries;
use super::primitive;
use super::scan::SectionKind;
use super::view::MessageView;
use super::{Fault, MessageError};
use crate::codec::format_code as fc;

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

impl MessageView {
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
    out.put_slice(&[
        fc::DESCRIBED,
        fc::SMALLULONG,
        SectionKind::MessageAnnotations.code() as u8,
    ]);
    if body_len < 255 && count <= 255 {
        out.put_slice(&[fc::MAP8, (body_len + 1) as u8, count as u8]);
    } else {
        out.put_u8(fc::MAP32);
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
        let overridden = matches!(k.format_code(), fc::SYM8 | fc::SYM32 | fc::STR8 | fc::STR32)
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
