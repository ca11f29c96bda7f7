//! The router's MQTT node: the in-process endpoint through which the MQTT
//! routers of a mesh exchange their MQTT state (retained messages,
//! persistent sessions and their replicas), as AMQP messages routed
//! like any other. It owns the node address `_topo/0/<router-id>/_mqtt`
//! (a consumer of it, attached as the management node attaches to
//! `$management`; the mesh advertises it, so any router can send to it),
//! the requests this router makes there and the answers it gives.
//!
//! Each message names its operation in `properties.subject`; a request
//! carries a `correlation-id` (ulong) and `reply-to` (the asker's node
//! address), and its answer the same `correlation-id`. Bodies are one
//! `data` section of length-prefixed records (`u32` big-endian length,
//! then the bytes).
//!
//! - **Retained anti-entropy** (`retain-sync` -> `retained`): once this
//!   router sees another MQTT router (a remote consumer of
//!   [`RETAIN_ADDRESS`], with its node address known), it asks one of
//!   them for its retained messages. The peer answers with its last
//!   change of each topic (the message, or a clear it remembers, with
//!   the change's version: when the router took it, in µs), within its
//!   store's bounds (100,000 topics, 64 MiB), in `retained` batches of at
//!   most [`BATCH_BYTES`] (each batch says its index and how many there
//!   are); this router applies each change newer than its own for the
//!   topic ([`super::retain::RetainStore::fill`]) and writes it to its
//!   store on disk. A live change (set or clear) of a topic that arrives
//!   after the sync began wins over the synced copy, which is then
//!   ignored. A sync not answered
//!   whole within [`SYNC_TIMEOUT`] is asked of the next peer. It runs
//!   twice ([`SYNC_ROUNDS`], [`SYNC_AGAIN_AFTER`] apart), so a message
//!   retained while the peers were still learning this router's
//!   `_mqtt/retain` consumer is fetched too.
//! - **Session re-homing** (`session-fetch` -> `session`, then
//!   `session-confirm`): a client that connects with a persistent session
//!   and whose session is not on this router has it asked of every other
//!   MQTT router ([`FetchSession`], answered within [`FETCH_TIMEOUT`] or
//!   a new session starts). The router whose session actor has the client
//!   id hands it over ([`super::connection::HandOver`]): its client, if
//!   connected, is disconnected (5.0 reason 0x8E) as for a takeover, and
//!   the session record and its QoS 1 messages (sent and not
//!   acknowledged, then queued) go in the answer. The owner keeps its
//!   copy until the asker confirms it took the session (`session-confirm`,
//!   sent once the new session is subscribed and answered CONNACK); only
//!   then does it settle the handed messages `accepted` and end its
//!   session (on disk too). Without a confirmation within
//!   [`CONFIRM_TIMEOUT`] it keeps the session as it was.
//! - **Session replicas** (`session-replica`, `session-ended` on the
//!   multicast address [`SESSION_ADDRESS`], `_mqtt/session`; and
//!   `session-replicas` batches in a sync's answer): the owner of a
//!   persistent session announces its record (subscriptions, QoS, expiry,
//!   owner, version) at each change; every MQTT router keeps the newest
//!   record per client id ([`replica_step`]: a higher version wins), in
//!   memory and in its store. A fetch that no router answers with the
//!   session (within [`FETCH_TIMEOUT`], or with no other MQTT router
//!   reachable) restores it from the replica, unless the replica's owner
//!   answered it has none (stale) or it expired: subscriptions and
//!   session present, without the QoS 1 messages queued on the lost
//!   router. A local session older than another router's record, waiting
//!   for its client and not being handed over, ends ([`Superseded`]):
//!   so a router that comes back with a stale copy drops it.
//! - **Clean start** (`session-discard`, multicast on
//!   [`SESSION_ADDRESS`]): a connection with a clean start discards the
//!   client's session wherever it is: each router ends its session of
//!   that client id if older than the clean start ([`Discarded`]; a
//!   connected client is disconnected, 5.0 reason 0x8E) and drops its
//!   replica.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::connection::{Discarded, HandOver, HandedOver, MqttConnection, Superseded};
use super::retain::{MqttState, RETAIN_ADDRESS};
use super::store::{self, Change, QueuedMessage, SessionRecord, StoredReplica};
use crate::delivery::{ConnId, Origin, OutcomeBatch, Returned};
use crate::router::Shared;
use crate::router::address::{Deliver, Forward};
pub use crate::router::filter::SESSION_ADDRESS;
use crate::router::link::LinkCounters;
use bote_amqp::{MessageBuilder, MessageId, MessageView, primitive};

