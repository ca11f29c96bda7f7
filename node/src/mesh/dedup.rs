//! Duplicate suppression for re-forwarded deliveries: the router-wide record
//! of the unsettled deliveries that arrived from neighbours, by their
//! identity in the mesh ([`MeshId`]), and the sequence numbers this router
//! gives the deliveries that enter the mesh here.
//!
//! A router that loses a neighbour with deliveries unsettled on it sends
//! them again on another path (transfers marked `resend`), though the lost
//! neighbour may have passed them on already. So every router records, per
//! inter-router stream ([`StreamRecord`]), the mesh identity of each
//! unsettled delivery that arrives: as pending while its outcome has not
//! gone back, then, once it has, in a bounded ring of recently settled
//! deliveries ([`SETTLED_KEPT`]) with the outcome. When a stream closes its
//! record is kept for [`REMEMBERED`] (orphaned: the outcomes of its pending
//! deliveries will never reach anyone). A transfer marked `resend` — and
//! every transfer while a resent one arrived in the last [`REMEMBERED`]
//! ([`Records::checking`]), since the original may come after its copy when
//! only a link was cut — is looked up first ([`Records::lookup`]):
//! - settled here with an outcome other than `released`: answered with that
//!   outcome and not delivered (the consumer has settled it already);
//! - pending here or on a lost stream: answered `modified` (delivery-failed)
//!   and not delivered (a consumer has or had it);
//! - unknown, or only released: delivered like any other.
//!
//! Cost on the hot path (the peer data plane holds a [`StreamRecorder`]):
//! arriving identities are buffered and written once per batch, outcomes
//! once per batch of outcomes, each under the stream's own lock (all peer
//! actors of a router run on the mesh's arbiter, so it is never contended);
//! ingress routers are numbered per stream, so entries are plain numbers
//! (no reference counts to touch); while nobody checks, the only other
//! work is a relaxed atomic load per transfer. Measured with `cargo bench
//! -p bote-node --bench failover_record`. The per-stream indexes that make
//! lookups O(1) are built when checking begins and dropped when it ends.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bote_topology::RouterId;

use crate::delivery::{FastMap, SeqMap};
use bote_amqp::{AmqpError, DeliveryState};

/// Settled deliveries remembered per stream, most recent first out last.
pub const SETTLED_KEPT: usize = 16 * 1024;

/// How long the record of a lost stream is kept, and how long after the
/// last resent delivery every arriving delivery is checked.
pub const REMEMBERED: Duration = Duration::from_secs(30);

/// Sequence numbers a stream takes from the router-wide counter at a time.
const SEQUENCE_BLOCK: u64 = 1024;

/// A delivery's identity in the mesh: the router where it entered the mesh
/// and the sequence number that router gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshId {
    /// The ingress router (the first router of the delivery's trace).
    pub ingress: RouterId,
    /// Unique among the deliveries of that router.
    pub sequence: u64,
}

/// Hashes the sequence only: it is unique per ingress router already, and a
/// `SeqHasher` then costs one multiplication.
impl Hash for MeshId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.sequence);
    }
}

/// What the router knows of a delivery, by its mesh identity.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Not recorded, or only released: deliver it.
    No,
    /// It arrived and no outcome has gone back for it (a consumer has or
    /// had it, or its outcome was lost with the neighbour it came from).
    Pending,
    /// It arrived and was settled with this outcome (never `released`).
    Settled(DeliveryState),
}

/// An outcome as recorded: the four outcomes, kept small (a ring holds
/// thousands).
#[derive(Debug, Clone, PartialEq)]
enum Recorded {
    Accepted,
    Released,
    Modified { failed: bool, here: bool },
    Rejected(Option<Box<AmqpError>>),
}

impl From<&DeliveryState> for Recorded {
    fn from(state: &DeliveryState) -> Recorded {
        match state {
            DeliveryState::Accepted => Recorded::Accepted,
            DeliveryState::Rejected { error } => Recorded::Rejected(error.clone().map(Box::new)),
            DeliveryState::Modified {
                delivery_failed,
                undeliverable_here,
                ..
            } => Recorded::Modified {
                failed: *delivery_failed,
                here: *undeliverable_here,
            },
            DeliveryState::Released | DeliveryState::Received { .. } | DeliveryState::Other(_) => {
                Recorded::Released
            }
        }
    }
}

