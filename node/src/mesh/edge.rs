//! Edge routers (qdrouterd's `mode: edge`): what the two ends of an edge
//! uplink keep besides the peer actor and data plane they share with
//! inter-router streams.
//!
//! - An **edge router** dials its interior through its `role = "edge"`
//!   connectors (alternates: one uplink at a time, the next tried when it
//!   drops, [`super::connector::start_uplink`]). It has no neighbours in
//!   its control plane: link state never hears of it. While the uplink is
//!   up every address without a local consumer goes up it
//!   ([`super::RemoteAddresses::default_router`]), and the edge reports its
//!   local addresses ([`proxied`] ones) to the interior as
//!   `AddressUpdate`s on the stream (the whole set first, then changes).
//! - An **interior router** takes edges on its `role = "edge"` listeners.
//!   It keeps each edge's addresses ([`EdgeProxy`]), lists the edge as a
//!   remote router with consumers for them (reached directly,
//!   [`super::MeshView::attached`]) and advertises them into the mesh as
//!   its own mobile addresses, so other routers route to the interior and
//!   the interior routes down the uplink. Hellos and link-state messages
//!   on an edge stream are never given to the control plane.
//!
//! Deliveries, outcomes, credit windows and failover on an edge stream are
//! those of any inter-router stream ([`super::data`]): credit hop by hop,
//! settlement end to end, and what was in flight when the stream dropped
//! comes back re-forwarded, released or modified.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bote_topology::{Address, RouterId};

/// One edge stream that is up, as management shows it.
#[derive(Debug, Clone)]
pub struct EdgeLink {
    /// The router at the other end (an edge, or an edge's interior).
    pub router: RouterId,
    /// The other end's `host:port`.
    pub host: String,
    /// `in`: the edge dialled us (interior); `out`: we dialled (edge).
    pub dir: &'static str,
    /// Which connector dialled it (edge side).
    pub connector: Option<String>,
    /// When the stream was identified.
    pub since: Instant,
    /// Addresses the edge reported (interior side).
    pub addresses: usize,
    /// The stream's number in this router (management's identity).
    pub conn: u64,
}

/// The edge streams that are up, written by the control actor, read by
/// management.
#[derive(Clone, Default)]
pub struct EdgeLinks(Arc<RwLock<BTreeMap<RouterId, EdgeLink>>>);

