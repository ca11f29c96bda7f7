//! The read model: what the router counts as deliveries flow, kept where the
//! work happens and read whole when someone asks. Management (`$management`
//! QUERY and READ), the HTTP API and the tests all read these numbers; no
//! other tally exists.
//!
//! - [`LinkCounters`]: the live state of a consumer link (undelivered,
//!   unsettled, credit), written by its connection actor and weighed by its
//!   address actor when it balances.
//! - [`LinkStats`]: what a link did (deliveries, presettled, outcomes), one
//!   relaxed atomic add per delivery on the thread that owns the link.
//! - [`ConnectionInfo`] / [`LinkInfo`]: a connection and its links as the
//!   connection actor registers them in the [`ReadModel`] (a `DashMap` by
//!   connection id); a reader walks the map without asking any actor.
//! - When a link goes away its counts are folded into the router's retired
//!   totals ([`ReadModel::retire`]), so the router's own counters (deliveries
//!   in and out, outcomes) are the retired totals plus the live links: one
//!   source, never decreasing.
//!
//! Counting follows qdrouterd: a link counts the deliveries that crossed it
//! and their outcomes; the router's outcome counters are those of the links
//! deliveries came in on (`acceptedDeliveries` is what senders were told).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::delivery::ConnId;
use bote_amqp::DeliveryState;

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
        self.undelivered.load(Relaxed) + self.unsettled.load(Relaxed)
    }
}

/// What a link did: deliveries that crossed it and how they ended.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Deliveries that crossed the link (received from a sender, or sent to
    /// a receiver).
    pub delivered: AtomicU64,
    /// Of those, sent presettled.
    pub presettled: AtomicU64,
    /// Presettled deliveries that no consumer took (dropped).
    pub dropped_presettled: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub released: AtomicU64,
    pub modified: AtomicU64,
}

impl LinkStats {
    /// Counts one delivery crossing the link.
    pub fn delivery(&self, presettled: bool) {
        self.delivered.fetch_add(1, Relaxed);
        if presettled {
            self.presettled.fetch_add(1, Relaxed);
        }
    }

    /// Counts the outcome of an unsettled delivery (`None`: settled
    /// without one, taken as accepted).
    pub fn outcome(&self, state: Option<&DeliveryState>) {
        let counter = match state {
            None | Some(DeliveryState::Accepted) => &self.accepted,
            Some(DeliveryState::Rejected { .. }) => &self.rejected,
            Some(DeliveryState::Released) => &self.released,
            Some(DeliveryState::Modified { .. }) => &self.modified,
            Some(_) => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Adds `other`'s counts to these.
    fn absorb(&self, other: &LinkStats) {
        for (to, from) in self.fields().into_iter().zip(other.fields()) {
            to.fetch_add(from.load(Relaxed), Relaxed);
        }
    }

    fn fields(&self) -> [&AtomicU64; 7] {
        [
            &self.delivered,
            &self.presettled,
            &self.dropped_presettled,
            &self.accepted,
            &self.rejected,
            &self.released,
            &self.modified,
        ]
    }

    /// A plain copy of the counts.
    pub fn read(&self) -> StatsRow {
        StatsRow {
            delivered: self.delivered.load(Relaxed),
            presettled: self.presettled.load(Relaxed),
            dropped_presettled: self.dropped_presettled.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            released: self.released.load(Relaxed),
            modified: self.modified.load(Relaxed),
        }
    }
}

/// A copy of [`LinkStats`] taken at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsRow {
    pub delivered: u64,
    pub presettled: u64,
    pub dropped_presettled: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub released: u64,
    pub modified: u64,
}

impl std::ops::AddAssign for StatsRow {
    fn add_assign(&mut self, o: StatsRow) {
        self.delivered += o.delivered;
        self.presettled += o.presettled;
        self.dropped_presettled += o.dropped_presettled;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.released += o.released;
        self.modified += o.modified;
    }
}

/// Which way deliveries cross a link, from the router's side (qdrouterd's
/// `linkDir`): `in` from a client's sender, `out` to a client's receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDir {
    In,
    Out,
}

