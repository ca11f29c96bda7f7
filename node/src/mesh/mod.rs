//! The mesh: this router's place among its peer routers. It owns the
//! inter-router gRPC listeners (tonic, [`server`]), the connectors that dial
//! peers and redial them forever ([`connector`]), one [`peer::PeerActor`] per
//! neighbour (one bidirectional `InterRouter.Exchange` stream of batched
//! frames), and the [`control::ControlActor`] that drives the sans-I/O
//! [`bote_topology::ControlPlane`] and publishes what it learns as a
//! [`MeshView`].
//!
//! Everything here runs on the actix System arbiter (the thread of
//! `Router::start`); tonic's connection tasks run on the same tokio runtime
//! and reach the actors only through `Addr::send`/`do_send` and tokio mpsc
//! channels. The router's address actors run on this arbiter too
//! ([`MeshHandle::arbiter`]), so deliveries crossing the router do not
//! change threads.
//!
//! # Interface for the data plane
//!
//! - [`MeshHandle::view`]: the latest [`MeshView`] (routes and where
//!   deliveries for each neighbour go). A new snapshot is published whenever
//!   routes or the set of neighbours change; readers take an `Arc` and never
//!   block the control actor for longer than a pointer swap.
//! - [`MeshHandle::remote_routers`]: which remote routers have consumers for
//!   one address, from the [`RemoteAddresses`] table the control actor
//!   changes one address at a time. It is not part of the snapshot: a mesh
//!   of 100,000 addresses would otherwise copy 100,000 entries into a new
//!   view on every attach anywhere, and hand it to every address actor. An
//!   address change reaches the data plane as the list of the addresses
//!   that changed ([`DataPlane::addresses_changed`]), a route change as a
//!   new view ([`DataPlane::view_changed`]).
//! - [`MeshHandle::add_local_address`] / [`MeshHandle::remove_local_address`]:
//!   to be called by the address actors on an address's first local consumer
//!   and on its last consumer going away (both idempotent); the change is
//!   flooded to the mesh at once.
//! - [`MeshHandle::set_connector_cost`]: changes the cost of the link an
//!   inter-router connector dials, at run time (configuration reload; the
//!   connector's end decides a link's cost and the neighbour adopts it from
//!   its hellos, see [`control`]).
//! - Edge routers ([`edge`]): an interior router takes edges on its
//!   `role = "edge"` listeners and an edge router keeps one uplink through
//!   its `role = "edge"` connectors; both ends run the same peer actors and
//!   data plane as inter-router streams, but edges are not nodes of the link
//!   state: [`MeshView::attached`] lists the routers reached over such a
//!   stream, and the interior proxies each edge's addresses into the mesh
//!   as its own.
//! - Data frames received from a neighbour (transfers, dispositions) are
//!   turned into routed deliveries and outcomes by the peer actor's
//!   [`data::PeerData`] and handed to the router through
//!   [`DataPlane::route`]; when the neighbour is lost, what was in flight to
//!   it is re-forwarded through [`DataPlane::reroute`], and duplicates that
//!   failover could create are suppressed with the router-wide record of
//!   [`dedup`]. Deliveries for a neighbour reach its peer actor as
//!   [`data::PeerDeliver`], and all frames share batches with control
//!   frames on the one stream.

pub mod auth;
pub mod connector;
pub mod control;
pub mod data;
pub mod dedup;
pub mod edge;
pub mod peer;
pub mod server;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bote_topology::{Address, ProtocolConfig, RouterId, Routes};

use crate::config::{Config, Role, RouterMode};
use control::{
    AddConnector, AddLocalAddress, ConnectorCost, ControlActor, LinkCostChanged, RemoveConnector,
    RemoveLocalAddress, SetConnectorCost, SetLinkCostError,
};

/// Largest gRPC message (one `Batch`) a router accepts. A batch carries at
/// most [`peer::BATCH_BYTES`] of frames plus one frame, and one frame at most
/// one whole message (up to a listener's 10 MiB default max-message-size).
pub const MAX_BATCH_MESSAGE: usize = 64 * 1024 * 1024;

