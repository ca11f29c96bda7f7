//! Scenario files: the TOML a user writes (topology, link model, protocol
//! profile, timed events and traffic flows), parsed once into typed structs.
//!
//! Every error names the scenario file and, where the TOML parser or a
//! [`toml::Spanned`] value knows it, the line: a bad router name in an event
//! points at that event's line, not at the whole file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

/// A scenario that failed to load, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("scenario {path}: cannot read: {source}")]
    Read {
        /// The scenario file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The TOML is malformed or a field has the wrong type.
    #[error("scenario {path}:{line}: {message}")]
    Parse {
        /// The scenario file.
        path: PathBuf,
        /// 1-based line of the offending value (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The scenario is well-formed TOML but means something impossible.
    #[error("scenario {path}:{line}: {message}")]
    Invalid {
        /// The scenario file.
        path: PathBuf,
        /// 1-based line of the offending value (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A duration written as `"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"20us"` or a
/// bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct SimDuration(pub Duration);

impl SimDuration {
    /// Parses `"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"20us"`, `"3"` (seconds).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("duration {text:?}: expected a number with a unit (250ms, 2s)"))?;
        let scale = match unit.trim() {
            "" | "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "m" | "min" => 60.0,
            other => return Err(format!("duration {text:?}: unknown unit {other:?}")),
        };
        let secs = value * scale;
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!(
                "duration {text:?}: must be finite and not negative"
            ));
        }
        Ok(SimDuration(Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for SimDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(s) => Ok(SimDuration(Duration::from_secs(s))),
            Raw::Float(s) if s.is_finite() && s >= 0.0 => {
                Ok(SimDuration(Duration::from_secs_f64(s)))
            }
            Raw::Float(s) => Err(serde::de::Error::custom(format!(
                "duration {s}: must be finite and not negative"
            ))),
            Raw::Text(t) => SimDuration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for SimDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A router named in a scenario: its index (`3`) or its name (`"R003"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RouterRef {
    /// 0-based index into the generated mesh.
    Index(usize),
    /// The router's name as generated (`R` + zero-padded index) or as written
    /// in an edge-list file.
    Name(String),
}

impl fmt::Display for RouterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterRef::Index(i) => write!(f, "#{i}"),
            RouterRef::Name(n) => f.write_str(n),
        }
    }
}

/// Which topology generator builds the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologyKind {
    /// R0 - R1 - ... - Rn-1.
    Line,
    /// A line closed into a cycle.
    Ring,
    /// A rows x cols lattice (4 neighbours inside).
    Grid,
    /// Erdős–Rényi G(n, p), made connected if `connect = true`.
    Random,
    /// Barabási–Albert preferential attachment with `m` links per new router.
    ScaleFree,
    /// An edge list read from `file`.
    File,
}

/// The `[topology]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Generator.
    pub kind: TopologyKind,
    /// Number of routers (ignored for `file`; for `grid` rows*cols if those
    /// are missing, the nearest square).
    #[serde(default = "default_size")]
    pub size: usize,
    /// Grid rows.
    pub rows: Option<usize>,
    /// Grid columns.
    pub cols: Option<usize>,
    /// Erdős–Rényi edge probability; default gives a mean degree of
    /// `mean_degree`.
    pub p: Option<f64>,
    /// Erdős–Rényi target mean degree when `p` is not given (default 4).
    pub mean_degree: Option<f64>,
    /// Random graphs: add bridging links until connected (default true);
    /// when false a disconnected graph is reported and simulated as is.
    #[serde(default = "default_true")]
    pub connect: bool,
    /// Barabási–Albert links per new router (default 2).
    pub m: Option<usize>,
    /// Edge list for `file`: one `a b [cost]` per line, `#` comments.
    pub file: Option<PathBuf>,
    /// Cost of every generated link (default 1).
    #[serde(default = "default_cost")]
    pub cost: u32,
}

fn default_size() -> usize {
    10
}
fn default_true() -> bool {
    true
}
fn default_cost() -> u32 {
    1
}

/// The `[link]` table: the model of every inter-router link.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One-way propagation delay.
    #[serde(default = "default_latency")]
    pub latency: SimDuration,
    /// Uniform extra delay in `[0, jitter]` per message (order per direction
    /// is kept: a message never overtakes the previous one on a link).
    #[serde(default)]
    pub jitter: SimDuration,
    /// Probability that one control message is lost.
    #[serde(default)]
    pub loss: f64,
    /// Bandwidth in megabits per second (serialisation delay = size / rate).
    #[serde(default = "default_bandwidth")]
    pub bandwidth_mbps: f64,
    /// Message kinds that `loss` applies to (`"address_update"`, `"hello"`,
    /// ... as in the output's `by_kind`); all kinds when absent. Losing only
    /// address updates reproduces skupper-router#473 without hello flaps.
    pub loss_kinds: Option<Vec<String>>,
}

fn default_latency() -> SimDuration {
    SimDuration(Duration::from_millis(1))
}
fn default_bandwidth() -> f64 {
    1000.0
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            latency: default_latency(),
            jitter: SimDuration::default(),
            loss: 0.0,
            bandwidth_mbps: default_bandwidth(),
            loss_kinds: None,
        }
    }
}

/// Control-protocol timer profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Bote's defaults (pushed updates, millisecond debounce).
    Bote,
    /// qdrouterd's timers: 1 s tick, hello timeout 3 s, RA interval 4 s.
    QdrouterdLike,
}

