//! The AMQP 1.0 restricted and composite types that performatives carry:
//! roles, settle modes, the `error` type and its conditions, delivery states
//! and outcomes, and the messaging layer's `source` and `target` terminuses.

use bytes::Bytes;

use super::codec::{Symbol, Value};

/// `fields`: a map keyed by symbol (the codec's).
pub use super::codec::Fields;

/// `role` (transport §2.8.1): `false` is sender, `true` is receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Sender,
    Receiver,
}

/// `sender-settle-mode` (§2.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SenderSettleMode {
    Unsettled,
    Settled,
    #[default]
    Mixed,
}

/// `receiver-settle-mode` (§2.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiverSettleMode {
    #[default]
    First,
    Second,
}

/// The `error` composite type (§2.8.14).
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpError {
    pub condition: Symbol,
    pub description: Option<String>,
    pub info: Option<Fields>,
}

impl AmqpError {
    pub fn new(condition: &str, description: impl Into<String>) -> Self {
        AmqpError {
            condition: Symbol::from(condition),
            description: Some(description.into()),
            info: None,
        }
    }
}

impl From<FrameError> for AmqpError {
    fn from(e: FrameError) -> Self {
        AmqpError::new(e.condition, e.description)
    }
}

/// Error conditions of the spec (§2.8.15 - §2.8.18), kept in the leaf
/// [`crate::error`] module so that the codec can name them.
pub use super::error::condition;

/// Delivery states (§2.8.? and messaging §3.4): the outcomes plus `received`.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryState {
    Received {
        section_number: u32,
        section_offset: u64,
    },
    Accepted,
    Rejected {
        error: Option<AmqpError>,
    },
    Released,
    Modified {
        delivery_failed: bool,
        undeliverable_here: bool,
        message_annotations: Option<Fields>,
    },
    /// A delivery state this engine does not model (e.g. transactional-state),
    /// kept as its descriptor and value so it can be passed on unchanged.
    Other(Value),
}

impl DeliveryState {
    /// `modified` with delivery-failed set: the message was not settled and
    /// may have been processed (a consumer or a neighbour held it when it
    /// was lost).
    pub fn delivery_failed() -> DeliveryState {
        DeliveryState::Modified {
            delivery_failed: true,
            undeliverable_here: false,
            message_annotations: None,
        }
    }

    /// True for the four terminal outcomes of the messaging layer.
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            DeliveryState::Accepted
                | DeliveryState::Rejected { .. }
                | DeliveryState::Released
                | DeliveryState::Modified { .. }
        )
    }
}

/// `terminus-durability` (messaging §3.5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TerminusDurability {
    #[default]
    None,
    Configuration,
    UnsettledState,
}

/// `terminus-expiry-policy` (messaging §3.5.6), a symbol on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TerminusExpiryPolicy {
    LinkDetach,
    #[default]
    SessionEnd,
    ConnectionClose,
    Never,
}

/// `source` (messaging §3.5.3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Source {
    pub address: Option<String>,
    pub durable: TerminusDurability,
    pub expiry_policy: TerminusExpiryPolicy,
    pub timeout: u32,
    pub dynamic: bool,
    pub dynamic_node_properties: Option<Fields>,
    pub distribution_mode: Option<Symbol>,
    pub filter: Option<Vec<(Symbol, Value)>>,
    pub default_outcome: Option<DeliveryState>,
    pub outcomes: Option<Vec<Symbol>>,
    pub capabilities: Option<Vec<Symbol>>,
}

/// `target` (messaging §3.5.4).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    /// A transaction coordinator (`amqp:coordinator:list`, 0x30) rather
    /// than a node: only `capabilities` (the transaction capabilities)
    /// apply, and the link carries declare and discharge messages.
    pub coordinator: bool,
    pub address: Option<String>,
    pub durable: TerminusDurability,
    pub expiry_policy: TerminusExpiryPolicy,
    pub timeout: u32,
    pub dynamic: bool,
    pub dynamic_node_properties: Option<Fields>,
    pub capabilities: Option<Vec<Symbol>>,
}

