//! The messages that carry deliveries between a router's actors: a routed
//! delivery on its way from the ingress connection, through its address, to
//! an egress connection or a neighbour router; and the outcome travelling
//! back to the ingress connection, which settles the sender's delivery and
//! replenishes its credit.
//!
//! Neutral ground: the router's actors ([`crate::router`]) and the mesh
//! ([`crate::mesh`]) both carry these types, and this module uses neither.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actix::prelude::*;
use bytes::Bytes;

use crate::amqp::definitions::DeliveryState;
use crate::amqp::event::LinkId;

/// Hops a delivery may still take when it enters the mesh.
pub const HOP_LIMIT: u32 = 32;

/// A hasher for maps keyed by the router's own sequential ids (delivery keys,
/// contexts): they are unique integers already, SipHash would only cost.
#[derive(Default, Clone, Copy)]
pub struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        // Spread sequential ids over the table's buckets.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by sequential ids.
pub type SeqMap<V> = FastMap<u64, V>;

/// A set of small router-assigned ids.
pub type FastSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<SeqHasher>>;

/// A map keyed by small router-assigned ids (link ids, sequential keys).
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<SeqHasher>>;

/// A connection's router-wide identity (connection actors are keyed by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// Where a routed delivery entered the router: the ingress connection and the
/// key under which it keeps the sender's delivery until an outcome returns.
#[derive(Clone)]
pub struct Origin {
    /// Shared by every delivery of the connection: cloning an `Arc` is one
    /// atomic increment, cloning a `Recipient` an allocation and two.
    pub conn: Arc<Recipient<Returned>>,
    pub conn_id: ConnId,
    /// The ingress connection's key for the delivery (unique per connection).
    pub key: u64,
}

/// A message on its way through the router. `message` is the encoded message
/// exactly as the producer sent it (never re-encoded).
pub struct RoutedDelivery {
    pub address: Arc<str>,
    pub message: Bytes,
    /// The producer sent it settled: no outcome goes back, only the
    /// `Returned { state: None }` that replenishes credit once it is sent.
    pub presettled: bool,
    pub priority: u8,
    pub origin: Origin,
    /// Set on the copies of a multicast delivery: they share one outcome.
    pub fanout: Option<Arc<Fanout>>,
    /// Consumers that already had this delivery and gave it back (released or
    /// detached before sending); the address tries others first.
    pub tried: Vec<(ConnId, LinkId)>,
    /// Set while the message is still arriving frame by frame: `message` is
    /// its first frame and the rest comes through the stream.
    pub stream: Option<Arc<Stream>>,
    /// Routers the delivery has visited (ingress first); empty until it
    /// leaves its ingress router. It never goes to a router on this list.
    /// (The wire and qdrouterd call it the trace: `Transfer.trace`,
    /// `x-opt-qd.trace`.)
    pub visited: VisitedRouters,
    /// Inter-router hops it may still take.
    pub hops_left: u32,
    /// Set while it is unsettled on an inter-router hop: the sending
    /// address's count of outstanding deliveries through that next hop
    /// (what balanced weighs), decremented when the outcome comes back.
    pub remote_outstanding: Option<Arc<AtomicU32>>,
    /// With the first visited router (where it entered the mesh), the
    /// delivery's identity in the mesh ([`crate::mesh::dedup::MeshId`]): the
    /// sequence its ingress router gave it when it first left that router.
    /// 0 until then, and always for presettled deliveries and multicast
    /// copies (never sent twice).
    pub ingress_sequence: u64,
    /// It is being re-forwarded because a neighbour it had been sent to was
    /// lost before settling it (here or on a router before this one): the
    /// lost path may have delivered it already, so routers downstream check
    /// its identity first, and it never goes back `released`, only
    /// `modified` (delivery-failed).
    pub resend: bool,
    /// The neighbour this router lost it with: the address does not send it
    /// that way again.
    pub resent_from: Option<bote_topology::RouterId>,
    /// Its outcome has been sent home (see `Drop`).
    pub(crate) outcome_sent: bool,
}

/// The routers a delivery visited, ingress first (qdrouterd's trace; named
/// apart from the trace context of distributed tracing). Shared: deliveries
/// that arrive along the same path share one list (see `mesh::data`), and
/// copies clone an `Arc`. The empty list (a delivery still on its ingress
/// router) allocates nothing.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct VisitedRouters(Option<Arc<[bote_topology::RouterId]>>);