/// The operations (`properties.subject`).
const RETAIN_SYNC: &str = "retain-sync";
const RETAINED: &str = "retained";
const SESSION_FETCH: &str = "session-fetch";
const SESSION: &str = "session";
const SESSION_CONFIRM: &str = "session-confirm";
const SESSION_REPLICA: &str = "session-replica";
const SESSION_ENDED: &str = "session-ended";
const SESSION_REPLICAS: &str = "session-replicas";
const SESSION_DISCARD: &str = "session-discard";

/// A `retained` answer's batches hold at most this many bytes of messages
/// (a larger message goes alone).
pub const BATCH_BYTES: usize = 256 * 1024;
/// How often the node looks for a peer to sync from, until it has.
const SYNC_POLL: Duration = Duration::from_millis(250);
/// A sync not answered whole by then is asked of another peer.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// Sync rounds per process start, and the pause between them.
pub const SYNC_ROUNDS: u32 = 2;
pub const SYNC_AGAIN_AFTER: Duration = Duration::from_secs(2);
/// How often replicas of expired sessions are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long a connecting client waits for a session from the mesh.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an owner keeps a handed-over session for the confirmation.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// The node address of `router`'s MQTT node.
pub fn node_address(router: &str) -> String {
    format!("_topo/0/{router}/_mqtt")
}

/// Length-prefixed records, as the bodies hold them.
pub fn encode_records<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// The records of a body (`None`: malformed).
pub fn decode_records(body: &Bytes) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let len = u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        out.push(body.slice(at..at.checked_add(len).filter(|&e| e <= body.len())?));
        at += len;
    }
    Some(out)
}

/// Splits messages into batches of at most `max` bytes each (a larger
/// message alone); at least one batch, empty when there are none.
pub fn batches(messages: Vec<Bytes>, max: usize) -> Vec<Vec<Bytes>> {
    let mut out = vec![Vec::new()];
    let mut bytes = 0;
    for m in messages {
        let last = out.last_mut().expect("one batch");
        if !last.is_empty() && bytes + m.len() > max {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += m.len();
        out.last_mut().expect("one batch").push(m);
    }
    out
}

/// A session handed over by another router.
#[derive(Debug)]
pub struct HandedSession {
    /// The router that had it (it waits for `session-confirm`).
    pub owner: String,
    /// Its session actor (echoed in the confirmation); `None`: restored
    /// from this router's replica, nobody to confirm to.
    pub token: Option<u64>,
    pub record: SessionRecord,
    pub queue: Vec<QueuedMessage>,
}

/// Asks the other MQTT routers for the session of `client_id`.
#[derive(Message)]
#[rtype(result = "Option<HandedSession>")]
pub struct FetchSession {
    pub client_id: String,
}

/// Tells `owner` that this router took the session of `client_id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConfirmSession {
    pub owner: String,
    pub client_id: String,
    pub token: u64,
}

/// A message of the node protocol, as read.
struct Inbound {
    subject: String,
    correlation: Option<u64>,
    reply_to: Option<String>,
    body: Bytes,
    view: MessageView,
}

impl Inbound {
    fn parse(message: &Bytes) -> Option<Inbound> {
        let view = MessageView::parse(message.clone()).ok()?;
        let subject = view.subject().ok().flatten()?.to_owned();
        let correlation = match view.correlation_id().ok().flatten() {
            Some(MessageId::Ulong(n)) => Some(n),
            _ => None,
        };
        let reply_to = view.reply_to().ok().flatten().map(str::to_owned);
        let mut body = Vec::new();
        for s in view.data_sections() {
            body.extend_from_slice(&s);
        }
        Some(Inbound {
            subject,
            correlation,
            reply_to,
            body: Bytes::from(body),
            view,
        })
    }

    fn text(&self, key: &str) -> Option<String> {
        let v = self.view.application_property(key).ok().flatten()?;
        v.as_text().ok().map(str::to_owned)
    }

    fn ulong(&self, key: &str) -> Option<u64> {
        let v = self.view.application_property(key).ok().flatten()?;
        v.as_ulong().ok()
    }
}

fn ulong(n: u64) -> Vec<u8> {
    primitive::to_vec(|o| primitive::ulong(o, n))
}

/// A sync round under way.
struct SyncRound {
    request: u64,
    peer: String,
    started: Instant,
    batches: Option<u64>,
    got: HashSet<u64>,
    filled: usize,
}

/// A session fetch under way.
struct Fetch {
    client_id: String,
    answers_left: usize,
    /// The routers that answered they have no session to hand over.
    declined: HashSet<String>,
    reply: tokio::sync::oneshot::Sender<Option<HandedSession>>,
}

