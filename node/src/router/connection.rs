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

use std::collections::VecDeque;
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
use super::link::LinkCounters;
use crate::config::{Distribution, ListenerConfig};
use crate::delivery::{
    ConnId, FastMap, FastSet, MessageTrace, Origin, OutcomeBatch, Reach, Returned, RoutedDelivery,
    SeqMap, Stream, StreamProgress, trace,
};
use crate::model::{ConnectionInfo, LinkDir, LinkInfo};
use bote_amqp::{
    AmqpError, Attach, Connection, ConnectionConfig, DeliveryState, ErrorScope, Event,
    IncomingTransfer, LinkConfig, LinkDetached, LinkId, MessageView, Role, SaslConfig,
    SendDelivery, SenderSettleMode, Side, Source, Target, condition,
};

/// A consumer link's window in message bytes (besides the link capacity
/// in deliveries): the router holds no more than this for a consumer
/// before the senders' credit waits for it to take some.
pub const LINK_WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// Bytes read from the socket per read call, at most.
const READ_CHUNK: usize = 64 * 1024;

/// How long the router waits for the peer's close after closing a
/// connection for an error, before it drops the socket.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Routed here, waiting for the consumer's credit.
    queue: VecDeque<RoutedDelivery>,
    /// The first this many of `queue` had their senders' credit given back
    /// (the link's window, at most `capacity` and [`LINK_WINDOW_BYTES`]),
    /// with their message bytes; the rest wait for room.
    credited: usize,
    credited_bytes: usize,
    /// The listener's link capacity: the window of deliveries the router
    /// holds for this consumer beyond what it gave credit for.
    capacity: usize,
    /// The link in the read model.
    info: Arc<LinkInfo>,
}

pub struct ConnectionActor {
    id: ConnId,
    peer: String,
    engine: Connection,
    shared: Arc<Shared>,
    listener: Arc<ListenerConfig>,
    /// Set when the listener annotates outgoing messages.
    annotations: Option<RouterAnnotations>,
    socket: Option<std::net::TcpStream>,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    out: BytesMut,
    flush_scheduled: bool,
    timer: Option<(Instant, SpawnHandle)>,
    producers: FastMap<LinkId, Producer>,
    consumers: FastMap<LinkId, Consumer>,
    incoming: SeqMap<Incoming>,
    next_key: u64,
    /// Deliveries sent on consumer links and not settled yet, by context.
    in_flight: SeqMap<(LinkId, RoutedDelivery)>,
    next_context: u64,
    /// Deliveries to hand to address actors at the next flush.
    forwards: Vec<(Addr<AddressActor>, Vec<RoutedDelivery>)>,
    /// Egress deliveries whose body is still streaming in: context -> (link,
    /// stream, chunks sent so far).
    streaming: SeqMap<(LinkId, Arc<Stream>, usize)>,
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
}

