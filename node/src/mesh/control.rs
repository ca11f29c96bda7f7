//! The control actor: owns this router's [`ControlPlane`] and drives it.
//! It feeds in neighbour up/down (from peer actors: up on a stream's first
//! hello, down the moment the stream closes — and a neighbour silent for the
//! hello timeout has its stream closed, so it goes down the same way), every
//! received control message and the local-address hooks; it arms one timer at
//! [`ControlPlane::poll_timeout`] (the clock is the time elapsed since the
//! router started) and executes every output at once: messages go to the
//! neighbour's peer actor, and route or address changes are published as a
//! new [`MeshView`] immediately (the protocol's own millisecond debounce is
//! the only delay).
//!
//! Link costs: the end that dialled a link decides its cost (its
//! connector's `cost`); the control plane states it in that end's hellos and
//! the listening end adopts it ([`CostAuthority`]). [`SetConnectorCost`]
//! changes a connector's cost at run time (configuration reload, later
//! management): the next dial uses it, and on a connected link a hello
//! carries it to the neighbour at once. Both ends log the change at info:
//! `cost of link to Router.C changed 10 -> 1 (...)`.
//!
//! Address changes are applied one address at a time: the changed addresses
//! ([`Output::AddressesChanged`]) are written into the
//! [`super::RemoteAddresses`] table and handed to the data plane by name, so
//! an attach anywhere in the mesh costs each router work for that address
//! only, whatever the number of addresses. A new [`MeshView`] (routes,
//! neighbours) is published only when routes or neighbours change.
//!
//! Edge streams (see [`super::edge`]) are kept apart from the control
//! plane: on an interior router an edge is an attached router whose
//! addresses it advertises as its own; on an edge router the uplink's
//! interior is where every address without a local consumer goes, and the
//! local addresses are reported up the uplink instead of flooded.
//!
//! Logs: neighbour up/down at info (router id and instance); on each route
//! change a summary (`routes: N routers reachable, next hops: ...`) at info
//! and the full table at debug; on each route change one `mesh: routes
//! <json>` line at info, the router's own view for operators until
//! management exists (tests and tools read the state file instead, see
//! `crate::state`):
//! `{"router":"A","routes":{"C":{"next_hop":"B","cost":2}},"remote_addresses":1}`;
//! each address change at debug (`mesh: addresses <json>`, the changed
//! addresses with their routers).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bote_topology::{
    Address, ControlMessage, ControlPlane, Cost, CostAuthority, InstanceId, Output, ProtocolConfig,
    RouterId,
};

use super::edge::{EdgeLink, EdgeLinks, EdgeProxy, ProxyChanges, proxied};
use super::peer::{Close, PeerActor, PeerStream, SendControl};
use super::{MeshView, RemoteAddresses, SharedView};
use crate::config::RouterMode;

struct PeerEntry {
    conn: u64,
    instance: InstanceId,
    addr: Addr<PeerActor>,
    /// The connector that dialled the stream; None if we accepted it.
    connector: Option<String>,
}

/// A stream known to the control actor, identified or not yet.
struct StreamEntry {
    /// The stream's peer actor (a handle held while the stream is known).
    _addr: Addr<PeerActor>,
    connector: Option<String>,
    /// For an edge stream, the other end's `host:port`.
    edge: Option<String>,
}

/// The cost an inter-router connector dials with, shared between its task
/// (read at each dial) and the control actor (changed by
/// [`SetConnectorCost`]).
pub type ConnectorCost = Arc<AtomicU32>;

/// Largest link cost accepted (the configuration's limit).
pub const MAX_LINK_COST: Cost = i32::MAX as Cost;

