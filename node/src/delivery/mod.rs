//! The messages that carry deliveries between a router's actors: a routed
//! delivery on its way from the ingress connection, through its address, to
//! an egress connection or a neighbour router; its credit going back as it
//! moves on (hop by hop), and its outcome travelling back to the ingress
//! connection, which settles the sender's delivery (end to end).
//!
//! Neutral ground: the router's actors ([`crate::router`]) and the mesh
//! ([`crate::mesh`]) both carry these types, and this module uses neither.
//!
//! - [`RoutedDelivery`] and its [`Origin`] (here), the routers it visited
//!   ([`VisitedRouters`]) and the hop limit ([`HOP_LIMIT`]);
//! - [`outcome`]: [`Returned`] outcomes, batched per ingress connection, and
//!   the aggregated outcome of multicast copies ([`Fanout`]);
//! - [`stream`]: a message still arriving frame by frame ([`Stream`]);
//! - [`priority`]: message priority and the per-priority queues
//!   ([`PriorityQueues`]) deliveries wait in;
//! - [`ids`]: connection ids and the maps keyed by router-assigned ids;
//! - [`trace`]: the spans of a traced delivery ([`MessageTrace`]) and the
//!   trace context read from and written to messages.

pub mod ids;
pub mod outcome;
pub mod priority;
pub mod routed;
pub mod stream;
pub mod trace;
pub mod visited;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use actix::Recipient;
use bytes::Bytes;

use bote_amqp::DeliveryState;
use bote_amqp::LinkId;

pub use ids::{ConnId, FastMap, FastSet, SeqHasher, SeqMap, SeqRing};
pub use outcome::{Fanout, OutcomeBatch, Returned};
pub use priority::PriorityQueues;
pub use stream::{Stream, StreamProgress, StreamRead};
pub use trace::MessageTrace;
pub use visited::VisitedRouters;

/// Hops a delivery may still take when it enters the mesh.
pub const HOP_LIMIT: u32 = 32;

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
    /// 0–9 ([`priority`]): from the message's header at ingress, from the
    /// transfer on the mesh. Where deliveries wait (a neighbour's outbound
    /// queue, a consumer link's queue) higher goes first.
    pub priority: u8,
    pub origin: Origin,
    /// Set on the copies of a multicast delivery: they share one outcome.
    pub fanout: Option<Arc<Fanout>>,
    /// Consumers and neighbours that gave it back, and the neighbour it was
    /// lost with ([`Detours`]): one pointer, empty for almost every delivery.
    pub detours: Detours,
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
    /// 0 until then, and always for presettled deliveries (never sent
    /// twice). The copies of an unsettled multicast delivery share it.
    pub ingress_sequence: u64,
    /// It is being re-forwarded because a neighbour it had been sent to was
    /// lost before settling it (here or on a router before this one): the
    /// lost path may have delivered it already, so routers downstream check
    /// its identity first, and it never goes back `released`, only
    /// `modified` (delivery-failed).
    pub resend: bool,
    /// Its sender's credit has been given back (it moved on into a
    /// consumer link's window or the next hop's, [`OutcomeBatch::credit`]);
    /// its outcome, for an unsettled delivery, is still to come.
    pub credited: bool,
    /// A multicast copy's reach on the mesh: along the ingress router's
    /// tree (the default), or toward the routers it was re-forwarded for.
    pub reach: Reach,
    /// Its spans, when the message is traced (`None` with tracing off or
    /// sampled out: no allocation).
    pub trace: Option<Box<MessageTrace>>,
    /// Set on a delivery and its copies for the subscription filters its
    /// address matched at its ingress router (`router::filter::split`):
    /// they share one outcome, as multicast copies do.
    pub joined: Option<Arc<Fanout>>,
    /// Its outcome has been sent home (see `Drop`).
    pub(crate) outcome_sent: bool,
}

/// Where a delivery has been turned away on its way, so that its address
/// routes it elsewhere: almost every delivery never is, so the lists live
/// behind one pointer allocated at the first entry (a delivery is moved
/// several times per router; three empty vectors and an id made it 56 bytes
/// larger).
#[derive(Debug, Default)]
pub struct Detours(Option<Box<DetourLog>>);

