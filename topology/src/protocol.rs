//! The control protocol as a sans-I/O state machine (quinn-proto / raft-rs
//! shape): hellos, pushed link-state flooding, incremental address updates,
//! and digest-based anti-entropy.
//!
//! Driving it: feed inputs (`neighbour_up`, `neighbour_down`, `set_link_cost`,
//! `handle_message`, `add_local_address`, `remove_local_address`,
//! `handle_timeout`), then drain [`ControlPlane::poll_output`] and call
//! `handle_timeout` at [`ControlPlane::poll_timeout`]. Outputs are messages to
//! send to neighbours, [`Output::RoutesChanged`] (read [`ControlPlane::routes`])
//! and [`Output::AddressesChanged`].
//!
//! Protocol summary:
//! - **Neighbours**: the transport reports a neighbour up (stream open) or down
//!   (stream closed: the adjacency is dropped at once). Both ends send
//!   [`Hello`] at once and then every `hello_interval`; an adjacency is
//!   *two-way* once the peer's hello lists us, and only two-way neighbours go
//!   into our link-state record. A neighbour silent for `hello_timeout` (any
//!   message counts, and so does data the transport reports through
//!   [`ControlPlane::heard`]) loses its adjacency until it is heard again.
//! - **Link cost**: one end of each link decides its cost
//!   ([`CostAuthority`]): in a router, the end that dialled (its connector
//!   has the configured cost). That end states the cost in its hellos; the
//!   other end adopts the stated cost, so both records announce the same
//!   cost. [`ControlPlane::set_link_cost`] on the deciding end sends a hello
//!   at once, so the neighbour follows within one message latency. When both
//!   ends decide (the default of [`ControlPlane::neighbour_up`]), stated
//!   costs are ignored and the edge costs the larger of the two.
//! - **Link state**: on any change of our adjacencies we originate a new
//!   record (sequence + 1) and push it to every two-way neighbour. A received
//!   record newer than the held one is stored and flooded on to every two-way
//!   neighbour except the sender; duplicates and stale copies stop there.
//!   Routes are recomputed `route_debounce` after the first change.
//! - **Addresses**: each router owns a set of mobile addresses with its own
//!   `(instance, sequence)`; changes are flooded as [`AddressUpdate`] deltas
//!   and applied only when contiguous (sequence = held + 1, or 1 on a new
//!   instance); a gap triggers an [`AddressRequest`] answered with an
//!   [`AddressSnapshot`].
//! - **Anti-entropy**: every `digest_interval` each router sends a summary
//!   [`Digest`] (two XOR hashes over all held versions) to each two-way
//!   neighbour. On a mismatch the receiver answers with its full digest
//!   (per-origin versions); the first side then pushes what the other lacks or
//!   holds older and requests what it holds older. The same full-digest
//!   exchange syncs a new adjacency. Lost updates are thus repaired within
//!   about one digest interval plus a few round trips.
//! - **Restarts**: a router comes back with a greater instance id; its new
//!   record supersedes the old one everywhere and clears the address set of
//!   its previous life. If we receive a copy of *our own* record newer than
//!   ours (a previous life with a clock gone back), we jump past it.
//! - **Ageing**: records and address sets of routers unreachable from us are
//!   removed `unreachable_retention` after they became unreachable (they stay
//!   that long so late flood copies are recognised as duplicates).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::ids::{
    Address, Cost, InstanceId, RouterId, Sequence, Version, entry_hash, string_field_len,
    varint_field_len,
};
use crate::lsdb::{LinkStateDb, LinkStateRecord};
use crate::routes::{Routes, TopologyCache};

/// Timers and modes of the control protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// Interval between hellos to each neighbour (default 1 s).
    pub hello_interval: Duration,
    /// Silence after which a neighbour's adjacency is dropped (default 3 s).
    pub hello_timeout: Duration,
    /// Delay from the first database change to the route recompute (default 5 ms).
    pub route_debounce: Duration,
    /// Interval between summary digests to each neighbour (default 3 s).
    pub digest_interval: Duration,
    /// How long records of unreachable routers are kept (default 30 s).
    pub unreachable_retention: Duration,
    /// Own link-state origination and outgoing link-state floods wait this
    /// long after the first pending item, so a burst (several adjacencies
    /// coming up, many records arriving) travels as one record version and
    /// one message per neighbour (OSPF's MinLSInterval idea, in
    /// milliseconds). Default 2 ms; zero sends at once.
    pub batch_delay: Duration,
    /// qdrouterd mode: when set, routes are recomputed and our own changes
    /// (link state, addresses) are sent only on this tick; None (Bote) acts at once.
    pub tick: Option<Duration>,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            hello_interval: Duration::from_secs(1),
            hello_timeout: Duration::from_secs(3),
            route_debounce: Duration::from_millis(5),
            digest_interval: Duration::from_secs(3),
            unreachable_retention: Duration::from_secs(30),
            batch_delay: Duration::from_millis(2),
            tick: None,
        }
    }
}

impl ProtocolConfig {
    /// Mimics qdrouterd's timers for comparison in the simulator: 1 s tick
    /// (recompute and originate only on the tick), hello 1 s, neighbour dead
    /// after 3 s, anti-entropy every 4 s (qdrouterd's RA interval while in
    /// flux). qdrouterd's pull (RA -> LSR -> LSU) is approximated by the
    /// tick-aligned origination; flooding itself is not delayed.
    pub fn qdrouterd_like() -> Self {
        ProtocolConfig {
            hello_interval: Duration::from_secs(1),
            hello_timeout: Duration::from_secs(3),
            route_debounce: Duration::ZERO,
            digest_interval: Duration::from_secs(4),
            unreachable_retention: Duration::from_secs(30),
            batch_delay: Duration::ZERO,
            tick: Some(Duration::from_secs(1)),
        }
    }

    /// Checks the timers are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hello_interval.is_zero() {
            return Err(ConfigError::ZeroInterval("hello_interval"));
        }
        if self.digest_interval.is_zero() {
            return Err(ConfigError::ZeroInterval("digest_interval"));
        }
        if self.tick.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::ZeroInterval("tick"));
        }
        if self.hello_timeout <= self.hello_interval {
            return Err(ConfigError::HelloTimeoutTooShort {
                timeout: self.hello_timeout,
                interval: self.hello_interval,
            });
        }
        Ok(())
    }
}

