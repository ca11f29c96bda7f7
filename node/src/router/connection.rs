//! Connection actors: one per AMQP connection, on a worker arbiter. The actor
//! owns the socket and the sans-I/O engine (`amqp::connection`): it feeds the
//! engine what the socket reads, turns engine events into routing (attaches
//! become producers and consumers of address actors, transfers become routed
//! deliveries, dispositions become outcomes returned to their ingress), and
//! writes what the engine produces, one batched write per mailbox run.
//!
//! Credit is hop by hop, settlement end to end. A producer link (a client's
//! sender) has credit only while its address has a consumer (anonymous
//! senders always), topped up to the listener's link capacity minus its
//! deliveries that have not moved on yet: a delivery gives its credit back
//! when it leaves this router's hands for a consumer link's window or the
//! next hop's (`mesh::data`), or with its outcome, whichever comes first;
//! the outcome itself still comes from the consumer, end to end. A
//! consumer link (a client's receiver) is handed deliveries by its address;
//! they wait in the actor until the consumer grants credit, and the first
//! link-capacity of them are its window: their senders' credit comes back
//! at once (the router holds them for the consumer), the rest's as the
//! consumer takes deliveries. So a consumer with little credit costs at
//! most its window plus its senders' credit; if it leaves, what it never
//! got goes back to its address (another consumer, or `released`) and what
//! it had and did not settle comes back `modified`.
//!
//! Lenient credit: a sender that sends a little beyond its credit (before
//! the router's first flow reaches it, or counting its delivery-count off
//! by one) is not detached: transfers beyond credit are taken up to a
//! margin of the listener's link capacity since the last grant (counted and
//! logged; `bote_amqp::SessionConfig::credit_margin`), so a producer holds at
//! most twice its link capacity; past the margin the link is detached with
//! `amqp:link:transfer-limit-exceeded`.
//!
//! On a listener that does not strip outbound annotations
//! (`strip-annotations = "no"` or `"in"`) each message sent to a consumer
//! gets qdrouterd's `x-opt-qd.ingress` and `x-opt-qd.trace`
//! ([`super::annotations`]); elsewhere the received bytes go out untouched.

mod routed;

pub(in crate::router) use routed::send_route_attach;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::Shared;
use super::address::{
    AddressActor, AttachConsumer, AttachProducer, Deliver, DetachConsumer, DetachProducer, Forward,
    PathState,
};
use super::annotations::{self, RouterAnnotations};
use super::auth;
use super::link::LinkCounters;
use super::policy;
use crate::config::{Distribution, ListenerConfig};
use crate::delivery::{
    ConnId, Detours, FastMap, FastSet, MessageTrace, Origin, OutcomeBatch, PriorityQueues, Reach,
    Returned, RoutedDelivery, SeqMap, Stream, StreamProgress, trace,
};
use crate::model::{ConnectionInfo, LinkDir, LinkInfo};
use bote_amqp::{
    AmqpError, Attach, Connection, ConnectionConfig, DeliveryState, DeliveryTag, ErrorScope, Event,
    IncomingTransfer, LinkConfig, LinkDetached, LinkId, MessageView, Role, SaslConfig,
    SendDelivery, SenderSettleMode, SessionId, Side, Source, Target, condition,
};
use bote_auth::{Mechanism, MechanismName, Step};

/// A consumer link's window in message bytes (besides the link capacity
/// in deliveries): the router holds no more than this for a consumer
/// before the senders' credit waits for it to take some.
pub const LINK_WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// Bytes read from the socket per read call, at most.
const READ_CHUNK: usize = 64 * 1024;

/// How long the router waits for the peer's close after closing a
/// connection for an error, before it drops the socket.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A sender's delivery unsettled for longer than this is stuck
/// (qdrouterd's `deliveriesStuck`, with its production age).
const STUCK_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a connection holding unsettled deliveries looks for stuck
/// ones (only while it holds some).
const STUCK_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Close the connection: the router is shutting down.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Write what is pending (scheduled once per mailbox run).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// A sender's delivery the router holds until its outcome returns.
struct Incoming {
    link: LinkId,
    delivery_id: u32,
    presettled: bool,
    /// It moved on (hop-by-hop credit): its credit is back, its outcome
    /// still to come.
    credited: bool,
    /// When the read that completed it began (one clock read per read,
    /// not per delivery): the start of its settlement latency.
    arrived: Instant,
    /// Counted in its link's `stuck` gauge (unsettled over [`STUCK_AGE`]).
    stuck: bool,
}

/// A client's sender: the router's receiving link.
struct Producer {
    /// The target address; `None` for an anonymous sender (routes by `to`).
    address: Option<Arc<str>>,
    actor: Option<Addr<AddressActor>>,
    has_path: bool,
    /// Deliveries received on the link whose credit has not come back yet:
    /// neither moved on (into a consumer link's window or the next hop's)
    /// nor settled.
    in_flight: u32,
    capacity: u32,
    credit_dirty: bool,
    /// Transfers taken beyond credit so far (the engine counts them), as
    /// last logged.
    beyond_credit: u64,
    /// The delivery whose frames are still arriving on this link.
    partial: Option<Partial>,
    /// The link in the read model.
    info: Arc<LinkInfo>,
}

/// A multi-frame delivery part-way in.
enum Partial {
    /// Routed on its first frame; later frames go into the stream. `key`
    /// names it in `incoming`.
    Streaming { stream: Arc<Stream>, key: u64 },
    /// On an anonymous link the `to` address may lie past the first frame:
    /// the frames are collected and routed once the message is whole.
    Assembling {
        buf: BytesMut,
        delivery_id: u32,
        settled: bool,
    },
}

/// A client's receiver: the router's sending link.
struct Consumer {
    address: Arc<str>,
    actor: Addr<AddressActor>,
    counters: Arc<LinkCounters>,
    /// Routed here, waiting for the consumer's credit: per priority, the
    /// higher first without starving the lower ([`PriorityQueues`]).
    queue: PriorityQueues<RoutedDelivery>,
    /// This many of `queue` (its marked entries: the oldest of each level,
    /// marked in service order) had their senders' credit given back (the
    /// link's window, at most `capacity` and [`LINK_WINDOW_BYTES`]), with
    /// their message bytes; the rest wait for room.
    credited: usize,
    credited_bytes: usize,
    /// The listener's link capacity: the window of deliveries the router
    /// holds for this consumer beyond what it gave credit for.
    capacity: usize,
    /// The link in the read model.
    info: Arc<LinkInfo>,
}

/// What a connection runs over: the socket, or a TLS session on it whose
/// handshake is done (with what it negotiated): the server side of an
/// amqps listener's, or the client side of a route-container connector's.
pub enum Transport {
    /// Plain TCP, not yet registered with the worker's runtime.
    Plain(std::net::TcpStream),
    /// TLS, registered with the worker's runtime.
    Tls(
        Box<tokio_rustls::TlsStream<tokio::net::TcpStream>>,
        crate::model::TlsInfo,
    ),
}

impl Transport {
    /// What SASL may rely on: encrypted or not, the client certificate's
    /// subject.
    fn security(&self) -> auth::TransportSecurity {
        match self {
            Transport::Plain(_) => auth::TransportSecurity::default(),
            Transport::Tls(_, tls) => auth::TransportSecurity {
                encrypted: true,
                peer_identity: tls.peer_subject.clone(),
            },
        }
    }
}

