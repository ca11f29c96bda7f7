//! The inter-router data plane of one neighbour: deliveries the router sends
//! to it as transfer frames (kept until the neighbour's disposition comes
//! back), deliveries that arrive from it (routed like local ones, with their
//! outcome sent back as a disposition frame), and large messages crossing
//! frame by frame.
//!
//! Outbound queue: deliveries for the neighbour wait in per-priority queues
//! ([`PriorityQueues`]) until the peer actor has room on the stream
//! ([`PeerData::take_transfers`]); higher priorities overtake lower ones
//! there without starving them, and a message streaming out takes turns of
//! at most [`STREAM_TURN_BYTES`] with the others. An arriving message in
//! several parts is routed on its first part, the rest following through
//! its [`Stream`]: no router holds it whole.
//!
//! Failover: when the neighbour is lost, each delivery sent to it and not
//! settled is re-forwarded on another path if it can be (unsettled, not
//! still streaming out): marked `resend` and handed back to its address
//! ([`super::DataPlane::reroute`]), which avoids the lost neighbour (a
//! unicast one until it is back as the instance it was lost as: each
//! names that instance, `Detours::resent_instance`); a
//! multicast copy goes for the routers that were behind the neighbour
//! ([`Reach::Toward`], `Transfer.destinations`), and an arriving one is
//! checked only for the part this router delivers itself (see
//! `PeerData::check_own_part`). The rest go back to their senders `modified`
//! (delivery-failed). Deliveries still queued for the neighbour were never
//! sent: they go back to their address marked so ([`PeerData::refuse`]),
//! and may go to that neighbour again once it is back as the same
//! instance (`router::address::back_as_before`). A line at info
//! sums it up: `lost Router.B: N
//! in-flight deliveries re-forwarded, M returned modified`. Since the lost
//! neighbour may have passed a delivery on before it went, each unsettled
//! delivery carries its identity in the mesh (ingress router + the
//! `ingress_sequence` this module assigns when it first leaves its ingress
//! router), every arriving one is recorded, and resent ones are checked
//! before being delivered ([`super::dedup`]): a duplicate is never
//! delivered again; it is answered with the outcome the original had here,
//! waiting for it while the original is still pending. Outcomes of
//! deliveries that came from a lost neighbour are still recorded when they
//! come (the peer actor stays for them, see [`super::peer`]).
//!
//! Credit is hop by hop, settlement end to end. Every delivery is
//! acknowledged as it moves on, so a sender's credit comes back when its
//! delivery has left the router it came into, not when it is settled: a
//! consumer that stops granting credit holds back its own address's
//! senders without queueing without bound on the routers in between, and
//! other addresses on the same stream keep flowing. One mechanism for
//! presettled and unsettled deliveries alike: a window per address and
//! neighbour ([`HOP_WINDOW`] deliveries and [`HOP_WINDOW_BYTES`] of
//! message). The router gives credit back to where a delivery came from
//! (the ingress connection, or the previous router) as soon as it is on
//! this stream, while that address's deliveries it credited so and the
//! neighbour has not acknowledged fill less than the window; past that,
//! the credit waits for the neighbour's acknowledgement. The neighbour
//! acknowledges a delivery when it moves on there (a disposition with no
//! outcome; unsettled: `settled = false`, sent only to a router whose hello
//! said it reads it, `Hello.accepts_credit_acks`) or with its outcome. A
//! presettled delivery's credit is all it has to say; an unsettled one's
//! outcome follows later, through every hop. A stuck consumer thus holds at
//! most a window per hop of its address (and its link's window at the
//! egress, `router::connection`), and a sender's credit does not wait for a
//! round trip through the whole mesh. Multicast copies and messages still
//! streaming when they are sent keep end-to-end credit (with the outcome or
//! the neighbour's acknowledgement).
//!
//! Resend released: a delivery the neighbour gives back `released` (no
//! consumer beyond it took it) is routed again on this router like one
//! that arrived, never through that neighbour again
//! ([`Detours::released_by`]); with nowhere else to go it goes back
//! released. Unsettled unicast deliveries only (they keep their message).
//!
//! The trace of visited routers and a hop limit travel with each transfer; a
//! router never forwards a delivery to a router on its trace.
//!
//! Per-transfer cost: addresses, router ids and traces cross as `bytes`
//! fields, so an arriving transfer's strings are slices of the received
//! batch; [`Names`] maps them to the router's shared `Arc<str>`/[`VisitedRouters`]
//! values (a cache hit allocates nothing), and sending reuses the wire form
//! of the last address and trace. Arriving deliveries are routed once per
//! batch ([`PeerData::route_arrived`]), one message per run of deliveries to
//! the same address, and the outcomes of departed deliveries go home in one
//! message per ingress connection ([`OutcomeBatch`]). On the wire, a
//! transfer on the same route as the previous one on the stream says only
//! `same_route`, and a run of deliveries settled alike goes back as one
//! ranged disposition; both only to a neighbour whose hello said it reads
//! them ([`PeerData::neighbour_reads`]), so a router that predates them
//! still gets the full forms.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bote_proto::v1 as pb;
use bote_topology::RouterId;
use bytes::Bytes;

use super::DataHook;
use super::dedup::{Checked, MeshId, Records, StreamRecorder, Woken};
use super::wire::{
    Route, continuation, credit_acks, disposition, dispositions, outcome_from_wire, transfer_frame,
};
use crate::delivery::{
    ConnId, Detours, Fanout, MessageTrace, Origin, OutcomeBatch, PriorityQueues, Reach, Returned,
    RoutedDelivery, SeqMap, SeqRing, Stream, VisitedRouters,
};
use bote_amqp::DeliveryState;

/// Deliveries of one address a router may have given credit back for (to
/// where they came from) while the neighbour it sent them to has not
/// acknowledged them yet, presettled and unsettled alike. It must cover
/// what one hop carries during its round trip under load (its
/// bandwidth-delay product, BENCHMARKS.md), or the window and not the
/// routers bounds throughput; 250 (qdrouterd's link capacity) did. What it
/// costs: a consumer that stops taking messages holds up to this many of
/// its address on each hop before its senders are held back.
pub const HOP_WINDOW: u32 = 1000;

/// Credit acknowledgements wait for other frames to go with (or for their
/// deliveries' outcomes) until this many are waiting.
const CREDIT_ACKS_BATCHED: usize = 256;

/// The same window in message bytes, so large messages are held back
/// sooner: no more is credited early once this much is.
pub const HOP_WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// One address's deliveries out on this stream and not yet acknowledged by
/// the neighbour: its window.
#[derive(Default)]
struct AddressWindow {
    /// Those credited upstream already, and their message bytes.
    early: u32,
    early_bytes: usize,
    /// Those whose credit waits for room: (id in `PeerData::sent`, message
    /// bytes), oldest first (ids only grow, so it is sorted by id).
    waiting: std::collections::VecDeque<(u64, usize)>,
}

impl AddressWindow {
    /// Room to credit one more early.
    fn has_room(&self) -> bool {
        self.early < HOP_WINDOW && self.early_bytes < HOP_WINDOW_BYTES
    }

    fn waits(&self, id: u64) -> Result<usize, usize> {
        self.waiting.binary_search_by_key(&id, |(w, _)| *w)
    }
}

/// Deliveries the router sends to this neighbour.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerDeliver(pub Vec<RoutedDelivery>);

/// What waits in the outbound queue for room on the stream. (Nearly every
/// entry is a `Deliver`: boxing it would cost an allocation per delivery.)
#[allow(clippy::large_enum_variant)]
enum Outbound {
    /// A delivery routed to the neighbour, not on the stream yet.
    Deliver(RoutedDelivery),
    /// The streaming delivery with this id has more to send.
    More(u64),
}

/// A delivery on the stream whose body is still streaming in.
struct StreamOut {
    stream: Arc<Stream>,
    /// This reader's slot in the stream ([`Stream::open`]).
    slot: usize,
    /// Chunks sent so far.
    sent: usize,
    priority: u8,
    /// An [`Outbound::More`] for it is queued.
    queued: bool,
}

/// At most this many transfer frames are reserved ahead when the outbound
/// queue is taken.
const TRANSFERS_RESERVED: usize = 1024;

/// At most about this many bytes of one streaming message go out per turn
/// in the outbound queue: a large message takes turns with the others.
pub const STREAM_TURN_BYTES: usize = 256 * 1024;

/// Where an arriving message goes, resolved once per route: a run of
/// transfers on one route (`Transfer.same_route`) shares it.
#[derive(Clone)]
struct ArrivingRoute {
    /// The address and trace, or why the message cannot be routed.
    resolved: Result<(Arc<str>, VisitedRouters), Unroutable>,
    hops_left: u32,
}

/// Why an arriving message is not routed (logged once per message).
#[derive(Clone)]
struct Unroutable {
    /// The address as received (lossy), for the log.
    address: Arc<str>,
    looped: bool,
}

/// The route of the last message sent on the stream, which the next one may
/// share (`Transfer.same_route`).
struct DepartingRoute {
    address: Arc<str>,
    trace: VisitedRouters,
    hops_left: u32,
}

/// At most this many distinct addresses are remembered in each direction;
/// past it the cache starts again (it only saves allocations).
const NAMES_CACHED: usize = 4096;

/// The wire form of names (addresses, router ids, traces) and the router's
/// shared values for them, both ways, so the steady state of a stream
/// allocates no strings per transfer.
#[derive(Default)]
struct Names {
    /// Arriving address bytes -> the router's address.
    addresses_in: std::collections::HashMap<Bytes, Arc<str>>,
    /// The last arriving trace and its shared value.
    trace_in: Option<(Vec<Bytes>, VisitedRouters)>,
    /// Address -> its wire bytes.
    addresses_out: std::collections::HashMap<Arc<str>, Bytes>,
    /// The last departing trace (before this router is added) and its wire
    /// form (with this router).
    trace_out: Option<(VisitedRouters, Vec<Bytes>)>,
}

impl Names {
    /// The router's address for arriving bytes; `None` if not UTF-8.
    fn address_in(&mut self, wire: &Bytes) -> Option<Arc<str>> {
        if let Some(a) = self.addresses_in.get(wire) {
            return Some(a.clone());
        }
        let a: Arc<str> = Arc::from(std::str::from_utf8(wire).ok()?);
        if self.addresses_in.len() >= NAMES_CACHED {
            self.addresses_in.clear();
        }
        self.addresses_in.insert(wire.clone(), a.clone());
        Some(a)
    }

    /// The shared trace for arriving router ids; `None` if one is not UTF-8.
    fn trace_in(&mut self, wire: &[Bytes]) -> Option<VisitedRouters> {
        if let Some((last, trace)) = &self.trace_in
            && last == wire
        {
            return Some(trace.clone());
        }
        let mut routers = Vec::with_capacity(wire.len());
        for r in wire {
            routers.push(RouterId::from(std::str::from_utf8(r).ok()?));
        }
        let trace = VisitedRouters::from(routers);
        self.trace_in = Some((wire.to_vec(), trace.clone()));
        Some(trace)
    }

    fn address_out(&mut self, address: &Arc<str>) -> Bytes {
        if let Some(b) = self.addresses_out.get(address) {
            return b.clone();
        }
        let b = Bytes::copy_from_slice(address.as_bytes());
        if self.addresses_out.len() >= NAMES_CACHED {
            self.addresses_out.clear();
        }
        self.addresses_out.insert(address.clone(), b.clone());
        b
    }

