//! Shortest paths over the link-state database: next hop and cost to every
//! reachable router, and the multicast valid-origin trees.
//!
//! The graph ([`Topology`]) is a petgraph `UnGraph` built from the database's
//! bidirectional adjacencies (edge cost = max of the two advertised costs, see
//! [`crate::lsdb`]). Node indices are assigned in router-id order, so an index
//! comparison is a router-id comparison.
//!
//! **Tie-break** (same as qdrouterd's `NodeSet`): Dijkstra settles nodes in
//! `(cost, router id)` order and a node's parent changes only on a strictly
//! better cost. The parent of `v` is therefore the predecessor `u` on a
//! shortest path with the smallest `(cost(u), id(u))`; the next hop of `v` is
//! the first hop of the tree path. Every router holding the same database
//! builds the same tree from a given root.
//!
//! **Cost**: building the graph is O(E log N) (binary searches on sorted
//! ids), one SPF is O(E log N); next hops and costs come from one SPF rooted
//! at the local router. Valid origins need the tree rooted at *each* origin
//! (an all-pairs problem, O(N · E log N)); [`Routes::multicast_tree`] computes
//! one origin's tree lazily (on the first multicast message from that origin)
//! and caches it until the next recompute; [`Routes::valid_origins`] is the
//! eager qdrouterd form for small meshes and tests.
//!
//! **Valid origins** (qdrouterd `path.py`): for a destination router `D`, the
//! valid origins are the origins `O` whose shortest-path tree (rooted at `O`)
//! reaches `D` *through the local router*. A multicast message from `O` is sent
//! toward `D` only by routers on `O`'s tree path to `D`, so `D` receives one
//! copy. Bote forwards along `O`'s tree ([`MulticastTree::next_hop_toward`])
//! rather than the local tree; the two agree except under equal-cost ties,
//! where following the origin's tree avoids a copy being dropped downstream.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;

use crate::ids::{Cost, RouterId};
use crate::lsdb::LinkStateDb;

const NONE: u32 = u32::MAX;

/// A small, fast, deterministic string hasher for the per-recompute index
/// (FxHash's multiply-rotate; keys are router ids, not attacker-chosen in a
/// way that matters for a map rebuilt and dropped within one recompute).
#[derive(Default, Clone, Copy)]
struct BuildFx;

struct Fx(u64);

