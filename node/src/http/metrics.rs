//! `GET /metrics`: the router's counters in the Prometheus text format
//! (prometheus-client), read from the read model at scrape time by a
//! [`Collector`] — no second tally is kept.
//!
//! - qdrouterd 1.19's unlabelled series, with its names and types
//!   (`src/http-libwebsockets.c`): `qdr_connections_total` (gauge) …
//!   `qdr_deliveries_redirected_to_fallback_total` (counter), from the
//!   `router` management entity;
//! - Bote's labelled series: per address (`bote_address_*{address}`), per
//!   link (`bote_link_*{link,address}`) and per neighbour
//!   (`bote_neighbour_*{neighbour}`), route table changes and a histogram
//!   of route recompute times (the mesh's [`crate::mesh::MeshStats`], the
//!   one thing counted apart: events in time), and a histogram of
//!   settlement latency (`bote_delivery_settle_seconds`, from the read
//!   model). Per-address and per-link series are
//!   capped at `[router] metrics-max-series` each: the busiest keep their
//!   own label, the rest are summed under `other`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bote_amqp::codec::Value;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::management::agent::{Entity, Managed};
use crate::management::schema;
use crate::model::{LatencyRow, SETTLE_LATENCY_BOUNDS};
use crate::router::Shared;

/// The label value the series beyond the cap are summed under.
pub const OTHER: &str = "other";

/// qdrouterd 1.19's metrics: name, type, and the `router` entity
/// attribute each is read from.
const QDR: &[(&str, MetricType, &str)] = &[
    (
        "qdr_connections_total",
        MetricType::Gauge,
        "connectionCount",
    ),
    ("qdr_links_total", MetricType::Gauge, "linkCount"),
    ("qdr_addresses_total", MetricType::Gauge, "addrCount"),
    ("qdr_routers_total", MetricType::Gauge, "nodeCount"),
    ("qdr_link_routes_total", MetricType::Gauge, "linkRouteCount"),
    ("qdr_auto_links_total", MetricType::Gauge, "autoLinkCount"),
    (
        "qdr_presettled_deliveries_total",
        MetricType::Counter,
        "presettledDeliveries",
    ),
    (
        "qdr_dropped_presettled_deliveries_total",
        MetricType::Counter,
        "droppedPresettledDeliveries",
    ),
    (
        "qdr_accepted_deliveries_total",
        MetricType::Counter,
        "acceptedDeliveries",
    ),
    (
        "qdr_released_deliveries_total",
        MetricType::Counter,
        "releasedDeliveries",
    ),
    (
        "qdr_rejected_deliveries_total",
        MetricType::Counter,
        "rejectedDeliveries",
    ),
    (
        "qdr_modified_deliveries_total",
        MetricType::Counter,
        "modifiedDeliveries",
    ),
    (
        "qdr_deliveries_ingress_total",
        MetricType::Counter,
        "deliveriesIngress",
    ),
    (
        "qdr_deliveries_egress_total",
        MetricType::Counter,
        "deliveriesEgress",
    ),
    (
        "qdr_deliveries_transit_total",
        MetricType::Counter,
        "deliveriesTransit",
    ),
    (
        "qdr_deliveries_ingress_route_container_total",
        MetricType::Counter,
        "deliveriesIngressRouteContainer",
    ),
    (
        "qdr_deliveries_egress_route_container_total",
        MetricType::Counter,
        "deliveriesEgressRouteContainer",
    ),
    (
        "qdr_deliveries_delayed_1sec_total",
        MetricType::Counter,
        "deliveriesDelayed1Sec",
    ),
    (
        "qdr_deliveries_delayed_10sec_total",
        MetricType::Counter,
        "deliveriesDelayed10Sec",
    ),
    (
        "qdr_deliveries_stuck_total",
        MetricType::Gauge,
        "deliveriesStuck",
    ),
    ("qdr_links_blocked_total", MetricType::Gauge, "linksBlocked"),
    (
        "qdr_deliveries_redirected_to_fallback_total",
        MetricType::Counter,
        "deliveriesRedirectedToFallback",
    ),
];

/// Reads the router's counters when Prometheus scrapes.
#[derive(Debug)]
pub struct RouterCollector {
    shared: Arc<SharedRef>,
    max_series: usize,
}