    /// The router ids of a re-forwarded multicast copy's destinations
    /// (those not UTF-8 are left out: no router has such an id).
    fn routers_in(&self, wire: &[Bytes]) -> Arc<[RouterId]> {
        wire.iter()
            .filter_map(|r| std::str::from_utf8(r).ok())
            .map(RouterId::from)
            .collect()
    }

    /// `trace` plus `own`, in wire form.
    fn trace_out(&mut self, trace: &VisitedRouters, own: &RouterId) -> Vec<Bytes> {
        if let Some((last, wire)) = &self.trace_out
            && last.same(trace)
        {
            return wire.clone();
        }
        let wire: Vec<Bytes> = trace
            .iter()
            .chain(std::iter::once(own))
            .map(|r| Bytes::copy_from_slice(r.as_str().as_bytes()))
            .collect();
        self.trace_out = Some((trace.clone(), wire.clone()));
        wire
    }
}

/// The data-plane state of one inter-router stream.
pub struct PeerData {
    hook: DataHook,
    own: RouterId,
    /// The neighbour, once its hello named it.
    neighbour: Option<RouterId>,
    /// The neighbour's instance, as its first hello gave it: what it had
    /// unsettled when lost goes back to its address naming it, so that the
    /// address may send it through the neighbour again once it is back as
    /// the same instance (see `router::address`).
    neighbour_instance: Option<crate::delivery::NeighbourInstance>,
    conn: ConnId,
    returns_to: Option<Arc<Recipient<Returned>>>,
    next_id: u64,
    /// Sent, waiting for the neighbour's disposition (unsettled ones, and
    /// presettled ones whose credit upstream waits for it).
    sent: SeqRing<RoutedDelivery>,
    /// Deliveries credited upstream already (in their address's window),
    /// waiting for the neighbour's acknowledgement: id -> (address, message
    /// bytes). Unsettled ones are in `sent` too, for their outcome.
    credited: SeqRing<(Arc<str>, usize)>,
    /// The windows of the addresses with deliveries out on this stream
    /// (looked up for every delivery sent and acknowledged: foldhash, seeded
    /// per process, not SipHash).
    windows: std::collections::HashMap<Arc<str>, AddressWindow, foldhash::fast::RandomState>,
    /// The neighbour reads credit acknowledgements of unsettled deliveries
    /// (`Hello.accepts_credit_acks`); to one that does not, an unsettled
    /// delivery is acknowledged only by its outcome.
    credit_acks_out: bool,
    /// Arrived deliveries that moved on here, whose acknowledgement waits
    /// to go with other frames ([`PeerData::take_credit_acks`]).
    credit_acks: Vec<u64>,
    /// Deliveries routed to the neighbour and waiting for room on the
    /// stream, and streaming ones with more to send: per priority, the
    /// higher first without starving the lower ([`PriorityQueues`]).
    queued: PriorityQueues<Outbound>,
    /// Sent deliveries whose body is still streaming in, by id.
    streams_out: SeqMap<StreamOut>,
    /// Arriving deliveries routed on their first part whose later parts
    /// are still to come, by the neighbour's id (`None`: their first part
    /// was not routed, the rest is dropped).
    streams_in: SeqMap<Option<Arc<Stream>>>,
    names: Names,
    /// The route of the last message that arrived, and of the last one sent.
    route_in: Option<ArrivingRoute>,
    route_out: Option<DepartingRoute>,
    /// The neighbour reads `Transfer.same_route` and disposition ranges (its
    /// hello said so); until then, and for a neighbour that predates them,
    /// every transfer carries its route and every delivery its own
    /// disposition.
    same_route_out: bool,
    ranges_out: bool,
    /// Arrived and complete, to be routed at the end of the batch.
    arrived: Vec<RoutedDelivery>,
    /// Outcomes of deliveries the neighbour settled, to be sent home at the
    /// end of the batch.
    outcomes: OutcomeBatch,
    /// The router-wide record of arrived deliveries (duplicate suppression)
    /// and its sequence numbers.
    records: Arc<Records>,
    /// This stream's part of it (arrivals are written at the end of each
    /// batch).
    record: StreamRecorder,
    /// Sequence numbers this stream may give deliveries entering the mesh.
    sequences: std::ops::Range<u64>,
    /// A copy arriving on this stream started waiting since the last
    /// [`PeerData::take_waits_started`].
    waits_started: bool,
}

impl PeerData {
    pub fn new(hook: DataHook, own: RouterId, conn: u64, records: Arc<Records>) -> PeerData {
        let record = records.open_stream();
        PeerData {
            hook,
            own,
            neighbour: None,
            neighbour_instance: None,
            // Keep peer streams apart from AMQP connections in outcome batches.
            conn: ConnId(u64::MAX - conn),
            returns_to: None,
            next_id: 0,
            sent: SeqRing::default(),
            credited: SeqRing::default(),
            windows: Default::default(),
            credit_acks_out: false,
            credit_acks: Vec::new(),
            queued: PriorityQueues::default(),
            streams_out: SeqMap::default(),
            streams_in: SeqMap::default(),
            names: Names::default(),
            route_in: None,
            route_out: None,
            same_route_out: false,
            ranges_out: false,
            arrived: Vec::new(),
            outcomes: OutcomeBatch::default(),
            records,
            record,
            sequences: 0..0,
            waits_started: false,
        }
    }

    /// A new identity for an unsettled unicast delivery entering the mesh.
    fn next_sequence(&mut self) -> u64 {
        match self.sequences.next() {
            Some(n) => n,
            None => {
                self.sequences = self.records.sequences();
                self.sequences.next().unwrap_or(1)
            }
        }
    }

    /// What the neighbour's first hello said it reads: `Transfer.same_route`,
    /// `Disposition.last_delivery_id` and credit acknowledgements.
    pub fn neighbour_reads(
        &mut self,
        same_route: bool,
        disposition_ranges: bool,
        credit_acks: bool,
    ) {
        self.same_route_out = same_route;
        self.ranges_out = disposition_ranges;
        self.credit_acks_out = credit_acks;
    }

    /// The neighbour's hello named it, booted as `instance` (on this
    /// stream).
    pub fn identified(
        &mut self,
        neighbour: RouterId,
        instance: crate::delivery::NeighbourInstance,
    ) {
        self.neighbour = Some(neighbour);
        self.neighbour_instance = Some(instance);
    }

    /// The neighbour reads both compact data forms.
    pub fn reads_compact(&self) -> bool {
        self.same_route_out && self.ranges_out
    }

    /// The actor's own address, for outcomes and stream progress.
    pub fn started(&mut self, returns_to: Recipient<Returned>) {
        self.returns_to = Some(Arc::new(returns_to));
    }

    /// Deliveries the router forwards to this neighbour: they wait in the
    /// outbound queue until [`PeerData::take_transfers`] puts them on the
    /// stream (their credit goes upstream only then).
    pub fn enqueue(&mut self, deliveries: Vec<RoutedDelivery>) {
        for d in deliveries {
            self.queued.push(d.priority, Outbound::Deliver(d));
        }
    }

    /// Something waits in the outbound queue.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Enqueues `deliveries` and takes the frames for everything queued, as
    /// when the stream has room for all (tests and benches).
    pub fn send(
        &mut self,
        deliveries: Vec<RoutedDelivery>,
        progress: impl Fn(u64) -> Recipient<crate::delivery::StreamProgress>,
    ) -> Vec<pb::Frame> {
        self.enqueue(deliveries);
        self.take_transfers(usize::MAX, progress)
    }

