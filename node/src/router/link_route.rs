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
use bytes::Bytes;
use dashmap::DashMap;

use super::Shared;
use super::connection::ConnectionActor;
use crate::config::{ConnectorConfig, LinkRouteConfig, RouteDestination};
use crate::delivery::ConnId;
use crate::mesh::connector::{BACKOFF_MAX, BACKOFF_MIN, Backoff, STABLE_STREAM};
use bote_amqp::{AmqpError, Attach, DeliveryState};

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
    /// The client's connection actor, where [`RoutedFrame`]s for this pair go.
    pub peer: Addr<ConnectionActor>,
    /// Counted down when the routed link ends.
    pub links: Arc<AtomicUsize>,
}

/// One performative of a routed link, from one end of the pair to the other.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoutedFrame {
    pub route_id: u64,
    pub frame: Routed,
}

#[derive(Debug)]
pub enum Routed {
    /// The broker answered the attach (to the client's end).
    Attached(Box<Attach>),
    /// From the end whose link sends (its receiver granted credit): the
    /// receiver allows `total` deliveries since the link attached;
    /// `drain` asks the far sender to use its credit up.
    Credit { total: u32, drain: bool },
    /// From the end whose link receives: the far sender completed a drain.
    Drained,
    /// A transfer frame, from the receiving end to the sending end.
    Transfer {
        delivery_id: u32,
        tag: Bytes,
        message_format: u32,
        first: bool,
        more: bool,
        settled: bool,
        aborted: bool,
        payload: Bytes,
    },
    /// The far receiver updated or settled a delivery: `delivery_id` is the
    /// receiving end's.
    Disposition {
        delivery_id: u32,
        state: Option<DeliveryState>,
        settled: bool,
    },
    /// The other end detached (or its connection went).
    Detach {
        closed: bool,
        error: Option<AmqpError>,
    },
}

/// Starts the dialling task of a route-container connector: it connects,
/// starts a connection actor for the socket on a worker, waits until that
/// connection ends and connects again, forever, with the inter-router
/// connectors' backoff (a connection up for [`STABLE_STREAM`] resets it).
pub fn start(config: ConnectorConfig, shared: Arc<Shared>) {
    actix::spawn(async move {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let target = config.socket_address();
        let config = Arc::new(config);
        loop {
            if shared
                .shutting_down
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return;
            }
            match tokio::net::TcpStream::connect(&target).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let started = Instant::now();
                    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                    match stream.into_std() {
                        Ok(socket) => {
                            let shared2 = shared.clone();
                            let config2 = config.clone();
                            let id = shared.next_conn_id();
                            ConnectionActor::start_in_arbiter(&shared.next_worker(), move |_| {
                                ConnectionActor::route_container(
                                    id, socket, config2, shared2, done_tx,
                                )
                            });
                            let _ = done_rx.await;
                            tracing::info!(connector = %config.name, "route-container connection to {target} ended; reconnecting");
                        }
                        Err(e) => {
                            tracing::warn!(connector = %config.name, "socket to {target}: {e}");
                        }
                    }
                    if started.elapsed() >= STABLE_STREAM {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    tracing::debug!(connector = %config.name, "cannot reach route container {target}: {e}; retrying with backoff");
                }
            }
            tokio::time::sleep(backoff.next_delay().min(Duration::from_secs(5))).await;
        }
    });
}
