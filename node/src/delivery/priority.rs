//! Message priority (AMQP `header.priority`, 0–9, default 4) and the one
//! queue discipline the router uses wherever deliveries wait: per-priority
//! FIFO queues served by weighted round robin ([`PriorityQueues`]).
//!
//! Neutral ground: the per-neighbour outbound queue of the mesh
//! (`mesh::data`) and the consumer links' queues (`router::connection`)
//! both use it. The weight of priority `p` is `2^p`: in one round every
//! non-empty level is served up to its weight, highest first, so a higher
//! priority overtakes a lower one (9 against 4: 512 to 16) and the lowest
//! still gets at least one turn per round (no starvation). Within a level
//! the order is kept. A queue holding one level only (the common case: all
//! at the default priority) costs a bit test and a `VecDeque` push/pop per
//! delivery.

use std::collections::VecDeque;

/// The priority of a message without one.
pub const DEFAULT_PRIORITY: u8 = 4;

/// Priorities 0..=9.
pub const PRIORITIES: usize = 10;

/// The priority of a message from its encoded bytes: `header.priority` when
/// the message starts with a header that has one, else the default. Values
/// above 9 count as 9, as AMQP says (a router "SHOULD treat" them so). A
/// peek at the first bytes, not a section scan: no header (most messages)
/// costs one comparison.
pub fn of_message(message: &[u8]) -> u8 {
    bote_amqp::header_priority(message).map_or(DEFAULT_PRIORITY, |p| p.min(PRIORITIES as u8 - 1))
}

/// The effective priority of a value read from the wire.
pub fn clamp(p: u32) -> u8 {
    p.min(PRIORITIES as u32 - 1) as u8
}

/// FIFO queues per priority, served by weighted round robin (module doc).
/// Optionally counts, per level, a prefix of *marked* entries (the consumer
/// links mark those whose senders' credit went back early, and mark in
/// service order, so the marked ones of a level are always its oldest).
///
/// The levels live behind a box allocated at the first push and kept
/// while the queue lives: an empty, never-used queue (every idle consumer
/// link has one, and a router holds them by the hundred thousand) is 24
/// bytes instead of ~460, and the maps holding the links move less when
/// they grow.
pub struct PriorityQueues<T> {
    levels: Option<Box<Levels<T>>>,
    /// Bit `p` set: level `p` is not empty.
    nonempty: u16,
    len: usize,
}

/// The queues proper, once something was queued.
struct Levels<T> {
    queues: [VecDeque<T>; PRIORITIES],
    /// What each level may still take in the current round.
    quota: [u32; PRIORITIES],
    /// Per level, how many of the oldest entries are marked.
    marked: [usize; PRIORITIES],
}

impl<T> Default for PriorityQueues<T> {
    fn default() -> Self {
        PriorityQueues {
            levels: None,
            nonempty: 0,
            len: 0,
        }
    }
}

const WEIGHTS: [u32; PRIORITIES] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