impl Profile {
    /// The profile's name in output files.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Bote => "bote",
            Profile::QdrouterdLike => "qdrouterd_like",
        }
    }
}

/// `[protocol]`: overrides of the control-protocol timers, applied on top of
/// every profile's own settings (unset fields keep the profile's value).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolOverrides {
    /// Interval between hellos.
    pub hello_interval: Option<SimDuration>,
    /// Silence after which a neighbour is lost.
    pub hello_timeout: Option<SimDuration>,
    /// Delay from a database change to the route recompute.
    pub route_debounce: Option<SimDuration>,
    /// Interval between anti-entropy digests.
    pub digest_interval: Option<SimDuration>,
    /// How long records of unreachable routers are kept.
    pub unreachable_retention: Option<SimDuration>,
    /// Origination and flood batching delay.
    pub batch_delay: Option<SimDuration>,
}

/// Forwarding distribution of a flow: the router's own type
/// (`closest`, `balanced` or `multicast`; `unavailable` has no consumer to
/// simulate and is refused).
pub use bote_topology::Distribution;

/// One timed event.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventSpec {
    /// The link a–b goes down (both ends see it at once, as on a stream close).
    LinkDown {
        /// When.
        at: SimDuration,
        /// One end.
        a: RouterRef,
        /// Other end.
        b: RouterRef,
        /// The link silently drops everything instead of closing: the ends
        /// only notice by hello timeout.
        #[serde(default)]
        silent: bool,
    },
    /// The link a–b comes back (or is created with `cost`).
    LinkUp {
        /// When.
        at: SimDuration,
        /// One end.
        a: RouterRef,
        /// Other end.
        b: RouterRef,
        /// Cost when the link is new (default 1).
        cost: Option<u32>,
    },
    /// The link a–b changes cost at both ends.
    Cost {
        /// When.
        at: SimDuration,
        /// One end.
        a: RouterRef,
        /// Other end.
        b: RouterRef,
        /// New cost.
        cost: u32,
    },
    /// The router stops: its links go down, its state is lost.
    Crash {
        /// When.
        at: SimDuration,
        /// Which router.
        router: RouterRef,
    },
    /// The router boots again with a new instance id.
    Restart {
        /// When.
        at: SimDuration,
        /// Which router.
        router: RouterRef,
    },
    /// A consumer attaches on `router` for `address`.
    Attach {
        /// When.
        at: SimDuration,
        /// Which router.
        router: RouterRef,
        /// The address consumed.
        address: String,
    },
    /// A consumer detaches.
    Detach {
        /// When.
        at: SimDuration,
        /// Which router.
        router: RouterRef,
        /// The address.
        address: String,
    },
    /// Attach one consumer of `address` on `count` routers chosen by the seeded
    /// random generator.
    AttachRandom {
        /// When.
        at: SimDuration,
        /// The address consumed.
        address: String,
        /// How many routers.
        count: usize,
    },
    /// `count` random links go down at once (chosen by the seeded generator,
    /// never disconnecting the mesh if `keep_connected`, the default).
    CutRandom {
        /// When.
        at: SimDuration,
        /// How many links.
        count: usize,
        /// Skip links whose loss would partition the mesh.
        #[serde(default = "default_true")]
        keep_connected: bool,
    },
    /// Every link's control-message loss probability changes.
    Loss {
        /// When.
        at: SimDuration,
        /// New loss probability.
        loss: f64,
    },
}

impl EventSpec {
    /// When the event fires.
    pub fn at(&self) -> Duration {
        match self {
            EventSpec::LinkDown { at, .. }
            | EventSpec::LinkUp { at, .. }
            | EventSpec::Cost { at, .. }
            | EventSpec::Crash { at, .. }
            | EventSpec::Restart { at, .. }
            | EventSpec::Attach { at, .. }
            | EventSpec::Detach { at, .. }
            | EventSpec::AttachRandom { at, .. }
            | EventSpec::CutRandom { at, .. }
            | EventSpec::Loss { at, .. } => at.0,
        }
    }

