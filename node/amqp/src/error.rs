//! Errors and the spec's error conditions: the leaf of the engine, which
//! every other module (the codec included) may use and which uses none of
//! them.

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

/// A framing or decoding failure, with the spec's error condition that the
/// connection must be closed with (`amqp:connection:framing-error`,
/// `amqp:decode-error`, `amqp:frame-size-too-small`, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{condition}: {description}")]
pub struct FrameError {
    pub condition: &'static str,
    pub description: String,
}

impl FrameError {
    /// An `amqp:connection:framing-error` naming what failed.
    pub fn framing(description: impl Into<String>) -> Self {
        FrameError {
            condition: condition::FRAMING_ERROR,
            description: description.into(),
        }
    }

    /// An `amqp:decode-error` naming what failed.
    pub fn decode(description: impl Into<String>) -> Self {
        decode_error(description)
    }
}

/// An `amqp:decode-error` naming what failed.
pub(crate) fn decode_error(description: impl Into<String>) -> FrameError {
    FrameError {
        condition: condition::DECODE_ERROR,
        description: description.into(),
    }
}