/// Drives the control plane of this router.
pub struct ControlActor {
    plane: ControlPlane,
    /// Route changes and recompute times, for `/metrics`.
    stats: Arc<super::MeshStats>,
    started: Instant,
    timer: Option<(Duration, SpawnHandle)>,
    next_conn: u64,
    peers: BTreeMap<RouterId, PeerEntry>,
    streams: HashMap<u64, StreamEntry>,
    /// Inter-router connectors by name.
    connectors: BTreeMap<String, ConnectorCost>,
    /// What stops each connector's dialling task.
    connector_tasks: BTreeMap<String, Arc<tokio::sync::Notify>>,
    peers_changed: bool,
    view: SharedView,
    /// Remote routers per address, kept one changed address at a time.
    addresses: Arc<RemoteAddresses>,
    /// Local address changes not yet given to the control plane (see
    /// [`ApplyLocalAddresses`]).
    local_changes: Vec<(Address, bool)>,
    data: super::DataHook,
    /// The router-wide record of arrived deliveries, shared by every peer
    /// stream (duplicate suppression after failover, see [`super::dedup`]).
    records: Arc<super::dedup::Records>,
    /// Interior or edge.
    mode: RouterMode,
    /// Edge streams that are up: an interior's edges, an edge's uplink.
    edges: BTreeMap<RouterId, PeerEntry>,
    /// The same, for management.
    edge_links: EdgeLinks,
    /// An interior's record of its edges' addresses.
    proxy: EdgeProxy,
    /// An edge's local addresses (reported up its uplink).
    uplink_addresses: BTreeSet<Address>,
    /// The sequence of the last address update sent up the uplink.
    uplink_sequence: u64,
}

impl ControlActor {
    /// A control plane for router `id`, booted as `instance`, publishing into
    /// `view`; `connectors` are the inter-router connectors by name, with the
    /// cost each dials with; `records` is the router's record of arrived
    /// deliveries.
    pub fn new(
        id: RouterId,
        instance: InstanceId,
        config: ProtocolConfig,
        view: SharedView,
        data: super::DataHook,
        connectors: BTreeMap<String, ConnectorCost>,
        records: Arc<super::dedup::Records>,
    ) -> ControlActor {
        ControlActor {
            plane: ControlPlane::new(id, instance, config, Duration::ZERO),
            stats: Arc::new(super::MeshStats::default()),
            started: Instant::now(),
            timer: None,
            next_conn: 0,
            peers: BTreeMap::new(),
            streams: HashMap::new(),
            connectors,
            connector_tasks: BTreeMap::new(),
            peers_changed: false,
            view,
            addresses: Arc::new(RemoteAddresses::default()),
            local_changes: Vec::new(),
            data,
            records,
            mode: RouterMode::Interior,
            edges: BTreeMap::new(),
            edge_links: EdgeLinks::default(),
            proxy: EdgeProxy::default(),
            uplink_addresses: BTreeSet::new(),
            uplink_sequence: 0,
        }
    }

    /// Runs as an edge router (an uplink, no part in link state) or an
    /// interior one (the default).
    pub fn with_mode(mut self, mode: RouterMode) -> ControlActor {
        self.mode = mode;
        self
    }

    /// The edge streams that are up (for management).
    pub fn edge_links(&self) -> EdgeLinks {
        self.edge_links.clone()
    }

    /// What this actor counts for `/metrics`.
    pub fn stats(&self) -> Arc<super::MeshStats> {
        self.stats.clone()
    }