impl VisitedRouters {
    /// True when both are the same shared list (or both empty): a cheap
    /// cache check, not an equality test.
    pub fn same(&self, other: &VisitedRouters) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl std::ops::Deref for VisitedRouters {
    type Target = [bote_topology::RouterId];
    fn deref(&self) -> &Self::Target {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl From<Vec<bote_topology::RouterId>> for VisitedRouters {
    fn from(routers: Vec<bote_topology::RouterId>) -> VisitedRouters {
        if routers.is_empty() {
            VisitedRouters(None)
        } else {
            VisitedRouters(Some(routers.into()))
        }
    }
}

/// A delivery dropped without an outcome — handed to an actor that stopped
/// before reading its mailbox, say — goes back to its sender as released
/// (modified if it was being re-forwarded, see [`RoutedDelivery::resend`]):
/// no unsettled delivery ever vanishes.
impl Drop for RoutedDelivery {
    fn drop(&mut self) {
        if !self.outcome_sent {
            tracing::debug!(address = %self.address, "delivery dropped on its way: released to its sender");
            self.send_outcome(Some(DeliveryState::Released));
        }
    }
}

impl RoutedDelivery {
    /// Returns the delivery to its sender with `state` (or, for a presettled
    /// delivery, only replenishes the sender's credit).
    pub fn return_to_sender(mut self, state: Option<DeliveryState>) {
        self.send_outcome(state);
    }

    /// The delivery ends here with no outcome of its own: a multicast
    /// original once its copies are made (they carry the outcome).
    pub fn consumed(mut self) {
        self.outcome_sent = true;
    }

    fn send_outcome(&mut self, state: Option<DeliveryState>) {
        if let Some(state) = self.take_outcome(state) {
            self.origin.conn.do_send(Returned {
                outcomes: vec![(self.origin.key, state)],
            });
        }
    }

    /// The outcome to send home to [`Self::origin`] for this delivery
    /// (marking it sent): `None` when there is nothing to send, because it
    /// was sent already or this is a multicast copy (its fan-out sends the
    /// aggregate once all copies are done). Lets a connection batch the
    /// outcomes of many deliveries into one `Returned` per ingress
    /// connection.
    fn take_outcome(&mut self, state: Option<DeliveryState>) -> Option<Option<DeliveryState>> {
        if std::mem::replace(&mut self.outcome_sent, true) {
            return None;
        }
        match self.fanout.take() {
            Some(fanout) => {
                fanout.complete(&self.origin, state);
                None
            }
            None => Some(match state {
                _ if self.presettled => None,
                // It had been sent on a path that was lost: it may have
                // been processed there.
                Some(DeliveryState::Released) if self.resend => {
                    Some(DeliveryState::delivery_failed())
                }
                state => state,
            }),
        }
    }
}

/// Outcomes collected for their ingress connections, sent as one message per
/// connection when the collecting actor flushes.
#[derive(Default)]
pub struct OutcomeBatch {
    by_conn: Vec<ConnOutcomes>,
}

/// The outcomes collected for one ingress connection.
type ConnOutcomes = (
    ConnId,
    Arc<Recipient<Returned>>,
    Vec<(u64, Option<DeliveryState>)>,
);

impl OutcomeBatch {
    pub fn push(&mut self, mut d: RoutedDelivery, state: Option<DeliveryState>) {
        let Some(state) = d.take_outcome(state) else {
            return;
        };
        let origin = &d.origin;
        // The connection's recipient is cloned once per batch, not per
        // delivery (it is shared with the connection's thread).
        match self
            .by_conn
            .iter_mut()
            .find(|(id, _, _)| *id == origin.conn_id)
        {
            Some((_, _, v)) => v.push((origin.key, state)),
            None => self.by_conn.push((
                origin.conn_id,
                origin.conn.clone(),
                vec![(origin.key, state)],
            )),
        }
    }

    pub fn send(&mut self) {
        for (_, conn, outcomes) in self.by_conn.drain(..) {
            conn.do_send(Returned { outcomes });
        }
    }
}

/// Outcomes of routed deliveries, sent back to their ingress connection:
/// `(key, state)`, where `state: None` means "forwarded presettled"
/// (replenish credit only).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Returned {
    pub outcomes: Vec<(u64, Option<DeliveryState>)>,
}

/// The shared outcome of the copies of one unsettled multicast delivery:
/// accepted if any consumer accepted and none rejected; rejected if any
/// rejected; released if nobody took it (the spec of DESIGN.md §3).
pub struct Fanout {
    remaining: AtomicU32,
    presettled: bool,
    outcome: std::sync::Mutex<FanoutOutcome>,
}

#[derive(Default)]
struct FanoutOutcome {
    accepted: bool,
    rejected: Option<DeliveryState>,
}

impl Fanout {
    /// `copies` copies share the outcome; a presettled fan-out only
    /// replenishes the sender's credit once, when the last copy is sent.
    pub fn new(copies: u32, presettled: bool) -> Arc<Fanout> {
        Arc::new(Fanout {
            remaining: AtomicU32::new(copies),
            presettled,
            outcome: std::sync::Mutex::new(FanoutOutcome::default()),
        })
    }

    /// Records one copy's outcome; the last copy sends the aggregate home.
    pub fn complete(&self, origin: &Origin, state: Option<DeliveryState>) {
        {
            let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            match state {
                Some(DeliveryState::Accepted) => o.accepted = true,
                Some(s @ DeliveryState::Rejected { .. }) => o.rejected = Some(s),
                _ => {}
            }
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            let state = if self.presettled {
                None
            } else if let Some(r) = &o.rejected {
                Some(r.clone())
            } else if o.accepted {
                Some(DeliveryState::Accepted)
            } else {
                Some(DeliveryState::Released)
            };
            origin.conn.do_send(Returned {
                outcomes: vec![(origin.key, state)],
            });
        }
    }
}

/// Live counters of one outgoing (consumer) link, written by its connection
/// and read by its address to balance. The single source of these numbers.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Routed to the link but not yet sent (waiting for credit).
    pub undelivered: AtomicU32,
    /// Sent and not yet settled by the consumer.
    pub unsettled: AtomicU32,
    /// Credit the consumer granted and the router has not used.
    pub credit: AtomicU32,
}

impl LinkCounters {
    /// The balanced distribution's value of the link: undelivered + unsettled.
    pub fn outstanding(&self) -> u32 {
        self.undelivered.load(Ordering::Relaxed) + self.unsettled.load(Ordering::Relaxed)
    }
}

/// The body of a multi-frame delivery still arriving: the ingress connection
/// appends each transfer frame's payload as it comes, and every egress that
/// forwards the delivery (one per multicast copy) sends the chunks on as soon
/// as they are there, so a large message crosses the router frame by frame
/// and is never re-encoded or held whole.
#[derive(Default)]
pub struct Stream {
    state: std::sync::Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    /// Chunks after the first (the first travels as `RoutedDelivery::message`).
    chunks: Vec<Bytes>,
    complete: bool,
    aborted: bool,
    readers: Vec<(Recipient<StreamProgress>, LinkId, u64)>,
}

/// Tells an egress connection that a stream it forwards has more chunks, or
/// ended. `context` names the egress delivery.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StreamProgress {
    pub link: LinkId,
    pub context: u64,
}

