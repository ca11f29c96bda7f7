//! Duplicate suppression for re-forwarded deliveries: the router-wide record
//! of the unsettled deliveries that arrived from neighbours, by their
//! identity in the mesh ([`MeshId`]), the copies waiting for the outcome of
//! the delivery they duplicate, and the sequence numbers this router gives
//! the deliveries that enter the mesh here.
//!
//! A router that loses a neighbour with deliveries unsettled on it sends
//! them again on another path (transfers marked `resend`), though the lost
//! neighbour may have passed them on already. So every router records, per
//! inter-router stream ([`StreamRecord`]), the mesh identity of each
//! unsettled delivery that arrives: as pending while its outcome has not
//! gone back, then, once it has, in a bounded ring of recently settled
//! deliveries ([`SETTLED_KEPT`]) with the outcome. When a stream closes its
//! record is kept for [`REMEMBERED`], and outcomes of its pending
//! deliveries are still written into it (its peer actor stays until they
//! are in, at most as long: see `mesh::peer`); they can no longer go back,
//! but they answer the copies. A transfer marked `resend` — and every
//! transfer while a resent one arrived in the last [`REMEMBERED`]
//! ([`Records::checking`]), since the original may come after its copy when
//! only a link was cut — is checked first ([`Records::check`]):
//! - settled here with an outcome other than `released`: answered with that
//!   outcome and not delivered (the consumer has settled it already);
//! - pending here, on a live or a lost stream (a consumer has it, or its
//!   outcome is on the way): not delivered; it waits for that outcome and
//!   is answered with it ([`Records::wake`]), so the sender hears the
//!   consumer's own outcome (`accepted` where it accepted, `modified` where
//!   it failed or left without settling). If the original comes back
//!   `released` (nobody processed it), one waiting copy is delivered after
//!   all and any other waits for that one;
//! - unknown, or only released: delivered like any other.
//!
//! # What it remembers, for how long, how much, and past the bounds
//!
//! - Pending deliveries: one entry (the neighbour's delivery id -> ingress
//!   router number and sequence, about 24 bytes plus the map's overhead)
//!   per unsettled delivery that arrived and has no outcome yet; as many as
//!   the neighbour has unsettled here, which its senders' windows bound.
//! - Settled deliveries: the last [`SETTLED_KEPT`] per stream with their
//!   outcome (32 bytes each: 512 KiB per stream when full). Past it the
//!   oldest is forgotten, and a copy of it that still arrives is delivered
//!   again. Copies come within the time to find the loss (the stream
//!   closing, or the hello timeout) plus rerouting; what settles on the
//!   stream meanwhile, beyond the lost deliveries, is other traffic.
//! - A closed stream's record: [`REMEMBERED`] after the loss, then dropped
//!   with whatever is still pending in it; a copy arriving later is
//!   delivered again.
//! - Lookup indexes (key -> entry, per stream, about 40 bytes per entry)
//!   exist only while checking, from a resend to [`REMEMBERED`] after the
//!   last one; an original arriving after its copy later than that is not
//!   checked.
//! - Waiting copies: router-wide at most [`WAITING_MAX`] copies and
//!   [`WAITING_BYTES`] of their messages (each keeps its own copy of its
//!   message, not the batch it arrived in, and about 250 bytes besides: at
//!   most about 4 MiB + 64 MiB), each at most [`OUTCOME_WAIT`].
//!   Past either bound a copy of a pending delivery is answered `modified`
//!   (delivery-failed) at once, and one whose wait is over is answered so
//!   then: the consumer may still process the original, so an
//!   at-least-once sender that sends it again may cause a duplicate.
//!
//! [`MeshId`] names a message as it entered the mesh. Each router records
//! each arrival, so the copies of an unsettled multicast message — of
//! which every router on the tree gets one — all carry their message's one
//! identity, and the same record answers a re-forwarded copy with that
//! router's own outcome (the outcome its sub-tree gave). A re-forwarded
//! multicast copy only passing through a router that is not one of its
//! destinations is neither checked nor recorded there (see `mesh::data`).
//! Losing a stream starts checking too ([`Records::close_stream`]): copies
//! of what came through the lost neighbour may come another way, multicast
//! copies along the new tree without the `resend` mark.
//!
//! Cost on the hot path (the peer data plane holds a [`StreamRecorder`]):
//! arriving identities are buffered and written once per batch, outcomes
//! once per batch of outcomes, each under the stream's own lock (all peer
//! actors of a router run on the mesh's arbiter, so it is never contended);
//! ingress routers are numbered per stream, so entries are plain numbers
//! (no reference counts to touch); while nobody checks, the only other
//! work is a relaxed atomic load per transfer, and an atomic load per
//! batch of outcomes (whether copies wait). Measured with `cargo bench
//! -p bote-node --bench failover_record`. The per-stream indexes that make
//! lookups O(1) are built when checking begins and dropped when it ends.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bote_topology::RouterId;