/// A delivery tag: up to 32 opaque bytes (§2.8.7), kept inline, so that
/// taking one out of a received frame, cloning and dropping it touch no
/// reference count shared with the frame's other slices (the read buffer's
/// count is written by the thread that reads and by the threads that drop
/// the messages cut from it). A longer tag, against the spec but sent by
/// some stacks, is accepted and kept on the heap.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeliveryTag(TagRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum TagRepr {
    Inline {
        len: u8,
        bytes: [u8; DeliveryTag::MAX_INLINE],
    },
    Heap(Bytes),
}

impl DeliveryTag {
    /// The longest tag the spec allows, and the longest kept inline.
    pub const MAX_INLINE: usize = 32;

    pub fn from_slice(tag: &[u8]) -> Self {
        if tag.len() <= Self::MAX_INLINE {
            let mut bytes = [0u8; Self::MAX_INLINE];
            bytes[..tag.len()].copy_from_slice(tag);
            DeliveryTag(TagRepr::Inline {
                len: tag.len() as u8,
                bytes,
            })
        } else {
            DeliveryTag(TagRepr::Heap(Bytes::copy_from_slice(tag)))
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            TagRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            TagRepr::Heap(b) => b,
        }
    }

    /// The tag as `Bytes` (a copy), for APIs that take `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            TagRepr::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            TagRepr::Heap(b) => b.clone(),
        }
    }
}

impl Default for DeliveryTag {
    fn default() -> Self {
        Self::from_slice(&[])
    }
}

impl std::ops::Deref for DeliveryTag {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for DeliveryTag {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<&[u8]> for DeliveryTag {
    fn from(tag: &[u8]) -> Self {
        Self::from_slice(tag)
    }
}

impl<const N: usize> From<&[u8; N]> for DeliveryTag {
    fn from(tag: &[u8; N]) -> Self {
        Self::from_slice(tag)
    }
}

impl From<Bytes> for DeliveryTag {
    fn from(tag: Bytes) -> Self {
        if tag.len() <= Self::MAX_INLINE {
            Self::from_slice(&tag)
        } else {
            DeliveryTag(TagRepr::Heap(tag))
        }
    }
}

impl From<Vec<u8>> for DeliveryTag {
    fn from(tag: Vec<u8>) -> Self {
        Self::from(Bytes::from(tag))
    }
}

impl std::fmt::Debug for DeliveryTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeliveryTag(")?;
        for b in self.as_slice() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

// ---- Encoding and decoding (as `Value`s; see `amqp::composite`) ----

use super::codec::Descriptor;
use super::composite::{
    ListReader, ListWriter, fields_value, read_composite, split_described, symbols_value,
};
use super::error::{FrameError, decode_error};

/// Descriptor codes of the composite definitions.
pub mod code {
    pub const ERROR: u64 = 0x1d;
    pub const RECEIVED: u64 = 0x23;
    pub const ACCEPTED: u64 = 0x24;
    pub const REJECTED: u64 = 0x25;
    pub const RELEASED: u64 = 0x26;
    pub const MODIFIED: u64 = 0x27;
    pub const SOURCE: u64 = 0x28;
    pub const TARGET: u64 = 0x29;
    /// `coordinator` (transactions §4.5.1): a target that is a transaction
    /// coordinator.
    pub const COORDINATOR: u64 = 0x30;
}

impl Role {
    /// `role` is a boolean on the wire: receiver is `true`.
    pub fn as_bool(self) -> bool {
        matches!(self, Role::Receiver)
    }
    pub fn from_bool(b: bool) -> Role {
        if b { Role::Receiver } else { Role::Sender }
    }
}

impl SenderSettleMode {
    pub fn as_u8(self) -> u8 {
        match self {
            SenderSettleMode::Unsettled => 0,
            SenderSettleMode::Settled => 1,
            SenderSettleMode::Mixed => 2,
        }
    }
    pub fn from_u8(v: u8) -> Result<Self, FrameError> {
        match v {
            0 => Ok(SenderSettleMode::Unsettled),
            1 => Ok(SenderSettleMode::Settled),
            2 => Ok(SenderSettleMode::Mixed),
            _ => Err(decode_error(format!(
                "sender-settle-mode: invalid value {v}"
            ))),
        }
    }
}

impl ReceiverSettleMode {
    pub fn as_u8(self) -> u8 {
        match self {
            ReceiverSettleMode::First => 0,
            ReceiverSettleMode::Second => 1,
        }
    }
    pub fn from_u8(v: u8) -> Result<Self, FrameError> {
        match v {
            0 => Ok(ReceiverSettleMode::First),
            1 => Ok(ReceiverSettleMode::Second),
            _ => Err(decode_error(format!(
                "receiver-settle-mode: invalid value {v}"
            ))),
        }
    }
}

impl TerminusDurability {
    pub fn as_u32(self) -> u32 {
        match self {
            TerminusDurability::None => 0,
            TerminusDurability::Configuration => 1,
            TerminusDurability::UnsettledState => 2,
        }
    }
    pub fn from_u32(v: u32) -> Result<Self, FrameError> {
        match v {
            0 => Ok(TerminusDurability::None),
            1 => Ok(TerminusDurability::Configuration),
            2 => Ok(TerminusDurability::UnsettledState),
            _ => Err(decode_error(format!(
                "terminus-durability: invalid value {v}"
            ))),
        }
    }
}

impl TerminusExpiryPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminusExpiryPolicy::LinkDetach => "link-detach",
            TerminusExpiryPolicy::SessionEnd => "session-end",
            TerminusExpiryPolicy::ConnectionClose => "connection-close",
            TerminusExpiryPolicy::Never => "never",
        }
    }
    pub fn from_symbol(s: &str) -> Result<Self, FrameError> {
        match s {
            "link-detach" => Ok(TerminusExpiryPolicy::LinkDetach),
            "session-end" => Ok(TerminusExpiryPolicy::SessionEnd),
            "connection-close" => Ok(TerminusExpiryPolicy::ConnectionClose),
            "never" => Ok(TerminusExpiryPolicy::Never),
            _ => Err(decode_error(format!(
                "terminus-expiry-policy: invalid value {s:?}"
            ))),
        }
    }
}

