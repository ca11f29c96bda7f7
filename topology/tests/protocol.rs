//! Control-protocol scenarios on a deterministic in-test mesh: every router
//! is a real `ControlPlane`; a tiny message pump delivers messages after a
//! fixed link latency, in send order, optionally dropping some; time is
//! simulated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bote_topology::{
    Address, ControlMessage, ControlPlane, Cost, CostAuthority, Output, ProtocolConfig, RouterId,
};

const LATENCY: Duration = Duration::from_millis(1);

type DropRule = Box<dyn FnMut(Duration, &RouterId, &RouterId, &ControlMessage) -> bool>;

struct Mesh {
    now: Duration,
    config: ProtocolConfig,
    nodes: BTreeMap<RouterId, ControlPlane>,
    /// Undirected links, keyed (smaller, larger).
    links: BTreeMap<(RouterId, RouterId), Cost>,
    in_flight: BTreeMap<(Duration, u64), (RouterId, RouterId, ControlMessage)>,
    next_seq: u64,
    drop_rule: Option<DropRule>,
    sent: u64,
    routes_changed: BTreeMap<RouterId, u64>,
    address_events: BTreeMap<RouterId, Vec<Vec<Address>>>,
}

fn id(i: usize) -> RouterId {
    RouterId::from(format!("R{i:02}"))
}