/// What an egress reads of a stream: the chunks from its position on, and
/// whether the stream ended (completely, or aborted).
pub struct StreamRead {
    pub chunks: Vec<Bytes>,
    pub complete: bool,
    pub aborted: bool,
}

impl Stream {
    /// Ingress: one more frame's payload; `last` when it is the final one.
    pub fn push(&self, chunk: Bytes, last: bool) {
        let readers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !chunk.is_empty() {
                s.chunks.push(chunk);
            }
            s.complete |= last;
            s.readers.clone()
        };
        Self::wake(readers);
    }

    /// Ingress: the sender aborted the delivery (or its link went away).
    pub fn abort(&self) {
        let readers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.complete {
                return;
            }
            s.aborted = true;
            s.readers.clone()
        };
        Self::wake(readers);
    }

    fn wake(readers: Vec<(Recipient<StreamProgress>, LinkId, u64)>) {
        for (r, link, context) in readers {
            r.do_send(StreamProgress { link, context });
        }
    }

    /// Egress: the chunks from index `from`; registers the reader to be told
    /// of more unless the stream has ended.
    pub fn read(
        &self,
        from: usize,
        reader: Option<(Recipient<StreamProgress>, LinkId, u64)>,
    ) -> StreamRead {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let read = StreamRead {
            chunks: s.chunks.get(from..).unwrap_or_default().to_vec(),
            complete: s.complete,
            aborted: s.aborted,
        };
        if let Some(r) = reader
            && !s.complete
            && !s.aborted
        {
            s.readers.push(r);
        }
        read
    }
}