impl AmqpError {
    /// `amqp:error:list` (0x1d).
    pub fn to_value(&self) -> Value {
        let mut w = ListWriter::new();
        w.push(Value::Symbol(self.condition.clone()));
        w.opt(self.description.clone(), Value::String);
        w.opt(self.info.clone(), fields_value);
        w.finish(code::ERROR)
    }

    pub fn from_value(v: Value) -> Result<Self, FrameError> {
        let mut r = read_composite(v, "error", code::ERROR)?;
        Ok(AmqpError {
            condition: r
                .symbol(0, "condition")?
                .ok_or_else(|| r.missing("condition"))?,
            description: r.string(1, "description")?,
            info: r.fields(2, "info")?,
        })
    }
}

impl DeliveryState {
    pub fn to_value(&self) -> Value {
        match self {
            DeliveryState::Received {
                section_number,
                section_offset,
            } => {
                let mut w = ListWriter::new();
                w.push(Value::Uint(*section_number));
                w.push(Value::Ulong(*section_offset));
                w.finish(code::RECEIVED)
            }
            DeliveryState::Accepted => ListWriter::new().finish(code::ACCEPTED),
            DeliveryState::Rejected { error } => {
                let mut w = ListWriter::new();
                w.opt(error.as_ref(), AmqpError::to_value);
                w.finish(code::REJECTED)
            }
            DeliveryState::Released => ListWriter::new().finish(code::RELEASED),
            DeliveryState::Modified {
                delivery_failed,
                undeliverable_here,
                message_annotations,
            } => {
                let mut w = ListWriter::new();
                w.defaulted(*delivery_failed, false, Value::Bool);
                w.defaulted(*undeliverable_here, false, Value::Bool);
                w.opt(message_annotations.clone(), fields_value);
                w.finish(code::MODIFIED)
            }
            DeliveryState::Other(v) => v.clone(),
        }
    }

