//! The AMQP 1.0 restricted and composite types that performatives carry:
//! roles, settle modes, the `error` type and its conditions, delivery states
//! and outcomes, and the messaging layer's `source` and `target` terminuses.

use bytes::Bytes;

use super::codec::{Symbol, Value};

/// `fields`: a map keyed by symbol.
pub type Fields = Vec<(Symbol, Value)>;

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

/// Error conditions of the spec (§2.8.15 - §2.8.18). The names keep the spec's.
pub mod condition {
    // amqp-error
    pub const INTERNAL_ERROR: &str = "amqp:internal-error";
    pub const NOT_FOUND: &str = "amqp:not-found";
    pub const UNAUTHORIZED_ACCESS: &str = "amqp:unauthorized-access";
    pub const DECODE_ERROR: &str = "amqp:decode-error";
    pub const RESOURCE_LIMIT_EXCEEDED: &str = "amqp:resource-limit-exceeded";
    pub const NOT_ALLOWED: &str = "amqp:not-allowed";
    pub const INVALID_FIELD: &str = "amqp:invalid-field";
    pub const NOT_IMPLEMENTED: &str = "amqp:not-implemented";
    pub const RESOURCE_LOCKED: &str = "amqp:resource-locked";
    pub const PRECONDITION_FAILED: &str = "amqp:precondition-failed";
    pub const RESOURCE_DELETED: &str = "amqp:resource-deleted";
    pub const ILLEGAL_STATE: &str = "amqp:illegal-state";
    pub const FRAME_SIZE_TOO_SMALL: &str = "amqp:frame-size-too-small";
    // connection-error
    pub const CONNECTION_FORCED: &str = "amqp:connection:forced";
    pub const FRAMING_ERROR: &str = "amqp:connection:framing-error";
    pub const CONNECTION_REDIRECT: &str = "amqp:connection:redirect";
    // session-error
    pub const WINDOW_VIOLATION: &str = "amqp:session:window-violation";
    pub const ERRANT_LINK: &str = "amqp:session:errant-link";
    pub const HANDLE_IN_USE: &str = "amqp:session:handle-in-use";
    pub const UNATTACHED_HANDLE: &str = "amqp:session:unattached-handle";
    // link-error
    pub const DETACH_FORCED: &str = "amqp:link:detach-forced";
    pub const TRANSFER_LIMIT_EXCEEDED: &str = "amqp:link:transfer-limit-exceeded";
    pub const MESSAGE_SIZE_EXCEEDED: &str = "amqp:link:message-size-exceeded";
    pub const LINK_REDIRECT: &str = "amqp:link:redirect";
    pub const STOLEN: &str = "amqp:link:stolen";
}

/// Delivery states (§2.8.? and messaging §3.4): the outcomes plus `received`.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryState {
    Received { section_number: u32, section_offset: u64 },
    Accepted,
    Rejected { error: Option<AmqpError> },
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
    pub address: Option<String>,
    pub durable: TerminusDurability,
    pub expiry_policy: TerminusExpiryPolicy,
    pub timeout: u32,
    pub dynamic: bool,
    pub dynamic_node_properties: Option<Fields>,
    pub capabilities: Option<Vec<Symbol>>,
}

/// A delivery tag: up to 32 opaque bytes.
pub type DeliveryTag = Bytes;
