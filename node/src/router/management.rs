//! The router's management node: a consumer of `$management` (local and
//! mobile) and of `_topo/0/<router-id>/$management` (which the mesh routes
//! to this router from any other), answering AMQP management requests
//! ([`crate::management`]) from the read model, and the router's entities
//! as management shows them (qdrouterd's types and attribute names).
//!
//! The node is an actor on an arbiter of its own, whose thread runs at a
//! lower priority than the forwarding workers (nice 5), so that a QUERY of
//! thousands of connections never holds up a connection or address actor:
//! it reads the shared registries ([`crate::model::ReadModel`], the address
//! registry's counters, the mesh view) without asking any actor. Requests
//! arrive as routed deliveries (it is attached to both addresses like a
//! client's receiver); each is accepted (or rejected when it has no
//! `reply-to`) and its reply is routed to the `reply-to` address like any
//! message, through the mesh when the requester is on another router.
//!
//! Address keys are qdrouterd's: `M0<address>` for mobile addresses,
//! `L<rest>` for `_topo/0/<this router>/<rest>` (served here only),
//! `T<router>/<rest>` for another router's `_topo/0/` addresses, and
//! `R<router>` for each reachable router.
//!
//! Delivery delays (`deliveriesDelayed1Sec`, `deliveriesDelayed10Sec`) and
//! stuck deliveries (`deliveriesStuck`) are counted on incoming links, as
//! the router's own counts are, from arrival to the outcome reaching the
//! sender. A consumer link's time at zero credit (`zeroCreditSeconds`) and
//! the links blocked at zero credit for over 10 s (`linksBlocked`) are
//! read from the moment the link's credit last reached zero; an incoming
//! link reports 0 (the router grants its credit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use actix::prelude::*;
use bote_amqp::DeliveryState;
use bote_amqp::codec::Value;

use super::Shared;
use super::address::{AddressStats, Deliver, Forward};
use super::link::LinkCounters;
use super::listener::{ListenerActor, StopAccepting};
use crate::config::address::{AddressEntry, AddressKey, AddressTable};
use crate::config::{ConnectorConfig, ListenerConfig, Role};
use crate::delivery::{ConnId, Origin, Returned, RoutedDelivery};
use crate::management::agent::{self, Change, ChangeOp, Entity, Managed, Step};
use crate::management::message::{Reply, Request};
use crate::management::schema::{self, EntityType};
use crate::model::{ConnectionInfo, LinkInfo, unix_seconds};

/// The management node's address on every router.
pub const MANAGEMENT: &str = "$management";

/// The management node's address on router `id`, as routed through the mesh.
pub fn topo_address(id: &str) -> String {
    format!("_topo/0/{id}/$management")
}

/// The listeners and connectors in force: those configured at start and
/// those created since through management.
#[derive(Default)]
pub struct Configured {
    pub listeners: Vec<ListenerEntry>,
    pub connectors: Vec<ConnectorConfig>,
}

/// A bound listener.
pub struct ListenerEntry {
    pub config: ListenerConfig,
    pub bound: SocketAddr,
    /// Its actor; `None` for inter-router listeners (the mesh serves them).
    pub actor: Option<Addr<ListenerActor>>,
}

impl ListenerEntry {
    /// Its management name: the configured one, or `listener/<host>:<port>`.
    pub fn name(&self) -> String {
        self.config
            .name
            .clone()
            .unwrap_or_else(|| format!("listener/{}", self.bound))
    }
}

