//! One actor per MQTT session, on a worker arbiter (on the mesh's arbiter
//! for a plain-TCP connection on a router in a mesh, see
//! `router::listener::connection_arbiter`): while its client is
//! connected it owns the connection (socket reads and writes, packets
//! through [`super::codec`]); a persistent session outlives it. To the
//! router it looks like a connection with links:
//!
//! - **Publishing** (the client's PUBLISH): one routed delivery per
//!   message to the topic's address, with a copy per matching subscription
//!   filter (`router::filter`). QoS 0 goes presettled. QoS 1 goes
//!   unsettled and its PUBACK is sent only when the outcome is `accepted`;
//!   `released` or `modified` (nobody took it, or a consumer failed) is
//!   routed again after a pause (100 ms doubling to 2 s) for as long as the
//!   connection lasts, never acknowledged early. `rejected` is a PUBACK
//!   with reason 0x80 in 5.0; 3.1.1 has no negative acknowledgement, so it
//!   is acknowledged and logged. QoS 1 messages awaiting their outcome are
//!   bounded by the listener's link capacity (5.0 announces it as receive
//!   maximum, and more is DISCONNECT 0x93; a 3.1.1 client past twice that
//!   is disconnected). A retained PUBLISH also goes to every router's
//!   retained store ([`super::retain`]); being stored there, its PUBACK
//!   does not wait for a live subscriber (5.0 reason 0x10 if none took
//!   it).
//! - **Subscribing**: each filter is a consumer link of its address actor
//!   (`AttachConsumer`, like an AMQP receiver), granted QoS at most 1. The
//!   topic's retained messages go first (retain flag set), then deliveries
//!   as PUBLISH: QoS 1 when both the subscription and the delivery are,
//!   at most the client's receive maximum (5.0) or link capacity
//!   unacknowledged, the rest queued; the client's PUBACK settles them
//!   `accepted`. A subscription that ends gives back what it never sent.
//! - **Sessions**: a clean session ends with its connection: what was sent
//!   and not acknowledged goes back `modified`, what was queued goes back
//!   `released`. A persistent one (3.1.1 clean-session 0; 5.0 a session
//!   expiry interval) stays, with its subscriptions, for
//!   `mqtt-session-expiry-secs` (5.0: its own interval, capped by that):
//!   QoS 1 deliveries queue for it, at most `mqtt-session-max-messages` and
//!   `mqtt-session-max-bytes` (past either, a delivery goes back
//!   `released`, so its sender sees that nobody took it; QoS 0 deliveries
//!   for an absent client are dropped). A client that connects again with
//!   the same id to the same router and does not ask for a clean session
//!   gets it back (CONNACK session-present 1): the unacknowledged messages
//!   again (DUP), then the queue. The new connection's actor hands its
//!   socket's reader and writer to the session's actor ([`Resume`]); the
//!   reader reads one chunk per request, so no input is in flight during
//!   the handover. A session not on this router is asked of the mesh
//!   first ([`super::mesh`]): handed over by the router that has it
//!   ([`HandOver`], [`HandedOver`]), or restored from its replica; the
//!   CONNECT waits for that (input is not read meanwhile). Each change of
//!   a persistent session's record raises its version and is announced
//!   to the other MQTT routers' replicas; a newer copy elsewhere ends a
//!   stale one here ([`Superseded`]).
//! - **Keep-alive**: no packet within 1.5 times the keep-alive ends the
//!   connection (5.0: DISCONNECT 0x8D). **Will**: published when the
//!   connection ends without DISCONNECT (or with 5.0 reason 0x04), at
//!   once (a 5.0 will delay is not applied).
//! - **Bad input** ends only this connection: a first packet that is not
//!   CONNECT, a malformed packet, a packet over `max-message-size`, QoS 2,
//!   a wildcard in a PUBLISH topic (5.0: DISCONNECT with the reason code
//!   first: 0x81, 0x95, 0x9B, 0x90, ...).
//! - A second connection with the same client id takes over: with a clean
//!   session the old session ends (its connection closed, 5.0 0x8E); else
//!   the session moves to the new connection.
//!
//! - **On disk** (`[router] data-dir`, [`super::store`]): a persistent
//!   session's record (client id, subscriptions, expiry) is written when
//!   its client connects and when its subscriptions change; when the
//!   client goes away, with what the session holds for it (QoS 1 messages
//!   sent and not acknowledged, then queued); each QoS 1 message queued
//!   while it is away is appended. Resumed, the stored queue is emptied
//!   (the messages are in memory again); ended (clean connect, expiry,
//!   persistence turned off), it is removed. At start, [`restore`] starts
//!   an actor per unexpired stored session, subscribed and waiting with
//!   its queue. A restored message's sender is gone, so its PUBACK
//!   settles nothing upstream. Writes go through the store's writer
//!   thread, batched, off this actor.
//!
//! Not done: QoS 2 (5.0 CONNACK says maximum QoS 1; a SUBSCRIBE asking 2
//! is granted 1, as both versions allow); the will is not stored or
//! replicated.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::codec::{self, Inbound, Publish, ReadError, Version, Writer};
use super::store::{Change, QueuedMessage, SessionRecord, StoredSession};
use super::{message, retain};
use crate::config::{Config, Distribution, ListenerConfig, Protocol};
use crate::delivery::{
    ConnId, Detours, FastMap, Origin, OutcomeBatch, Reach, Returned, RoutedDelivery, StreamProgress,
};
use crate::model::{ConnectionInfo, LinkDir, LinkInfo};
use crate::router::address::{AddressActor, AttachConsumer, Deliver, DetachConsumer, Forward};
use crate::router::connection::{Shutdown, Transport, write_out};
use crate::router::filter;
use crate::router::link::LinkCounters;
use crate::router::{ClientEntry, Shared};
use bote_amqp::{DeliveryState, LinkId, SessionId};

/// Bytes read from the socket per read call, at most.
const READ_CHUNK: usize = 64 * 1024;

/// The first and the longest pause before a QoS 1 message that came back
/// released or modified is routed again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Counters of the router's MQTT traffic (`/metrics`).
#[derive(Default)]
pub struct MqttCounters {
    pub connections: std::sync::atomic::AtomicU64,
    pub sessions: std::sync::atomic::AtomicI64,
    pub publish_in: std::sync::atomic::AtomicU64,
    pub publish_out: std::sync::atomic::AtomicU64,
    pub protocol_errors: std::sync::atomic::AtomicU64,
}

/// The process's MQTT counters.
pub static COUNTERS: MqttCounters = MqttCounters {
    connections: std::sync::atomic::AtomicU64::new(0),
    sessions: std::sync::atomic::AtomicI64::new(0),
    publish_in: std::sync::atomic::AtomicU64::new(0),
    publish_out: std::sync::atomic::AtomicU64::new(0),
    protocol_errors: std::sync::atomic::AtomicU64::new(0),
};

/// A QoS 1 PUBLISH of the client awaiting its outcome (or a retry).
struct Pending {
    pkid: u16,
    /// A retained message: the retained stores have it, so nobody taking
    /// the live copy is no reason to hold its PUBACK.
    retained: bool,
    address: Arc<str>,
    message: Bytes,
    retry_after: Duration,
}

/// A subscription: a consumer link of its filter's address.
struct Subscription {
    link: LinkId,
    qos: u8,
    actor: Addr<AddressActor>,
    counters: Arc<LinkCounters>,
    info: Arc<LinkInfo>,
}

/// Asks the socket's reader for one more chunk, for `generation` at `to`.
type ReadRequest = (u64, Recipient<Input>);

/// A chunk the socket's reader read (`None`: the socket is done), for the
/// connection generation `generation`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Input {
    generation: u64,
    data: Option<Bytes>,
}

