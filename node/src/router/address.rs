//! Address actors: one per routable address, found through the router's
//! `DashMap` registry. An address knows its local consumer links and the
//! producer links waiting on it, picks the destination of every delivery by
//! its distribution (closest, balanced, multicast), and tells producers when
//! they may have credit (only while the address has a consumer).
//!
//! Resend released: a delivery a consumer released comes back and is
//! offered to a consumer that has not had it ([`Detours::tried`]),
//! never through a neighbour that released it
//! ([`Detours::released_by`]); with none left it goes home released.
//!
//! Scale: an address actor hears of the mesh only what concerns it. A change
//! of the remote routers of an address reaches that address's actor alone
//! ([`AddressRegistry::addresses_changed`]); a change of routes or
//! neighbours reaches only the actors that route through the mesh (remote
//! routers, or deliveries waiting for routes: the registry's watchers,
//! [`AddressRegistry::mesh_changed`]). Either way the actor reads its own
//! entry of [`crate::mesh::RemoteAddresses`] and the latest [`MeshView`]
//! when it handles [`MeshChanged`], so the message carries nothing and
//! duplicates are harmless. So attaching the N-th address costs the same as
//! the first.
//!
//! Reclaiming: an actor with no links, no remote routers, nothing parked and
//! nothing outstanding through a next hop for [`RECLAIM_AFTER`] removes
//! itself from the registry (a dynamic reply address leaves nothing behind).
//! A message that still reaches it afterwards (sent by someone who looked
//! the actor up just before) is passed on to the address's new actor, so
//! nothing sent to a retired actor is lost; it stops once nobody holds its
//! address.
//!
//! Failover: deliveries that were in flight to a lost neighbour come back
//! as [`Reroute`]. They never go to that neighbour again, nor to a router
//! reached through it, and they wait (at most [`REROUTE_WAIT`]) for a mesh
//! view whose routes no longer pass the lost neighbour ([`routes_avoid`]),
//! so they take the new shortest path rather than whatever the stale routes
//! leave; then they are routed like any other delivery. The exception: a
//! neighbour back as the instance it was lost as ([`back_as_before`]: not
//! restarted, so it still has its duplicate record of them) may have them
//! again, and a unicast one with no other path waits for that within the
//! same bound ([`awaits_lost_neighbour`]). With no path they go back
//! modified (delivery-failed): they had been sent. Multicast copies
//! lost with a neighbour come back for the routers that were behind it
//! ([`Reach::Toward`]) and go toward those by this router's routes, sharing
//! the fan-out of their message (ARCHITECTURE.md, multicast through a
//! failure). A delivery whose
//! chosen next hop's stream has just closed (the view not updated yet) waits
//! the same way instead of being handed to a stopped peer actor; it had not
//! been sent, so that neighbour may have it once back as the same
//! instance ([`back_as_before`]), and with no path after the wait it goes
//! back released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;

use super::link::LinkCounters;
use crate::config::address::Distribution;
use crate::delivery::{ConnId, Detours, Fanout, Reach, RoutedDelivery, VisitedRouters};
use crate::mesh::data::PeerDeliver;
use crate::mesh::{MeshHandle, MeshView};
use bote_amqp::{DeliveryState, LinkId};
use bote_topology::RouterId;
use bote_topology::policy::{self, Choice, Cursor, LocalLink, RemoteRouter};

/// Routed deliveries handed to an egress connection for one of its links.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub link: LinkId,
    pub deliveries: Vec<RoutedDelivery>,
}

/// Tells a producer link whether its address has a path (a consumer) now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PathState {
    pub link: LinkId,
    pub address: Arc<str>,
    pub has_path: bool,
}

/// A consumer link (a receiver attached to the router) joins the address.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachConsumer {
    pub conn: ConnId,
    pub link: LinkId,
    pub deliver: Recipient<Deliver>,
    pub counters: Arc<LinkCounters>,
    pub capacity: u32,
}

/// A consumer link left. `returned` are the deliveries routed to it that it
/// never sent; the address gives them to another consumer or releases them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachConsumer {
    pub conn: ConnId,
    pub link: LinkId,
    pub returned: Vec<RoutedDelivery>,
}

/// A producer link (a sender attached to the router) waits on the address.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachProducer {
    pub conn: ConnId,
    pub link: LinkId,
    pub notify: Recipient<PathState>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachProducer {
    pub conn: ConnId,
    pub link: LinkId,
}

/// Deliveries to route on this address.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forward(pub Vec<RoutedDelivery>);

/// Deliveries in flight to a neighbour that was lost (each with its
/// `detours` naming it), to route again on another path.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reroute(pub Vec<RoutedDelivery>);

/// The longest a re-forwarded delivery waits for routes around the lost
/// neighbour (they normally come a few milliseconds after the loss).
pub const REROUTE_WAIT: Duration = Duration::from_secs(2);

/// True once `view` no longer routes through the neighbour `lost`: its
/// stream is gone from the view and no route's next hop is `lost`.
pub fn routes_avoid(view: Option<&MeshView>, lost: &RouterId) -> bool {
    view.is_some_and(|v| {
        !v.peers.contains_key(lost) && v.routes.iter().all(|(_, r)| r.next_hop != *lost)
    })
}

/// A parked delivery lost with neighbour `lost` and waiting until `until`
/// may be routed at `now`: the routes avoid that neighbour, or the wait is
/// over (it is then routed on the routes there are, still never toward
/// the lost neighbour unless it is back as before, [`back_as_before`]).
pub fn may_reroute(
    view: Option<&MeshView>,
    lost: Option<&RouterId>,
    until: Instant,
    now: Instant,
) -> bool {
    until <= now || lost.is_none_or(|lost| routes_avoid(view, lost))
}

/// The neighbour a re-forwarded delivery was lost with
/// ([`Detours::resent_from`], which had it unsettled) is up again as the
/// instance it was lost as ([`Detours::resent_instance`], the view's
/// [`MeshView::instances`]) on a new stream: a router paused past the
/// hello timeout, or whose link failed for a moment, and not restarted
/// (the lost stream itself, in a view not updated yet, is not back). It
/// still has its record of the delivery's mesh identity (`mesh::dedup`,
/// kept `REMEMBERED` after the loss), so the delivery may go through it
/// again: it answers the copy with the outcome the consumer gave (or
/// waits for it) and never delivers it twice. A restarted neighbour (a
/// new instance) has no such record and stays avoided.
///
/// A delivery routed to the neighbour's stream after that stream had closed
/// (never sent, [`Detours::set_not_sent_to`]) is back for it on the same
/// terms, and goes there rather than back `released` to its sender. A
/// restarted neighbour is avoided for it too: it is a new process, and
/// what was routed to the old one is not handed to it (letting it through
/// broke the MQTT session hand-over across a restart,
/// `test_mqtt.py::test_a_session_outlives_its_router_...`).
pub fn back_as_before(view: Option<&MeshView>, detours: &Detours) -> bool {
    match (view, detours.resent_from(), detours.resent_instance()) {
        (Some(v), Some(lost), Some(then)) => v
            .instances
            .get(lost)
            .is_some_and(|now| now.instance == then.instance && now.stream != then.stream),
        _ => false,
    }
}

/// A unicast delivery (`unicast`) parked for the neighbour it was lost
/// with, or whose stream it found closed, with no path now (`has_path()`:
/// no consumer it may go to, here or remote) keeps waiting for that
/// neighbour to come back as the same instance ([`back_as_before`])
/// rather than going back at once: `modified` for one that had been sent
/// there (which an at-least-once sender answers by sending it again: a
/// duplicate if the lost path had delivered it), `released` for one that
/// had not. Not when the neighbour came back restarted, nor when the
/// stream is not known (no instance recorded): those go on (or back) as
/// soon as the routes avoid the neighbour. The wait is the parking's, at
/// most [`REROUTE_WAIT`]. Multicast copies do not wait for it: they are
/// re-forwarded toward the routers behind the lost neighbour by other
/// paths as before, and with none given up.
pub fn awaits_lost_neighbour(
    view: Option<&MeshView>,
    detours: &Detours,
    unicast: bool,
    has_path: impl FnOnce() -> bool,
) -> bool {
    let (Some(lost), Some(then)) = (detours.resent_from(), detours.resent_instance()) else {
        return false;
    };
    let restarted = view
        .and_then(|v| v.instances.get(lost))
        .is_some_and(|now| now.instance != then.instance);
    unicast && !restarted && !has_path()
}