/// Largest HTTP/2 frame an inter-router stream accepts (both ends say it in
/// their SETTINGS, so both directions use it). HTTP/2's default, 16 KiB,
/// cut a busy stream's batches into 16 KiB DATA frames, each written with a
/// system call of its own: at 256 KiB a router in the middle of a chain makes
/// 5.4 writes and 12.5 reads per 1,000 forwarded transfers instead of 13.3
/// and 20.6 (BENCHMARKS.md). It stays well under a batch
/// ([`peer::BATCH_BYTES`]) so the HTTP/2 pings that watch an edge stream
/// are not held behind a whole batch on a slow link.
pub const H2_MAX_FRAME_SIZE: u32 = 256 * 1024;

/// gRPC request metadata key carrying the dialing side's configured link cost,
/// so both ends announce the same cost for the link from the start (hellos
/// carry it afterwards, and carry changes).
pub const LINK_COST_METADATA: &str = "bote-link-cost";

/// HTTP/2 pings on an edge stream, which carries no hellos: a peer that
/// answers none within [`EDGE_KEEPALIVE_TIMEOUT`] is lost (its stream
/// fails), as a silent inter-router neighbour is after the hello timeout.
pub const EDGE_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// See [`EDGE_KEEPALIVE_INTERVAL`].
pub const EDGE_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// gRPC request metadata key an edge router's uplink dial carries
/// (`edge`): an interior serves it only on a `role = "edge"` listener, and
/// serves only such dials there.
pub const ROLE_METADATA: &str = "bote-role";

/// What the control plane knows of routes and neighbours, as one immutable
/// snapshot. Which routers have consumers for each address is kept apart, in
/// [`RemoteAddresses`].
pub struct MeshView {
    /// Routes to every reachable remote router (next hop, cost, multicast
    /// trees).
    pub routes: Arc<Routes>,
    /// Where deliveries for each neighbour whose stream is up go (its peer
    /// actor): the router's address actors know no more of the mesh's
    /// actors than that.
    pub peers: BTreeMap<RouterId, Recipient<data::PeerDeliver>>,
    /// The same peer actors as ends of routed link pairs (link routing).
    pub link_peers: BTreeMap<RouterId, crate::delivery::routed::LinkPeer>,
    /// Routers reached over an edge stream, outside link state, with the
    /// cost of reaching them: on an interior router its attached edges, on
    /// an edge router its uplink's interior (see [`edge`]). Each is in
    /// `peers` too, and is its own next hop.
    pub attached: BTreeMap<RouterId, bote_topology::Cost>,
    /// The instance of each neighbour whose stream is up (the same routers
    /// as `peers`), as its hello gave it, with that stream: a neighbour
    /// lost and back as the same instance (on a new stream) still has its
    /// record of what it had (`dedup`), while a restarted one (a new
    /// instance) has none.
    pub instances: BTreeMap<RouterId, crate::delivery::NeighbourInstance>,
}

impl MeshView {
    /// A view with no neighbours, routes or addresses.
    pub fn empty(local: RouterId) -> MeshView {
        MeshView {
            routes: Arc::new(Routes::empty(local)),
            peers: BTreeMap::new(),
            link_peers: BTreeMap::new(),
            attached: BTreeMap::new(),
            instances: BTreeMap::new(),
        }
    }

    /// How to reach `router`: by the routes of the link state, or directly
    /// when it is attached over an edge stream.
    pub fn route(&self, router: &RouterId) -> Option<bote_topology::Route> {
        self.routes.route(router).or_else(|| {
            self.attached.get(router).map(|&cost| bote_topology::Route {
                next_hop: router.clone(),
                cost,
            })
        })
    }
}

/// Address -> the reachable remote routers with consumers for it (local
/// consumers are not listed: the address registry has them). The control
/// actor writes it, one changed address at a time, before it tells the data
/// plane which addresses changed; address actors read their own entry.
#[derive(Default)]
pub struct RemoteAddresses {
    table: dashmap::DashMap<Address, BTreeSet<RouterId>>,
    /// On an edge router with its uplink up: the interior router, where
    /// every address goes that has no local consumer (qdrouterd's edge
    /// behaviour; the address actor keeps it out of the choice while the
    /// address has local consumers).
    default: RwLock<Option<RouterId>>,
}