pub struct ConnectionActor {
    id: ConnId,
    /// `host:port`; shared with the spans of traced deliveries.
    peer: Arc<str>,
    engine: Connection,
    shared: Arc<Shared>,
    listener: Arc<ListenerConfig>,
    /// Set when the listener annotates outgoing messages.
    annotations: Option<RouterAnnotations>,
    socket: Option<Transport>,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    out: BytesMut,
    flush_scheduled: bool,
    timer: Option<(Instant, SpawnHandle)>,
    producers: FastMap<LinkId, Producer>,
    /// Boxed: a connection may hold thousands of consumer links, and the
    /// map then moves (and, when it grows, faults in) 16-byte entries
    /// rather than the ~90-byte links.
    consumers: FastMap<LinkId, Box<Consumer>>,
    incoming: SeqMap<Incoming>,
    next_key: u64,
    /// Deliveries sent on consumer links and not settled yet, by context.
    in_flight: SeqMap<(LinkId, RoutedDelivery)>,
    next_context: u64,
    /// Deliveries to hand to address actors at the next flush.
    forwards: Vec<(Addr<AddressActor>, Vec<RoutedDelivery>)>,
    /// Egress deliveries whose body is still streaming in: context -> (link,
    /// stream, chunks sent so far).
    streaming: SeqMap<(LinkId, Arc<Stream>, usize, usize)>,
    /// Outcomes for other connections' senders, sent at the next flush.
    returns: OutcomeBatch,
    /// Consumer links busy with a streaming delivery: AMQP sends a link's
    /// deliveries one after the other, so nothing else goes until it ends.
    streaming_links: FastSet<LinkId>,
    me: Option<Addr<ConnectionActor>>,
    /// Where outcomes for this connection's senders are sent (shared by all
    /// its deliveries).
    returns_to: Option<Arc<Recipient<Returned>>>,
    closed: bool,
    /// The connection in the read model (registered while the actor runs).
    info: Arc<ConnectionInfo>,
    /// A delivery crossed the connection since the last flush.
    delivered: bool,
    /// When the last read from the socket was handled.
    read_at: Instant,
    /// A sweep for stuck deliveries is scheduled.
    stuck_sweep: bool,
    /// What the transport established (encryption, a peer identity).
    security: auth::TransportSecurity,
    /// The SASL mechanism between a challenge and the client's response.
    sasl_state: Option<Mechanism>,
    /// Set when the connection is to be refused at its open (over the
    /// listener's accept rate).
    refusal: Option<AmqpError>,
    /// Its place in the connection counts, once admitted at open.
    admission: Option<policy::Admission>,
    /// What it may do (listener and vhost limits).
    policy: policy::LinkPolicy,
    /// Sessions the client began that have not ended.
    sessions: Vec<SessionId>,
    /// Set on a route-container connection (the router dialled a broker).
    outbound: Option<routed::Outbound>,
    /// Links routed link for link to a link on another connection (link
    /// routing), by this side's link id; `routed_ids` maps route ids to them.
    routed: FastMap<LinkId, routed::RoutedEnd>,
    routed_ids: FastMap<u64, LinkId>,
}

impl ConnectionActor {
    /// A connection accepted on `listener` at `accepted_at` (the
    /// handshake deadline counts from then). On a TLS transport, the
    /// session's record (protocol, cipher, the client certificate's
    /// subject) is in the read model, `self.info.tls`, from the start, and
    /// decides what SASL offers: PLAIN without `allow-insecure-plain`, and
    /// EXTERNAL, which authenticates as the certificate's subject.
    pub fn accepted(
        id: ConnId,
        socket: Transport,
        peer: String,
        listener: Arc<ListenerConfig>,
        shared: Arc<Shared>,
        accepted_at: Instant,
    ) -> Self {
        let security = socket.security();
        let config = ConnectionConfig {
            container_id: shared.router_id.clone(),
            max_frame_size: listener.max_frame_size,
            idle_timeout: (listener.idle_timeout_secs > 0)
                .then(|| std::time::Duration::from_secs(u64::from(listener.idle_timeout_secs))),
            handshake_timeout: listener.handshake_timeout(),
            stream_deliveries: true,
            // Lenient: a sender a little ahead of its credit (before the
            // first flow, or miscounting by one) is taken, up to a link
            // capacity beyond it (module doc).
            session: bote_amqp::SessionConfig {
                credit_margin: listener.link_capacity,
                ..bote_amqp::SessionConfig::default()
            },
            sasl: SaslConfig::Server {
                mechanisms: auth::offered_mechanisms(&listener, &security),
                required: listener.sasl_required(),
            },
            ..ConnectionConfig::default()
        };
        let mut engine = Connection::new(config, Side::Server, accepted_at);
        engine.open();
        let info = ConnectionInfo::new(id, peer.clone());
        Self::with_engine(id, socket, peer, listener, shared, engine, info)
    }

    /// The actor around an engine, for a socket accepted or dialled.
    fn with_engine(
        id: ConnId,
        socket: Transport,
        peer: String,
        listener: Arc<ListenerConfig>,
        shared: Arc<Shared>,
        engine: Connection,
        info: ConnectionInfo,
    ) -> Self {
        let annotations = listener
            .strip_annotations
            .annotates_outbound()
            .then(|| RouterAnnotations::new(&shared.router_id));
        let security = socket.security();
        let info = Arc::new(info);
        let link_policy = policy::LinkPolicy::of_listener(&listener);
        if let Transport::Tls(_, tls) = &socket {
            let _ = info.tls.set(tls.clone());
        }
        ConnectionActor {
            id,
            peer: peer.into(),
            engine,
            shared,
            listener,
            annotations,
            socket: Some(socket),
            writer: None,
            // Grown on demand: an idle connection keeps no output buffer.
            out: BytesMut::new(),
            flush_scheduled: false,
            timer: None,
            producers: FastMap::default(),
            consumers: FastMap::default(),
            incoming: SeqMap::default(),
            next_key: 0,
            in_flight: SeqMap::default(),
            next_context: 0,
            forwards: Vec::new(),
            streaming: SeqMap::default(),
            streaming_links: FastSet::default(),
            returns: OutcomeBatch::default(),
            me: None,
            returns_to: None,
            closed: false,
            info,
            delivered: false,
            outbound: None,
            routed: FastMap::default(),
            routed_ids: FastMap::default(),
            read_at: Instant::now(),
            stuck_sweep: false,
            security,
            sasl_state: None,
            refusal: None,
            admission: None,
            policy: link_policy,
            sessions: Vec::new(),
        }
    }

    /// Refuse the connection with `refusal` when its open arrives.
    pub fn refusing(mut self, refusal: Option<AmqpError>) -> Self {
        self.refusal = refusal;
        self
    }

    /// The open arrived: admit the connection under its listener's and
    /// vhost's policy, or close it with the error that says why.
    fn admit(&mut self, ctx: &mut Context<Self>, hostname: Option<&str>) {
        let user = self
            .info
            .user
            .get()
            .map_or("anonymous", String::as_str)
            .to_owned();
        let host = remote_host(&self.peer);
        let admitted = match self.refusal.take() {
            Some(e) => Err(e),
            None => policy::admit(
                &self.shared.connection_counts,
                &self.listener,
                &self.shared.vhosts,
                hostname,
                &user,
                host,
            ),
        };
        match admitted {
            Ok((admission, policy)) => {
                self.admission = Some(admission);
                self.policy = policy;
            }
            Err(e) => {
                tracing::warn!(conn = %self.id, peer = %self.peer, %user, hostname = hostname.unwrap_or(""), "connection refused by policy: {}: {}", e.condition, e.description.as_deref().unwrap_or(""));
                self.engine.close(Some(e));
                ctx.run_later(CLOSE_GRACE, |act, ctx| {
                    tracing::info!(conn = %act.id, peer = %act.peer, "no close from the peer: dropping the connection");
                    ctx.stop();
                });
            }
        }
    }

