//! Meshes of real `boted` processes and the oracle their routes are checked
//! against: Dijkstra-equivalent costs (Floyd–Warshall) over the configured
//! edges between live routers, and next hops that are neighbours on some
//! shortest path. Each router's own view is the routes of its state file
//! (the last write wins).

#![allow(dead_code)]

use std::thread;
use std::time::{Duration, Instant};

use super::boted::{Router, RouterSpec, Table};
use super::proxy::LinkProxy;

/// An undirected configured link: (router a, router b, cost). The router
/// started later dials the earlier one.
pub type Edge = (usize, usize, u32);

/// All-pairs shortest path costs over the live routers (Floyd–Warshall).
pub fn distances(n: usize, edges: &[Edge], alive: &[bool]) -> Vec<Vec<Option<u32>>> {
    let mut d = vec![vec![None; n]; n];
    for (i, row) in d.iter_mut().enumerate() {
        row[i] = Some(0);
    }
    for &(a, b, c) in edges {
        if alive[a] && alive[b] {
            d[a][b] = Some(d[a][b].map_or(c, |x: u32| x.min(c)));
            d[b][a] = d[a][b];
        }
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if let (Some(ik), Some(kj)) = (d[i][k], d[k][j])
                    && d[i][j].is_none_or(|ij| ik + kj < ij)
                {
                    d[i][j] = Some(ik + kj);
                }
            }
        }
    }
    d
}

/// Why `table` (router `src`'s routes) is not the oracle's, if it is not:
/// every other live reachable router at its shortest cost, through a next
/// hop that is a neighbour on some shortest path. `names[i]` is router i's id.
pub fn mismatch(
    src: usize,
    table: &Table,
    names: &[String],
    edges: &[Edge],
    alive: &[bool],
) -> Option<String> {
    let n = names.len();
    let d = distances(n, edges, alive);
    let expected: Vec<usize> = (0..n)
        .filter(|&j| j != src && alive[j] && d[src][j].is_some())
        .collect();
    if table.len() != expected.len() {
        return Some(format!(
            "{} knows {} routes, expected {}: {table:?}",
            names[src],
            table.len(),
            expected.len()
        ));
    }
    for j in expected {
        let Some((hop, cost)) = table.get(&names[j]) else {
            return Some(format!("{} has no route to {}", names[src], names[j]));
        };
        let want = d[src][j].expect("reachable");
        if *cost != want {
            return Some(format!(
                "{} -> {}: cost {cost}, expected {want}",
                names[src], names[j]
            ));
        }
        let hop_ok = edges.iter().any(|&(a, b, c)| {
            let other = if a == src {
                b
            } else if b == src {
                a
            } else {
                return false;
            };
            alive[other] && names[other] == *hop && d[other][j].is_some_and(|rest| c + rest == want)
        });
        if !hop_ok {
            return Some(format!(
                "{} -> {}: next hop {hop} is not on a shortest path",
                names[src], names[j]
            ));
        }
    }
    None
}

fn names(routers: &[Router]) -> Vec<String> {
    routers.iter().map(|r| r.id.clone()).collect()
}

/// The links router `i` dials: (edge index, lower-numbered neighbour, cost).
fn dialled_by(i: usize, edges: &[Edge]) -> impl Iterator<Item = (usize, usize, u32)> + '_ {
    edges.iter().enumerate().filter_map(move |(k, &(a, b, c))| {
        let (lo, hi) = (a.min(b), a.max(b));
        (hi == i).then_some((k, lo, c))
    })
}

/// The connectors router `i` dials: one to each lower-numbered neighbour.
pub fn connectors_of(i: usize, edges: &[Edge], routers: &[Router]) -> Vec<(String, u16, u32)> {
    dialled_by(i, edges)
        .map(|(_, lo, c)| {
            (
                format!("to-{}", routers[lo].id),
                routers[lo].inter_router_port,
                c,
            )
        })
        .collect()
}

/// Starts routers `ids` in order, each with an inter-router listener, each
/// dialling its lower-numbered neighbours on `edges`; `spec` adds to each
/// router's config. The links `edges[k]` for `k` in `proxied` go through a
/// [`LinkProxy`] (returned in the order of `proxied`).
pub fn start_mesh(
    ids: &[String],
    edges: &[Edge],
    proxied: &[usize],
    spec: impl Fn(RouterSpec) -> RouterSpec,
) -> (Vec<Router>, Vec<LinkProxy>) {
    let mut routers: Vec<Router> = Vec::new();
    let mut proxies: Vec<(usize, LinkProxy)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut connectors = Vec::new();
        for (k, lo, cost) in dialled_by(i, edges) {
            let mut port = routers[lo].inter_router_port;
            if proxied.contains(&k) {
                let proxy = LinkProxy::start(port);
                port = proxy.port;
                proxies.push((k, proxy));
            }
            connectors.push((format!("to-{}", routers[lo].id), port, cost));
        }
        routers.push(
            spec(RouterSpec::new(id))
                .inter_router(0)
                .connectors(&connectors)
                .start(),
        );
    }
    proxies.sort_by_key(|(k, _)| proxied.iter().position(|p| p == k));
    (routers, proxies.into_iter().map(|(_, p)| p).collect())
}

/// Starts routers `ids` on `edges` (links `proxied` through proxies, see
/// [`start_mesh`]) and waits until every router's routes match the oracle.
/// For tests on a multi-threaded tokio runtime.
pub fn mesh(
    ids: &[&str],
    edges: &[Edge],
    proxied: &[usize],
    spec: impl Fn(RouterSpec) -> RouterSpec,
) -> (Vec<Router>, Vec<LinkProxy>) {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    tokio::task::block_in_place(|| {
        let (routers, proxies) = start_mesh(&ids, edges, proxied, spec);
        converge(
            &routers,
            edges,
            &vec![true; routers.len()],
            super::boted::WAIT,
        )
        .unwrap_or_else(|p| panic!("the mesh did not converge: {p}"));
        (routers, proxies)
    })
}

/// The first problem in any live router's latest routes, if there is one.
pub fn problem(routers: &[Router], edges: &[Edge], alive: &[bool]) -> Option<String> {
    let names = names(routers);
    (0..routers.len())
        .filter(|&i| alive[i])
        .find_map(|i| mismatch(i, &routers[i].routes(), &names, edges, alive))
}

/// Waits until every live router's routes match the oracle; returns the
/// first mismatch on timeout.
pub fn converge(
    routers: &[Router],
    edges: &[Edge],
    alive: &[bool],
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match problem(routers, edges, alive) {
            None => return Ok(()),
            Some(p) if Instant::now() >= deadline => return Err(p),
            Some(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// For each live router, the log time of the first route line at or after
/// `since` from which on its table matches the oracle; the latest of them.
pub fn converged_at(routers: &[Router], edges: &[Edge], alive: &[bool], since: f64) -> f64 {
    let names = names(routers);
    let mut latest = since;
    for (i, r) in routers.iter().enumerate().filter(|(i, _)| alive[*i]) {
        let mut at = None;
        for (t, table) in r.route_lines().iter().filter(|(t, _)| *t >= since - 0.001) {
            if mismatch(i, table, &names, edges, alive).is_none() {
                at.get_or_insert(*t);
            } else {
                at = None;
            }
        }
        latest = latest.max(at.unwrap_or(since));
    }
    latest
}