/// A delivery that `visited` these routers and took these `detours` must
/// not go to remote router `router` if it visited it or the next hop
/// `next_hop`, nor through a neighbour that released it, nor to or
/// through the neighbour it was lost with unless that one is `back` as
/// before ([`back_as_before`]), nor to or through one it was lost with
/// before that ([`Detours::lost_before`]).
pub fn excluded(
    router: &RouterId,
    next_hop: &RouterId,
    visited: &VisitedRouters,
    detours: &Detours,
    back: bool,
) -> bool {
    visited.contains(router)
        || visited.contains(next_hop)
        || detours.released_by().contains(next_hop)
        || detours.lost_before(router)
        || detours.lost_before(next_hop)
        || (!back
            && detours
                .resent_from()
                .is_some_and(|lost| lost == router || lost == next_hop))
}

/// The mesh changed in a way that may concern this address (its remote
/// routers, or the routes): the actor re-reads its entry of the remote
/// address table and the latest view.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MeshChanged;

/// How long an address actor stays idle (no links, no remote routers,
/// nothing in flight) before it is reclaimed.
pub const RECLAIM_AFTER: Duration = Duration::from_secs(1);

/// Deliveries for one neighbour (its id, its peer actor) from one pass.
type RemoteBatch = (RouterId, Recipient<PeerDeliver>, Vec<RoutedDelivery>);

/// A remote router with consumers for the address, and the neighbour that is
/// the next hop toward it.
struct Remote {
    router: RouterId,
    cost: u32,
    next_hop: RouterId,
    /// Where deliveries for `next_hop` go (its peer actor).
    peer: Recipient<PeerDeliver>,
    /// Unsettled deliveries of this address out through `next_hop`.
    outstanding: Arc<std::sync::atomic::AtomicU32>,
    /// An edge router's uplink, taken only while the address has no local
    /// consumer (traffic between clients of one edge stays on the edge).
    uplink: bool,
}

impl Remote {
    /// [`excluded`] for this remote router.
    fn excluded_for(&self, d: &RoutedDelivery, back: bool) -> bool {
        excluded(&self.router, &self.next_hop, &d.visited, &d.detours, back)
    }
}

struct Consumer {
    conn: ConnId,
    link: LinkId,
    deliver: Recipient<Deliver>,
    counters: Arc<LinkCounters>,
    capacity: u32,
}

struct Producer {
    conn: ConnId,
    link: LinkId,
    notify: Recipient<PathState>,
}

/// Counters of what an address did, read by management (`router.address`)
/// through the read model; written only by the address's actor.
#[derive(Debug, Default)]
pub struct AddressStats {
    /// Messages the address actor handled (all kinds).
    pub handled: std::sync::atomic::AtomicU64,
    /// Of those, [`MeshChanged`] (the mesh changed something that concerns
    /// the address).
    pub mesh_changes: std::sync::atomic::AtomicU64,
    /// Deliveries handed to a consumer or a neighbour.
    pub delivered: std::sync::atomic::AtomicU64,
    pub released_no_consumer: std::sync::atomic::AtomicU64,
    pub dropped_presettled: std::sync::atomic::AtomicU64,
    /// Deliveries that entered the router here from a local sender
    /// (qdrouterd `deliveriesIngress`; given-back ones are not counted again).
    pub ingress: std::sync::atomic::AtomicU64,
    /// Deliveries that arrived from a neighbour router.
    pub from_mesh: std::sync::atomic::AtomicU64,
    /// Deliveries handed to local consumers (`deliveriesEgress`).
    pub egress: std::sync::atomic::AtomicU64,
    /// Deliveries that arrived from a neighbour and went on to another
    /// (`deliveriesTransit`).
    pub transit: std::sync::atomic::AtomicU64,
    /// Deliveries sent to neighbours.
    pub to_mesh: std::sync::atomic::AtomicU64,
    /// Of those, how many went to each neighbour (the console's per-link
    /// traffic; one lock per batch sent, not per delivery).
    pub to_neighbour: std::sync::Mutex<std::collections::BTreeMap<RouterId, u64>>,
    /// Local consumer links now (`subscriberCount`).
    pub subscribers: std::sync::atomic::AtomicU32,
    /// Remote routers with consumers now (`remoteCount`).
    pub remote: std::sync::atomic::AtomicU32,
    /// The address's distribution, fixed when its actor started.
    pub distribution: std::sync::OnceLock<Distribution>,
}

pub struct AddressActor {
    address: Arc<str>,
    /// `address` as the mesh names it.
    key: bote_topology::Address,
    /// The registry's shared part (to retire, to watch routes).
    directory: std::sync::Weak<Directory>,
    /// The remote routers with consumers for the address (the mesh's table
    /// entry, as last read).
    routers: std::collections::BTreeSet<RouterId>,
    /// Listed among the registry's route watchers.
    watching: bool,
    /// A reclaim check is scheduled.
    reclaim_scheduled: bool,
    /// Removed from the registry: every message goes on to the address's
    /// new actor.
    retired: bool,
    distribution: Distribution,
    /// The configured priority of the address, which its messages get in
    /// place of their own (read when the actor starts, like the
    /// distribution).
    priority: Option<u8>,
    consumers: Vec<Consumer>,
    producers: Vec<Producer>,
    /// Round-robin position (closest; ties of balanced without remote
    /// routers).
    cursor: Cursor,
    stats: Arc<AddressStats>,
    /// The router's mesh, one handle shared by every address actor (a
    /// copy of the handle per actor was an allocation (its `bound` list)
    /// and about ten reference counts per address, and `refresh` copied
    /// it again on every attach).
    mesh: Option<Arc<MeshHandle>>,
    /// Remote routers with consumers, cheapest first.
    remote: Vec<Remote>,
    /// `remote` as the forwarding policy weighs it (same order; rebuilt
    /// with it, outstanding counts and exclusions refreshed per delivery).
    remote_candidates: Vec<RemoteRouter>,
    /// The local consumer links as the forwarding policy weighs them,
    /// refilled per delivery (kept to reuse its allocation).
    local_candidates: Vec<LocalLink>,
    /// The latest mesh view (routes and origin trees for multicast).
    view: Option<Arc<MeshView>>,
    /// Outstanding (unsettled) deliveries per next hop, kept across views.
    hop_outstanding: std::collections::HashMap<RouterId, Arc<std::sync::atomic::AtomicU32>>,
    /// Re-forwarded deliveries waiting for routes around the neighbour they
    /// were lost with, each with the time it stops waiting.
    parked: Vec<(Instant, RoutedDelivery)>,
    /// Fires when the first parked delivery stops waiting.
    park_timer: Option<SpawnHandle>,
    /// Sequence numbers for the unsettled multicast messages entering the
    /// mesh here.
    sequences: std::ops::Range<u64>,
    /// The last multicast plan along a tree, for (origin, arrived from),
    /// valid for the current view.
    tree_plan: Option<(Option<RouterId>, Option<RouterId>, MulticastHops)>,
    /// When the routes last changed (multicast copies name their
    /// destinations for a while after, see [`EXPLICIT_AFTER_ROUTES_CHANGE`]).
    routes_changed: Option<Instant>,
    /// A subscription filter with consumers somewhere matches this address
    /// (`router::filter`): its producers have a path through the filter.
    filter_path: bool,
}

/// For this long after the routes change, the copies of a multicast
/// delivery leave its ingress router naming the routers they are for
/// (`Transfer.destinations`), which every router then reaches by its own
/// routes: a router downstream that still sees the old tree of the ingress
/// router would otherwise pass a copy on to none or the wrong ones. The
/// same wait as [`REROUTE_WAIT`], which covers the mesh's convergence.
pub const EXPLICIT_AFTER_ROUTES_CHANGE: Duration = REROUTE_WAIT;