impl std::hash::BuildHasher for BuildFx {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

/// The inter-router graph built from a [`LinkStateDb`].
#[derive(Debug, Clone, Default)]
pub struct Topology {
    nodes: Vec<RouterId>,
    graph: UnGraph<(), Cost, u32>,
}

impl Topology {
    /// Builds the graph: one node per origin in the database (ordered by id),
    /// one edge per bidirectional adjacency with the max of both costs.
    pub fn from_lsdb(lsdb: &LinkStateDb) -> Self {
        let records: Vec<&Arc<crate::lsdb::LinkStateRecord>> = lsdb.iter().collect();
        let nodes: Vec<RouterId> = records.iter().map(|r| r.origin.clone()).collect();
        let n = nodes.len();
        // Pass 1: resolve every advertised neighbour to a node index (CSR)
        // through a hash map (one hash per entry instead of a log-n chain of
        // string comparisons). Neighbour lists are sorted by id, so each
        // record's index list comes out sorted too.
        let index: HashMap<&str, u32, BuildFx> = nodes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i as u32))
            .collect();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut adjacency: Vec<(u32, Cost)> = Vec::with_capacity(n * 4);
        for record in &records {
            offsets.push(adjacency.len());
            for (peer, cost) in &record.neighbours {
                if let Some(&j) = index.get(peer.as_str()) {
                    adjacency.push((j, *cost));
                }
            }
        }
        offsets.push(adjacency.len());
        // Pass 2: keep adjacencies listed by both ends, once, at the max cost.
        let mut graph = UnGraph::with_capacity(n, adjacency.len() / 2);
        for _ in 0..n {
            graph.add_node(());
        }
        for i in 0..n {
            for &(j, cost) in &adjacency[offsets[i]..offsets[i + 1]] {
                let j = j as usize;
                if j <= i {
                    continue;
                }
                let back = &adjacency[offsets[j]..offsets[j + 1]];
                if let Ok(k) = back.binary_search_by_key(&(i as u32), |e| e.0) {
                    graph.add_edge(NodeIndex::new(i), NodeIndex::new(j), cost.max(back[k].1));
                }
            }
        }
        Topology { nodes, graph }
    }

    /// The node index of a router.
    pub fn index_of(&self, router: &RouterId) -> Option<u32> {
        self.nodes.binary_search(router).ok().map(|i| i as u32)
    }

    /// The router at a node index.
    pub fn router(&self, index: u32) -> &RouterId {
        &self.nodes[index as usize]
    }

    /// All routers, in id order (= index order).
    pub fn routers(&self) -> &[RouterId] {
        &self.nodes
    }

    /// Number of routers.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of bidirectional edges.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// The neighbours of `router` (both ends list the link), with the
    /// link's cost, in id order: its link state as management shows it.
    pub fn neighbours(&self, router: &RouterId) -> Vec<(RouterId, Cost)> {
        let Some(i) = self.index_of(router) else {
            return Vec::new();
        };
        let mut out: Vec<(RouterId, Cost)> = self
            .graph
            .edges(NodeIndex::new(i as usize))
            .map(|e| (self.nodes[e.target().index()].clone(), *e.weight()))
            .collect();
        out.sort();
        out
    }

    /// The petgraph graph (node weights empty; index `i` is `routers()[i]`).
    pub fn graph(&self) -> &UnGraph<(), Cost, u32> {
        &self.graph
    }

    /// Dijkstra from `root` with the module's deterministic tie-break.
    fn spf(&self, root: u32) -> Spf {
        let n = self.nodes.len();
        let mut dist = vec![Cost::MAX; n];
        let mut parent = vec![NONE; n];
        let mut order = Vec::with_capacity(n);
        let mut done = vec![false; n];
        let mut heap = BinaryHeap::with_capacity(n);
        dist[root as usize] = 0;
        heap.push(Reverse((0 as Cost, root)));
        while let Some(Reverse((d, u))) = heap.pop() {
            if done[u as usize] {
                continue;
            }
            done[u as usize] = true;
            order.push(u);
            for edge in self.graph.edges(NodeIndex::new(u as usize)) {
                let v = edge.target().index();
                if done[v] {
                    continue;
                }
                let alt = d.saturating_add(*edge.weight());
                if alt < dist[v] {
                    dist[v] = alt;
                    parent[v] = u;
                    heap.push(Reverse((alt, v as u32)));
                }
            }
        }
        Spf {
            dist,
            parent,
            order,
        }
    }
}

struct Spf {
    dist: Vec<Cost>,
    parent: Vec<u32>,
    /// Reachable nodes in settle order (root first).
    order: Vec<u32>,
}

/// The route to one destination router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The neighbour to send through.
    pub next_hop: RouterId,
    /// Total path cost.
    pub cost: Cost,
}

/// A link-state database's identity for [`TopologyCache`]: digest and size.
type DatabaseKey = (u64, usize);

/// Built graphs shared by control planes that hold identical link-state
/// databases, so a driver running many routers in one process (the
/// simulator) builds each distinct graph once. A database is keyed by its
/// digest (a hash over every record's origin and version) and its size: the
/// protocol never gives two different records the same origin and version,
/// so equal keys mean equal databases up to a 64-bit hash collision. `boted`
/// runs one router per process and does not use it.
#[derive(Debug)]
pub struct TopologyCache {
    capacity: usize,
    entries: Mutex<std::collections::VecDeque<(DatabaseKey, Arc<Topology>)>>,
    hits: std::sync::atomic::AtomicU64,
    builds: std::sync::atomic::AtomicU64,
}

impl TopologyCache {
    /// A cache holding the `capacity` most recently built graphs.
    pub fn new(capacity: usize) -> Self {
        TopologyCache {
            capacity: capacity.max(1),
            entries: Mutex::new(std::collections::VecDeque::new()),
            hits: Default::default(),
            builds: Default::default(),
        }
    }

    /// The graph of `lsdb`, built only if no identical database was seen.
    pub fn get_or_build(&self, lsdb: &LinkStateDb) -> Arc<Topology> {
        use std::sync::atomic::Ordering::Relaxed;
        let key = (lsdb.digest_hash(), lsdb.len());
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, t)) = entries.iter().find(|(k, _)| *k == key) {
                self.hits.fetch_add(1, Relaxed);
                return t.clone();
            }
        }
        let built = Arc::new(Topology::from_lsdb(lsdb));
        self.builds.fetch_add(1, Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back((key, built.clone()));
        built
    }

    /// (graphs reused, graphs built) so far.
    pub fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.builds.load(Relaxed))
    }
}

