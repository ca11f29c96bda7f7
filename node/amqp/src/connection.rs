//! The connection endpoint (§2.4) and the engine's driving surface: protocol
//! header exchange, the SASL layer's frames in and out (the negotiation
//! itself is [`crate::sasl`]'s), open/close, idle timeout, the
//! channel map of sessions, and the commands and events through which an
//! application (a connection actor of the router) works the sessions and
//! links inside.
//!
//! Like quinn-proto's `Connection`, it owns no socket and reads no clock:
//! [`Connection::handle_input`] takes received bytes,
//! [`Connection::poll_transmit`] appends the bytes to send,
//! [`Connection::poll_timeout`] / [`Connection::handle_timeout`] take time
//! as a parameter, and [`Connection::poll_event`] yields [`Event`]s.
//!
//! Errors in the input never panic: the engine closes the connection, ends
//! the session or detaches the link with the spec's condition, writes that
//! frame and reports [`Event::ProtocolError`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::codec::Symbol;
use super::definitions::{
    AmqpError, DeliveryState, DeliveryTag, Fields, ReceiverSettleMode, Role, SenderSettleMode,
    condition,
};
use super::delivery::OutgoingDelivery;
use super::event::{ErrorScope, Event, LinkId, SessionId};
use super::frame::{
    Frame, FrameBody, FrameError, MIN_MAX_FRAME_SIZE, ProtocolHeader, decode_frame,
    decode_protocol_header, encode_empty_frame, encode_frame, encode_protocol_header,
    encode_sasl_frame,
};
use super::link::{Link, LinkConfig};
use super::performatives::{Attach, Begin, Close, Detach, End, Open, Performative};
use super::sasl::{SaslConfig, SaslNegotiation, SaslStep};
use super::session::{Fault, Session, SessionConfig, refusal_attach};

/// Which end of the transport this engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Writes the protocol header first.
    Client,
    /// Waits for the client's header and answers it.
    Server,
}

/// Everything a connection is configured with; parsed once by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    pub container_id: String,
    pub hostname: Option<String>,
    /// Largest frame this side accepts (at least 512).
    pub max_frame_size: u32,
    pub channel_max: u16,
    /// Close the connection when the peer sends nothing for this long
    /// (half of it is advertised in open as idle-time-out, as the spec advises).
    pub idle_timeout: Option<Duration>,
    /// The peer must get through the protocol header, SASL and its `open`
    /// within this long of the connection's start, or the connection is
    /// closed (`amqp:resource-limit-exceeded`). Unlike the idle timeout,
    /// bytes arriving do not push it back, so a peer trickling its
    /// handshake a byte at a time cannot hold the connection open.
    pub handshake_timeout: Option<Duration>,
    pub offered_capabilities: Option<Vec<Symbol>>,
    pub desired_capabilities: Option<Vec<Symbol>>,
    pub properties: Option<Fields>,
    pub sasl: SaslConfig,
    /// Limits of every session (also those the peer begins).
    pub session: SessionConfig,
    /// Report each transfer frame as it arrives (`true`, what a router
    /// forwarding frame by frame wants) or assemble multi-frame deliveries
    /// and report them once (`false`).
    pub stream_deliveries: bool,
    /// One `poll_transmit` stops adding transfers past this many bytes
    /// (control frames are always written).
    pub max_transmit_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            container_id: String::new(),
            hostname: None,
            max_frame_size: 65536,
            channel_max: 1023,
            idle_timeout: None,
            handshake_timeout: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
            sasl: SaslConfig::None,
            session: SessionConfig::default(),
            stream_deliveries: false,
            max_transmit_bytes: 256 * 1024,
        }
    }
}

/// A delivery for [`Connection::send`].
#[derive(Debug, Clone, PartialEq)]
pub struct SendDelivery {
    /// Unique among the link's unsettled deliveries, at most 32 bytes.
    pub tag: DeliveryTag,
    /// Encoded message bytes (or the first chunk when `complete` is false).
    pub payload: Bytes,
    /// Send presettled. Forced on by snd-settle-mode settled and off by
    /// unsettled.
    pub settled: bool,
    pub message_format: u32,
    /// Opaque to the engine; comes back in [`Event::Disposition`] and
    /// [`Event::LinkDetached`] so the application needs no lookup.
    pub context: u64,
    /// False when more chunks will follow through [`Connection::send_more`].
    pub complete: bool,
}