impl<T> PriorityQueues<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item` at `priority` (clamped to 9), behind that level's others.
    pub fn push(&mut self, priority: u8, item: T) {
        let p = usize::from(priority).min(PRIORITIES - 1);
        let levels = self.levels.get_or_insert_with(|| {
            Box::new(Levels {
                queues: Default::default(),
                quota: WEIGHTS,
                marked: [0; PRIORITIES],
            })
        });
        levels.queues[p].push_back(item);
        self.nonempty |= 1 << p;
        self.len += 1;
    }

    /// The level the next [`Self::pop`] serves, with the levels.
    fn next_level(&mut self) -> Option<(usize, &mut Levels<T>)> {
        if self.nonempty == 0 {
            return None;
        }
        let levels = self.levels.as_deref_mut()?;
        if self.nonempty.is_power_of_two() {
            // One level waiting: no round to keep.
            return Some((self.nonempty.trailing_zeros() as usize, levels));
        }
        loop {
            let mut bits = self.nonempty;
            while bits != 0 {
                let p = 15 - bits.leading_zeros() as usize;
                if levels.quota[p] > 0 {
                    return Some((p, levels));
                }
                bits &= !(1 << p);
            }
            // Every waiting level used its turns: a new round.
            levels.quota = WEIGHTS;
        }
    }

    /// The next item by the discipline, with its priority and whether it was
    /// marked.
    pub fn pop(&mut self) -> Option<(u8, T, bool)> {
        let (p, levels) = self.next_level()?;
        let item = levels.queues[p].pop_front()?;
        levels.quota[p] = levels.quota[p].saturating_sub(1);
        let emptied = levels.queues[p].is_empty();
        let marked = levels.marked[p] > 0;
        if marked {
            levels.marked[p] -= 1;
        }
        if emptied {
            self.nonempty &= !(1 << p);
        }
        self.len -= 1;
        Some((p as u8, item, marked))
    }

    /// How many entries are marked.
    pub fn marked(&self) -> usize {
        self.levels.as_ref().map_or(0, |l| l.marked.iter().sum())
    }

    /// Marks the oldest unmarked entry of the highest level that has one,
    /// giving it to `f` first; false when every entry is marked.
    pub fn mark_next(&mut self, f: impl FnOnce(&mut T)) -> bool {
        let Some(levels) = self.levels.as_deref_mut() else {
            return false;
        };
        for p in (0..PRIORITIES).rev() {
            let m = levels.marked[p];
            if let Some(item) = levels.queues[p].get_mut(m) {
                f(item);
                levels.marked[p] += 1;
                return true;
            }
        }
        false
    }

    /// Takes every entry out, highest level first.
    pub fn drain(&mut self) -> Vec<T> {
        let mut all = Vec::with_capacity(self.len);
        if let Some(levels) = self.levels.as_deref_mut() {
            for p in (0..PRIORITIES).rev() {
                all.extend(levels.queues[p].drain(..));
            }
        }
        *self = Self::default();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_overtakes_lower_without_starving_it() {
        let mut q = PriorityQueues::default();
        for i in 0..2000 {
            q.push(0, (0u8, i));
        }
        for i in 0..100 {
            q.push(9, (9u8, i));
        }
        let order: Vec<(u8, i32)> = std::iter::from_fn(|| q.pop().map(|(_, v, _)| v)).collect();
        let last_high = order.iter().rposition(|(p, _)| *p == 9).unwrap();
        // All 100 of priority 9 (fewer than its weight) go first...
        assert_eq!(last_high, 99);
        // ...and the backlog then follows, in order.
        let low: Vec<i32> = order.iter().filter(|(p, _)| *p == 0).map(|v| v.1).collect();
        assert_eq!(low, (0..2000).collect::<Vec<_>>());
        assert_eq!(order.len(), 2100);
    }

    #[test]
    fn a_busy_high_level_leaves_the_low_one_its_share() {
        let mut q = PriorityQueues::default();
        let mut low_served = 0;
        // A priority 9 queue that never empties, beside a low backlog.
        for i in 0..10 {
            q.push(1, i);
        }
        for i in 0..5000 {
            q.push(9, i);
            q.push(9, i);
            if let Some((1, _, _)) = q.pop() {
                low_served += 1;
            }
        }
        assert!(low_served >= 5, "low served {low_served} times");
    }

    #[test]
    fn marks_cover_the_oldest_of_each_level_in_service_order() {
        let mut q = PriorityQueues::default();
        q.push(4, "a");
        q.push(4, "b");
        assert!(q.mark_next(|_| {}));
        q.push(7, "x");
        assert!(q.mark_next(|v| assert_eq!(*v, "x")));
        assert_eq!(q.marked(), 2);
        assert_eq!(q.pop(), Some((7, "x", true)));
        assert_eq!(q.pop(), Some((4, "a", true)));
        assert_eq!(q.pop(), Some((4, "b", false)));
        assert_eq!(q.pop(), None);
        assert_eq!(PriorityQueues::<u8>::default().marked(), 0);
    }

    #[test]
    fn an_unused_queue_is_small_and_drain_empties_it() {
        assert!(std::mem::size_of::<PriorityQueues<[u64; 8]>>() <= 24);
        let mut q = PriorityQueues::default();
        assert_eq!(q.pop(), None);
        assert!(!q.mark_next(|_: &mut u8| {}));
        q.push(2, 1u8);
        q.push(8, 2u8);
        assert_eq!(q.drain(), vec![2, 1]);
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
        q.push(4, 3u8);
        assert_eq!(q.pop(), Some((4, 3, false)));
    }

    #[test]
    fn priorities_read_from_the_header_default_to_four() {
        // header: described list [durable=true, priority=7]
        let with = [0x00, 0x53, 0x70, 0xc0, 0x04, 0x02, 0x41, 0x50, 0x07];
        assert_eq!(of_message(&with), 7);
        let high = [0x00, 0x53, 0x70, 0xc0, 0x04, 0x02, 0x40, 0x50, 0xc8];
        assert_eq!(of_message(&high), 9);
        let none = [0x00, 0x53, 0x70, 0x45];
        assert_eq!(of_message(&none), DEFAULT_PRIORITY);
        let body_only = [0x00, 0x53, 0x77, 0xa1, 0x01, b'x'];
        assert_eq!(of_message(&body_only), DEFAULT_PRIORITY);
        assert_eq!(clamp(200), 9);
    }
}
