//! The read model: what the router counts as deliveries flow, kept where the
//! work happens and read whole when someone asks. Management (`$management`
//! QUERY and READ), the HTTP API and the tests all read these numbers; no
//! other tally exists.
//!
//! - [`LinkCounters`]: the live state of a consumer link (undelivered,
//!   unsettled, credit), written by its connection actor and weighed by its
//!   address actor when it balances.
//! - [`LinkStats`]: what a link did (deliveries, presettled, outcomes,
//!   settlements delayed over 1 s and 10 s), one relaxed atomic add per
//!   delivery on the thread that owns the link.
//! - [`SettleLatency`]: the router's histogram of how long unsettled
//!   deliveries took from arrival to their outcome reaching the sender.
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Unsettled deliveries whose outcome came more than 1 s (and at most
    /// 10 s) after they arrived (qdrouterd's `deliveriesDelayed1Sec`).
    pub delayed_1sec: AtomicU64,
    /// ... more than 10 s after (`deliveriesDelayed10Sec`).
    pub delayed_10sec: AtomicU64,
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

    /// Counts an unsettled delivery settled `delay` after it arrived, as
    /// qdrouterd does: over 10 s in `delayed_10sec`, else over 1 s in
    /// `delayed_1sec`, else nowhere.
    pub fn settled_after(&self, delay: Duration) {
        if delay > Duration::from_secs(10) {
            self.delayed_10sec.fetch_add(1, Relaxed);
        } else if delay > Duration::from_secs(1) {
            self.delayed_1sec.fetch_add(1, Relaxed);
        }
    }

    /// Adds `other`'s counts to these.
    fn absorb(&self, other: &LinkStats) {
        for (to, from) in self.fields().into_iter().zip(other.fields()) {
            to.fetch_add(from.load(Relaxed), Relaxed);
        }
    }

    fn fields(&self) -> [&AtomicU64; 9] {
        [
            &self.delivered,
            &self.presettled,
            &self.dropped_presettled,
            &self.accepted,
            &self.rejected,
            &self.released,
            &self.modified,
            &self.delayed_1sec,
            &self.delayed_10sec,
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
            delayed_1sec: self.delayed_1sec.load(Relaxed),
            delayed_10sec: self.delayed_10sec.load(Relaxed),
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
    pub delayed_1sec: u64,
    pub delayed_10sec: u64,
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
        self.delayed_1sec += o.delayed_1sec;
        self.delayed_10sec += o.delayed_10sec;
    }
}

/// Upper bounds (seconds) of [`SettleLatency`]'s buckets; a last bucket
/// takes the rest (`+Inf`).
pub const SETTLE_LATENCY_BOUNDS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How long unsettled deliveries took from arriving on the router (from a
/// client's sender) to their outcome coming back to it: the sender's
/// settlement latency through the mesh, measured where it entered.
/// Cumulative counts are made when read; each observation is three relaxed
/// atomic adds (its bucket, the count, the sum).
#[derive(Debug, Default)]
pub struct SettleLatency {
    buckets: [AtomicU64; SETTLE_LATENCY_BOUNDS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A copy of [`SettleLatency`]: per-bucket (not cumulative) counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyRow {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl SettleLatency {
    pub fn observe(&self, delay: Duration) {
        let seconds = delay.as_secs_f64();
        let at = SETTLE_LATENCY_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(SETTLE_LATENCY_BOUNDS.len());
        self.buckets[at].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn read(&self) -> LatencyRow {
        LatencyRow {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            count: self.count.load(Relaxed),
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
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
    /// Of those, unsettled for over 10 s (qdrouterd's `deliveriesStuck`,
    /// a gauge: a stuck delivery leaves it when it settles).
    pub stuck: AtomicU32,
    /// An outgoing link's consumer has given no credit since this moment
    /// (the router's clock in ms, plus one; 0 while it has credit). A link
    /// starts at zero credit, as in qdrouterd.
    pub zero_credit_since: AtomicU64,
    pub stats: LinkStats,
}

impl LinkInfo {
    /// Records an outgoing link's credit as its connection last saw it
    /// (`now` from [`ReadModel::clock_ms`]): the moment it reached zero is
    /// kept until credit comes back.
    pub fn note_credit(&self, credit: u32, now: u64) {
        let since = self.zero_credit_since.load(Relaxed);
        if credit == 0 && since == 0 {
            self.zero_credit_since.store(now, Relaxed);
        } else if credit > 0 && since != 0 {
            self.zero_credit_since.store(0, Relaxed);
        }
    }

    /// Whole seconds the link has been at zero credit (qdrouterd's
    /// `zeroCreditSeconds`; 0 while it has credit).
    pub fn zero_credit_seconds(&self, now: u64) -> u64 {
        match self.zero_credit_since.load(Relaxed) {
            0 => 0,
            since => now.saturating_sub(since) / 1000,
        }
    }
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
    /// The authenticated user (`anonymous` for ANONYMOUS), if it used SASL.
    pub user: OnceLock<String>,
    /// The TLS session, on a TLS listener (set once the handshake is done,
    /// before the AMQP header is read).
    pub tls: OnceLock<TlsInfo>,
    pub opened: AtomicBool,
    pub since: Instant,
    /// Seconds since the Unix epoch of the last delivery, 0 for none.
    pub last_delivery: AtomicU64,
    pub links: Mutex<Vec<Arc<LinkInfo>>>,
}

/// What a connection's TLS session negotiated (management's `sslProto`,
/// `sslCipher`, `sslSsf`) and who the peer's certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: String,
    /// The IANA name of the cipher suite, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The cipher's key length in bits (the security strength factor).
    pub ssf: u32,
    /// The subject of the client certificate the handshake verified, as an
    /// RFC 4514 string (`CN=client,O=Bote Test`); `None` when the client
    /// presented none. SASL EXTERNAL takes its identity from here.
    pub peer_subject: Option<String>,
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
            user: OnceLock::new(),
            tls: OnceLock::new(),
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

    /// How many links the connection has (without copying the list).
    pub fn link_count(&self) -> usize {
        match self.links.lock() {
            Ok(l) => l.len(),
            Err(poisoned) => poisoned.into_inner().len(),
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
    /// Arrival to outcome of the unsettled deliveries senders gave the router.
    pub settle_latency: SettleLatency,
    /// The sorted connection ids of the last listing that started at the
    /// first entity, and when it was made: the later pages of the same
    /// listing are cut from it ([`ReadModel::listing`]).
    listing: Mutex<Option<(Instant, Arc<[ConnId]>)>>,
}

/// How long the later pages of a paged listing reuse the ids its first
/// page listed (qdstat asks for its pages back to back).
const LISTING_REUSE: Duration = Duration::from_secs(2);

impl Default for ReadModel {
    fn default() -> Self {
        ReadModel {
            connections: DashMap::new(),
            next_link: AtomicU64::new(0),
            retired_in: LinkStats::default(),
            retired_out: LinkStats::default(),
            started: Instant::now(),
            settle_latency: SettleLatency::default(),
            listing: Mutex::new(None),
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
    /// Deliveries stuck on the links open now.
    pub stuck: u64,
    /// Links open now whose consumer has given no credit for over
    /// [`BLOCKED_SECONDS`] (qdrouterd's `linksBlocked`).
    pub blocked: u64,
}

impl Totals {
    /// Adds the outcomes of deliveries that came in over inter-router
    /// streams (their `delivered` and `presettled` are not ingress, and
    /// stay out): qdrouterd counts a router's outcomes on every incoming
    /// link.
    pub fn add_inter_router_outcomes(&mut self, row: StatsRow) {
        let i = &mut self.incoming;
        i.accepted += row.accepted;
        i.rejected += row.rejected;
        i.released += row.released;
        i.modified += row.modified;
    }
}

/// A link at zero credit for longer than this is blocked (qdrouterd's
/// production age).
pub const BLOCKED_SECONDS: u64 = 10;

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
            stuck: AtomicU32::new(0),
            zero_credit_since: AtomicU64::new(match dir {
                LinkDir::Out => self.clock_ms(),
                LinkDir::In => 0,
            }),
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

    /// The ids of every connection, in order: what a page of
    /// [`ReadModel::connections`] is cut from without touching (or
    /// counting references to) the connections themselves.
    pub fn connection_ids(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.connections.iter().map(|e| *e.key()).collect();
        ids.sort_unstable();
        ids
    }

    /// The sorted connection ids a page from `offset` is cut from: listed
    /// afresh for the first page (`offset` 0); for a later one, those of
    /// the first page when it was listed within [`LISTING_REUSE`], so the
    /// pages of one paged listing are cut from one list (a connection that
    /// opens meanwhile does not shift the later pages; one that closes is
    /// left out of them) and 10,000 connections are not sorted again for
    /// each page of 500.
    pub fn listing(&self, offset: usize) -> Arc<[ConnId]> {
        let mut last = match self.listing.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if offset > 0
            && let Some((at, ids)) = last.as_ref()
            && at.elapsed() < LISTING_REUSE
        {
            return ids.clone();
        }
        let ids: Arc<[ConnId]> = self.connection_ids().into();
        *last = Some((Instant::now(), ids.clone()));
        ids
    }

    /// The connections of `ids` that are still open, in that order.
    pub fn connections_of(&self, ids: &[ConnId]) -> Vec<Arc<ConnectionInfo>> {
        ids.iter()
            .filter_map(|id| self.connections.get(id).map(|c| c.value().clone()))
            .collect()
    }

    /// The router's clock for [`LinkInfo::zero_credit_since`]: ms since it
    /// started, plus one (never 0).
    pub fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// The router-wide totals. A link retired while this runs may be
    /// counted twice or not at all for that moment; the next read is exact.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            incoming: self.retired_in.read(),
            outgoing: self.retired_out.read(),
            links: 0,
            stuck: 0,
            blocked: 0,
        };
        let now = self.clock_ms();
        for c in self.connections.iter() {
            for l in c.value().links() {
                t.links += 1;
                t.stuck += u64::from(l.stuck.load(Relaxed));
                if l.zero_credit_seconds(now) > BLOCKED_SECONDS {
                    t.blocked += 1;
                }
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
    fn later_pages_of_a_listing_are_cut_from_the_ids_its_first_page_listed() {
        let model = ReadModel::default();
        let open = |id| model.add_connection(Arc::new(ConnectionInfo::new(ConnId(id), "h".into())));
        for id in [3, 1, 2] {
            open(id);
        }
        assert_eq!(&*model.listing(0), &[ConnId(1), ConnId(2), ConnId(3)]);
        open(0);
        model.remove_connection(ConnId(2));
        // The next page of the same listing: the new connection does not
        // shift it; the closed one is left out when its entity is read.
        let ids = model.listing(2);
        assert_eq!(&*ids, &[ConnId(1), ConnId(2), ConnId(3)]);
        let page: Vec<ConnId> = model
            .connections_of(&ids[1..])
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(page, [ConnId(3)]);
        // A new listing sees both changes.
        assert_eq!(&*model.listing(0), &[ConnId(0), ConnId(1), ConnId(3)]);
    }

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

    #[test]
    fn delays_count_as_qdrouterd_counts_them() {
        let s = LinkStats::default();
        for ms in [10, 1_000, 1_001, 9_999, 10_000, 10_001, 60_000] {
            s.settled_after(Duration::from_millis(ms));
        }
        // over 1 s and at most 10 s: 1.001, 9.999, 10.000; over 10 s: two.
        let row = s.read();
        assert_eq!((row.delayed_1sec, row.delayed_10sec), (3, 2));
    }

    #[test]
    fn settle_latency_buckets_are_upper_bounds() {
        let h = SettleLatency::default();
        h.observe(Duration::from_micros(50)); // on the first bound
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_millis(1500));
        h.observe(Duration::from_secs(3600)); // beyond the last bound
        let row = h.read();
        assert_eq!(row.count, 4);
        assert_eq!(row.buckets.len(), SETTLE_LATENCY_BOUNDS.len() + 1);
        assert_eq!(row.buckets[0], 1);
        assert_eq!(row.buckets[1], 1);
        let at_2_5 = SETTLE_LATENCY_BOUNDS
            .iter()
            .position(|&b| b == 2.5)
            .unwrap();
        assert_eq!(row.buckets[at_2_5], 1);
        assert_eq!(row.buckets[SETTLE_LATENCY_BOUNDS.len()], 1);
        assert!((row.sum_seconds - 3_601.500_101).abs() < 1e-6);
    }
}
