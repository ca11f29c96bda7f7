//! The link-state database: one record per origin router saying which
//! neighbours it has and at what cost, with the accept/ignore rules that make
//! flooding converge.
//!
//! Rules (see [`LinkStateDb::offer`]):
//! - a record with a newer [`Version`] (greater instance id, or same instance
//!   and greater sequence) replaces the stored one; a restarted router (new
//!   instance) supersedes all records of its previous life;
//! - an equal version is a duplicate, an older one is stale; both are ignored.
//!
//! Records are immutable and shared as `Arc<LinkStateRecord>`: flooding one
//! update to 10,000 routers stores 10,000 pointers to one allocation.
//!
//! Edges: only *bidirectional* adjacencies count (A lists B and B lists A).
//! Costs may be asymmetric while a change floods; the edge cost is the
//! **maximum** of the two advertised costs, so both ends compute the same
//! symmetric graph and the same trees.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ids::{
    Cost, InstanceId, RouterId, Sequence, Version, entry_hash, string_field_len, varint_field_len,
};

/// One origin's advertised adjacencies (qdrouterd's LSU link state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStateRecord {
    /// The router that originated this record.
    pub origin: RouterId,
    /// The origin's instance (boot) id.
    pub instance: InstanceId,
    /// The origin's sequence number within its instance.
    pub sequence: Sequence,
    /// Neighbours with the origin's cost to them; sorted by router id, unique,
    /// costs at least 1.
    pub neighbours: Vec<(RouterId, Cost)>,
}

impl LinkStateRecord {
    /// A record; neighbours are sorted, de-duplicated (last cost wins) and
    /// zero costs raised to 1. The origin itself is dropped from its list.
    pub fn new(
        origin: RouterId,
        instance: InstanceId,
        sequence: Sequence,
        neighbours: impl IntoIterator<Item = (RouterId, Cost)>,
    ) -> Self {
        let map: BTreeMap<RouterId, Cost> = neighbours
            .into_iter()
            .filter(|(n, _)| *n != origin)
            .map(|(n, c)| (n, c.max(1)))
            .collect();
        LinkStateRecord {
            origin,
            instance,
            sequence,
            neighbours: map.into_iter().collect(),
        }
    }

    /// `(instance, sequence)`.
    pub fn version(&self) -> Version {
        (self.instance, self.sequence)
    }

    /// True if this record supersedes `other` (same origin assumed).
    pub fn is_newer_than(&self, other: &LinkStateRecord) -> bool {
        self.version() > other.version()
    }

    /// The origin's advertised cost to `neighbour`, if listed.
    pub fn cost_to(&self, neighbour: &RouterId) -> Option<Cost> {
        self.neighbours
            .binary_search_by(|(n, _)| n.cmp(neighbour))
            .ok()
            .map(|i| self.neighbours[i].1)
    }

    /// Estimated protobuf size: origin string, instance and sequence varints,
    /// and per neighbour a sub-message of id string plus cost varint.
    pub fn wire_size(&self) -> usize {
        string_field_len(self.origin.as_str())
            + varint_field_len(self.instance)
            + varint_field_len(self.sequence)
            + self
                .neighbours
                .iter()
                .map(|(n, c)| {
                    let inner = string_field_len(n.as_str()) + varint_field_len(u64::from(*c));
                    2 + inner
                })
                .sum::<usize>()
    }
}

/// What [`LinkStateDb::offer`] did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// First record from this origin; stored.
    Inserted,
    /// Newer than the stored record, which it replaced.
    Replaced {
        /// The superseded record.
        previous: Arc<LinkStateRecord>,
    },
    /// Same version as stored: ignored (flood duplicate).
    Duplicate,
    /// Older than stored: ignored.
    Stale,
}

impl Offer {
    /// True if the database changed (the record must be flooded on).
    pub fn is_accepted(&self) -> bool {
        matches!(self, Offer::Inserted | Offer::Replaced { .. })
    }
}

/// The link-state database: origin -> newest record, with an incrementally
/// maintained digest hash.
#[derive(Debug, Clone, Default)]
pub struct LinkStateDb {
    records: BTreeMap<RouterId, Arc<LinkStateRecord>>,
    hash: u64,
    changes: u64,
}

impl LinkStateDb {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a record; stores it if it is newer than what is held.
    pub fn offer(&mut self, record: Arc<LinkStateRecord>) -> Offer {
        match self.records.get(&record.origin) {
            Some(held) if held.version() == record.version() => Offer::Duplicate,
            Some(held) if held.version() > record.version() => Offer::Stale,
            _ => {
                let origin = record.origin.clone();
                self.hash ^= entry_hash(&origin, record.version());
                let previous = self.records.insert(origin, record);
                self.changes += 1;
                match previous {
                    Some(previous) => {
                        self.hash ^= entry_hash(&previous.origin, previous.version());
                        Offer::Replaced { previous }
                    }
                    None => Offer::Inserted,
                }
            }
        }
    }

