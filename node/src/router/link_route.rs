//! Link routing: route-container connections (outbound AMQP connections to
//! brokers, one per `[[connector]]` with `role = "route-container"`, dialled
//! again with backoff whenever they drop) and the messages that pair a
//! client's link with a link the router attaches on a broker's connection.
//!
//! The decision is made once, at attach: a client's attach whose address
//! matches a `[[link-route]]` of its direction is not message-routed; the
//! client's connection actor picks a broker connection for the route (by
//! connector name, or among those whose peer's container-id matches, the
//! one with the fewest routed links) and sends it [`RouteAttach`]. From
//! then on the two connection actors exchange [`RoutedFrame`]s for the pair,
//! keyed by a router-wide `route id`: the broker's attach reply, flow
//! (credit as a running total, so no frame in flight is counted twice, and
//! drain), each transfer frame, dispositions and the detach. The router
//! grants a routed link's sender no credit beyond what the far receiver
//! granted, holds no message past a frame in flight, and settles nothing:
//! outcomes and settlement are the far end's (see ARCHITECTURE.md, "Link
//! routing").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;

use super::Shared;
use super::connection::ConnectionActor;
use crate::config::{ConnectorConfig, LinkRouteConfig, RouteDestination};
use crate::delivery::ConnId;
pub use crate::delivery::routed::{Routed, RoutedFrame};
use crate::mesh::connector::{BACKOFF_MAX, BACKOFF_MIN, Backoff, STABLE_STREAM};
use bote_amqp::Attach;

/// One open route-container connection, registered once the broker's open
/// arrived.
#[derive(Clone)]
pub struct RouteContainer {
    pub conn: ConnId,
    pub actor: Addr<ConnectionActor>,
    /// The broker's container-id (from its open).
    pub container_id: String,
    /// Routed links on this connection now (balancing).
    pub links: Arc<AtomicUsize>,
}

/// The route-container connections that are open, by connector name.
#[derive(Default)]
pub struct RouteContainers {
    open: DashMap<String, RouteContainer>,
}

impl RouteContainers {
    pub fn register(&self, connector: &str, container: RouteContainer) {
        self.open.insert(connector.to_owned(), container);
    }

    /// Forgets `connector`'s connection if it is still `conn`.
    pub fn unregister(&self, connector: &str, conn: ConnId) {
        self.open.remove_if(connector, |_, c| c.conn == conn);
    }

    /// The connection a new routed link of `route` goes to: the named
    /// connector's, or the least loaded of those whose broker has the
    /// route's container-id. `None`: no such connection is open.
    pub fn pick(&self, route: &LinkRouteConfig) -> Option<RouteContainer> {
        match &route.destination {
            RouteDestination::Connection(name) => self.open.get(name).map(|c| c.clone()),
            RouteDestination::ContainerId(id) => self
                .open
                .iter()
                .filter(|c| &c.container_id == id)
                .min_by_key(|c| (c.links.load(Ordering::Relaxed), c.conn.0))
                .map(|c| c.clone()),
        }
    }

    /// Whether a route has somewhere to go now.
    pub fn is_reachable(&self, route: &LinkRouteConfig) -> bool {
        self.pick(route).is_some()
    }

    /// `(connector name, container-id)` of every open connection.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .open
            .iter()
            .map(|e| (e.key().clone(), e.container_id.clone()))
            .collect();
        v.sort();
        v
    }
}

/// To a broker connection's actor: attach a link for a client's link.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteAttach {
    pub route_id: u64,
    /// The client's attach, its address already rewritten for the broker.
    pub attach: Box<Attach>,
    /// The pair's other end (the client's connection actor, or the peer
    /// actor of the neighbour the attach came from), where
    /// [`RoutedFrame`]s for this pair go.
    pub peer: Recipient<RoutedFrame>,
    /// The route: the broker's answer is rewritten back with it.
    pub route: Arc<LinkRouteConfig>,
    /// Counted down when the routed link ends.
    pub links: Arc<AtomicUsize>,
}

