//! Identities and scalar types shared by the whole control plane: router ids,
//! instance (boot) ids, link costs, sequence numbers, addresses, and the
//! deterministic hash used by anti-entropy digests.
//!
//! Time is a [`std::time::Duration`] since an arbitrary monotonic epoch chosen
//! by the driver (`boted` passes `Instant::now() - start`, the simulator passes
//! simulated time); nothing in this crate reads a clock.

use std::fmt;
use std::sync::Arc;

/// A router's identity in the mesh (qdrouterd's router `id`).
///
/// A newtype over `Arc<str>`: cloning is one reference-count increment, so a
/// 10,000-entry database or route table holds pointers to shared names, not
/// copies. Ordering is the byte order of the name, identical in every process:
/// every tie between equal-cost paths is broken by this order, so two routers
/// with the same database compute the same trees.
#[derive(Clone)]
pub struct RouterId(Arc<str>);

impl std::hash::Hash for RouterId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for RouterId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for RouterId {}

impl PartialOrd for RouterId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RouterId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl RouterId {
    /// The id's shared string (cloning it shares, not copies).
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }

    /// A router id from its name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        RouterId(name.into())
    }

    /// The router's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RouterId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RouterId {
    fn from(name: &str) -> Self {
        RouterId(Arc::from(name))
    }
}

impl From<String> for RouterId {
    fn from(name: String) -> Self {
        RouterId(Arc::from(name))
    }
}

impl fmt::Display for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouterId({})", &self.0)
    }
}

/// A mobile address (a routable address with consumers somewhere in the mesh),
/// shared cheaply like [`RouterId`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(Arc<str>);

impl Address {
    /// An address from its text.
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        Address(text.into())
    }

    /// The address text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Address {
    fn from(text: &str) -> Self {
        Address(Arc::from(text))
    }
}

impl From<String> for Address {
    fn from(text: String) -> Self {
        Address(Arc::from(text))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", &self.0)
    }
}

/// A router's instance (boot) id. A restarted router must come back with a
/// *greater* instance id than any it used before (the router uses its boot
/// time in milliseconds since the Unix epoch; the simulator a counter): the
/// newest instance supersedes every record of older ones.
pub type InstanceId = u64;

/// The cost of one inter-router link (qdrouterd's `cost`, default 1). Zero is
/// treated as 1. Path costs are sums of link costs, saturating at `u32::MAX`.
pub type Cost = u32;

/// A per-origin sequence number, restarting at 1 with each new instance.
pub type Sequence = u64;

/// Version of one origin's record: newer instance wins; within one instance,
/// higher sequence wins (lexicographic order of the pair).
pub type Version = (InstanceId, Sequence);

/// Deterministic, process-independent 64-bit hash of one digest entry
/// (`origin`, `version`): FNV-1a over the bytes, then a splitmix64 finaliser.
/// Digests combine entries with XOR so they can be updated in O(1).
pub fn entry_hash(origin: &RouterId, version: Version) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for b in origin.as_str().bytes() {
        eat(b);
    }
    eat(0xff);
    for b in version.0.to_le_bytes() {
        eat(b);
    }
    for b in version.1.to_le_bytes() {
        eat(b);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Length in bytes of `v` as a protobuf varint (used by `wire_size()` estimates).
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Estimated encoded size of a length-delimited protobuf string field.
pub(crate) fn string_field_len(s: &str) -> usize {
    1 + varint_len(s.len() as u64) + s.len()
}

/// Estimated encoded size of a varint protobuf field.
pub(crate) fn varint_field_len(v: u64) -> usize {
    1 + varint_len(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_ids_order_by_name_and_clone_shares_the_name() {
        let a = RouterId::from("A");
        let b = RouterId::from("B");
        assert!(a < b);
        let a2 = a.clone();
        assert!(std::ptr::eq(a.as_str(), a2.as_str()));
    }

    #[test]
    fn entry_hash_depends_on_origin_and_version() {
        let a = RouterId::from("A");
        assert_eq!(
            entry_hash(&a, (1, 2)),
            entry_hash(&RouterId::from("A"), (1, 2))
        );
        assert_ne!(entry_hash(&a, (1, 2)), entry_hash(&a, (1, 3)));
        assert_ne!(
            entry_hash(&a, (1, 2)),
            entry_hash(&RouterId::from("B"), (1, 2))
        );
    }

    #[test]
    fn varint_lengths_match_protobuf() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::MAX), 10);
    }
}