/// A rejected [`ProtocolConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A periodic timer of zero.
    #[error("protocol config: {0} must be greater than zero")]
    ZeroInterval(&'static str),
    /// Hello timeout not longer than the hello interval.
    #[error(
        "protocol config: hello_timeout ({timeout:?}) must exceed hello_interval ({interval:?})"
    )]
    HelloTimeoutTooShort {
        /// The configured timeout.
        timeout: Duration,
        /// The configured interval.
        interval: Duration,
    },
}

/// Periodic liveness message and two-way check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender.
    pub router: RouterId,
    /// The sender's instance id.
    pub instance: InstanceId,
    /// Neighbours the sender has heard a hello from, sorted.
    pub seen: Vec<RouterId>,
    /// The cost of the link between sender and receiver when the sender
    /// decides it ([`CostAuthority::Local`] on its side); `None` otherwise.
    pub cost: Option<Cost>,
}

/// Which end of a link decides its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CostAuthority {
    /// This router decides (in `boted`: it dialled the link, and the cost is
    /// its connector's). Its hellos state the cost; costs stated by the
    /// neighbour are ignored.
    #[default]
    Local,
    /// The neighbour decides: this router adopts the cost stated in the
    /// neighbour's hellos (a hello that states none changes nothing), and
    /// states none itself.
    Neighbour,
}

/// Link-state records pushed to a neighbour (one or more, batched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStateUpdate {
    /// The records, shared.
    pub records: Vec<Arc<LinkStateRecord>>,
}

/// Asks a neighbour for records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStateRequest {
    /// The origins wanted; None = the whole database.
    pub origins: Option<Vec<RouterId>>,
}

/// An incremental change of one origin's address set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressUpdate {
    /// The router whose consumers changed.
    pub origin: RouterId,
    /// Its instance.
    pub instance: InstanceId,
    /// Sequence of the set after this change (previous + 1).
    pub sequence: Sequence,
    /// Addresses gained.
    pub added: Vec<Address>,
    /// Addresses lost.
    pub removed: Vec<Address>,
}

/// One origin's versions in a full digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestEntry {
    /// The origin.
    pub origin: RouterId,
    /// Version of its link-state record held.
    pub link_state: Option<Version>,
    /// Version of its address set held.
    pub addresses: Option<Version>,
}

/// Anti-entropy digest: the summary form carries only hashes; the full form
/// also lists per-origin versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// XOR hash of all held link-state versions.
    pub link_state_hash: u64,
    /// XOR hash of all held address-set versions.
    pub address_hash: u64,
    /// None: summary. Some: full digest, sorted by origin.
    pub entries: Option<Vec<DigestEntry>>,
}

/// Asks a neighbour for the full address sets of some origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRequest {
    /// The origins wanted.
    pub origins: Vec<RouterId>,
}

/// One origin's complete address set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSnapshot {
    /// The origin.
    pub origin: RouterId,
    /// Its instance.
    pub instance: InstanceId,
    /// Its sequence.
    pub sequence: Sequence,
    /// Every address it has consumers for, sorted.
    pub addresses: Vec<Address>,
}

/// A router-to-router control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`LinkStateUpdate`].
    LinkStateUpdate(LinkStateUpdate),
    /// See [`LinkStateRequest`].
    LinkStateRequest(LinkStateRequest),
    /// See [`AddressUpdate`] (shared: one allocation however far it floods).
    AddressUpdate(Arc<AddressUpdate>),
    /// See [`Digest`].
    Digest(Digest),
    /// See [`AddressRequest`].
    AddressRequest(AddressRequest),
    /// See [`AddressSnapshot`].
    AddressSnapshot(AddressSnapshot),
}

fn version_len(v: Option<Version>) -> usize {
    v.map_or(0, |(i, s)| 2 + varint_field_len(i) + varint_field_len(s))
}

impl ControlMessage {
    /// Estimated protobuf-encoded payload size in bytes: a oneof tag and
    /// length, strings as tag + length + bytes, integers as varints, fixed64
    /// hashes as 9 bytes, repeated sub-messages with 2 bytes of framing each.
    /// Excludes transport framing (gRPC adds 5 bytes, HTTP/2 9 per frame).
    pub fn wire_size(&self) -> usize {
        let body = match self {
            ControlMessage::Hello(h) => {
                string_field_len(h.router.as_str())
                    + varint_field_len(h.instance)
                    + h.seen
                        .iter()
                        .map(|r| string_field_len(r.as_str()))
                        .sum::<usize>()
                    + h.cost.map_or(0, |c| varint_field_len(u64::from(c)))
            }
            ControlMessage::LinkStateUpdate(u) => u.records.iter().map(|r| 2 + r.wire_size()).sum(),
            ControlMessage::LinkStateRequest(r) => {
                1 + r
                    .origins
                    .as_ref()
                    .map_or(0, |o| o.iter().map(|r| string_field_len(r.as_str())).sum())
            }
            ControlMessage::AddressUpdate(u) => {
                string_field_len(u.origin.as_str())
                    + varint_field_len(u.instance)
                    + varint_field_len(u.sequence)
                    + u.added
                        .iter()
                        .chain(&u.removed)
                        .map(|a| string_field_len(a.as_str()))
                        .sum::<usize>()
            }
            ControlMessage::Digest(d) => {
                18 + d.entries.as_ref().map_or(0, |e| {
                    e.iter()
                        .map(|e| {
                            2 + string_field_len(e.origin.as_str())
                                + version_len(e.link_state)
                                + version_len(e.addresses)
                        })
                        .sum()
                })
            }
            ControlMessage::AddressRequest(r) => {
                r.origins.iter().map(|o| string_field_len(o.as_str())).sum()
            }
            ControlMessage::AddressSnapshot(s) => {
                string_field_len(s.origin.as_str())
                    + varint_field_len(s.instance)
                    + varint_field_len(s.sequence)
                    + s.addresses
                        .iter()
                        .map(|a| string_field_len(a.as_str()))
                        .sum::<usize>()
            }
        };
        1 + crate::ids::varint_len(body as u64) + body
    }

