//! Router-assigned identities and the cheap maps keyed by them: a
//! connection's [`ConnId`], and [`FastMap`]/[`SeqMap`]/[`FastSet`] for keys
//! that are small unique integers already.

/// A hasher for maps keyed by the router's own sequential ids (delivery keys,
/// contexts): they are unique integers already, SipHash would only cost.
#[derive(Default, Clone, Copy)]
pub struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        // Spread sequential ids over the table's buckets.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by sequential ids.
pub type SeqMap<V> = FastMap<u64, V>;

/// A set of small router-assigned ids.
pub type FastSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<SeqHasher>>;

/// A map keyed by small router-assigned ids (link ids, sequential keys).
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<SeqHasher>>;

/// A connection's router-wide identity (connection actors are keyed by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}