impl LinkDir {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkDir::In => "in",
            LinkDir::Out => "out",
        }
    }
}

/// One link of a client connection.
#[derive(Debug)]
pub struct LinkInfo {
    /// Router-wide link id (qdrouterd's link `identity`).
    pub id: u64,
    pub conn: ConnId,
    pub name: String,
    pub dir: LinkDir,
    /// The address it sends to or receives from; `None` for an anonymous
    /// sender.
    pub address: Option<Arc<str>>,
    pub capacity: u32,
    /// The live counters of an outgoing link (`None` for incoming ones).
    pub counters: Option<Arc<LinkCounters>>,
    /// Credit granted to an incoming link's sender (outgoing links keep it
    /// in `counters`).
    pub credit: AtomicU32,
    /// Unsettled deliveries an incoming link's sender has in the router.
    pub in_flight: AtomicU32,
    pub stats: LinkStats,
}

/// One client connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub id: ConnId,
    /// The peer's address, `host:port`.
    pub host: String,
    /// `normal` (a client listener).
    pub role: &'static str,
    /// `amqp` or `mqtt`.
    pub protocol: &'static str,
    /// `in`: the peer connected to the router.
    pub dir: &'static str,
    /// The peer's container id, once its open arrived.
    pub container: OnceLock<String>,
    /// The SASL mechanism the peer authenticated with, if it used SASL.
    pub sasl: OnceLock<String>,
    pub opened: AtomicBool,
    pub since: Instant,
    /// Seconds since the Unix epoch of the last delivery, 0 for none.
    pub last_delivery: AtomicU64,
    pub links: Mutex<Vec<Arc<LinkInfo>>>,
}

impl ConnectionInfo {
    pub fn new(id: ConnId, host: String) -> ConnectionInfo {
        ConnectionInfo {
            id,
            host,
            role: "normal",
            protocol: "amqp",
            dir: "in",
            container: OnceLock::new(),
            sasl: OnceLock::new(),
            opened: AtomicBool::new(false),
            since: Instant::now(),
            last_delivery: AtomicU64::new(0),
            links: Mutex::new(Vec::new()),
        }
    }

    /// Notes that a delivery crossed the connection now (one clock read
    /// per call: callers do it once per batch, not per delivery).
    pub fn touched(&self) {
        self.last_delivery.store(unix_seconds(), Relaxed);
    }

    pub fn links(&self) -> Vec<Arc<LinkInfo>> {
        match self.links.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The router's registry of connections and links, and the totals of
/// links that are gone.
#[derive(Debug)]
pub struct ReadModel {
    pub connections: DashMap<ConnId, Arc<ConnectionInfo>>,
    next_link: AtomicU64,
    /// Totals of the incoming links that are gone.
    retired_in: LinkStats,
    /// Totals of the outgoing links that are gone.
    retired_out: LinkStats,
    pub started: Instant,
}

impl Default for ReadModel {
    fn default() -> Self {
        ReadModel {
            connections: DashMap::new(),
            next_link: AtomicU64::new(0),
            retired_in: LinkStats::default(),
            retired_out: LinkStats::default(),
            started: Instant::now(),
        }
    }
}

/// The router-wide totals of all links, live and gone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Incoming links (from senders): `delivered` is qdrouterd's
    /// `deliveriesIngress`, the outcomes are the router's outcome counters.
    pub incoming: StatsRow,
    /// Outgoing links (to receivers): `delivered` is `deliveriesEgress`.
    pub outgoing: StatsRow,
    /// Links open now.
    pub links: u64,
}

impl ReadModel {
    pub fn add_connection(&self, info: Arc<ConnectionInfo>) {
        self.connections.insert(info.id, info);
    }

