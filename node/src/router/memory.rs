//! Gives memory back to the system after bursts of connections.
//!
//! A burst of thousands of connections allocates their buffers and engine
//! state from glibc's heaps; when they close, the freed chunks lie between
//! allocations that live on, so glibc cannot shrink its heaps from the top
//! and keeps the pages resident. Measured with `scripts/measure_bursts.py`
//! (8 bursts of 2,000 connections, `BENCHMARKS.md`): RSS grew at every
//! burst, yet with mimalloc as the allocator it stayed flat over the same
//! bursts, so the memory is freed (no leak) but not returned
//! (fragmentation). `malloc_trim(0)` returns the free pages inside the
//! heaps too (`madvise(MADV_DONTNEED)`), so the router calls it once the
//! connections have quietened down after many closed: at most once per
//! [`CHECK_INTERVAL`], only when at least [`CLOSES_BEFORE_TRIM`]
//! connections closed since the last trim, and only on glibc.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the router looks at the number of closed connections.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Connections that must have closed since the last trim for another.
pub const CLOSES_BEFORE_TRIM: u64 = 256;

/// Counts closed connections and trims the heap after enough of them.
#[derive(Default)]
pub struct HeapTrimmer {
    closed: AtomicU64,
    closed_at_last_check: AtomicU64,
}

impl HeapTrimmer {
    /// A connection went away.
    pub fn connection_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Called every [`CHECK_INTERVAL`]: trims when enough connections
    /// closed since the last trim and none closed in the last interval (the
    /// burst is over). Returns whether it trimmed.
    pub fn check(&self, last_checked: &mut u64) -> bool {
        let closed = self.closed.load(Ordering::Relaxed);
        let previous = self.closed_at_last_check.swap(closed, Ordering::Relaxed);
        let quiet = closed == previous;
        if quiet && closed.saturating_sub(*last_checked) >= CLOSES_BEFORE_TRIM {
            *last_checked = closed;
            trim();
            return true;
        }
        false
    }
}

/// Returns free heap pages to the system.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_burst_of_closes_is_over_and_not_while_it_goes_on() {
        let t = HeapTrimmer::default();
        let mut last = 0;
        for _ in 0..300 {
            t.connection_closed();
        }
        assert!(
            !t.check(&mut last),
            "closes still arriving in this interval"
        );
        assert!(t.check(&mut last), "quiet now, 300 closed: trim");
        assert!(!t.check(&mut last), "nothing closed since");
        for _ in 0..10 {
            t.connection_closed();
        }
        assert!(!t.check(&mut last));
        assert!(!t.check(&mut last), "10 closes are not worth a trim");
    }
}