    /// Frames for about `max_bytes` of what waits in the outbound queue,
    /// taken by priority (higher first, the lower not starved): first
    /// parts of deliveries, and turns of at most [`STREAM_TURN_BYTES`] of
    /// messages streaming out.
    pub fn take_transfers(
        &mut self,
        max_bytes: usize,
        progress: impl Fn(u64) -> Recipient<crate::delivery::StreamProgress>,
    ) -> Vec<pb::Frame> {
        // Room for a frame per queued delivery (more for streamed parts).
        let mut frames = Vec::with_capacity(self.queued.len().min(TRANSFERS_RESERVED));
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some((_, item, _)) = self.queued.pop() else {
                break;
            };
            bytes += match item {
                Outbound::Deliver(d) => self.send_one(d, &progress, &mut frames),
                Outbound::More(id) => self.more_of(id, &mut frames),
            };
        }
        self.outcomes.send();
        frames
    }

    /// The frames of one delivery going on the stream; returns their bytes.
    fn send_one(
        &mut self,
        mut d: RoutedDelivery,
        progress: &impl Fn(u64) -> Recipient<crate::delivery::StreamProgress>,
        frames: &mut Vec<pb::Frame>,
    ) -> usize {
        let resendable = re_forwardable(&d);
        if d.ingress_sequence == 0 && unsettled_unicast(&d) {
            d.ingress_sequence = self.next_sequence();
        }
        let id = self.next_id;
        self.next_id += 1;
        let (slot, chunks, complete, rest) = match &d.stream {
            Some(s) => {
                let (slot, r) = s.open((progress(id), dummy_link(), id), STREAM_TURN_BYTES);
                if r.aborted {
                    return 0;
                }
                (slot, r.chunks, r.complete, r.rest)
            }
            None => (0, Vec::new(), true, false),
        };
        let last = chunks.len();
        // Only now that the transfer goes out may it become the route
        // the next one shares.
        let route = self.route_of(&d, d.hops_left.saturating_sub(1));
        // Only a delivery that may be re-forwarded (see `lost`) keeps
        // its message; the others' goes with the frame.
        let message = if resendable {
            d.message.clone()
        } else {
            std::mem::take(&mut d.message)
        };
        let size = message.len();
        let bytes = 64 + size + chunks.iter().map(Bytes::len).sum::<usize>();
        // One send span per inter-router hop; its context rides in the
        // transfer frame.
        let context = match (&mut d.trace, &self.neighbour) {
            (Some(t), Some(n)) => {
                Some(t.send_to_neighbour(&d.address, n.as_arc(), d.visited.len()))
            }
            _ => None,
        };
        frames.push(transfer_frame(
            id,
            &d,
            message,
            route,
            !(complete && last == 0),
            context,
        ));
        for (i, chunk) in chunks.into_iter().enumerate() {
            let more = !(complete && i + 1 == last);
            frames.push(continuation(id, chunk, more, false));
        }
        if !complete && let Some(s) = &d.stream {
            self.streams_out.insert(
                id,
                StreamOut {
                    stream: s.clone(),
                    slot,
                    sent: last,
                    priority: d.priority,
                    queued: rest,
                },
            );
            if rest {
                self.queued.push(d.priority, Outbound::More(id));
            }
        }
        if d.fanout.is_none() && complete {
            // Credit hop by hop, within the address's window (module
            // doc).
            let window = self.windows.entry(d.address.clone()).or_default();
            if window.waiting.is_empty() && window.has_room() {
                window.early += 1;
                window.early_bytes += size;
                self.credited.insert(id, (d.address.clone(), size));
                self.outcomes.credit(&mut d);
                if d.presettled {
                    // Its credit was all it had to say upstream.
                    return bytes;
                }
            } else {
                window.waiting.push_back((id, size));
            }
        }
        // Unsettled deliveries wait for their outcome; multicast copies
        // and streamed messages keep their credit until the neighbour's
        // acknowledgement or outcome (end to end).
        self.sent.insert(id, d);
        bytes
    }

    /// The route fields of a departing transfer: empty with `same_route`
    /// when the neighbour reads that and the previous message on the stream
    /// took the same route.
    fn route_of(&mut self, d: &RoutedDelivery, hops_left: u32) -> Route {
        if self.same_route_out {
            if let Some(last) = &self.route_out
                && last.hops_left == hops_left
                && last.trace.same(&d.visited)
                && (Arc::ptr_eq(&last.address, &d.address) || last.address == d.address)
            {
                return Route::Same;
            }
            self.route_out = Some(DepartingRoute {
                address: d.address.clone(),
                trace: d.visited.clone(),
                hops_left,
            });
        }
        Route::Full {
            address: self.names.address_out(&d.address),
            trace: self.names.trace_out(&d.visited, &self.own),
            hops_left,
        }
    }

    /// The neighbour acknowledged delivery `id` (it moved on there, or it
    /// settled it): out of its address's window. Credited early, it makes
    /// room; waiting for room, its credit goes upstream now, with the
    /// neighbour's (or, when `settled`, with its outcome, which the caller
    /// sends). Room goes to the oldest waiting ones.
    fn acknowledged(&mut self, id: u64, settled: bool) {
        // One lookup of the address's window serves the whole of it.
        let (address, window) = if let Some((address, size)) = self.credited.remove(&id) {
            let Some(window) = self.windows.get_mut(&address) else {
                return;
            };
            window.early = window.early.saturating_sub(1);
            window.early_bytes = window.early_bytes.saturating_sub(size);
            (address, window)
        } else if let Some(d) = self.sent.get_mut(&id) {
            let Some(window) = self.windows.get_mut(&d.address) else {
                return;
            };
            // Not one the window held (a multicast copy or a streamed
            // message, or one acknowledged already): nothing changes.
            let Ok(pos) = window.waits(id) else {
                return;
            };
            window.waiting.remove(pos);
            if !settled {
                self.outcomes.credit(d);
            }
            (d.address.clone(), window)
        } else {
            return;
        };
        while window.has_room()
            && let Some((next, size)) = window.waiting.pop_front()
        {
            let Some(d) = self.sent.get_mut(&next) else {
                continue;
            };
            window.early += 1;
            window.early_bytes += size;
            self.credited.insert(next, (address.clone(), size));
            self.outcomes.credit(d);
            if d.presettled {
                // Its credit was all it had to say upstream.
                self.sent.remove(&next);
            }
        }
        if window.early == 0 && window.waiting.is_empty() {
            self.windows.remove(&address);
        }
    }

    /// More of a delivery streaming out arrived (or it ended): it takes a
    /// turn in the outbound queue.
    pub fn stream_progress(&mut self, id: u64) {
        if let Some(out) = self.streams_out.get_mut(&id)
            && !std::mem::replace(&mut out.queued, true)
        {
            self.queued.push(out.priority, Outbound::More(id));
        }
    }

    /// One turn of a delivery streaming out: the chunks there are (up to
    /// [`STREAM_TURN_BYTES`]); it queues again if more are there already.
    fn more_of(&mut self, id: u64, frames: &mut Vec<pb::Frame>) -> usize {
        let Some(out) = self.streams_out.get_mut(&id) else {
            return 0;
        };
        out.queued = false;
        let r = out.stream.read(out.slot, out.sent, STREAM_TURN_BYTES);
        out.sent += r.chunks.len();
        let last = r.chunks.len();
        let bytes: usize = r.chunks.iter().map(Bytes::len).sum();
        for (i, c) in r.chunks.into_iter().enumerate() {
            frames.push(continuation(id, c, !(r.complete && i + 1 == last), false));
        }
        if r.complete && last == 0 {
            frames.push(continuation(id, Bytes::new(), false, false));
        }
        if r.aborted {
            frames.push(continuation(id, Bytes::new(), false, true));
            if let Some(d) = self.sent.remove(&id) {
                settled_remotely(&d);
            }
        }
        if r.complete || r.aborted {
            self.streams_out.remove(&id);
        } else if r.rest {
            out.queued = true;
            self.queued.push(out.priority, Outbound::More(id));
        }
        bytes + 64
    }

    /// A data frame from the neighbour; returns frames to send back.
    /// Deliveries and outcomes it produces wait for [`PeerData::route_arrived`]
    /// at the end of the batch.
    pub fn inbound(&mut self, kind: pb::frame::Kind) -> Vec<pb::Frame> {
        match kind {
            pb::frame::Kind::Transfer(t) => self.on_transfer(t),
            pb::frame::Kind::Disposition(d) => {
                let state = d.outcome.map(outcome_from_wire);
                // Unsettled with no outcome: the delivery moved on there
                // (credit only); its outcome comes later.
                let settled = d.settled || state.is_some();
                let first = d.delivery_id;
                let last = d.last_delivery_id.max(first);
                let held = (self.sent.len() + self.credited.len()) as u64;
                if last - first < held {
                    for id in first..=last {
                        self.by_neighbour(id, &state, settled);
                    }
                } else {
                    // A range wider than what is outstanding: visit only
                    // what is held (a huge range costs nothing).
                    let mut ids: Vec<u64> = (self.sent.ids().chain(self.credited.ids()))
                        .filter(|id| (first..=last).contains(id))
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    for id in ids {
                        self.by_neighbour(id, &state, settled);
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The neighbour's disposition for delivery `id`: an acknowledgement
    /// (it moved on there) and, when `settled`, its outcome.
    fn by_neighbour(&mut self, id: u64, state: &Option<DeliveryState>, settled: bool) {
        self.acknowledged(id, settled);
        if !settled {
            return;
        }
        if let Some(mut delivery) = self.sent.remove(&id) {
            let streaming = self.streams_out.remove(&id).is_some()
                || delivery.stream.as_ref().is_some_and(|s| !s.whole());
            settled_remotely(&delivery);
            if let (Some(DeliveryState::Released), Some(neighbour)) = (state, &self.neighbour)
                && unsettled_unicast(&delivery)
                && !streaming
            {
                // Resend released: nobody beyond the neighbour took it, so
                // it is routed again here, never through that neighbour.
                delivery.remote_outstanding = None;
                delivery.detours.add_released_by(neighbour.clone());
                self.arrived.push(delivery);
                return;
            }
            self.outcomes.push(delivery, state.clone());
        }
    }

    /// Routes what arrived in the batch just read (one message per run of
    /// deliveries to the same address) and sends the outcomes it settled
    /// home (one message per ingress connection).
    pub fn route_arrived(&mut self) {
        self.record.flush();
        self.outcomes.send();
        if self.arrived.is_empty() {
            return;
        }
        // The next batch likely brings as many: room for them now, so the
        // list is not grown (and its deliveries moved) step by step.
        let room = self.arrived.len();
        let arrived = std::mem::replace(&mut self.arrived, Vec::with_capacity(room));
        self.to_router(arrived, Routing::Forward, DeliveryState::Released);
    }

    /// Hands deliveries to the router to be routed (or rerouted around a
    /// lost neighbour); before the router is up, back to their senders with
    /// `otherwise`.
    fn to_router(&self, deliveries: Vec<RoutedDelivery>, how: Routing, otherwise: DeliveryState) {
        if deliveries.is_empty() {
            return;
        }
        match (self.hook.get(), how) {
            (Some(data), Routing::Forward) => data.route(deliveries),
            (Some(data), Routing::Around) => data.reroute(deliveries),
            (None, _) => {
                for d in deliveries {
                    d.return_to_sender(Some(otherwise.clone()));
                }
            }
        }
    }

    fn on_transfer(&mut self, t: pb::Transfer) -> Vec<pb::Frame> {
        let id = t.delivery_id;
        if let Some(stream) = self.streams_in.get(&id) {
            // A later part of a message routed on its first: it goes on
            // as it comes, through the message's stream.
            if let Some(stream) = stream {
                if t.aborted {
                    stream.abort();
                } else {
                    stream.push(t.message, !t.more);
                }
            }
            if t.aborted || !t.more {
                self.streams_in.remove(&id);
            }
            return Vec::new();
        }
        if t.aborted {
            return Vec::new();
        }
        let route = self.arriving_route(&t);
        // A message in several parts is routed on its first, with a stream
        // the rest goes into: the router never holds it whole.
        let stream = t.more.then(|| Arc::new(Stream::default()));
        let priority = crate::delivery::priority::clamp(t.priority);
        let (trace_context, settled, ingress_sequence, resend, destinations, message) = (
            t.trace_context,
            t.settled,
            t.ingress_sequence,
            t.resend,
            t.destinations,
            t.message,
        );
        if t.more {
            self.streams_in
                .insert(id, stream.clone().filter(|_| route.resolved.is_ok()));
        }
        let hops_left = route.hops_left;
        let (address, trace) = match route.resolved {
            Ok(resolved) => resolved,
            Err(why) => {
                tracing::warn!(
                    address = %why.address,
                    looped = why.looped,
                    hops_left,
                    "inter-router delivery dropped: a loop, no hops left, or an empty or non-UTF-8 address or router id"
                );
                // Answered either way: a presettled one is acknowledged (no
                // outcome) so the sender's credit comes back, as for any
                // presettled delivery dropped for want of a consumer.
                return vec![disposition(
                    id,
                    (!settled).then_some(DeliveryState::Released),
                )];
            }
        };
        let Some(returns_to) = self.returns_to.clone() else {
            return Vec::new();
        };
        let reach = if destinations.is_empty() {
            Reach::Tree
        } else {
            Reach::Toward(self.names.routers_in(&destinations))
        };
        // A multicast copy re-forwarded for routers this router is not:
        // it only passes through. What it is here says nothing of what
        // this router delivered, so it is neither checked nor recorded.
        let (mine, others) = match &reach {
            Reach::Toward(routers) => {
                let mine = routers.contains(&self.own);
                (mine, routers.len() - usize::from(mine))
            }
            Reach::Tree | Reach::Behind(_) => (true, 0),
        };
        let message_trace = match (&trace_context, &self.neighbour) {
            (Some(cx), Some(n)) if crate::delivery::trace::enabled() => {
                MessageTrace::from_neighbour(
                    &address,
                    Some((&cx.traceparent, &cx.tracestate)),
                    n.as_arc(),
                    trace.len(),
                    &message,
                )
            }
            _ => None,
        };
        let delivery = RoutedDelivery {
            address,
            message,
            presettled: settled,
            priority,
            origin: Origin {
                conn: returns_to,
                conn_id: self.conn,
                key: id,
            },
            fanout: None,
            detours: Detours::default(),
            stream,
            visited: trace,
            hops_left,
            remote_outstanding: None,
            ingress_sequence,
            resend,
            credited: false,
            reach,
            trace: message_trace,
            joined: None,
            outcome_sent: false,
        };
        // Unsettled deliveries (and multicast copies) have an identity in
        // the mesh.
        let identified = ingress_sequence != 0 && !settled;
        if !mine {
            self.arrived.push(delivery);
            return Vec::new();
        }
        match delivery.visited.first() {
            Some(ingress) if identified && others > 0 && (resend || self.records.checking()) => {
                let ingress = ingress.clone();
                self.check_own_part(&ingress, delivery);
                self.record.arrived(id, &ingress, ingress_sequence);
            }
            Some(ingress) if identified && (resend || self.records.checking()) => {
                let ingress = ingress.clone();
                match self.check(&ingress, delivery) {
                    Checked::Deliver(d) => self.arrived.push(d),
                    Checked::Answer(d, answer) => {
                        // Answered here: no outcome goes home for it.
                        d.consumed();
                        return vec![disposition(id, Some(answer))];
                    }
                    // It arrived all the same: its own outcome is recorded
                    // when it has one.
                    Checked::Held => self.waits_started = true,
                }
                self.record.arrived(id, &ingress, ingress_sequence);
            }
            Some(ingress) if identified => {
                self.record.arrived(id, ingress, ingress_sequence);
                self.arrived.push(delivery);
            }
            _ => self.arrived.push(delivery),
        }
        Vec::new()
    }

    /// The route of the first part of an arriving message: its own, or the
    /// previous one's (`same_route`).
    fn arriving_route(&mut self, t: &pb::Transfer) -> ArrivingRoute {
        if t.same_route {
            return self.route_in.clone().unwrap_or(ArrivingRoute {
                resolved: Err(Unroutable {
                    address: Arc::from("<same route as a previous message, but none arrived>"),
                    looped: false,
                }),
                hops_left: 0,
            });
        }
        let looped = t.trace.iter().any(|r| r == self.own.as_str().as_bytes());
        let resolved = self
            .names
            .address_in(&t.address)
            .filter(|a| !a.is_empty())
            .zip(self.names.trace_in(&t.trace))
            .filter(|_| !looped && t.hops_left > 0)
            .ok_or_else(|| Unroutable {
                address: Arc::from(String::from_utf8_lossy(&t.address)),
                looped,
            });
        let route = ArrivingRoute {
            resolved,
            hops_left: t.hops_left,
        };
        self.route_in = Some(route.clone());
        route
    }

    /// A re-forwarded delivery (or any while checking) is looked up first
    /// ([`Records::check`]): delivered if this router has not seen it,
    /// answered with the outcome it had here if it has been settled, held
    /// until that outcome is known if it is still pending here.
    fn check(&mut self, ingress: &RouterId, delivery: RoutedDelivery) -> Checked<RoutedDelivery> {
        self.record.flush();
        let mesh = MeshId {
            ingress: ingress.clone(),
            sequence: delivery.ingress_sequence,
        };
        let resend = delivery.resend;
        // A held copy keeps its message in its own buffer, not the whole
        // batch it arrived in.
        let checked = self
            .records
            .check(&mesh, resend, Instant::now(), delivery, |mut d| {
                d.message = Bytes::copy_from_slice(&d.message);
                let bytes = d.message.len();
                (d, bytes)
            });
        match &checked {
            Checked::Deliver(_) => {}
            Checked::Answer(_, answer) => tracing::debug!(
                ingress = %mesh.ingress,
                sequence = mesh.sequence,
                resend,
                ?answer,
                "duplicate delivery answered from the record, not delivered again"
            ),
            Checked::Held => tracing::debug!(
                ingress = %mesh.ingress,
                sequence = mesh.sequence,
                resend,
                "duplicate of a delivery pending here: it waits for that delivery's outcome"
            ),
        }
        checked
    }

    /// A multicast copy re-forwarded for this router and others: it goes
    /// on toward the others at once, while the part for this router's own
    /// consumers is checked like any re-forwarded delivery (delivered if
    /// this router has not had the message, else answered with the outcome
    /// it had here, waiting for it if need be). The two parts share the
    /// copy's one outcome.
    fn check_own_part(&mut self, ingress: &RouterId, mut delivery: RoutedDelivery) {
        let Reach::Toward(routers) = &delivery.reach else {
            self.arrived.push(delivery);
            return;
        };
        let others: Arc<[RouterId]> = routers
            .iter()
            .filter(|r| **r != self.own)
            .cloned()
            .collect();
        let fanout = Fanout::new(2, delivery.presettled);
        let own = RoutedDelivery {
            address: delivery.address.clone(),
            message: delivery.message.clone(),
            presettled: delivery.presettled,
            priority: delivery.priority,
            origin: delivery.origin.clone(),
            fanout: Some(fanout.clone()),
            detours: Detours::default(),
            stream: delivery.stream.clone().inspect(|s| s.add_readers(1)),
            visited: delivery.visited.clone(),
            hops_left: delivery.hops_left,
            remote_outstanding: None,
            ingress_sequence: delivery.ingress_sequence,
            resend: delivery.resend,
            // A multicast part: its credit comes back with its outcome.
            credited: false,
            reach: Reach::Toward(Arc::from([self.own.clone()])),
            trace: delivery.trace.as_ref().map(|t| t.copy()),
            joined: None,
            outcome_sent: false,
        };
        delivery.reach = Reach::Toward(others);
        delivery.fanout = Some(fanout);
        self.arrived.push(delivery);
        match self.check(ingress, own) {
            Checked::Deliver(d) => self.arrived.push(d),
            Checked::Answer(d, answer) => d.return_to_sender(Some(answer)),
            Checked::Held => self.waits_started = true,
        }
    }

    /// True once since a copy arriving on this stream started waiting for
    /// an outcome: it is answered `modified` at the latest
    /// [`super::dedup::OUTCOME_WAIT`] later, when [`PeerData::expire_waiting`]
    /// is called then.
    pub fn take_waits_started(&mut self) -> bool {
        std::mem::take(&mut self.waits_started)
    }

    /// Answers the copies, waiting anywhere in the router, whose wait is
    /// over.
    pub fn expire_waiting(&mut self) {
        let woken = self.records.expired(Instant::now());
        self.act_on(woken);
    }

    /// Waiting copies that can go on: each answered through its own stream
    /// with the outcome of the delivery it duplicates, or routed after all
    /// when that delivery came back released.
    fn act_on(&mut self, woken: Vec<Woken<RoutedDelivery>>) {
        let mut deliver = Vec::new();
        for w in woken {
            match w {
                Woken::Answer(d, answer) => {
                    tracing::debug!(
                        sequence = d.ingress_sequence,
                        ?answer,
                        "waiting duplicate answered with the outcome of the delivery it duplicates"
                    );
                    d.return_to_sender(Some(answer));
                }
                Woken::Deliver(d) => deliver.push(d),
            }
        }
        self.to_router(deliver, Routing::Forward, DeliveryState::Released);
    }

    /// Outcomes of deliveries that arrived from the neighbour. A presettled
    /// delivery's "outcome" is `None`: it was forwarded (or dropped for want
    /// of a consumer), which the neighbour needs to replenish its sender.
    /// While copies wait, those waiting for these outcomes go on.
    /// `moved`: unsettled deliveries that arrived from the neighbour and
    /// moved on here (credit only), acknowledged to a neighbour that reads
    /// it (see the module doc); their outcomes come later.
    pub fn returned(
        &mut self,
        outcomes: Vec<(u64, Option<DeliveryState>)>,
        moved: Vec<u64>,
    ) -> Vec<pb::Frame> {
        let settled = self.record.settled(
            outcomes
                .iter()
                .filter_map(|(id, state)| Some((*id, state.as_ref()?))),
        );
        if !settled.is_empty() {
            let woken = self.records.wake(settled, Instant::now());
            self.act_on(woken);
        }
        if self.credit_acks_out {
            self.credit_acks.extend(moved);
        }
        if !self.credit_acks.is_empty() && !outcomes.is_empty() {
            // An outcome acknowledges its delivery too.
            let settled: crate::delivery::FastSet<u64> =
                outcomes.iter().map(|(id, _)| *id).collect();
            self.credit_acks.retain(|id| !settled.contains(id));
        }
        let mut frames = Vec::new();
        if !outcomes.is_empty() || self.credit_acks.len() >= CREDIT_ACKS_BATCHED {
            frames = self.take_credit_acks();
        }
        frames.extend(dispositions(outcomes, self.ranges_out));
        frames
    }

    /// Credit acknowledgements wait: the caller sends them with its next
    /// frames or after a short while ([`PeerData::take_credit_acks`]).
    pub fn credit_acks_wait(&self) -> bool {
        !self.credit_acks.is_empty()
    }

    /// The waiting credit acknowledgements, as frames to send.
    pub fn take_credit_acks(&mut self) -> Vec<pb::Frame> {
        if self.credit_acks.is_empty() {
            return Vec::new();
        }
        credit_acks(std::mem::take(&mut self.credit_acks), self.ranges_out)
    }

    /// Deliveries that arrived from the neighbour and have no outcome yet
    /// (a consumer, here or further on, has them): after the neighbour is
    /// lost their outcomes are still recorded, for the copies that
    /// failover may bring.
    pub fn holds_arrivals(&self) -> bool {
        self.record.pending() > 0
    }

    /// Deliveries routed to this stream after the neighbour was lost (the
    /// router's view had not caught up yet). They were never sent: each
    /// goes back to its address, as one whose next hop was found closed
    /// (see `router::address`), to be routed around the lost neighbour; a
    /// multicast copy counts as released, a presettled one replenishes its
    /// sender's credit.
    pub fn refuse(&mut self, deliveries: Vec<RoutedDelivery>, peer: Option<&RouterId>) {
        let mut reroute = Vec::new();
        for mut d in deliveries {
            settled_remotely(&d);
            d.remote_outstanding = None;
            match peer {
                Some(peer) if d.fanout.is_none() || multicast_copy(&d) => {
                    toward_behind(&mut d);
                    d.detours
                        .set_not_sent_to(peer.clone(), self.neighbour_instance);
                    reroute.push(d);
                }
                _ => d.return_to_sender(Some(DeliveryState::Released)),
            }
        }
        self.to_router(reroute, Routing::Around, DeliveryState::Released);
    }

    /// The neighbour (`peer`, if it identified itself) is gone. What it had
    /// been sent and not settled is re-forwarded on another path when it
    /// can be (see the module doc); the rest may have been processed and
    /// goes back modified (delivery-failed). The stream's record of arrived
    /// deliveries is kept a while for lookups, and [`PeerData::returned`]
    /// still writes the outcomes of its pending ones into it.
    pub fn lost(&mut self, peer: Option<&RouterId>) {
        // What arrived complete before the loss still goes on, and outcomes
        // already collected still go home.
        self.route_arrived();
        self.records.close_stream(&mut self.record, Instant::now());
        // Never sent: back to their addresses, as if routed here too late.
        let queued: Vec<RoutedDelivery> = self
            .queued
            .drain()
            .into_iter()
            .filter_map(|o| match o {
                Outbound::Deliver(d) => Some(d),
                Outbound::More(_) => None,
            })
            .collect();
        self.refuse(queued, peer);
        let mut reforward = Vec::new();
        let mut failed = 0usize;
        for (id, mut d) in self.sent.drain() {
            settled_remotely(&d);
            let resendable = re_forwardable(&d)
                && !self.streams_out.contains_key(&id)
                && d.stream.as_ref().is_none_or(|s| s.whole());
            match peer {
                Some(peer) if resendable => {
                    d.remote_outstanding = None;
                    toward_behind(&mut d);
                    d.resend = true;
                    d.detours
                        .set_lost_with(peer.clone(), self.neighbour_instance);
                    reforward.push(d);
                }
                _ => {
                    failed += usize::from(!d.presettled);
                    d.return_to_sender(Some(DeliveryState::delivery_failed()));
                }
            }
        }
        self.streams_out.clear();
        // Messages still arriving from it will never be complete.
        for (_, stream) in self.streams_in.drain() {
            if let Some(stream) = stream {
                stream.abort();
            }
        }
        // Credited upstream already: nothing more to say about them (the
        // unsettled ones were in `sent` too, handled above).
        self.credited.clear();
        self.windows.clear();
        if let Some(peer) = peer {
            tracing::info!(
                "lost {peer}: {} in-flight deliveries re-forwarded, {failed} returned modified",
                reforward.len()
            );
        }
        self.to_router(reforward, Routing::Around, DeliveryState::delivery_failed());
    }
}

/// How the router is to route deliveries handed to it.
enum Routing {
    /// Like any other ([`super::DataPlane::route`]).
    Forward,
    /// Around a lost neighbour ([`super::DataPlane::reroute`]).
    Around,
}

/// An unsettled delivery that is not a multicast copy: it gets its identity
/// in the mesh on the stream it first leaves by (a multicast message gets
/// one for all its copies from its address), and only it is routed again
/// when the neighbour releases it.
fn unsettled_unicast(d: &RoutedDelivery) -> bool {
    !d.presettled && d.fanout.is_none()
}

/// An unsettled delivery, or copy of a multicast one, that is re-forwarded
/// when the neighbour it went to is lost: it keeps its message while it
/// waits for the neighbour's outcome. Presettled ones are never sent twice.
fn re_forwardable(d: &RoutedDelivery) -> bool {
    !d.presettled && (d.fanout.is_none() || multicast_copy(d))
}

/// A copy of a multicast delivery on its way to a neighbour (it knows the
/// routers it is for).
fn multicast_copy(d: &RoutedDelivery) -> bool {
    d.fanout.is_some() && matches!(d.reach, Reach::Behind(_) | Reach::Toward(_))
}

/// A multicast copy that did not reach the neighbour is re-forwarded for
/// the routers that were behind it.
fn toward_behind(d: &mut RoutedDelivery) {
    if let Reach::Behind(routers) = &d.reach {
        d.reach = Reach::Toward(routers.clone());
    }
}

/// The delivery is no longer outstanding on its next hop.
fn settled_remotely(d: &RoutedDelivery) {
    if let Some(c) = &d.remote_outstanding {
        c.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Stream readers are keyed by link on AMQP connections; peers key by id only.
fn dummy_link() -> bote_amqp::LinkId {
    bote_amqp::LinkId {
        session: bote_amqp::SessionId(0),
        handle: u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{ConnId, HOP_LIMIT, Stream};
    use crate::mesh::wire::outcome_to_wire;
    use std::sync::Mutex;

    #[test]
    fn arriving_names_share_one_value_and_bad_utf8_is_refused() {
        let mut names = Names::default();
        let a = names.address_in(&Bytes::from_static(b"queue.a")).unwrap();
        let b = names
            .address_in(&Bytes::copy_from_slice(b"queue.a"))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one Arc per address");
        assert_eq!(names.address_in(&Bytes::from_static(b"\xff\xfe")), None);

        let wire = vec![Bytes::from_static(b"A"), Bytes::from_static(b"B")];
        let t1 = names.trace_in(&wire).unwrap();
        let t2 = names.trace_in(&wire).unwrap();
        assert!(t1.same(&t2), "one shared trace per path");
        assert_eq!(&*t1, &[RouterId::from("A"), RouterId::from("B")]);
        assert_eq!(names.trace_in(&[Bytes::from_static(b"\xc3")]), None);
    }

    #[test]
    fn departing_trace_adds_this_router_and_is_reused() {
        let mut names = Names::default();
        let own = RouterId::from("B");
        let empty = VisitedRouters::default();
        assert_eq!(
            names.trace_out(&empty, &own),
            vec![Bytes::from_static(b"B")]
        );
        let via_a = VisitedRouters::from(vec![RouterId::from("A")]);
        let wire = names.trace_out(&via_a, &own);
        assert_eq!(
            wire,
            vec![Bytes::from_static(b"A"), Bytes::from_static(b"B")]
        );
        assert_eq!(names.trace_out(&via_a.clone(), &own), wire);
        let address: Arc<str> = Arc::from("queue.a");
        assert_eq!(names.address_out(&address), Bytes::from_static(b"queue.a"));
    }

    /// Outcomes sent home: (delivery key, state).
    type Outcomes = Arc<Mutex<Vec<(u64, Option<DeliveryState>)>>>;

    /// Credit acknowledgements sent home: delivery keys.
    type Moved = Arc<Mutex<Vec<u64>>>;

    /// Collects the outcomes (and credit acknowledgements) sent home to an
    /// ingress connection.
    struct Sink(Outcomes, Moved);

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Returned> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Returned, _: &mut Context<Self>) {
            self.0.lock().unwrap().extend(msg.outcomes);
            self.1.lock().unwrap().extend(msg.moved);
        }
    }

    impl Handler<crate::delivery::StreamProgress> for Sink {
        type Result = ();
        fn handle(&mut self, _: crate::delivery::StreamProgress, _: &mut Context<Self>) {}
    }

    /// The router's data plane, keeping what it is handed.
    #[derive(Default)]
    struct Kept {
        routed: Mutex<Vec<RoutedDelivery>>,
        rerouted: Mutex<Vec<RoutedDelivery>>,
    }

    impl super::super::DataPlane for Kept {
        fn view_changed(&self, _: Arc<super::super::MeshView>) {}
        fn route(&self, deliveries: Vec<RoutedDelivery>) {
            self.routed.lock().unwrap().extend(deliveries);
        }
        fn reroute(&self, deliveries: Vec<RoutedDelivery>) {
            self.rerouted.lock().unwrap().extend(deliveries);
        }
    }

    /// A home for outcomes and a data plane keeping what it is handed (to
    /// be called inside an actix system).
    fn harness() -> (Outcomes, Addr<Sink>, Arc<Kept>) {
        let (outcomes, _, sink, kept) = harness_with_credit();
        (outcomes, sink, kept)
    }

    /// [`harness`], also keeping the credit acknowledgements sent home.
    fn harness_with_credit() -> (Outcomes, Moved, Addr<Sink>, Arc<Kept>) {
        let outcomes = Outcomes::default();
        let moved = Moved::default();
        let sink = Sink(outcomes.clone(), moved.clone()).start();
        (outcomes, moved, sink, Arc::new(Kept::default()))
    }

    fn hooked(kept: &Arc<Kept>) -> DataHook {
        let hook: DataHook = Arc::new(std::sync::OnceLock::new());
        let plane: Arc<dyn super::super::DataPlane> = kept.clone();
        assert!(hook.set(plane).is_ok());
        hook
    }

    /// The data plane of stream `conn` of router `own`, its outcomes going
    /// to `sink` and what it routes to `kept`.
    fn stream_of(
        kept: &Arc<Kept>,
        sink: &Addr<Sink>,
        own: &str,
        conn: u64,
        records: &Arc<Records>,
    ) -> PeerData {
        let mut data = PeerData::new(hooked(kept), RouterId::from(own), conn, records.clone());
        data.started(sink.clone().recipient());
        data
    }

    /// An unsettled delivery from Router.A arriving through Router.C.
    fn arriving(id: u64, sequence: u64, resend: bool) -> pb::frame::Kind {
        pb::frame::Kind::Transfer(pb::Transfer {
            delivery_id: id,
            address: Bytes::from_static(b"queue.a"),
            message: Bytes::from_static(b"message"),
            ingress_router: Bytes::from_static(b"Router.A"),
            trace: vec![
                Bytes::from_static(b"Router.A"),
                Bytes::from_static(b"Router.C"),
            ],
            hops_left: 30,
            ingress_sequence: sequence,
            resend,
            ..pb::Transfer::default()
        })
    }

    /// The outcome of the one disposition in `frames`; `None` if there is
    /// no frame (the delivery went on to be routed).
    fn answer(frames: Vec<pb::Frame>) -> Option<DeliveryState> {
        assert!(frames.len() <= 1, "{frames:?}");
        match frames.into_iter().next()?.kind {
            Some(pb::frame::Kind::Disposition(d)) => Some(outcome_from_wire(d.outcome?)),
            other => panic!("not a disposition: {other:?}"),
        }
    }

    fn delivery(sink: &Addr<Sink>, key: u64, presettled: bool) -> RoutedDelivery {
        RoutedDelivery {
            address: Arc::from("queue.a"),
            message: Bytes::from_static(b"message"),
            presettled,
            priority: 4,
            origin: Origin {
                conn: Arc::new(sink.clone().recipient()),
                conn_id: ConnId(1),
                key,
            },
            fanout: None,
            detours: Detours::default(),
            stream: None,
            visited: VisitedRouters::default(),
            hops_left: HOP_LIMIT,
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

    /// The delivery keys of the first parts among `frames`, in order.
    fn first_parts(frames: &[pb::Frame]) -> Vec<u64> {
        frames
            .iter()
            .filter_map(|f| match &f.kind {
                Some(pb::frame::Kind::Transfer(t)) if !t.address.is_empty() || t.same_route => {
                    Some(t.delivery_id)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn on_the_hop_higher_priority_overtakes_a_queued_backlog_which_still_goes() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            let progress = sink.clone();
            let mut low: Vec<RoutedDelivery> = (0..300).map(|k| delivery(&sink, k, true)).collect();
            for d in &mut low {
                d.priority = 0;
            }
            to_b.enqueue(low);
            // The stream has room for a few only: the backlog waits here.
            let first = to_b.take_transfers(3 * 71, |_| progress.clone().recipient());
            assert_eq!(first_parts(&first), vec![0, 1, 2]);
            let mut high: Vec<RoutedDelivery> =
                (1000..1020).map(|k| delivery(&sink, k, true)).collect();
            for d in &mut high {
                d.priority = 9;
            }
            to_b.enqueue(high);
            let rest = to_b.take_transfers(usize::MAX, |_| progress.clone().recipient());
            let ids = first_parts(&rest);
            assert_eq!(ids.len(), 317, "every one goes");
            // Ids follow send order: the 20 high ones (ids 3..) went first,
            // then the backlog, in its order.
            assert_eq!(ids, (3..320).collect::<Vec<u64>>());
            let priorities: Vec<u32> = rest
                .iter()
                .filter_map(|f| match &f.kind {
                    Some(pb::frame::Kind::Transfer(t)) => Some(t.priority),
                    _ => None,
                })
                .collect();
            assert_eq!(&priorities[..20], &[9; 20]);
            assert!(priorities[20..].iter().all(|p| *p == 0));
            assert!(!to_b.has_queued());
        });
    }

    #[test]
    fn a_streaming_message_takes_turns_on_the_hop_with_the_others() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            let progress = sink.clone();
            let stream = Arc::new(Stream::default());
            // 4 MiB arrived already, in 64 KiB frames.
            for _ in 0..64 {
                stream.push(Bytes::from(vec![7u8; 64 * 1024]), false);
            }
            let mut big = delivery(&sink, 0, false);
            big.stream = Some(stream.clone());
            to_b.enqueue(vec![big]);
            let first = to_b.take_transfers(1, |_| progress.clone().recipient());
            let sent: usize = first
                .iter()
                .map(|f| match &f.kind {
                    Some(pb::frame::Kind::Transfer(t)) => t.message.len(),
                    _ => 0,
                })
                .sum();
            assert!(sent <= STREAM_TURN_BYTES + 64, "one turn: {sent} bytes");
            // A small message queued now goes after one more turn of the
            // big one, long before the rest of it.
            to_b.enqueue(vec![delivery(&sink, 1, false)]);
            let turn = to_b.take_transfers(1, |_| progress.clone().recipient());
            assert!(first_parts(&turn).is_empty());
            let next = to_b.take_transfers(1, |_| progress.clone().recipient());
            assert_eq!(first_parts(&next), vec![1]);
            assert!(stream.held() > 32, "most of the big one is still to go");
            // The rest follows, and what every reader sent is no longer held.
            stream.push(Bytes::new(), true);
            to_b.stream_progress(0);
            let rest = to_b.take_transfers(usize::MAX, |_| progress.clone().recipient());
            let last = rest.last().and_then(|f| match &f.kind {
                Some(pb::frame::Kind::Transfer(t)) => Some(t.more),
                _ => None,
            });
            assert_eq!(last, Some(false), "the last part ends it");
            assert_eq!(stream.held(), 0);
        });
    }

    #[test]
    fn an_arriving_message_in_parts_is_routed_on_its_first_and_streams_on() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let mut data = stream_of(&kept, &sink, "Router.B", 1, &Arc::default());
            let mut first = arriving(0, 7, false);
            if let pb::frame::Kind::Transfer(t) = &mut first {
                t.more = true;
                t.priority = 7;
            }
            assert_eq!(answer(data.inbound(first)), None);
            data.route_arrived();
            let routed = std::mem::take(&mut *kept.routed.lock().unwrap());
            assert_eq!(routed.len(), 1, "routed before it is complete");
            assert_eq!(routed[0].priority, 7);
            let stream = routed[0].stream.clone().expect("a stream");
            let part = |more| {
                pb::frame::Kind::Transfer(pb::Transfer {
                    delivery_id: 0,
                    message: Bytes::from_static(b"part"),
                    more,
                    ..pb::Transfer::default()
                })
            };
            assert!(data.inbound(part(true)).is_empty());
            assert!(data.inbound(part(false)).is_empty());
            let (_, r) = stream.open((sink.clone().recipient(), dummy_link(), 0), usize::MAX);
            assert_eq!((r.chunks.len(), r.complete), (2, true));
            // The id is free again: a new message with it is a new delivery.
            assert_eq!(answer(data.inbound(arriving(0, 8, false))), None);
            data.route_arrived();
            assert_eq!(kept.routed.lock().unwrap().len(), 1);
            drop(routed);
        });
    }

    #[test]
    fn a_looping_delivery_is_answered_and_not_routed_presettled_ones_too() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            // Router.C is on the trace: this delivery came round a loop.
            let mut data = stream_of(&kept, &sink, "Router.C", 1, &Arc::default());
            let frames = data.inbound(arriving(0, 7, false));
            assert_eq!(answer(frames), Some(DeliveryState::Released));
            let mut presettled = arriving(1, 0, false);
            if let pb::frame::Kind::Transfer(t) = &mut presettled {
                t.settled = true;
            }
            // Acknowledged without outcome, so the sender's credit comes back.
            let frames = data.inbound(presettled);
            assert_eq!(frames.len(), 1);
            match &frames[0].kind {
                Some(pb::frame::Kind::Disposition(d)) => {
                    assert_eq!(
                        (d.delivery_id, d.outcome.is_none(), d.settled),
                        (1, true, true)
                    )
                }
                other => panic!("not a disposition: {other:?}"),
            }
            data.route_arrived();
            assert!(kept.routed.lock().unwrap().is_empty());
        });
    }

    /// The outcomes the sink got, by key, once `n` have arrived.
    async fn outcomes_once(outcomes: &Outcomes, n: usize) -> Vec<(u64, Option<DeliveryState>)> {
        for _ in 0..200 {
            if outcomes.lock().unwrap().len() >= n {
                break;
            }
            actix::clock::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut got = outcomes.lock().unwrap().clone();
        got.sort_by_key(|(key, _)| *key);
        got
    }

    #[test]
    fn a_resent_delivery_is_answered_with_the_outcome_it_had_here_and_never_delivered_twice() {
        actix::System::new().block_on(async {
            let (outcomes, sink, kept) = harness();
            let records = Arc::new(Records::default());
            let stream = |conn| stream_of(&kept, &sink, "Router.D", conn, &records);
            // Router.B passed three deliveries on to us; the consumer
            // accepted one, then B was lost.
            let mut via_b = stream(1);
            for (id, sequence) in [(0, 100), (1, 101), (3, 103)] {
                assert_eq!(answer(via_b.inbound(arriving(id, sequence, false))), None);
            }
            via_b.route_arrived();
            assert_eq!(kept.routed.lock().unwrap().len(), 3);
            assert_eq!(
                answer(via_b.returned(vec![(1, Some(DeliveryState::Accepted))], Vec::new())),
                Some(DeliveryState::Accepted)
            );
            via_b.lost(Some(&RouterId::from("Router.B")));
            assert!(via_b.holds_arrivals(), "the consumer holds two");

            // Router.A re-forwards them through Router.C, and one more.
            let mut via_c = stream(2);
            assert!(records.checking(), "losing a neighbour starts checking");
            assert_eq!(
                answer(via_c.inbound(arriving(10, 100, true))),
                None,
                "held by the consumer: the copy waits"
            );
            assert_eq!(
                answer(via_c.inbound(arriving(11, 101, true))),
                Some(DeliveryState::Accepted),
                "accepted already: the recorded outcome"
            );
            assert_eq!(answer(via_c.inbound(arriving(12, 102, true))), None);
            assert_eq!(answer(via_c.inbound(arriving(13, 103, true))), None);
            assert!(via_c.take_waits_started());
            via_c.route_arrived();
            {
                let routed = kept.routed.lock().unwrap();
                assert_eq!(routed.len(), 4, "only the unknown one is delivered");
                assert!(routed[3].resend && routed[3].ingress_sequence == 102);
            }
            assert!(records.checking());
            assert_eq!(records.waiting(), 2);

            // The consumer accepts the original of the first waiting copy
            // (its outcome can no longer go back through B, but it is
            // recorded) and releases the other's: the first copy is
            // answered accepted (through its own stream: here, the sink),
            // the second is delivered after all.
            via_b.returned(
                vec![
                    (0, Some(DeliveryState::Accepted)),
                    (3, Some(DeliveryState::Released)),
                ],
                Vec::new(),
            );
            assert!(!via_b.holds_arrivals());
            assert_eq!(
                outcomes_once(&outcomes, 1).await,
                vec![(10, Some(DeliveryState::Accepted))]
            );
            {
                let routed = kept.routed.lock().unwrap();
                assert_eq!(routed.len(), 5);
                assert_eq!(
                    (routed[4].origin.key, routed[4].ingress_sequence),
                    (13, 103)
                );
            }
            assert_eq!(records.waiting(), 0);

            // Only a link was cut: the original arrives after its copy,
            // waits for the copy's outcome and is answered with it.
            let mut late = stream(3);
            assert_eq!(answer(late.inbound(arriving(22, 102, false))), None);
            assert_eq!(answer(late.inbound(arriving(24, 104, false))), None);
            late.route_arrived();
            assert_eq!(kept.routed.lock().unwrap().len(), 6, "the unknown one");
            via_c.returned(vec![(12, Some(DeliveryState::Accepted))], Vec::new());
            assert_eq!(
                outcomes_once(&outcomes, 2).await,
                vec![
                    (10, Some(DeliveryState::Accepted)),
                    (22, Some(DeliveryState::Accepted))
                ]
            );
        });
    }

    /// Keys of the outcomes the sink got, once `n` have arrived.
    async fn keys_once(outcomes: &Outcomes, n: usize) -> Vec<u64> {
        for _ in 0..200 {
            if outcomes.lock().unwrap().len() >= n {
                break;
            }
            actix::clock::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut keys: Vec<u64> = outcomes.lock().unwrap().iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys
    }

    fn ack(id: u64) -> pb::frame::Kind {
        pb::frame::Kind::Disposition(pb::Disposition {
            delivery_id: id,
            outcome: None,
            settled: true,
            last_delivery_id: 0,
        })
    }

    #[test]
    fn presettled_deliveries_are_acknowledged_hop_by_hop_within_a_window_per_address() {
        actix::System::new().block_on(async {
            let (outcomes, sink, kept) = harness();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            let w = HOP_WINDOW as u64;
            let progress = sink.clone();
            let batch: Vec<RoutedDelivery> = (0..w + 3).map(|k| delivery(&sink, k, true)).collect();
            let frames = to_b.send(batch, |_| progress.clone().recipient());
            assert_eq!(frames.len() as u64, w + 3, "all go to the neighbour");
            // A window's worth is acknowledged upstream at once; 3 wait.
            assert_eq!(
                keys_once(&outcomes, w as usize).await,
                (0..w).collect::<Vec<_>>()
            );
            // Another address has a window of its own.
            let mut other = delivery(&sink, 1000, true);
            other.address = Arc::from("queue.b");
            to_b.send(vec![other], |_| progress.clone().recipient());
            assert!(keys_once(&outcomes, w as usize + 1).await.contains(&1000));
            // The neighbour acknowledges an early one: the oldest waiting
            // one (key w) goes upstream.
            to_b.inbound(ack(0));
            to_b.route_arrived();
            assert!(keys_once(&outcomes, w as usize + 2).await.contains(&w));
            // It acknowledges a waiting one itself: that one goes upstream.
            to_b.inbound(ack(w + 2));
            to_b.route_arrived();
            let keys = keys_once(&outcomes, w as usize + 3).await;
            assert!(
                keys.contains(&(w + 2)) && !keys.contains(&(w + 1)),
                "{keys:?}"
            );
            // Lost: the one still waiting comes back (credit only).
            to_b.lost(Some(&RouterId::from("Router.B")));
            let keys = keys_once(&outcomes, w as usize + 4).await;
            assert_eq!(keys.len() as u64, w + 4, "every delivery answered once");
            assert!(keys.contains(&(w + 1)));
            assert!(
                outcomes
                    .lock()
                    .unwrap()
                    .iter()
                    .all(|(_, state)| state.is_none())
            );
        });
    }

    /// The sorted keys in `moved` once `n` have arrived.
    async fn moved_once(moved: &Moved, n: usize) -> Vec<u64> {
        for _ in 0..200 {
            if moved.lock().unwrap().len() >= n {
                break;
            }
            actix::clock::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut keys = moved.lock().unwrap().clone();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn unsettled_deliveries_are_credited_hop_by_hop_within_the_window_and_settled_end_to_end() {
        actix::System::new().block_on(async {
            let (outcomes, moved, sink, kept) = harness_with_credit();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            to_b.neighbour_reads(true, true, true);
            let w = HOP_WINDOW as u64;
            let progress = sink.clone();
            let batch: Vec<RoutedDelivery> =
                (0..w + 2).map(|k| delivery(&sink, k, false)).collect();
            let frames = to_b.send(batch, |_| progress.clone().recipient());
            assert_eq!(frames.len() as u64, w + 2, "all go to the neighbour");
            // A window's worth gets its credit back at once, before any
            // outcome; 2 wait for room.
            assert_eq!(
                moved_once(&moved, w as usize).await,
                (0..w).collect::<Vec<_>>()
            );
            assert!(outcomes.lock().unwrap().is_empty(), "no outcome yet");
            // The neighbour says one moved on there (no outcome, not
            // settled): room for the oldest waiting one.
            to_b.inbound(pb::frame::Kind::Disposition(pb::Disposition {
                delivery_id: 0,
                outcome: None,
                settled: false,
                last_delivery_id: 0,
            }));
            to_b.route_arrived();
            assert_eq!(moved_once(&moved, w as usize + 1).await.last(), Some(&w));
            assert!(outcomes.lock().unwrap().is_empty(), "still no outcome");
            // The last waiting one is settled by the neighbour: its credit
            // comes back with its outcome, not twice.
            let settle = |id| {
                pb::frame::Kind::Disposition(pb::Disposition {
                    delivery_id: id,
                    outcome: Some(outcome_to_wire(DeliveryState::Accepted)),
                    settled: true,
                    last_delivery_id: 0,
                })
            };
            to_b.inbound(settle(w + 1));
            to_b.inbound(settle(0));
            to_b.route_arrived();
            assert_eq!(keys_once(&outcomes, 2).await, vec![0, w + 1]);
            actix::clock::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(
                moved.lock().unwrap().len() as u64,
                w + 1,
                "each credited once"
            );
            // Lost: the unsettled ones still out are re-forwarded (they keep
            // their outcome to come), not credited again.
            to_b.lost(Some(&RouterId::from("Router.B")));
            assert_eq!(kept.rerouted.lock().unwrap().len() as u64, w);
            assert_eq!(moved.lock().unwrap().len() as u64, w + 1);
        });
    }

    #[test]
    fn credit_acknowledgements_go_only_to_a_neighbour_that_reads_them() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let mut from_a = stream_of(&kept, &sink, "Router.B", 1, &Arc::default());
            assert!(from_a.returned(Vec::new(), vec![3, 4, 5, 9]).is_empty());
            from_a.neighbour_reads(true, true, true);
            let acks: Vec<(u64, u64, bool, bool)> = from_a
                .returned(vec![(7, Some(DeliveryState::Accepted))], vec![5, 3, 4, 9])
                .into_iter()
                .map(|f| match f.kind {
                    Some(pb::frame::Kind::Disposition(d)) => (
                        d.delivery_id,
                        d.last_delivery_id,
                        d.settled,
                        d.outcome.is_some(),
                    ),
                    other => panic!("not a disposition: {other:?}"),
                })
                .collect();
            assert_eq!(
                acks,
                vec![
                    (3, 5, false, false),
                    (9, 0, false, false),
                    (7, 0, true, true)
                ]
            );
            // Alone, they wait for other frames (or a timer, in the peer
            // actor); an outcome going out takes them along, and makes its
            // own delivery's acknowledgement needless.
            assert!(from_a.returned(Vec::new(), vec![1, 2, 8]).is_empty());
            assert!(from_a.credit_acks_wait());
            let frames = from_a.returned(vec![(8, Some(DeliveryState::Accepted))], Vec::new());
            let got: Vec<(u64, u64, bool)> = frames
                .into_iter()
                .map(|f| match f.kind {
                    Some(pb::frame::Kind::Disposition(d)) => {
                        (d.delivery_id, d.last_delivery_id, d.settled)
                    }
                    other => panic!("not a disposition: {other:?}"),
                })
                .collect();
            assert_eq!(got, vec![(1, 2, false), (8, 0, true)]);
            assert!(!from_a.credit_acks_wait());
            assert!(from_a.returned(Vec::new(), vec![4]).is_empty());
            assert_eq!(from_a.take_credit_acks().len(), 1);
        });
    }

    #[test]
    fn large_presettled_messages_fill_the_window_by_bytes() {
        actix::System::new().block_on(async {
            let (outcomes, sink, kept) = harness();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            let big = Bytes::from(vec![0u8; HOP_WINDOW_BYTES / 4]);
            let batch: Vec<RoutedDelivery> = (0..6)
                .map(|k| {
                    let mut d = delivery(&sink, k, true);
                    d.message = big.clone();
                    d
                })
                .collect();
            let progress = sink.clone();
            let frames = to_b.send(batch, |_| progress.clone().recipient());
            assert_eq!(frames.len(), 6, "all go to the neighbour");
            // Four fill the byte window: those go upstream at once.
            assert_eq!(keys_once(&outcomes, 4).await, vec![0, 1, 2, 3]);
            // Each acknowledgement by the neighbour makes room for one more.
            to_b.inbound(ack(1));
            to_b.route_arrived();
            assert_eq!(keys_once(&outcomes, 5).await, vec![0, 1, 2, 3, 4]);
            to_b.inbound(ack(0));
            to_b.route_arrived();
            assert_eq!(keys_once(&outcomes, 6).await, vec![0, 1, 2, 3, 4, 5]);
        });
    }

    #[test]
    fn a_run_of_messages_on_one_route_carries_the_route_once() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let mut a_to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            let mut b_from_a = stream_of(&kept, &sink, "Router.B", 2, &Arc::default());
            let to = |key: u64, address: &str| {
                let mut d = delivery(&sink, key, false);
                d.address = Arc::from(address);
                d
            };
            let batch = |first: u64| {
                vec![
                    to(first, "queue.a"),
                    to(first + 1, "queue.a"),
                    to(first + 2, "queue.a"),
                    to(first + 3, "queue.b"),
                    to(first + 4, "queue.a"),
                ]
            };
            let routes = |frames: &[pb::Frame]| -> Vec<(bool, Bytes, usize)> {
                frames
                    .iter()
                    .map(|f| match &f.kind {
                        Some(pb::frame::Kind::Transfer(t)) => {
                            (t.same_route, t.address.clone(), t.trace.len())
                        }
                        other => panic!("not a transfer: {other:?}"),
                    })
                    .collect()
            };
            let full = |a: &'static [u8]| (false, Bytes::from_static(a), 1);
            let same = (true, Bytes::new(), 0);
            let progress = sink.clone();

            // A neighbour that has not said it reads `same_route` (one that
            // predates it) gets every route in full.
            let mut to_old = stream_of(&kept, &sink, "Router.A", 3, &Arc::default());
            let frames = to_old.send(batch(100), |_| progress.clone().recipient());
            assert!(routes(&frames).iter().all(|(same, _, _)| !same));

            a_to_b.neighbour_reads(true, true, true);
            let frames = a_to_b.send(batch(0), |_| progress.clone().recipient());
            let sent = routes(&frames);
            assert_eq!(
                sent,
                vec![
                    full(b"queue.a"),
                    same.clone(),
                    same,
                    full(b"queue.b"),
                    full(b"queue.a"),
                ]
            );
            for f in frames {
                assert!(b_from_a.inbound(f.kind.unwrap()).is_empty());
            }
            b_from_a.route_arrived();
            let routed = kept.routed.lock().unwrap();
            let got: Vec<(&str, Vec<RouterId>, u32)> = routed
                .iter()
                .map(|d| (&*d.address, d.visited.to_vec(), d.hops_left))
                .collect();
            let via_a = vec![RouterId::from("Router.A")];
            let on = |a| (a, via_a.clone(), HOP_LIMIT - 1);
            assert_eq!(
                got,
                vec![
                    on("queue.a"),
                    on("queue.a"),
                    on("queue.a"),
                    on("queue.b"),
                    on("queue.a")
                ]
            );
        });
    }

    #[test]
    fn same_route_with_no_route_before_it_is_answered_and_not_routed() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let mut data = stream_of(&kept, &sink, "Router.B", 1, &Arc::default());
            let frames = data.inbound(pb::frame::Kind::Transfer(pb::Transfer {
                delivery_id: 0,
                message: Bytes::from_static(b"message"),
                same_route: true,
                ..pb::Transfer::default()
            }));
            assert_eq!(answer(frames), Some(DeliveryState::Released));
            data.route_arrived();
            assert!(kept.routed.lock().unwrap().is_empty());
        });
    }

    #[test]
    fn outcomes_go_back_as_ranges_only_to_a_neighbour_that_reads_them() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let mut from_a = stream_of(&kept, &sink, "Router.B", 1, &Arc::default());
            let accepted = || {
                (0..4)
                    .map(|id| (id, Some(DeliveryState::Accepted)))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                from_a.returned(accepted(), Vec::new()).len(),
                4,
                "one per delivery"
            );
            from_a.neighbour_reads(true, true, true);
            let frames = from_a.returned(accepted(), Vec::new());
            assert_eq!(frames.len(), 1);
            match &frames[0].kind {
                Some(pb::frame::Kind::Disposition(d)) => {
                    assert_eq!((d.delivery_id, d.last_delivery_id), (0, 3))
                }
                other => panic!("not a disposition: {other:?}"),
            }
        });
    }

    #[test]
    fn runs_of_one_outcome_cross_as_one_disposition_and_settle_their_whole_range() {
        let acc = Some(DeliveryState::Accepted);
        let rel = Some(DeliveryState::Released);
        let frames = dispositions(
            vec![
                (0, acc.clone()),
                (1, acc.clone()),
                (2, acc.clone()),
                (3, rel.clone()),
                (5, acc.clone()),
                (6, None),
                (7, None),
            ],
            true,
        );
        let ranges: Vec<(u64, u64, Option<DeliveryState>)> = frames
            .into_iter()
            .map(|f| match f.kind {
                Some(pb::frame::Kind::Disposition(d)) => (
                    d.delivery_id,
                    d.last_delivery_id,
                    d.outcome.map(outcome_from_wire),
                ),
                other => panic!("not a disposition: {other:?}"),
            })
            .collect();
        assert_eq!(
            ranges,
            vec![(0, 2, acc.clone()), (3, 0, rel), (5, 0, acc), (6, 7, None)]
        );

        actix::System::new().block_on(async {
            let (outcomes, sink, kept) = harness();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            let batch: Vec<RoutedDelivery> = (0..6).map(|k| delivery(&sink, k, false)).collect();
            let progress = sink.clone();
            assert_eq!(to_b.send(batch, |_| progress.clone().recipient()).len(), 6);
            let settle = |first, last| {
                pb::frame::Kind::Disposition(pb::Disposition {
                    delivery_id: first,
                    outcome: Some(outcome_to_wire(DeliveryState::Accepted)),
                    settled: true,
                    last_delivery_id: last,
                })
            };
            to_b.inbound(settle(0, 3));
            to_b.route_arrived();
            assert_eq!(keys_once(&outcomes, 4).await, vec![0, 1, 2, 3]);
            // A range far wider than what is outstanding settles what it
            // covers, without walking the range.
            to_b.inbound(settle(5, u64::MAX));
            to_b.route_arrived();
            assert_eq!(keys_once(&outcomes, 5).await, vec![0, 1, 2, 3, 5]);
            assert!(
                outcomes
                    .lock()
                    .unwrap()
                    .iter()
                    .all(|(_, state)| *state == Some(DeliveryState::Accepted))
            );
        });
    }

    #[test]
    fn a_delivery_the_neighbour_releases_is_routed_again_here_once_never_through_it() {
        actix::System::new().block_on(async {
            let (outcomes, sink, kept) = harness();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            let instance = crate::delivery::NeighbourInstance {
                instance: 1,
                stream: 1,
            };
            to_b.identified(RouterId::from("Router.B"), instance);
            let outstanding = Arc::new(std::sync::atomic::AtomicU32::new(3));
            let mut batch: Vec<RoutedDelivery> = (0..3)
                .map(|k| {
                    let mut d = delivery(&sink, k, false);
                    d.remote_outstanding = Some(outstanding.clone());
                    d
                })
                .collect();
            // Key 2 is still streaming out: it cannot be sent again whole.
            let stream = Arc::new(Stream::default());
            stream.push(Bytes::from_static(b"more"), false);
            batch[2].stream = Some(stream);
            let progress = sink.clone();
            to_b.send(batch, |_| progress.clone().recipient());
            let settle = |id, state| {
                pb::frame::Kind::Disposition(pb::Disposition {
                    delivery_id: id,
                    outcome: Some(outcome_to_wire(state)),
                    settled: true,
                    last_delivery_id: 0,
                })
            };
            to_b.inbound(settle(0, DeliveryState::Released));
            to_b.inbound(settle(1, DeliveryState::Accepted));
            to_b.inbound(settle(2, DeliveryState::Released));
            // A repeated or late disposition of a settled delivery: nothing.
            to_b.inbound(settle(0, DeliveryState::Released));
            to_b.inbound(settle(1, DeliveryState::Released));
            to_b.route_arrived();

            let routed = std::mem::take(&mut *kept.routed.lock().unwrap());
            assert_eq!(routed.len(), 1, "routed again once");
            let d = &routed[0];
            assert_eq!(d.origin.key, 0);
            assert_eq!(d.detours.released_by(), [RouterId::from("Router.B")]);
            assert_eq!(&d.message[..], b"message", "it kept its message");
            assert!(d.remote_outstanding.is_none() && !d.resend);
            assert_eq!(outstanding.load(std::sync::atomic::Ordering::Relaxed), 0);
            drop(routed);
            // The accepted one goes home accepted and the one still
            // streaming released; the one routed again is answered only
            // now that it was dropped (released, as any delivery dropped
            // on its way).
            let mut got = Vec::new();
            for _ in 0..200 {
                got = outcomes.lock().unwrap().clone();
                if got.len() >= 3 {
                    break;
                }
                actix::clock::sleep(std::time::Duration::from_millis(5)).await;
            }
            got.sort_by_key(|(key, _)| *key);
            assert_eq!(
                got,
                vec![
                    (0, Some(DeliveryState::Released)),
                    (1, Some(DeliveryState::Accepted)),
                    (2, Some(DeliveryState::Released)),
                ]
            );
        });
    }

    #[test]
    fn a_lost_neighbours_unsettled_deliveries_are_re_forwarded_and_the_rest_returned_modified() {
        actix::System::new().block_on(async {
            let (outcomes, sink, kept) = harness();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());

            let outstanding = Arc::new(std::sync::atomic::AtomicU32::new(1));
            let mut unsettled = delivery(&sink, 1, false);
            unsettled.remote_outstanding = Some(outstanding.clone());
            let presettled = delivery(&sink, 2, true);
            let mut streaming = delivery(&sink, 3, false);
            let stream = Arc::new(Stream::default());
            stream.push(Bytes::from_static(b"more"), false);
            streaming.stream = Some(stream);
            let progress = sink.clone();
            let frames = to_b.send(vec![unsettled, presettled, streaming], |_| {
                progress.clone().recipient()
            });
            let sequences: Vec<u64> = frames
                .iter()
                .filter_map(|f| match &f.kind {
                    // First parts: with a route, or sharing the previous one.
                    Some(pb::frame::Kind::Transfer(t)) if !t.address.is_empty() || t.same_route => {
                        Some(t.ingress_sequence)
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(sequences.len(), 3);
            assert!(sequences[0] != 0, "an unsettled delivery gets an identity");
            assert_eq!(sequences[1], 0, "a presettled one does not");

            to_b.lost(Some(&RouterId::from("Router.B")));
            let rerouted = std::mem::take(&mut *kept.rerouted.lock().unwrap());
            assert_eq!(rerouted.len(), 1);
            let d = &rerouted[0];
            assert_eq!(d.origin.key, 1);
            assert!(d.resend && d.remote_outstanding.is_none());
            assert_eq!(d.detours.resent_from(), Some(&RouterId::from("Router.B")));
            assert_eq!(d.ingress_sequence, sequences[0], "the same identity");
            assert_eq!(outstanding.load(std::sync::atomic::Ordering::Relaxed), 0);
            // A re-forwarded delivery that ends nowhere goes back modified,
            // never released.
            drop(rerouted);

            for _ in 0..100 {
                if outcomes.lock().unwrap().len() == 3 {
                    break;
                }
                actix::clock::sleep(std::time::Duration::from_millis(5)).await;
            }
            let mut got = outcomes.lock().unwrap().clone();
            got.sort_by_key(|(key, _)| *key);
            assert_eq!(
                got,
                vec![
                    (1, Some(DeliveryState::delivery_failed())),
                    (2, None),
                    (3, Some(DeliveryState::delivery_failed())),
                ]
            );
        });
    }

    fn routers(ids: &[&str]) -> Arc<[RouterId]> {
        ids.iter().map(|r| RouterId::from(*r)).collect()
    }

    /// A multicast copy of message (Router.A, `sequence`) arriving through
    /// Router.C, re-forwarded for `destinations` (none: along the tree).
    fn arriving_copy(
        id: u64,
        sequence: u64,
        resend: bool,
        destinations: &[&str],
    ) -> pb::frame::Kind {
        let mut t = arriving(id, sequence, resend);
        if let pb::frame::Kind::Transfer(t) = &mut t {
            t.address = Bytes::from_static(b"multicast.a");
            t.destinations = destinations
                .iter()
                .map(|r| Bytes::copy_from_slice(r.as_bytes()))
                .collect();
        }
        t
    }

    #[test]
    fn a_lost_neighbours_multicast_copies_go_back_for_the_routers_behind_it_with_their_identity() {
        actix::System::new().block_on(async {
            let (outcomes, moved, sink, kept) = harness_with_credit();
            let mut to_b = stream_of(&kept, &sink, "Router.A", 1, &Arc::default());
            to_b.neighbour_reads(true, true, true);
            let copy = |key, presettled| {
                let mut d = delivery(&sink, key, presettled);
                d.fanout = Some(Fanout::new(1, presettled));
                d.reach = Reach::Behind(routers(&["Router.D", "Router.E"]));
                d.ingress_sequence = if presettled { 0 } else { 77 };
                d
            };
            let progress = sink.clone();
            let frames = to_b.send(vec![copy(1, false), copy(2, true)], |_| {
                progress.clone().recipient()
            });
            // Along the tree: the destinations stay off the wire.
            for f in &frames {
                match &f.kind {
                    Some(pb::frame::Kind::Transfer(t)) => assert!(t.destinations.is_empty()),
                    other => panic!("not a transfer: {other:?}"),
                }
            }
            // Multicast copies keep end-to-end credit: none of theirs came
            // back hop by hop (no window, no credit acknowledgement).
            actix::clock::sleep(std::time::Duration::from_millis(20)).await;
            assert!(moved.lock().unwrap().is_empty());
            assert!(outcomes.lock().unwrap().is_empty());
            to_b.lost(Some(&RouterId::from("Router.B")));
            let rerouted = std::mem::take(&mut *kept.rerouted.lock().unwrap());
            assert_eq!(rerouted.len(), 1, "the unsettled copy only");
            assert!(
                !rerouted[0].credited,
                "its credit still comes with its outcome"
            );
            let d = &rerouted[0];
            assert_eq!(d.reach, Reach::Toward(routers(&["Router.D", "Router.E"])));
            assert!(d.resend && d.fanout.is_some());
            assert_eq!(d.detours.resent_from(), Some(&RouterId::from("Router.B")));
            assert_eq!((d.ingress_sequence, &d.message[..]), (77, &b"message"[..]));
            // The presettled copy is not sent twice: its sender's credit
            // comes back; the re-forwarded one still holds its outcome.
            assert_eq!(outcomes_once(&outcomes, 1).await, vec![(2, None)]);
            drop(rerouted);
        });
    }

    #[test]
    fn a_re_forwarded_multicast_copy_passing_through_is_neither_checked_nor_recorded() {
        actix::System::new().block_on(async {
            let (_, sink, kept) = harness();
            let records = Arc::new(Records::default());
            let mut at_c = stream_of(&kept, &sink, "Router.X", 1, &records);
            assert_eq!(
                answer(at_c.inbound(arriving_copy(0, 100, true, &["Router.D"]))),
                None
            );
            at_c.route_arrived();
            let routed = std::mem::take(&mut *kept.routed.lock().unwrap());
            assert_eq!(routed.len(), 1);
            assert_eq!(routed[0].reach, Reach::Toward(routers(&["Router.D"])));
            assert!(routed[0].resend);
            assert!(!at_c.holds_arrivals(), "not recorded");
            assert!(!records.checking(), "not checked");
        });
    }

    #[test]
    fn a_re_forwarded_multicast_copy_goes_on_at_once_while_this_routers_part_waits_for_the_original()
     {
        actix::System::new().block_on(async {
            let (outcomes, sink, kept) = harness();
            let records = Arc::new(Records::default());
            // Router.D got message 100 along the tree through Router.B,
            // which was lost while D's consumer held it.
            let mut via_b = stream_of(&kept, &sink, "Router.D", 1, &records);
            assert_eq!(
                answer(via_b.inbound(arriving_copy(0, 100, false, &[]))),
                None
            );
            via_b.route_arrived();
            assert_eq!(kept.routed.lock().unwrap().len(), 1);
            via_b.lost(Some(&RouterId::from("Router.B")));
            assert!(via_b.holds_arrivals());

            // A copy re-forwarded for D and E arrives through C: E's part
            // goes on at once; D's own part waits for the original.
            let mut via_c = stream_of(&kept, &sink, "Router.D", 2, &records);
            let frames = via_c.inbound(arriving_copy(5, 100, true, &["Router.D", "Router.E"]));
            assert_eq!(answer(frames), None);
            via_c.route_arrived();
            let onward = {
                let mut routed = kept.routed.lock().unwrap();
                assert_eq!(routed.len(), 2);
                routed.pop().unwrap()
            };
            assert_eq!(onward.reach, Reach::Toward(routers(&["Router.E"])));
            assert_eq!(records.waiting(), 1, "D's part waits");

            // E's part is accepted; the consumer accepts the original: D's
            // part is answered so, and the copy's one outcome goes back.
            onward.return_to_sender(Some(DeliveryState::Accepted));
            via_b.returned(vec![(0, Some(DeliveryState::Accepted))], Vec::new());
            assert_eq!(records.waiting(), 0);
            assert_eq!(
                outcomes_once(&outcomes, 1).await,
                vec![(5, Some(DeliveryState::Accepted))]
            );
            assert_eq!(
                kept.routed.lock().unwrap().len(),
                1,
                "D's part not delivered"
            );
        });
    }
}