/// A command the application gave that the state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("no session {0:?} on this connection")]
    UnknownSession(SessionId),
    #[error("no link {0:?} on this connection")]
    UnknownLink(LinkId),
    #[error("link {0:?} cannot do this in its state: {1}")]
    LinkState(LinkId, &'static str),
    #[error("session {0:?} cannot do this in its state: {1}")]
    SessionState(SessionId, &'static str),
    #[error("connection cannot do this in its state: {0}")]
    ConnectionState(&'static str),
    #[error("a link named '{0}' with this role already exists in the session")]
    LinkNameInUse(String),
    #[error("no free channel or handle")]
    Exhausted,
    #[error("delivery {1} is not unsettled on link {0:?}")]
    UnknownDelivery(LinkId, u32),
    #[error("message of {size} bytes exceeds the peer's max-message-size {max} on link {link:?}")]
    MessageSizeExceeded { link: LinkId, size: u64, max: u64 },
}

/// What the input side expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// A protocol header; which ones are acceptable depends on side and stage.
    Header,
    /// SASL frames (server: init; client: mechanisms, outcome).
    Sasl,
    /// Server: waiting for the application's SASL decision.
    SaslDecision,
    /// AMQP frames.
    Amqp,
    /// Nothing more is read.
    Done,
}

/// Frames written before `open` wait in `deferred`.
#[derive(Debug, Default)]
struct Outbox {
    buf: BytesMut,
    deferred: BytesMut,
    open_written: bool,
}

impl Outbox {
    fn frame(&mut self, channel: u16, performative: &Performative) {
        let out = if self.open_written {
            &mut self.buf
        } else {
            &mut self.deferred
        };
        encode_frame(channel, performative, &[], out);
    }
}

/// A sans-I/O AMQP 1.0 connection endpoint with its sessions and links.
#[derive(Debug)]
pub struct Connection {
    config: ConnectionConfig,
    side: Side,
    inbound: Inbound,
    input: BytesMut,
    out: Outbox,
    events: VecDeque<Event>,
    now: Instant,
    last_received: Instant,
    last_sent: Instant,
    /// Header (and SASL outcome) phase reached AMQP on the output side.
    amqp_header_written: bool,
    /// The SASL negotiation (done, or not needed, once AMQP frames flow).
    sasl: SaslNegotiation,
    open_requested: bool,
    remote_open: Option<Open>,
    close_sent: bool,
    close_received: bool,
    remote_max_frame_size: u32,
    remote_channel_max: u16,
    remote_idle_timeout: Option<Duration>,
    /// When the handshake (header, SASL, open) must be done by.
    handshake_deadline: Option<Instant>,
    sessions: Vec<Option<Session>>,
    /// Remote channel -> local channel.
    remote_channels: Vec<Option<u16>>,
}

impl Connection {
    pub fn new(mut config: ConnectionConfig, side: Side, now: Instant) -> Self {
        config.max_frame_size = config.max_frame_size.max(MIN_MAX_FRAME_SIZE);
        let sasl = SaslNegotiation::new(config.sasl.clone());
        let handshake_deadline = config.handshake_timeout.map(|t| now + t);
        let mut conn = Connection {
            config,
            side,
            inbound: Inbound::Header,
            input: BytesMut::new(),
            out: Outbox::default(),
            events: VecDeque::new(),
            now,
            last_received: now,
            last_sent: now,
            amqp_header_written: false,
            sasl,
            open_requested: false,
            remote_open: None,
            close_sent: false,
            close_received: false,
            remote_max_frame_size: MIN_MAX_FRAME_SIZE,
            remote_channel_max: 0,
            remote_idle_timeout: None,
            handshake_deadline,
            sessions: Vec::new(),
            remote_channels: Vec::new(),
        };
        if side == Side::Client {
            match conn.config.sasl {
                SaslConfig::Client { .. } => {
                    encode_protocol_header(ProtocolHeader::Sasl, &mut conn.out.buf)
                }
                _ => conn.write_amqp_header(),
            }
        }
        conn
    }

    // ---- Driving ----

    /// Feeds received bytes. Events and output become available through
    /// [`poll_event`](Self::poll_event) and [`poll_transmit`](Self::poll_transmit).
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.now = now;
        if data.is_empty() || self.inbound == Inbound::Done {
            return;
        }
        self.last_received = now;
        self.input.extend_from_slice(data);
        self.process_input();
    }

    /// Like [`handle_input`](Self::handle_input) for a buffer the caller
    /// read into: when no partial frame is pending the engine takes the
    /// buffer over instead of copying it (transfer payloads become slices of
    /// it).
    pub fn handle_input_buf(&mut self, data: BytesMut, now: Instant) {
        self.now = now;
        if data.is_empty() || self.inbound == Inbound::Done {
            return;
        }
        self.last_received = now;
        if self.input.is_empty() {
            self.input = data;
        } else {
            self.input.extend_from_slice(&data);
        }
        self.process_input();
        if self.input.is_empty() {
            // Every frame is taken: let the caller's buffer go (an idle
            // connection then holds no input buffer; payloads handed out
            // keep what they need of it).
            self.input = BytesMut::new();
        }
    }

    /// Appends everything due to `out` (many frames in one write) and returns
    /// the number of bytes appended. Call again while it returns non-zero
    /// (one call writes at most about `max_transmit_bytes` of transfers).
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> usize {
        let start = out.len();
        if out.is_empty() && out.capacity() <= self.out.buf.capacity() {
            // Hand over the control frames' buffer instead of copying it.
            std::mem::swap(out, &mut self.out.buf);
        } else {
            out.extend_from_slice(&self.out.buf);
        }
        self.out.buf.clear();
        if self.out.open_written && !self.close_sent {
            let budget = start + self.config.max_transmit_bytes;
            let remote_max = self.remote_max_frame_size;
            for (channel, session) in self.sessions.iter_mut().enumerate() {
                if let Some(session) = session {
                    session.write_pending(channel as u16, remote_max, out, budget);
                }
            }
        }
        let n = out.len() - start;
        if n > 0 {
            self.last_sent = self.now;
        }
        n
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 {
            // Drained: an idle connection keeps no event queue (its events
            // are 160 bytes each; one allocation per batch of input).
            self.events = VecDeque::new();
        }
        event
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.inbound == Inbound::Done {
            return None;
        }
        let receive = self.config.idle_timeout.map(|t| self.last_received + t);
        let send = self
            .keepalive()
            .filter(|_| self.out.open_written && !self.close_sent)
            .map(|t| self.last_sent + t);
        let handshake = self.handshake_pending();
        [receive, send, handshake].into_iter().flatten().min()
    }

    /// The handshake deadline while the peer's open has not arrived.
    fn handshake_pending(&self) -> Option<Instant> {
        self.handshake_deadline
            .filter(|_| self.remote_open.is_none() && !self.close_sent)
    }

    /// How long the output may stay silent before an empty frame goes out:
    /// half the peer's idle timeout, and a quarter of our own (half of
    /// what we advertise). The second is not the spec's duty but keeps real
    /// clients alive: an event loop that writes only when it has read
    /// something (Qpid Proton's Python container does so with the heartbeat
    /// it owes us: it makes the empty frame when due, a quarter of our
    /// threshold after its last output, but sends it with its next read)
    /// hears from us every quarter of our threshold, so its heartbeat
    /// reaches us at most half our threshold after its last output.
    fn keepalive(&self) -> Option<Duration> {
        let remote = self.remote_idle_timeout.map(|t| t / 2);
        let own = self.config.idle_timeout.map(|t| t / 4);
        match (remote, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Gives the engine time: sends a heartbeat when [`Self::keepalive`]
    /// passed without output, and closes the connection with
    /// `amqp:resource-limit-exceeded` when nothing arrived for our own idle
    /// timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.inbound == Inbound::Done {
            return;
        }
        if let Some(deadline) = self.handshake_pending()
            && now >= deadline
        {
            self.fail_handshake();
            return;
        }
        if let Some(idle) = self.config.idle_timeout
            && now >= self.last_received + idle
        {
            let error = AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                format!(
                    "local-idle-timeout expired: nothing received for {} ms",
                    idle.as_millis()
                ),
            );
            self.fail_connection(error);
            self.inbound = Inbound::Done;
            return;
        }
        if let Some(keepalive) = self.keepalive()
            && self.out.open_written
            && !self.close_sent
            && now >= self.last_sent + keepalive
            && self.out.buf.is_empty()
        {
            encode_empty_frame(&mut self.out.buf);
        }
    }

    /// True once the connection is over: both closes exchanged, or the
    /// transport failed. Flush [`poll_transmit`](Self::poll_transmit), then
    /// drop the socket.
    pub fn is_closed(&self) -> bool {
        self.inbound == Inbound::Done
    }

    /// The peer's open, once it arrived.
    pub fn remote_open(&self) -> Option<&Open> {
        self.remote_open.as_ref()
    }

    /// The SASL mechanism the connection was authenticated with.
    pub fn sasl_mechanism(&self) -> Option<&str> {
        self.sasl.mechanism()
    }

    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions
            .get(usize::from(id.0))
            .and_then(Option::as_ref)
    }

    pub fn link(&self, id: LinkId) -> Option<&Link> {
        self.session(id.session)?.link(id.handle)
    }

    /// Sessions of this connection.
    pub fn session_ids(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.iter().flatten().map(|s| s.id)
    }

    // ---- Commands ----

    /// Sends this side's open (after the header exchange, at once if that is done).
    pub fn open(&mut self) {
        self.open_requested = true;
        self.maybe_write_open();
    }

    /// Begins a session.
    pub fn begin(&mut self) -> Result<SessionId, EngineError> {
        self.check_open()?;
        let limit = if self.remote_open.is_some() {
            self.config.channel_max.min(self.remote_channel_max)
        } else {
            self.config.channel_max
        };
        let slot = match self.sessions.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.sessions.len() <= usize::from(limit) => {
                super::session::push_slot(&mut self.sessions)
            }
            None => return Err(EngineError::Exhausted),
        };
        let id = SessionId(slot as u16);
        let mut session = Session::new(id, self.config.session.clone());
        session.begin_sent = true;
        let begin = self.begin_frame(&session, None);
        self.out.frame(id.0, &Performative::Begin(begin));
        self.sessions[slot] = Some(session);
        Ok(id)
    }

    /// Attaches a link this side initiates.
    pub fn attach(
        &mut self,
        session: SessionId,
        config: LinkConfig,
    ) -> Result<LinkId, EngineError> {
        self.check_open()?;
        let s = self.session_mut(session)?;
        if s.end_sent {
            return Err(EngineError::SessionState(session, "ended"));
        }
        let handle = match s.add_link(config.name.clone(), config.role) {
            Some(h) => h,
            None if s.link_handles().any(|h| {
                s.link(h)
                    .is_some_and(|l| l.name == config.name && l.role == config.role)
            }) =>
            {
                return Err(EngineError::LinkNameInUse(config.name));
            }
            None => return Err(EngineError::Exhausted),
        };
        let id = LinkId { session, handle };
        self.write_attach(id, config)?;
        Ok(id)
    }

    /// Answers a remote attach ([`Event::AttachRequested`]) and accepts the
    /// link with `config`'s terminus and limits (its name and role are the
    /// link's own and are ignored).
    pub fn accept_attach(&mut self, link: LinkId, config: LinkConfig) -> Result<(), EngineError> {
        let l = self.link_mut(link)?;
        if l.attach_sent || l.detach_sent {
            return Err(EngineError::LinkState(link, "already answered"));
        }
        self.write_attach(link, config)
    }

    /// Answers a remote attach with a refusal: an attach with null terminus
    /// followed by a closing detach with `error` (e.g. `amqp:not-found`).
    pub fn refuse_attach(&mut self, link: LinkId, error: AmqpError) -> Result<(), EngineError> {
        let l = self.link_mut(link)?;
        if l.attach_sent {
            return Err(EngineError::LinkState(link, "already answered"));
        }
        l.attach_sent = true;
        let attach = refusal_attach(l);
        self.out
            .frame(link.session.0, &Performative::Attach(Box::new(attach)));
        self.detach(link, true, Some(error))
    }

    /// Detaches a link (`closed` closes it), with an optional error. The
    /// link goes away when the peer's detach arrives ([`Event::LinkDetached`]).
    pub fn detach(
        &mut self,
        link: LinkId,
        closed: bool,
        error: Option<AmqpError>,
    ) -> Result<(), EngineError> {
        let remote_max = self.remote_max_frame_size;
        let open_written = self.out.open_written;
        let s = self.session_mut(link.session)?;
        let l = s
            .link_mut(link.handle)
            .ok_or(EngineError::UnknownLink(link))?;
        if l.detach_sent {
            return Err(EngineError::LinkState(link, "already detached"));
        }
        let needs_attach = !l.attach_sent;
        let attach = needs_attach.then(|| {
            l.attach_sent = true;
            refusal_attach(l)
        });
        let mut flushed = BytesMut::new();
        if open_written {
            // Dispositions and flows queued before the detach go first.
            s.write_pending(link.session.0, remote_max, &mut flushed, 0);
        }
        let l = s
            .link_mut(link.handle)
            .ok_or(EngineError::UnknownLink(link))?;
        l.detach_sent = true;
        self.out.buf.extend_from_slice(&flushed);
        if let Some(attach) = attach {
            self.out
                .frame(link.session.0, &Performative::Attach(Box::new(attach)));
        }
        let detach = Detach {
            handle: link.handle,
            closed,
            error,
        };
        self.out
            .frame(link.session.0, &Performative::Detach(detach));
        Ok(())
    }

    /// Ends a session with an optional error. It goes away when the peer's
    /// end arrives ([`Event::SessionEnded`]).
    pub fn end_session(
        &mut self,
        session: SessionId,
        error: Option<AmqpError>,
    ) -> Result<(), EngineError> {
        let remote_max = self.remote_max_frame_size;
        let open_written = self.out.open_written;
        let s = self.session_mut(session)?;
        if s.end_sent {
            return Err(EngineError::SessionState(session, "already ended"));
        }
        let mut flushed = BytesMut::new();
        if open_written {
            s.write_pending(session.0, remote_max, &mut flushed, 0);
        }
        // Frames keep their causal order: a remote attach the application
        // has not answered yet gets its reply (a refusal: null terminus)
        // before the end, never after it on an unmapped channel.
        let unanswered: Vec<u32> = s
            .link_handles()
            .filter(|&h| s.link(h).is_some_and(|l| !l.attach_sent && !l.detach_sent))
            .collect();
        for handle in unanswered {
            if let Some(l) = s.link_mut(handle) {
                l.attach_sent = true;
                let attach = refusal_attach(l);
                encode_frame(
                    session.0,
                    &Performative::Attach(Box::new(attach)),
                    &[],
                    &mut flushed,
                );
            }
        }
        s.end_sent = true;
        self.out.buf.extend_from_slice(&flushed);
        self.out.frame(session.0, &Performative::End(End { error }));
        Ok(())
    }

    /// Closes the connection with an optional error, after what is queued.
    ///
    /// Every session and link still present ends with it: the engine reports
    /// [`Event::LinkDetached`] (with the undelivered and unsettled contexts of
    /// sending links) and [`Event::SessionEnded`] for each, carrying `error`.
    pub fn close(&mut self, error: Option<AmqpError>) {
        self.close_with(error.clone(), error);
    }

    /// Writes close with `error`; the sessions and links end with
    /// `reported` (the remote's error when answering its close).
    fn close_with(&mut self, error: Option<AmqpError>, reported: Option<AmqpError>) {
        if self.close_sent {
            return;
        }
        if !self.out.open_written {
            self.open_requested = true;
            if !self.amqp_header_written {
                self.write_amqp_header();
            }
            self.maybe_write_open();
        }
        let mut flushed = BytesMut::new();
        let remote_max = self.remote_max_frame_size;
        for (channel, session) in self.sessions.iter_mut().enumerate() {
            if let Some(session) = session {
                session.write_pending(channel as u16, remote_max, &mut flushed, 0);
            }
        }
        self.out.buf.extend_from_slice(&flushed);
        self.out.frame(0, &Performative::Close(Close { error }));
        self.close_sent = true;
        if self.close_received {
            self.inbound = Inbound::Done;
        }
        self.end_all(reported);
    }

    /// The connection is over: report every link and session as ended.
    fn end_all(&mut self, error: Option<AmqpError>) {
        for slot in self.sessions.iter_mut() {
            let Some(mut session) = slot.take() else {
                continue;
            };
            let handles: Vec<u32> = session.link_handles().collect();
            for handle in handles {
                session.finish_link(handle, false, error.clone(), &mut self.events);
            }
            self.events.push_back(Event::SessionEnded {
                session: session.id,
                error: error.clone(),
            });
        }
        self.sessions.clear();
        self.remote_channels.clear();
    }

    /// Receiving link: sets the credit outstanding to `credit` (and asks
    /// the sender to use it up at once when `drain`). One flow frame per link
    /// is written at the next transmit however often this is called.
    pub fn flow(&mut self, link: LinkId, credit: u32, drain: bool) -> Result<(), EngineError> {
        let l = self.receiving_link(link)?;
        l.link_credit = credit;
        l.beyond_credit = 0;
        l.drain = drain;
        self.session_mut(link.session)?
            .schedule_link_flow(link.handle);
        Ok(())
    }

    /// Receiving link: grants `n` more credit.
    pub fn add_credit(&mut self, link: LinkId, n: u32) -> Result<(), EngineError> {
        let l = self.receiving_link(link)?;
        l.link_credit = l.link_credit.saturating_add(n);
        l.beyond_credit = 0;
        self.session_mut(link.session)?
            .schedule_link_flow(link.handle);
        Ok(())
    }

    /// Sending link: from now on a receiver's drain is completed only when
    /// the application calls [`Connection::drained`], not by the engine as
    /// soon as the link has nothing queued. A router passing a drain on to
    /// the far sender of a routed link (link routing) completes it when
    /// that sender has.
    pub fn set_manual_drain(&mut self, link: LinkId, manual: bool) -> Result<(), EngineError> {
        let l = self.sending_link(link)?;
        l.manual_drain = manual;
        Ok(())
    }

    /// Sending link with manual drain: the drain the receiver asked for is
    /// complete. Once every queued delivery is written the engine uses up
    /// the rest of the credit (advancing delivery-count, §2.6.7) and tells
    /// the receiver in a flow. Nothing happens if the receiver is not
    /// draining.
    pub fn drained(&mut self, link: LinkId) -> Result<(), EngineError> {
        let l = self.sending_link(link)?;
        if !l.drain || l.detach_sent {
            return Ok(());
        }
        l.drain_release = true;
        let queued = !l.queue.is_empty();
        let s = self.session_mut(link.session)?;
        if queued {
            s.schedule_send(link.handle);
        } else {
            s.schedule_link_flow(link.handle);
        }
        Ok(())
    }

    /// Sets the session's incoming window (in transfer frames) and tells the
    /// peer. This is how an application that configured
    /// `SessionConfig::incoming_window = 0` opens the window itself; with a
    /// non-zero configured size the engine also reopens it to that size once
    /// half is used.
    pub fn set_incoming_window(
        &mut self,
        session: SessionId,
        window: u32,
    ) -> Result<(), EngineError> {
        let s = self.session_mut(session)?;
        s.incoming_window = window;
        s.flow_pending = true;
        Ok(())
    }

    /// Sending link: queues a delivery. It is written as credit and the
    /// session window allow, split into frames of the peer's max-frame-size;
    /// the payload travels as slices of `delivery.payload`.
    pub fn send(&mut self, link: LinkId, delivery: SendDelivery) -> Result<(), EngineError> {
        self.send_with_state(link, delivery, None)
    }

    /// [`send`](Self::send), with a delivery state on the first transfer
    /// frame (a transactional send carries its transaction's
    /// transactional-state there; a router passing a routed link's
    /// transfers on keeps the sender's).
    pub fn send_with_state(
        &mut self,
        link: LinkId,
        delivery: SendDelivery,
        state: Option<DeliveryState>,
    ) -> Result<(), EngineError> {
        let l = self.sending_link(link)?;
        if !l.attach_sent || l.detach_sent {
            return Err(EngineError::LinkState(link, "not attached"));
        }
        let size = delivery.payload.len() as u64;
        if let Some(max) = l.remote_max_message_size
            && size > max
        {
            return Err(EngineError::MessageSizeExceeded { link, size, max });
        }
        let settled = match l.snd_settle_mode {
            SenderSettleMode::Settled => true,
            SenderSettleMode::Unsettled => false,
            SenderSettleMode::Mixed => delivery.settled,
        };
        l.queue.push_back(OutgoingDelivery {
            tag: delivery.tag,
            context: delivery.context,
            settled,
            message_format: delivery.message_format,
            payload: delivery.payload,
            rest: VecDeque::new(),
            complete: delivery.complete,
            started: false,
            delivery_id: 0,
            aborted: false,
            size,
            state,
        });
        self.session_mut(link.session)?.schedule_send(link.handle);
        Ok(())
    }

    /// Sending link: adds a chunk to the last delivery (one sent with
    /// `complete: false`); `complete` says it is the last chunk.
    pub fn send_more(
        &mut self,
        link: LinkId,
        payload: Bytes,
        complete: bool,
    ) -> Result<(), EngineError> {
        let l = self.sending_link(link)?;
        let max = l.remote_max_message_size;
        let Some(d) = l.queue.back_mut().filter(|d| !d.complete && !d.aborted) else {
            return Err(EngineError::LinkState(
                link,
                "no incomplete delivery to add to",
            ));
        };
        d.size += payload.len() as u64;
        if let Some(max) = max
            && d.size > max
        {
            return Err(EngineError::MessageSizeExceeded {
                link,
                size: d.size,
                max,
            });
        }
        if !payload.is_empty() {
            if d.payload.is_empty() && d.rest.is_empty() {
                d.payload = payload;
            } else {
                d.rest.push_back(payload);
            }
        }
        d.complete = complete;
        self.session_mut(link.session)?.schedule_send(link.handle);
        Ok(())
    }

    /// Sending link: aborts the queued delivery with this `context`. Not yet
    /// started, it is dropped; partly written, an aborted transfer ends it.
    /// Returns false if no unfinished delivery has that context.
    pub fn abort(&mut self, link: LinkId, context: u64) -> Result<bool, EngineError> {
        let l = self.sending_link(link)?;
        let Some(pos) = l
            .queue
            .iter()
            .rposition(|d| d.context == context && !d.aborted)
        else {
            return Ok(false);
        };
        if l.queue[pos].started {
            let d = &mut l.queue[pos];
            d.aborted = true;
            d.payload = Bytes::new();
            d.rest.clear();
            d.complete = true;
        } else {
            l.queue.remove(pos);
        }
        self.session_mut(link.session)?.schedule_send(link.handle);
        Ok(true)
    }

    /// Updates (and with `settled` settles) an unsettled delivery of this
    /// link: on a receiving link one this side received, on a sending link
    /// one it sent. Updates of contiguous delivery ids with the same state
    /// go out as one disposition frame.
    pub fn disposition(
        &mut self,
        link: LinkId,
        delivery_id: u32,
        state: Option<DeliveryState>,
        settled: bool,
    ) -> Result<(), EngineError> {
        let s = self.session_mut(link.session)?;
        let role = s
            .link(link.handle)
            .ok_or(EngineError::UnknownLink(link))?
            .role;
        let known = match role {
            Role::Receiver => s.incoming_unsettled.get(delivery_id) == Some(&link.handle),
            Role::Sender => s
                .outgoing_unsettled
                .get(delivery_id)
                .is_some_and(|&(h, _)| h == link.handle),
        };
        if !known {
            return Err(EngineError::UnknownDelivery(link, delivery_id));
        }
        if settled {
            match role {
                Role::Receiver => {
                    s.incoming_unsettled.remove(delivery_id);
                }
                Role::Sender => {
                    s.outgoing_unsettled.remove(delivery_id);
                }
            }
            if let Some(l) = s.link_mut(link.handle) {
                l.unsettled = l.unsettled.saturating_sub(1);
            }
        }
        s.dispositions.push(role, delivery_id, settled, state);
        Ok(())
    }

    /// Receiving link: accepts and settles a delivery.
    pub fn accept(&mut self, link: LinkId, delivery_id: u32) -> Result<(), EngineError> {
        self.disposition(link, delivery_id, Some(DeliveryState::Accepted), true)
    }

    /// Server SASL: the application's answer to [`Event::SaslInit`] or
    /// [`Event::SaslResponse`]: `ok` or the `auth` outcome.
    pub fn sasl_outcome(&mut self, ok: bool) -> Result<(), EngineError> {
        self.sasl_outcome_with(ok, None)
    }

    /// Server SASL: [`Connection::sasl_outcome`] with the outcome's
    /// `additional-data` (e.g. SCRAM's server-final message).
    pub fn sasl_outcome_with(
        &mut self,
        ok: bool,
        additional_data: Option<Bytes>,
    ) -> Result<(), EngineError> {
        if self.inbound != Inbound::SaslDecision {
            return Err(EngineError::ConnectionState("no SASL decision pending"));
        }
        self.finish_sasl_server(ok, additional_data);
        self.process_input();
        Ok(())
    }

    /// Server SASL: instead of an outcome, send `challenge`; the client's
    /// response comes back as [`Event::SaslResponse`].
    pub fn sasl_challenge(&mut self, challenge: Bytes) -> Result<(), EngineError> {
        if self.inbound != Inbound::SaslDecision {
            return Err(EngineError::ConnectionState("no SASL decision pending"));
        }
        encode_sasl_frame(&self.sasl.challenge(challenge), &mut self.out.buf);
        self.inbound = Inbound::Sasl;
        self.process_input();
        Ok(())
    }

    // ---- Internals: output ----

    fn write_amqp_header(&mut self) {
        encode_protocol_header(ProtocolHeader::Amqp, &mut self.out.buf);
        self.amqp_header_written = true;
        self.maybe_write_open();
    }

    fn maybe_write_open(&mut self) {
        if !self.open_requested || self.out.open_written || !self.amqp_header_written {
            return;
        }
        let open = Open {
            container_id: self.config.container_id.clone(),
            hostname: self.config.hostname.clone(),
            max_frame_size: self.config.max_frame_size,
            channel_max: self.config.channel_max,
            // Half our threshold, as the spec advises ("the value in
            // idle-time-out SHOULD be half the peer's actual timeout
            // threshold"), so a peer's late heartbeat still comes in time.
            idle_time_out: self
                .config
                .idle_timeout
                .map(|t| (t / 2).as_millis().clamp(1, u128::from(u32::MAX)) as u32),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: self.config.offered_capabilities.clone(),
            desired_capabilities: self.config.desired_capabilities.clone(),
            properties: self.config.properties.clone(),
        };
        encode_frame(
            0,
            &Performative::Open(Box::new(open)),
            &[],
            &mut self.out.buf,
        );
        self.out.open_written = true;
        let deferred = std::mem::take(&mut self.out.deferred);
        self.out.buf.extend_from_slice(&deferred);
    }

    fn check_open(&self) -> Result<(), EngineError> {
        if self.close_sent || self.close_received || self.inbound == Inbound::Done {
            return Err(EngineError::ConnectionState("closed"));
        }
        Ok(())
    }

    fn begin_frame(&self, session: &Session, remote_channel: Option<u16>) -> Begin {
        Begin {
            remote_channel,
            next_outgoing_id: session.next_outgoing_id,
            incoming_window: session.incoming_window,
            outgoing_window: session.config.outgoing_window,
            handle_max: session.config.handle_max,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }

    fn write_attach(&mut self, id: LinkId, config: LinkConfig) -> Result<(), EngineError> {
        let l = self.link_mut(id)?;
        l.attach_sent = true;
        l.snd_settle_mode = config.snd_settle_mode;
        // This engine's receivers settle first (see LinkConfig::rcv_settle_mode).
        l.rcv_settle_mode = if l.role == Role::Receiver {
            ReceiverSettleMode::First
        } else {
            config.rcv_settle_mode
        };
        if l.role == Role::Sender {
            l.delivery_count = config.initial_delivery_count;
        }
        l.max_message_size = config.max_message_size.filter(|&m| m > 0);
        l.source = config.source.clone();
        l.target = config.target.clone();
        let attach = Attach {
            name: l.name.clone(),
            handle: l.handle,
            role: l.role,
            snd_settle_mode: l.snd_settle_mode,
            rcv_settle_mode: l.rcv_settle_mode,
            source: config.source,
            target: config.target,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: (l.role == Role::Sender).then_some(l.delivery_count),
            max_message_size: config.max_message_size,
            offered_capabilities: config.offered_capabilities,
            desired_capabilities: config.desired_capabilities,
            properties: config.properties,
        };
        self.out
            .frame(id.session.0, &Performative::Attach(Box::new(attach)));
        Ok(())
    }

    // ---- Internals: lookup ----

    fn session_mut(&mut self, id: SessionId) -> Result<&mut Session, EngineError> {
        self.sessions
            .get_mut(usize::from(id.0))
            .and_then(Option::as_mut)
            .ok_or(EngineError::UnknownSession(id))
    }

    fn link_mut(&mut self, id: LinkId) -> Result<&mut Link, EngineError> {
        self.session_mut(id.session)?
            .link_mut(id.handle)
            .ok_or(EngineError::UnknownLink(id))
    }

    fn receiving_link(&mut self, id: LinkId) -> Result<&mut Link, EngineError> {
        let l = self.link_mut(id)?;
        if l.role != Role::Receiver {
            return Err(EngineError::LinkState(id, "not a receiving link"));
        }
        if l.detach_sent {
            return Err(EngineError::LinkState(id, "detached"));
        }
        Ok(l)
    }

    fn sending_link(&mut self, id: LinkId) -> Result<&mut Link, EngineError> {
        let l = self.link_mut(id)?;
        if l.role != Role::Sender {
            return Err(EngineError::LinkState(id, "not a sending link"));
        }
        Ok(l)
    }

    fn local_channel(&self, remote: u16) -> Option<u16> {
        self.remote_channels
            .get(usize::from(remote))
            .copied()
            .flatten()
    }

    // ---- Internals: input ----

    fn process_input(&mut self) {
        loop {
            let progressed = match self.inbound {
                Inbound::Header => self.read_header(),
                Inbound::Sasl => self.read_sasl_frame(),
                Inbound::Amqp => self.read_amqp_frame(),
                Inbound::SaslDecision | Inbound::Done => false,
            };
            if !progressed {
                break;
            }
        }
        if self.inbound == Inbound::Done {
            self.input.clear();
        }
    }

    fn read_header(&mut self) -> bool {
        let header = match decode_protocol_header(&self.input) {
            Ok(None) => return false,
            Ok(Some(h)) => h,
            Err(e) => {
                self.fail_header(e.into());
                return false;
            }
        };
        let _ = self.input.split_to(8);
        let sasl_server = self.sasl.server_required();
        match (self.side, header) {
            (Side::Client, ProtocolHeader::Sasl) if self.sasl.client_pending() => {
                self.inbound = Inbound::Sasl;
            }
            (Side::Client, ProtocolHeader::Amqp) if self.amqp_header_written => {
                self.inbound = Inbound::Amqp;
            }
            (Side::Server, ProtocolHeader::Sasl)
                if sasl_server.is_some() && !self.sasl.is_done() =>
            {
                encode_protocol_header(ProtocolHeader::Sasl, &mut self.out.buf);
                encode_sasl_frame(&self.sasl.offer(), &mut self.out.buf);
                self.inbound = Inbound::Sasl;
            }
            (Side::Server, ProtocolHeader::Amqp)
                if self.sasl.is_done() || sasl_server != Some(true) =>
            {
                self.write_amqp_header();
                self.inbound = Inbound::Amqp;
            }
            (_, h) => {
                self.fail_header(AmqpError::new(
                    condition::NOT_ALLOWED,
                    format!(
                        "protocol header {h:?} is not acceptable at this point (SASL: {})",
                        if self.sasl.is_done() {
                            "done"
                        } else {
                            "not done"
                        }
                    ),
                ));
                return false;
            }
        }
        true
    }

    /// The handshake deadline passed before the peer's open arrived. In the
    /// header or AMQP phase the peer gets our header, open and a close with
    /// the error; during SASL there is no close frame to send, so the
    /// connection just ends. Either way the error is reported.
    fn fail_handshake(&mut self) {
        let timeout = self.config.handshake_timeout.unwrap_or_default();
        let phase = match self.inbound {
            Inbound::Header if self.sasl.is_done() => "the AMQP protocol header after SASL",
            Inbound::Header => "the protocol header",
            Inbound::Sasl | Inbound::SaslDecision => "SASL",
            Inbound::Amqp | Inbound::Done => "open",
        };
        let error = AmqpError::new(
            condition::RESOURCE_LIMIT_EXCEEDED,
            format!(
                "handshake not finished within {} ms (protocol header, SASL and open): \
                 still waiting for {phase}",
                timeout.as_millis()
            ),
        );
        match self.inbound {
            Inbound::Sasl | Inbound::SaslDecision => {
                self.inbound = Inbound::Done;
                self.events.push_back(Event::ProtocolError {
                    scope: ErrorScope::Connection,
                    error,
                });
            }
            Inbound::Header => self.fail_header(error),
            Inbound::Amqp | Inbound::Done => {
                self.fail_connection(error);
                self.inbound = Inbound::Done;
            }
        }
    }

    /// The peer's header is wrong: answer with ours, then open and close with
    /// `error`, and stop reading.
    fn fail_header(&mut self, error: AmqpError) {
        if !self.amqp_header_written {
            self.write_amqp_header();
        }
        self.fail_connection(error);
        self.inbound = Inbound::Done;
    }

    fn read_sasl_frame(&mut self) -> bool {
        let frame = match decode_frame(&mut self.input, self.config.max_frame_size) {
            Ok(None) => return false,
            Ok(Some(f)) => f,
            Err(e) => {
                self.fail_transport(e);
                return false;
            }
        };
        let FrameBody::Sasl(sasl) = frame.body else {
            self.fail_transport(FrameError {
                condition: condition::NOT_ALLOWED,
                description: "an AMQP frame arrived during SASL negotiation".into(),
            });
            return false;
        };
        match self.sasl.on_frame(sasl) {
            SaslStep::Send(frame) => encode_sasl_frame(&frame, &mut self.out.buf),
            SaslStep::Authenticated { mechanism } => {
                self.events
                    .push_back(Event::SaslAuthenticated { mechanism });
                self.write_amqp_header();
                self.inbound = Inbound::Header;
            }
            SaslStep::Decide {
                mechanism,
                initial_response,
                hostname,
            } => {
                self.inbound = Inbound::SaslDecision;
                self.events.push_back(Event::SaslInit {
                    mechanism,
                    initial_response,
                    hostname,
                });
            }
            SaslStep::Respond { response } => {
                self.inbound = Inbound::SaslDecision;
                self.events.push_back(Event::SaslResponse { response });
            }
            SaslStep::Answer { ok } => self.finish_sasl_server(ok, None),
            SaslStep::Fail(e) => {
                self.fail_transport(e);
                return false;
            }
        }
        true
    }

    /// Server: sends the SASL outcome; on success the AMQP header comes next.
    fn finish_sasl_server(&mut self, ok: bool, additional_data: Option<Bytes>) {
        encode_sasl_frame(&self.sasl.outcome(ok, additional_data), &mut self.out.buf);
        let mechanism = self.sasl.mechanism().unwrap_or_default().to_owned();
        if ok {
            self.inbound = Inbound::Header;
            self.events
                .push_back(Event::SaslAuthenticated { mechanism });
        } else {
            self.inbound = Inbound::Done;
            self.events.push_back(Event::ProtocolError {
                scope: ErrorScope::Connection,
                error: AmqpError::new(
                    condition::UNAUTHORIZED_ACCESS,
                    format!("SASL authentication with {mechanism} failed"),
                ),
            });
        }
    }

    /// A failure before AMQP frames flow (SASL, framing during SASL): there is
    /// no close frame to send; report and stop.
    fn fail_transport(&mut self, e: FrameError) {
        self.inbound = Inbound::Done;
        self.events.push_back(Event::ProtocolError {
            scope: ErrorScope::Connection,
            error: e.into(),
        });
    }

    fn read_amqp_frame(&mut self) -> bool {
        let frame = match decode_frame(&mut self.input, self.config.max_frame_size) {
            Ok(None) => return false,
            Ok(Some(f)) => f,
            Err(e) => {
                self.fail_connection(e.into());
                self.inbound = Inbound::Done;
                return false;
            }
        };
        self.on_frame(frame);
        self.inbound == Inbound::Amqp
    }

    /// Closes the connection because of `error` (writing open first if it
    /// was not written) and reports it.
    fn fail_connection(&mut self, error: AmqpError) {
        if !self.close_sent {
            self.close(Some(error.clone()));
        }
        self.events.push_back(Event::ProtocolError {
            scope: ErrorScope::Connection,
            error,
        });
    }

    fn on_frame(&mut self, frame: Frame) {
        let Frame {
            channel,
            body,
            payload,
        } = frame;
        let performative = match body {
            FrameBody::Empty => return,
            FrameBody::Sasl(_) => {
                self.fail_connection(AmqpError::new(
                    condition::FRAMING_ERROR,
                    "a SASL frame arrived after SASL",
                ));
                return;
            }
            FrameBody::Amqp(p) => p,
        };
        if self.close_sent {
            // After our close only the peer's close matters (§2.4.3).
            if let Performative::Close(close) = performative {
                self.close_received = true;
                self.inbound = Inbound::Done;
                self.events.push_back(Event::Closed { error: close.error });
            }
            return;
        }
        if self.remote_open.is_none() {
            let Performative::Open(open) = performative else {
                self.fail_connection(AmqpError::new(
                    condition::NOT_ALLOWED,
                    format!("{} arrived before open", performative_name(&performative)),
                ));
                return;
            };
            self.remote_max_frame_size = open.max_frame_size.max(MIN_MAX_FRAME_SIZE);
            self.remote_channel_max = open.channel_max;
            self.remote_idle_timeout = open
                .idle_time_out
                .filter(|&t| t > 0)
                .map(|t| Duration::from_millis(u64::from(t)));
            self.remote_open = Some((*open).clone());
            self.events.push_back(Event::Opened { remote: open });
            return;
        }
        match performative {
            Performative::Open(_) => {
                self.fail_connection(AmqpError::new(
                    condition::NOT_ALLOWED,
                    "a second open arrived",
                ));
            }
            Performative::Close(close) => {
                self.close_received = true;
                self.close_with(None, close.error.clone());
                self.events.push_back(Event::Closed { error: close.error });
                self.inbound = Inbound::Done;
            }
            Performative::Begin(begin) => self.on_begin(channel, begin),
            Performative::End(end) => self.on_end(channel, end),
            other => self.on_session_frame(channel, other, payload),
        }
    }

    fn on_begin(&mut self, channel: u16, begin: Begin) {
        if channel > self.config.channel_max {
            self.fail_connection(AmqpError::new(
                condition::FRAMING_ERROR,
                format!(
                    "begin on channel {channel} beyond channel-max {}",
                    self.config.channel_max
                ),
            ));
            return;
        }
        if self.local_channel(channel).is_some() {
            self.fail_connection(AmqpError::new(
                condition::NOT_ALLOWED,
                format!("begin on channel {channel}, which already has a session"),
            ));
            return;
        }
        let remote_initiated = begin.remote_channel.is_none();
        let local = match begin.remote_channel {
            Some(local) => {
                let ok = self
                    .sessions
                    .get(usize::from(local))
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.begin_sent && !s.begin_received);
                if !ok {
                    self.fail_connection(AmqpError::new(
                        condition::NOT_ALLOWED,
                        format!("begin on channel {channel} answers channel {local}, which began no session"),
                    ));
                    return;
                }
                local
            }
            None => {
                let limit = self.config.channel_max.min(self.remote_channel_max);
                let slot = match self.sessions.iter().position(Option::is_none) {
                    Some(i) => i,
                    None if self.sessions.len() <= usize::from(limit) => {
                        super::session::push_slot(&mut self.sessions)
                    }
                    None => {
                        self.fail_connection(AmqpError::new(
                            condition::RESOURCE_LIMIT_EXCEEDED,
                            format!("begin on channel {channel}: no free channel for the session"),
                        ));
                        return;
                    }
                };
                let mut session = Session::new(SessionId(slot as u16), self.config.session.clone());
                session.begin_sent = true;
                let reply = self.begin_frame(&session, Some(channel));
                self.out.frame(slot as u16, &Performative::Begin(reply));
                self.sessions[slot] = Some(session);
                slot as u16
            }
        };
        if self.remote_channels.len() <= usize::from(channel) {
            self.remote_channels.resize(usize::from(channel) + 1, None);
        }
        self.remote_channels[usize::from(channel)] = Some(local);
        if let Some(s) = self
            .sessions
            .get_mut(usize::from(local))
            .and_then(Option::as_mut)
        {
            s.remote_channel = Some(channel);
            s.begin_received = true;
            s.next_incoming_id = begin.next_outgoing_id;
            s.remote_incoming_window = begin.incoming_window;
            s.remote_outgoing_window = begin.outgoing_window;
            s.remote_handle_max = begin.handle_max;
        }
        self.events.push_back(Event::SessionBegun {
            session: SessionId(local),
            remote_initiated,
        });
    }

    fn on_end(&mut self, channel: u16, end: End) {
        let Some(local) = self.local_channel(channel) else {
            self.fail_connection(AmqpError::new(
                condition::NOT_ALLOWED,
                format!("end on channel {channel}, which has no session"),
            ));
            return;
        };
        if let Some(slot) = self.remote_channels.get_mut(usize::from(channel)) {
            *slot = None;
        }
        let Some(mut session) = self
            .sessions
            .get_mut(usize::from(local))
            .and_then(Option::take)
        else {
            return;
        };
        if !session.end_sent {
            session.end_sent = true;
            self.out
                .frame(local, &Performative::End(End { error: None }));
        }
        let handles: Vec<u32> = session.link_handles().collect();
        for handle in handles {
            session.finish_link(handle, false, end.error.clone(), &mut self.events);
        }
        self.events.push_back(Event::SessionEnded {
            session: SessionId(local),
            error: end.error,
        });
        while let Some(None) = self.sessions.last() {
            self.sessions.pop();
        }
    }

    fn on_session_frame(&mut self, channel: u16, performative: Performative, payload: Bytes) {
        let Some(local) = self.local_channel(channel) else {
            self.fail_connection(AmqpError::new(
                condition::NOT_ALLOWED,
                format!(
                    "{} on channel {channel}, which has no session",
                    performative_name(&performative)
                ),
            ));
            return;
        };
        let stream = self.config.stream_deliveries;
        let Some(session) = self
            .sessions
            .get_mut(usize::from(local))
            .and_then(Option::as_mut)
        else {
            return;
        };
        if session.end_sent {
            return;
        }
        let result = match performative {
            Performative::Attach(a) => session.on_attach(*a, &mut self.events),
            Performative::Flow(f) => session.on_flow(f, &mut self.events),
            Performative::Transfer(t) => session.on_transfer(t, payload, stream, &mut self.events),
            Performative::Disposition(d) => {
                session.on_disposition(d, &mut self.events);
                Ok(())
            }
            Performative::Detach(d) => match session.on_detach(d, &mut self.events) {
                Ok(Some((attach, detach))) => {
                    if let Some(attach) = attach {
                        self.out
                            .frame(local, &Performative::Attach(Box::new(attach)));
                    }
                    self.out.frame(local, &Performative::Detach(detach));
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(f) => Err(f),
            },
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(Fault::Connection(error)) => self.fail_connection(error),
            Err(Fault::Session(error)) => {
                let id = SessionId(local);
                let _ = self.end_session(id, Some(error.clone()));
                self.events.push_back(Event::ProtocolError {
                    scope: ErrorScope::Session(id),
                    error,
                });
            }
            Err(Fault::Link(handle, error)) => {
                let id = LinkId {
                    session: SessionId(local),
                    handle,
                };
                let _ = self.detach(id, true, Some(error.clone()));
                self.events.push_back(Event::ProtocolError {
                    scope: ErrorScope::Link(id),
                    error,
                });
            }
        }
    }
}

fn performative_name(p: &Performative) -> &'static str {
    match p {
        Performative::Open(_) => "open",
        Performative::Begin(_) => "begin",
        Performative::Attach(_) => "attach",
        Performative::Flow(_) => "flow",
        Performative::Transfer(_) => "transfer",
        Performative::Disposition(_) => "disposition",
        Performative::Detach(_) => "detach",
        Performative::End(_) => "end",
        Performative::Close(_) => "close",
    }
}