    /// Short name of the message kind (for counters).
    pub fn kind(&self) -> &'static str {
        match self {
            ControlMessage::Hello(_) => "hello",
            ControlMessage::LinkStateUpdate(_) => "link_state_update",
            ControlMessage::LinkStateRequest(_) => "link_state_request",
            ControlMessage::AddressUpdate(_) => "address_update",
            ControlMessage::Digest(_) => "digest",
            ControlMessage::AddressRequest(_) => "address_request",
            ControlMessage::AddressSnapshot(_) => "address_snapshot",
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `message` to neighbour `to`.
    Send {
        /// The neighbour.
        to: RouterId,
        /// The message.
        message: ControlMessage,
    },
    /// The routing table changed: read [`ControlPlane::routes`].
    RoutesChanged,
    /// The router sets of these addresses changed: read [`ControlPlane::address_table`].
    AddressesChanged {
        /// Changed addresses, sorted.
        addresses: Vec<Address>,
    },
}

/// A connected neighbour router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Our cost to it.
    pub cost: Cost,
    /// Which end decides `cost`.
    pub authority: CostAuthority,
    /// Its instance, once a hello has been heard (None again after a hello timeout).
    pub instance: Option<InstanceId>,
    /// True while its hellos list us: the adjacency is in our record.
    pub two_way: bool,
    /// When we last heard any message from it.
    pub last_heard: Duration,
}

/// Who has consumers for one address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressEntry {
    /// The local router has consumers.
    pub local: bool,
    /// Reachable remote routers with consumers.
    pub routers: BTreeSet<RouterId>,
}

/// Address -> routers with consumers (reachable remote ones, plus local).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressTable {
    entries: BTreeMap<Address, AddressEntry>,
}

impl AddressTable {
    /// The entry of an address.
    pub fn get(&self, address: &Address) -> Option<&AddressEntry> {
        self.entries.get(address)
    }

    /// All entries, ordered by address.
    pub fn iter(&self) -> impl Iterator<Item = (&Address, &AddressEntry)> {
        self.entries.iter()
    }

    /// Number of addresses with a consumer somewhere.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no address has a consumer.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn change(&mut self, address: &Address, f: impl FnOnce(&mut AddressEntry) -> bool) -> bool {
        let entry = self.entries.entry(address.clone()).or_default();
        let changed = f(entry);
        if !entry.local && entry.routers.is_empty() {
            self.entries.remove(address);
        }
        changed
    }
}

#[derive(Debug, Clone, Default)]
struct AddressState {
    version: Version,
    addresses: BTreeSet<Address>,
}

/// One router's control plane.
#[derive(Debug)]
pub struct ControlPlane {
    id: RouterId,
    instance: InstanceId,
    config: ProtocolConfig,
    lsdb: LinkStateDb,
    own_sequence: Sequence,
    ls_dirty: bool,
    neighbours: BTreeMap<RouterId, Neighbour>,
    routes: Arc<Routes>,
    recompute_at: Option<Duration>,
    recomputes: u64,
    flush_at: Option<Duration>,
    tick_passed: bool,
    // addresses
    local_addresses: BTreeSet<Address>,
    own_address_sequence: Sequence,
    pending_added: BTreeSet<Address>,
    pending_removed: BTreeSet<Address>,
    remote_addresses: BTreeMap<RouterId, AddressState>,
    address_hash: u64,
    own_address_hashed: Option<Version>,
    address_forwarded: BTreeMap<RouterId, Version>,
    address_requested: BTreeMap<RouterId, Duration>,
    table: AddressTable,
    changed_addresses: BTreeSet<Address>,
    // ageing
    unreachable_since: BTreeMap<RouterId, Duration>,
    next_expiry: Option<Duration>,
    // timers
    next_hello: Duration,
    next_digest: Duration,
    next_tick: Option<Duration>,
    // outputs
    pending_floods: BTreeMap<RouterId, BTreeMap<RouterId, Arc<LinkStateRecord>>>,
    /// Per neighbour, the origins left out of the full digest sent when it
    /// became two-way because they were not reachable yet (their records may
    /// have arrived before that neighbour was two-way, so they were never
    /// flooded to it). Pushed to it as soon as a recompute finds them
    /// reachable; otherwise the neighbour would wait for the next digest.
    held_back: BTreeMap<RouterId, BTreeSet<RouterId>>,
    pending_address_requests: BTreeMap<RouterId, BTreeSet<RouterId>>,
    outputs: VecDeque<Output>,
    /// Graphs shared with other control planes of this process, if any.
    topology_cache: Option<Arc<TopologyCache>>,
}

fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

impl ControlPlane {
    /// A router with no neighbours. Zero intervals are raised to 1 ms (use
    /// [`ProtocolConfig::validate`] to reject them instead).
    pub fn new(id: RouterId, instance: InstanceId, config: ProtocolConfig, now: Duration) -> Self {
        let mut config = config;
        config.hello_interval = at_least_1ms(config.hello_interval);
        config.digest_interval = at_least_1ms(config.digest_interval);
        config.tick = config.tick.map(at_least_1ms);
        let mut lsdb = LinkStateDb::new();
        lsdb.offer(Arc::new(LinkStateRecord::new(id.clone(), instance, 1, [])));
        let routes = Arc::new(Routes::compute(&id, &lsdb));
        ControlPlane {
            address_hash: 0,
            own_address_hashed: None,
            next_hello: now + config.hello_interval,
            next_digest: now + config.digest_interval,
            next_tick: config.tick.map(|t| now + t),
            id,
            instance,
            config,
            lsdb,
            own_sequence: 1,
            ls_dirty: false,
            neighbours: BTreeMap::new(),
            routes,
            recompute_at: None,
            recomputes: 0,
            flush_at: None,
            tick_passed: false,
            local_addresses: BTreeSet::new(),
            own_address_sequence: 0,
            pending_added: BTreeSet::new(),
            pending_removed: BTreeSet::new(),
            remote_addresses: BTreeMap::new(),
            address_forwarded: BTreeMap::new(),
            address_requested: BTreeMap::new(),
            table: AddressTable::default(),
            changed_addresses: BTreeSet::new(),
            unreachable_since: BTreeMap::new(),
            next_expiry: None,
            pending_floods: BTreeMap::new(),
            held_back: BTreeMap::new(),
            pending_address_requests: BTreeMap::new(),
            outputs: VecDeque::new(),
            topology_cache: None,
        }
    }

    /// Shares built graphs with other control planes in this process that
    /// hold the same link-state database (see [`TopologyCache`]); the
    /// routes computed are the same, only built once.
    pub fn share_topologies(&mut self, cache: Arc<TopologyCache>) {
        self.topology_cache = Some(cache);
    }