    fn me(&self) -> Addr<ConnectionActor> {
        self.me.clone().expect("connection actor started")
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    // ---- engine events ----

    fn process_events(&mut self, ctx: &mut Context<Self>) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Opened { remote } => {
                    tracing::info!(conn = %self.id, peer = %self.peer, container = %remote.container_id, "connection opened");
                    let _ = self.info.container.set(remote.container_id.clone());
                    self.route_container_opened(&remote.container_id);
                    self.info.opened.store(true, Relaxed);
                    if self.outbound.is_none() {
                        self.admit(ctx, remote.hostname.as_deref());
                    }
                }
                Event::AttachRequested { link, attach } => {
                    if let Err(e) = self.attach_policy(&attach) {
                        self.refuse_by_policy(link, &attach, e);
                    } else if !self.try_link_route(link, &attach) {
                        self.on_attach(link, *attach)
                    }
                }
                Event::LinkAttached { link, attach } => {
                    self.auto_link_attached(link, &attach);
                    self.routed_attached(link, attach)
                }
                Event::Flow {
                    link,
                    credit,
                    drain,
                    ..
                } => {
                    if !self.routed_flow(link, credit, drain) {
                        self.pump(link)
                    }
                }
                Event::Transfer(t) => {
                    if let Some(t) = self.routed_transfer(t) {
                        self.on_transfer(t)
                    }
                }
                Event::Disposition {
                    link,
                    delivery_id,
                    context,
                    state,
                    settled,
                } => {
                    if !self.routed_disposition(link, context, &state, settled) {
                        self.on_consumer_disposition(link, delivery_id, context, state, settled)
                    }
                }
                Event::LinkDetached(d) => {
                    if !self.routed_detached(&d) {
                        self.auto_link_detached(&d, ctx);
                        self.on_link_detached(*d)
                    }
                }
                Event::Closed { error } => {
                    match &error {
                        Some(e) => {
                            tracing::info!(conn = %self.id, peer = %self.peer, "connection closed by peer: {}: {}", e.condition, e.description.as_deref().unwrap_or(""))
                        }
                        None => {
                            tracing::info!(conn = %self.id, peer = %self.peer, "connection closed")
                        }
                    }
                    if !self.engine.is_closed() {
                        self.engine.close(None);
                    }
                }
                Event::ProtocolError { scope, error } => {
                    tracing::warn!(conn = %self.id, peer = %self.peer, ?scope, "protocol error: {}: {}", error.condition, error.description.as_deref().unwrap_or(""));
                    if let ErrorScope::Link(link) = scope {
                        // The engine detached a sender's link (e.g. its
                        // message grew past max-message-size): the delivery
                        // it was streaming ends now, aborted toward every
                        // consumer that has part of it, not when the peer
                        // answers the detach or its connection goes.
                        self.abort_partial(link);
                    }
                    if scope == ErrorScope::Connection {
                        // The engine sent close; a peer that never answers
                        // it does not keep the connection alive.
                        ctx.run_later(CLOSE_GRACE, |act, ctx| {
                            tracing::info!(conn = %act.id, peer = %act.peer, "no close from the peer: dropping the connection");
                            ctx.stop();
                        });
                    }
                }
                Event::SaslInit {
                    mechanism,
                    initial_response,
                    ..
                } => {
                    // The engine reports only mechanisms it offered.
                    let Some(name) = MechanismName::from_name(&mechanism) else {
                        self.sasl_refused(ctx, format!("mechanism {mechanism} is not known"));
                        continue;
                    };
                    self.sasl_step(
                        ctx,
                        auth::Input::Init {
                            mechanism: name,
                            initial_response,
                            peer_identity: self.security.peer_identity.clone(),
                        },
                    );
                }
                Event::SaslResponse { response } => {
                    let Some(state) = self.sasl_state.take() else {
                        self.sasl_refused(ctx, "a SASL response with no exchange under way".into());
                        continue;
                    };
                    self.sasl_step(ctx, auth::Input::Response { state, response });
                }
                Event::SaslAuthenticated { mechanism } => {
                    if mechanism == "ANONYMOUS" {
                        let _ = self.info.user.set("anonymous".to_owned());
                    }
                    let _ = self.info.sasl.set(mechanism);
                }
                Event::SessionBegun {
                    session,
                    remote_initiated: true,
                } => {
                    self.sessions.push(session);
                    if let Err(e) = self.policy.check_session(self.sessions.len()) {
                        tracing::info!(conn = %self.id, peer = %self.peer, "session refused by policy: {}", e.description.as_deref().unwrap_or(""));
                        let _ = self.engine.end_session(session, Some(e));
                    }
                }
                Event::SessionEnded { session, .. } => {
                    self.sessions.retain(|s| *s != session);
                    self.routed_session_ended(session);
                }
                Event::SessionBegun { .. } => {}
            }
        }
    }

    /// Runs one step of the client's SASL exchange off this thread, then
    /// answers: a challenge, `ok` (the user is recorded on the
    /// connection), or, after [`auth::AUTH_FAILURE_DELAY`], `auth` and the
    /// connection closes. Nothing else of this connection runs meanwhile
    /// (the engine holds what arrives until it answers), and no other
    /// connection waits.
    fn sasl_step(&mut self, ctx: &mut Context<Self>, input: auth::Input) {
        let users = self.shared.users();
        let step = auth::run_step(users, input)
            .into_actor(self)
            .map(|(state, step), act, ctx| match step {
                Step::Challenge(challenge) => {
                    act.sasl_state = Some(state);
                    if act.engine.sasl_challenge(Bytes::from(challenge)).is_ok() {
                        act.process_events(ctx);
                        act.flush(ctx);
                    }
                }
                Step::Success {
                    user,
                    additional_data,
                } => {
                    tracing::info!(conn = %act.id, peer = %act.peer, %user, "SASL authenticated");
                    let _ = act.info.user.set(user);
                    if act
                        .engine
                        .sasl_outcome_with(true, additional_data.map(Bytes::from))
                        .is_ok()
                    {
                        act.process_events(ctx);
                        act.flush(ctx);
                    }
                }
                Step::Failure(reason) => act.sasl_refused(ctx, reason),
            });
        ctx.spawn(step);
    }

    /// A failed authentication: logged with the peer's address, answered
    /// with the `auth` outcome after a delay, then the connection closes.
    fn sasl_refused(&mut self, ctx: &mut Context<Self>, reason: String) {
        tracing::warn!(conn = %self.id, peer = %self.peer, "SASL authentication failed: {reason}");
        ctx.run_later(auth::AUTH_FAILURE_DELAY, |act, ctx| {
            if act.engine.sasl_outcome(false).is_ok() {
                act.process_events(ctx);
                act.flush(ctx);
            }
        });
    }

    fn on_attach(&mut self, link: LinkId, attach: Attach) {
        match attach.role {
            // The client sends: the router receives on this link.
            Role::Sender => {
                if attach.target.as_ref().is_some_and(|t| t.coordinator) {
                    // Transactions are the broker's: only a `$coordinator`
                    // link route (tried before this) reaches one.
                    tracing::info!(conn = %self.id, link = %attach.name, "attach refused: no $coordinator link route");
                    let error = AmqpError::new(
                        condition::NOT_FOUND,
                        format!(
                            "router {} has no transaction coordinator: transactions need a \
                             $coordinator link route to a broker",
                            self.shared.router_id
                        ),
                    );
                    let _ = self.engine.refuse_attach(link, error);
                    return;
                }
                let address = attach
                    .target
                    .as_ref()
                    .and_then(|t| t.address.clone())
                    .filter(|a| !a.is_empty());
                if let Some(a) = &address
                    && self.shared.addresses.distribution(a) == Distribution::Unavailable
                {
                    self.refuse(link, &attach, a);
                    return;
                }
                let config = LinkConfig {
                    name: attach.name.clone(),
                    role: Role::Receiver,
                    source: attach.source.clone(),
                    target: attach.target.clone().or_else(|| Some(Target::default())),
                    snd_settle_mode: attach.snd_settle_mode,
                    max_message_size: match (
                        self.listener.max_message_size_limit(),
                        self.policy.max_message_size,
                    ) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    ..LinkConfig::receiver(attach.name.clone(), None)
                };
                if let Err(e) = self.engine.accept_attach(link, config) {
                    tracing::warn!(conn = %self.id, "cannot accept attach of {}: {e}", attach.name);
                    return;
                }
                self.register_producer(link, &attach.name, address);
            }
            // The client receives: the router sends on this link.
            Role::Receiver => {
                let source = attach.source.clone().unwrap_or_default();
                let address = if source.dynamic {
                    Some(self.shared.dynamic_address())
                } else {
                    source.address.clone().filter(|a| !a.is_empty())
                };
                let Some(address) = address else {
                    let error = AmqpError::new(
                        condition::INVALID_FIELD,
                        format!(
                            "receiver link '{}' has no source address and is not dynamic",
                            attach.name
                        ),
                    );
                    let _ = self.engine.refuse_attach(link, error);
                    return;
                };
                if !source.dynamic
                    && self.shared.addresses.distribution(&address) == Distribution::Unavailable
                {
                    self.refuse(link, &attach, &address);
                    return;
                }
                let config = LinkConfig {
                    name: attach.name.clone(),
                    role: Role::Sender,
                    source: Some(Source {
                        address: Some(address.clone()),
                        ..source
                    }),
                    target: attach.target.clone(),
                    snd_settle_mode: attach.snd_settle_mode,
                    rcv_settle_mode: attach.rcv_settle_mode,
                    ..LinkConfig::sender(attach.name.clone(), None)
                };
                if let Err(e) = self.engine.accept_attach(link, config) {
                    tracing::warn!(conn = %self.id, "cannot accept attach of {}: {e}", attach.name);
                    return;
                }
                self.register_consumer(link, &attach.name, address);
            }
        }
    }

    /// A link on which the router receives (a client's sender, or an
    /// auto-link from a broker's queue) becomes a producer of `address`.
    fn register_producer(&mut self, link: LinkId, name: &str, address: Option<String>) {
        let address: Option<Arc<str>> = address.map(Arc::from);
        let actor = address.as_ref().map(|a| self.shared.addresses.get(a));
        tracing::info!(conn = %self.id, link = %name, address = address.as_deref().unwrap_or("<anonymous>"), "sender attached");
        let anonymous = actor.is_none();
        let info = self.shared.model.add_link(
            &self.info,
            name,
            LinkDir::In,
            address.clone(),
            self.listener.link_capacity,
            None,
        );
        self.producers.insert(
            link,
            Producer {
                address,
                actor: actor.clone(),
                has_path: anonymous,
                in_flight: 0,
                capacity: self.listener.link_capacity,
                credit_dirty: anonymous,
                beyond_credit: 0,
                partial: None,
                info,
            },
        );
        if let Some(actor) = actor {
            actor.do_send(AttachProducer {
                conn: self.id,
                link,
                notify: self.me().recipient(),
            });
        }
    }

    /// A link on which the router sends (a client's receiver, or an
    /// auto-link to a broker's queue) becomes a consumer of `address`.
    fn register_consumer(&mut self, link: LinkId, name: &str, address: String) {
        tracing::info!(conn = %self.id, link = %name, %address, "receiver attached");
        let address: Arc<str> = Arc::from(address);
        let actor = self.shared.addresses.get(&address);
        let counters = Arc::new(LinkCounters::default());
        let info = self.shared.model.add_link(
            &self.info,
            name,
            LinkDir::Out,
            Some(address.clone()),
            self.listener.link_capacity,
            Some(counters.clone()),
        );
        actor.do_send(AttachConsumer {
            conn: self.id,
            link,
            deliver: self.me().recipient(),
            counters: counters.clone(),
            capacity: self.listener.link_capacity,
        });
        self.consumers.insert(
            link,
            Box::new(Consumer {
                address,
                actor,
                counters,
                queue: PriorityQueues::default(),
                credited: 0,
                credited_bytes: 0,
                capacity: self.listener.link_capacity as usize,
                info,
            }),
        );
    }

    /// The policy's word on a client's attach, link-routed or not: the
    /// senders or receivers the connection holds (routed links included)
    /// and the address patterns of the user's group. A `$coordinator`
    /// link is checked as a sender to `$coordinator`; a receiver with no
    /// source address that is not dynamic is left to [`Self::on_attach`],
    /// which refuses it. Connections the router dialled have no policy.
    fn attach_policy(&self, attach: &Attach) -> Result<(), AmqpError> {
        if self.outbound.is_some() {
            return Ok(());
        }
        match attach.role {
            Role::Sender => {
                let target = attach.target.as_ref();
                let to = if target.is_some_and(|t| t.coordinator) {
                    Some("$coordinator")
                } else {
                    target
                        .and_then(|t| t.address.as_deref())
                        .filter(|a| !a.is_empty())
                };
                let senders = self.producers.len() + self.routed_links(Role::Receiver);
                self.policy.check_sender(senders, to)
            }
            Role::Receiver => {
                let source = attach.source.as_ref();
                let from = match source {
                    Some(s) if s.dynamic => None,
                    _ => match source.and_then(|s| s.address.as_deref()) {
                        Some(a) if !a.is_empty() => Some(a),
                        _ => return Ok(()),
                    },
                };
                let receivers = self.consumers.len() + self.routed_links(Role::Sender);
                self.policy.check_receiver(receivers, from)
            }
        }
    }

    fn refuse_by_policy(&mut self, link: LinkId, attach: &Attach, error: AmqpError) {
        tracing::info!(conn = %self.id, peer = %self.peer, link = %attach.name, "attach refused by policy: {}: {}", error.condition, error.description.as_deref().unwrap_or(""));
        let _ = self.engine.refuse_attach(link, error);
    }

    fn refuse(&mut self, link: LinkId, attach: &Attach, address: &str) {
        tracing::info!(conn = %self.id, link = %attach.name, %address, "attach refused: address unavailable");
        let error = AmqpError::new(
            condition::NOT_FOUND,
            format!(
                "address '{address}' is unavailable on router {}",
                self.shared.router_id
            ),
        );
        let _ = self.engine.refuse_attach(link, error);
    }

    /// A transfer frame from a client's sender. Single-frame deliveries are
    /// routed at once; a multi-frame one is routed on its first frame and
    /// its later frames follow through a [`Stream`].
    fn on_transfer(&mut self, t: IncomingTransfer) {
        let Some(producer) = self.producers.get_mut(&t.link) else {
            return;
        };
        if t.first
            && let Some(l) = self.engine.link(t.link)
            && l.transfers_beyond_credit() != producer.beyond_credit
        {
            if producer.beyond_credit == 0 {
                tracing::info!(conn = %self.id, peer = %self.peer, link = %l.name(), margin = self.listener.link_capacity, "sender sent beyond its link credit: taken within the margin and counted");
            }
            producer.beyond_credit = l.transfers_beyond_credit();
        }
        if !t.first {
            match producer.partial.take() {
                Some(Partial::Streaming { stream, key }) => {
                    if t.aborted {
                        stream.abort();
                        self.forget_incoming(key);
                    } else {
                        stream.push(t.payload, !t.more);
                        if t.more {
                            producer.partial = Some(Partial::Streaming { stream, key });
                        }
                    }
                }
                Some(Partial::Assembling {
                    mut buf,
                    delivery_id,
                    settled,
                }) => {
                    if t.aborted {
                        return;
                    }
                    buf.extend_from_slice(&t.payload);
                    if t.more {
                        producer.partial = Some(Partial::Assembling {
                            buf,
                            delivery_id,
                            settled: settled || t.settled,
                        });
                    } else {
                        let payload = buf.freeze();
                        self.route(t.link, delivery_id, settled || t.settled, payload, None);
                    }
                }
                None => {}
            }
            return;
        }
        if t.aborted {
            return;
        }
        if t.more {
            if producer.address.is_none() {
                let mut buf = BytesMut::with_capacity(t.payload.len() * 4);
                buf.extend_from_slice(&t.payload);
                producer.partial = Some(Partial::Assembling {
                    buf,
                    delivery_id: t.delivery_id,
                    settled: t.settled,
                });
                return;
            }
            let stream = Arc::new(Stream::default());
            if let Some(key) = self.route(
                t.link,
                t.delivery_id,
                t.settled,
                t.payload,
                Some(stream.clone()),
            ) && let Some(p) = self.producers.get_mut(&t.link)
            {
                p.partial = Some(Partial::Streaming { stream, key });
            }
            return;
        }
        self.route(t.link, t.delivery_id, t.settled, t.payload, None);
    }

    /// Routes a sender's delivery (or its first frame, with `stream`) to its
    /// address; returns the key it is kept under until its outcome returns.
    fn route(
        &mut self,
        link: LinkId,
        delivery_id: u32,
        settled: bool,
        payload: Bytes,
        stream: Option<Arc<Stream>>,
    ) -> Option<u64> {
        let producer = self.producers.get_mut(&link)?;
        let key = self.next_key;
        self.next_key += 1;
        producer.in_flight += 1;
        producer.info.stats.delivery(settled);
        if !settled {
            producer.info.in_flight.fetch_add(1, Relaxed);
        }
        self.delivered = true;
        self.incoming.insert(
            key,
            Incoming {
                link,
                delivery_id,
                presettled: settled,
                credited: false,
                arrived: self.read_at,
                stuck: false,
            },
        );
        // The message is only read on anonymous links, for its `to`: a
        // targeted link routes on its target and passes the bytes through.
        let origin = self.origin(key);
        let producer = &self.producers[&link];
        let (address, actor) = match (&producer.address, &producer.actor) {
            (Some(a), Some(actor)) => (a.clone(), actor),
            _ => {
                let view = if stream.is_none() {
                    Some(MessageView::parse(payload.clone()))
                } else {
                    None
                };
                let to = match &view {
                    Some(Ok(v)) => v.to().ok().flatten().map(str::to_owned),
                    _ => None,
                };
                let Some(to) = to else {
                    let error = match view {
                        Some(Err(e)) => AmqpError::new(
                            condition::DECODE_ERROR,
                            format!("message on anonymous link: {e}"),
                        ),
                        _ => AmqpError::new(
                            condition::INVALID_FIELD,
                            "message on an anonymous link has no 'to' address",
                        ),
                    };
                    self.settle_incoming(
                        key,
                        Some(DeliveryState::Rejected { error: Some(error) }),
                        self.read_at,
                    );
                    return None;
                };
                if self.shared.addresses.distribution(&to) == Distribution::Unavailable {
                    let error = AmqpError::new(
                        condition::NOT_FOUND,
                        format!("address '{to}' is unavailable"),
                    );
                    self.settle_incoming(
                        key,
                        Some(DeliveryState::Rejected { error: Some(error) }),
                        self.read_at,
                    );
                    return None;
                }
                let actor = self.shared.addresses.get(&to);
                let mut delivery = routed(Arc::from(to), payload, settled, origin, stream);
                if trace::enabled() {
                    delivery.trace =
                        MessageTrace::at_ingress(&delivery.address, &delivery.message, &self.peer);
                }
                queue_ingress(&self.shared, &mut self.forwards, &actor, delivery);
                return Some(key);
            }
        };
        let mut delivery = routed(address, payload, settled, origin, stream);
        if trace::enabled() {
            delivery.trace =
                MessageTrace::at_ingress(&delivery.address, &delivery.message, &self.peer);
        }
        // Borrowed, not cloned: an `Addr` clone and drop per message are
        // three atomics on a line the address actor's thread also writes.
        queue_ingress(&self.shared, &mut self.forwards, actor, delivery);
        Some(key)
    }

    fn origin(&self, key: u64) -> Origin {
        Origin {
            conn: self.returns_to.clone().expect("connection actor started"),
            conn_id: self.id,
            key,
        }
    }

    /// The delivery still arriving on a sender's link will never finish:
    /// abort its stream (egresses send `aborted = true` to their consumers)
    /// and forget it.
    fn abort_partial(&mut self, link: LinkId) {
        let Some(partial) = self.producers.get_mut(&link).and_then(|p| p.partial.take()) else {
            return;
        };
        if let Partial::Streaming { stream, key } = partial {
            stream.abort();
            self.forget_incoming(key);
        }
    }

    /// A sender's delivery that ended without an outcome (aborted): forget it
    /// and free its credit (unless it came back already).
    fn forget_incoming(&mut self, key: u64) {
        if let Some(inc) = self.incoming.remove(&key)
            && let Some(p) = self.producers.get_mut(&inc.link)
        {
            if !inc.presettled {
                p.info.in_flight.fetch_sub(1, Relaxed);
            }
            if !inc.credited {
                p.in_flight = p.in_flight.saturating_sub(1);
                p.credit_dirty = true;
            }
        }
    }

    /// A sender's unsettled delivery moved on (hop-by-hop credit): free its
    /// credit; it stays until its outcome returns.
    fn credit_incoming(&mut self, key: u64) {
        if let Some(inc) = self.incoming.get_mut(&key)
            && !std::mem::replace(&mut inc.credited, true)
            && let Some(p) = self.producers.get_mut(&inc.link)
        {
            p.in_flight = p.in_flight.saturating_sub(1);
            p.credit_dirty = true;
        }
    }

    /// An outcome for a sender's delivery: settle it and free its credit
    /// (unless it came back already).
    fn settle_incoming(&mut self, key: u64, state: Option<DeliveryState>, now: Instant) {
        let Some(inc) = self.incoming.remove(&key) else {
            return;
        };
        let delay = (!inc.presettled).then(|| now.saturating_duration_since(inc.arrived));
        if let Some(delay) = delay {
            self.shared.model.settle_latency.observe(delay);
        }
        if let Some(p) = self.producers.get_mut(&inc.link) {
            if !inc.credited {
                p.in_flight = p.in_flight.saturating_sub(1);
                p.credit_dirty = true;
            }
            if !inc.presettled {
                p.info.in_flight.fetch_sub(1, Relaxed);
                p.info
                    .stats
                    .outcome(Some(state.as_ref().unwrap_or(&DeliveryState::Accepted)));
            }
            if let Some(delay) = delay {
                p.info.stats.settled_after(delay);
            }
            if inc.stuck {
                p.info.stuck.fetch_sub(1, Relaxed);
            }
        }
        if !inc.presettled {
            let state = state.unwrap_or(DeliveryState::Accepted);
            let _ = self
                .engine
                .disposition(inc.link, inc.delivery_id, Some(state), true);
        }
    }

    /// The consumer's disposition of a delivery the router sent it.
    fn on_consumer_disposition(
        &mut self,
        link: LinkId,
        delivery_id: u32,
        context: u64,
        state: Option<DeliveryState>,
        settled: bool,
    ) {
        if !self.consumers.contains_key(&link) {
            return;
        }
        let terminal = settled || state.as_ref().is_some_and(DeliveryState::is_outcome);
        if !terminal {
            return;
        }
        let Some((_, d)) = self.in_flight.remove(&context) else {
            return;
        };
        let consumer = self.consumers.get(&link).expect("checked above");
        consumer.counters.unsettled.fetch_sub(1, Relaxed);
        consumer.info.stats.outcome(state.as_ref());
        if !settled {
            // Receiver settle mode second: the router settles at once, with
            // the outcome the consumer gave (a client waiting for the
            // settling disposition's outcome reads it there).
            let _ = self
                .engine
                .disposition(link, delivery_id, state.clone(), true);
        }
        if let Some(d) = d.settled_by_consumer((self.id, link), state, &mut self.returns) {
            // Resend released: another consumer may take it.
            consumer.actor.do_send(Forward(vec![d]));
        }
        self.pump(link);
    }

    fn on_link_detached(&mut self, d: LinkDetached) {
        if let Some(p) = self.producers.remove(&d.link) {
            tracing::info!(conn = %self.id, link = %d.name, transfers_beyond_credit = p.beyond_credit, "sender detached");
            if let Some(Partial::Streaming { stream, .. }) = &p.partial {
                stream.abort();
            }
            if let Some(actor) = p.actor {
                actor.do_send(DetachProducer {
                    conn: self.id,
                    link: d.link,
                });
            }
            self.incoming.retain(|_, inc| inc.link != d.link);
            self.shared.model.remove_link(&self.info, &p.info);
        }
        if let Some(mut c) = self.consumers.remove(&d.link) {
            tracing::info!(conn = %self.id, link = %d.name, address = %c.address, "receiver detached");
            let mut returned: Vec<RoutedDelivery> = c.queue.drain();
            // Queued in the engine but never started: they go elsewhere too.
            for ctx in &d.undelivered {
                if let Some((_, rd)) = self.in_flight.remove(ctx) {
                    returned.push(rd);
                }
            }
            // Sent and unsettled: the consumer may have processed them
            // (modified, delivery-failed); at router shutdown they go back
            // released, as qdrouterd users expect.
            let failed = if self.shared.shutting_down.load(Relaxed) {
                DeliveryState::Released
            } else {
                DeliveryState::delivery_failed()
            };
            for ctx in &d.unsettled {
                if let Some((_, rd)) = self.in_flight.remove(ctx) {
                    rd.return_to_sender(Some(failed.clone()));
                }
            }
            // Anything else still mapped to this link was sent presettled.
            self.in_flight.retain(|_, (l, _)| *l != d.link);
            self.streaming.retain(|_, (l, _, _, _)| *l != d.link);
            self.streaming_links.remove(&d.link);
            c.counters.undelivered.store(0, Relaxed);
            c.counters.unsettled.store(0, Relaxed);
            self.shared.model.remove_link(&self.info, &c.info);
            c.actor.do_send(DetachConsumer {
                conn: self.id,
                link: d.link,
                returned,
            });
        }
    }

    /// Moves deliveries waiting on a consumer link into the engine while the
    /// consumer has credit for them. A streaming delivery holds the link
    /// until its last frame is in.
    fn pump(&mut self, link: LinkId) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        let Some(l) = self.engine.link(link) else {
            return;
        };
        let credit = l.credit() as usize;
        let mut room = credit.saturating_sub(l.undelivered());
        let settled_on_wire = l.snd_settle_mode() == SenderSettleMode::Settled;
        c.counters.credit.store(credit as u32, Relaxed);
        while room > 0 && !self.streaming_links.contains(&link) {
            let Some((_, mut d, in_window)) = c.queue.pop() else {
                break;
            };
            // Leaving the queue: out of the window, or moving on past it.
            if in_window {
                c.credited = c.credited.saturating_sub(1);
                c.credited_bytes = c.credited_bytes.saturating_sub(d.message.len());
            } else {
                self.returns.credit(&mut d);
            }
            c.counters.undelivered.fetch_sub(1, Relaxed);
            let context = self.next_context;
            self.next_context += 1;
            let read = d.stream.as_ref().map(|s| {
                let me = self.me.clone().expect("connection actor started");
                s.open((me.recipient(), link, context), usize::MAX)
            });
            if read.as_ref().is_some_and(|(_, r)| r.aborted) {
                // The sender gave up on it before a byte went out.
                continue;
            }
            let complete = read.as_ref().is_none_or(|(_, r)| r.complete);
            // A traced delivery carries its egress span's context in
            // message-annotations (spliced; the bare message is untouched).
            let trace_annotations = match &mut d.trace {
                Some(t) => t.send_to_client(&self.peer, d.visited.len()),
                None => Default::default(),
            };
            let (trace_entries, n) = trace_annotations.entries();
            let trace_entries = &trace_entries[..n];
            let spliced = match &self.annotations {
                None if trace_entries.is_empty() => Ok(d.message.clone()),
                None => annotations::splice(&d.message, d.stream.is_none(), trace_entries),
                Some(a) => a.annotate(&d.message, d.stream.is_none(), &d.visited, trace_entries),
            };
            let payload = spliced.unwrap_or_else(|e| {
                tracing::debug!(conn = %self.id, address = %c.address, "message sent without router annotations: {e}");
                d.message.clone()
            });
            let send = SendDelivery {
                tag: DeliveryTag::from_slice(&context.to_be_bytes()),
                payload,
                settled: d.presettled,
                message_format: 0,
                context,
                complete: read.is_none(),
            };
            let mut result = self.engine.send(link, send);
            if let Some((_, r)) = &read {
                for chunk in &r.chunks {
                    if result.is_ok() {
                        result = self.engine.send_more(link, chunk.clone(), false);
                    }
                }
                if result.is_ok() && complete {
                    result = self.engine.send_more(link, Bytes::new(), true);
                }
            }
            if let Err(e) = result {
                tracing::info!(conn = %self.id, address = %c.address, "delivery not sent: {e}");
                let _ = self.engine.abort(link, context);
                let error = AmqpError::new(condition::MESSAGE_SIZE_EXCEEDED, e.to_string());
                d.return_to_sender(Some(DeliveryState::Rejected { error: Some(error) }));
                continue;
            }
            room -= 1;
            c.info.stats.delivery(d.presettled);
            self.delivered = true;
            if let (Some(stream), Some((slot, r)), false) = (&d.stream, &read, complete) {
                self.streaming
                    .insert(context, (link, stream.clone(), *slot, r.chunks.len()));
                self.streaming_links.insert(link);
            }
            if d.presettled || settled_on_wire {
                // Sent settled: done as far as the router is concerned.
                let state = (!d.presettled).then_some(DeliveryState::Accepted);
                if state.is_some() {
                    c.info.stats.outcome(state.as_ref());
                }
                self.returns.push(d, state);
            } else {
                c.counters.unsettled.fetch_add(1, Relaxed);
                self.in_flight.insert(context, (link, d));
            }
        }
        if let Some(l) = self.engine.link(link) {
            let left = l.credit();
            c.counters.credit.store(left, Relaxed);
            c.info.note_credit(left, self.shared.model.clock_ms());
        }
        credit_window(c, &mut self.returns);
    }

    /// More of a streaming delivery arrived (or it ended): send it on.
    fn on_stream_progress(&mut self, link: LinkId, context: u64) {
        let Some((_, stream, slot, sent)) = self.streaming.get_mut(&context) else {
            return;
        };
        let read = stream.read(*slot, *sent, usize::MAX);
        *sent += read.chunks.len();
        let mut result = Ok(());
        for chunk in read.chunks {
            if result.is_ok() {
                result = self.engine.send_more(link, chunk, false);
            }
        }
        let ended = read.complete || read.aborted || result.is_err();
        if result.is_ok() && read.complete {
            result = self.engine.send_more(link, Bytes::new(), true);
        }
        if read.aborted || result.is_err() {
            let _ = self.engine.abort(link, context);
            if let Some((_, d)) = self.in_flight.remove(&context)
                && let Some(c) = self.consumers.get(&link)
            {
                c.counters.unsettled.fetch_sub(1, Relaxed);
                if let Err(e) = result {
                    let error = AmqpError::new(condition::MESSAGE_SIZE_EXCEEDED, e.to_string());
                    d.return_to_sender(Some(DeliveryState::Rejected { error: Some(error) }));
                }
            }
        }
        if ended {
            self.streaming.remove(&context);
            self.streaming_links.remove(&link);
            self.pump(link);
        }
    }

    // ---- output ----

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if std::mem::take(&mut self.delivered) {
            self.info.touched();
        }
        for (actor, batch) in self.forwards.drain(..) {
            actor.do_send(Forward(batch));
        }
        self.returns.send();
        self.top_up_credit();
        // Each call writes at most the engine's transmit budget of transfers.
        while self.engine.poll_transmit(&mut self.out) > 0 {}
        if !self.out.is_empty() {
            // Taken whole: an idle connection keeps no output buffer.
            let bytes = std::mem::take(&mut self.out).freeze();
            if let Some(w) = &self.writer
                && w.send(bytes).is_err()
            {
                self.closed = true;
            }
        }
        self.arm_timer(ctx);
        if !self.stuck_sweep && !self.incoming.is_empty() {
            self.stuck_sweep = true;
            ctx.run_later(STUCK_SWEEP, |act, ctx| act.sweep_stuck(ctx));
        }
        if self.engine.is_closed() && !self.closed {
            self.closed = true;
            // The writer ends (and shuts the socket) once its queue drains.
            self.writer = None;
            ctx.stop();
        }
    }

    /// Marks the senders' deliveries unsettled for over [`STUCK_AGE`] as
    /// stuck (each counted once in its link's gauge until it settles), and
    /// sweeps again later while any are held.
    fn sweep_stuck(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for inc in self.incoming.values_mut() {
            if inc.presettled
                || inc.stuck
                || now.saturating_duration_since(inc.arrived) <= STUCK_AGE
            {
                continue;
            }
            inc.stuck = true;
            if let Some(p) = self.producers.get(&inc.link)
                && p.info.stuck.fetch_add(1, Relaxed) == 0
            {
                tracing::info!(
                    conn = %self.id,
                    link = p.info.id,
                    "stuck delivery: at least one delivery on this link has been unsettled for more than {} seconds",
                    STUCK_AGE.as_secs()
                );
            }
        }
        if self.incoming.is_empty() || self.closed {
            self.stuck_sweep = false;
        } else {
            ctx.run_later(STUCK_SWEEP, |act, ctx| act.sweep_stuck(ctx));
        }
    }

    /// Gives producers credit up to capacity minus what they have in flight,
    /// while their address has a path; drains them when it has none.
    fn top_up_credit(&mut self) {
        for (link, p) in self.producers.iter_mut() {
            if !p.credit_dirty {
                continue;
            }
            p.credit_dirty = false;
            let Some(l) = self.engine.link(*link) else {
                continue;
            };
            let current = l.credit();
            if !p.has_path {
                // Drain: the sender uses up or gives back the credit it has.
                // The credit itself stays: transfers the client sent before
                // it sees this flow are within it (revoking it would make
                // them protocol violations).
                if current > 0 && !l.drain() {
                    let _ = self.engine.flow(*link, current, true);
                }
                continue;
            }
            let target = p.capacity.saturating_sub(p.in_flight);
            let threshold = (p.capacity / 4).max(1);
            if target > current && (target - current >= threshold || current == 0) {
                let _ = self.engine.flow(*link, target, false);
                p.info.credit.store(target, Relaxed);
            } else if target > current {
                p.credit_dirty = true;
            }
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let next = self.engine.poll_timeout();
        match (next, &self.timer) {
            (Some(at), Some((armed, _))) if *armed == at => {}
            (next, _) => {
                if let Some((_, h)) = self.timer.take() {
                    ctx.cancel_future(h);
                }
                if let Some(at) = next {
                    let delay = at.saturating_duration_since(Instant::now());
                    let h = ctx.run_later(delay, |act, ctx| {
                        act.timer = None;
                        act.engine.handle_timeout(Instant::now());
                        act.process_events(ctx);
                        act.flush(ctx);
                    });
                    self.timer = Some((at, h));
                }
            }
        }
    }

    /// The connection is gone: give every delivery back.
    fn release_everything(&mut self) {
        let links: Vec<LinkId> = self
            .consumers
            .keys()
            .chain(self.producers.keys())
            .copied()
            .collect();
        for link in links {
            let role = if self.consumers.contains_key(&link) {
                Role::Sender
            } else {
                Role::Receiver
            };
            let (undelivered, unsettled) = if role == Role::Sender {
                let mut undelivered = Vec::new();
                let mut unsettled = Vec::new();
                for (ctx, (l, _)) in &self.in_flight {
                    if *l == link {
                        unsettled.push(*ctx);
                    }
                }
                undelivered.sort_unstable();
                unsettled.sort_unstable();
                (undelivered, unsettled)
            } else {
                (Vec::new(), Vec::new())
            };
            self.on_link_detached(LinkDetached {
                link,
                name: String::new(),
                role,
                closed: true,
                error: None,
                undelivered,
                unsettled,
            });
        }
        for (_, (_, d)) in self.in_flight.drain() {
            d.return_to_sender(Some(DeliveryState::Released));
        }
        self.returns.send();
        for (actor, batch) in self.forwards.drain(..) {
            actor.do_send(Forward(batch));
        }
    }
}