#[derive(Debug, Default)]
struct DetourLog {
    tried: Vec<(ConnId, LinkId)>,
    released_by: Vec<bote_topology::RouterId>,
    resent_from: Option<bote_topology::RouterId>,
    /// The instance `resent_from` had, and the stream the delivery was lost
    /// on (or found closed): `None` when not known (the neighbour never
    /// said, or the stream was not named).
    resent_instance: Option<NeighbourInstance>,
    /// Neighbours it was lost with (or found closed) before `resent_from`:
    /// still avoided, whatever their instance now.
    lost_before: Vec<bote_topology::RouterId>,
}

/// A neighbour as one inter-router stream knew it: the instance its hello
/// gave (a router's boot time, new at each restart) and the control
/// plane's number for the stream. The same instance on another stream is
/// the same router process back after a loss (paused past the hello
/// timeout, or its link down for a while), with what it recorded before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourInstance {
    pub instance: bote_topology::InstanceId,
    pub stream: u64,
}

impl Detours {
    fn log(&mut self) -> &mut DetourLog {
        self.0.get_or_insert_with(Box::default)
    }

    /// Consumers that already had the delivery and gave it back (released
    /// or detached before sending): the address does not give it to them
    /// again.
    pub fn tried(&self) -> &[(ConnId, LinkId)] {
        self.0.as_deref().map_or(&[], |l| &l.tried)
    }

    pub fn add_tried(&mut self, consumer: (ConnId, LinkId)) {
        self.log().tried.push(consumer);
    }

    /// Neighbours this router sent it to that gave it back released (no
    /// consumer beyond them took it): the address does not send it through
    /// them again.
    pub fn released_by(&self) -> &[bote_topology::RouterId] {
        self.0.as_deref().map_or(&[], |l| &l.released_by)
    }

    pub fn add_released_by(&mut self, neighbour: bote_topology::RouterId) {
        self.log().released_by.push(neighbour);
    }

    /// The neighbour this router lost it with (or found closed before
    /// sending it): the address does not send it that way again, unless
    /// the neighbour is back as the instance it was lost as
    /// ([`Detours::resent_instance`]).
    pub fn resent_from(&self) -> Option<&bote_topology::RouterId> {
        self.0.as_deref().and_then(|l| l.resent_from.as_ref())
    }

    /// The instance [`Detours::resent_from`] had, and the stream, when this
    /// router lost the delivery with it or found that stream closed before
    /// sending it. Back as that same instance (on a new stream), the
    /// neighbour still has its record of what it had been sent
    /// (`mesh::dedup`) and answers a copy with the outcome it has instead of
    /// delivering it again; what it had not been sent may go there too.
    pub fn resent_instance(&self) -> Option<NeighbourInstance> {
        self.0.as_deref().and_then(|l| l.resent_instance)
    }

    /// Found `neighbour`'s stream closed before sending it there; `closed`
    /// names that stream (and the instance on it) when known. The
    /// neighbour is avoided as one it was lost with, and back for it on the
    /// same terms (the same instance on a new stream: paused, not
    /// restarted); unlike a delivery lost with it, it goes home `released`
    /// if nothing takes it (it is not marked `resend`).
    pub fn set_not_sent_to(
        &mut self,
        neighbour: bote_topology::RouterId,
        closed: Option<NeighbourInstance>,
    ) {
        self.set_lost_with(neighbour, closed);
    }

    /// Lost it with `neighbour`, which had it unsettled and was `instance`
    /// on the stream lost (if it said).
    pub fn set_lost_with(
        &mut self,
        neighbour: bote_topology::RouterId,
        instance: Option<NeighbourInstance>,
    ) {
        let log = self.log();
        // Lost with one neighbour, then with another (re-forwarded to a
        // stream that closed in turn): the first stays avoided. It may
        // have passed the delivery on before it was lost, and only the
        // latest is followed for its return as the same instance.
        if let Some(earlier) = log.resent_from.take()
            && earlier != neighbour
            && !log.lost_before.contains(&earlier)
        {
            log.lost_before.push(earlier);
        }
        log.resent_from = Some(neighbour);
        log.resent_instance = instance;
    }