impl RemoteAddresses {
    /// The remote routers with consumers for `address` (empty: none); on
    /// an edge router with its uplink up, its interior router.
    pub fn routers(&self, address: &Address) -> BTreeSet<RouterId> {
        let mut routers = self
            .table
            .get(address)
            .map(|e| e.value().clone())
            .unwrap_or_default();
        if let Some(default) = self.default_router() {
            routers.insert(default);
        }
        routers
    }

    /// True if some remote router has consumers for `address` (always,
    /// on an edge router with its uplink up).
    pub fn contains(&self, address: &Address) -> bool {
        self.default_router().is_some() || self.table.contains_key(address)
    }

    /// The router every address is reachable through (an edge router's
    /// uplink), if any.
    pub fn default_router(&self) -> Option<RouterId> {
        match self.default.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sets (or clears) the router every address is reachable through.
    pub fn set_default_router(&self, router: Option<RouterId>) {
        match self.default.write() {
            Ok(mut d) => *d = router,
            Err(poisoned) => *poisoned.into_inner() = router,
        }
    }

    /// Sets the routers of `address` (none: removes it); false if they
    /// were already these (nothing changed).
    pub fn set(&self, address: &Address, routers: BTreeSet<RouterId>) -> bool {
        if routers.is_empty() {
            return self.table.remove(address).is_some();
        }
        match self.table.entry(address.clone()) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                if *e.get() == routers {
                    return false;
                }
                e.insert(routers);
            }
            dashmap::mapref::entry::Entry::Vacant(e) => {
                e.insert(routers);
            }
        }
        true
    }

    /// Every address with its routers, sorted by address (for the state
    /// file; it copies the table).
    pub fn snapshot(&self) -> BTreeMap<Address, BTreeSet<RouterId>> {
        self.table
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Number of addresses with remote consumers.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True if no remote router has consumers.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The router's side of the data plane, installed once the router's shared
/// state exists (the mesh starts first): it learns each new [`MeshView`] and
/// routes the deliveries that arrive from neighbours.
pub trait DataPlane: Send + Sync + 'static {
    /// A new snapshot (routes, neighbours) was published.
    fn view_changed(&self, view: Arc<MeshView>);
    /// The remote routers of these addresses changed (read them in
    /// [`RemoteAddresses`]).
    fn addresses_changed(&self, _addresses: &[Address]) {}
    /// Every address may have changed (an edge router's uplink came up or
    /// went: its default route): every address actor re-reads its entry.
    fn all_addresses_changed(&self) {}
    /// Deliveries arrived from a neighbour (in arrival order), or given
    /// back released by one: route them like local ones.
    fn route(&self, deliveries: Vec<crate::delivery::RoutedDelivery>);
    /// Deliveries that were in flight to a neighbour when it was lost
    /// (each marked `resend`, its `detours` naming the neighbour): route
    /// them again, on another path, once the routes no longer go
    /// through the lost neighbour; without a path they go back to their
    /// senders modified (delivery-failed).
    fn reroute(&self, deliveries: Vec<crate::delivery::RoutedDelivery>);
    /// A client's attach arrived from a neighbour (link routing) for the
    /// broker on `destination`: attach it to the broker if that is this
    /// router, else send it on toward `destination`. `reply_to` is the
    /// neighbour's peer actor; the answer is the pair's id here and its
    /// other end, or the error to detach the link with.
    fn route_link(
        &self,
        attach: Box<bote_amqp::Attach>,
        destination: &str,
        reply_to: Recipient<crate::delivery::routed::RoutedFrame>,
    ) -> Result<(u64, Recipient<crate::delivery::routed::RoutedFrame>), bote_amqp::AmqpError> {
        let _ = (attach, reply_to);
        Err(bote_amqp::AmqpError::new(
            bote_amqp::condition::NOT_FOUND,
            format!("no link route to {destination} here"),
        ))
    }
}

/// Where the control and peer actors find the [`DataPlane`].
pub type DataHook = Arc<OnceLock<Arc<dyn DataPlane>>>;