/// Gives back the senders' credit of the deliveries queued for consumer `c`
/// that fit its window (the first `capacity` of its queue, within
/// [`LINK_WINDOW_BYTES`]): the router
/// holds them for the consumer, so their senders may send more. The rest
/// wait for room as the consumer takes deliveries.
/// The IP address of `peer` (`host:port`, IPv6 in brackets).
fn remote_host(peer: &str) -> &str {
    let host = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn credit_window(c: &mut Consumer, returns: &mut OutcomeBatch) {
    while c.credited < c.capacity.min(c.queue.len()) && c.credited_bytes < LINK_WINDOW_BYTES {
        let mut bytes = 0;
        if !c.queue.mark_next(|d| {
            returns.credit(d);
            bytes = d.message.len();
        }) {
            break;
        }
        c.credited_bytes += bytes;
        c.credited += 1;
    }
}

/// A delivery as it leaves its ingress connection for its address.
pub(super) fn routed(
    address: Arc<str>,
    message: Bytes,
    presettled: bool,
    origin: Origin,
    stream: Option<Arc<Stream>>,
) -> RoutedDelivery {
    tracing::trace!(%address, key = origin.key, presettled, bytes = message.len(), streaming = stream.is_some(), "delivery received");
    RoutedDelivery {
        address,
        priority: crate::delivery::priority::of_message(&message),
        message,
        presettled,
        origin,
        fanout: None,
        detours: Detours::default(),
        stream,
        visited: crate::delivery::VisitedRouters::default(),
        hops_left: crate::delivery::HOP_LIMIT,
        remote_outstanding: None,
        ingress_sequence: 0,
        resend: false,
        credited: false,
        reach: Reach::Tree,
        trace: None,
        joined: None,
        outcome_sent: false,
    }
}

/// Queues a delivery from a client for its address actor, with a copy for
/// each subscription filter its address matches ([`super::filter`]).
fn queue_ingress(
    shared: &Shared,
    forwards: &mut Vec<(Addr<AddressActor>, Vec<RoutedDelivery>)>,
    actor: &Addr<AddressActor>,
    delivery: RoutedDelivery,
) {
    if !shared.addresses.has_filters() {
        queue_forward(forwards, actor, delivery);
        return;
    }
    let mut parts = shared.addresses.split(delivery).into_iter();
    if let Some(d) = parts.next() {
        queue_forward(forwards, actor, d);
    }
    for d in parts {
        let filter = shared.addresses.get(&d.address);
        queue_forward(forwards, &filter, d);
    }
}

/// Adds a delivery to the batch for its address actor (one `Forward` per
/// address per flush).
fn queue_forward(
    forwards: &mut Vec<(Addr<AddressActor>, Vec<RoutedDelivery>)>,
    actor: &Addr<AddressActor>,
    delivery: RoutedDelivery,
) {
    match forwards.iter_mut().find(|(a, _)| a == actor) {
        Some((_, batch)) => batch.push(delivery),
        None => forwards.push((actor.clone(), vec![delivery])),
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address());
        self.returns_to = Some(Arc::new(ctx.address().recipient()));
        self.shared.connections.insert(self.id, ctx.address());
        self.shared.model.add_connection(self.info.clone());
        let Some(socket) = self.socket.take() else {
            ctx.stop();
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        self.writer = Some(tx);
        let conn = self.id;
        match socket {
            Transport::Plain(socket) => {
                let stream = match tokio::net::TcpStream::from_std(socket) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(conn = %self.id, peer = %self.peer, "cannot register socket: {e}");
                        ctx.stop();
                        return;
                    }
                };
                let (read, write) = stream.into_split();
                actix::spawn(write_out(conn, rx, write));
                // Each read comes out as its own `BytesMut`, which the
                // engine takes over without copying.
                ctx.add_stream(ReadChunks { read });
            }
            Transport::Tls(session, _) => {
                let (read, write) = tokio::io::split(*session);
                actix::spawn(write_out(conn, rx, write));
                ctx.add_stream(TlsReadChunks { read, buf: None });
            }
        }
        tracing::debug!(conn = %self.id, peer = %self.peer, "connection accepted");
        self.flush(ctx);
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        self.routed_connection_lost();
        self.release_everything();
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.shared.connections.remove(&self.id);
        self.shared.model.remove_connection(self.id);
        self.shared.heap.connection_closed();
        self.route_container_stopped();
        tracing::debug!(conn = %self.id, peer = %self.peer, "connection actor stopped");
    }
}