    /// The table of remote routers per address this actor keeps.
    pub fn remote_addresses(&self) -> Arc<RemoteAddresses> {
        self.addresses.clone()
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Executes every pending output, publishes changes, re-arms the timer.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        let mut sends: BTreeMap<RouterId, Vec<ControlMessage>> = BTreeMap::new();
        let mut routes_changed = false;
        let mut changed_addresses: Vec<Address> = Vec::new();
        while let Some(output) = self.plane.poll_output() {
            match output {
                Output::Send { to, message } => sends.entry(to).or_default().push(message),
                Output::RoutesChanged => {
                    routes_changed = true;
                    self.stats
                        .topology_changes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Output::AddressesChanged { addresses } => changed_addresses.extend(addresses),
            }
        }
        for (to, messages) in sends {
            if let Some(peer) = self.peers.get(&to) {
                peer.addr.do_send(SendControl(messages));
            }
        }
        // A change of neighbours alone waits for the route recompute it
        // caused (a few ms): published now, the view would pair the old
        // routes with the new set of peers — after losing a neighbour, every
        // address reached through it would look unreachable, and its senders
        // would be drained, until the new routes arrive.
        let peers_only = self.peers_changed && !routes_changed;
        // The link-state database changed without changing this router's
        // own routes (a link elsewhere): the multicast trees of other
        // routers, which its routes snapshot computes, may have.
        let trees_changed = !Arc::ptr_eq(self.plane.routes(), &self.published_routes());
        if (routes_changed || self.peers_changed || trees_changed)
            && !(peers_only && self.plane.route_change_pending())
        {
            self.publish(routes_changed);
        }
        if !changed_addresses.is_empty() {
            self.addresses_changed(changed_addresses);
        }
        self.arm_timer(ctx);
    }

    /// Writes the remote routers of each changed address into the table,
    /// then tells the data plane which addresses changed.
    ///
    /// An address whose remote routers are what the table already holds
    /// is not passed on: the control plane also reports an address whose
    /// only change is this router's own consumers (every local attach of
    /// a new address), and telling its actor would cost a message, a
    /// look-up in the registry and a refresh per attach for nothing.
    fn addresses_changed(&mut self, mut changed: Vec<Address>) {
        changed.sort_unstable();
        changed.dedup();
        let table = self.plane.address_table();
        changed.retain(|address| {
            let mut routers = table
                .get(address)
                .map(|e| e.routers.clone())
                .unwrap_or_default();
            if let Some(edges) = self.proxy.edges_of(address) {
                routers.extend(edges.iter().cloned());
            }
            self.addresses.set(address, routers)
        });
        if changed.is_empty() {
            return;
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let json: serde_json::Map<String, serde_json::Value> = changed
                .iter()
                .map(|a| {
                    let routers: Vec<String> = self
                        .addresses
                        .routers(a)
                        .iter()
                        .map(|r| r.as_str().to_owned())
                        .collect();
                    (a.as_str().to_owned(), routers.into())
                })
                .collect();
            tracing::debug!("mesh: addresses {}", serde_json::Value::Object(json));
        }
        if let Some(data) = self.data.get() {
            data.addresses_changed(&changed);
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.plane.poll_timeout() else {
            if let Some((_, handle)) = self.timer.take() {
                ctx.cancel_future(handle);
            }
            return;
        };
        if let Some((at, handle)) = &self.timer {
            if *at == deadline {
                return;
            }
            ctx.cancel_future(*handle);
        }
        let delay = deadline.saturating_sub(self.now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            let now = act.now();
            let recomputes = act.plane.recompute_count();
            // An operation span for a recompute that is due (exported when
            // tracing is on, see `crate::telemetry::OPS_TARGET`).
            let span = act.plane.recompute_due(now).then(|| {
                tracing::info_span!(
                    target: crate::telemetry::OPS_TARGET,
                    "route recompute",
                    otel.kind = "internal",
                    bote.router.id = %act.plane.id(),
                    bote.routers.reachable = tracing::field::Empty,
                )
            });
            let began = Instant::now();
            {
                let _entered = span.as_ref().map(tracing::Span::enter);
                act.plane.handle_timeout(now);
            }
            if act.plane.recompute_count() != recomputes {
                // Route recomputes run from timeouts only (they are
                // scheduled, never run inline with a message).
                act.stats
                    .route_recompute
                    .observe(began.elapsed().as_secs_f64());
                if let Some(span) = &span {
                    // i64: tracing-opentelemetry exports u64 as a string.
                    let reachable = act.plane.routes().reachable_count();
                    span.record(
                        "bote.routers.reachable",
                        i64::try_from(reachable).unwrap_or(i64::MAX),
                    );
                }
            }
            act.close_silent_streams(now);
            act.drive(ctx);
        });
        self.timer = Some((deadline, handle));
    }

    /// Closes the stream of every neighbour the protocol dropped for silence
    /// (no message for the hello timeout): its peer actor then returns or
    /// re-forwards what was in flight to it at once (a silent neighbour
    /// would otherwise hold them until TCP gave up), and a connector redials.
    fn close_silent_streams(&mut self, now: Duration) {
        let timeout = self.plane.config().hello_timeout;
        for (id, entry) in &self.peers {
            let silent = self
                .plane
                .neighbour(id)
                .is_some_and(|n| n.instance.is_none() && n.last_heard + timeout <= now);
            if silent {
                entry.addr.do_send(Close(format!(
                    "no message from {id} for the hello timeout ({} ms)",
                    timeout.as_millis()
                )));
            }
        }
    }

    /// The routes snapshot of the view last published.
    fn published_routes(&self) -> Arc<bote_topology::Routes> {
        match self.view.read() {
            Ok(v) => v.routes.clone(),
            Err(poisoned) => poisoned.into_inner().routes.clone(),
        }
    }

    fn publish(&mut self, routes_changed: bool) {
        self.peers_changed = false;
        let routes = self.plane.routes().clone();
        if routes_changed {
            let mut by_hop: BTreeMap<RouterId, usize> = BTreeMap::new();
            for (_, route) in routes.iter() {
                *by_hop.entry(route.next_hop).or_default() += 1;
            }
            let hops: Vec<String> = by_hop.iter().map(|(h, n)| format!("{h} ({n})")).collect();
            tracing::info!(
                "routes: {} routers reachable, next hops: {}",
                routes.reachable_count(),
                if hops.is_empty() {
                    "none".to_owned()
                } else {
                    hops.join(", ")
                }
            );
            tracing::debug!("routes: full table {routes:?}");
        }
        if routes_changed {
            let json = serde_json::json!({
                "router": self.plane.id().as_str(),
                "routes": routes
                    .iter()
                    .map(|(dest, route)| {
                        (
                            dest.as_str().to_owned(),
                            serde_json::json!({
                                "next_hop": route.next_hop.as_str(),
                                "cost": route.cost,
                            }),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>(),
                "remote_addresses": self.addresses.len(),
            });
            tracing::info!("mesh: routes {json}");
        }
        let view = Arc::new(MeshView {
            routes,
            peers: self
                .peers
                .iter()
                .chain(&self.edges)
                .map(|(id, p)| (id.clone(), p.addr.clone().recipient()))
                .collect(),
            link_peers: self
                .peers
                .iter()
                .map(|(id, p)| {
                    let peer = crate::delivery::routed::LinkPeer {
                        frames: p.addr.clone().recipient(),
                        attach: p.addr.clone().recipient(),
                    };
                    (id.clone(), peer)
                })
                .collect(),
            attached: self.edges.keys().map(|id| (id.clone(), 1)).collect(),
            instances: self
                .peers
                .iter()
                .chain(&self.edges)
                .map(|(id, p)| {
                    let instance = crate::delivery::NeighbourInstance {
                        instance: p.instance,
                        stream: p.conn,
                    };
                    (id.clone(), instance)
                })
                .collect(),
        });
        match self.view.write() {
            Ok(mut v) => *v = view.clone(),
            Err(poisoned) => *poisoned.into_inner() = view.clone(),
        }
        if let Some(data) = self.data.get() {
            data.view_changed(view);
        }
    }
}

impl Actor for ControlActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.drive(ctx);
    }
}

/// A new inter-router stream (from the listener or a connector).
#[derive(Message)]
#[rtype(result = "()")]
pub struct NewStream {
    /// The stream.
    pub stream: PeerStream,
    /// The name of the connector that dialled it (this end decides the
    /// link's cost); None for a stream the listener accepted (the
    /// neighbour decides).
    pub connector: Option<String>,
    /// For an edge stream (an interior's edge listener, an edge's uplink
    /// connector), the other end's `host:port`; None for inter-router.
    pub edge: Option<String>,
}

impl Handler<NewStream> for ControlActor {
    type Result = ();

    fn handle(&mut self, msg: NewStream, ctx: &mut Self::Context) {
        self.next_conn += 1;
        let conn = self.next_conn;
        let addr = PeerActor::start_on(
            msg.stream,
            conn,
            self.plane.id().clone(),
            self.plane.instance(),
            ctx.address(),
            self.data.clone(),
            self.records.clone(),
            self.stats.clone(),
        );
        self.streams.insert(
            conn,
            StreamEntry {
                _addr: addr,
                connector: msg.connector,
                edge: msg.edge,
            },
        );
    }
}

/// A stream's first hello arrived: the neighbour is known.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerIdentified {
    /// The stream.
    pub conn: u64,
    /// The neighbour's router id.
    pub router: RouterId,
    /// The neighbour's instance.
    pub instance: InstanceId,
    /// Our link cost to it.
    pub cost: Cost,
    /// The stream, for logs.
    pub description: String,
    /// Its peer actor.
    pub addr: Addr<PeerActor>,
    /// Its hello said it reads both compact data forms (`same_route`
    /// transfers, disposition ranges), for logs.
    pub reads_compact: bool,
}

impl Handler<PeerIdentified> for ControlActor {
    type Result = ();

