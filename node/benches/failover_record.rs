//! What duplicate suppression after failover (`mesh::dedup`) adds to every
//! unsettled delivery crossing an inter-router stream: on arrival its mesh
//! identity is buffered and written into the stream's record once per
//! batch, and when its outcome goes back it moves to the ring of settled
//! deliveries (steady state: the ring is full, so the oldest is dropped).
//! Also measured: the same while the router checks arrivals (the 30 s after
//! a resent delivery arrived), where each arrival is looked up across three
//! streams and the indexes are maintained.

use std::sync::Arc;
use std::time::Instant;

use bote_amqp::DeliveryState;
use bote_node::mesh::dedup::{MeshId, Records, SETTLED_KEPT, Seen, StreamRecorder};
use bote_topology::RouterId;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Deliveries per batch, like a busy stream's.
const BATCH: u64 = 250;

/// One batch through the record, as the peer data plane does it: each
/// arrival buffered (looked up first while checking), the batch written at
/// its end, then the batch's outcomes.
fn batch(
    records: &Records,
    stream: &mut StreamRecorder,
    ingress: &RouterId,
    next: &mut u64,
    lookup: bool,
) {
    let first = *next;
    for _ in 0..BATCH {
        if lookup || records.checking() {
            stream.flush();
            let mesh = MeshId {
                ingress: ingress.clone(),
                sequence: *next,
            };
            assert_eq!(records.lookup(&mesh, false, Instant::now()), Seen::No);
        }
        stream.arrived(*next, ingress, *next);
        *next += 1;
    }
    stream.flush();
    stream.settled((first..*next).map(|id| (id, &DeliveryState::Accepted)));
}

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("failover record per delivery");
    g.throughput(Throughput::Elements(BATCH));
    let ingress = RouterId::from("Router.A");
    let fill = SETTLED_KEPT as u64 / BATCH + 1;

    // The normal path: nobody checks.
    let records = Arc::new(Records::default());
    let mut stream = records.open_stream();
    let mut next = 1;
    for _ in 0..fill {
        batch(&records, &mut stream, &ingress, &mut next, false);
    }
    assert!(!records.checking());
    g.bench_function("arrive + settle (ring full)", |b| {
        b.iter(|| batch(&records, &mut stream, &ingress, &mut next, false))
    });

    let mut sequences = records.sequences();
    g.bench_function("ingress sequence", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let n = match sequences.next() {
                    Some(n) => n,
                    None => {
                        sequences = records.sequences();
                        sequences.next().unwrap_or(1)
                    }
                };
                std::hint::black_box(n);
            }
        })
    });

    // Checking: a resent delivery arrived; three streams with full rings.
    let checking = Arc::new(Records::default());
    let mut streams: Vec<StreamRecorder> = (0..3).map(|_| checking.open_stream()).collect();
    let mut next = 1;
    for s in &mut streams {
        for _ in 0..fill {
            batch(&checking, s, &ingress, &mut next, false);
        }
    }
    let resent = MeshId {
        ingress: RouterId::from("Router.Z"),
        sequence: 1,
    };
    checking.lookup(&resent, true, Instant::now());
    assert!(checking.checking());
    g.bench_function("arrive + look up + settle while checking", |b| {
        b.iter(|| batch(&checking, &mut streams[0], &ingress, &mut next, true))
    });
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