impl StreamHandler<std::io::Result<BytesMut>> for ConnectionActor {
    fn handle(&mut self, item: std::io::Result<BytesMut>, ctx: &mut Context<Self>) {
        match item {
            Ok(data) => {
                self.read_at = Instant::now();
                self.engine.handle_input_buf(data, self.read_at);
                self.process_events(ctx);
                self.flush(ctx);
            }
            Err(e) => {
                tracing::info!(conn = %self.id, peer = %self.peer, "read failed: {e}");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.engine.is_closed() {
            tracing::info!(conn = %self.id, peer = %self.peer, "connection dropped by peer");
        }
        ctx.stop();
    }
}

impl Handler<Flush> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}

impl Handler<Returned> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, msg: Returned, ctx: &mut Context<Self>) {
        for key in msg.moved {
            self.credit_incoming(key);
        }
        let now = Instant::now();
        for (key, state) in msg.outcomes {
            self.settle_incoming(key, state, now);
        }
        self.schedule_flush(ctx);
    }
}

impl Handler<Deliver> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        match self.consumers.get_mut(&msg.link) {
            Some(c) => {
                for d in msg.deliveries {
                    c.queue.push(d.priority, d);
                }
                self.pump(msg.link);
                self.schedule_flush(ctx);
            }
            None => {
                // The link left while these were on their way: route again.
                for mut d in msg.deliveries {
                    d.detours.add_tried((self.id, msg.link));
                    let actor = self.shared.addresses.get(&d.address);
                    actor.do_send(Forward(vec![d]));
                }
            }
        }
    }
}