/// A new connection takes over this persistent session (see the module
/// doc): its socket's reader and writer, the CONNECT, and what it read
/// after the CONNECT.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume {
    reader: mpsc::UnboundedSender<ReadRequest>,
    writer: mpsc::UnboundedSender<Bytes>,
    connect: codec::Connect,
    leftover: BytesMut,
    peer: String,
}

pub struct MqttConnection {
    id: ConnId,
    peer: String,
    shared: Arc<Shared>,
    listener: Arc<ListenerConfig>,
    socket: Option<Transport>,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    reader: Option<mpsc::UnboundedSender<ReadRequest>>,
    /// The connection's generation: input of an earlier one is ignored.
    generation: u64,
    input: BytesMut,
    out: BytesMut,
    /// Set once CONNECT is in.
    w: Option<Writer>,
    client_id: String,
    will: Option<Publish>,
    keep_alive: Option<Duration>,
    last_input: Instant,
    /// A client is connected (false before CONNECT is handled, and while
    /// a persistent session waits for its client).
    attached: bool,
    /// The session outlives its connection, for this long.
    persistent: Option<Duration>,
    /// This actor handed its connection to an existing session and ends.
    handed_off: bool,
    /// The session is registered under its client id.
    registered: bool,
    next_key: u64,
    incoming: FastMap<u64, Pending>,
    subscriptions: BTreeMap<String, Subscription>,
    links: FastMap<LinkId, String>,
    next_link: u32,
    /// Deliveries for subscriptions, waiting for room in `in_flight`.
    queue: VecDeque<(LinkId, RoutedDelivery)>,
    /// The front of `queue` while it is still streaming in: its stream,
    /// this reader's slot in it, and the chunks gathered so far (an MQTT
    /// PUBLISH goes whole, so the chunks are joined here as they come).
    front_read: Option<(Arc<crate::delivery::stream::Stream>, usize, Vec<Bytes>)>,
    queue_bytes: usize,
    /// QoS 1 PUBLISH sent and not acknowledged, by packet id.
    in_flight: BTreeMap<u16, (LinkId, RoutedDelivery)>,
    next_pkid: u16,
    max_in_flight: usize,
    returns: OutcomeBatch,
    returns_to: Option<Arc<Recipient<Returned>>>,
    me: Option<Addr<MqttConnection>>,
    info: Arc<ConnectionInfo>,
    flush_scheduled: bool,
    retained: Arc<retain::MqttState>,
    keep_alive_timer: Option<SpawnHandle>,
    /// The session is in the store on disk (written by this actor).
    stored: bool,
    /// A session read from the store at start, set up once started.
    restored: Option<StoredSession>,
    /// The CONNECT waits for the mesh's answer about its session
    /// ([`super::mesh::FetchSession`]); input waits meanwhile.
    fetching: bool,
    /// The session was handed to another router, which has not confirmed
    /// yet: the QoS 1 messages it was given, kept until then.
    handing: Option<Handing>,
    /// The session record's version ([`SessionRecord::version`]).
    version: u64,
    /// The record was announced to the mesh's replicas (an end is too).
    replicated: bool,
}

/// What a session handed over keeps until the other router confirms:
/// the deliveries sent and not acknowledged, and those queued.
struct Handing {
    sent: Vec<(LinkId, RoutedDelivery)>,
    queued: Vec<(LinkId, RoutedDelivery)>,
}

/// Another router asks for this persistent session (see
/// [`super::mesh`]): its client, if connected, is disconnected (5.0
/// reason 0x8E), and the session's record and QoS 1 messages are handed
/// over. `None`: not a persistent session, or one being handed already.
#[derive(Message)]
#[rtype(result = "Option<HandOff>")]
pub struct HandOver;

/// A session as it is handed over; `token` names the session actor.
pub struct HandOff {
    pub record: SessionRecord,
    pub queue: Vec<QueuedMessage>,
    pub token: u64,
}

/// The router the session was handed to took it: the handed messages are
/// settled `accepted` and the session ends here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandedOver;

