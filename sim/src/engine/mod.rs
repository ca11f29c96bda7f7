//! The discrete-event engine: one real [`ControlPlane`] per simulated router,
//! links that carry its messages with latency, loss and bandwidth, the
//! scenario's timed events, traffic flows forwarded hop by hop with the real
//! routes and forwarding policies, and the measurements taken against the
//! oracle.
//!
//! Determinism: all randomness comes from one seeded [`StdRng`]; the event
//! queue breaks time ties by insertion order; iteration is over vectors and
//! ordered maps only. Host CPU time is measured (std `Instant` around the real
//! control-plane calls) but never feeds back into the simulation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bote_topology::policy::{self, Choice, Cursor};
use bote_topology::{
    Address, ControlMessage, ControlPlane, LinkStateRecord, LocalLink, Output, ProtocolConfig,
    RemoteRouter, RouterId, Routes,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::generate::{self, Mesh};
use crate::link::{Channel, LinkModel, Transit};
use crate::oracle::{INF, LiveGraph, jain_index};
use crate::queue::EventQueue;
use crate::report::{
    ControlSummary, FlowReport, HostTiming, RouterReport, RunReport, Stats, WindowReport,
};
use crate::scenario::{
    Distribution, EventSpec, Profile, ProtocolOverrides, RouterRef, Scenario, ScenarioError,
};

/// The protocol configuration of a profile.
pub fn profile_config(profile: Profile) -> ProtocolConfig {
    match profile {
        Profile::Bote => ProtocolConfig::default(),
        Profile::QdrouterdLike => ProtocolConfig::qdrouterd_like(),
    }
}

/// A profile's configuration with the scenario's `[protocol]` overrides.
pub fn apply_overrides(mut config: ProtocolConfig, o: &ProtocolOverrides) -> ProtocolConfig {
    if let Some(d) = o.hello_interval {
        config.hello_interval = d.0;
    }
    if let Some(d) = o.hello_timeout {
        config.hello_timeout = d.0;
    }
    if let Some(d) = o.route_debounce {
        config.route_debounce = d.0;
    }
    if let Some(d) = o.digest_interval {
        config.digest_interval = d.0;
    }
    if let Some(d) = o.unreachable_retention {
        config.unreachable_retention = d.0;
    }
    if let Some(d) = o.batch_delay {
        config.batch_delay = d.0;
    }
    config
}

/// Capacity of a simulated consumer link (qdrouterd's default 250).
const LINK_CAPACITY: u32 = 250;

/// A scenario event with its routers resolved to indices.
#[derive(Debug, Clone)]
enum Action {
    LinkDown { a: u32, b: u32, silent: bool },
    LinkUp { a: u32, b: u32, cost: u32 },
    Cost { a: u32, b: u32, cost: u32 },
    Crash { router: u32 },
    Restart { router: u32 },
    Attach { router: u32, address: Address },
    Detach { router: u32, address: Address },
    AttachRandom { address: Address, count: usize },
    CutRandom { count: usize, keep_connected: bool },
    Loss { loss: f64 },
}

/// One copy of a data message in flight.
#[derive(Debug, Clone)]
struct DataCopy {
    flow: u32,
    msg: u64,
    /// Routers visited, ingress first (qdrouterd's trace annotation).
    trace: Vec<u32>,
    /// Cost travelled so far.
    cost: u64,
}

enum Ev {
    Control {
        link: u32,
        epoch: u32,
        from: u32,
        to: u32,
        bytes: u32,
        message: ControlMessage,
    },
    Timer {
        router: u32,
        generation: u64,
    },
    Scenario {
        index: usize,
    },
    FlowSend {
        flow: u32,
    },
    Data {
        link: u32,
        epoch: u32,
        from: u32,
        to: u32,
        copy: DataCopy,
    },
    /// A settlement travelling back: releases the outstanding count at the
    /// last hop, then moves one hop upstream.
    Settle {
        flow: u32,
        hops: Vec<(u32, u32)>,
    },
    /// A local consumer settles.
    SettleLocal {
        router: u32,
        flow: u32,
        link_index: usize,
        instance: u64,
    },
    Sample,
}

struct SimLink {
    a: u32,
    b: u32,
    cost: u32,
    up: bool,
    silent: bool,
    epoch: u32,
    /// [a -> b, b -> a]
    channels: [Channel; 2],
}

#[derive(Default)]
struct RouterStats {
    messages_sent: u64,
    bytes_sent: u64,
    messages_received: u64,
    bytes_received: u64,
    route_changes: u64,
    restarts: u64,
    cpu: Duration,
    route_cpu: Duration,
    recomputes: u64,
}

struct SimRouter {
    id: RouterId,
    plane: Option<ControlPlane>,
    instance: u64,
    timer_at: Option<Duration>,
    timer_generation: u64,
    /// Ground truth: consumer links per address, each with its unsettled count.
    consumers: BTreeMap<Address, Vec<u32>>,
    cursors: HashMap<Address, Cursor>,
    /// Unsettled deliveries per (next hop, address).
    outstanding: HashMap<(u32, Address), u32>,
    /// (link index, neighbour) of every link touching this router.
    links: Vec<(u32, u32)>,
    stats: RouterStats,
}

struct FlowState {
    address: Address,
    distribution: Distribution,
    from: u32,
    stop: Duration,
    interval: Duration,
    settle_after: Duration,
    next_msg: u64,
    report: FlowReport,
    received: HashSet<(u64, u32)>,
    per_receiver: BTreeMap<u32, u64>,
    stretch_sum: f64,
    stretch_count: u64,
    /// (live-graph version, distances from the ingress)
    oracle: Option<(u64, Vec<u64>)>,
}

struct Window {
    at: Duration,
    events: Vec<String>,
    last_change: Option<Duration>,
    messages_at_open: u64,
    bytes_at_open: u64,
    opened: Instant,
}

/// One simulation of one scenario under one profile.
pub struct Simulation {
    /// Graphs shared by routers whose link-state databases are identical
    /// (most of them, most of the time): each distinct graph is built once.
    topologies: Arc<bote_topology::TopologyCache>,
    now: Duration,
    end: Duration,
    queue: EventQueue<Ev>,
    rng: StdRng,
    check_rng: StdRng,
    model: LinkModel,
    config: ProtocolConfig,
    profile: Profile,
    scenario_name: String,
    seed: u64,
    routers: Vec<SimRouter>,
    index: HashMap<RouterId, u32>,
    links: Vec<SimLink>,
    link_of: HashMap<(u32, u32), u32>,
    actions: Vec<(Duration, Action, String)>,
    flows: Vec<FlowState>,
    window: Window,
    windows: Vec<WindowReport>,
    graph_version: u64,
    live_cache: Option<(u64, Arc<LiveGraph>, Arc<Vec<u32>>)>,
    sample_every: Duration,
    oracle_full_limit: usize,
    oracle_sample: usize,
    divergence: Vec<(f64, u64)>,
    control: ControlSummary,
    by_kind: BTreeMap<&'static str, u64>,
    events_processed: u64,
    mesh_components: usize,
    bridges_added: usize,
    progress: Option<indicatif::ProgressBar>,
    booted: bool,
    wall: Duration,
    loss_kinds: Option<Vec<String>>,
    window_wall: Vec<f64>,
    record_sizes: HashMap<usize, (Arc<LinkStateRecord>, usize)>,
}

fn key(a: u32, b: u32) -> (u32, u32) {
    if a < b { (a, b) } else { (b, a) }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Simulation {
    /// Fails, naming both routers, when no link joins `a` and `b`.
    fn require_link(&self, a: u32, b: u32) -> Result<(), String> {
        if self.link_of.contains_key(&key(a, b)) {
            return Ok(());
        }
        Err(format!(
            "no link between {} and {}",
            self.routers[a as usize].id, self.routers[b as usize].id
        ))
    }

    /// Builds the mesh and schedules the scenario. `progress` shows a bar on
    /// stderr (hidden when stderr is not a terminal).
    pub fn new(
        scenario: &Scenario,
        profile: Profile,
        seed: u64,
        progress: bool,
    ) -> Result<Simulation, ScenarioError> {
        let f = &scenario.file;
        let mut rng = StdRng::seed_from_u64(seed);
        let base = scenario
            .path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let topo_line = scenario.line(f.topology.span().start);
        let mesh: Mesh = generate::generate(f.topology.get_ref(), &base, &mut rng)
            .map_err(|e| scenario.invalid(topo_line, e.to_string()))?;
        let n = mesh.names.len();
        let routers: Vec<SimRouter> = mesh
            .names
            .iter()
            .map(|name| SimRouter {
                id: RouterId::from(name.as_str()),
                plane: None,
                instance: 0,
                timer_at: None,
                timer_generation: 0,
                consumers: BTreeMap::new(),
                cursors: HashMap::new(),
                outstanding: HashMap::new(),
                links: Vec::new(),
                stats: RouterStats::default(),
            })
            .collect();
        let index: HashMap<RouterId, u32> = routers
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i as u32))
            .collect();
        let by_name: HashMap<&str, u32> = mesh
            .names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as u32))
            .collect();
        let resolve = |r: &RouterRef, line: usize| -> Result<u32, ScenarioError> {
            match r {
                RouterRef::Index(i) if *i < n => Ok(*i as u32),
                RouterRef::Index(i) => Err(scenario.invalid(
                    line,
                    format!("router #{i} does not exist (mesh has {n} routers)"),
                )),
                RouterRef::Name(s) => by_name.get(s.as_str()).copied().ok_or_else(|| {
                    scenario.invalid(line, format!("router {s:?} does not exist in the mesh"))
                }),
            }
        };
        let model = LinkModel {
            latency: f.link.latency.0,
            jitter: f.link.jitter.0,
            loss: f.link.loss,
            bytes_per_sec: f.link.bandwidth_mbps * 1e6 / 8.0,
        };
        let mut sim = Simulation {
            topologies: Arc::new(bote_topology::TopologyCache::new(64)),
            now: Duration::ZERO,
            end: f.duration.0,
            queue: EventQueue::new(),
            rng,
            check_rng: StdRng::seed_from_u64(seed ^ 0x05ee_d0f0_ac1e),
            model,
            config: apply_overrides(profile_config(profile), &f.protocol),
            profile,
            scenario_name: scenario.name.clone(),
            seed,
            routers,
            index,
            links: Vec::new(),
            link_of: HashMap::new(),
            actions: Vec::new(),
            flows: Vec::new(),
            window: Window {
                at: Duration::ZERO,
                events: vec!["boot".to_string()],
                last_change: None,
                messages_at_open: 0,
                bytes_at_open: 0,
                opened: Instant::now(),
            },
            windows: Vec::new(),
            graph_version: 0,
            live_cache: None,
            sample_every: f.measure.sample_every.0.max(Duration::from_millis(1)),
            oracle_full_limit: f.measure.oracle_full_limit,
            oracle_sample: f.measure.oracle_sample.max(1),
            divergence: Vec::new(),
            control: ControlSummary::default(),
            by_kind: BTreeMap::new(),
            events_processed: 0,
            mesh_components: mesh.components,
            bridges_added: mesh.bridges_added,
            progress: None,
            booted: false,
            wall: Duration::ZERO,
            loss_kinds: f.link.loss_kinds.clone(),
            window_wall: Vec::new(),
            record_sizes: HashMap::new(),
        };
        for l in &mesh.links {
            sim.add_link(l.a as u32, l.b as u32, l.cost);
        }
        // Resolve events.
        let mut actions = Vec::new();
        for ev in &f.events {
            let line = scenario.line(ev.span().start);
            let e = ev.get_ref();
            let desc = describe(e);
            let action = match e {
                EventSpec::LinkDown { a, b, silent, .. } => {
                    let (a, b) = (resolve(a, line)?, resolve(b, line)?);
                    sim.require_link(a, b)
                        .map_err(|problem| scenario.invalid(line, problem))?;
                    Action::LinkDown {
                        a,
                        b,
                        silent: *silent,
                    }
                }
                EventSpec::LinkUp { a, b, cost, .. } => {
                    let (a, b) = (resolve(a, line)?, resolve(b, line)?);
                    if a == b {
                        return Err(scenario.invalid(line, "link_up needs two different routers"));
                    }
                    Action::LinkUp {
                        a,
                        b,
                        cost: cost.unwrap_or(f.topology.get_ref().cost).max(1),
                    }
                }
                EventSpec::Cost { a, b, cost, .. } => {
                    let (a, b) = (resolve(a, line)?, resolve(b, line)?);
                    sim.require_link(a, b)
                        .map_err(|problem| scenario.invalid(line, problem))?;
                    Action::Cost {
                        a,
                        b,
                        cost: (*cost).max(1),
                    }
                }
                EventSpec::Crash { router, .. } => Action::Crash {
                    router: resolve(router, line)?,
                },
                EventSpec::Restart { router, .. } => Action::Restart {
                    router: resolve(router, line)?,
                },
                EventSpec::Attach {
                    router, address, ..
                } => Action::Attach {
                    router: resolve(router, line)?,
                    address: Address::from(address.as_str()),
                },
                EventSpec::Detach {
                    router, address, ..
                } => Action::Detach {
                    router: resolve(router, line)?,
                    address: Address::from(address.as_str()),
                },
                EventSpec::AttachRandom { address, count, .. } => Action::AttachRandom {
                    address: Address::from(address.as_str()),
                    count: *count,
                },
                EventSpec::CutRandom {
                    count,
                    keep_connected,
                    ..
                } => Action::CutRandom {
                    count: *count,
                    keep_connected: *keep_connected,
                },
                EventSpec::Loss { loss, .. } => Action::Loss { loss: *loss },
            };
            actions.push((e.at(), action, desc));
        }
        actions.sort_by_key(|(t, _, _)| *t);
        for (i, (t, _, _)) in actions.iter().enumerate() {
            sim.queue.push(*t, Ev::Scenario { index: i });
        }
        sim.actions = actions;
        for fl in &f.flows {
            let line = scenario.line(fl.span().start);
            let s = fl.get_ref();
            let from = resolve(&s.from, line)?;
            let id = sim.flows.len() as u32;
            sim.flows.push(FlowState {
                address: Address::from(s.address.as_str()),
                distribution: s.distribution,
                from,
                stop: s.stop.map(|d| d.0).unwrap_or(f.duration.0),
                interval: Duration::from_secs_f64(1.0 / s.rate),
                settle_after: s.settle_after.0,
                next_msg: 0,
                report: FlowReport {
                    address: s.address.clone(),
                    distribution: s.distribution.to_string(),
                    from: sim.routers[from as usize].id.to_string(),
                    ..FlowReport::default()
                },
                received: HashSet::new(),
                per_receiver: BTreeMap::new(),
                stretch_sum: 0.0,
                stretch_count: 0,
                oracle: None,
            });
            sim.queue.push(s.start.0, Ev::FlowSend { flow: id });
        }
        sim.queue.push(Duration::ZERO, Ev::Sample);
        if progress {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(sim.end.as_millis() as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ms simulated {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!(
                "{} {} ({n} routers)",
                scenario.name,
                profile.name()
            ));
            sim.progress = Some(bar);
        }
        Ok(sim)
    }

    fn add_link(&mut self, a: u32, b: u32, cost: u32) -> u32 {
        let id = self.links.len() as u32;
        self.links.push(SimLink {
            a: a.min(b),
            b: a.max(b),
            cost,
            up: true,
            silent: false,
            epoch: 0,
            channels: [Channel::default(), Channel::default()],
        });
        self.link_of.insert(key(a, b), id);
        self.routers[a as usize].links.push((id, b));
        self.routers[b as usize].links.push((id, a));
        id
    }

    /// Runs to the end and returns the report.
    pub fn run(mut self) -> RunReport {
        self.run_until(self.end);
        self.finish()
    }

    /// Processes every event up to and including `until` (capped at the end
    /// of the run); boots the mesh on the first call.
    pub fn run_until(&mut self, until: Duration) {
        let started = Instant::now();
        if !self.booted {
            self.booted = true;
            self.boot();
        }
        let until = until.min(self.end);
        while let Some(t) = self.queue.peek_time() {
            if t > until {
                break;
            }
            let Some((t, ev)) = self.queue.pop() else {
                break;
            };
            self.now = t;
            self.events_processed += 1;
            self.handle(ev);
            if self.events_processed.is_multiple_of(4096)
                && let Some(bar) = &self.progress
            {
                bar.set_position(self.now.as_millis() as u64);
            }
        }
        self.now = self.now.max(until);
        self.wall += started.elapsed();
    }

    /// Closes the last window at the end of the run and builds the report.
    pub fn finish(mut self) -> RunReport {
        self.run_until(self.end);
        let started = Instant::now();
        self.now = self.end;
        self.close_window();
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
        let wall = self.wall + started.elapsed();
        self.into_report(wall)
    }

    /// Current simulated time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The control plane of a running router, by name.
    pub fn plane(&self, name: &str) -> Option<&ControlPlane> {
        let i = *self.index.get(&RouterId::from(name))?;
        self.routers[i as usize].plane.as_ref()
    }

    /// Router names in index order.
    pub fn router_names(&self) -> Vec<String> {
        self.routers.iter().map(|r| r.id.to_string()).collect()
    }

    fn boot(&mut self) {
        for r in 0..self.routers.len() as u32 {
            self.start_router(r);
        }
        for l in 0..self.links.len() {
            let (a, b, cost) = (self.links[l].a, self.links[l].b, self.links[l].cost);
            self.connect(a, b, cost);
        }
    }

    fn start_router(&mut self, r: u32) {
        let router = &mut self.routers[r as usize];
        router.instance += 1;
        let t0 = Instant::now();
        let mut plane = ControlPlane::new(
            router.id.clone(),
            router.instance,
            self.config.clone(),
            self.now,
        );
        plane.share_topologies(self.topologies.clone());
        router.plane = Some(plane);
        router.stats.cpu += t0.elapsed();
        self.after_call(r);
    }

    fn alive(&self, r: u32) -> bool {
        self.routers[r as usize].plane.is_some()
    }

    /// Both ends learn the transport is up.
    fn connect(&mut self, a: u32, b: u32, cost: u32) {
        if !(self.alive(a) && self.alive(b)) {
            return;
        }
        let (ida, idb) = (
            self.routers[a as usize].id.clone(),
            self.routers[b as usize].id.clone(),
        );
        let now = self.now;
        self.call(a, |p| p.neighbour_up(idb, cost, now));
        self.call(b, |p| p.neighbour_up(ida, cost, now));
    }

    /// Runs `f` on router `r`'s control plane (timed), then drains outputs and
    /// re-arms its timer.
    fn call(&mut self, r: u32, f: impl FnOnce(&mut ControlPlane)) {
        let router = &mut self.routers[r as usize];
        let Some(plane) = router.plane.as_mut() else {
            return;
        };
        let pending = plane.recompute_pending();
        let t0 = Instant::now();
        f(plane);
        let spent = t0.elapsed();
        router.stats.cpu += spent;
        if pending && !plane.recompute_pending() {
            // This call ran the debounced route computation.
            router.stats.route_cpu += spent;
            router.stats.recomputes += 1;
        }
        self.after_call(r);
    }

    fn after_call(&mut self, r: u32) {
        let now = self.now;
        loop {
            let out = {
                let Some(plane) = self.routers[r as usize].plane.as_mut() else {
                    return;
                };
                plane.poll_output()
            };
            let Some(out) = out else { break };
            match out {
                Output::Send { to, message } => self.send_control(r, &to, message),
                Output::RoutesChanged => {
                    self.routers[r as usize].stats.route_changes += 1;
                    self.window.last_change = Some(now);
                }
                Output::AddressesChanged { .. } => {
                    self.window.last_change = Some(now);
                }
            }
        }
        self.arm_timer(r);
    }

    /// Makes sure a timer event is pending no later than the control plane's
    /// deadline. A pending event that is too early is harmless (it re-arms
    /// when it fires), so only an *earlier* deadline schedules a new event:
    /// this keeps stale timers from piling up in the queue.
    fn arm_timer(&mut self, r: u32) {
        let now = self.now;
        let router = &mut self.routers[r as usize];
        let Some(plane) = router.plane.as_ref() else {
            return;
        };
        let Some(t) = plane.poll_timeout() else {
            return;
        };
        let t = t.max(now);
        if router.timer_at.is_none_or(|pending| t < pending) {
            router.timer_at = Some(t);
            router.timer_generation += 1;
            let generation = router.timer_generation;
            self.queue.push(
                t,
                Ev::Timer {
                    router: r,
                    generation,
                },
            );
        }
    }

    /// `message.wire_size()`, with the per-record sizes of link-state updates
    /// memoised: records are immutable and shared (`Arc`), and a 10,000-router
    /// boot sends each one thousands of times inside database-sized updates.
    /// The cache holds a clone of each record so its address is never reused.
    fn wire_size(&mut self, message: &ControlMessage) -> usize {
        let ControlMessage::LinkStateUpdate(update) = message else {
            return message.wire_size();
        };
        let mut body = 0usize;
        for record in &update.records {
            let ptr = Arc::as_ptr(record) as usize;
            let size = match self.record_sizes.get(&ptr) {
                Some((_, size)) => *size,
                None => {
                    let size = record.wire_size();
                    self.record_sizes.insert(ptr, (record.clone(), size));
                    size
                }
            };
            body += 2 + size;
        }
        1 + bote_topology::ids::varint_len(body as u64) + body
    }

    fn send_control(&mut self, from: u32, to: &RouterId, message: ControlMessage) {
        let Some(&to_idx) = self.index.get(to) else {
            return;
        };
        let bytes = self.wire_size(&message);
        let kind = message.kind();
        *self.by_kind.entry(kind).or_default() += 1;
        let stats = &mut self.routers[from as usize].stats;
        stats.messages_sent += 1;
        stats.bytes_sent += bytes as u64;
        self.control.messages += 1;
        self.control.bytes += bytes as u64;
        let Some(&l) = self.link_of.get(&key(from, to_idx)) else {
            self.control.dropped += 1;
            return;
        };
        let link = &mut self.links[l as usize];
        if !link.up || link.silent {
            self.control.dropped += 1;
            return;
        }
        let dir = usize::from(from != link.a);
        let lossy = self
            .loss_kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind));
        match link.channels[dir].send(self.now, bytes, &self.model, lossy, &mut self.rng) {
            Transit::Lost => self.control.lost += 1,
            Transit::Arrives(at) => {
                let epoch = link.epoch;
                self.queue.push(
                    at,
                    Ev::Control {
                        link: l,
                        epoch,
                        from,
                        to: to_idx,
                        bytes: bytes as u32,
                        message,
                    },
                );
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Control {
                link,
                epoch,
                from,
                to,
                bytes,
                message,
            } => {
                let l = &self.links[link as usize];
                if l.epoch != epoch || !l.up || l.silent || !self.alive(to) {
                    self.control.dropped += 1;
                    return;
                }
                let bytes = u64::from(bytes);
                let stats = &mut self.routers[to as usize].stats;
                stats.messages_received += 1;
                stats.bytes_received += bytes;
                let from_id = self.routers[from as usize].id.clone();
                let now = self.now;
                self.call(to, |p| p.handle_message(&from_id, message, now));
            }
            Ev::Timer { router, generation } => {
                let r = &self.routers[router as usize];
                if r.timer_generation != generation || r.plane.is_none() {
                    return;
                }
                let now = self.now;
                let due = r
                    .plane
                    .as_ref()
                    .and_then(|p| p.poll_timeout())
                    .is_some_and(|t| t <= now);
                self.routers[router as usize].timer_at = None;
                if due {
                    self.call(router, |p| p.handle_timeout(now));
                } else {
                    self.arm_timer(router);
                }
            }
            Ev::Scenario { index } => {
                let (at, action, desc) = self.actions[index].clone();
                if at > self.window.at {
                    self.close_window();
                    self.window = Window {
                        at,
                        events: Vec::new(),
                        last_change: None,
                        messages_at_open: self.control.messages,
                        bytes_at_open: self.control.bytes,
                        opened: Instant::now(),
                    };
                }
                self.window.events.push(desc);
                self.apply(action);
            }
            Ev::FlowSend { flow } => self.flow_send(flow),
            Ev::Data {
                link,
                epoch,
                from,
                to,
                copy,
            } => {
                let l = &self.links[link as usize];
                if l.epoch != epoch || !l.up || l.silent || !self.alive(to) {
                    self.flows[copy.flow as usize].report.dropped += 1;
                    return;
                }
                self.forward(to, Some(from), copy);
            }
            Ev::Settle { flow, mut hops } => {
                let Some((router, next)) = hops.pop() else {
                    return;
                };
                let address = self.flows[flow as usize].address.clone();
                if let Some(c) = self.routers[router as usize]
                    .outstanding
                    .get_mut(&(next, address))
                {
                    *c = c.saturating_sub(1);
                }
                if !hops.is_empty() {
                    let at = self.now + self.model.latency;
                    self.queue.push(at, Ev::Settle { flow, hops });
                }
            }
            Ev::SettleLocal {
                router,
                flow,
                link_index,
                instance,
            } => {
                let address = self.flows[flow as usize].address.clone();
                let r = &mut self.routers[router as usize];
                if r.instance == instance
                    && let Some(links) = r.consumers.get_mut(&address)
                    && let Some(u) = links.get_mut(link_index)
                {
                    *u = u.saturating_sub(1);
                }
            }
            Ev::Sample => {
                let (div, _) = self.address_errors();
                self.divergence.push((secs(self.now), div));
                let next = self.now + self.sample_every;
                if next <= self.end {
                    self.queue.push(next, Ev::Sample);
                }
            }
        }
    }

    // ----- scenario events -----

    fn apply(&mut self, action: Action) {
        let now = self.now;
        match action {
            Action::LinkDown { a, b, silent } => {
                let Some(&l) = self.link_of.get(&key(a, b)) else {
                    return;
                };
                self.take_link_down(l, silent);
            }
            Action::LinkUp { a, b, cost } => {
                let l = match self.link_of.get(&key(a, b)) {
                    Some(&l) => l,
                    None => self.add_link(a, b, cost),
                };
                let link = &mut self.links[l as usize];
                link.up = true;
                link.silent = false;
                let cost = link.cost;
                self.graph_version += 1;
                self.connect(a, b, cost);
            }
            Action::Cost { a, b, cost } => {
                let Some(&l) = self.link_of.get(&key(a, b)) else {
                    return;
                };
                self.links[l as usize].cost = cost;
                self.graph_version += 1;
                let (ida, idb) = (
                    self.routers[a as usize].id.clone(),
                    self.routers[b as usize].id.clone(),
                );
                self.call(a, |p| p.set_link_cost(&idb, cost, now));
                self.call(b, |p| p.set_link_cost(&ida, cost, now));
            }
            Action::Crash { router } => {
                if !self.alive(router) {
                    return;
                }
                let r = &mut self.routers[router as usize];
                r.plane = None;
                r.timer_at = None;
                r.timer_generation += 1;
                r.consumers.clear();
                r.outstanding.clear();
                r.cursors.clear();
                let id = r.id.clone();
                let links = r.links.clone();
                for (l, peer) in links {
                    let link = &mut self.links[l as usize];
                    link.epoch += 1;
                    link.channels.iter_mut().for_each(|c| c.reset(now));
                    if link.up && !link.silent {
                        self.call(peer, |p| p.neighbour_down(&id, now));
                    }
                }
                self.graph_version += 1;
            }
            Action::Restart { router } => {
                if self.alive(router) {
                    return;
                }
                self.routers[router as usize].stats.restarts += 1;
                self.start_router(router);
                let links = self.routers[router as usize].links.clone();
                for (l, peer) in links {
                    let link = &self.links[l as usize];
                    if link.up && !link.silent {
                        let cost = link.cost;
                        self.connect(router, peer, cost);
                    }
                }
                self.graph_version += 1;
            }
            Action::Attach { router, address } => self.attach(router, address),
            Action::Detach { router, address } => {
                let r = &mut self.routers[router as usize];
                let Some(links) = r.consumers.get_mut(&address) else {
                    return;
                };
                links.pop();
                if links.is_empty() {
                    r.consumers.remove(&address);
                    self.call(router, |p| p.remove_local_address(&address, now));
                }
            }
            Action::AttachRandom { address, count } => {
                let alive: Vec<u32> = (0..self.routers.len() as u32)
                    .filter(|&r| self.alive(r))
                    .collect();
                let mut chosen = BTreeSet::new();
                let want = count.min(alive.len());
                while chosen.len() < want {
                    chosen.insert(alive[self.rng.random_range(0..alive.len())]);
                }
                for r in chosen {
                    self.attach(r, address.clone());
                }
            }
            Action::CutRandom {
                count,
                keep_connected,
            } => {
                let mut candidates: Vec<u32> = (0..self.links.len() as u32)
                    .filter(|&l| {
                        let k = &self.links[l as usize];
                        k.up && !k.silent && self.alive(k.a) && self.alive(k.b)
                    })
                    .collect();
                let mut cut = 0;
                while cut < count && !candidates.is_empty() {
                    let i = self.rng.random_range(0..candidates.len());
                    let l = candidates.swap_remove(i);
                    if keep_connected {
                        let before = self.live().2.iter().copied().collect::<BTreeSet<_>>().len();
                        self.links[l as usize].up = false;
                        self.graph_version += 1;
                        let after = self.live().2.iter().copied().collect::<BTreeSet<_>>().len();
                        self.links[l as usize].up = true;
                        self.graph_version += 1;
                        if after > before {
                            continue;
                        }
                    }
                    self.take_link_down(l, false);
                    cut += 1;
                }
            }
            Action::Loss { loss } => self.model.loss = loss,
        }
    }

    fn take_link_down(&mut self, l: u32, silent: bool) {
        let now = self.now;
        let link = &mut self.links[l as usize];
        if !link.up {
            return;
        }
        link.epoch += 1;
        link.channels.iter_mut().for_each(|c| c.reset(now));
        self.graph_version += 1;
        let (a, b) = (link.a, link.b);
        if silent {
            link.silent = true;
            return;
        }
        link.up = false;
        link.silent = false;
        let (ida, idb) = (
            self.routers[a as usize].id.clone(),
            self.routers[b as usize].id.clone(),
        );
        self.call(a, |p| p.neighbour_down(&idb, now));
        self.call(b, |p| p.neighbour_down(&ida, now));
    }

    fn attach(&mut self, router: u32, address: Address) {
        if !self.alive(router) {
            return;
        }
        let now = self.now;
        let links = self.routers[router as usize]
            .consumers
            .entry(address.clone())
            .or_default();
        links.push(0);
        if links.len() == 1 {
            self.call(router, |p| p.add_local_address(address, now));
        }
    }

    // ----- the live graph and the oracle -----

    /// (version, live graph, component id per router; dead routers get u32::MAX).
    fn live(&mut self) -> (u64, Arc<LiveGraph>, Arc<Vec<u32>>) {
        if let Some((v, g, c)) = &self.live_cache
            && *v == self.graph_version
        {
            return (*v, g.clone(), c.clone());
        }
        let n = self.routers.len();
        let mut adj = vec![Vec::new(); n];
        for l in &self.links {
            if l.up && !l.silent && self.alive(l.a) && self.alive(l.b) {
                adj[l.a as usize].push((l.b, l.cost));
                adj[l.b as usize].push((l.a, l.cost));
            }
        }
        let mut comp = vec![u32::MAX; n];
        let mut next = 0;
        for s in 0..n {
            if comp[s] != u32::MAX || !self.alive(s as u32) {
                continue;
            }
            let mut stack = vec![s];
            comp[s] = next;
            while let Some(u) = stack.pop() {
                for &(v, _) in &adj[u] {
                    if comp[v as usize] == u32::MAX {
                        comp[v as usize] = next;
                        stack.push(v as usize);
                    }
                }
            }
            next += 1;
        }
        let g = Arc::new(LiveGraph { adj });
        let c = Arc::new(comp);
        self.live_cache = Some((self.graph_version, g.clone(), c.clone()));
        (self.graph_version, g, c)
    }

    /// Counts (router, destination) route entries that disagree with the
    /// oracle: (checked, wrong).
    fn route_errors(&mut self) -> (u64, u64) {
        let (_, graph, comp) = self.live();
        let alive: Vec<u32> = (0..self.routers.len() as u32)
            .filter(|&r| self.alive(r))
            .collect();
        let mut comp_size: HashMap<u32, usize> = HashMap::new();
        for &r in &alive {
            *comp_size.entry(comp[r as usize]).or_default() += 1;
        }
        let mut checked = 0u64;
        let mut wrong = 0u64;
        // Reachable counts: no stale routes to dead or cut-off routers.
        for &r in &alive {
            let routes = self.routers[r as usize]
                .plane
                .as_ref()
                .map(|p| p.routes().clone());
            if let Some(routes) = routes {
                checked += 1;
                if routes.reachable_count() != comp_size[&comp[r as usize]] - 1 {
                    wrong += 1;
                }
            }
        }
        let dests: Vec<u32> = if alive.len() <= self.oracle_full_limit {
            alive.clone()
        } else {
            let mut set = BTreeSet::new();
            let k = self.oracle_sample.min(alive.len());
            while set.len() < k {
                set.insert(alive[self.check_rng.random_range(0..alive.len())]);
            }
            set.into_iter().collect()
        };
        let routes: Vec<Option<Arc<Routes>>> = self
            .routers
            .iter()
            .map(|r| r.plane.as_ref().map(|p| p.routes().clone()))
            .collect();
        for d in dests {
            let dist = graph.distances_from(d as usize);
            let d_id = &self.routers[d as usize].id;
            for &r in &alive {
                if r == d {
                    continue;
                }
                let Some(table) = &routes[r as usize] else {
                    continue;
                };
                checked += 1;
                let want = dist[r as usize];
                let ok = match table.route(d_id) {
                    None => want == INF,
                    Some(route) => {
                        want != INF
                            && u64::from(route.cost) == want
                            && self.index.get(&route.next_hop).is_some_and(|&nh| {
                                graph.cost(r as usize, nh as usize).is_some_and(|c| {
                                    dist[nh as usize] != INF
                                        && u64::from(c) + dist[nh as usize] == want
                                })
                            })
                    }
                };
                if !ok {
                    wrong += 1;
                }
            }
        }
        (checked, wrong)
    }

    /// Counts (router, address) entries whose router set differs from the
    /// truth (alive routers with consumers, in the same component):
    /// (wrong, checked).
    fn address_errors(&mut self) -> (u64, u64) {
        let (_, _, comp) = self.live();
        let mut truth: BTreeMap<Address, Vec<u32>> = BTreeMap::new();
        for (i, r) in self.routers.iter().enumerate() {
            if r.plane.is_none() {
                continue;
            }
            for a in r.consumers.keys() {
                truth.entry(a.clone()).or_default().push(i as u32);
            }
        }
        let mut wrong = 0u64;
        let mut checked = 0u64;
        for (i, r) in self.routers.iter().enumerate() {
            let Some(plane) = &r.plane else { continue };
            let table = plane.address_table();
            let my_comp = comp[i];
            for (address, holders) in &truth {
                checked += 1;
                let entry = table.get(address);
                let local = holders.contains(&(i as u32));
                let ok = match entry {
                    None => !local && holders.iter().all(|&h| comp[h as usize] != my_comp),
                    Some(e) => {
                        e.local == local
                            && e.routers.len()
                                == holders
                                    .iter()
                                    .filter(|&&h| h != i as u32 && comp[h as usize] == my_comp)
                                    .count()
                            && e.routers.iter().all(|id| {
                                self.index.get(id).is_some_and(|&h| {
                                    h != i as u32
                                        && comp[h as usize] == my_comp
                                        && holders.contains(&h)
                                })
                            })
                    }
                };
                if !ok {
                    wrong += 1;
                }
            }
            // Addresses the router believes in that nobody consumes.
            for (address, _) in table.iter() {
                if !truth.contains_key(address) {
                    checked += 1;
                    wrong += 1;
                }
            }
        }
        (wrong, checked)
    }

    fn close_window(&mut self) {
        self.window_wall
            .push(self.window.opened.elapsed().as_secs_f64());
        let (checked, route_wrong) = self.route_errors();
        let (address_wrong, _) = self.address_errors();
        let converged = route_wrong == 0 && address_wrong == 0;
        let at = self.window.at;
        let convergence = converged.then(|| {
            let last = self.window.last_change.unwrap_or(at).max(at);
            secs(last - at)
        });
        self.windows.push(WindowReport {
            at_s: secs(at),
            until_s: secs(self.now),
            events: std::mem::take(&mut self.window.events),
            converged,
            convergence_s: convergence,
            routes_checked: checked,
            route_errors: route_wrong,
            address_errors: address_wrong,
            control_messages: self.control.messages - self.window.messages_at_open,
            control_bytes: self.control.bytes - self.window.bytes_at_open,
        });
    }

    // ----- traffic -----

    fn flow_send(&mut self, flow: u32) {
        let f = &mut self.flows[flow as usize];
        if self.now >= f.stop {
            return;
        }
        let msg = f.next_msg;
        f.next_msg += 1;
        f.report.sent += 1;
        let next = self.now + f.interval;
        let (from, address, distribution) = (f.from, f.address.clone(), f.distribution);
        if next < f.stop {
            self.queue.push(next, Ev::FlowSend { flow });
        }
        // Expected deliveries from the ground truth.
        let (_, _, comp) = self.live();
        let holders: Vec<u32> = (0..self.routers.len() as u32)
            .filter(|&r| {
                self.alive(r)
                    && self.routers[r as usize].consumers.contains_key(&address)
                    && comp[r as usize] == comp[from as usize]
            })
            .collect();
        let f = &mut self.flows[flow as usize];
        if self.routers[from as usize].plane.is_none() {
            f.report.dropped += 1;
            return;
        }
        match distribution {
            Distribution::Multicast => f.report.expected += holders.len() as u64,
            _ => f.report.expected += u64::from(!holders.is_empty()),
        }
        let copy = DataCopy {
            flow,
            msg,
            trace: Vec::new(),
            cost: 0,
        };
        self.forward(from, None, copy);
    }

    fn forward(&mut self, r: u32, arrived_from: Option<u32>, mut copy: DataCopy) {
        let flow = copy.flow as usize;
        let Some(plane) = self.routers[r as usize].plane.as_ref() else {
            self.flows[flow].report.dropped += 1;
            return;
        };
        copy.trace.push(r);
        let routes = plane.routes().clone();
        let address = self.flows[flow].address.clone();
        let remote_ids: Vec<RouterId> = plane
            .address_table()
            .get(&address)
            .map(|e| e.routers.iter().cloned().collect())
            .unwrap_or_default();
        let distribution = self.flows[flow].distribution;
        let local_links: Vec<u32> = self.routers[r as usize]
            .consumers
            .get(&address)
            .cloned()
            .unwrap_or_default();
        match distribution {
            Distribution::Closest | Distribution::Balanced => {
                // The candidates as the router's address actor gathers them:
                // remote routers it may not go to (a next hop on the trace)
                // stay in the list, marked excluded.
                let mut candidates: Vec<RemoteRouter> = Vec::new();
                let mut hops: Vec<u32> = Vec::new();
                for dest in &remote_ids {
                    let Some(route) = routes.route(dest) else {
                        continue;
                    };
                    let Some(&nh) = self.index.get(&route.next_hop) else {
                        continue;
                    };
                    let outstanding = self.routers[r as usize]
                        .outstanding
                        .get(&(nh, address.clone()))
                        .copied()
                        .unwrap_or(0);
                    candidates.push(RemoteRouter {
                        router: dest.clone(),
                        cost: route.cost,
                        outstanding,
                        excluded: copy.trace.contains(&nh),
                    });
                    hops.push(nh);
                }
                let excluded = candidates.iter().filter(|c| c.excluded).count();
                let locals: Vec<LocalLink> = local_links
                    .iter()
                    .map(|&u| LocalLink {
                        undelivered: 0,
                        unsettled: u,
                        capacity: LINK_CAPACITY,
                        tried: false,
                    })
                    .collect();
                let cursor = self.routers[r as usize]
                    .cursors
                    .entry(address.clone())
                    .or_default();
                // The router's own choice (`AddressActor::pick`).
                let choice = if distribution == Distribution::Closest {
                    policy::closest(&locals, &candidates, cursor)
                } else {
                    policy::balanced(&locals, &candidates, false, cursor)
                        .or_else(|| policy::balanced_overflow(&locals, &candidates, cursor))
                };
                match choice {
                    Some(Choice::Local(i)) => {
                        self.deliver(r, &copy);
                        let instance = self.routers[r as usize].instance;
                        if let Some(links) = self.routers[r as usize].consumers.get_mut(&address)
                            && let Some(u) = links.get_mut(i)
                        {
                            *u += 1;
                        }
                        let settle_at = self.now + self.flows[flow].settle_after;
                        self.queue.push(
                            settle_at,
                            Ev::SettleLocal {
                                router: r,
                                flow: copy.flow,
                                link_index: i,
                                instance,
                            },
                        );
                        // Release the outstanding counts along the path back.
                        let hops: Vec<(u32, u32)> =
                            copy.trace.windows(2).map(|w| (w[0], w[1])).collect();
                        if !hops.is_empty() {
                            self.queue.push(
                                settle_at + self.model.latency,
                                Ev::Settle {
                                    flow: copy.flow,
                                    hops,
                                },
                            );
                        }
                    }
                    Some(Choice::Remote(i)) => {
                        let nh = hops[i];
                        *self.routers[r as usize]
                            .outstanding
                            .entry((nh, address))
                            .or_default() += 1;
                        self.send_data(r, nh, copy);
                    }
                    None => {
                        let report = &mut self.flows[flow].report;
                        report.dropped += 1;
                        if excluded > 0 {
                            report.loop_drops += 1;
                        }
                    }
                }
            }
            // Refused when the scenario is read; nothing could take it.
            Distribution::Unavailable => self.flows[flow].report.dropped += 1,
            Distribution::Multicast => {
                let origin_id = self.routers[copy.trace[0] as usize].id.clone();
                let from_id = arrived_from.map(|f| self.routers[f as usize].id.clone());
                let tree = if from_id.is_some() {
                    routes.multicast_tree(&origin_id)
                } else {
                    None
                };
                let plan = policy::multicast(
                    &routes,
                    local_links.len(),
                    &remote_ids,
                    from_id.as_ref(),
                    tree.as_deref(),
                );
                if plan.local_copies > 0 {
                    self.deliver(r, &copy);
                }
                for hop in plan.next_hops {
                    let Some(&nh) = self.index.get(&hop) else {
                        continue;
                    };
                    if copy.trace.contains(&nh) {
                        self.flows[flow].report.loop_drops += 1;
                        self.flows[flow].report.dropped += 1;
                        continue;
                    }
                    self.send_data(r, nh, copy.clone());
                }
            }
        }
    }

    fn send_data(&mut self, from: u32, to: u32, mut copy: DataCopy) {
        let flow = copy.flow as usize;
        let Some(&l) = self.link_of.get(&key(from, to)) else {
            self.flows[flow].report.dropped += 1;
            return;
        };
        let link = &self.links[l as usize];
        if !link.up || link.silent || !self.alive(to) {
            self.flows[flow].report.dropped += 1;
            return;
        }
        copy.cost += u64::from(link.cost);
        let epoch = link.epoch;
        let at = self.now + self.model.latency;
        self.queue.push(
            at,
            Ev::Data {
                link: l,
                epoch,
                from,
                to,
                copy,
            },
        );
    }

    fn deliver(&mut self, r: u32, copy: &DataCopy) {
        let flow = copy.flow as usize;
        let ingress = copy.trace[0];
        let version = self.graph_version;
        let need = self.flows[flow]
            .oracle
            .as_ref()
            .is_none_or(|(v, _)| *v != version);
        if need {
            let (_, graph, _) = self.live();
            let dist = graph.distances_from(ingress as usize);
            self.flows[flow].oracle = Some((version, dist));
        }
        let f = &mut self.flows[flow];
        if !f.received.insert((copy.msg, r)) {
            f.report.duplicates += 1;
            return;
        }
        f.report.delivered += 1;
        *f.per_receiver.entry(r).or_default() += 1;
        if let Some((_, dist)) = &f.oracle {
            let best = dist[r as usize];
            let stretch = if best == 0 || best == INF {
                1.0
            } else {
                copy.cost as f64 / best as f64
            };
            f.stretch_sum += stretch;
            f.stretch_count += 1;
            f.report.max_stretch = f.report.max_stretch.max(stretch);
        }
    }

    // ----- report -----

    fn into_report(mut self, wall: Duration) -> RunReport {
        let names: Vec<String> = self.routers.iter().map(|r| r.id.to_string()).collect();
        let per_router: Vec<RouterReport> = self
            .routers
            .iter()
            .map(|r| RouterReport {
                router: r.id.to_string(),
                messages_sent: r.stats.messages_sent,
                bytes_sent: r.stats.bytes_sent,
                messages_received: r.stats.messages_received,
                bytes_received: r.stats.bytes_received,
                route_changes: r.stats.route_changes,
                recomputes: r.stats.recomputes,
                restarts: r.stats.restarts,
            })
            .collect();
        let msgs: Vec<f64> = per_router.iter().map(|r| r.messages_sent as f64).collect();
        let bytes: Vec<f64> = per_router.iter().map(|r| r.bytes_sent as f64).collect();
        let cpu: Vec<f64> = self
            .routers
            .iter()
            .map(|r| r.stats.cpu.as_secs_f64() * 1e3)
            .collect();
        self.control.messages_per_router = Stats::of(&msgs);
        self.control.bytes_per_router = Stats::of(&bytes);
        self.control.by_kind = self
            .by_kind
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        // Consumers still attached, for fairness over every candidate.
        let mut flows = Vec::new();
        for f in &mut self.flows {
            let mut r = f.report.clone();
            r.delivery_ratio = if r.expected == 0 {
                1.0
            } else {
                r.delivered.min(r.expected) as f64 / r.expected as f64
            };
            r.mean_stretch = if f.stretch_count == 0 {
                0.0
            } else {
                f.stretch_sum / f.stretch_count as f64
            };
            r.per_receiver = f
                .per_receiver
                .iter()
                .map(|(k, v)| (names[*k as usize].clone(), *v))
                .collect();
            if f.distribution == Distribution::Balanced {
                let mut shares: BTreeMap<u32, f64> = f
                    .per_receiver
                    .iter()
                    .map(|(k, v)| (*k, *v as f64))
                    .collect();
                for (i, router) in self.routers.iter().enumerate() {
                    if router.plane.is_some() && router.consumers.contains_key(&f.address) {
                        shares.entry(i as u32).or_insert(0.0);
                    }
                }
                r.jain_index = jain_index(&shares.into_values().collect::<Vec<_>>());
            }
            flows.push(r);
        }
        let boot = self.windows.first().and_then(|w| w.convergence_s);
        let later: Vec<f64> = self
            .windows
            .iter()
            .skip(1)
            .filter_map(|w| w.convergence_s)
            .collect();
        let all_converged = self.windows.iter().all(|w| w.converged);
        let max_divergence = self.divergence.iter().map(|d| d.1).max().unwrap_or(0);
        let final_divergence = self.windows.last().map(|w| w.address_errors).unwrap_or(0);
        let total_cpu: f64 = cpu.iter().sum();
        let route_cpu: Vec<f64> = self
            .routers
            .iter()
            .map(|r| r.stats.route_cpu.as_secs_f64() * 1e3)
            .collect();
        RunReport {
            scenario: self.scenario_name.clone(),
            profile: self.profile.name().to_string(),
            seed: self.seed,
            routers: self.routers.len(),
            links: self.links.len(),
            components: self.mesh_components,
            bridges_added: self.bridges_added,
            duration_s: secs(self.end),
            events_processed: self.events_processed,
            all_converged,
            boot_convergence_s: boot,
            mean_event_convergence_s: (!later.is_empty())
                .then(|| later.iter().sum::<f64>() / later.len() as f64),
            max_event_convergence_s: later.iter().copied().reduce(f64::max),
            windows: std::mem::take(&mut self.windows),
            control: std::mem::take(&mut self.control),
            flows,
            divergence: std::mem::take(&mut self.divergence),
            max_divergence,
            final_divergence,
            per_router,
            host: HostTiming {
                wall_s: wall.as_secs_f64(),
                events_per_s: self.events_processed as f64 / wall.as_secs_f64().max(1e-9),
                control_cpu_ms_per_router: Stats::of(&cpu),
                control_cpu_ms_total: total_cpu,
                route_cpu_ms_per_router: Stats::of(&route_cpu),
                per_router_route_cpu_ms: route_cpu,
                window_wall_s: std::mem::take(&mut self.window_wall),
                per_router_cpu_ms: cpu,
            },
        }
    }
}