/// The next hops of a multicast delivery, each with the routers with
/// consumers behind it.
type MulticastHops = Arc<Vec<(RouterId, Arc<[RouterId]>)>>;

impl AddressActor {
    /// An actor outside any registry (it is never reclaimed).
    pub fn new(
        address: Arc<str>,
        distribution: Distribution,
        stats: Arc<AddressStats>,
        mesh: Option<MeshHandle>,
    ) -> Self {
        Self::in_directory(
            address,
            distribution,
            stats,
            mesh.map(Arc::new),
            std::sync::Weak::new(),
        )
    }

    fn in_directory(
        address: Arc<str>,
        distribution: Distribution,
        stats: Arc<AddressStats>,
        mesh: Option<Arc<MeshHandle>>,
        directory: std::sync::Weak<Directory>,
    ) -> Self {
        AddressActor {
            key: bote_topology::Address::new(address.clone()),
            directory,
            routers: std::collections::BTreeSet::new(),
            watching: false,
            reclaim_scheduled: false,
            retired: false,
            address,
            distribution,
            priority: None,
            consumers: Vec::new(),
            producers: Vec::new(),
            cursor: Cursor::default(),
            stats,
            mesh,
            remote: Vec::new(),
            remote_candidates: Vec::new(),
            local_candidates: Vec::new(),
            view: None,
            hop_outstanding: std::collections::HashMap::new(),
            parked: Vec::new(),
            park_timer: None,
            sequences: 0..0,
            tree_plan: None,
            routes_changed: None,
            filter_path: false,
        }
    }

    /// A consumer exists here or on a reachable router of the mesh.
    fn has_path(&self) -> bool {
        !self.consumers.is_empty() || !self.remote.is_empty() || self.filter_path
    }

    /// Re-reads whether a known subscription filter matches the address;
    /// tells the producers if that changed whether it has a path.
    fn refresh_filters(&mut self) {
        let had_path = self.has_path();
        self.filter_path = !super::filter::is_filter(&self.address)
            && self
                .directory
                .upgrade()
                .is_some_and(|d| d.filters.any_match(&self.address));
        if had_path != self.has_path() {
            self.notify_producers();
        }
    }

    /// The address is a subscription filter whose local consumers came or
    /// went: the router's filter index says so, and the addresses it
    /// matches hear of it.
    fn local_filter_changed(&self, has_consumers: bool) {
        if !super::filter::is_filter(&self.address) {
            return;
        }
        if let Some(d) = self.directory.upgrade() {
            d.filter_changed(&self.address, Some(has_consumers), None);
        }
    }

    /// An edge router between uplinks (the active one dropped, the next
    /// alternate not up yet) with no local consumer for this address:
    /// re-forwarded deliveries wait for the next uplink (at most
    /// [`REROUTE_WAIT`]) rather than going back at once, so that the
    /// interior it reaches answers those its consumers already have
    /// ([`crate::mesh::dedup`]) instead of the sender sending them again.
    fn awaiting_uplink(&self) -> bool {
        self.consumers.is_empty()
            && self.remote.is_empty()
            && self.mesh.as_ref().is_some_and(|m| {
                m.mode == crate::config::RouterMode::Edge
                    && m.remote_addresses().default_router().is_none()
            })
    }

    /// Counts a handled message; true if the actor is retired (the caller
    /// passes the message on with [`Self::successor`]).
    fn count(&self) -> bool {
        self.stats
            .handled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.retired
    }

    /// The address's current actor (a new one if none), for messages that
    /// reach this one after it retired.
    fn successor(&self) -> Option<Addr<AddressActor>> {
        self.directory.upgrade().map(|d| d.get(&self.address))
    }

    /// Nothing holds the actor: no links, no remote routers, nothing parked
    /// or outstanding through a next hop.
    fn idle(&self) -> bool {
        self.unused()
            && self
                .hop_outstanding
                .values()
                .all(|n| n.load(std::sync::atomic::Ordering::Relaxed) == 0)
    }

    /// No links, no remote routers, nothing parked.
    fn unused(&self) -> bool {
        self.consumers.is_empty()
            && self.producers.is_empty()
            && self.routers.is_empty()
            && self.remote.is_empty()
            && self.parked.is_empty()
    }

    /// Schedules a reclaim check if the actor has nothing left to do.
    fn maybe_reclaim(&mut self, ctx: &mut Context<Self>) {
        if self.reclaim_scheduled || self.retired || !self.unused() {
            return;
        }
        self.reclaim_scheduled = true;
        let after = self
            .directory
            .upgrade()
            .map_or(RECLAIM_AFTER, |d| d.reclaim_after());
        ctx.run_later(after, |act, ctx| {
            act.reclaim_scheduled = false;
            if act.idle() {
                act.retire(ctx);
            } else {
                // Still unused but deliveries outstanding (their outcomes
                // do not pass here): look again later.
                act.maybe_reclaim(ctx);
            }
        });
    }