impl Recorded {
    fn state(&self) -> DeliveryState {
        match self {
            Recorded::Accepted => DeliveryState::Accepted,
            Recorded::Released => DeliveryState::Released,
            Recorded::Modified { failed, here } => DeliveryState::Modified {
                delivery_failed: *failed,
                undeliverable_here: *here,
                message_annotations: None,
            },
            Recorded::Rejected(error) => DeliveryState::Rejected {
                error: error.as_deref().cloned(),
            },
        }
    }
}

/// A mesh identity within one stream's record: its ingress router by the
/// stream's number for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    router: u32,
    sequence: u64,
}

/// Hashes the sequence only (as [`MeshId`] does).
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.sequence);
    }
}

/// Where an index finds a mesh identity in its stream's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending,
    /// The serial number of its entry in the settled ring.
    Settled(u64),
}

/// The unsettled deliveries that arrived on one inter-router stream.
struct StreamRecord {
    /// The ingress routers of the stream's deliveries, by number.
    routers: Vec<RouterId>,
    /// Arrived, outcome not gone back: the neighbour's delivery id -> key.
    pending: SeqMap<Key>,
    /// Recently settled, oldest first, at most `capacity`.
    settled: VecDeque<(Key, Recorded)>,
    /// Serial number of the oldest entry of `settled` (serials only grow).
    first_serial: u64,
    capacity: usize,
    /// Key -> where it is; kept only while the router checks arrivals.
    index: Option<FastMap<Key, Slot>>,
}

impl StreamRecord {
    fn new(capacity: usize) -> StreamRecord {
        StreamRecord {
            routers: Vec::new(),
            pending: SeqMap::default(),
            settled: VecDeque::new(),
            first_serial: 0,
            capacity: capacity.max(1),
            index: None,
        }
    }

    /// Delivery `id` of the stream arrived unsettled.
    fn arrived(&mut self, id: u64, key: Key) {
        if let Some(index) = &mut self.index {
            index.insert(key, Slot::Pending);
        }
        self.pending.insert(id, key);
    }

    /// The outcome of delivery `id` went back to the neighbour.
    fn settled(&mut self, id: u64, state: &DeliveryState) {
        let Some(key) = self.pending.remove(&id) else {
            return;
        };
        if self.settled.len() >= self.capacity
            && let Some((oldest, _)) = self.settled.pop_front()
        {
            let serial = self.first_serial;
            self.first_serial += 1;
            if let Some(index) = &mut self.index
                && index.get(&oldest) == Some(&Slot::Settled(serial))
            {
                index.remove(&oldest);
            }
        }
        let serial = self.first_serial + self.settled.len() as u64;
        if let Some(index) = &mut self.index {
            index.insert(key, Slot::Settled(serial));
        }
        self.settled.push_back((key, Recorded::from(state)));
    }

    /// What this stream saw of `mesh` (builds the index on first use).
    fn find(&mut self, mesh: &MeshId) -> Seen {
        let index = self.index.get_or_insert_with(|| {
            let mut index = FastMap::default();
            for (i, (k, _)) in self.settled.iter().enumerate() {
                index.insert(*k, Slot::Settled(self.first_serial + i as u64));
            }
            for k in self.pending.values() {
                index.insert(*k, Slot::Pending);
            }
            index
        });
        let Some(router) = self.routers.iter().position(|r| *r == mesh.ingress) else {
            return Seen::No;
        };
        let key = Key {
            router: router as u32,
            sequence: mesh.sequence,
        };
        match index.get(&key) {
            None => Seen::No,
            Some(Slot::Pending) => Seen::Pending,
            Some(Slot::Settled(serial)) => {
                let (_, outcome) = &self.settled[(serial - self.first_serial) as usize];
                Seen::Settled(outcome.state())
            }
        }
    }
}

/// One stream's writer of the record, held by its peer data plane: it
/// buffers the batch's arrivals and numbers their ingress routers without
/// taking the lock.
pub struct StreamRecorder {
    record: Arc<Mutex<StreamRecord>>,
    /// The same numbering as the record's `routers`.
    routers: Vec<RouterId>,
    /// The number of the last ingress router seen (most deliveries of a
    /// stream come from the same one).
    last: u32,
    buffer: Vec<(u64, Key)>,
}

impl StreamRecorder {
    /// Delivery `id` of the stream arrived unsettled with this identity
    /// (written at the next [`StreamRecorder::flush`]).
    pub fn arrived(&mut self, id: u64, ingress: &RouterId, sequence: u64) {
        let router = match self.routers.get(self.last as usize) {
            Some(r) if r == ingress => self.last,
            _ => self.number(ingress),
        };
        self.buffer.push((id, Key { router, sequence }));
    }

