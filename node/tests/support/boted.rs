//! A real `boted` process on ephemeral loopback ports, for the tests that
//! drive routers from outside (`mesh`, `interop_fe2o3`, `mesh_fe2o3`),
//! started through `botectl::spawn` (the one way routers are started; the
//! bench's `--spawn` uses it too).
//!
//! [`RouterSpec`] is the configuration (router id, two workers, hello timing,
//! an optional inter-router listener, connectors, [`ADDRESSES`]); [`Router`]
//! is the running process. What the router reports (its ports, routes and
//! the remote consumers per address: [`MeshState`]) comes from its state
//! file (`boted --state-file`), which a watcher also keeps a timed history
//! of ([`Router::route_lines`]); its log is kept whole for assertions on
//! logged events and for failure messages. Dropping a [`Router`] kills the
//! process; [`Router::stop`] sends SIGTERM. Every wait is bounded by
//! [`WAIT`].

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use botectl::spawn::{self, RouterState, SpawnedRouter};

/// Upper bound for any single wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// The addresses every test router is configured with (the rest is
/// balanced), shared with the Qpid Proton suite.
pub const ADDRESSES: &str = include_str!("../../../tests/interop/addresses.toml");

/// The routes one router reports: destination -> (next hop, cost).
pub type Table = BTreeMap<String, (String, u32)>;

/// The router's own view of the mesh, from its state file: its routes and,
/// per address, the other routers with consumers for it.
#[derive(Clone, Debug, Default)]
pub struct MeshState {
    pub routes: Table,
    pub addresses: BTreeMap<String, Vec<String>>,
}

impl From<&RouterState> for MeshState {
    fn from(state: &RouterState) -> MeshState {
        MeshState {
            routes: state
                .routes
                .iter()
                .map(|(dest, r)| (dest.clone(), (r.next_hop.clone(), r.cost)))
                .collect(),
            addresses: state.addresses.clone(),
        }
    }
}

/// What a test router is configured with.
pub struct RouterSpec(spawn::RouterSpec);

impl RouterSpec {
    /// Router `id` with two workers, one AMQP listener and [`ADDRESSES`].
    pub fn new(id: &str) -> RouterSpec {
        RouterSpec(spawn::RouterSpec::new(id).workers(2))
    }

    pub fn workers(self, workers: usize) -> RouterSpec {
        RouterSpec(self.0.workers(workers))
    }

    /// `hello-interval-ms` and `hello-timeout-ms` (default: the config's).
    pub fn hello(self, interval_ms: u64, timeout_ms: u64) -> RouterSpec {
        RouterSpec(self.0.hello(interval_ms, timeout_ms))
    }

    /// An inter-router listener on `port` of 127.0.0.1 (0: ephemeral).
    pub fn inter_router(self, port: u16) -> RouterSpec {
        RouterSpec(self.0.inter_router(port))
    }

    /// A connector dialling the inter-router listener on `port`.
    pub fn connect(self, name: &str, port: u16, cost: u32) -> RouterSpec {
        RouterSpec(self.0.connect(name, port, cost))
    }

    /// Appends `text` to the configuration (a `[telemetry]` table, say).
    pub fn extra(self, text: &str) -> RouterSpec {
        RouterSpec(self.0.extra(text))
    }

    /// A `key = value` line for the AMQP listener, e.g.
    /// `strip-annotations = "no"`.
    pub fn listener_option(self, line: &str) -> RouterSpec {
        RouterSpec(self.0.listener_option(line))
    }

    /// A `key = value` line for `[router]`, e.g. `users-file = "..."`.
    pub fn router_option(self, line: &str) -> RouterSpec {
        RouterSpec(self.0.router_option(line))
    }

    pub fn connectors(self, connectors: &[(String, u16, u32)]) -> RouterSpec {
        connectors.iter().fold(self, |spec, (name, port, cost)| {
            spec.connect(name, *port, *cost)
        })
    }

    /// Spawns the router and waits until it is up (every listener bound).
    /// `BOTED` may name another binary (or a wrapper, e.g. for strace).
    pub fn start(self) -> Router {
        let boted = std::env::var_os("BOTED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_boted")));
        let spec = self.0.extra(ADDRESSES);
        let process = spec
            .start(&boted, WAIT)
            .unwrap_or_else(|e| panic!("router {} did not start: {e}", spec.id));
        let history = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        watch_state(process.state_path(), history.clone(), stopped.clone());
        Router {
            id: spec.id.clone(),
            port: process.port,
            inter_router_port: process.inter_router_port,
            process,
            history,
            stopped,
        }
    }
}