    /// The connection is gone: its links' counts go to the retired totals.
    pub fn remove_connection(&self, id: ConnId) {
        if let Some((_, info)) = self.connections.remove(&id) {
            for link in info.links() {
                self.retire(&link);
            }
        }
    }

    /// A new link of `conn` (registered with the connection, if it is).
    #[allow(clippy::too_many_arguments)]
    pub fn add_link(
        &self,
        conn: &ConnectionInfo,
        name: &str,
        dir: LinkDir,
        address: Option<Arc<str>>,
        capacity: u32,
        counters: Option<Arc<LinkCounters>>,
    ) -> Arc<LinkInfo> {
        let link = Arc::new(LinkInfo {
            id: self.next_link.fetch_add(1, Relaxed) + 1,
            conn: conn.id,
            name: name.to_owned(),
            dir,
            address,
            capacity,
            counters,
            credit: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            stats: LinkStats::default(),
        });
        match conn.links.lock() {
            Ok(mut l) => l.push(link.clone()),
            Err(poisoned) => poisoned.into_inner().push(link.clone()),
        }
        link
    }

    /// The link detached: it leaves its connection and its counts go to
    /// the retired totals.
    pub fn remove_link(&self, conn: &ConnectionInfo, link: &Arc<LinkInfo>) {
        let removed = {
            let mut links = match conn.links.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = links.len();
            links.retain(|l| !Arc::ptr_eq(l, link));
            before != links.len()
        };
        if removed {
            self.retire(link);
        }
    }

    fn retire(&self, link: &LinkInfo) {
        match link.dir {
            LinkDir::In => self.retired_in.absorb(&link.stats),
            LinkDir::Out => self.retired_out.absorb(&link.stats),
        }
    }

    /// Every connection, by id.
    pub fn connections(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut all: Vec<Arc<ConnectionInfo>> =
            self.connections.iter().map(|e| e.value().clone()).collect();
        all.sort_unstable_by_key(|c| c.id);
        all
    }

    /// The router-wide totals. A link retired while this runs may be
    /// counted twice or not at all for that moment; the next read is exact.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            incoming: self.retired_in.read(),
            outgoing: self.retired_out.read(),
            links: 0,
        };
        for c in self.connections.iter() {
            for l in c.value().links() {
                t.links += 1;
                match l.dir {
                    LinkDir::In => t.incoming += l.stats.read(),
                    LinkDir::Out => t.outgoing += l.stats.read(),
                }
            }
        }
        t
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_totals_keep_the_counts_of_links_that_are_gone() {
        let model = ReadModel::default();
        let conn = Arc::new(ConnectionInfo::new(ConnId(1), "127.0.0.1:1".into()));
        model.add_connection(conn.clone());
        let sender = model.add_link(&conn, "s", LinkDir::In, Some("q".into()), 250, None);
        let receiver = model.add_link(&conn, "r", LinkDir::Out, Some("q".into()), 250, None);
        for _ in 0..3 {
            sender.stats.delivery(false);
            sender.stats.outcome(Some(&DeliveryState::Accepted));
        }
        sender.stats.delivery(true);
        receiver.stats.delivery(false);
        receiver.stats.outcome(Some(&DeliveryState::Released));
        let t = model.totals();
        assert_eq!((t.incoming.delivered, t.incoming.presettled), (4, 1));
        assert_eq!(t.incoming.accepted, 3);
        assert_eq!((t.outgoing.delivered, t.outgoing.released), (1, 1));
        assert_eq!(t.links, 2);
        model.remove_link(&conn, &sender);
        model.remove_link(&conn, &sender); // twice: counted once
        let t = model.totals();
        assert_eq!(
            (t.incoming.delivered, t.incoming.accepted, t.links),
            (4, 3, 1)
        );
        model.remove_connection(ConnId(1));
        let t = model.totals();
        assert_eq!(
            (t.outgoing.delivered, t.outgoing.released, t.links),
            (1, 1, 0)
        );
        assert!(model.connections().is_empty());
    }
}