/// The published [`MeshView`], swapped whole on each change.
pub type SharedView = Arc<RwLock<Arc<MeshView>>>;

/// The router's handle on its mesh (cheap to clone).
#[derive(Clone)]
pub struct MeshHandle {
    control: Addr<ControlActor>,
    view: SharedView,
    addresses: Arc<RemoteAddresses>,
    data: DataHook,
    /// This router's id in the mesh.
    pub id: RouterId,
    /// The bound address of each inter-router listener, in config order.
    pub bound: Vec<std::net::SocketAddr>,
    /// The arbiter the mesh runs on (control, peers, inter-router streams).
    pub arbiter: actix::dev::ArbiterHandle,
    /// The router-wide record of arrived deliveries and the sequence
    /// numbers of the deliveries entering the mesh here ([`dedup`]).
    records: Arc<dedup::Records>,
    /// Route changes and recompute times, for `/metrics`.
    pub stats: Arc<MeshStats>,
    /// The router's TLS contexts (inter-router listeners and connectors
    /// add theirs).
    tls: crate::tls::TlsRegistry,
    /// Interior or edge.
    pub mode: RouterMode,
    /// The edge streams: an interior's attached edges, an edge's uplink.
    edges: edge::EdgeLinks,
}

/// What the control plane counts for `/metrics` (the read model has no
/// place for events in time): how often this router's routes changed, and
/// how long each route recompute took.
#[derive(Debug)]
pub struct MeshStats {
    /// Route table changes (`Output::RoutesChanged`).
    pub topology_changes: std::sync::atomic::AtomicU64,
    /// Seconds per route recompute (the protocol timeout that ran it).
    pub route_recompute: prometheus_client::metrics::histogram::Histogram,
    /// Frames and bytes each way per neighbour router, across its streams.
    neighbours: std::sync::Mutex<BTreeMap<RouterId, Arc<NeighbourTraffic>>>,
    /// Outcomes of the unsettled deliveries that arrived from neighbours
    /// (interior or edge), counted when this router sends the outcome
    /// back: qdrouterd counts the router's accepted/rejected/released/
    /// modified deliveries on every incoming link, inter-router ones
    /// included, so a transit or egress router counts each outcome once.
    pub incoming_outcomes: crate::model::LinkStats,
}

/// Frames and bytes (protobuf-encoded) exchanged with one neighbour.
#[derive(Debug, Default)]
pub struct NeighbourTraffic {
    pub frames_in: std::sync::atomic::AtomicU64,
    pub bytes_in: std::sync::atomic::AtomicU64,
    pub frames_out: std::sync::atomic::AtomicU64,
    pub bytes_out: std::sync::atomic::AtomicU64,
}

impl NeighbourTraffic {
    /// Adds `other`'s counts to this one's.
    pub fn absorb(&self, other: &NeighbourTraffic) {
        use std::sync::atomic::Ordering::Relaxed;
        for (to, from) in [
            (&self.frames_in, &other.frames_in),
            (&self.bytes_in, &other.bytes_in),
            (&self.frames_out, &other.frames_out),
            (&self.bytes_out, &other.bytes_out),
        ] {
            to.fetch_add(from.load(Relaxed), Relaxed);
        }
    }
}

impl MeshStats {
    /// The traffic counters of `neighbour` (made on first use; kept when
    /// its stream goes, so they never decrease).
    pub fn traffic(&self, neighbour: &RouterId) -> Arc<NeighbourTraffic> {
        self.neighbours
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(neighbour.clone())
            .or_default()
            .clone()
    }

    /// Every neighbour's traffic counters.
    pub fn all_traffic(&self) -> Vec<(RouterId, Arc<NeighbourTraffic>)> {
        self.neighbours
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(r, t)| (r.clone(), t.clone()))
            .collect()
    }
}

impl Default for MeshStats {
    fn default() -> Self {
        MeshStats {
            topology_changes: std::sync::atomic::AtomicU64::new(0),
            // 10 µs .. ~2.6 s.
            route_recompute: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1e-5, 4.0, 10),
            ),
            neighbours: std::sync::Mutex::new(BTreeMap::new()),
            incoming_outcomes: crate::model::LinkStats::default(),
        }
    }
}

