//! Router-assigned identities and the cheap maps keyed by them: a
//! connection's [`ConnId`], [`FastMap`]/[`SeqMap`]/[`FastSet`] for keys
//! that are small unique integers already, and [`SeqRing`] for ids handed
//! out in order and mostly settled in order.

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

/// A map from ids handed out in increasing order (the deliveries sent on one
/// inter-router stream) to what is outstanding under each, for outcomes that
/// come back in about the order the deliveries left: a ring indexed by id,
/// so those lookups walk memory in order where a hash table's probes land
/// at random (a profile of the chain showed the probe's cache miss as a
/// third of a neighbour's disposition handling). Ids that fall behind (one
/// unsettled while more than [`SeqRing::RING_MAX`] after it were sent) move
/// to a spill map, so memory stays bounded by what is outstanding; an id
/// inserted out of order goes there too.
#[derive(Debug)]
pub struct SeqRing<T> {
    /// The id of `ring[0]`.
    base: u64,
    ring: std::collections::VecDeque<Option<T>>,
    /// `Some` slots in `ring`.
    live: usize,
    spill: SeqMap<T>,
}

impl<T> Default for SeqRing<T> {
    fn default() -> Self {
        SeqRing {
            base: 0,
            ring: std::collections::VecDeque::new(),
            live: 0,
            spill: SeqMap::default(),
        }
    }
}

impl<T> SeqRing<T> {
    /// Slots the ring spans at most (outstanding ids and the gaps between
    /// them) before its oldest move to the spill map.
    pub const RING_MAX: usize = 4096;

    fn end(&self) -> u64 {
        self.base + self.ring.len() as u64
    }

    fn slot(&self, id: u64) -> Option<usize> {
        (id >= self.base && id < self.end()).then(|| (id - self.base) as usize)
    }

    pub fn insert(&mut self, id: u64, value: T) {
        if self.ring.is_empty() {
            self.base = id;
        }
        if id < self.end() {
            match self.slot(id) {
                Some(i) => {
                    if self.ring[i].is_none() {
                        self.live += 1;
                    }
                    self.ring[i] = Some(value);
                }
                None => {
                    self.spill.insert(id, value);
                }
            }
            return;
        }
        if id - self.end() >= Self::RING_MAX as u64 {
            // A long gap (ids not kept here, such as presettled deliveries
            // credited at once): what the ring holds moves aside.
            self.spill_all();
            self.base = id;
        } else {
            while self.end() < id {
                self.ring.push_back(None);
            }
        }
        self.ring.push_back(Some(value));
        self.live += 1;
        while self.ring.len() > Self::RING_MAX {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(slot) = self.ring.pop_front() {
            if let Some(v) = slot {
                self.live -= 1;
                self.spill.insert(self.base, v);
            }
            self.base += 1;
        }
    }

    fn spill_all(&mut self) {
        while !self.ring.is_empty() {
            self.pop_front();
        }
    }

    /// The ring slot holding `id`, if it is there (an empty slot falls
    /// back to the spill map: an id inserted out of order may sit there).
    fn held(&self, id: u64) -> Option<usize> {
        self.slot(id).filter(|&i| self.ring[i].is_some())
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut T> {
        match self.held(*id) {
            Some(i) => self.ring[i].as_mut(),
            None => self.spill.get_mut(id),
        }
    }

    pub fn remove(&mut self, id: &u64) -> Option<T> {
        let Some(i) = self.held(*id) else {
            return self.spill.remove(id);
        };
        let value = self.ring[i].take()?;
        self.live -= 1;
        if self.live == 0 {
            self.ring.clear();
        } else {
            while let Some(None) = self.ring.front() {
                self.ring.pop_front();
                self.base += 1;
            }
        }
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.live + self.spill.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids held (the spilled ones in no particular order, then the
    /// ring's in order).
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        let ring = self
            .ring
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_some())
            .map(|(i, _)| self.base + i as u64);
        self.spill.keys().copied().chain(ring)
    }

    /// The values held (the spilled ones in no particular order, then the
    /// ring's in id order).
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.spill.values().chain(self.ring.iter().flatten())
    }

    /// Forgets everything held.
    pub fn clear(&mut self) {
        self.ring.clear();
        self.spill.clear();
        self.live = 0;
    }

    /// Takes everything held, in id order.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        let mut out: Vec<(u64, T)> = self.spill.drain().collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        let base = self.base;
        out.extend(
            self.ring
                .drain(..)
                .enumerate()
                .filter_map(|(i, slot)| slot.map(|v| (base + i as u64, v))),
        );
        self.live = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::SeqRing;

    #[test]
    fn a_seq_ring_finds_removes_and_drains_what_it_holds_in_and_out_of_order() {
        let mut r = SeqRing::default();
        for id in 10..20u64 {
            r.insert(id, id * 2);
        }
        assert_eq!(r.len(), 10);
        assert_eq!(r.get_mut(&15), Some(&mut 30));
        assert_eq!(r.get_mut(&9), None);
        assert_eq!(r.get_mut(&20), None);
        // Out of order removals leave holes; the front ones are trimmed.
        assert_eq!(r.remove(&12), Some(24));
        assert_eq!(r.remove(&12), None);
        assert_eq!(r.remove(&10), Some(20));
        assert_eq!(r.remove(&11), Some(22));
        assert_eq!(r.base, 13);
        assert_eq!(r.len(), 7);
        // An id out of order, before the ring: kept aside, found again.
        r.insert(5, 50);
        assert_eq!(r.get_mut(&5), Some(&mut 50));
        // Gaps (ids not kept here) are skipped slots.
        r.insert(25, 250);
        assert_eq!(r.len(), 9);
        let mut ids: Vec<u64> = r.ids().collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![5, 13, 14, 15, 16, 17, 18, 19, 25]);
        let mut values: Vec<u64> = r.values().copied().collect();
        values.sort_unstable();
        assert_eq!(values, vec![26, 28, 30, 32, 34, 36, 38, 50, 250]);
        let mut cleared = SeqRing::default();
        cleared.insert(1, 1);
        cleared.insert(0, 0);
        cleared.clear();
        assert!(cleared.is_empty() && cleared.values().next().is_none());
        cleared.insert(7, 7);
        assert_eq!(cleared.remove(&7), Some(7));
        let drained = r.drain();
        assert_eq!(
            drained.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![5, 13, 14, 15, 16, 17, 18, 19, 25]
        );
        assert_eq!(drained[0].1, 50);
        assert!(r.is_empty());
        assert_eq!(r.ids().count(), 0);
    }

    #[test]
    fn a_seq_ring_moves_what_falls_behind_aside_and_stays_bounded() {
        let max = SeqRing::<u64>::RING_MAX as u64;
        let mut r = SeqRing::default();
        // One delivery stays unsettled while many after it settle.
        r.insert(0, 0);
        for id in 1..10 * max {
            r.insert(id, id);
            assert_eq!(r.remove(&id), Some(id));
        }
        assert!(r.ring.len() <= SeqRing::<u64>::RING_MAX);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get_mut(&0), Some(&mut 0));
        assert_eq!(r.remove(&0), Some(0));
        assert!(r.is_empty());
        // A long gap between ids does not fill the ring with empty slots.
        r.insert(1, 1);
        r.insert(1 + 100 * max, 2);
        assert!(r.ring.len() <= 1);
        assert_eq!(r.len(), 2);
        assert_eq!(r.remove(&1), Some(1));
        assert_eq!(r.remove(&(1 + 100 * max)), Some(2));
        assert!(r.is_empty());
    }
}
