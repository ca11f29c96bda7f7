//! The router: the actors of one `boted` process and how they are started and
//! stopped. Listener actors accept connections; connection actors (one per
//! AMQP connection, spread over one worker arbiter per core) own a socket and
//! the sans-I/O engine, with the link endpoints inside; address actors (one
//! per address, in a `DashMap` registry) pick each delivery's destination.
//!
//! Links are endpoints owned by their connection actor, not actors of their
//! own: every frame of a link arrives on its connection's socket and every
//! link operation changes the connection's engine (session windows, handles,
//! delivery ids), so a link actor would add two mailbox hops per delivery and
//! still need the connection to touch the engine. Measured with
//! `cargo bench -p bote-node --bench link_placement` on the 2-core dev
//! machine: updating a link endpoint in place costs 6.3 ns per delivery; one
//! hop to a link actor on another arbiter costs 113 ns per delivery (batches
//! of 1,000), so a link actor would add at least ~220 ns per delivery (there
//! and back) — a tenth of the 2 µs per-message budget — for no gain.
//! Per-link state that others read (credit, undelivered, unsettled) is
//! shared through `LinkCounters`.
//!
//! [`Router::reload`] applies a newly read configuration to the running
//! router: what can change at run time (inter-router connector costs) is
//! applied, the rest is reported as needing a restart.

pub mod address;
#[cfg(test)]
mod address_props;
pub mod annotations;
pub mod auth;
pub mod connection;
pub mod filter;
pub mod link;
pub mod link_route;
pub mod listener;
pub mod management;
pub mod memory;
pub mod policy;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::dev::ArbiterHandle;
use actix::prelude::*;
use dashmap::DashMap;

use crate::config::{Config, Role};
use crate::delivery::{self, ConnId};
use crate::state::{ListenerState, RouteState, RouterState, StateFile};
use address::AddressRegistry;
use connection::{ConnectionActor, Shutdown};
use listener::{ListenerActor, StopAccepting};

/// Starts the actor for a connection accepted on a listener of another
/// protocol than AMQP (MQTT): the connection id, the socket (or the TLS
/// session on it, handshake done, on a listener with TLS), the peer's
/// address, the listener, the router, and the worker to run on.
pub type Accept = Arc<
    dyn Fn(
            ConnId,
            connection::Transport,
            String,
            Arc<crate::config::ListenerConfig>,
            Arc<Shared>,
            &ArbiterHandle,
        ) + Send
        + Sync,
>;

/// Run once when the router starts, before its listeners accept (an error
/// fails the start).
pub type Started = Arc<dyn Fn(&Arc<Shared>, &Config) -> anyhow::Result<()> + Send + Sync>;

/// The protocols besides AMQP this router serves (set by `boted`; a router
/// started without them refuses a listener that needs one).
#[derive(Clone, Default)]
pub struct Protocols {
    pub mqtt: Option<Accept>,
    /// Run once when a router with an MQTT listener starts, before its
    /// listeners accept (its router-wide MQTT state: retained messages and
    /// persistent sessions, from `[router] data-dir` if set).
    pub mqtt_started: Option<Started>,
}

