//! What the AMQP engine tells its application: the identifiers of sessions and
//! links, and the [`Event`]s that [`Connection::poll_event`] yields (remote
//! open, begin, attach, flow, transfer, disposition, detach, end, close and
//! protocol errors).
//!
//! [`Connection::poll_event`]: super::connection::Connection::poll_event

use bytes::Bytes;

use super::definitions::{AmqpError, DeliveryState, DeliveryTag, Role};
use super::performatives::{Attach, Open};

/// A session of one connection, named by its local (outgoing) channel number.
/// The number is reused only after the session has ended on both sides and its
/// [`Event::SessionEnded`] has been reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u16);

/// A link of one connection: its session and its local (output) handle. Like
/// channels, handles are reused only after the link has detached on both sides
/// and its [`Event::LinkDetached`] has been reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    pub session: SessionId,
    pub handle: u32,
}

/// Where a protocol error was found and what the engine ended because of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorScope {
    /// The engine closed the connection with the error.
    Connection,
    /// The engine ended this session with the error.
    Session(SessionId),
    /// The engine detached (closed) this link with the error.
    Link(LinkId),
}

/// One frame's worth of an incoming delivery (`transfer`).
///
/// With `ConnectionConfig::stream_deliveries` every transfer frame is
/// reported as it arrives (`first` on the first frame, `more` until the last,
/// `payload` a zero-copy slice of the received bytes). Without it the engine
/// assembles multi-frame deliveries and reports each delivery once, with
/// `first == true` and `more == false`.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingTransfer {
    pub link: LinkId,
    /// The session-scoped delivery id, used to settle it
    /// ([`Connection::disposition`](super::connection::Connection::disposition)).
    pub delivery_id: u32,
    pub delivery_tag: DeliveryTag,
    pub message_format: u32,
    /// True on the first frame of the delivery.
    pub first: bool,
    /// True while more frames of this delivery are to come.
    pub more: bool,
    /// The sender settled the delivery (on this or an earlier frame).
    pub settled: bool,
    /// The sender aborted the delivery: discard what was received of it.
    pub aborted: bool,
    /// The sender's delivery state, if the transfer carried one.
    pub state: Option<DeliveryState>,
    pub payload: Bytes,
}

/// How a link ended (remote `detach`, the end of its session or of the
/// connection), with what was still outstanding on it when it did.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkDetached {
    pub link: LinkId,
    pub name: String,
    pub role: Role,
    /// The remote detach closed the link (`closed = true`).
    pub closed: bool,
    /// The error the remote detached with (or the session/connection error).
    pub error: Option<AmqpError>,
    /// Sending links: the `context` of each delivery that was queued and
    /// never started on the wire (a router releases these).
    pub undelivered: Vec<u64>,
    /// Sending links: the `context` of each delivery that was sent and is
    /// still unsettled (a router returns these as `modified`).
    pub unsettled: Vec<u64>,
}

/// Something the application must learn about. See each variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// SASL (server side): the client chose a mechanism that the engine does
    /// not decide itself (anything but ANONYMOUS). Answer with
    /// [`Connection::sasl_outcome`](super::connection::Connection::sasl_outcome)
    /// (or `sasl_outcome_with`), or go on with
    /// [`Connection::sasl_challenge`](super::connection::Connection::sasl_challenge).
    SaslInit {
        mechanism: String,
        initial_response: Option<Bytes>,
        hostname: Option<String>,
    },
    /// SASL (server side): the client's response to the challenge the
    /// application sent; answered like [`Event::SaslInit`].
    SaslResponse { response: Bytes },
    /// SASL finished with `ok` (server: the engine or the app accepted;
    /// client: the server accepted).
    SaslAuthenticated { mechanism: String },
    /// The remote `open` arrived.
    Opened { remote: Box<Open> },
    /// A session is mapped on both sides. `remote_initiated`: the peer began
    /// it and the engine answered with its own `begin`.
    SessionBegun {
        session: SessionId,
        remote_initiated: bool,
    },
    /// A session ended on both sides (the remote `end` arrived). `error` is
    /// the remote's error, if any.
    SessionEnded {
        session: SessionId,
        error: Option<AmqpError>,
    },
    /// The peer attached a link the application did not ask for. Answer with
    /// [`Connection::accept_attach`](super::connection::Connection::accept_attach)
    /// or [`Connection::refuse_attach`](super::connection::Connection::refuse_attach).
    AttachRequested { link: LinkId, attach: Box<Attach> },
    /// The peer answered an attach the application made.
    LinkAttached { link: LinkId, attach: Box<Attach> },
    /// The peer's flow state for a link changed. On a sending link `credit`
    /// is what the engine may send now and `drain` asks for it to be used
    /// up (the engine completes a drain at the next
    /// [`poll_transmit`](super::connection::Connection::poll_transmit) if the
    /// link has nothing queued). On a receiving link `credit` is what is left
    /// after the sender's update (0 after a completed drain).
    Flow {
        link: LinkId,
        credit: u32,
        drain: bool,
        available: Option<u32>,
    },
    /// One frame (or one assembled delivery) of an incoming transfer.
    Transfer(IncomingTransfer),
    /// The peer updated or settled a delivery this side sent (`link` is the
    /// sending link, `context` the value given to
    /// [`Connection::send`](super::connection::Connection::send)), or the
    /// peer sender settled a delivery this side received (then `context` is 0).
    Disposition {
        link: LinkId,
        delivery_id: u32,
        context: u64,
        state: Option<DeliveryState>,
        settled: bool,
    },
    /// A link is detached on both sides; its handle is free again.
    LinkDetached(Box<LinkDetached>),
    /// The remote `close` arrived; `error` is its error. Every link and
    /// session was reported ended just before ([`Event::LinkDetached`],
    /// [`Event::SessionEnded`]). The transport can be shut down once
    /// [`poll_transmit`](super::connection::Connection::poll_transmit)
    /// returns 0.
    Closed { error: Option<AmqpError> },
    /// The engine found a protocol error in the input and ended the scope
    /// with `error` (the same error it sent in the close/end/detach).
    ProtocolError { scope: ErrorScope, error: AmqpError },
}