    fn number(&mut self, ingress: &RouterId) -> u32 {
        let n = match self.routers.iter().position(|r| r == ingress) {
            Some(n) => n as u32,
            None => {
                self.routers.push(ingress.clone());
                lock(&self.record).routers.push(ingress.clone());
                (self.routers.len() - 1) as u32
            }
        };
        self.last = n;
        n
    }

    /// Writes the buffered arrivals into the record.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut record = lock(&self.record);
        for (id, key) in self.buffer.drain(..) {
            record.arrived(id, key);
        }
    }

    /// The outcomes of these deliveries went back to the neighbour.
    pub fn settled<'a>(&mut self, outcomes: impl IntoIterator<Item = (u64, &'a DeliveryState)>) {
        let mut record = lock(&self.record);
        for (id, state) in outcomes {
            record.settled(id, state);
        }
    }

    /// Deliveries arrived and not settled (for tests and logs).
    pub fn pending(&self) -> usize {
        lock(&self.record).pending.len() + self.buffer.len()
    }
}

/// The records of every stream of the router, live and lost.
#[derive(Default)]
struct Streams {
    live: Vec<Arc<Mutex<StreamRecord>>>,
    /// Records of closed streams and when they are forgotten, oldest first.
    orphaned: VecDeque<(Instant, Arc<Mutex<StreamRecord>>)>,
    /// Arrivals are checked until then (the last resend seen + REMEMBERED).
    checking_until: Option<Instant>,
}

impl Streams {
    fn all(&self) -> impl Iterator<Item = &Arc<Mutex<StreamRecord>>> {
        self.live.iter().chain(self.orphaned.iter().map(|(_, r)| r))
    }

    fn expire(&mut self, now: Instant) {
        while self
            .orphaned
            .front()
            .is_some_and(|(until, _)| *until <= now)
        {
            self.orphaned.pop_front();
        }
        if self.checking_until.is_some_and(|until| until <= now) {
            self.checking_until = None;
            for r in self.all() {
                lock(r).index = None;
            }
        }
    }
}

/// The router-wide record (one per router, shared by its peer streams).
pub struct Records {
    /// The next free block of sequence numbers.
    sequence: AtomicU64,
    /// Arrivals are checked (a resent delivery arrived recently); the one
    /// thing the normal path reads.
    checking: AtomicBool,
    streams: Mutex<Streams>,
    capacity: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Records {
    fn default() -> Records {
        Records::new(SETTLED_KEPT)
    }
}

impl Records {
    /// A record keeping `capacity` settled deliveries per stream. Sequence
    /// numbers start at a random value (so a restarted router does not
    /// reuse the numbers of its earlier life), never 0.
    pub fn new(capacity: usize) -> Records {
        let start = (rand::random::<u64>() >> 2).max(1);
        Records {
            sequence: AtomicU64::new(start),
            checking: AtomicBool::new(false),
            streams: Mutex::new(Streams::default()),
            capacity,
        }
    }

    /// A block of sequence numbers for deliveries entering the mesh here.
    pub fn sequences(&self) -> Range<u64> {
        let first = self.sequence.fetch_add(SEQUENCE_BLOCK, Ordering::Relaxed);
        first..first + SEQUENCE_BLOCK
    }

    /// The record of a new stream.
    pub fn open_stream(&self) -> StreamRecorder {
        let record = Arc::new(Mutex::new(StreamRecord::new(self.capacity)));
        let mut streams = lock(&self.streams);
        streams.expire(Instant::now());
        if streams.checking_until.is_some() {
            // Checking: the index is kept from the start.
            lock(&record).index = Some(FastMap::default());
        }
        streams.live.push(record.clone());
        StreamRecorder {
            record,
            routers: Vec::new(),
            last: 0,
            buffer: Vec::new(),
        }
    }

    /// The stream closed: its record (with what was buffered) is kept for
    /// [`REMEMBERED`] from `now`.
    pub fn close_stream(&self, recorder: &mut StreamRecorder, now: Instant) {
        recorder.flush();
        let mut streams = lock(&self.streams);
        streams.expire(now);
        streams.live.retain(|r| !Arc::ptr_eq(r, &recorder.record));
        streams
            .orphaned
            .push_back((now + REMEMBERED, recorder.record.clone()));
    }