/// Starts the dialling task of a route-container connector on a worker
/// arbiter: it connects (over TLS when the connector has `tls-ca-file`,
/// the handshake bounded by [`TLS_HANDSHAKE`]), runs a connection actor
/// for the socket on that worker (logging in with SASL PLAIN when the
/// connector has `sasl-username`), waits until that connection ends and
/// connects again, forever, with the inter-router connectors' backoff (a
/// connection up for [`STABLE_STREAM`] resets it). A TLS configuration
/// that cannot be built is logged and the connector stays down.
pub fn start(config: ConnectorConfig, shared: Arc<Shared>) {
    let tls = match shared.tls.connector(&config) {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(connector = %config.name, "route-container connector: {}: {e}", e.key());
            return;
        }
    };
    let worker = shared.next_worker();
    worker.spawn(async move {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let target = config.socket_address();
        let config = Arc::new(config);
        let mut failures = 0u64;
        loop {
            if shared
                .shutting_down
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return;
            }
            let started = Instant::now();
            match dial(&target, &config, tls.as_deref()).await {
                Ok((socket, credentials)) => {
                    failures = 0;
                    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                    let (shared2, config2) = (shared.clone(), config.clone());
                    let id = shared.next_conn_id();
                    ConnectionActor::create(move |_| {
                        ConnectionActor::route_container(
                            id,
                            socket,
                            config2,
                            credentials,
                            shared2,
                            done_tx,
                        )
                    });
                    let _ = done_rx.await;
                    tracing::info!(connector = %config.name, "route-container connection to {target} ended; reconnecting");
                    if started.elapsed() >= STABLE_STREAM {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    // Said at once, then every 20th attempt: a broker that
                    // stays down does not flood the log.
                    failures += 1;
                    if failures % 20 == 1 {
                        tracing::warn!(connector = %config.name, failures, "cannot reach route container {target}: {e:#}; retrying with backoff");
                    } else {
                        tracing::debug!(connector = %config.name, "cannot reach route container {target}: {e:#}; retrying with backoff");
                    }
                }
            }
            tokio::time::sleep(backoff.next_delay().min(Duration::from_secs(5))).await;
        }
    });
}

/// How long a route-container connector's TLS handshake may take.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(5);

/// Connects to `target` (with TLS when `tls`) and reads the connector's
/// SASL PLAIN credentials, if it has a user name (the password file is
/// read at each dial, so a rotated one applies at the next).
async fn dial(
    target: &str,
    config: &ConnectorConfig,
    tls: Option<&crate::tls::ClientTls>,
) -> anyhow::Result<(super::connection::Transport, Option<Vec<u8>>)> {
    let credentials = crate::mesh::auth::credentials(config)?;
    let stream = tokio::net::TcpStream::connect(target).await?;
    let _ = stream.set_nodelay(true);
    let socket = match tls {
        None => super::connection::Transport::Plain(stream.into_std()?),
        Some(tls) => {
            let session = tokio::time::timeout(
                TLS_HANDSHAKE,
                tls.connector().connect(tls.server_name(), stream),
            )
            .await
            .map_err(|_| anyhow::anyhow!("TLS handshake not done within {TLS_HANDSHAKE:?}"))?
            .map_err(|e| anyhow::anyhow!("TLS handshake: {e}"))?;
            let info = crate::tls::session_info(session.get_ref().1);
            super::connection::Transport::Tls(Box::new(session.into()), info)
        }
    };
    Ok((socket, credentials))
}

/// An `[[auto-link]]` and its state, which management shows.
pub struct AutoLink {
    pub config: Arc<crate::config::AutoLinkConfig>,
    state: std::sync::Mutex<(AutoLinkState, Option<String>)>,
}

/// qdrouterd's `linkState` of an auto-link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoLinkState {
    /// No connection to its broker is open.
    Inactive,
    /// Attached by the router, the broker's answer not in yet.
    Attaching,
    /// The broker answered with its terminus: the queue takes part.
    Active,
    /// The broker refused or detached it (see the last error); the router
    /// attaches it again after a while.
    Failed,
}

impl AutoLinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoLinkState::Inactive => "inactive",
            AutoLinkState::Attaching => "attaching",
            AutoLinkState::Active => "active",
            AutoLinkState::Failed => "failed",
        }
    }
}

impl AutoLink {
    pub fn new(config: crate::config::AutoLinkConfig) -> AutoLink {
        AutoLink {
            config: Arc::new(config),
            state: std::sync::Mutex::new((AutoLinkState::Inactive, None)),
        }
    }