    fn handle(&mut self, msg: PeerIdentified, ctx: &mut Self::Context) {
        if let Some(host) = self.streams.get(&msg.conn).and_then(|s| s.edge.clone()) {
            self.edge_identified(msg, host, ctx);
            return;
        }
        let now = self.now();
        if let Some(existing) = self.peers.get(&msg.router) {
            if msg.instance <= existing.instance {
                msg.addr.do_send(Close(format!(
                    "duplicate router id {}: a stream to that router (instance {}) is already up",
                    msg.router, existing.instance
                )));
                return;
            }
            // A restart whose old stream has not closed yet: the newer life wins.
            existing.addr.do_send(Close(format!(
                "router {} restarted (instance {} replaces {})",
                msg.router, msg.instance, existing.instance
            )));
            tracing::info!(
                "neighbour down: {} (instance {}): replaced by a new instance",
                msg.router,
                existing.instance
            );
            self.plane.neighbour_down(&msg.router, now);
        }
        let connector = self
            .streams
            .get(&msg.conn)
            .and_then(|s| s.connector.clone());
        // A dialled link costs what its connector says now (a reload may
        // have changed it since the dial); an accepted one starts from the
        // cost the dialler sent with the call and follows its hellos.
        let (cost, authority) = match connector.as_ref().and_then(|c| self.connectors.get(c)) {
            Some(cost) => (cost.load(Ordering::Relaxed), CostAuthority::Local),
            None if connector.is_some() => (msg.cost, CostAuthority::Local),
            None => (msg.cost, CostAuthority::Neighbour),
        };
        tracing::info!(
            "neighbour up: {} (instance {}, cost {}{}, {}, {})",
            msg.router,
            msg.instance,
            cost,
            if authority == CostAuthority::Neighbour {
                " as the neighbour states it"
            } else {
                ""
            },
            msg.description,
            if msg.reads_compact {
                "compact data forms"
            } else {
                "full data forms: the neighbour predates the compact ones"
            }
        );
        self.peers.insert(
            msg.router.clone(),
            PeerEntry {
                conn: msg.conn,
                instance: msg.instance,
                addr: msg.addr,
                connector,
            },
        );
        self.peers_changed = true;
        self.plane
            .neighbour_up_with(msg.router, cost, authority, now);
        self.drive(ctx);
    }
}

/// Control messages received on a stream (none: it carried only data,
/// which shows the neighbour is alive).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerMessages {
    /// The stream.
    pub conn: u64,
    /// The neighbour.
    pub from: RouterId,
    /// The messages, in order.
    pub messages: Vec<ControlMessage>,
}