use crate::delivery::{FastMap, RoutedDelivery, SeqRing};
use bote_amqp::{AmqpError, DeliveryState};

/// Settled deliveries remembered per stream, most recent first out last.
pub const SETTLED_KEPT: usize = 16 * 1024;

/// How long the record of a lost stream is kept, and how long after the
/// last resent delivery every arriving delivery is checked.
pub const REMEMBERED: Duration = Duration::from_secs(30);

/// The longest a copy waits for the outcome of the pending delivery it
/// duplicates before it is answered `modified` (delivery-failed). Not
/// longer than [`REMEMBERED`]: past that the record of a lost stream, and
/// with it the outcome, is gone.
pub const OUTCOME_WAIT: Duration = REMEMBERED;

/// Copies that may wait at once, router-wide; past it (or past
/// [`WAITING_BYTES`]) a copy of a pending delivery is answered `modified`
/// (delivery-failed) at once.
pub const WAITING_MAX: usize = 16 * 1024;

/// The message bytes the waiting copies may hold, router-wide.
pub const WAITING_BYTES: usize = 64 * 1024 * 1024;

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
    /// Arrived, outcome not gone back: the neighbour's delivery id -> key
    /// (ids arrive in order and mostly settle in order: a ring, not a hash
    /// table, as for the deliveries a stream sent).
    pending: SeqRing<Key>,
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
            pending: SeqRing::default(),
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

    /// The outcome of delivery `id` went back to the neighbour; its key if
    /// it was pending.
    fn settled(&mut self, id: u64, state: &DeliveryState) -> Option<Key> {
        let key = self.pending.remove(&id)?;
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
        Some(key)
    }

    /// The mesh identity a key of this record stands for.
    fn mesh_id(&self, key: Key) -> MeshId {
        MeshId {
            ingress: self.routers[key.router as usize].clone(),
            sequence: key.sequence,
        }
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
    /// The router's count of waiting copies ([`Records::waiting`]).
    waiting: Arc<AtomicUsize>,
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

    /// The outcomes of these deliveries went back to the neighbour (or,
    /// the neighbour lost, are known here all the same). While
    /// copies wait anywhere in the router, returns the identities and
    /// outcomes of those that were pending, for [`Records::wake`] (else
    /// nothing: the normal path allocates nothing).
    pub fn settled<'a>(
        &mut self,
        outcomes: impl IntoIterator<Item = (u64, &'a DeliveryState)>,
    ) -> Vec<(MeshId, DeliveryState)> {
        let mut record = lock(&self.record);
        // Read under the stream's lock: a copy that found one of these
        // pending counted itself before it looked (see `Records::check`).
        let wanted = self.waiting.load(Ordering::SeqCst) > 0;
        let mut settled = Vec::new();
        for (id, state) in outcomes {
            if let Some(key) = record.settled(id, state)
                && wanted
            {
                settled.push((record.mesh_id(key), state.clone()));
            }
        }
        settled
    }

    /// Deliveries arrived and not settled (for tests and logs).
    pub fn pending(&self) -> usize {
        lock(&self.record).pending.len() + self.buffer.len()
    }
}

/// Copies of pending deliveries, each waiting for the outcome of the one it
/// duplicates (held by their mesh identity, oldest first), within a count
/// and a byte bound.
struct Waiting<T> {
    held: FastMap<MeshId, VecDeque<Waiter<T>>>,
    /// When each copy stops waiting, in the order they started (the wait is
    /// the same for all, so this is also deadline order); entries of copies
    /// woken before their time stay until then, at most twice `max`.
    deadlines: VecDeque<(Instant, MeshId)>,
    count: usize,
    bytes: usize,
    max: usize,
    max_bytes: usize,
}