impl Handler<StreamProgress> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, msg: StreamProgress, ctx: &mut Context<Self>) {
        self.on_stream_progress(msg.link, msg.context);
        self.schedule_flush(ctx);
    }
}

impl Handler<PathState> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, msg: PathState, ctx: &mut Context<Self>) {
        if let Some(p) = self.producers.get_mut(&msg.link) {
            tracing::debug!(conn = %self.id, address = %msg.address, has_path = msg.has_path, "path state");
            p.has_path = msg.has_path;
            p.credit_dirty = true;
            self.schedule_flush(ctx);
        }
    }
}

impl Handler<Shutdown> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        // Unsettled deliveries of this connection's senders go back released.
        let keys: Vec<u64> = self.incoming.keys().copied().collect();
        let now = Instant::now();
        for key in keys {
            self.settle_incoming(key, Some(DeliveryState::Released), now);
        }
        self.engine.close(Some(AmqpError::new(
            condition::CONNECTION_FORCED,
            format!("router {} is shutting down", self.shared.router_id),
        )));
        self.flush(ctx);
        ctx.stop();
    }
}

/// Writes what the actor queues, in order; flushes whenever the queue is
/// empty (a TLS session holds the last record until then); shuts the
/// writing side when the actor drops its end.
pub(crate) async fn write_out<W: tokio::io::AsyncWrite + Unpin>(
    conn: ConnId,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    mut write: W,
) {
    while let Some(buf) = rx.recv().await {
        if let Err(e) = write.write_all(&buf).await {
            tracing::debug!(%conn, "write failed: {e}");
            break;
        }
        if rx.is_empty()
            && let Err(e) = write.flush().await
        {
            tracing::debug!(%conn, "write failed: {e}");
            break;
        }
    }
    let _ = write.shutdown().await;
}