    // ----- queries -----

    /// This router's id.
    pub fn id(&self) -> &RouterId {
        &self.id
    }

    /// This router's instance id.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// The configuration in force.
    pub fn config(&self) -> &ProtocolConfig {
        &self.config
    }

    /// The current routing table.
    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// The link-state database.
    pub fn lsdb(&self) -> &LinkStateDb {
        &self.lsdb
    }

    /// Address -> routers with consumers.
    pub fn address_table(&self) -> &AddressTable {
        &self.table
    }

    /// Connected neighbours, ordered by id.
    pub fn neighbours(&self) -> impl Iterator<Item = (&RouterId, &Neighbour)> {
        self.neighbours.iter()
    }

    /// One neighbour.
    pub fn neighbour(&self, id: &RouterId) -> Option<&Neighbour> {
        self.neighbours.get(id)
    }

    /// Addresses with local consumers.
    pub fn local_addresses(&self) -> &BTreeSet<Address> {
        &self.local_addresses
    }

    /// The address set held for `origin` (our own for our id), with its version.
    pub fn addresses_of(&self, origin: &RouterId) -> Option<(Version, &BTreeSet<Address>)> {
        if *origin == self.id {
            return Some((
                (self.instance, self.own_address_sequence),
                &self.local_addresses,
            ));
        }
        self.remote_addresses
            .get(origin)
            .map(|s| (s.version, &s.addresses))
    }

    /// XOR hash over all held address-set versions (equal on converged routers).
    pub fn address_digest_hash(&self) -> u64 {
        self.address_hash
    }

    /// Number of route recomputes run so far (for the simulator's counters).
    pub fn recompute_count(&self) -> u64 {
        self.recomputes
    }

    /// True while a route recompute is pending.
    pub fn recompute_pending(&self) -> bool {
        self.recompute_at.is_some()
    }

    /// True when a route recompute is due at `now` ([`Self::handle_timeout`]
    /// then runs it).
    pub fn recompute_due(&self, now: Duration) -> bool {
        self.recompute_at.is_some_and(|t| now >= t)
    }

    /// True while the routes may still change without new input: a
    /// recompute is pending, or a change of our own adjacencies waits to be
    /// originated (which schedules one).
    pub fn route_change_pending(&self) -> bool {
        self.recompute_at.is_some() || self.ls_dirty
    }

