//! Deliveries inside the engine: the application's outgoing delivery as it
//! waits for credit and window ([`OutgoingDelivery`]), the session's table of
//! unsettled deliveries keyed by delivery id ([`DeliveryMap`]), and the
//! queue of disposition updates that are coalesced into `first..last` ranges
//! before they are written ([`DispositionQueue`]).

use std::collections::VecDeque;

use bytes::Bytes;

use super::definitions::{DeliveryState, DeliveryTag, Role};

/// A delivery the application handed to a sending link, waiting to be (or
/// being) written as transfer frames. `payload` is the part not yet written;
/// `rest` holds further chunks for a delivery streamed with
/// `Connection::send_more`.
#[derive(Debug)]
pub(crate) struct OutgoingDelivery {
    pub tag: DeliveryTag,
    pub context: u64,
    pub settled: bool,
    pub message_format: u32,
    pub payload: Bytes,
    pub rest: VecDeque<Bytes>,
    /// The application will add no more chunks.
    pub complete: bool,
    /// The first frame has been written (credit consumed, id assigned).
    pub started: bool,
    pub delivery_id: u32,
    /// The application aborted it after it started: write an aborted transfer.
    pub aborted: bool,
    /// Total message bytes given so far (for max-message-size checks).
    pub size: u64,
    /// The delivery state the first transfer frame carries (e.g. a
    /// transactional-state naming the transaction), if any.
    pub state: Option<super::definitions::DeliveryState>,
}

impl OutgoingDelivery {
    /// True when no message bytes are waiting to be written.
    pub fn drained(&self) -> bool {
        self.payload.is_empty() && self.rest.is_empty()
    }

    /// The most the next [`OutgoingDelivery::take`] can return.
    pub fn next_chunk_len(&self) -> usize {
        if self.payload.is_empty() {
            self.rest.front().map_or(0, Bytes::len)
        } else {
            self.payload.len()
        }
    }

    /// Takes up to `max` bytes off the front of the pending payload.
    pub fn take(&mut self, max: usize) -> Bytes {
        while self.payload.is_empty() {
            match self.rest.pop_front() {
                Some(next) => self.payload = next,
                None => return Bytes::new(),
            }
        }
        if self.payload.len() <= max {
            std::mem::take(&mut self.payload)
        } else {
            self.payload.split_to(max)
        }
    }
}

/// Unsettled deliveries of one direction of a session, keyed by delivery id.
///
/// Delivery ids are assigned in sequence, so the table is a ring indexed by
/// `id - base` (serial-number arithmetic): insert, lookup and remove are O(1)
/// and settled entries leave holes that are trimmed off the front.
#[derive(Debug)]
pub(crate) struct DeliveryMap<T> {
    base: u32,
    slots: VecDeque<Option<T>>,
    len: usize,
}

impl<T> Default for DeliveryMap<T> {
    fn default() -> Self {
        DeliveryMap {
            base: 0,
            slots: VecDeque::new(),
            len: 0,
        }
    }
}

/// Past this many slots between the oldest unsettled delivery and a new one,
/// the table refuses the insert (a peer skipping ids wildly).
const MAX_SPAN: usize = 1 << 22;

impl<T> DeliveryMap<T> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `value` at `id`. Ids must not go backwards relative to the
    /// oldest entry; returns false (and stores nothing) if `id` is already
    /// taken, lies before the table, or is implausibly far ahead.
    pub fn insert(&mut self, id: u32, value: T) -> bool {
        if self.slots.is_empty() {
            self.base = id;
        }
        let offset = id.wrapping_sub(self.base) as usize;
        if offset >= MAX_SPAN {
            return false;
        }
        if offset >= self.slots.len() {
            self.slots.resize_with(offset + 1, || None);
        }
        let slot = &mut self.slots[offset];
        if slot.is_some() {
            return false;
        }
        *slot = Some(value);
        self.len += 1;
        true
    }

    pub fn get(&self, id: u32) -> Option<&T> {
        let offset = id.wrapping_sub(self.base) as usize;
        self.slots.get(offset).and_then(Option::as_ref)
    }

    pub fn remove(&mut self, id: u32) -> Option<T> {
        let offset = id.wrapping_sub(self.base) as usize;
        let taken = self.slots.get_mut(offset)?.take();
        if taken.is_some() {
            self.len -= 1;
            self.trim();
        }
        taken
    }

    fn trim(&mut self) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base = self.base.wrapping_add(1);
        }
        if self.slots.is_empty() {
            self.base = 0;
        }
    }

    /// The ids within `first..=last` that the table spans (present or
    /// not), in order: the peer's range clipped to the table, so a range of
    /// any width costs at most the table's size.
    pub fn span_ids(&self, first: u32, last: u32) -> impl Iterator<Item = u32> + use<T> {
        let len = self.slots.len() as i64;
        let start = (first.wrapping_sub(self.base) as i32 as i64).max(0);
        let end = (last.wrapping_sub(self.base) as i32 as i64).min(len - 1);
        let base = self.base;
        let (start, end) = if last.wrapping_sub(first) > i32::MAX as u32 || end < start {
            (0, -1)
        } else {
            (start, end)
        };
        (start..=end).map(move |off| base.wrapping_add(off as u32))
    }

    /// Removes every entry for which `take` is true, returning them.
    pub fn extract_if(&mut self, mut take: impl FnMut(&T) -> bool) -> Vec<(u32, T)> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(&mut take)
                && let Some(v) = self.slots[i].take()
            {
                out.push((self.base.wrapping_add(i as u32), v));
                self.len -= 1;
            }
        }
        self.trim();
        out
    }
}

