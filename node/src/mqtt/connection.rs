//! One actor per MQTT connection, on a worker arbiter: it owns the socket,
//! reads packets ([`super::codec`]), and appears to the router as a
//! connection with links:
//!
//! - **Publishing** (the client's PUBLISH): one routed delivery per
//!   message to the topic's address, with a copy per matching subscription
//!   filter (`router::filter`). QoS 0 goes presettled. QoS 1 goes
//!   unsettled and its PUBACK is sent only when the outcome is `accepted`;
//!   `released` or `modified` (nobody took it, or a consumer failed) is
//!   retried after a pause (100 ms doubling to 2 s) for as long as the
//!   connection lasts, never acknowledged early. `rejected` is a PUBACK
//!   with reason 0x80 in 5.0; 3.1.1 has no negative acknowledgement, so it
//!   is acknowledged and logged. QoS 1 messages awaiting their outcome are
//!   bounded by the listener's link capacity (5.0 announces it as receive
//!   maximum; more is DISCONNECT 0x93; a 3.1.1 client past twice that is
//!   disconnected).
//! - **Subscribing**: each filter is a consumer link of its address actor
//!   (`AttachConsumer`, like an AMQP receiver), granted QoS at most 1.
//!   Deliveries are sent as PUBLISH (QoS 1 when both the subscription and
//!   the delivery are, with at most link-capacity unacknowledged, the rest
//!   queued); the client's PUBACK settles them `accepted`. A subscription
//!   that ends gives back what it never sent; a connection that ends
//!   returns what was sent and not acknowledged as `modified`.
//! - **Keep-alive**: no packet within 1.5 times the keep-alive closes the
//!   connection (5.0: DISCONNECT 0x8D). **Will**: published when the
//!   connection ends without DISCONNECT (or with 5.0 reason 0x04).
//! - **Bad input** ends only this connection: a first packet that is not
//!   CONNECT, a malformed packet, a packet over `max-message-size`, QoS 2,
//!   a wildcard in a PUBLISH topic (5.0: DISCONNECT with the reason code
//!   first: 0x81, 0x95, 0x9B, 0x90, ...).
//! - A second connection with the same client id takes the session over
//!   (the first is closed; 5.0: 0x8E).
//!
//! Not done: QoS 2 (5.0 CONNACK says maximum QoS 1; a SUBSCRIBE asking 2
//! is granted 1, as both versions allow), retained messages (5.0 CONNACK
//! says retain unavailable and a retained PUBLISH is refused with 0x9A;
//! 3.1.1 forwards it as an ordinary message), and sessions that outlive
//! the connection (CONNACK session-present is always 0).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::codec::{self, Inbound, Publish, ReadError, Version, Writer};
use super::message;
use crate::config::{Distribution, ListenerConfig};
use crate::delivery::{
    ConnId, FastMap, Origin, OutcomeBatch, Reach, Returned, RoutedDelivery, StreamProgress,
};
use crate::model::{ConnectionInfo, LinkDir, LinkInfo};
use crate::router::Shared;
use crate::router::address::{AddressActor, AttachConsumer, Deliver, DetachConsumer, Forward};
use crate::router::connection::Shutdown;
use crate::router::filter;
use crate::router::link::LinkCounters;
use bote_amqp::{DeliveryState, LinkId, SessionId};

/// Bytes read from the socket per read call, at most.
const READ_CHUNK: usize = 64 * 1024;