/// What every actor of the router shares.
pub struct Shared {
    pub router_id: String,
    pub addresses: AddressRegistry,
    pub connections: DashMap<ConnId, Addr<ConnectionActor>>,
    workers: Vec<ArbiterHandle>,
    next_worker: AtomicUsize,
    next_conn: AtomicU64,
    next_dynamic: AtomicU64,
    /// The connections and links with their counters (management, HTTP).
    pub model: crate::model::ReadModel,
    /// Set when graceful shutdown begins: deliveries still unsettled are
    /// then returned to their senders as released.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// The mesh (routes, remote addresses, peers; local-address hooks), when
    /// inter-router listeners or connectors are configured.
    pub mesh: Option<crate::mesh::MeshHandle>,
    /// The listeners and connectors in force (configured, or created by
    /// management since).
    configured: std::sync::Mutex<management::Configured>,
    /// Where the HTTP API listens, once it does.
    http: OnceLock<SocketAddr>,
    /// Where the state is written as it changes (`boted --state-file`).
    state_file: OnceLock<Arc<StateFile>>,
    /// The thread that writes it.
    state_writer: OnceLock<StateWriter>,
    /// Returns memory to the system after bursts of connections.
    pub heap: memory::HeapTrimmer,
    /// The users PLAIN and SCRAM-SHA-256 check against (`[router]
    /// users-file`), swapped whole on SIGHUP; empty without a file.
    pub users_in_force: Arc<bote_auth::SharedUsers>,
    /// Client connections per listener and vhost (`policy`).
    pub connection_counts: Arc<policy::ConnectionCounts>,
    /// The `[[vhost]]` policy (empty: none).
    pub vhosts: Arc<[crate::config::policy::VhostConfig]>,
    /// The TLS contexts of the listeners and connectors (`SIGHUP` reloads
    /// their files).
    pub tls: crate::tls::TlsRegistry,
    /// `[[link-route]]`: addresses whose links go to a broker.
    pub link_routes: crate::config::LinkRouteTable,
    /// The open route-container connections (brokers), by connector name.
    pub route_containers: link_route::RouteContainers,
    /// Numbers the routed link pairs.
    next_route_id: AtomicU64,
    /// `[[auto-link]]`s and what became of each (management).
    pub auto_links: Vec<link_route::AutoLink>,
    /// Clients of protocols with a client identifier (MQTT), by it: a
    /// second connection with the same id takes over (the first is sent
    /// `Shutdown`).
    pub client_ids: DashMap<String, ClientEntry>,
    /// Router-wide state of another protocol (MQTT's retained messages),
    /// set once by it.
    pub protocol_state: OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
}

/// A client known by its client identifier (MQTT): its connection or
/// session, to close it, and the protocol's own handle on it.
pub struct ClientEntry {
    pub conn: ConnId,
    pub shutdown: Recipient<Shutdown>,
    /// The protocol's handle (MQTT: the session actor's address).
    pub session: Arc<dyn std::any::Any + Send + Sync>,
}