    /// The event's kind as written in TOML.
    pub fn kind(&self) -> &'static str {
        match self {
            EventSpec::LinkDown { .. } => "link_down",
            EventSpec::LinkUp { .. } => "link_up",
            EventSpec::Cost { .. } => "cost",
            EventSpec::Crash { .. } => "crash",
            EventSpec::Restart { .. } => "restart",
            EventSpec::Attach { .. } => "attach",
            EventSpec::Detach { .. } => "detach",
            EventSpec::AttachRandom { .. } => "attach_random",
            EventSpec::CutRandom { .. } => "cut_random",
            EventSpec::Loss { .. } => "loss",
        }
    }
}

/// A traffic flow: messages sent at a fixed rate into one ingress router.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Target address.
    pub address: String,
    /// Distribution used at every hop.
    pub distribution: Distribution,
    /// Ingress router.
    pub from: RouterRef,
    /// First message.
    #[serde(default)]
    pub start: SimDuration,
    /// No message at or after this time (default: end of run).
    pub stop: Option<SimDuration>,
    /// Messages per simulated second.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Time a consumer takes to settle a delivery (balanced flows' outstanding
    /// window).
    #[serde(default = "default_settle")]
    pub settle_after: SimDuration,
}

fn default_rate() -> f64 {
    100.0
}
fn default_settle() -> SimDuration {
    SimDuration(Duration::from_millis(5))
}

/// Optional checks the run asserts at the end (used by scenario files that
/// double as acceptance tests).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// Every event window must end converged.
    #[serde(default)]
    pub converged: bool,
    /// Final address-table divergence must be zero.
    #[serde(default)]
    pub zero_divergence: bool,
}

/// Simulator knobs that are not part of the modelled world.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// How often the address-table divergence series is sampled.
    #[serde(default = "default_sample")]
    pub sample_every: SimDuration,
    /// Above this many routers the oracle check uses a seeded sample of
    /// destinations instead of all of them.
    #[serde(default = "default_oracle_full")]
    pub oracle_full_limit: usize,
    /// Destinations checked per router when sampling.
    #[serde(default = "default_oracle_sample")]
    pub oracle_sample: usize,
}

fn default_sample() -> SimDuration {
    SimDuration(Duration::from_millis(100))
}
fn default_oracle_full() -> usize {
    2000
}
fn default_oracle_sample() -> usize {
    64
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            sample_every: default_sample(),
            oracle_full_limit: default_oracle_full(),
            oracle_sample: default_oracle_sample(),
        }
    }
}

/// The whole scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Name used in output files (default: the file stem).
    pub name: Option<String>,
    /// RNG seed (overridden by `--seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated run length.
    pub duration: SimDuration,
    /// Profiles to run, side by side (default `["bote"]`).
    #[serde(default = "default_profiles")]
    pub profiles: Vec<Profile>,
    /// The mesh.
    pub topology: Spanned<TopologySpec>,
    /// The link model.
    #[serde(default)]
    pub link: LinkSpec,
    /// Protocol timer overrides.
    #[serde(default)]
    pub protocol: ProtocolOverrides,
    /// Measurement knobs.
    #[serde(default)]
    pub measure: MeasureSpec,
    /// Timed events (`[[event]]`).
    #[serde(default, rename = "event")]
    pub events: Vec<Spanned<EventSpec>>,
    /// Traffic flows (`[[flow]]`).
    #[serde(default, rename = "flow")]
    pub flows: Vec<Spanned<FlowSpec>>,
    /// End-of-run assertions.
    #[serde(default)]
    pub expect: ExpectSpec,
}

fn default_seed() -> u64 {
    1
}
fn default_profiles() -> Vec<Profile> {
    vec![Profile::Bote]
}

/// A loaded scenario: the parsed file plus where it came from (for errors and
/// for resolving relative edge-list paths).
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The parsed content.
    pub file: ScenarioFile,
    /// Name used in outputs.
    pub name: String,
    /// The scenario's path (`<inline>` for strings).
    pub path: PathBuf,
    /// The source text (to turn spans into line numbers).
    pub source: String,
}

