//! The router's HTTP API (axum), on its own listener (`[router] http`,
//! default `127.0.0.1:8672`), served on the management node's arbiter so
//! that reading thousands of entities never holds up the data plane:
//!
//! - `GET /healthz`: 200 when the router's actors answer (the management
//!   node, and the mesh's control actor through a fresh view), else 503;
//! - `GET /readyz`: 200 once the router is converged with its configured
//!   neighbours (every inter-router connector's neighbour is up and every
//!   neighbour has a route), else 503 saying what is missing;
//! - `GET /api/v1/{router,connections,links,addresses,nodes}`: the
//!   management entities (qdrouterd's attribute names) as JSON, from the
//!   same read model `$management` answers from;
//! - `GET /api/v1/topology`: routers, links and costs as this router sees
//!   the mesh (what a console draws);
//! - `GET /api/v1/events`: the same topology and the router's counters as
//!   server-sent events, one `snapshot` event a second, for a console
//!   that does not poll;
//! - `GET /api/v1/console`: what the web console draws, in one answer: the
//!   topology, this router's client count, and each mobile address with its
//!   local consumers, the remote routers with consumers and the deliveries
//!   this router sent to each neighbour for it;
//! - `GET /` (and `/console.js`, `/console.css`): the web console
//!   ([`console`]), embedded in the binary;
//! - `GET /metrics`: Prometheus metrics ([`metrics`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value as JsonValue, json};

mod console;
pub mod metrics;

use crate::management::agent::Managed;
use crate::management::json::entity_json;
use crate::management::schema::{self, EntityType};
use crate::router::Shared;
use crate::router::management::{ManagementActor, Ping};

#[derive(Clone)]
struct Api {
    shared: Arc<Shared>,
    management: Addr<ManagementActor>,
    metrics: Arc<prometheus_client::registry::Registry>,
}

/// Starts the API on `router`'s management arbiter: binds `address` there
/// and serves until the router stops. Returns the bound address (also in
/// the state file as `http`), or why it could not bind.
pub async fn start(
    router: &crate::router::Router,
    address: SocketAddr,
    metrics_max_series: usize,
) -> std::io::Result<SocketAddr> {
    let api = Api {
        shared: router.shared.clone(),
        management: router.management.clone(),
        metrics: Arc::new(metrics::registry(router.shared.clone(), metrics_max_series)),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    router.management_arbiter().spawn(async move {
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let bound = match listener.local_addr() {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let _ = tx.send(Ok(bound));
        if let Err(e) = axum::serve(listener, routes(api)).await {
            tracing::warn!("http api on {bound} stopped: {e}");
        }
    });
    let bound = rx
        .await
        .map_err(|_| std::io::Error::other("the management arbiter stopped"))??;
    router.shared.set_http(bound);
    Ok(bound)
}

fn routes(api: Api) -> HttpRouter {
    HttpRouter::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/router", get(router))
        .route("/api/v1/connections", get(connections))
        .route("/api/v1/links", get(links))
        .route("/api/v1/addresses", get(addresses))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/topology", get(topology))
        .route("/api/v1/events", get(events))
        .route("/api/v1/console", get(console_state))
        .route("/", get(console::index))
        .route("/console.js", get(console::script))
        .route("/console.css", get(console::style))
        .route("/metrics", get(prometheus))
        .with_state(api)
}

async fn healthz(State(api): State<Api>) -> Response {
    let answered = tokio::time::timeout(Duration::from_secs(2), api.management.send(Ping))
        .await
        .is_ok_and(|r| r.is_ok());
    if answered {
        (
            StatusCode::OK,
            Json(json!({"status": "ok", "router": api.shared.router_id})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "the management node does not answer"})),
        )
            .into_response()
    }
}

async fn prometheus(State(api): State<Api>) -> Response {
    match metrics::encode(&api.metrics) {
        Ok(text) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        )
            .into_response(),
    }
}

async fn readyz(State(api): State<Api>) -> Response {
    match readiness(&api.shared) {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": why})),
        )
            .into_response(),
    }
}

/// Ready: every configured inter-router connector has its neighbour up and
/// every neighbour has a route (the control plane has converged with them).
fn readiness(shared: &Shared) -> Result<(), String> {
    let Some(mesh) = &shared.mesh else {
        return Ok(());
    };
    let view = mesh.view();
    let connectors = shared.connector_count();
    if view.peers.len() < connectors {
        return Err(format!(
            "{} of {connectors} configured neighbours are up",
            view.peers.len()
        ));
    }
    if let Some(peer) = view.peers.keys().find(|p| view.route(p).is_none()) {
        return Err(format!("no route to neighbour {peer} yet"));
    }
    Ok(())
}

fn entities(shared: &Shared, ty: &'static EntityType) -> Json<JsonValue> {
    Json(JsonValue::Array(
        shared
            .entities(ty)
            .iter()
            .map(|e| entity_json(ty, e.as_ref()))
            .collect(),
    ))
}