impl Handler<PeerMessages> for ControlActor {
    type Result = ();

    fn handle(&mut self, msg: PeerMessages, ctx: &mut Self::Context) {
        if self
            .edges
            .get(&msg.from)
            .is_some_and(|p| p.conn == msg.conn)
        {
            self.edge_messages(&msg.from, msg.messages, ctx);
            return;
        }
        if self.peers.get(&msg.from).is_none_or(|p| p.conn != msg.conn) {
            return;
        }
        let now = self.now();
        let cost_before = self.plane.neighbour(&msg.from).map(|n| n.cost);
        // Anything from the neighbour (data alone comes as no messages).
        self.plane.heard(&msg.from, now);
        for message in msg.messages {
            self.plane.handle_message(&msg.from, message, now);
        }
        // Only a hello of a neighbour that decides the cost changes it here.
        if let Some(n) = self.plane.neighbour(&msg.from)
            && let Some(before) = cost_before
            && n.cost != before
        {
            tracing::info!(
                "cost of link to {} changed {before} -> {} (as {} states it)",
                msg.from,
                n.cost,
                msg.from
            );
        }
        self.drive(ctx);
    }
}

/// A stream closed (its peer actor stopped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerClosed {
    /// The stream.
    pub conn: u64,
}

impl Handler<PeerClosed> for ControlActor {
    type Result = ();

    fn handle(&mut self, msg: PeerClosed, ctx: &mut Self::Context) {
        self.streams.remove(&msg.conn);
        if let Some(router) = self
            .edges
            .iter()
            .find(|(_, p)| p.conn == msg.conn)
            .map(|(id, _)| id.clone())
        {
            self.edge_closed(&router, ctx);
            return;
        }
        let Some(router) = self
            .peers
            .iter()
            .find(|(_, p)| p.conn == msg.conn)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        if let Some(entry) = self.peers.remove(&router) {
            tracing::info!(
                "neighbour down: {router} (instance {}): stream closed",
                entry.instance
            );
        }
        self.peers_changed = true;
        let now = self.now();
        self.plane.neighbour_down(&router, now);
        self.drive(ctx);
    }
}