    // ----- outputs -----

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`ControlPlane::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let mut t = self.next_hello.min(self.next_digest);
        for d in [
            self.next_tick,
            self.recompute_at,
            self.next_expiry,
            self.flush_at,
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(d);
        }
        for n in self.neighbours.values() {
            if n.instance.is_some() {
                t = t.min(n.last_heard + self.config.hello_timeout);
            }
        }
        Some(t)
    }

    // ----- inputs -----

    /// The transport to `peer` is up with link cost `cost`, decided by this
    /// router ([`CostAuthority::Local`]): re-announcing an existing
    /// neighbour only updates the cost. Sends a hello at once.
    pub fn neighbour_up(&mut self, peer: RouterId, cost: Cost, now: Duration) {
        self.neighbour_up_with(peer, cost, CostAuthority::Local, now);
    }

    /// [`ControlPlane::neighbour_up`] saying which end decides the cost: with
    /// [`CostAuthority::Neighbour`], `cost` holds until the neighbour's hellos
    /// state another. Re-announcing an existing neighbour updates the cost and
    /// the authority.
    pub fn neighbour_up_with(
        &mut self,
        peer: RouterId,
        cost: Cost,
        authority: CostAuthority,
        now: Duration,
    ) {
        if peer == self.id {
            return;
        }
        let cost = cost.max(1);
        match self.neighbours.get_mut(&peer) {
            Some(n) => {
                n.authority = authority;
                if n.cost != cost {
                    n.cost = cost;
                    self.ls_dirty |= n.two_way;
                    if authority == CostAuthority::Local {
                        self.send_hello(&peer);
                    }
                }
            }
            None => {
                self.neighbours.insert(
                    peer.clone(),
                    Neighbour {
                        cost,
                        authority,
                        instance: None,
                        two_way: false,
                        last_heard: now,
                    },
                );
                self.send_hello(&peer);
            }
        }
        self.flush(now, false);
    }

    /// The transport to `peer` closed: the adjacency is dropped at once.
    pub fn neighbour_down(&mut self, peer: &RouterId, now: Duration) {
        if let Some(n) = self.neighbours.remove(peer) {
            self.ls_dirty |= n.two_way;
            self.pending_floods.remove(peer);
            self.pending_address_requests.remove(peer);
            self.held_back.remove(peer);
        }
        self.flush(now, false);
    }

    /// Changes our cost to `peer` (raised to at least 1). When this router
    /// decides the link's cost ([`CostAuthority::Local`]) a hello stating it
    /// goes to `peer` at once, so that the neighbour adopts it without
    /// waiting for the hello interval. On a link whose cost the neighbour
    /// decides, the change lasts until its next hello states its cost.
    pub fn set_link_cost(&mut self, peer: &RouterId, cost: Cost, now: Duration) {
        let cost = cost.max(1);
        if let Some(n) = self.neighbours.get_mut(peer)
            && n.cost != cost
        {
            n.cost = cost;
            self.ls_dirty |= n.two_way;
            if n.authority == CostAuthority::Local {
                self.send_hello(peer);
            }
        }
        self.flush(now, false);
    }

    /// A local consumer for `address` exists (idempotent: the router keeps the
    /// per-link count and calls this on 0 -> 1).
    pub fn add_local_address(&mut self, address: Address, now: Duration) {
        self.local_address_added(address);
        self.flush(now, false);
    }

    /// The last local consumer for `address` is gone (idempotent).
    pub fn remove_local_address(&mut self, address: &Address, now: Duration) {
        self.local_address_removed(address);
        self.flush(now, false);
    }

    /// Several local address changes at once, applied in order (`true`:
    /// the first local consumer attached, `false`: the last one left), and
    /// announced in one [`AddressUpdate`]: a router that attaches thousands
    /// of addresses in a burst floods a few updates, not one per address.
    pub fn change_local_addresses(
        &mut self,
        changes: impl IntoIterator<Item = (Address, bool)>,
        now: Duration,
    ) {
        for (address, present) in changes {
            if present {
                self.local_address_added(address);
            } else {
                self.local_address_removed(&address);
            }
        }
        self.flush(now, false);
    }

    fn local_address_added(&mut self, address: Address) {
        if self.local_addresses.insert(address.clone()) {
            if !self.pending_removed.remove(&address) {
                self.pending_added.insert(address.clone());
            }
            if self
                .table
                .change(&address, |e| !std::mem::replace(&mut e.local, true))
            {
                self.changed_addresses.insert(address);
            }
        }
    }

    fn local_address_removed(&mut self, address: &Address) {
        if self.local_addresses.remove(address) {
            if !self.pending_added.remove(address) {
                self.pending_removed.insert(address.clone());
            }
            if self
                .table
                .change(address, |e| std::mem::replace(&mut e.local, false))
            {
                self.changed_addresses.insert(address.clone());
            }
        }
    }

    /// Time has passed: hellos, digests, neighbour timeouts, the debounced
    /// recompute, the tick and ageing.
    pub fn handle_timeout(&mut self, now: Duration) {
        if now >= self.next_hello {
            let peers: Vec<RouterId> = self.neighbours.keys().cloned().collect();
            for p in &peers {
                self.send_hello(p);
            }
            self.next_hello = now + self.config.hello_interval;
        }
        if now >= self.next_digest {
            let digest = ControlMessage::Digest(Digest {
                link_state_hash: self.lsdb.digest_hash(),
                address_hash: self.address_hash,
                entries: None,
            });
            for (p, n) in &self.neighbours {
                if n.two_way {
                    self.outputs.push_back(Output::Send {
                        to: p.clone(),
                        message: digest.clone(),
                    });
                }
            }
            self.next_digest = now + self.config.digest_interval;
        }
        let timeout = self.config.hello_timeout;
        for n in self.neighbours.values_mut() {
            if n.instance.is_some() && n.last_heard + timeout <= now {
                n.instance = None;
                if n.two_way {
                    n.two_way = false;
                    self.ls_dirty = true;
                }
            }
        }
        let mut tick_due = false;
        if let (Some(t), Some(tick)) = (self.next_tick, self.config.tick)
            && now >= t
        {
            tick_due = true;
            let mut next = t + tick;
            while next <= now {
                next += tick;
            }
            self.next_tick = Some(next);
        }
        if self.next_expiry.is_some_and(|t| now >= t) {
            self.expire(now);
        }
        // Originate before recomputing so a tick-aligned recompute sees our own change.
        self.flush(now, tick_due);
        if self.recompute_at.is_some_and(|t| now >= t) {
            self.recompute(now);
        }
        self.flush(now, false);
    }

    /// Neighbour `from` was heard from by other means than a control
    /// message (the transport saw data from it): it is alive, as a
    /// message would show. A hello queued behind a flood of data arrives
    /// late; this keeps the adjacency meanwhile.
    pub fn heard(&mut self, from: &RouterId, now: Duration) {
        if let Some(n) = self.neighbours.get_mut(from) {
            n.last_heard = n.last_heard.max(now);
        }
    }

    /// A control message from neighbour `from`. Messages from routers that
    /// are not connected neighbours are ignored.
    pub fn handle_message(&mut self, from: &RouterId, message: ControlMessage, now: Duration) {
        let Some(n) = self.neighbours.get_mut(from) else {
            return;
        };
        n.last_heard = now;
        match message {
            ControlMessage::Hello(h) => self.on_hello(from, h),
            ControlMessage::LinkStateUpdate(u) => self.on_link_state_update(from, u, now),
            ControlMessage::LinkStateRequest(r) => self.on_link_state_request(from, r),
            ControlMessage::AddressUpdate(u) => self.on_address_update(from, u, now),
            ControlMessage::Digest(d) => self.on_digest(from, d, now),
            ControlMessage::AddressRequest(r) => self.on_address_request(from, r),
            ControlMessage::AddressSnapshot(s) => self.on_address_snapshot(from, s),
        }
        self.flush(now, false);
    }

    // ----- message handlers -----

    fn on_hello(&mut self, from: &RouterId, hello: Hello) {
        if hello.router != *from {
            return;
        }
        let me = self.id.clone();
        let Some(n) = self.neighbours.get_mut(from) else {
            return;
        };
        let restarted = n.instance.is_some_and(|i| i != hello.instance);
        let first = n.instance.is_none() || restarted;
        n.instance = Some(hello.instance);
        if n.authority == CostAuthority::Neighbour
            && let Some(cost) = hello.cost
        {
            let cost = cost.max(1);
            if n.cost != cost {
                n.cost = cost;
                self.ls_dirty |= n.two_way;
            }
        }
        let mut two_way = hello.seen.contains(&me);
        if restarted && n.two_way {
            // Its adjacency state is of its previous life: redo the two-way check.
            n.two_way = false;
            self.ls_dirty = true;
            two_way = false;
        }
        let became_two_way = two_way && !n.two_way;
        if two_way != n.two_way {
            n.two_way = two_way;
            self.ls_dirty = true;
        }
        if first {
            self.send_hello(from);
        }
        if became_two_way {
            let digest = self.full_digest();
            self.send(from, ControlMessage::Digest(digest));
            let held: BTreeSet<RouterId> = self
                .lsdb
                .origins()
                .chain(self.remote_addresses.keys())
                .filter(|o| !self.advertisable(o))
                .cloned()
                .collect();
            if held.is_empty() {
                self.held_back.remove(from);
            } else {
                self.held_back.insert(from.clone(), held);
            }
        }
    }

    fn on_link_state_update(&mut self, from: &RouterId, update: LinkStateUpdate, now: Duration) {
        for record in update.records {
            if record.origin == self.id {
                if record.version() > (self.instance, self.own_sequence) {
                    // A copy of a previous life's record: jump past it.
                    self.instance = record.instance;
                    self.own_sequence = record.sequence;
                    self.ls_dirty = true;
                }
                continue;
            }
            let previous_instance = self.lsdb.get(&record.origin).map(|r| r.instance);
            if self.lsdb.offer(record.clone()).is_accepted() {
                if previous_instance.is_some_and(|i| i < record.instance) {
                    self.restart_addresses(&record.origin, record.instance);
                }
                self.flood(Some(from), &record);
                self.schedule_recompute(now);
            }
        }
    }

    fn on_link_state_request(&mut self, from: &RouterId, request: LinkStateRequest) {
        let records: Vec<Arc<LinkStateRecord>> = match request.origins {
            None => self
                .lsdb
                .iter()
                .filter(|r| self.advertisable(&r.origin))
                .cloned()
                .collect(),
            Some(origins) => origins
                .iter()
                .filter_map(|o| self.lsdb.get(o))
                .cloned()
                .collect(),
        };
        let queue = self.pending_floods.entry(from.clone()).or_default();
        for r in records {
            queue.insert(r.origin.clone(), r);
        }
    }

    fn on_address_update(&mut self, from: &RouterId, update: Arc<AddressUpdate>, now: Duration) {
        if update.origin == self.id {
            return;
        }
        let v = (update.instance, update.sequence);
        let held = self.remote_addresses.get(&update.origin).map(|s| s.version);
        let forwarded = self.address_forwarded.get(&update.origin).copied();
        if held.is_none_or(|h| v > h) && forwarded.is_none_or(|f| v > f) {
            self.address_forwarded.insert(update.origin.clone(), v);
            for (p, n) in &self.neighbours {
                if n.two_way && p != from {
                    self.outputs.push_back(Output::Send {
                        to: p.clone(),
                        message: ControlMessage::AddressUpdate(update.clone()),
                    });
                }
            }
        }
        let applies = match held {
            None => update.sequence == 1,
            Some(h) if v <= h => return,
            Some(h) if update.instance > h.0 => update.sequence == 1,
            Some(h) => update.sequence == h.1 + 1,
        };
        if applies {
            if held.is_some_and(|h| update.instance > h.0) {
                self.replace_addresses(&update.origin, (update.instance, 0), BTreeSet::new());
            }
            self.patch_addresses(&update.origin, v, &update.added, &update.removed);
        } else {
            self.request_addresses(from, &update.origin, now);
        }
    }

    fn on_digest(&mut self, from: &RouterId, digest: Digest, now: Duration) {
        match digest.entries {
            None => {
                if digest.link_state_hash != self.lsdb.digest_hash()
                    || digest.address_hash != self.address_hash
                {
                    let full = self.full_digest();
                    self.send(from, ControlMessage::Digest(full));
                }
            }
            Some(entries) => self.reconcile(from, entries, now),
        }
    }

    fn on_address_request(&mut self, from: &RouterId, request: AddressRequest) {
        for origin in &request.origins {
            if let Some(snapshot) = self.snapshot_of(origin) {
                self.send(from, ControlMessage::AddressSnapshot(snapshot));
            }
        }
    }

    /// A snapshot that advances our state is applied and flooded on like an
    /// update (deduplicated by version), so one repaired or newly joined
    /// router's state spreads through the whole mesh.
    fn on_address_snapshot(&mut self, from: &RouterId, snapshot: AddressSnapshot) {
        if snapshot.origin == self.id || snapshot.sequence == 0 {
            return;
        }
        let v = (snapshot.instance, snapshot.sequence);
        let held = self
            .remote_addresses
            .get(&snapshot.origin)
            .map(|s| s.version);
        if held.is_some_and(|h| v <= h) {
            return;
        }
        self.address_requested.remove(&snapshot.origin);
        if self
            .address_forwarded
            .get(&snapshot.origin)
            .is_none_or(|f| v > *f)
        {
            self.address_forwarded.insert(snapshot.origin.clone(), v);
            for (p, n) in &self.neighbours {
                if n.two_way && p != from {
                    self.outputs.push_back(Output::Send {
                        to: p.clone(),
                        message: ControlMessage::AddressSnapshot(snapshot.clone()),
                    });
                }
            }
        }
        self.replace_addresses(
            &snapshot.origin,
            v,
            snapshot.addresses.into_iter().collect(),
        );
    }

    // ----- anti-entropy -----

    fn full_digest(&self) -> Digest {
        let mut entries: BTreeMap<&RouterId, DigestEntry> = BTreeMap::new();
        for r in self.lsdb.iter() {
            if self.advertisable(&r.origin) {
                entries.insert(
                    &r.origin,
                    DigestEntry {
                        origin: r.origin.clone(),
                        link_state: Some(r.version()),
                        addresses: None,
                    },
                );
            }
        }
        if self.own_address_sequence > 0 {
            entries
                .entry(&self.id)
                .or_insert_with(|| DigestEntry {
                    origin: self.id.clone(),
                    link_state: None,
                    addresses: None,
                })
                .addresses = Some((self.instance, self.own_address_sequence));
        }
        for (o, s) in &self.remote_addresses {
            if self.advertisable(o) {
                entries
                    .entry(o)
                    .or_insert_with(|| DigestEntry {
                        origin: o.clone(),
                        link_state: None,
                        addresses: None,
                    })
                    .addresses = Some(s.version);
            }
        }
        Digest {
            link_state_hash: self.lsdb.digest_hash(),
            address_hash: self.address_hash,
            entries: Some(entries.into_values().collect()),
        }
    }

    /// Compares a neighbour's full digest with ours: push what it lacks or
    /// holds older, request what we lack or hold older.
    fn reconcile(&mut self, from: &RouterId, entries: Vec<DigestEntry>, now: Duration) {
        let mut ls_wanted = Vec::new();
        let mut ls_push = Vec::new();
        let mut addr_push = Vec::new();
        let mut listed: BTreeSet<&RouterId> = BTreeSet::new();
        let mut addr_wanted = Vec::new();
        for e in &entries {
            listed.insert(&e.origin);
            let ours_ls = self.lsdb.version_of(&e.origin);
            let ours_addr = self.address_version(&e.origin);
            let mine = e.origin == self.id;
            if e.link_state > ours_ls && !mine {
                ls_wanted.push(e.origin.clone());
            } else if ours_ls > e.link_state && self.advertisable(&e.origin) {
                ls_push.push(e.origin.clone());
            }
            if e.addresses > ours_addr && !mine {
                addr_wanted.push(e.origin.clone());
            } else if ours_addr > e.addresses && self.advertisable(&e.origin) {
                addr_push.push(e.origin.clone());
            }
        }
        for o in self.lsdb.origins() {
            if !listed.contains(o) && self.advertisable(o) {
                ls_push.push(o.clone());
            }
        }
        if !listed.contains(&self.id) && self.own_address_sequence > 0 {
            addr_push.push(self.id.clone());
        }
        for o in self.remote_addresses.keys() {
            if !listed.contains(o) && self.advertisable(o) {
                addr_push.push(o.clone());
            }
        }
        addr_push.sort();
        addr_push.dedup();
        if !ls_wanted.is_empty() {
            self.send(
                from,
                ControlMessage::LinkStateRequest(LinkStateRequest {
                    origins: Some(ls_wanted),
                }),
            );
        }
        for o in ls_push {
            if let Some(r) = self.lsdb.get(&o).cloned() {
                self.pending_floods
                    .entry(from.clone())
                    .or_default()
                    .insert(o, r);
            }
        }
        for o in addr_wanted {
            self.request_addresses(from, &o, now);
        }
        for o in addr_push {
            if let Some(s) = self.snapshot_of(&o) {
                self.send(from, ControlMessage::AddressSnapshot(s));
            }
        }
    }

    /// The address-set version held for `origin`; None for an origin (us
    /// included) that has never had an address in its current instance:
    /// empty initial sets are neither digested nor sent.
    fn address_version(&self, origin: &RouterId) -> Option<Version> {
        self.addresses_of(origin)
            .map(|(v, _)| v)
            .filter(|v| v.1 > 0)
    }

    fn snapshot_of(&self, origin: &RouterId) -> Option<AddressSnapshot> {
        self.address_version(origin)?;
        let ((instance, sequence), set) = self.addresses_of(origin)?;
        Some(AddressSnapshot {
            origin: origin.clone(),
            instance,
            sequence,
            addresses: set.iter().cloned().collect(),
        })
    }

    fn request_addresses(&mut self, from: &RouterId, origin: &RouterId, now: Duration) {
        if self
            .address_requested
            .get(origin)
            .is_some_and(|until| now < *until)
        {
            return;
        }
        self.address_requested
            .insert(origin.clone(), now + self.config.hello_interval);
        self.pending_address_requests
            .entry(from.clone())
            .or_default()
            .insert(origin.clone());
    }

    /// Records we may hand to others: our own and those of reachable routers
    /// (never records of unreachable routers, which would resurrect the dead).
    fn advertisable(&self, origin: &RouterId) -> bool {
        *origin == self.id || self.routes.is_reachable(origin)
    }

    // ----- address state -----

    fn set_version(&mut self, origin: &RouterId, old: Option<Version>, new: Version) {
        if let Some(old) = old {
            self.address_hash ^= entry_hash(origin, old);
        }
        self.address_hash ^= entry_hash(origin, new);
    }

    fn table_update(&mut self, origin: &RouterId, address: &Address, present: bool) {
        let changed = self.table.change(address, |e| {
            if present {
                e.routers.insert(origin.clone())
            } else {
                e.routers.remove(origin)
            }
        });
        if changed {
            self.changed_addresses.insert(address.clone());
        }
    }

    fn patch_addresses(
        &mut self,
        origin: &RouterId,
        version: Version,
        added: &[Address],
        removed: &[Address],
    ) {
        let state = self.remote_addresses.entry(origin.clone()).or_default();
        let old = (state.version != (0, 0)).then_some(state.version);
        state.version = version;
        let mut delta = Vec::new();
        for a in added {
            if state.addresses.insert(a.clone()) {
                delta.push((a.clone(), true));
            }
        }
        for a in removed {
            if state.addresses.remove(a) {
                delta.push((a.clone(), false));
            }
        }
        self.set_version(origin, old, version);
        if self.routes.is_reachable(origin) {
            for (a, present) in delta {
                self.table_update(origin, &a, present);
            }
        }
    }

    fn replace_addresses(
        &mut self,
        origin: &RouterId,
        version: Version,
        addresses: BTreeSet<Address>,
    ) {
        let state = self.remote_addresses.entry(origin.clone()).or_default();
        let old = (state.version != (0, 0)).then_some(state.version);
        state.version = version;
        let previous = std::mem::replace(&mut state.addresses, addresses);
        let delta: Vec<(Address, bool)> = previous
            .difference(&state.addresses)
            .map(|a| (a.clone(), false))
            .chain(
                state
                    .addresses
                    .difference(&previous)
                    .map(|a| (a.clone(), true)),
            )
            .collect();
        self.set_version(origin, old, version);
        if self.routes.is_reachable(origin) {
            for (a, present) in delta {
                self.table_update(origin, &a, present);
            }
        }
    }

    /// A new instance of `origin` appeared: its old address set is void.
    fn restart_addresses(&mut self, origin: &RouterId, instance: InstanceId) {
        if self
            .remote_addresses
            .get(origin)
            .is_some_and(|s| s.version.0 < instance)
        {
            self.remove_addresses(origin);
        }
        // Old-instance updates still in flight are neither applied nor flooded.
        self.address_forwarded.insert(origin.clone(), (instance, 0));
    }

    fn remove_addresses(&mut self, origin: &RouterId) {
        if let Some(state) = self.remote_addresses.remove(origin) {
            self.address_hash ^= entry_hash(origin, state.version);
            if self.routes.is_reachable(origin) {
                for a in &state.addresses {
                    self.table_update(origin, a, false);
                }
            }
        }
        self.address_forwarded.remove(origin);
        self.address_requested.remove(origin);
    }

    // ----- origination, flooding, recompute -----

    fn send(&mut self, to: &RouterId, message: ControlMessage) {
        self.outputs.push_back(Output::Send {
            to: to.clone(),
            message,
        });
    }

    fn send_hello(&mut self, to: &RouterId) {
        let seen = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.instance.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let cost = self
            .neighbours
            .get(to)
            .filter(|n| n.authority == CostAuthority::Local)
            .map(|n| n.cost);
        let hello = Hello {
            router: self.id.clone(),
            instance: self.instance,
            seen,
            cost,
        };
        self.send(to, ControlMessage::Hello(hello));
    }

    fn flood(&mut self, except: Option<&RouterId>, record: &Arc<LinkStateRecord>) {
        for (p, n) in &self.neighbours {
            if n.two_way && Some(p) != except {
                self.pending_floods
                    .entry(p.clone())
                    .or_default()
                    .insert(record.origin.clone(), record.clone());
            }
        }
    }

    /// Sends each neighbour the records and address sets held back from it
    /// (see `held_back`) whose origins the routes now reach.
    fn push_held_back(&mut self) {
        let mut held_back = std::mem::take(&mut self.held_back);
        for (to, origins) in held_back.iter_mut() {
            if !self.neighbours.get(to).is_some_and(|n| n.two_way) {
                origins.clear();
                continue;
            }
            let reachable: Vec<RouterId> = origins
                .iter()
                .filter(|o| self.routes.is_reachable(o))
                .cloned()
                .collect();
            for origin in reachable {
                origins.remove(&origin);
                if let Some(record) = self.lsdb.get(&origin).cloned() {
                    self.pending_floods
                        .entry(to.clone())
                        .or_default()
                        .insert(origin.clone(), record);
                }
                if let Some(snapshot) = self.snapshot_of(&origin) {
                    self.send(to, ControlMessage::AddressSnapshot(snapshot));
                }
            }
            let known =
                |o: &RouterId| self.lsdb.get(o).is_some() || self.remote_addresses.contains_key(o);
            origins.retain(known);
        }
        held_back.retain(|_, origins| !origins.is_empty());
        self.held_back = held_back;
    }

    fn schedule_recompute(&mut self, now: Duration) {
        if self.recompute_at.is_none() {
            self.recompute_at = Some(match self.next_tick {
                Some(t) => t,
                None => now + self.config.route_debounce,
            });
        }
    }

    /// Originates pending own changes (at once, or only on the tick in
    /// qdrouterd mode) and turns queued floods and requests into messages.
    fn flush(&mut self, now: Duration, tick_due: bool) {
        let tick_mode = self.config.tick.is_some();
        if tick_due && self.ls_dirty {
            self.tick_passed = true;
        }
        let may_originate = !tick_mode || self.tick_passed;
        let waiting = (self.ls_dirty && may_originate) || !self.pending_floods.is_empty();
        if waiting && self.flush_at.is_none() {
            self.flush_at = Some(now + self.config.batch_delay);
        }
        let batch_due = self.flush_at.is_some_and(|t| now >= t);
        if batch_due {
            self.flush_at = None;
        }
        if self.ls_dirty && may_originate && batch_due {
            self.ls_dirty = false;
            self.tick_passed = false;
            self.own_sequence += 1;
            let neighbours = self
                .neighbours
                .iter()
                .filter(|(_, n)| n.two_way)
                .map(|(id, n)| (id.clone(), n.cost));
            let record = Arc::new(LinkStateRecord::new(
                self.id.clone(),
                self.instance,
                self.own_sequence,
                neighbours,
            ));
            self.lsdb.offer(record.clone());
            self.flood(None, &record);
            self.schedule_recompute(now);
        }
        if (!tick_mode || tick_due)
            && (!self.pending_added.is_empty() || !self.pending_removed.is_empty())
        {
            self.own_address_sequence += 1;
            let new = (self.instance, self.own_address_sequence);
            let me = self.id.clone();
            let old = self.own_address_hashed.replace(new);
            self.set_version(&me, old, new);
            let update = Arc::new(AddressUpdate {
                origin: me,
                instance: self.instance,
                sequence: self.own_address_sequence,
                added: std::mem::take(&mut self.pending_added)
                    .into_iter()
                    .collect(),
                removed: std::mem::take(&mut self.pending_removed)
                    .into_iter()
                    .collect(),
            });
            for (p, n) in &self.neighbours {
                if n.two_way {
                    self.outputs.push_back(Output::Send {
                        to: p.clone(),
                        message: ControlMessage::AddressUpdate(update.clone()),
                    });
                }
            }
        }
        let floods = if batch_due {
            std::mem::take(&mut self.pending_floods)
        } else {
            BTreeMap::new()
        };
        for (to, records) in floods {
            if self.neighbours.contains_key(&to) {
                self.outputs.push_back(Output::Send {
                    to,
                    message: ControlMessage::LinkStateUpdate(LinkStateUpdate {
                        records: records.into_values().collect(),
                    }),
                });
            }
        }
        for (to, origins) in std::mem::take(&mut self.pending_address_requests) {
            if self.neighbours.contains_key(&to) {
                self.outputs.push_back(Output::Send {
                    to,
                    message: ControlMessage::AddressRequest(AddressRequest {
                        origins: origins.into_iter().collect(),
                    }),
                });
            }
        }
        if !self.changed_addresses.is_empty() {
            let addresses = std::mem::take(&mut self.changed_addresses)
                .into_iter()
                .collect();
            self.outputs
                .push_back(Output::AddressesChanged { addresses });
        }
    }

    fn recompute(&mut self, now: Duration) {
        self.recompute_at = None;
        self.recomputes += 1;
        let new = Arc::new(match &self.topology_cache {
            Some(cache) => Routes::compute_shared(&self.id, &self.lsdb, cache),
            None => Routes::compute(&self.id, &self.lsdb),
        });
        let old = std::mem::replace(&mut self.routes, new.clone());
        if !new.same_routes(&old) {
            self.outputs.push_back(Output::RoutesChanged);
        }
        // Address-table membership follows reachability.
        let origins: Vec<RouterId> = self.remote_addresses.keys().cloned().collect();
        for o in &origins {
            let (was, is) = (old.is_reachable(o), new.is_reachable(o));
            if was != is
                && let Some(state) = self.remote_addresses.get(o)
            {
                let addresses: Vec<Address> = state.addresses.iter().cloned().collect();
                for a in &addresses {
                    self.table_update(o, a, is);
                }
            }
        }
        self.push_held_back();
        // Ageing bookkeeping.
        let id = self.id.clone();
        let known = |o: &RouterId| *o != id && !new.is_reachable(o);
        self.unreachable_since.retain(|o, _| known(o));
        for o in self.lsdb.origins().chain(self.remote_addresses.keys()) {
            if known(o) && !self.unreachable_since.contains_key(o) {
                self.unreachable_since.insert(o.clone(), now);
            }
        }
        self.update_next_expiry();
    }

    fn update_next_expiry(&mut self) {
        let retention = self.config.unreachable_retention;
        self.next_expiry = self
            .unreachable_since
            .values()
            .min()
            .map(|t| *t + retention);
    }

    fn expire(&mut self, now: Duration) {
        let retention = self.config.unreachable_retention;
        let expired: Vec<RouterId> = self
            .unreachable_since
            .iter()
            .filter(|(_, since)| **since + retention <= now)
            .map(|(o, _)| o.clone())
            .collect();
        for o in &expired {
            self.unreachable_since.remove(o);
            self.lsdb.remove(o);
            self.remove_addresses(o);
        }
        self.update_next_expiry();
    }
}