impl ConnectionActor {
    /// A connection accepted on `listener`.
    pub fn accepted(
        id: ConnId,
        socket: std::net::TcpStream,
        peer: String,
        listener: Arc<ListenerConfig>,
        shared: Arc<Shared>,
    ) -> Self {
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
                mechanisms: listener
                    .sasl_mechanisms
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect(),
                required: listener.require_sasl,
            },
            ..ConnectionConfig::default()
        };
        let mut engine = Connection::new(config, Side::Server, Instant::now());
        engine.open();
        let annotations = listener
            .strip_annotations
            .annotates_outbound()
            .then(|| RouterAnnotations::new(&shared.router_id));
        let info = Arc::new(ConnectionInfo::new(id, peer.clone()));
        ConnectionActor {
            id,
            peer,
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
                    self.info.opened.store(true, Relaxed);
                }
                Event::AttachRequested { link, attach } => self.on_attach(link, *attach),
                Event::Flow { link, .. } => self.pump(link),
                Event::Transfer(t) => self.on_transfer(t),
                Event::Disposition {
                    link,
                    delivery_id,
                    context,
                    state,
                    settled,
                } => self.on_consumer_disposition(link, delivery_id, context, state, settled),
                Event::LinkDetached(d) => self.on_link_detached(*d),
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
                Event::SaslInit { mechanism, .. } => {
                    // Only ANONYMOUS is configured today; anything else the
                    // engine reports is refused.
                    tracing::info!(conn = %self.id, %mechanism, "SASL mechanism refused");
                    let _ = self.engine.sasl_outcome(false);
                }
                Event::SaslAuthenticated { mechanism } => {
                    let _ = self.info.sasl.set(mechanism);
                }
                Event::SessionBegun { .. }
                | Event::SessionEnded { .. }
                | Event::LinkAttached { .. } => {}
            }
        }
    }

    fn on_attach(&mut self, link: LinkId, attach: Attach) {
        match attach.role {
            // The client sends: the router receives on this link.
            Role::Sender => {
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
                    max_message_size: self.listener.max_message_size_limit(),
                    ..LinkConfig::receiver(attach.name.clone(), None)
                };
                if let Err(e) = self.engine.accept_attach(link, config) {
                    tracing::warn!(conn = %self.id, "cannot accept attach of {}: {e}", attach.name);
                    return;
                }
                let address: Option<Arc<str>> = address.map(Arc::from);
                let actor = address.as_ref().map(|a| self.shared.addresses.get(a));
                tracing::info!(conn = %self.id, link = %attach.name, address = address.as_deref().unwrap_or("<anonymous>"), "sender attached");
                let anonymous = actor.is_none();
                let info = self.shared.model.add_link(
                    &self.info,
                    &attach.name,
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
                tracing::info!(conn = %self.id, link = %attach.name, %address, "receiver attached");
                let address: Arc<str> = Arc::from(address);
                let actor = self.shared.addresses.get(&address);
                let counters = Arc::new(LinkCounters::default());
                let info = self.shared.model.add_link(
                    &self.info,
                    &attach.name,
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
                    Consumer {
                        address,
                        actor,
                        counters,
                        queue: VecDeque::new(),
                        credited: 0,
                        credited_bytes: 0,
                        capacity: self.listener.link_capacity as usize,
                        info,
                    },
                );
            }
        }
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
            },
        );
        // The message is only read on anonymous links, for its `to`: a
        // targeted link routes on its target and passes the bytes through.
        // (The priority matters between routers only; it is read there.)
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
                    self.settle_incoming(key, Some(DeliveryState::Rejected { error: Some(error) }));
                    return None;
                };
                if self.shared.addresses.distribution(&to) == Distribution::Unavailable {
                    let error = AmqpError::new(
                        condition::NOT_FOUND,
                        format!("address '{to}' is unavailable"),
                    );
                    self.settle_incoming(key, Some(DeliveryState::Rejected { error: Some(error) }));
                    return None;
                }
                let actor = self.shared.addresses.get(&to);
                let mut delivery = routed(Arc::from(to), payload, settled, origin, stream);
                if trace::enabled() {
                    delivery.trace =
                        MessageTrace::at_ingress(&delivery.address, &delivery.message, &self.peer);
                }
                self.queue_ingress(&actor, delivery);
                return Some(key);
            }
        };
        let mut delivery = routed(address, payload, settled, origin, stream);
        if trace::enabled() {
            delivery.trace =
                MessageTrace::at_ingress(&delivery.address, &delivery.message, &self.peer);
        }
        let actor = actor.clone();
        self.queue_ingress(&actor, delivery);
        Some(key)
    }

    /// Queues a delivery from a client for its address actor, with a copy
    /// for each subscription filter its address matches
    /// ([`super::filter`]).
    fn queue_ingress(&mut self, actor: &Addr<AddressActor>, delivery: RoutedDelivery) {
        if !self.shared.addresses.has_filters() {
            queue_forward(&mut self.forwards, actor, delivery);
            return;
        }
        let mut parts = self.shared.addresses.split(delivery).into_iter();
        if let Some(d) = parts.next() {
            queue_forward(&mut self.forwards, actor, d);
        }
        for d in parts {
            let filter = self.shared.addresses.get(&d.address);
            queue_forward(&mut self.forwards, &filter, d);
        }
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
    fn settle_incoming(&mut self, key: u64, state: Option<DeliveryState>) {
        let Some(inc) = self.incoming.remove(&key) else {
            return;
        };
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
            let mut returned: Vec<RoutedDelivery> = c.queue.drain(..).collect();
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
            self.streaming.retain(|_, (l, _, _)| *l != d.link);
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
            let Some(mut d) = c.queue.pop_front() else {
                break;
            };
            // Leaving the queue: out of the window, or moving on past it.
            match c.credited.checked_sub(1) {
                Some(n) => {
                    c.credited = n;
                    c.credited_bytes = c.credited_bytes.saturating_sub(d.message.len());
                }
                None => self.returns.credit(&mut d),
            }
            c.counters.undelivered.fetch_sub(1, Relaxed);
            let context = self.next_context;
            self.next_context += 1;
            let read = d.stream.as_ref().map(|s| {
                let me = self.me.clone().expect("connection actor started");
                s.read(0, Some((me.recipient(), link, context)))
            });
            if read.as_ref().is_some_and(|r| r.aborted) {
                // The sender gave up on it before a byte went out.
                continue;
            }
            let complete = read.as_ref().is_none_or(|r| r.complete);
            // A traced delivery carries its egress span's context in
            // message-annotations (spliced; the bare message is untouched).
            let trace_entries = match &mut d.trace {
                Some(t) => t.send_to_client(&c.address, &self.peer, d.visited.len()),
                None => Vec::new(),
            };
            let trace_entries: Vec<(&str, &[u8])> = trace_entries
                .iter()
                .map(|(k, v)| (*k, v.as_slice()))
                .collect();
            let spliced = match &self.annotations {
                None if trace_entries.is_empty() => Ok(d.message.clone()),
                None => annotations::splice(&d.message, d.stream.is_none(), &trace_entries),
                Some(a) => a.annotate(&d.message, d.stream.is_none(), &d.visited, &trace_entries),
            };
            let payload = spliced.unwrap_or_else(|e| {
                tracing::debug!(conn = %self.id, address = %c.address, "message sent without router annotations: {e}");
                d.message.clone()
            });
            let send = SendDelivery {
                tag: Bytes::copy_from_slice(&context.to_be_bytes()),
                payload,
                settled: d.presettled,
                message_format: 0,
                context,
                complete: read.is_none(),
            };
            let mut result = self.engine.send(link, send);
            if let Some(r) = &read {
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
            if let (Some(stream), Some(r), false) = (&d.stream, &read, complete) {
                self.streaming
                    .insert(context, (link, stream.clone(), r.chunks.len()));
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
        credit_window(c, &mut self.returns);
    }

    /// More of a streaming delivery arrived (or it ended): send it on.
    fn on_stream_progress(&mut self, link: LinkId, context: u64) {
        let Some((_, stream, sent)) = self.streaming.get_mut(&context) else {
            return;
        };
        let read = stream.read(*sent, None);
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
        if self.engine.is_closed() && !self.closed {
            self.closed = true;
            // The writer ends (and shuts the socket) once its queue drains.
            self.writer = None;
            ctx.stop();
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
fn credit_window(c: &mut Consumer, returns: &mut OutcomeBatch) {
    while c.credited < c.capacity.min(c.queue.len()) && c.credited_bytes < LINK_WINDOW_BYTES {
        let d = &mut c.queue[c.credited];
        returns.credit(d);
        c.credited_bytes += d.message.len();
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
        message,
        presettled,
        priority: 4,
        origin,
        fanout: None,
        tried: Vec::new(),
        released_by: Vec::new(),
        stream,
        visited: crate::delivery::VisitedRouters::default(),
        hops_left: crate::delivery::HOP_LIMIT,
        remote_outstanding: None,
        ingress_sequence: 0,
        resend: false,
        resent_from: None,
        credited: false,
        reach: Reach::Tree,
        trace: None,
        joined: None,
        outcome_sent: false,
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
        let stream = match tokio::net::TcpStream::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(conn = %self.id, peer = %self.peer, "cannot register socket: {e}");
                ctx.stop();
                return;
            }
        };
        let (read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        self.writer = Some(tx);
        let conn = self.id;
        actix::spawn(async move {
            while let Some(buf) = rx.recv().await {
                if let Err(e) = write.write_all(&buf).await {
                    tracing::debug!(%conn, "write failed: {e}");
                    break;
                }
            }
            let _ = write.shutdown().await;
        });
        // Each read comes out as its own `BytesMut`, which the engine takes
        // over without copying.
        ctx.add_stream(ReadChunks { read });
        tracing::debug!(conn = %self.id, peer = %self.peer, "connection accepted");
        self.flush(ctx);
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        self.release_everything();
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.shared.connections.remove(&self.id);
        self.shared.model.remove_connection(self.id);
        self.shared.heap.connection_closed();
        tracing::debug!(conn = %self.id, peer = %self.peer, "connection actor stopped");
    }
}

impl StreamHandler<std::io::Result<BytesMut>> for ConnectionActor {
    fn handle(&mut self, item: std::io::Result<BytesMut>, ctx: &mut Context<Self>) {
        match item {
            Ok(data) => {
                self.engine.handle_input_buf(data, Instant::now());
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
        for (key, state) in msg.outcomes {
            self.settle_incoming(key, state);
        }
        self.schedule_flush(ctx);
    }
}

impl Handler<Deliver> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        match self.consumers.get_mut(&msg.link) {
            Some(c) => {
                c.queue.extend(msg.deliveries);
                self.pump(msg.link);
                self.schedule_flush(ctx);
            }
            None => {
                // The link left while these were on their way: route again.
                for mut d in msg.deliveries {
                    d.tried.push((self.id, msg.link));
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
        for key in keys {
            self.settle_incoming(key, Some(DeliveryState::Released));
        }
        self.engine.close(Some(AmqpError::new(
            condition::CONNECTION_FORCED,
            format!("router {} is shutting down", self.shared.router_id),
        )));
        self.flush(ctx);
        ctx.stop();
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