/// Write what is pending (once per mailbox run).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl MqttConnection {
    pub fn accepted(
        id: ConnId,
        socket: Transport,
        peer: String,
        listener: Arc<ListenerConfig>,
        shared: Arc<Shared>,
    ) -> Self {
        let mut c = Self::from_parts(id, peer, listener, shared);
        if let Transport::Tls(_, tls) = &socket {
            let _ = c.info.tls.set(tls.clone());
        }
        c.socket = Some(socket);
        c
    }

    fn from_parts(
        id: ConnId,
        peer: String,
        listener: Arc<ListenerConfig>,
        shared: Arc<Shared>,
    ) -> Self {
        let mut info = ConnectionInfo::new(id, peer.clone());
        info.protocol = "mqtt";
        MqttConnection {
            id,
            peer,
            retained: retain::state(&shared),
            shared,
            max_in_flight: listener.link_capacity as usize,
            listener,
            socket: None,
            writer: None,
            reader: None,
            generation: 0,
            input: BytesMut::new(),
            out: BytesMut::new(),
            w: None,
            client_id: String::new(),
            will: None,
            keep_alive: None,
            last_input: Instant::now(),
            attached: false,
            persistent: None,
            handed_off: false,
            registered: false,
            next_key: 0,
            incoming: FastMap::default(),
            subscriptions: BTreeMap::new(),
            links: FastMap::default(),
            next_link: 0,
            queue: VecDeque::new(),
            front_read: None,
            queue_bytes: 0,
            in_flight: BTreeMap::new(),
            next_pkid: 0,
            returns: OutcomeBatch::default(),
            returns_to: None,
            me: None,
            info: Arc::new(info),
            flush_scheduled: false,
            keep_alive_timer: None,
            stored: false,
            restored: None,
            fetching: false,
            handing: None,
            version: 0,
            replicated: false,
        }
    }

    /// A persistent session read from the store at start, waiting for its
    /// client (see [`restore`]).
    fn restored(
        id: ConnId,
        session: StoredSession,
        expiry: Duration,
        listener: Arc<ListenerConfig>,
        shared: Arc<Shared>,
    ) -> Self {
        let mut c = Self::from_parts(id, "(stored session)".to_owned(), listener, shared);
        c.client_id = session.client_id.clone();
        c.persistent = Some(expiry);
        c.registered = true;
        c.w = Some(Writer {
            version: if session.record.protocol_level == 5 {
                Version::V5
            } else {
                Version::V311
            },
        });
        c.version = session.record.version;
        c.restored = Some(session);
        c
    }

    fn me(&self) -> Addr<MqttConnection> {
        self.me.clone().expect("started")
    }

    fn max_packet(&self) -> usize {
        match self.listener.max_message_size_limit() {
            Some(n) => n.min(256 * 1024 * 1024) as usize,
            None => 256 * 1024 * 1024,
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    fn flush(&mut self) {
        self.flush_scheduled = false;
        self.returns.send();
        if !self.out.is_empty() {
            let bytes = std::mem::take(&mut self.out).freeze();
            match &self.writer {
                Some(w) => {
                    let _ = w.send(bytes);
                }
                // Nobody to write to (the session waits for its client).
                None => drop(bytes),
            }
        }
    }

    /// Asks the reader for the next chunk of the current connection.
    fn read_more(&self) {
        if let Some(r) = &self.reader {
            let _ = r.send((self.generation, self.me().recipient()));
        }
    }

    /// Ends the connection for a protocol error: 5.0 gets DISCONNECT with
    /// `reason` first; 3.1.1 has none, the socket just closes.
    fn fail(&mut self, reason: u8, why: &str, ctx: &mut Context<Self>) {
        tracing::info!(conn = %self.id, peer = %self.peer, client = %self.client_id, "MQTT connection closed: {why}");
        if reason != 0x8E && reason != 0x8B {
            COUNTERS.protocol_errors.fetch_add(1, Relaxed);
        }
        if let Some(w) = &self.w {
            w.disconnect(reason, why, &mut self.out);
        }
        self.end_connection(ctx);
    }

    /// The connection ends (the session may not): what is written goes, the
    /// socket closes, the will (if any) is published; a persistent session
    /// stays for its expiry, any other ends.
    fn end_connection(&mut self, ctx: &mut Context<Self>) {
        self.flush();
        // The writer ends (and shuts the socket) once its queue drains.
        self.writer = None;
        self.reader = None;
        self.generation += 1;
        let was_attached = std::mem::replace(&mut self.attached, false);
        self.info.opened.store(false, Relaxed);
        self.publish_will();
        self.incoming.clear();
        match self.persistent {
            Some(expiry) if was_attached && !self.handed_off => {
                tracing::info!(conn = %self.id, client = %self.client_id, "MQTT session kept for {}s", expiry.as_secs());
                let queue = self.stored_queue();
                self.store_session(Some(queue));
                self.expire_after(expiry, ctx);
            }
            _ => ctx.stop(),
        }
    }

    /// The session ends after `expiry` unless a client takes it before.
    fn expire_after(&mut self, expiry: Duration, ctx: &mut Context<Self>) {
        let generation = self.generation;
        ctx.run_later(expiry, move |act, ctx| {
            if !act.attached && act.generation == generation {
                tracing::info!(conn = %act.id, client = %act.client_id, "MQTT session expired");
                ctx.stop();
            }
        });
    }

    /// The session as the store keeps it (`None`: not persistent).
    fn session_record(&self) -> Option<SessionRecord> {
        let expiry = self.persistent?;
        Some(SessionRecord {
            protocol_level: match self.w.as_ref().map(|w| w.version) {
                Some(Version::V5) => 5,
                _ => 4,
            },
            expiry_secs: expiry.as_secs(),
            disconnected_at: (!self.attached).then(unix_now),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(f, s)| (f.clone(), s.qos))
                .collect(),
            version: self.version,
        })
    }

    /// The session changed: its version goes up, the record goes to the
    /// mesh's replicas ([`super::mesh`]) and to the store on disk (see
    /// [`Self::write_session`]).
    fn store_session(&mut self, queue: Option<Vec<QueuedMessage>>) {
        if !self.registered {
            return;
        }
        let record = self.session_record().map(|mut r| {
            r.version = self.version.saturating_add(1).max(unix_micros());
            r
        });
        if let Some(r) = &record {
            self.version = r.version;
        }
        self.replicate(record.clone());
        self.write_session(record, queue);
    }

    /// Announces the session record (`None`: its end, if it was announced)
    /// to the mesh's replicas, through the router's MQTT node.
    fn replicate(&mut self, record: Option<SessionRecord>) {
        let Some(node) = self.retained.node.get() else {
            return;
        };
        if record.is_none() && !self.replicated {
            return;
        }
        self.replicated = record.is_some();
        node.do_send(super::mesh::Replicate {
            client_id: self.client_id.clone(),
            record,
            // An end is newer than the session's last record (and than
            // a record it was taken from).
            ended_version: self.version.saturating_add(1),
        });
    }

    /// Writes the session to the store on disk, if the router has one:
    /// a persistent session's `record` (`queue`, when set, replaces its
    /// stored queue); a session no longer persistent (`None`) is removed.
    fn write_session(&mut self, record: Option<SessionRecord>, queue: Option<Vec<QueuedMessage>>) {
        let Some(store) = &self.retained.store else {
            return;
        };
        match record {
            Some(record) => {
                store.send(Change::Session {
                    client_id: self.client_id.clone(),
                    owner: self.id.0,
                    record,
                    queue,
                });
                self.stored = true;
            }
            None if self.stored => {
                store.send(Change::SessionEnded {
                    client_id: self.client_id.clone(),
                    owner: self.id.0,
                });
                self.stored = false;
            }
            None => {}
        }
    }

    /// What the session holds for its client, as the store keeps it: the
    /// A queued delivery that goes with the session when it is stored or
    /// handed over: unsettled, whole (not still streaming in), for a QoS 1
    /// subscription.
    fn is_storable_qos1(&self, link: LinkId, d: &RoutedDelivery) -> bool {
        !d.presettled
            && d.stream.is_none()
            && self
                .links
                .get(&link)
                .and_then(|f| self.subscriptions.get(f))
                .is_some_and(|s| s.qos == 1)
    }

    /// QoS 1 messages sent and not acknowledged, then those queued (a
    /// message still streaming in is not stored).
    fn stored_queue(&self) -> Vec<QueuedMessage> {
        let sent = self.in_flight.values();
        let queued = self
            .queue
            .iter()
            .filter(|(link, d)| self.is_storable_qos1(*link, d));
        sent.chain(queued)
            .filter_map(|(link, d)| {
                Some(QueuedMessage {
                    filter: self.links.get(link)?.clone(),
                    address: d.address.to_string(),
                    message: d.message.clone(),
                })
            })
            .collect()
    }

    /// Sets up a session read from the store: its subscriptions attach
    /// (so the mesh routes to it again), its queue waits for its client,
    /// and it expires as it would have.
    fn start_restored(&mut self, session: StoredSession, ctx: &mut Context<Self>) {
        COUNTERS.sessions.fetch_add(1, Relaxed);
        let _ = self.info.container.set(self.client_id.clone());
        let queued = self.take_session(&session.record, session.queue);
        // This actor owns the stored session from now on (same version: a
        // copy taken by another router while this one was down is newer).
        let record = self.session_record();
        self.replicate(record.clone());
        self.write_session(record, None);
        let expiry = self.persistent.unwrap_or_default();
        tracing::info!(conn = %self.id, client = %self.client_id, subscriptions = self.subscriptions.len(), queued, "MQTT session restored from the store, kept for {}s", expiry.as_secs());
        self.expire_after(expiry, ctx);
    }

    /// Takes a session's subscriptions and queue (from the store or from
    /// another router); returns how many messages were queued.
    fn take_session(&mut self, record: &SessionRecord, queue: Vec<QueuedMessage>) -> usize {
        for (f, qos) in &record.subscriptions {
            if let Err(code) = self.subscribe(f, *qos) {
                tracing::warn!(conn = %self.id, client = %self.client_id, filter = %f, "MQTT subscription of a stored or handed-over session not restored (reason {code:#04x})");
            }
        }
        let queued = queue.len();
        for m in queue {
            let Some(sub) = self.subscriptions.get(&m.filter) else {
                continue;
            };
            sub.counters.undelivered.fetch_add(1, Relaxed);
            let link = sub.link;
            // Its sender was answered by the router that had the message
            // (or is gone with its previous run): the client's PUBACK
            // settles nothing upstream.
            let d = delivery(
                Arc::from(m.address.as_str()),
                m.message,
                false,
                self.origin(u64::MAX),
            );
            self.queue_bytes += d.message.len();
            self.queue.push_back((link, d));
        }
        queued
    }

    /// Hands this persistent session over to another router (see
    /// [`HandOver`]); its QoS 1 messages are kept aside until confirmed.
    fn hand_over(&mut self, ctx: &mut Context<Self>) -> Option<HandOff> {
        if self.persistent.is_none() && self.attached && self.registered && !self.handed_off {
            // Not a persistent session: nothing to hand over, but its
            // client id is taken by a connection on another router.
            self.fail(
                0x8E,
                "session taken over by a connection on another router",
                ctx,
            );
            return None;
        }
        if self.persistent.is_none()
            || !self.registered
            || self.handed_off
            || self.fetching
            || self.handing.is_some()
        {
            return None;
        }
        if self.attached {
            tracing::info!(conn = %self.id, client = %self.client_id, "MQTT session taken over by a connection on another router");
            if let Some(w) = &self.w {
                w.disconnect(0x8E, "session taken over", &mut self.out);
            }
            self.end_connection(ctx);
        }
        let record = self.session_record()?;
        let (sent, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|(_, (link, _))| self.links.contains_key(link));
        self.in_flight = kept.into_iter().collect();
        let sent: Vec<_> = sent.into_iter().map(|(_, e)| e).collect();
        let (queued, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|(link, d)| self.is_storable_qos1(*link, d));
        self.queue = kept.into_iter().collect();
        self.queue_bytes -= queued.iter().map(|(_, d)| d.message.len()).sum::<usize>();
        let queue = sent
            .iter()
            .chain(queued.iter())
            .filter_map(|(link, d)| {
                Some(QueuedMessage {
                    filter: self.links.get(link)?.clone(),
                    address: d.address.to_string(),
                    message: d.message.clone(),
                })
            })
            .collect();
        self.handing = Some(Handing { sent, queued });
        ctx.run_later(super::mesh::CONFIRM_TIMEOUT, |act, _| {
            if act.handing.is_some() {
                tracing::info!(conn = %act.id, client = %act.client_id, "MQTT session hand-over not confirmed within {:?}: the session stays here", super::mesh::CONFIRM_TIMEOUT);
                act.keep_handed();
            }
        });
        Some(HandOff {
            record,
            queue,
            token: self.id.0,
        })
    }

    /// A hand-over that was not confirmed: the messages handed go back to
    /// the front of the queue (those sent before go again).
    fn keep_handed(&mut self) {
        let Some(h) = self.handing.take() else {
            return;
        };
        for (link, d) in h.queued.into_iter().rev() {
            self.queue_bytes += d.message.len();
            self.queue.push_front((link, d));
        }
        for (link, d) in h.sent.into_iter().rev() {
            if let Some(s) = self
                .links
                .get(&link)
                .and_then(|f| self.subscriptions.get(f))
            {
                s.counters.unsettled.fetch_sub(1, Relaxed);
                s.counters.undelivered.fetch_add(1, Relaxed);
            }
            self.queue_bytes += d.message.len();
            self.queue.push_front((link, d));
        }
        self.pump();
    }

    /// The other router took the session: the messages handed are settled
    /// `accepted` (it has them now) and the session ends here.
    fn handed_over(&mut self, ctx: &mut Context<Self>) {
        let Some(h) = self.handing.take() else {
            return;
        };
        let counters = |link: &LinkId| {
            self.links
                .get(link)
                .and_then(|f| self.subscriptions.get(f))
                .map(|s| s.counters.clone())
        };
        for (link, d) in h.sent {
            if let Some(c) = counters(&link) {
                c.unsettled.fetch_sub(1, Relaxed);
            }
            let _ = d.settled_by_consumer(
                (self.id, link),
                Some(DeliveryState::Accepted),
                &mut self.returns,
            );
        }
        for (link, mut d) in h.queued {
            if let Some(c) = counters(&link) {
                c.undelivered.fetch_sub(1, Relaxed);
            }
            self.returns.credit(&mut d);
            self.returns.push(d, Some(DeliveryState::Accepted));
        }
        self.returns.send();
        tracing::info!(conn = %self.id, client = %self.client_id, "MQTT session handed over to another router: ended here");
        self.persistent = None;
        if self.attached {
            self.fail(0x8E, "session taken over", ctx);
        } else {
            ctx.stop();
        }
    }

    fn publish_will(&mut self) {
        if let Some(will) = self.will.take() {
            tracing::info!(conn = %self.id, client = %self.client_id, topic = %will.topic, "MQTT will published");
            let address: Arc<str> = Arc::from(will.topic.as_str());
            let message = message::to_amqp(&will);
            if will.retain {
                self.route_retained(&message);
            }
            // Sent once: its outcome is not waited for.
            self.route(u64::MAX, address, message, will.qos == 0);
        }
    }

    fn on_input(&mut self, ctx: &mut Context<Self>) {
        self.last_input = Instant::now();
        while self.reader.is_some() && !self.handed_off && !self.fetching {
            let version = self.w.as_ref().map(|w| w.version);
            let max = self.max_packet();
            match codec::read(&mut self.input, version, max) {
                Ok(None) => break,
                Ok(Some(p)) => self.on_packet(p, ctx),
                Err(e) => {
                    let reason = match e {
                        ReadError::TooLarge(_) => 0x95,
                        ReadError::UnsupportedLevel(_) => 0x84,
                        _ => 0x81,
                    };
                    if let (None, ReadError::UnsupportedLevel(_)) = (&self.w, &e) {
                        // 3.1.1 answers an unknown level with CONNACK 0x01.
                        Writer {
                            version: Version::V311,
                        }
                        .connack(false, 0x84, 0, &mut self.out);
                    }
                    self.fail(reason, &e.to_string(), ctx);
                }
            }
        }
        self.schedule_flush(ctx);
    }

    fn on_packet(&mut self, p: Inbound, ctx: &mut Context<Self>) {
        if self.w.is_none() {
            match p {
                Inbound::Connect(c) => self.on_connect(*c, ctx),
                _ => self.fail(0x82, "the first packet is not CONNECT", ctx),
            }
            return;
        }
        match p {
            Inbound::Connect(_) => self.fail(0x82, "second CONNECT", ctx),
            Inbound::Publish(p) => self.on_publish(p, ctx),
            Inbound::PubAck { pkid, reason } => self.on_puback(pkid, reason),
            Inbound::Subscribe { pkid, filters } => self.on_subscribe(pkid, filters),
            Inbound::Unsubscribe { pkid, filters } => self.on_unsubscribe(pkid, filters),
            Inbound::PingReq => {
                if let Some(w) = &self.w {
                    w.pingresp(&mut self.out);
                }
            }
            Inbound::Disconnect { reason } => {
                // 5.0 reason 0x04: disconnect with will message.
                if reason != 0x04 {
                    self.will = None;
                }
                tracing::info!(conn = %self.id, client = %self.client_id, "MQTT client disconnected");
                self.end_connection(ctx);
            }
            Inbound::Unexpected(name) => {
                let why = if name.starts_with("PUB") {
                    format!("{name}: QoS 2 is not supported")
                } else {
                    format!("{name} is not a packet a client sends")
                };
                self.fail(0x82, &why, ctx);
            }
        }
    }

    /// How long the session of `c` outlives its connection (`None`: not).
    fn session_expiry(&self, c: &codec::Connect) -> Option<Duration> {
        let cap = u64::from(self.listener.mqtt_session_expiry_secs);
        let secs = match c.version {
            Version::V311 if !c.clean => cap,
            Version::V311 => 0,
            Version::V5 => u64::from(c.session_expiry).min(cap),
        };
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    fn on_connect(&mut self, c: codec::Connect, ctx: &mut Context<Self>) {
        let w = Writer { version: c.version };
        if c.client_id.is_empty() && !c.clean {
            w.connack(false, 0x85, 0, &mut self.out);
            self.w = Some(w);
            self.fail(0x85, "empty client id with a persistent session", ctx);
            return;
        }
        if let Some(will) = &c.will
            && (will.qos > 1 || filter::is_filter(&will.topic) || will.topic.is_empty())
        {
            let code = if will.qos > 1 { 0x9B } else { 0x90 };
            w.connack(false, code, 0, &mut self.out);
            self.w = Some(w);
            self.fail(code, "will refused (QoS 2, or not a topic name)", ctx);
            return;
        }
        COUNTERS.connections.fetch_add(1, Relaxed);
        let client_id = if c.client_id.is_empty() {
            format!("bote-{}-{}", self.shared.router_id, self.id.0)
        } else {
            c.client_id.clone()
        };
        let existing = self.shared.client_ids.get(&client_id).and_then(|e| {
            let session = e.session.clone().downcast::<Addr<MqttConnection>>().ok()?;
            Some((e.conn, e.shutdown.clone(), session))
        });
        if let Some((conn, shutdown, session)) = existing
            && conn != self.id
        {
            if c.clean {
                tracing::info!(conn = %self.id, client = %client_id, "MQTT clean session: the session of connection {conn} ends");
                self.shared.client_ids.remove(&client_id);
                shutdown.do_send(Shutdown);
            } else if session.connected() {
                // The session moves to this connection: its actor takes the
                // socket over, this one ends.
                tracing::info!(conn = %self.id, client = %client_id, "MQTT session resumed on connection {conn}");
                if let (Some(reader), Some(writer)) = (self.reader.take(), self.writer.take()) {
                    session.do_send(Resume {
                        reader,
                        writer,
                        connect: c,
                        leftover: std::mem::take(&mut self.input),
                        peer: self.peer.clone(),
                    });
                }
                self.handed_off = true;
                ctx.stop();
                return;
            }
        }
        self.client_id = client_id;
        self.w = Some(w);
        if c.clean
            && self.shared.mesh.is_some()
            && let Some(node) = self.retained.node.get()
        {
            // A clean start discards the client's session on any router.
            node.do_send(super::mesh::DiscardSession {
                client_id: self.client_id.clone(),
                at: unix_micros(),
            });
        }
        // A persistent session not on this router may be on another one of
        // the mesh: asked first (bounded by mesh::FETCH_TIMEOUT); input
        // waits meanwhile.
        if !c.clean
            && self.shared.mesh.is_some()
            && !self.shared.client_ids.contains_key(&self.client_id)
            && let Some(node) = self.retained.node.get().cloned()
        {
            self.fetching = true;
            let fetch = node.send(super::mesh::FetchSession {
                client_id: self.client_id.clone(),
            });
            ctx.spawn(fetch.into_actor(self).map(move |handed, act, ctx| {
                act.fetching = false;
                if act.reader.is_none() {
                    // The client went away meanwhile; a session handed
                    // over is not confirmed, so its owner keeps it.
                    return;
                }
                act.connected(c, handed.ok().flatten(), ctx);
                act.on_input(ctx);
                if act.reader.is_some() && !act.handed_off {
                    act.read_more();
                }
            }));
            return;
        }
        self.connected(c, None, ctx);
    }

    /// The CONNECT is accepted: the session is registered under its client
    /// id, new or `handed` over by another router (then subscribed and
    /// queued as it was there, CONNACK says session present, and that
    /// router is told it can end its copy).
    fn connected(
        &mut self,
        c: codec::Connect,
        handed: Option<super::mesh::HandedSession>,
        ctx: &mut Context<Self>,
    ) {
        self.shared.client_ids.insert(
            self.client_id.clone(),
            ClientEntry {
                conn: self.id,
                shutdown: self.me().recipient(),
                session: Arc::new(self.me()),
            },
        );
        self.registered = true;
        COUNTERS.sessions.fetch_add(1, Relaxed);
        let _ = self.info.container.set(self.client_id.clone());
        let present = handed.is_some();
        let confirm = handed.and_then(|h| {
            self.version = h.record.version;
            // Its replicas elsewhere are to be ended with it, even if this
            // connection does not keep it (5.0 without expiry).
            self.replicated = true;
            let queued = self.take_session(&h.record, h.queue);
            match h.token {
                Some(_) => tracing::info!(conn = %self.id, client = %self.client_id, from = %h.owner, subscriptions = self.subscriptions.len(), queued, "MQTT session handed over from another router"),
                None => tracing::info!(conn = %self.id, client = %self.client_id, owner = %h.owner, subscriptions = self.subscriptions.len(), "MQTT session restored from its replica (its router did not answer; the messages queued there are not here)"),
            }
            Some((h.owner, h.token?))
        });
        self.adopt(c, present, ctx);
        if let (Some((owner, token)), Some(node)) = (confirm, self.retained.node.get()) {
            node.do_send(super::mesh::ConfirmSession {
                owner,
                client_id: self.client_id.clone(),
                token,
            });
        }
    }

    /// A connection with its CONNECT becomes this session's (new, or
    /// resumed with `session_present`).
    fn adopt(&mut self, c: codec::Connect, session_present: bool, ctx: &mut Context<Self>) {
        self.persistent = self.session_expiry(&c);
        self.max_in_flight = self.listener.link_capacity as usize;
        if let Some(m) = c.receive_maximum {
            self.max_in_flight = self.max_in_flight.min(m.max(1) as usize);
        }
        self.keep_alive = (c.keep_alive > 0).then(|| Duration::from_secs(u64::from(c.keep_alive)));
        self.will = c.will;
        self.attached = true;
        self.last_input = Instant::now();
        self.info.opened.store(true, Relaxed);
        let w = Writer { version: c.version };
        w.connack(
            session_present,
            0,
            self.listener.link_capacity.min(65535) as u16,
            &mut self.out,
        );
        tracing::info!(conn = %self.id, peer = %self.peer, client = %self.client_id, version = c.version.as_str(), clean = c.clean, session_present, "MQTT client connected");
        // Unacknowledged messages go again, marked DUP.
        let resend: Vec<u16> = self.in_flight.keys().copied().collect();
        for pkid in resend {
            if let Some((link, d)) = self.in_flight.get(&pkid) {
                let (topic, payload, properties) = message::from_amqp(&d.message, &d.address);
                let _ = link;
                w.publish(
                    Publish {
                        topic,
                        payload,
                        qos: 1,
                        retain: false,
                        dup: true,
                        pkid,
                        properties,
                    },
                    &mut self.out,
                );
            }
        }
        self.w = Some(w);
        // The stored queue is in memory now (sent or queued again).
        self.store_session(Some(Vec::new()));
        if let Some(timer) = self.keep_alive_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(k) = self.keep_alive {
            let generation = self.generation;
            self.keep_alive_timer = Some(ctx.run_interval(k / 2, move |act, ctx| {
                if act.generation != generation || !act.attached {
                    return;
                }
                let k = act.keep_alive.unwrap_or_default();
                if act.last_input.elapsed() > k + k / 2 {
                    act.fail(0x8D, "keep-alive timeout", ctx);
                }
            }));
        }
        self.pump();
        self.schedule_flush(ctx);
    }

    fn origin(&self, key: u64) -> Origin {
        Origin {
            conn: self.returns_to.clone().expect("started"),
            conn_id: self.id,
            key,
        }
    }

    fn on_publish(&mut self, p: Publish, ctx: &mut Context<Self>) {
        if p.qos > 1 {
            return self.fail(0x9B, "QoS 2 is not supported (maximum QoS 1)", ctx);
        }
        if p.topic.is_empty() || p.topic.contains(['+', '#']) {
            return self.fail(0x90, &format!("'{}' is not a topic name", p.topic), ctx);
        }
        let version = self.w.as_ref().map(|w| w.version);
        if p.qos == 1 && self.incoming.values().any(|i| i.pkid == p.pkid) {
            // A retransmission of a message still awaiting its outcome: its
            // PUBACK comes with that outcome.
            return;
        }
        if p.qos == 1 && self.incoming.len() >= self.listener.link_capacity as usize {
            if version == Some(Version::V5) {
                return self.fail(0x93, "receive maximum exceeded", ctx);
            }
            if self.incoming.len() >= 2 * self.listener.link_capacity as usize {
                return self.fail(
                    0x97,
                    "too many QoS 1 messages awaiting acknowledgement",
                    ctx,
                );
            }
        }
        let address: Arc<str> = Arc::from(p.topic.as_str());
        if self.shared.addresses.distribution(&address) == Distribution::Unavailable {
            tracing::info!(conn = %self.id, %address, "publish to an unavailable address");
            if p.qos == 1
                && let Some(w) = &self.w
            {
                w.puback(p.pkid, 0x87, &mut self.out);
            }
            if version == Some(Version::V311) {
                self.fail(0x87, "address unavailable", ctx);
            }
            return;
        }
        COUNTERS.publish_in.fetch_add(1, Relaxed);
        let message = message::to_amqp(&p);
        if p.retain {
            self.route_retained(&message);
            if p.payload.is_empty() {
                // Only clears the topic's retained message.
                if p.qos == 1
                    && let Some(w) = &self.w
                {
                    w.puback(p.pkid, 0, &mut self.out);
                }
                return;
            }
        }
        let key = self.next_key;
        self.next_key += 1;
        self.info.touched();
        if p.qos == 1 {
            self.incoming.insert(
                key,
                Pending {
                    pkid: p.pkid,
                    retained: p.retain,
                    address: address.clone(),
                    message: message.clone(),
                    retry_after: RETRY_FIRST,
                },
            );
        }
        self.route(key, address, message, p.qos == 0);
    }

    /// A retained message (or a clearing one) goes to every router's store.
    fn route_retained(&self, message: &Bytes) {
        let d = delivery(
            Arc::from(retain::RETAIN_ADDRESS),
            message.clone(),
            true,
            self.origin(u64::MAX),
        );
        self.shared
            .addresses
            .get(retain::RETAIN_ADDRESS)
            .do_send(Forward(vec![d]));
    }

    fn route(&self, key: u64, address: Arc<str>, message: Bytes, presettled: bool) {
        let d = delivery(address, message, presettled, self.origin(key));
        for d in self.shared.addresses.split(d) {
            self.shared
                .addresses
                .get(&d.address)
                .do_send(Forward(vec![d]));
        }
    }

    /// The outcome of one of the client's QoS 1 messages.
    fn on_outcome(&mut self, key: u64, state: Option<DeliveryState>, ctx: &mut Context<Self>) {
        let Some(p) = self.incoming.get_mut(&key) else {
            return;
        };
        let reason = match state {
            None | Some(DeliveryState::Accepted) => 0,
            Some(DeliveryState::Rejected { error }) => {
                tracing::info!(conn = %self.id, address = %p.address, "message rejected: {:?}", error.map(|e| e.condition));
                0x80
            }
            // Released or modified, but kept by the retained stores.
            _ if p.retained => 0x10,
            _ => {
                // Released or modified: nobody took it. Again, later.
                let after = p.retry_after;
                p.retry_after = (after * 2).min(RETRY_MAX);
                let generation = self.generation;
                ctx.run_later(after, move |act, _ctx| {
                    if act.generation != generation {
                        return;
                    }
                    if let Some(p) = act.incoming.get(&key) {
                        let (address, message) = (p.address.clone(), p.message.clone());
                        act.route(key, address, message, false);
                    }
                });
                return;
            }
        };
        if let Some(p) = self.incoming.remove(&key)
            && let Some(w) = &self.w
        {
            w.puback(p.pkid, reason, &mut self.out);
        }
    }

    fn on_subscribe(&mut self, pkid: u16, filters: Vec<(String, u8)>) {
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for (f, qos) in filters {
            let code = self.subscribe(&f, qos);
            if let Ok(granted) = code {
                for m in self.retained.retained.matching(&f) {
                    retained.push((m, granted));
                }
            }
            codes.push(code);
        }
        if let Some(w) = &self.w {
            w.suback(pkid, &codes, &mut self.out);
            // Retained messages first (QoS 0: they are copies, nobody
            // waits for their acknowledgement).
            for (m, _) in retained {
                let (topic, payload, properties) = message::from_amqp(&m, "");
                w.publish(
                    Publish {
                        topic,
                        payload,
                        qos: 0,
                        retain: true,
                        dup: false,
                        pkid: 0,
                        properties,
                    },
                    &mut self.out,
                );
            }
        }
        if self.persistent.is_some() {
            self.store_session(None);
        }
        self.pump();
    }

    /// One filter of a SUBSCRIBE: the granted QoS, or a 5.0 reason code.
    fn subscribe(&mut self, f: &str, qos: u8) -> Result<u8, u8> {
        if f.starts_with("$share/") {
            return Err(0x9E);
        }
        if !filter::valid_filter(f) {
            return Err(0x8F);
        }
        let granted = qos.min(1);
        if let Some(s) = self.subscriptions.get_mut(f) {
            s.qos = granted;
            return Ok(granted);
        }
        if self.shared.addresses.distribution(f) == Distribution::Unavailable {
            return Err(0x87);
        }
        let link = LinkId {
            session: SessionId(0),
            handle: self.next_link,
        };
        self.next_link += 1;
        let address: Arc<str> = Arc::from(f);
        let actor = self.shared.addresses.get(&address);
        let counters = Arc::new(LinkCounters::default());
        let info = self.shared.model.add_link(
            &self.info,
            &format!("mqtt:{f}"),
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
        tracing::info!(conn = %self.id, client = %self.client_id, filter = %f, qos = granted, "MQTT subscription");
        self.links.insert(link, f.to_owned());
        self.subscriptions.insert(
            f.to_owned(),
            Subscription {
                link,
                qos: granted,
                actor,
                counters,
                info,
            },
        );
        Ok(granted)
    }

    fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>) {
        let existed: Vec<bool> = filters.iter().map(|f| self.unsubscribe(f)).collect();
        if let Some(w) = &self.w {
            w.unsuback(pkid, &existed, &mut self.out);
        }
        if self.persistent.is_some() {
            self.store_session(None);
        }
    }

    /// Ends a subscription: what was queued for it and never sent goes back
    /// to its address.
    fn unsubscribe(&mut self, f: &str) -> bool {
        let Some(s) = self.subscriptions.remove(f) else {
            return false;
        };
        self.links.remove(&s.link);
        let mut returned = Vec::new();
        for (l, d) in std::mem::take(&mut self.queue) {
            if l == s.link {
                self.queue_bytes -= d.message.len();
                returned.push(d);
            } else {
                self.queue.push_back((l, d));
            }
        }
        s.counters.undelivered.store(0, Relaxed);
        self.shared.model.remove_link(&self.info, &s.info);
        s.actor.do_send(DetachConsumer {
            conn: self.id,
            link: s.link,
            returned,
        });
        true
    }

    fn next_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.in_flight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Takes deliveries for a subscription: queued (within the session's
    /// bounds) for the client; with no client, QoS 0 ones are dropped.
    fn take(&mut self, link: LinkId, deliveries: Vec<RoutedDelivery>) {
        let Some(sub) = self
            .links
            .get(&link)
            .and_then(|f| self.subscriptions.get(f))
        else {
            return;
        };
        let (qos, counters) = (sub.qos, sub.counters.clone());
        let max_messages = self.listener.mqtt_session_max_messages as usize;
        let max_bytes = self.listener.mqtt_session_max_bytes as usize;
        for d in deliveries {
            let qos1 = qos == 1 && !d.presettled;
            if !self.attached && !qos1 {
                counters.undelivered.fetch_sub(1, Relaxed);
                // Not for a client that is away (at most once).
                let state = (!d.presettled).then_some(DeliveryState::Released);
                let mut returns = std::mem::take(&mut self.returns);
                returns.push(d, state);
                self.returns = returns;
                continue;
            }
            if qos1
                && (self.queue.len() >= max_messages
                    || self.queue_bytes + d.message.len() > max_bytes)
            {
                counters.undelivered.fetch_sub(1, Relaxed);
                tracing::debug!(conn = %self.id, client = %self.client_id, "MQTT session queue full: delivery released");
                d.return_to_sender(Some(DeliveryState::Released));
                continue;
            }
            if !self.attached
                && self.stored
                && d.stream.is_none()
                && let (Some(store), Some(filter)) = (&self.retained.store, self.links.get(&link))
            {
                store.send(Change::Queued {
                    client_id: self.client_id.clone(),
                    owner: self.id.0,
                    message: QueuedMessage {
                        filter: filter.clone(),
                        address: d.address.to_string(),
                        message: d.message.clone(),
                    },
                });
            }
            self.queue_bytes += d.message.len();
            self.queue.push_back((link, d));
        }
    }

    /// Sends queued deliveries as PUBLISH while there is room for QoS 1.
    fn pump(&mut self) {
        while self.attached {
            let Some((link, _)) = self.queue.front() else {
                break;
            };
            let link = *link;
            let Some(sub) = self
                .links
                .get(&link)
                .and_then(|f| self.subscriptions.get(f))
            else {
                if let Some((_, d)) = self.queue.pop_front() {
                    self.queue_bytes -= d.message.len();
                }
                continue;
            };
            let sub_qos = sub.qos;
            let (counters, info) = (sub.counters.clone(), sub.info.clone());
            let presettled = self.queue[0].1.presettled;
            let qos = if presettled { 0 } else { sub_qos };
            if qos == 1 && self.in_flight.len() >= self.max_in_flight {
                break;
            }
            // A message still streaming in goes when it is whole.
            let message = {
                let d = &self.queue[0].1;
                match &d.stream {
                    None => d.message.clone(),
                    Some(s) => {
                        // Open the stream once, then read on from where
                        // this reader is: chunks every reader has read are
                        // dropped by the stream.
                        let read = match &mut self.front_read {
                            Some((open, slot, got)) if Arc::ptr_eq(open, s) => {
                                s.read(*slot, got.len(), usize::MAX)
                            }
                            _ => {
                                let (slot, read) =
                                    s.open((self.me().recipient(), link, 0), usize::MAX);
                                self.front_read = Some((s.clone(), slot, Vec::new()));
                                read
                            }
                        };
                        let got = &mut self.front_read.as_mut().expect("opened").2;
                        got.extend(read.chunks);
                        if read.aborted {
                            self.front_read = None;
                            let (_, d) = self.queue.pop_front().expect("front");
                            self.queue_bytes -= d.message.len();
                            counters.undelivered.fetch_sub(1, Relaxed);
                            d.return_to_sender(Some(DeliveryState::Released));
                            continue;
                        }
                        if !read.complete {
                            break;
                        }
                        let (_, _, got) = self.front_read.take().expect("opened");
                        let mut all = d.message.to_vec();
                        for c in got {
                            all.extend_from_slice(&c);
                        }
                        Bytes::from(all)
                    }
                }
            };
            let (_, mut d) = self.queue.pop_front().expect("front");
            self.queue_bytes -= d.message.len();
            if d.stream.is_some() {
                // Whole now: kept so a resent DUP has all of it.
                d.message = message.clone();
                d.stream = None;
            }
            counters.undelivered.fetch_sub(1, Relaxed);
            self.returns.credit(&mut d);
            let (topic, payload, properties) = message::from_amqp(&message, &d.address);
            let pkid = if qos == 1 { self.next_pkid() } else { 0 };
            if let Some(w) = &self.w {
                w.publish(
                    Publish {
                        topic,
                        payload,
                        qos,
                        retain: false,
                        dup: false,
                        pkid,
                        properties,
                    },
                    &mut self.out,
                );
            }
            COUNTERS.publish_out.fetch_add(1, Relaxed);
            info.stats.delivery(d.presettled);
            self.info.touched();
            if qos == 1 {
                counters.unsettled.fetch_add(1, Relaxed);
                self.in_flight.insert(pkid, (link, d));
            } else {
                let state = (!d.presettled).then_some(DeliveryState::Accepted);
                self.returns.push(d, state);
            }
        }
    }

    /// The client acknowledged a QoS 1 PUBLISH.
    fn on_puback(&mut self, pkid: u16, reason: u8) {
        let Some((link, d)) = self.in_flight.remove(&pkid) else {
            return;
        };
        let state = if reason < 0x80 {
            DeliveryState::Accepted
        } else {
            DeliveryState::Rejected { error: None }
        };
        let sub = self
            .links
            .get(&link)
            .and_then(|f| self.subscriptions.get(f));
        if let Some(s) = sub {
            s.counters.unsettled.fetch_sub(1, Relaxed);
            s.info.stats.outcome(Some(&state));
        }
        if let Some(d) = d.settled_by_consumer((self.id, link), Some(state), &mut self.returns)
            && let Some(s) = sub
        {
            s.actor.do_send(Forward(vec![d]));
        }
        self.pump();
    }

    /// The session ends: subscriptions end, what was sent and not
    /// acknowledged comes back modified, the will goes out.
    fn end_session(&mut self) {
        self.end_session_state();
        self.publish_will();
        // A router shutting down keeps its stored sessions (and the mesh its
        // replicas) for its restart.
        if (self.stored || self.replicated) && !self.shared.shutting_down.load(Relaxed) {
            self.persistent = None;
            self.store_session(None);
        }
        if self.registered {
            COUNTERS.sessions.fetch_sub(1, Relaxed);
            self.shared
                .client_ids
                .remove_if(&self.client_id, |_, e| e.conn == self.id);
        }
    }

    /// Subscriptions end, what was sent and not acknowledged comes back
    /// modified, what was queued released.
    fn end_session_state(&mut self) {
        let filters: Vec<String> = self.subscriptions.keys().cloned().collect();
        for f in filters {
            self.unsubscribe(&f);
        }
        for (_, (_, d)) in std::mem::take(&mut self.in_flight) {
            d.return_to_sender(Some(DeliveryState::delivery_failed()));
        }
        for (_, d) in self.queue.drain(..) {
            d.return_to_sender(Some(DeliveryState::Released));
        }
        self.queue_bytes = 0;
        self.returns.send();
    }
}

/// A delivery as it leaves an MQTT connection for its address.
pub(super) fn delivery(
    address: Arc<str>,
    message: Bytes,
    presettled: bool,
    origin: Origin,
) -> RoutedDelivery {
    RoutedDelivery {
        address,
        message,
        presettled,
        priority: 4,
        origin,
        fanout: None,
        detours: Detours::default(),
        stream: None,
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

/// Reads the socket one chunk per request (see the module doc).
async fn read_loop(
    mut read: impl AsyncRead + Unpin,
    mut requests: mpsc::UnboundedReceiver<ReadRequest>,
) {
    while let Some((generation, to)) = requests.recv().await {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let data = match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(buf.freeze()),
        };
        let end = data.is_none();
        to.do_send(Input { generation, data });
        if end {
            break;
        }
    }
}

impl Actor for MqttConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address());
        self.returns_to = Some(Arc::new(ctx.address().recipient()));
        self.shared.model.add_connection(self.info.clone());
        if let Some(session) = self.restored.take() {
            self.start_restored(session, ctx);
            return;
        }
        let Some(socket) = self.socket.take() else {
            ctx.stop();
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let (requests, pending) = mpsc::unbounded_channel::<ReadRequest>();
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
                actix::spawn(read_loop(read, pending));
            }
            Transport::Tls(session, _) => {
                let (read, write) = tokio::io::split(*session);
                actix::spawn(write_out(conn, rx, write));
                actix::spawn(read_loop(read, pending));
            }
        }
        self.writer = Some(tx);
        self.reader = Some(requests);
        self.read_more();
        if let Some(deadline) = self.listener.handshake_timeout() {
            ctx.run_later(deadline, |act, ctx| {
                if act.w.is_none() && act.reader.is_some() {
                    act.fail(0x82, "no CONNECT within the handshake deadline", ctx);
                }
            });
        }
        tracing::debug!(conn = %self.id, peer = %self.peer, "MQTT connection accepted");
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        self.flush();
        if !self.handed_off {
            self.end_session();
        }
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.shared.model.remove_connection(self.id);
        self.shared.heap.connection_closed();
    }
}