/// Writes the state file on a thread of its own, coalescing changes: a
/// change marks the state dirty, and the writer takes one snapshot for all
/// the changes made since its last write. The snapshot lists every address
/// of the mesh, so writing it on each change (100,000 attaches: 100,000
/// snapshots of up to 100,000 addresses) would make attaching O(number of
/// addresses); coalesced, the file lags a change by at most one write and
/// one pause (between writes the writer pauses [`STATE_WRITE_PAUSE`] or
/// three times its last write's duration, whichever is longer, so it takes
/// at most a quarter of a core however large the state grows).
struct StateWriter {
    dirty: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

/// The least pause between two writes of the state file.
const STATE_WRITE_PAUSE: Duration = Duration::from_millis(5);

impl StateWriter {
    fn start(shared: std::sync::Weak<Shared>, file: Arc<StateFile>) -> StateWriter {
        let dirty = Arc::new((std::sync::Mutex::new(true), std::sync::Condvar::new()));
        let signal = dirty.clone();
        let spawned = std::thread::Builder::new()
            .name("state-file".into())
            .spawn(move || {
                loop {
                    {
                        let (lock, cv) = &*signal;
                        let mut d = lock.lock().unwrap_or_else(|e| e.into_inner());
                        while !*d {
                            d = cv.wait(d).unwrap_or_else(|e| e.into_inner());
                        }
                        *d = false;
                    }
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    let started = std::time::Instant::now();
                    if let Err(e) = file.write(|| shared.state()) {
                        tracing::warn!("state file not written: {e}");
                    }
                    drop(shared);
                    std::thread::sleep((started.elapsed() * 3).max(STATE_WRITE_PAUSE));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("state file writer not started: {e}");
        }
        StateWriter { dirty }
    }

    fn changed(&self) {
        let (lock, cv) = &*self.dirty;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }
}

impl Shared {
    /// The users in force (a snapshot: a reload swaps in a new store).
    pub fn users(&self) -> Arc<bote_auth::UserStore> {
        self.users_in_force.get()
    }

    pub fn next_worker(&self) -> ArbiterHandle {
        let i = self.next_worker.fetch_add(1, Ordering::Relaxed);
        self.workers[i % self.workers.len()].clone()
    }

    /// A new router-wide id for a routed link pair.
    pub fn next_route_id(&self) -> u64 {
        self.next_route_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// What the router reports of itself (id, listeners, its view of the
    /// mesh): the one snapshot the state file, and later the read API,
    /// serve.
    pub fn state(&self) -> RouterState {
        let mut state = RouterState {
            router: self.router_id.clone(),
            listeners: self
                .configured()
                .listeners
                .iter()
                .map(|l| ListenerState {
                    role: l.config.role,
                    bound: l.bound,
                    protocol: l.config.protocol,
                })
                .collect(),
            http: self.http.get().copied(),
            route_containers: self.route_containers.snapshot().into_iter().collect(),
            ..RouterState::default()
        };
        if let Some(mesh) = &self.mesh {
            let view = mesh.view();
            state.routes = view
                .routes
                .iter()
                .map(|(dest, route)| {
                    let route = RouteState {
                        next_hop: route.next_hop.as_str().to_owned(),
                        cost: route.cost,
                    };
                    (dest.as_str().to_owned(), route)
                })
                .collect();
            state.addresses = mesh
                .remote_addresses()
                .snapshot()
                .iter()
                .map(|(address, routers)| {
                    let routers = routers.iter().map(|r| r.as_str().to_owned()).collect();
                    (address.as_str().to_owned(), routers)
                })
                .collect();
        }
        state
    }

    /// The HTTP API is up at `bound` (the state file says so).
    pub fn set_http(&self, bound: SocketAddr) {
        if self.http.set(bound).is_ok() {
            self.publish_state();
        }
    }

    /// True if this router runs as an edge router.
    pub fn is_edge(&self) -> bool {
        self.mesh
            .as_ref()
            .is_some_and(|m| m.mode == crate::config::RouterMode::Edge)
    }

    /// Inter-router connectors in force (an edge's alternates count once).
    pub fn connector_count(&self) -> usize {
        let configured = self.configured();
        let inter_router = configured
            .connectors
            .iter()
            .filter(|c| c.role == Role::InterRouter)
            .count();
        // An edge's connectors are alternates: one uplink is up at a time.
        let uplink = configured.connectors.iter().any(|c| c.role == Role::Edge);
        inter_router + usize::from(uplink)
    }

    /// A route-container connection opened or closed: the state file says so.
    pub fn route_containers_changed(&self) {
        self.publish_state();
    }

    /// The listeners changed (management): the state file says so.
    fn publish_listeners(&self) {
        self.publish_state();
    }

    /// The state changed: the state file's writer writes it, if there is
    /// one (see [`StateWriter`]).
    fn publish_state(&self) {
        if let Some(writer) = self.state_writer.get() {
            writer.changed();
        }
    }

    /// A new unique address for a dynamic receiver, routable on this router
    /// (qdrouterd's form: `_topo/0/<router>/temp.<unique>`).
    pub fn dynamic_address(&self) -> String {
        let n = self.next_dynamic.fetch_add(1, Ordering::Relaxed);
        let salt: u32 = rand::random();
        format!("_topo/0/{}/temp.{salt:08x}{n}", self.router_id)
    }
}

/// The router's side of the mesh data plane: mesh views reach the address
/// actors, and deliveries from neighbours are routed by their address.
struct RouterData {
    shared: std::sync::Weak<Shared>,
}

impl crate::mesh::DataPlane for RouterData {
    fn view_changed(&self, view: Arc<crate::mesh::MeshView>) {
        if let Some(shared) = self.shared.upgrade() {
            shared.addresses.mesh_changed(&view);
            shared.publish_state();
        }
    }

    fn addresses_changed(&self, addresses: &[bote_topology::Address]) {
        if let Some(shared) = self.shared.upgrade() {
            shared.addresses.addresses_changed(addresses);
            shared.publish_state();
        }
    }

    fn all_addresses_changed(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.addresses.all_changed();
            shared.publish_state();
        }
    }

    /// One `Forward` per run of deliveries to the same address.
    fn route(&self, deliveries: Vec<delivery::RoutedDelivery>) {
        self.by_address(deliveries, address::Forward);
    }

    /// One `Reroute` per run of deliveries to the same address.
    fn reroute(&self, deliveries: Vec<delivery::RoutedDelivery>) {
        self.by_address(deliveries, address::Reroute);
    }

    fn route_link(
        &self,
        attach: Box<bote_amqp::Attach>,
        destination: &str,
        reply_to: Recipient<delivery::routed::RoutedFrame>,
    ) -> Result<(u64, Recipient<delivery::routed::RoutedFrame>), bote_amqp::AmqpError> {
        match self.shared.upgrade() {
            Some(shared) => shared.route_link_from_mesh(attach, destination, reply_to),
            None => Err(bote_amqp::AmqpError::new(
                bote_amqp::condition::NOT_FOUND,
                "the router is stopping",
            )),
        }
    }
}

impl RouterData {
    /// Sends each run of deliveries to the same address to its address
    /// actor as one message (arriving addresses are shared `Arc`s, so a
    /// pointer compare finds the runs). Without a router they go back to
    /// their senders (released, or modified if they were being re-forwarded).
    fn by_address<M>(
        &self,
        deliveries: Vec<delivery::RoutedDelivery>,
        message: impl Fn(Vec<delivery::RoutedDelivery>) -> M,
    ) where
        M: Message<Result = ()> + Send + 'static,
        address::AddressActor: Handler<M>,
    {
        let Some(shared) = self.shared.upgrade() else {
            for d in deliveries {
                d.return_to_sender(Some(bote_amqp::DeliveryState::Released));
            }
            return;
        };
        // Usually the whole batch is for one address: it goes on as it
        // came, not moved delivery by delivery into a new vector.
        if let Some(first) = deliveries.first()
            && deliveries[1..]
                .iter()
                .all(|d| Arc::ptr_eq(&first.address, &d.address) || *first.address == *d.address)
        {
            let actor = shared.addresses.get(&first.address);
            actor.do_send(message(deliveries));
            return;
        }
        let mut run: Vec<delivery::RoutedDelivery> = Vec::new();
        for d in deliveries {
            if let Some(first) = run.first()
                && !Arc::ptr_eq(&first.address, &d.address)
                && *first.address != *d.address
            {
                let address = first.address.clone();
                shared
                    .addresses
                    .get(&address)
                    .do_send(message(std::mem::take(&mut run)));
            }
            run.push(d);
        }
        if let Some(first) = run.first() {
            let address = first.address.clone();
            shared.addresses.get(&address).do_send(message(run));
        }
    }
}

/// A running router.
pub struct Router {
    pub shared: Arc<Shared>,
    /// The management node (`$management`).
    pub management: Addr<management::ManagementActor>,
    /// The bound address of each listener, in config order.
    pub bound: Vec<SocketAddr>,
    arbiters: Vec<Arbiter>,
    /// The configuration in force (as started, plus what reloads applied).
    config: Config,
}

/// What [`Router::reload`] did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Connector costs applied.
    pub applied: Vec<crate::mesh::control::LinkCostChanged>,
    /// Changes only a restart applies (see [`crate::config::reload::ConfigDiff`]).
    pub needs_restart: Vec<String>,
    /// Changes that could not be applied, with the reason.
    pub failed: Vec<String>,
}

/// The users of `[router] users-file`, or none.
fn load_users(config: &Config) -> anyhow::Result<bote_auth::UserStore> {
    match &config.router.users_file {
        None => Ok(bote_auth::UserStore::default()),
        Some(path) => {
            let users = bote_auth::UserStore::load(path)?;
            tracing::info!("{} user(s) loaded from {}", users.len(), path.display());
            Ok(users)
        }
    }
}

impl Router {
    /// Starts worker arbiters and binds every listener. Must run inside an
    /// actix system.
    pub async fn start(config: Config) -> anyhow::Result<Router> {
        Self::start_with(config, Protocols::default()).await
    }