    /// Whether it was lost with `neighbour` (or found its stream closed)
    /// before the latest such neighbour ([`Detours::resent_from`]): the
    /// address avoids it for good, as a router reached through it.
    pub fn lost_before(&self, neighbour: &bote_topology::RouterId) -> bool {
        self.0
            .as_deref()
            .is_some_and(|l| l.lost_before.contains(neighbour))
    }

    /// Neither given back by a consumer nor released by a neighbour.
    pub fn none_gave_it_back(&self) -> bool {
        self.tried().is_empty() && self.released_by().is_empty()
    }
}

/// Where a multicast delivery goes on from a router (unicast deliveries
/// leave it `Tree` and ignore it).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Reach {
    /// To the local consumers and on along the ingress router's
    /// shortest-path tree: a multicast delivery as its sender sent it, and
    /// a copy arriving from a neighbour.
    #[default]
    Tree,
    /// A copy on its way to one neighbour along the tree: the routers with
    /// consumers behind that neighbour, which the copy is for if it has to
    /// be re-forwarded around the neighbour.
    Behind(Arc<[bote_topology::RouterId]>),
    /// Re-forwarded around a lost neighbour (or one whose stream closed
    /// before the copy went out): only for these routers, each reached by
    /// each router's own shortest path, the local consumers only where the
    /// router is one of them (`Transfer.destinations` on the wire).
    Toward(Arc<[bote_topology::RouterId]>),
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

// Deliveries are moved several times per router (batches, queues, the
// in-flight map): keep the struct small. 184 bytes on 64-bit targets with
// the cold routing history in `Detours` (240 before).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<RoutedDelivery>() <= 184);

impl RoutedDelivery {
    /// Returns the delivery to its sender with `state` (or, for a presettled
    /// delivery, only replenishes the sender's credit).
    pub fn return_to_sender(mut self, state: Option<DeliveryState>) {
        self.send_outcome(state);
    }

    /// The consumer link `consumer` settled the delivery with the terminal
    /// `state` (`None`: settled without one, taken as accepted). Released
    /// (and not a multicast copy): returned, with `consumer` added to
    /// its [`Detours`], for its address to offer another consumer ("resend
    /// released"). Any other outcome is queued in `returns` for home, and
    /// the delivery ends.
    pub fn settled_by_consumer(
        mut self,
        consumer: (ConnId, LinkId),
        state: Option<DeliveryState>,
        returns: &mut OutcomeBatch,
    ) -> Option<RoutedDelivery> {
        match state {
            // (A streamed message whose first chunks are gone cannot be
            // offered again: it goes home released.)
            Some(DeliveryState::Released)
                if self.fanout.is_none() && self.stream.as_ref().is_none_or(|s| s.whole()) =>
            {
                if let Some(t) = &mut self.trace {
                    t.settled(Some(&DeliveryState::Released));
                }
                self.detours.add_tried(consumer);
                Some(self)
            }
            state => {
                returns.push(self, state.or(Some(DeliveryState::Accepted)));
                None
            }
        }
    }

    /// A copy of this delivery, which has not left its ingress router yet,
    /// for `address` (a subscription filter it matches): same message,
    /// origin and settlement, nothing of its routing so far.
    pub fn ingress_copy(&self, address: Arc<str>) -> RoutedDelivery {
        RoutedDelivery {
            address,
            message: self.message.clone(),
            presettled: self.presettled,
            priority: self.priority,
            origin: self.origin.clone(),
            fanout: None,
            detours: Detours::default(),
            // One more reader of the stream: its chunks wait for it too.
            stream: self.stream.clone().inspect(|s| s.add_readers(1)),
            visited: VisitedRouters::default(),
            hops_left: self.hops_left,
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

    /// The delivery ends here with no outcome of its own: a multicast
    /// original once its copies are made (they carry the outcome).
    pub fn consumed(mut self) {
        self.outcome_sent = true;
    }

    fn send_outcome(&mut self, state: Option<DeliveryState>) {
        if let Some(state) = self.take_outcome(state) {
            self.origin.conn.do_send(Returned {
                outcomes: vec![(self.origin.key, state)],
                moved: Vec::new(),
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
        if let Some(t) = &mut self.trace {
            t.settled(state.as_ref());
        }
        if self.fanout.is_none()
            && let Some(joined) = self.joined.take()
        {
            joined.complete(&self.origin, state);
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