/// `Shared` is not `Debug`; the collector only needs to hold it.
struct SharedRef(Arc<Shared>);

impl std::fmt::Debug for SharedRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({})", self.0.router_id)
    }
}

/// The registry `/metrics` encodes: one collector over `shared`.
pub fn registry(shared: Arc<Shared>, max_series: usize) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RouterCollector {
        shared: Arc::new(SharedRef(shared)),
        max_series: max_series.max(1),
    }));
    registry
}

/// The registry in the Prometheus text format (0.0.4), as qdrouterd
/// serves it.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_i64().map(|i| i.max(0) as u64))
        .unwrap_or(0)
}

/// A counter name without the `_total` the encoder appends.
fn counter_base(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(counter_base(name), help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

/// One labelled family: `rows` are (labels, value).
fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: &[(L, u64)],
) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let base = if ty == MetricType::Counter {
        counter_base(name)
    } else {
        name
    };
    let mut m = enc.encode_descriptor(base, help, None, ty)?;
    for (labels, v) in rows {
        let fam = m.encode_family(labels)?;
        if ty == MetricType::Counter {
            ConstCounter::new(*v).encode(fam)?;
        } else {
            ConstGauge::new(*v as i64).encode(fam)?;
        }
    }
    Ok(())
}

/// `bote_delivery_settle_seconds`: the read model's histogram of arrival
/// to outcome for unsettled deliveries from this router's clients.
fn settle_latency(enc: &mut DescriptorEncoder, row: &LatencyRow) -> std::fmt::Result {
    let buckets: Vec<(f64, u64)> = SETTLE_LATENCY_BOUNDS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(row.buckets.iter().copied())
        .collect();
    let m = enc.encode_descriptor(
        "bote_delivery_settle_seconds",
        "time from an unsettled delivery's arrival from a client's sender to its outcome coming back to that sender",
        None,
        MetricType::Histogram,
    )?;
    let mut m = m;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        row.sum_seconds,
        row.count,
        &buckets,
        None,
    )
}

/// Per-address sums.
#[derive(Default, Clone, Copy)]
struct AddressRow {
    deliveries: u64,
    undelivered: u64,
    unsettled: u64,
    consumers: u64,
}

impl AddressRow {
    fn add(&mut self, o: &AddressRow) {
        self.deliveries += o.deliveries;
        self.undelivered += o.undelivered;
        self.unsettled += o.unsettled;
        self.consumers += o.consumers;
    }
}

/// The address an address key names (`M0addr` → `addr`, `Lname` →
/// `name`, `T<router>/x` → `<router>/x`, `R<router>` → `<router>`).
fn address_of(key: &str) -> &str {
    match key.as_bytes().first() {
        Some(b'M') => key.get(2..).unwrap_or(""),
        Some(_) => key.get(1..).unwrap_or(""),
        None => key,
    }
}

/// Keeps the `max` rows with the largest `weight` under their own label
/// and sums the rest into one row labelled [`OTHER`].
fn cap<K: Ord + Clone, R: Copy + Default>(
    rows: BTreeMap<K, R>,
    max: usize,
    weight: impl Fn(&R) -> u64,
    add: impl Fn(&mut R, &R),
    other: K,
) -> Vec<(K, R)> {
    let mut rows: Vec<(K, R)> = rows.into_iter().collect();
    if rows.len() <= max {
        return rows;
    }
    rows.sort_by(|a, b| weight(&b.1).cmp(&weight(&a.1)).then(a.0.cmp(&b.0)));
    let rest = rows.split_off(max.saturating_sub(1).max(1));
    let mut sum = R::default();
    for (_, r) in &rest {
        add(&mut sum, r);
    }
    rows.push((other, sum));
    rows
}

