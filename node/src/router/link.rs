//! What the router's actors share about one link beside its connection's
//! engine.

use std::sync::atomic::{AtomicU32, Ordering};

/// Live counters of one outgoing (consumer) link, written by its connection
/// and read by its address to balance. The single source of these numbers.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Routed to the link but not yet sent (waiting for credit).
    pub undelivered: AtomicU32,
    /// Sent and not yet settled by the consumer.
    pub unsettled: AtomicU32,
    /// Credit the consumer granted and the router has not used.
    pub credit: AtomicU32,
}

impl LinkCounters {
    /// The balanced distribution's value of the link: undelivered + unsettled.
    pub fn outstanding(&self) -> u32 {
        self.undelivered.load(Ordering::Relaxed) + self.unsettled.load(Ordering::Relaxed)
    }
}