/// The first local consumer of an address attached.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddLocalAddress(pub Address);

impl Handler<AddLocalAddress> for ControlActor {
    type Result = ();

    fn handle(&mut self, msg: AddLocalAddress, ctx: &mut Self::Context) {
        self.local_change(msg.0, true, ctx);
    }
}

/// The last local consumer of an address detached.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveLocalAddress(pub Address);

impl Handler<RemoveLocalAddress> for ControlActor {
    type Result = ();

    fn handle(&mut self, msg: RemoveLocalAddress, ctx: &mut Self::Context) {
        self.local_change(msg.0, false, ctx);
    }
}

/// Applies the local address changes gathered since the last one (scheduled
/// once per mailbox run).
#[derive(Message)]
#[rtype(result = "()")]
struct ApplyLocalAddresses;

impl Handler<ApplyLocalAddresses> for ControlActor {
    type Result = ();

    fn handle(&mut self, _msg: ApplyLocalAddresses, ctx: &mut Self::Context) {
        let changes = std::mem::take(&mut self.local_changes);
        let now = self.now();
        let changes: Vec<(Address, bool)> = match self.mode {
            RouterMode::Interior => changes
                .into_iter()
                .filter_map(|(a, present)| self.proxy.local_change(a, present))
                .collect(),
            RouterMode::Edge => {
                self.report_up(&changes);
                changes
            }
        };
        self.plane.change_local_addresses(changes, now);
        self.drive(ctx);
    }
}

impl ControlActor {
    /// An edge stream's first hello arrived: on an interior router an edge
    /// attached, on an edge router its uplink is up. Neither is given to
    /// the control plane.
    fn edge_identified(&mut self, msg: PeerIdentified, host: String, ctx: &mut Context<Self>) {
        let uplink = self.mode == RouterMode::Edge;
        let existing = if uplink {
            self.edges.keys().next().cloned()
        } else {
            self.edges
                .contains_key(&msg.router)
                .then(|| msg.router.clone())
        };
        if let Some(existing) = existing {
            let old = &self.edges[&existing];
            if existing == msg.router && msg.instance <= old.instance
                || uplink && existing != msg.router
            {
                msg.addr.do_send(Close(format!(
                    "duplicate edge stream: {existing} (instance {}) is already attached",
                    old.instance
                )));
                return;
            }
            old.addr.do_send(Close(format!(
                "router {} restarted (instance {} replaces {})",
                msg.router, msg.instance, old.instance
            )));
            self.edge_closed(&existing, ctx);
        }
        if self.peers.contains_key(&msg.router) {
            msg.addr.do_send(Close(format!(
                "router id {} is a neighbour in the mesh already: an edge needs an id of its own",
                msg.router
            )));
            return;
        }
        let connector = self
            .streams
            .get(&msg.conn)
            .and_then(|s| s.connector.clone());
        tracing::info!(
            "{} up: {} (instance {}, {})",
            if uplink { "edge uplink" } else { "edge" },
            msg.router,
            msg.instance,
            msg.description
        );
        self.edge_links.insert(EdgeLink {
            router: msg.router.clone(),
            host,
            dir: if uplink { "out" } else { "in" },
            connector: connector.clone(),
            since: Instant::now(),
            addresses: 0,
            conn: msg.conn,
        });
        self.edges.insert(
            msg.router.clone(),
            PeerEntry {
                conn: msg.conn,
                instance: msg.instance,
                addr: msg.addr,
                connector,
            },
        );
        self.publish(false);
        if uplink {
            self.addresses.set_default_router(Some(msg.router.clone()));
            // The whole set first: the interior starts from nothing on
            // each stream.
            self.uplink_sequence = 0;
            let all: Vec<(Address, bool)> = self
                .uplink_addresses
                .iter()
                .map(|a| (a.clone(), true))
                .collect();
            self.uplink_addresses.clear();
            self.report_up(&all);
            if let Some(data) = self.data.get() {
                data.all_addresses_changed();
            }
        }
        self.drive(ctx);
    }