/// The local router's routing table (a snapshot; recomputed whole when the
/// database changes).
pub struct Routes {
    local: RouterId,
    topology: Arc<Topology>,
    local_index: Option<u32>,
    next_hop: Vec<u32>,
    cost: Vec<Cost>,
    reachable: usize,
    trees: Mutex<HashMap<u32, Arc<MulticastTree>>>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Routes {
    /// A table with no routes (the local router knows no one yet).
    pub fn empty(local: RouterId) -> Self {
        Routes::from_topology(local, Arc::new(Topology::default()))
    }

    /// Builds the graph from `lsdb` (or takes it from `cache`) and runs SPF
    /// from `local`.
    pub fn compute_shared(local: &RouterId, lsdb: &LinkStateDb, cache: &TopologyCache) -> Self {
        Routes::from_topology(local.clone(), cache.get_or_build(lsdb))
    }

    /// Builds the graph from `lsdb` and runs SPF from `local`.
    pub fn compute(local: &RouterId, lsdb: &LinkStateDb) -> Self {
        Routes::from_topology(local.clone(), Arc::new(Topology::from_lsdb(lsdb)))
    }

    /// Runs SPF from `local` over an already built graph.
    pub fn from_topology(local: RouterId, topology: Arc<Topology>) -> Self {
        let n = topology.node_count();
        let mut next_hop = vec![NONE; n];
        let mut cost = vec![Cost::MAX; n];
        let mut reachable = 0;
        let local_index = topology.index_of(&local);
        if let Some(root) = local_index {
            let spf = topology.spf(root);
            for &v in &spf.order[1..] {
                let p = spf.parent[v as usize];
                next_hop[v as usize] = if p == root { v } else { next_hop[p as usize] };
                cost[v as usize] = spf.dist[v as usize];
                reachable += 1;
            }
        }
        Routes {
            local,
            topology,
            local_index,
            next_hop,
            cost,
            reachable,
            trees: Mutex::new(HashMap::new()),
        }
    }

    /// The local router.
    pub fn local(&self) -> &RouterId {
        &self.local
    }

    /// The graph these routes were computed on.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The route to `dest` (None if unreachable or local).
    pub fn route(&self, dest: &RouterId) -> Option<Route> {
        let i = self.reachable_index(dest)?;
        Some(Route {
            next_hop: self.topology.router(self.next_hop[i]).clone(),
            cost: self.cost[i],
        })
    }

    /// The next hop toward `dest`.
    pub fn next_hop(&self, dest: &RouterId) -> Option<&RouterId> {
        let i = self.reachable_index(dest)?;
        Some(self.topology.router(self.next_hop[i]))
    }

    /// The path cost to `dest`.
    pub fn cost(&self, dest: &RouterId) -> Option<Cost> {
        self.reachable_index(dest).map(|i| self.cost[i])
    }

    /// True if `dest` is a reachable remote router.
    pub fn is_reachable(&self, dest: &RouterId) -> bool {
        self.reachable_index(dest).is_some()
    }

    /// Number of reachable remote routers.
    pub fn reachable_count(&self) -> usize {
        self.reachable
    }

    /// Every reachable remote router with its route, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&RouterId, Route)> + '_ {
        (0..self.next_hop.len())
            .filter(|&i| self.next_hop[i] != NONE)
            .map(|i| {
                (
                    self.topology.router(i as u32),
                    Route {
                        next_hop: self.topology.router(self.next_hop[i]).clone(),
                        cost: self.cost[i],
                    },
                )
            })
    }

    /// True if both tables give the same next hop and cost to the same set of
    /// destinations.
    pub fn same_routes(&self, other: &Routes) -> bool {
        if self.reachable != other.reachable {
            return false;
        }
        if self.topology.nodes == other.topology.nodes {
            return self.cost == other.cost
                && self
                    .next_hop
                    .iter()
                    .zip(&other.next_hop)
                    .all(|(a, b)| a == b);
        }
        self.iter().eq(other.iter())
    }

    fn reachable_index(&self, dest: &RouterId) -> Option<usize> {
        let i = self.topology.index_of(dest)? as usize;
        (self.next_hop[i] != NONE).then_some(i)
    }