/// A running `boted`.
pub struct Router {
    pub id: String,
    /// The AMQP listener's port.
    pub port: u16,
    /// The inter-router listener's port (0 without one).
    pub inter_router_port: u16,
    process: SpawnedRouter,
    /// (write time in seconds of the UTC day, routes) per state written.
    history: Arc<Mutex<Vec<(f64, Table)>>>,
    stopped: Arc<AtomicBool>,
}

/// Records every state `path` takes (checked every 2 ms, read when the file
/// was replaced) until `stopped`.
fn watch_state(path: PathBuf, history: Arc<Mutex<Vec<(f64, Table)>>>, stopped: Arc<AtomicBool>) {
    thread::spawn(move || {
        let mut seen = None;
        while !stopped.load(Ordering::Relaxed) {
            let stamp = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()));
            if stamp.is_some() && stamp != seen {
                seen = stamp;
                if let Some(state) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| RouterState::parse(&text).ok())
                {
                    let at = state.written_at % 86_400.0;
                    let routes = MeshState::from(&state).routes;
                    let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
                    if h.last().is_none_or(|(t, r)| *t != at || *r != routes) {
                        h.push((at, routes));
                    }
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
}

impl Router {
    /// A single router (no mesh) with two workers.
    pub fn start(id: &str) -> Router {
        RouterSpec::new(id).start()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn url(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.port)
    }

    pub fn lines(&self) -> Vec<String> {
        self.process.log_lines()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Every state the router wrote so far (as the watcher saw them): (write
    /// time in seconds of the UTC day, routes).
    pub fn route_lines(&self) -> Vec<(f64, Table)> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The router's latest state (empty before it wrote one).
    pub fn state(&self) -> MeshState {
        match self.process.state() {
            Ok(Some(state)) => MeshState::from(&state),
            Ok(None) => MeshState::default(),
            Err(e) => panic!("{e}"),
        }
    }

    /// The state file's path.
    pub fn state_path(&self) -> PathBuf {
        self.process.state_path()
    }

    /// The routes of the latest state.
    pub fn routes(&self) -> Table {
        self.state().routes
    }

    /// The other routers this router knows to have consumers for `address`.
    pub fn consumers_of(&self, address: &str) -> Vec<String> {
        self.state()
            .addresses
            .get(address)
            .cloned()
            .unwrap_or_default()
    }

    /// This router's next hop to router `dest`, if it has a route.
    pub fn next_hop(&self, dest: &str) -> Option<String> {
        self.routes().get(dest).map(|(hop, _)| hop.clone())
    }

    /// Rewrites the config file as `edit(text)` and sends SIGHUP (boted
    /// re-reads it); returns the new text.
    pub fn reload(&self, edit: impl FnOnce(String) -> String) -> String {
        let path = self.process.config_path();
        let text = edit(std::fs::read_to_string(&path).expect("read the router's config"));
        std::fs::write(&path, &text).expect("write the router's config");
        self.process.signal("HUP").unwrap_or_else(|e| panic!("{e}"));
        text
    }

    /// SIGKILL, and wait for the process.
    pub fn kill(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.process.kill();
    }

    /// SIGTERM, then wait (bounded) for the process; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.stopped.store(true, Ordering::Relaxed);
        self.process
            .stop(Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("router {} did not stop on SIGTERM: {e}", self.id))
    }

    /// Stops the router and asserts it exited 0, as every test ends.
    pub fn stop_cleanly(mut self) {
        let code = self.stop();
        assert_eq!(code, Some(0), "boted exited {code:?}:\n{}", self.log());
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// Waits (bounded by [`WAIT`]) until `check` holds; the message names `what`.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Seconds of the UTC day of a log line's leading RFC 3339 timestamp.
pub fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?;
    let time = t.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Now, in seconds of the UTC day (comparable with [`log_time`] and the
/// times of [`Router::route_lines`]).
pub fn now_of_day() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    d.as_secs_f64() % 86_400.0
}
