//! bote-amqp: a sans-I/O AMQP 1.0 engine. Nothing here touches a socket, a
//! clock, a thread, tokio or actix: bytes go in, bytes and events come out,
//! and time is passed in as a parameter (the shape of quinn-proto). The
//! connection actors of `boted` and the `botectl` clients are the thin
//! shells that drive it; it depends on `bytes` and `thiserror` only.
//!
//! The modules are private; what a user of the engine needs is re-exported
//! here, in these groups:
//!
//! - **Connection** ([`Connection`]): the endpoint state machine of one AMQP
//!   connection with its sessions and links. Feed it received bytes
//!   ([`Connection::handle_input`]), take the bytes to send
//!   ([`Connection::poll_transmit`]) and the [`Event`]s for the application
//!   ([`Connection::poll_event`]); answer attaches, send deliveries
//!   ([`SendDelivery`]) and settle them. Configured by [`ConnectionConfig`],
//!   [`SessionConfig`], [`LinkConfig`] and [`SaslConfig`]; [`Session`] and
//!   [`Link`] are what it tells of each.
//! - **Messages** ([`MessageView`]): the zero-copy view of an encoded
//!   message (sections, properties, annotations) and the splice that
//!   rewrites its message-annotations without re-encoding the bare message;
//!   [`MessageBuilder`] encodes canonical messages for tests and tools.
//! - **Types of the spec**: delivery states and outcomes ([`DeliveryState`]),
//!   the `error` type ([`AmqpError`]) and its [`condition`]s, roles, settle
//!   modes, terminuses; the performatives ([`Performative`]) and SASL frames
//!   ([`SaslFrame`]).
//! - **Frames**: protocol headers and whole frames ([`decode_frame`],
//!   [`encode_frame`]) with max-frame-size enforced; the hand-written
//!   transfer path ([`decode_transfer`], [`encode_transfer`]).
//! - **Codec** ([`codec`], a public module): the AMQP type system
//!   ([`codec::Value`]) and its canonical encoding.
//! - **Errors** ([`FrameError`], [`MessageError`], [`EngineError`]): each
//!   carries the AMQP error condition a peer is told.
//!
//! Inside, the modules import each other without a cycle: `error` is
//! the leaf, then `codec`; `composite` helpers, `definitions`,
//! `performatives`, `sasl` and `transfer` build on them; `frame` on those;
//! `delivery`, `link`, `session`, `event` and `connection` on top. `message`
//! stands apart (it scans message bytes with its own small decoders).

pub mod codec;
mod composite;
mod connection;
mod definitions;
mod delivery;
mod error;
mod event;
mod frame;
mod link;
pub mod management;
mod message;
mod performatives;
mod sasl;
mod session;
mod transfer;

pub use codec::Fields;
pub use connection::{Connection, ConnectionConfig, EngineError, SendDelivery, Side};
pub use definitions::{
    AmqpError, DeliveryState, DeliveryTag, ReceiverSettleMode, Role, SenderSettleMode, Source,
    Target, TerminusDurability, TerminusExpiryPolicy,
};
pub use error::{FrameError, condition};
pub use event::{ErrorScope, Event, IncomingTransfer, LinkDetached, LinkId, SessionId};
pub use frame::{
    AMQP_HEADER, FRAME_HEADER_SIZE, Frame, FrameBody, MIN_MAX_FRAME_SIZE, ProtocolHeader,
    SASL_HEADER, TLS_HEADER, decode_frame, decode_protocol_header, encode_empty_frame,
    encode_frame, encode_protocol_header, encode_sasl_frame, max_transfer_payload,
    transfer_frame_overhead, transfer_payload_lower_bound,
};
pub use link::{Link, LinkConfig};
pub use message::{
    Body, DataSections, DeliveryAnnotations, Encoded, Entries, Items, MessageAnnotations,
    MessageBuilder, MessageError, MessageId, MessageView, Problem, SectionKind, Spliced,
    encode_message_annotations, header_priority, primitive,
};
pub use performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
pub use sasl::{
    SaslChallenge, SaslCode, SaslConfig, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome,
    SaslResponse,
};
pub use session::{Session, SessionConfig};
pub use transfer::{decode_transfer, decode_transfer_via_value, encode_transfer};