/// The router's MQTT node (see the module doc).
pub struct MqttNode {
    shared: Arc<Shared>,
    state: Arc<MqttState>,
    conn: ConnId,
    counters: Arc<LinkCounters>,
    returns_to: Option<Arc<Recipient<Returned>>>,
    address: String,
    next_request: u64,
    rounds_done: u32,
    round: Option<SyncRound>,
    next_round_at: Instant,
    /// Peers asked so far (the next sync asks the next one).
    attempts: usize,
    fetches: HashMap<u64, Fetch>,
    /// The newest session record known per client id: this router's own
    /// sessions and the replicas of other routers'.
    replicas: HashMap<String, Replica>,
}

/// A session record and the router that owns the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub owner: String,
    pub record: SessionRecord,
}

/// What to do with a session record from another router, given the one
/// known for its client id (see [`MqttNode`]'s `replicas`).
#[derive(Debug, PartialEq, Eq)]
pub enum ReplicaStep {
    /// Not newer than what is known: ignored.
    Ignore,
    /// Newer: kept as the replica.
    Keep,
    /// Newer than this router's own session, which is stale: kept, and
    /// the local session ends.
    Supersede,
}

/// The rule for a record `incoming` from another router against `known`:
/// a higher version wins.
pub fn replica_step(me: &str, known: Option<&Replica>, incoming: &Replica) -> ReplicaStep {
    match known {
        Some(k) if k.record.version >= incoming.record.version => ReplicaStep::Ignore,
        Some(k) if k.owner == me => ReplicaStep::Supersede,
        _ => ReplicaStep::Keep,
    }
}

/// Whether a session record's expiry ran out (seconds since the epoch).
pub fn expired(record: &SessionRecord, now: u64) -> bool {
    record
        .disconnected_at
        .is_some_and(|at| now.saturating_sub(at) >= record.expiry_secs)
}

/// A connection with a clean start took `client_id` here at `at` (µs
/// since the epoch): its session on any other router, and its replicas,
/// older than that are discarded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DiscardSession {
    pub client_id: String,
    pub at: u64,
}

/// Announces a local session's record to the mesh (`None`: it ended).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replicate {
    pub client_id: String,
    pub record: Option<SessionRecord>,
    /// For an end: its version (above the session's last record).
    pub ended_version: u64,
}

/// Whether the end of `client_id`'s session on `owner`, at version
/// `version`, removes the replica `known`: it does if that router owned
/// it, or if the replica is older (the session ended was taken from it:
/// a session restored from a replica or handed over, then ended).
pub fn ended_removes(known: &Replica, owner: &str, version: u64) -> bool {
    known.owner == owner || known.record.version < version
}

impl MqttNode {
    pub fn new(shared: Arc<Shared>, state: Arc<MqttState>, stored: Vec<StoredReplica>) -> MqttNode {
        let replicas = stored
            .into_iter()
            .map(|r| {
                (
                    r.client_id,
                    Replica {
                        owner: r.owner,
                        record: r.record,
                    },
                )
            })
            .collect();
        MqttNode {
            replicas,
            address: node_address(&shared.router_id),
            conn: shared.next_conn_id(),
            shared,
            state,
            counters: Arc::new(LinkCounters::default()),
            returns_to: None,
            next_request: 1,
            rounds_done: 0,
            round: None,
            next_round_at: Instant::now(),
            attempts: 0,
            fetches: HashMap::new(),
        }
    }

    /// A session record from another router (multicast on
    /// [`SESSION_ADDRESS`], or in a sync's answer).
    fn on_replica(&mut self, client_id: String, incoming: Replica) {
        let me = self.shared.router_id.clone();
        if incoming.owner == me {
            return;
        }
        match replica_step(&me, self.replicas.get(&client_id), &incoming) {
            ReplicaStep::Ignore => return,
            ReplicaStep::Keep => {}
            ReplicaStep::Supersede => self.supersede(&client_id, &incoming),
        }
        tracing::info!(client = %client_id, owner = %incoming.owner, version = incoming.record.version, subscriptions = incoming.record.subscriptions.len(), "MQTT session replica kept");
        if let Some(store) = &self.state.store {
            store.send(Change::Replica {
                client_id: client_id.clone(),
                owner: incoming.owner.clone(),
                record: Some(incoming.record.clone()),
            });
        }
        self.replicas.insert(client_id, incoming);
    }

    /// The local session of `client_id` is older than `newer`: it ends
    /// (unless its client is connected or it is being handed over).
    fn supersede(&self, client_id: &str, newer: &Replica) {
        let session = self.shared.client_ids.get(client_id).and_then(|e| {
            e.session
                .clone()
                .downcast::<Addr<MqttConnection>>()
                .ok()
                .map(|a| (*a).clone())
        });
        if let Some(s) = session {
            s.do_send(Superseded {
                version: newer.record.version,
                owner: newer.owner.clone(),
            });
        }
    }