/// qdrouterd's key of an address as router `me` sees it (`_edge/<me>/…`
/// is local, `L`; another edge's `_edge/<id>/…` is `H<id>/…`).
pub fn address_key(me: &str, address: &str) -> String {
    if let Some(rest) = address.strip_prefix("_edge/") {
        return match rest.strip_prefix(me).and_then(|r| r.strip_prefix('/')) {
            Some(local) => format!("L{local}"),
            None => format!("H{rest}"),
        };
    }
    match address.strip_prefix("_topo/0/") {
        Some(rest) => match rest.strip_prefix(me).and_then(|r| r.strip_prefix('/')) {
            Some(local) => format!("L{local}"),
            None => format!("T{rest}"),
        },
        None => format!("M0{address}"),
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

fn long(v: impl TryInto<i64>) -> Value {
    Value::Long(v.try_into().unwrap_or(i64::MAX))
}

/// Common attributes: `name`, `identity`, `type` (the name and identity are
/// made only when asked for: a QUERY reads many attributes of many rows).
fn base(
    attribute: &str,
    ty: &EntityType,
    name: impl FnOnce() -> String,
    identity: impl FnOnce() -> String,
) -> Option<Value> {
    match attribute {
        "name" => Some(Value::String(name())),
        "identity" => Some(Value::String(identity())),
        "type" => Some(text(ty.name)),
        _ => None,
    }
}

struct RouterEntity {
    id: String,
    mode: &'static str,
    addresses: usize,
    links: u64,
    nodes: usize,
    connections: usize,
    totals: crate::model::Totals,
    dropped_presettled: u64,
    transit: u64,
    uptime: u64,
    memory: Option<u64>,
    workers: usize,
}

impl Entity for RouterEntity {
    fn get(&self, attribute: &str) -> Value {
        let ty = &schema::ROUTER;
        let identity = || format!("router/{}", self.id);
        if let Some(v) = base(attribute, ty, identity, identity) {
            return v;
        }
        let t = &self.totals;
        match attribute {
            "id" => text(&self.id),
            "mode" => text(self.mode),
            "area" => text("0"),
            "version" => text(env!("CARGO_PKG_VERSION")),
            "addrCount" => long(self.addresses),
            "linkCount" => long(self.links),
            "nodeCount" => long(self.nodes),
            "linkRouteCount" | "autoLinkCount" => long(0),
            "connectionCount" => long(self.connections),
            "presettledDeliveries" => long(t.incoming.presettled),
            "droppedPresettledDeliveries" => long(self.dropped_presettled),
            "acceptedDeliveries" => long(t.incoming.accepted),
            "rejectedDeliveries" => long(t.incoming.rejected),
            "releasedDeliveries" => long(t.incoming.released),
            "modifiedDeliveries" => long(t.incoming.modified),
            "deliveriesDelayed1Sec" => long(t.incoming.delayed_1sec),
            "deliveriesDelayed10Sec" => long(t.incoming.delayed_10sec),
            "deliveriesStuck" => long(t.stuck),
            "linksBlocked" => long(t.blocked),
            "deliveriesIngress" => long(t.incoming.delivered),
            "deliveriesEgress" => long(t.outgoing.delivered),
            "deliveriesTransit" => long(self.transit),
            "deliveriesIngressRouteContainer"
            | "deliveriesEgressRouteContainer"
            | "deliveriesRedirectedToFallback" => long(0),
            "uptimeSeconds" => long(self.uptime),
            "memoryUsage" => self.memory.map_or(Value::Null, long),
            "workerThreads" => long(self.workers),
            _ => Value::Null,
        }
    }
}

/// The process's virtual memory size in bytes (Linux `/proc/self/statm`).
fn memory_usage() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    Some(pages * 4096)
}

struct ConnectionEntity(Arc<ConnectionInfo>, u64);

impl Entity for ConnectionEntity {
    fn get(&self, attribute: &str) -> Value {
        let c = &self.0;
        if let Some(v) = base(
            attribute,
            &schema::CONNECTION,
            || ["connection/", c.host.as_str()].concat(),
            || c.id.0.to_string(),
        ) {
            return v;
        }
        match attribute {
            "host" => text(&c.host),
            "role" => text(c.role),
            "protocol" => text(c.protocol),
            "dir" => text(c.dir),
            "container" => opt_text(c.container.get().map(String::as_str)),
            "sasl" => opt_text(c.sasl.get().map(String::as_str)),
            "isAuthenticated" => Value::Bool(c.sasl.get().is_some()),
            "user" => opt_text(c.user.get().map(String::as_str)),
            "isEncrypted" | "ssl" => Value::Bool(c.tls.get().is_some()),
            "sslProto" => opt_text(c.tls.get().map(|t| t.protocol.as_str())),
            "sslCipher" => opt_text(c.tls.get().map(|t| t.cipher.as_str())),
            "sslSsf" => match c.tls.get() {
                Some(t) => long(u64::from(t.ssf)),
                None => Value::Null,
            },
            "enableProtocolTrace" => Value::Bool(false),
            "opened" => Value::Bool(c.opened.load(Relaxed)),
            "active" => Value::Bool(true),
            "adminStatus" => text("enabled"),
            "operStatus" => text("up"),
            "properties" => Value::Map(Vec::new()),
            "uptimeSeconds" => long(c.since.elapsed().as_secs()),
            "lastDlvSeconds" => match c.last_delivery.load(Relaxed) {
                0 => Value::Null,
                at => long(self.1.saturating_sub(at)),
            },
            _ => Value::Null,
        }
    }
}

struct LinkEntity {
    link: Arc<LinkInfo>,
    owning: Option<String>,
    /// The read model's clock when the entities were listed.
    now_ms: u64,
}

impl Entity for LinkEntity {
    fn get(&self, attribute: &str) -> Value {
        let l = &self.link;
        if let Some(v) = base(
            attribute,
            &schema::LINK,
            || l.name.clone(),
            || l.id.to_string(),
        ) {
            return v;
        }
        let counters: Option<&LinkCounters> = l.counters.as_deref();
        let s = &l.stats;
        match attribute {
            "linkName" => text(&l.name),
            "linkType" => text("endpoint"),
            "linkDir" => text(l.dir.as_str()),
            "owningAddr" => opt_text(self.owning.as_deref()),
            "capacity" => long(l.capacity),
            "undeliveredCount" => long(counters.map_or(0, |c| c.undelivered.load(Relaxed))),
            "unsettledCount" => long(match counters {
                Some(c) => c.unsettled.load(Relaxed),
                None => l.in_flight.load(Relaxed),
            }),
            "deliveryCount" => long(s.delivered.load(Relaxed)),
            "connectionId" => long(l.conn.0),
            "adminStatus" => text("enabled"),
            "operStatus" => text("up"),
            "presettledCount" => long(s.presettled.load(Relaxed)),
            "droppedPresettledCount" => long(s.dropped_presettled.load(Relaxed)),
            "acceptedCount" => long(s.accepted.load(Relaxed)),
            "rejectedCount" => long(s.rejected.load(Relaxed)),
            "releasedCount" => long(s.released.load(Relaxed)),
            "modifiedCount" => long(s.modified.load(Relaxed)),
            "deliveriesDelayed1Sec" => long(s.delayed_1sec.load(Relaxed)),
            "deliveriesDelayed10Sec" => long(s.delayed_10sec.load(Relaxed)),
            "deliveriesStuck" => long(l.stuck.load(Relaxed)),
            "zeroCreditSeconds" => long(l.zero_credit_seconds(self.now_ms)),
            "settleRate" => long(0),
            "priority" => long(4),
            "creditAvailable" => long(match counters {
                Some(c) => c.credit.load(Relaxed),
                None => l.credit.load(Relaxed),
            }),
            _ => Value::Null,
        }
    }
}

struct AddressEntity {
    key: String,
    distribution: String,
    stats: Option<Arc<AddressStats>>,
    in_process: bool,
    remote_routers: Vec<String>,
}

impl Entity for AddressEntity {
    fn get(&self, attribute: &str) -> Value {
        if let Some(v) = base(
            attribute,
            &schema::ADDRESS,
            || self.key.clone(),
            || self.key.clone(),
        ) {
            return v;
        }
        let count = |f: fn(&AddressStats) -> u64| long(self.stats.as_deref().map_or(0, f));
        let in_process = u32::from(self.in_process);
        match attribute {
            "key" => text(&self.key),
            "distribution" => text(&self.distribution),
            "inProcess" => long(in_process),
            "subscriberCount" => long(
                self.stats
                    .as_deref()
                    .map_or(0, |s| s.subscribers.load(Relaxed))
                    .saturating_sub(in_process),
            ),
            "remoteCount" => long(match &self.stats {
                Some(s) => s.remote.load(Relaxed) as usize,
                None => self.remote_routers.len(),
            }),
            "containerCount" => long(0),
            "remoteHostRouters" => Value::List(self.remote_routers.iter().map(text).collect()),
            "deliveriesIngress" => count(|s| s.ingress.load(Relaxed)),
            "deliveriesEgress" => count(|s| s.egress.load(Relaxed)),
            "deliveriesTransit" => count(|s| s.transit.load(Relaxed)),
            "deliveriesToContainer"
            | "deliveriesFromContainer"
            | "deliveriesEgressRouteContainer"
            | "deliveriesIngressRouteContainer"
            | "deliveriesRedirectedToFallback" => long(0),
            "trackedDeliveries" => long(0),
            "priority" => long(-1),
            _ => Value::Null,
        }
    }
}

struct NodeEntity {
    id: String,
    index: usize,
    link_state: Vec<(String, u32)>,
    next_hop: Option<String>,
    cost: Option<u32>,
    valid_origins: Vec<String>,
}

impl Entity for NodeEntity {
    fn get(&self, attribute: &str) -> Value {
        let identity = || format!("router.node/{}", self.id);
        if let Some(v) = base(attribute, &schema::NODE, identity, identity) {
            return v;
        }
        match attribute {
            "id" => text(&self.id),
            "protocolVersion" => long(1),
            "linkState" => Value::List(self.link_state.iter().map(|(r, _)| text(r)).collect()),
            "linkCosts" => Value::Map(
                self.link_state
                    .iter()
                    .map(|(r, c)| (text(r), long(*c)))
                    .collect(),
            ),
            "nextHop" => opt_text(self.next_hop.as_deref()),
            "validOrigins" => Value::List(self.valid_origins.iter().map(text).collect()),
            "address" => text(format!("amqp:/{}", topo_address(&self.id))),
            "cost" => self.cost.map_or(Value::Null, long),
            "index" => long(self.index),
            _ => Value::Null,
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Normal => "normal",
        Role::InterRouter => "inter-router",
        Role::RouteContainer => "route-container",
        Role::Edge => "edge",
    }
}

struct ListenerEntity {
    name: String,
    config: ListenerConfig,
    bound: SocketAddr,
}

impl Entity for ListenerEntity {
    fn get(&self, attribute: &str) -> Value {
        if let Some(v) = base(
            attribute,
            &schema::LISTENER,
            || self.name.clone(),
            || self.name.clone(),
        ) {
            return v;
        }
        let c = &self.config;
        match attribute {
            "host" => text(&c.host),
            "port" => text(self.bound.port().to_string()),
            "role" => text(role_name(c.role)),
            "saslMechanisms" => text(
                c.sasl_mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "authenticatePeer" => Value::Bool(c.authenticate_peer),
            "requireEncryption" | "requireSsl" | "multiTenant" => Value::Bool(false),
            "maxFrameSize" => long(c.max_frame_size),
            "maxSessions" if c.max_sessions > 0 => long(c.max_sessions),
            "idleTimeoutSeconds" => long(c.idle_timeout_secs),
            "linkCapacity" => long(c.link_capacity),
            "stripAnnotations" => text(format!("{:?}", c.strip_annotations).to_lowercase()),
            _ => Value::Null,
        }
    }
}

struct ConnectorEntity(ConnectorConfig);

impl Entity for ConnectorEntity {
    fn get(&self, attribute: &str) -> Value {
        let c = &self.0;
        if let Some(v) = base(
            attribute,
            &schema::CONNECTOR,
            || c.name.clone(),
            || c.name.clone(),
        ) {
            return v;
        }
        match attribute {
            "host" => text(&c.host),
            "port" => text(c.port.to_string()),
            "role" => text(role_name(c.role)),
            "cost" => long(c.cost),
            "saslMechanisms" => text(
                c.sasl_mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            "maxFrameSize" => long(c.max_frame_size),
            "idleTimeoutSeconds" => long(c.idle_timeout_secs),
            _ => Value::Null,
        }
    }
}

struct LinkRouteEntity {
    route: crate::config::LinkRouteConfig,
    active: bool,
}

impl Entity for LinkRouteEntity {
    fn get(&self, attribute: &str) -> Value {
        if let Some(v) = base(
            attribute,
            &schema::CONFIG_LINK_ROUTE,
            || self.route.name.clone(),
            || self.route.name.clone(),
        ) {
            return v;
        }
        use crate::config::RouteDestination;
        let r = &self.route;
        match attribute {
            "prefix" => match &r.key {
                AddressKey::Prefix(p) => text(p),
                AddressKey::Pattern(_) => Value::Null,
            },
            "pattern" => match &r.key {
                AddressKey::Pattern(p) => text(p),
                AddressKey::Prefix(_) => Value::Null,
            },
            "addExternalPrefix" => r.add_external_prefix.as_deref().map_or(Value::Null, text),
            "delExternalPrefix" => r.del_external_prefix.as_deref().map_or(Value::Null, text),
            "containerId" => match &r.destination {
                RouteDestination::ContainerId(id) => text(id),
                RouteDestination::Connection(_) => Value::Null,
            },
            "connection" => match &r.destination {
                RouteDestination::Connection(c) => text(c),
                RouteDestination::ContainerId(_) => Value::Null,
            },
            "distribution" => text("linkBalanced"),
            "direction" => text(r.direction.as_str()),
            "operStatus" => text(if self.active { "active" } else { "inactive" }),
            _ => Value::Null,
        }
    }
}

struct AutoLinkEntity {
    config: std::sync::Arc<crate::config::AutoLinkConfig>,
    state: super::link_route::AutoLinkState,
    last_error: Option<String>,
}

impl Entity for AutoLinkEntity {
    fn get(&self, attribute: &str) -> Value {
        if let Some(v) = base(
            attribute,
            &schema::CONFIG_AUTO_LINK,
            || self.config.name.clone(),
            || self.config.name.clone(),
        ) {
            return v;
        }
        use crate::config::{LinkDirection, RouteDestination};
        let c = &self.config;
        match attribute {
            "address" => text(&c.address),
            "direction" => text(c.direction.as_str()),
            // qdrouterd's default phases: out 0 (toward the queue), in 1.
            "phase" => long(match c.direction {
                LinkDirection::Out => 0,
                LinkDirection::In => 1,
            }),
            "containerId" => match &c.destination {
                RouteDestination::ContainerId(id) => text(id),
                RouteDestination::Connection(_) => Value::Null,
            },
            "connection" => match &c.destination {
                RouteDestination::Connection(n) => text(n),
                RouteDestination::ContainerId(_) => Value::Null,
            },
            "externalAddress" => c.external_address.as_deref().map_or(Value::Null, text),
            "fallback" => Value::Bool(false),
            "operStatus" => text(self.state.as_str()),
            "lastError" => self.last_error.as_deref().map_or(Value::Null, text),
            _ => Value::Null,
        }
    }
}

struct ConfigAddressEntity {
    name: String,
    entry: AddressEntry,
}

impl Entity for ConfigAddressEntity {
    fn get(&self, attribute: &str) -> Value {
        if let Some(v) = base(
            attribute,
            &schema::CONFIG_ADDRESS,
            || self.name.clone(),
            || self.name.clone(),
        ) {
            return v;
        }
        match attribute {
            "prefix" => match &self.entry.key {
                AddressKey::Prefix(p) => text(p),
                AddressKey::Pattern(_) => Value::Null,
            },
            "pattern" => match &self.entry.key {
                AddressKey::Pattern(p) => text(p),
                AddressKey::Prefix(_) => Value::Null,
            },
            "distribution" => text(self.entry.distribution.as_str()),
            "waypoint" | "fallback" => Value::Bool(false),
            "priority" => long(self.entry.priority.map_or(-1, i64::from)),
            _ => Value::Null,
        }
    }
}

fn config_address_name(index: usize, entry: &AddressEntry) -> String {
    entry
        .name
        .clone()
        .unwrap_or_else(|| format!("address/{index}"))
}

impl Shared {
    pub(super) fn configured(&self) -> std::sync::MutexGuard<'_, Configured> {
        match self.configured.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn router_entity(&self) -> RouterEntity {
        let addresses = self.addresses.addresses();
        let view = self.mesh.as_ref().map(|m| m.view());
        let mut totals = self.model.totals();
        if let Some(m) = &self.mesh {
            totals.add_inter_router_outcomes(m.stats.incoming_outcomes.read());
        }
        RouterEntity {
            id: self.router_id.clone(),
            mode: match &self.mesh {
                Some(m) => m.mode.as_str(),
                None => "standalone",
            },
            addresses: addresses.len(),
            totals,
            links: 0,
            nodes: view.as_ref().map_or(0, |v| v.routes.reachable_count()),
            connections: self.model.connections.len(),
            dropped_presettled: addresses
                .iter()
                .map(|(_, s)| s.dropped_presettled.load(Relaxed))
                .sum(),
            transit: addresses.iter().map(|(_, s)| s.transit.load(Relaxed)).sum(),
            uptime: self.model.started.elapsed().as_secs(),
            memory: memory_usage(),
            workers: self.workers.len(),
        }
        .with_links()
    }

    fn address_entities(&self) -> Vec<Box<dyn Entity>> {
        let view = self.mesh.as_ref().map(|m| m.view());
        let mut out: Vec<Box<dyn Entity>> = Vec::new();
        if let Some(view) = &view {
            for (router, _) in view.routes.iter() {
                out.push(Box::new(AddressEntity {
                    key: format!("R{router}"),
                    distribution: "closest".into(),
                    stats: None,
                    in_process: false,
                    remote_routers: vec![router.as_str().to_owned()],
                }));
            }
        }
        let topo = topo_address(&self.router_id);
        let local = self.addresses.addresses();
        // Addresses known only from the mesh (consumers elsewhere, no
        // actor here yet) are listed too, as qdrouterd lists them.
        let remote = self
            .mesh
            .as_ref()
            .map(|m| m.remote_addresses().snapshot())
            .unwrap_or_default();
        {
            for (address, routers) in &remote {
                if local
                    .binary_search_by(|(a, _)| (**a).cmp(address.as_str()))
                    .is_ok()
                {
                    continue;
                }
                out.push(Box::new(AddressEntity {
                    key: address_key(&self.router_id, address.as_str()),
                    distribution: self
                        .addresses
                        .distribution(address.as_str())
                        .as_str()
                        .to_owned(),
                    stats: None,
                    in_process: false,
                    remote_routers: routers.iter().map(|r| r.as_str().to_owned()).collect(),
                }));
            }
        }
        for (address, stats) in local {
            let remote_routers = remote
                .get(&bote_topology::Address::from(&*address))
                .map(|rs| rs.iter().map(|r| r.as_str().to_owned()).collect())
                .unwrap_or_default();
            out.push(Box::new(AddressEntity {
                key: address_key(&self.router_id, &address),
                distribution: stats
                    .distribution
                    .get()
                    .map_or("balanced", |d| d.as_str())
                    .to_owned(),
                in_process: *address == *MANAGEMENT || *address == *topo,
                stats: Some(stats),
                remote_routers,
            }));
        }
        out
    }

    fn node_entities(&self) -> Vec<Box<dyn Entity>> {
        let Some(mesh) = &self.mesh else {
            return Vec::new();
        };
        let view = mesh.view();
        let routes = &view.routes;
        let topology = routes.topology();
        let origins = routes.valid_origins();
        let me = routes.local();
        let mut out: Vec<Box<dyn Entity>> = Vec::new();
        for (index, router) in topology.routers().iter().enumerate() {
            let route = routes.route(router);
            if router != me && route.is_none() {
                continue;
            }
            out.push(Box::new(NodeEntity {
                id: router.as_str().to_owned(),
                index,
                link_state: topology
                    .neighbours(router)
                    .into_iter()
                    .map(|(r, c)| (r.as_str().to_owned(), c))
                    .collect(),
                next_hop: if router == me {
                    Some("(self)".into())
                } else {
                    route.as_ref().map(|r| r.next_hop.as_str().to_owned())
                },
                cost: if router == me {
                    Some(0)
                } else {
                    route.map(|r| r.cost)
                },
                valid_origins: origins
                    .get(router)
                    .map(|o| o.iter().map(|r| r.as_str().to_owned()).collect())
                    .unwrap_or_default(),
            }));
        }
        out
    }
}

impl Shared {
    /// The edge streams as connections with role `edge` (qdrouterd lists
    /// an interior's edge connections and an edge's uplink so): the
    /// container is the router at the other end; identities are
    /// [`EDGE_CONNECTION_IDS`] + the stream's number, apart from clients'.
    /// A link as management shows it, its owning address keyed as
    /// qdrouterd keys it.
    fn link_entity(&self, link: Arc<LinkInfo>, now_ms: u64) -> Box<dyn Entity> {
        let owning = link
            .address
            .as_deref()
            .map(|a| address_key(&self.router_id, a));
        Box::new(LinkEntity {
            link,
            owning,
            now_ms,
        })
    }

    fn edge_connections(&self) -> Vec<Arc<ConnectionInfo>> {
        let Some(mesh) = &self.mesh else {
            return Vec::new();
        };
        mesh.edge_links()
            .into_iter()
            .map(|link| {
                let mut info =
                    ConnectionInfo::new(ConnId(EDGE_CONNECTION_IDS + link.conn), link.host);
                info.role = "edge";
                info.dir = link.dir;
                info.since = link.since;
                let _ = info.container.set(link.router.as_str().to_owned());
                info.opened.store(true, Relaxed);
                Arc::new(info)
            })
            .collect()
    }
}

/// Where the management identities of edge connections start (client
/// connections count from 1).
pub const EDGE_CONNECTION_IDS: u64 = 1 << 48;

impl RouterEntity {
    fn with_links(mut self) -> RouterEntity {
        self.links = self.totals.links;
        self
    }
}

impl Managed for Shared {
    fn entities(&self, ty: &'static EntityType) -> Vec<Box<dyn Entity>> {
        match ty.short {
            "router" => vec![Box::new(self.router_entity())],
            "connection" => {
                let now = unix_seconds();
                self.model
                    .connections()
                    .into_iter()
                    .chain(self.edge_connections())
                    .map(|c| Box::new(ConnectionEntity(c, now)) as Box<dyn Entity>)
                    .collect()
            }
            "router.link" => {
                let mut out: Vec<Box<dyn Entity>> = Vec::new();
                let now_ms = self.model.clock_ms();
                for c in self.model.connections() {
                    for link in c.links() {
                        out.push(self.link_entity(link, now_ms));
                    }
                }
                out
            }
            "router.address" => self.address_entities(),
            "router.node" => self.node_entities(),
            "listener" => self
                .configured()
                .listeners
                .iter()
                .map(|l| {
                    Box::new(ListenerEntity {
                        name: l.name(),
                        config: l.config.clone(),
                        bound: l.bound,
                    }) as Box<dyn Entity>
                })
                .collect(),
            "connector" => self
                .configured()
                .connectors
                .iter()
                .map(|c| Box::new(ConnectorEntity(c.clone())) as Box<dyn Entity>)
                .collect(),
            "router.config.address" => self
                .addresses
                .table()
                .entries()
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    Box::new(ConfigAddressEntity {
                        name: config_address_name(i, e),
                        entry: e.clone(),
                    }) as Box<dyn Entity>
                })
                .collect(),
            "router.config.linkRoute" => self
                .link_routes
                .routes()
                .iter()
                .map(|r| {
                    let active = self.route_containers.is_reachable(r)
                        || self.remote_route_container(r).is_some();
                    Box::new(LinkRouteEntity {
                        route: r.clone(),
                        active,
                    }) as Box<dyn Entity>
                })
                .collect(),
            "router.config.autoLink" => self
                .auto_links
                .iter()
                .map(|a| {
                    let (state, last_error) = a.state();
                    Box::new(AutoLinkEntity {
                        config: a.config.clone(),
                        state,
                        last_error,
                    }) as Box<dyn Entity>
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Connections and links are paged from the sorted connection ids:
    /// a QUERY page of 500 reads 500 connections (and their link lists),
    /// not all 10,000 of them as [`Managed::entities`] would.
    fn page(&self, ty: &'static EntityType, offset: usize, count: usize) -> Vec<Box<dyn Entity>> {
        match ty.short {
            "connection" => {
                let now = unix_seconds();
                let ids = self.model.listing(offset);
                let end = offset.saturating_add(count).min(ids.len());
                let clients = self
                    .model
                    .connections_of(ids.get(offset..end).unwrap_or(&[]));
                // Edge connections are listed after the clients'.
                let edge_offset = offset.saturating_sub(ids.len());
                let edge_count = count - (end.max(offset) - offset);
                let edges = if edge_count == 0 {
                    Vec::new()
                } else {
                    self.edge_connections()
                };
                clients
                    .into_iter()
                    .chain(edges.into_iter().skip(edge_offset).take(edge_count))
                    .map(|c| Box::new(ConnectionEntity(c, now)) as Box<dyn Entity>)
                    .collect()
            }
            "router.link" => {
                let now_ms = self.model.clock_ms();
                let mut skip = offset;
                let mut out: Vec<Box<dyn Entity>> = Vec::new();
                for &id in self.model.listing(offset).iter() {
                    if out.len() >= count {
                        break;
                    }
                    let Some(c) = self.model.connections.get(&id) else {
                        continue;
                    };
                    let n = c.link_count();
                    if skip >= n {
                        skip -= n;
                        continue;
                    }
                    for link in c.links().into_iter().skip(skip).take(count - out.len()) {
                        out.push(self.link_entity(link, now_ms));
                    }
                    skip = 0;
                }
                out
            }
            _ => self
                .entities(ty)
                .into_iter()
                .skip(offset)
                .take(count)
                .collect(),
        }
    }

    fn mgmt_nodes(&self) -> Vec<String> {
        let mut routers = vec![self.router_id.clone()];
        if let Some(mesh) = &self.mesh {
            routers.extend(
                mesh.view()
                    .routes
                    .iter()
                    .map(|(r, _)| r.as_str().to_owned()),
            );
        }
        routers.sort();
        routers
            .into_iter()
            .map(|r| format!("amqp:/{}", topo_address(&r)))
            .collect()
    }
}

/// Applies a checked CREATE, UPDATE or DELETE to the running router.
async fn apply(shared: Arc<Shared>, change: &Change) -> Result<(), Reply> {
    let bad = |e: String| Reply::error(400, e);
    match (change.ty.short, change.operation) {
        ("listener", ChangeOp::Create) => {
            let config: ListenerConfig = from_attributes(&change.name, &change.attributes, true)?;
            if let Some(m) = config.sasl_mechanisms.iter().find(|m| m.needs_users())
                && shared.users().is_empty()
            {
                return Err(bad(format!(
                    "listener {}: {} needs users: set [router] users-file",
                    change.name,
                    m.as_str()
                )));
            }
            if config.role != Role::Normal {
                return Err(Reply::error(
                    501,
                    format!(
                        "{} listeners cannot be created at run time (configure them in the file)",
                        config.role.as_str()
                    ),
                ));
            }
            let addr = config.socket_address();
            let tls = shared
                .tls
                .listener(&config)
                .map_err(|e| bad(format!("listener {}: {}: {e}", change.name, e.key())))?;
            let tcp = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| bad(format!("listener {}: cannot bind {addr}: {e}", change.name)))?;
            let bound = tcp.local_addr().map_err(|e| bad(e.to_string()))?;
            tracing::info!(router = %shared.router_id, "listening on {bound} (amqp, created by management)");
            let actor = ListenerActor::new(config.clone(), tcp, shared.clone(), tls).start();
            shared.configured().listeners.push(ListenerEntry {
                config,
                bound,
                actor: Some(actor),
            });
            shared.publish_listeners();
            Ok(())
        }
        ("listener", ChangeOp::Delete) => {
            let entry = {
                let mut configured = shared.configured();
                let i = configured
                    .listeners
                    .iter()
                    .position(|l| l.name() == change.name)
                    .ok_or_else(|| {
                        Reply::error(404, format!("no listener named '{}'", change.name))
                    })?;
                if configured.listeners[i].actor.is_none() {
                    return Err(Reply::error(
                        501,
                        "inter-router listeners cannot be deleted at run time",
                    ));
                }
                configured.listeners.remove(i)
            };
            if let Some(actor) = entry.actor {
                let _ = actor.send(StopAccepting).await;
            }
            shared.publish_listeners();
            Ok(())
        }
        ("connector", ChangeOp::Create) => {
            let config: ConnectorConfig = from_attributes(&change.name, &change.attributes, false)?;
            if config.role != Role::InterRouter {
                return Err(Reply::error(
                    501,
                    "only inter-router connectors are supported",
                ));
            }
            if config.cost == 0 {
                return Err(bad("a connector's cost must be at least 1".into()));
            }
            let mesh = shared.mesh.as_ref().ok_or_else(|| {
                Reply::error(
                    501,
                    "this router runs without a mesh (no inter-router listener or connector configured)",
                )
            })?;
            mesh.add_connector(config.clone()).await.map_err(bad)?;
            shared.configured().connectors.push(config);
            Ok(())
        }
        ("connector", ChangeOp::Delete) => {
            let mesh = shared
                .mesh
                .as_ref()
                .ok_or_else(|| Reply::error(404, "this router runs without a mesh"))?;
            mesh.remove_connector(&change.name).await.map_err(bad)?;
            shared
                .configured()
                .connectors
                .retain(|c| c.name != change.name);
            Ok(())
        }
        ("connector", ChangeOp::Update) => {
            let mut cost = None;
            for (key, value) in &change.attributes {
                match key.as_str() {
                    "cost" => {
                        cost = Some(
                            integer(value).ok_or_else(|| bad("cost must be an integer".into()))?,
                        )
                    }
                    other => {
                        return Err(Reply::error(
                            501,
                            format!(
                                "UPDATE of a connector's '{other}' is not supported (only cost)"
                            ),
                        ));
                    }
                }
            }
            let Some(cost) = cost else {
                return Ok(());
            };
            let cost =
                u32::try_from(cost).map_err(|_| bad(format!("cost {cost} is out of range")))?;
            let mesh = shared
                .mesh
                .as_ref()
                .ok_or_else(|| Reply::error(404, "this router runs without a mesh"))?;
            mesh.set_connector_cost(&change.name, cost)
                .await
                .map_err(|e| bad(e.to_string()))?;
            for c in shared.configured().connectors.iter_mut() {
                if c.name == change.name {
                    c.cost = cost;
                }
            }
            Ok(())
        }
        ("router.config.address", ChangeOp::Create) => {
            let mut prefix = None;
            let mut pattern = None;
            let mut distribution = None;
            let mut priority = None;
            for (key, value) in &change.attributes {
                let s = value.as_str().map(str::to_owned);
                match key.as_str() {
                    "prefix" => prefix = s,
                    "pattern" => pattern = s,
                    "distribution" => distribution = s,
                    "priority" => match value.as_i64() {
                        Some(-1) => priority = None,
                        Some(p @ 0..=9) => priority = Some(p as u8),
                        _ => {
                            return Err(bad(format!(
                                "priority {value:?} is out of range (expected 0 to 9, or -1 for none)"
                            )));
                        }
                    },
                    "waypoint" | "fallback" if value.as_bool() == Some(false) => {}
                    other => {
                        return Err(Reply::error(
                            501,
                            format!("router.config.address attribute '{other}' is not supported"),
                        ));
                    }
                }
            }
            let key = match (prefix, pattern) {
                (Some(p), None) => AddressKey::Prefix(p),
                (None, Some(p)) => AddressKey::Pattern(p),
                _ => return Err(bad("give exactly one of 'prefix' and 'pattern'".into())),
            };
            let distribution = distribution
                .as_deref()
                .unwrap_or("balanced")
                .parse()
                .map_err(|e: crate::config::address::UnknownDistribution| bad(e.to_string()))?;
            let table = shared.addresses.table();
            let mut entries = table.entries().to_vec();
            entries.push(AddressEntry {
                name: Some(change.name.clone()),
                key,
                distribution,
                priority,
            });
            let new = AddressTable::new(entries, table.default_distribution())
                .map_err(|e| bad(e.to_string()))?;
            shared.addresses.set_table(new);
            Ok(())
        }
        ("router.config.address", ChangeOp::Delete) => {
            let table = shared.addresses.table();
            let entries: Vec<AddressEntry> = table
                .entries()
                .iter()
                .enumerate()
                .filter(|(i, e)| config_address_name(*i, e) != change.name)
                .map(|(_, e)| e.clone())
                .collect();
            let new = AddressTable::new(entries, table.default_distribution())
                .map_err(|e| bad(e.to_string()))?;
            shared.addresses.set_table(new);
            Ok(())
        }
        (ty, op) => Err(Reply::error(
            501,
            format!("{op:?} of a {ty} is not supported"),
        )),
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.trim().parse().ok(),
        other => other.as_i64(),
    }
}

/// A listener or connector configuration from management attributes
/// (qdrouterd's camelCase names; `port` as a string or a number).
fn from_attributes<T: serde::de::DeserializeOwned>(
    name: &str,
    attributes: &[(String, Value)],
    listener: bool,
) -> Result<T, Reply> {
    let mut object = serde_json::Map::new();
    object.insert("name".into(), serde_json::Value::String(name.to_owned()));
    for (key, value) in attributes {
        let json = match key.as_str() {
            "port" | "cost" | "maxFrameSize" | "idleTimeoutSeconds" | "linkCapacity" => {
                match integer(value) {
                    Some(n) => serde_json::Value::from(n),
                    None => {
                        return Err(Reply::error(
                            400,
                            format!("{key} must be a number, not {value:?}"),
                        ));
                    }
                }
            }
            "host" | "role" | "saslMechanisms" | "stripAnnotations" => {
                crate::management::json::to_json(value)
            }
            other => {
                return Err(Reply::error(
                    501,
                    format!(
                        "{} attribute '{other}' is not supported",
                        if listener { "listener" } else { "connector" }
                    ),
                ));
            }
        };
        object.insert(key.clone(), json);
    }
    if !listener && !object.contains_key("host") {
        object.insert("host".into(), serde_json::Value::from("127.0.0.1"));
    }
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| Reply::error(400, format!("{name}: {e}")))
}

/// The management node's actor.
pub struct ManagementActor {
    shared: Arc<Shared>,
    counters: Arc<LinkCounters>,
    returns_to: Option<Arc<Recipient<Returned>>>,
    next_key: u64,
}

impl ManagementActor {
    pub fn new(shared: Arc<Shared>) -> ManagementActor {
        ManagementActor {
            shared,
            counters: Arc::new(LinkCounters::default()),
            returns_to: None,
            next_key: 0,
        }
    }

    /// Routes `reply` to the request's `reply-to`.
    fn send(&mut self, request: &Request, reply: &Reply) {
        let Some(reply_to) = request.reply_to.as_deref() else {
            return;
        };
        let address = reply_to.strip_prefix("amqp:/").unwrap_or(reply_to);
        let message = reply.encode(reply_to, &request.correlation_id);
        let Some(conn) = self.returns_to.clone() else {
            return;
        };
        self.next_key += 1;
        let origin = Origin {
            conn,
            conn_id: ConnId(0),
            key: self.next_key,
        };
        let delivery = super::connection::routed(Arc::from(address), message, false, origin, None);
        self.shared
            .addresses
            .get(address)
            .do_send(Forward(vec![delivery]));
    }

    fn request(&mut self, d: RoutedDelivery, ctx: &mut Context<Self>) {
        self.counters.undelivered.fetch_sub(1, Relaxed);
        let request = match Request::decode(&d.message) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!("management: {e}");
                let error =
                    bote_amqp::AmqpError::new(bote_amqp::condition::DECODE_ERROR, e.to_string());
                d.return_to_sender(Some(DeliveryState::Rejected { error: Some(error) }));
                return;
            }
        };
        if request.reply_to.is_none() {
            let error = bote_amqp::AmqpError::new(
                bote_amqp::condition::INVALID_FIELD,
                "management request without a reply-to address",
            );
            d.return_to_sender(Some(DeliveryState::Rejected { error: Some(error) }));
            return;
        }
        d.return_to_sender(Some(DeliveryState::Accepted));
        tracing::debug!(operation = ?request.operation, r#type = ?request.type_name, entity_type = ?request.entity_type, "management request");
        let started = std::time::Instant::now();
        // An operation span (exported when tracing is on, see
        // `crate::telemetry::OPS_TARGET`); a change's span lasts until it
        // is applied.
        let span = tracing::info_span!(
            target: crate::telemetry::OPS_TARGET,
            "management request",
            otel.name = %format_args!("management {}", request.operation.as_deref().unwrap_or("?")),
            otel.kind = "server",
            bote.router.id = %self.shared.router_id,
            bote.management.operation = request.operation.as_deref(),
            bote.management.entity_type = request.entity_type.as_deref().or(request.type_name.as_deref()),
            bote.management.name = request.name.as_deref(),
            bote.management.status = tracing::field::Empty,
        );
        let entered = span.enter();
        match agent::handle(self.shared.as_ref(), &request) {
            Step::Reply(reply) => {
                let answered = started.elapsed();
                span.record("bote.management.status", i64::from(reply.status));
                self.send(&request, &reply);
                tracing::debug!(
                    operation = ?request.operation,
                    status = reply.status,
                    answered_us = answered.as_micros() as u64,
                    encoded_and_routed_us = (started.elapsed() - answered).as_micros() as u64,
                    "management request answered"
                );
            }
            Step::Change(change) => {
                drop(entered);
                let shared = self.shared.clone();
                let change_span = span.clone();
                ctx.spawn(
                    async move {
                        let result = apply(shared.clone(), &change).await;
                        let reply = match result {
                            Ok(()) => {
                                tracing::info!(
                                    "management: {:?} {} '{}'",
                                    change.operation,
                                    change.ty.short,
                                    change.name
                                );
                                agent::after_change(shared.as_ref(), &change)
                            }
                            Err(reply) => reply,
                        };
                        change_span.record("bote.management.status", i64::from(reply.status));
                        (request, reply)
                    }
                    .into_actor(self)
                    .map(|(request, reply), act, _ctx| act.send(&request, &reply)),
                );
            }
        }
    }
}

impl Actor for ManagementActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.returns_to = Some(Arc::new(ctx.address().recipient()));
        let me = ctx.address();
        let mut addresses = vec![MANAGEMENT.to_owned(), topo_address(&self.shared.router_id)];
        if self.shared.is_edge() {
            // Reported up the uplink: the mesh reaches the edge here.
            addresses.push(crate::mesh::edge::management_address(
                &self.shared.router_id,
            ));
        }
        self.shared.addresses.attach_in_process(
            ConnId(0),
            addresses.iter().map(String::as_str),
            &me.recipient(),
            &self.counters,
        );
    }
}

impl Handler<Deliver> for ManagementActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        for d in msg.deliveries {
            self.request(d, ctx);
        }
    }
}