async fn router(State(api): State<Api>) -> Json<JsonValue> {
    let Json(all) = entities(&api.shared, &schema::ROUTER);
    Json(
        all.as_array()
            .and_then(|a| a.first().cloned())
            .unwrap_or(JsonValue::Null),
    )
}

async fn connections(State(api): State<Api>) -> Json<JsonValue> {
    entities(&api.shared, &schema::CONNECTION)
}

async fn links(State(api): State<Api>) -> Json<JsonValue> {
    entities(&api.shared, &schema::LINK)
}

async fn addresses(State(api): State<Api>) -> Json<JsonValue> {
    entities(&api.shared, &schema::ADDRESS)
}

async fn nodes(State(api): State<Api>) -> Json<JsonValue> {
    entities(&api.shared, &schema::NODE)
}

async fn topology(State(api): State<Api>) -> Json<JsonValue> {
    Json(topology_json(&api.shared))
}

/// The mesh as this router sees it: each router with its next hop and cost
/// from here and its neighbours; each link once with its cost.
pub fn topology_json(shared: &Shared) -> JsonValue {
    let me = shared.router_id.clone();
    let Some(mesh) = &shared.mesh else {
        return json!({"router": me, "routers": [{"id": me, "next_hop": "(self)", "cost": 0,
                       "neighbours": []}], "links": []});
    };
    let view = mesh.view();
    let routes = &view.routes;
    let topology = routes.topology();
    let mut routers = Vec::new();
    let mut links = Vec::new();
    for router in topology.routers() {
        let is_me = router.as_str() == me;
        let route = routes.route(router);
        if !is_me && route.is_none() {
            continue;
        }
        let neighbours = topology.neighbours(router);
        for (n, cost) in &neighbours {
            if router < n {
                links.push(json!({"from": router.as_str(), "to": n.as_str(), "cost": cost}));
            }
        }
        routers.push(json!({
            "id": router.as_str(),
            "next_hop": if is_me { "(self)".to_owned() } else {
                route.as_ref().map(|r| r.next_hop.as_str().to_owned()).unwrap_or_default()
            },
            "cost": if is_me { 0 } else { route.map_or(0, |r| r.cost) },
            "neighbours": neighbours.iter().map(|(n, c)| json!({"id": n.as_str(), "cost": c}))
                .collect::<Vec<_>>(),
        }));
    }
    json!({"router": me, "routers": routers, "links": links})
}

async fn events(
    State(api): State<Api>,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let stream = futures::stream::unfold((api, true), |(api, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let Json(router) = entities(&api.shared, &schema::ROUTER);
        let snapshot = json!({
            "topology": topology_json(&api.shared),
            "router": router.as_array().and_then(|a| a.first().cloned()),
        });
        let event = Event::default()
            .event("snapshot")
            .data(snapshot.to_string());
        Some((Ok(event), (api, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn console_state(State(api): State<Api>) -> Json<JsonValue> {
    Json(console_json(&api.shared))
}

/// The console's view: topology, clients of this router, and the mobile
/// addresses (not `$management` nor `temp.` reply addresses) with where
/// their consumers are and what this router sent toward each neighbour.
pub fn console_json(shared: &Shared) -> JsonValue {
    use std::sync::atomic::Ordering::Relaxed;
    let clients = shared
        .model
        .connections
        .iter()
        .filter(|c| c.role == "normal")
        .count();
    let remote = shared
        .mesh
        .as_ref()
        .map(|m| m.remote_addresses().snapshot())
        .unwrap_or_default();
    let local = shared.addresses.addresses();
    let mut addresses = std::collections::BTreeMap::new();
    let shown =
        |a: &str| !a.starts_with('$') && !a.starts_with("temp.") && !a.starts_with("_topo/");
    for (address, routers) in &remote {
        if shown(address.as_str()) {
            addresses.insert(
                address.as_str().to_owned(),
                json!({"address": address.as_str(), "local_consumers": 0,
                       "routers": routers.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                       "to_neighbour": {}, "ingress": 0, "egress": 0}),
            );
        }
    }
    for (address, stats) in local {
        if !shown(&address) {
            continue;
        }
        let routers: Vec<&str> = remote
            .get(&bote_topology::Address::from(&*address))
            .map(|rs| rs.iter().map(|r| r.as_str()).collect())
            .unwrap_or_default();
        let to_neighbour: serde_json::Map<String, JsonValue> = stats
            .to_neighbour
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(r, n)| (r.as_str().to_owned(), json!(n)))
                    .collect()
            })
            .unwrap_or_default();
        addresses.insert(
            address.to_string(),
            json!({"address": &*address,
                   "local_consumers": stats.subscribers.load(Relaxed),
                   "routers": routers,
                   "to_neighbour": to_neighbour,
                   "ingress": stats.ingress.load(Relaxed),
                   "egress": stats.egress.load(Relaxed)}),
        );
    }
    json!({
        "topology": topology_json(shared),
        "clients": clients,
        "addresses": addresses.into_values().collect::<Vec<_>>(),
    })
}