struct Waiter<T> {
    until: Instant,
    item: T,
    bytes: usize,
}

impl<T> Waiting<T> {
    fn new(max: usize, max_bytes: usize) -> Waiting<T> {
        Waiting {
            held: FastMap::default(),
            deadlines: VecDeque::new(),
            count: 0,
            bytes: 0,
            max,
            max_bytes,
        }
    }

    /// Holds `item` (`bytes` of message) until `mesh` has an outcome or
    /// [`OUTCOME_WAIT`] has passed; gives it back if the bounds are reached.
    fn hold(&mut self, mesh: &MeshId, item: T, bytes: usize, now: Instant) -> Result<(), T> {
        if self.count >= self.max || self.bytes + bytes > self.max_bytes {
            return Err(item);
        }
        let until = now + OUTCOME_WAIT;
        self.held
            .entry(mesh.clone())
            .or_default()
            .push_back(Waiter { until, item, bytes });
        self.deadlines.push_back((until, mesh.clone()));
        self.count += 1;
        self.bytes += bytes;
        if self.deadlines.len() > 2 * self.max {
            // Most are left behind by copies woken before their time.
            let held = &self.held;
            self.deadlines.retain(|(until, mesh)| {
                held.get(mesh)
                    .is_some_and(|queue| queue.iter().any(|w| w.until == *until))
            });
        }
        Ok(())
    }

    fn taken(&mut self, waiter: Waiter<T>) -> T {
        self.count -= 1;
        self.bytes -= waiter.bytes;
        waiter.item
    }

    /// The copies of `mesh`: all of them, or only the oldest.
    fn take(&mut self, mesh: &MeshId, all: bool) -> Vec<T> {
        let Some(queue) = self.held.get_mut(mesh) else {
            return Vec::new();
        };
        let taken: Vec<Waiter<T>> = if all {
            queue.drain(..).collect()
        } else {
            queue.pop_front().into_iter().collect()
        };
        if queue.is_empty() {
            self.held.remove(mesh);
        }
        taken.into_iter().map(|w| self.taken(w)).collect()
    }

    /// The copies whose wait is over at `now`.
    fn expired(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        while let Some((until, _)) = self.deadlines.front()
            && *until <= now
        {
            let Some((until, mesh)) = self.deadlines.pop_front() else {
                break;
            };
            // Woken copies left their deadline behind: then nothing is due.
            let Some(queue) = self.held.get_mut(&mesh) else {
                continue;
            };
            let mut due = Vec::new();
            while queue.front().is_some_and(|w| w.until <= until) {
                due.extend(queue.pop_front());
            }
            if queue.is_empty() {
                self.held.remove(&mesh);
            }
            out.extend(due.into_iter().map(|w| self.taken(w)));
        }
        out
    }
}

/// What to do with an arriving delivery that was checked ([`Records::check`]).
#[derive(Debug, PartialEq)]
pub enum Checked<T> {
    /// Not seen, or only released (or nobody checks now): deliver it.
    Deliver(T),
    /// Seen and settled with this outcome (never `released`), or pending
    /// with no room left to wait: answer it so and do not deliver it.
    Answer(T, DeliveryState),
    /// Seen and still pending (a consumer has it, or its outcome is on the
    /// way): held until that outcome is known ([`Records::wake`]) or
    /// [`OUTCOME_WAIT`] has passed ([`Records::expired`]).
    Held,
}

/// A waiting copy the router can now act on.
#[derive(Debug, PartialEq)]
pub enum Woken<T> {
    /// The delivery it duplicates was settled with this outcome (or its
    /// wait is over: `modified`, delivery-failed): answer it so.
    Answer(T, DeliveryState),
    /// The delivery it duplicates came back `released` (nobody processed
    /// it): deliver this copy like any other. Other copies of it go on
    /// waiting, now for this one.
    Deliver(T),
}