impl Handler<Input> for MqttConnection {
    type Result = ();
    fn handle(&mut self, msg: Input, ctx: &mut Context<Self>) {
        if msg.generation != self.generation || self.reader.is_none() {
            return;
        }
        match msg.data {
            Some(data) => {
                self.input.extend_from_slice(&data);
                self.on_input(ctx);
                if self.reader.is_some() && !self.handed_off && !self.fetching {
                    self.read_more();
                }
            }
            None => {
                tracing::info!(conn = %self.id, peer = %self.peer, client = %self.client_id, "MQTT connection dropped by the client");
                self.end_connection(ctx);
            }
        }
    }
}

impl Handler<Resume> for MqttConnection {
    type Result = ();
    fn handle(&mut self, msg: Resume, ctx: &mut Context<Self>) {
        // Its client came back here: a hand-over under way is undone.
        self.keep_handed();
        if self.attached {
            // Taken over while connected: the old connection ends (its will
            // goes out), the session stays.
            let expiry = self.persistent;
            if let Some(w) = &self.w {
                w.disconnect(0x8E, "session taken over", &mut self.out);
            }
            self.flush();
            self.writer = None;
            self.reader = None;
            self.publish_will();
            self.persistent = expiry;
        }
        // Only a persistent session carries over.
        let present = self.persistent.is_some() && !msg.connect.clean;
        if !present {
            self.end_session_state();
        }
        self.generation += 1;
        self.peer = msg.peer;
        self.writer = Some(msg.writer);
        self.reader = Some(msg.reader);
        self.input = msg.leftover;
        self.incoming.clear();
        self.adopt(msg.connect, present, ctx);
        self.on_input(ctx);
        if self.reader.is_some() {
            self.read_more();
        }
        self.schedule_flush(ctx);
    }
}