impl Scenario {
    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let source = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(path, source)
    }

    /// Parses scenario text; `path` is used for error messages and relative
    /// edge-list files.
    pub fn parse(path: &Path, source: String) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = toml::from_str(&source).map_err(|e| ScenarioError::Parse {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(&source, s.start)).unwrap_or(0),
            message: e.message().to_string(),
        })?;
        let name = file.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".to_string())
        });
        let sc = Scenario {
            file,
            name,
            path: path.to_path_buf(),
            source,
        };
        sc.validate()?;
        Ok(sc)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let f = &self.file;
        let topo_line = self.line(self.file.topology.span().start);
        let t = f.topology.get_ref();
        if t.kind != TopologyKind::File && t.size == 0 {
            return Err(self.invalid(topo_line, "topology size must be at least 1"));
        }
        if t.kind == TopologyKind::File && t.file.is_none() {
            return Err(self.invalid(
                topo_line,
                "topology kind \"file\" needs `file = \"edges.txt\"`",
            ));
        }
        if let Some(p) = t.p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(self.invalid(topo_line, format!("topology p = {p} is not a probability")));
        }
        if !(0.0..1.0).contains(&f.link.loss) {
            return Err(self.invalid(0, format!("link loss = {} must be in [0, 1)", f.link.loss)));
        }
        if f.link.bandwidth_mbps.is_nan() || f.link.bandwidth_mbps <= 0.0 {
            return Err(self.invalid(0, "link bandwidth_mbps must be positive"));
        }
        if f.profiles.is_empty() {
            return Err(self.invalid(0, "profiles must name at least one profile"));
        }
        for ev in &f.events {
            let line = self.line(ev.span().start);
            if let EventSpec::Loss { loss, .. } = ev.get_ref()
                && !(0.0..1.0).contains(loss)
            {
                return Err(self.invalid(line, format!("loss = {loss} must be in [0, 1)")));
            }
            if ev.get_ref().at() > f.duration.0 {
                return Err(self.invalid(
                    line,
                    format!(
                        "event {} at {} is after the end of the run ({})",
                        ev.get_ref().kind(),
                        SimDuration(ev.get_ref().at()),
                        f.duration
                    ),
                ));
            }
        }
        for fl in &f.flows {
            let line = self.line(fl.span().start);
            let r = fl.get_ref().rate;
            if !(r.is_finite() && r > 0.0 && r <= 1e6) {
                return Err(self.invalid(line, format!("flow rate = {r} must be in (0, 1e6]")));
            }
            if fl.get_ref().distribution == Distribution::Unavailable {
                return Err(self.invalid(
                    line,
                    "flow distribution \"unavailable\" has no consumer to simulate",
                ));
            }
        }
        Ok(())
    }

    /// 1-based line of a byte offset in the source.
    pub fn line(&self, offset: usize) -> usize {
        line_of(&self.source, offset)
    }

    /// An [`ScenarioError::Invalid`] at `line`.
    pub fn invalid(&self, line: usize, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// The scenario with its topology size replaced (for sweeps).
    pub fn with_size(&self, size: usize) -> Scenario {
        let mut sc = self.clone();
        let span = sc.file.topology.span();
        let mut t = sc.file.topology.get_ref().clone();
        t.size = size;
        t.rows = None;
        t.cols = None;
        sc.file.topology = Spanned::new(span, t);
        sc
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    let end = offset.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_as_bare_seconds() {
        assert_eq!(
            SimDuration::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            SimDuration::parse("1.5s").unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!(SimDuration::parse("2").unwrap().0, Duration::from_secs(2));
        assert!(SimDuration::parse("2 parsecs").is_err());
    }

    #[test]
    fn bad_event_router_type_reports_file_and_line() {
        let text = "duration = \"1s\"\n[topology]\nkind = \"ring\"\nsize = 4\n\n[[event]]\nkind = \"crash\"\nat = \"bogus\"\nrouter = 1\n";
        let err = Scenario::parse(Path::new("x.toml"), text.to_string()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("scenario x.toml:"), "{msg}");
        assert!(msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn event_after_end_of_run_is_rejected_with_its_line() {
        let text = "duration = \"1s\"\n[topology]\nkind = \"ring\"\nsize = 4\n\n[[event]]\nkind = \"crash\"\nat = \"5s\"\nrouter = 1\n";
        let err = Scenario::parse(Path::new("x.toml"), text.to_string()).unwrap_err();
        assert!(err.to_string().starts_with("scenario x.toml:6:"), "{err}");
    }

    #[test]
    fn flows_spell_distributions_as_the_router_does_and_unavailable_is_refused() {
        let flow = |d: &str| {
            format!(
                "duration = \"1s\"\n[topology]\nkind = \"ring\"\nsize = 4\n\n\
                 [[flow]]\naddress = \"q\"\ndistribution = \"{d}\"\nfrom = 0\n"
            )
        };
        for d in ["closest", "balanced", "multicast"] {
            let sc = Scenario::parse(Path::new("x.toml"), flow(d)).unwrap();
            assert_eq!(sc.file.flows[0].get_ref().distribution.as_str(), d);
        }
        let err = Scenario::parse(Path::new("x.toml"), flow("unavailable")).unwrap_err();
        assert!(err.to_string().starts_with("scenario x.toml:6:"), "{err}");
        assert!(err.to_string().contains("unavailable"), "{err}");
        let err = Scenario::parse(Path::new("x.toml"), flow("nearest")).unwrap_err();
        assert!(err.to_string().contains("nearest"), "{err}");
    }
}