    /// Removes the replicas of other routers' sessions whose expiry ran
    /// out (their owner died, and their client did not come back).
    fn prune(&mut self) {
        let now = super::connection::unix_now();
        let me = self.shared.router_id.clone();
        let gone: Vec<(String, String)> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.owner != me && expired(&r.record, now))
            .map(|(id, r)| (id.clone(), r.owner.clone()))
            .collect();
        for (client_id, owner) in gone {
            tracing::info!(client = %client_id, %owner, "MQTT session replica expired: removed");
            self.forget_replica(&client_id);
        }
    }

    /// Removes the replica of `client_id` from memory and, when it is
    /// another router's, from the store (this router keeps its own
    /// sessions' records as sessions, not replicas).
    fn forget_replica(&mut self, client_id: &str) {
        let Some(replica) = self.replicas.remove(client_id) else {
            return;
        };
        if replica.owner != self.shared.router_id
            && let Some(store) = &self.state.store
        {
            store.send(Change::Replica {
                client_id: client_id.to_owned(),
                owner: replica.owner,
                record: None,
            });
        }
    }

    /// A session of `owner` ended: its replica goes (a replica owned by
    /// another router since is kept).
    fn on_replica_ended(&mut self, client_id: &str, owner: &str, version: u64) {
        if owner == self.shared.router_id {
            return;
        }
        let Some(known) = self.replicas.get(client_id) else {
            return;
        };
        if known.owner == self.shared.router_id || !ended_removes(known, owner, version) {
            return;
        }
        tracing::info!(client = %client_id, %owner, "MQTT session replica removed (the session ended)");
        self.forget_replica(client_id);
    }

    /// A clean start on `router` at `at` discards the client's session.
    fn on_discard(&mut self, client_id: &str, router: &str, at: u64) {
        if router == self.shared.router_id {
            return;
        }
        if self
            .replicas
            .get(client_id)
            .is_some_and(|r| r.record.version < at)
        {
            self.forget_replica(client_id);
        }
        let session = self.shared.client_ids.get(client_id).and_then(|e| {
            e.session
                .clone()
                .downcast::<Addr<MqttConnection>>()
                .ok()
                .map(|a| (*a).clone())
        });
        if let Some(s) = session {
            s.do_send(Discarded { at });
        }
    }

    /// The session of `client_id` from its replica, if another router owns
    /// it and it has not expired.
    fn session_from_replica(&self, client_id: &str) -> Option<HandedSession> {
        let r = self.replicas.get(client_id)?;
        if r.owner == self.shared.router_id || expired(&r.record, super::connection::unix_now()) {
            return None;
        }
        Some(HandedSession {
            owner: r.owner.clone(),
            token: None,
            record: r.record.clone(),
            queue: Vec::new(),
        })
    }

    /// A fetch ends: the handed session, else the replica (unless its
    /// owner answered it has none to hand over: then the replica is
    /// stale, or the session is being handed elsewhere), else none.
    fn finish_fetch(&mut self, request: u64, handed: Option<HandedSession>) {
        let Some(fetch) = self.fetches.remove(&request) else {
            return;
        };
        let session = handed.or_else(|| {
            self.session_from_replica(&fetch.client_id)
                .filter(|r| !fetch.declined.contains(&r.owner))
        });
        let _ = fetch.reply.send(session);
    }

    fn replica_message(&self, to: &str, client_id: &str, replica: &Replica) -> Bytes {
        MessageBuilder::new()
            .to(to)
            .subject(SESSION_REPLICA)
            .application_property_str("client-id", client_id)
            .application_property_str("router", &replica.owner)
            .data(&store::encode_record(&replica.record))
            .build()
    }

    /// The other MQTT routers this one can reach now: those with a
    /// consumer of [`RETAIN_ADDRESS`] whose node address is known.
    fn peers(&self) -> Vec<String> {
        let Some(mesh) = &self.shared.mesh else {
            return Vec::new();
        };
        let me = self.shared.router_id.as_str();
        mesh.remote_routers(&RETAIN_ADDRESS.into())
            .into_iter()
            .map(|r| r.as_ref().to_owned())
            .filter(|r| r != me)
            .filter(|r| {
                mesh.remote_routers(&node_address(r).as_str().into())
                    .iter()
                    .any(|x| x.as_ref() == r)
            })
            .collect()
    }

    fn send(&self, to: &str, message: Bytes) {
        let Some(conn) = self.returns_to.clone() else {
            return;
        };
        let origin = Origin {
            conn,
            conn_id: self.conn,
            key: 0,
        };
        let d = super::connection::delivery(Arc::from(to), message, false, origin);
        self.shared.addresses.get(to).do_send(Forward(vec![d]));
    }

    /// Sends presettled to a multicast address (every MQTT router's node).
    fn send_multicast(&self, message: Bytes) {
        let Some(conn) = self.returns_to.clone() else {
            return;
        };
        let origin = Origin {
            conn,
            conn_id: self.conn,
            key: 0,
        };
        let d = super::connection::delivery(Arc::from(SESSION_ADDRESS), message, true, origin);
        self.shared
            .addresses
            .get(SESSION_ADDRESS)
            .do_send(Forward(vec![d]));
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Starts a sync round when one is due and a peer is there; gives up
    /// on one not answered in time.
    fn tick(&mut self) {
        if self.rounds_done >= SYNC_ROUNDS {
            return;
        }
        if let Some(r) = &self.round {
            if r.started.elapsed() < SYNC_TIMEOUT {
                return;
            }
            tracing::info!(peer = %r.peer, "MQTT retained-message sync not answered within {:?}: asking another router", SYNC_TIMEOUT);
            self.round = None;
        }
        if Instant::now() < self.next_round_at {
            return;
        }
        let peers = self.peers();
        if peers.is_empty() {
            return;
        }
        let peer = peers[self.attempts % peers.len()].clone();
        self.attempts += 1;
        self.state.retained.begin_sync();
        let request = self.request_id();
        let message = MessageBuilder::new()
            .to(&node_address(&peer))
            .subject(RETAIN_SYNC)
            .reply_to(&self.address)
            .correlation_id(MessageId::Ulong(request))
            .build();
        tracing::debug!(%peer, "MQTT retained-message sync asked");
        self.send(&node_address(&peer), message);
        self.round = Some(SyncRound {
            request,
            peer,
            started: Instant::now(),
            batches: None,
            got: HashSet::new(),
            filled: 0,
        });
    }

    /// A peer asks for this router's retained messages.
    fn answer_sync(&self, m: &Inbound) {
        let (Some(reply_to), Some(request)) = (&m.reply_to, m.correlation) else {
            return;
        };
        // Per topic: (topic, version, the message or nothing for a clear).
        let all: Vec<Bytes> = self
            .state
            .retained
            .all()
            .into_iter()
            .map(|(topic, message, version)| {
                Bytes::from(encode_records([
                    topic.as_bytes(),
                    &version.to_be_bytes()[..],
                    message.as_deref().unwrap_or_default(),
                ]))
            })
            .collect();
        let count = all.len();
        let retained = batches(all, BATCH_BYTES);
        let total = retained.len() as u64;
        for (i, batch) in retained.into_iter().enumerate() {
            let body = encode_records(batch.iter().map(|b| b.as_ref()));
            let message = MessageBuilder::new()
                .to(reply_to)
                .subject(RETAINED)
                .correlation_id(MessageId::Ulong(request))
                .application_property("batch", ulong(i as u64))
                .application_property("batches", ulong(total))
                .data(&body)
                .build();
            self.send(reply_to, message);
        }
        tracing::info!(to = %reply_to, messages = count, batches = total, "MQTT retained messages sent for a peer's sync");
        // The session records known here (own and replicas), in batches
        // of (client id, owner, record).
        let records: Vec<Bytes> = self
            .replicas
            .iter()
            .map(|(id, r)| {
                let record = store::encode_record(&r.record);
                Bytes::from(encode_records([
                    id.as_bytes(),
                    r.owner.as_bytes(),
                    record.as_slice(),
                ]))
            })
            .collect();
        for batch in batches(records, BATCH_BYTES) {
            let body = encode_records(batch.iter().map(|b| b.as_ref()));
            let message = MessageBuilder::new()
                .to(reply_to)
                .subject(SESSION_REPLICAS)
                .correlation_id(MessageId::Ulong(request))
                .data(&body)
                .build();
            self.send(reply_to, message);
        }
    }

    /// Session records in a sync's answer.
    fn on_replicas(&mut self, m: &Inbound) {
        for entry in decode_records(&m.body).unwrap_or_default() {
            let Some(parts) = decode_records(&entry) else {
                continue;
            };
            let [id, owner, record] = parts.as_slice() else {
                continue;
            };
            let (Ok(id), Ok(owner), Some(record)) = (
                std::str::from_utf8(id),
                std::str::from_utf8(owner),
                store::decode_record(record),
            ) else {
                continue;
            };
            self.on_replica(
                id.to_owned(),
                Replica {
                    owner: owner.to_owned(),
                    record,
                },
            );
        }
    }

    /// A batch of the answer to this router's sync.
    fn on_retained(&mut self, m: &Inbound) {
        let Some(round) = self
            .round
            .as_mut()
            .filter(|r| Some(r.request) == m.correlation)
        else {
            return;
        };
        let (Some(batch), Some(total)) = (m.ulong("batch"), m.ulong("batches")) else {
            return;
        };
        if !round.got.insert(batch) {
            return;
        }
        round.batches = Some(total);
        for entry in decode_records(&m.body).unwrap_or_default() {
            let Some(parts) = decode_records(&entry) else {
                continue;
            };
            let [topic, version, message] = parts.as_slice() else {
                continue;
            };
            let (Ok(topic), Ok(version)) = (
                std::str::from_utf8(topic),
                <[u8; 8]>::try_from(version.as_ref()).map(u64::from_be_bytes),
            ) else {
                continue;
            };
            // (An AMQP message is never empty: empty is a clear.)
            let message = (!message.is_empty()).then(|| message.clone());
            if self.state.retained.fill(topic, message.clone(), version) {
                round.filled += 1;
                if let Some(store) = &self.state.store {
                    store.send(Change::Retain {
                        topic: topic.to_owned(),
                        message,
                        version,
                    });
                }
            }
        }
        if round.got.len() as u64 >= total {
            tracing::info!(peer = %round.peer, filled = round.filled, "MQTT retained messages synced (round {} of {SYNC_ROUNDS})", self.rounds_done + 1);
            self.round = None;
            self.rounds_done += 1;
            self.next_round_at = Instant::now() + SYNC_AGAIN_AFTER;
            if self.rounds_done >= SYNC_ROUNDS {
                self.state.retained.end_sync();
            }
        }
    }

    /// A peer asks whether this router has the session of a client.
    fn answer_fetch(&mut self, m: &Inbound, ctx: &mut Context<Self>) {
        let (Some(reply_to), Some(request), Some(client_id)) =
            (m.reply_to.clone(), m.correlation, m.text("client-id"))
        else {
            return;
        };
        let session = self.shared.client_ids.get(&client_id).and_then(|e| {
            e.session
                .clone()
                .downcast::<Addr<MqttConnection>>()
                .ok()
                .map(|a| (*a).clone())
        });
        let Some(session) = session else {
            self.answer_session(&reply_to, request, &client_id, None);
            return;
        };
        ctx.spawn(
            session
                .send(HandOver)
                .into_actor(self)
                .map(move |handed, act, _| {
                    act.answer_session(&reply_to, request, &client_id, handed.ok().flatten());
                }),
        );
    }

    fn answer_session(
        &self,
        reply_to: &str,
        request: u64,
        client_id: &str,
        handed: Option<super::connection::HandOff>,
    ) {
        let mut b = MessageBuilder::new()
            .to(reply_to)
            .subject(SESSION)
            .correlation_id(MessageId::Ulong(request))
            .application_property_str("client-id", client_id)
            .application_property_str("router", &self.shared.router_id);
        match handed {
            None => b = b.data(&[]),
            Some(h) => {
                tracing::info!(client = %client_id, to = %reply_to, queued = h.queue.len(), "MQTT session handed over, waiting for the confirmation");
                let record = store::encode_record(&h.record);
                let queued: Vec<Vec<u8>> = h.queue.iter().map(store::encode_queued).collect();
                let body = encode_records(
                    std::iter::once(record.as_slice()).chain(queued.iter().map(Vec::as_slice)),
                );
                b = b.application_property("token", ulong(h.token)).data(&body);
            }
        }
        self.send(reply_to, b.build());
    }

    /// An answer to one of this router's session fetches.
    fn on_session(&mut self, m: &Inbound) {
        let Some(request) = m.correlation else {
            return;
        };
        let Some(fetch) = self.fetches.get_mut(&request) else {
            return;
        };
        let handed = m.ulong("token").and_then(|token| {
            let token = Some(token);
            let records = decode_records(&m.body)?;
            let (record, queued) = records.split_first()?;
            Some(HandedSession {
                owner: m.text("router")?,
                token,
                record: store::decode_record(record)?,
                queue: queued
                    .iter()
                    .map(|q| store::decode_queued(q))
                    .collect::<Option<Vec<_>>>()?,
            })
        });
        fetch.answers_left = fetch.answers_left.saturating_sub(1);
        if handed.is_none()
            && let Some(router) = m.text("router")
        {
            fetch.declined.insert(router);
        }
        if handed.is_some() || fetch.answers_left == 0 {
            self.finish_fetch(request, handed);
        }
    }

    /// The router this session was handed to took it.
    fn on_confirm(&self, m: &Inbound) {
        let (Some(client_id), Some(token)) = (m.text("client-id"), m.ulong("token")) else {
            return;
        };
        let session = self.shared.client_ids.get(&client_id).and_then(|e| {
            (e.conn.0 == token)
                .then(|| e.session.clone().downcast::<Addr<MqttConnection>>().ok())
                .flatten()
        });
        match session {
            Some(s) => s.do_send(HandedOver),
            None => {
                tracing::info!(client = %client_id, "MQTT session confirmation for a session no longer here")
            }
        }
    }
}