    /// Its state and the last error the broker gave.
    pub fn state(&self) -> (AutoLinkState, Option<String>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new state; `error` replaces the last error when given.
    pub fn set(&self, state: AutoLinkState, error: Option<String>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = state;
        if error.is_some() {
            s.1 = error;
        }
    }
}

/// The mobile address a router advertises while it holds an open
/// route-container connection to the broker with `container_id`.
pub fn container_address(container_id: &str) -> String {
    format!("_linkroute/{container_id}")
}

impl Shared {
    /// For a route with no broker connected here: the closest other router
    /// that holds a connection to the route's broker (`container-id`
    /// routes only: a connector's name means nothing elsewhere), and the
    /// neighbour the attach goes to first.
    pub fn remote_route_container(
        &self,
        route: &LinkRouteConfig,
    ) -> Option<(String, crate::delivery::routed::LinkPeer)> {
        let RouteDestination::ContainerId(id) = &route.destination else {
            return None;
        };
        let mesh = self.mesh.as_ref()?;
        let routers = mesh.remote_routers(&bote_topology::Address::from(
            container_address(id).as_str(),
        ));
        let view = mesh.view();
        let (cost, destination) = routers
            .iter()
            .filter_map(|r| Some((view.routes.cost(r)?, r)))
            .min()?;
        let _ = cost;
        let hop = view.routes.next_hop(destination)?;
        let next = view.link_peers.get(hop)?.clone();
        Some((destination.as_str().to_owned(), next))
    }

    /// An attach that arrived from a neighbour for the broker on
    /// `destination` (see `mesh::DataPlane::route_link`).
    pub fn route_link_from_mesh(
        &self,
        attach: Box<Attach>,
        destination: &str,
        reply_to: actix::Recipient<RoutedFrame>,
    ) -> Result<(u64, actix::Recipient<RoutedFrame>), bote_amqp::AmqpError> {
        use bote_amqp::{AmqpError, condition};
        let not_found = |why: String| AmqpError::new(condition::NOT_FOUND, why);
        let route_id = self.next_route_id();
        if destination != self.router_id {
            let mesh = self
                .mesh
                .as_ref()
                .ok_or_else(|| not_found(format!("router {} is in no mesh", self.router_id)))?;
            let view = mesh.view();
            let next = bote_topology::RouterId::from(destination);
            let next = view
                .routes
                .next_hop(&next)
                .and_then(|hop| view.link_peers.get(hop))
                .ok_or_else(|| {
                    not_found(format!(
                        "router {} has no route to router {destination}",
                        self.router_id
                    ))
                })?;
            next.attach
                .do_send(crate::delivery::routed::RemoteRouteAttach {
                    route_id,
                    attach,
                    destination: destination.to_owned(),
                    peer: reply_to,
                });
            return Ok((route_id, next.frames.clone()));
        }
        let (address, incoming) = crate::delivery::routed::routed_address(&attach);
        let direction = if incoming {
            crate::config::LinkDirection::In
        } else {
            crate::config::LinkDirection::Out
        };
        let address = address.unwrap_or_default().to_owned();
        let route = self
            .link_routes
            .matching(&address, direction)
            .ok_or_else(|| {
                not_found(format!(
                    "router {} has no link route for '{address}'",
                    self.router_id
                ))
            })?;
        let route = Arc::new(route.clone());
        let container = self.route_containers.pick(&route).ok_or_else(|| {
            not_found(format!(
                "no route to '{address}': link route '{}' has no broker connected to router {}",
                route.name, self.router_id
            ))
        })?;
        tracing::info!(%address, route = %route.name, broker = %container.container_id, route_id, "attach from the mesh link-routed");
        let broker = container.actor.clone().recipient();
        super::connection::send_route_attach(&container, route_id, *attach, route, reply_to);
        Ok((route_id, broker))
    }

    /// A route-container connection to `container_id` opened: the mesh
    /// learns this router reaches that broker.
    pub fn advertise_route_container(&self, container_id: &str) {
        if let Some(mesh) = &self.mesh {
            mesh.add_local_address(&container_address(container_id));
        }
    }

    /// One closed: the advertisement goes when no other connection to the
    /// same broker is open.
    pub fn withdraw_route_container(&self, container_id: &str) {
        let still = self
            .route_containers
            .snapshot()
            .iter()
            .any(|(_, id)| id == container_id);
        if !still && let Some(mesh) = &self.mesh {
            mesh.remove_local_address(&container_address(container_id));
        }
    }
}