fn key(a: &RouterId, b: &RouterId) -> (RouterId, RouterId) {
    if a < b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

impl Mesh {
    fn new(config: ProtocolConfig) -> Self {
        Mesh {
            now: Duration::ZERO,
            config,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            drop_rule: None,
            sent: 0,
            routes_changed: BTreeMap::new(),
            address_events: BTreeMap::new(),
        }
    }

    fn add_router(&mut self, r: RouterId, instance: u64) {
        let cp = ControlPlane::new(r.clone(), instance, self.config.clone(), self.now);
        self.nodes.insert(r, cp);
    }

    fn connect(&mut self, a: &RouterId, b: &RouterId, cost: Cost) {
        self.links.insert(key(a, b), cost);
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(a) {
            n.neighbour_up(b.clone(), cost, now);
        }
        if let Some(n) = self.nodes.get_mut(b) {
            n.neighbour_up(a.clone(), cost, now);
        }
        self.collect();
    }

    /// A link that `dialler` opened: it decides the cost; `listener` starts
    /// from `initial` and adopts the cost stated in the dialler's hellos.
    fn connect_dialled(
        &mut self,
        dialler: &RouterId,
        listener: &RouterId,
        cost: Cost,
        initial: Cost,
    ) {
        self.links.insert(key(dialler, listener), cost);
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(dialler) {
            n.neighbour_up(listener.clone(), cost, now);
        }
        if let Some(n) = self.nodes.get_mut(listener) {
            n.neighbour_up_with(dialler.clone(), initial, CostAuthority::Neighbour, now);
        }
        self.collect();
    }

    fn cut(&mut self, a: &RouterId, b: &RouterId) {
        self.links.remove(&key(a, b));
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(a) {
            n.neighbour_down(b, now);
        }
        if let Some(n) = self.nodes.get_mut(b) {
            n.neighbour_down(a, now);
        }
        self.collect();
    }

    /// Stops a router: its links close (its neighbours see the streams close).
    fn stop(&mut self, r: &RouterId) {
        let peers: Vec<RouterId> = self.peers_of(r);
        for p in &peers {
            self.cut(r, p);
        }
        self.nodes.remove(r);
    }

    fn peers_of(&self, r: &RouterId) -> Vec<RouterId> {
        self.links
            .keys()
            .filter_map(|(a, b)| {
                if a == r {
                    Some(b.clone())
                } else if b == r {
                    Some(a.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    fn with<T>(&mut self, r: &RouterId, f: impl FnOnce(&mut ControlPlane, Duration) -> T) -> T {
        let now = self.now;
        let out = f(self.nodes.get_mut(r).expect("router exists"), now);
        self.collect();
        out
    }

    /// Moves every node's outputs into the network.
    fn collect(&mut self) {
        let names: Vec<RouterId> = self.nodes.keys().cloned().collect();
        for from in names {
            while let Some(out) = self.nodes.get_mut(&from).and_then(|n| n.poll_output()) {
                if let Output::AddressesChanged { addresses } = &out {
                    self.address_events
                        .entry(from.clone())
                        .or_default()
                        .push(addresses.clone());
                }
                if out == Output::RoutesChanged {
                    *self.routes_changed.entry(from.clone()).or_default() += 1;
                }
                if let Output::Send { to, message } = out {
                    self.sent += 1;
                    if !self.links.contains_key(&key(&from, &to)) {
                        continue;
                    }
                    if let Some(rule) = self.drop_rule.as_mut()
                        && rule(self.now, &from, &to, &message)
                    {
                        continue;
                    }
                    self.in_flight.insert(
                        (self.now + LATENCY, self.next_seq),
                        (from.clone(), to, message),
                    );
                    self.next_seq += 1;
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_msg = self.in_flight.keys().next().map(|(t, _)| *t);
            let next_timer = self.nodes.values().filter_map(|n| n.poll_timeout()).min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(end),
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (from, to, msg) = entry.remove();
                if !self.links.contains_key(&key(&from, &to)) {
                    continue;
                }
                let now = self.now;
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.handle_message(&from, msg, now);
                }
            }
            let now = self.now;
            for n in self.nodes.values_mut() {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
            }
            self.collect();
        }
    }

    /// All-pairs shortest path costs over the live links (Floyd–Warshall).
    fn oracle(&self) -> BTreeMap<(RouterId, RouterId), u64> {
        let names: Vec<&RouterId> = self.nodes.keys().collect();
        let n = names.len();
        let idx = |r: &RouterId| names.iter().position(|x| *x == r);
        let mut d = vec![vec![u64::MAX; n]; n];
        for (i, row) in d.iter_mut().enumerate() {
            row[i] = 0;
        }
        for ((a, b), c) in &self.links {
            if let (Some(i), Some(j)) = (idx(a), idx(b)) {
                d[i][j] = d[i][j].min(u64::from(*c));
                d[j][i] = d[i][j];
            }
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    if d[i][k] != u64::MAX && d[k][j] != u64::MAX && d[i][k] + d[k][j] < d[i][j] {
                        d[i][j] = d[i][k] + d[k][j];
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for i in 0..n {
            for j in 0..n {
                if i != j && d[i][j] != u64::MAX {
                    out.insert((names[i].clone(), names[j].clone()), d[i][j]);
                }
            }
        }
        out
    }

    /// Every router's routes give the oracle cost, a next hop that is a live
    /// neighbour on a shortest path, and nothing for unreachable routers.
    fn routes_match_oracle(&self) -> Result<(), String> {
        let oracle = self.oracle();
        for (s, cp) in &self.nodes {
            let routes = cp.routes();
            for d in self.nodes.keys() {
                if d == s {
                    continue;
                }
                match (oracle.get(&(s.clone(), d.clone())), routes.route(d)) {
                    (None, None) => {}
                    (Some(cost), Some(route)) => {
                        if u64::from(route.cost) != *cost {
                            return Err(format!("{s}->{d}: cost {} want {cost}", route.cost));
                        }
                        let link = self.links.get(&key(s, &route.next_hop)).ok_or_else(|| {
                            format!("{s}->{d}: next hop {} is no neighbour", route.next_hop)
                        })?;
                        let rest = if route.next_hop == *d {
                            0
                        } else {
                            *oracle
                                .get(&(route.next_hop.clone(), d.clone()))
                                .unwrap_or(&u64::MAX)
                        };
                        if u64::from(*link).saturating_add(rest) != *cost {
                            return Err(format!(
                                "{s}->{d}: next hop {} not on a shortest path",
                                route.next_hop
                            ));
                        }
                    }
                    (want, got) => {
                        return Err(format!("{s}->{d}: oracle {want:?}, routes {got:?}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every router's address table equals: for each address, the reachable
    /// remote routers with a local consumer for it, plus its own local flag.
    fn address_tables_match(&self) -> Result<(), String> {
        let oracle = self.oracle();
        for (s, cp) in &self.nodes {
            let mut want: BTreeMap<Address, (bool, BTreeSet<RouterId>)> = BTreeMap::new();
            for (r, other) in &self.nodes {
                for a in other.local_addresses() {
                    let e = want.entry(a.clone()).or_default();
                    if r == s {
                        e.0 = true;
                    } else if oracle.contains_key(&(s.clone(), r.clone())) {
                        e.1.insert(r.clone());
                    }
                }
            }
            want.retain(|_, (l, rs)| *l || !rs.is_empty());
            let got: BTreeMap<Address, (bool, BTreeSet<RouterId>)> = cp
                .address_table()
                .iter()
                .map(|(a, e)| (a.clone(), (e.local, e.routers.clone())))
                .collect();
            if got != want {
                return Err(format!("{s}: address table {got:?}, want {want:?}"));
            }
        }
        Ok(())
    }
}

fn ring(n: usize, config: ProtocolConfig) -> Mesh {
    let mut mesh = Mesh::new(config);
    for i in 0..n {
        mesh.add_router(id(i), 1);
    }
    for i in 0..n {
        mesh.connect(&id(i), &id((i + 1) % n), (i % 3 + 1) as Cost);
    }
    mesh
}

#[test]
fn a_ring_of_ten_converges_to_the_oracle_routes_within_100ms() {
    let mut mesh = ring(10, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(100));
    mesh.routes_match_oracle().expect("converged");
    for cp in mesh.nodes.values() {
        assert_eq!(cp.routes().reachable_count(), 9);
        assert_eq!(cp.lsdb().len(), 10);
    }
}

#[test]
fn cutting_a_link_reroutes_the_other_way_round_the_ring() {
    let mut mesh = ring(10, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(100));
    assert_eq!(mesh.nodes[&id(0)].routes().next_hop(&id(1)), Some(&id(1)));
    mesh.cut(&id(0), &id(1));
    mesh.run_for(Duration::from_millis(50));
    mesh.routes_match_oracle().expect("rerouted");
    assert_eq!(mesh.nodes[&id(0)].routes().next_hop(&id(1)), Some(&id(9)));
}

/// A chain whose second link comes up while the middle router holds the
/// first router's record but has not yet found it reachable: the full digest
/// of the new adjacency leaves that record out, and the new neighbour must
/// still get it at the recompute, not at the next digest (seconds later).
#[test]
fn a_chain_coming_up_at_any_moment_converges_without_waiting_for_a_digest() {
    for step in 0..40u64 {
        let mut mesh = Mesh::new(ProtocolConfig::default());
        for i in 0..3 {
            mesh.add_router(id(i), 1);
        }
        mesh.connect(&id(0), &id(1), 1);
        mesh.run_for(Duration::from_micros(step * 250));
        mesh.connect(&id(1), &id(2), 1);
        mesh.run_for(Duration::from_millis(100));
        mesh.routes_match_oracle()
            .unwrap_or_else(|e| panic!("second link up after {} µs: {e}", step * 250));
    }
}

#[test]
fn routes_changed_is_reported_after_a_link_cost_change_using_the_max_of_both_ends() {
    let mut mesh = ring(4, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(100));
    let before = mesh.routes_changed.clone();
    let (a, b) = (id(0), id(1));
    // Only one end raises its cost: the edge costs the max of both ends.
    mesh.with(&a, |n, now| n.set_link_cost(&b, 50, now));
    mesh.run_for(Duration::from_millis(50));
    mesh.links.insert(key(&a, &b), 50);
    mesh.routes_match_oracle().expect("rerouted");
    assert_eq!(mesh.nodes[&a].routes().next_hop(&b), Some(&id(3)));
    assert_eq!(mesh.nodes[&b].routes().next_hop(&a), Some(&id(2)));
    for r in [&a, &b] {
        assert!(
            mesh.routes_changed[r] > before[r],
            "{r} reported RoutesChanged"
        );
    }
}

#[test]
fn the_listening_end_adopts_the_cost_the_dialling_end_states_and_follows_a_change_at_once() {
    // Triangle: A dialled C with cost 10 (C heard 1 at connect time and must
    // learn 10 from A's hellos); A-B and B-C cost 1, so A reaches C via B.
    let mut mesh = Mesh::new(ProtocolConfig::default());
    let (a, b, c) = (id(0), id(1), id(2));
    for r in [&a, &b, &c] {
        mesh.add_router(r.clone(), 1);
    }
    mesh.connect(&a, &b, 1);
    mesh.connect(&b, &c, 1);
    mesh.connect_dialled(&a, &c, 10, 1);
    mesh.run_for(Duration::from_millis(100));
    assert_eq!(mesh.nodes[&c].neighbour(&a).map(|n| n.cost), Some(10));
    for r in [&a, &c] {
        let record = mesh.nodes[&b].lsdb().get(r).expect("record held");
        let other = if *r == a { &c } else { &a };
        assert_eq!(record.cost_to(other), Some(10), "{r}'s record");
    }
    mesh.routes_match_oracle().expect("converged");
    assert_eq!(mesh.nodes[&a].routes().next_hop(&c), Some(&b));
    assert_eq!(mesh.nodes[&c].routes().next_hop(&a), Some(&b));

    // A lowers its cost: its hello goes at once, far inside the 1 s hello
    // interval, and both ends now route directly.
    let sent_before = mesh.sent;
    mesh.with(&a, |n, now| n.set_link_cost(&c, 1, now));
    assert!(mesh.sent > sent_before, "a hello left A at once");
    mesh.run_for(Duration::from_millis(20));
    mesh.links.insert(key(&a, &c), 1);
    assert_eq!(mesh.nodes[&c].neighbour(&a).map(|n| n.cost), Some(1));
    mesh.routes_match_oracle().expect("rerouted");
    assert_eq!(mesh.nodes[&a].routes().next_hop(&c), Some(&c));
    assert_eq!(mesh.nodes[&c].routes().next_hop(&a), Some(&a));
    assert_eq!(
        mesh.nodes[&b].lsdb().get(&c).and_then(|r| r.cost_to(&a)),
        Some(1)
    );
}

#[test]
fn stated_costs_are_ignored_by_the_deciding_end_and_absent_ones_change_nothing() {
    let mut mesh = Mesh::new(ProtocolConfig::default());
    let (a, b) = (id(0), id(1));
    mesh.add_router(a.clone(), 1);
    mesh.add_router(b.clone(), 1);
    mesh.connect_dialled(&a, &b, 7, 7);
    mesh.run_for(Duration::from_millis(50));
    let hello = |cost| {
        ControlMessage::Hello(bote_topology::Hello {
            router: b.clone(),
            instance: 1,
            seen: vec![a.clone()],
            cost,
        })
    };
    // A decides: a cost B (wrongly) states is ignored.
    mesh.with(&a, |n, now| n.handle_message(&b, hello(Some(3)), now));
    assert_eq!(mesh.nodes[&a].neighbour(&b).map(|n| n.cost), Some(7));
    // B adopts: a hello stating nothing keeps the adopted cost.
    let from_a = ControlMessage::Hello(bote_topology::Hello {
        router: a.clone(),
        instance: 1,
        seen: vec![b.clone()],
        cost: None,
    });
    mesh.with(&b, |n, now| n.handle_message(&a, from_a, now));
    assert_eq!(mesh.nodes[&b].neighbour(&a).map(|n| n.cost), Some(7));
    assert_eq!(
        mesh.nodes[&b].neighbour(&a).map(|n| n.authority),
        Some(CostAuthority::Neighbour)
    );
}

#[test]
fn a_silent_neighbour_is_dropped_after_the_hello_timeout() {
    let mut mesh = ring(6, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(100));
    let (a, b) = (id(0), id(1));
    mesh.drop_rule = Some(Box::new(move |_, f, t, _| {
        (*f == a && *t == b) || (*f == b && *t == a)
    }));
    mesh.run_for(Duration::from_millis(2500));
    assert_eq!(
        mesh.nodes[&id(0)].routes().next_hop(&id(1)),
        Some(&id(1)),
        "not yet timed out"
    );
    mesh.run_for(Duration::from_millis(1000));
    assert_eq!(mesh.nodes[&id(0)].routes().next_hop(&id(1)), Some(&id(5)));
    assert!(
        !mesh.nodes[&id(0)]
            .neighbour(&id(1))
            .expect("still connected")
            .two_way
    );
    // The link heals: hellos flow again and the adjacency returns.
    mesh.drop_rule = None;
    mesh.run_for(Duration::from_millis(1100));
    assert_eq!(mesh.nodes[&id(0)].routes().next_hop(&id(1)), Some(&id(1)));
}

#[test]
fn a_neighbour_whose_hellos_are_late_but_whose_data_arrives_keeps_its_adjacency() {
    let mut mesh = ring(6, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(100));
    let (a, b) = (id(0), id(1));
    // No control message crosses A-B for 4 s (past the 3 s timeout), but
    // each end's transport reports data from the other every 500 ms.
    mesh.drop_rule = Some(Box::new(move |_, f, t, _| {
        (*f == a && *t == b) || (*f == b && *t == a)
    }));
    for _ in 0..8 {
        mesh.run_for(Duration::from_millis(500));
        let now = mesh.now;
        mesh.nodes.get_mut(&id(0)).unwrap().heard(&id(1), now);
        mesh.nodes.get_mut(&id(1)).unwrap().heard(&id(0), now);
    }
    assert!(mesh.nodes[&id(0)].neighbour(&id(1)).unwrap().two_way);
    assert_eq!(mesh.nodes[&id(0)].routes().next_hop(&id(1)), Some(&id(1)));
    // Data stops too: the adjacency goes after the timeout.
    mesh.run_for(Duration::from_millis(3500));
    assert!(!mesh.nodes[&id(0)].neighbour(&id(1)).unwrap().two_way);
    assert_eq!(mesh.nodes[&id(0)].routes().next_hop(&id(1)), Some(&id(5)));
}

#[test]
fn a_restarted_router_with_a_new_instance_supersedes_its_old_record_and_addresses() {
    let mut mesh = ring(8, ProtocolConfig::default());
    let r3 = id(3);
    mesh.with(&r3, |n, now| n.add_local_address("old/queue".into(), now));
    mesh.run_for(Duration::from_millis(100));
    mesh.address_tables_match().expect("old address known");
    assert!(
        mesh.nodes[&id(6)]
            .address_table()
            .get(&"old/queue".into())
            .is_some()
    );
    // Restart: stop it, bring it back with a greater instance and a different consumer.
    let peers = mesh.peers_of(&r3);
    mesh.stop(&r3);
    mesh.run_for(Duration::from_millis(50));
    mesh.add_router(r3.clone(), 2);
    mesh.with(&r3, |n, now| n.add_local_address("new/queue".into(), now));
    for p in &peers {
        mesh.connect(&r3, p, 1);
    }
    mesh.run_for(Duration::from_millis(100));
    mesh.routes_match_oracle().expect("converged after restart");
    mesh.address_tables_match()
        .expect("addresses after restart");
    for cp in mesh.nodes.values() {
        assert_eq!(
            cp.lsdb().get(&r3).map(|r| r.instance),
            Some(2),
            "{}",
            cp.id()
        );
        assert!(cp.address_table().get(&"old/queue".into()).is_none());
    }
}

#[test]
fn lost_address_updates_are_repaired_by_the_digest() {
    let mut mesh = ring(10, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(100));
    // Lose every address update for the next 500 ms.
    let until = mesh.now + Duration::from_millis(500);
    mesh.drop_rule = Some(Box::new(move |now, _, _, m| {
        now < until && matches!(m, ControlMessage::AddressUpdate(_))
    }));
    for (i, a) in [(2, "a"), (5, "b"), (7, "c"), (2, "d")] {
        mesh.with(&id(i), |n, now| n.add_local_address(a.into(), now));
    }
    mesh.with(&id(2), |n, now| n.remove_local_address(&"d".into(), now));
    mesh.run_for(Duration::from_millis(400));
    assert!(mesh.address_tables_match().is_err(), "updates were lost");
    // One digest interval later every table agrees, and stays so.
    mesh.run_for(Duration::from_millis(3200));
    mesh.address_tables_match().expect("repaired");
    let hash = mesh.nodes[&id(0)].address_digest_hash();
    assert!(mesh.nodes.values().all(|n| n.address_digest_hash() == hash));
    assert_eq!(
        mesh.nodes[&id(0)]
            .address_table()
            .get(&"a".into())
            .map(|e| e.routers.len()),
        Some(1)
    );
}

#[test]
fn lost_link_state_updates_are_repaired_by_the_digest() {
    let mut mesh = ring(10, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(100));
    let until = mesh.now + Duration::from_millis(200);
    mesh.drop_rule = Some(Box::new(move |now, _, _, m| {
        now < until && matches!(m, ControlMessage::LinkStateUpdate(_))
    }));
    mesh.connect(&id(0), &id(5), 1);
    mesh.run_for(Duration::from_millis(300));
    assert!(mesh.routes_match_oracle().is_err(), "updates were lost");
    mesh.run_for(Duration::from_millis(3500));
    mesh.routes_match_oracle().expect("repaired");
}

#[test]
fn a_partition_keeps_each_side_consistent_and_healing_merges_them() {
    let mut mesh = ring(10, ProtocolConfig::default());
    mesh.with(&id(1), |n, now| n.add_local_address("shared".into(), now));
    mesh.with(&id(8), |n, now| n.add_local_address("shared".into(), now));
    mesh.run_for(Duration::from_millis(100));
    mesh.cut(&id(0), &id(1));
    mesh.cut(&id(5), &id(6));
    mesh.run_for(Duration::from_millis(100));
    mesh.routes_match_oracle().expect("each side converged");
    mesh.address_tables_match()
        .expect("unreachable consumers left the tables");
    assert!(!mesh.nodes[&id(3)].routes().is_reachable(&id(8)));
    // Changes during the partition.
    mesh.with(&id(8), |n, now| n.add_local_address("west".into(), now));
    mesh.with(&id(2), |n, now| n.add_local_address("east".into(), now));
    mesh.run_for(Duration::from_millis(100));
    mesh.connect(&id(0), &id(1), 1);
    mesh.connect(&id(5), &id(6), 3);
    mesh.run_for(Duration::from_millis(200));
    mesh.routes_match_oracle().expect("healed");
    mesh.address_tables_match().expect("address tables merged");
    assert_eq!(
        mesh.nodes[&id(3)]
            .address_table()
            .get(&"west".into())
            .map(|e| e.routers.clone()),
        Some(BTreeSet::from([id(8)]))
    );
}

#[test]
fn records_of_unreachable_routers_are_removed_after_the_retention() {
    let config = ProtocolConfig {
        unreachable_retention: Duration::from_secs(5),
        ..ProtocolConfig::default()
    };
    let mut mesh = ring(5, config);
    mesh.with(&id(2), |n, now| n.add_local_address("q".into(), now));
    mesh.run_for(Duration::from_millis(100));
    mesh.stop(&id(2));
    mesh.run_for(Duration::from_secs(4));
    assert!(
        mesh.nodes[&id(0)].lsdb().get(&id(2)).is_some(),
        "kept during retention"
    );
    assert!(
        mesh.nodes[&id(0)]
            .address_table()
            .get(&"q".into())
            .is_none()
    );
    mesh.run_for(Duration::from_secs(2));
    for cp in mesh.nodes.values() {
        assert!(cp.lsdb().get(&id(2)).is_none());
        assert!(cp.addresses_of(&id(2)).is_none());
    }
    // The survivors' digests agree again, so no repair traffic flows.
    let h = mesh.nodes[&id(0)].lsdb().digest_hash();
    assert!(mesh.nodes.values().all(|n| n.lsdb().digest_hash() == h));
}

#[test]
fn qdrouterd_like_timers_converge_only_on_the_tick() {
    let mut mesh = ring(10, ProtocolConfig::qdrouterd_like());
    mesh.run_for(Duration::from_millis(900));
    assert!(
        mesh.routes_match_oracle().is_err(),
        "nothing computed before the first tick"
    );
    mesh.run_for(Duration::from_secs(4));
    mesh.routes_match_oracle().expect("converged on ticks");
    mesh.cut(&id(0), &id(1));
    mesh.run_for(Duration::from_millis(500));
    assert!(mesh.routes_match_oracle().is_err(), "waits for the tick");
    mesh.run_for(Duration::from_secs(3));
    mesh.routes_match_oracle().expect("rerouted on ticks");
}

#[test]
fn a_quiet_converged_mesh_sends_only_hellos_and_summary_digests() {
    let mut mesh = ring(6, ProtocolConfig::default());
    mesh.with(&id(4), |n, now| n.add_local_address("q".into(), now));
    mesh.run_for(Duration::from_secs(1));
    mesh.address_tables_match().expect("converged");
    let before = mesh.sent;
    mesh.drop_rule = Some(Box::new(move |_, _, _, m| {
        if let ControlMessage::Digest(d) = m {
            assert!(d.entries.is_none(), "no full digest once converged");
        }
        assert!(
            matches!(m, ControlMessage::Hello(_) | ControlMessage::Digest(_)),
            "unexpected {}",
            m.kind()
        );
        false
    }));
    mesh.run_for(Duration::from_secs(6));
    // 6 routers x 2 neighbours: one hello per second and one digest per 3 s each.
    assert_eq!(mesh.sent - before, 12 * 6 + 12 * 2);
}

#[test]
fn message_sizes_grow_with_their_contents() {
    let mut mesh = ring(3, ProtocolConfig::default());
    mesh.run_for(Duration::from_millis(50));
    let db = mesh.nodes[&id(0)].lsdb();
    let one = ControlMessage::LinkStateUpdate(bote_topology::LinkStateUpdate {
        records: db.iter().take(1).cloned().collect(),
    });
    let all = ControlMessage::LinkStateUpdate(bote_topology::LinkStateUpdate {
        records: db.iter().cloned().collect(),
    });
    assert!(one.wire_size() > 10);
    assert!(all.wire_size() > 2 * one.wire_size());
}

#[test]
fn neighbours_become_two_way_after_one_hello_exchange_and_report_address_changes() {
    let mut mesh = Mesh::new(ProtocolConfig::default());
    let (a, b) = (id(0), id(1));
    mesh.add_router(a.clone(), 1);
    mesh.add_router(b.clone(), 1);
    mesh.connect(&a, &b, 1);
    assert!(!mesh.nodes[&a].neighbour(&b).expect("connected").two_way);
    mesh.run_for(Duration::from_millis(3));
    assert!(mesh.nodes[&a].neighbour(&b).expect("connected").two_way);
    assert!(mesh.nodes[&b].neighbour(&a).expect("connected").two_way);
    mesh.run_for(Duration::from_millis(10));
    assert_eq!(mesh.nodes[&a].routes().next_hop(&b), Some(&b));

    mesh.with(&a, |n, now| n.add_local_address("orders".into(), now));
    assert_eq!(mesh.address_events[&a], vec![vec![Address::from("orders")]]);
    mesh.run_for(Duration::from_millis(5));
    assert_eq!(mesh.address_events[&b], vec![vec![Address::from("orders")]]);
    let entry = mesh.nodes[&b]
        .address_table()
        .get(&"orders".into())
        .cloned()
        .expect("known");
    assert!(!entry.local);
    assert_eq!(entry.routers, BTreeSet::from([a.clone()]));

    mesh.with(&a, |n, now| n.remove_local_address(&"orders".into(), now));
    mesh.run_for(Duration::from_millis(5));
    assert_eq!(mesh.address_events[&b].len(), 2);
    assert!(mesh.nodes[&b].address_table().is_empty());
}

#[test]
fn messages_from_routers_that_are_not_neighbours_are_ignored() {
    let mut mesh = Mesh::new(ProtocolConfig::default());
    mesh.add_router(id(0), 1);
    let stranger = id(9);
    let lsdb_before = mesh.nodes[&id(0)].lsdb().digest_hash();
    mesh.with(&id(0), |n, now| {
        n.handle_message(
            &stranger,
            ControlMessage::Hello(bote_topology::Hello {
                router: id(9),
                instance: 1,
                seen: vec![id(0)],
                cost: Some(3),
            }),
            now,
        )
    });
    assert!(mesh.nodes[&id(0)].neighbour(&stranger).is_none());
    assert_eq!(mesh.nodes[&id(0)].lsdb().digest_hash(), lsdb_before);
}