impl Actor for MqttNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.returns_to = Some(Arc::new(ctx.address().recipient()));
        self.shared.addresses.attach_in_process(
            self.conn,
            [self.address.as_str(), SESSION_ADDRESS],
            &ctx.address().recipient(),
            &self.counters,
        );
        ctx.run_interval(SYNC_POLL, |act, _| act.tick());
        ctx.run_interval(PRUNE_EVERY, |act, _| act.prune());
    }
}

impl Handler<Deliver> for MqttNode {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let mut returns = OutcomeBatch::default();
        let mut inbound = Vec::new();
        for mut d in msg.deliveries {
            self.counters
                .undelivered
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            returns.credit(&mut d);
            let m = Inbound::parse(&d.message);
            let state = match m {
                Some(_) => bote_amqp::DeliveryState::Accepted,
                None => bote_amqp::DeliveryState::Rejected {
                    error: Some(bote_amqp::AmqpError::new(
                        bote_amqp::condition::INVALID_FIELD,
                        "an MQTT node message needs properties.subject",
                    )),
                },
            };
            returns.push(d, Some(state));
            inbound.extend(m);
        }
        returns.send();
        for m in inbound {
            match m.subject.as_str() {
                RETAIN_SYNC => self.answer_sync(&m),
                RETAINED => self.on_retained(&m),
                SESSION_FETCH => self.answer_fetch(&m, ctx),
                SESSION => self.on_session(&m),
                SESSION_CONFIRM => self.on_confirm(&m),
                SESSION_REPLICAS => self.on_replicas(&m),
                SESSION_REPLICA => {
                    let (Some(id), Some(owner), Some(record)) = (
                        m.text("client-id"),
                        m.text("router"),
                        store::decode_record(&m.body),
                    ) else {
                        continue;
                    };
                    self.on_replica(id, Replica { owner, record });
                }
                SESSION_DISCARD => {
                    if let (Some(id), Some(router), Some(at)) =
                        (m.text("client-id"), m.text("router"), m.ulong("at"))
                    {
                        self.on_discard(&id, &router, at);
                    }
                }
                SESSION_ENDED => {
                    if let (Some(id), Some(owner)) = (m.text("client-id"), m.text("router")) {
                        let version = m.ulong("version").unwrap_or(0);
                        self.on_replica_ended(&id, &owner, version);
                    }
                }
                other => tracing::debug!(subject = %other, "MQTT node: unknown operation ignored"),
            }
        }
    }
}