/// The records of every stream of the router, live and lost, and the
/// copies waiting on them.
struct Streams<T> {
    live: Vec<Arc<Mutex<StreamRecord>>>,
    /// Records of closed streams and when they are forgotten, oldest first.
    orphaned: VecDeque<(Instant, Arc<Mutex<StreamRecord>>)>,
    /// Arrivals are checked until then (the last resend seen + REMEMBERED).
    checking_until: Option<Instant>,
    waiting: Waiting<T>,
}

impl<T> Streams<T> {
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

    /// What any stream, live or lost, saw of `mesh`: a settled outcome
    /// anywhere wins over a pending copy.
    fn find(&self, mesh: &MeshId) -> Seen {
        let mut pending = false;
        for record in self.all() {
            match lock(record).find(mesh) {
                Seen::Settled(DeliveryState::Released) | Seen::No => {}
                Seen::Pending => pending = true,
                settled @ Seen::Settled(_) => return settled,
            }
        }
        if pending { Seen::Pending } else { Seen::No }
    }
}

/// The router-wide record (one per router, shared by its peer streams).
/// `T` is what a waiting copy is held as: the routed delivery itself.
pub struct Records<T = RoutedDelivery> {
    /// The next free block of sequence numbers.
    sequence: AtomicU64,
    /// Arrivals are checked (a resent delivery arrived recently); the one
    /// thing the normal path reads.
    checking: AtomicBool,
    /// Copies waiting, plus lookups under way that may hold one: while it
    /// is 0, settling streams do not report what they settled.
    waiting: Arc<AtomicUsize>,
    streams: Mutex<Streams<T>>,
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
        Records::with_waiting(capacity, WAITING_MAX, WAITING_BYTES)
    }
}

impl<T> Records<T> {
    /// [`Records::new`] with other bounds on waiting copies.
    fn with_waiting(capacity: usize, max: usize, max_bytes: usize) -> Records<T> {
        let start = (rand::random::<u64>() >> 2).max(1);
        Records {
            sequence: AtomicU64::new(start),
            checking: AtomicBool::new(false),
            waiting: Arc::new(AtomicUsize::new(0)),
            streams: Mutex::new(Streams {
                live: Vec::new(),
                orphaned: VecDeque::new(),
                checking_until: None,
                waiting: Waiting::new(max, max_bytes),
            }),
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
            waiting: self.waiting.clone(),
            routers: Vec::new(),
            last: 0,
            buffer: Vec::new(),
        }
    }