    /// Removes the actor from the registry; from now on it passes every
    /// message on to the address's next actor.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        let Some(directory) = self.directory.upgrade() else {
            return;
        };
        let me = ctx.address();
        if directory
            .map
            .remove_if(&*self.address, |_, a| *a == me)
            .is_some()
        {
            directory.stats.remove(&*self.address);
            tracing::trace!(address = %self.address, "address actor reclaimed");
        }
        self.set_watching(false);
        self.retired = true;
    }

    /// Joins or leaves the registry's route watchers.
    fn set_watching(&mut self, watch: bool) {
        if self.watching == watch {
            return;
        }
        self.watching = watch;
        if let Some(directory) = self.directory.upgrade() {
            if watch {
                directory.watchers.insert(self.address.clone(), ());
            } else {
                directory.watchers.remove(&*self.address);
            }
        }
    }

    /// Re-reads the address's remote routers and the latest mesh view, and
    /// rebuilds the remote candidates from them.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(mesh) = self.mesh.clone() else {
            return;
        };
        let had_path = self.has_path();
        self.routers = mesh.remote_routers(&self.key);
        // Watch before reading the view: a route change published after
        // this read reaches the actor as a message.
        self.set_watching(!self.routers.is_empty() || !self.parked.is_empty());
        let view = mesh.view();
        self.remote.clear();
        let uplink = mesh.remote_addresses().default_router();
        for router in &self.routers {
            let Some(route) = view.route(router) else {
                continue;
            };
            let Some(peer) = view.peers.get(&route.next_hop) else {
                continue;
            };
            let outstanding = self
                .hop_outstanding
                .entry(route.next_hop.clone())
                .or_default()
                .clone();
            self.remote.push(Remote {
                router: router.clone(),
                cost: route.cost,
                next_hop: route.next_hop.clone(),
                peer: peer.clone(),
                outstanding,
                uplink: uplink.as_ref() == Some(router),
            });
        }
        self.remote
            .sort_by(|a, b| (a.cost, &a.router).cmp(&(b.cost, &b.router)));
        self.stats.remote.store(
            self.remote.len() as u32,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.remote_candidates = self
            .remote
            .iter()
            .map(|r| RemoteRouter {
                router: r.router.clone(),
                cost: r.cost,
                outstanding: 0,
                excluded: false,
            })
            .collect();
        if self
            .view
            .as_ref()
            .is_some_and(|old| !Arc::ptr_eq(&old.routes, &view.routes))
        {
            self.routes_changed = Some(Instant::now());
        }
        self.view = Some(view);
        self.tree_plan = None;
        if had_path != self.has_path() {
            self.notify_producers();
        }
        if !self.parked.is_empty() {
            self.reroute(Vec::new(), Instant::now(), ctx);
        }
        self.maybe_reclaim(ctx);
    }

    /// Where a multicast delivery goes from here: how many local copies,
    /// and each next hop with the routers with consumers behind it, per
    /// `bote_topology::policy` (the simulator runs the same functions).
    /// Along the ingress router's tree ([`Reach::Tree`]: one copy per local
    /// consumer and per distinct next hop of the tree, never back where it
    /// came from), or, for a copy re-forwarded around a lost neighbour
    /// ([`Reach::Toward`]), toward its destinations by the local routes,
    /// never through a router it visited nor the neighbour it was lost
    /// with, with local copies only if this router is a destination.
    fn multicast_plan(&mut self, d: &RoutedDelivery) -> (usize, MulticastHops) {
        let Some(view) = &self.view else {
            return (self.consumers.len(), Arc::default());
        };
        if let Reach::Toward(destinations) = &d.reach {
            // The neighbour it was lost with stays avoided even once back
            // as the same instance (unlike a unicast resend,
            // [`back_as_before`]): the copy goes toward the routers behind
            // it by other paths, or that branch is given up.
            let plan =
                policy::multicast_toward(&view.routes, self.consumers.len(), destinations, |r| {
                    d.visited.contains(r)
                        || d.detours.resent_from() == Some(r)
                        || d.detours.lost_before(r)
                });
            let hops = if d.hops_left == 0 {
                Vec::new()
            } else {
                plan.next_hops
                    .into_iter()
                    .zip(plan.destinations)
                    .map(|(hop, behind)| (hop, Arc::from(behind)))
                    .collect()
            };
            return (plan.local_copies, Arc::new(hops));
        }
        if self.remote.is_empty() || d.hops_left == 0 {
            return (self.consumers.len(), Arc::default());
        }
        let origin = d.visited.first();
        let arrived_from = d.visited.last();
        let hops = match &self.tree_plan {
            Some((o, a, hops)) if o.as_ref() == origin && a.as_ref() == arrived_from => {
                hops.clone()
            }
            _ => self.tree_hops(d),
        };
        if hops.iter().any(|(hop, _)| d.visited.contains(hop)) {
            let hops = hops
                .iter()
                .filter(|(hop, _)| !d.visited.contains(hop))
                .cloned()
                .collect();
            return (self.consumers.len(), Arc::new(hops));
        }
        (self.consumers.len(), hops)
    }

    /// The next hops along the ingress router's tree (kept for the next
    /// delivery with the same origin arriving from the same neighbour).
    fn tree_hops(&mut self, d: &RoutedDelivery) -> MulticastHops {
        let Some(view) = &self.view else {
            return Arc::default();
        };
        // Routers attached over an edge stream are not in the link state:
        // a copy that came up from one of this router's edges goes on as
        // if it entered here (its tree is this router's), and each
        // attached router with consumers gets a copy of its own (unless
        // the copy came from it: `multicast_plan` drops visited hops).
        // Without attached routers this is the ingress router's tree, as
        // before. (A router further on does not know the edge it entered
        // by: ARCHITECTURE.md, "Edge routers".)
        let attached = |r: &&RouterId| view.attached.contains_key(*r);
        let origin = d.visited.iter().find(|r| !attached(r));
        let arrived_from = d.visited.last().filter(|r| !attached(r));
        let (attached, routers): (Vec<RouterId>, Vec<RouterId>) = self
            .remote
            .iter()
            .map(|r| r.router.clone())
            .partition(|r| view.attached.contains_key(r));
        let tree = origin.and_then(|o| view.routes.multicast_tree(o));
        let plan = policy::multicast(
            &view.routes,
            self.consumers.len(),
            &routers,
            arrived_from,
            tree.as_deref(),
        );
        tracing::trace!(address = %self.address, ?routers, ?attached, ?arrived_from, next_hops = ?plan.next_hops, "multicast plan");
        let hops: MulticastHops = Arc::new(
            plan.next_hops
                .into_iter()
                .zip(plan.destinations)
                .map(|(hop, behind)| (hop, Arc::from(behind)))
                .chain(
                    attached
                        .into_iter()
                        .map(|r| (r.clone(), Arc::from(vec![r]))),
                )
                .collect(),
        );
        self.tree_plan = Some((origin.cloned(), arrived_from.cloned(), hops.clone()));
        hops
    }

    /// A new identity for an unsettled multicast message entering the mesh
    /// here, shared by all its copies (0 outside a mesh).
    fn next_sequence(&mut self) -> u64 {
        if let Some(n) = self.sequences.next() {
            return n;
        }
        let Some(mesh) = &self.mesh else {
            return 0;
        };
        self.sequences = mesh.sequences();
        self.sequences.next().unwrap_or(0)
    }

    /// One copy of a multicast delivery per local consumer and per next hop
    /// of its plan ([`AddressActor::multicast_plan`]), sharing one outcome
    /// ([`Fanout`]); a copy re-forwarded here already holds a share of its
    /// message's outcome, which its own copies take over. A copy for a
    /// neighbour whose stream has just closed waits for routes around it
    /// (`stalled`) as one re-forwarded for the routers behind it, checked
    /// there like one (a presettled one is dropped).
    fn fan_out(
        &mut self,
        mut d: RoutedDelivery,
        batches: &mut [Vec<RoutedDelivery>],
        remote_batches: &mut Vec<RemoteBatch>,
        stalled: &mut Vec<RoutedDelivery>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let (local, hops) = self.multicast_plan(&d);
        let copies = local + hops.len();
        if copies == 0 {
            match d.fanout {
                // Its share ends here: nobody got it this way.
                Some(_) => {
                    let given_up = if d.resend {
                        DeliveryState::delivery_failed()
                    } else {
                        DeliveryState::Released
                    };
                    d.return_to_sender(Some(given_up));
                }
                None => self.no_consumer(d),
            }
            return;
        }
        if d.ingress_sequence == 0 && !d.presettled && d.visited.is_empty() && !hops.is_empty() {
            d.ingress_sequence = self.next_sequence();
        }
        let fanout = match d.fanout.take() {
            Some(f) => {
                f.add(copies as u32 - 1);
                f
            }
            None => Fanout::under(copies as u32, d.presettled, d.joined.take()),
        };
        if let Some(stream) = &d.stream {
            // Each copy reads it: its chunks stay until all have.
            stream.add_readers(copies - 1);
        }
        // Right after the routes changed, the routers downstream may still
        // see the old tree: copies leaving their ingress router then name
        // their destinations, which each router reaches by its own routes.
        let toward = matches!(d.reach, Reach::Toward(_))
            || (d.visited.is_empty()
                && self
                    .routes_changed
                    .is_some_and(|at| at.elapsed() < EXPLICIT_AFTER_ROUTES_CHANGE));
        let copy = |d: &RoutedDelivery, reach: Reach, resend: bool| RoutedDelivery {
            address: d.address.clone(),
            message: d.message.clone(),
            presettled: d.presettled,
            priority: d.priority,
            origin: d.origin.clone(),
            fanout: Some(fanout.clone()),
            detours: Detours::default(),
            stream: d.stream.clone(),
            visited: d.visited.clone(),
            hops_left: d.hops_left,
            remote_outstanding: None,
            ingress_sequence: d.ingress_sequence,
            resend,
            // Multicast copies keep end-to-end credit: their sender's
            // credit comes back with the fan-out's one outcome
            // (`OutcomeBatch::credit` leaves them alone).
            credited: false,
            reach,
            // Sibling send spans under the one receive span.
            trace: d.trace.as_ref().map(|t| t.copy()),
            joined: None,
            outcome_sent: false,
        };
        for (i, batch) in batches.iter_mut().enumerate().take(local) {
            self.consumers[i].counters.undelivered.fetch_add(1, Relaxed);
            batch.push(copy(&d, Reach::Tree, false));
        }
        let peers = self.view.as_ref().map(|v| &v.peers);
        for (hop, behind) in hops.iter() {
            match peers.and_then(|p| p.get(hop)).filter(|p| p.connected()) {
                Some(peer) => {
                    let reach = if toward {
                        Reach::Toward(behind.clone())
                    } else {
                        Reach::Behind(behind.clone())
                    };
                    let c = copy(&d, reach, d.resend);
                    match remote_batches.iter_mut().find(|(_, p, _)| p == peer) {
                        Some((_, _, b)) => b.push(c),
                        None => remote_batches.push((hop.clone(), peer.clone(), vec![c])),
                    }
                }
                // A presettled copy is never sent twice, and the routers
                // behind the closed stream may get the message another way
                // while the routes change: it is dropped (at most once).
                None if d.presettled => {
                    self.stats.dropped_presettled.fetch_add(1, Relaxed);
                    copy(&d, Reach::Tree, false).return_to_sender(None);
                }
                // Those routers may get the message another way while the
                // routes change: checked there as a resend.
                None => {
                    let mut c = copy(&d, Reach::Toward(behind.clone()), true);
                    c.detours.set_not_sent_to(hop.clone(), None);
                    stalled.push(c);
                }
            }
        }
        // The copies carry the outcome now.
        d.consumed();
    }

    fn notify_producers(&self) {
        let has_path = self.has_path();
        for p in &self.producers {
            p.notify.do_send(PathState {
                link: p.link,
                address: self.address.clone(),
                has_path,
            });
        }
    }

    /// Where a unicast delivery goes, by the address's distribution, decided
    /// by `bote_topology::policy` (the simulator runs the same functions):
    /// closest (local links round-robin, else the cheapest remote routers
    /// round-robin) or balanced (local links by undelivered + unsettled
    /// within capacity, 0 winning at once, remote routers by the address's
    /// unsettled deliveries through their next hop + path cost; with every
    /// candidate full, the least loaded local link queues it). Consumers
    /// that gave this delivery back already and remote routers it may not
    /// go to ([`Remote::excluded_for`]) are not candidates.
    fn pick(&mut self, d: &RoutedDelivery) -> Option<Choice> {
        use std::sync::atomic::Ordering::Relaxed;
        self.local_candidates.clear();
        self.local_candidates
            .extend(self.consumers.iter().map(|c| LocalLink {
                undelivered: c.counters.undelivered.load(Relaxed),
                unsettled: c.counters.unsettled.load(Relaxed),
                capacity: c.capacity,
                tried: d.detours.tried().contains(&(c.conn, c.link)),
            }));
        let back = back_as_before(self.view.as_deref(), &d.detours);
        for (candidate, r) in self.remote_candidates.iter_mut().zip(&self.remote) {
            candidate.outstanding = r.outstanding.load(Relaxed);
            candidate.excluded =
                r.excluded_for(d, back) || (r.uplink && !self.consumers.is_empty());
        }
        let (local, remote) = (&self.local_candidates, &self.remote_candidates);
        match self.distribution {
            Distribution::Balanced => {
                policy::balanced(local, remote, d.presettled, &mut self.cursor)
                    .or_else(|| policy::balanced_overflow(local, remote, &mut self.cursor))
            }
            _ => policy::closest(local, remote, &mut self.cursor),
        }
    }

    /// Some consumer may take `d`, here or remote: [`AddressActor::pick`]'s
    /// candidates without picking one (the cursors stay).
    fn has_path_for(&self, d: &RoutedDelivery) -> bool {
        let back = back_as_before(self.view.as_deref(), &d.detours);
        // (An edge's uplink is taken only while it has no local consumer.)
        let local = !self.consumers.is_empty();
        self.consumers
            .iter()
            .any(|c| !d.detours.tried().contains(&(c.conn, c.link)))
            || self
                .remote
                .iter()
                .any(|r| !(r.excluded_for(d, back) || (r.uplink && local)))
    }

    fn forward(&mut self, deliveries: Vec<RoutedDelivery>, ctx: &mut Context<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        // Picked a next hop whose stream has just closed (the view has not
        // caught up yet): they wait for routes around it like re-forwarded
        // deliveries (never sent, so they stay `released` if no path).
        let mut stalled: Vec<RoutedDelivery> = Vec::new();
        // Batch per consumer so each egress connection gets one message.
        let mut batches: Vec<Vec<RoutedDelivery>> = Vec::new();
        batches.resize_with(self.consumers.len(), Vec::new);
        let mut remote_batches: Vec<RemoteBatch> = Vec::new();
        // Counted here and added once per batch: the counters are shared
        // with the management thread.
        let (mut ingress, mut from_mesh) = (0u64, 0u64);
        let total = deliveries.len();
        for (n, mut d) in deliveries.into_iter().enumerate() {
            // A batch's first delivery for a consumer or neighbour sizes its
            // vector for its share of the rest (all of it with one
            // consumer): no regrowing (and moving) delivery by delivery, and
            // no batch-sized vector per consumer among many.
            let left = total - n;
            if let Some(p) = self.priority {
                d.priority = p;
            }
            if d.fanout.is_none() && d.detours.none_gave_it_back() && !d.resend {
                if d.visited.is_empty() {
                    ingress += 1;
                } else {
                    from_mesh += 1;
                }
            }
            if self.distribution == Distribution::Multicast
                && (d.fanout.is_none() || matches!(d.reach, Reach::Toward(_)))
            {
                self.fan_out(d, &mut batches, &mut remote_batches, &mut stalled);
                continue;
            }
            if d.fanout.is_some() {
                // A multicast copy given back by its consumer: multicast
                // copies are not re-sent, the copy counts as released.
                d.return_to_sender(Some(DeliveryState::Released));
                continue;
            }
            match self.pick(&d) {
                Some(Choice::Local(i)) => {
                    // `tried` stays: a consumer that gave the delivery back
                    // never gets it again, so two consumers that both
                    // release it cannot pass it between them for ever.
                    self.consumers[i].counters.undelivered.fetch_add(1, Relaxed);
                    if batches[i].capacity() == 0 {
                        let share = left.div_ceil(batches.len());
                        batches[i].reserve_exact(share);
                    }
                    batches[i].push(d);
                }
                Some(Choice::Remote(k)) => {
                    let r = &self.remote[k];
                    if !r.peer.connected() {
                        let current = self
                            .view
                            .as_ref()
                            .and_then(|v| v.instances.get(&r.next_hop))
                            .copied();
                        // Never sent on that stream; back through it once
                        // the same instance is up on a new one (going back
                        // through the neighbour it was lost with, that
                        // instance still answers from its record).
                        d.detours.set_not_sent_to(r.next_hop.clone(), current);
                        stalled.push(d);
                        continue;
                    }
                    if !d.presettled {
                        r.outstanding.fetch_add(1, Relaxed);
                        d.remote_outstanding = Some(r.outstanding.clone());
                    }
                    match remote_batches.iter_mut().find(|(_, p, _)| *p == r.peer) {
                        Some((_, _, b)) => b.push(d),
                        None => {
                            let mut batch =
                                Vec::with_capacity(left.div_ceil(self.remote.len().max(1)));
                            batch.push(d);
                            remote_batches.push((r.next_hop.clone(), r.peer.clone(), batch));
                        }
                    }
                }
                None => self.no_consumer(d),
            }
        }
        if ingress > 0 {
            self.stats.ingress.fetch_add(ingress, Relaxed);
        }
        if from_mesh > 0 {
            self.stats.from_mesh.fetch_add(from_mesh, Relaxed);
        }
        for (next_hop, peer, batch) in remote_batches {
            self.stats.delivered.fetch_add(batch.len() as u64, Relaxed);
            self.stats.to_mesh.fetch_add(batch.len() as u64, Relaxed);
            if let Ok(mut n) = self.stats.to_neighbour.lock() {
                *n.entry(next_hop).or_default() += batch.len() as u64;
            }
            let transit = batch.iter().filter(|d| !d.visited.is_empty()).count();
            self.stats.transit.fetch_add(transit as u64, Relaxed);
            peer.do_send(PeerDeliver(batch));
        }
        if !stalled.is_empty() {
            self.reroute(stalled, Instant::now(), ctx);
        }
        for (i, batch) in batches.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            self.stats.delivered.fetch_add(batch.len() as u64, Relaxed);
            self.stats.egress.fetch_add(batch.len() as u64, Relaxed);
            let c = &self.consumers[i];
            c.deliver.do_send(Deliver {
                link: c.link,
                deliveries: batch,
            });
        }
    }

    /// Parks re-forwarded deliveries until the routes avoid the neighbour
    /// they were lost with, or it is back as the instance it was lost as
    /// ([`back_as_before`]), or their wait is over, and routes those that
    /// are ready; re-arms the timer for the rest. A unicast one with no
    /// path but through that neighbour waits for it to come back
    /// ([`awaits_lost_neighbour`]).
    fn reroute(&mut self, deliveries: Vec<RoutedDelivery>, now: Instant, ctx: &mut Context<Self>) {
        self.parked
            .extend(deliveries.into_iter().map(|d| (now + REROUTE_WAIT, d)));
        let awaiting_uplink = self.awaiting_uplink();
        let view = self.view.as_deref();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(until, d)| {
                if *until <= now {
                    return true;
                }
                let unicast = d.fanout.is_none();
                !awaiting_uplink
                    && (may_reroute(view, d.detours.resent_from(), *until, now)
                        || back_as_before(view, &d.detours))
                    && !awaits_lost_neighbour(view, &d.detours, unicast, || self.has_path_for(d))
            });
        self.parked = waiting;
        self.set_watching(!self.routers.is_empty() || !self.parked.is_empty());
        if let Some(timer) = self.park_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(first) = self.parked.iter().map(|(until, _)| *until).min() {
            self.park_timer = Some(ctx.run_later(
                first.saturating_duration_since(now),
                |act, ctx| {
                    act.park_timer = None;
                    act.reroute(Vec::new(), Instant::now(), ctx);
                    act.maybe_reclaim(ctx);
                },
            ));
        }
        if !ready.is_empty() {
            self.forward(ready.into_iter().map(|(_, d)| d).collect(), ctx);
        }
    }

    /// No consumer can take the delivery: unsettled goes back released
    /// (modified if it was being re-forwarded), presettled is dropped and
    /// counted.
    fn no_consumer(&self, d: RoutedDelivery) {
        use std::sync::atomic::Ordering::Relaxed;
        if d.presettled {
            self.stats.dropped_presettled.fetch_add(1, Relaxed);
            tracing::debug!(address = %self.address, "no consumer: presettled delivery dropped");
        } else {
            self.stats.released_no_consumer.fetch_add(1, Relaxed);
            tracing::trace!(address = %self.address, "no consumer: delivery released");
        }
        d.return_to_sender(Some(DeliveryState::Released));
    }
}