    /// Messages on an edge stream: an edge's address updates (interior
    /// side); hellos carry nothing the control plane needs.
    fn edge_messages(
        &mut self,
        from: &RouterId,
        messages: Vec<ControlMessage>,
        ctx: &mut Context<Self>,
    ) {
        if self.mode == RouterMode::Edge {
            return;
        }
        let mut changed = false;
        for message in messages {
            if let ControlMessage::AddressUpdate(update) = message {
                let changes = self.proxy.update(
                    from,
                    update.added.iter().cloned(),
                    update.removed.iter().cloned(),
                );
                self.apply_proxy(changes);
                changed = true;
            }
        }
        if changed {
            self.edge_links.set_addresses(from, self.proxy.count(from));
            self.drive(ctx);
        }
    }

    /// An edge stream closed: the edge's addresses go (interior), or the
    /// uplink is down (edge; the connector tries the next alternate).
    fn edge_closed(&mut self, router: &RouterId, ctx: &mut Context<Self>) {
        let Some(entry) = self.edges.remove(router) else {
            return;
        };
        self.edge_links.remove(router);
        tracing::info!(
            "{} down: {router} (instance {}): stream closed",
            if self.mode == RouterMode::Edge {
                "edge uplink"
            } else {
                "edge"
            },
            entry.instance
        );
        self.publish(false);
        match self.mode {
            RouterMode::Interior => {
                let changes = self.proxy.remove_edge(router);
                self.apply_proxy(changes);
            }
            RouterMode::Edge => {
                self.addresses.set_default_router(None);
                if let Some(data) = self.data.get() {
                    data.all_addresses_changed();
                }
            }
        }
        self.drive(ctx);
    }

    /// Gives the control plane this router's advertisement changes and
    /// rewrites the remote routers of the addresses whose edges changed.
    fn apply_proxy(&mut self, changes: ProxyChanges) {
        if !changes.advertise.is_empty() {
            let now = self.now();
            self.plane.change_local_addresses(changes.advertise, now);
        }
        if !changes.addresses.is_empty() {
            self.addresses_changed(changes.addresses);
        }
    }

    /// Edge side: records local address changes and sends those the
    /// interior proxies up the uplink, if it is up.
    fn report_up(&mut self, changes: &[(Address, bool)]) {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for (address, present) in changes {
            if !proxied(address.as_str()) {
                continue;
            }
            if *present {
                if self.uplink_addresses.insert(address.clone()) {
                    added.push(address.clone());
                }
            } else if self.uplink_addresses.remove(address) {
                removed.push(address.clone());
            }
        }
        let Some(uplink) = self.edges.values().next() else {
            return;
        };
        if added.is_empty() && removed.is_empty() && self.uplink_sequence > 0 {
            return;
        }
        self.uplink_sequence += 1;
        uplink
            .addr
            .do_send(SendControl(vec![ControlMessage::AddressUpdate(Arc::new(
                bote_topology::AddressUpdate {
                    origin: self.plane.id().clone(),
                    instance: self.plane.instance(),
                    sequence: self.uplink_sequence,
                    added,
                    removed,
                },
            ))]));
    }
}

impl ControlActor {
    /// Queues a local address change; the changes of one mailbox run go to
    /// the control plane together, announced in one address update.
    fn local_change(&mut self, address: Address, present: bool, ctx: &mut Context<Self>) {
        if self.local_changes.is_empty() {
            ctx.notify(ApplyLocalAddresses);
        }
        self.local_changes.push((address, present));
    }
}

/// Sets the cost of the link an inter-router connector dials: the run-time
/// entry point of a configuration reload (and of management later). The
/// connector's next dial announces the new cost; when its link is up the
/// change applies at once and a hello carries it to the neighbour, which
/// adopts it. Logged at info: `cost of link to Router.C changed 10 -> 1`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<LinkCostChanged, SetLinkCostError>")]
pub struct SetConnectorCost {
    /// The connector's name.
    pub connector: String,
    /// The new cost, 1 to [`MAX_LINK_COST`].
    pub cost: Cost,
}

/// What [`SetConnectorCost`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCostChanged {
    /// The connector.
    pub connector: String,
    /// The cost before.
    pub old: Cost,
    /// The cost now.
    pub new: Cost,
    /// The neighbour on the connector's link, when it is up (the change
    /// applied to it at once); None when it applies at the next connect.
    pub neighbour: Option<RouterId>,
}

