//! Full route recompute (graph build from the link-state database + SPF from
//! the local router) on random connected graphs of average degree ~4, and the
//! lazy per-origin multicast tree.

use std::hint::black_box;
use std::sync::Arc;

use bote_topology::{Cost, LinkStateDb, LinkStateRecord, RouterId, Routes, Topology};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// splitmix64: a deterministic generator, enough for benchmark graphs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random spanning tree plus n extra random edges (average degree ~4),
/// costs 1..=10, as a link-state database.
fn random_mesh(n: usize, seed: u64) -> (Vec<RouterId>, LinkStateDb) {
    let mut rng = Rng(seed);
    let names: Vec<RouterId> = (0..n)
        .map(|i| RouterId::from(format!("router-{i:05}")))
        .collect();
    let mut adj: Vec<Vec<(RouterId, Cost)>> = vec![Vec::new(); n];
    let add = |a: usize, b: usize, c: Cost, adj: &mut Vec<Vec<(RouterId, Cost)>>| {
        adj[a].push((names[b].clone(), c));
        adj[b].push((names[a].clone(), c));
    };
    for i in 1..n {
        let j = rng.below(i);
        let c = 1 + rng.below(10) as Cost;
        add(i, j, c, &mut adj);
    }
    for _ in 0..n {
        let (a, b) = (rng.below(n), rng.below(n));
        if a != b {
            let c = 1 + rng.below(10) as Cost;
            add(a, b, c, &mut adj);
        }
    }
    let mut db = LinkStateDb::new();
    for (i, neighbours) in adj.into_iter().enumerate() {
        db.offer(Arc::new(LinkStateRecord::new(
            names[i].clone(),
            1,
            1,
            neighbours,
        )));
    }
    (names, db)
}

fn bench_routes(c: &mut Criterion) {
    let mut group = c.benchmark_group("routes");
    for n in [100usize, 1_000, 5_000] {
        let (names, db) = random_mesh(n, 42);
        let local = names[0].clone();
        group.bench_with_input(BenchmarkId::new("full_recompute", n), &n, |b, _| {
            b.iter(|| black_box(Routes::compute(black_box(&local), black_box(&db))))
        });
        let topology = Arc::new(Topology::from_lsdb(&db));
        group.bench_with_input(BenchmarkId::new("graph_build", n), &n, |b, _| {
            b.iter(|| black_box(Topology::from_lsdb(black_box(&db))))
        });
        group.bench_with_input(BenchmarkId::new("spf_only", n), &n, |b, _| {
            b.iter(|| black_box(Routes::from_topology(local.clone(), topology.clone())))
        });
        let routes = Routes::from_topology(local.clone(), topology.clone());
        let origin = names[n / 2].clone();
        group.bench_with_input(
            BenchmarkId::new("multicast_tree_uncached", n),
            &n,
            |b, _| {
                b.iter(|| {
                    // A fresh snapshot each time so the per-origin cache is cold.
                    let r = Routes::from_topology(local.clone(), topology.clone());
                    black_box(r.multicast_tree(&origin))
                })
            },
        );
        black_box(&routes);
    }
    group.finish();
}

criterion_group!(benches, bench_routes);
criterion_main!(benches);
