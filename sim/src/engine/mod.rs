//! The discrete-event engine: one real [`ControlPlane`] per simulated router,
//! links that carry its messages with latency, loss and bandwidth, the
//! scenario's timed events, traffic flows forwarded hop by hop with the real
//! routes and forwarding policies, and the measurements taken against the
//! oracle.
//!
//! - here: the simulation's state, the event loop and its dispatch;
//! - `control`: the real control planes, their timers and messages;
//! - `events`: the scenario's timed events applied to the mesh;
//! - `traffic`: flows forwarded hop by hop with the router's policy;
//! - `measure`: the live graph and oracle, errors per window, the report.
//!
//! Determinism: all randomness comes from one seeded [`StdRng`]; the event
//! queue breaks time ties by insertion order; iteration is over vectors and
//! ordered maps only. Host CPU time is measured (std `Instant` around the real
//! control-plane calls) but never feeds back into the simulation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bote_topology::policy::Cursor;
use bote_topology::{
    Address, ControlMessage, ControlPlane, LinkStateRecord, ProtocolConfig, RouterId,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::generate::{self, Mesh};
use crate::link::{Channel, LinkModel};
use crate::oracle::LiveGraph;
use crate::queue::EventQueue;
use crate::report::{ControlSummary, FlowReport, RunReport, WindowReport};
use crate::scenario::{
    Distribution, EventSpec, Profile, ProtocolOverrides, RouterRef, Scenario, ScenarioError,
};

mod control;
mod events;
mod measure;
mod traffic;

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
