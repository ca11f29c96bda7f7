//! A real `boted` process on ephemeral loopback ports, for the tests that
//! drive routers from outside (`mesh`, `interop_fe2o3`, `mesh_fe2o3`).
//!
//! [`RouterSpec`] writes the config (router id, workers, hello timing, an
//! optional inter-router listener, connectors); [`Router`] is the running
//! process: it keeps every log line, its AMQP and inter-router ports, and
//! each `mesh: routes <json>` line parsed into a [`MeshState`] (the router's
//! own view of the mesh: routes and remote consumers per address). Dropping a
//! [`Router`] kills the process; [`Router::stop`] sends SIGTERM. Every wait is
//! bounded by [`WAIT`].

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Upper bound for any single wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// The addresses every test router is configured with (the rest is
/// balanced), shared with the Qpid Proton suite.
pub const ADDRESSES: &str = include_str!("../../../tests/interop/addresses.toml");

/// The routes one router reports: destination -> (next hop, cost).
pub type Table = BTreeMap<String, (String, u32)>;

/// One `mesh: routes` line: the router's routes and, per address, the other
/// routers with consumers for it.
#[derive(Clone, Debug, Default)]
pub struct MeshState {
    pub routes: Table,
    pub addresses: BTreeMap<String, Vec<String>>,
}

/// What a test router is configured with.
pub struct RouterSpec {
    id: String,
    workers: usize,
    hello: Option<(u64, u64)>,
    inter_router_port: Option<u16>,
    connectors: Vec<(String, u16, u32)>,
    listener_options: Vec<String>,
}

impl RouterSpec {
    /// Router `id` with two workers, one AMQP listener and [`ADDRESSES`].
    pub fn new(id: &str) -> RouterSpec {
        RouterSpec {
            id: id.to_owned(),
            workers: 2,
            hello: None,
            inter_router_port: None,
            connectors: Vec::new(),
            listener_options: Vec::new(),
        }
    }

    pub fn workers(mut self, workers: usize) -> RouterSpec {
        self.workers = workers;
        self
    }

    /// `hello-interval-ms` and `hello-timeout-ms` (default: the config's).
    pub fn hello(mut self, interval_ms: u64, timeout_ms: u64) -> RouterSpec {
        self.hello = Some((interval_ms, timeout_ms));
        self
    }

    /// An inter-router listener on `port` of 127.0.0.1 (0: ephemeral).
    pub fn inter_router(mut self, port: u16) -> RouterSpec {
        self.inter_router_port = Some(port);
        self
    }

    /// A connector dialling the inter-router listener on `port`.
    pub fn connect(mut self, name: &str, port: u16, cost: u32) -> RouterSpec {
        self.connectors.push((name.to_owned(), port, cost));
        self
    }

    /// A `key = value` line for the AMQP listener, e.g.
    /// `strip-annotations = "no"`.
    pub fn listener_option(mut self, line: &str) -> RouterSpec {
        self.listener_options.push(line.to_owned());
        self
    }

    pub fn connectors(mut self, connectors: &[(String, u16, u32)]) -> RouterSpec {
        self.connectors.extend_from_slice(connectors);
        self
    }

    fn config(&self) -> String {
        let mut config = format!(
            "[router]\nid = \"{}\"\nworkers = {}\nlog-level = \"info\"\n",
            self.id, self.workers
        );
        if let Some((interval, timeout)) = self.hello {
            config.push_str(&format!(
                "hello-interval-ms = {interval}\nhello-timeout-ms = {timeout}\n"
            ));
        }
        config.push_str("\n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n");
        for line in &self.listener_options {
            config.push_str(&format!("{line}\n"));
        }
        if let Some(port) = self.inter_router_port {
            config.push_str(&format!(
                "\n[[listener]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"inter-router\"\n"
            ));
        }
        for (name, port, cost) in &self.connectors {
            config.push_str(&format!(
                "\n[[connector]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
                 role = \"inter-router\"\ncost = {cost}\n"
            ));
        }
        config.push_str(ADDRESSES);
        config
    }