impl MeshHandle {
    /// The latest snapshot.
    pub fn view(&self) -> Arc<MeshView> {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The remote routers with consumers for `address` (empty: none).
    pub fn remote_routers(&self, address: &Address) -> BTreeSet<RouterId> {
        self.addresses.routers(address)
    }

    /// The table of remote routers per address.
    pub fn remote_addresses(&self) -> &RemoteAddresses {
        &self.addresses
    }

    /// The edge streams up now: on an interior router its attached edges,
    /// on an edge router its uplink (for management).
    pub fn edge_links(&self) -> Vec<edge::EdgeLink> {
        self.edges.snapshot()
    }

    /// Installs the router's data plane (once; later calls are ignored) and
    /// hands it the current view.
    pub fn set_data_plane(&self, data: Arc<dyn DataPlane>) {
        if self.data.set(data.clone()).is_ok() {
            data.view_changed(self.view());
        }
    }

    /// A block of sequence numbers for the identities of deliveries that
    /// enter the mesh here (an unsettled multicast message takes one for
    /// all its copies: [`dedup::MeshId`]).
    pub fn sequences(&self) -> std::ops::Range<u64> {
        self.records.sequences()
    }

    /// The first local consumer of `address` attached (idempotent).
    pub fn add_local_address(&self, address: &str) {
        self.control
            .do_send(AddLocalAddress(Address::from(address)));
    }

    /// The last local consumer of `address` detached (idempotent).
    pub fn remove_local_address(&self, address: &str) {
        self.control
            .do_send(RemoveLocalAddress(Address::from(address)));
    }

    /// Starts an inter-router connector (management CREATE).
    pub async fn add_connector(
        &self,
        config: crate::config::ConnectorConfig,
    ) -> Result<(), String> {
        let tls = self
            .tls
            .connector(&config)
            .map_err(|e| format!("connector {}: {}: {e}", config.name, e.key()))?;
        self.control
            .send(AddConnector {
                config,
                started: None,
                tls,
            })
            .await
            .map_err(|_| "the mesh control actor is not running".to_owned())?
    }

    /// Stops the inter-router connector named `name` and closes its stream
    /// (management DELETE).
    pub async fn remove_connector(&self, name: &str) -> Result<(), String> {
        self.control
            .send(RemoveConnector(name.to_owned()))
            .await
            .map_err(|_| "the mesh control actor is not running".to_owned())?
    }

    /// Sets the cost of the link the inter-router connector named
    /// `connector` dials (see [`SetConnectorCost`]).
    pub async fn set_connector_cost(
        &self,
        connector: &str,
        cost: bote_topology::Cost,
    ) -> Result<LinkCostChanged, SetLinkCostError> {
        self.control
            .send(SetConnectorCost {
                connector: connector.to_owned(),
                cost,
            })
            .await
            .map_err(|_| SetLinkCostError::Stopped)?
    }
}

/// True if `config` has anything to do with a mesh (an inter-router or
/// edge listener or connector, or edge mode).
pub fn configured(config: &Config) -> bool {
    config.router.mode == RouterMode::Edge
        || config
            .listeners
            .iter()
            .any(|l| matches!(l.role, Role::InterRouter | Role::Edge))
        || config
            .connectors
            .iter()
            .any(|c| matches!(c.role, Role::InterRouter | Role::Edge))
}

/// The listeners the mesh serves (gRPC): inter-router and edge ones, in
/// configuration order ([`MeshHandle::bound`] follows it).
pub fn serves(listener: &crate::config::ListenerConfig) -> bool {
    matches!(listener.role, Role::InterRouter | Role::Edge)
}

/// The instance id of this boot: milliseconds since the Unix epoch, so a
/// restarted router has a greater one.
pub fn boot_instance() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

/// The protocol timers from the router configuration.
pub fn protocol_config(config: &Config) -> ProtocolConfig {
    ProtocolConfig {
        hello_interval: Duration::from_millis(config.router.hello_interval_ms),
        hello_timeout: Duration::from_millis(config.router.hello_timeout_ms),
        ..ProtocolConfig::default()
    }
}

/// Starts the control actor, binds every inter-router listener and starts
/// every inter-router connector. Must run inside the actix system.
/// `users` are the users in force, which inter-router listeners that
/// authenticate their peers check credentials against; `tls` holds the
/// TLS contexts of TLS listeners and connectors.
pub async fn start(
    config: &Config,
    users: Arc<bote_auth::SharedUsers>,
    tls: &crate::tls::TlsRegistry,
) -> anyhow::Result<MeshHandle> {
    let id = RouterId::from(config.router.id.as_str());
    let instance = boot_instance();
    let view: SharedView = Arc::new(RwLock::new(Arc::new(MeshView::empty(id.clone()))));
    let data: DataHook = Arc::new(OnceLock::new());
    let records = Arc::new(dedup::Records::default());
    let connectors: Vec<(&crate::config::ConnectorConfig, ConnectorCost)> = config
        .connectors
        .iter()
        .filter(|c| c.role == Role::InterRouter)
        .map(|c| (c, Arc::new(std::sync::atomic::AtomicU32::new(c.cost))))
        .collect();
    let control = ControlActor::new(
        id.clone(),
        instance,
        protocol_config(config),
        view.clone(),
        data.clone(),
        connectors
            .iter()
            .map(|(c, cost)| (c.name.clone(), cost.clone()))
            .collect(),
        records.clone(),
    );
    let control = control.with_mode(config.router.mode);
    let addresses = control.remote_addresses();
    let stats = control.stats();
    let edges = control.edge_links();
    let control = control.start();
    let mut bound = Vec::new();
    for l in config.listeners.iter().filter(|l| serves(l)) {
        let server_tls = tls.listener(l).map_err(|e| {
            anyhow::anyhow!(
                "{} listener {}: {}: {e}",
                l.role.as_str(),
                l.socket_address(),
                e.key()
            )
        })?;
        bound.push(server::serve(l, control.clone(), users.clone(), server_tls).await?);
    }
    let mut uplinks = Vec::new();
    for c in config.connectors.iter().filter(|c| c.role == Role::Edge) {
        let client_tls = tls
            .connector(c)
            .map_err(|e| anyhow::anyhow!("connector {}: {}: {e}", c.name, e.key()))?;
        uplinks.push((c.clone(), client_tls));
    }
    if !uplinks.is_empty() {
        // One task for all of them: the alternates of one active uplink.
        let _stop = connector::start_uplink(uplinks, control.clone());
    }
    for (c, cost) in connectors {
        let client_tls = tls
            .connector(c)
            .map_err(|e| anyhow::anyhow!("connector {}: {}: {e}", c.name, e.key()))?;
        let stop = connector::start(c.clone(), cost.clone(), control.clone(), client_tls);
        control.do_send(AddConnector {
            config: c.clone(),
            started: Some((cost, stop)),
            tls: None,
        });
    }
    tracing::info!(router = %id, instance, mode = config.router.mode.as_str(), "mesh started");
    Ok(MeshHandle {
        control,
        view,
        addresses,
        data,
        id,
        bound,
        arbiter: Arbiter::current(),
        records,
        stats,
        tls: tls.clone(),
        mode: config.router.mode,
        edges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_the_routers_an_address_already_has_is_no_change() {
        let table = RemoteAddresses::default();
        let a = Address::from("a");
        let routers = |ids: &[&str]| -> BTreeSet<RouterId> {
            ids.iter().map(|id| RouterId::from(*id)).collect()
        };
        // A local consumer came: the control plane reports the address,
        // but it has no remote routers, before or after.
        assert!(!table.set(&a, routers(&[])));
        assert!(table.set(&a, routers(&["B"])));
        assert!(!table.set(&a, routers(&["B"])));
        assert!(table.set(&a, routers(&["B", "C"])));
        assert_eq!(table.routers(&a), routers(&["B", "C"]));
        assert!(table.set(&a, routers(&[])));
        assert!(!table.set(&a, routers(&[])));
        assert!(table.is_empty());
    }
}