impl Handler<HandOver> for MqttConnection {
    type Result = Option<HandOff>;
    fn handle(&mut self, _: HandOver, ctx: &mut Context<Self>) -> Option<HandOff> {
        let handed = self.hand_over(ctx);
        self.schedule_flush(ctx);
        handed
    }
}

impl Handler<HandedOver> for MqttConnection {
    type Result = ();
    fn handle(&mut self, _: HandedOver, ctx: &mut Context<Self>) {
        self.handed_over(ctx);
    }
}

/// A newer copy of this session (`version`) is on another router (see
/// [`super::mesh`]): a session waiting for its client, and not being
/// handed over, is stale and ends here (its queue is dropped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Superseded {
    pub version: u64,
    pub owner: String,
}

/// A connection with a clean start took this session's client id on
/// another router at `at` (µs since the epoch): a session older than that
/// ends, its client (if connected) disconnected (5.0 reason 0x8E).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Discarded {
    pub at: u64,
}

impl Handler<Discarded> for MqttConnection {
    type Result = ();
    fn handle(&mut self, msg: Discarded, ctx: &mut Context<Self>) {
        if self.version >= msg.at || self.handed_off || !self.registered {
            return;
        }
        tracing::info!(conn = %self.id, client = %self.client_id, "MQTT session discarded: a clean session of its client id started on another router");
        self.persistent = None;
        self.keep_handed();
        if self.attached {
            self.fail(
                0x8E,
                "session taken over by a connection on another router",
                ctx,
            );
        } else {
            ctx.stop();
        }
    }
}