/// A refused [`SetConnectorCost`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetLinkCostError {
    /// No inter-router connector has that name.
    #[error("no inter-router connector is named {0:?}")]
    UnknownConnector(String),
    /// The cost is 0 or too large.
    #[error("link cost {0} is out of range (expected 1 to {MAX_LINK_COST})")]
    OutOfRange(Cost),
    /// The control actor has stopped (the router is shutting down).
    #[error("the mesh control actor is not running")]
    Stopped,
}

impl Handler<SetConnectorCost> for ControlActor {
    type Result = Result<LinkCostChanged, SetLinkCostError>;

    fn handle(&mut self, msg: SetConnectorCost, ctx: &mut Self::Context) -> Self::Result {
        if msg.cost == 0 || msg.cost > MAX_LINK_COST {
            return Err(SetLinkCostError::OutOfRange(msg.cost));
        }
        let cell = self
            .connectors
            .get(&msg.connector)
            .ok_or_else(|| SetLinkCostError::UnknownConnector(msg.connector.clone()))?;
        let old = cell.swap(msg.cost, Ordering::Relaxed);
        let neighbour = self
            .peers
            .iter()
            .find(|(_, p)| p.connector.as_deref() == Some(msg.connector.as_str()))
            .map(|(id, _)| id.clone());
        let change = LinkCostChanged {
            connector: msg.connector,
            old,
            new: msg.cost,
            neighbour,
        };
        if old == msg.cost {
            return Ok(change);
        }
        match &change.neighbour {
            Some(peer) => {
                let applied = self.plane.neighbour(peer).map_or(old, |n| n.cost);
                tracing::info!(
                    "cost of link to {peer} changed {applied} -> {} (connector {})",
                    change.new,
                    change.connector
                );
                let now = self.now();
                self.plane.set_link_cost(peer, change.new, now);
                self.drive(ctx);
            }
            None => tracing::info!(
                "connector {}: cost changed {old} -> {} (not connected: applies when it connects)",
                change.connector,
                change.new
            ),
        }
        Ok(change)
    }
}

/// Starts an inter-router connector at run time (management CREATE), or
/// registers the task of one started with the router.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct AddConnector {
    pub config: crate::config::ConnectorConfig,
    /// Set for a connector whose task runs already (started with the
    /// router): only its stop handle and cost are registered.
    pub started: Option<(ConnectorCost, Arc<tokio::sync::Notify>)>,
    /// The TLS client of a connector started here (`started: None`).
    pub tls: Option<Arc<crate::tls::ClientTls>>,
}

impl Handler<AddConnector> for ControlActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: AddConnector, ctx: &mut Self::Context) -> Self::Result {
        let name = msg.config.name.clone();
        if msg.started.is_none() && self.connector_tasks.contains_key(&name) {
            return Err(format!("a connector named {name:?} exists already"));
        }
        let (cost, stop) = match msg.started {
            Some(started) => started,
            None => {
                let cost: ConnectorCost = Arc::new(AtomicU32::new(msg.config.cost));
                tracing::info!(
                    "connector {name}: created at run time, dialling {}",
                    msg.config.socket_address()
                );
                let stop =
                    super::connector::start(msg.config, cost.clone(), ctx.address(), msg.tls);
                (cost, stop)
            }
        };
        self.connectors.insert(name.clone(), cost);
        self.connector_tasks.insert(name, stop);
        Ok(())
    }
}

/// Stops an inter-router connector (management DELETE): it dials no more
/// and the stream it opened closes, so its neighbour leaves the mesh.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RemoveConnector(pub String);

impl Handler<RemoveConnector> for ControlActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: RemoveConnector, _ctx: &mut Self::Context) -> Self::Result {
        let Some(stop) = self.connector_tasks.remove(&msg.0) else {
            return Err(format!("no inter-router connector is named {:?}", msg.0));
        };
        stop.notify_one();
        self.connectors.remove(&msg.0);
        for entry in self.streams.values() {
            if entry.connector.as_deref() == Some(msg.0.as_str()) {
                entry
                    ._addr
                    .do_send(super::peer::Close(format!("connector {} deleted", msg.0)));
            }
        }
        Ok(())
    }
}