impl EdgeLinks {
    /// Every edge stream up, by router id.
    pub fn snapshot(&self) -> Vec<EdgeLink> {
        match self.0.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    fn with(&self, f: impl FnOnce(&mut BTreeMap<RouterId, EdgeLink>)) {
        match self.0.write() {
            Ok(mut m) => f(&mut m),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Records a stream that came up.
    pub fn insert(&self, link: EdgeLink) {
        self.with(|m| {
            m.insert(link.router.clone(), link);
        });
    }

    /// Forgets the stream to `router`.
    pub fn remove(&self, router: &RouterId) {
        self.with(|m| {
            m.remove(router);
        });
    }

    /// Notes how many addresses `router` has reported.
    pub fn set_addresses(&self, router: &RouterId, count: usize) {
        self.with(|m| {
            if let Some(l) = m.get_mut(router) {
                l.addresses = count;
            }
        });
    }
}

/// True if an edge router reports `address` to its interior: all but
/// `$management`, which every router serves itself (an edge's management
/// is reached through the mesh at `_edge/<id>/$management`).
pub fn proxied(address: &str) -> bool {
    address != "$management"
}

/// The address of an edge router's management node, as the mesh reaches
/// it (qdrouterd's `_edge/<id>/...` form).
pub fn management_address(id: &str) -> String {
    format!("_edge/{id}/$management")
}

/// What an interior router must do after its edges' addresses changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProxyChanges {
    /// Addresses whose set of edges changed (their remote routers are
    /// rewritten and their address actors told).
    pub addresses: Vec<Address>,
    /// Changes of this router's own advertised addresses for the control
    /// plane: present while the router itself or any of its edges has
    /// consumers.
    pub advertise: Vec<(Address, bool)>,
}

/// An interior router's record of its edges' addresses and of its own
/// local ones, which together decide what it advertises into the mesh.
#[derive(Debug, Default)]
pub struct EdgeProxy {
    by_edge: HashMap<RouterId, BTreeSet<Address>>,
    by_address: HashMap<Address, BTreeSet<RouterId>>,
    /// Addresses with consumers on this router itself.
    local: HashSet<Address>,
}

impl EdgeProxy {
    /// The edges with consumers for `address`.
    pub fn edges_of(&self, address: &Address) -> Option<&BTreeSet<RouterId>> {
        self.by_address.get(address)
    }

    /// How many addresses `edge` has reported.
    pub fn count(&self, edge: &RouterId) -> usize {
        self.by_edge.get(edge).map_or(0, BTreeSet::len)
    }

    /// `edge` gained and lost addresses.
    pub fn update(
        &mut self,
        edge: &RouterId,
        added: impl IntoIterator<Item = Address>,
        removed: impl IntoIterator<Item = Address>,
    ) -> ProxyChanges {
        let mut changes = ProxyChanges::default();
        for address in added {
            if !self
                .by_edge
                .entry(edge.clone())
                .or_default()
                .insert(address.clone())
            {
                continue;
            }
            let edges = self.by_address.entry(address.clone()).or_default();
            edges.insert(edge.clone());
            if edges.len() == 1 && !self.local.contains(&address) {
                changes.advertise.push((address.clone(), true));
            }
            changes.addresses.push(address);
        }
        for address in removed {
            if !self
                .by_edge
                .get_mut(edge)
                .is_some_and(|set| set.remove(&address))
            {
                continue;
            }
            self.forget(edge, address, &mut changes);
        }
        changes
    }

    /// `edge`'s stream closed: it has no addresses any more.
    pub fn remove_edge(&mut self, edge: &RouterId) -> ProxyChanges {
        let mut changes = ProxyChanges::default();
        for address in self.by_edge.remove(edge).unwrap_or_default() {
            self.forget(edge, address, &mut changes);
        }
        changes
    }

    fn forget(&mut self, edge: &RouterId, address: Address, changes: &mut ProxyChanges) {
        if let Some(edges) = self.by_address.get_mut(&address) {
            edges.remove(edge);
            if edges.is_empty() {
                self.by_address.remove(&address);
                if !self.local.contains(&address) {
                    changes.advertise.push((address.clone(), false));
                }
            }
        }
        changes.addresses.push(address);
    }

    /// This router's own consumers of `address` came (`present`) or went:
    /// the change for the control plane, if any (an address an edge still
    /// has stays advertised).
    pub fn local_change(&mut self, address: Address, present: bool) -> Option<(Address, bool)> {
        if present {
            self.local.insert(address.clone());
            Some((address, true))
        } else {
            self.local.remove(&address);
            (!self.by_address.contains_key(&address)).then_some((address, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::from(s)
    }

    #[test]
    fn an_edge_address_is_advertised_while_any_edge_or_the_router_itself_has_it() {
        let (e1, e2) = (RouterId::from("E1"), RouterId::from("E2"));
        let mut proxy = EdgeProxy::default();
        let c = proxy.update(&e1, [a("q")], []);
        assert_eq!(c.advertise, vec![(a("q"), true)]);
        assert_eq!(c.addresses, vec![a("q")]);
        // A second edge with it: the advertisement stands.
        let c = proxy.update(&e2, [a("q")], []);
        assert!(c.advertise.is_empty());
        assert_eq!(proxy.edges_of(&a("q")).map(BTreeSet::len), Some(2));
        // A local consumer comes and goes: still advertised for the edges.
        assert_eq!(proxy.local_change(a("q"), true), Some((a("q"), true)));
        assert_eq!(proxy.local_change(a("q"), false), None);
        assert!(proxy.update(&e1, [], [a("q")]).advertise.is_empty());
        // The last edge's stream closes: withdrawn.
        let c = proxy.remove_edge(&e2);
        assert_eq!(c.advertise, vec![(a("q"), false)]);
        assert!(proxy.edges_of(&a("q")).is_none());
    }

    #[test]
    fn a_local_address_stays_advertised_when_the_edges_lose_it() {
        let e1 = RouterId::from("E1");
        let mut proxy = EdgeProxy::default();
        proxy.local_change(a("q"), true);
        assert!(proxy.update(&e1, [a("q")], []).advertise.is_empty());
        let c = proxy.remove_edge(&e1);
        assert!(c.advertise.is_empty());
        assert_eq!(c.addresses, vec![a("q")]);
        // Repeated or unknown removals change nothing.
        let c = proxy.update(&e1, [], [a("q"), a("r")]);
        assert_eq!(c, ProxyChanges::default());
        assert_eq!(proxy.count(&e1), 0);
    }

    #[test]
    fn an_edge_reports_every_address_but_management() {
        assert!(!proxied("$management"));
        assert!(proxied("_edge/E1/$management"));
        assert!(proxied("_topo/0/E1/temp.1"));
        assert!(proxied("queue.a"));
        assert_eq!(management_address("E1"), "_edge/E1/$management");
    }
}