fn describe(e: &EventSpec) -> String {
    match e {
        EventSpec::LinkDown { a, b, silent, .. } => {
            format!(
                "link_down {a}-{b}{}",
                if *silent { " (silent)" } else { "" }
            )
        }
        EventSpec::LinkUp { a, b, .. } => format!("link_up {a}-{b}"),
        EventSpec::Cost { a, b, cost, .. } => format!("cost {a}-{b}={cost}"),
        EventSpec::Crash { router, .. } => format!("crash {router}"),
        EventSpec::Restart { router, .. } => format!("restart {router}"),
        EventSpec::Attach {
            router, address, ..
        } => format!("attach {address}@{router}"),
        EventSpec::Detach {
            router, address, ..
        } => format!("detach {address}@{router}"),
        EventSpec::AttachRandom { address, count, .. } => {
            format!("attach_random {address} x{count}")
        }
        EventSpec::CutRandom { count, .. } => format!("cut_random x{count}"),
        EventSpec::Loss { loss, .. } => format!("loss {loss}"),
    }
}

/// Runs a scenario under every profile it names (or `profiles` when given),
/// in order.
pub fn run_scenario(
    scenario: &Scenario,
    seed: u64,
    profiles: &[Profile],
    progress: bool,
) -> Result<Vec<RunReport>, ScenarioError> {
    let mut out = Vec::new();
    for &p in profiles {
        out.push(Simulation::new(scenario, p, seed, progress)?.run());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn memoised_link_state_sizes_equal_the_protocol_estimate() {
        let text = "duration = \"1s\"\n[topology]\nkind = \"ring\"\nsize = 5\n";
        let sc = Scenario::parse(Path::new("t.toml"), text.to_string()).unwrap();
        let mut sim = Simulation::new(&sc, Profile::Bote, 1, false).unwrap();
        sim.run_until(Duration::from_millis(500));
        let records: Vec<Arc<LinkStateRecord>> =
            sim.plane("R0").unwrap().lsdb().iter().cloned().collect();
        assert_eq!(records.len(), 5);
        let message = ControlMessage::LinkStateUpdate(bote_topology::LinkStateUpdate { records });
        let expected = message.wire_size();
        assert_eq!(sim.wire_size(&message), expected);
        assert_eq!(
            sim.wire_size(&message),
            expected,
            "second call hits the cache"
        );
    }
}
