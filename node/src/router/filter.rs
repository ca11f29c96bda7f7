//! Subscription filters: addresses with MQTT wildcards (`+` one level, `#`
//! the rest), which receive every message sent to an address they match,
//! anywhere in the mesh.
//!
//! A filter is an address like any other: a consumer attaches to it (an
//! MQTT SUBSCRIBE, or an AMQP receiver with the filter as its source), its
//! address actor is multicast whatever the address table says, and the
//! mesh advertises it as a mobile address, so every router knows which
//! routers have consumers for it. The one thing new is at the *ingress*
//! router: a message entering the router from a client (AMQP or MQTT) for
//! address `a/b/c` is also sent, as a copy, to each known filter that
//! matches `a/b/c` ([`split`]); the filter's address actor then fans it out
//! to its consumers, here and on other routers, like any multicast
//! delivery. The copies and the original share one outcome
//! ([`RoutedDelivery::joined`]: accepted if any accepted and none
//! rejected, released if nobody took it), so the sender settles once.
//! Matching happens once, where the message enters the mesh; routers on the
//! way never match again (a message from a neighbour is never split).
//!
//! Levels are separated by `/` or `.`, as in configured address patterns
//! (`config::address`), so `sensors/+/temp` matches the MQTT topic
//! `sensors/kitchen/temp` and the AMQP address `sensors.kitchen.temp`. As
//! in MQTT, a filter that starts with a wildcard does not match an address
//! starting with `$`; router-internal addresses (`_topo/`, `_edge/`) are
//! never matched.
//!
//! The index is a list scanned per message entering the router while any
//! filter is known (one atomic load otherwise): its cost grows with the
//! number of distinct filters in the mesh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::delivery::{Fanout, RoutedDelivery};

/// The address MQTT's retained messages travel on to every router with an
/// MQTT listener (`mqtt::retain`): multicast, and matched by no filter.
pub const RETAIN_ADDRESS: &str = "_mqtt/retain";

/// The address the MQTT routers' session replicas travel on (`mqtt::mesh`):
/// multicast, and matched by no filter.
pub const SESSION_ADDRESS: &str = "_mqtt/session";

/// True if `address` holds a wildcard level (`+` or `#`): it is a
/// subscription filter, not a topic.
pub fn is_filter(address: &str) -> bool {
    levels(address).any(|l| l == "+" || l == "#")
}

fn levels(s: &str) -> impl Iterator<Item = &str> {
    s.split(['/', '.'])
}

/// Checks an MQTT filter's syntax: `#` only as the last level, wildcards
/// only as whole levels, not empty.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let parts: Vec<&str> = filter.split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if p.contains('#') && (*p != "#" || i + 1 != parts.len()) {
            return false;
        }
        if p.contains('+') && *p != "+" {
            return false;
        }
    }
    true
}

/// True if `filter` matches `address` (levels split on `/` or `.`).
pub fn matches(filter: &str, address: &str) -> bool {
    if address.starts_with("_topo/")
        || address.starts_with("_edge/")
        || address.starts_with("_mqtt/")
    {
        return false;
    }
    if address.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = levels(filter);
    let mut a = levels(address);
    loop {
        match (f.next(), a.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(al)) if fl == al => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The filters with consumers somewhere in the mesh (local consumers, or
/// remote routers that advertise them).
#[derive(Default)]
pub struct FilterIndex {
    any: AtomicBool,
    /// filter -> (has local consumers, has remote routers)
    entries: std::sync::RwLock<std::collections::BTreeMap<Arc<str>, (bool, bool)>>,
}

impl FilterIndex {
    /// Records whether `filter` has local consumers (`local`) or remote
    /// routers (`remote`); `None` leaves that side as it was. True if
    /// whether the filter is known changed.
    pub fn set(&self, filter: &Arc<str>, local: Option<bool>, remote: Option<bool>) -> bool {
        let mut e = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let before = e.get(filter).copied().unwrap_or_default();
        let after = (local.unwrap_or(before.0), remote.unwrap_or(before.1));
        if after == (false, false) {
            e.remove(filter);
        } else {
            e.insert(filter.clone(), after);
        }
        self.any.store(!e.is_empty(), Ordering::Release);
        (before.0 || before.1) != (after.0 || after.1)
    }

    /// True if some filter is known (one atomic load).
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// The known filters that match `address`.
    pub fn matching(&self, address: &str) -> Vec<Arc<str>> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        let e = self.entries.read().unwrap_or_else(|e| e.into_inner());
        e.keys().filter(|f| matches(f, address)).cloned().collect()
    }

    /// True if some known filter matches `address`.
    pub fn any_match(&self, address: &str) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let e = self.entries.read().unwrap_or_else(|e| e.into_inner());
        e.keys().any(|f| matches(f, address))
    }
}

/// A delivery entering the mesh here, and a copy of it for each known
/// filter its address matches; all of them share one outcome. Deliveries
/// from neighbours, deliveries to a filter, and deliveries when no filter
/// matches pass unchanged.
pub fn split(index: &FilterIndex, mut d: RoutedDelivery) -> Vec<RoutedDelivery> {
    if !index.any() || !d.visited.is_empty() || is_filter(&d.address) {
        return vec![d];
    }
    let filters = index.matching(&d.address);
    if filters.is_empty() {
        return vec![d];
    }
    let joined = Fanout::new(filters.len() as u32 + 1, d.presettled);
    let mut all = Vec::with_capacity(filters.len() + 1);
    for f in filters {
        let mut copy = d.ingress_copy(f);
        copy.joined = Some(joined.clone());
        all.push(copy);
    }
    d.joined = Some(joined);
    all.insert(0, d);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_matches_one_level_and_hash_the_rest_with_either_separator() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/+/c", "a.b.c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("#", "x.y"));
        assert!(!matches("#", "$management"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("#", "_topo/0/R/temp.1"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn filters_are_told_from_topics_and_checked() {
        assert!(is_filter("a/+/c"));
        assert!(is_filter("#"));
        assert!(!is_filter("a/b+/c"));
        assert!(!is_filter("a/b/c"));
        assert!(valid_filter("a/+/#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b#"));
        assert!(!valid_filter("a+/b"));
        assert!(!valid_filter(""));
    }

    #[test]
    fn the_index_knows_a_filter_while_either_side_has_it() {
        let i = FilterIndex::default();
        let f: Arc<str> = Arc::from("a/+");
        assert!(i.matching("a/b").is_empty());
        assert!(i.set(&f, Some(true), None));
        assert_eq!(i.matching("a/b"), vec![f.clone()]);
        assert!(!i.set(&f, None, Some(true)));
        assert!(!i.set(&f, Some(false), None));
        assert!(i.any_match("a/b"));
        assert!(i.set(&f, None, Some(false)));
        assert!(!i.any_match("a/b"));
    }
}