    /// Spawns the router and waits until it listens (both listeners).
    pub fn start(self) -> Router {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bote-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the router's temp dir");
        let path = dir.join("bote.toml");
        std::fs::write(&path, self.config()).expect("write the router's config");
        // `BOTED` may name another binary (or a wrapper, e.g. for strace).
        let boted = std::env::var_os("BOTED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_boted")));
        let mut child = Command::new(boted)
            .arg("--config")
            .arg(&path)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn boted");
        let stderr = child.stderr.take().expect("boted's stderr is piped");
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                let state = line
                    .find("mesh: routes ")
                    .map(|at| (log_time(&line), parse_mesh_state(&line[at + 13..])));
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((Some(t), state)) = state {
                    log.states.push((t, state));
                }
                log.lines.push(line);
            }
        });
        let mut router = Router {
            id: self.id,
            child: Some(child),
            port: 0,
            inter_router_port: 0,
            log,
            dir,
        };
        router.port = router.wait_for_port(|l| {
            l.contains("listening on ") && !l.contains("inter-router listening on ")
        });
        if self.inter_router_port.is_some() {
            router.inter_router_port =
                router.wait_for_port(|l| l.contains("inter-router listening on "));
        }
        router
    }
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    /// (log time in seconds of the UTC day, state) per `mesh: routes` line.
    states: Vec<(f64, MeshState)>,
}

/// A running `boted`.
pub struct Router {
    pub id: String,
    child: Option<Child>,
    /// The AMQP listener's port.
    pub port: u16,
    /// The inter-router listener's port (0 without one).
    pub inter_router_port: u16,
    log: Arc<Mutex<Log>>,
    dir: PathBuf,
}

impl Router {
    /// A single router (no mesh) with two workers.
    pub fn start(id: &str) -> Router {
        RouterSpec::new(id).start()
    }

    fn wait_for_port(&self, pred: impl Fn(&str) -> bool) -> u16 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(port) = self
                .lines()
                .iter()
                .filter(|l| pred(l))
                .find_map(|l| listening_port(l))
            {
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "router {} did not start:\n{}",
                self.id,
                self.log()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.port)
    }

    pub fn lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// Every `mesh: routes` line so far: (log time in seconds of the UTC
    /// day, routes).
    pub fn route_lines(&self) -> Vec<(f64, Table)> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.states
            .iter()
            .map(|(t, s)| (*t, s.routes.clone()))
            .collect()
    }

    /// The latest mesh state (empty before any `mesh: routes` line).
    pub fn state(&self) -> MeshState {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.states
            .last()
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// The routes of the last `mesh: routes` line.
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
        let path = self.dir.join("bote.toml");
        let text = edit(std::fs::read_to_string(&path).expect("read the router's config"));
        std::fs::write(&path, &text).expect("write the router's config");
        let pid = self.child.as_ref().expect("the router runs").id();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {pid} failed");
        text
    }

    /// SIGKILL, and wait for the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the process; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait for boted") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "router {} did not stop on SIGTERM:\n{}",
                    self.id,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the router and asserts it exited 0, as every test ends.
    pub fn stop_cleanly(mut self) {
        let code = self.stop();
        assert_eq!(code, Some(0), "boted exited {code:?}:\n{}", self.log());
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
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

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The port of a `listening on 127.0.0.1:PORT` log line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr = rest.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

fn parse_mesh_state(json: &str) -> MeshState {
    let value: serde_json::Value = serde_json::from_str(json.trim()).expect("routes line is JSON");
    let routes = value["routes"]
        .as_object()
        .expect("routes is an object")
        .iter()
        .map(|(dest, r)| {
            (
                dest.clone(),
                (
                    r["next_hop"].as_str().expect("next_hop").to_owned(),
                    r["cost"].as_u64().expect("cost") as u32,
                ),
            )
        })
        .collect();
    let addresses = value["addresses"]
        .as_object()
        .map(|a| {
            a.iter()
                .map(|(address, routers)| {
                    let routers = routers
                        .as_array()
                        .expect("address routers are an array")
                        .iter()
                        .map(|r| r.as_str().expect("router id").to_owned())
                        .collect();
                    (address.clone(), routers)
                })
                .collect()
        })
        .unwrap_or_default();
    MeshState { routes, addresses }
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

/// Now, in seconds of the UTC day (comparable with [`log_time`]).
pub fn now_of_day() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    d.as_secs_f64() % 86_400.0
}