    /// The stream closed: its record (with what was buffered) is kept for
    /// [`REMEMBERED`] from `now`, and outcomes of its pending deliveries
    /// may still be written into it ([`StreamRecorder::settled`]).
    pub fn close_stream(&self, recorder: &mut StreamRecorder, now: Instant) {
        recorder.flush();
        let mut streams = lock(&self.streams);
        // Copies of what came through the lost neighbour may come another
        // way now (multicast copies along the new tree too, not marked
        // `resend`): every arrival is checked for a while, as after a
        // resend.
        self.checks(&mut streams, true, now);
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

    /// Copies waiting for an outcome (for tests and logs).
    pub fn waiting(&self) -> usize {
        lock(&self.streams).waiting.count
    }

    /// Starts (`resend`) or prolongs checking, ends it once over; true
    /// while it is on.
    fn checks(&self, streams: &mut Streams<T>, resend: bool, now: Instant) -> bool {
        streams.expire(now);
        if resend {
            streams.checking_until = Some(now + REMEMBERED);
        }
        let checking = streams.checking_until.is_some();
        self.checking.store(checking, Ordering::Relaxed);
        checking
    }

    /// What the router saw of `mesh` on any stream, live or lost. `resend`:
    /// the delivery is a re-forwarded one, which starts (or prolongs)
    /// checking every arrival. A lookup made because checking was on finds
    /// nothing once checking has ended. The caller's own buffered arrivals
    /// must be written first.
    pub fn lookup(&self, mesh: &MeshId, resend: bool, now: Instant) -> Seen {
        let mut streams = lock(&self.streams);
        if !self.checks(&mut streams, resend, now) {
            return Seen::No;
        }
        streams.find(mesh)
    }

    /// [`Records::lookup`] for an arriving delivery `item` with identity
    /// `mesh`, and what to do with it: a copy of a delivery still pending
    /// here is held until that delivery's outcome is known, within
    /// [`WAITING_MAX`] and [`WAITING_BYTES`] (past them it is answered
    /// `modified`, delivery-failed). `hold` makes the item to hold and
    /// says how many bytes it keeps.
    pub fn check(
        &self,
        mesh: &MeshId,
        resend: bool,
        now: Instant,
        item: T,
        hold: impl FnOnce(T) -> (T, usize),
    ) -> Checked<T> {
        // Counted before looking, so that a stream settling the pending
        // delivery meanwhile reports it to `wake` (it reads the count under
        // its lock, after this lookup has read its record, or before, and
        // then this lookup finds it settled).
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut streams = lock(&self.streams);
        let checked = if !self.checks(&mut streams, resend, now) {
            Checked::Deliver(item)
        } else {
            match streams.find(mesh) {
                Seen::No => Checked::Deliver(item),
                Seen::Settled(state) => Checked::Answer(item, state),
                Seen::Pending => {
                    let (item, bytes) = hold(item);
                    match streams.waiting.hold(mesh, item, bytes, now) {
                        Ok(()) => Checked::Held,
                        Err(item) => {
                            tracing::warn!(
                                waiting = streams.waiting.count,
                                bytes = streams.waiting.bytes,
                                "too many copies wait for outcomes: a copy of a pending delivery is answered modified"
                            );
                            Checked::Answer(item, DeliveryState::delivery_failed())
                        }
                    }
                }
            }
        };
        if !matches!(checked, Checked::Held) {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        checked
    }

    /// These deliveries were settled (from [`StreamRecorder::settled`]):
    /// the copies waiting for them, and those whose wait is over at `now`.
    pub fn wake(&self, settled: Vec<(MeshId, DeliveryState)>, now: Instant) -> Vec<Woken<T>> {
        let mut streams = lock(&self.streams);
        let mut woken = Vec::new();
        for (mesh, state) in settled {
            match Recorded::from(&state) {
                Recorded::Released => woken.extend(
                    streams
                        .waiting
                        .take(&mesh, false)
                        .into_iter()
                        .map(Woken::Deliver),
                ),
                _ => woken.extend(
                    streams
                        .waiting
                        .take(&mesh, true)
                        .into_iter()
                        .map(|item| Woken::Answer(item, state.clone())),
                ),
            }
        }
        self.waking(&mut streams, woken, now)
    }

    /// The copies whose wait is over at `now`: answered `modified`
    /// (delivery-failed), since the consumer may still process the
    /// delivery they duplicate.
    pub fn expired(&self, now: Instant) -> Vec<Woken<T>> {
        let mut streams = lock(&self.streams);
        self.waking(&mut streams, Vec::new(), now)
    }

    fn waking(
        &self,
        streams: &mut Streams<T>,
        mut woken: Vec<Woken<T>>,
        now: Instant,
    ) -> Vec<Woken<T>> {
        woken.extend(
            streams
                .waiting
                .expired(now)
                .into_iter()
                .map(|item| Woken::Answer(item, DeliveryState::delivery_failed())),
        );
        self.waiting.fetch_sub(woken.len(), Ordering::SeqCst);
        woken
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

    /// A record whose waiting copies are numbers (`bytes` each).
    fn waiting_record(max: usize, max_bytes: usize) -> Records<u64> {
        Records::with_waiting(16, max, max_bytes)
    }

    /// Checks copy `item` of (router, sequence), a resend, at `now`.
    fn check(records: &Records<u64>, sequence: u64, item: u64, now: Instant) -> Checked<u64> {
        records.check(&id("A", sequence), true, now, item, |item| (item, 10))
    }

    #[test]
    fn a_copy_of_a_pending_delivery_waits_for_its_outcome_and_gets_it() {
        let records = waiting_record(8, 1000);
        let now = Instant::now();
        let mut stream = records.open_stream();
        arrive(&mut stream, 0, "A", 1);
        arrive(&mut stream, 1, "A", 2);
        // Nothing waits: settling reports nothing (the normal path).
        assert!(stream.settled([(1, &DeliveryState::Accepted)]).is_empty());

        assert_eq!(check(&records, 1, 100, now), Checked::Held);
        assert_eq!(check(&records, 1, 101, now), Checked::Held);
        assert_eq!(
            check(&records, 2, 102, now),
            Checked::Answer(102, DeliveryState::Accepted)
        );
        assert_eq!(check(&records, 3, 103, now), Checked::Deliver(103));
        assert_eq!(records.waiting(), 2);

        // The consumer accepts the original: both copies get its outcome.
        let settled = stream.settled([(0, &DeliveryState::Accepted)]);
        assert_eq!(settled, vec![(id("A", 1), DeliveryState::Accepted)]);
        assert_eq!(
            records.wake(settled, now),
            vec![
                Woken::Answer(100, DeliveryState::Accepted),
                Woken::Answer(101, DeliveryState::Accepted)
            ]
        );
        assert_eq!(records.waiting(), 0);
        assert_eq!(records.waiting.load(Ordering::SeqCst), 0);
        // Copies arriving later find the outcome in the ring.
        assert_eq!(
            check(&records, 1, 104, now),
            Checked::Answer(104, DeliveryState::Accepted)
        );
    }

    #[test]
    fn a_released_original_lets_one_copy_be_delivered_and_the_others_wait_for_that_one() {
        let records = waiting_record(8, 1000);
        let now = Instant::now();
        let mut lost = records.open_stream();
        arrive(&mut lost, 0, "A", 1);
        records.close_stream(&mut lost, now);
        let mut via_c = records.open_stream();
        let mut via_e = records.open_stream();
        // Two copies arrive on two streams and wait (each recorded as
        // arrived on its stream, as the data plane does).
        assert_eq!(check(&records, 1, 10, now), Checked::Held);
        arrive(&mut via_c, 10, "A", 1);
        assert_eq!(check(&records, 1, 20, now), Checked::Held);
        arrive(&mut via_e, 20, "A", 1);

        // Nobody processed the original: the oldest copy is delivered.
        let settled = lost.settled([(0, &DeliveryState::Released)]);
        assert_eq!(records.wake(settled, now), vec![Woken::Deliver(10)]);
        assert_eq!(records.waiting(), 1);
        // That one is accepted: the other copy is answered so.
        let settled = via_c.settled([(10, &DeliveryState::Accepted)]);
        assert_eq!(
            records.wake(settled, now),
            vec![Woken::Answer(20, DeliveryState::Accepted)]
        );
        assert_eq!(records.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_copy_waits_at_most_outcome_wait_then_is_answered_modified() {
        let records = waiting_record(8, 1000);
        let t0 = Instant::now();
        let mut stream = records.open_stream();
        arrive(&mut stream, 0, "A", 1);
        arrive(&mut stream, 1, "A", 2);
        assert_eq!(check(&records, 1, 100, t0), Checked::Held);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(check(&records, 2, 200, t1), Checked::Held);

        assert!(
            records
                .expired(t0 + OUTCOME_WAIT - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(
            records.expired(t0 + OUTCOME_WAIT),
            vec![Woken::Answer(100, DeliveryState::delivery_failed())]
        );
        // Woken before its time: nothing left to expire for it.
        let settled = stream.settled([(1, &DeliveryState::Accepted)]);
        assert_eq!(
            records.wake(settled, t1),
            vec![Woken::Answer(200, DeliveryState::Accepted)]
        );
        assert!(records.expired(t1 + OUTCOME_WAIT).is_empty());
        assert_eq!(records.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn copies_wait_within_a_count_and_a_byte_bound_and_past_them_are_answered_modified() {
        let now = Instant::now();
        for (max, max_bytes) in [(2, 1000), (8, 25)] {
            let records = waiting_record(max, max_bytes);
            let mut stream = records.open_stream();
            arrive(&mut stream, 0, "A", 1);
            assert_eq!(check(&records, 1, 100, now), Checked::Held);
            assert_eq!(check(&records, 1, 101, now), Checked::Held);
            assert_eq!(
                check(&records, 1, 102, now),
                Checked::Answer(102, DeliveryState::delivery_failed()),
                "bounds {max} copies, {max_bytes} bytes"
            );
            assert_eq!(records.waiting(), 2);
            assert_eq!(records.waiting.load(Ordering::SeqCst), 2);
        }
    }
}