    /// The multicast tree of `origin` as seen from the local router: computed
    /// lazily with one SPF rooted at `origin` (O(E log N)) and cached in this
    /// snapshot. None if `origin` is unknown or the local router is not in the
    /// graph.
    pub fn multicast_tree(&self, origin: &RouterId) -> Option<Arc<MulticastTree>> {
        let o = self.topology.index_of(origin)?;
        let s = self.local_index?;
        if let Ok(cache) = self.trees.lock()
            && let Some(tree) = cache.get(&o)
        {
            return Some(tree.clone());
        }
        let tree = Arc::new(self.build_tree(o, s));
        if let Ok(mut cache) = self.trees.lock() {
            cache.insert(o, tree.clone());
        }
        Some(tree)
    }

    fn build_tree(&self, o: u32, s: u32) -> MulticastTree {
        let spf = self.topology.spf(o);
        let mut via = vec![NONE; self.topology.node_count()];
        let mut downstream = Vec::new();
        for &v in &spf.order[1..] {
            let p = spf.parent[v as usize];
            let child = if p == s { v } else { via[p as usize] };
            via[v as usize] = child;
            if child != NONE {
                downstream.push((v, child));
            }
        }
        downstream.sort_unstable();
        let reached = spf.dist[s as usize] != Cost::MAX;
        MulticastTree {
            origin: self.topology.router(o).clone(),
            upstream: (o != s && reached)
                .then(|| self.topology.router(spf.parent[s as usize]).clone()),
            downstream: downstream
                .into_iter()
                .map(|(d, c)| {
                    (
                        self.topology.router(d).clone(),
                        self.topology.router(c).clone(),
                    )
                })
                .collect(),
        }
    }

    /// qdrouterd's eager valid-origin map: destination -> origins whose tree
    /// reaches that destination through the local router. Costs one SPF per
    /// origin (O(N · E log N)); meant for small meshes, management and tests.
    pub fn valid_origins(&self) -> BTreeMap<RouterId, Vec<RouterId>> {
        let mut map: BTreeMap<RouterId, Vec<RouterId>> =
            self.iter().map(|(d, _)| (d.clone(), Vec::new())).collect();
        let Some(s) = self.local_index else {
            return map;
        };
        for o in 0..self.topology.node_count() as u32 {
            if o == s || self.next_hop[o as usize] == NONE {
                continue;
            }
            let tree = self.build_tree(o, s);
            for (dest, _) in &tree.downstream {
                if let Some(list) = map.get_mut(dest) {
                    list.push(tree.origin.clone());
                }
            }
        }
        map
    }
}

/// One origin's shortest-path tree, seen from the local router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastTree {
    origin: RouterId,
    upstream: Option<RouterId>,
    /// (destination, child neighbour of the local router toward it), sorted.
    downstream: Vec<(RouterId, RouterId)>,
}

impl MulticastTree {
    /// The tree's root.
    pub fn origin(&self) -> &RouterId {
        &self.origin
    }

    /// The neighbour from which the origin's messages arrive on its tree
    /// (None if the local router is the origin or is not reached).
    pub fn upstream(&self) -> Option<&RouterId> {
        self.upstream.as_ref()
    }

    /// True if the local router is on the origin's tree path to `dest`, i.e.
    /// the origin is a valid origin for `dest` here (qdrouterd's
    /// `valid_origins[dest]` contains origin).
    pub fn is_valid_origin_for(&self, dest: &RouterId) -> bool {
        self.next_hop_toward(dest).is_some()
    }

    /// The local router's child on the origin's tree toward `dest`, if the
    /// path from the origin to `dest` passes through the local router.
    pub fn next_hop_toward(&self, dest: &RouterId) -> Option<&RouterId> {
        self.downstream
            .binary_search_by(|(d, _)| d.cmp(dest))
            .ok()
            .map(|i| &self.downstream[i].1)
    }