impl Handler<Superseded> for MqttConnection {
    type Result = ();
    fn handle(&mut self, msg: Superseded, ctx: &mut Context<Self>) {
        if self.attached || self.handing.is_some() || self.version >= msg.version {
            return;
        }
        tracing::info!(conn = %self.id, client = %self.client_id, owner = %msg.owner, dropped = self.queue.len() + self.in_flight.len(), "MQTT session superseded by a newer copy on another router: ended here");
        self.persistent = None;
        ctx.stop();
    }
}

impl Handler<Flush> for MqttConnection {
    type Result = ();
    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) {
        self.flush();
    }
}

impl Handler<Returned> for MqttConnection {
    type Result = ();
    fn handle(&mut self, msg: Returned, ctx: &mut Context<Self>) {
        for (key, state) in msg.outcomes {
            self.on_outcome(key, state, ctx);
        }
        self.schedule_flush(ctx);
    }
}

impl Handler<Deliver> for MqttConnection {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if !self.links.contains_key(&msg.link) {
            // The subscription ended while these were on their way.
            for mut d in msg.deliveries {
                d.detours.add_tried((self.id, msg.link));
                self.shared
                    .addresses
                    .get(&d.address)
                    .do_send(Forward(vec![d]));
            }
            return;
        }
        self.take(msg.link, msg.deliveries);
        self.pump();
        self.schedule_flush(ctx);
    }
}

