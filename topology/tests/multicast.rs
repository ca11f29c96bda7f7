//! End-to-end multicast over random meshes: every router runs the shared
//! `policy::multicast` with its own routes and the origin's tree; each router
//! with consumers receives exactly one copy, whatever the ties in the graph.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bote_topology::{Cost, LinkStateDb, LinkStateRecord, RouterId, Routes, multicast};
use proptest::prelude::*;

/// (router count, links (a, b, cost), has-consumer flags, origin).
type Mesh = (usize, Vec<(usize, usize, Cost)>, Vec<bool>, usize);

fn mesh() -> impl Strategy<Value = Mesh> {
    (2usize..=60).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec((0..n, 0..n, 1u32..3), 0..=n * 2),
            prop::collection::vec(any::<bool>(), n),
            0..n,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_router_with_consumers_gets_exactly_one_copy((n, mut links, consumers, origin) in mesh()) {
        let names: Vec<RouterId> = (0..n).map(|i| RouterId::from(format!("m{:02}", (i * 37) % 101))).collect();
        for i in 1..n {
            links.push((i - 1, i, 2)); // connected
        }
        let mut adj: BTreeMap<usize, BTreeMap<RouterId, Cost>> = BTreeMap::new();
        for (a, b, c) in links {
            if a != b {
                adj.entry(a).or_default().insert(names[b].clone(), c);
                adj.entry(b).or_default().insert(names[a].clone(), c);
            }
        }
        let mut db = LinkStateDb::new();
        for (i, nb) in adj {
            db.offer(Arc::new(LinkStateRecord::new(names[i].clone(), 1, 1, nb)));
        }
        let routes: Vec<Routes> = names.iter().map(|r| Routes::compute(r, &db)).collect();
        let index: BTreeMap<&RouterId, usize> = names.iter().zip(0..).collect();
        let with_consumers: BTreeSet<usize> = (0..n).filter(|&i| consumers[i]).collect();

        let mut received = vec![0usize; n];
        let mut queue = VecDeque::from([(origin, None::<usize>)]);
        let mut hops = 0;
        while let Some((at, from)) = queue.pop_front() {
            hops += 1;
            prop_assert!(hops <= 4 * n, "copies loop");
            let remote: Vec<RouterId> = with_consumers.iter().filter(|&&c| c != at).map(|&c| names[c].clone()).collect();
            let tree = routes[at].multicast_tree(&names[origin]);
            let plan = multicast(
                &routes[at],
                usize::from(consumers[at]),
                &remote,
                from.map(|f| &names[f]),
                tree.as_deref(),
            );
            received[at] += plan.local_copies;
            for hop in &plan.next_hops {
                queue.push_back((index[hop], Some(at)));
            }
        }
        for i in 0..n {
            prop_assert_eq!(received[i], usize::from(consumers[i]), "router {}", names[i]);
        }
    }
}