    /// [`Router::start`], serving `protocols` besides AMQP on the listeners
    /// configured for them.
    pub async fn start_with(config: Config, protocols: Protocols) -> anyhow::Result<Router> {
        let in_force = config.clone();
        let users = Arc::new(bote_auth::SharedUsers::new(load_users(&config)?));
        for l in &config.listeners {
            if l.sasl_mechanisms
                .contains(&crate::config::SaslMechanism::Plain)
                && !l.allow_insecure_plain
                && l.tls_cert_file.is_none()
            {
                tracing::warn!(
                    "listener {}: PLAIN is offered only on encrypted connections \
                     (set allow-insecure-plain = true to offer it over plain TCP)",
                    l.socket_address()
                );
            }
        }
        let threads = config.router.worker_threads();
        let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let workers: Vec<ArbiterHandle> = arbiters.iter().map(|a| a.handle()).collect();
        let tls = crate::tls::TlsRegistry::default();
        let mesh = if crate::mesh::configured(&config) {
            Some(crate::mesh::start(&config, users.clone(), &tls).await?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            router_id: config.router.id.clone(),
            addresses: AddressRegistry::new(
                config.addresses.clone(),
                workers.clone(),
                mesh.clone(),
            ),
            connections: DashMap::new(),
            workers,
            next_worker: AtomicUsize::new(0),
            next_conn: AtomicU64::new(0),
            next_dynamic: AtomicU64::new(0),
            model: crate::model::ReadModel::default(),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            mesh,
            configured: std::sync::Mutex::new(management::Configured::default()),
            http: OnceLock::new(),
            state_file: OnceLock::new(),
            state_writer: OnceLock::new(),
            heap: memory::HeapTrimmer::default(),
            users_in_force: users.clone(),
            connection_counts: Arc::default(),
            vhosts: config.vhosts.clone().into(),
            tls,
            link_routes: config.link_routes.clone(),
            route_containers: link_route::RouteContainers::default(),
            next_route_id: AtomicU64::new(0),
            auto_links: config
                .auto_links
                .iter()
                .map(|c| link_route::AutoLink::new(c.clone()))
                .collect(),
            client_ids: DashMap::new(),
            protocol_state: OnceLock::new(),
        });
        {
            let shared = Arc::downgrade(&shared);
            actix::spawn(async move {
                let mut last_trim = 0;
                let mut tick = tokio::time::interval(memory::CHECK_INTERVAL);
                loop {
                    tick.tick().await;
                    let Some(shared) = shared.upgrade() else {
                        break;
                    };
                    if shared.heap.check(&mut last_trim) {
                        tracing::debug!("connections closed: heap trimmed");
                    }
                }
            });
        }
        if let Some(mesh) = &shared.mesh {
            mesh.set_data_plane(Arc::new(RouterData {
                shared: Arc::downgrade(&shared),
            }));
        }
        let mqtt = config
            .listeners
            .iter()
            .any(|l| l.protocol == crate::config::Protocol::Mqtt);
        if mqtt && let Some(start) = &protocols.mqtt_started {
            start(&shared, &config)?;
        } else if let Some(dir) = &config.router.data_dir {
            tracing::info!(
                "[router] data-dir {}: nothing to store (it holds MQTT state; no MQTT listener)",
                dir.display()
            );
        }
        let mut listeners: Vec<management::ListenerEntry> = Vec::new();
        let mut bound = Vec::new();
        // Inter-router and edge listeners are the mesh's (gRPC), started above.
        for l in config.listeners.iter().filter(|l| !crate::mesh::serves(l)) {
            let addr = l.socket_address();
            let tls = shared
                .tls
                .listener(l)
                .map_err(|e| anyhow::anyhow!("listener {addr}: {}: {e}", e.key()))?;
            let tcp = listener::bind(l)
                .map_err(|e| anyhow::anyhow!("listener {addr}: cannot bind: {e}"))?;
            let local = tcp.local_addr()?;
            let accept = match l.protocol {
                crate::config::Protocol::Amqp => None,
                crate::config::Protocol::Mqtt => Some(protocols.mqtt.clone().ok_or_else(|| {
                    anyhow::anyhow!("listener {addr}: this router was started without MQTT")
                })?),
            };
            let on_mesh_thread = listener::on_mesh_arbiter(
                shared.mesh.is_some(),
                listener::wants_mesh_thread(l),
                tls.is_some(),
            );
            tracing::info!(
                router = %shared.router_id,
                "listening on {local} ({}, {})",
                match (l.protocol, tls.is_some()) {
                    (crate::config::Protocol::Amqp, true) => "amqps",
                    (protocol, _) => protocol.as_str(),
                },
                if on_mesh_thread {
                    "on the mesh's thread".to_owned()
                } else {
                    format!("{threads} workers")
                }
            );
            bound.push(local);
            listeners.push(management::ListenerEntry {
                config: l.clone(),
                bound: local,
                actor: Some(
                    ListenerActor::new(l.clone(), tcp, shared.clone(), tls)
                        .with_accept(accept)
                        .start(),
                ),
            });
        }
        let inter_router = shared.mesh.iter().flat_map(|m| m.bound.iter());
        let configs = config.listeners.iter().filter(|l| crate::mesh::serves(l));
        for (&bound, l) in inter_router.zip(configs) {
            listeners.push(management::ListenerEntry {
                config: l.clone(),
                bound,
                actor: None,
            });
        }
        {
            let mut configured = shared.configured();
            configured.listeners = listeners;
            configured.connectors = config
                .connectors
                .iter()
                .filter(|c| matches!(c.role, Role::InterRouter | Role::Edge))
                .cloned()
                .collect();
        }
        for c in config
            .connectors
            .iter()
            .filter(|c| c.role == Role::RouteContainer)
        {
            tracing::info!(router = %shared.router_id, connector = %c.name, "route-container connector to {}", c.socket_address());
            link_route::start(c.clone(), shared.clone());
        }
        let management_arbiter = Arbiter::new();
        let management = management::start(shared.clone(), &management_arbiter.handle());
        let mut arbiters = arbiters;
        arbiters.push(management_arbiter);
        Ok(Router {
            shared,
            management,
            bound,
            arbiters,
            config: in_force,
        })
    }