    /// Decodes a delivery state; described types other than the five of the
    /// spec's messaging layer are kept as [`DeliveryState::Other`].
    pub fn from_value(v: Value) -> Result<Self, FrameError> {
        let (c, body) = match v {
            Value::Described(b) => match &b.0 {
                Descriptor::Code(c @ 0x23..=0x27) => (*c, b.1),
                Descriptor::Symbol(s)
                    if matches!(
                        s.as_str(),
                        "amqp:received:list"
                            | "amqp:accepted:list"
                            | "amqp:rejected:list"
                            | "amqp:released:list"
                            | "amqp:modified:list"
                    ) =>
                {
                    split_described(Value::Described(b), "delivery-state")?
                }
                _ => return Ok(DeliveryState::Other(Value::Described(b))),
            },
            other => {
                return Err(decode_error(format!(
                    "delivery-state: expected a described type, got {}",
                    other.type_name()
                )));
            }
        };
        Ok(match c {
            code::RECEIVED => {
                let mut r = ListReader::new("received", body)?;
                DeliveryState::Received {
                    section_number: r.req_uint(0, "section-number")?,
                    section_offset: r
                        .ulong(1, "section-offset")?
                        .ok_or_else(|| r.missing("section-offset"))?,
                }
            }
            code::ACCEPTED => {
                ListReader::new("accepted", body)?;
                DeliveryState::Accepted
            }
            code::REJECTED => {
                let mut r = ListReader::new("rejected", body)?;
                DeliveryState::Rejected {
                    error: r.value(0).map(AmqpError::from_value).transpose()?,
                }
            }
            code::RELEASED => {
                ListReader::new("released", body)?;
                DeliveryState::Released
            }
            _ => {
                let mut r = ListReader::new("modified", body)?;
                DeliveryState::Modified {
                    delivery_failed: r.bool_or(0, "delivery-failed", false)?,
                    undeliverable_here: r.bool_or(1, "undeliverable-here", false)?,
                    message_annotations: r.fields(2, "message-annotations")?,
                }
            }
        })
    }
}

/// The six fields `source` and `target` share, at the same list positions
/// (0-5): read and written in one place.
struct TerminusFields {
    address: Option<String>,
    durable: TerminusDurability,
    expiry_policy: TerminusExpiryPolicy,
    timeout: u32,
    dynamic: bool,
    dynamic_node_properties: Option<Fields>,
}

/// The shared fields of a `Source` or `Target`.
macro_rules! terminus_fields {
    ($t:expr) => {
        TerminusFields {
            address: $t.address.clone(),
            durable: $t.durable,
            expiry_policy: $t.expiry_policy,
            timeout: $t.timeout,
            dynamic: $t.dynamic,
            dynamic_node_properties: $t.dynamic_node_properties.clone(),
        }
    };
}

impl TerminusFields {
    fn write(self, w: &mut ListWriter) {
        w.opt(self.address, Value::String);
        w.defaulted(self.durable, TerminusDurability::None, |d| {
            Value::Uint(d.as_u32())
        });
        w.defaulted(self.expiry_policy, TerminusExpiryPolicy::SessionEnd, |e| {
            Value::Symbol(Symbol::from(e.as_str()))
        });
        w.defaulted(self.timeout, 0, Value::Uint);
        w.defaulted(self.dynamic, false, Value::Bool);
        w.opt(self.dynamic_node_properties, fields_value);
    }

    fn read(r: &mut ListReader) -> Result<TerminusFields, FrameError> {
        Ok(TerminusFields {
            address: terminus_address(r)?,
            durable: r
                .uint(1, "durable")?
                .map(TerminusDurability::from_u32)
                .transpose()?
                .unwrap_or_default(),
            expiry_policy: r
                .symbol(2, "expiry-policy")?
                .map(|s| TerminusExpiryPolicy::from_symbol(s.as_str()))
                .transpose()?
                .unwrap_or_default(),
            timeout: r.uint(3, "timeout")?.unwrap_or(0),
            dynamic: r.bool_or(4, "dynamic", false)?,
            dynamic_node_properties: r.fields(5, "dynamic-node-properties")?,
        })
    }
}