impl Actor for AddressActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.refresh_filters();
        self.refresh(ctx);
        self.maybe_reclaim(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.set_watching(false);
    }
}

/// Passes a message that reached a retired actor on to the address's
/// current actor.
macro_rules! pass_on_if_retired {
    ($self:ident, $msg:ident) => {
        if $self.count() {
            if let Some(next) = $self.successor() {
                next.do_send($msg);
            }
            return;
        }
    };
}

impl Handler<Forward> for AddressActor {
    type Result = ();
    fn handle(&mut self, msg: Forward, ctx: &mut Context<Self>) {
        pass_on_if_retired!(self, msg);
        self.forward(msg.0, ctx);
        self.maybe_reclaim(ctx);
    }
}

impl Handler<Reroute> for AddressActor {
    type Result = ();
    fn handle(&mut self, msg: Reroute, ctx: &mut Context<Self>) {
        pass_on_if_retired!(self, msg);
        self.reroute(msg.0, Instant::now(), ctx);
        self.maybe_reclaim(ctx);
    }
}

impl Handler<AttachConsumer> for AddressActor {
    type Result = ();
    fn handle(&mut self, msg: AttachConsumer, _ctx: &mut Context<Self>) {
        pass_on_if_retired!(self, msg);
        let first = self.consumers.is_empty();
        self.consumers.push(Consumer {
            conn: msg.conn,
            link: msg.link,
            deliver: msg.deliver,
            counters: msg.counters,
            capacity: msg.capacity,
        });
        self.stats.subscribers.store(
            self.consumers.len() as u32,
            std::sync::atomic::Ordering::Relaxed,
        );
        if first {
            if let Some(mesh) = &self.mesh {
                mesh.add_local_address(&self.address);
            }
            self.notify_producers();
            self.local_filter_changed(true);
        }
    }
}