/// Outcomes of what the node sent: nothing to do (a request nobody took
/// is asked again or times out).
impl Handler<Returned> for MqttNode {
    type Result = ();
    fn handle(&mut self, _msg: Returned, _ctx: &mut Context<Self>) {}
}

impl Handler<FetchSession> for MqttNode {
    type Result = ResponseFuture<Option<HandedSession>>;
    fn handle(&mut self, msg: FetchSession, ctx: &mut Context<Self>) -> Self::Result {
        let peers = self.peers();
        if peers.is_empty() {
            let replica = self.session_from_replica(&msg.client_id);
            return Box::pin(async { replica });
        }
        let request = self.request_id();
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.fetches.insert(
            request,
            Fetch {
                client_id: msg.client_id.clone(),
                answers_left: peers.len(),
                declined: HashSet::new(),
                reply,
            },
        );
        for peer in &peers {
            let to = node_address(peer);
            let message = MessageBuilder::new()
                .to(&to)
                .subject(SESSION_FETCH)
                .reply_to(&self.address)
                .correlation_id(MessageId::Ulong(request))
                .application_property_str("client-id", &msg.client_id)
                .build();
            self.send(&to, message);
        }
        // Unanswered by then: the replica, if any, else a new session.
        ctx.run_later(FETCH_TIMEOUT, move |act, _| act.finish_fetch(request, None));
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

impl Handler<Replicate> for MqttNode {
    type Result = ();
    fn handle(&mut self, msg: Replicate, _ctx: &mut Context<Self>) {
        let me = self.shared.router_id.clone();
        match msg.record {
            Some(record) => {
                let mine = Replica {
                    owner: me.clone(),
                    record,
                };
                let known = self.replicas.get(&msg.client_id);
                if let Some(k) = known
                    && k.owner != me
                {
                    if k.record.version > mine.record.version {
                        // Another router has a newer copy: this one is
                        // stale (a restored session after a takeover).
                        let k = k.clone();
                        self.supersede(&msg.client_id, &k);
                        return;
                    }
                    // This router's record replaces the other's replica.
                    self.forget_replica(&msg.client_id);
                }
                let message = self.replica_message(SESSION_ADDRESS, &msg.client_id, &mine);
                self.replicas.insert(msg.client_id, mine);
                self.send_multicast(message);
            }
            None => {
                if self
                    .replicas
                    .get(&msg.client_id)
                    .is_some_and(|r| ended_removes(r, &me, msg.ended_version))
                {
                    self.forget_replica(&msg.client_id);
                }
                let message = MessageBuilder::new()
                    .to(SESSION_ADDRESS)
                    .subject(SESSION_ENDED)
                    .application_property_str("client-id", &msg.client_id)
                    .application_property_str("router", &me)
                    .application_property("version", ulong(msg.ended_version))
                    .build();
                self.send_multicast(message);
            }
        }
    }
}

impl Handler<DiscardSession> for MqttNode {
    type Result = ();
    fn handle(&mut self, msg: DiscardSession, _ctx: &mut Context<Self>) {
        let me = self.shared.router_id.clone();
        if self
            .replicas
            .get(&msg.client_id)
            .is_some_and(|r| r.owner != me)
        {
            self.forget_replica(&msg.client_id);
        }
        let message = MessageBuilder::new()
            .to(SESSION_ADDRESS)
            .subject(SESSION_DISCARD)
            .application_property_str("client-id", &msg.client_id)
            .application_property_str("router", &me)
            .application_property("at", ulong(msg.at))
            .build();
        self.send_multicast(message);
    }
}

impl Handler<ConfirmSession> for MqttNode {
    type Result = ();
    fn handle(&mut self, msg: ConfirmSession, _ctx: &mut Context<Self>) {
        let to = node_address(&msg.owner);
        let message = MessageBuilder::new()
            .to(&to)
            .subject(SESSION_CONFIRM)
            .application_property_str("client-id", &msg.client_id)
            .application_property("token", ulong(msg.token))
            .build();
        self.send(&to, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncated_bodies_are_refused() {
        let body = Bytes::from(encode_records([&b"one"[..], b"", b"three"]));
        let records = decode_records(&body).unwrap();
        assert_eq!(records, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(decode_records(&Bytes::new()).unwrap(), Vec::<Bytes>::new());
        assert!(decode_records(&body.slice(..body.len() - 1)).is_none());
        assert!(decode_records(&body.slice(..2)).is_none());
    }

    #[test]
    fn batches_stay_within_their_bytes_and_a_large_message_goes_alone() {
        let m = |n: usize| Bytes::from(vec![0u8; n]);
        assert_eq!(batches(Vec::new(), 10), vec![Vec::<Bytes>::new()]);
        let b = batches(vec![m(4), m(4), m(4), m(30), m(1)], 10);
        let sizes: Vec<Vec<usize>> = b
            .iter()
            .map(|b| b.iter().map(Bytes::len).collect())
            .collect();
        assert_eq!(sizes, vec![vec![4, 4], vec![4], vec![30], vec![1]]);
    }

    fn replica(owner: &str, version: u64) -> Replica {
        Replica {
            owner: owner.into(),
            record: SessionRecord {
                protocol_level: 4,
                expiry_secs: 60,
                disconnected_at: Some(1_000),
                subscriptions: vec![("a/#".into(), 1)],
                version,
            },
        }
    }

    #[test]
    fn a_higher_version_wins_and_supersedes_a_stale_local_session() {
        // Nothing known: kept.
        assert_eq!(replica_step("A", None, &replica("B", 5)), ReplicaStep::Keep);
        // Older or the same: ignored (whoever owns the known one).
        for known in [replica("B", 5), replica("A", 5), replica("C", 9)] {
            assert_eq!(
                replica_step("A", Some(&known), &replica("B", 5)),
                ReplicaStep::Ignore
            );
        }
        // Newer than another router's: kept; than this router's own
        // session: the local one is stale.
        assert_eq!(
            replica_step("A", Some(&replica("C", 4)), &replica("B", 5)),
            ReplicaStep::Keep
        );
        assert_eq!(
            replica_step("A", Some(&replica("A", 4)), &replica("B", 5)),
            ReplicaStep::Supersede
        );
    }

    #[test]
    fn an_end_removes_a_replica_of_its_router_or_an_older_one() {
        // The owner's end.
        assert!(ended_removes(&replica("A", 5), "A", 1));
        // A session taken from the replica (version 5), then ended.
        assert!(ended_removes(&replica("A", 5), "B", 6));
        // The old owner's end after a hand-over: the new owner's record
        // (higher version) stays.
        assert!(!ended_removes(&replica("B", 9), "A", 6));
        assert!(!ended_removes(&replica("B", 6), "A", 6));
    }

    #[test]
    fn a_replica_expires_from_when_its_client_left() {
        let mut r = replica("B", 1).record;
        assert!(!expired(&r, 1_059));
        assert!(expired(&r, 1_060));
        // Connected when last announced: not expired.
        r.disconnected_at = None;
        assert!(!expired(&r, u64::MAX));
    }

    #[test]
    fn a_node_address_is_routed_to_its_router() {
        assert_eq!(node_address("Router.A"), "_topo/0/Router.A/_mqtt");
        assert!(!crate::router::filter::is_filter(&node_address("R")));
    }
}