/// The first and the longest pause before a QoS 1 message that came back
/// released or modified is routed again.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// A QoS 1 PUBLISH of the client awaiting its outcome (or a retry).
struct Pending {
    pkid: u16,
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

pub struct MqttConnection {
    id: ConnId,
    peer: String,
    shared: Arc<Shared>,
    listener: Arc<ListenerConfig>,
    socket: Option<std::net::TcpStream>,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    input: BytesMut,
    out: BytesMut,
    /// Set once CONNECT is in.
    w: Option<Writer>,
    client_id: String,
    will: Option<Publish>,
    keep_alive: Option<Duration>,
    last_input: Instant,
    /// The connection is ending: nothing more is read.
    closing: bool,
    /// DISCONNECT came (no will), or the session was taken over cleanly.
    disconnected: bool,
    next_key: u64,
    incoming: FastMap<u64, Pending>,
    subscriptions: BTreeMap<String, Subscription>,
    links: FastMap<LinkId, String>,
    next_link: u32,
    /// Deliveries for subscriptions, waiting for room in `in_flight`.
    queue: VecDeque<(LinkId, RoutedDelivery)>,
    /// QoS 1 PUBLISH sent and not acknowledged, by packet id.
    in_flight: FastMap<u16, (LinkId, RoutedDelivery)>,
    next_pkid: u16,
    max_in_flight: usize,
    returns: OutcomeBatch,
    returns_to: Option<Arc<Recipient<Returned>>>,
    me: Option<Addr<MqttConnection>>,
    info: Arc<ConnectionInfo>,
    flush_scheduled: bool,
}

/// Write what is pending (once per mailbox run).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl MqttConnection {
    pub fn accepted(
        id: ConnId,
        socket: std::net::TcpStream,
        peer: String,
        listener: Arc<ListenerConfig>,
        shared: Arc<Shared>,
    ) -> Self {
        let mut info = ConnectionInfo::new(id, peer.clone());
        info.protocol = "mqtt";
        MqttConnection {
            id,
            peer,
            shared,
            max_in_flight: listener.link_capacity as usize,
            listener,
            socket: Some(socket),
            writer: None,
            input: BytesMut::new(),
            out: BytesMut::new(),
            w: None,
            client_id: String::new(),
            will: None,
            keep_alive: None,
            last_input: Instant::now(),
            closing: false,
            disconnected: false,
            next_key: 0,
            incoming: FastMap::default(),
            subscriptions: BTreeMap::new(),
            links: FastMap::default(),
            next_link: 0,
            queue: VecDeque::new(),
            in_flight: FastMap::default(),
            next_pkid: 0,
            returns: OutcomeBatch::default(),
            returns_to: None,
            me: None,
            info: Arc::new(info),
            flush_scheduled: false,
        }
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
            if let Some(w) = &self.writer {
                let _ = w.send(bytes);
            }
        }
    }

    /// Ends the connection for a protocol error: 5.0 gets DISCONNECT with
    /// `reason` first; 3.1.1 has none, the socket just closes.
    fn fail(&mut self, reason: u8, why: &str, ctx: &mut Context<Self>) {
        tracing::info!(conn = %self.id, peer = %self.peer, client = %self.client_id, "MQTT connection closed: {why}");
        if let Some(w) = &self.w {
            w.disconnect(reason, why, &mut self.out);
        }
        self.close(ctx);
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        self.flush();
        // The writer ends (and shuts the socket) once its queue drains.
        self.writer = None;
        ctx.stop();
    }

    fn on_input(&mut self, ctx: &mut Context<Self>) {
        self.last_input = Instant::now();
        while !self.closing {
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
                self.disconnected = true;
                tracing::info!(conn = %self.id, client = %self.client_id, "MQTT client disconnected");
                self.close(ctx);
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
        self.client_id = if c.client_id.is_empty() {
            format!("bote-{}-{}", self.shared.router_id, self.id.0)
        } else {
            c.client_id
        };
        if let Some(m) = c.receive_maximum {
            self.max_in_flight = self.max_in_flight.min(m.max(1) as usize);
        }
        self.keep_alive = (c.keep_alive > 0).then(|| Duration::from_secs(u64::from(c.keep_alive)));
        self.will = c.will;
        let me = self.me.clone().expect("started");
        if let Some((_, (old, previous))) = self.shared.client_ids.remove(&self.client_id)
            && old != self.id
        {
            tracing::info!(conn = %self.id, client = %self.client_id, "MQTT session taken over from connection {old}");
            previous.do_send(Shutdown);
        }
        self.shared
            .client_ids
            .insert(self.client_id.clone(), (self.id, me.recipient()));
        let _ = self.info.container.set(self.client_id.clone());
        self.info.opened.store(true, Relaxed);
        w.connack(
            false,
            0,
            self.listener.link_capacity.min(65535) as u16,
            &mut self.out,
        );
        tracing::info!(conn = %self.id, peer = %self.peer, client = %self.client_id, version = c.version.as_str(), clean = c.clean, "MQTT client connected");
        self.w = Some(w);
        if let Some(k) = self.keep_alive {
            ctx.run_interval(k / 2, |act, ctx| {
                let k = act.keep_alive.unwrap_or_default();
                if act.last_input.elapsed() > k + k / 2 {
                    act.fail(0x8D, "keep-alive timeout", ctx);
                }
            });
        }
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
        if p.topic.is_empty() || filter::is_filter(&p.topic) || p.topic.contains(['+', '#']) {
            return self.fail(0x90, &format!("'{}' is not a topic name", p.topic), ctx);
        }
        let version = self.w.as_ref().map(|w| w.version);
        if p.retain && version == Some(Version::V5) {
            return self.fail(0x9A, "retained messages are not supported", ctx);
        }
        if p.qos == 1 && self.incoming.values().any(|i| i.pkid == p.pkid) {
            // A retransmission of a message still awaiting its outcome: its
            // PUBACK comes with that outcome.
            return;
        }
        if p.qos == 1 && self.incoming.len() >= self.max_in_flight {
            if version == Some(Version::V5) {
                return self.fail(0x93, "receive maximum exceeded", ctx);
            }
            if self.incoming.len() >= 2 * self.max_in_flight {
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
        let message = message::to_amqp(&p);
        let key = self.next_key;
        self.next_key += 1;
        self.info.touched();
        if p.qos == 1 {
            self.incoming.insert(
                key,
                Pending {
                    pkid: p.pkid,
                    address: address.clone(),
                    message: message.clone(),
                    retry_after: RETRY_FIRST,
                },
            );
        }
        self.route(key, address, message, p.qos == 0);
    }

    fn route(&mut self, key: u64, address: Arc<str>, message: Bytes, presettled: bool) {
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
            _ => {
                // Released or modified: nobody took it. Again, later.
                let after = p.retry_after;
                p.retry_after = (after * 2).min(RETRY_MAX);
                ctx.run_later(after, move |act, _ctx| {
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
        for (f, qos) in filters {
            codes.push(self.subscribe(f, qos));
        }
        if let Some(w) = &self.w {
            w.suback(pkid, &codes, &mut self.out);
        }
        self.pump();
    }

    /// One filter of a SUBSCRIBE: the granted QoS, or a 5.0 reason code.
    fn subscribe(&mut self, f: String, qos: u8) -> Result<u8, u8> {
        if f.starts_with("$share/") {
            return Err(0x9E);
        }
        if !filter::valid_filter(&f) {
            return Err(0x8F);
        }
        let granted = qos.min(1);
        if let Some(s) = self.subscriptions.get_mut(&f) {
            s.qos = granted;
            return Ok(granted);
        }
        if self.shared.addresses.distribution(&f) == Distribution::Unavailable {
            return Err(0x87);
        }
        let link = LinkId {
            session: SessionId(0),
            handle: self.next_link,
        };
        self.next_link += 1;
        let address: Arc<str> = Arc::from(f.as_str());
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
            deliver: self.me.clone().expect("started").recipient(),
            counters: counters.clone(),
            capacity: self.listener.link_capacity,
        });
        tracing::info!(conn = %self.id, client = %self.client_id, filter = %f, qos = granted, "MQTT subscription");
        self.links.insert(link, f.clone());
        self.subscriptions.insert(
            f,
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

    /// Sends queued deliveries as PUBLISH while there is room for QoS 1.
    fn pump(&mut self) {
        while let Some((link, _)) = self.queue.front() {
            let link = *link;
            let Some(sub) = self
                .links
                .get(&link)
                .and_then(|f| self.subscriptions.get(f))
            else {
                self.queue.pop_front();
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
                        let me = self.me.clone().expect("started");
                        let read = s.read(0, Some((me.recipient(), link, 0)));
                        if read.aborted {
                            let (_, d) = self.queue.pop_front().expect("front");
                            counters.undelivered.fetch_sub(1, Relaxed);
                            d.return_to_sender(Some(DeliveryState::Released));
                            continue;
                        }
                        if !read.complete {
                            break;
                        }
                        let mut all = d.message.to_vec();
                        for c in read.chunks {
                            all.extend_from_slice(&c);
                        }
                        Bytes::from(all)
                    }
                }
            };
            let (_, mut d) = self.queue.pop_front().expect("front");
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

    /// The connection is gone: subscriptions end, what was sent and not
    /// acknowledged comes back modified, the will goes out.
    fn end(&mut self) {
        let filters: Vec<String> = self.subscriptions.keys().cloned().collect();
        for f in filters {
            self.unsubscribe(&f);
        }
        for (_, (_, d)) in self.in_flight.drain() {
            d.return_to_sender(Some(DeliveryState::delivery_failed()));
        }
        for (_, d) in self.queue.drain(..) {
            d.return_to_sender(Some(DeliveryState::Released));
        }
        self.returns.send();
        if let Some(will) = self.will.take() {
            tracing::info!(conn = %self.id, client = %self.client_id, topic = %will.topic, "MQTT will published");
            let address: Arc<str> = Arc::from(will.topic.as_str());
            let message = message::to_amqp(&will);
            // Its outcome comes back to a stopped actor: the will is sent
            // once, whatever its QoS.
            self.route(u64::MAX, address, message, will.qos == 0);
        }
        if self
            .shared
            .client_ids
            .get(&self.client_id)
            .is_some_and(|e| e.0 == self.id)
        {
            self.shared.client_ids.remove(&self.client_id);
        }
    }
}

/// A delivery as it leaves an MQTT connection for its address.
fn delivery(address: Arc<str>, message: Bytes, presettled: bool, origin: Origin) -> RoutedDelivery {
    RoutedDelivery {
        address,
        message,
        presettled,
        priority: 4,
        origin,
        fanout: None,
        tried: Vec::new(),
        released_by: Vec::new(),
        stream: None,
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

impl Actor for MqttConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address());
        self.returns_to = Some(Arc::new(ctx.address().recipient()));
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
        ctx.add_stream(tokio_util::io::ReaderStream::with_capacity(
            read, READ_CHUNK,
        ));
        if let Some(deadline) = self.listener.handshake_timeout() {
            ctx.run_later(deadline, |act, ctx| {
                if act.w.is_none() && !act.closing {
                    act.fail(0x82, "no CONNECT within the handshake deadline", ctx);
                }
            });
        }
        tracing::debug!(conn = %self.id, peer = %self.peer, "MQTT connection accepted");
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        self.end();
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.shared.model.remove_connection(self.id);
        self.shared.heap.connection_closed();
    }
}

impl StreamHandler<std::io::Result<Bytes>> for MqttConnection {
    fn handle(&mut self, item: std::io::Result<Bytes>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        match item {
            Ok(data) => {
                self.input.extend_from_slice(&data);
                self.on_input(ctx);
            }
            Err(e) => {
                tracing::info!(conn = %self.id, peer = %self.peer, "read failed: {e}");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.disconnected {
            tracing::info!(conn = %self.id, peer = %self.peer, client = %self.client_id, "MQTT connection dropped by the client");
        }
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
        if !self.links.contains_key(&msg.link) || self.closing {
            // The subscription ended while these were on their way.
            for mut d in msg.deliveries {
                d.tried.push((self.id, msg.link));
                self.shared
                    .addresses
                    .get(&d.address)
                    .do_send(Forward(vec![d]));
            }
            return;
        }
        self.queue
            .extend(msg.deliveries.into_iter().map(|d| (msg.link, d)));
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
        let (reason, why) = if self.shared.shutting_down.load(Relaxed) {
            (0x8B, "the router is shutting down")
        } else {
            (0x8E, "session taken over by another connection")
        };
        self.fail(reason, why, ctx);
    }
}
