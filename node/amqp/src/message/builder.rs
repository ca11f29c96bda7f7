//! [`MessageBuilder`]: canonical messages for tests and tools.

use bytes::{BufMut, Bytes, BytesMut};

use super::encoded::MessageId;
use super::primitive;
use super::scan::SectionKind;
use crate::codec::format_code as fc;

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
            out.put_slice(&[fc::DESCRIBED, fc::SMALLULONG, kind.code() as u8]);
        }
        fn list_fields(out: &mut BytesMut, fields: &[Option<Vec<u8>>]) {
            let used = fields
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |i| i + 1);
            let items: Vec<&[u8]> = fields[..used]
                .iter()
                .map(|f| f.as_deref().unwrap_or(&[fc::NULL]))
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