    /// The arbiter the management node (and the HTTP API) run on.
    pub fn management_arbiter(&self) -> ArbiterHandle {
        self.arbiters
            .last()
            .expect("the management arbiter is started with the router")
            .handle()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Keeps `file` up to date with the router's state from now on (see
    /// [`crate::state`]): writes it at once, then on every change.
    pub fn write_state_to(&self, file: StateFile) {
        let file = Arc::new(file);
        if self.shared.state_file.set(file.clone()).is_ok() {
            // The first write before this returns: a reader waiting for the
            // file knows the router is up once it appears.
            if let Err(e) = file.write(|| self.shared.state()) {
                tracing::warn!("state file not written: {e}");
            }
            let writer = StateWriter::start(Arc::downgrade(&self.shared), file);
            let _ = self.shared.state_writer.set(writer);
            // A change made after the writer's first snapshot but before it
            // was installed (a route-container connection opening at
            // start-up) published to no one: write once more.
            self.shared.publish_state();
        }
    }

    /// Applies `new` to the running router: each inter-router connector
    /// whose cost changed gets the new cost at once (the control actor logs
    /// `cost of link to R changed A -> B`), and the users file is read
    /// again (new logins check against it; established connections stay),
    /// as are the TLS certificates, keys and CAs (new handshakes use them);
    /// every other difference is logged at warn as needing a restart and
    /// left as it is. The configuration in force afterwards is the old one
    /// with the applied costs and users file.
    pub async fn reload(&mut self, new: &Config) -> ReloadReport {
        let diff = crate::config::reload::diff(&self.config, new);
        let mut report = ReloadReport::default();
        if new.router.users_file.is_some() || self.config.router.users_file.is_some() {
            match self.reload_users(new) {
                Ok(n) => tracing::info!("configuration reload: users file: {n} user(s) in force"),
                Err(e) => {
                    let failed =
                        format!("[router] users-file: {e}; the users in force are unchanged");
                    tracing::error!("configuration reload: {failed}");
                    report.failed.push(failed);
                }
            }
        }
        // Certificates, keys and CAs are re-read whatever else changed:
        // new handshakes use them, established sessions keep theirs.
        for e in self.shared.tls.reload_all() {
            report
                .failed
                .push(format!("TLS {} {}: {e}", e.key(), e.path().display()));
        }
        if diff.is_empty() {
            tracing::info!("configuration reload: nothing changed");
            return report;
        }
        for change in diff.costs {
            let result = match &self.shared.mesh {
                Some(mesh) => mesh
                    .set_connector_cost(&change.connector, change.new)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("the mesh is not running".to_owned()),
            };
            match result {
                Ok(applied) => {
                    if let Some(c) = self
                        .config
                        .connectors
                        .iter_mut()
                        .find(|c| c.name == change.connector)
                    {
                        c.cost = applied.new;
                    }
                    report.applied.push(applied);
                }
                Err(e) => {
                    let failed = format!(
                        "[[connector]] {:?} ({}) cost {} -> {}: {e}",
                        change.connector, change.target, change.old, change.new
                    );
                    tracing::error!("configuration reload: {failed}");
                    report.failed.push(failed);
                }
            }
        }
        for item in &diff.needs_restart {
            tracing::warn!("configuration reload: {item}: needs a restart, not applied");
        }
        report.needs_restart = diff.needs_restart;
        tracing::info!(
            "configuration reload: {} change(s) applied, {} need a restart, {} failed",
            report.applied.len(),
            report.needs_restart.len(),
            report.failed.len()
        );
        report
    }

    /// Re-reads the users file of `new` (`[router] users-file`) and swaps
    /// it in for the connections authenticating from now on. A file that
    /// does not load leaves the users in force unchanged.
    pub fn reload_users(&mut self, new: &Config) -> Result<usize, String> {
        let users = load_users(new).map_err(|e| e.to_string())?;
        let count = users.len();
        self.shared.users_in_force.replace(users);
        self.config.router.users_file = new.router.users_file.clone();
        Ok(count)
    }

    /// Graceful shutdown: stop accepting, return unsettled deliveries to their
    /// senders as released, close every connection with an error, stop the
    /// workers.
    pub async fn shutdown(self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        if let Some(file) = self.shared.state_file.get()
            && let Err(e) = file.remove()
        {
            tracing::warn!("{e}");
        }
        let listeners: Vec<Addr<ListenerActor>> = self
            .shared
            .configured()
            .listeners
            .iter()
            .filter_map(|l| l.actor.clone())
            .collect();
        for l in &listeners {
            let _ = l.send(StopAccepting).await;
        }
        let conns: Vec<Addr<ConnectionActor>> = self
            .shared
            .connections
            .iter()
            .map(|e| e.value().clone())
            .collect();
        tracing::info!(connections = conns.len(), "shutting down");
        for c in &conns {
            c.do_send(Shutdown);
        }
        // Give connections a moment to flush their closes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !self.shared.connections.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for a in &self.arbiters {
            a.stop();
        }
        for a in self.arbiters {
            let _ = a.join();
        }
    }
}