    /// Removes an origin's record (used to age out unreachable routers).
    pub fn remove(&mut self, origin: &RouterId) -> Option<Arc<LinkStateRecord>> {
        let removed = self.records.remove(origin)?;
        self.hash ^= entry_hash(origin, removed.version());
        self.changes += 1;
        Some(removed)
    }

    /// The record of `origin`.
    pub fn get(&self, origin: &RouterId) -> Option<&Arc<LinkStateRecord>> {
        self.records.get(origin)
    }

    /// The version held for `origin`.
    pub fn version_of(&self, origin: &RouterId) -> Option<Version> {
        self.records.get(origin).map(|r| r.version())
    }

    /// All records, ordered by origin.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LinkStateRecord>> {
        self.records.values()
    }

    /// All origins, ordered.
    pub fn origins(&self) -> impl Iterator<Item = &RouterId> {
        self.records.keys()
    }

    /// Number of origins held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// XOR of [`entry_hash`] over every held (origin, version): equal
    /// databases have equal hashes.
    pub fn digest_hash(&self) -> u64 {
        self.hash
    }

    /// Count of changes applied since creation (a cheap "did it change" stamp).
    pub fn change_count(&self) -> u64 {
        self.changes
    }

    /// The cost of the bidirectional edge `a`–`b`: `None` unless both records
    /// list each other; otherwise the maximum of the two advertised costs.
    pub fn edge_cost(&self, a: &RouterId, b: &RouterId) -> Option<Cost> {
        let ab = self.records.get(a)?.cost_to(b)?;
        let ba = self.records.get(b)?.cost_to(a)?;
        Some(ab.max(ba))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(origin: &str, instance: u64, seq: u64, n: &[(&str, Cost)]) -> Arc<LinkStateRecord> {
        Arc::new(LinkStateRecord::new(
            origin.into(),
            instance,
            seq,
            n.iter().map(|(id, c)| (RouterId::from(*id), *c)),
        ))
    }

    #[test]
    fn higher_sequence_replaces_and_lower_or_equal_is_ignored() {
        let mut db = LinkStateDb::new();
        assert_eq!(db.offer(rec("A", 1, 2, &[])), Offer::Inserted);
        assert_eq!(db.offer(rec("A", 1, 2, &[])), Offer::Duplicate);
        assert_eq!(db.offer(rec("A", 1, 1, &[])), Offer::Stale);
        assert!(db.offer(rec("A", 1, 3, &[("B", 1)])).is_accepted());
        assert_eq!(db.version_of(&"A".into()), Some((1, 3)));
    }

    #[test]
    fn new_instance_supersedes_any_sequence_of_the_old_one() {
        let mut db = LinkStateDb::new();
        db.offer(rec("A", 1, 900, &[]));
        assert!(db.offer(rec("A", 2, 1, &[])).is_accepted());
        assert_eq!(db.offer(rec("A", 1, 901, &[])), Offer::Stale);
    }

    #[test]
    fn only_bidirectional_adjacencies_are_edges_with_the_max_cost() {
        let mut db = LinkStateDb::new();
        db.offer(rec("A", 1, 1, &[("B", 2), ("C", 1)]));
        db.offer(rec("B", 1, 1, &[("A", 5)]));
        db.offer(rec("C", 1, 1, &[]));
        assert_eq!(db.edge_cost(&"A".into(), &"B".into()), Some(5));
        assert_eq!(db.edge_cost(&"B".into(), &"A".into()), Some(5));
        assert_eq!(db.edge_cost(&"A".into(), &"C".into()), None);
    }

    #[test]
    fn digest_hash_is_order_independent_and_tracks_removal() {
        let mut x = LinkStateDb::new();
        let mut y = LinkStateDb::new();
        x.offer(rec("A", 1, 1, &[]));
        x.offer(rec("B", 1, 4, &[]));
        y.offer(rec("B", 1, 3, &[]));
        y.offer(rec("A", 1, 1, &[]));
        assert_ne!(x.digest_hash(), y.digest_hash());
        y.offer(rec("B", 1, 4, &[]));
        assert_eq!(x.digest_hash(), y.digest_hash());
        x.remove(&"B".into());
        y.remove(&"B".into());
        assert_eq!(x.digest_hash(), y.digest_hash());
        x.remove(&"A".into());
        assert_eq!(x.digest_hash(), 0);
    }

    #[test]
    fn record_neighbours_are_sorted_unique_and_costs_at_least_one() {
        let r = rec("A", 1, 1, &[("C", 0), ("B", 3), ("A", 1), ("B", 4)]);
        assert_eq!(r.neighbours, vec![("B".into(), 4), ("C".into(), 1)]);
    }
}