/// One disposition update waiting to be written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingDisposition {
    pub role: Role,
    pub first: u32,
    pub last: u32,
    pub settled: bool,
    pub state: Option<DeliveryState>,
}

/// Disposition updates of one session, coalesced as they are queued: an
/// update for `last + 1` with the same role, settled flag and state extends
/// the previous range, so settling deliveries in order writes one frame.
#[derive(Debug, Default)]
pub(crate) struct DispositionQueue {
    pending: Vec<PendingDisposition>,
}

impl DispositionQueue {
    pub fn push(&mut self, role: Role, id: u32, settled: bool, state: Option<DeliveryState>) {
        if let Some(prev) = self.pending.last_mut()
            && prev.role == role
            && prev.settled == settled
            && prev.last.wrapping_add(1) == id
            && prev.state == state
        {
            prev.last = id;
            return;
        }
        self.pending.push(PendingDisposition {
            role,
            first: id,
            last: id,
            settled,
            state,
        });
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, PendingDisposition> {
        self.pending.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_map_trims_settled_front_and_wraps_ids() {
        let mut map = DeliveryMap::default();
        assert!(map.insert(u32::MAX - 1, 'a'));
        assert!(map.insert(u32::MAX, 'b'));
        assert!(map.insert(0, 'c'));
        assert!(map.insert(2, 'd'));
        assert!(!map.insert(2, 'x'));
        assert_eq!(map.len(), 4);
        assert_eq!(
            map.span_ids(u32::MAX, 1).collect::<Vec<_>>(),
            vec![u32::MAX, 0, 1]
        );
        assert_eq!(map.remove(u32::MAX - 1), Some('a'));
        assert_eq!(map.remove(u32::MAX - 1), None);
        assert_eq!(map.get(0), Some(&'c'));
        assert_eq!(map.span_ids(0, 100).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(map.span_ids(0, u32::MAX - 2).count(), 0);
        assert_eq!(map.remove(u32::MAX), Some('b'));
        assert_eq!(map.remove(0), Some('c'));
        assert_eq!(map.remove(2), Some('d'));
        assert!(map.is_empty());
    }

    #[test]
    fn disposition_queue_coalesces_contiguous_equal_updates() {
        let mut q = DispositionQueue::default();
        for id in 5..10 {
            q.push(Role::Receiver, id, true, Some(DeliveryState::Accepted));
        }
        q.push(Role::Receiver, 11, true, Some(DeliveryState::Accepted));
        q.push(Role::Receiver, 12, true, Some(DeliveryState::Released));
        let ranges: Vec<_> = q.drain().map(|d| (d.first, d.last)).collect();
        assert_eq!(ranges, vec![(5, 9), (11, 11), (12, 12)]);
    }

    #[test]
    fn outgoing_delivery_takes_across_chunks() {
        let mut d = OutgoingDelivery {
            tag: DeliveryTag::default(),
            context: 0,
            settled: false,
            message_format: 0,
            payload: Bytes::from_static(b"abc"),
            rest: VecDeque::from([Bytes::from_static(b"defg")]),
            complete: true,
            started: false,
            delivery_id: 0,
            aborted: false,
            size: 7,
            state: None,
        };
        assert_eq!(&d.take(2)[..], b"ab");
        assert_eq!(&d.take(2)[..], b"c");
        assert_eq!(&d.take(10)[..], b"defg");
        assert!(d.drained());
    }
}