    /// True while arrivals must be looked up (a resent delivery arrived
    /// within the last [`REMEMBERED`]).
    pub fn checking(&self) -> bool {
        self.checking.load(Ordering::Relaxed)
    }

    /// What the router saw of `mesh` on any stream, live or lost. `resend`:
    /// the delivery is a re-forwarded one, which starts (or prolongs)
    /// checking every arrival. A lookup made because checking was on finds
    /// nothing once checking has ended. The caller's own buffered arrivals
    /// must be written first.
    pub fn lookup(&self, mesh: &MeshId, resend: bool, now: Instant) -> Seen {
        let mut streams = lock(&self.streams);
        streams.expire(now);
        if resend {
            streams.checking_until = Some(now + REMEMBERED);
        }
        let checking = streams.checking_until.is_some();
        self.checking.store(checking, Ordering::Relaxed);
        if !checking {
            return Seen::No;
        }
        let mut pending = false;
        for record in streams.all() {
            match lock(record).find(mesh) {
                Seen::Settled(DeliveryState::Released) | Seen::No => {}
                Seen::Pending => pending = true,
                settled @ Seen::Settled(_) => return settled,
            }
        }
        if pending { Seen::Pending } else { Seen::No }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(router: &str, sequence: u64) -> MeshId {
        MeshId {
            ingress: RouterId::from(router),
            sequence,
        }
    }

    /// What `records` knows of a resent delivery (router, sequence) at `at`.
    fn seen(records: &Records, router: &str, sequence: u64, at: Instant) -> Seen {
        records.lookup(&id(router, sequence), true, at)
    }

    fn arrive(stream: &mut StreamRecorder, delivery: u64, router: &str, sequence: u64) {
        stream.arrived(delivery, &RouterId::from(router), sequence);
        stream.flush();
    }

    fn settle(stream: &mut StreamRecorder, delivery: u64, state: DeliveryState) {
        stream.settled([(delivery, &state)]);
    }

    fn rejected() -> DeliveryState {
        DeliveryState::Rejected {
            error: Some(AmqpError::new("amqp:precondition-failed", "no")),
        }
    }

    #[test]
    fn pending_then_settled_deliveries_are_found_with_their_outcome() {
        let records = Records::new(8);
        let now = Instant::now();
        let mut stream = records.open_stream();
        for (delivery, sequence) in [(0, 10), (1, 11), (2, 12), (3, 13)] {
            arrive(&mut stream, delivery, "A", sequence);
        }
        settle(&mut stream, 1, DeliveryState::Accepted);
        settle(&mut stream, 2, rejected());
        settle(&mut stream, 3, DeliveryState::Released);
        assert_eq!(stream.pending(), 1);

        assert_eq!(seen(&records, "A", 10, now), Seen::Pending);
        assert_eq!(
            seen(&records, "A", 11, now),
            Seen::Settled(DeliveryState::Accepted)
        );
        assert_eq!(seen(&records, "A", 12, now), Seen::Settled(rejected()));
        // Released: nobody processed it, so it may be delivered.
        assert_eq!(seen(&records, "A", 13, now), Seen::No);
        // Same sequence, another ingress router: another delivery.
        assert_eq!(seen(&records, "B", 11, now), Seen::No);
        assert_eq!(seen(&records, "A", 99, now), Seen::No);

        // The index built by the lookups follows later changes, and a
        // second ingress router gets its own number.
        settle(&mut stream, 0, DeliveryState::delivery_failed());
        arrive(&mut stream, 4, "C", 11);
        arrive(&mut stream, 5, "A", 14);
        assert_eq!(
            seen(&records, "A", 10, now),
            Seen::Settled(DeliveryState::delivery_failed())
        );
        assert_eq!(seen(&records, "C", 11, now), Seen::Pending);
        assert_eq!(seen(&records, "A", 14, now), Seen::Pending);
        assert_eq!(
            seen(&records, "A", 11, now),
            Seen::Settled(DeliveryState::Accepted)
        );
    }

    #[test]
    fn arrivals_are_found_only_once_flushed() {
        let records = Records::new(8);
        let now = Instant::now();
        let mut stream = records.open_stream();
        stream.arrived(0, &RouterId::from("A"), 1);
        assert_eq!(seen(&records, "A", 1, now), Seen::No);
        stream.flush();
        assert_eq!(seen(&records, "A", 1, now), Seen::Pending);
    }

    #[test]
    fn the_settled_ring_is_bounded_and_forgets_the_oldest() {
        let records = Records::new(4);
        let now = Instant::now();
        let mut stream = records.open_stream();
        // Checking starts before the traffic: the index is kept throughout.
        assert_eq!(seen(&records, "A", 1_000, now), Seen::No);
        for i in 0..10 {
            arrive(&mut stream, i, "A", i);
            settle(&mut stream, i, DeliveryState::Accepted);
        }
        {
            let record = lock(&stream.record);
            assert_eq!(record.settled.len(), 4);
            assert_eq!(record.index.as_ref().map(|i| i.len()), Some(4));
        }
        for i in 0..6 {
            assert_eq!(records.lookup(&id("A", i), false, now), Seen::No, "{i}");
        }
        for i in 6..10 {
            assert_eq!(
                records.lookup(&id("A", i), false, now),
                Seen::Settled(DeliveryState::Accepted),
                "{i}"
            );
        }
        // Settling an id that is not pending changes nothing.
        settle(&mut stream, 42, DeliveryState::Accepted);
        assert_eq!(lock(&stream.record).settled.len(), 4);
    }

    #[test]
    fn a_lost_streams_record_is_kept_for_a_while_then_forgotten() {
        let records = Records::new(16);
        let t0 = Instant::now();
        let mut lost = records.open_stream();
        arrive(&mut lost, 0, "A", 1);
        arrive(&mut lost, 1, "A", 2);
        settle(&mut lost, 1, DeliveryState::Accepted);
        // Buffered, not flushed yet: closing writes it too.
        lost.arrived(2, &RouterId::from("A"), 3);
        records.close_stream(&mut lost, t0);
        // Its outcomes will never go back: pending stays pending.
        assert_eq!(seen(&records, "A", 1, t0), Seen::Pending);
        assert_eq!(seen(&records, "A", 3, t0), Seen::Pending);
        let later = t0 + REMEMBERED - Duration::from_secs(1);
        assert_eq!(
            seen(&records, "A", 2, later),
            Seen::Settled(DeliveryState::Accepted)
        );
        let gone = t0 + REMEMBERED + Duration::from_millis(1);
        assert_eq!(seen(&records, "A", 1, gone), Seen::No);
        assert_eq!(seen(&records, "A", 2, gone), Seen::No);
    }

    #[test]
    fn checking_starts_with_a_resend_and_ends_after_remembered() {
        let records = Records::new(16);
        let t0 = Instant::now();
        let mut stream = records.open_stream();
        arrive(&mut stream, 0, "A", 1);
        assert!(!records.checking());
        // A lookup that is not a resend, with checking off, finds nothing
        // and builds nothing.
        assert_eq!(records.lookup(&id("A", 1), false, t0), Seen::No);
        assert!(lock(&stream.record).index.is_none());

        assert_eq!(seen(&records, "A", 1, t0), Seen::Pending);
        assert!(records.checking());
        let mut other = records.open_stream();
        arrive(&mut other, 7, "B", 5);
        let t1 = t0 + REMEMBERED / 2;
        assert_eq!(records.lookup(&id("B", 5), false, t1), Seen::Pending);
        assert!(records.checking());

        let t2 = t0 + REMEMBERED + Duration::from_millis(1);
        assert_eq!(records.lookup(&id("A", 1), false, t2), Seen::No);
        assert!(!records.checking());
        assert!(lock(&stream.record).index.is_none());
        assert!(lock(&other.record).index.is_none());
        // A new resend starts checking again, on the records as they are.
        assert_eq!(seen(&records, "B", 5, t2), Seen::Pending);
    }

    #[test]
    fn a_settled_outcome_anywhere_wins_over_a_pending_copy() {
        let records = Records::new(16);
        let now = Instant::now();
        let mut first = records.open_stream();
        let mut second = records.open_stream();
        arrive(&mut first, 0, "A", 1);
        arrive(&mut second, 0, "A", 1);
        settle(&mut second, 0, DeliveryState::Accepted);
        assert_eq!(
            seen(&records, "A", 1, now),
            Seen::Settled(DeliveryState::Accepted)
        );
    }

    #[test]
    fn sequence_blocks_do_not_overlap_and_are_never_zero() {
        let records = Records::new(1);
        let a = records.sequences();
        let b = records.sequences();
        assert!(a.start > 0);
        assert_eq!(a.end, b.start);
        assert_eq!(b.end - b.start, SEQUENCE_BLOCK);
    }
}