impl Source {
    /// `amqp:source:list` (0x28).
    pub fn to_value(&self) -> Value {
        let mut w = ListWriter::new();
        terminus_fields!(self).write(&mut w);
        w.opt(self.distribution_mode.clone(), Value::Symbol);
        w.opt(self.filter.clone(), fields_value);
        w.opt(self.default_outcome.as_ref(), DeliveryState::to_value);
        w.opt(self.outcomes.clone(), symbols_value);
        w.opt(self.capabilities.clone(), symbols_value);
        w.finish(code::SOURCE)
    }

    pub fn from_value(v: Value) -> Result<Self, FrameError> {
        let mut r = read_composite(v, "source", code::SOURCE)?;
        let t = TerminusFields::read(&mut r)?;
        Ok(Source {
            address: t.address,
            durable: t.durable,
            expiry_policy: t.expiry_policy,
            timeout: t.timeout,
            dynamic: t.dynamic,
            dynamic_node_properties: t.dynamic_node_properties,
            distribution_mode: r.symbol(6, "distribution-mode")?,
            filter: r.fields(7, "filter")?,
            default_outcome: r.value(8).map(DeliveryState::from_value).transpose()?,
            outcomes: r.symbols(9, "outcomes")?,
            capabilities: r.symbols(10, "capabilities")?,
        })
    }
}

/// A terminus address is `*` (any type) in the spec; messaging uses strings,
/// but some clients send symbols.
fn terminus_address(r: &mut ListReader) -> Result<Option<String>, FrameError> {
    match r.value(0) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Symbol(s)) => Ok(Some(s.0)),
        Some(other) => Err(decode_error(format!(
            "terminus.address: expected string, got {}",
            other.type_name()
        ))),
    }
}

impl Target {
    /// `amqp:target:list` (0x29).
    pub fn to_value(&self) -> Value {
        let mut w = ListWriter::new();
        if self.coordinator {
            w.opt(self.capabilities.clone(), symbols_value);
            return w.finish(code::COORDINATOR);
        }
        terminus_fields!(self).write(&mut w);
        w.opt(self.capabilities.clone(), symbols_value);
        w.finish(code::TARGET)
    }

    pub fn from_value(v: Value) -> Result<Self, FrameError> {
        let (c, body) = split_described(v.clone(), "target")?;
        if c == code::COORDINATOR {
            let mut r = ListReader::new("coordinator", body)?;
            return Ok(Target {
                coordinator: true,
                capabilities: r.symbols(0, "capabilities")?,
                ..Target::default()
            });
        }
        let mut r = read_composite(v, "target", code::TARGET)?;
        let t = TerminusFields::read(&mut r)?;
        Ok(Target {
            coordinator: false,
            address: t.address,
            durable: t.durable,
            expiry_policy: t.expiry_policy,
            timeout: t.timeout,
            dynamic: t.dynamic,
            dynamic_node_properties: t.dynamic_node_properties,
            capabilities: r.symbols(6, "capabilities")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_tag_up_to_32_bytes_is_inline_and_a_longer_one_is_kept_whole() {
        let short = DeliveryTag::from(b"abc");
        assert!(matches!(short.0, TagRepr::Inline { len: 3, .. }));
        assert_eq!(short.as_slice(), b"abc");
        assert_eq!(short, DeliveryTag::from(Bytes::from_static(b"abc")));

        let longest = DeliveryTag::from_slice(&[7; 32]);
        assert!(matches!(longest.0, TagRepr::Inline { len: 32, .. }));
        assert_eq!(longest.to_bytes(), Bytes::from_static(&[7; 32]));

        let long = DeliveryTag::from(vec![9u8; 40]);
        assert!(matches!(long.0, TagRepr::Heap(_)));
        assert_eq!(long.len(), 40);
        assert_eq!(long, DeliveryTag::from_slice(&[9; 40]));

        assert!(DeliveryTag::default().is_empty());
        assert_ne!(DeliveryTag::from(b""), DeliveryTag::from(b"\0"));
        assert_eq!(
            format!("{:?}", DeliveryTag::from(b"\x01\xab")),
            "DeliveryTag(01ab)"
        );
    }
}