    /// Destinations below the local router on this tree, with the child to
    /// send through.
    pub fn downstream(&self) -> impl Iterator<Item = (&RouterId, &RouterId)> {
        self.downstream.iter().map(|(d, c)| (d, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsdb::LinkStateRecord;

    /// Builds a database from undirected edges.
    fn db(edges: &[(&str, &str, Cost)]) -> LinkStateDb {
        let mut adj: BTreeMap<RouterId, Vec<(RouterId, Cost)>> = BTreeMap::new();
        for (a, b, c) in edges {
            adj.entry((*a).into()).or_default().push(((*b).into(), *c));
            adj.entry((*b).into()).or_default().push(((*a).into(), *c));
        }
        let mut db = LinkStateDb::new();
        for (o, n) in adj {
            db.offer(Arc::new(LinkStateRecord::new(o, 1, 1, n)));
        }
        db
    }

    #[test]
    fn next_hop_follows_cheapest_path_not_fewest_hops() {
        let db = db(&[("A", "B", 10), ("A", "C", 1), ("C", "D", 1), ("D", "B", 1)]);
        let r = Routes::compute(&"A".into(), &db);
        assert_eq!(
            r.route(&"B".into()),
            Some(Route {
                next_hop: "C".into(),
                cost: 3
            })
        );
        assert_eq!(r.reachable_count(), 3);
        assert!(r.route(&"A".into()).is_none());
    }

    #[test]
    fn a_shared_topology_cache_builds_each_distinct_database_once_and_routes_do_not_change() {
        let cache = TopologyCache::new(4);
        let d1 = db(&[("A", "B", 1), ("B", "C", 1), ("C", "D", 1)]);
        let d2 = db(&[("A", "B", 1), ("B", "C", 1), ("C", "D", 1)]);
        for local in ["A", "B", "C", "D"] {
            let shared = Routes::compute_shared(&local.into(), &d1, &cache);
            let own = Routes::compute(&local.into(), &d1);
            assert!(shared.same_routes(&own), "routes of {local} differ");
            assert!(Routes::compute_shared(&local.into(), &d2, &cache).same_routes(&own));
        }
        assert_eq!(cache.stats(), (7, 1), "identical databases share one graph");
        // A newer version of one record is a different database: rebuilt.
        let mut d3 = db(&[("A", "B", 1), ("B", "C", 1), ("C", "D", 1)]);
        d3.offer(Arc::new(LinkStateRecord::new("D".into(), 1, 2, [])));
        let r = Routes::compute_shared(&"A".into(), &d3, &cache);
        assert!(!r.is_reachable(&"D".into()));
        assert_eq!(cache.stats(), (7, 2));
    }

    #[test]
    fn equal_cost_tie_goes_to_the_smaller_router_id() {
        let db = db(&[("S", "M", 1), ("S", "K", 1), ("M", "T", 1), ("K", "T", 1)]);
        let r = Routes::compute(&"S".into(), &db);
        assert_eq!(r.next_hop(&"T".into()), Some(&"K".into()));
    }

    #[test]
    fn one_way_adjacency_is_not_a_path() {
        let mut d = db(&[("A", "B", 1)]);
        d.offer(Arc::new(LinkStateRecord::new(
            "C".into(),
            1,
            1,
            [("A".into(), 1)],
        )));
        let r = Routes::compute(&"A".into(), &d);
        assert!(!r.is_reachable(&"C".into()));
        assert!(r.is_reachable(&"B".into()));
    }

    #[test]
    fn valid_origins_on_a_line_are_the_routers_behind_us() {
        // A - B - C - D, local = B
        let d = db(&[("A", "B", 1), ("B", "C", 1), ("C", "D", 1)]);
        let r = Routes::compute(&"B".into(), &d);
        let vo = r.valid_origins();
        assert_eq!(vo[&RouterId::from("C")], vec![RouterId::from("A")]);
        assert_eq!(vo[&RouterId::from("D")], vec![RouterId::from("A")]);
        assert_eq!(
            vo[&RouterId::from("A")],
            vec![RouterId::from("C"), RouterId::from("D")]
        );
        let tree = r.multicast_tree(&"A".into()).expect("A is known");
        assert_eq!(tree.upstream(), Some(&"A".into()));
        assert_eq!(tree.next_hop_toward(&"D".into()), Some(&"C".into()));
        assert!(!tree.is_valid_origin_for(&"A".into()));
    }

    #[test]
    fn in_a_triangle_no_router_relays_for_its_neighbours() {
        let d = db(&[("A", "B", 1), ("B", "C", 1), ("A", "C", 1)]);
        let r = Routes::compute(&"B".into(), &d);
        assert!(r.valid_origins().values().all(|v| v.is_empty()));
        let tree = r.multicast_tree(&"A".into()).expect("A is known");
        assert_eq!(tree.downstream().count(), 0);
    }
}