/// A TLS session's plaintext as a stream of reads, each in a buffer of its
/// own like [`ReadChunks`]; the buffer is kept across a read that would
/// block, so an idle session allocates nothing new.
struct TlsReadChunks {
    read: tokio::io::ReadHalf<tokio_rustls::TlsStream<tokio::net::TcpStream>>,
    buf: Option<BytesMut>,
}

impl futures::Stream for TlsReadChunks {
    type Item = std::io::Result<BytesMut>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        let mut buf = this
            .buf
            .take()
            .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK));
        match tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut this.read), cx, &mut buf) {
            Poll::Pending => {
                this.buf = Some(buf);
                Poll::Pending
            }
            Poll::Ready(Ok(0)) => Poll::Ready(None),
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(buf))),
            // A peer that closes TCP without TLS's close_notify: the end of
            // input, as a plain socket's EOF (the engine knows whether the
            // AMQP connection was closed first).
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }
}

/// The socket's input as a stream of reads, each in a buffer of its own
/// (the engine takes it over without copying). A buffer is allocated only
/// once the socket is readable, so an idle connection holds none: with a
/// `FramedRead`, each connection kept a 64 KiB buffer, and the engine the
/// rest of the one before (16–20 KiB of resident memory per idle
/// connection in all, `BENCHMARKS.md`).
struct ReadChunks {
    read: tokio::net::tcp::OwnedReadHalf,
}

impl futures::Stream for ReadChunks {
    type Item = std::io::Result<BytesMut>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let stream: &tokio::net::TcpStream = self.read.as_ref();
        loop {
            match stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(())) => {}
            }
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            match stream.try_read_buf(&mut buf) {
                Ok(0) => return Poll::Ready(None),
                Ok(_) => return Poll::Ready(Some(Ok(buf))),
                // Readiness was stale: it is cleared, wait again.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}