impl Collector for RouterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = &self.shared.0;
        let get = |e: &dyn Entity, a: &str| number(&e.get(a));

        // qdrouterd's series.
        if let Some(router) = shared.entities(&schema::ROUTER).into_iter().next() {
            for (name, ty, attribute) in QDR {
                let v = get(router.as_ref(), attribute);
                let help = format!("the router's {attribute} (qdrouterd's {name})");
                match ty {
                    MetricType::Counter => counter(&mut enc, name, &help, v)?,
                    _ => gauge(&mut enc, name, &help, v as i64)?,
                }
            }
        }
        settle_latency(&mut enc, &shared.model.settle_latency.read())?;

        // Per link, and the links' undelivered/unsettled per address.
        let mut addresses: BTreeMap<String, AddressRow> = BTreeMap::new();
        let mut links: BTreeMap<(String, String), u64> = BTreeMap::new();
        for link in shared.entities(&schema::LINK) {
            let l = link.as_ref();
            let address = l
                .get("owningAddr")
                .as_str()
                .map(|k| address_of(k).to_owned())
                .unwrap_or_default();
            let name = format!(
                "{}/{}",
                get(l, "connectionId"),
                l.get("linkName").as_str().unwrap_or("")
            );
            links.insert((name, address.clone()), get(l, "deliveryCount"));
            if !address.is_empty() {
                let row = addresses.entry(address).or_default();
                row.undelivered += get(l, "undeliveredCount");
                row.unsettled += get(l, "unsettledCount");
            }
        }
        for a in shared.entities(&schema::ADDRESS) {
            let a = a.as_ref();
            let key = a.get("key");
            let Some(key) = key.as_str() else { continue };
            // Routers (`R…`) are neighbours' business, not addresses.
            if key.starts_with('R') {
                continue;
            }
            let row = addresses.entry(address_of(key).to_owned()).or_default();
            row.deliveries += get(a, "deliveriesIngress");
            row.consumers += get(a, "subscriberCount");
        }
        let addresses = cap(
            addresses,
            self.max_series,
            |r| r.deliveries,
            AddressRow::add,
            OTHER.to_owned(),
        );
        type Labels<'a> = [(&'static str, &'a str); 1];
        let per = |f: fn(&AddressRow) -> u64| -> Vec<(Labels<'_>, u64)> {
            addresses
                .iter()
                .map(|(a, r)| ([("address", a.as_str())], f(r)))
                .collect()
        };
        family(
            &mut enc,
            "bote_address_deliveries_total",
            "deliveries that entered the mesh at this router for the address (its deliveriesIngress)",
            MetricType::Counter,
            &per(|r| r.deliveries),
        )?;
        family(
            &mut enc,
            "bote_address_undelivered",
            "deliveries held on the address's links, not yet sent",
            MetricType::Gauge,
            &per(|r| r.undelivered),
        )?;
        family(
            &mut enc,
            "bote_address_unsettled",
            "deliveries sent on the address's links and not yet settled",
            MetricType::Gauge,
            &per(|r| r.unsettled),
        )?;
        family(
            &mut enc,
            "bote_address_consumers",
            "local consumers (receiving links) of the address",
            MetricType::Gauge,
            &per(|r| r.consumers),
        )?;

        let links = cap(
            links,
            self.max_series,
            |v| *v,
            |a, b| *a += *b,
            (OTHER.to_owned(), OTHER.to_owned()),
        );
        let rows: Vec<([(&str, &str); 2], u64)> = links
            .iter()
            .map(|((l, a), v)| ([("link", l.as_str()), ("address", a.as_str())], *v))
            .collect();
        family(
            &mut enc,
            "bote_link_deliveries_total",
            "deliveries on the link (its deliveryCount); link is connection id/link name",
            MetricType::Counter,
            &rows,
        )?;

        // Per neighbour (and per reachable router: its cost from here).
        if let Some(mesh) = &shared.mesh {
            let view = mesh.view();
            let neighbours: Vec<String> =
                view.peers.keys().map(|p| p.as_str().to_owned()).collect();
            let up: Vec<([(&str, &str); 1], u64)> = neighbours
                .iter()
                .map(|n| ([("neighbour", n.as_str())], 1))
                .collect();
            family(
                &mut enc,
                "bote_neighbour_up",
                "1 for each neighbour router whose inter-router stream is up",
                MetricType::Gauge,
                &up,
            )?;
            let routes: Vec<(String, u64)> = view
                .routes
                .iter()
                .filter(|(_, r)| view.peers.contains_key(&r.next_hop))
                .map(|(router, r)| (router.as_str().to_owned(), u64::from(r.cost)))
                .collect();
            let cost: Vec<([(&str, &str); 1], u64)> = routes
                .iter()
                .filter(|(r, _)| neighbours.contains(r))
                .map(|(r, c)| ([("neighbour", r.as_str())], *c))
                .collect();
            let traffic = mesh.stats.all_traffic();
            let mut frames = Vec::new();
            let mut bytes = Vec::new();
            for (n, t) in &traffic {
                use std::sync::atomic::Ordering::Relaxed;
                for (dir, f, b) in [
                    ("in", &t.frames_in, &t.bytes_in),
                    ("out", &t.frames_out, &t.bytes_out),
                ] {
                    let labels = [("neighbour", n.as_str()), ("direction", dir)];
                    frames.push((labels, f.load(Relaxed)));
                    bytes.push((labels, b.load(Relaxed)));
                }
            }
            family(
                &mut enc,
                "bote_neighbour_frames_total",
                "inter-router frames from (in) and to (out) each neighbour",
                MetricType::Counter,
                &frames,
            )?;
            family(
                &mut enc,
                "bote_neighbour_bytes_total",
                "inter-router bytes (protobuf-encoded batches) from and to each neighbour",
                MetricType::Counter,
                &bytes,
            )?;
            counter(
                &mut enc,
                "bote_topology_changes_total",
                "changes of this router's route table",
                mesh.stats
                    .topology_changes
                    .load(std::sync::atomic::Ordering::Relaxed),
            )?;
            let m = enc.encode_descriptor(
                "bote_route_recompute_seconds",
                "time each route recompute took",
                None,
                MetricType::Histogram,
            )?;
            mesh.stats.route_recompute.encode(m)?;
            family(
                &mut enc,
                "bote_neighbour_cost",
                "the cost of the route to each neighbour router",
                MetricType::Gauge,
                &cost,
            )?;
        }
        if shared.protocol_state.get().is_some() {
            // MQTT (a router with an MQTT listener): counters of the
            // process, kept by the MQTT connections.
            use std::sync::atomic::Ordering::Relaxed;
            let c = &crate::mqtt::connection::COUNTERS;
            counter(
                &mut enc,
                "bote_mqtt_connections_total",
                "MQTT connections that sent CONNECT",
                c.connections.load(Relaxed),
            )?;
            gauge(
                &mut enc,
                "bote_mqtt_sessions",
                "MQTT sessions now (connected or persistent and waiting)",
                c.sessions.load(Relaxed),
            )?;
            counter(
                &mut enc,
                "bote_mqtt_publish_received_total",
                "PUBLISH packets from MQTT clients routed",
                c.publish_in.load(Relaxed),
            )?;
            counter(
                &mut enc,
                "bote_mqtt_publish_sent_total",
                "PUBLISH packets sent to MQTT subscribers",
                c.publish_out.load(Relaxed),
            )?;
            counter(
                &mut enc,
                "bote_mqtt_protocol_errors_total",
                "MQTT connections closed for bad input",
                c.protocol_errors.load(Relaxed),
            )?;
            gauge(
                &mut enc,
                "bote_mqtt_retained_messages",
                "retained messages this router holds",
                crate::mqtt::retain::state(shared).retained.len() as i64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn address_keys_name_their_address() {
        assert_eq!(address_of("M0examples"), "examples");
        assert_eq!(address_of("L$management"), "$management");
        assert_eq!(address_of("TRouter.B/$management"), "Router.B/$management");
    }

    #[test]
    fn excess_series_are_summed_under_other() {
        let rows: BTreeMap<String, u64> =
            (0..5).map(|i| (format!("a{i}"), i as u64 * 10)).collect();
        let capped = cap(rows, 3, |v| *v, |a, b| *a += *b, OTHER.to_owned());
        let mut s = String::new();
        for (k, v) in &capped {
            let _ = write!(s, "{k}={v} ");
        }
        // the two busiest keep their label; a0+a1+a2 = 30 go to other.
        assert_eq!(s, "a4=40 a3=30 other=30 ");
        let small: BTreeMap<String, u64> = [("x".to_owned(), 1)].into();
        assert_eq!(
            cap(small, 3, |v| *v, |a, b| *a += *b, OTHER.to_owned()).len(),
            1
        );
    }
}