impl Handler<DetachConsumer> for AddressActor {
    type Result = ();
    fn handle(&mut self, msg: DetachConsumer, ctx: &mut Context<Self>) {
        pass_on_if_retired!(self, msg);
        self.consumers
            .retain(|c| !(c.conn == msg.conn && c.link == msg.link));
        if self.cursor.local >= self.consumers.len() {
            self.cursor.local = 0;
        }
        self.stats.subscribers.store(
            self.consumers.len() as u32,
            std::sync::atomic::Ordering::Relaxed,
        );
        let returned: Vec<RoutedDelivery> = msg
            .returned
            .into_iter()
            .map(|mut d| {
                d.detours.add_tried((msg.conn, msg.link));
                d
            })
            .collect();
        if !returned.is_empty() {
            self.forward(returned, ctx);
        }
        if self.consumers.is_empty() {
            if let Some(mesh) = &self.mesh {
                mesh.remove_local_address(&self.address);
            }
            self.notify_producers();
            self.local_filter_changed(false);
        }
        self.maybe_reclaim(ctx);
    }
}

impl Handler<MeshChanged> for AddressActor {
    type Result = ();
    fn handle(&mut self, _msg: MeshChanged, ctx: &mut Context<Self>) {
        if self.count() {
            // The address's next actor reads the mesh when it starts.
            return;
        }
        self.stats
            .mesh_changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.refresh(ctx);
    }
}

/// The subscription filters known to the router changed: the actor
/// re-reads whether one matches its address.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FiltersChanged;

impl Handler<FiltersChanged> for AddressActor {
    type Result = ();
    fn handle(&mut self, _msg: FiltersChanged, _ctx: &mut Context<Self>) {
        if self.count() {
            return;
        }
        self.refresh_filters();
    }
}

impl Handler<AttachProducer> for AddressActor {
    type Result = ();
    fn handle(&mut self, msg: AttachProducer, _ctx: &mut Context<Self>) {
        pass_on_if_retired!(self, msg);
        msg.notify.do_send(PathState {
            link: msg.link,
            address: self.address.clone(),
            has_path: self.has_path(),
        });
        self.producers.push(Producer {
            conn: msg.conn,
            link: msg.link,
            notify: msg.notify,
        });
    }
}

impl Handler<DetachProducer> for AddressActor {
    type Result = ();
    fn handle(&mut self, msg: DetachProducer, ctx: &mut Context<Self>) {
        pass_on_if_retired!(self, msg);
        self.producers
            .retain(|p| !(p.conn == msg.conn && p.link == msg.link));
        self.maybe_reclaim(ctx);
    }
}

/// The router's address registry: address -> address actor, created on first
/// use on a worker arbiter chosen by the address's hash, and removed by the
/// actor itself once idle (see the module doc).
pub struct AddressRegistry {
    directory: Arc<Directory>,
}

/// What the registry and its actors share.
pub struct Directory {
    map: DashMap<Arc<str>, Addr<AddressActor>>,
    /// Where address actors run: the worker arbiters (by the address's hash)
    /// on a standalone router; the mesh's arbiter (one entry) when the router
    /// is part of a mesh — see [`AddressRegistry::new`].
    workers: Vec<actix::dev::ArbiterHandle>,
    /// The address table: replaced whole by management (CREATE or DELETE
    /// of a `router.config.address`); addresses whose actor started
    /// before keep their distribution.
    table: std::sync::RwLock<Arc<crate::config::address::AddressTable>>,
    stats: DashMap<Arc<str>, Arc<AddressStats>>,
    mesh: Option<Arc<MeshHandle>>,
    /// Addresses whose actor routes through the mesh (remote routers, or
    /// deliveries waiting for routes): a route change reaches these only.
    watchers: DashMap<Arc<str>, ()>,
    /// The subscription filters with consumers in the mesh.
    filters: super::filter::FilterIndex,
    /// [`RECLAIM_AFTER`], in milliseconds (tests may change it).
    reclaim_after_ms: std::sync::atomic::AtomicU64,
    me: std::sync::Weak<Directory>,
}