impl Handler<StreamProgress> for MqttConnection {
    type Result = ();
    fn handle(&mut self, _msg: StreamProgress, ctx: &mut Context<Self>) {
        self.pump();
        self.schedule_flush(ctx);
    }
}

impl Handler<Shutdown> for MqttConnection {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        // The session ends: router shutdown, or a clean session took the id.
        self.persistent = None;
        let (reason, why) = if self.shared.shutting_down.load(Relaxed) {
            (0x8B, "the router is shutting down")
        } else {
            (0x8E, "session taken over by another connection")
        };
        if self.attached {
            self.fail(reason, why, ctx);
        } else {
            ctx.stop();
        }
    }
}

/// Microseconds since the Unix epoch (session versions).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts an actor for each persistent session read from the store at the
/// router's start, registered under its client id (before the listeners
/// accept), waiting for its client for what is left of its expiry
/// (capped by the first MQTT listener's `mqtt-session-expiry-secs`); a
/// session whose expiry ran out while the router was down is removed.
pub fn restore(
    shared: &Arc<Shared>,
    config: &Config,
    state: &retain::MqttState,
    sessions: Vec<StoredSession>,
) {
    let Some(listener) = config
        .listeners
        .iter()
        .find(|l| l.protocol == Protocol::Mqtt)
    else {
        return;
    };
    let listener = Arc::new(listener.clone());
    let now = unix_now();
    let cap = u64::from(listener.mqtt_session_expiry_secs);
    for s in sessions {
        let expiry = s.record.expiry_secs.min(cap);
        let left = match s.record.disconnected_at {
            Some(at) => expiry.saturating_sub(now.saturating_sub(at)),
            None => expiry,
        };
        if left == 0 {
            tracing::info!(client = %s.client_id, "stored MQTT session expired while the router was down: removed");
            if let Some(store) = &state.store {
                store.send(Change::SessionEnded {
                    client_id: s.client_id,
                    owner: 0,
                });
            }
            continue;
        }
        let id = shared.next_conn_id();
        let client_id = s.client_id.clone();
        let (sh, l) = (shared.clone(), listener.clone());
        let addr = MqttConnection::start_in_arbiter(&shared.next_worker(), move |_| {
            MqttConnection::restored(id, s, Duration::from_secs(left), l, sh)
        });
        shared.client_ids.insert(
            client_id,
            ClientEntry {
                conn: id,
                shutdown: addr.clone().recipient(),
                session: Arc::new(addr),
            },
        );
    }
}