/// Asks the node whether it answers (`/healthz`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping;

impl Handler<Ping> for ManagementActor {
    type Result = ();
    fn handle(&mut self, _: Ping, _ctx: &mut Context<Self>) {}
}

/// Outcomes of the replies: nothing to do (a reply nobody takes is gone).
impl Handler<Returned> for ManagementActor {
    type Result = ();
    fn handle(&mut self, _msg: Returned, _ctx: &mut Context<Self>) {}
}

/// The nice value of the management thread: when the cores are busy, the
/// forwarding workers (nice 0) get ~3 times its share of a core, so an
/// operator's QUERYs slow down before the traffic does (a QUERY of 10,000
/// connections needs ~30 ms of CPU; BENCHMARKS.md, "Management").
const MANAGEMENT_NICE: libc::c_int = 5;

/// Starts the management node on an arbiter of its own, whose thread
/// yields to the data plane ([`MANAGEMENT_NICE`]).
pub fn start(shared: Arc<Shared>, arbiter: &actix::dev::ArbiterHandle) -> Addr<ManagementActor> {
    arbiter.spawn_fn(lower_thread_priority);
    ManagementActor::start_in_arbiter(arbiter, move |_| ManagementActor::new(shared))
}

/// Sets the calling thread's nice value to [`MANAGEMENT_NICE`] (Linux
/// keeps one per thread, set through its thread id).
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, MANAGEMENT_NICE)
        };
        if result != 0 {
            tracing::debug!(
                "management thread: nice {MANAGEMENT_NICE} not set: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_are_qdrouterd_s() {
        assert_eq!(address_key("A", "queue.x"), "M0queue.x");
        assert_eq!(address_key("A", "$management"), "M0$management");
        assert_eq!(address_key("A", "_topo/0/A/$management"), "L$management");
        assert_eq!(address_key("A", "_topo/0/A/temp.1"), "Ltemp.1");
        assert_eq!(address_key("A", "_topo/0/B/temp.1"), "TB/temp.1");
        assert_eq!(address_key("A", "_topo/0/AB/temp.1"), "TAB/temp.1");
        assert_eq!(address_key("E1", "_edge/E1/$management"), "L$management");
        assert_eq!(address_key("A", "_edge/E1/$management"), "HE1/$management");
    }

    #[test]
    fn listener_and_connector_configs_come_from_qdrouterd_attributes() {
        let l: ListenerConfig = from_attributes(
            "l1",
            &[
                ("port".into(), Value::from("0")),
                ("host".into(), Value::from("127.0.0.1")),
                ("linkCapacity".into(), Value::Long(10)),
            ],
            true,
        )
        .unwrap();
        assert_eq!(
            (l.port, l.link_capacity, l.name.as_deref()),
            (0, 10, Some("l1"))
        );
        let c: ConnectorConfig = from_attributes(
            "toB",
            &[
                ("port".into(), Value::Long(5000)),
                ("role".into(), Value::from("inter-router")),
                ("cost".into(), Value::from("3")),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.cost, c.role),
            ("127.0.0.1", 5000, 3, Role::InterRouter)
        );
        let e =
            from_attributes::<ListenerConfig>("l", &[("port".into(), Value::from("http"))], true)
                .unwrap_err();
        assert_eq!(e.status, 400);
        let e = from_attributes::<ListenerConfig>(
            "l",
            &[("sslProfile".into(), Value::from("x"))],
            true,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.description.as_str()),
            (501, "listener attribute 'sslProfile' is not supported")
        );
    }
}