impl AddressRegistry {
    /// Address actors start on `workers`, by the address's hash, except in a
    /// mesh: there they start on the mesh's arbiter, the thread that runs the
    /// peer actors and the inter-router streams, so a delivery crossing the
    /// router goes peer -> address -> peer without a thread hop. Measured on
    /// the 3-router chain (BENCHMARKS.md): the middle router's CPU per message
    /// fell from 2.1-2.4 µs to 1.4-1.5 µs and its context switches halved.
    pub fn new(
        table: crate::config::address::AddressTable,
        workers: Vec<actix::dev::ArbiterHandle>,
        mesh: Option<MeshHandle>,
    ) -> Self {
        let workers = match &mesh {
            Some(m) => vec![m.arbiter.clone()],
            None => workers,
        };
        AddressRegistry {
            directory: Arc::new_cyclic(|me| Directory {
                map: DashMap::new(),
                workers,
                table: std::sync::RwLock::new(Arc::new(table)),
                stats: DashMap::new(),
                mesh: mesh.map(Arc::new),
                watchers: DashMap::new(),
                filters: super::filter::FilterIndex::default(),
                reclaim_after_ms: std::sync::atomic::AtomicU64::new(
                    RECLAIM_AFTER.as_millis() as u64
                ),
                me: me.clone(),
            }),
        }
    }

    /// Routes or neighbours changed: tells the actors that route through
    /// the mesh (the watchers), and no other.
    pub fn mesh_changed(&self, _view: &Arc<MeshView>) {
        let d = &self.directory;
        let watchers: Vec<Arc<str>> = d.watchers.iter().map(|e| e.key().clone()).collect();
        for address in watchers {
            if let Some(actor) = d.map.get(&address) {
                actor.do_send(MeshChanged);
            }
        }
    }

    /// The remote routers of these addresses changed: tells their actors
    /// (those that exist; a new one reads the table when it starts).
    pub fn addresses_changed(&self, addresses: &[bote_topology::Address]) {
        if let Some(mesh) = &self.directory.mesh {
            for address in addresses {
                if super::filter::is_filter(address.as_str()) {
                    let remote = !mesh.remote_routers(address).is_empty();
                    self.directory
                        .filter_changed(&Arc::from(address.as_str()), None, Some(remote));
                }
            }
        }
        for address in addresses {
            if let Some(actor) = self.directory.map.get(address.as_str()) {
                actor.do_send(MeshChanged);
            }
        }
    }

    /// Every address may have changed (an edge's uplink came or went):
    /// tells every actor.
    pub fn all_changed(&self) {
        for actor in self.directory.map.iter() {
            actor.value().do_send(MeshChanged);
        }
    }

    /// The configured distribution of an address (a subscription filter
    /// is multicast whatever the table says).
    pub fn distribution(&self, address: &str) -> Distribution {
        self.directory.distribution(address)
    }

    /// A delivery entering the mesh here, with a copy for every known
    /// subscription filter its address matches (`router::filter`).
    pub fn split(&self, d: RoutedDelivery) -> Vec<RoutedDelivery> {
        super::filter::split(&self.directory.filters, d)
    }

    /// True if some subscription filter has consumers in the mesh (one
    /// atomic load: while none has, [`Self::split`] need not be called).
    pub fn has_filters(&self) -> bool {
        self.directory.filters.any()
    }

    /// The address table in force.
    pub fn table(&self) -> Arc<crate::config::address::AddressTable> {
        self.directory.table()
    }

    /// Replaces the address table (for addresses whose actor starts from
    /// now on).
    pub fn set_table(&self, table: crate::config::address::AddressTable) {
        match self.directory.table.write() {
            Ok(mut t) => *t = Arc::new(table),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(table),
        }
    }

    /// Every address with an actor, with its counters.
    pub fn addresses(&self) -> Vec<(Arc<str>, Arc<AddressStats>)> {
        let mut all: Vec<(Arc<str>, Arc<AddressStats>)> = self
            .directory
            .stats
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The actor of `address`, started on first use.
    pub fn get(&self, address: &str) -> Addr<AddressActor> {
        self.directory.get(address)
    }

    /// Attaches a node of the router itself (the management node, the MQTT
    /// node) as a consumer of each of `addresses`, with link handles 0, 1,
    /// ... of session 0 on `conn`, and room for whatever it is sent.
    pub fn attach_in_process<'a>(
        &self,
        conn: ConnId,
        addresses: impl IntoIterator<Item = &'a str>,
        deliver: &Recipient<Deliver>,
        counters: &Arc<LinkCounters>,
    ) {
        for (handle, address) in addresses.into_iter().enumerate() {
            self.get(address).do_send(AttachConsumer {
                conn,
                link: LinkId {
                    session: bote_amqp::SessionId(0),
                    handle: handle as u32,
                },
                deliver: deliver.clone(),
                counters: counters.clone(),
                capacity: u32::MAX / 2,
            });
        }
    }

    /// The counters of `address`, while it has an actor.
    pub fn stats(&self, address: &str) -> Option<Arc<AddressStats>> {
        self.directory.stats.get(address).map(|s| s.value().clone())
    }

    /// Number of address actors in the registry.
    pub fn len(&self) -> usize {
        self.directory.map.len()
    }

    /// True if no address has an actor.
    pub fn is_empty(&self) -> bool {
        self.directory.map.is_empty()
    }

