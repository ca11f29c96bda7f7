//! Property tests: on random connected and disconnected graphs (up to 200
//! routers, random and often tied costs, asymmetric and one-way
//! adjacencies), the routes equal a Floyd–Warshall oracle: same costs, same
//! reachability, and exactly the next hop the documented tie-break picks
//! (parent = shortest-path predecessor with the smallest (cost, router id)).

// Matrix code reads clearest with index loops.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bote_topology::{Cost, LinkStateDb, LinkStateRecord, RouterId, Routes};
use proptest::prelude::*;

const INF: u64 = u64::MAX;

#[derive(Debug, Clone)]
struct Case {
    names: Vec<RouterId>,
    /// (a, b, cost a->b, cost b->a, both ends list each other)
    links: Vec<(usize, usize, Cost, Cost, bool)>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=200)
        .prop_flat_map(|n| {
            let links = prop::collection::vec(
                (0..n, 0..n, 1u32..4, 1u32..4, prop::bool::weighted(0.9)),
                0..=n * 2,
            );
            (Just(n), links, any::<u64>(), any::<bool>())
        })
        .prop_map(|(n, mut links, salt, connected)| {
            // Names in an order unrelated to the indices, so id order matters.
            let names = (0..n)
                .map(|i| {
                    RouterId::from(format!(
                        "r{:016x}",
                        (i as u64 + 1).wrapping_mul(salt | 1).rotate_left(17)
                    ))
                })
                .collect();
            if connected {
                for i in 1..n {
                    links.push((i - 1, i, 3, 3, true));
                }
            }
            links.retain(|(a, b, ..)| a != b);
            Case { names, links }
        })
}

fn lsdb(case: &Case) -> LinkStateDb {
    let mut adj: BTreeMap<usize, BTreeMap<RouterId, Cost>> = BTreeMap::new();
    for (i, _) in case.names.iter().enumerate() {
        adj.entry(i).or_default();
    }
    for &(a, b, ab, ba, both) in &case.links {
        adj.entry(a).or_default().insert(case.names[b].clone(), ab);
        if both {
            adj.entry(b).or_default().insert(case.names[a].clone(), ba);
        }
    }
    let mut db = LinkStateDb::new();
    for (i, n) in adj {
        db.offer(Arc::new(LinkStateRecord::new(
            case.names[i].clone(),
            1,
            1,
            n,
        )));
    }
    db
}

/// Symmetric edge weights as the oracle sees them: an edge only where both
/// records list each other (last listing wins, as in the records), cost = max.
fn weights(case: &Case, db: &LinkStateDb) -> Vec<Vec<u64>> {
    let n = case.names.len();
    let mut w = vec![vec![INF; n]; n];
    for i in 0..n {
        for j in 0..n {
            if i != j
                && let Some(c) = db.edge_cost(&case.names[i], &case.names[j])
            {
                w[i][j] = u64::from(c);
            }
        }
    }
    w
}

fn floyd_warshall(w: &[Vec<u64>]) -> Vec<Vec<u64>> {
    let n = w.len();
    let mut d = w.to_vec();
    for (i, row) in d.iter_mut().enumerate() {
        row[i] = 0;
    }
    for k in 0..n {
        for i in 0..n {
            if d[i][k] == INF {
                continue;
            }
            for j in 0..n {
                if d[k][j] != INF && d[i][k] + d[k][j] < d[i][j] {
                    d[i][j] = d[i][k] + d[k][j];
                }
            }
        }
    }
    d
}

/// The tree parent of every node from `root` by the documented tie-break.
fn parents(case: &Case, w: &[Vec<u64>], d: &[Vec<u64>], root: usize) -> Vec<Option<usize>> {
    let n = w.len();
    (0..n)
        .map(|v| {
            if v == root || d[root][v] == INF {
                return None;
            }
            (0..n)
                .filter(|&u| {
                    w[u][v] != INF && d[root][u] != INF && d[root][u] + w[u][v] == d[root][v]
                })
                .min_by(|&x, &y| (d[root][x], &case.names[x]).cmp(&(d[root][y], &case.names[y])))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn next_hops_and_costs_equal_the_floyd_warshall_oracle(case in case()) {
        let db = lsdb(&case);
        let w = weights(&case, &db);
        let d = floyd_warshall(&w);
        let n = case.names.len();
        let sources: Vec<usize> = if n <= 40 { (0..n).collect() } else { (0..n).step_by(n / 20).collect() };
        for s in sources {
            let routes = Routes::compute(&case.names[s], &db);
            let parent = parents(&case, &w, &d, s);
            let mut reachable = 0;
            for v in 0..n {
                let got = routes.route(&case.names[v]);
                if v == s || d[s][v] == INF {
                    prop_assert!(got.is_none(), "{} -> {} should have no route", case.names[s], case.names[v]);
                    continue;
                }
                reachable += 1;
                let got = got.expect("reachable destination has a route");
                prop_assert_eq!(u64::from(got.cost), d[s][v]);
                let mut hop = v;
                while let Some(p) = parent[hop] && p != s {
                    hop = p;
                }
                prop_assert_eq!(&got.next_hop, &case.names[hop]);
                // The next hop is a neighbour on a shortest path.
                let h = hop;
                prop_assert_eq!(w[s][h] + if h == v { 0 } else { d[h][v] }, d[s][v]);
            }
            prop_assert_eq!(routes.reachable_count(), reachable);
        }
    }

    #[test]
    fn multicast_trees_follow_the_origin_rooted_oracle_tree(case in case()) {
        let db = lsdb(&case);
        let w = weights(&case, &db);
        let d = floyd_warshall(&w);
        let n = case.names.len();
        let local = n / 2;
        let routes = Routes::compute(&case.names[local], &db);
        for o in (0..n).step_by(n.div_ceil(8)) {
            let parent = parents(&case, &w, &d, o);
            let tree = routes.multicast_tree(&case.names[o]).expect("origin is in the graph");
            let want_up = if o == local { None } else { parent[local].map(|p| &case.names[p]) };
            prop_assert_eq!(tree.upstream(), want_up);
            for dest in 0..n {
                // Walk dest's path up to the origin; the node after `local` is the child.
                let mut child = None;
                let mut v = dest;
                let mut via = None;
                while let Some(p) = parent[v] {
                    if p == local {
                        child = Some(v);
                        via = child;
                        break;
                    }
                    v = p;
                }
                if o == local && dest != local && d[o][dest] != INF {
                    // From the local router its tree is the route tree.
                    prop_assert_eq!(tree.next_hop_toward(&case.names[dest]), routes.next_hop(&case.names[dest]));
                }
                prop_assert_eq!(tree.next_hop_toward(&case.names[dest]), via.map(|c| &case.names[c]));
                prop_assert_eq!(tree.is_valid_origin_for(&case.names[dest]), child.is_some());
            }
        }
    }
}
