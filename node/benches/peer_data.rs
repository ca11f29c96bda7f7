//! The inter-router data plane of a router in the middle of a chain, per
//! unsettled delivery, without sockets: transfers arrive from one neighbour
//! (decoded frames), are routed (handed straight on), go out to the other
//! neighbour as transfer frames, its dispositions come back, and the
//! outcomes go back to the first neighbour as disposition frames. Batches of
//! 250, as on a busy stream. What failover's duplicate suppression adds to
//! this path is the difference against the same bench on a tree without it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bote_node::delivery::{Returned, RoutedDelivery, StreamProgress};
use bote_node::mesh::data::PeerData;
use bote_node::mesh::{DataHook, DataPlane, MeshView};
use bote_proto::v1 as pb;
use bote_topology::RouterId;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: u64 = 250;

/// The ingress side's actor: takes the outcomes sent home.
struct Home;

impl Actor for Home {
    type Context = Context<Self>;
}

impl Handler<Returned> for Home {
    type Result = ();
    fn handle(&mut self, msg: Returned, _: &mut Context<Self>) {
        std::hint::black_box(msg.outcomes);
    }
}

impl Handler<StreamProgress> for Home {
    type Result = ();
    fn handle(&mut self, _: StreamProgress, _: &mut Context<Self>) {}
}

/// Routing: every arriving delivery goes on to the next neighbour.
#[derive(Default)]
struct Onward(Mutex<Vec<RoutedDelivery>>);

impl DataPlane for Onward {
    fn view_changed(&self, _: Arc<MeshView>) {}
    fn route(&self, deliveries: Vec<RoutedDelivery>) {
        self.0.lock().unwrap().extend(deliveries);
    }
    fn reroute(&self, deliveries: Vec<RoutedDelivery>) {
        self.0.lock().unwrap().extend(deliveries);
    }
}

/// Unsettled transfers from Router.A as Router.B receives them.
fn arriving(first: u64) -> Vec<pb::frame::Kind> {
    (first..first + BATCH)
        .map(|id| {
            pb::frame::Kind::Transfer(pb::Transfer {
                delivery_id: id,
                address: Bytes::from_static(b"queue.bench"),
                message: Bytes::from_static(&[0x53; 113]),
                priority: 4,
                ingress_router: Bytes::from_static(b"Router.A"),
                trace: vec![Bytes::from_static(b"Router.A")],
                hops_left: 31,
                ingress_sequence: 1_000_000_000_000 + id,
                ..pb::Transfer::default()
            })
        })
        .collect()
}

fn accepted(id: u64) -> pb::frame::Kind {
    pb::frame::Kind::Disposition(pb::Disposition {
        delivery_id: id,
        outcome: Some(pb::Outcome {
            kind: Some(pb::outcome::Kind::Accepted(pb::Accepted {})),
        }),
        settled: true,
        last_delivery_id: 0,
    })
}

fn peer_data(c: &mut Criterion) {
    let mut g = c.benchmark_group("peer data plane per delivery");
    g.throughput(Throughput::Elements(BATCH));
    g.measurement_time(Duration::from_secs(5));
    let system = actix::System::new();
    let onward = Arc::new(Onward::default());
    let (mut from_a, mut to_c, home) = system.block_on(async {
        let hook: DataHook = Arc::new(OnceLock::new());
        let plane: Arc<dyn DataPlane> = onward.clone();
        let _ = hook.set(plane);
        let records = Arc::new(bote_node::mesh::dedup::Records::default());
        let home = Home.start();
        let own = RouterId::from("Router.B");
        let mut from_a = PeerData::new(hook.clone(), own.clone(), 1, records.clone());
        from_a.started(home.clone().recipient());
        let mut to_c = PeerData::new(hook, own, 2, records);
        to_c.started(home.clone().recipient());
        // Both neighbours read the compact forms (as their hellos say).
        from_a.neighbour_reads(true, true, true);
        to_c.neighbour_reads(true, true, true);
        (from_a, to_c, home)
    });
    let mut next = 0;
    g.bench_function("arrive, route on, settle, answer", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let frames = arriving(next);
                    let t = Instant::now();
                    for f in frames {
                        std::hint::black_box(from_a.inbound(f));
                    }
                    from_a.route_arrived();
                    let deliveries = std::mem::take(&mut *onward.0.lock().unwrap());
                    let sent = to_c.send(deliveries, |_| home.clone().recipient());
                    let ids: Vec<u64> = sent
                        .iter()
                        .filter_map(|f| match &f.kind {
                            Some(pb::frame::Kind::Transfer(t)) => Some(t.delivery_id),
                            _ => None,
                        })
                        .collect();
                    for id in ids {
                        to_c.inbound(accepted(id));
                    }
                    to_c.route_arrived();
                    let outcomes = (next..next + BATCH)
                        .map(|id| (id, Some(bote_amqp::DeliveryState::Accepted)))
                        .collect();
                    std::hint::black_box(from_a.returned(outcomes, Vec::new()));
                    took += t.elapsed();
                    next += BATCH;
                    // Let the ingress actor take its outcomes.
                    tokio::task::yield_now().await;
                }
                took
            })
        })
    });
    g.finish();
}

criterion_group!(benches, peer_data);
criterion_main!(benches);