    /// How long an idle address actor waits before it is reclaimed (default
    /// [`RECLAIM_AFTER`]).
    pub fn set_reclaim_after(&self, after: Duration) {
        self.directory.reclaim_after_ms.store(
            after.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Directory {
    fn distribution(&self, address: &str) -> Distribution {
        match self.table().lookup(address) {
            Distribution::Unavailable => Distribution::Unavailable,
            _ if super::filter::is_filter(address)
                || address == super::filter::RETAIN_ADDRESS
                || address == super::filter::SESSION_ADDRESS =>
            {
                Distribution::Multicast
            }
            d => d,
        }
    }

    /// Records a filter's local consumers or remote routers; if whether it
    /// is known changed, the addresses it matches re-read the index.
    fn filter_changed(&self, filter: &Arc<str>, local: Option<bool>, remote: Option<bool>) {
        if !self.filters.set(filter, local, remote) {
            return;
        }
        for e in self.map.iter() {
            if super::filter::matches(filter, e.key()) && !super::filter::is_filter(e.key()) {
                e.value().do_send(FiltersChanged);
            }
        }
    }

    /// The address table in force.
    fn table(&self) -> Arc<crate::config::address::AddressTable> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn reclaim_after(&self) -> Duration {
        Duration::from_millis(
            self.reclaim_after_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The actor of `address`, started on first use.
    fn get(&self, address: &str) -> Addr<AddressActor> {
        if let Some(a) = self.map.get(address) {
            return a.clone();
        }
        let key: Arc<str> = Arc::from(address);
        self.map
            .entry(key.clone())
            .or_insert_with(|| {
                let distribution = self.distribution(address);
                let priority = self.table().priority(address);
                let stats = Arc::new(AddressStats::default());
                let _ = stats.distribution.set(distribution);
                self.stats.insert(key.clone(), stats.clone());
                let worker = &self.workers[hash(address) % self.workers.len()];
                let k = key.clone();
                let mesh = self.mesh.clone();
                let me = self.me.clone();
                // The actor reads the mesh's table when it starts, which is
                // after it is in the map: a change written before is read
                // then, one written after finds it in the map.
                AddressActor::start_in_arbiter(worker, move |_| {
                    let mut actor = AddressActor::in_directory(k, distribution, stats, mesh, me);
                    actor.priority = priority;
                    actor
                })
            })
            .clone()
    }
}

fn hash(s: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(s) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use bote_topology::{LinkStateDb, LinkStateRecord, Routes};

    /// The view of Router.A in a mesh of `edges` (no peer streams).
    fn view(edges: &[(&str, &str)]) -> MeshView {
        let mut adjacent: std::collections::BTreeMap<RouterId, Vec<(RouterId, u32)>> =
            std::collections::BTreeMap::new();
        for (a, b) in edges {
            adjacent
                .entry((*a).into())
                .or_default()
                .push(((*b).into(), 1));
            adjacent
                .entry((*b).into())
                .or_default()
                .push(((*a).into(), 1));
        }
        let mut db = LinkStateDb::new();
        for (origin, neighbours) in adjacent {
            db.offer(Arc::new(LinkStateRecord::new(origin, 1, 1, neighbours)));
        }
        MeshView {
            routes: Arc::new(Routes::compute(&"A".into(), &db)),
            peers: std::collections::BTreeMap::new(),
            link_peers: std::collections::BTreeMap::new(),
            attached: std::collections::BTreeMap::new(),
            instances: std::collections::BTreeMap::new(),
        }
    }

    /// `view` with `neighbour` up as `instance` on `stream`.
    fn with_neighbour(mut view: MeshView, neighbour: &str, instance: u64, stream: u64) -> MeshView {
        let up = crate::delivery::NeighbourInstance { instance, stream };
        view.instances.insert(neighbour.into(), up);
        view
    }

    #[test]
    fn re_forwarded_deliveries_wait_for_routes_around_the_lost_neighbour() {
        let b = RouterId::from("B");
        // Square A-B-D, A-C-D before the loss: B is a next hop.
        let before = view(&[("A", "B"), ("B", "D"), ("A", "C"), ("C", "D")]);
        assert_eq!(before.routes.next_hop(&b), Some(&b));
        assert!(!routes_avoid(Some(&before), &b));
        // Recomputed without the A-B link: D through C, B too.
        let after = view(&[("B", "D"), ("A", "C"), ("C", "D")]);
        assert!(routes_avoid(Some(&after), &b));
        // B gone altogether.
        let gone = view(&[("A", "C"), ("C", "D")]);
        assert!(routes_avoid(Some(&gone), &b));
        assert!(!routes_avoid(None, &b), "no view yet: wait");

        let now = Instant::now();
        let until = now + REROUTE_WAIT;
        assert!(!may_reroute(Some(&before), Some(&b), until, now));
        assert!(may_reroute(Some(&after), Some(&b), until, now));
        assert!(
            may_reroute(Some(&before), Some(&b), until, until),
            "waited long enough"
        );
        assert!(may_reroute(None, None, until, now), "not lost with anyone");
    }

    #[test]
    fn a_lost_neighbour_is_avoided_until_it_is_back_as_the_same_instance() {
        // The line A - B - C, seen from A, with a consumer on C. A lost B
        // with a delivery B had unsettled; B was instance 7 on stream 1.
        let (b, c) = (RouterId::from("B"), RouterId::from("C"));
        let line = [("A", "B"), ("B", "C")];
        let b_on_stream_1 = crate::delivery::NeighbourInstance {
            instance: 7,
            stream: 1,
        };
        let mut lost = Detours::default();
        lost.set_lost_with(b.clone(), Some(b_on_stream_1));
        let visited = VisitedRouters::default();
        let through_b = |view: &MeshView, detours: &Detours| {
            !excluded(
                &c,
                &b,
                &visited,
                detours,
                back_as_before(Some(view), detours),
            )
        };
        let no_path = || false;

        // The view has not caught up with the loss: the stream it lists is
        // the one lost, B is not back.
        let stale = with_neighbour(view(&line), "B", 7, 1);
        assert!(!back_as_before(Some(&stale), &lost));
        assert!(!through_b(&stale, &lost));

        // B gone: with no other path the delivery waits for it rather than
        // going back modified; with another path it takes that one.
        let gone = view(&[("B", "C")]);
        assert!(!back_as_before(Some(&gone), &lost));
        assert!(awaits_lost_neighbour(Some(&gone), &lost, true, no_path));
        assert!(!awaits_lost_neighbour(Some(&gone), &lost, true, || true));
        // Multicast copies do not wait for it.
        assert!(!awaits_lost_neighbour(Some(&gone), &lost, false, no_path));

        // B back as the same instance on a new stream: it still has its
        // record of the delivery, which may go through it again.
        let back = with_neighbour(view(&line), "B", 7, 2);
        assert!(back_as_before(Some(&back), &lost));
        assert!(through_b(&back, &lost));
        assert!(!awaits_lost_neighbour(Some(&back), &lost, true, || true));

        // B restarted (a new instance, no record): avoided as before, and
        // nothing to wait for.
        let restarted = with_neighbour(view(&line), "B", 8, 2);
        assert!(!back_as_before(Some(&restarted), &lost));
        assert!(!through_b(&restarted, &lost));
        assert!(!awaits_lost_neighbour(
            Some(&restarted),
            &lost,
            true,
            no_path
        ));

        // A delivery never sent to B (routed to its stream 1 after it had
        // closed): B is back for it as the same instance on a new stream,
        // not on the closed stream itself, nor restarted (a new process).
        let mut never_sent = Detours::default();
        never_sent.set_not_sent_to(b.clone(), Some(b_on_stream_1));
        assert!(!back_as_before(Some(&stale), &never_sent));
        assert!(!through_b(&stale, &never_sent));
        assert!(back_as_before(Some(&back), &never_sent));
        assert!(through_b(&back, &never_sent));
        assert!(!back_as_before(Some(&restarted), &never_sent));
        assert!(!through_b(&restarted, &never_sent));
        assert!(!awaits_lost_neighbour(
            Some(&restarted),
            &never_sent,
            true,
            no_path
        ));
        // With B gone and no other path, a unicast one waits for B (at
        // most the parking's wait) instead of going back released; with
        // another path it takes that one, and multicast copies never wait.
        assert!(awaits_lost_neighbour(
            Some(&gone),
            &never_sent,
            true,
            no_path
        ));
        assert!(!awaits_lost_neighbour(
            Some(&gone),
            &never_sent,
            true,
            || true
        ));
        assert!(!awaits_lost_neighbour(
            Some(&gone),
            &never_sent,
            false,
            no_path
        ));
        // The closed stream not known: B stays avoided, nothing waits.
        let mut unknown = Detours::default();
        unknown.set_not_sent_to(b.clone(), None);
        assert!(!back_as_before(Some(&back), &unknown));
        assert!(!through_b(&back, &unknown));
        assert!(!awaits_lost_neighbour(Some(&gone), &unknown, true, no_path));

        // A neighbour that released it stays avoided whatever its instance.
        lost.add_released_by(b.clone());
        assert!(!through_b(&back, &lost));
    }

    #[test]
    fn a_neighbour_lost_before_another_stays_avoided_when_the_other_is_back() {
        // The square A-B-D, A-C-D seen from A, a consumer on D. A lost B
        // with the delivery unsettled (B may have passed it on), routed it
        // to C, and found C's stream closed before it went out.
        let (b, c, d) = (
            RouterId::from("B"),
            RouterId::from("C"),
            RouterId::from("D"),
        );
        let square = [("A", "B"), ("B", "D"), ("A", "C"), ("C", "D")];
        let on_stream_1 = |instance| crate::delivery::NeighbourInstance {
            instance,
            stream: 1,
        };
        let mut detours = Detours::default();
        detours.set_lost_with(b.clone(), Some(on_stream_1(7)));
        detours.set_not_sent_to(c.clone(), Some(on_stream_1(9)));
        assert_eq!(detours.resent_from(), Some(&c), "the latest is followed");
        assert!(detours.lost_before(&b) && !detours.lost_before(&c));
        let visited = VisitedRouters::default();
        // Both back as the instances they were lost as, on new streams.
        let both_back = with_neighbour(with_neighbour(view(&square), "B", 7, 2), "C", 9, 2);
        let back = back_as_before(Some(&both_back), &detours);
        assert!(back, "C is back as before");
        assert!(
            !excluded(&d, &c, &visited, &detours, back),
            "through C again"
        );
        assert!(
            excluded(&d, &b, &visited, &detours, back),
            "never through B"
        );
        assert!(excluded(&b, &b, &visited, &detours, back), "nor to B");
        // Losing it again with the same neighbour keeps one record of it.
        detours.set_not_sent_to(c.clone(), Some(on_stream_1(9)));
        assert!(!detours.lost_before(&c) && detours.lost_before(&b));
    }
}
