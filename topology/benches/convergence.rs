//! Whole-mesh cold start through the real control protocol: N routers on a
//! random connected graph (average degree ~4) boot at once; a minimal
//! deterministic pump (1 ms links) delivers messages until every router has
//! converged. Measures the CPU cost the simulator pays per router.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use bote_topology::{ControlPlane, Output, ProtocolConfig, RouterId};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Boots the mesh and runs 200 ms of simulated time; returns messages sent.
fn cold_start(n: usize) -> u64 {
    let mut rng = Rng(7);
    let names: Vec<RouterId> = (0..n)
        .map(|i| RouterId::from(format!("router-{i:05}")))
        .collect();
    let mut planes: Vec<ControlPlane> = names
        .iter()
        .map(|id| ControlPlane::new(id.clone(), 1, ProtocolConfig::default(), Duration::ZERO))
        .collect();
    let mut edges = Vec::new();
    for i in 1..n {
        edges.push((i, rng.below(i)));
    }
    for _ in 0..n {
        let (a, b) = (rng.below(n), rng.below(n));
        if a != b {
            edges.push((a, b));
        }
    }
    let index: BTreeMap<RouterId, usize> = names.iter().cloned().zip(0..).collect();
    for &(a, b) in &edges {
        planes[a].neighbour_up(names[b].clone(), 1, Duration::ZERO);
        planes[b].neighbour_up(names[a].clone(), 1, Duration::ZERO);
    }
    let mut queue: BTreeMap<(Duration, u64), (usize, usize, bote_topology::ControlMessage)> =
        BTreeMap::new();
    let mut seq = 0u64;
    let mut sent = 0u64;
    let mut now = Duration::ZERO;
    let end = Duration::from_millis(200);
    loop {
        for (i, p) in planes.iter_mut().enumerate() {
            while let Some(out) = p.poll_output() {
                if let Output::Send { to, message } = out
                    && let Some(&j) = index.get(&to)
                {
                    queue.insert((now + Duration::from_millis(1), seq), (i, j, message));
                    seq += 1;
                    sent += 1;
                }
            }
        }
        let next_msg = queue.keys().next().map(|k| k.0);
        let next_timer = planes.iter().filter_map(|p| p.poll_timeout()).min();
        let next = match (next_msg, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(end),
        };
        if next > end {
            break;
        }
        now = next;
        while let Some(e) = queue.first_entry() {
            if e.key().0 > now {
                break;
            }
            let (from, to, message) = e.remove();
            planes[to].handle_message(&names[from], message, now);
        }
        for p in planes.iter_mut() {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
    }
    assert!(
        planes.iter().all(|p| p.routes().reachable_count() == n - 1),
        "converged"
    );
    if std::env::var_os("BOTE_BENCH_VERBOSE").is_some() {
        let recomputes: u64 = planes.iter().map(|p| p.recompute_count()).sum();
        eprintln!("n={n}: {sent} messages, {recomputes} recomputes");
    }
    sent
}

fn bench_convergence(c: &mut Criterion) {
    let mut group = c.benchmark_group("cold_start");
    group.sample_size(10);
    for n in [100usize, 300] {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| black_box(cold_start(n)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_convergence);
criterion_main!(benches);
